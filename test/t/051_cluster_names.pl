# commitlog.cluster (DESIGN 9, src/cluster): one coordinator database serves
# several clusters, as a ZooKeeper chroot does.
#
# - server A is a single broker (commitlog.coordinator empty, cluster
#   'default'); server B uses A's database as its coordinator with
#   commitlog.cluster = 'blue' and the same broker_id 0: both are alive,
#   each is the controller of its own cluster, with its own locks;
# - cluster_fence refuses a stale epoch of 'blue' (CL004);
# - B alone makes a cluster of one member: a topic created on B is assigned
#   to B, produced to and read there; replication_factor 2 is refused
#   because A is not a member of 'blue';
# - A, in single-broker mode, works as before (replication_factor 2
#   refused, its topics stay local and out of the coordinator's metadata).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $conf = "commitlog.worker_naptime = 100\ncommitlog.launcher_naptime = 200\n";
my $a = commitlog_node('a', extra_conf => $conf);
(my $coordinator = $a->connstr('postgres')) =~ s/'/''/g;
my $b = commitlog_node('b',
	extra_conf => $conf
	  . "commitlog.coordinator = '$coordinator'\n"
	  . "commitlog.cluster = 'blue'\n"
	  . "commitlog.advertised_conninfo = 'host=b.example'\n");

ok( $a->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM commitlog.brokers WHERE alive AND is_controller}),
	'two brokers with id 0, in two clusters, each the controller of its own');
is( $a->safe_psql('postgres', q{SELECT string_agg(cluster, ',' ORDER BY cluster) FROM commitlog.brokers}),
	'blue,default', 'commitlog.brokers names each broker\'s cluster');
is($a->safe_psql('postgres', 'SELECT count(*) FROM commitlog.controller'),
	'2', 'commitlog.controller shows one controller per cluster');
my $blue_id = $a->safe_psql('postgres', q{SELECT id FROM commitlog.clusters WHERE name = 'blue'});
ok($blue_id > 1, 'the first broker of cluster blue created it on the coordinator');
is( $a->safe_psql('postgres',
		qq{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
		     AND ((classid = 1129074503 AND objid = $blue_id)
		       OR (classid = 1129070162 + $blue_id - 1 AND objid = 0))}),
	'2', 'blue\'s controller lock is (1129074503, id), its liveness lock (1129070162 + id - 1, 0)');

my $epoch = $a->safe_psql('postgres',
	qq{SELECT epoch FROM commitlog.controller_state WHERE cluster_id = $blue_id});
my ($state) = sql_error($a, 'postgres', 'SELECT commitlog.cluster_fence(\'blue\', ' . ($epoch - 1) . ')');
is($state, 'CL004', 'cluster_fence refuses a stale epoch of cluster blue');
is($a->safe_psql('postgres', "SELECT commitlog.cluster_fence('blue', $epoch)"),
	'', '... and passes its current one');
($state) = sql_error($a, 'postgres', q{SELECT commitlog.cluster_fence('nosuch', 1)});
is($state, '42704', 'an unknown cluster: 42704');

# --- B: a cluster of one member ---------------------------------------------
my $err;
($state, $err) = sql_error($b, 'postgres', q{SELECT commitlog.create_topic('t', 1, 2)});
is($state, '22023', 'replication_factor 2 in a cluster with one live member is refused');
like($err, qr/available brokers \(1\)/, '... counting only the members of cluster blue');
$b->safe_psql('postgres', q{SELECT commitlog.create_topic('t', 2)});
ok( $b->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM commitlog.partition_list WHERE topic = 't' AND leader = 0 AND replicas = '{0}'}),
	'the topic is assigned to broker 0 of blue and materialized on B');
is( $b->safe_psql('postgres',
		q{SELECT (commitlog.produce('t', 'hello', key => 'k')).log_offset;
		  SELECT convert_from(value, 'UTF8') FROM commitlog.fetch('t', commitlog.partition_for_key('t', 'k'), 0)}),
	"0\nhello", 'produce and fetch work on B');
is($a->safe_psql('postgres', q{SELECT count(*) FROM commitlog.topics}),
	'0', 'the coordinator holds the metadata only, not a copy of the topic');
is( $a->safe_psql('postgres',
		q{SELECT t.name || ' ' || c.name FROM commitlog.cluster_topics t JOIN commitlog.clusters c ON c.id = t.cluster_id}),
	't blue', '... in cluster blue');

($state) = sql_error($b, 'postgres', q{SELECT commitlog.add_partitions('t', 3)});
is($state, '0A000', 'add_partitions is refused in cluster mode');

# --- A: single-broker mode as before ----------------------------------------
($state) = sql_error($a, 'postgres', q{SELECT commitlog.create_topic('local', 1, 2)});
is($state, '22023', 'single-broker mode: replication_factor 2 refused as before');
$a->safe_psql('postgres', q{SELECT commitlog.create_topic('local')});
is( $a->safe_psql('postgres',
		q{SELECT leader, replicas, isr FROM commitlog.partition_list WHERE topic = 'local'}),
	'0|{0}|{0}', 'a local topic shows this broker as leader, replicas and isr');
is($a->safe_psql('postgres', q{SELECT count(*) FROM commitlog.cluster_topics WHERE name = 'local'}),
	'0', '... and stays out of the cluster metadata');

$b->safe_psql('postgres', 'CREATE ROLE someone LOGIN');
($state) = sql_error($b, 'postgres', q{SET ROLE someone; SELECT commitlog.drop_topic('t')});
is($state, '42501', 'drop_topic in cluster mode needs ownership of the local copy');
$b->safe_psql('postgres', q{SELECT commitlog.drop_topic('t')});
ok($b->poll_query_until('postgres', q{SELECT count(*) = 0 FROM commitlog.topics}),
	'drop_topic in cluster mode removes B\'s copy');
ok($a->poll_query_until('postgres', q{SELECT count(*) = 0 FROM commitlog.cluster_topics}),
	'... and the coordinator forgets it');

$b->stop;
$a->stop;
done_testing();
