# Copyright: pg_commitlog contributors
#
# 007_prepare: PREPARE TRANSACTION after producing is refused (DESIGN 4).
#
# Trap guarded: a prepared transaction outlives its session and may stay
# prepared indefinitely; its offsets would hold the stable offset of every
# partition it produced to, stopping every reader, and the in-flight entry
# would belong to no backend.  So PREPARE of a transaction that produced is
# refused, in XACT_EVENT_PRE_PREPARE (an error later, at PREPARE time, would
# come too late), with SQLSTATE 0A000 (feature_not_supported); the
# transaction is rolled back, nothing stays prepared, and readers are not
# held back afterwards.  A transaction that did not produce can still be
# prepared (max_prepared_transactions = 5), so the refusal is specific.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('prepare');
$node->safe_psql(
	'postgres', q{
	SELECT commitlog.create_topic('t', 2);
	SELECT commitlog.produce('t', 'first'::text, partition => 0);
	CREATE TABLE plain (i int);});

is($node->safe_psql('postgres', q{SELECT commitlog.latest_offset('t', 0)}),
	'1', 'latest_offset is 1 after the first record');

# produce then PREPARE, in one session that goes on afterwards
my $s = $node->background_psql('postgres', on_error_stop => 0);
$s->query_safe('BEGIN');
my $offsets = $s->query_safe(
	q{SELECT string_agg(log_offset::text, ',') FROM (
	    SELECT (commitlog.produce('t', 'in prepared'::text, partition => 0)).log_offset
	    UNION ALL
	    SELECT (commitlog.produce('t', 'in prepared'::text, partition => 1)).log_offset) x});
is($offsets, '1,0', 'the transaction got offsets in both partitions');
my ($out, $failed) = $s->query("\\set VERBOSITY verbose\nPREPARE TRANSACTION 'p1'");
ok($failed, 'PREPARE TRANSACTION after producing fails');
like($s->{stderr}, qr/ERROR:\s+0A000:/, '... with SQLSTATE 0A000');
like($s->{stderr}, qr/prepare/i, '... and a message about preparing');
$s->{stderr} = '';

is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'nothing is left prepared');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM commitlog_topics.t WHERE value = 'in prepared'}),
	'0',
	'the records of the refused transaction are gone (rolled back)');

# readers are not held back: the refused transaction's offsets are a gap
is($node->safe_psql('postgres', q{SELECT commitlog.latest_offset('t', 0)}),
	'2', 'latest_offset of partition 0 passes the refused offset at once');
is($node->safe_psql('postgres', q{SELECT commitlog.latest_offset('t', 1)}),
	'1', 'latest_offset of partition 1 passes the refused offset at once');

# the same session produces again and a reader sees it immediately
my $next = $s->query_safe(
	q{SELECT log_offset FROM commitlog.produce('t', 'after'::text, partition => 0)});
is($next, '2', 'the same session produces again (autocommit)');
is($node->safe_psql('postgres', q{SELECT commitlog.latest_offset('t', 0)}),
	'3', 'latest_offset advances with the new record');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(log_offset || '=' || convert_from(value, 'UTF8'), ',' ORDER BY log_offset)
		    FROM commitlog.fetch('t', 0, 0)}),
	'0=first,2=after',
	'a reader gets the records around the gap');

# produce inside a savepoint that was rolled back still counts as producing
$s->query_safe('BEGIN');
$s->query_safe('SAVEPOINT a');
$s->query_safe(q{SELECT commitlog.produce('t', 'sp'::text, partition => 1)});
$s->query_safe('ROLLBACK TO SAVEPOINT a');
$s->query_safe('INSERT INTO plain VALUES (1)');
($out, $failed) = $s->query("\\set VERBOSITY verbose\nPREPARE TRANSACTION 'p2'");
$s->{stderr} = '';
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'after a savepoint rollback of the produce, nothing is left prepared either');
my $latest1 = $node->safe_psql('postgres', q{SELECT commitlog.latest_offset('t', 1)});
cmp_ok($latest1, '>=', 2, 'partition 1 is not held back');

# control: a transaction that did not produce can be prepared
$s->query_safe('BEGIN');
$s->query_safe('INSERT INTO plain VALUES (2)');
$s->query_safe(q{SELECT count(*) FROM commitlog.fetch('t', 0, 0)});
$s->query_safe("PREPARE TRANSACTION 'p3'");
is($node->safe_psql('postgres', 'SELECT gid FROM pg_prepared_xacts'),
	'p3', 'a transaction that only read topics can be prepared');
$node->safe_psql('postgres', "COMMIT PREPARED 'p3'");

# and producing in a later transaction of that session still works
is( $s->query_safe(
		q{SELECT log_offset FROM commitlog.produce('t', 'last'::text, partition => 0)}),
	'3', 'producing works after the prepared transaction');
is($node->safe_psql('postgres', q{SELECT commitlog.latest_offset('t', 0)}),
	'4', 'and readers see it');

$s->quit;
$node->stop;
done_testing();
