--
-- Consumer groups (DESIGN 5): commit_offset, committed_offset, consume,
-- reset_offsets, delete_group, the group_offsets view, and their errors.
-- Long polling with nothing to read (fetch/consume with wait_ms) is covered
-- at the end; wakeups by other sessions are in test/t/010_long_poll.pl and
-- the isolation specs groups_*.
--
-- Committed offset = the next offset the group reads, as in Kafka.
--
\pset null '<null>'
SET client_min_messages = warning;

-- SQLSTATE and message of a statement's error, or 'ok'
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- a consume call, as (partition, log_offset, value) in a stable order
CREATE FUNCTION pg_temp.consumed(g text, t text, n int DEFAULT 1000,
                                 reset text DEFAULT 'earliest')
RETURNS TABLE (partition int, log_offset bigint, value text)
LANGUAGE sql VOLATILE AS $$
	SELECT c.partition, c.log_offset, convert_from(c.value, 'UTF8')
	  FROM commitlog.consume(g, t, max_records => n, auto_offset_reset => reset) c
	 ORDER BY 1, 2
$$;

-- the group's positions in a topic, without the time columns
CREATE FUNCTION pg_temp.positions(g text, t text)
RETURNS TABLE (partition int, committed_offset bigint, latest_offset bigint, lag bigint)
LANGUAGE sql VOLATILE AS $$
	SELECT o.partition, o.committed_offset, o.latest_offset, o.lag
	  FROM commitlog.group_offsets o
	 WHERE o.group_id = g AND o.topic = t
	 ORDER BY 1
$$;

-- grp_t: p0 holds a0 a1 a2, p1 holds b0 b1, p2 is empty
SELECT commitlog.create_topic('grp_t', 3);
SELECT count(*) FROM commitlog.produce_batch('grp_t', ARRAY['a0', 'a1', 'a2']::bytea[], partition => 0);
SELECT count(*) FROM commitlog.produce_batch('grp_t', ARRAY['b0', 'b1']::bytea[], partition => 1);

--
-- commit_offset / committed_offset
--
-- no position yet: NULL
SELECT commitlog.committed_offset('g1', 'grp_t', 0);
SELECT commitlog.commit_offset('g1', 'grp_t', 0, 2, metadata => 'processed up to a1');
SELECT commitlog.committed_offset('g1', 'grp_t', 0);
-- other partitions of the group still have none
SELECT commitlog.committed_offset('g1', 'grp_t', 1);
-- the metadata is stored beside the offset
SELECT group_id, topic, partition, committed_offset, latest_offset, lag, metadata,
       committed_at IS NOT NULL AS has_committed_at
  FROM commitlog.group_offsets WHERE group_id = 'g1';
SELECT group_id, topic_id = (SELECT id FROM commitlog.topics WHERE name = 'grp_t') AS topic_ok,
       partition, committed_offset, metadata
  FROM commitlog.consumer_offsets WHERE group_id = 'g1';
-- the view's columns, in the documented order
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute
 WHERE attrelid = 'commitlog.group_offsets'::regclass AND attnum > 0
 ORDER BY attnum;
-- a new commit replaces offset and metadata; without metadata it is NULL
SELECT commitlog.commit_offset('g1', 'grp_t', 0, 1, 'again');
SELECT partition, committed_offset, metadata FROM commitlog.group_offsets WHERE group_id = 'g1';
SELECT commitlog.commit_offset('g1', 'grp_t', 0, 1);
SELECT partition, committed_offset, metadata FROM commitlog.group_offsets WHERE group_id = 'g1';
-- commit_offset is transactional
BEGIN;
SELECT commitlog.commit_offset('g1', 'grp_t', 0, 3);
SELECT commitlog.committed_offset('g1', 'grp_t', 0);
ROLLBACK;
SELECT commitlog.committed_offset('g1', 'grp_t', 0);
-- offsets are not checked against the log: beyond the end is stored (lag 0)
SELECT commitlog.commit_offset('g1', 'grp_t', 1, 100);
SELECT commitlog.commit_offset('g1', 'grp_t', 2, 0);
SELECT * FROM pg_temp.positions('g1', 'grp_t');
-- consume continues from the committed offsets: p0 from 1, p1 (100 is
-- beyond the log end) is reset to earliest, p2 is empty
SELECT * FROM pg_temp.consumed('g1', 'grp_t');
SELECT * FROM pg_temp.positions('g1', 'grp_t');

--
-- consume: max_records across partitions.  The scan starts at a random
-- partition, so print what is independent of it.
--
CREATE TEMP TABLE got (call int, partition int, log_offset bigint, value text);
INSERT INTO got SELECT 1, * FROM pg_temp.consumed('g2', 'grp_t', 4);
SELECT count(*) AS first_call FROM got;
-- within each partition the records come in order from the start: no holes
SELECT partition, min(log_offset) = 0 AS from_start,
       max(log_offset) - min(log_offset) + 1 = count(*) AS contiguous
  FROM got GROUP BY partition ORDER BY partition;
INSERT INTO got SELECT 2, * FROM pg_temp.consumed('g2', 'grp_t', 4);
SELECT count(*) AS second_call FROM got WHERE call = 2;
-- together: every record exactly once
SELECT partition, log_offset, value, count(*) FROM got
 GROUP BY partition, log_offset, value ORDER BY partition, log_offset;
-- nothing left; the group is at the end everywhere
SELECT * FROM pg_temp.consumed('g2', 'grp_t', 4);
SELECT * FROM pg_temp.positions('g2', 'grp_t');
-- max_records 1 returns one record
SELECT count(*) FROM commitlog.produce('grp_t', 'a3', partition => 0);
SELECT count(*) FROM commitlog.produce('grp_t', 'a4', partition => 0);
SELECT * FROM pg_temp.consumed('g2', 'grp_t', 1);
SELECT * FROM pg_temp.consumed('g2', 'grp_t', 1);
SELECT * FROM pg_temp.consumed('g2', 'grp_t', 1);
-- the lag of a group behind the log
SELECT * FROM pg_temp.positions('g1', 'grp_t');
-- a consume with defaults (every record, auto_offset_reset 'earliest')
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value, topic, key, headers
  FROM commitlog.consume('g9', 'grp_t') ORDER BY partition, log_offset;

--
-- consume commits positions with the caller's transaction
--
SELECT commitlog.create_topic('grp_tx', 1);
SELECT count(*) FROM commitlog.produce_batch('grp_tx', ARRAY['x0', 'x1', 'x2']::bytea[]);
BEGIN;
SELECT * FROM pg_temp.consumed('g3', 'grp_tx', 2);
-- the transaction itself sees its new position
SELECT commitlog.committed_offset('g3', 'grp_tx', 0);
ROLLBACK;
-- rolled back: no position, the same records again
SELECT commitlog.committed_offset('g3', 'grp_tx', 0);
BEGIN;
SELECT * FROM pg_temp.consumed('g3', 'grp_tx', 2);
-- a second consume in the same transaction continues after them
SELECT * FROM pg_temp.consumed('g3', 'grp_tx', 2);
ROLLBACK;
BEGIN;
SELECT * FROM pg_temp.consumed('g3', 'grp_tx', 2);
COMMIT;
SELECT commitlog.committed_offset('g3', 'grp_tx', 0);
-- committed: not delivered again
SELECT * FROM pg_temp.consumed('g3', 'grp_tx', 2);
SELECT * FROM pg_temp.consumed('g3', 'grp_tx', 2);
-- a savepoint rollback re-delivers too
BEGIN;
SELECT count(*) FROM commitlog.produce('grp_tx', 'x3');
COMMIT;
BEGIN;
SAVEPOINT s;
SELECT * FROM pg_temp.consumed('g3', 'grp_tx');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM pg_temp.consumed('g3', 'grp_tx');
COMMIT;
-- a rolled-back produce leaves a gap (offset 4); consume moves past it
BEGIN;
SELECT * FROM commitlog.produce('grp_tx', 'gone');
ROLLBACK;
SELECT * FROM pg_temp.consumed('g3', 'grp_tx');
SELECT * FROM pg_temp.positions('g3', 'grp_tx');
SELECT * FROM commitlog.produce('grp_tx', 'x5');
SELECT * FROM pg_temp.consumed('g3', 'grp_tx');
SELECT * FROM pg_temp.positions('g3', 'grp_tx');

--
-- auto_offset_reset for a group with no position
--
SELECT commitlog.create_topic('grp_r', 1);
SELECT count(*) FROM commitlog.produce_batch('grp_r', ARRAY['r0', 'r1']::bytea[]);
SELECT * FROM pg_temp.consumed('g_early', 'grp_r', reset => 'earliest');
-- 'latest': nothing now, the position is pinned at the end
SELECT * FROM pg_temp.consumed('g_late', 'grp_r', reset => 'latest');
SELECT commitlog.committed_offset('g_late', 'grp_r', 0);
-- records produced after the first consume are delivered, earlier ones not
SELECT * FROM commitlog.produce('grp_r', 'r2');
SELECT * FROM pg_temp.consumed('g_late', 'grp_r', reset => 'latest');
-- a group with a position ignores auto_offset_reset
SELECT * FROM commitlog.produce('grp_r', 'r3');
SELECT * FROM pg_temp.consumed('g_early', 'grp_r', reset => 'latest');
-- consume moves the position and keeps the metadata of the last commit_offset
SELECT commitlog.commit_offset('g_meta', 'grp_r', 0, 1, 'from r1');
SELECT * FROM pg_temp.consumed('g_meta', 'grp_r');
SELECT partition, committed_offset, metadata FROM commitlog.group_offsets WHERE group_id = 'g_meta';
-- a committed position at the log end is valid: nothing to read, kept
SELECT commitlog.commit_offset('g_end', 'grp_r', 0, 4);
SELECT * FROM pg_temp.consumed('g_end', 'grp_r');
SELECT commitlog.committed_offset('g_end', 'grp_r', 0);
-- a committed offset beyond the log end is out of range: reset
SELECT commitlog.commit_offset('g_far_e', 'grp_r', 0, 100);
SELECT commitlog.commit_offset('g_far_l', 'grp_r', 0, 100);
SELECT * FROM pg_temp.consumed('g_far_e', 'grp_r', reset => 'earliest');
SELECT commitlog.committed_offset('g_far_e', 'grp_r', 0);
SELECT * FROM pg_temp.consumed('g_far_l', 'grp_r', reset => 'latest');
SELECT commitlog.committed_offset('g_far_l', 'grp_r', 0);
-- a committed offset below the log start is out of range: reset.  Raise the
-- log start to 2 by hand (stands in for delete_records / retention).
SELECT commitlog.commit_offset('g_low_e', 'grp_r', 0, 0);
SELECT commitlog.commit_offset('g_low_l', 'grp_r', 0, 1);
UPDATE commitlog.partitions SET log_start_offset = 2
 WHERE topic_id = (SELECT id FROM commitlog.topics WHERE name = 'grp_r');
SELECT commitlog.earliest_offset('grp_r', 0);
SELECT * FROM pg_temp.consumed('g_low_e', 'grp_r', reset => 'earliest');
SELECT commitlog.committed_offset('g_low_e', 'grp_r', 0);
SELECT * FROM pg_temp.consumed('g_low_l', 'grp_r', reset => 'latest');
SELECT commitlog.committed_offset('g_low_l', 'grp_r', 0);
-- reset_offsets 'earliest' uses the log start
SELECT commitlog.reset_offsets('g_low_e', 'grp_r', 'earliest');
SELECT commitlog.committed_offset('g_low_e', 'grp_r', 0);
-- and a new 'earliest' group starts there
SELECT * FROM pg_temp.consumed('g_new', 'grp_r');

--
-- reset_offsets: earliest, latest, a timestamp.  Records carry explicit
-- timestamps: p0 at 00:00 01:00 02:00, p1 at 00:30 01:30.
--
SELECT commitlog.create_topic('grp_ts', 2);
SELECT * FROM commitlog.produce('grp_ts', 't0', partition => 0, ts => '2024-01-01 00:00+00');
SELECT * FROM commitlog.produce('grp_ts', 't1', partition => 0, ts => '2024-01-01 01:00+00');
SELECT * FROM commitlog.produce('grp_ts', 't2', partition => 0, ts => '2024-01-01 02:00+00');
SELECT * FROM commitlog.produce('grp_ts', 'u0', partition => 1, ts => '2024-01-01 00:30+00');
SELECT * FROM commitlog.produce('grp_ts', 'u1', partition => 1, ts => '2024-01-01 01:30+00');
-- creates the group
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', 'latest');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
SELECT * FROM pg_temp.consumed('g_rs', 'grp_ts');
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', 'earliest');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
-- the default target is earliest
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', 'latest');
SELECT commitlog.reset_offsets('g_rs', 'grp_ts');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
-- a timestamp: the first offset at or after it
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', '2024-01-01 01:00+00');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
SELECT * FROM pg_temp.consumed('g_rs', 'grp_ts');
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', '2024-01-01 00:45+00');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
-- no record at or after it in p1: the end
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', '2024-01-01 01:45+00');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
SELECT * FROM pg_temp.consumed('g_rs', 'grp_ts');
-- before everything: the start; after everything: the end
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', '2000-01-01 00:00+00');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', '2030-01-01 00:00+00');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
-- a timestamp in another time zone's notation names the same instant
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', '2023-12-31 20:00-05');
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
-- reset_offsets is transactional
BEGIN;
SELECT commitlog.reset_offsets('g_rs', 'grp_ts', 'latest');
ROLLBACK;
SELECT * FROM pg_temp.positions('g_rs', 'grp_ts');
-- it touches only the named topic
SELECT commitlog.reset_offsets('g2', 'grp_tx', 'latest');
SELECT topic, partition, committed_offset FROM commitlog.group_offsets
 WHERE group_id = 'g2' ORDER BY topic, partition;

--
-- delete_group: every position of the group, in every topic
--
SELECT count(*) FROM commitlog.group_offsets WHERE group_id = 'g2';
SELECT commitlog.delete_group('g2');
SELECT count(*) FROM commitlog.group_offsets WHERE group_id = 'g2';
SELECT count(*) FROM commitlog.consumer_offsets WHERE group_id = 'g2';
SELECT pg_temp.err($$SELECT commitlog.delete_group('g2')$$);
SELECT pg_temp.err($$SELECT commitlog.delete_group('no_such_group')$$);
-- other groups are untouched
SELECT commitlog.committed_offset('g3', 'grp_tx', 0);
-- a deleted group starts over per auto_offset_reset
SELECT commitlog.delete_group('g3');
SELECT * FROM pg_temp.consumed('g3', 'grp_tx');
-- delete_group is transactional
BEGIN;
SELECT commitlog.delete_group('g3');
ROLLBACK;
SELECT commitlog.committed_offset('g3', 'grp_tx', 0);
\set VERBOSITY default
SELECT commitlog.delete_group('no_such_group');

--
-- errors
--
-- unknown topic: 42704
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g', 'no_such_topic', 0, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.committed_offset('g', 'no_such_topic', 0)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', 'no_such_topic')$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('g', 'no_such_topic')$$);
SELECT * FROM commitlog.consume('g', 'no_such_topic');
-- partition out of range: 22023
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g', 'grp_t', 3, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g', 'grp_t', -1, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.committed_offset('g', 'grp_t', 3)$$);
SELECT pg_temp.err($$SELECT commitlog.committed_offset('g', 'grp_t', -1)$$);
SELECT commitlog.commit_offset('g', 'grp_t', 3, 0);
-- negative or NULL offset: 22023
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g', 'grp_t', 0, -1)$$);
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g', 'grp_t', 0, NULL)$$);
SELECT commitlog.commit_offset('g', 'grp_t', 0, -1);
-- NULL group, topic, partition: 22023
SELECT pg_temp.err($$SELECT commitlog.commit_offset(NULL, 'grp_t', 0, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g', NULL, 0, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g', 'grp_t', NULL, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.committed_offset(NULL, 'grp_t', 0)$$);
SELECT pg_temp.err($$SELECT commitlog.committed_offset('g', NULL, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.committed_offset('g', 'grp_t', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume(NULL, 'grp_t')$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', NULL)$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets(NULL, 'grp_t')$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('g', NULL)$$);
SELECT pg_temp.err($$SELECT commitlog.delete_group(NULL)$$);
SELECT commitlog.committed_offset('g', 'grp_t', NULL);
-- empty group_id: 22023
SELECT pg_temp.err($$SELECT commitlog.commit_offset('', 'grp_t', 0, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.committed_offset('', 'grp_t', 0)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('', 'grp_t')$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('', 'grp_t')$$);
SELECT pg_temp.err($$SELECT commitlog.delete_group('')$$);
SELECT * FROM commitlog.consume('', 'grp_t');
-- consume arguments: 22023
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', 'grp_t', auto_offset_reset => 'middle')$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', 'grp_t', auto_offset_reset => NULL)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', 'grp_t', max_records => 0)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', 'grp_t', max_records => NULL)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', 'grp_t', wait_ms => -1)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g', 'grp_t', wait_ms => NULL)$$);
SELECT * FROM commitlog.consume('g', 'grp_t', auto_offset_reset => 'middle');
-- reset target: 22023
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('g', 'grp_t', 'soon')$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('g', 'grp_t', '')$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('g', 'grp_t', NULL)$$);
SELECT commitlog.reset_offsets('g', 'grp_t', 'soon');
-- none of the failed calls created group 'g'
SELECT count(*) FROM commitlog.consumer_offsets WHERE group_id = 'g';
-- fetch wait_ms: 22023
SELECT pg_temp.err($$SELECT * FROM commitlog.fetch('grp_t', 0, 0, wait_ms => -1)$$);
-- consume needs READ COMMITTED: 0A000
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g9', 'grp_t')$$);
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g9', 'grp_t')$$);
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM commitlog.consume('g9', 'grp_t');
ROLLBACK;
-- a read-only transaction: 25006
BEGIN READ ONLY;
SELECT pg_temp.err($$SELECT * FROM commitlog.consume('g9', 'grp_t')$$);
SELECT pg_temp.err($$SELECT commitlog.commit_offset('g9', 'grp_t', 0, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('g9', 'grp_t')$$);
SELECT pg_temp.err($$SELECT commitlog.delete_group('g9')$$);
-- reading a position is fine
SELECT commitlog.committed_offset('g9', 'grp_t', 0);
ROLLBACK;

--
-- long polling with nothing to read: returns no rows once wait_ms is up
--
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM commitlog.fetch('grp_t', 2, 0, wait_ms => 100);
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '100 ms' AS waited;
-- g9 has read everything
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM commitlog.consume('g9', 'grp_t', wait_ms => 100);
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '100 ms' AS waited;
-- records available: no wait
SELECT commitlog.reset_offsets('g9', 'grp_t', 'earliest');
SELECT count(*) FROM commitlog.consume('g9', 'grp_t', wait_ms => 100);
SELECT count(*) FROM commitlog.fetch('grp_t', 0, 0, wait_ms => 100);

--
-- drop_topic removes the groups' positions in it
--
SELECT count(*) FROM commitlog.group_offsets WHERE topic = 'grp_t';
SELECT commitlog.drop_topic('grp_t');
SELECT count(*) FROM commitlog.consumer_offsets
 WHERE topic_id NOT IN (SELECT id FROM commitlog.topics);
-- g9 and g1 had positions only in grp_t: those groups are gone
SELECT pg_temp.err($$SELECT commitlog.delete_group('g9')$$);
SELECT pg_temp.err($$SELECT commitlog.delete_group('g1')$$);
SELECT DISTINCT group_id FROM commitlog.group_offsets
 WHERE topic IN ('grp_t', 'grp_tx', 'grp_r', 'grp_ts') ORDER BY 1;

SELECT commitlog.drop_topic('grp_tx');
SELECT commitlog.drop_topic('grp_r');
SELECT commitlog.drop_topic('grp_ts');
-- no positions are left behind for dropped topics
SELECT count(*) FROM commitlog.consumer_offsets
 WHERE topic_id NOT IN (SELECT id FROM commitlog.topics);
