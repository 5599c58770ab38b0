--
-- Produce (DESIGN 5): produce in its bytea, text and jsonb forms,
-- produce_batch, produce_messages, the returned positions, offsets per
-- partition, partition choice (explicit, key hash, round-robin), record
-- timestamps (CreateTime, LogAppendTime), max.message.bytes, and errors.
--
-- Never print a timestamp the server chose: only booleans about it.
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

-- the records of a topic as a reader sees them, key and value as text
CREATE FUNCTION pg_temp.records(t text)
RETURNS TABLE (partition int, log_offset bigint, key text, value text,
               headers commitlog.header[], ts timestamptz)
LANGUAGE sql AS $$
	SELECT f.partition, f.log_offset, convert_from(f.key, 'UTF8'), convert_from(f.value, 'UTF8'),
	       f.headers, f."timestamp"
	  FROM commitlog.partition_list p,
	       LATERAL commitlog.fetch(t, p.partition, p.earliest_offset) f
	 WHERE p.topic = t
	 ORDER BY 1, 2
$$;

SELECT commitlog.create_topic('produce_one');
SELECT commitlog.create_topic('produce_three', 3);

------------------------------------------------------------------------------
-- The three forms of produce, and the position they return
------------------------------------------------------------------------------
SELECT * FROM commitlog.produce('produce_one', '\x00ff'::bytea);
SELECT * FROM commitlog.produce('produce_one', 'hello');                 -- text
SELECT * FROM commitlog.produce('produce_one', '{"a":1}'::jsonb, key => 'k');
SELECT * FROM commitlog.produce('produce_one', 'hello'::text, key => 'k2');
SELECT commitlog.produce('produce_one', 'x');                            -- as a composite
SELECT (commitlog.produce('produce_one', 'y')).log_offset;
SELECT pg_typeof(commitlog.produce('produce_one', 'z'));
-- NULL value: a tombstone; NULL key: none
SELECT * FROM commitlog.produce('produce_one', NULL::bytea, key => 'k');
SELECT * FROM commitlog.produce('produce_one', NULL::text);
-- empty value and key are values, not NULL
SELECT * FROM commitlog.produce('produce_one', ''::bytea, key => '');

SELECT log_offset, key, value, octet_length(value) AS bytes FROM commitlog.fetch('produce_one', 0, 0);
SELECT log_offset, convert_from(value, 'UTF8') AS value, convert_from(key, 'UTF8') AS key
  FROM commitlog.fetch('produce_one', 0, 1, max_records => 3);
-- the jsonb form stores jsonb's text form
SELECT convert_from(value, 'UTF8')::jsonb = '{"a":1}'::jsonb AS same_json
  FROM commitlog.fetch('produce_one', 0, 2, max_records => 1);

------------------------------------------------------------------------------
-- Offsets: 0, 1, 2, ... in each partition, independently
------------------------------------------------------------------------------
SELECT * FROM commitlog.produce('produce_three', 'p0-a', partition => 0);
SELECT * FROM commitlog.produce('produce_three', 'p0-b', partition => 0);
SELECT * FROM commitlog.produce('produce_three', 'p2-a', partition => 2);
SELECT * FROM commitlog.produce('produce_three', 'p0-c', partition => 0);
SELECT * FROM commitlog.produce('produce_three', 'p1-a', partition => 1);
SELECT * FROM commitlog.produce('produce_three', 'p2-b', partition => 2);
-- an explicit partition beats the key
SELECT * FROM commitlog.produce('produce_three', 'p1-b', key => 'foobar', partition => 1);
SELECT partition, latest_offset FROM commitlog.partition_list WHERE topic = 'produce_three' ORDER BY 1;
SELECT partition, log_offset, key, value FROM pg_temp.records('produce_three');

------------------------------------------------------------------------------
-- Keyed records land on partition_for_key
------------------------------------------------------------------------------
SELECT commitlog.create_topic('produce_keys', 12);
-- 'foobar' and '21' are Kafka's own vectors: 6 and 0 of 12
SELECT k, commitlog.partition_for_key('produce_keys', k::bytea)
  FROM (VALUES ('foobar'), ('21')) AS v(k);
SELECT * FROM commitlog.produce('produce_keys', 'v', key => 'foobar');
SELECT * FROM commitlog.produce('produce_keys', 'v', key => '21');
-- many keys, one produce each: every record on its key's partition
SELECT count(*) AS records,
       count(*) FILTER (WHERE (p).partition <> commitlog.partition_for_key('produce_keys', k)) AS misplaced,
       count(DISTINCT (p).partition) AS partitions_used
  FROM (SELECT convert_to('key-' || i, 'UTF8') AS k,
               commitlog.produce('produce_keys', 'v' || i, key => convert_to('key-' || i, 'UTF8')) AS p
          FROM generate_series(1, 200) i) s;
-- the same key always goes to the same partition, in order
SELECT DISTINCT (commitlog.produce('produce_keys', 'again', key => 'foobar')).partition
  FROM generate_series(1, 5);
SELECT log_offset, convert_from(value, 'UTF8') AS value
  FROM commitlog.fetch('produce_keys', 6, 0) WHERE key = 'foobar';

------------------------------------------------------------------------------
-- Keyless records: one partition per call, round-robin across calls
------------------------------------------------------------------------------
SELECT commitlog.create_topic('produce_rr', 3);
CREATE TEMP TABLE rr (call int, partition int);
INSERT INTO rr SELECT i, (commitlog.produce('produce_rr', 'v' || i)).partition
  FROM generate_series(1, 9) i;
-- each call takes the next partition (the first one is random)
SELECT count(*) AS calls,
       bool_and(partition = (first + call - 1) % 3) AS round_robin
  FROM (SELECT *, first_value(partition) OVER (ORDER BY call) AS first FROM rr) s;
SELECT partition, count(*) FROM rr GROUP BY partition ORDER BY partition;
SELECT partition, latest_offset FROM commitlog.partition_list WHERE topic = 'produce_rr' ORDER BY 1;
-- all keyless records of one produce_batch call go to one partition ...
SELECT count(DISTINCT partition) AS partitions, count(*) AS records,
       max(log_offset) - min(log_offset) AS span
  FROM commitlog.produce_batch('produce_rr', ARRAY['a', 'b', 'c', 'd', 'e']::bytea[]);
-- ... and the next call goes to the next partition
CREATE TEMP TABLE rr_batch (call int, partition int);
INSERT INTO rr_batch
SELECT i, (SELECT DISTINCT b.partition
             FROM commitlog.produce_batch('produce_rr', ARRAY[convert_to('x' || i, 'UTF8'), 'y']) b)
  FROM generate_series(1, 6) i;
SELECT bool_and(partition = (first + call - 1) % 3) AS round_robin,
       count(DISTINCT partition) AS partitions
  FROM (SELECT *, first_value(partition) OVER (ORDER BY call) AS first FROM rr_batch) s;
-- keyed and keyless in one call: keyed ones by hash, keyless ones together
SELECT count(DISTINCT b.partition) FILTER (WHERE k IS NULL) AS keyless_partitions,
       bool_and(b.partition = commitlog.partition_for_key('produce_rr', k)) FILTER (WHERE k IS NOT NULL) AS keyed_by_hash
  FROM (SELECT ARRAY['1', '2', '3', '4', '5', '6']::bytea[] AS vals,
               ARRAY['ka', NULL, 'kb', NULL, 'kc', NULL]::bytea[] AS keys) a,
       LATERAL (SELECT row_number() OVER () AS i, * FROM commitlog.produce_batch('produce_rr', a.vals, a.keys)) b,
       LATERAL (SELECT a.keys[b.i] AS k) kk;

------------------------------------------------------------------------------
-- produce_batch
------------------------------------------------------------------------------
SELECT commitlog.create_topic('produce_batch', 2);
-- one row per payload, in input order, increasing offsets per partition
SELECT * FROM commitlog.produce_batch('produce_batch', ARRAY['a', 'b', 'c']::bytea[], partition => 1);
SELECT * FROM commitlog.produce_batch('produce_batch', ARRAY['d', 'e']::bytea[], partition => 0);
-- keys: one per payload, NULL elements for none; a NULL payload is a tombstone
SELECT b.*, b.partition = commitlog.partition_for_key('produce_batch', 'k1') AS on_key_partition
  FROM commitlog.produce_batch('produce_batch', ARRAY['v1', NULL]::bytea[], ARRAY['k1', 'k1']::bytea[]) b;
SELECT * FROM commitlog.produce_batch('produce_batch', ARRAY['t1', NULL, 't3']::bytea[], partition => 0);
SELECT partition, log_offset, key, value FROM pg_temp.records('produce_batch');
-- keys that go to different partitions: positions still in input order
SELECT k, b.partition = commitlog.partition_for_key('produce_batch', k::bytea) AS on_key_partition
  FROM commitlog.produce_batch('produce_batch', ARRAY['1', '2', '3', '4']::bytea[],
                               ARRAY['foobar', '21', 'abc', 'a']::bytea[])
       WITH ORDINALITY b(partition, log_offset, i)
  JOIN (VALUES (1, 'foobar'), (2, '21'), (3, 'abc'), (4, 'a')) AS v(i, k) USING (i)
 ORDER BY i;
-- empty: no rows, nothing written
SELECT * FROM commitlog.produce_batch('produce_batch', '{}'::bytea[]);
SELECT * FROM commitlog.produce_batch('produce_batch', '{}'::bytea[], '{}'::bytea[]);
-- a batch of 1000 records in one call
SELECT count(*), count(DISTINCT log_offset), min(log_offset), max(log_offset)
  FROM commitlog.produce_batch('produce_batch', array_fill('x'::bytea, ARRAY[1000]), partition => 1);
SELECT commitlog.latest_offset('produce_batch', 1);
-- errors
SELECT * FROM commitlog.produce_batch('produce_batch', ARRAY['a', 'b']::bytea[], ARRAY['k']::bytea[]);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_batch', ARRAY['a']::bytea[], ARRAY['k', 'l']::bytea[])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_batch', ARRAY['a']::bytea[], '{}'::bytea[])$$);
SELECT * FROM commitlog.produce_batch('produce_batch', NULL);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_batch', ARRAY[ARRAY['a'::bytea]])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_batch', ARRAY['a']::bytea[], ARRAY[ARRAY['k'::bytea]])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_batch', ARRAY['a']::bytea[], partition => 2)$$);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_batch', ARRAY['a']::bytea[], partition => -1)$$);
SELECT pg_temp.err($$SELECT commitlog.produce_batch(NULL, ARRAY['a']::bytea[])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_nope', ARRAY['a']::bytea[])$$);
-- none of them wrote anything
SELECT partition, latest_offset FROM commitlog.partition_list WHERE topic = 'produce_batch' ORDER BY 1;

------------------------------------------------------------------------------
-- produce_messages: per-message key, value, headers, partition and ts
------------------------------------------------------------------------------
SELECT commitlog.create_topic('produce_msgs', 2);
SELECT * FROM commitlog.produce_messages('produce_msgs', ARRAY[
    ROW('k1', 'first', NULL, 0, NULL)::commitlog.message,
    ROW(NULL, 'second', ARRAY[ROW('trace-id', 'abc'::bytea)::commitlog.header,
                              ROW('empty', NULL)::commitlog.header], 1,
        '2001-02-03 04:05:06+00')::commitlog.message,
    ROW('k3', NULL, NULL, 0, '2001-02-03 04:05:07+00')::commitlog.message,
    ROW(NULL, 'fourth', ARRAY[]::commitlog.header[], 0, NULL)::commitlog.message
]);
SELECT partition, log_offset, key, value, headers,
       CASE WHEN ts = '2001-02-03 04:05:06+00' THEN 'given 06'
            WHEN ts = '2001-02-03 04:05:07+00' THEN 'given 07'
            WHEN ts > now() - interval '1 minute' AND ts <= clock_timestamp() THEN 'now'
            ELSE 'wrong' END AS ts
  FROM pg_temp.records('produce_msgs');
-- headers come back as written, element by element
SELECT h.key, h.value FROM pg_temp.records('produce_msgs') r, unnest(r.headers) h
 WHERE r.partition = 1;
-- messages without partition: keyed ones by hash, keyless ones together
SELECT count(DISTINCT m.partition) FILTER (WHERE v.k IS NULL) AS keyless_partitions,
       bool_and(m.partition = commitlog.partition_for_key('produce_msgs', v.k)) FILTER (WHERE v.k IS NOT NULL) AS keyed_by_hash,
       count(*) AS records
  FROM commitlog.produce_messages('produce_msgs', ARRAY[
           ROW('foobar', 'a', NULL, NULL, NULL), ROW(NULL, 'b', NULL, NULL, NULL),
           ROW('21', 'c', NULL, NULL, NULL), ROW(NULL, 'd', NULL, NULL, NULL),
           ROW('abc', 'e', NULL, NULL, NULL), ROW(NULL, 'f', NULL, NULL, NULL)]::commitlog.message[])
       WITH ORDINALITY m(partition, log_offset, i)
  JOIN (VALUES (1, 'foobar'::bytea), (2, NULL), (3, '21'), (4, NULL), (5, 'abc'), (6, NULL)) AS v(i, k) USING (i);
-- empty: no rows
SELECT * FROM commitlog.produce_messages('produce_msgs', '{}'::commitlog.message[]);
-- errors, none of which writes anything (the keyless records above went to
-- a partition chosen at random: count offsets over all partitions)
SELECT sum(latest_offset) AS offsets FROM commitlog.partition_list WHERE topic = 'produce_msgs';
SELECT * FROM commitlog.produce_messages('produce_msgs', NULL);
SELECT * FROM commitlog.produce_messages('produce_msgs', ARRAY[ROW(NULL, 'a', NULL, 0, NULL)::commitlog.message, NULL]);
SELECT * FROM commitlog.produce_messages('produce_msgs', ARRAY[ROW(NULL, 'a', NULL, -1, NULL)::commitlog.message]);
SELECT * FROM commitlog.produce_messages('produce_msgs', ARRAY[ROW(NULL, 'a', NULL, 0, NULL)::commitlog.message,
                                                               ROW(NULL, 'b', NULL, 2, NULL)::commitlog.message]);
SELECT pg_temp.err($$SELECT commitlog.produce_messages('produce_msgs',
    ARRAY[ARRAY[ROW(NULL, 'a', NULL, 0, NULL)::commitlog.message]])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_messages(NULL, ARRAY[ROW(NULL, 'a', NULL, 0, NULL)::commitlog.message])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_messages('produce_nope', ARRAY[ROW(NULL, 'a', NULL, 0, NULL)::commitlog.message])$$);
SELECT sum(latest_offset) AS offsets FROM commitlog.partition_list WHERE topic = 'produce_msgs';

------------------------------------------------------------------------------
-- Timestamps
------------------------------------------------------------------------------
-- CreateTime (the default): the given ts, else the server's clock when the
-- call runs (not the transaction's start)
SELECT commitlog.create_topic('produce_ct');
BEGIN;
SELECT pg_sleep(0.01);
SELECT * FROM commitlog.produce('produce_ct', 'no ts');
SELECT * FROM commitlog.produce('produce_ct', 'ts', ts => '2001-01-01 00:00:00+00');
SELECT * FROM commitlog.produce('produce_ct', 'future', ts => '2100-01-01 00:00:00+00');
-- the transaction sees its own records in the table (not through fetch)
SELECT log_offset, convert_from(value, 'UTF8') AS value,
       "timestamp" > now() AS after_txn_start,
       "timestamp" <= clock_timestamp() AS not_in_future,
       "timestamp" = '2001-01-01 00:00:00+00' AS is_2001,
       "timestamp" = '2100-01-01 00:00:00+00' AS is_2100
  FROM commitlog_topics.produce_ct ORDER BY log_offset;
COMMIT;
SELECT log_offset, ts = '2001-01-01 00:00:00+00' AS is_2001 FROM pg_temp.records('produce_ct');

-- LogAppendTime: the server's clock, whatever ts says
SELECT commitlog.create_topic('produce_lat', config => '{"message.timestamp.type": "LogAppendTime"}');
SELECT * FROM commitlog.produce('produce_lat', 'a', ts => '2001-01-01 00:00:00+00');
SELECT * FROM commitlog.produce('produce_lat', 'b');
SELECT * FROM commitlog.produce_messages('produce_lat', ARRAY[
    ROW(NULL, 'c', NULL, 0, '2001-01-01 00:00:00+00')::commitlog.message,
    ROW(NULL, 'd', NULL, 0, '2100-01-01 00:00:00+00')::commitlog.message]);
SELECT * FROM commitlog.produce_batch('produce_lat', ARRAY['e']::bytea[]);
SELECT log_offset, value,
       ts > now() - interval '1 minute' AND ts <= clock_timestamp() AS server_clock
  FROM pg_temp.records('produce_lat');
-- switching the type applies to the next produce
SELECT commitlog.alter_topic('produce_lat', '{"message.timestamp.type": "CreateTime"}');
SELECT * FROM commitlog.produce('produce_lat', 'f', ts => '2001-01-01 00:00:00+00');
SELECT log_offset, ts = '2001-01-01 00:00:00+00' AS is_2001
  FROM pg_temp.records('produce_lat') WHERE value = 'f';

------------------------------------------------------------------------------
-- max.message.bytes: key + value + headers; checked before anything is written
------------------------------------------------------------------------------
SELECT commitlog.create_topic('produce_small', 2, config => '{"max.message.bytes": 10}');
SELECT * FROM commitlog.produce('produce_small', '0123456789', partition => 0);        -- 10: fits
SELECT * FROM commitlog.produce('produce_small', '01234', key => '56789', partition => 0);
SELECT * FROM commitlog.produce('produce_small', '0123456789a', partition => 0);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_small', '012345', key => '67890', partition => 0)$$);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_small', 'x', partition => 0,
                         headers => ARRAY[ROW('h', 'v')::commitlog.header])$$);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_small', '{"abcdefghij": 1}'::jsonb, partition => 0)$$);
-- one oversized record fails the whole call
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_small', ARRAY['ok', 'ok', '0123456789a']::bytea[], partition => 0)$$);
SELECT pg_temp.err($$SELECT commitlog.produce_batch('produce_small', ARRAY['ok', '0123456789a']::bytea[],
                                                     ARRAY['k', NULL]::bytea[])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_messages('produce_small', ARRAY[
    ROW(NULL, 'ok', NULL, 1, NULL)::commitlog.message,
    ROW('key', 'too long!', NULL, 0, NULL)::commitlog.message])$$);
-- nothing of them is visible, and the next record follows on
SELECT partition, log_offset, key, value FROM pg_temp.records('produce_small');
SELECT * FROM commitlog.produce('produce_small', 'next', partition => 0);
SELECT partition, latest_offset FROM commitlog.partition_list WHERE topic = 'produce_small' ORDER BY 1;
-- 0 allows only empty records
SELECT commitlog.alter_topic('produce_small', '{"max.message.bytes": 0}');
SELECT pg_temp.err($$SELECT commitlog.produce('produce_small', 'x', partition => 1)$$);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_small', ''::bytea, partition => 1)$$);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_small', NULL::bytea, partition => 1)$$);

------------------------------------------------------------------------------
-- Partition, topic and transaction errors
------------------------------------------------------------------------------
SELECT * FROM commitlog.produce('produce_three', 'x', partition => 3);
SELECT * FROM commitlog.produce('produce_three', 'x', partition => -1);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_three', 'x', partition => 2147483647)$$);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_one', 'x', partition => 1)$$);
SELECT * FROM commitlog.produce(NULL, 'x');
SELECT * FROM commitlog.produce('produce_nope', 'x');
SELECT pg_temp.err($$SELECT commitlog.produce('produce_nope', '\x00'::bytea)$$);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_nope', '{}'::jsonb)$$);
SELECT pg_temp.err($$SELECT commitlog.produce(NULL, '{}'::jsonb)$$);
SELECT pg_temp.err($$SELECT commitlog.produce('', 'x')$$);
-- none of them wrote anything
SELECT partition, latest_offset FROM commitlog.partition_list WHERE topic = 'produce_three' ORDER BY 1;

-- not in a read-only transaction
BEGIN READ ONLY;
SELECT * FROM commitlog.produce('produce_one', 'x');
ROLLBACK;

-- a rollback leaves a gap; offsets are never handed out twice
SELECT commitlog.latest_offset('produce_one', 0) AS before \gset
BEGIN;
SELECT (commitlog.produce('produce_one', 'rolled back')).log_offset - :before AS taken;
ROLLBACK;
SELECT (commitlog.produce('produce_one', 'kept')).log_offset - :before AS next;
SELECT log_offset - :before AS rel_offset, convert_from(value, 'UTF8') AS value
  FROM commitlog.fetch('produce_one', 0, :before);

-- one transaction produces to at most 64 partitions (54000)
SELECT commitlog.create_topic('produce_wide', 65);
SELECT count(*) FROM commitlog.produce_messages('produce_wide',
    ARRAY(SELECT ROW(NULL, 'v', NULL, p, NULL)::commitlog.message FROM generate_series(0, 63) p));
SELECT * FROM commitlog.produce_messages('produce_wide',
    ARRAY(SELECT ROW(NULL, 'v', NULL, p, NULL)::commitlog.message FROM generate_series(0, 64) p));
BEGIN;
SELECT count(*) FROM generate_series(0, 63) p, LATERAL commitlog.produce('produce_wide', 'w', partition => p);
SELECT * FROM commitlog.produce('produce_wide', 'w', partition => 63);      -- one it has: fine
SELECT * FROM commitlog.produce('produce_wide', 'w', partition => 64);
ROLLBACK;
SELECT count(*) AS records FROM commitlog_topics.produce_wide;

------------------------------------------------------------------------------
-- The topic cache follows drop and re-create within a session
------------------------------------------------------------------------------
SELECT commitlog.create_topic('produce_again');
SELECT * FROM commitlog.produce('produce_again', 'first life');
SELECT commitlog.drop_topic('produce_again');
SELECT pg_temp.err($$SELECT commitlog.produce('produce_again', 'x')$$);
SELECT commitlog.create_topic('produce_again', 2, config => '{"max.message.bytes": 3}');
SELECT * FROM commitlog.produce('produce_again', 'two', partition => 1);
SELECT pg_temp.err($$SELECT commitlog.produce('produce_again', 'four', partition => 1)$$);
SELECT partition, log_offset, value FROM pg_temp.records('produce_again');

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
SELECT commitlog.drop_topic(topic) FROM commitlog.topic_list WHERE topic LIKE 'produce\_%' ORDER BY topic;
SELECT count(*) FROM commitlog.topic_list WHERE topic LIKE 'produce\_%';
