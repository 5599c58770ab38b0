--
-- Stream processing (DESIGN 13): create_processor, pause_processor,
-- resume_processor, drop_processor, create_table, drop_table, the views
-- processors and derived_tables, and their errors.
--
-- The background workers run processors in this database too, so the
-- topics a processor reads here stay empty (or it starts at 'latest'):
-- what the workers do with records (exactly once, in order, retries, the
-- dead-letter topic, pause, derived tables) is tested in test/t/060_* to
-- test/t/063_*.
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

SELECT commitlog.create_topic('st_in', 2);
CREATE TABLE st_seen (partition int, log_offset bigint);
CREATE FUNCTION st_handler(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$
	INSERT INTO st_seen SELECT r.partition, r.log_offset FROM unnest(records) r
$$;
CREATE FUNCTION st_wrong_args(records commitlog.record) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION st_wrong_result(records commitlog.record[]) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION st_setof(records commitlog.record[]) RETURNS SETOF void LANGUAGE sql AS $$ SELECT $$;
CREATE PROCEDURE st_proc(records commitlog.record[]) LANGUAGE sql AS $$ SELECT $$;

--
-- create_processor
--
SELECT commitlog.create_processor('st_p', 'st_in', 'st_handler(commitlog.record[])', batch_size => 50);
-- the processors view: status, lag (0: the topic is empty), processed
SELECT * FROM commitlog.processors;
-- the registry: defaults for max_retries and the dead-letter topic
SELECT name, kind, topic, handler, derived_table, batch_size, max_retries, dead_letter_topic,
       owner, paused
  FROM commitlog.stream_jobs;
-- the default dead-letter topic was created
SELECT topic, partitions FROM commitlog.topic_list WHERE topic = 'st_in.dlq';
-- the group id is the processor's name: a position per partition, at the earliest offset
SELECT group_id, topic, partition, committed_offset, lag
  FROM commitlog.group_offsets WHERE group_id = 'st_p' ORDER BY partition;
SELECT commitlog.committed_offset('st_p', 'st_in', 1);

-- start_from => 'latest' starts after the records already there
SELECT commitlog.create_topic('st_old', 1);
SELECT count(*) FROM commitlog.produce_batch('st_old', ARRAY['x', 'y', 'z']::bytea[]);
SELECT commitlog.create_processor('st_late', 'st_old', 'st_handler(commitlog.record[])',
                                  dead_letter_topic => 'st_in.dlq', start_from => 'latest');
SELECT name, topic, status, lag, processed FROM commitlog.processors ORDER BY name;
SELECT group_id, partition, committed_offset FROM commitlog.group_offsets WHERE group_id = 'st_late';
SELECT commitlog.drop_processor('st_late');

-- a consumer group of the processor's name keeps its positions (checked
-- before commit: once committed, a worker would process offset 2)
SELECT commitlog.commit_offset('st_grp', 'st_old', 0, 2);
BEGIN;
SELECT commitlog.create_processor('st_grp', 'st_old', 'st_handler(commitlog.record[])',
                                  dead_letter_topic => 'st_in.dlq', start_from => 'latest');
SELECT group_id, partition, committed_offset FROM commitlog.group_offsets WHERE group_id = 'st_grp';
SELECT name, status, lag FROM commitlog.processors WHERE name = 'st_grp';
ROLLBACK;

-- errors
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_p', 'st_in', 'st_handler(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_nope', 'st_handler(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor(NULL, 'st_in', 'st_handler(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('', 'st_in', 'st_handler(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor(repeat('n', 1001), 'st_in', 'st_handler(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', NULL, 'st_handler(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', NULL)$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_wrong_args(commitlog.record)')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_wrong_result(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_setof(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_proc(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_missing(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_handler(commitlog.record[])', batch_size => 0)$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_handler(commitlog.record[])', batch_size => NULL)$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_handler(commitlog.record[])', max_retries => -1)$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_handler(commitlog.record[])', start_from => 'middle')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_handler(commitlog.record[])', dead_letter_topic => 'st_in')$$);
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_x', 'st_in', 'st_handler(commitlog.record[])', dead_letter_topic => 'bad name')$$);
-- <topic>.dlq must fit in 63 characters; otherwise name one
SELECT commitlog.create_topic(repeat('l', 60));
SELECT pg_temp.err(format($$SELECT commitlog.create_processor('st_x', %L, 'st_handler(commitlog.record[])')$$, repeat('l', 60)));
SELECT commitlog.create_processor('st_long', repeat('l', 60), 'st_handler(commitlog.record[])', dead_letter_topic => 'st_long.dlq');
SELECT name, dead_letter_topic FROM commitlog.stream_jobs WHERE name = 'st_long';
SELECT commitlog.drop_processor('st_long');
-- nothing was left behind by the failed calls
SELECT name FROM commitlog.stream_jobs ORDER BY name;

--
-- pause_processor, resume_processor
--
SELECT commitlog.pause_processor('st_p');
SELECT name, status FROM commitlog.processors;
SELECT paused FROM commitlog.stream_jobs WHERE name = 'st_p';
SELECT commitlog.resume_processor('st_p');
SELECT name, status FROM commitlog.processors;
SELECT pg_temp.err($$SELECT commitlog.pause_processor('st_nope')$$);
SELECT pg_temp.err($$SELECT commitlog.resume_processor('st_nope')$$);
SELECT pg_temp.err($$SELECT commitlog.drop_processor('st_nope')$$);
SELECT pg_temp.err($$SELECT commitlog.pause_processor(NULL)$$);

--
-- status 'error': the handler was dropped
--
CREATE FUNCTION st_doomed(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT commitlog.create_processor('st_doomed', 'st_in', 'st_doomed(commitlog.record[])');
DROP FUNCTION st_doomed(commitlog.record[]);
SELECT name, status, last_error FROM commitlog.processors WHERE name = 'st_doomed';
SELECT commitlog.drop_processor('st_doomed');

--
-- Privileges: a processor is its creator's; its handler runs as that role
--
CREATE ROLE regress_cl_stream;
SET ROLE regress_cl_stream;
-- no SELECT on the topic
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_r', 'st_in', 'st_handler(commitlog.record[])')$$);
RESET ROLE;
GRANT SELECT ON commitlog_topics.st_in TO regress_cl_stream;
REVOKE EXECUTE ON FUNCTION st_handler(commitlog.record[]) FROM PUBLIC;
SET ROLE regress_cl_stream;
-- no EXECUTE on the handler
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_r', 'st_in', 'st_handler(commitlog.record[])')$$);
-- no INSERT on the existing dead-letter topic
RESET ROLE;
GRANT EXECUTE ON FUNCTION st_handler(commitlog.record[]) TO regress_cl_stream;
SET ROLE regress_cl_stream;
SELECT pg_temp.err($$SELECT commitlog.create_processor('st_r', 'st_in', 'st_handler(commitlog.record[])')$$);
-- someone else's processor
SELECT pg_temp.err($$SELECT commitlog.pause_processor('st_p')$$);
SELECT pg_temp.err($$SELECT commitlog.drop_processor('st_p')$$);
-- nor move its group's positions, which are the processor's (group = name)
SELECT pg_temp.err($$SELECT commitlog.commit_offset('st_p', 'st_in', 0, 0)$$);
SELECT pg_temp.err($$SELECT count(*) FROM commitlog.consume('st_p', 'st_in')$$);
SELECT pg_temp.err($$SELECT commitlog.reset_offsets('st_p', 'st_in', 'earliest')$$);
SELECT pg_temp.err($$SELECT commitlog.delete_group('st_p')$$);
-- reading them is fine, and so is any other group
SELECT commitlog.committed_offset('st_p', 'st_in', 0) IS NOT NULL AS readable;
SELECT count(*) >= 0 AS other_group_ok FROM commitlog.consume('st_other_group', 'st_in', max_records => 1);
-- everyone reads the views
SELECT name, status FROM commitlog.processors;
RESET ROLE;

--
-- drop_processor: the positions and counters go too
--
SELECT commitlog.drop_processor('st_p');
SELECT count(*) FROM commitlog.processors;
SELECT count(*) FROM commitlog.group_offsets WHERE group_id = 'st_p';
SELECT count(*) FROM commitlog.stream_partitions;

--
-- create_table, drop_table
--
SELECT commitlog.create_topic('st_kv', 3);
SELECT commitlog.create_table('st_kv', 'st_kv_table');
\d st_kv_table
SELECT * FROM commitlog.derived_tables;
SELECT name, kind, topic, handler, derived_table, owner FROM commitlog.stream_jobs;
-- a position per partition under the table's qualified name
SELECT group_id, partition, committed_offset FROM commitlog.group_offsets
 WHERE topic = 'st_kv' ORDER BY partition;
-- users can index it like any table
CREATE INDEX ON st_kv_table (log_offset);
-- in another schema
CREATE SCHEMA st_schema;
SELECT commitlog.create_table('st_kv', 'st_schema.kv');
SELECT table_name, topic FROM commitlog.derived_tables ORDER BY 1;

-- errors
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', 'st_kv_table')$$);
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', 'st_seen')$$);
SELECT pg_temp.err($$SELECT commitlog.create_table('st_nope', 'st_t')$$);
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', NULL)$$);
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', '')$$);
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', 'pg_temp.st_t')$$);
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', 'no_such_schema.st_t')$$);
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', 'a.b.c.d')$$);
-- a processor cannot take a derived table's name (both are group ids)
SELECT pg_temp.err($$SELECT commitlog.create_processor('public.st_kv_table', 'st_in', 'st_handler(commitlog.record[])')$$);
SELECT pg_temp.err($$SELECT commitlog.drop_table('st_seen')$$);
SELECT pg_temp.err($$SELECT commitlog.drop_table('st_no_table')$$);
SELECT pg_temp.err($$SELECT commitlog.drop_table(NULL)$$);
SET ROLE regress_cl_stream;
SELECT pg_temp.err($$SELECT commitlog.create_table('st_kv', 'st_t')$$);
SELECT pg_temp.err($$SELECT commitlog.drop_table('st_kv_table')$$);
RESET ROLE;

SELECT commitlog.drop_table('st_kv_table');
SELECT commitlog.drop_table('st_schema.kv');
SELECT to_regclass('st_kv_table') IS NULL AS dropped;
SELECT count(*) FROM commitlog.derived_tables;
SELECT count(*) FROM commitlog.group_offsets WHERE topic = 'st_kv';
SELECT count(*) FROM commitlog.stream_jobs;

DROP SCHEMA st_schema;
DROP OWNED BY regress_cl_stream;
DROP ROLE regress_cl_stream;
