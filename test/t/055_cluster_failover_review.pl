# Leader failover corner cases found in review (issue 7): three brokers and
# a coordinator-only server, as in 054_cluster_failover.pl.
#
# 1. Two failovers in a row, the second winner elected before it re-pointed
#    to the first: topic "div" (1 partition, 3 replicas) led by broker L with
#    followers X and S.  X stops applying, L writes an unacknowledged tail
#    (acks=1) that only S receives; S's worker is frozen (SIGSTOP: still
#    alive for the coordinator, still in the ISR) and its last report says
#    it holds less than X (a stale report).  L dies: X is elected (epoch
#    e+1) and writes records of its own (acks=1) at the offsets of L's tail.
#    X dies; S, still at epoch e with L's tail, is elected (epoch e+2) and
#    wakes up.  S must not count L's tail in its log end: X's epoch
#    overwrote those offsets, and X, returning, keeps everything below S's
#    start offset.  Afterwards every replica holds the same rows.
# 2. A topic dropped while its leader is dead (below).
# 3. A leader dying during a follower's table copy from it (below).
# 4. Reads on a follower before the new leader has taken over (below).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $coord = commitlog_node('coordinator', no_start => 1,
	extra_conf => "commitlog.worker_naptime = 100\ncommitlog.launcher_naptime = 200\n"
	  . "commitlog.cluster = 'coordinator'\n");
$coord->start;
$coord->safe_psql('postgres', 'CREATE EXTENSION pg_commitlog');

# a long lag time: a follower that stops applying stays in the ISR
my @brokers = commitlog_brokers(3, coordinator => $coord,
	extra_conf => "wal_receiver_status_interval = 1\n"
	  . "commitlog.replica_lag_time_max_ms = 600000\n");
sub node_of { return $brokers[ $_[0] - 1 ]; }
sub id_of { return $_[0]->name =~ /^broker(\d)$/ ? $1 : die "not a broker: " . $_[0]->name; }

sub wait_until
{
	my ($node, $sql, $expected) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = 60;
	return $node->poll_query_until('postgres', $sql, $expected);
}

# FROM clause selecting partition 0 of topic div on the coordinator (as p)
my $part = part_of('div');

# leader and leader epoch of the partition on the coordinator
sub state
{
	return split /\|/, $coord->safe_psql('postgres', "SELECT coalesce(p.leader, 0) || '|' || p.leader_epoch $part");
}

# true once $id leads partition 0 of $topic (default div) at an epoch above
# $epoch and recorded its start
sub led_by_sql
{
	my ($id, $epoch, $topic) = @_;
	$topic //= 'div';
	return qq{SELECT p.leader = $id AND p.leader_epoch > $epoch
	             AND EXISTS (SELECT 1 FROM commitlog.cluster_leader_epochs e
	                          WHERE e.topic_id = p.topic_id AND e.partition = p.partition
	                            AND e.leader_epoch = p.leader_epoch AND e.start_offset IS NOT NULL) }
	  . part_of($topic);
}

# FROM clause selecting partition 0 of $topic on the coordinator (as p)
sub part_of
{
	my ($topic) = @_;
	return qq{FROM commitlog.cluster_partitions p JOIN commitlog.cluster_topics t ON t.id = p.topic_id
	           WHERE t.name = '$topic' AND p.partition = 0};
}

# Create $topic (1 partition, 3 replicas) and wait for its leader and full
# ISR; returns (its part_of clause, leader, leader epoch).
sub new_topic
{
	my ($what, $topic) = @_;
	my $part = part_of($topic);
	$brokers[0]->safe_psql('postgres', "SELECT commitlog.create_topic('$topic', 1, 3)");
	ok(wait_until($coord, "SELECT p.leader IS NOT NULL AND cardinality(p.isr) = 3 $part"),
		"$what: $topic has a leader and three in-sync replicas");
	return ($part, split /\|/, $coord->safe_psql('postgres', "SELECT p.leader || '|' || p.leader_epoch $part"));
}

# The broker that is the controller of the brokers' cluster
sub controller_id
{
	return $coord->safe_psql('postgres', q{SELECT c.broker_id FROM commitlog.controller c
	   JOIN commitlog.controller_state s ON s.pid = c.pid AND s.epoch = c.epoch
	   JOIN commitlog.clusters cl ON cl.id = s.cluster_id WHERE cl.name = 'default'});
}

sub raw_rows
{
	my ($node) = @_;
	my $cols = RECORD_COLUMNS;
	return $node->safe_psql('postgres', qq{SELECT $cols FROM commitlog_topics.div ORDER BY log_offset});
}

sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_commitlog worker' AND datname = 'postgres'});
}

ok(wait_until($coord, q{SELECT count(*) = 3 FROM commitlog.brokers WHERE alive AND cluster = 'default'}),
	'three brokers are alive');
$brokers[0]->safe_psql('postgres', q{SELECT commitlog.create_topic('div', 1, 3, '{"min.insync.replicas": 2}')});
ok( wait_until($coord, qq{SELECT p.leader IS NOT NULL AND cardinality(p.isr) = 3 $part}),
	'div has a leader and three in-sync replicas');
my ($l_id, $epoch0) = state();
my $l = node_of($l_id);
ok(wait_until($_, q{SELECT leader IS NOT NULL AND cardinality(isr) = 3 FROM commitlog.partition_list WHERE topic = 'div'}),
	$_->name . ' knows the leader') for @brokers;
ok( wait_until($coord, q{SELECT count(*) = 1 FROM commitlog.controller c
	   JOIN commitlog.controller_state s ON s.pid = c.pid AND s.epoch = c.epoch
	   JOIN commitlog.clusters cl ON cl.id = s.cluster_id WHERE cl.name = 'default'}),
	'the cluster has a controller');
my $ctl_id = controller_id();
# S (frozen later) must not be the controller: someone has to elect meanwhile
my ($s, $x) = sort { (id_of($a) == $ctl_id) <=> (id_of($b) == $ctl_id) } grep { $_ != $l } @brokers;
my ($s_id, $x_id) = (id_of($s), id_of($x));
diag "leader $l_id (epoch $epoch0), controller $ctl_id, frozen follower $s_id, next leader $x_id";

# records acknowledged by every replica
my $out = $l->safe_psql('postgres', q{SET commitlog.acks = 'all';
	SELECT count(*) FROM commitlog.produce_batch('div', ARRAY['a-0', 'a-1', 'a-2']::bytea[], partition => 0);
	SELECT commitlog.await_replication(30000);});
is($out, "3\n3", 'three records produced with acks=all and acknowledged');

# X stops applying; S's worker freezes with a stale report; L writes a tail only S receives
my $sub_x = "commitlog_b${l_id}_to_b$x_id";
$x->safe_psql('postgres', "ALTER SUBSCRIPTION $sub_x DISABLE");
ok(wait_until($l, "SELECT count(*) = 0 FROM pg_stat_replication WHERE application_name = '$sub_x'"),
	'X stopped applying');
my $s_worker = worker_pid($s);
ok($s_worker =~ /^\d+$/, "S's worker is pid $s_worker");
kill 'STOP', $s_worker;
$coord->safe_psql('postgres', "UPDATE commitlog.cluster_replica_state SET log_end = 0 WHERE broker_id = $s_id");
my @tail = split /\n/, $l->safe_psql('postgres',
	q{SELECT log_offset FROM commitlog.produce_batch('div', ARRAY['tail-0', 'tail-1', 'tail-2']::bytea[], partition => 0)});
ok(wait_until($s, q{SELECT count(*) = 3 FROM commitlog_topics.div WHERE value LIKE 'tail-%'}),
	"S received L's unacknowledged tail at offsets @tail");

# L dies: X is elected and writes at the tail's offsets
kill9_postmaster($l);
ok(wait_until($coord, led_by_sql($x_id, $epoch0)), "X (broker $x_id) leads after L died");
my (undef, $epoch1) = state();
ok( wait_until($x, q{SELECT commitlog.latest_offset('div', 0) >= 0 AND EXISTS (SELECT 1
	   FROM commitlog.replica_epochs e JOIN commitlog.topics t ON t.id = e.topic_id
	  WHERE t.name = 'div' AND e.leader_epoch = } . $epoch1 . ')'),
	'X took the partition over');
my @mine = split /\n/, $x->safe_psql('postgres',
	q{SELECT log_offset FROM commitlog.produce_batch('div', ARRAY['x-0', 'x-1', 'x-2', 'x-3', 'x-4']::bytea[], partition => 0)});
is(scalar(@mine), 5, "X wrote five records with acks=1 at offsets @mine");

# X dies; L returns (and elects, as controller); S, still at epoch 0, is elected
kill9_postmaster($x);
$l->start;
ok( wait_until($coord, qq{SELECT p.leader = $s_id AND p.leader_epoch > $epoch1 $part}),
	"S (broker $s_id) is elected after X died");
kill 'CONT', $s_worker;
ok(wait_until($coord, led_by_sql($s_id, $epoch1)), 'S took the partition over');
$x->start;

ok( wait_until($coord, qq{SELECT p.leader = $s_id AND cardinality(p.isr) = 3 $part}),
	'all three replicas are in sync again');
my $end = $s->safe_psql('postgres', q{SELECT coalesce(max(log_offset) + 1, 0) FROM commitlog_topics.div});
for my $node ($l, $x)
{
	ok( wait_until($node,
			"SELECT (SELECT coalesce(max(log_offset) + 1, 0) FROM commitlog_topics.div) = $end "
			  . "AND NOT EXISTS (SELECT 1 FROM pg_subscription_rel r WHERE r.srsubstate <> 'r')"),
		$node->name . " caught up with S's log end $end");
}
my $expected = raw_rows($s);
is(raw_rows($x), $expected, 'X holds exactly the rows of S');
is(raw_rows($l), $expected, 'L holds exactly the rows of S');
is($s->safe_psql('postgres', q{SELECT string_agg(convert_from(value, 'UTF8'), ' ' ORDER BY log_offset)
	FROM commitlog_topics.div WHERE log_offset < 3}), 'a-0 a-1 a-2', 'the acknowledged records are kept');

# --- 2. a topic being dropped while its leader is dead ---------------------------
# Topics "keep" (1 partition) and "gone" (3 partitions, so one is led by
# keep's leader K), all on three replicas.  K's worker freezes, "gone" is
# dropped, K dies.  "gone" is not failed over (it is being dropped), so its
# partition keeps the dead K as leader; the followers must still let go of
# their subscription to K, or "keep" (whose table that subscription lists,
# and which nobody can refresh while K is down) is never taken over.
{
	my $what = 'dropped topic, dead leader';
	$s->safe_psql('postgres', q{SELECT commitlog.create_topic('keep', 1, 3, '{"min.insync.replicas": 2}');
		SELECT commitlog.create_topic('gone', 3, 3)});
	my $keep = part_of('keep');
	ok( wait_until($coord, q{SELECT count(*) = 4 AND bool_and(p.leader IS NOT NULL AND cardinality(p.isr) = 3)
		FROM commitlog.cluster_partitions p JOIN commitlog.cluster_topics t ON t.id = p.topic_id
		WHERE t.name IN ('keep', 'gone')}),
		"$what: both topics have leaders and full ISRs");
	for my $node (@brokers)
	{
		ok( wait_until($node, q{SELECT count(*) = 4 FROM commitlog.partition_list WHERE topic IN ('keep', 'gone')
			AND leader IS NOT NULL AND cardinality(isr) = 3}),
			"$what: " . $node->name . ' hosts both topics');
	}
	my ($k_id, $k_epoch) = split /\|/, $coord->safe_psql('postgres', "SELECT p.leader || '|' || p.leader_epoch $keep");
	my $k = node_of($k_id);
	my @others = grep { $_ != $k } @brokers;
	ok( wait_until($_, "SELECT count(*) = 2 FROM commitlog.partition_list WHERE topic IN ('keep', 'gone') "
			  . "AND leader = $k_id AND EXISTS (SELECT 1 FROM pg_subscription WHERE subname = 'commitlog_b${k_id}_to_b"
			  . id_of($_) . "') AND NOT EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srsubstate <> 'r')"),
		"$what: " . $_->name . " follows keep and a partition of gone from broker $k_id") for @others;
	my $k_worker = worker_pid($k);
	kill 'STOP', $k_worker;
	$others[0]->safe_psql('postgres', q{SELECT commitlog.drop_topic('gone')});
	ok( wait_until($_, q{SELECT bool_and(deleting) FROM commitlog.cluster_assignments WHERE topic = 'gone'}),
		"$what: " . $_->name . ' knows gone is being dropped') for @others;
	kill 'KILL', $k_worker;
	kill9_postmaster($k);
	my $took = wait_until($coord, qq{SELECT p.leader <> $k_id AND p.leader_epoch > $k_epoch
		AND EXISTS (SELECT 1 FROM commitlog.cluster_leader_epochs e WHERE e.topic_id = p.topic_id
		  AND e.partition = p.partition AND e.leader_epoch = p.leader_epoch AND e.start_offset IS NOT NULL) $keep});
	ok($took, "$what: a follower takes keep over");
	my $n_id = $coord->safe_psql('postgres', "SELECT p.leader $keep");
	ok( $took && wait_until(node_of($n_id), q{SELECT count(*) = 1 FROM commitlog.produce('keep', 'k'::bytea, partition => 0)}),
		"$what: the new leader takes records");
	$k->start;
	ok(wait_until($coord, q{SELECT NOT EXISTS (SELECT 1 FROM commitlog.cluster_topics WHERE name = 'gone')}),
		"$what: gone is dropped once its leader is back");
	ok( wait_until($_, q{SELECT to_regclass('commitlog_topics.gone') IS NULL
		AND NOT EXISTS (SELECT 1 FROM commitlog.replica_orphan_slots)
		AND NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'commitlog\_%' AND NOT active)}),
		"$what: " . $_->name . ' has no copy of gone and no slot left') for @brokers;
}

# --- 3. a leader dies while a follower's table copy from it is running ----------
# Topic "sync" led by T, followers N and F.  F stops applying; T writes
# records N receives; T dies and N is elected.  F re-points and N publishes
# the partition to it with a row filter: F's table sync creates its own slot
# on N and copies, but the copy waits (a row F holds uncommitted at the same
# key).  N dies meanwhile; F is elected and drops its subscription to N
# without reaching N (slot_name = NONE).  The table sync's slot must not be
# left on N for ever (holding WAL): F drops it, as its pair slot, once N
# answers again.
{
	my $what = 'table copy cut short';
	my ($sync, $t_id, $t_epoch) = new_topic($what, 'sync');
	my $t = node_of($t_id);
	my ($n, $f) = grep { $_ != $t } @brokers;
	my ($n_id, $f_id) = (id_of($n), id_of($f));
	my $rel = $coord->safe_psql('postgres', q{SELECT format('t%s$p0', id) FROM commitlog.cluster_topics WHERE name = 'sync'});
	ok( wait_until($_, "SELECT EXISTS (SELECT 1 FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid "
			  . "WHERE c.relname = '$rel' AND r.srsubstate = 'r')"),
		"$what: " . $_->name . ' follows sync') for ($n, $f);
	my $sub_f = "commitlog_b${t_id}_to_b$f_id";
	$f->safe_psql('postgres', "ALTER SUBSCRIPTION $sub_f DISABLE");
	ok(wait_until($t, "SELECT count(*) = 0 FROM pg_stat_replication WHERE application_name = '$sub_f'"),
		"$what: F (broker $f_id) stopped applying");
	$t->safe_psql('postgres', q{SELECT count(*) FROM commitlog.produce_batch('sync', ARRAY['s-0', 's-1', 's-2']::bytea[], partition => 0)});
	ok( wait_until($coord, "SELECT s.log_end = 3 FROM commitlog.cluster_replica_state s JOIN commitlog.cluster_topics t "
			  . "ON t.id = s.topic_id WHERE t.name = 'sync' AND s.broker_id = $n_id"),
		"$what: N (broker $n_id) holds T's records and said so");

	# F holds offset 0 uncommitted: a copy of T's records into F waits for it
	my $blocker = $f->background_psql('postgres');
	$blocker->query_safe(q{BEGIN});
	$blocker->query_safe(q{SET LOCAL commitlog.internal_maintenance = on});
	$blocker->query_safe(q{INSERT INTO commitlog_topics.sync (partition, log_offset, "timestamp", value) VALUES (0, 0, now(), 'blocker')});

	kill9_postmaster($t);
	ok(wait_until($coord, led_by_sql($n_id, $t_epoch, 'sync')),
		"$what: N leads after T died");
	ok( wait_until($n, q{SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pg\_%\_sync\_%')}),
		"$what: F's table sync holds a slot on N");
	my (undef, $n_epoch) = split /\|/, $coord->safe_psql('postgres', "SELECT p.leader || '|' || p.leader_epoch $sync");
	kill9_postmaster($n);
	quit_quietly($blocker);
	ok( wait_until($coord, "SELECT p.leader = $f_id AND p.leader_epoch > $n_epoch $sync"),
		"$what: F is elected after N died");
	ok( wait_until($f, "SELECT NOT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = 'commitlog_b${n_id}_to_b$f_id')"),
		"$what: F dropped its subscription to N");
	$t->start;
	$n->start;
	ok( wait_until($coord, "SELECT p.leader = $f_id AND cardinality(p.isr) = 3 $sync"),
		"$what: T and N are back in sync with F");
	for my $node (@brokers)
	{
		ok( wait_until($node, q{SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE NOT active)
			AND NOT EXISTS (SELECT 1 FROM commitlog.replica_orphan_slots)}),
			"$what: " . $node->name . ' has no unused replication slot and no orphan left to drop')
		  or diag $node->safe_psql('postgres', 'SELECT slot_name, active FROM pg_replication_slots');
	}
}

# --- 4. reads on a follower while the new leader has not taken over yet ----------
# Topic "reads" led by R; five records acknowledged by all.  The follower N
# is elected but its worker is frozen before it takes over; the other
# follower F already knows N leads.  F must go on serving what it served
# (everything below the high watermark it knew), not fall back to nothing:
# a consumer there would get "offset out of range" and reset.
{
	my $what = 'reads during a take-over';
	my ($reads, $r_id, $r_epoch) = new_topic($what, 'reads');
	my $r = node_of($r_id);
	my $ctl = controller_id();
	my ($n, $f) = sort { (id_of($a) == $ctl) <=> (id_of($b) == $ctl) } grep { $_ != $r } @brokers;
	my ($n_id, $f_id) = (id_of($n), id_of($f));
	ok(wait_until($_, q{SELECT cardinality(isr) = 3 FROM commitlog.partition_list WHERE topic = 'reads'}),
		"$what: " . $_->name . ' hosts reads') for @brokers;
	my $out = $r->safe_psql('postgres', q{SET commitlog.acks = 'all';
		SELECT count(*) FROM commitlog.produce_batch('reads', ARRAY['r-0', 'r-1', 'r-2', 'r-3', 'r-4']::bytea[], partition => 0);
		SELECT commitlog.await_replication(30000);});
	is($out, "5\n5", "$what: five records acknowledged");
	ok(wait_until($f, q{SELECT commitlog.latest_offset('reads', 0) = 5}), "$what: F serves them");

	my $n_worker = worker_pid($n);
	kill 'STOP', $n_worker;
	$coord->safe_psql('postgres', "UPDATE commitlog.cluster_replica_state s SET log_end = 1000 "
		  . "FROM commitlog.cluster_topics t WHERE t.id = s.topic_id AND t.name = 'reads' AND s.broker_id = $n_id");
	kill9_postmaster($r);
	ok(wait_until($coord, "SELECT p.leader = $n_id $reads"), "$what: N (broker $n_id) is elected");
	ok(wait_until($f, "SELECT leader = $n_id FROM commitlog.partition_list WHERE topic = 'reads'"),
		"$what: F (broker $f_id) knows N leads");
	is($f->safe_psql('postgres', q{SELECT commitlog.latest_offset('reads', 0)}), '5',
		"$what: F still serves up to offset 5 before N took over");
	my ($rc, $got, $err) = $f->psql('postgres',
		q{SELECT string_agg(convert_from(value, 'UTF8'), ' ' ORDER BY log_offset) FROM commitlog.fetch('reads', 0, 3)});
	is($got, 'r-3 r-4', "$what: ... and a consumer at offset 3 reads on") or diag $err;
	kill 'CONT', $n_worker;
	ok(wait_until($coord, led_by_sql($n_id, $r_epoch, 'reads')), "$what: N takes over");
	$r->start;
	ok(wait_until($coord, "SELECT p.leader = $n_id AND cardinality(p.isr) = 3 $reads"),
		"$what: all three replicas are in sync again");
	ok(wait_until($f, q{SELECT commitlog.latest_offset('reads', 0) >= 5}), "$what: F serves the records");
}

$_->stop for @brokers;
$coord->stop;
done_testing();
