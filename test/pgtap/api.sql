-- pgTAP: the SQL API contract of pg_commitlog (DESIGN 3, 5, 6).
--
-- Schemas, types and their columns in contract order, every function with
-- its exact signature (argument names, types, defaults, return type),
-- volatility, the views and their columns, the columns of a topic table,
-- default privileges, and the SQLSTATE of each class of user error.
--
-- Run by test/run.sh in a fresh database where pgtap and pg_commitlog are
-- created:  pg_prove -d <db> test/pgtap/api.sql
-- Everything happens in one transaction that is rolled back.

\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;

BEGIN;
SELECT plan(266);

------------------------------------------------------------------------------
-- Schemas
------------------------------------------------------------------------------
SELECT has_schema('commitlog', 'schema commitlog exists');
SELECT has_schema('commitlog_topics', 'schema commitlog_topics exists');
SELECT has_extension('pg_commitlog', 'extension pg_commitlog is installed');

------------------------------------------------------------------------------
-- Types: columns in contract order, with their types
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.type_columns(t regtype) RETURNS TABLE (name text, type text)
LANGUAGE sql AS $$
	SELECT a.attname::text COLLATE "default" COLLATE "default", format_type(a.atttypid, a.atttypmod)
	  FROM pg_attribute a JOIN pg_type ty ON ty.typrelid = a.attrelid
	 WHERE ty.oid = t AND a.attnum > 0 AND NOT a.attisdropped
	 ORDER BY a.attnum
$$;

SELECT has_composite('commitlog', 'header', 'type commitlog.header exists');
SELECT has_composite('commitlog', 'record', 'type commitlog.record exists');
SELECT has_composite('commitlog', 'position', 'type commitlog.position exists');
SELECT has_composite('commitlog', 'message', 'type commitlog.message exists');

SELECT results_eq(
	$$SELECT name, type FROM pg_temp.type_columns('commitlog.header')$$,
	$$VALUES ('key', 'text'), ('value', 'bytea')$$,
	'commitlog.header is (key text, value bytea)');
SELECT results_eq(
	$$SELECT name, type FROM pg_temp.type_columns('commitlog.record')$$,
	$$VALUES ('topic', 'text'), ('partition', 'integer'), ('log_offset', 'bigint'),
	         ('timestamp', 'timestamp with time zone'), ('key', 'bytea'), ('value', 'bytea'),
	         ('headers', 'commitlog.header[]')$$,
	'commitlog.record is (topic, partition, log_offset, timestamp, key, value, headers)');
SELECT results_eq(
	$$SELECT name, type FROM pg_temp.type_columns('commitlog."position"')$$,
	$$VALUES ('partition', 'integer'), ('log_offset', 'bigint')$$,
	'commitlog.position is (partition int, log_offset bigint)');
SELECT results_eq(
	$$SELECT name, type FROM pg_temp.type_columns('commitlog.message')$$,
	$$VALUES ('key', 'bytea'), ('value', 'bytea'), ('headers', 'commitlog.header[]'),
	         ('partition', 'integer'), ('ts', 'timestamp with time zone')$$,
	'commitlog.message is (key, value, headers, partition, ts)');

------------------------------------------------------------------------------
-- Functions: existence with argument types, return type, and the full
-- argument list (names and defaults) as PostgreSQL prints it
------------------------------------------------------------------------------
CREATE TEMP TABLE api (fn name, args name[], returns text, arglist text, volatility text);
INSERT INTO api VALUES
  -- topics
  ('create_topic', '{text,integer,integer,jsonb}', 'void',
   $$topic text, partitions integer DEFAULT 1, replication_factor integer DEFAULT 1, config jsonb DEFAULT '{}'::jsonb$$, 'volatile'),
  ('drop_topic', '{text}', 'void', 'topic text', 'volatile'),
  ('add_partitions', '{text,integer}', 'void', 'topic text, partitions integer', 'volatile'),
  ('alter_topic', '{text,jsonb}', 'void', 'topic text, config jsonb', 'volatile'),
  ('partition_for_key', '{text,bytea}', 'integer', 'topic text, key bytea', NULL),
  ('murmur2', '{bytea}', 'integer', 'key bytea', 'immutable'),
  -- produce
  ('produce', '{text,bytea,bytea,integer,commitlog.header[],"timestamp with time zone"}', 'commitlog."position"',
   'topic text, value bytea, key bytea DEFAULT NULL::bytea, partition integer DEFAULT NULL::integer, '
   'headers commitlog.header[] DEFAULT NULL::commitlog.header[], ts timestamp with time zone DEFAULT NULL::timestamp with time zone', 'volatile'),
  ('produce', '{text,text,bytea,integer,commitlog.header[],"timestamp with time zone"}', 'commitlog."position"',
   'topic text, value text, key bytea DEFAULT NULL::bytea, partition integer DEFAULT NULL::integer, '
   'headers commitlog.header[] DEFAULT NULL::commitlog.header[], ts timestamp with time zone DEFAULT NULL::timestamp with time zone', 'volatile'),
  ('produce', '{text,jsonb,bytea,integer,commitlog.header[],"timestamp with time zone"}', 'commitlog."position"',
   'topic text, value jsonb, key bytea DEFAULT NULL::bytea, partition integer DEFAULT NULL::integer, '
   'headers commitlog.header[] DEFAULT NULL::commitlog.header[], ts timestamp with time zone DEFAULT NULL::timestamp with time zone', 'volatile'),
  ('produce_batch', '{text,bytea[],bytea[],integer}', 'setof commitlog."position"',
   'topic text, payloads bytea[], keys bytea[] DEFAULT NULL::bytea[], partition integer DEFAULT NULL::integer', 'volatile'),
  ('produce_messages', '{text,commitlog.message[]}', 'setof commitlog."position"',
   'topic text, messages commitlog.message[]', 'volatile'),
  -- fetch and offsets
  ('fetch', '{text,integer,bigint,integer,integer,integer}', 'setof commitlog.record',
   'topic text, partition integer, from_offset bigint, max_records integer DEFAULT 1000, max_bytes integer DEFAULT 1048576, wait_ms integer DEFAULT 0', 'volatile'),
  ('earliest_offset', '{text,integer}', 'bigint', 'topic text, partition integer', NULL),
  ('latest_offset', '{text,integer}', 'bigint', 'topic text, partition integer', 'volatile'),
  ('offset_for_time', '{text,integer,"timestamp with time zone"}', 'bigint',
   'topic text, partition integer, ts timestamp with time zone', NULL),
  -- consumer groups
  ('commit_offset', '{text,text,integer,bigint,text}', 'void',
   'group_id text, topic text, partition integer, log_offset bigint, metadata text DEFAULT NULL::text', 'volatile'),
  ('committed_offset', '{text,text,integer}', 'bigint', 'group_id text, topic text, partition integer', NULL),
  ('consume', '{text,text,integer,integer,text}', 'setof commitlog.record',
   $$group_id text, topic text, max_records integer DEFAULT 1000, wait_ms integer DEFAULT 0, auto_offset_reset text DEFAULT 'earliest'::text$$, 'volatile'),
  ('reset_offsets', '{text,text,text}', 'void',
   $$group_id text, topic text, target text DEFAULT 'earliest'::text$$, 'volatile'),
  ('delete_group', '{text}', 'void', 'group_id text', 'volatile'),
  -- stream processing (DESIGN 13)
  ('create_processor', '{text,text,regprocedure,integer,integer,text,text}', 'void',
   $$name text, topic text, handler regprocedure, batch_size integer DEFAULT 1000, max_retries integer DEFAULT 3, dead_letter_topic text DEFAULT NULL::text, start_from text DEFAULT 'earliest'::text$$, 'volatile'),
  ('pause_processor', '{text}', 'void', 'name text', 'volatile'),
  ('resume_processor', '{text}', 'void', 'name text', 'volatile'),
  ('drop_processor', '{text}', 'void', 'name text', 'volatile'),
  ('create_table', '{text,text}', 'void', 'topic text, table_name text', 'volatile'),
  ('drop_table', '{text}', 'void', 'table_name text', 'volatile');

SELECT has_function('commitlog', fn, args, format('function commitlog.%s(%s) exists', fn, array_to_string(args, ', ')))
  FROM api ORDER BY fn, args;
SELECT function_returns('commitlog', fn, args, returns,
                        format('commitlog.%s(%s) returns %s', fn, array_to_string(args, ', '), returns))
  FROM api ORDER BY fn, args;
SELECT is(pg_get_function_arguments(format('commitlog.%s(%s)', fn, array_to_string(args, ','))::regprocedure),
          arglist, format('commitlog.%s(%s): argument names and defaults', fn, array_to_string(args, ', ')))
  FROM api ORDER BY fn, args;
SELECT volatility_is('commitlog', fn, args, volatility,
                     format('commitlog.%s(%s) is %s', fn, array_to_string(args, ', '), volatility))
  FROM api WHERE volatility IS NOT NULL ORDER BY fn, args;
-- fetch and latest_offset compute the stable offset and take a snapshot
-- at every call: never run in a parallel worker
SELECT is(proparallel, 'u', format('commitlog.%s is PARALLEL UNSAFE', proname))
  FROM pg_proc
 WHERE pronamespace = 'commitlog'::regnamespace
   AND proname IN ('fetch', 'latest_offset', 'earliest_offset', 'offset_for_time',
                   'produce', 'produce_batch', 'produce_messages', 'consume')
 ORDER BY proname, oid;
SELECT is_strict('commitlog', 'murmur2', '{bytea}', 'murmur2 is STRICT');
SELECT is_strict('commitlog', 'partition_for_key', '{text,bytea}', 'partition_for_key is STRICT');
-- no overload besides the three produce forms
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'commitlog'::regnamespace AND proname = 'produce'),
          3, 'produce has exactly three forms (bytea, text, jsonb)');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'commitlog'::regnamespace AND proname = 'fetch'),
          1, 'fetch has one form');
-- named notation works without quoting (DESIGN 5)
SELECT lives_ok($$SELECT commitlog.create_topic(topic => 'api_named', partitions => 2,
                                                replication_factor => 1, config => '{}')$$,
                'create_topic in named notation');
SELECT lives_ok($$SELECT commitlog.produce(topic => 'api_named', value => 'v'::bytea, key => 'k',
                                           partition => 1, headers => NULL, ts => now())$$,
                'produce in named notation, ts included');
SELECT lives_ok($$SELECT commitlog.produce_batch(topic => 'api_named', payloads => ARRAY['a']::bytea[],
                                                 keys => NULL, partition => 0)$$,
                'produce_batch in named notation, payloads included');
SELECT lives_ok($$SELECT * FROM commitlog.fetch(topic => 'api_named', partition => 0, from_offset => 0,
                                                max_records => 1, max_bytes => 1, wait_ms => 0)$$,
                'fetch in named notation');
SELECT lives_ok($$SELECT commitlog.produce('api_named', 'hello')$$, 'produce(topic, ''hello'') resolves without a cast (the text form)');
SELECT lives_ok($$SELECT commitlog.produce('api_named', '{"a":1}'::jsonb, key => 'k')$$, 'produce with jsonb and a key');

-- Retention (DESIGN 5)
SELECT has_function('commitlog', 'enforce_retention', '{text}', 'function commitlog.enforce_retention(text) exists');
SELECT function_returns('commitlog', 'enforce_retention', '{text}', 'bigint', 'enforce_retention returns bigint');
SELECT has_function('commitlog', 'delete_records', '{text,integer,bigint}',
                    'function commitlog.delete_records(text, integer, bigint) exists');
SELECT function_returns('commitlog', 'delete_records', '{text,integer,bigint}', 'bigint', 'delete_records returns bigint');

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------
SELECT has_view('commitlog', 'topic_list', 'view commitlog.topic_list exists');
SELECT columns_are('commitlog', 'topic_list', ARRAY['topic', 'partitions', 'replication_factor', 'config'],
                   'topic_list has the contract columns');
SELECT results_eq(
	$$SELECT attname::text COLLATE "default" FROM pg_attribute WHERE attrelid = 'commitlog.topic_list'::regclass AND attnum > 0 ORDER BY attnum$$,
	ARRAY['topic', 'partitions', 'replication_factor', 'config'],
	'topic_list columns are in contract order');
SELECT col_type_is('commitlog', 'topic_list', 'topic', 'text', 'topic_list.topic is text');
SELECT col_type_is('commitlog', 'topic_list', 'partitions', 'integer', 'topic_list.partitions is integer');
SELECT col_type_is('commitlog', 'topic_list', 'replication_factor', 'integer', 'topic_list.replication_factor is integer');
SELECT col_type_is('commitlog', 'topic_list', 'config', 'jsonb', 'topic_list.config is jsonb');

SELECT has_view('commitlog', 'partition_list', 'view commitlog.partition_list exists');
SELECT results_eq(
	$$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod) FROM pg_attribute
	   WHERE attrelid = 'commitlog.partition_list'::regclass AND attnum > 0 ORDER BY attnum$$,
	$$VALUES ('topic', 'text'), ('partition', 'integer'), ('earliest_offset', 'bigint'),
	         ('latest_offset', 'bigint'), ('size_bytes', 'bigint'), ('segments', 'integer'),
	         ('leader', 'integer'), ('replicas', 'integer[]'), ('isr', 'integer[]')$$,
	'partition_list columns, in contract order, with their types');

SELECT has_view('commitlog', 'group_offsets', 'view commitlog.group_offsets exists');
SELECT results_eq(
	$$SELECT attname::text COLLATE "default" FROM pg_attribute WHERE attrelid = 'commitlog.group_offsets'::regclass AND attnum > 0 ORDER BY attnum$$,
	ARRAY['group_id', 'topic', 'partition', 'committed_offset', 'latest_offset', 'lag', 'metadata', 'committed_at'],
	'group_offsets columns are in contract order');

-- Controller and brokers (DESIGN 5)
SELECT has_view('commitlog', 'controller', 'view commitlog.controller exists');
SELECT columns_are('commitlog', 'controller', ARRAY['broker_id', 'epoch', 'elected_at', 'pid'],
                   'controller has the contract columns');
SELECT has_view('commitlog', 'brokers', 'view commitlog.brokers exists');

-- Stream processing (DESIGN 13)
SELECT has_view('commitlog', 'processors', 'view commitlog.processors exists');
SELECT results_eq(
	$$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod) FROM pg_attribute
	   WHERE attrelid = 'commitlog.processors'::regclass AND attnum > 0 ORDER BY attnum$$,
	$$VALUES ('name', 'text'), ('topic', 'text'), ('status', 'text'), ('lag', 'bigint'),
	         ('processed', 'bigint'), ('last_error', 'text')$$,
	'processors columns (name, topic, status, lag, processed, last_error), in contract order');
SELECT has_view('commitlog', 'derived_tables', 'view commitlog.derived_tables exists');
SELECT columns_are('commitlog', 'derived_tables', ARRAY['table_name', 'topic', 'status', 'lag', 'processed', 'last_error'],
                   'derived_tables has (table_name, topic, status, lag, processed, last_error)');

-- the metadata table of DESIGN 3
SELECT has_table('commitlog', 'topics', 'table commitlog.topics exists');
SELECT columns_are('commitlog', 'topics', ARRAY['id', 'name', 'partitions', 'replication_factor', 'config', 'created_at'],
                   'commitlog.topics has (id, name, partitions, replication_factor, config, created_at)');

------------------------------------------------------------------------------
-- A topic's table
------------------------------------------------------------------------------
SELECT lives_ok($$SELECT commitlog.create_topic('api_t', 3)$$, 'create_topic(''api_t'', 3)');
SELECT has_table('commitlog_topics', 'api_t', 'the topic has a table commitlog_topics.api_t');
SELECT is((SELECT relkind::text FROM pg_class WHERE oid = 'commitlog_topics.api_t'::regclass), 'p',
          'the topic table is partitioned');
SELECT is(pg_get_partkeydef('commitlog_topics.api_t'::regclass), 'LIST (partition)',
          'partitioned by LIST (partition)');
SELECT is((SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'commitlog_topics.api_t'::regclass), 3,
          'one partition table per partition');
SELECT columns_are('commitlog_topics', 'api_t',
                   ARRAY['partition', 'log_offset', 'timestamp', 'key', 'value', 'headers'],
                   'the topic table has the contract columns');
SELECT results_eq(
	$$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod) FROM pg_attribute
	   WHERE attrelid = 'commitlog_topics.api_t'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum$$,
	$$VALUES ('partition', 'integer'), ('log_offset', 'bigint'), ('timestamp', 'timestamp with time zone'),
	         ('key', 'bytea'), ('value', 'bytea'), ('headers', 'commitlog.header[]')$$,
	'topic table columns: partition int, log_offset bigint, timestamp timestamptz, key bytea, value bytea, headers commitlog.header[]');
SELECT col_type_is('commitlog_topics', 'api_t', 'partition', 'integer', 'partition is integer');
SELECT col_type_is('commitlog_topics', 'api_t', 'log_offset', 'bigint', 'log_offset is bigint');
SELECT col_type_is('commitlog_topics', 'api_t', 'timestamp', 'timestamp with time zone', 'timestamp is timestamptz');
SELECT col_type_is('commitlog_topics', 'api_t', 'key', 'bytea', 'key is bytea');
SELECT col_type_is('commitlog_topics', 'api_t', 'value', 'bytea', 'value is bytea');
SELECT col_type_is('commitlog_topics', 'api_t', 'headers', 'commitlog', 'header[]', 'headers is commitlog.header[]');
SELECT has_pk('commitlog_topics', 'api_t', 'the topic table has a primary key');
SELECT col_is_pk('commitlog_topics', 'api_t', ARRAY['partition', 'log_offset'],
                 'its primary key is (partition, log_offset)');
SELECT col_not_null('commitlog_topics', 'api_t', 'partition', 'partition is NOT NULL');
SELECT col_not_null('commitlog_topics', 'api_t', 'log_offset', 'log_offset is NOT NULL');
SELECT col_is_null('commitlog_topics', 'api_t', 'key', 'key may be NULL');
SELECT col_is_null('commitlog_topics', 'api_t', 'value', 'value may be NULL (tombstones)');
SELECT is(ARRAY(SELECT topic FROM commitlog.topic_list WHERE topic LIKE 'api\_%' ORDER BY topic),
          ARRAY['api_named', 'api_t'], 'topic_list lists the topics');
SELECT is((SELECT count(*)::int FROM commitlog.partition_list WHERE topic = 'api_t'), 3,
          'partition_list has a row per partition');
SELECT is((SELECT config ?& ARRAY['retention.ms', 'retention.bytes', 'segment.bytes', 'segment.ms',
                                 'cleanup.policy', 'max.message.bytes', 'message.timestamp.type',
                                 'min.insync.replicas', 'delete.retention.ms',
                                 'unclean.leader.election.enable']
             FROM commitlog.topic_list WHERE topic = 'api_t'), true,
          'topic_list.config holds every config key');

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------
CREATE ROLE regress_cl_tap;
SELECT table_privs_are('commitlog_topics', 'api_t', 'regress_cl_tap', ARRAY[]::name[],
                       'a new role has no privileges on a topic table');
SELECT schema_privs_are('commitlog', 'regress_cl_tap', ARRAY['USAGE'], 'everyone may use schema commitlog');
SELECT schema_privs_are('commitlog_topics', 'regress_cl_tap', ARRAY['USAGE'],
                        'everyone may use schema commitlog_topics, but not create in it');
SELECT table_privs_are('commitlog', 'topic_list', 'regress_cl_tap', ARRAY['SELECT'], 'everyone reads topic_list');
SELECT table_privs_are('commitlog', 'partition_list', 'regress_cl_tap', ARRAY['SELECT'], 'everyone reads partition_list');
SELECT table_privs_are('commitlog', 'topics', 'regress_cl_tap', ARRAY['SELECT'], 'everyone reads, nobody writes, commitlog.topics');
SELECT function_privs_are('commitlog', 'produce', ARRAY['text', 'bytea', 'bytea', 'integer', 'commitlog.header[]', 'timestamp with time zone'],
                          'regress_cl_tap', ARRAY['EXECUTE'], 'everyone may call produce (the table privilege decides)');
SELECT function_privs_are('commitlog', 'fetch', ARRAY['text', 'integer', 'bigint', 'integer', 'integer', 'integer'],
                          'regress_cl_tap', ARRAY['EXECUTE'], 'everyone may call fetch (the table privilege decides)');

SET LOCAL ROLE regress_cl_tap;
SELECT throws_ok($$SELECT commitlog.produce('api_t', 'x'::bytea, partition => 0)$$, '42501', NULL,
                 'produce without INSERT: 42501');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_t', 0, 0)$$, '42501', NULL,
                 'fetch without SELECT: 42501');
SELECT throws_ok($$SELECT commitlog.create_topic('api_denied')$$, '42501', NULL,
                 'create_topic without CREATE on commitlog_topics: 42501');
SELECT throws_ok($$SELECT commitlog.drop_topic('api_t')$$, '42501', NULL, 'drop_topic by a non-owner: 42501');
SELECT throws_ok($$SELECT commitlog.alter_topic('api_t', '{}')$$, '42501', NULL, 'alter_topic by a non-owner: 42501');
SELECT throws_ok($$SET commitlog.restore_mode = on$$, '42501', NULL, 'restore_mode is for superusers: 42501');
RESET ROLE;

GRANT INSERT ON commitlog_topics.api_t TO regress_cl_tap;
SELECT table_privs_are('commitlog_topics', 'api_t', 'regress_cl_tap', ARRAY['INSERT'],
                       'after GRANT INSERT the role has exactly INSERT');
SET LOCAL ROLE regress_cl_tap;
SELECT lives_ok($$SELECT commitlog.produce('api_t', 'x'::bytea, partition => 0)$$, 'with INSERT the role produces');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_t', 0, 0)$$, '42501', NULL, 'INSERT does not give fetch');
RESET ROLE;
GRANT SELECT ON commitlog_topics.api_t TO regress_cl_tap;
SELECT table_privs_are('commitlog_topics', 'api_t', 'regress_cl_tap', ARRAY['INSERT', 'SELECT'],
                       'after GRANT SELECT the role has INSERT and SELECT');
SET LOCAL ROLE regress_cl_tap;
SELECT lives_ok($$SELECT * FROM commitlog.fetch('api_t', 0, 0)$$, 'with SELECT the role fetches');
RESET ROLE;

------------------------------------------------------------------------------
-- Immutability (42501 for everyone, superusers included)
------------------------------------------------------------------------------
SELECT throws_ok($$INSERT INTO commitlog_topics.api_t VALUES (0, 100, now(), NULL, 'x', NULL)$$, '42501', NULL,
                 'direct INSERT: 42501');
SELECT throws_ok($$UPDATE commitlog_topics.api_t SET value = 'y'$$, '42501', NULL, 'UPDATE: 42501');
SELECT throws_ok($$DELETE FROM commitlog_topics.api_t$$, '42501', NULL, 'DELETE: 42501');
SELECT throws_ok($$TRUNCATE commitlog_topics.api_t$$, '42501', NULL, 'TRUNCATE: 42501');
SELECT throws_ok($$DROP TABLE commitlog_topics.api_t$$, '42501', NULL, 'DROP TABLE: 42501');
SELECT throws_ok($$ALTER TABLE commitlog_topics.api_t ADD COLUMN c int$$, '42501', NULL, 'ALTER TABLE: 42501');
SELECT lives_ok($$SELECT count(*) FROM commitlog_topics.api_t$$, 'SELECT on a topic table works');

------------------------------------------------------------------------------
-- Error classes (DESIGN 6)
------------------------------------------------------------------------------
SELECT throws_ok($$SELECT commitlog.produce('api_nope', 'x'::bytea)$$, '42704', NULL, 'unknown topic: 42704');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_nope', 0, 0)$$, '42704', NULL, 'fetch, unknown topic: 42704');
SELECT throws_ok($$SELECT commitlog.drop_topic('api_nope')$$, '42704', NULL, 'drop_topic, unknown topic: 42704');
SELECT throws_ok($$SELECT commitlog.create_topic('api_t')$$, '42710', NULL, 'topic already exists: 42710');
SELECT throws_ok($$SELECT commitlog.create_topic('bad name!')$$, '22023', NULL, 'invalid topic name: 22023');
SELECT throws_ok($$SELECT commitlog.create_topic('..')$$, '22023', NULL, 'topic name "..": 22023');
SELECT throws_ok($$SELECT commitlog.create_topic(repeat('x', 64))$$, '22023', NULL, '64-character topic name: 22023');
SELECT lives_ok($$SELECT commitlog.create_topic(repeat('x', 63))$$, '63-character topic name is fine');
SELECT throws_ok($$SELECT commitlog.create_topic('api_z', 0)$$, '22023', NULL, 'zero partitions: 22023');
SELECT throws_ok($$SELECT commitlog.create_topic('api_z', 1, 2)$$, '22023', NULL, 'replication factor above brokers: 22023');
SELECT throws_ok($$SELECT commitlog.create_topic('api_z', config => '{"nope": 1}')$$, '22023', NULL, 'unknown config key: 22023');
SELECT throws_ok($$SELECT commitlog.create_topic('api_z', config => '{"retention.ms": "abc"}')$$, '22023', NULL, 'bad config value: 22023');
SELECT throws_ok($$SELECT commitlog.add_partitions('api_t', 2)$$, '22023', NULL, 'fewer partitions: 22023');
SELECT throws_ok($$SELECT commitlog.produce('api_t', 'x'::bytea, partition => 3)$$, '22023', NULL, 'partition out of range: 22023');
SELECT throws_ok($$SELECT commitlog.produce('api_t', 'x'::bytea, partition => -1)$$, '22023', NULL, 'negative partition: 22023');
SELECT throws_ok($$SELECT commitlog.produce(NULL, 'x'::bytea)$$, '22023', NULL, 'NULL topic: 22023');
SELECT throws_ok($$SELECT commitlog.produce_batch('api_t', ARRAY['a', 'b']::bytea[], ARRAY['k']::bytea[])$$, '22023', NULL,
                 'keys and payloads of different lengths: 22023');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_t', 0, 0, 0)$$, '22023', NULL, 'max_records 0: 22023');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_t', 0, NULL)$$, '22023', NULL, 'NULL from_offset: 22023');
SELECT lives_ok($$SELECT commitlog.alter_topic('api_t', '{"max.message.bytes": 4}')$$, 'alter_topic sets max.message.bytes');
SELECT throws_ok($$SELECT commitlog.produce('api_t', '12345'::bytea, partition => 1)$$, '54000', NULL,
                 'record over max.message.bytes: 54000');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_t', 2, 1)$$, 'CL001', NULL, 'fetch above latest: CL001');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_t', 2, -1)$$, 'CL001', NULL, 'fetch below earliest: CL001');
SELECT throws_ok($$SELECT * FROM commitlog.fetch('api_t', 2, 1)$$, 'CL001',
                 'offset 1 is out of range for partition 2 of topic "api_t"', 'the CL001 message names offset, partition and topic');

------------------------------------------------------------------------------
-- Schema registry (DESIGN 12)
------------------------------------------------------------------------------
SELECT has_function('commitlog', 'register_schema', '{text,text,text}', 'function commitlog.register_schema(text, text, text) exists');
SELECT function_returns('commitlog', 'register_schema', '{text,text,text}', 'integer', 'register_schema returns int');
SELECT is(pg_get_function_arguments('commitlog.register_schema(text,text,text)'::regprocedure),
          $$subject text, schema text, schema_type text DEFAULT 'AVRO'::text$$, 'register_schema: argument names and defaults');
SELECT has_function('commitlog', 'set_compatibility', '{text,text}', 'function commitlog.set_compatibility(text, text) exists');
SELECT function_returns('commitlog', 'set_compatibility', '{text,text}', 'void', 'set_compatibility returns void');
SELECT is(pg_get_function_arguments('commitlog.set_compatibility(text,text)'::regprocedure),
          'subject text, mode text', 'set_compatibility: argument names');
SELECT function_returns('commitlog', 'decode_value', '{text,bytea}', 'jsonb', 'decode_value(text, bytea) returns jsonb');
SELECT function_returns('commitlog', 'decode_key', '{text,bytea}', 'jsonb', 'decode_key(text, bytea) returns jsonb');
SELECT function_returns('commitlog', 'encode_value', '{text,jsonb}', 'bytea', 'encode_value(text, jsonb) returns bytea');
SELECT function_returns('commitlog', 'encode_key', '{text,jsonb}', 'bytea', 'encode_key(text, jsonb) returns bytea');
SELECT is(pg_get_function_arguments('commitlog.decode_value(text,bytea)'::regprocedure), 'topic text, value bytea',
          'decode_value: argument names');
SELECT is(pg_get_function_arguments('commitlog.decode_key(text,bytea)'::regprocedure), 'topic text, key bytea',
          'decode_key: argument names');
SELECT has_view('commitlog', 'schema_list', 'view commitlog.schema_list exists');
SELECT columns_are('commitlog', 'schema_list', ARRAY['subject', 'version', 'id', 'schema_type', 'schema'],
                   'commitlog.schema_list has (subject, version, id, schema_type, schema)');
SELECT table_privs_are('commitlog', 'schema_list', 'regress_cl_tap', ARRAY['SELECT'], 'everyone reads schema_list');
SELECT set_eq($$SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'pg_commitlog'$$,
              $$VALUES ('commitlog.topics'), ('commitlog.topics_id_seq'), ('commitlog.partitions'),
                       ('commitlog.segments'), ('commitlog.consumer_offsets'), ('commitlog.schemas'),
                       ('commitlog.schemas_id_seq'), ('commitlog.schema_subjects'), ('commitlog.schema_versions'),
                       ('commitlog.stream_jobs'), ('commitlog.stream_jobs_id_seq'), ('commitlog.stream_partitions')$$,
              'pg_dump keeps the metadata, the schema registry (ids included) and the stream jobs');
SELECT lives_ok($$SELECT commitlog.register_schema('api_named-value', '{"type": "record", "name": "V", "fields": [{"name": "a", "type": "int"}]}')$$,
                'register_schema for a topic''s value subject');
SELECT throws_ok($$SELECT commitlog.register_schema('api_named-value', '{"type": "record", "name": "V", "fields": [{"name": "a", "type": "string"}]}')$$,
                 'CLS01', NULL, 'an incompatible version: CLS01');
SELECT throws_ok($$SELECT commitlog.register_schema('api_s', '{"type": "nope"}')$$, '22023', NULL, 'a bad schema: 22023');
SELECT throws_ok($$SELECT commitlog.register_schema('api_s', '"int"', 'PROTOBUF')$$, '0A000', NULL, 'an unsupported schema type: 0A000');
SELECT throws_ok($$SELECT commitlog.set_compatibility('api_s', 'SOMETIMES')$$, '22023', NULL, 'an unknown mode: 22023');
SELECT throws_ok($$SELECT commitlog.produce('api_named', 'not avro'::bytea, partition => 0)$$, '22023', NULL,
                 'bytes not in the wire format on a topic with a schema: 22023');
SELECT throws_ok($$SELECT commitlog.produce('api_named', '{"a": "x"}'::jsonb, partition => 0)$$, '22023', NULL,
                 'jsonb that does not match the schema: 22023');
SELECT lives_ok($$SELECT commitlog.produce('api_named', '{"a": 1}'::jsonb, partition => 0)$$, 'jsonb that matches is encoded');
SELECT is(commitlog.decode_value('api_named', commitlog.encode_value('api_named', '{"a": 7}')), '{"a": 7}'::jsonb,
          'decode_value reads what encode_value wrote');
SELECT throws_ok($$SELECT commitlog.decode_value('api_named', '\x00000f4240'::bytea)$$, '42704', NULL, 'an unregistered schema id: 42704');
-- stream processing (DESIGN 13)
CREATE FUNCTION pg_temp.api_handler(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pg_temp.api_not_handler(records text[]) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT throws_ok($$SELECT commitlog.create_processor('api_p', 'api_nope', 'pg_temp.api_handler(commitlog.record[])')$$,
                 '42704', NULL, 'create_processor, unknown topic: 42704');
SELECT throws_ok($$SELECT commitlog.create_processor('api_p', 'api_t', 'pg_temp.api_not_handler(text[])')$$,
                 '22023', NULL, 'create_processor, handler of the wrong signature: 22023');
SELECT throws_ok($$SELECT commitlog.create_processor('api_p', 'api_t', 'pg_temp.api_handler(commitlog.record[])', batch_size => 0)$$,
                 '22023', NULL, 'create_processor, batch_size 0: 22023');
SELECT lives_ok($$SELECT commitlog.create_processor('api_p', 'api_t', 'pg_temp.api_handler(commitlog.record[])')$$,
                'create_processor');
SELECT throws_ok($$SELECT commitlog.create_processor('api_p', 'api_t', 'pg_temp.api_handler(commitlog.record[])')$$,
                 '42710', NULL, 'create_processor, name taken: 42710');
SELECT throws_ok($$SELECT commitlog.create_processor('api_q', repeat('x', 63), 'pg_temp.api_handler(commitlog.record[])')$$,
                 '22023', NULL, 'create_processor, <topic>.dlq longer than 63 characters: 22023');
SELECT throws_ok($$SELECT commitlog.pause_processor('api_nope')$$, '42704', NULL, 'pause_processor, unknown processor: 42704');
SELECT throws_ok($$SELECT commitlog.drop_processor('api_nope')$$, '42704', NULL, 'drop_processor, unknown processor: 42704');
SELECT is((SELECT status FROM commitlog.processors WHERE name = 'api_p'), 'active', 'a new processor is active');
SELECT lives_ok($$SELECT commitlog.create_table('api_t', 'api_table')$$, 'create_table');
SELECT col_is_pk('api_table', 'key', 'a derived table''s primary key is its key');
SELECT throws_ok($$SELECT commitlog.create_table('api_t', 'api_table')$$, '42P07', NULL, 'create_table, table exists: 42P07');
SELECT throws_ok($$SELECT commitlog.drop_table('api_named_not_a_table')$$, '42P01', NULL, 'drop_table, no such table: 42P01');

SELECT * FROM finish();
ROLLBACK;
