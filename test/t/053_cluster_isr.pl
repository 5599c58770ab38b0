# In-sync replicas and the high watermark (DESIGN 9, issue 7,
# src/cluster/cluster_isr.c): three brokers, the first also the coordinator.
#
# - a new partition's ISR is all its replicas, on every broker and on the
#   coordinator; the leader keeps LSN marks for it;
# - a follower whose apply is stopped stays in the ISR within
#   commitlog.replica_lag_time_max_ms, and meanwhile no broker, the leader
#   included, serves the record it lacks (reads stop at the high watermark);
# - after the lag time it leaves the ISR (leader's log, coordinator,
#   partition_list everywhere) and the high watermark moves on without it;
# - resumed, it catches up and rejoins the ISR, with the same records;
# - a stopped follower broker leaves the ISR without waiting for the lag
#   time (its liveness lock is gone), the others go on, and it rejoins
#   after a restart;
# - acks=all (min.insync.replicas 3): await_replication times out (CL005)
#   while a member lacks the records, fails (CL003) once the ISR is too
#   small, and confirms them after the follower rejoins; a commit with the
#   ISR too small is refused (CL003) and leaves nothing; acks=1 still works;
# - every replica reports its log end to the coordinator;
# - with its leader dead, the in-sync follower takes over in a new leader
#   epoch, and the old leader returns as its follower;
# - cluster_alter_isr refuses a stale leader epoch or a non-leader (CL004).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my @nodes = commitlog_brokers(3,
	extra_conf => "wal_receiver_status_interval = 1\n"
	  . "commitlog.replica_lag_time_max_ms = 2000\n");
my $coord = $nodes[0];
sub node_of { return $nodes[ $_[0] - 1 ]; }
# the end of what the leader wrote (its latest offset once the ISR has it)
sub written_end
{
	return $_[0]->safe_psql('postgres', q{SELECT max(log_offset) + 1 FROM commitlog_topics.events});
}
# run SQL that must fail in a background psql; (sqlstate, error text)
sub bg_error
{
	my ($bg, $sql) = @_;
	$bg->{stderr} = '';
	$bg->query($sql);
	my $err = $bg->{stderr};
	$bg->{stderr} = '';
	my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($state, $err);
}
sub coord_isr
{
	return $coord->safe_psql('postgres',
		q{SELECT p.isr::text FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'});
}

ok($coord->poll_query_until('postgres', 'SELECT count(*) = 3 FROM commitlog.brokers WHERE alive'),
	'three brokers alive');
$nodes[1]->safe_psql('postgres',
	q{SELECT commitlog.create_topic('events', 1, 3, '{"min.insync.replicas": 3}')});
for my $node (@nodes)
{
	ok( $node->poll_query_until('postgres',
			q{SELECT count(*) = 1 FROM commitlog.partition_list
			   WHERE topic = 'events' AND cardinality(replicas) = 3 AND isr = replicas}),
		$node->name . ': the ISR of a new partition is all its replicas');
}
my $leader_id = $coord->safe_psql('postgres',
	q{SELECT p.leader FROM commitlog.cluster_partitions p
	    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'});
my $leader = node_of($leader_id);
my @followers = grep { $_ != $leader } @nodes;
my @follower_ids = map { $_->name =~ /(\d)$/ } @followers;
for my $f (@followers)
{
	ok( $f->poll_query_until('postgres',
			q{SELECT count(*) = 2 FROM pg_subscription_rel r WHERE r.srsubstate = 'r'}),
		$f->name . ' subscribed to the leader');
}

# --- the high watermark follows the followers ---------------------------------
$leader->safe_psql('postgres',
	q{SELECT count(*) FROM commitlog.produce_batch('events',
	    (SELECT array_agg(convert_to('e' || i, 'UTF8')) FROM generate_series(1, 10) i), partition => 0)});
ok($leader->poll_query_until('postgres', q{SELECT commitlog.latest_offset('events', 0) = 10}),
	'the leader serves its records once the ISR holds them');
ok( $leader->safe_psql('postgres',
		q{SELECT count(*) > 0 FROM commitlog.replica_marks WHERE stable_offset = 10}),
	'the leader keeps an LSN mark of its stable offset');
for my $f (@followers)
{
	ok($f->poll_query_until('postgres', q{SELECT commitlog.latest_offset('events', 0) = 10}),
		$f->name . ' serves them too');
}
ok( $coord->poll_query_until('postgres',
		q{SELECT count(*) = 3 FROM commitlog.cluster_replica_state s
		    JOIN commitlog.cluster_topics t ON t.id = s.topic_id
		   WHERE t.name = 'events' AND s.log_end = 10 AND s.leader_epoch = 0}),
	'every replica reports its log end to the coordinator (for leader election)');

# --- a follower that stops applying: held back, then out of the ISR -----------
my ($slow, $other) = @followers;
my ($slow_id, $other_id) = @follower_ids;
my $sub = "commitlog_b${leader_id}_to_b$slow_id";

# within the lag time (made long here), the ISR keeps the stalled follower
$leader->append_conf('postgresql.conf', "commitlog.replica_lag_time_max_ms = 600000\n");
$leader->reload;
$slow->safe_psql('postgres', "ALTER SUBSCRIPTION $sub DISABLE");
ok( $leader->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_replication WHERE application_name = '$sub'"),
	'the stalled follower\'s walsender is gone');
$leader->safe_psql('postgres',
	q{SELECT commitlog.produce('events', 'unreplicated'::bytea, partition => 0)});
ok( $leader->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM commitlog.replica_marks WHERE stable_offset = 11}),
	'the leader has seen record 10 become stable');
ok($other->poll_query_until('postgres', q{SELECT count(*) = 1 FROM commitlog_topics.events WHERE log_offset = 10}),
	'the running follower has record 10');
# the HW is written in the transaction that wrote the mark: it counted it
is($leader->safe_psql('postgres', q{SELECT commitlog.latest_offset('events', 0)}),
	'10', 'while a member of the ISR lacks record 10, the leader does not serve it');
is($leader->safe_psql('postgres', q{SELECT count(*) FROM commitlog.fetch('events', 0, 10)}),
	'0', '... fetch from 10 returns nothing (and no out-of-range error)');
is($other->safe_psql('postgres', q{SELECT commitlog.latest_offset('events', 0)}),
	'10', '... nor does the follower that has it');
is(coord_isr(), $coord->safe_psql('postgres',
		q{SELECT p.replicas::text FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'}),
	'the ISR still has all three replicas');

# acks=all with the ISR full: the commit passes, the wait does not
my $bg = $leader->background_psql('postgres', on_error_stop => 0);
$bg->query_safe('\\set VERBOSITY verbose');
$bg->query_safe(q{SET commitlog.acks = 'all'});
$bg->query_safe(q{SELECT commitlog.produce('events', 'awaited'::bytea, partition => 0)});
my ($state, $err) = bg_error($bg, 'SELECT commitlog.await_replication(200)');
is($state, 'CL005', 'acks=all: await_replication times out while a member of the ISR lacks the record');
like($err, qr/timed out after 200 ms waiting for the in-sync replicas/, '... saying so');
like($err, qr/in doubt/, '... and that the records are in doubt');

# back to a short lag time: the stalled follower leaves the ISR
$leader->append_conf('postgresql.conf', "commitlog.replica_lag_time_max_ms = 2000\n");
$leader->reload;
ok( $coord->poll_query_until('postgres',
		qq{SELECT NOT $slow_id = ANY (p.isr) FROM commitlog.cluster_partitions p
		     JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'}),
	'after replica_lag_time_max_ms the stalled follower leaves the ISR on the coordinator');
for my $node (@nodes)
{
	ok( $node->poll_query_until('postgres',
			qq{SELECT isr = array_remove(replicas, $slow_id) FROM commitlog.partition_list
			    WHERE topic = 'events'}),
		$node->name . ': partition_list.isr shows it');
}
($state, $err) = bg_error($bg, 'SELECT commitlog.await_replication(5000)');
is($state, 'CL003', 'acks=all: with the ISR below min.insync.replicas, await_replication fails (CL003)');
like($err, qr/not enough in-sync replicas for partition 0 of topic "events": 2, min.insync.replicas is 3/,
	'... naming the partition, the ISR size and the minimum');
($state, $err) = sql_error($leader, 'postgres',
	q{SET commitlog.acks = 'all'; SELECT commitlog.produce('events', 'refused'::bytea, partition => 0)});
is($state, 'CL003', 'acks=all: a commit with the ISR below min.insync.replicas is refused (CL003)');
like($err, qr/nothing was written/, '... and says nothing was written');
is($leader->safe_psql('postgres', q{SELECT count(*) FROM commitlog_topics.events WHERE value = 'refused'}),
	'0', '... and nothing was');
$leader->safe_psql('postgres', q{SELECT commitlog.produce('events', 'acks one'::bytea, partition => 0)});
my $end = written_end($leader);
is($end, '14', 'acks=1 still works (offset 12 is the refused commit\'s gap)');
ok($leader->poll_query_until('postgres', qq{SELECT commitlog.latest_offset('events', 0) = $end}),
	'the high watermark moves on without the stalled follower: the leader serves every record');
ok($other->poll_query_until('postgres', qq{SELECT commitlog.latest_offset('events', 0) = $end}),
	'... and so does the in-sync follower');
is($slow->safe_psql('postgres', q{SELECT commitlog.latest_offset('events', 0)}),
	'10', 'the stalled follower still serves only what it has');

# resumed, it catches up and rejoins
$slow->safe_psql('postgres', "ALTER SUBSCRIPTION $sub ENABLE");
ok( $coord->poll_query_until('postgres',
		qq{SELECT $slow_id = ANY (p.isr) FROM commitlog.cluster_partitions p
		     JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'}),
	'the follower rejoins the ISR once it has caught up');
ok($slow->poll_query_until('postgres', qq{SELECT commitlog.latest_offset('events', 0) = $end}),
	'... and serves every record');
ok($leader->poll_query_until('postgres', q{SELECT isr = replicas FROM commitlog.partition_list WHERE topic = 'events'}),
	'... which the leader\'s partition_list shows');
is($bg->query_safe('SELECT commitlog.await_replication(30000)'), '1',
	'acks=all: once the ISR is back, await_replication confirms the pending record');
is($bg->query_safe('SELECT commitlog.await_replication(0)'), '0', '... and then has nothing left to wait for');
$bg->quit;
is( $leader->safe_psql('postgres',
		q{SET commitlog.acks = 'all';
		  SELECT (commitlog.produce('events', 'acked'::bytea, partition => 0)).log_offset;
		  SELECT commitlog.await_replication();}),
	"$end\n1", 'acks=all with a full ISR: produce, then await_replication returns the record count');
($state) = sql_error($leader, 'postgres',
	q{BEGIN; SELECT commitlog.produce('events', 'x'::bytea, partition => 0);
	  SELECT commitlog.await_replication();});
is($state, '25001', 'await_replication inside the producing transaction: 25001');
$end = written_end($leader);
is(dump_partition($slow, 'postgres', 'events', 0), dump_partition($leader, 'postgres', 'events', 0),
	'... with the same records as the leader');
ok(slurp_file($leader->logfile) =~ /changed the ISR of partition 0 of topic id \d+ from \{[\d,]+\} to \{[\d,]+\}/,
	'the leader logs its ISR changes');

# --- a stopped follower broker leaves the ISR at once -------------------------
$leader->append_conf('postgresql.conf', "commitlog.replica_lag_time_max_ms = 600000\n");
$leader->reload;
my ($down) = grep { $_ != $coord } @followers;
my $down_id = $down->name =~ /(\d)$/ ? $1 : die;
$down->stop;
ok( $coord->poll_query_until('postgres',
		qq{SELECT NOT $down_id = ANY (p.isr) FROM commitlog.cluster_partitions p
		     JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'}),
	'a stopped follower broker leaves the ISR without waiting for the lag time');
$leader->safe_psql('postgres', q{SELECT commitlog.produce('events', 'while down'::bytea, partition => 0)});
$end = written_end($leader);
ok($leader->poll_query_until('postgres', qq{SELECT commitlog.latest_offset('events', 0) = $end}),
	'the leader serves records the remaining ISR holds');
$down->start;
ok( $coord->poll_query_until('postgres',
		qq{SELECT $down_id = ANY (p.isr) FROM commitlog.cluster_partitions p
		     JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'}),
	'restarted, it catches up and rejoins the ISR');
ok($down->poll_query_until('postgres', qq{SELECT commitlog.latest_offset('events', 0) = $end}),
	'... with every record');

# --- a dead leader: its in-sync follower takes over (KIP-101) ----------------
# (a topic led by broker 2 or 3: broker 1 holds the coordinator)
$coord->safe_psql('postgres', q{SELECT commitlog.create_topic('orphan', 1, 2)});
ok( $coord->poll_query_until('postgres',
		q{SELECT p.leader <> 1 FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'orphan'}),
	'orphan is led by a broker that is not the coordinator');
my ($o_leader, $o_follower) = split /\s+/, $coord->safe_psql('postgres',
	q{SELECT p.replicas[1] || ' ' || p.replicas[2] FROM commitlog.cluster_partitions p
	    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'orphan'});
ok( node_of($o_leader)->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM commitlog.partition_list WHERE topic = 'orphan'}),
	'its leader has its copy');
is( node_of($o_leader)->safe_psql('postgres',
		q{SET commitlog.acks = 'all';
		  SELECT count(commitlog.produce('orphan', ('before ' || i)::bytea, partition => 0))
		    FROM generate_series(1, 20) i;
		  SELECT commitlog.await_replication(20000)}),
	"20\n20", 'twenty records acknowledged by both replicas');
node_of($o_leader)->stop;
ok( node_of($o_follower)->poll_query_until('postgres',
		q{SELECT leader = } . $o_follower . q{ FROM commitlog.partition_list WHERE topic = 'orphan'}),
	'the follower is elected leader');
is( $coord->safe_psql('postgres',
		q{SELECT e.leader_epoch || ' ' || e.leader FROM commitlog.cluster_leader_epochs e
		    JOIN commitlog.cluster_topics t ON t.id = e.topic_id WHERE t.name = 'orphan'
		   ORDER BY e.leader_epoch DESC LIMIT 1}),
	"1 $o_follower", '... in leader epoch 1');
ok( node_of($o_follower)->poll_query_until('postgres',
		q{SELECT (commitlog.produce('orphan', 'after'::bytea, partition => 0)).log_offset = 20},
		't'),
	'it takes records once it took over, from offset 20 on');
is( $coord->safe_psql('postgres',
		q{SELECT e.start_offset FROM commitlog.cluster_leader_epochs e
		    JOIN commitlog.cluster_topics t ON t.id = e.topic_id WHERE t.name = 'orphan'
		   AND e.leader_epoch = 1}),
	'20', 'the epoch starts where its log ended');
node_of($o_leader)->start;
ok( node_of($o_leader)->poll_query_until('postgres',
		q{SELECT count(*) = 21 FROM commitlog.fetch('orphan', 0, 0, 100)}),
	'the old leader returns as a follower and gets the new record');
($state, $err) = sql_error(node_of($o_leader), 'postgres',
	q{SELECT commitlog.produce('orphan', 'x'::bytea, partition => 0)});
is($state, 'CL002', 'produce on the old leader: CL002');
like($err, qr/The leader is broker $o_follower/, '... naming the new leader');
ok( $coord->poll_query_until('postgres',
		q{SELECT p.isr = p.replicas FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'orphan'}),
	'it rejoins the ISR of orphan');
ok( $coord->poll_query_until('postgres',
		q{SELECT p.isr = p.replicas FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'}),
	'and of events');
ok( node_of($o_follower)->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM commitlog.replica_followers WHERE ready}),
	'the new leader knows its follower is ready');

# failing back: the first leader leads again and continues at its log end,
# although its offset sequence is elsewhere (a restarted broker's sequence
# starts a block further on).  Before that, a rolled-back tail: the high
# watermark does not pass it while no record follows (a new leader's log
# could end before it and fill it, hiding records from consumers that had
# passed the gap), so the new epoch may start inside it.
my ($l_id, $f_id) = ($o_follower, $o_leader);
node_of($l_id)->safe_psql('postgres',
	q{BEGIN; SELECT commitlog.produce('orphan', 'gone'::bytea, partition => 0) FROM generate_series(1, 5);
	  ROLLBACK});
ok( node_of($l_id)->poll_query_until('postgres',
		qq{SELECT EXISTS (SELECT 1 FROM commitlog.replica_marks m
		                    JOIN pg_replication_slots s ON s.slot_name = 'commitlog_b${l_id}_to_b${f_id}'
		                   WHERE m.stable_offset = 26 AND m.lsn <= s.confirmed_flush_lsn)}),
	'the follower has applied everything below offset 26, the rolled-back offsets 21 to 25 included');
is(node_of($f_id)->safe_psql('postgres', q{SELECT commitlog.latest_offset('orphan', 0)}),
	'21', '... and serves up to 21: the high watermark stops before the trailing gap');
node_of($o_follower)->stop;
ok( node_of($o_leader)->poll_query_until('postgres',
		q{SELECT (commitlog.produce('orphan', 'back'::bytea, partition => 0)).log_offset = 21},
		't'),
	'the first leader, elected again, continues at offset 21');
is( $coord->safe_psql('postgres',
		q{SELECT e.leader_epoch || ' ' || e.start_offset FROM commitlog.cluster_leader_epochs e
		    JOIN commitlog.cluster_topics t ON t.id = e.topic_id WHERE t.name = 'orphan'
		   ORDER BY e.leader_epoch DESC LIMIT 1}),
	'2 21', '... in leader epoch 2, which starts there');
node_of($o_follower)->start;
ok( node_of($o_follower)->poll_query_until('postgres',
		q{SELECT count(*) = 22 FROM commitlog.fetch('orphan', 0, 0, 100)}),
	'the second leader returns as a follower with all 22 records');
$coord->safe_psql('postgres', q{SELECT commitlog.drop_topic('orphan')});
for my $id ($o_leader, $o_follower)
{
	ok( node_of($id)->poll_query_until('postgres',
			q{SELECT NOT EXISTS (SELECT 1 FROM commitlog.replica_epochs)
			     AND NOT EXISTS (SELECT 1 FROM commitlog.replica_followers)}),
		"dropped, broker $id forgets its epochs and followers of orphan");
}

# --- cluster_alter_isr is fenced by leader and epoch --------------------------
my $tid = $coord->safe_psql('postgres', q{SELECT id FROM commitlog.cluster_topics WHERE name = 'events'});
($state, $err) = sql_error($coord, 'postgres',
	"SELECT commitlog.cluster_alter_isr($tid, 0, $leader_id, 7, ARRAY[$leader_id])");
is($state, 'CL004', 'cluster_alter_isr with a wrong leader epoch: CL004');
like($err, qr/broker $leader_id is not the leader of partition 0 of topic id $tid at leader epoch 7/,
	'... saying so');
($state) = sql_error($coord, 'postgres',
	"SELECT commitlog.cluster_alter_isr($tid, 0, $other_id, 0, ARRAY[$other_id])");
is($state, 'CL004', 'cluster_alter_isr from a follower: CL004');
is(coord_isr(), $coord->safe_psql('postgres',
		q{SELECT p.replicas::text FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'events'}),
	'... and the ISR is unchanged');

$_->stop for @nodes;
done_testing();
