-- pg_commitlog: a Kafka-style commit log inside PostgreSQL.
-- Installed as pg_commitlog--<version>.sql; everything is schema-qualified
-- so the script does not depend on search_path.

\echo Use "CREATE EXTENSION pg_commitlog" to load this file. \quit

-- Topic tables live in their own schema so that the immutability guard can
-- recognise them by namespace, and so that GRANTs on them read naturally.
CREATE SCHEMA commitlog_topics;
GRANT USAGE ON SCHEMA commitlog TO PUBLIC;
GRANT USAGE ON SCHEMA commitlog_topics TO PUBLIC;

------------------------------------------------------------------------------
-- Types (contract: DESIGN 5)
------------------------------------------------------------------------------
CREATE TYPE commitlog.header AS (key text, value bytea);
CREATE TYPE commitlog.record AS (
    topic text,
    partition int,
    log_offset bigint,
    "timestamp" timestamptz,
    key bytea,
    value bytea,
    headers commitlog.header[]
);
CREATE TYPE commitlog.position AS (partition int, log_offset bigint);
CREATE TYPE commitlog.message AS (
    key bytea,
    value bytea,
    headers commitlog.header[],
    partition int,
    ts timestamptz
);

------------------------------------------------------------------------------
-- Metadata.  Written only by the extension's functions (as the extension's
-- owner); readable by everyone, as Kafka's metadata is.
------------------------------------------------------------------------------
CREATE TABLE commitlog.topics (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    partitions int NOT NULL CHECK (partitions > 0),
    replication_factor int NOT NULL CHECK (replication_factor > 0),
    config jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- log_start_offset is Kafka's log start offset: retention and
-- delete_records raise it first, readers check it under their snapshot.
CREATE TABLE commitlog.partitions (
    topic_id int NOT NULL,
    partition int NOT NULL,
    log_start_offset bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);

-- One row per segment: the range partition [base_offset, end_offset) of a
-- partition's table.  A segment is sealed once the stable offset has passed
-- its end (no record can still arrive in it); the worker then records its
-- size, record count and newest timestamp, so that retention decides per
-- segment without reading records.
CREATE TABLE commitlog.segments (
    topic_id int NOT NULL,
    partition int NOT NULL,
    base_offset bigint NOT NULL,
    end_offset bigint NOT NULL,
    relname name NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    activated_at timestamptz,           -- first seen with offsets handed out in it
    sealed boolean NOT NULL DEFAULT false,
    record_count bigint,
    size_bytes bigint,
    max_timestamp timestamptz,
    PRIMARY KEY (topic_id, partition, base_offset)
);

-- Consumer groups: the next offset each group reads in each partition, as
-- Kafka's __consumer_offsets.  consume() locks these rows to claim
-- partitions (SKIP LOCKED), so they are also how group members share a topic.
CREATE TABLE commitlog.consumer_offsets (
    group_id text NOT NULL,
    topic_id int NOT NULL,
    partition int NOT NULL,
    committed_offset bigint,
    metadata text,
    committed_at timestamptz,
    PRIMARY KEY (group_id, topic_id, partition)
);

GRANT SELECT ON commitlog.topics, commitlog.partitions, commitlog.segments,
                commitlog.consumer_offsets TO PUBLIC;

-- pg_dump keeps the metadata (the topic tables and offset sequences are
-- ordinary objects in commitlog_topics and are dumped on their own).
SELECT pg_catalog.pg_extension_config_dump('commitlog.topics', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.topics_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.partitions', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.segments', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.consumer_offsets', '');

------------------------------------------------------------------------------
-- Topics
------------------------------------------------------------------------------
CREATE FUNCTION commitlog.create_topic(topic text, partitions int DEFAULT 1,
                                       replication_factor int DEFAULT 1,
                                       config jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'create_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.drop_topic(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'drop_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.add_partitions(topic text, partitions int)
RETURNS void
AS 'MODULE_PATHNAME', 'add_partitions'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.alter_topic(topic text, config jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'alter_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Every config key with its effective value (the topic's, else the broker
-- default from the commitlog.default_* settings).
CREATE FUNCTION commitlog.effective_config(config jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'effective_config'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

------------------------------------------------------------------------------
-- Produce
------------------------------------------------------------------------------
CREATE FUNCTION commitlog.produce(topic text, value bytea, key bytea DEFAULT NULL,
                                  partition int DEFAULT NULL,
                                  headers commitlog.header[] DEFAULT NULL,
                                  ts timestamptz DEFAULT NULL)
RETURNS commitlog.position
AS 'MODULE_PATHNAME', 'produce'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Conveniences: text is stored as UTF-8 bytes, jsonb as its text form.
CREATE FUNCTION commitlog.produce(topic text, value text, key bytea DEFAULT NULL,
                                  partition int DEFAULT NULL,
                                  headers commitlog.header[] DEFAULT NULL,
                                  ts timestamptz DEFAULT NULL)
RETURNS commitlog.position
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT commitlog.produce(topic, pg_catalog.convert_to(value, 'UTF8'), key,
                               partition, headers, ts) $$;

CREATE FUNCTION commitlog.produce(topic text, value jsonb, key bytea DEFAULT NULL,
                                  partition int DEFAULT NULL,
                                  headers commitlog.header[] DEFAULT NULL,
                                  ts timestamptz DEFAULT NULL)
RETURNS commitlog.position
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT commitlog.produce(topic, pg_catalog.convert_to(value::pg_catalog.text, 'UTF8'),
                               key, partition, headers, ts) $$;

CREATE FUNCTION commitlog.produce_batch(topic text, payloads bytea[], keys bytea[] DEFAULT NULL,
                                        partition int DEFAULT NULL)
RETURNS SETOF commitlog.position
AS 'MODULE_PATHNAME', 'produce_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

CREATE FUNCTION commitlog.produce_messages(topic text, messages commitlog.message[])
RETURNS SETOF commitlog.position
AS 'MODULE_PATHNAME', 'produce_messages'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

CREATE FUNCTION commitlog.murmur2(key bytea)
RETURNS int
AS 'MODULE_PATHNAME', 'murmur2'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION commitlog.partition_for_key(topic text, key bytea)
RETURNS int
AS 'MODULE_PATHNAME', 'partition_for_key'
LANGUAGE C STABLE STRICT PARALLEL UNSAFE;

------------------------------------------------------------------------------
-- Fetch and offsets.  VOLATILE: each call must compute the stable offset
-- and take a new snapshot.
------------------------------------------------------------------------------
CREATE FUNCTION commitlog.fetch(topic text, partition int, from_offset bigint,
                                max_records int DEFAULT 1000,
                                max_bytes int DEFAULT 1048576,
                                wait_ms int DEFAULT 0)
RETURNS SETOF commitlog.record
AS 'MODULE_PATHNAME', 'fetch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

CREATE FUNCTION commitlog.earliest_offset(topic text, partition int)
RETURNS bigint
AS 'MODULE_PATHNAME', 'earliest_offset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.latest_offset(topic text, partition int)
RETURNS bigint
AS 'MODULE_PATHNAME', 'latest_offset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.offset_for_time(topic text, partition int, ts timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'offset_for_time'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

------------------------------------------------------------------------------
-- Consumer groups (committed offset = the next offset to read)
------------------------------------------------------------------------------
CREATE FUNCTION commitlog.commit_offset(group_id text, topic text, partition int,
                                        log_offset bigint, metadata text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'commit_offset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.committed_offset(group_id text, topic text, partition int)
RETURNS bigint
AS 'MODULE_PATHNAME', 'committed_offset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.consume(group_id text, topic text, max_records int DEFAULT 1000,
                                  wait_ms int DEFAULT 0,
                                  auto_offset_reset text DEFAULT 'earliest')
RETURNS SETOF commitlog.record
AS 'MODULE_PATHNAME', 'consume'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

CREATE FUNCTION commitlog.reset_offsets(group_id text, topic text, target text DEFAULT 'earliest')
RETURNS void
AS 'MODULE_PATHNAME', 'reset_offsets'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.delete_group(group_id text)
RETURNS void
AS 'MODULE_PATHNAME', 'delete_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

------------------------------------------------------------------------------
-- Retention (the background worker runs it every
-- commitlog.retention_check_interval; these are the by-hand forms)
------------------------------------------------------------------------------
CREATE FUNCTION commitlog.enforce_retention(topic text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'enforce_retention'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.delete_records(topic text, partition int, before_offset bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'delete_records'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------
CREATE VIEW commitlog.topic_list AS
SELECT t.name AS topic,
       t.partitions,
       t.replication_factor,
       commitlog.effective_config(t.config) AS config
  FROM commitlog.topics t;

CREATE VIEW commitlog.partition_list AS
SELECT t.name AS topic,
       p.partition,
       commitlog.earliest_offset(t.name, p.partition) AS earliest_offset,
       commitlog.latest_offset(t.name, p.partition) AS latest_offset,
       (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid))::bigint
          FROM commitlog.segments s
          JOIN pg_catalog.pg_class c
            ON c.relname = s.relname
           AND c.relnamespace = 'commitlog_topics'::pg_catalog.regnamespace
         WHERE s.topic_id = p.topic_id AND s.partition = p.partition) AS size_bytes,
       (SELECT pg_catalog.count(*)::int
          FROM commitlog.segments s
         WHERE s.topic_id = p.topic_id AND s.partition = p.partition) AS segments,
       pg_catalog.current_setting('commitlog.broker_id')::int AS leader,
       ARRAY[pg_catalog.current_setting('commitlog.broker_id')::int] AS replicas,
       ARRAY[pg_catalog.current_setting('commitlog.broker_id')::int] AS isr
  FROM commitlog.topics t
  JOIN commitlog.partitions p ON p.topic_id = t.id;

GRANT SELECT ON commitlog.topic_list, commitlog.partition_list TO PUBLIC;

-- Committed positions with lag = latest_offset - committed_offset (Kafka's
-- consumer lag).  Partitions a group has never committed are not listed.
CREATE VIEW commitlog.group_offsets AS
SELECT g.group_id,
       t.name AS topic,
       g.partition,
       g.committed_offset,
       l.latest_offset,
       GREATEST(l.latest_offset - g.committed_offset, 0) AS lag,
       g.metadata,
       g.committed_at
  FROM commitlog.consumer_offsets g
  JOIN commitlog.topics t ON t.id = g.topic_id
 CROSS JOIN LATERAL (SELECT commitlog.latest_offset(t.name, g.partition) AS latest_offset) l
 WHERE g.committed_offset IS NOT NULL;

GRANT SELECT ON commitlog.group_offsets TO PUBLIC;

------------------------------------------------------------------------------
-- Background worker and controller (src/bgworker).  Runtime state, not
-- configuration: these tables are not dumped (pg_extension_config_dump);
-- a restored database starts with no controller and elects one.
------------------------------------------------------------------------------

-- The controller: one row, written only by the worker that holds the
-- controller advisory lock (1129074503, 1), on the session that holds it.
-- epoch only grows; every election adds one.
CREATE TABLE commitlog.controller_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    broker_id int,
    epoch bigint NOT NULL DEFAULT 0,
    elected_at timestamptz,
    pid int
);
INSERT INTO commitlog.controller_state DEFAULT VALUES;

-- Brokers that have connected to this coordinator.  A broker is alive while
-- its worker's session holds the liveness lock (1129070162, broker_id).
CREATE TABLE commitlog.broker_registry (
    broker_id int PRIMARY KEY CHECK (broker_id >= 0),
    conninfo text,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

GRANT SELECT ON commitlog.controller_state, commitlog.broker_registry TO PUBLIC;

-- Refuses (CL004) an epoch older than the current controller's; share-locks
-- the state row until the caller's transaction ends.  Controller actions
-- run after it, in the same transaction.
CREATE FUNCTION commitlog.controller_fence(epoch bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'controller_fence'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION commitlog.controller_fence(bigint) FROM PUBLIC;

-- The current controller: shown only while its session holds the lock.
CREATE VIEW commitlog.controller AS
SELECT s.broker_id, s.epoch, s.elected_at, s.pid
  FROM commitlog.controller_state s
 WHERE s.epoch > 0
   AND EXISTS (SELECT 1
                 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory'
                  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                     WHERE d.datname = pg_catalog.current_database())
                  AND l.classid = 1129074503::pg_catalog.oid
                  AND l.objid = 1::pg_catalog.oid
                  AND l.objsubid = 2
                  AND l.granted
                  AND l.pid = s.pid);

CREATE VIEW commitlog.brokers AS
SELECT r.broker_id,
       r.conninfo,
       EXISTS (SELECT 1
                 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory'
                  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                     WHERE d.datname = pg_catalog.current_database())
                  AND l.classid = 1129070162::pg_catalog.oid
                  AND l.objid = r.broker_id::pg_catalog.oid
                  AND l.objsubid = 2
                  AND l.granted) AS alive,
       COALESCE(r.broker_id = c.broker_id, false) AS is_controller
  FROM commitlog.broker_registry r
  LEFT JOIN commitlog.controller c ON true;

GRANT SELECT ON commitlog.controller, commitlog.brokers TO PUBLIC;

------------------------------------------------------------------------------
-- Schema registry (src/schemas, docs/schemas.md): Avro schemas per subject
-- with versions and Confluent's compatibility modes; subjects
-- "<topic>-value" and "<topic>-key" bind schemas to a topic's records.
-- Written only by register_schema and set_compatibility (as the extension's
-- owner); dumped by pg_dump with their ids.
------------------------------------------------------------------------------

-- A schema and its id (Confluent's global schema id), shared by every
-- subject that registers the same schema.
CREATE TABLE commitlog.schemas (
    id serial PRIMARY KEY,
    schema_type text NOT NULL DEFAULT 'AVRO' CHECK (schema_type = 'AVRO'),
    schema text NOT NULL
);

-- A subject's compatibility mode (NULL: BACKWARD, the default).
CREATE TABLE commitlog.schema_subjects (
    subject text PRIMARY KEY,
    compatibility text CHECK (compatibility IN ('BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD',
                                                'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE',
                                                'NONE'))
);

-- The versions of each subject, 1, 2, ...
CREATE TABLE commitlog.schema_versions (
    subject text NOT NULL,
    version int NOT NULL CHECK (version > 0),
    schema_id int NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (subject, version)
);

GRANT SELECT ON commitlog.schemas, commitlog.schema_subjects, commitlog.schema_versions TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('commitlog.schemas', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.schemas_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.schema_subjects', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.schema_versions', '');

CREATE FUNCTION commitlog.register_schema(subject text, schema text, schema_type text DEFAULT 'AVRO')
RETURNS int
AS 'MODULE_PATHNAME', 'register_schema'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.set_compatibility(subject text, mode text)
RETURNS void
AS 'MODULE_PATHNAME', 'set_compatibility'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE VIEW commitlog.schema_list AS
SELECT v.subject, v.version, v.schema_id AS id, s.schema_type, s.schema
  FROM commitlog.schema_versions v
  JOIN commitlog.schemas s ON s.id = v.schema_id;

GRANT SELECT ON commitlog.schema_list TO PUBLIC;

-- jsonb to the wire format with the subject's latest schema; on a topic
-- without that subject, the jsonb's text as UTF-8 (what produce stores).
CREATE FUNCTION commitlog.encode_value(topic text, value jsonb)
RETURNS bytea
AS 'MODULE_PATHNAME', 'encode_value'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;

CREATE FUNCTION commitlog.encode_key(topic text, key jsonb)
RETURNS bytea
AS 'MODULE_PATHNAME', 'encode_key'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;

-- A record in the wire format to jsonb, with the schema its id names.
CREATE FUNCTION commitlog.decode_value(topic text, value bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'decode_value'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;

CREATE FUNCTION commitlog.decode_key(topic text, key bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'decode_key'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;

-- produce(topic, jsonb) encodes with the topic's value schema when it has
-- one (DESIGN 12); replaces the definition in the Produce section.
CREATE OR REPLACE FUNCTION commitlog.produce(topic text, value jsonb, key bytea DEFAULT NULL,
                                             partition int DEFAULT NULL,
                                             headers commitlog.header[] DEFAULT NULL,
                                             ts timestamptz DEFAULT NULL)
RETURNS commitlog.position
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT commitlog.produce(topic, commitlog.encode_value(topic, value),
                               key, partition, headers, ts) $$;

------------------------------------------------------------------------------
-- Stream processing (DESIGN 13, src/stream): processors and derived tables.
-- Both are "jobs" the workers run batch by batch; a job's group id in
-- commitlog.consumer_offsets is its name, and its positions commit in the
-- same transaction as the batch's effects.
------------------------------------------------------------------------------

-- One row per processor or derived table.  handler, derived_table and owner
-- are reg* columns so that pg_dump writes them as names and a restore
-- resolves them to the new objects.
CREATE TABLE commitlog.stream_jobs (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,                  -- the group id
    kind text NOT NULL CHECK (kind IN ('processor', 'table')),
    topic text NOT NULL,
    handler pg_catalog.regprocedure,            -- processors
    derived_table pg_catalog.regclass,          -- derived tables
    batch_size int NOT NULL CHECK (batch_size > 0),
    max_retries int NOT NULL CHECK (max_retries >= 0),
    dead_letter_topic text,                     -- processors
    owner pg_catalog.regrole NOT NULL,          -- handlers run as this role
    paused boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((kind = 'processor') = (handler IS NOT NULL AND dead_letter_topic IS NOT NULL)),
    CHECK ((kind = 'table') = (derived_table IS NOT NULL))
);

-- Per job and partition: records processed, dead-lettered, and the state
-- of a failing batch (failures so far, when to retry, the last error).
-- Written in the batch's transaction, so it is exactly as durable as the
-- group's position.
CREATE TABLE commitlog.stream_partitions (
    job_id int NOT NULL,
    partition int NOT NULL,
    processed bigint NOT NULL DEFAULT 0,
    dead_lettered bigint NOT NULL DEFAULT 0,
    failures int NOT NULL DEFAULT 0,
    retry_at timestamptz,
    last_error text,
    last_error_at timestamptz,
    PRIMARY KEY (job_id, partition)
);

GRANT SELECT ON commitlog.stream_jobs, commitlog.stream_partitions TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('commitlog.stream_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.stream_jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('commitlog.stream_partitions', '');

CREATE FUNCTION commitlog.create_processor(name text, topic text, handler regprocedure,
                                           batch_size int DEFAULT 1000,
                                           max_retries int DEFAULT 3,
                                           dead_letter_topic text DEFAULT NULL,
                                           start_from text DEFAULT 'earliest')
RETURNS void
AS 'MODULE_PATHNAME', 'create_processor'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.pause_processor(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'pause_processor'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.resume_processor(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'resume_processor'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.drop_processor(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'drop_processor'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.create_table(topic text, table_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'create_table'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION commitlog.drop_table(table_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'drop_table'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- A job's lag (records behind the latest offset, over its partitions),
-- records processed, and its most recent error.
CREATE VIEW commitlog.stream_job_status AS
SELECT j.id,
       j.name,
       j.kind,
       j.topic,
       CASE WHEN j.paused THEN 'paused'
            WHEN t.id IS NULL THEN 'error'
            WHEN j.kind = 'processor'
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid = j.handler) THEN 'error'
            WHEN j.kind = 'table'
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = j.derived_table) THEN 'error'
            WHEN EXISTS (SELECT 1 FROM commitlog.stream_partitions s
                          WHERE s.job_id = j.id AND s.failures > 0) THEN 'retrying'
            ELSE 'active' END AS status,
       (SELECT pg_catalog.sum(GREATEST(commitlog.latest_offset(t.name, o.partition)
                                       - o.committed_offset, 0))::bigint
          FROM commitlog.consumer_offsets o
         WHERE o.group_id = j.name AND o.topic_id = t.id) AS lag,
       COALESCE((SELECT pg_catalog.sum(s.processed)::bigint FROM commitlog.stream_partitions s
                  WHERE s.job_id = j.id), 0) AS processed,
       CASE WHEN t.id IS NULL THEN pg_catalog.format('topic "%s" does not exist', j.topic)
            WHEN j.kind = 'processor'
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid = j.handler)
                 THEN 'the handler function no longer exists'
            ELSE (SELECT s.last_error FROM commitlog.stream_partitions s
                   WHERE s.job_id = j.id AND s.last_error IS NOT NULL
                   ORDER BY s.last_error_at DESC LIMIT 1) END AS last_error
  FROM commitlog.stream_jobs j
  LEFT JOIN commitlog.topics t ON t.name = j.topic;

CREATE VIEW commitlog.processors AS
SELECT name, topic, status, lag, processed, last_error
  FROM commitlog.stream_job_status
 WHERE kind = 'processor';

CREATE VIEW commitlog.derived_tables AS
SELECT j.derived_table AS table_name, s.topic, s.status, s.lag, s.processed, s.last_error
  FROM commitlog.stream_job_status s
  JOIN commitlog.stream_jobs j ON j.id = s.id
 WHERE s.kind = 'table';

GRANT SELECT ON commitlog.stream_job_status, commitlog.processors, commitlog.derived_tables TO PUBLIC;
