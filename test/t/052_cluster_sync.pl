# Cluster mode, the edges of replication setup (src/cluster, DESIGN 9):
# two brokers, the first also the coordinator.
#
# - a leader drops an unused slot of a pair that shares no partition any
#   more (left by a follower that dropped its subscription while the leader
#   was unreachable): a slot keeps WAL forever;
# - a follower subscribes even when an orphaned slot of its pair's name is
#   on the leader (CREATE SUBSCRIPTION would fail on it every cycle);
# - while the subscription still copies the partition, the watermark can be
#   ahead of the records here: the follower serves nothing below it until
#   the copy is done (fetch would skip the missing records as gaps);
# - partition_list works on a broker that hosts only some partitions;
# - produce checks leadership once per partition and transaction;
# - create_topic waiting for an unresponsive coordinator can be cancelled.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my @nodes = commitlog_brokers(2,
	extra_conf => "wal_retrieve_retry_interval = '200ms'\n"
	  . "commitlog.replica_lag_time_max_ms = 2000\n");
my ($b1, $b2) = @nodes;
ok($b1->poll_query_until('postgres', 'SELECT count(*) = 2 FROM commitlog.brokers WHERE alive'),
	'two brokers registered and alive');

# --- a leader drops the orphaned slot of a pair it no longer serves ---------
$b1->safe_psql('postgres',
	q{SELECT pg_create_logical_replication_slot('commitlog_b1_to_b2', 'pgoutput')});
ok( $b1->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = 'commitlog_b1_to_b2'}),
	'an unused slot of a pair with no partition in common is dropped');
# (the steps below do not depend on that one)
$b1->safe_psql('postgres',
	q{SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
	   WHERE slot_name = 'commitlog_b1_to_b2'});

# --- subscribing past an orphaned slot, and the copy window -----------------
# Hold CREATE SUBSCRIPTION on both brokers (it locks pg_subscription first)
# until the scene is set.
my @holds;
for my $node (@nodes)
{
	my $h = $node->background_psql('postgres');
	$h->query_safe('BEGIN; LOCK TABLE pg_catalog.pg_subscription IN SHARE MODE');
	push @holds, $h;
}
$b2->safe_psql('postgres', q{SELECT commitlog.create_topic('sync', 1, 2)});
ok( $b1->poll_query_until('postgres',
		q{SELECT p.leader IS NOT NULL FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'sync'}),
	'the controller assigned the replicas');
my $leader_id = $b1->safe_psql('postgres',
	q{SELECT p.leader FROM commitlog.cluster_partitions p
	    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'sync'});
my $follower_id = 3 - $leader_id;
my ($leader, $follower) = ($nodes[ $leader_id - 1 ], $nodes[ $follower_id - 1 ]);
my $pair = "commitlog_b${leader_id}_to_b${follower_id}";
my $topic_id = $b1->safe_psql('postgres', q{SELECT id FROM commitlog.cluster_topics WHERE name = 'sync'});
my $table = "commitlog_topics.\"t${topic_id}\$p0\"";

ok($follower->poll_query_until('postgres', q{SELECT count(*) = 1 FROM commitlog.topics WHERE name = 'sync'}),
	'the follower has its copy of the topic');
ok( $leader->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
		    WHERE p.pubname = '$pair' AND r.prrelid = '$table'::regclass}),
	'the leader publishes the partition to the follower');
$leader->safe_psql('postgres', qq{SELECT pg_create_logical_replication_slot('$pair', 'pgoutput')});
$leader->safe_psql('postgres',
	q{SELECT count(*) FROM commitlog.produce_batch('sync',
	    (SELECT array_agg(convert_to('r' || i, 'UTF8')) FROM generate_series(1, 5) i), partition => 0)});
ok( $leader->poll_query_until('postgres',
		qq{SELECT stable_offset = 5 FROM commitlog.replica_watermarks
		    WHERE leader_id = $leader_id AND topic_id = $topic_id AND partition = 0}),
	'the leader\'s watermark is 5');
# A follower still copying the partition does not count for the high
# watermark (its slot confirms positions past records it lacks): the
# watermark passed the 5 records only once the follower had left the ISR.
is( $b1->safe_psql('postgres',
		q{SELECT p.isr::text FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'sync'}),
	"{$leader_id}", '... only after the follower, which has not copied them, left the ISR');

# the follower's copy of the partition cannot take rows yet
my $block = $follower->background_psql('postgres');
$block->query_safe("BEGIN; LOCK TABLE $table IN SHARE MODE");
$_->query_safe('COMMIT') for @holds;

ok( $follower->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
		    WHERE s.subname = '$pair' AND r.srrelid = 'commitlog.replica_watermarks'::regclass
		      AND r.srsubstate = 'r'}),
	'the follower subscribed in spite of the orphaned slot; its watermarks are copied');
ok( $follower->poll_query_until('postgres',
		qq{SELECT stable_offset = 5 FROM commitlog.replica_watermarks
		    WHERE leader_id = $leader_id AND topic_id = $topic_id AND partition = 0}),
	'the follower holds the leader\'s watermark 5');
is( $follower->safe_psql('postgres',
		qq{SELECT (SELECT srsubstate::text FROM pg_subscription_rel WHERE srrelid = '$table'::regclass)
		       || ' ' || commitlog.latest_offset('sync', 0)
		       || ' ' || (SELECT count(*) FROM commitlog.fetch('sync', 0, 0, 100))}),
	'd 0 0',
	'while the partition is still being copied, the follower serves nothing');

$block->query_safe('COMMIT');
$block->quit;
$_->quit for @holds;
ok( $follower->poll_query_until('postgres',
		q{SELECT commitlog.latest_offset('sync', 0) = 5
		     AND (SELECT count(*) FROM commitlog.fetch('sync', 0, 0, 100)) = 5}),
	'once the copy is done, the follower serves the 5 records');

$b2->safe_psql('postgres', q{SELECT commitlog.drop_topic('sync')});
ok( $b1->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM commitlog.cluster_topics WHERE name = 'sync'}),
	'the topic is dropped everywhere');
for my $node (@nodes)
{
	ok( $node->poll_query_until('postgres',
			q{SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'commitlog%')
			       + (SELECT count(*) FROM pg_subscription) = 0}),
		$node->name . ' keeps no subscription and no slot');
}

# --- the leader check of produce costs one lookup per partition ------------
# Keyed records of a batch alternate between partitions; the check is
# cached per transaction and partition, not only for the last one.
$b2->safe_psql('postgres', q{SELECT commitlog.create_topic('many', 4, 1)});
ok( $b1->poll_query_until('postgres',
		q{SELECT count(*) = 4 FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id
		   WHERE t.name = 'many' AND p.leader IS NOT NULL}),
	'the controller assigned the 4 partitions of many');
my ($lead, $other) = split /\|/, $b1->safe_psql('postgres',
	q{SELECT p.leader, string_agg(p.partition::text, ',') FROM commitlog.cluster_partitions p
	    JOIN commitlog.cluster_topics t ON t.id = p.topic_id
	   WHERE t.name = 'many' AND p.leader = (SELECT leader FROM commitlog.cluster_partitions
	                                           WHERE topic_id = t.id AND partition = 0)
	   GROUP BY p.leader});
my $many_leader = $nodes[ $lead - 1 ];
ok( $many_leader->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM commitlog.topics WHERE name = 'many'}),
	'the leader of partition 0 has its copy of many');
is( $many_leader->safe_psql('postgres',
		qq{SELECT string_agg(partition || ':' || COALESCE(latest_offset::text, '-'), ' ' ORDER BY partition)
		     FROM commitlog.partition_list WHERE topic = 'many'}),
	join(' ', map { my $p = $_; (grep { $_ == $p } split /,/, $other) ? "$p:0" : "$p:-" } 0 .. 3),
	'partition_list on a broker hosting some partitions: no offsets for the others, no error');
is( $many_leader->safe_psql('postgres', qq{
	BEGIN;
	SELECT count(*) > 100 FROM commitlog.produce_batch('many',
	    (SELECT array_agg(k) FROM (SELECT convert_to('k' || i, 'UTF8') k FROM generate_series(1, 400) i) ks
	      WHERE commitlog.partition_for_key('many', k) IN ($other)),
	    (SELECT array_agg(k) FROM (SELECT convert_to('k' || i, 'UTF8') k FROM generate_series(1, 400) i) ks
	      WHERE commitlog.partition_for_key('many', k) IN ($other)));
	SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) <= 8 FROM pg_stat_xact_user_tables
	 WHERE relid = 'commitlog.cluster_assignments'::regclass;
	COMMIT;}),
	"t\nt", 'a keyed batch over several led partitions checks each partition once');
$b2->safe_psql('postgres', q{SELECT commitlog.drop_topic('many')});

# --- create_topic while the coordinator does not answer ----------------------
# The coordinator's call waits on a lock there; the caller's
# statement_timeout still cancels it, here and on the coordinator.
my $hold = $b1->background_psql('postgres');
$hold->query_safe('BEGIN; LOCK TABLE commitlog.clusters IN EXCLUSIVE MODE');
my $t0 = time;
my ($state, $err) = sql_error($b2, 'postgres',
	q{SET statement_timeout = '1s'; SELECT commitlog.create_topic('slow', 1, 1)});
is($state, '57014', 'create_topic waiting for the coordinator obeys statement_timeout');
ok(time - $t0 < 10, '... at once, not after the coordinator\'s own timeout') or diag($err);
ok( $b1->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity
		   WHERE application_name = 'pg_commitlog topic ddl' AND state = 'active'}),
	'... and the call is cancelled on the coordinator');
$hold->query_safe('COMMIT');
$hold->quit;
is($b1->safe_psql('postgres', q{SELECT count(*) FROM commitlog.cluster_topics WHERE name = 'slow'}),
	'0', '... which did not create the topic');

done_testing();
