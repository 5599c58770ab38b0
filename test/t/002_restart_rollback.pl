# Copyright: pg_commitlog contributors
#
# 002_restart_rollback: offsets handed out to a rolled-back tail are never
# handed out again, not after a clean restart and not after a crash.
#
# Trap guarded (DESIGN 4, invariant 4 and the "offset reuse after restart"
# trap): if the allocator restarted from max(log_offset) + 1 of what is
# stored, a rolled-back tail (offsets 5..9 below) would be reused after a
# restart.  But readers were already told latest_offset = 10 (gaps count), and
# a consumer that stored 10 as its position would then silently skip the new
# records 5..9.  So after a restart:
#   - latest_offset never goes below what it was before;
#   - new records get offsets >= that old latest_offset (never 5..9 again);
#   - a consumer positioned at the old latest_offset reads on without an
#     out-of-range error and gets the new records.
# Run twice: across a clean restart, and across an immediate (crash) stop.
#
# Last, the state a restart rebuilds offsets from (the partition's offset
# sequence, commitlog_topics."t<id>$p<n>$seq") must not be rewindable by SQL:
# the topic's owner, an ordinary user, tries setval() and ALTER SEQUENCE
# RESTART, then the server restarts.  Both must be refused (the sequence
# belongs to the extension's owner, and the guard refuses ALTER SEQUENCE);
# if they were not, latest_offset would go backwards after the restart and
# produce would fail with duplicate keys or reuse offsets consumers already
# passed.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('restart_rollback');

sub run_case
{
	my ($topic, $how, $stop) = @_;

	$node->safe_psql('postgres', "SELECT commitlog.create_topic('$topic')");

	# offsets 0..4, committed
	my $committed = $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(log_offset::text, ',' ORDER BY log_offset)
		  FROM commitlog.produce_batch('$topic',
		         ARRAY['a','b','c','d','e']::bytea[], partition => 0)});
	is($committed, '0,1,2,3,4', "$how: committed batch got offsets 0..4");

	# offsets 5..9, rolled back: five single produces in one transaction
	my $rolled_back = $node->safe_psql(
		'postgres', qq{
		BEGIN;
		SELECT p.log_offset
		  FROM generate_series(1, 5) g,
		       LATERAL commitlog.produce('$topic', 'r' || g, partition => 0) p
		 ORDER BY g;
		ROLLBACK;});
	is(join(',', split /\n/, $rolled_back),
		'5,6,7,8,9', "$how: the rolled-back transaction was given 5..9");

	my $latest_before =
	  $node->safe_psql('postgres', "SELECT commitlog.latest_offset('$topic', 0)");
	is($latest_before, '10',
		"$how: latest_offset is 10 before the restart (the gap counts)");

	$stop->();

	my $latest_after =
	  $node->safe_psql('postgres', "SELECT commitlog.latest_offset('$topic', 0)");
	cmp_ok($latest_after, '>=', $latest_before,
		"$how: latest_offset does not go backwards across the restart");

	# a consumer that was at the old end keeps reading from there
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT count(*) FROM commitlog.fetch('$topic', 0, $latest_before)");
	is($rc, 0,
		"$how: fetch from the old latest_offset is not out of range after the restart"
	) or diag $err;
	is($out, '0', "$how: ... and returns nothing yet");

	my $new = $node->safe_psql('postgres',
		"SELECT log_offset FROM commitlog.produce('$topic', 'after', partition => 0)"
	);
	cmp_ok($new, '>=', $latest_before,
		"$how: a new record gets an offset >= the latest_offset seen before ($new)");
	ok($new < 5 || $new > 9,
		"$how: the new offset is not one of the rolled-back 5..9");

	my $latest_final =
	  $node->safe_psql('postgres', "SELECT commitlog.latest_offset('$topic', 0)");
	is($latest_final, $new + 1,
		"$how: latest_offset moves past the new record");

	is( $node->safe_psql(
			'postgres', qq{
			SELECT string_agg(log_offset::text || '=' || convert_from(value, 'UTF8'), ','
			                  ORDER BY log_offset)
			  FROM commitlog.fetch('$topic', 0, $latest_before)}),
		"$new=after",
		"$how: the consumer at the old latest_offset gets the new record");

	is( $node->safe_psql(
			'postgres', qq{
			SELECT string_agg(log_offset::text || '=' || convert_from(value, 'UTF8'), ','
			                  ORDER BY log_offset)
			  FROM commitlog.fetch('$topic', 0, 0)}),
		"0=a,1=b,2=c,3=d,4=e,$new=after",
		"$how: the partition holds the committed records and the new one only"
	);
	return;
}

run_case('clean', 'clean restart', sub { $node->restart; });
run_case(
	'crash',
	'immediate stop',
	sub {
		$node->stop('immediate');
		$node->start;
	});

# Both again on the same topics: offsets stay monotonic over several
# restarts, including after records above the first block.
for my $topic ('clean', 'crash')
{
	my $before =
	  $node->safe_psql('postgres', "SELECT commitlog.latest_offset('$topic', 0)");
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		SELECT commitlog.produce('$topic', 'gone', partition => 0);
		ROLLBACK;});
	my $with_gap =
	  $node->safe_psql('postgres', "SELECT commitlog.latest_offset('$topic', 0)");
	is($with_gap, $before + 1, "$topic: a rolled-back record advances latest_offset");
	$node->stop('immediate');
	$node->start;
	my $after =
	  $node->safe_psql('postgres', "SELECT commitlog.latest_offset('$topic', 0)");
	cmp_ok($after, '>=', $with_gap,
		"$topic: latest_offset does not go backwards across a second crash");
	my $new = $node->safe_psql('postgres',
		"SELECT log_offset FROM commitlog.produce('$topic', 'x', partition => 0)");
	cmp_ok($new, '>=', $with_gap,
		"$topic: the next offset after a second crash is above the gap");
}

# --- the offset sequence cannot be rewound by the topic's owner ---------------
$node->safe_psql(
	'postgres', q{
	CREATE ROLE alice LOGIN;
	GRANT CREATE ON SCHEMA commitlog_topics TO alice;
	SET ROLE alice;
	SELECT commitlog.create_topic('owned');
	SELECT commitlog.produce_batch('owned', ARRAY['a', 'b', 'c']::bytea[], partition => 0);
	BEGIN;
	SELECT commitlog.produce_batch('owned', ARRAY['x', 'y']::bytea[], partition => 0);
	ROLLBACK;});
my $seq = $node->safe_psql(
	'postgres', q{
	SELECT format('commitlog_topics.%I', 't' || id || '$p0$seq') FROM commitlog.topics WHERE name = 'owned'});
my $owned_before = $node->safe_psql('postgres',
	q{SELECT commitlog.latest_offset('owned', 0)});
is($owned_before, '5', 'owned: latest_offset is 5 (3 records, 2 rolled back)');

# the attempts may be refused (that is the fix); their result is not the test
for my $sql ("SELECT setval('$seq', 0, false)", "ALTER SEQUENCE $seq RESTART")
{
	my ($rc, $out, $err) =
	  $node->psql('postgres', "SET ROLE alice; $sql", on_error_stop => 1);
	note "as the topic owner: $sql => "
	  . ($rc == 0 ? 'allowed' : "refused: $err");
}
$node->restart;

{
	my $owned_after = $node->safe_psql('postgres',
		q{SELECT commitlog.latest_offset('owned', 0)});
	cmp_ok($owned_after, '>=', $owned_before,
		'owned: latest_offset does not go backwards after the owner touched the sequence'
	);
	my ($rc, $new, $err) = $node->psql('postgres',
		q{SELECT log_offset FROM commitlog.produce('owned', 'after'::text, partition => 0)}
	);
	is($rc, 0, 'owned: produce works after the restart') or diag $err;
	ok($rc == 0 && $new >= $owned_before,
		'owned: the new record gets an offset >= the latest_offset seen before');
}

$node->stop;
done_testing();
