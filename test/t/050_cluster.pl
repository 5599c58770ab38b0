# Cluster mode (DESIGN 9, src/cluster): three brokers on one machine, the
# first also the coordinator, replicas kept in step by logical replication.
#
# - every broker registers and is alive; one controller for the cluster;
# - create_topic with replication_factor 3 on broker 2: the controller
#   assigns replicas and a leader, every broker materializes the topic,
#   followers subscribe to the leader; replication_factor 4 is refused;
# - records produced on the leader appear on both followers with the same
#   offsets, keys, values, headers and timestamps, including records in
#   segments the leader created later (followers create them first);
# - produce on a follower: CL002 naming the leader and its conninfo;
# - a follower serves reads only below the leader's stable offset, even
#   when a later record has already arrived;
# - a second topic's leader lands on another broker;
# - drop_topic removes the copies, publications, subscriptions and slots
#   everywhere.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(gettimeofday tv_interval);
use CommitlogTAP;

# broker 1 is also the coordinator: its own database "postgres"
my @nodes = commitlog_brokers(3);
my ($b1, $b2, $b3) = @nodes;
sub node_of { return $nodes[ $_[0] - 1 ]; }

# --- brokers and controller -------------------------------------------------
ok($b1->poll_query_until('postgres', 'SELECT count(*) = 3 FROM commitlog.brokers WHERE alive'),
	'three brokers registered and alive on the coordinator');
ok($b1->poll_query_until('postgres', 'SELECT count(*) = 1 FROM commitlog.controller'),
	'one controller for the cluster');
is($b1->safe_psql('postgres', 'SELECT count(*) FROM commitlog.brokers WHERE is_controller'),
	'1', 'commitlog.brokers marks one controller');
ok($b2->poll_query_until('postgres', 'SELECT count(*) = 3 FROM commitlog.brokers WHERE alive'),
	'a broker that is not the coordinator shows the cluster\'s brokers too');

# --- create_topic on broker 2 -----------------------------------------------
my ($state, $err) = sql_error($b2, 'postgres', q{SELECT commitlog.create_topic('big', 1, 4)});
is($state, '22023', 'replication_factor 4 with 3 live brokers is refused (22023)');
like($err, qr/replication factor 4 is larger than the number of available brokers \(3\)/,
	'... with a clear message');
like($err, qr/HINT:\s+Start more brokers, or use a smaller replication_factor/, '... and a hint');

$b2->safe_psql('postgres',
	q{SELECT commitlog.create_topic('orders', 1, 3, '{"segment.bytes": 14}')});
($state) = sql_error($b3, 'postgres', q{SELECT commitlog.create_topic('orders', 1, 3)});
is($state, '42710', 'the topic exists in the whole cluster at once');

for my $node (@nodes)
{
	ok( $node->poll_query_until('postgres',
			q{SELECT count(*) = 1 FROM commitlog.partition_list
			   WHERE topic = 'orders' AND cardinality(replicas) = 3 AND leader = replicas[1]
			     AND isr = replicas}),
		$node->name . ' materialized orders with its leader, replicas and isr');
}
my $leader_id = $b1->safe_psql('postgres',
	q{SELECT p.leader FROM commitlog.cluster_partitions p
	    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'orders'});
my $leader = node_of($leader_id);
my @followers = grep { $_ != $leader } @nodes;
my @follower_ids = map { $_->name =~ /(\d)$/ } @followers;
is( $b3->safe_psql('postgres',
		q{SELECT leader || ' ' || replicas::text FROM commitlog.partition_list WHERE topic = 'orders'}),
	$b1->safe_psql('postgres',
		q{SELECT leader || ' ' || replicas::text FROM commitlog.partition_list WHERE topic = 'orders'}),
	'every broker shows the same assignment');

for my $f (@followers)
{
	ok( $f->poll_query_until('postgres',
			qq{SELECT count(*) = 2 FROM pg_subscription_rel r
			     JOIN pg_subscription s ON s.oid = r.srsubid
			    WHERE s.subname = 'commitlog_b${leader_id}_to_b' || current_setting('commitlog.broker_id')
			      AND r.srsubstate = 'r'}),
		$f->name . ' subscribes to the leader: the partition and the watermarks are ready');
}

# --- records flow to the followers ------------------------------------------
$leader->safe_psql('postgres', q{
	SELECT commitlog.produce('orders', 'v0'::bytea, key => 'k0', partition => 0,
	                         headers => ARRAY[ROW('h', 'x')::commitlog.header],
	                         ts => '2024-01-02 03:04:05.678901+00');
	SELECT commitlog.produce('orders', 'v1'::bytea, partition => 0);
	SELECT commitlog.produce('orders', NULL::bytea, key => 'tomb', partition => 0);
	SELECT count(*) FROM commitlog.produce_batch('orders',
	    (SELECT array_agg(convert_to('batch ' || i, 'UTF8')) FROM generate_series(1, 2500) i),
	    partition => 0);
});
# the leader serves up to the high watermark: once both followers hold them
ok($leader->poll_query_until('postgres', q{SELECT commitlog.latest_offset('orders', 0) = 2503}),
	'the leader holds 2503 records');
my $latest = 2503;
ok($leader->safe_psql('postgres',
		q{SELECT count(*) > 2 FROM commitlog.segments s JOIN commitlog.topics t ON t.id = s.topic_id
		   WHERE t.name = 'orders'}),
	'... in more segments than create_topic made');
my $expected = dump_partition($leader, 'postgres', 'orders', 0);
my $t0 = [gettimeofday];
for my $f (@followers)
{
	ok( $f->poll_query_until('postgres',
			qq{SELECT commitlog.latest_offset('orders', 0) = $latest}),
		$f->name . ' serves up to the leader\'s stable offset');
	is(dump_partition($f, 'postgres', 'orders', 0), $expected,
		$f->name . ' has the same offsets, timestamps, keys, values and headers');
	ok( $f->safe_psql('postgres',
			q{SELECT count(*) > 2 FROM commitlog.segments s JOIN commitlog.topics t ON t.id = s.topic_id
			   WHERE t.name = 'orders'}),
		$f->name . ' created the later segments itself, before their records arrived');
}
diag sprintf('followers readable %.2f s after the produce committed (worker_naptime 100 ms)',
	tv_interval($t0));

# a follower that was down catches up from its slot
my ($down) = grep { $_ != $b1 } @followers;    # not the coordinator
my ($up) = grep { $_ != $down } @followers;
$down->stop;
$leader->safe_psql('postgres',
	q{SELECT count(*) FROM commitlog.produce_batch('orders', ARRAY['while down 1', 'while down 2']::bytea[], partition => 0)});
$latest += 2;
$down->start;
ok($down->poll_query_until('postgres', qq{SELECT commitlog.latest_offset('orders', 0) = $latest}),
	'a follower restarted after missing records catches up');
$expected = dump_partition($leader, 'postgres', 'orders', 0);
is(dump_partition($down, 'postgres', 'orders', 0), $expected, '... with the same records');
ok($up->poll_query_until('postgres', qq{SELECT commitlog.latest_offset('orders', 0) = $latest}),
	'the other follower too');

# the leader's log start offset moves on the followers too
$leader->safe_psql('postgres', q{SELECT commitlog.delete_records('orders', 0, 1500)});
for my $f (@followers)
{
	ok($f->poll_query_until('postgres', q{SELECT commitlog.earliest_offset('orders', 0) = 1500}),
		$f->name . ': delete_records on the leader raises the follower\'s earliest offset');
}

# --- produce on a follower --------------------------------------------------
($state, $err) = sql_error($followers[0], 'postgres',
	q{SELECT commitlog.produce('orders', 'nope'::bytea, partition => 0)});
is($state, 'CL002', 'produce on a follower: not-leader error (CL002)');
like($err, qr/broker $follower_ids[0] is not the leader of partition 0 of topic "orders"/,
	'... saying which partition');
my $leader_conninfo = $leader->connstr('postgres');
like($err, qr/HINT:\s+The leader is broker $leader_id \(\Q$leader_conninfo\E\)/,
	'... and the hint names the leader and its conninfo');
($state) = sql_error($followers[1], 'postgres',
	q{SELECT commitlog.produce_batch('orders', ARRAY['a'::bytea])});
is($state, 'CL002', 'produce_batch with a keyless record on a follower: CL002 too');

# --- a follower never reads past the leader's stable offset -----------------
my $open = $leader->background_psql('postgres');
$open->query_safe(q{BEGIN; SELECT commitlog.produce('orders', 'held'::bytea, partition => 0)});
$leader->safe_psql('postgres', q{SELECT commitlog.produce('orders', 'after'::bytea, partition => 0)});
my $f0 = $followers[0];
ok( $f0->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM commitlog_topics.orders WHERE log_offset = $latest + 1}),
	'a record committed after an open one reaches the follower');
is($f0->safe_psql('postgres', q{SELECT commitlog.latest_offset('orders', 0)}),
	$latest, '... but the follower\'s latest offset stays at the leader\'s stable offset');
is( $f0->safe_psql('postgres',
		qq{SELECT count(*) FROM commitlog.fetch('orders', 0, $latest)}),
	'0', '... and fetch there returns nothing');
$open->query_safe('COMMIT');
$open->quit;
ok( $f0->poll_query_until('postgres',
		qq{SELECT commitlog.latest_offset('orders', 0) = $latest + 2}),
	'once the open transaction commits, the follower serves both');
is( $f0->safe_psql('postgres',
		qq{SELECT string_agg(convert_from(value, 'UTF8'), ',' ORDER BY log_offset)
		     FROM commitlog.fetch('orders', 0, $latest)}),
	'held,after', '... in offset order');
is( $f0->safe_psql('postgres',
		qq{SELECT count(*) FROM commitlog.fetch('orders', 0, $latest + 2, wait_ms => 200)}),
	'0', 'a long poll on a follower with nothing new returns empty after wait_ms');

# --- a second topic's leader lands elsewhere --------------------------------
$b3->safe_psql('postgres', q{SELECT commitlog.create_topic('payments', 1, 2)});
ok( $b1->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id
		   WHERE t.name = 'payments' AND p.leader IS NOT NULL}),
	'payments is assigned');
my $leader2 = $b1->safe_psql('postgres',
	q{SELECT p.leader FROM commitlog.cluster_partitions p
	    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'payments'});
isnt($leader2, $leader_id, 'the second topic\'s leader is another broker');
my $p_leader = node_of($leader2);
ok( $p_leader->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM commitlog.partition_list WHERE topic = 'payments'}),
	'its leader has materialized it');
$p_leader->safe_psql('postgres', q{SELECT commitlog.produce('payments', 'p0'::bytea, key => 'a')});
my $replica2 = $b1->safe_psql('postgres',
	q{SELECT p.replicas[2] FROM commitlog.cluster_partitions p
	    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'payments'});
ok( node_of($replica2)->poll_query_until('postgres',
		q{SELECT commitlog.latest_offset('payments', 0) = 1}),
	'its follower gets the record');

# --- leaders spread; keyless records stay on partitions led locally --------
$b1->safe_psql('postgres', q{SELECT commitlog.create_topic('spread', 3, 1)});
for my $node (@nodes)
{
	ok( $node->poll_query_until('postgres',
			q{SELECT count(*) = 1 FROM commitlog.partition_list
			   WHERE topic = 'spread' AND leader = current_setting('commitlog.broker_id')::int}),
		$node->name . ' leads one partition of spread');
	my $mine = $node->safe_psql('postgres',
		q{SELECT partition FROM commitlog.partition_list
		   WHERE topic = 'spread' AND leader = current_setting('commitlog.broker_id')::int});
	is( $node->safe_psql('postgres',
			q{SELECT string_agg(DISTINCT (p).partition::text, ',')
			    FROM (SELECT commitlog.produce('spread', 'x'::bytea) AS p
			            FROM generate_series(1, 4)) s}),
		$mine, $node->name . ': keyless records go to the partition it leads');
}
my ($other) = grep { $_ ne $b1->safe_psql('postgres',
		q{SELECT partition FROM commitlog.partition_list
		   WHERE topic = 'spread' AND leader = current_setting('commitlog.broker_id')::int}) } (0, 1, 2);
($state, $err) = sql_error($b1, 'postgres', qq{SELECT commitlog.latest_offset('spread', $other)});
is($state, 'CL002', 'reading a partition this broker holds no replica of: CL002');
like($err, qr/broker 1 holds no replica of partition $other of topic "spread"/, '... saying so');
is($b1->safe_psql('postgres',
		q{SELECT count(DISTINCT p.leader) FROM commitlog.cluster_partitions p
		    JOIN commitlog.cluster_topics t ON t.id = p.topic_id WHERE t.name = 'spread'}),
	'3', 'the three partitions have three different leaders');

# --- drop_topic removes everything everywhere --------------------------------
$b2->safe_psql('postgres', q{SELECT commitlog.drop_topic('spread')});
$b2->safe_psql('postgres', q{SELECT commitlog.drop_topic('orders')});
$b2->safe_psql('postgres', q{SELECT commitlog.drop_topic('payments')});
($state) = sql_error($b2, 'postgres', q{SELECT commitlog.drop_topic('payments')});
is($state, '42704', 'dropping a topic being dropped: 42704');
for my $node (@nodes)
{
	ok( $node->poll_query_until('postgres',
			q{SELECT (SELECT count(*) FROM commitlog.topics)
			       + (SELECT count(*) FROM pg_publication)
			       + (SELECT count(*) FROM pg_subscription)
			       + (SELECT count(*) FROM pg_replication_slots) = 0}),
		$node->name . ': no topic copy, publication, subscription or slot left');
}
ok($b1->poll_query_until('postgres', 'SELECT count(*) = 0 FROM commitlog.cluster_topics'),
	'the coordinator forgets the dropped topics');

$_->stop for @nodes;
done_testing();
