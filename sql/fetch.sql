--
-- Fetch and offsets (DESIGN 4, 5): fetch, earliest_offset, latest_offset,
-- offset_for_time, the out-of-range error (CL001), what a producing
-- transaction sees, PREPARE TRANSACTION, gaps, and views over a topic.
--
-- Concurrent readers and writers are in test/isolation.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
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

-- does the statement's error come with a detail or a hint?
CREATE FUNCTION pg_temp.explained(sql text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
	d text;
	h text;
BEGIN
	EXECUTE sql;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RETURN coalesce(d, '') <> '' OR coalesce(h, '') <> '';
END $$;

-- a fetch as (log_offset, value text)
CREATE FUNCTION pg_temp.f(t text, p int, from_offset bigint, n int DEFAULT 1000, b int DEFAULT 1048576)
RETURNS TABLE (log_offset bigint, value text)
LANGUAGE sql AS $$
	SELECT log_offset, convert_from(value, 'UTF8') FROM commitlog.fetch(t, p, from_offset, n, b)
$$;

SELECT commitlog.create_topic('fetch_t', 2);
-- values of 1, 2, 3, 4 and 5 bytes at offsets 0..4 of partition 0
SELECT * FROM commitlog.produce_batch('fetch_t', ARRAY['a', 'bb', 'ccc', 'dddd', 'eeeee']::bytea[], partition => 0);
SELECT * FROM commitlog.produce('fetch_t', 'p1', key => 'k', partition => 1,
                                headers => ARRAY[ROW('h', 'hv')::commitlog.header],
                                ts => '2001-01-01 00:00:00+00');

------------------------------------------------------------------------------
-- fetch
------------------------------------------------------------------------------
-- a commitlog.record per record, topic included, in offset order
SELECT topic, partition, log_offset, key, value, headers FROM commitlog.fetch('fetch_t', 0, 0);
SELECT topic, partition, log_offset, convert_from(key, 'UTF8') AS key, convert_from(value, 'UTF8') AS value,
       headers, "timestamp" = '2001-01-01 00:00:00+00' AS ts_kept
  FROM commitlog.fetch('fetch_t', 1, 0);
SELECT pg_typeof(r) FROM commitlog.fetch('fetch_t', 1, 0) r;
-- from the middle
SELECT * FROM pg_temp.f('fetch_t', 0, 3);
-- max_records
SELECT * FROM pg_temp.f('fetch_t', 0, 0, 2);
SELECT * FROM pg_temp.f('fetch_t', 0, 2, 1);
SELECT * FROM pg_temp.f('fetch_t', 0, 1, 100);
-- max_bytes: records while the total stays within it ...
SELECT * FROM pg_temp.f('fetch_t', 0, 0, b => 3);       -- 1 + 2
SELECT * FROM pg_temp.f('fetch_t', 0, 0, b => 5);       -- 1 + 2 (+ 3 would be 6)
SELECT * FROM pg_temp.f('fetch_t', 0, 0, b => 6);       -- 1 + 2 + 3
-- ... but always at least one, even larger than max_bytes
SELECT * FROM pg_temp.f('fetch_t', 0, 4, b => 1);
SELECT * FROM pg_temp.f('fetch_t', 0, 3, b => 1);
-- key and headers count too: 'p1' + 'k' + the header array
SELECT log_offset FROM commitlog.fetch('fetch_t', 1, 0, max_bytes => 3);
-- both limits: whichever comes first
SELECT * FROM pg_temp.f('fetch_t', 0, 0, 2, 100);
SELECT * FROM pg_temp.f('fetch_t', 0, 0, 100, 1);
-- reading on from the last offset + 1 sees every record once
WITH RECURSIVE pages(n, next, got) AS (
    SELECT 0, 0::bigint, ARRAY[]::bigint[]
  UNION ALL
    SELECT n + 1, (SELECT max(log_offset) + 1 FROM commitlog.fetch('fetch_t', 0, next, 2)),
           got || ARRAY(SELECT log_offset FROM commitlog.fetch('fetch_t', 0, next, 2))
      FROM pages WHERE next < commitlog.latest_offset('fetch_t', 0)
)
SELECT n AS pages, got FROM pages ORDER BY n DESC LIMIT 1;

-- from latest: no rows, no error
SELECT commitlog.latest_offset('fetch_t', 0);
SELECT * FROM pg_temp.f('fetch_t', 0, 5);
-- not even when waiting for a record that does not come
SELECT count(*) FROM commitlog.fetch('fetch_t', 0, 5, wait_ms => 10);
-- below earliest or above latest: CL001 naming the valid range
SELECT * FROM commitlog.fetch('fetch_t', 0, 6);
SELECT * FROM commitlog.fetch('fetch_t', 0, -1);
SELECT pg_temp.err($$SELECT * FROM commitlog.fetch('fetch_t', 0, 9223372036854775807)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.fetch('fetch_t', 1, 2)$$);
-- an out-of-range offset is an error at once, even when waiting
SELECT pg_temp.err($$SELECT * FROM commitlog.fetch('fetch_t', 0, 6, wait_ms => 60000)$$);
-- the SQLSTATE and its fields, as a client sees them
DO $$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	PERFORM * FROM commitlog.fetch('fetch_t', 0, 100);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
	                        hnt = PG_EXCEPTION_HINT;
	RAISE WARNING 'sqlstate %, detail names earliest: %, latest: %, hint: %',
		st, det ~ 'earliest offset is 0', det ~ 'latest is 5', hnt IS NOT NULL;
END $$;

-- NULL and invalid arguments: 22023
SELECT * FROM commitlog.fetch(NULL, 0, 0);
SELECT * FROM commitlog.fetch('fetch_t', NULL, 0);
SELECT * FROM commitlog.fetch('fetch_t', 0, NULL);
SELECT * FROM commitlog.fetch('fetch_t', 0, 0, 0);
SELECT a AS args, pg_temp.err(format('SELECT * FROM commitlog.fetch(%s)', a)) AS result
  FROM (VALUES
    ($$'fetch_t', 0, 0, NULL$$),
    ($$'fetch_t', 0, 0, -1$$),
    ($$'fetch_t', 0, 0, 10, NULL$$),
    ($$'fetch_t', 0, 0, 10, 0$$),
    ($$'fetch_t', 0, 0, 10, -5$$),
    ($$'fetch_t', 0, 0, 10, 10, NULL$$),
    ($$'fetch_t', 0, 0, 10, 10, -1$$),
    ($$'fetch_t', -1, 0$$),
    ($$'fetch_t', 2, 0$$),
    ($$'fetch_nope', 0, 0$$),
    ($$'', 0, 0$$)) AS t(a);
-- every user error has a hint or a detail
SELECT a AS args
  FROM (VALUES
    ($$NULL, 0, 0$$), ($$'fetch_t', NULL, 0$$), ($$'fetch_t', 0, NULL$$),
    ($$'fetch_t', 0, 0, NULL$$), ($$'fetch_t', 0, 0, 0$$),
    ($$'fetch_t', 0, 0, 10, NULL$$), ($$'fetch_t', 0, 0, 10, 0$$),
    ($$'fetch_t', 0, 0, 10, 10, NULL$$), ($$'fetch_t', 0, 0, 10, 10, -1$$),
    ($$'fetch_t', -1, 0$$), ($$'fetch_t', 2, 0$$), ($$'fetch_nope', 0, 0$$),
    ($$'fetch_t', 0, 6$$)) AS t(a)
 WHERE NOT pg_temp.explained(format('SELECT * FROM commitlog.fetch(%s)', a));

------------------------------------------------------------------------------
-- earliest_offset, latest_offset, offset_for_time
------------------------------------------------------------------------------
SELECT p, commitlog.earliest_offset('fetch_t', p), commitlog.latest_offset('fetch_t', p)
  FROM generate_series(0, 1) p;
SELECT commitlog.create_topic('fetch_empty');
SELECT commitlog.earliest_offset('fetch_empty', 0), commitlog.latest_offset('fetch_empty', 0);
SELECT * FROM pg_temp.f('fetch_empty', 0, 0);
SELECT pg_temp.err($$SELECT * FROM commitlog.fetch('fetch_empty', 0, 1)$$);
SELECT commitlog.offset_for_time('fetch_empty', 0, '2001-01-01');

-- errors
SELECT commitlog.latest_offset('fetch_t', 2);
SELECT commitlog.earliest_offset('fetch_nope', 0);
SELECT a AS call, pg_temp.err('SELECT commitlog.' || a) AS result
  FROM (VALUES
    ($$earliest_offset(NULL, 0)$$), ($$earliest_offset('fetch_t', NULL)$$),
    ($$earliest_offset('fetch_t', -1)$$), ($$earliest_offset('fetch_t', 2)$$),
    ($$latest_offset(NULL, 0)$$), ($$latest_offset('fetch_t', NULL)$$),
    ($$latest_offset('fetch_t', -1)$$), ($$latest_offset('fetch_nope', 0)$$),
    ($$offset_for_time(NULL, 0, now())$$), ($$offset_for_time('fetch_t', NULL, now())$$),
    ($$offset_for_time('fetch_t', 0, NULL)$$), ($$offset_for_time('fetch_t', 5, now())$$),
    ($$offset_for_time('fetch_nope', 0, now())$$)) AS t(a);

-- offset_for_time: the first offset whose timestamp is at or after ts
SELECT commitlog.create_topic('fetch_time');
SELECT * FROM commitlog.produce_messages('fetch_time', ARRAY[
    ROW(NULL, 'y2001', NULL, 0, '2001-01-01 00:00:00+00'),
    ROW(NULL, 'y2002', NULL, 0, '2002-01-01 00:00:00+00'),
    ROW(NULL, 'y2003', NULL, 0, '2003-01-01 00:00:00+00'),
    ROW(NULL, 'y2000', NULL, 0, '2000-01-01 00:00:00+00'),   -- CreateTime need not increase
    ROW(NULL, 'y2004', NULL, 0, '2004-01-01 00:00:00+00')]::commitlog.message[]);
SELECT label, commitlog.offset_for_time('fetch_time', 0, ts)
  FROM (VALUES ('1999', timestamptz '1999-01-01 00:00:00+00'), ('2000', '2000-01-01 00:00:00+00'),
               ('2001', '2001-01-01 00:00:00+00'), ('2001-06', '2001-06-01 00:00:00+00'),
               ('2002', '2002-01-01 00:00:00+00'), ('2003', '2003-01-01 00:00:00+00'),
               ('2003 + 1us', '2003-01-01 00:00:00.000001+00'), ('2004', '2004-01-01 00:00:00+00'),
               ('2005', '2005-01-01 00:00:00+00'), ('-infinity', '-infinity'),
               ('infinity', 'infinity')) AS v(label, ts)
 ORDER BY ts;
SELECT commitlog.offset_for_time('fetch_t', 0, now() + interval '1 day') IS NULL AS none_after_now,
       commitlog.offset_for_time('fetch_t', 0, now() - interval '1 day') AS first_today;

------------------------------------------------------------------------------
-- Gaps: offsets that never commit are skipped
------------------------------------------------------------------------------
SELECT commitlog.create_topic('fetch_gaps');
BEGIN;
SELECT * FROM commitlog.produce('fetch_gaps', 'kept 0');
SAVEPOINT s;
SELECT * FROM commitlog.produce('fetch_gaps', 'rolled back 1');
SELECT * FROM commitlog.produce('fetch_gaps', 'rolled back 2');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM commitlog.produce('fetch_gaps', 'kept 3');
COMMIT;
BEGIN;
SELECT * FROM commitlog.produce('fetch_gaps', 'rolled back 4');
ROLLBACK;
SELECT * FROM commitlog.produce('fetch_gaps', 'kept 5');
SELECT * FROM pg_temp.f('fetch_gaps', 0, 0);
SELECT commitlog.latest_offset('fetch_gaps', 0);
-- from inside a gap: the next record after it
SELECT * FROM pg_temp.f('fetch_gaps', 0, 1);
SELECT * FROM pg_temp.f('fetch_gaps', 0, 4);
-- max_records counts records, not offsets
SELECT * FROM pg_temp.f('fetch_gaps', 0, 0, 2);

------------------------------------------------------------------------------
-- A producing transaction does not read its own records: readers stop at
-- its first offset (the stable offset) until it ends
------------------------------------------------------------------------------
SELECT commitlog.create_topic('fetch_txn');
SELECT * FROM commitlog.produce_batch('fetch_txn', ARRAY['c0', 'c1', 'c2']::bytea[], partition => 0);
BEGIN;
SELECT * FROM commitlog.produce('fetch_txn', 'open 3');
SELECT * FROM commitlog.produce('fetch_txn', 'open 4');
SELECT commitlog.latest_offset('fetch_txn', 0);
SELECT latest_offset FROM commitlog.partition_list WHERE topic = 'fetch_txn';
SELECT * FROM pg_temp.f('fetch_txn', 0, 0);
-- offsets the open transaction took: nothing to read yet, but no error
SELECT * FROM pg_temp.f('fetch_txn', 0, 3);
SELECT * FROM pg_temp.f('fetch_txn', 0, 5);
-- past the log end: out of range, and the detail says why
SAVEPOINT before_error;
SELECT * FROM pg_temp.f('fetch_txn', 0, 6);
ROLLBACK TO SAVEPOINT before_error;
-- plain SQL on the table follows MVCC: the transaction sees its rows there
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM commitlog_topics.fetch_txn ORDER BY 1;
COMMIT;
SELECT commitlog.latest_offset('fetch_txn', 0);
SELECT * FROM pg_temp.f('fetch_txn', 0, 3);

-- REPEATABLE READ: each fetch reads with a new snapshot and sees the same
-- stable offset rules (other sessions: test/isolation)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM commitlog.fetch('fetch_txn', 0, 0);
SELECT * FROM commitlog.produce('fetch_txn', 'rr 5');
SELECT count(*) FROM commitlog.fetch('fetch_txn', 0, 0);
SELECT commitlog.latest_offset('fetch_txn', 0);
COMMIT;
SELECT count(*) FROM commitlog.fetch('fetch_txn', 0, 0);

------------------------------------------------------------------------------
-- PREPARE TRANSACTION after producing is refused (0A000), and the
-- transaction is rolled back; without producing, it works
------------------------------------------------------------------------------
BEGIN;
SELECT * FROM commitlog.produce('fetch_txn', 'prepared?');
PREPARE TRANSACTION 'regress_cl_fetch_produced';
SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'regress_cl_fetch%';
SELECT commitlog.latest_offset('fetch_txn', 0);
SELECT * FROM pg_temp.f('fetch_txn', 0, 5);
-- produced in a subtransaction that rolled back: still refused
BEGIN;
SAVEPOINT s;
SELECT * FROM commitlog.produce('fetch_txn', 'prepared?');
ROLLBACK TO SAVEPOINT s;
PREPARE TRANSACTION 'regress_cl_fetch_produced';
-- reading only: fine
BEGIN;
SELECT count(*) FROM commitlog.fetch('fetch_txn', 0, 0);
SELECT commitlog.latest_offset('fetch_txn', 0);
PREPARE TRANSACTION 'regress_cl_fetch_read';
SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'regress_cl_fetch%';
ROLLBACK PREPARED 'regress_cl_fetch_read';
-- and producing works as before afterwards
SELECT (commitlog.produce('fetch_txn', 'after')).log_offset > 5 AS above;
SELECT value FROM pg_temp.f('fetch_txn', 0, 0);

------------------------------------------------------------------------------
-- Views over a topic
------------------------------------------------------------------------------
CREATE VIEW fetch_view AS
SELECT partition, log_offset, convert_from(value, 'UTF8') AS v FROM commitlog_topics."fetch_t";
SELECT * FROM fetch_view ORDER BY partition, log_offset;
SELECT partition, count(*) FROM fetch_view GROUP BY partition ORDER BY partition;
-- records produced later show up in the view
SELECT * FROM commitlog.produce('fetch_t', 'new', partition => 1);
SELECT * FROM fetch_view WHERE partition = 1 ORDER BY log_offset;
-- a view over fetch, too
CREATE VIEW fetch_view2 AS
SELECT log_offset, convert_from(value, 'UTF8') AS v FROM commitlog.fetch('fetch_t', 0, 0);
SELECT * FROM fetch_view2;
-- a topic with a view over its table cannot be dropped until the view goes
SELECT commitlog.drop_topic('fetch_t');
DROP VIEW fetch_view, fetch_view2;

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
SELECT commitlog.drop_topic(topic) FROM commitlog.topic_list WHERE topic LIKE 'fetch\_%' ORDER BY topic;
SELECT count(*) FROM commitlog.topic_list WHERE topic LIKE 'fetch\_%';
