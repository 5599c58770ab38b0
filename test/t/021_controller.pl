# Controller election (DESIGN 8 and 9, src/bgworker/controller.c) and the
# transaction timeout (DESIGN 4):
#
# - a single server is a cluster of its own: broker 0's worker holds the
#   controller lock on a loopback session, commitlog.controller shows it
#   with epoch >= 1 and that session's pid, commitlog.brokers shows broker 0
#   alive and controller;
# - pg_terminate_backend of that session: within a few cycles a new session
#   holds the lock, with a higher epoch; the same after the worker itself is
#   terminated and after a restart of the server (the epoch persists);
# - fencing: commitlog.controller_fence refuses an old epoch (CL004), so an
#   action stamped with it changes nothing;
# - two brokers sharing one coordinator (a second server with
#   commitlog.coordinator and broker_id 1): both alive in commitlog.brokers,
#   one controller; when broker 1 stops, broker 0 is the controller, with a
#   higher epoch, and broker 1 is shown dead;
# - commitlog.transaction_timeout: a producer that stays idle in its
#   transaction is terminated, readers' latest_offset moves on, and the
#   server log says why.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $conf = "commitlog.worker_naptime = 100\n"
  . "commitlog.launcher_naptime = 200\n"
  . "commitlog.transaction_timeout = 1000\n";
my $node = commitlog_node('coordinator', extra_conf => $conf);

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# wait until the controller view shows a row matching $cond
sub wait_controller
{
	my ($cond) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM commitlog.controller WHERE $cond");
}

# --- one broker -------------------------------------------------------------
ok(wait_controller('broker_id = 0 AND epoch >= 1 AND pid IS NOT NULL'),
	'broker 0 is the controller');
my ($epoch, $pid) = split /\|/, q1('SELECT epoch, pid FROM commitlog.controller');
is( q1("SELECT application_name FROM pg_stat_activity WHERE pid = $pid"),
	'pg_commitlog broker 0',
	'the controller pid is the worker\'s coordinator session');
is( q1('SELECT broker_id, alive, is_controller FROM commitlog.brokers'),
	'0|t|t', 'commitlog.brokers: broker 0 alive and controller');
like(q1('SELECT conninfo FROM commitlog.brokers'), qr/port=\d+/,
	'the registry records how to reach the broker');
is( q1(qq{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND classid = 1129074503 AND objid = 1 AND objsubid = 2 AND pid = $pid}),
	'1', 'the controller lock is (1129074503, 1) in pg_locks');

# the lock's session ends: re-election with a higher epoch
my $log_offset = -s $node->logfile;
q1("SELECT pg_terminate_backend($pid)");
ok(wait_controller("epoch > $epoch AND pid <> $pid"),
	'after pg_terminate_backend of its session, a new session is controller with a higher epoch');
my ($epoch2, $pid2) = split /\|/, q1('SELECT epoch, pid FROM commitlog.controller');
ok($node->log_contains(qr/lost the session to the coordinator/, $log_offset),
	'the worker logs the lost session');
ok($node->log_contains(qr/broker 0 is the controller, epoch $epoch2 /, $log_offset),
	'... and the new election');

# fencing
my ($state, $err) = sql_error($node, 'postgres', "SELECT commitlog.controller_fence($epoch)");
is($state, 'CL004', 'an action stamped with the old epoch is refused (CL004)');
like($err, qr/controller epoch $epoch is stale/, '... with a clear message');
is(q1("SELECT commitlog.controller_fence($epoch2)"), '', 'the current epoch passes the fence');
($state) = sql_error($node, 'postgres', 'SELECT commitlog.controller_fence(' . ($epoch2 + 1) . ')');
is($state, '22023', 'an epoch from the future is refused as well');
($state) = sql_error($node, 'postgres', "BEGIN; SELECT commitlog.controller_fence($epoch);
    UPDATE commitlog.broker_registry SET conninfo = 'stale' WHERE broker_id = 0; COMMIT;");
is($state, 'CL004', 'a write after the fence with the old epoch fails');
isnt(q1('SELECT conninfo FROM commitlog.broker_registry WHERE broker_id = 0'),
	'stale', '... and changes nothing');
q1('CREATE ROLE someone LOGIN');
($state) = sql_error($node, 'postgres',
	"SET ROLE someone; SELECT commitlog.controller_fence($epoch2)");
is($state, '42501', 'controller_fence is not for everyone');
is( $node->safe_psql('postgres', 'SET ROLE someone; SELECT broker_id, epoch FROM commitlog.controller'),
	"0|$epoch2", 'but the views are');

# the worker itself ends: its session goes with it
my $worker = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_commitlog worker'});
q1("SELECT pg_terminate_backend($worker)");
ok(wait_controller("epoch > $epoch2"), 'a restarted worker is elected with a higher epoch');
my ($epoch3) = q1('SELECT epoch FROM commitlog.controller');

# a restart of the server (the coordinator) keeps the epoch growing
$node->restart;
ok(wait_controller("epoch > $epoch3"), 'after a server restart the epoch still grows');

# --- two brokers, one coordinator -------------------------------------------
# broker 1 runs on a second server; its worker's coordinator session goes to
# this server's database "postgres".  This server's own worker is held back
# first (commitlog.databases names no database), so broker 1 wins.
q1(q{ALTER SYSTEM SET commitlog.databases = 'none'});
q1('SELECT pg_reload_conf()');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_commitlog worker'}),
	'broker 0 stands down for the test');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM commitlog.controller'),
	'no controller while no broker runs');

(my $coordinator = $node->connstr('postgres')) =~ s/'/''/g;    # quoted for postgresql.conf
my $broker1 = commitlog_node('broker1',
	extra_conf => $conf
	  . "commitlog.broker_id = 1\n"
	  . "commitlog.coordinator = '$coordinator'\n"
	  . "commitlog.advertised_conninfo = 'host=broker1.example port=5432'\n");
ok(wait_controller('broker_id = 1'), 'broker 1, on another server, is elected on the coordinator');
my ($epoch4) = q1('SELECT epoch FROM commitlog.controller');
is( q1(q{SELECT broker_id, conninfo, alive, is_controller FROM commitlog.brokers WHERE broker_id = 1}),
	'1|host=broker1.example port=5432|t|t',
	'commitlog.brokers shows broker 1 with its advertised conninfo');
is($broker1->safe_psql('postgres', 'SELECT count(*) FROM commitlog.controller'),
	'0', 'broker 1\'s own database is not its coordinator');

q1('ALTER SYSTEM RESET commitlog.databases');
q1('SELECT pg_reload_conf()');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM commitlog.brokers WHERE alive}),
	'broker 0 is back: both brokers alive');
is(q1('SELECT count(*) FROM commitlog.brokers WHERE is_controller'),
	'1', 'one controller for two brokers');
is(q1('SELECT broker_id FROM commitlog.controller'), '1', 'still broker 1 (no needless election)');

$broker1->stop;
ok(wait_controller("broker_id = 0 AND epoch > $epoch4"),
	'broker 1 stops: broker 0 takes over with a higher epoch');
is( q1('SELECT broker_id, alive, is_controller FROM commitlog.brokers ORDER BY 1'),
	"0|t|t\n1|f|f", 'broker 1 is shown dead');

# --- transaction timeout ----------------------------------------------------
q1(q{SELECT commitlog.create_topic('slow')});
$log_offset = -s $node->logfile;
my $idle = $node->background_psql('postgres', on_error_stop => 0);
my $idle_pid = $idle->query_safe('SELECT pg_backend_pid()');
$idle->query_safe(q{BEGIN; SELECT commitlog.produce('slow', 'held', partition => 0)});
q1(q{SELECT commitlog.produce('slow', 'committed', partition => 0)});
# (unless the timeout has already struck, on a slow machine)
my ($latest, $alive) = split /\|/,
  q1("SELECT commitlog.latest_offset('slow', 0), EXISTS (SELECT FROM pg_stat_activity WHERE pid = $idle_pid)");
ok($latest eq '0' || $alive eq 'f', 'an open producing transaction holds readers back');
ok($node->poll_query_until('postgres', q{SELECT commitlog.latest_offset('slow', 0) = 2}),
	'with commitlog.transaction_timeout = 1s the worker ends it and latest_offset moves on');
is( q1(q{SELECT string_agg(convert_from(value, 'UTF8'), ',') FROM commitlog.fetch('slow', 0, 0)}),
	'committed', 'the ended transaction\'s record is gone, the committed one readable');
ok( $node->wait_for_log(
		qr/terminated backend $idle_pid \(user "[^"]*", application "[^"]*"\): its producing transaction held back readers for longer than commitlog.transaction_timeout \(1000 ms\)/,
		$log_offset),
	'the server log names the backend and the timeout');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $idle_pid"),
	'the producer\'s session is gone');
quit_quietly($idle);

$node->stop;
done_testing();
