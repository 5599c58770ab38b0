--
-- Topics (DESIGN 3, 5, 6): create_topic, drop_topic, add_partitions,
-- alter_topic, the topic_list and partition_list views, topic names, and
-- the errors of each, which leave nothing half-made.
--
-- Config keys and values are in config.sql.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
\pset null '<null>'
SET client_min_messages = warning;

-- SQLSTATE and message of a statement's error, or 'ok'.  Internal object
-- names (t<id>_p<n>...) carry topic ids, which depend on what ran before.
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\mt[0-9]+\$p', 't<id>$p', 'g');
END $$;

-- Everything of the topics of this file: metadata rows, and the relations
-- in commitlog_topics (the topic's table and, through commitlog.segments
-- and the t<id>_ prefix, its partitions, segments, sequences and indexes).
CREATE FUNCTION pg_temp.footprint() RETURNS TABLE (what text, n bigint)
LANGUAGE sql AS $$
	SELECT 'topics', count(*) FROM commitlog.topics
	UNION ALL
	SELECT 'partitions', count(*) FROM commitlog.partitions
	UNION ALL
	SELECT 'segments', count(*) FROM commitlog.segments
	UNION ALL
	SELECT 'relations', count(*) FROM pg_class
	 WHERE relnamespace = 'commitlog_topics'::regnamespace
$$;

------------------------------------------------------------------------------
-- create_topic
------------------------------------------------------------------------------
SELECT commitlog.create_topic('topics_one');
SELECT commitlog.create_topic('topics_three', 3);
SELECT commitlog.create_topic(topic => 'topics_named', partitions => 2,
                              replication_factor => 1, config => '{}');

SELECT topic, partitions, replication_factor
  FROM commitlog.topic_list WHERE topic LIKE 'topics\_%' ORDER BY topic;

-- only the keys set on the topic are stored (none here)
SELECT name, partitions, replication_factor, config
  FROM commitlog.topics WHERE name LIKE 'topics\_%' ORDER BY name;

-- one row per partition, empty, one segment each, this broker leads
SELECT topic, partition, earliest_offset, latest_offset, segments,
       size_bytes > 0 AS has_storage, leader, replicas, isr
  FROM commitlog.partition_list WHERE topic LIKE 'topics\_%' ORDER BY topic, partition;

-- the topic table: contract columns in order, primary key, list-partitioned
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type, attnotnull
  FROM pg_attribute
 WHERE attrelid = 'commitlog_topics.topics_three'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;
SELECT pg_get_partkeydef('commitlog_topics.topics_three'::regclass);
SELECT pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'commitlog_topics.topics_three'::regclass AND contype = 'p';
-- one child per partition, each range-partitioned by offset, no default partition
SELECT pg_get_expr(c.relpartbound, c.oid) AS bound, pg_get_partkeydef(c.oid) AS partkey
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'commitlog_topics.topics_three'::regclass
 ORDER BY bound;
-- the segments named in commitlog.segments exist and are attached
SELECT s.partition, s.base_offset, s.end_offset,
       pg_get_expr(c.relpartbound, c.oid) AS bound
  FROM commitlog.segments s
  JOIN commitlog.topics t ON t.id = s.topic_id
  JOIN pg_class c ON c.relname = s.relname
                 AND c.relnamespace = 'commitlog_topics'::regnamespace
 WHERE t.name = 'topics_three'
 ORDER BY s.partition;

-- defaults: 1 partition, replication factor 1
SELECT partitions, replication_factor FROM commitlog.topic_list WHERE topic = 'topics_one';

------------------------------------------------------------------------------
-- Topic names: 1 to 63 characters of [A-Za-z0-9._-], not "." or ".."
------------------------------------------------------------------------------
SELECT commitlog.create_topic('topics.dots_and-dashes.0');
SELECT commitlog.create_topic('Topics_Case');      -- names are case-sensitive:
SELECT commitlog.create_topic('topics_case');      -- two different topics
SELECT commitlog.create_topic('topics-' || repeat('x', 56));   -- exactly 63
SELECT commitlog.create_topic('...x');
SELECT commitlog.create_topic('-');
SELECT commitlog.create_topic('0');
SELECT topic, length(topic) FROM commitlog.topic_list
 WHERE topic IN ('topics.dots_and-dashes.0', 'Topics_Case', 'topics_case',
                 'topics-' || repeat('x', 56), '...x', '-', '0')
 ORDER BY topic COLLATE "C";

-- such names work end to end: produce, fetch, their table
SELECT * FROM commitlog.produce('topics.dots_and-dashes.0', 'a');
SELECT * FROM commitlog.produce('Topics_Case', 'b');
SELECT * FROM commitlog.produce('topics-' || repeat('x', 56), 'c');
SELECT topic, log_offset, convert_from(value, 'UTF8') AS value
  FROM commitlog.fetch('topics.dots_and-dashes.0', 0, 0);
SELECT topic = 'topics-' || repeat('x', 56) AS same_name, log_offset, convert_from(value, 'UTF8') AS value
  FROM commitlog.fetch('topics-' || repeat('x', 56), 0, 0);
SELECT count(*) FROM commitlog.fetch('topics_case', 0, 0);
SELECT convert_from(value, 'UTF8') AS value FROM commitlog_topics."Topics_Case";

-- bad names: 22023, with the reason in the detail and a hint
SELECT commitlog.create_topic('bad name!');
SELECT commitlog.create_topic('.');
SELECT commitlog.create_topic('..');
SELECT commitlog.create_topic('');
SELECT commitlog.create_topic('topics-' || repeat('x', 57));   -- 64
SELECT length(name) AS len,
       translate(left(name, 12), chr(9) || chr(10) || chr(127), '???') AS name_start,
       pg_temp.err(format('SELECT commitlog.create_topic(%L)', name)) ~ '^22023: invalid topic name' AS refused
  FROM (VALUES ('a b'), ('a/b'), ('a"b'), ('a''b'), ('a;b'), ('a*'), ('a:b'),
               ('a$b'), ('a' || chr(9) || 'b'), ('a' || chr(10)), ('tab' || chr(127)),
               ('a\b'), ('..'), ('.'), (''), (repeat('y', 64)), (repeat('y', 200))) AS v(name)
 ORDER BY name COLLATE "C";
-- the hint fits the mistake: an empty name is not "too long"
CREATE FUNCTION pg_temp.hint(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	h text;
BEGIN
	EXECUTE sql;
	RETURN '(no error)';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
	RETURN h;
END $$;
SELECT pg_temp.hint($$SELECT commitlog.create_topic('')$$) !~* 'shorter' AS empty_name_hint_fits;
SELECT pg_temp.hint($$SELECT commitlog.create_topic(repeat('y', 64))$$) ~* 'shorter' AS long_name_hint_fits;

------------------------------------------------------------------------------
-- Other errors of create_topic
------------------------------------------------------------------------------
-- duplicate: 42710
SELECT commitlog.create_topic('topics_one');
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_one', 5)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_three', 3)$$);
-- an exact duplicate only: another case is another name
SELECT pg_temp.err($$SELECT commitlog.create_topic('Topics_Case')$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('TOPICS_CASE')$$);
SELECT pg_temp.err($$SELECT commitlog.drop_topic('TOPICS_CASE')$$);

-- partitions: 1 to commitlog.max_partitions (10000 by default)
SELECT commitlog.create_topic('topics_bad', 0);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_bad', -1)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_bad', -2147483648)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_bad', 10001)$$);

-- replication factor: a single broker, so exactly 1
SELECT commitlog.create_topic('topics_bad', 1, 0);
SELECT commitlog.create_topic('topics_bad', 1, 2);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_bad', 1, -1)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_bad', replication_factor => 3)$$);

-- NULL arguments: 22023
SELECT commitlog.create_topic(NULL);
SELECT commitlog.create_topic('topics_bad', NULL);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_bad', 1, NULL)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic(NULL, NULL, NULL, NULL)$$);

-- a table that is not a topic in commitlog_topics: 42P07
CREATE TABLE commitlog_topics.topics_plain (a int);
SELECT commitlog.create_topic('topics_plain');
SET commitlog.restore_mode = on;   -- the guard protects every table of the schema
DROP TABLE commitlog_topics.topics_plain;
RESET commitlog.restore_mode;

------------------------------------------------------------------------------
-- A failed create_topic leaves nothing half-made, and the name stays free
------------------------------------------------------------------------------
CREATE TEMP TABLE before AS SELECT * FROM pg_temp.footprint();

SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_retry', 0)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_retry', 2, 2)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_retry', 2, 1, '{"nope": 1}')$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_retry', 2, 1, '{"retention.ms": "x"}')$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics retry', 2)$$);
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_one', 2)$$);

SELECT b.what, b.n = a.n AS unchanged
  FROM before b JOIN pg_temp.footprint() a USING (what) ORDER BY what;
SELECT count(*) FROM commitlog.topic_list WHERE topic = 'topics_retry';
SELECT count(*) FROM pg_class
 WHERE relnamespace = 'commitlog_topics'::regnamespace AND relname LIKE 'topics%retry%';

SELECT commitlog.create_topic('topics_retry', 2);
SELECT topic, partitions FROM commitlog.topic_list WHERE topic = 'topics_retry';

------------------------------------------------------------------------------
-- Valid names that look like the extension's own object names are topics
-- like any other: they must not collide with the storage of other topics.
-- (Today these fail half-way through create_topic; either way nothing of
-- them may be left behind.)
------------------------------------------------------------------------------
CREATE TEMP TABLE before_names AS SELECT * FROM pg_temp.footprint();
-- "<topic>_pkey" is the name of the index of topic "<topic>"
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_one_pkey')$$);
-- "t<id>_p0" was once the name of the first partition of the topic with that
-- id; internal names now contain "$", which topic names cannot
SELECT pg_temp.err(format('SELECT commitlog.create_topic(%L)',
                          't' || (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
                                    FROM commitlog.topics_id_seq) || '_p0')) AS own_partition_name;
-- and the topic created after it still works
SELECT pg_temp.err($$SELECT commitlog.create_topic('topics_after_names', 2)$$);
SELECT pg_temp.err($$SELECT commitlog.produce('topics_after_names', 'x'::text, partition => 1)$$);
-- clean up whatever got created
DO $$
DECLARE
	t text;
BEGIN
	FOR t IN SELECT name FROM commitlog.topics
	          WHERE name IN ('topics_one_pkey', 'topics_after_names') OR name ~ '^t[0-9]+_p0$'
	LOOP
		PERFORM commitlog.drop_topic(t);
	END LOOP;
END $$;
SELECT b.what, b.n = a.n AS unchanged
  FROM before_names b JOIN pg_temp.footprint() a USING (what) ORDER BY what;

------------------------------------------------------------------------------
-- add_partitions: takes the new total, never fewer
------------------------------------------------------------------------------
SELECT * FROM commitlog.produce('topics_three', 'before', partition => 2);
SELECT commitlog.add_partitions('topics_three', 5);
SELECT topic, partitions FROM commitlog.topic_list WHERE topic = 'topics_three';
SELECT partition, earliest_offset, latest_offset, segments
  FROM commitlog.partition_list WHERE topic = 'topics_three' ORDER BY partition;
-- new partitions take records; old ones keep theirs
SELECT * FROM commitlog.produce('topics_three', 'new', partition => 4);
SELECT * FROM commitlog.produce('topics_three', 'after', partition => 2);
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value
  FROM commitlog_topics.topics_three ORDER BY partition, log_offset;
-- the key-to-partition mapping follows the new count (as in Kafka)
SELECT commitlog.partition_for_key('topics_three', 'foobar');   -- murmur2 % 5

SELECT commitlog.add_partitions('topics_three', 3);
SELECT pg_temp.err($$SELECT commitlog.add_partitions('topics_three', 5)$$);
SELECT pg_temp.err($$SELECT commitlog.add_partitions('topics_three', 0)$$);
SELECT pg_temp.err($$SELECT commitlog.add_partitions('topics_three', -1)$$);
SELECT pg_temp.err($$SELECT commitlog.add_partitions('topics_three', 10001)$$);
SELECT commitlog.add_partitions('topics_three', NULL);
SELECT pg_temp.err($$SELECT commitlog.add_partitions(NULL, 6)$$);
SELECT commitlog.add_partitions('topics_nope', 2);
SELECT topic, partitions FROM commitlog.topic_list WHERE topic = 'topics_three';
-- the singular in the message
SELECT pg_temp.err($$SELECT commitlog.add_partitions('topics_one', 1)$$);

------------------------------------------------------------------------------
-- alter_topic (config details in config.sql)
------------------------------------------------------------------------------
SELECT commitlog.alter_topic('topics_one', '{"retention.ms": 3600000}');
SELECT config FROM commitlog.topics WHERE name = 'topics_one';
SELECT config->'retention.ms' FROM commitlog.topic_list WHERE topic = 'topics_one';
SELECT commitlog.alter_topic('topics_nope', '{}');
SELECT commitlog.alter_topic('topics_one', NULL);
SELECT pg_temp.err($$SELECT commitlog.alter_topic(NULL, '{}')$$);

------------------------------------------------------------------------------
-- drop_topic
------------------------------------------------------------------------------
SELECT id AS dropped_id FROM commitlog.topics WHERE name = 'topics_named' \gset
SELECT * FROM commitlog.produce('topics_named', 'x', partition => 1);
SELECT commitlog.drop_topic('topics_named');
SELECT count(*) FROM commitlog.topic_list WHERE topic = 'topics_named';
SELECT count(*) FROM commitlog.partition_list WHERE topic = 'topics_named';
SELECT count(*) FROM commitlog.partitions WHERE topic_id = :dropped_id;
SELECT count(*) FROM commitlog.segments WHERE topic_id = :dropped_id;
SELECT count(*) FROM pg_class
 WHERE relnamespace = 'commitlog_topics'::regnamespace
   AND (relname LIKE 'topics\_named%' OR relname LIKE 't' || :dropped_id || '\_%');
-- gone for every function
SELECT commitlog.drop_topic('topics_named');
SELECT pg_temp.err($$SELECT commitlog.produce('topics_named', 'x'::text)$$);
SELECT pg_temp.err($$SELECT * FROM commitlog.fetch('topics_named', 0, 0)$$);
SELECT pg_temp.err($$SELECT commitlog.latest_offset('topics_named', 0)$$);
SELECT pg_temp.err($$SELECT commitlog.partition_for_key('topics_named', 'k')$$);
-- the name can be used again: a new, empty topic whose offsets start at 0
SELECT commitlog.create_topic('topics_named', 2);
SELECT partition, latest_offset FROM commitlog.partition_list WHERE topic = 'topics_named' ORDER BY 1;
SELECT * FROM commitlog.produce('topics_named', 'again', partition => 1);
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM commitlog.fetch('topics_named', 1, 0);

-- drop_topic is transactional: after a rollback the topic and its records
-- are still there, and offsets go on above the ones already handed out
BEGIN;
SELECT commitlog.drop_topic('topics_named');
SELECT count(*) FROM commitlog.topic_list WHERE topic = 'topics_named';
ROLLBACK;
SELECT topic, partitions FROM commitlog.topic_list WHERE topic = 'topics_named';
SELECT log_offset, convert_from(value, 'UTF8') AS value FROM commitlog.fetch('topics_named', 1, 0);
SELECT (commitlog.produce('topics_named', 'after rollback', partition => 1)).log_offset > 0 AS above;
SELECT count(*) FROM commitlog.fetch('topics_named', 1, 0);

-- NULL and unknown
SELECT commitlog.drop_topic(NULL);
SELECT commitlog.drop_topic('topics_nope');
SELECT pg_temp.err($$SELECT commitlog.drop_topic('Topics_one')$$);

-- a view over a topic keeps it from being dropped
CREATE VIEW topics_view AS SELECT log_offset FROM commitlog_topics.topics_one;
SELECT pg_temp.err($$SELECT commitlog.drop_topic('topics_one')$$);
DROP VIEW topics_view;

------------------------------------------------------------------------------
-- Clean up: every topic of this file
------------------------------------------------------------------------------
SELECT commitlog.drop_topic(topic) FROM commitlog.topic_list
 WHERE topic LIKE 'topics%' OR topic LIKE 'Topics%'
    OR topic IN ('...x', '-', '0')
 ORDER BY topic COLLATE "C";
SELECT count(*) FROM commitlog.topic_list
 WHERE topic LIKE 'topics%' OR topic LIKE 'Topics%' OR topic IN ('...x', '-', '0');
SELECT relname FROM pg_class
 WHERE relnamespace = 'commitlog_topics'::regnamespace AND relname ILIKE 'topics%';
