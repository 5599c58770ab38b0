# Derived tables (DESIGN 13, src/stream/tables.c).
#
# Concurrent producers (pgbench, 4 clients) write keyed records and
# tombstones to a topic while the workers keep a derived table of it; a
# second derived table is created afterwards and catches up from the
# earliest offset; the postmaster is killed while a third one (slowed down
# by a trigger of its own) catches up.
# Each must equal the newest value per key computed independently from the
# topic, with the keys whose newest record is a tombstone absent.  Also:
# lag is visible, and DROP TABLE of a derived table unregisters it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('derived',
	extra_conf => "commitlog.worker_naptime = 100\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . "restart_after_crash = on\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# rows of $table that differ from the newest value per key of topic kv
sub differences
{
	my ($table) = @_;
	return q1(
		qq{WITH newest AS (
		     SELECT DISTINCT ON (key) key, value, partition, log_offset, "timestamp"
		       FROM commitlog_topics.kv WHERE key IS NOT NULL
		      ORDER BY key, log_offset DESC),
		   expected AS (SELECT * FROM newest WHERE value IS NOT NULL)
		   SELECT count(*) FROM (
		     (SELECT * FROM expected EXCEPT SELECT key, value, partition, log_offset, "timestamp" FROM $table)
		     UNION ALL
		     (SELECT key, value, partition, log_offset, "timestamp" FROM $table EXCEPT SELECT * FROM expected)) d});
}

q1(q{SELECT commitlog.create_topic('kv', 4)});
q1(q{SELECT commitlog.create_table('kv', 'kv_live')});

# 4 clients x 300 records: 150 keys, one record in five a tombstone
$node->pgbench(
	'--no-vacuum --client=4 --jobs=2 --transactions=300',
	0,
	[qr{processed: 1200/1200}],
	[qr{^.*$}s],
	'concurrent producers',
	{
		'produce' => q{
\set k random(1, 150)
\set t random(1, 5)
SELECT commitlog.produce('kv', CASE WHEN :t = 1 THEN NULL ELSE convert_to('v' || :k || '-' || random(), 'UTF8') END, convert_to('k' || :k, 'UTF8'));
}
	},
	'postgres');

ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 FROM commitlog.derived_tables WHERE table_name = 'kv_live'::regclass}),
	'the derived table catches up with the producers');
is(differences('kv_live'), '0', 'it holds exactly the newest value of each key');
my $tombstoned = q1(
	q{SELECT count(*) FROM (SELECT DISTINCT ON (key) value FROM commitlog_topics.kv
	                          ORDER BY key, log_offset DESC) n WHERE value IS NULL});
cmp_ok($tombstoned, '>', 0, "some keys end in a tombstone ($tombstoned)");
is( q1(q{SELECT count(*) FROM kv_live}),
	q1(q{SELECT count(DISTINCT key) FROM commitlog_topics.kv}) - $tombstoned,
	'... and are absent from the table');
is(q1(q{SELECT processed FROM commitlog.derived_tables WHERE table_name = 'kv_live'::regclass}),
	'1200', 'every record was processed once');

# a keyless record is skipped (it cannot be stored by key)
q1(q{SELECT commitlog.produce('kv', 'no key'::text, partition => 0)});
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 AND processed = 1201 FROM commitlog.derived_tables WHERE table_name = 'kv_live'::regclass}),
	'a record without a key is consumed');
is(differences('kv_live'), '0', '... and leaves the table as it was');

# --- created later: catches up from the earliest offset ---------------------
q1(q{SELECT commitlog.create_table('kv', 'kv_late')});
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 FROM commitlog.derived_tables WHERE table_name = 'kv_late'::regclass}),
	'a derived table created later catches up');
is(differences('kv_late'), '0', 'it equals the newest values too');

# --- crash while catching up --------------------------------------------------
q1(q{SELECT count(*) FROM commitlog.produce_batch('kv',
       array(SELECT convert_to('bulk' || i, 'UTF8') FROM generate_series(1, 20000) i),
       array(SELECT convert_to('k' || (i % 3000), 'UTF8') FROM generate_series(1, 20000) i))});
# a trigger that slows each row down, created with the table, so that the
# crash is sure to come while it catches up
q1(q{CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN PERFORM pg_sleep(0.0002); RETURN NEW; END $$});
q1(q{BEGIN;
     SELECT commitlog.create_table('kv', 'kv_crash');
     CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON kv_crash FOR EACH ROW EXECUTE FUNCTION slow_row();
     COMMIT;});
ok( $node->poll_query_until('postgres',
		q{SELECT processed > 0 FROM commitlog.derived_tables WHERE table_name = 'kv_crash'::regclass}),
	'a third derived table starts catching up');
my $lag = q1(q{SELECT lag FROM commitlog.derived_tables WHERE table_name = 'kv_crash'::regclass});
kill9_postmaster($node);
$node->start;
cmp_ok($lag, '>', 0, "the postmaster was killed while it caught up (lag $lag)");
ok( $node->poll_query_until('postgres',
		q{SELECT bool_and(lag = 0) FROM commitlog.derived_tables}),
	'after the restart every derived table catches up');
is(differences('kv_crash'), '0', 'the one interrupted by the crash equals the newest values');
is(differences('kv_live'), '0', 'so does the first one');

# --- DROP TABLE unregisters -----------------------------------------------------
q1(q{DROP TABLE kv_late});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM commitlog.group_offsets WHERE group_id = 'public.kv_late'}),
	'DROP TABLE of a derived table: its registration and positions go');
is(q1(q{SELECT count(*) FROM commitlog.derived_tables}), '2', 'the others stay');

done_testing();
