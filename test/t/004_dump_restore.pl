# Copyright: pg_commitlog contributors
#
# 004_dump_restore: pg_dump / pg_restore round-trips a database that uses
# pg_commitlog (DESIGN 3).
#
# Traps guarded:
#   - topic tables are made by create_topic(), not by the extension script,
#     so they are ordinary (non-member) objects that pg_dump dumps with their
#     data; the metadata tables are extension config tables
#     (pg_extension_config_dump).  Both halves must come back and agree.
#   - the immutability guard refuses writes to topic tables: a restore must
#     fail loudly without commitlog.restore_mode (not half-restore silently),
#     and succeed with PGOPTIONS='-c commitlog.restore_mode=on'.
#   - offsets: records keep their offsets and timestamps; after the restore
#     latest_offset is not below the source's (a rolled-back tail is a gap
#     that counts) and new records get offsets above every restored one, so
#     a consumer that moves its position from the old to the new database
#     never skips or re-reads.
#   - topic ids: topics_id_seq comes back, so a new topic does not collide
#     with a restored one.
# The custom format (pg_dump -Fc | pg_restore, serial and -j 4) and the
# plain format (pg_dump | psql) are checked.  The source has topics whose
# names need quoting, several partitions, a topic grown by add_partitions,
# an empty topic, keys, headers, NULL values, explicit timestamps, rolled-back
# gaps, altered config, consumer group offsets and a user view on a topic.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('dump');
my $tmp  = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
	CREATE EXTENSION pg_commitlog;
	SELECT commitlog.create_topic('orders.v1', 3, config => '{"retention.ms": 86400000}');
	SELECT commitlog.create_topic('Events-2', 2);
	SELECT commitlog.alter_topic('Events-2', '{"max.message.bytes": 4096, "retention.bytes": 1048576}');
	SELECT commitlog.create_topic('empty');
	SELECT commitlog.create_topic('grown', 1);
	SELECT commitlog.produce('grown', 'before growing'::text, partition => 0);
	SELECT commitlog.add_partitions('grown', 3);
	SELECT commitlog.produce('grown', 'in new partition'::text, partition => 2);

	-- keys, headers, NULL values, explicit timestamps, every partition
	SELECT commitlog.produce_messages('orders.v1', ARRAY[
	  ROW('k1', 'v1', ARRAY[ROW('trace', '\x0102'), ROW('empty', NULL)]::commitlog.header[],
	      0, '2001-02-03 04:05:06.789012+00')::commitlog.message,
	  ROW('k2', NULL, NULL, 0, '1970-01-01 00:00:00+00')::commitlog.message,
	  ROW(NULL, '\x00ff00', ARRAY[ROW('h', '\x')]::commitlog.header[], 1, NULL)::commitlog.message,
	  ROW('k3', 'v3', NULL, 2, '2030-06-30 12:00:00.5+00')::commitlog.message]);
	SELECT commitlog.produce_batch('orders.v1',
	  ARRAY(SELECT convert_to('batch ' || g, 'UTF8') FROM generate_series(1, 50) g),
	  ARRAY(SELECT convert_to('key ' || (g % 7), 'UTF8') FROM generate_series(1, 50) g));
	SELECT commitlog.produce('orders.v1', '{"a": 1}'::jsonb, key => 'json');
	SELECT commitlog.produce('Events-2', 'e0'::text, partition => 0);
	SELECT commitlog.produce('Events-2', 'e1'::text, partition => 1,
	                         ts => '2024-02-29 23:59:59.999999+00');});

# a rolled-back gap in the middle of partition 0 of Events-2, and a
# rolled-back tail on partition 1
$node->safe_psql(
	'src', q{
	BEGIN;
	SELECT commitlog.produce('Events-2', 'gap ' || g, partition => 0) FROM generate_series(1, 5) g;
	ROLLBACK;
	SELECT commitlog.produce('Events-2', 'after gap'::text, partition => 0);
	BEGIN;
	SELECT commitlog.produce('Events-2', 'tail ' || g, partition => 1) FROM generate_series(1, 5) g;
	ROLLBACK;
	-- consumer group positions, and a user view over a topic
	SELECT commitlog.commit_offset('g1', 'orders.v1', 0, 2, 'meta data');
	SELECT commitlog.commit_offset('g1', 'Events-2', 1, 1);
	CREATE VIEW public.order_values AS
	  SELECT partition, log_offset, encode(value, 'hex') AS v
	    FROM commitlog_topics."orders.v1" WHERE value IS NOT NULL;});

is( $node->safe_psql('src',
		q{SELECT string_agg(log_offset::text, ',') FROM commitlog.fetch('Events-2', 0, 0)}),
	'0,6', 'source: Events-2/0 has a gap 1..5');
is( $node->safe_psql('src', q{SELECT commitlog.latest_offset('Events-2', 1)}),
	'6', 'source: Events-2/1 has a rolled-back tail (1 record, latest_offset 6)');

my @topic_partitions = (
	[ 'orders.v1', 0 ], [ 'orders.v1', 1 ], [ 'orders.v1', 2 ],
	[ 'Events-2',  0 ], [ 'Events-2',  1 ], [ 'empty', 0 ],
	[ 'grown',     0 ], [ 'grown',     1 ], [ 'grown', 2 ]);

my $q_topics = q{SELECT topic, partitions, replication_factor, config
                   FROM commitlog.topic_list ORDER BY topic};
my $q_meta = q{SELECT id, name, partitions, replication_factor, config, created_at
                 FROM commitlog.topics ORDER BY id};
my $q_parts = q{SELECT topic, partition, earliest_offset, segments
                  FROM commitlog.partition_list ORDER BY topic, partition};
my $q_groups = q{SELECT group_id, topic, partition, committed_offset, metadata, committed_at
                   FROM commitlog.group_offsets ORDER BY 1, 2, 3};
my $q_view = q{SELECT * FROM public.order_values ORDER BY partition, log_offset};

my %src = (
	topics => $node->safe_psql('src', $q_topics),
	meta   => $node->safe_psql('src', $q_meta),
	parts  => $node->safe_psql('src', $q_parts),
	groups => $node->safe_psql('src', $q_groups),
	view   => $node->safe_psql('src', $q_view));
my (%src_records, %src_latest);
for my $tp (@topic_partitions)
{
	my ($t, $p) = @$tp;
	$src_records{"$t/$p"} = dump_partition($node, 'src', $t, $p);
	$src_latest{"$t/$p"} =
	  $node->safe_psql('src', "SELECT commitlog.latest_offset('$t', $p)");
}
cmp_ok(scalar(split /\n/, $src_records{'orders.v1/0'}) +
	  scalar(split /\n/, $src_records{'orders.v1/1'}) +
	  scalar(split /\n/, $src_records{'orders.v1/2'}),
	'==', 55, 'source: orders.v1 holds 55 records');

# Check a restored database against the source.
sub check_restored
{
	my ($db, $how) = @_;

	is($node->safe_psql($db, $q_topics), $src{topics},
		"$how: topic_list is identical (partitions, replication factor, config)");
	is($node->safe_psql($db, $q_meta), $src{meta},
		"$how: commitlog.topics is identical (ids, created_at)");
	is($node->safe_psql($db, $q_parts), $src{parts},
		"$how: partitions, earliest offsets and segments are identical");
	is($node->safe_psql($db, $q_groups), $src{groups},
		"$how: consumer group offsets are identical");
	is($node->safe_psql($db, $q_view), $src{view},
		"$how: a user view over a topic works and shows the same rows");

	for my $tp (@topic_partitions)
	{
		my ($t, $p) = @$tp;
		is(dump_partition($node, $db, $t, $p), $src_records{"$t/$p"},
			"$how: $t/$p: every record identical (offset, timestamp, key, value, headers)"
		);
		my $latest =
		  $node->safe_psql($db, "SELECT commitlog.latest_offset('$t', $p)");
		cmp_ok($latest, '>=', $src_latest{"$t/$p"},
			"$how: $t/$p: latest_offset $latest >= the source's "
			  . $src_latest{"$t/$p"});
		my ($rc, $out, $err) = $node->psql($db,
			"SELECT count(*) FROM commitlog.fetch('$t', $p, " . $src_latest{"$t/$p"} . ')');
		is($rc, 0,
			"$how: $t/$p: a consumer at the source's latest_offset can fetch on")
		  or diag $err;

		my $max_restored = $node->safe_psql($db,
			qq{SELECT coalesce(max(log_offset), -1) FROM commitlog_topics."$t" WHERE partition = $p}
		);
		my $new = $node->safe_psql($db,
			"SELECT log_offset FROM commitlog.produce('$t', 'new'::text, partition => $p)"
		);
		cmp_ok($new, '>', $max_restored,
			"$how: $t/$p: a new record ($new) goes above every restored offset");
		cmp_ok($new, '>=', $src_latest{"$t/$p"},
			"$how: $t/$p: ... and not below the source's latest_offset");
		is( $node->safe_psql($db,
				"SELECT count(*) FROM commitlog.fetch('$t', $p, " . $src_latest{"$t/$p"} . ')'),
			'1',
			"$how: $t/$p: the consumer at the source's latest_offset gets the new record"
		);
	}

	# the guard is back in force once restore_mode is off
	my ($state, $err) = sql_error($node, $db,
		q{INSERT INTO commitlog_topics."orders.v1" VALUES (0, 999999, now(), NULL, 'x', NULL)});
	is($state, '42501',
		"$how: direct INSERT into a restored topic table is refused");

	# topic ids continue after the restored ones
	$node->safe_psql($db, "SELECT commitlog.create_topic('brand-new', 2)");
	is( $node->safe_psql($db,
			q{SELECT id > (SELECT max(id) FROM commitlog.topics WHERE name <> 'brand-new')
			    FROM commitlog.topics WHERE name = 'brand-new'}),
		't',
		"$how: a new topic gets a fresh id");
	is( $node->safe_psql($db,
			q{SELECT log_offset FROM commitlog.produce('brand-new', 'x'::text, partition => 1)}),
		'0',
		"$how: a new topic works");
	return;
}

# --- custom format ----------------------------------------------------------
my $dump = "$tmp/src.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', 'src' ],
	'pg_dump -Fc of the source database');

# without restore_mode: fails loudly
$node->safe_psql('postgres', 'CREATE DATABASE noguard');
$node->command_fails_like(
	[ 'pg_restore', '-d', 'noguard', $dump ],
	qr/cannot (insert into|alter) topic table/,
	'pg_restore without commitlog.restore_mode exits non-zero, naming the guard'
);

# with restore_mode: succeeds, even with --exit-on-error
$node->safe_psql('postgres', 'CREATE DATABASE dst');
{
	local $ENV{PGOPTIONS} = '-c commitlog.restore_mode=on';
	$node->command_ok(
		[ 'pg_restore', '--exit-on-error', '-d', 'dst', $dump ],
		'pg_restore with PGOPTIONS=-c commitlog.restore_mode=on succeeds');
}
is($node->safe_psql('dst', 'SHOW commitlog.restore_mode'),
	'off', 'restore_mode is off by default in later sessions');
check_restored('dst', 'pg_restore');

# parallel restore: every worker connection gets PGOPTIONS too
$node->safe_psql('postgres', 'CREATE DATABASE dst_parallel');
{
	local $ENV{PGOPTIONS} = '-c commitlog.restore_mode=on';
	$node->command_ok(
		[ 'pg_restore', '--exit-on-error', '-j', '4', '-d', 'dst_parallel', $dump ],
		'parallel pg_restore (-j 4) with restore_mode succeeds');
}
check_restored('dst_parallel', 'pg_restore -j 4');

# --- plain format -----------------------------------------------------------
my $plain = "$tmp/src.sql";
$node->command_ok([ 'pg_dump', '-Fp', '-f', $plain, '-d', 'src' ],
	'pg_dump (plain) of the source database');

$node->safe_psql('postgres', 'CREATE DATABASE plain_noguard');
$node->command_fails_like(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'plain_noguard', '-f', $plain ],
	qr/cannot (insert into|alter) topic table/,
	'psql < plain dump without restore_mode stops at the guard');

$node->safe_psql('postgres', 'CREATE DATABASE plain_dst');
{
	local $ENV{PGOPTIONS} = '-c commitlog.restore_mode=on';
	$node->command_ok(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'plain_dst', '-f', $plain ],
		'psql < plain dump with restore_mode succeeds');
}
check_restored('plain_dst', 'plain dump');

# the source is untouched by all this
for my $tp (@topic_partitions)
{
	my ($t, $p) = @$tp;
	is(dump_partition($node, 'src', $t, $p), $src_records{"$t/$p"},
		"source $t/$p unchanged by the restores");
}

$node->stop;
done_testing();
