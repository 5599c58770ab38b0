# Stream processors (DESIGN 13, src/stream): exactly once across crashes.
#
# A processor whose handler inserts a row per record into a table and
# produces a record per record to another topic runs while producers
# write; its worker is SIGKILLed mid-stream (a crash restart of the whole
# server), later the postmaster itself.  In the end every input record has
# taken effect exactly once (one row, one output record), and in offset
# order within its partition.  Also: the workers run partitions in
# parallel, never more than commitlog.max_processor_workers, exit when idle
# and come back when records arrive.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('stream',
	extra_conf => "commitlog.worker_naptime = 100\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . "commitlog.max_processor_workers = 2\n"
	  . "commitlog.processor_idle_timeout = 1000\n"
	  . "restart_after_crash = on\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# processor workers running now
my $workers = q{(SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'pg_commitlog processor')};

q1(q{SELECT commitlog.create_topic('in', 3)});
q1(q{SELECT commitlog.create_topic('out', 3)});
q1(q{CREATE TABLE effects (seq bigserial PRIMARY KEY, partition int, log_offset bigint)});
# one row and one output record per input record; a short pause per batch
# so that the kills below land inside batches
q1(q{CREATE FUNCTION handle(records commitlog.record[]) RETURNS void
     LANGUAGE plpgsql AS $$
     DECLARE r commitlog.record;
     BEGIN
       FOREACH r IN ARRAY records LOOP
         INSERT INTO effects (partition, log_offset) VALUES (r.partition, r.log_offset);
         PERFORM commitlog.produce('out', convert_to(r.partition || ':' || r.log_offset, 'UTF8'), r.key);
       END LOOP;
       PERFORM pg_sleep(0.03);
     END $$});

# producing $n keyed records in transactions of 50
sub produce_sql
{
	my ($tag, $n) = @_;
	my $batches = $n / 50;
	return qq{DO \$\$ BEGIN
	  FOR i IN 1..$batches LOOP
	    PERFORM commitlog.produce_batch('in',
	      array(SELECT convert_to('$tag' || i || '-' || j, 'UTF8') FROM generate_series(1, 50) j),
	      array(SELECT convert_to('k' || (j % 23), 'UTF8') FROM generate_series(1, 50) j));
	    COMMIT;
	    PERFORM pg_sleep(0.01);
	  END LOOP;
	END \$\$};
}

sub processed
{
	return q1(q{SELECT processed FROM commitlog.processors WHERE name = 'p'});
}

# --- phase A: a backlog, two workers, a worker killed --------------------
q1(produce_sql('a', 1500));
q1(q{SELECT commitlog.create_processor('p', 'in', 'handle(commitlog.record[])', batch_size => 20)});
ok($node->poll_query_until('postgres', "SELECT $workers = 2"),
	'two processor workers run the three partitions in parallel');
ok($node->poll_query_until('postgres', q{SELECT processed >= 200 FROM commitlog.processors WHERE name = 'p'}),
	'the processor makes progress');
is(q1("SELECT $workers"), '2', 'never more than commitlog.max_processor_workers');

my $pid = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_commitlog processor'
             ORDER BY pid LIMIT 1});
my $before = processed();
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', q{SELECT processed >= 600 FROM commitlog.processors WHERE name = 'p'}),
	'after kill -9 of a processor worker (crash restart) processing goes on');
cmp_ok($before, '<', 1500, '... the kill came mid-stream');

# --- phase B: producers writing while the postmaster is killed -----------
my $producer = $node->background_psql('postgres', on_error_stop => 0);
$producer->query_until(qr/started/, "\\echo started\n" . produce_sql('b', 2000) . ";\n");
ok($node->poll_query_until('postgres', q{SELECT processed >= 1700 FROM commitlog.processors WHERE name = 'p'}),
	'the processor follows the producers');
$before = processed();
kill9_postmaster($node);
quit_quietly($producer);
$node->start;

# --- phase C: more records after the restart -----------------------------
q1(produce_sql('c', 500));
my $total = q1(q{SELECT count(*) FROM commitlog_topics."in"});
cmp_ok($before, '<', $total, 'the postmaster was killed mid-stream');
ok( $node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'p'}),
	'the processor catches up after the restart');
is(processed(), $total, 'processed counts every input record once');

# --- exactly once -----------------------------------------------------------
is(q1(q{SELECT count(*) FROM effects}), $total, 'one row per input record');
is(q1(q{SELECT count(*) FROM (SELECT partition, log_offset FROM effects
                               GROUP BY 1, 2 HAVING count(*) > 1) d}),
	'0', 'no input record took effect twice');
is( q1(
		q{SELECT count(*) FROM (
		    (SELECT partition, log_offset FROM commitlog_topics."in"
		     EXCEPT SELECT partition, log_offset FROM effects)
		    UNION ALL
		    (SELECT partition, log_offset FROM effects
		     EXCEPT SELECT partition, log_offset FROM commitlog_topics."in")) d}),
	'0', 'the rows are exactly the input records');
is(q1(q{SELECT count(*) FROM commitlog_topics."out"}), $total, 'one output record per input record');
is( q1(
		q{SELECT count(*) FROM (
		    (SELECT partition || ':' || log_offset FROM commitlog_topics."in"
		     EXCEPT SELECT convert_from(value, 'UTF8') FROM commitlog_topics."out")
		    UNION ALL
		    (SELECT convert_from(value, 'UTF8') FROM commitlog_topics."out"
		     GROUP BY 1 HAVING count(*) > 1)) d}),
	'0', 'each input record produced exactly one output record');

# --- order -----------------------------------------------------------------
is( q1(
		q{SELECT count(*) FROM (
		    SELECT log_offset < lag(log_offset) OVER (PARTITION BY partition ORDER BY seq) AS back
		      FROM effects) e WHERE back}),
	'0', 'within a partition, records took effect in offset order');
is( q1(
		q{SELECT count(*) FROM (
		    SELECT split_part(v, ':', 2)::bigint
		           < lag(split_part(v, ':', 2)::bigint) OVER (PARTITION BY key ORDER BY partition, log_offset) AS back
		      FROM (SELECT key, partition, log_offset, convert_from(value, 'UTF8') AS v
		              FROM commitlog_topics."out") o) e WHERE back}),
	'0', 'output records of one key are in input order');
is( q1(
		q{SELECT count(*) FROM commitlog.group_offsets g
		   WHERE g.group_id = 'p' AND g.committed_offset = g.latest_offset}),
	'3', 'the group positions (group id = processor name) are at the end of each partition');

# --- idle workers exit, and come back --------------------------------------
ok($node->poll_query_until('postgres', "SELECT $workers = 0"),
	'processor workers exit when there is nothing to do');
q1(q{SELECT commitlog.produce('in', 'late'::text, key => 'k1')});
ok($node->poll_query_until('postgres', qq{SELECT processed = $total + 1 FROM commitlog.processors WHERE name = 'p'}),
	'a new record gets a worker started again');
is(q1(q{SELECT count(*) FROM effects}), $total + 1, '... and takes effect once');

done_testing();
