# Leader failover with leader epochs (DESIGN 9, issue 7, src/cluster/README.md
# sections 5-8): three brokers and a fourth server that is only their
# coordinator (so that any broker can be killed without losing the cluster's
# metadata).  Topic "events": 1 partition, replication_factor 3,
# min.insync.replicas 2, commitlog.replica_lag_time_max_ms 2000.
#
# The producer of scenarios 1 and 2 is a forked client that produces with
# acks=all and await_replication, one record per session, against the broker
# it believes leads; on CL002 it goes to the broker the hint names, on any
# other failure to the next broker.  A record is acknowledged only when
# await_replication returned after its commit; the client writes each
# acknowledged (offset, value) to a file the test reads.
#
# 1. SIGKILL of the leader while the client produces: a follower is elected
#    in a new leader epoch and takes records; every acknowledged record is
#    readable on the new leader and on the surviving follower at its offset;
#    no offset is acknowledged twice; every record a consumer group read
#    before the kill is still there, and the group's committed offset (on a
#    follower, where it was committed) does not go backwards: consume goes on
#    from it.  The old leader returns as a follower with the new leader's
#    records.
# 2. Five bounces of the leader, clean stop and SIGKILL alternating, under
#    the same client: after each, the new leader serves every record
#    acknowledged so far; at the end the three replicas hold identical
#    records (readable ones, and the raw topic tables: no untruncated tail).
# 4. A stale follower (stopped until it left the ISR) is not elected when
#    it is the only live replica: the partition stays leaderless (leader
#    NULL on the coordinator and in partition_list, produce CL002 "has no
#    leader"), with no new leader epoch; the last in-sync replica is elected
#    when it returns, and no acknowledged record is lost.
# 5. An old leader that returns with an unacknowledged tail (acks=1 records
#    its followers never received, above the high watermark) truncates it
#    and then holds and serves exactly the new leader's records; the new
#    epoch starts after every acknowledged record and not after the tail.
# 6. SIGKILL of the controller's broker (no leader of the topic): another
#    broker becomes controller with a higher epoch, the topic keeps its
#    leader; then SIGKILL of the leader: failover still happens, and the
#    acknowledged records survive.
# (Issue test 3, the ISR and acks=all, is 053_cluster_isr.pl.)  They run in
# the order 1, 2, 5, 6, 4: the last one leaves the cluster without a leader
# for a while.

use strict;
use warnings;

use IO::Handle;
use POSIX ();
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

# The coordinator: its own worker is broker 0 of a cluster of its own
# ("coordinator"), so it takes no part in the brokers' cluster "default".
my $coord = commitlog_node('coordinator', no_start => 1,
	extra_conf => "commitlog.worker_naptime = 100\ncommitlog.launcher_naptime = 200\n"
	  . "commitlog.cluster = 'coordinator'\n");
$coord->start;
$coord->safe_psql('postgres', 'CREATE EXTENSION pg_commitlog');

my @brokers = commitlog_brokers(3, coordinator => $coord,
	extra_conf => "wal_receiver_status_interval = 1\n"
	  . "commitlog.replica_lag_time_max_ms = 2000\n");
for my $node (@brokers)
{
	# true when the broker takes a record for partition 0 of the topic now,
	# false on not-leader (CL002); the probe record is rolled back (a gap)
	$node->safe_psql('postgres', q{
		CREATE FUNCTION accepts_records(topic text) RETURNS boolean
		LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM commitlog.produce(topic, '\x00'::bytea, partition => 0);
			RAISE EXCEPTION 'probe' USING ERRCODE = 'P0001';
		EXCEPTION
			WHEN SQLSTATE 'P0001' THEN RETURN true;
			WHEN SQLSTATE 'CL002' THEN RETURN false;
		END $$});
}
sub node_of { return $brokers[ $_[0] - 1 ]; }
sub id_of { return $_[0]->name =~ /^broker(\d)$/ ? $1 : die "not a broker: " . $_[0]->name; }

my $workdir = PostgreSQL::Test::Utils::tempdir('producer');
my %producers;    # running clients, pid => its record

# After a check that leaves the cluster in no state to go on (no failover,
# no recovery): stop the clients and end here; the failed check fails the
# file, and the nodes are torn down by PostgreSQL::Test::Cluster.
sub give_up
{
	my ($why) = @_;
	diag "giving up after: $why";
	stop_producer($_) for values %producers;
	# what the cluster looked like, for the logs
	my ($out, $err) = ('', '');
	$coord->psql('postgres', q{
		SELECT 'partition', p.* FROM commitlog.cluster_partitions p;
		SELECT 'replica', s.* FROM commitlog.cluster_replica_state s ORDER BY broker_id;
		SELECT 'epoch', e.* FROM commitlog.cluster_leader_epochs e ORDER BY leader_epoch;
		SELECT 'alive', broker_id FROM commitlog.brokers WHERE alive AND cluster = 'default';},
		stdout => \$out, stderr => \$err);
	diag "coordinator:\n$out$err";
	for my $node (grep { defined $_->{_pid} } @brokers)
	{
		$node->psql('postgres', q{
			SELECT 'subscription', s.subname, s.subenabled, r.srsubstate, r.srrelid::regclass
			  FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid;
			SELECT 'slot', slot_name, active, confirmed_flush_lsn FROM pg_replication_slots;
			SELECT 'latest', commitlog.latest_offset('events', 0),
			       (SELECT max(log_offset) FROM commitlog_topics.events);},
			stdout => \$out, stderr => \$err);
		diag $node->name . ":\n$out$err";
	}
	done_testing();
	exit 0;
}

# poll_query_until, but giving up after 45 s (a failover takes seconds; a
# broken one should not hold the whole file for the default 180 s per poll)
sub wait_until
{
	my ($node, $sql, $expected) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = 45;
	return $node->poll_query_until('postgres', $sql, $expected);
}

# FROM clause selecting partition 0 of a topic on the coordinator (as p)
sub part_sql
{
	my ($topic) = @_;
	return qq{FROM commitlog.cluster_partitions p
	            JOIN commitlog.cluster_topics t ON t.id = p.topic_id
	           WHERE t.name = '$topic' AND p.partition = 0};
}

# The coordinator's record of partition 0: leader ('' when none), leader
# epoch, isr, replicas, and the start offset of the current epoch ('' when
# not written yet, or epoch 0).
sub topic_state
{
	my ($topic) = @_;
	my $row = $coord->safe_psql('postgres', qq{
		SELECT coalesce(p.leader::text, ''), p.leader_epoch, p.isr::text, p.replicas::text,
		       coalesce((SELECT e.start_offset::text FROM commitlog.cluster_leader_epochs e
		                  WHERE e.topic_id = p.topic_id AND e.partition = p.partition
		                    AND e.leader_epoch = p.leader_epoch), '')
		  } . part_sql($topic));
	my ($leader, $epoch, $isr, $replicas, $start) = split /\|/, $row, -1;
	return {
		leader => $leader,
		epoch => $epoch,
		isr => $isr,
		replicas => $replicas,
		start => $start
	};
}

# Rows of the coordinator's commitlog.controller (as c) for the brokers'
# cluster, with a condition
sub controller_sql
{
	my ($select, $cond) = @_;
	return qq{SELECT $select FROM commitlog.controller c
	            JOIN commitlog.controller_state s ON s.pid = c.pid AND s.epoch = c.epoch
	            JOIN commitlog.clusters cl ON cl.id = s.cluster_id
	           WHERE cl.name = 'default' AND $cond};
}

# The controller of the brokers' cluster: (broker, epoch)
sub controller
{
	return split /\|/, $coord->safe_psql('postgres', controller_sql(q{c.broker_id || '|' || c.epoch}, 'true'));
}

# Wait until the topic has a leader that has taken over its epoch (start
# offset written), an ISR of all three replicas, every broker's copy says
# so, and the leader takes records.  Returns the coordinator's state.
sub wait_healthy
{
	my ($topic, $what) = @_;
	my $ok = wait_until($coord, qq{
		SELECT p.leader IS NOT NULL AND cardinality(p.isr) = cardinality(p.replicas)
		   AND (p.leader_epoch = 0
		        OR EXISTS (SELECT 1 FROM commitlog.cluster_leader_epochs e
		                    WHERE e.topic_id = p.topic_id AND e.partition = p.partition
		                      AND e.leader_epoch = p.leader_epoch AND e.start_offset IS NOT NULL))
		  } . part_sql($topic));
	my $st = topic_state($topic);
	if ($ok)
	{
		for my $node (@brokers)
		{
			$ok &&= wait_until($node, qq{
				SELECT leader = $st->{leader} AND cardinality(isr) = 3
				  FROM commitlog.partition_list WHERE topic = '$topic'});
		}
		$ok &&= wait_until(node_of($st->{leader}), "SELECT accepts_records('$topic')");
	}
	ok($ok, "$what: $topic has a leader (broker $st->{leader}, epoch $st->{epoch}), "
		  . "all three replicas in sync, and the leader takes records")
	  or give_up("$what: $topic did not recover");
	return $st;
}

# Wait until the coordinator shows a leader other than $old at an epoch
# above $old_epoch that has written its start offset; then until that
# broker takes records.  Returns the new state (leader '' on timeout).
sub wait_new_leader
{
	my ($topic, $old, $old_epoch, $what) = @_;
	my $ok = wait_until($coord, qq{
		SELECT p.leader IS NOT NULL AND p.leader <> $old AND p.leader_epoch > $old_epoch
		   AND EXISTS (SELECT 1 FROM commitlog.cluster_leader_epochs e
		                WHERE e.topic_id = p.topic_id AND e.partition = p.partition
		                  AND e.leader_epoch = p.leader_epoch AND e.leader = p.leader
		                  AND e.start_offset IS NOT NULL)
		  } . part_sql($topic));
	my $st = topic_state($topic);
	ok($ok, "$what: broker $st->{leader} is elected in epoch $st->{epoch} "
		  . "(was broker $old, epoch $old_epoch) and starts it at offset $st->{start}")
	  or give_up("$what: no failover (coordinator: leader '$st->{leader}', epoch $st->{epoch}, "
		  . "isr $st->{isr}, start '$st->{start}')");
	ok(wait_until(node_of($st->{leader}), "SELECT accepts_records('$topic')"),
		"$what: the new leader takes records")
	  or give_up("$what: the new leader takes no records");
	return $st;
}

# Produce @values to partition 0 on $node with acks=all and wait for the
# ISR; returns the offsets (empty list, and a failed check, on error).
sub produce_acked
{
	my ($node, $topic, $what, @values) = @_;
	my $array = join(', ', map { "'$_'" } @values);
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', qq{
		SET commitlog.acks = 'all';
		SELECT log_offset FROM commitlog.produce_batch('$topic', ARRAY[$array]::bytea[], partition => 0);
		SELECT commitlog.await_replication(10000);
	}, stdout => \$out, stderr => \$err);
	my @lines = split /\n/, $out;
	my $acked = pop @lines;
	ok($rc == 0 && defined $acked && $acked == @values,
		"$what: " . scalar(@values) . " records produced with acks=all and acknowledged")
	  or diag "stdout: $out\nstderr: $err";
	return $rc == 0 ? @lines : ();
}

# Acknowledged records (offset => value) that $node does not serve at
# their offset, as "offset:value ..." ('' when it serves them all).
sub missing_sql
{
	my ($topic, $acked) = @_;
	my $values = join(', ', map { "($_, '$acked->{$_}')" } sort { $a <=> $b } keys %$acked);
	$values = "(NULL::bigint, NULL::text)" unless %$acked;
	return qq{
		WITH r AS (SELECT log_offset, value
		             FROM commitlog.fetch('$topic', 0, commitlog.earliest_offset('$topic', 0),
		                                  max_records => 1000000, max_bytes => 2147483647))
		SELECT coalesce(string_agg(a.o || ':' || a.v, ' ' ORDER BY a.o), '')
		  FROM (VALUES $values) a(o, v)
		 WHERE a.o IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM r WHERE r.log_offset = a.o AND r.value = convert_to(a.v, 'UTF8'))};
}

# Check that $node serves every acknowledged record at its offset (polling:
# a follower serves up to the leader's high watermark a cycle later).
# $kind names the records in the message (default: acknowledged).
sub check_acked
{
	my ($node, $topic, $acked, $what, $kind) = @_;
	my $sql = missing_sql($topic, $acked);
	my $n = scalar keys %$acked;
	$kind //= 'acknowledged';
	ok(wait_until($node, $sql, ''),
		"$what: " . $node->name . " serves all $n $kind records at their offsets")
	  or diag 'missing: ' . substr($node->safe_psql('postgres', $sql), 0, 2000);
	return;
}

# The readable records of partition 0 and the raw rows of the topic table
# (what a replica holds, above the high watermark too).
sub raw_rows
{
	my ($node, $topic) = @_;
	my $cols = RECORD_COLUMNS;
	return $node->safe_psql('postgres',
		qq{SELECT $cols FROM commitlog_topics."$topic" ORDER BY partition, log_offset});
}

# Wait until every broker serves up to the leader's latest offset once the
# leader serves all it holds (no producer running); returns that offset.
sub wait_converged
{
	my ($topic, $leader, $what) = @_;
	my $ok = wait_until($leader, qq{
		SELECT commitlog.latest_offset('$topic', 0)
		       >= (SELECT coalesce(max(log_offset) + 1, 0) FROM commitlog_topics."$topic")});
	my $end = $leader->safe_psql('postgres', "SELECT commitlog.latest_offset('$topic', 0)");
	for my $node (@brokers)
	{
		$ok &&= wait_until($node, "SELECT commitlog.latest_offset('$topic', 0) >= $end");
	}
	ok($ok, "$what: every replica serves up to the leader's latest offset $end");
	return $end;
}

# --- the forked acks=all client ----------------------------------------------

# The client's loop (in the child): one session per record; stops when the
# stop file appears.
sub producer_loop
{
	my ($topic, $tag, $target, $file, $stop, $parent) = @_;
	open(my $fh, '>>', $file) or POSIX::_exit(1);
	$fh->autoflush(1);
	my $n = 0;
	until (-e $stop || getppid() != $parent)
	{
		my $value = "$tag-" . $n++;
		my ($out, $err, $timed_out, $rc) = ('', '', 0, undef);
		eval {
			$rc = node_of($target)->psql('postgres', qq{\\set VERBOSITY verbose
SET commitlog.acks = 'all';
SELECT (commitlog.produce('$topic', convert_to('$value', 'UTF8'), partition => 0)).log_offset;
SELECT commitlog.await_replication(5000);
}, stdout => \$out, stderr => \$err, timeout => 60, timed_out => \$timed_out);
		};
		$err .= " exception: $@" if $@;
		my @lines = split /\n/, $out;
		if (!$timed_out && defined $rc && $rc == 0 && @lines == 2 && $lines[1] eq '1')
		{
			print $fh "ack $lines[0] $value $target\n";
			next;
		}
		my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
		$state = $timed_out ? 'timeout' : 'connection' unless defined $state;
		print $fh "fail $value $target $state" . (@lines ? " in doubt at $lines[0]" : '') . "\n";
		if ($err =~ /The leader is broker (\d+)/ && $1 != $target)
		{
			$target = $1;
		}
		elsif ($err =~ /is taking over partition/)
		{
			usleep(50_000);    # the elected leader takes records in a moment
		}
		else
		{
			$target = $target % 3 + 1;
			usleep(50_000);    # retry.backoff.ms, when no broker named a leader
		}
	}
	close $fh;
	return;
}

# Start the client on $topic, first against broker $target.
sub start_producer
{
	my ($topic, $tag, $target) = @_;
	my $p = {
		tag => $tag,
		file => "$workdir/$tag.log",
		stop => "$workdir/$tag.stop"
	};
	my $parent = $$;
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# no END blocks here: they would tear the nodes down
		eval { producer_loop($topic, $tag, $target, $p->{file}, $p->{stop}, $parent); };
		POSIX::_exit($@ ? 1 : 0);
	}
	$p->{pid} = $pid;
	$producers{$pid} = $p;
	return $p;
}

# What the client wrote so far: (offset => value of its acknowledged
# records, offsets acknowledged twice as "offset:v1,v2", count of failures)
sub producer_results
{
	my ($p) = @_;
	my (%acked, @twice);
	my $failed = 0;
	open(my $fh, '<', $p->{file}) or return ({}, [], 0);
	while (my $line = <$fh>)
	{
		last unless $line =~ /\n$/;    # a line being written
		if ($line =~ /^ack (\d+) (\S+) /)
		{
			push @twice, "$1:$acked{$1},$2" if exists $acked{$1};
			$acked{$1} = $2;
		}
		else
		{
			$failed++;
		}
	}
	close $fh;
	return (\%acked, \@twice, $failed);
}

# Stop the client; returns producer_results.
sub stop_producer
{
	my ($p) = @_;
	open(my $fh, '>', $p->{stop}) or die "cannot create $p->{stop}: $!";
	close $fh;
	waitpid($p->{pid}, 0);
	delete $producers{ $p->{pid} };
	is($? >> 8, 0, "client $p->{tag} stopped cleanly");
	return producer_results($p);
}

# --- setup ---------------------------------------------------------------------
ok( wait_until($coord,
		q{SELECT count(*) = 3 FROM commitlog.brokers WHERE alive AND cluster = 'default'}),
	'three brokers alive on the coordinator, which is none of them');
$brokers[0]->safe_psql('postgres',
	q{SELECT commitlog.create_topic('events', 1, 3, '{"min.insync.replicas": 2}')});
my $st = wait_healthy('events', 'setup');
my %all_acked;    # every acknowledged record of events, offset => value

# --- 1. SIGKILL of the leader while a client produces with acks=all -------------
{
	my $what = 'kill -9 leader';
	my $leader = node_of($st->{leader});
	my ($group_node) = grep { $_ != $leader } @brokers;    # a follower keeps the group
	my ($other) = grep { $_ != $leader && $_ != $group_node } @brokers;
	my $p = start_producer('events', 't1', $st->{leader});
	ok(wait_until($group_node, q{SELECT commitlog.latest_offset('events', 0) >= 10}),
		"$what: the client's records are acknowledged and replicated");

	# a consumer group reads on a follower; its offsets are committed there
	my $consumed = $group_node->safe_psql('postgres', q{
		SELECT coalesce(string_agg(log_offset || ':' || convert_from(value, 'UTF8'), ' ' ORDER BY log_offset), '')
		  FROM commitlog.consume('g1', 'events', max_records => 100000)});
	my %consumed = map { split /:/ } grep { length } split / /, $consumed;
	my $committed = $group_node->safe_psql('postgres',
		q{SELECT commitlog.committed_offset('g1', 'events', 0)});
	ok(keys(%consumed) >= 5 && $committed > 0,
		"$what: group g1 consumed " . keys(%consumed) . " records on " . $group_node->name
		  . ", committed offset $committed");

	ok(wait_until($leader, "SELECT commitlog.latest_offset('events', 0) >= $committed + 5"),
		"$what: the client goes on producing");
	kill9_postmaster($leader);
	my $new = wait_new_leader('events', $st->{leader}, $st->{epoch}, $what);
	my $nl = node_of($new->{leader});
	my ($survivor) = grep { $_ != $leader && $_ != $nl } @brokers;
	ok(wait_until($nl, "SELECT commitlog.latest_offset('events', 0) >= $new->{start} + 5"),
		"$what: the client follows the not-leader hint and its records are acknowledged on the new leader");
	my ($acked, $twice, $failed) = stop_producer($p);
	diag sprintf('%s: %d records acknowledged, %d attempts failed or in doubt',
		$what, scalar(keys %$acked), $failed);
	is(scalar(@$twice), 0, "$what: no offset was acknowledged for two records")
	  or diag "acknowledged twice: @$twice";
	ok((grep { $_ >= $new->{start} } keys %$acked) > 0 && (grep { $_ < $committed } keys %$acked) > 0,
		"$what: records were acknowledged before the kill and in the new epoch");
	%all_acked = (%all_acked, %$acked);
	check_acked($nl, 'events', \%all_acked, "$what, new leader");
	check_acked($survivor, 'events', \%all_acked, "$what, surviving follower");
	check_acked($nl, 'events', \%consumed, "$what, new leader", 'consumed');

	# the group's offset on its broker does not go backwards: consume goes on from it
	is($group_node->safe_psql('postgres', q{SELECT commitlog.committed_offset('g1', 'events', 0)}),
		$committed, "$what: group g1's committed offset is unchanged by the failover");
	ok(wait_until($group_node, "SELECT commitlog.latest_offset('events', 0) > $committed"),
		"$what: " . $group_node->name . " serves records past the group's offset");
	is( $group_node->safe_psql('postgres',
			q{SELECT min(log_offset) FROM commitlog.consume('g1', 'events', max_records => 100000)}),
		$committed, "$what: the group's next consume starts at its committed offset (no reset, no rewind)");
	ok( $group_node->safe_psql('postgres', q{SELECT commitlog.committed_offset('g1', 'events', 0)})
		  > $committed,
		"$what: ... and moves its offset forward");

	# the old leader returns as a follower of the new one
	$leader->start;
	$st = wait_healthy('events', "$what, old leader back");
	is($st->{leader}, $new->{leader}, "$what: the old leader returns as a follower");
	wait_converged('events', $nl, "$what, old leader back");
	is(dump_partition($leader, 'postgres', 'events', 0), dump_partition($nl, 'postgres', 'events', 0),
		"$what: the returned old leader serves the new leader's records");
	check_acked($leader, 'events', \%all_acked, "$what, old leader back");
}

# --- 2. five bounces of the leader, clean and SIGKILL alternating ------------
{
	my $p = start_producer('events', 't2', $st->{leader});
	for my $round (1 .. 5)
	{
		my $how = $round % 2 ? 'clean stop' : 'kill -9';
		my $what = "bounce $round ($how)";
		$st = wait_healthy('events', $what) if $round > 1;
		my $leader = node_of($st->{leader});
		my $from = $leader->safe_psql('postgres', q{SELECT commitlog.latest_offset('events', 0)});
		ok(wait_until($leader, "SELECT commitlog.latest_offset('events', 0) >= $from + 5"),
			"$what: the client's records are acknowledged on broker $st->{leader}");
		if ($round % 2) { $leader->stop; }
		else { kill9_postmaster($leader); }
		my $new = wait_new_leader('events', $st->{leader}, $st->{epoch}, $what);
		my $nl = node_of($new->{leader});
		ok(wait_until($nl, "SELECT commitlog.latest_offset('events', 0) >= $new->{start} + 3"),
			"$what: the client produces on the new leader");
		my ($acked) = producer_results($p);
		check_acked($nl, 'events', { %all_acked, %$acked }, $what);
		$leader->start;
	}
	my ($acked, $twice, $failed) = stop_producer($p);
	diag sprintf('bounces: %d records acknowledged, %d attempts failed or in doubt',
		scalar(keys %$acked), $failed);
	is(scalar(@$twice), 0, 'bounces: no offset was acknowledged for two records')
	  or diag "acknowledged twice: @$twice";
	%all_acked = (%all_acked, %$acked);
	$st = wait_healthy('events', 'after the bounces');
	my $leader = node_of($st->{leader});
	wait_converged('events', $leader, 'after the bounces');
	for my $node (@brokers)
	{
		check_acked($node, 'events', \%all_acked, 'after the bounces');
	}
	my $expected = dump_partition($leader, 'postgres', 'events', 0);
	my $raw = raw_rows($leader, 'events');
	for my $node (grep { $_ != $leader } @brokers)
	{
		is(dump_partition($node, 'postgres', 'events', 0), $expected,
			'after the bounces: ' . $node->name . ' serves the same records as the leader');
		is(raw_rows($node, 'events'), $raw,
			'after the bounces: ' . $node->name . ' holds the same rows as the leader (no tail left)');
	}
}

# --- 5. an old leader returns with an unacknowledged tail ----------------------
{
	my $what = 'unacknowledged tail';
	my $old_id = $st->{leader};
	my $old = node_of($old_id);
	my @followers = grep { $_ != $old } @brokers;
	wait_converged('events', $old, "$what, before");
	my $end0 = $old->safe_psql('postgres', q{SELECT max(log_offset) + 1 FROM commitlog_topics.events});
	# the stalled followers must stay in the ISR (so that one can be elected)
	$old->append_conf('postgresql.conf', "commitlog.replica_lag_time_max_ms = 600000\n");
	$old->reload;
	for my $f (@followers)
	{
		my $sub = "commitlog_b${old_id}_to_b" . id_of($f);
		$f->safe_psql('postgres', "ALTER SUBSCRIPTION $sub DISABLE");
		ok( wait_until($old,
				"SELECT count(*) = 0 FROM pg_stat_replication WHERE application_name = '$sub'"),
			"$what: " . $f->name . ' stopped applying');
	}
	my @tail = split /\n/, $old->safe_psql('postgres',
		q{SELECT log_offset FROM commitlog.produce_batch('events',
		    ARRAY['tail-0', 'tail-1', 'tail-2']::bytea[], partition => 0)});
	is(scalar(@tail), 3, "$what: the leader wrote a tail with acks=1 at offsets @tail");
	ok($old->safe_psql('postgres', q{SELECT commitlog.latest_offset('events', 0)}) <= $tail[0],
		"$what: ... that nobody can read (above the high watermark)");
	my $before = topic_state('events');
	kill9_postmaster($old);
	$old->append_conf('postgresql.conf', "commitlog.replica_lag_time_max_ms = 2000\n");
	# the operator's stop ends (the failover may have dropped the
	# subscriptions already: then this fails, harmlessly)
	for my $f (@followers)
	{
		$f->psql('postgres', "ALTER SUBSCRIPTION commitlog_b${old_id}_to_b" . id_of($f) . ' ENABLE');
	}
	my $new = wait_new_leader('events', $old_id, $before->{epoch}, $what);
	my $nl = node_of($new->{leader});
	ok($new->{start} >= $end0 && $new->{start} <= $tail[0],
		"$what: the new epoch starts at $new->{start}, after the acknowledged records and "
		  . "not after the tail's first offset $tail[0]");
	my @values = map { "t5-$_" } 0 .. 4;
	my @offsets = produce_acked($nl, 'events', "$what: on the new leader", @values);
	@all_acked{@offsets} = @values[ 0 .. $#offsets ];
	ok(@offsets && $offsets[0] >= $new->{start},
		"$what: the new leader writes at or above its epoch's start offset");
	diag "$what: the tail was at offsets @tail, the new leader's records start at "
	  . ($offsets[0] // '?') . ' (the probes of accepts_records leave gaps)';

	$old->start;
	$st = wait_healthy('events', "$what, old leader back");
	is($st->{leader}, $new->{leader}, "$what: the old leader returns as a follower");
	wait_converged('events', $nl, "$what, old leader back");
	is($old->safe_psql('postgres',
			q{SELECT count(*) FROM commitlog_topics.events WHERE value LIKE 'tail-%'}),
		'0', "$what: the old leader truncated its tail");
	is(raw_rows($old, 'events'), raw_rows($nl, 'events'),
		"$what: ... and holds exactly the new leader's records");
	is(dump_partition($old, 'postgres', 'events', 0), dump_partition($nl, 'postgres', 'events', 0),
		"$what: ... and serves them");
	check_acked($old, 'events', \%all_acked, "$what, old leader back");
	my ($state, $err) = sql_error($old, 'postgres',
		q{SELECT commitlog.produce('events', 'x'::bytea, partition => 0)});
	is($state, 'CL002', "$what: produce on the old leader: CL002");
	like($err, qr/The leader is broker $new->{leader} /, "$what: ... naming the new leader");
}

# --- 6. the controller's broker dies, then a leader ----------------------------
{
	my $what = 'controller failover';
	$st = wait_healthy('events', "$what, before");
	ok(wait_until($coord, controller_sql('count(*) = 1', 'true')),
		"$what: the cluster has a controller");
	my ($ctl_id, $ctl_epoch) = controller();
	my $topic = 'events';
	if ($st->{leader} == $ctl_id)
	{
		# the controller leads events: use a topic it does not lead
		$brokers[0]->safe_psql('postgres',
			q{SELECT commitlog.create_topic('events6', 1, 3, '{"min.insync.replicas": 2}')});
		$topic = 'events6';
		$st = wait_healthy($topic, "$what, before");
	}
	isnt($st->{leader}, $ctl_id, "$what: $topic is led by broker $st->{leader}, the controller is broker $ctl_id");
	my $ctl = node_of($ctl_id);
	kill9_postmaster($ctl);
	ok( wait_until($coord,
			controller_sql('count(*) = 1', "c.broker_id <> $ctl_id AND c.epoch > $ctl_epoch")),
		"$what: another broker is controller with an epoch above $ctl_epoch");
	my ($new_ctl, $new_epoch) = controller();
	diag "$what: broker $new_ctl is controller in epoch $new_epoch";
	my $now = topic_state($topic);
	is("$now->{leader} $now->{epoch}", "$st->{leader} $st->{epoch}",
		"$what: $topic keeps its leader and leader epoch");

	$ctl->start;
	$st = wait_healthy($topic, "$what, old controller back");
	my @values = map { "t6-$_" } 0 .. 4;
	my $leader = node_of($st->{leader});
	my @offsets = produce_acked($leader, $topic, "$what: before the leader dies", @values);
	my %acked;
	@acked{@offsets} = @values[ 0 .. $#offsets ];
	kill9_postmaster($leader);
	my $new = wait_new_leader($topic, $st->{leader}, $st->{epoch}, "$what, leader killed");
	my $nl = node_of($new->{leader});
	@values = map { "t6-after-$_" } 0 .. 4;
	@offsets = produce_acked($nl, $topic, "$what: on the new leader", @values);
	@acked{@offsets} = @values[ 0 .. $#offsets ];
	my ($survivor) = grep { $_ != $leader && $_ != $nl } @brokers;
	check_acked($nl, $topic, \%acked, "$what, leader killed");
	check_acked($survivor, $topic, \%acked, "$what, leader killed");
	check_acked($nl, 'events', \%all_acked, "$what, every earlier acknowledged record")
	  if $topic eq 'events';
	$leader->start;
	$st = wait_healthy($topic, "$what, old leader back");
}

# --- 4. a stale replica is not elected ----------------------------------------
{
	my $what = 'stale replica';
	$st = wait_healthy('events', "$what, before");
	my $leader_id = $st->{leader};
	my $leader = node_of($leader_id);
	my ($stale, $other) = grep { $_ != $leader } @brokers;
	my $stale_id = id_of($stale);
	$stale->stop;
	ok( wait_until($coord, "SELECT NOT $stale_id = ANY (p.isr) " . part_sql('events')),
		"$what: the stopped follower leaves the ISR");
	my @values = map { "t4-$_" } 0 .. 4;
	my @offsets = produce_acked($leader, 'events', "$what: without it", @values);
	@all_acked{@offsets} = @values[ 0 .. $#offsets ];
	my $before = topic_state('events');

	# all in-sync replicas die; the stale one comes back alone
	kill9_postmaster($other);
	kill9_postmaster($leader);
	$stale->start;
	ok( wait_until($coord,
			"SELECT count(*) = 1 AND bool_and(broker_id = $stale_id) FROM commitlog.brokers "
			  . "WHERE alive AND cluster = 'default'"),
		"$what: it is the only live broker");
	ok(wait_until($coord, controller_sql('count(*) = 1', "c.broker_id = $stale_id")),
		"$what: it is the controller");
	ok(wait_until($coord, 'SELECT p.leader IS NULL ' . part_sql('events')),
		"$what: the partition has no leader on the coordinator");
	my ($state, $err);
	ok( wait_until($stale, q{SELECT leader IS NULL FROM commitlog.partition_list WHERE topic = 'events'}),
		"$what: partition_list on it shows no leader");
	is( $stale->safe_psql('postgres',
			q{SELECT commitlog.latest_offset('events', 0) > 0
			     AND (SELECT count(*) FROM commitlog.fetch('events', 0, 0, 100000)) > 0}),
		't', "$what: it still serves what it holds below the last high watermark it got");
	($state, $err) = sql_error($stale, 'postgres',
		q{SELECT commitlog.produce('events', 'x'::bytea, partition => 0)});
	is($state, 'CL002', "$what: produce on it: CL002");
	like($err, qr/has no leader/, "$what: ... saying the partition has no leader");
	my $now = topic_state('events');
	is($now->{leader}, '', "$what: still no leader once its copy has caught up with the coordinator");
	is($now->{epoch}, $before->{epoch}, "$what: no new leader epoch");
	is( $coord->safe_psql('postgres',
			"SELECT count(*) FROM commitlog.cluster_leader_epochs e JOIN commitlog.cluster_topics t "
			  . "ON t.id = e.topic_id WHERE t.name = 'events' AND e.leader = $stale_id "
			  . "AND e.leader_epoch > $before->{epoch}"),
		'0', "$what: no epoch was ever given to it");

	# the in-sync replicas return: one of them leads again, nothing is lost
	$leader->start;
	$other->start;
	$st = wait_healthy('events', "$what, in-sync replicas back");
	isnt($st->{leader}, $stale_id, "$what: an in-sync replica leads");
	wait_converged('events', node_of($st->{leader}), "$what, in-sync replicas back");
	check_acked($_, 'events', \%all_acked, "$what, in-sync replicas back") for @brokers;
}

# --- no slot is left behind ------------------------------------------------------
# Each failover dropped subscriptions whose leader was dead, leaving their
# slots there (SET slot_name = NONE); the followers drop those once the old
# leader answers, so that no slot holds WAL for nobody.
for my $node (@brokers)
{
	ok( wait_until($node,
			q{SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots
			                      WHERE slot_name LIKE 'commitlog\_%' AND NOT active)
			     AND NOT EXISTS (SELECT 1 FROM commitlog.replica_orphan_slots)}),
		$node->name . ': every pair slot is in use, and no orphan is left to drop');
}

$_->stop for @brokers;
$coord->stop;
done_testing();
