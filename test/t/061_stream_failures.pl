# Stream processors (DESIGN 13, src/stream): failures, pause, identity.
#
# - a handler that fails on some records: the batch is retried
#   (max_retries), then bisected; the records that fail on their own go to
#   the dead-letter topic with the error in headers, the others take effect
#   in order, and processing goes on;
# - a handler that fails until something outside changes: retried with
#   backoff, status 'retrying' and last_error meanwhile, then it succeeds
#   and nothing is dead-lettered;
# - pause_processor stops a processor (a second processor on the same topic
#   shows the records were there to process), resume_processor restarts it;
# - the handler runs as the role that created the processor, and settings
#   it changes do not leak into the next batch; without EXECUTE on it the
#   processor retries (past max_retries) and dead-letters nothing, and such
#   failures do not use up the handler's retries;
# - while a session restores (commitlog.restore_mode), nothing is processed.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('stream_failures',
	extra_conf => "commitlog.worker_naptime = 100\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . "commitlog.max_processor_workers = 3\n"
	  . "commitlog.processor_idle_timeout = 500\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# --- dead letters after retries ---------------------------------------------
q1(q{SELECT commitlog.create_topic('orders', 1)});
q1(q{CREATE TABLE handled (seq bigserial PRIMARY KEY, log_offset bigint, value text)});
q1(q{CREATE FUNCTION picky(records commitlog.record[]) RETURNS void
     LANGUAGE plpgsql AS $$
     DECLARE r commitlog.record;
     BEGIN
       FOREACH r IN ARRAY records LOOP
         IF convert_from(r.value, 'UTF8') = 'bad' THEN
           RAISE EXCEPTION 'bad record at %', r.log_offset USING ERRCODE = '22P02';
         END IF;
         INSERT INTO handled (log_offset, value) VALUES (r.log_offset, convert_from(r.value, 'UTF8'));
       END LOOP;
     END $$});
# values v0 .. v24, except offsets 7 and 18, which are 'bad'
q1(q{SELECT count(*) FROM commitlog.produce_messages('orders',
       array(SELECT ROW(NULL, convert_to(CASE WHEN i IN (7, 18) THEN 'bad' ELSE 'v' || i END, 'UTF8'),
                        ARRAY[ROW('trace', '\x01'::bytea)]::commitlog.header[], NULL, NULL)::commitlog.message
               FROM generate_series(0, 24) i))});
my $log_offset = -s $node->logfile;
q1(q{SELECT commitlog.create_processor('picky', 'orders', 'picky(commitlog.record[])',
                                       batch_size => 10, max_retries => 2)});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'picky'}),
	'a processor with failing records gets through the topic');
is( q1(q{SELECT string_agg(value, ',' ORDER BY seq) FROM handled}),
	join(',', map { "v$_" } grep { $_ != 7 && $_ != 18 } 0 .. 24),
	'every other record took effect once, in offset order');
is( q1(
		q{SELECT log_offset, convert_from(value, 'UTF8'),
		         (SELECT string_agg(h.key || '=' || convert_from(h.value, 'UTF8'), ' ' ORDER BY h.key)
		            FROM unnest(headers) h WHERE h.key LIKE 'commitlog.error.%')
		    FROM commitlog.fetch('orders.dlq', 0, 0) ORDER BY log_offset}),
	"0|bad|commitlog.error.message=bad record at 7 commitlog.error.offset=7 commitlog.error.partition=0 "
	  . "commitlog.error.processor=picky commitlog.error.sqlstate=22P02 commitlog.error.topic=orders\n"
	  . "1|bad|commitlog.error.message=bad record at 18 commitlog.error.offset=18 commitlog.error.partition=0 "
	  . "commitlog.error.processor=picky commitlog.error.sqlstate=22P02 commitlog.error.topic=orders",
	'the failing records are in orders.dlq with the error in headers');
is( q1(
		q{SELECT count(*) FROM commitlog.fetch('orders.dlq', 0, 0) d, unnest(d.headers) h
		   WHERE h.key = 'trace' AND h.value = '\x01'}),
	'2', 'dead letters keep their own headers');
is( q1(q{SELECT status, processed, last_error FROM commitlog.processors WHERE name = 'picky'}),
	'active|23|bad record at 18',
	'processors: 23 processed, the last error shown, status active again');
is( q1(q{SELECT sum(dead_lettered), max(failures) FROM commitlog.stream_partitions s
          JOIN commitlog.stream_jobs j ON j.id = s.job_id WHERE j.name = 'picky'}),
	'2|0', 'two records dead-lettered, no failure pending');
my $log = slurp_file($node->logfile, $log_offset);
for my $failure ('failure 1', 'failure 2', 'failure 3, dead-lettering')
{
	like($log, qr/processor "picky" failed on partition 0, offsets 0 to 9 \($failure\): bad record at 7/,
		"the batch with offset 7: $failure");
}
unlike($log, qr/failure 4/, 'no retry past max_retries');

# --- retries until the cause goes away --------------------------------------
q1(q{SELECT commitlog.create_topic('gated', 2)});
q1(q{CREATE TABLE gate (open boolean)});
q1(q{INSERT INTO gate VALUES (false)});
q1(q{CREATE TABLE passed (log_offset bigint)});
q1(q{CREATE FUNCTION gated(records commitlog.record[]) RETURNS void
     LANGUAGE plpgsql AS $$
     BEGIN
       IF NOT (SELECT open FROM gate) THEN RAISE EXCEPTION 'gate closed'; END IF;
       INSERT INTO passed SELECT r.log_offset FROM unnest(records) r;
     END $$});
q1(q{SELECT commitlog.create_processor('gated', 'gated', 'gated(commitlog.record[])', max_retries => 1000)});
q1(q{SELECT count(*) FROM commitlog.produce_batch('gated', ARRAY['a', 'b', 'c', 'd', 'e']::bytea[], partition => 1)});
ok( $node->poll_query_until('postgres',
		q{SELECT status = 'retrying' AND last_error = 'gate closed' AND lag = 5
		    FROM commitlog.processors WHERE name = 'gated'}),
	'a failing batch is retried: status retrying, last_error set, nothing processed');
ok( $node->poll_query_until('postgres',
		q{SELECT failures >= 3 FROM commitlog.stream_partitions s
		    JOIN commitlog.stream_jobs j ON j.id = s.job_id WHERE j.name = 'gated'}),
	'... again and again');
q1(q{UPDATE gate SET open = true});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'gated'}),
	'once the cause is fixed the batch goes through');
is(q1(q{SELECT count(*) FROM passed}), '5', 'each record once');
is(q1(q{SELECT status, processed FROM commitlog.processors WHERE name = 'gated'}),
	'active|5', 'status back to active');
is(q1(q{SELECT count(*) FROM commitlog.fetch('gated.dlq', 0, 0)}), '0', 'nothing dead-lettered');

# --- pause and resume --------------------------------------------------------
q1(q{SELECT commitlog.create_topic('pp', 2)});
q1(q{CREATE TABLE seen (processor text, partition int, log_offset bigint)});
q1(q{CREATE FUNCTION seen_a(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$
       INSERT INTO seen SELECT 'a', r.partition, r.log_offset FROM unnest(records) r $$});
q1(q{CREATE FUNCTION seen_b(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$
       INSERT INTO seen SELECT 'b', r.partition, r.log_offset FROM unnest(records) r $$});
q1(q{SELECT commitlog.create_processor('pa', 'pp', 'seen_a(commitlog.record[])')});
q1(q{SELECT commitlog.create_processor('pb', 'pp', 'seen_b(commitlog.record[])')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('pp', array_fill('x'::bytea, ARRAY[40]))});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 80 FROM seen}), 'both processors run');
q1(q{SELECT commitlog.pause_processor('pa')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('pp', array_fill('y'::bytea, ARRAY[30]))});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'pb'}),
	'the running processor takes the new records');
is( q1(q{SELECT status, lag, processed FROM commitlog.processors WHERE name = 'pa'}),
	'paused|30|40', 'the paused one did not touch them');
is(q1(q{SELECT count(*) FROM seen WHERE processor = 'a'}), '40', '... no effect at all');
q1(q{SELECT commitlog.resume_processor('pa')});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'pa'}),
	'resume_processor: it catches up');
is(q1(q{SELECT count(*), count(DISTINCT (partition, log_offset)) FROM seen WHERE processor = 'a'}),
	'70|70', 'every record once');

# drop_processor while records keep coming: nothing runs afterwards
q1(q{SELECT commitlog.drop_processor('pb')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('pp', array_fill('z'::bytea, ARRAY[10]))});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'pa'}),
	'the other processor goes on');
is(q1(q{SELECT count(*) FROM seen WHERE processor = 'b'}), '70', 'the dropped one is gone');
is(q1(q{SELECT count(*) FROM commitlog.group_offsets WHERE group_id = 'pb'}), '0',
	'with its positions');

# --- identity and settings of the handler -----------------------------------
q1(q{CREATE ROLE alice LOGIN});
q1(q{SELECT commitlog.create_topic('who', 1)});
q1(q{GRANT SELECT, INSERT ON commitlog_topics.who TO alice});
q1(q{CREATE TABLE whoami (usr text, wm text)});
q1(q{GRANT INSERT ON whoami TO alice});
q1(q{GRANT CREATE ON SCHEMA commitlog_topics TO alice});
# each call records who runs it and work_mem, then changes work_mem for the
# session: the next call must not see the change
q1(q{CREATE FUNCTION whoami(records commitlog.record[]) RETURNS void LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO whoami VALUES (current_user, current_setting('work_mem'));
       PERFORM set_config('work_mem', '7MB', false);
     END $$});
$node->safe_psql('postgres', q{SET ROLE alice; SELECT commitlog.create_processor('as_alice', 'who', 'whoami(commitlog.record[])', batch_size => 1)});
q1(q{SELECT count(*) FROM commitlog.produce_batch('who', ARRAY['1', '2']::bytea[])});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM whoami}), 'the handler ran twice');
is(q1(q{SELECT DISTINCT usr FROM whoami}), 'alice', 'as the role that created the processor');
is(q1(q{SELECT count(*) FROM whoami WHERE wm = '7MB'}), '0', 'a setting changed by a handler does not outlive its batch');
is(q1(q{SELECT tableowner FROM pg_tables WHERE schemaname = 'commitlog_topics' AND tablename = 'who.dlq'}),
	'alice', 'the dead-letter topic created for it belongs to the processor\'s owner');

# a right the owner loses stops the processor, but is no reason to
# dead-letter records: retried, past max_retries, until it is back
q1(q{REVOKE EXECUTE ON FUNCTION whoami(commitlog.record[]) FROM PUBLIC});
q1(q{SELECT commitlog.pause_processor('as_alice')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('who', ARRAY['3']::bytea[])});
q1(q{SELECT commitlog.resume_processor('as_alice')});
ok( $node->poll_query_until('postgres',
		q{SELECT s.failures >= 5 FROM commitlog.stream_partitions s
		    JOIN commitlog.stream_jobs j ON j.id = s.job_id WHERE j.name = 'as_alice'}),
	'without EXECUTE on its handler the processor fails, again and again');
is( q1(q{SELECT status, lag, last_error FROM commitlog.processors WHERE name = 'as_alice'}),
	'retrying|1|permission denied for function public.whoami(commitlog.record[])',
	'... shown as retrying, with the reason');
is(q1(q{SELECT count(*) FROM commitlog.fetch('who.dlq', 0, 0)}), '0',
	'... and nothing is dead-lettered, past max_retries (3) too');
q1(q{GRANT EXECUTE ON FUNCTION whoami(commitlog.record[]) TO alice});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'as_alice'}),
	'with the right back, it goes on');

# failures that were not the handler's do not use up its retries: once the
# right is back, a handler failure is retried max_retries times before its
# records are dead-lettered
q1(q{SELECT commitlog.create_topic('latch', 1)});
q1(q{GRANT SELECT ON commitlog_topics.latch TO alice});
q1(q{CREATE TABLE latch (open boolean)});
q1(q{INSERT INTO latch VALUES (false)});
q1(q{CREATE TABLE latched (log_offset bigint)});
q1(q{GRANT SELECT ON latch TO alice});
q1(q{GRANT INSERT ON latched TO alice});
q1(q{CREATE FUNCTION latched(records commitlog.record[]) RETURNS void LANGUAGE plpgsql AS $$
     BEGIN
       IF NOT (SELECT open FROM public.latch) THEN
         RAISE EXCEPTION 'the latch is closed';
       END IF;
       INSERT INTO public.latched SELECT r.log_offset FROM unnest(records) r;
     END $$});
$node->safe_psql('postgres',
	q{SET ROLE alice; SELECT commitlog.create_processor('latched', 'latch', 'latched(commitlog.record[])', max_retries => 1)});
q1(q{REVOKE SELECT ON commitlog_topics.latch FROM alice});
q1(q{SELECT count(*) FROM commitlog.produce_batch('latch', ARRAY['1']::bytea[])});
ok( $node->poll_query_until('postgres',
		q{SELECT s.failures >= 3 FROM commitlog.stream_partitions s
		    JOIN commitlog.stream_jobs j ON j.id = s.job_id WHERE j.name = 'latched'}),
	'without SELECT on its topic the processor fails, more often than max_retries');
q1(q{GRANT SELECT ON commitlog_topics.latch TO alice});
ok( $node->poll_query_until('postgres',
		q{SELECT last_error = 'the latch is closed' FROM commitlog.processors WHERE name = 'latched'}),
	'with the right back, the handler runs, and fails');
is( q1(q{SELECT p.lag, (SELECT count(*) FROM commitlog.fetch('latch.dlq', 0, 0))
           FROM commitlog.processors p WHERE p.name = 'latched'}),
	'1|0', '... which is its first failure: retried, not dead-lettered');
q1(q{UPDATE latch SET open = true});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'latched'}),
	'its retry succeeds');
is(q1(q{SELECT count(*) FROM latched}) . '|' . q1(q{SELECT count(*) FROM commitlog.fetch('latch.dlq', 0, 0)}),
	'1|0', '... and the record took effect, nothing dead-lettered');

# a handler dropped and created anew (a new function): the processor stops
# with status 'error'; the recipe of docs/stream-processing.md moves it to
# the new function at its position, in one transaction
q1(q{DROP FUNCTION latched(commitlog.record[])});
q1(q{SELECT count(*) FROM commitlog.produce_batch('latch', ARRAY['2']::bytea[])});
is(q1(q{SELECT status, lag, last_error FROM commitlog.processors WHERE name = 'latched'}),
	'error|1|the handler function no longer exists', 'a dropped handler stops its processor');
q1(q{CREATE FUNCTION latched_v2(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$
       INSERT INTO public.latched SELECT -r.log_offset FROM unnest(records) r $$});
q1(q{GRANT EXECUTE ON FUNCTION latched_v2(commitlog.record[]) TO alice});
$node->safe_psql('postgres', q{
  SET ROLE alice;
  BEGIN;
  CREATE TEMP TABLE kept AS
    SELECT topic, partition, committed_offset FROM commitlog.group_offsets WHERE group_id = 'latched';
  SELECT commitlog.drop_processor('latched');
  SELECT commitlog.commit_offset('latched', topic, partition, committed_offset) FROM kept;
  SELECT commitlog.create_processor('latched', 'latch', 'latched_v2(commitlog.record[])', max_retries => 1);
  COMMIT;});
ok($node->poll_query_until('postgres', q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'latched'}),
	'with the handler replaced it goes on');
is(q1(q{SELECT string_agg(log_offset::text, ',' ORDER BY abs(log_offset)) FROM latched}),
	'0,-1', '... from where it was: only the new record, by the new handler');

# --- no processing while a restore runs -------------------------------------
q1(q{SELECT commitlog.create_topic('restoring', 1)});
q1(q{CREATE TABLE restored (log_offset bigint)});
q1(q{CREATE FUNCTION restored(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$
       INSERT INTO restored SELECT r.log_offset FROM unnest(records) r $$});
q1(q{SELECT commitlog.create_processor('during_restore', 'restoring', 'restored(commitlog.record[])')});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_commitlog processor'}),
	'no processor worker runs');
my $restorer = $node->background_psql('postgres', on_error_stop => 1);
$restorer->query_safe('SET commitlog.restore_mode = on');
q1(q{SELECT count(*) FROM commitlog.produce_batch('restoring', ARRAY['1', '2', '3']::bytea[], partition => 0)});
# the database's worker gives new partitions their positions in its cycle:
# two of them prove that it ran (and counted the work) after the records came
for my $n (2, 3)
{
	q1(qq{SELECT commitlog.add_partitions('restoring', $n)});
	$node->poll_query_until('postgres',
		qq{SELECT count(*) = $n FROM commitlog.group_offsets WHERE group_id = 'during_restore'})
	  or die "the worker did not run its stream upkeep";
}
is( q1(q{SELECT lag, processed FROM commitlog.processors WHERE name = 'during_restore'}),
	'3|0', 'while a session restores, the records wait');
is(q1(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_commitlog processor'}),
	'0', '... and no processor worker is started');
$restorer->query_safe('RESET commitlog.restore_mode');
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 AND processed = 3 FROM commitlog.processors WHERE name = 'during_restore'}),
	'once the restore ends, they are processed');
$restorer->quit;

done_testing();
