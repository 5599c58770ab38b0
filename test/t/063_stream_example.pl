# The worked example of docs/stream-processing.md (log aggregation), run as
# the document has it: the SQL blocks between its example markers, in
# order.  Then more log lines, a kill -9 of the postmaster while they are
# counted, and the counts compared with counts computed from the topic.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $repo = $ENV{PG_COMMITLOG_REPO} or die "PG_COMMITLOG_REPO is not set";
my $doc = slurp_file("$repo/docs/stream-processing.md");
my ($example) = $doc =~ /<!-- example:begin -->(.*?)<!-- example:end -->/s;
ok(defined $example, 'the document has a marked example');
my @blocks = $example =~ /^```sql\n(.*?)^```/msg;
cmp_ok(scalar @blocks, '>=', 4, 'with its SQL blocks');

my $node = commitlog_node('example',
	extra_conf => "commitlog.worker_naptime = 100\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . "restart_after_crash = on\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

$node->safe_psql('postgres', $_) for @blocks;
ok( $node->poll_query_until('postgres',
		q{SELECT (SELECT lag = 0 AND processed = 5 FROM commitlog.processors WHERE name = 'log_counter')
		     AND (SELECT lag = 0 FROM commitlog.derived_tables)}),
	'the processor and the derived table catch up');
is( q1(
		q{SELECT string_agg(service || ' ' || to_char(minute AT TIME ZONE 'UTC', 'HH24:MI') || ' ' || lines,
		                    ', ' ORDER BY service, minute) FROM service_minute_counts}),
	'checkout 10:15 2, checkout 10:16 1, search 10:15 1, search 10:16 1',
	'the counts are the ones the document shows');

# the derived table holds the newest count of each (service, minute)
my $same = q{SELECT count(*) FROM (
               (SELECT service || ' ' || minute, lines FROM service_minute_counts
                EXCEPT SELECT convert_from(key, 'UTF8'), (convert_from(value, 'UTF8')::jsonb ->> 'lines')::bigint
                         FROM latest_log_counts)
               UNION ALL
               (SELECT convert_from(key, 'UTF8'), (convert_from(value, 'UTF8')::jsonb ->> 'lines')::bigint
                  FROM latest_log_counts
                EXCEPT SELECT service || ' ' || minute, lines FROM service_minute_counts)) d};
is(q1($same), '0', 'latest_log_counts agrees with the table');

# --- more lines, and a crash while they are counted -----------------------
# (a trigger slows the counting down, so that the crash is sure to come
# while it runs)
q1(q{CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END $$});
q1(q{CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON service_minute_counts
     FOR EACH ROW EXECUTE FUNCTION slow_row()});
q1(q{SELECT count(*) FROM commitlog.produce_batch('logs',
       array(SELECT convert_to(to_char(timestamp '2026-11-26 11:00' + i * interval '1 s', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                               || ' ' || (ARRAY['checkout', 'search', 'billing'])[1 + i % 3] || ' INFO line ' || i, 'UTF8')
               FROM generate_series(1, 30000) i),
       array(SELECT convert_to('web-' || (i % 7), 'UTF8') FROM generate_series(1, 30000) i))});
ok( $node->poll_query_until('postgres',
		q{SELECT processed > 5 FROM commitlog.processors WHERE name = 'log_counter'}),
	'counting the new lines has begun');
my $lag = q1(q{SELECT lag FROM commitlog.processors WHERE name = 'log_counter'});
kill9_postmaster($node);
$node->start;
cmp_ok($lag, '>', 0, "the postmaster was killed while lines were being counted (lag $lag)");
ok( $node->poll_query_until('postgres',
		q{SELECT (SELECT lag = 0 FROM commitlog.processors WHERE name = 'log_counter')
		     AND (SELECT lag = 0 FROM commitlog.derived_tables)}),
	'both catch up after the restart');
is( q1(
		q{SELECT count(*) FROM (
		    (SELECT split_part(l, ' ', 2) AS service,
		            date_trunc('minute', split_part(l, ' ', 1)::timestamptz) AS minute, count(*) AS lines
		       FROM (SELECT convert_from(value, 'UTF8') AS l FROM commitlog_topics.logs) t GROUP BY 1, 2
		     EXCEPT SELECT * FROM service_minute_counts)
		    UNION ALL
		    (SELECT * FROM service_minute_counts
		     EXCEPT SELECT split_part(l, ' ', 2), date_trunc('minute', split_part(l, ' ', 1)::timestamptz), count(*)
		              FROM (SELECT convert_from(value, 'UTF8') AS l FROM commitlog_topics.logs) t GROUP BY 1, 2)) d}),
	'0', 'every line counted exactly once, across the crash');
is(q1($same), '0', 'latest_log_counts agrees with the table after the crash');
is(q1(q{SELECT sum(lines) FROM service_minute_counts}), '30005', 'all 30005 lines');

done_testing();
