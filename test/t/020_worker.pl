# The background workers (DESIGN 8, src/bgworker):
#
# - the launcher runs, and a worker serves each database that has the
#   extension; in a database without it no worker stays, and CREATE
#   EXTENSION there gets one at once; DROP EXTENSION ends it;
# - DROP DATABASE, ALTER DATABASE ... RENAME and CREATE DATABASE ...
#   TEMPLATE work on a database that has a worker (the worker is stopped
#   for the command and comes back after it);
# - commitlog.databases limits the databases served;
# - a producer that runs past the last segment wakes the worker, which
#   would otherwise sleep for commitlog.worker_naptime;
# - a session with commitlog.restore_mode on (pg_restore) holds segment
#   upkeep and retention off (test/t/004_dump_restore.pl restores for real);
# - SIGHUP: the worker applies new settings without restarting
#   (commitlog.transaction_timeout switched on ends an idle producer);
# - a terminated worker is restarted by the launcher; after a crash restart
#   (kill -9 of a backend) the launcher and the worker are back;
# - the workers exit with the postmaster (kill -9 of the postmaster).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use CommitlogTAP;

my $node = commitlog_node('worker',
	extra_conf => "commitlog.worker_naptime = 100\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . "commitlog.transaction_timeout = 0\n"
	  . "restart_after_crash = on\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# pid of the worker of database $db ('' if none)
sub worker_pid
{
	my ($db) = @_;
	return q1(
		qq{SELECT pid FROM pg_stat_activity
		    WHERE backend_type = 'pg_commitlog worker' AND datname = '$db'});
}

# wait until database $db has a worker (other than pid $not)
sub wait_worker
{
	my ($db, $not) = @_;
	$not //= 0;
	return $node->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM pg_stat_activity
		    WHERE backend_type = 'pg_commitlog worker' AND datname = '$db'
		      AND pid <> $not});
}

# wait until database $db has had no worker for a while: workers may start
# there for an instant (and exit), but none runs for half a second
sub wait_no_worker
{
	my ($db) = @_;
	return $node->poll_query_until('postgres',
		qq{SELECT count(*) = 0 FROM pg_stat_activity
		    WHERE backend_type = 'pg_commitlog worker' AND datname = '$db'
		      AND backend_start < now() - interval '500 ms'});
}

# --- the launcher and the worker of "postgres" ------------------------------
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_commitlog launcher'}),
	'the launcher runs');
ok(wait_worker('postgres'), 'a worker serves the database with the extension');
ok($node->log_contains(qr/pg_commitlog worker started for database "postgres"/),
	'the worker logs its start');
is( q1(q{SELECT application_name FROM pg_stat_activity WHERE backend_type = 'pg_commitlog worker'}),
	'pg_commitlog worker',
	'the worker shows as "pg_commitlog worker" in pg_stat_activity');

# --- databases without the extension ---------------------------------------
q1('CREATE DATABASE plain');
usleep(1_000_000);    # five launcher naptimes
ok(wait_no_worker('plain'), 'no worker stays in a database without the extension');

my $t0 = time;
$node->safe_psql('plain', 'CREATE EXTENSION pg_commitlog');
ok(wait_worker('plain'), 'CREATE EXTENSION in another database gets a worker');
cmp_ok(time - $t0, '<', 10, '... promptly');

my $log_offset = -s $node->logfile;
$node->safe_psql('plain', 'DROP EXTENSION pg_commitlog');
ok(wait_no_worker('plain'), 'DROP EXTENSION ends the worker');
ok( $node->wait_for_log(
		qr/pg_commitlog worker for database "plain" exits: the extension is not installed in it/,
		$log_offset),
	'... with a log line');

# --- database commands that need the database to themselves ----------------
$node->safe_psql('plain', 'CREATE EXTENSION pg_commitlog');
ok(wait_worker('plain'), 'the worker is back with the extension');
my ($rc, $out, $err) =
  $node->psql('postgres', 'ALTER DATABASE plain RENAME TO renamed');
is($rc, 0, 'ALTER DATABASE ... RENAME works while the database has a worker')
  or diag($err);
ok(wait_worker('renamed'), 'the renamed database gets its worker back');

($rc, $out, $err) = $node->psql('postgres', 'CREATE DATABASE copied TEMPLATE renamed');
is($rc, 0, 'CREATE DATABASE ... TEMPLATE works while the template has a worker')
  or diag($err);
ok(wait_worker('copied'), 'the copy (which has the extension) gets a worker');
ok(wait_worker('renamed'), 'the template gets its worker back');

my $copied_worker = worker_pid('copied');
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE copied');
is($rc, 0, 'DROP DATABASE works while the database has a worker') or diag($err);
ok(!kill(0, $copied_worker), 'the dropped database\'s worker is gone');

# --- commitlog.databases ----------------------------------------------------
q1(q{ALTER SYSTEM SET commitlog.databases = 'postgres'});
q1('SELECT pg_reload_conf()');
ok(wait_no_worker('renamed'), 'a database left out of commitlog.databases loses its worker');
ok(wait_worker('postgres'), '... a listed one keeps it');
q1('ALTER SYSTEM RESET commitlog.databases');
q1('SELECT pg_reload_conf()');
ok(wait_worker('renamed'), 'emptying commitlog.databases serves every database again');
q1('DROP DATABASE renamed');

# --- producers wake the worker for segments --------------------------------
# With a naptime of a minute, only a wakeup can attach the segments these
# records need in time (a producer gives up after 30 s).
my $pid = worker_pid('postgres');
$log_offset = -s $node->logfile;
q1(q{ALTER SYSTEM SET commitlog.worker_naptime = '60s'});
q1('SELECT pg_reload_conf()');
$node->wait_for_log(qr/reloaded its settings: worker_naptime = 60000 ms/, $log_offset);
q1(q{SELECT commitlog.create_topic('woken', 1, config => '{"segment.bytes": 1024}')});
$t0 = time;
is( q1(q{SELECT count(*) FROM commitlog.produce_batch('woken',
           array_fill('0123456789'::bytea, ARRAY[4096]), partition => 0)}),
	'4096',
	'a producer past the last segment wakes the worker');
cmp_ok(time - $t0, '<', 20, '... which attaches segments long before its naptime');
is(worker_pid('postgres'), $pid, 'the same worker (no restart)');
q1('ALTER SYSTEM RESET commitlog.worker_naptime');
q1('SELECT pg_reload_conf()');

# --- restores --------------------------------------------------------------
# A session with commitlog.restore_mode on (pg_restore) holds the worker's
# segment upkeep and retention off until it turns it off or disconnects.
$log_offset = -s $node->logfile;
my $restorer = $node->background_psql('postgres', on_error_stop => 1);
$restorer->query_safe('SET commitlog.restore_mode = on');
ok( $node->wait_for_log(
		qr/pg_commitlog worker for database "postgres" holds off segment upkeep and retention while a restore/,
		$log_offset),
	'a restoring session holds the worker\'s maintenance off');
$restorer->query_safe('SET commitlog.restore_mode = off');
ok( $node->wait_for_log(
		qr/pg_commitlog worker for database "postgres" resumes segment upkeep and retention/,
		$log_offset),
	'... until it turns restore_mode off');
$restorer->quit;

# --- SIGHUP -----------------------------------------------------------------
# transaction_timeout is off (0): an idle producing transaction survives
q1(q{SELECT commitlog.create_topic('hup')});
my $idle = $node->background_psql('postgres', on_error_stop => 0);
$idle->query_safe(q{BEGIN; SELECT commitlog.produce('hup', 'x')});
my $idle_pid = $idle->query_safe('SELECT pg_backend_pid()');
usleep(1_000_000);
ok(kill(0, $idle_pid), 'with commitlog.transaction_timeout = 0 an idle producer is left alone');

$log_offset = -s $node->logfile;
q1(q{ALTER SYSTEM SET commitlog.transaction_timeout = '500ms'});
q1('SELECT pg_reload_conf()');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $idle_pid"),
	'after a reload with commitlog.transaction_timeout = 500ms the worker ends it');
ok($node->log_contains(qr/reloaded its settings: .*transaction_timeout = 500 ms/, $log_offset),
	'the worker logs the settings it reloaded');
is(worker_pid('postgres'), $pid, 'the worker survived SIGHUP (same pid)');
quit_quietly($idle);

# --- restarts ---------------------------------------------------------------
q1("SELECT pg_terminate_backend($pid)");
ok(wait_worker('postgres', $pid), 'the launcher restarts a terminated worker');
$pid = worker_pid('postgres');

my $launcher = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_commitlog launcher'});
my $victim = $node->background_psql('postgres', on_error_stop => 0);
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
$log_offset = -s $node->logfile;
kill 'KILL', $victim_pid;
quit_quietly($victim);
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok(wait_worker('postgres', $pid), 'after a crash restart the worker is back');
ok( $node->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM pg_stat_activity
		    WHERE backend_type = 'pg_commitlog launcher' AND pid <> $launcher}),
	'... and so is the launcher');
ok( $node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM commitlog.controller}),
	'... and the controller');

# --- postmaster death -------------------------------------------------------
$pid = worker_pid('postgres');
$launcher = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_commitlog launcher'});
kill9_postmaster($node);    # waits until every child has exited
ok(!kill(0, $pid) && !kill(0, $launcher), 'the worker and the launcher exit with the postmaster');

$node->start;
ok(wait_worker('postgres'), 'and start again with the server');
$node->stop;

done_testing();
