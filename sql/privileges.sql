--
-- Privileges (DESIGN 3, 5, 6): producing needs INSERT on the topic table,
-- reading needs SELECT, creating a topic needs CREATE on schema
-- commitlog_topics and makes the caller the owner, dropping and altering
-- need ownership.  UPDATE, DELETE and TRUNCATE are refused for everyone.
-- Errors are 42501 with a hint that names the GRANT to run.
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
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\mt[0-9]+\$p', 't<id>$p', 'g');
END $$;

CREATE ROLE regress_cl_producer;
CREATE ROLE regress_cl_consumer;
CREATE ROLE regress_cl_creator;
CREATE ROLE regress_cl_other;

SELECT commitlog.create_topic('priv_t', 2);
SELECT commitlog.create_topic('priv.Mixed');
SELECT * FROM commitlog.produce('priv_t', 'by superuser', partition => 0);

------------------------------------------------------------------------------
-- Producing needs INSERT
------------------------------------------------------------------------------
SET ROLE regress_cl_producer;
SELECT * FROM commitlog.produce('priv_t', 'x', partition => 0);
-- the hint quotes the table name as SQL needs it
SELECT * FROM commitlog.produce('priv.Mixed', 'x');
SELECT pg_temp.err($$SELECT commitlog.produce_batch('priv_t', ARRAY['x']::bytea[])$$);
SELECT pg_temp.err($$SELECT commitlog.produce_messages('priv_t', ARRAY[ROW(NULL, 'x', NULL, 0, NULL)::commitlog.message])$$);
SELECT pg_temp.err($$SELECT commitlog.produce('priv_t', '{}'::jsonb)$$);
-- reading needs SELECT
SELECT * FROM commitlog.fetch('priv_t', 0, 0);
SELECT pg_temp.err($$SELECT commitlog.offset_for_time('priv_t', 0, now())$$);
SELECT pg_temp.err($$SELECT count(*) FROM commitlog_topics.priv_t$$);
-- metadata needs nothing
SELECT commitlog.earliest_offset('priv_t', 0), commitlog.latest_offset('priv_t', 0),
       commitlog.partition_for_key('priv_t', 'k');
SELECT topic, partitions FROM commitlog.topic_list WHERE topic LIKE 'priv%' ORDER BY topic COLLATE "C";
SELECT topic, partition, latest_offset FROM commitlog.partition_list WHERE topic = 'priv_t' ORDER BY 2;
RESET ROLE;

GRANT INSERT ON commitlog_topics.priv_t TO regress_cl_producer;
SET ROLE regress_cl_producer;
SELECT * FROM commitlog.produce('priv_t', 'by producer', partition => 0);
SELECT * FROM commitlog.produce_batch('priv_t', ARRAY['p1', 'p2']::bytea[], partition => 1);
SELECT * FROM commitlog.produce_messages('priv_t', ARRAY[ROW(NULL, 'pm', NULL, 1, NULL)::commitlog.message]);
-- INSERT does not give SELECT
SELECT pg_temp.err($$SELECT * FROM commitlog.fetch('priv_t', 0, 0)$$);
-- nor direct writes, which are refused for everyone
SELECT pg_temp.err($$INSERT INTO commitlog_topics.priv_t VALUES (0, 100, now(), NULL, 'x', NULL)$$);
-- nor producing to other topics
SELECT pg_temp.err($$SELECT commitlog.produce('priv.Mixed', 'x'::text)$$);
RESET ROLE;

------------------------------------------------------------------------------
-- Reading needs SELECT
------------------------------------------------------------------------------
GRANT SELECT ON commitlog_topics.priv_t TO regress_cl_consumer;
SET ROLE regress_cl_consumer;
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value FROM commitlog.fetch('priv_t', 0, 0);
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value FROM commitlog.fetch('priv_t', 1, 0);
SELECT commitlog.offset_for_time('priv_t', 0, '-infinity');
SELECT count(*) FROM commitlog_topics.priv_t;
SELECT * FROM commitlog.produce('priv_t', 'x');
RESET ROLE;

------------------------------------------------------------------------------
-- UPDATE, DELETE and TRUNCATE: refused even with the privileges, and for
-- superusers
------------------------------------------------------------------------------
GRANT ALL ON commitlog_topics.priv_t TO regress_cl_other;
SET ROLE regress_cl_other;
SELECT pg_temp.err($$UPDATE commitlog_topics.priv_t SET value = 'changed'$$);
SELECT pg_temp.err($$DELETE FROM commitlog_topics.priv_t$$);
SELECT pg_temp.err($$TRUNCATE commitlog_topics.priv_t$$);
SELECT pg_temp.err($$INSERT INTO commitlog_topics.priv_t VALUES (0, 100, now(), NULL, 'x', NULL)$$);
RESET ROLE;
UPDATE commitlog_topics.priv_t SET value = 'changed';
DELETE FROM commitlog_topics.priv_t;
TRUNCATE commitlog_topics.priv_t;
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value
  FROM commitlog_topics.priv_t ORDER BY 1, 2;

------------------------------------------------------------------------------
-- Creating a topic needs CREATE on schema commitlog_topics
------------------------------------------------------------------------------
SET ROLE regress_cl_creator;
SELECT commitlog.create_topic('priv_own', 2);
SELECT count(*) FROM commitlog.topics WHERE name = 'priv_own';
RESET ROLE;
GRANT CREATE ON SCHEMA commitlog_topics TO regress_cl_creator;
SET ROLE regress_cl_creator;
SELECT commitlog.create_topic('priv_own', 2);
RESET ROLE;
-- the creator owns the topic's table and its index; everything below it
-- (partition tables, segments, offset sequences) belongs to the extension's
-- owner, so that no topic owner can rewind offsets, and a topic handed over
-- to another owner keeps working
SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'commitlog_topics.priv_own'::regclass;
SELECT relkind,
       CASE relowner WHEN 'regress_cl_creator'::regrole THEN 'creator'
                     WHEN (SELECT extowner FROM pg_extension WHERE extname = 'pg_commitlog') THEN 'extension owner'
                     ELSE 'someone else' END AS owner,
       count(*)
  FROM pg_class
 WHERE relnamespace = 'commitlog_topics'::regnamespace
   AND (relname = 'priv_own' OR relname LIKE 'priv\_own\_%'
        OR relname ~ ('^t' || (SELECT id FROM commitlog.topics WHERE name = 'priv_own') || '\$'))
 GROUP BY 1, 2 ORDER BY 1, 2;
-- the metadata rows are written for it, although it has no rights on them
SELECT name, partitions FROM commitlog.topics WHERE name = 'priv_own';
SELECT has_table_privilege('regress_cl_creator', 'commitlog.topics', 'INSERT') AS can_insert_metadata;

SET ROLE regress_cl_creator;
-- the owner produces and reads its topic, and manages it
SELECT * FROM commitlog.produce('priv_own', 'mine', partition => 0);
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM commitlog.fetch('priv_own', 0, 0);
SELECT commitlog.alter_topic('priv_own', '{"retention.ms": 1000}');
SELECT commitlog.add_partitions('priv_own', 3);
SELECT topic, partitions, config->'retention.ms' AS retention_ms FROM commitlog.topic_list WHERE topic = 'priv_own';
-- and grants on it
GRANT INSERT ON commitlog_topics.priv_own TO regress_cl_producer;
-- but it cannot write the table directly either
SELECT pg_temp.err($$DELETE FROM commitlog_topics.priv_own$$);
SELECT pg_temp.err($$TRUNCATE commitlog_topics.priv_own$$);
SELECT pg_temp.err($$DROP TABLE commitlog_topics.priv_own$$);
-- nor write the metadata
SELECT pg_temp.err($$UPDATE commitlog.topics SET partitions = 1 WHERE name = 'priv_own'$$);
-- nor rewind the offsets of its partitions, which would hand out offsets again
SELECT split_part(pg_temp.err(format('SELECT setval(%L, 0, false)',
       'commitlog_topics."t' || (SELECT id FROM commitlog.topics WHERE name = 'priv_own') || '$p0$seq"')), ':', 1) AS sqlstate;
-- (if it could, the offsets of partition 0 would start over: check they do not)
BEGIN;
SELECT commitlog.drop_topic('priv_own');
ROLLBACK;
SELECT pg_temp.err($$SELECT commitlog.produce('priv_own', 'after', partition => 0)$$);
SELECT log_offset > 0 AS above_first, convert_from(value, 'UTF8') AS value
  FROM commitlog.fetch('priv_own', 0, 0) ORDER BY log_offset;
RESET ROLE;

SET ROLE regress_cl_producer;
SELECT * FROM commitlog.produce('priv_own', 'granted', partition => 1);
RESET ROLE;

------------------------------------------------------------------------------
-- Only the owner (or a superuser) drops, alters and extends a topic
------------------------------------------------------------------------------
SET ROLE regress_cl_other;      -- has ALL privileges on priv_t, owns nothing
SELECT commitlog.drop_topic('priv_t');
SELECT commitlog.alter_topic('priv_t', '{"retention.ms": 1}');
SELECT pg_temp.err($$SELECT commitlog.add_partitions('priv_t', 3)$$);
SELECT pg_temp.err($$SELECT commitlog.drop_topic('priv_own')$$);
SELECT pg_temp.err($$SELECT commitlog.alter_topic('priv_own', '{}')$$);
SELECT pg_temp.err($$SELECT commitlog.add_partitions('priv_own', 4)$$);
-- unknown topics are 42704 for everyone
SELECT pg_temp.err($$SELECT commitlog.drop_topic('priv_nope')$$);
RESET ROLE;
SET ROLE regress_cl_creator;    -- owns priv_own only
SELECT pg_temp.err($$SELECT commitlog.drop_topic('priv_t')$$);
SELECT pg_temp.err($$SELECT commitlog.alter_topic('priv.Mixed', '{}')$$);
RESET ROLE;
SELECT topic, partitions, config->'retention.ms' AS retention_ms
  FROM commitlog.topic_list WHERE topic LIKE 'priv%' ORDER BY topic COLLATE "C";

-- a superuser may manage any topic ...
SELECT commitlog.alter_topic('priv_own', '{"retention.ms": null}');
SELECT commitlog.add_partitions('priv_own', 4);
-- ... and the topic stays its owner's: the owner can still drop it
SET ROLE regress_cl_creator;
SELECT pg_temp.err($$SELECT commitlog.drop_topic('priv_own')$$);
RESET ROLE;
SELECT count(*) FROM commitlog.topic_list WHERE topic = 'priv_own';

-- ALTER TABLE ... OWNER TO hands a topic over: the new owner manages it,
-- even without CREATE on the schema (only ownership is needed)
SELECT commitlog.create_topic('priv_handover', 2);
SELECT * FROM commitlog.produce('priv_handover', 'before', partition => 1);
ALTER TABLE commitlog_topics.priv_handover OWNER TO regress_cl_other;
SET ROLE regress_cl_other;
SELECT * FROM commitlog.produce('priv_handover', 'after', partition => 1);
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM commitlog.fetch('priv_handover', 1, 0);
SELECT pg_temp.err($$SELECT commitlog.alter_topic('priv_handover', '{"retention.ms": 2000}')$$);
SELECT pg_temp.err($$SELECT commitlog.add_partitions('priv_handover', 3)$$);
SELECT pg_temp.err($$SELECT commitlog.drop_topic('priv_handover')$$);
RESET ROLE;
SELECT count(*) FROM commitlog.topic_list WHERE topic = 'priv_handover';

------------------------------------------------------------------------------
-- Settings: restore_mode and the broker defaults are for superusers
------------------------------------------------------------------------------
SET ROLE regress_cl_other;
SET commitlog.restore_mode = on;
SELECT pg_temp.err($$SET commitlog.default_max_message_bytes = '1'$$);
SHOW commitlog.restore_mode;
RESET ROLE;

------------------------------------------------------------------------------
-- Clean up (whatever the checks above left), then the roles can go
------------------------------------------------------------------------------
DO $$
DECLARE
	t text;
BEGIN
	FOR t IN SELECT topic FROM commitlog.topic_list WHERE topic LIKE 'priv%' LOOP
		PERFORM commitlog.drop_topic(t);
	END LOOP;
END $$;
REVOKE CREATE ON SCHEMA commitlog_topics FROM regress_cl_creator;
DROP ROLE regress_cl_producer, regress_cl_consumer, regress_cl_creator, regress_cl_other;
SELECT count(*) FROM commitlog.topic_list WHERE topic LIKE 'priv%';
