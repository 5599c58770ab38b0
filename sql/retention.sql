--
-- Retention by hand: delete_records and enforce_retention (DESIGN 5, 7).
-- The background worker's part (sealing, dropping segments, time and size
-- retention while producing) is tested in test/t/030_retention.pl.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT commitlog.create_topic('ret_t', 2);
SELECT count(*) FROM commitlog.produce_batch('ret_t',
    (SELECT array_agg(convert_to('v' || i, 'UTF8')) FROM generate_series(0, 99) i), partition => 0);

-- delete_records: Kafka's DeleteRecords raises the log start offset at once
SELECT commitlog.delete_records('ret_t', 0, 40) AS removed;
SELECT commitlog.earliest_offset('ret_t', 0), commitlog.latest_offset('ret_t', 0);
SELECT min(log_offset), max(log_offset), count(*)
  FROM commitlog.fetch('ret_t', 0, 40, max_records => 1000);
-- below the new log start is out of range, with both ends named
SELECT * FROM commitlog.fetch('ret_t', 0, 39);
-- again to the same offset, or lower: nothing more goes
SELECT commitlog.delete_records('ret_t', 0, 40) AS again, commitlog.delete_records('ret_t', 0, 10) AS lower;
-- up to the latest offset is allowed: the partition is then empty
SELECT commitlog.delete_records('ret_t', 0, 100) AS rest;
SELECT count(*) FROM commitlog.fetch('ret_t', 0, 100);
-- other partitions are untouched
SELECT commitlog.earliest_offset('ret_t', 1);
-- consumers that were behind restart per auto_offset_reset
SELECT commitlog.commit_offset('ret_g', 'ret_t', 0, 5);
SELECT count(*) FROM commitlog.produce_batch('ret_t', ARRAY['a', 'b']::bytea[], partition => 0);
SELECT log_offset, convert_from(value, 'UTF8') FROM commitlog.consume('ret_g', 'ret_t');

-- errors
SELECT pg_temp.err($$SELECT commitlog.delete_records('ret_t', 0, 1000000)$$) AS above_latest;
SELECT pg_temp.err($$SELECT commitlog.delete_records('ret_t', 0, -1)$$) AS negative;
SELECT pg_temp.err($$SELECT commitlog.delete_records('ret_t', 5, 0)$$) AS bad_partition;
SELECT pg_temp.err($$SELECT commitlog.delete_records('ret_t', NULL, 0)$$) AS null_partition;
SELECT pg_temp.err($$SELECT commitlog.delete_records('ret_nope', 0, 0)$$) AS unknown_topic;
SELECT pg_temp.err($$SELECT commitlog.enforce_retention('ret_nope')$$) AS unknown_topic;
SELECT * FROM commitlog.delete_records('ret_t', 0, 1000000);

-- only the topic's owner removes records
CREATE ROLE regress_cl_reader;
GRANT SELECT ON commitlog_topics.ret_t TO regress_cl_reader;
SET ROLE regress_cl_reader;
SELECT pg_temp.err($$SELECT commitlog.delete_records('ret_t', 1, 0)$$) AS not_owner;
SELECT pg_temp.err($$SELECT commitlog.enforce_retention('ret_t')$$) AS not_owner;
-- with no topic named, it acts on the topics one owns: none here
SELECT commitlog.enforce_retention() AS removed_as_reader;
RESET ROLE;

-- enforce_retention: nothing is sealed yet (records are in the active
-- segment), so nothing goes, whatever retention.bytes says
SELECT commitlog.alter_topic('ret_t', '{"retention.bytes": 0}');
SELECT commitlog.enforce_retention('ret_t') AS removed;
SELECT commitlog.earliest_offset('ret_t', 1);

-- retention needs the delete policy: a compact-only topic keeps everything
SELECT commitlog.create_topic('ret_c', 1, config => '{"cleanup.policy": "compact", "retention.ms": 0}');
SELECT commitlog.enforce_retention('ret_c') AS removed;

SELECT commitlog.drop_topic('ret_t');
SELECT commitlog.drop_topic('ret_c');
DROP ROLE regress_cl_reader;
