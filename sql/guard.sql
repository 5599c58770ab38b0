--
-- The immutability guard (DESIGN 3): topic tables take records only through
-- produce.  INSERT, UPDATE, DELETE, MERGE, COPY FROM, TRUNCATE, DROP and
-- ALTER on any table of commitlog_topics are refused with 42501, for
-- superusers too, also with session_replication_role = replica (triggers
-- would not fire there; the guard is a hook).  SELECT works.  The
-- superuser-only commitlog.restore_mode lets pg_restore through.
--
-- Everything runs as a superuser unless it says otherwise.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
\pset null '<null>'
SET client_min_messages = warning;

-- SQLSTATE and message of a statement's error, or 'ok'.  Internal table
-- names (t<id>_p<n>_s<base>) carry the topic id, which depends on what ran
-- before: it is masked.
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\mt[0-9]+\$p', 't<id>$p', 'g');
END $$;

SELECT commitlog.create_topic('guard_t', 2);
SELECT * FROM commitlog.produce_batch('guard_t', ARRAY['a', 'b']::bytea[], partition => 0);
SELECT * FROM commitlog.produce('guard_t', 'c', key => 'k', partition => 1);

-- the internal tables of partition 0: its partition table, its first segment,
-- and its offset sequence
SELECT 'commitlog_topics.' || quote_ident(relname) AS seg
  FROM commitlog.segments s JOIN commitlog.topics t ON t.id = s.topic_id
 WHERE t.name = 'guard_t' AND s.partition = 0 ORDER BY s.base_offset LIMIT 1 \gset
SELECT 'commitlog_topics."t' || id || '$p0"' AS part, 'commitlog_topics."t' || id || '$p0$seq"' AS seq
  FROM commitlog.topics WHERE name = 'guard_t' \gset

-- everything a client could try, on the topic's table, its partition table
-- and its segment
CREATE TEMP TABLE attempts (n serial, stmt text);
INSERT INTO attempts (stmt)
SELECT replace(s, 'TBL', tbl)
  FROM unnest(ARRAY['commitlog_topics.guard_t', :'part', :'seg']) AS tbl,
       unnest(ARRAY[
         'INSERT INTO TBL VALUES (0, 100, now(), NULL, ''x'', NULL)',
         'INSERT INTO TBL SELECT partition, log_offset + 100, "timestamp", key, value, headers FROM commitlog_topics.guard_t',
         'INSERT INTO TBL VALUES (0, 100, now(), NULL, ''x'', NULL) ON CONFLICT DO NOTHING',
         'WITH w AS (INSERT INTO TBL VALUES (0, 100, now(), NULL, ''x'', NULL) RETURNING 1) SELECT * FROM w',
         'UPDATE TBL SET value = ''changed''',
         'UPDATE TBL SET value = value WHERE false',
         'DELETE FROM TBL',
         'DELETE FROM TBL WHERE false',
         'MERGE INTO TBL t USING (SELECT 0 AS p, 100::bigint AS o) s ON t.partition = s.p AND t.log_offset = s.o
              WHEN NOT MATCHED THEN INSERT VALUES (0, 100, now(), NULL, ''x'', NULL)',
         'MERGE INTO TBL t USING (SELECT 0 AS p, 0::bigint AS o) s ON t.partition = s.p AND t.log_offset = s.o
              WHEN MATCHED THEN UPDATE SET value = ''changed''',
         'MERGE INTO TBL t USING (SELECT 0 AS p, 0::bigint AS o) s ON t.partition = s.p AND t.log_offset = s.o
              WHEN MATCHED THEN DELETE',
         'COPY TBL FROM PROGRAM ''echo 0,100,2001-01-01,,,'' WITH (FORMAT csv)',
         'COPY TBL (partition, log_offset, "timestamp") FROM ''/dev/null''',
         'TRUNCATE TBL',
         'TRUNCATE TBL CASCADE',
         'TRUNCATE ONLY TBL',
         'SELECT * FROM TBL FOR UPDATE',
         'SELECT * FROM TBL FOR KEY SHARE',
         'ALTER TABLE TBL ADD COLUMN extra int',
         'ALTER TABLE TBL ALTER COLUMN value SET NOT NULL',
         'ALTER TABLE TBL DISABLE TRIGGER ALL',
         'ALTER TABLE TBL ENABLE ROW LEVEL SECURITY',
         'ALTER TABLE TBL RENAME TO renamed',
         'ALTER TABLE TBL RENAME COLUMN value TO v',
         'ALTER TABLE TBL SET SCHEMA public',
         'ALTER TABLE TBL SET UNLOGGED',
         'DROP TABLE TBL',
         'DROP TABLE IF EXISTS TBL CASCADE'
       ]) WITH ORDINALITY AS a(s, o)
 ORDER BY tbl = 'commitlog_topics.guard_t' DESC, tbl = :'part' DESC, o;
-- and on the rest of the storage
INSERT INTO attempts (stmt) VALUES
  ('ALTER TABLE ' || :'part' || ' DETACH PARTITION ' || :'seg'),
  ('ALTER TABLE commitlog_topics.guard_t DETACH PARTITION ' || :'part'),
  ('ALTER TABLE ' || :'part' || ' ATTACH PARTITION public.guard_plain FOR VALUES FROM (1000) TO (2000)'),
  ('DROP INDEX commitlog_topics.guard_t_pkey'),
  ('ALTER INDEX commitlog_topics.guard_t_pkey RENAME TO renamed'),
  ('DROP SEQUENCE ' || :'seq'),
  ('ALTER SEQUENCE ' || :'seq' || ' RENAME TO renamed');

-- a table to attach, and a plain table the guard must leave alone
CREATE TABLE guard_plain (LIKE commitlog_topics.guard_t);
INSERT INTO guard_plain VALUES (0, 1000, now(), NULL, 'plain', NULL);
UPDATE guard_plain SET value = 'plain!';

-- Anything that slips through is rolled back with the transaction.
BEGIN;
SELECT n, regexp_replace(stmt, '\mt[0-9]+\$p', 't<id>$p', 'g') AS statement,
       pg_temp.err(stmt) AS result
  FROM attempts ORDER BY n;
-- the same, with triggers switched off
SET LOCAL session_replication_role = replica;
SELECT n, pg_temp.err(stmt) AS result FROM attempts ORDER BY n;
RESET session_replication_role;
-- the offset sequences hand out offsets that must never come again: they
-- cannot be rewound or changed either
SELECT a AS alter_sequence, split_part(pg_temp.err('ALTER SEQUENCE ' || :'seq' || ' ' || a), ':', 1) AS sqlstate
  FROM (VALUES ('RESTART'), ('RESTART WITH 0'), ('INCREMENT BY 1'), ('MAXVALUE 10')) AS v(a);
-- the records are still the same
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value FROM commitlog_topics.guard_t ORDER BY 1, 2;
SELECT partition, latest_offset FROM commitlog.partition_list WHERE topic = 'guard_t' ORDER BY 1;
ROLLBACK;

-- one full error, as a client sees it
INSERT INTO commitlog_topics.guard_t VALUES (0, 100, now(), NULL, 'x', NULL);

-- through a view, a function, a trigger: the same
CREATE VIEW guard_view AS SELECT * FROM commitlog_topics.guard_t;
INSERT INTO guard_view VALUES (0, 100, now(), NULL, 'x', NULL);
CREATE FUNCTION guard_definer() RETURNS void LANGUAGE sql SECURITY DEFINER
AS $$ DELETE FROM commitlog_topics.guard_t $$;
SELECT pg_temp.err('SELECT guard_definer()');
CREATE FUNCTION guard_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO commitlog_topics.guard_t VALUES (0, NEW.log_offset, now(), NULL, NEW.value, NULL);
	RETURN NEW;
END $$;
CREATE TRIGGER guard_trigger AFTER INSERT ON guard_plain FOR EACH ROW EXECUTE FUNCTION guard_trigger();
SELECT pg_temp.err($$INSERT INTO guard_plain VALUES (0, 2000, now(), NULL, 'via trigger', NULL)$$);
DROP TRIGGER guard_trigger ON guard_plain;
DROP FUNCTION guard_trigger(), guard_definer();
DROP VIEW guard_view;

-- DROP OWNED BY and DROP SCHEMA would drop topic tables behind drop_topic
CREATE ROLE regress_cl_guard;
GRANT CREATE ON SCHEMA commitlog_topics TO regress_cl_guard;
SET ROLE regress_cl_guard;
SELECT commitlog.create_topic('guard_owned');
SELECT * FROM commitlog.produce('guard_owned', 'owned');
RESET ROLE;
BEGIN;
SELECT split_part(pg_temp.err('DROP OWNED BY regress_cl_guard'), ':', 1) AS drop_owned;
SELECT pg_temp.err($$SELECT count(*) FROM commitlog.fetch('guard_owned', 0, 0)$$) AS fetch_after;
ROLLBACK;
BEGIN;
SELECT split_part(pg_temp.err('DROP SCHEMA commitlog_topics CASCADE'), ':', 1) AS drop_schema;
SELECT pg_temp.err($$SELECT count(*) FROM commitlog.fetch('guard_owned', 0, 0)$$) AS fetch_after;
ROLLBACK;
SELECT commitlog.drop_topic('guard_owned');
REVOKE CREATE ON SCHEMA commitlog_topics FROM regress_cl_guard;

-- a non-superuser is refused the same way, whatever its privileges
GRANT ALL ON commitlog_topics.guard_t TO regress_cl_guard;
SET ROLE regress_cl_guard;
SELECT pg_temp.err($$INSERT INTO commitlog_topics.guard_t VALUES (0, 100, now(), NULL, 'x', NULL)$$);
SELECT pg_temp.err($$UPDATE commitlog_topics.guard_t SET value = 'x'$$);
SELECT pg_temp.err($$DELETE FROM commitlog_topics.guard_t$$);
SELECT pg_temp.err($$TRUNCATE commitlog_topics.guard_t$$);
SELECT pg_temp.err(format('INSERT INTO %s VALUES (0, 100, now(), NULL, %L, NULL)', :'seg', 'x'));
RESET ROLE;
REVOKE ALL ON commitlog_topics.guard_t FROM regress_cl_guard;
DROP ROLE regress_cl_guard;

------------------------------------------------------------------------------
-- What stays allowed
------------------------------------------------------------------------------
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value FROM commitlog_topics.guard_t ORDER BY 1, 2;
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM :seg ORDER BY 1;
SELECT count(*) FROM commitlog_topics.guard_t t JOIN guard_plain p USING (partition);
COPY (SELECT partition, log_offset, value FROM commitlog_topics.guard_t ORDER BY 1, 2) TO STDOUT;
SELECT pg_temp.err('ANALYZE commitlog_topics.guard_t');
SELECT pg_temp.err('COMMENT ON TABLE commitlog_topics.guard_t IS ''orders''');
SELECT pg_temp.err('GRANT SELECT ON commitlog_topics.guard_t TO PUBLIC');
SELECT pg_temp.err('REVOKE SELECT ON commitlog_topics.guard_t FROM PUBLIC');
-- and produce, of course
SELECT * FROM commitlog.produce('guard_t', 'd', partition => 0);

------------------------------------------------------------------------------
-- commitlog.restore_mode: the superuser's way through, for pg_restore
------------------------------------------------------------------------------
SHOW commitlog.restore_mode;
-- (rolled back: restored rows above the log end would need the offset
-- sequences restored too, as pg_restore does)
BEGIN;
SET commitlog.restore_mode = on;
INSERT INTO commitlog_topics.guard_t VALUES (0, 900, '2001-01-01 00:00:00+00', NULL, 'restored', NULL);
COPY commitlog_topics.guard_t FROM PROGRAM 'echo 0,901,2001-01-01 00:00:00+00,,,' WITH (FORMAT csv);
INSERT INTO :seg VALUES (0, 902, '2001-01-01 00:00:00+00', NULL, 'into the segment', NULL);
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM commitlog_topics.guard_t
 WHERE log_offset >= 900 ORDER BY 1;
RESET commitlog.restore_mode;
-- and the guard is back
SELECT pg_temp.err($$INSERT INTO commitlog_topics.guard_t VALUES (0, 903, now(), NULL, 'x', NULL)$$);
ROLLBACK;
-- SET LOCAL ends with the transaction
BEGIN;
SET LOCAL commitlog.restore_mode = on;
SELECT pg_temp.err($$INSERT INTO commitlog_topics.guard_t VALUES (0, 904, now(), NULL, 'local', NULL)$$);
ROLLBACK;
SHOW commitlog.restore_mode;
SELECT pg_temp.err($$INSERT INTO commitlog_topics.guard_t VALUES (0, 905, now(), NULL, 'x', NULL)$$);
-- produce goes on as before
SELECT * FROM commitlog.produce('guard_t', 'e', partition => 0);
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM commitlog.fetch('guard_t', 0, 0);

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
DROP TABLE guard_plain;
SELECT commitlog.drop_topic('guard_t');
SELECT count(*) FROM pg_class WHERE relnamespace = 'commitlog_topics'::regnamespace AND relname LIKE 'guard%';
