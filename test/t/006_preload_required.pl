# Copyright: pg_commitlog contributors
#
# 006_preload_required: pg_commitlog must be loaded through
# shared_preload_libraries.
#
# Trap guarded: the offset allocator and the in-flight producer state live in
# shared memory that can only be requested at server start.  A library loaded
# later (CREATE EXTENSION loading it on first use, or LOAD) would have no
# shared memory and would hand out offsets from nowhere.  So loading it late
# must fail at once, with an error that says what to do (the message names
# shared_preload_libraries, a HINT says how), and leave nothing behind.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('no_preload', no_preload => 1);

# CREATE EXTENSION loads the library (to check the C functions): refused.
my ($state, $err) =
  sql_error($node, 'postgres', 'CREATE EXTENSION pg_commitlog');
is($state, '55000',
	'CREATE EXTENSION without preloading fails with SQLSTATE 55000');
like($err, qr/ERROR:.*shared_preload_libraries/,
	'the error message names shared_preload_libraries');
like($err, qr/HINT:\s+\S.*shared_preload_libraries/,
	'the error has a hint that says to add it to shared_preload_libraries');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'pg_commitlog'"),
	'0',
	'the failed CREATE EXTENSION leaves no extension behind');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_namespace WHERE nspname IN ('commitlog', 'commitlog_topics')"
	),
	'0',
	'the failed CREATE EXTENSION leaves no schema behind');

# LOAD: same refusal, and again on a second try (a failed _PG_init leaves
# the library unregistered, so the check runs every time).
for my $try (1 .. 2)
{
	($state, $err) = sql_error($node, 'postgres', "LOAD 'pg_commitlog'");
	is($state, '55000', "LOAD without preloading fails (try $try)");
	like($err, qr/ERROR:.*shared_preload_libraries/,
		"LOAD error names shared_preload_libraries (try $try)");
	like($err, qr/HINT:\s+\S/, "LOAD error has a hint (try $try)");
}

# Positive control: the same server with the library preloaded accepts it.
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_commitlog'");
$node->restart;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_commitlog');
$node->safe_psql('postgres', "SELECT commitlog.create_topic('t')");
is( $node->safe_psql(
		'postgres', "SELECT log_offset FROM commitlog.produce('t', 'x')"),
	'0',
	'after adding it to shared_preload_libraries and restarting, it works');

$node->stop;
done_testing();
