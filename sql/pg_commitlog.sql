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

-- produce(topic, jsonb) is defined in the schema registry's section: it
-- encodes with the topic's value schema when there is one.

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

-- commitlog.partition_list is defined with the cluster tables below (its
-- leader, replicas and isr come from the cluster's assignment).

GRANT SELECT ON commitlog.topic_list TO PUBLIC;

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
-- One row per cluster (commitlog.clusters, cluster 1 is 'default').
CREATE TABLE commitlog.controller_state (
    cluster_id int PRIMARY KEY DEFAULT 1,
    broker_id int,
    epoch bigint NOT NULL DEFAULT 0,
    elected_at timestamptz,
    pid int
);
INSERT INTO commitlog.controller_state DEFAULT VALUES;

-- Brokers that have connected to this coordinator.  A broker is alive while
-- its worker's session holds the liveness lock (1129070162, broker_id).
-- member: the broker runs in cluster mode (commitlog.coordinator set) and
-- so hosts replicas; a broker whose coordinator is its own database only
-- takes part in the election.
CREATE TABLE commitlog.broker_registry (
    cluster_id int NOT NULL DEFAULT 1,
    broker_id int NOT NULL CHECK (broker_id >= 0),
    conninfo text,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    member boolean NOT NULL DEFAULT false,
    PRIMARY KEY (cluster_id, broker_id)
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

-- The views commitlog.controller and commitlog.brokers are defined with
-- the cluster tables below.

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

-- produce(topic, jsonb): encoded with the topic's value schema when it has
-- one (DESIGN 12), else stored as the jsonb's text in UTF-8.
CREATE FUNCTION commitlog.produce(topic text, value jsonb, key bytea DEFAULT NULL,
                                  partition int DEFAULT NULL,
                                  headers commitlog.header[] DEFAULT NULL,
                                  ts timestamptz DEFAULT NULL)
RETURNS commitlog.position
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT commitlog.produce(topic, commitlog.encode_value(topic, value),
                               key, partition, headers, ts) $$;

------------------------------------------------------------------------------
-- Cluster and replication (src/cluster, DESIGN 9, docs/replication.md).
--
-- Two groups of objects.  The coordinator's (clusters, cluster_topics,
-- cluster_partitions, cluster_leader_epochs and the cluster_* functions) are
-- used only in the database that commitlog.coordinator names: the cluster's
-- metadata, written by create_topic/drop_topic of any broker over libpq and
-- by the controller.  Every broker's own (cluster_assignments,
-- cluster_brokers, replica_watermarks) are written by its worker: a copy of
-- the coordinator's assignment for the hot paths, and the watermarks that
-- leaders publish to their followers.  Runtime state: nothing here is dumped.
------------------------------------------------------------------------------

-- commitlog.cluster names a cluster; the first broker that names it creates
-- it.  Cluster 1 is 'default'.  Advisory locks of cluster c: controller
-- (1129074503, c), liveness of broker b (1129070162 + c - 1, b).
CREATE TABLE commitlog.clusters (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (pg_catalog.length(name) BETWEEN 1 AND 63)
);
INSERT INTO commitlog.clusters (name) VALUES ('default');

-- Topic ids are cluster-wide (the internal table names t<id>$p<n> must match
-- on every replica, for the publications); they start high so that they do
-- not meet the ids of topics a broker made before joining a cluster.
CREATE SEQUENCE commitlog.cluster_topic_id_seq AS int START WITH 1048576 MINVALUE 1048576;

-- deleting: drop_topic was called; each broker appends itself to dropped_on
-- once its copy, publication entries and subscriptions are gone, and the
-- controller then removes the row.
CREATE TABLE commitlog.cluster_topics (
    id int PRIMARY KEY DEFAULT pg_catalog.nextval('commitlog.cluster_topic_id_seq'),
    cluster_id int NOT NULL REFERENCES commitlog.clusters,
    name text NOT NULL,
    partitions int NOT NULL CHECK (partitions > 0),
    replication_factor int NOT NULL CHECK (replication_factor > 0),
    config jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    deleting boolean NOT NULL DEFAULT false,
    dropped_on int[] NOT NULL DEFAULT '{}',
    UNIQUE (cluster_id, name)
);

-- replicas: NULL until the controller assigns them; replicas[1] is the
-- preferred leader.  isr: kept by the leader (cluster_alter_isr, issue 7);
-- leader_epoch and high_watermark are for leader failover (KIP-101).
CREATE TABLE commitlog.cluster_partitions (
    topic_id int NOT NULL REFERENCES commitlog.cluster_topics ON DELETE CASCADE,
    partition int NOT NULL,
    replicas int[],
    leader int,
    isr int[],
    leader_epoch int NOT NULL DEFAULT 0,
    high_watermark bigint,
    PRIMARY KEY (topic_id, partition)
);

-- KIP-101's leader epoch cache: (epoch, the first offset the epoch's leader
-- wrote).  A returning leader truncates to the start of the next epoch.
CREATE TABLE commitlog.cluster_leader_epochs (
    topic_id int NOT NULL,
    partition int NOT NULL,
    leader_epoch int NOT NULL,
    start_offset bigint NOT NULL,
    leader int NOT NULL,
    PRIMARY KEY (topic_id, partition, leader_epoch),
    FOREIGN KEY (topic_id, partition) REFERENCES commitlog.cluster_partitions ON DELETE CASCADE
);

GRANT SELECT ON commitlog.clusters, commitlog.cluster_topics, commitlog.cluster_partitions,
                commitlog.cluster_leader_epochs TO PUBLIC;

-- A cluster's id, creating the cluster (and its controller_state row) on
-- first use.  Called by each worker when it connects to the coordinator.
CREATE FUNCTION commitlog.cluster_join(cluster text)
RETURNS int
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cid int;
BEGIN
    INSERT INTO commitlog.clusters (name) VALUES (cluster) ON CONFLICT (name) DO NOTHING;
    SELECT c.id INTO cid FROM commitlog.clusters c WHERE c.name = cluster;
    INSERT INTO commitlog.controller_state (cluster_id) VALUES (cid) ON CONFLICT DO NOTHING;
    RETURN cid;
END
$$;

-- Member brokers whose worker holds the cluster's liveness lock now.
CREATE FUNCTION commitlog.cluster_live_brokers(cluster_id int)
RETURNS int[]
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
SELECT COALESCE(pg_catalog.array_agg(r.broker_id ORDER BY r.broker_id), '{}')
  FROM commitlog.broker_registry r
 WHERE r.cluster_id = $1 AND r.member
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                     WHERE d.datname = pg_catalog.current_database())
                  AND l.classid = (1129070162 + $1 - 1)::pg_catalog.oid
                  AND l.objid = r.broker_id::pg_catalog.oid)
$$;

-- create_topic on a broker in cluster mode runs this on the coordinator.
-- The replicas are assigned by the controller (cluster_assign), at once if
-- enough brokers are alive now; refusing here gives the caller the error.
CREATE FUNCTION commitlog.cluster_create_topic(cluster text, topic text, partitions int,
                                               replication_factor int, config jsonb)
RETURNS int
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cid int := commitlog.cluster_join(cluster);
    live int[];
    tid int;
BEGIN
    -- serializes topic creation in the cluster (and with cluster_assign)
    PERFORM 1 FROM commitlog.clusters c WHERE c.id = cid FOR UPDATE;
    IF EXISTS (SELECT 1 FROM commitlog.cluster_topics t WHERE t.cluster_id = cid AND t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" already exists', topic
            USING ERRCODE = 'duplicate_object',
                  DETAIL = pg_catalog.format('Cluster "%s" has a topic of that name (or one still being dropped).', cluster),
                  HINT = 'Choose another name, or drop the topic first with commitlog.drop_topic().';
    END IF;
    live := commitlog.cluster_live_brokers(cid);
    IF replication_factor > pg_catalog.cardinality(live) THEN
        RAISE EXCEPTION 'replication factor % is larger than the number of available brokers (%)',
                        replication_factor, pg_catalog.cardinality(live)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('The live brokers of cluster "%s" are %s.', cluster, live::text),
                  HINT = 'Start more brokers, or use a smaller replication_factor.';
    END IF;
    INSERT INTO commitlog.cluster_topics (cluster_id, name, partitions, replication_factor, config)
    VALUES (cid, topic, partitions, replication_factor, config)
    RETURNING id INTO tid;
    INSERT INTO commitlog.cluster_partitions (topic_id, partition)
    SELECT tid, p FROM pg_catalog.generate_series(0, partitions - 1) p;
    RETURN tid;
END
$$;

-- drop_topic on a broker in cluster mode: mark the topic; the workers
-- remove it everywhere.
CREATE FUNCTION commitlog.cluster_drop_topic(cluster text, topic text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE commitlog.cluster_topics t SET deleting = true
      FROM commitlog.clusters c
     WHERE c.name = cluster AND t.cluster_id = c.id AND t.name = topic AND NOT t.deleting;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  DETAIL = pg_catalog.format('Cluster "%s" has no such topic, or it is being dropped already.', cluster),
                  HINT = 'Look in commitlog.topic_list for existing topics.';
    END IF;
END
$$;

-- The controller's duty (run fenced, on its coordinator session): assign
-- the replicas of new partitions round-robin over the live member brokers,
-- starting each topic at the broker that leads the fewest partitions, so
-- leaders spread as Kafka spreads them; and forget dropped topics that
-- every live replica has let go of.  Returns the partitions assigned.
CREATE FUNCTION commitlog.cluster_assign(cluster_id int)
RETURNS int
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live int[] := commitlog.cluster_live_brokers(cluster_id);
    n int := pg_catalog.cardinality(live);
    t record;
    start int;
    n_done int;
    assigned int := 0;
BEGIN
    FOR t IN SELECT ct.id, ct.replication_factor
               FROM commitlog.cluster_topics ct
              WHERE ct.cluster_id = cluster_assign.cluster_id AND NOT ct.deleting
                AND EXISTS (SELECT 1 FROM commitlog.cluster_partitions p
                             WHERE p.topic_id = ct.id AND p.replicas IS NULL)
              ORDER BY ct.id
    LOOP
        CONTINUE WHEN t.replication_factor > n;
        SELECT b.i INTO start
          FROM pg_catalog.unnest(live) WITH ORDINALITY AS b(id, i)
         ORDER BY (SELECT pg_catalog.count(*) FROM commitlog.cluster_partitions p
                     JOIN commitlog.cluster_topics ct ON ct.id = p.topic_id
                    WHERE ct.cluster_id = cluster_assign.cluster_id AND p.leader = b.id), b.i
         LIMIT 1;
        UPDATE commitlog.cluster_partitions p
           SET replicas = r.reps, leader = r.reps[1], isr = r.reps
          FROM (SELECT p2.partition,
                       ARRAY(SELECT live[((start - 1 + p2.partition + j) % n) + 1]
                               FROM pg_catalog.generate_series(0, t.replication_factor - 1) j
                              ORDER BY j) AS reps
                  FROM commitlog.cluster_partitions p2
                 WHERE p2.topic_id = t.id AND p2.replicas IS NULL) r
         WHERE p.topic_id = t.id AND p.partition = r.partition;
        GET DIAGNOSTICS n_done = ROW_COUNT;
        assigned := assigned + n_done;
        INSERT INTO commitlog.cluster_leader_epochs (topic_id, partition, leader_epoch, start_offset, leader)
        SELECT p.topic_id, p.partition, 0, 0, p.leader
          FROM commitlog.cluster_partitions p
         WHERE p.topic_id = t.id
        ON CONFLICT DO NOTHING;
    END LOOP;

    DELETE FROM commitlog.cluster_topics ct
     WHERE ct.cluster_id = cluster_assign.cluster_id AND ct.deleting
       AND NOT EXISTS (SELECT 1 FROM commitlog.cluster_partitions p, pg_catalog.unnest(p.replicas) r(b)
                        WHERE p.topic_id = ct.id AND r.b = ANY (live) AND NOT r.b = ANY (ct.dropped_on));
    RETURN assigned;
END
$$;

REVOKE ALL ON FUNCTION commitlog.cluster_join(text), commitlog.cluster_assign(int),
                       commitlog.cluster_create_topic(text, text, int, int, jsonb),
                       commitlog.cluster_drop_topic(text, text) FROM PUBLIC;

-- controller_fence for a named cluster (controller_fence(epoch) is the
-- 'default' cluster's).
CREATE FUNCTION commitlog.cluster_fence(cluster text, epoch bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'cluster_fence'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION commitlog.cluster_fence(text, bigint) FROM PUBLIC;

-- This broker's copy of its cluster's assignment and brokers, refreshed by
-- its worker from the coordinator each cycle; produce, fetch and
-- partition_list read it.  Empty outside cluster mode.
CREATE TABLE commitlog.cluster_assignments (
    topic_id int NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    partitions int NOT NULL,
    replication_factor int NOT NULL,
    config jsonb NOT NULL,
    deleting boolean NOT NULL,
    replicas int[],
    leader int,
    isr int[],
    leader_epoch int NOT NULL,
    PRIMARY KEY (topic_id, partition)
);
CREATE INDEX ON commitlog.cluster_assignments (topic);

CREATE TABLE commitlog.cluster_brokers (
    broker_id int PRIMARY KEY,
    conninfo text,
    alive boolean NOT NULL,
    is_controller boolean NOT NULL
);

-- What a leader tells its followers, per partition it leads: how far they
-- may serve reads (its stable offset), its log start offset, and the end of
-- its newest segment.  Leader L writes the rows with leader_id = L and
-- publishes them (row filter leader_id = L) in the same stream as the
-- records, so a follower applies a watermark only after every record below
-- it, and a segment bound before any record in that segment (the trigger
-- below creates the segment in the apply worker's transaction).
CREATE TABLE commitlog.replica_watermarks (
    leader_id int NOT NULL,
    topic_id int NOT NULL,
    partition int NOT NULL,
    stable_offset bigint NOT NULL,
    log_start_offset bigint NOT NULL,
    segment_end bigint NOT NULL,
    leader_epoch int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (leader_id, topic_id, partition)
);

GRANT SELECT ON commitlog.cluster_assignments, commitlog.cluster_brokers,
                commitlog.replica_watermarks TO PUBLIC;

-- Fires only in the logical replication apply worker (ENABLE REPLICA).
CREATE FUNCTION commitlog.replica_watermark_applied()
RETURNS trigger
AS 'MODULE_PATHNAME', 'replica_watermark_applied'
LANGUAGE C;
CREATE TRIGGER replica_watermark_applied
    BEFORE INSERT OR UPDATE ON commitlog.replica_watermarks
    FOR EACH ROW EXECUTE FUNCTION commitlog.replica_watermark_applied();
ALTER TABLE commitlog.replica_watermarks ENABLE REPLICA TRIGGER replica_watermark_applied;

-- leader, replicas and isr from the cluster's assignment in cluster mode
-- (leader NULL: not assigned yet, or no in-sync replica alive to lead);
-- no offsets for a partition hosted on other brokers (the local copy of
-- the topic holds nothing of it, and latest_offset refuses it).
CREATE VIEW commitlog.partition_list AS
SELECT t.name AS topic,
       p.partition,
       CASE WHEN a.replicas IS NULL
              OR pg_catalog.current_setting('commitlog.broker_id')::int = ANY (a.replicas)
            THEN commitlog.earliest_offset(t.name, p.partition) END AS earliest_offset,
       CASE WHEN a.replicas IS NULL
              OR pg_catalog.current_setting('commitlog.broker_id')::int = ANY (a.replicas)
            THEN commitlog.latest_offset(t.name, p.partition) END AS latest_offset,
       (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid))::bigint
          FROM commitlog.segments s
          JOIN pg_catalog.pg_class c
            ON c.relname = s.relname
           AND c.relnamespace = 'commitlog_topics'::pg_catalog.regnamespace
         WHERE s.topic_id = p.topic_id AND s.partition = p.partition) AS size_bytes,
       (SELECT pg_catalog.count(*)::int
          FROM commitlog.segments s
         WHERE s.topic_id = p.topic_id AND s.partition = p.partition) AS segments,
       CASE WHEN a.topic_id IS NULL THEN pg_catalog.current_setting('commitlog.broker_id')::int
            ELSE a.leader END AS leader,
       COALESCE(a.replicas, ARRAY[pg_catalog.current_setting('commitlog.broker_id')::int]) AS replicas,
       COALESCE(a.isr, ARRAY[pg_catalog.current_setting('commitlog.broker_id')::int]) AS isr
  FROM commitlog.topics t
  JOIN commitlog.partitions p ON p.topic_id = t.id
  LEFT JOIN commitlog.cluster_assignments a ON a.topic_id = t.id AND a.partition = p.partition;

-- The current controller of each cluster, shown only while its session
-- holds the lock: the controller lock of cluster c is (1129074503, c).
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
                  AND l.objid = s.cluster_id::pg_catalog.oid
                  AND l.objsubid = 2
                  AND l.granted
                  AND l.pid = s.pid);

-- Liveness lock of broker b in cluster c: (1129070162 + c - 1, b).  On a
-- broker that is not the coordinator: the brokers its worker last saw there.
CREATE VIEW commitlog.brokers AS
SELECT r.broker_id,
       r.conninfo,
       EXISTS (SELECT 1
                 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory'
                  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                     WHERE d.datname = pg_catalog.current_database())
                  AND l.classid = (1129070162 + r.cluster_id - 1)::pg_catalog.oid
                  AND l.objid = r.broker_id::pg_catalog.oid
                  AND l.objsubid = 2
                  AND l.granted) AS alive,
       COALESCE(r.broker_id = c.broker_id, false) AS is_controller,
       cl.name AS cluster
  FROM commitlog.broker_registry r
  LEFT JOIN commitlog.clusters cl ON cl.id = r.cluster_id
  LEFT JOIN commitlog.controller_state cs ON cs.cluster_id = r.cluster_id
  LEFT JOIN commitlog.controller c ON c.pid = cs.pid AND c.epoch = cs.epoch
UNION ALL
SELECT m.broker_id, m.conninfo, m.alive, m.is_controller,
       pg_catalog.current_setting('commitlog.cluster')
  FROM commitlog.cluster_brokers m
 WHERE NOT EXISTS (SELECT 1 FROM commitlog.broker_registry);

GRANT SELECT ON commitlog.partition_list, commitlog.controller, commitlog.brokers TO PUBLIC;

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
    handler_failures int NOT NULL DEFAULT 0,    -- of those, the handler's (max_retries)
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

------------------------------------------------------------------------------
-- In-sync replicas, acks=all and failover (src/cluster/cluster_isr.c,
-- DESIGN 9, src/cluster/README.md "ISR, acks and failover").
------------------------------------------------------------------------------

-- A leader's map from LSNs to offsets, per partition it leads with
-- followers: every record below stable_offset committed before lsn.  A
-- follower whose slot confirmed lsn holds them all.  Written and trimmed by
-- the leader's worker; local, not replicated.
CREATE TABLE commitlog.replica_marks (
    topic_id int NOT NULL,
    partition int NOT NULL,
    stable_offset bigint NOT NULL,
    lsn pg_catalog.pg_lsn NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (topic_id, partition, stable_offset)
);
GRANT SELECT ON commitlog.replica_marks TO PUBLIC;

-- On the coordinator: a leader's new ISR for a partition (Kafka's
-- AlterPartition).  Refused (CL004) unless the caller is still the
-- partition's leader at leader_epoch; the ISR keeps the leader, holds only
-- replicas, and is stored in replica order.
CREATE FUNCTION commitlog.cluster_alter_isr(topic_id int, partition int, leader int,
                                            leader_epoch int, isr int[])
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE commitlog.cluster_partitions p
       SET isr = ARRAY(SELECT r.b FROM pg_catalog.unnest(p.replicas) WITH ORDINALITY r(b, o)
                        WHERE r.b = ANY (cluster_alter_isr.isr) ORDER BY r.o)
     WHERE p.topic_id = cluster_alter_isr.topic_id AND p.partition = cluster_alter_isr.partition
       AND p.leader = cluster_alter_isr.leader AND p.leader_epoch = cluster_alter_isr.leader_epoch
       AND cluster_alter_isr.leader = ANY (cluster_alter_isr.isr)
       AND cluster_alter_isr.isr <@ p.replicas;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'broker % is not the leader of partition % of topic id % at leader epoch %',
                        leader, partition, topic_id, leader_epoch
            USING ERRCODE = 'CL004',
                  DETAIL = 'Only the current leader may change a partition''s in-sync replicas.',
                  HINT = 'The leader re-reads the assignment from the coordinator in its next cycle.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION commitlog.cluster_alter_isr(int, int, int, int, int[]) FROM PUBLIC;

-- acks=all (src/cluster/cluster_acks.c): after committing records produced
-- with commitlog.acks = 'all', wait until every in-sync replica has them.
-- Returns the number of records confirmed; CL002 / CL003 / CL005 leave
-- them in doubt (docs/replication.md).
CREATE FUNCTION commitlog.await_replication(timeout_ms int DEFAULT 30000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'await_replication'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- Leader election (issue 7, failover step 3 of src/cluster/README.md): run
-- by the controller each cycle, fenced by its epoch, after cluster_assign.

-- Each replica's log end, reported by its broker; ranks election
-- candidates (any in-sync replica is safe, the highest loses least).
-- leader_epoch: the epoch the replica's copy is at (commitlog.replica_epochs
-- there); ready: a follower's subscription to the current leader has the
-- partition past its initial copy (a leader: true).
CREATE TABLE commitlog.cluster_replica_state (
    topic_id int NOT NULL,
    partition int NOT NULL,
    broker_id int NOT NULL,
    log_end bigint NOT NULL,
    leader_epoch int NOT NULL,
    ready boolean NOT NULL DEFAULT false,
    reported_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (topic_id, partition, broker_id),
    FOREIGN KEY (topic_id, partition) REFERENCES commitlog.cluster_partitions ON DELETE CASCADE
);
GRANT SELECT ON commitlog.cluster_replica_state TO PUBLIC;

-- An epoch's start offset is written by its leader when it takes over
-- (cluster_begin_epoch): NULL until then.
ALTER TABLE commitlog.cluster_leader_epochs ALTER COLUMN start_offset DROP NOT NULL;

-- The controller's failover duty (run fenced): each partition whose leader
-- is not alive (or that has none) gets the live in-sync replica with the
-- highest reported log end (ties: replica order) as leader, in a new leader
-- epoch, and loses the dead leader from its ISR.  With no live in-sync
-- replica the partition stays leaderless, its ISR unchanged (the last
-- in-sync replica is elected when it returns), unless its topic sets
-- unclean.leader.election.enable: then any live replica, with ISR {it}.
-- Returns the partitions whose leader changed.
CREATE FUNCTION commitlog.cluster_elect(cluster_id int)
RETURNS int
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live int[] := commitlog.cluster_live_brokers(cluster_id);
    p record;
    winner int;
    changed int := 0;
BEGIN
    FOR p IN SELECT cp.topic_id, cp.partition, cp.replicas, cp.leader, cp.isr, cp.leader_epoch,
                    COALESCE((ct.config ->> 'unclean.leader.election.enable')::boolean,
                             pg_catalog.current_setting('commitlog.default_unclean_leader_election_enable', true)::boolean,
                             false) AS unclean
               FROM commitlog.cluster_partitions cp
               JOIN commitlog.cluster_topics ct ON ct.id = cp.topic_id
              WHERE ct.cluster_id = cluster_elect.cluster_id AND NOT ct.deleting
                AND cp.replicas IS NOT NULL
                AND (cp.leader IS NULL OR NOT cp.leader = ANY (live))
              ORDER BY cp.topic_id, cp.partition
              FOR UPDATE OF cp
    LOOP
        winner := NULL;
        SELECT r.b INTO winner
          FROM pg_catalog.unnest(p.replicas) WITH ORDINALITY r(b, o)
          LEFT JOIN commitlog.cluster_replica_state s
            ON s.topic_id = p.topic_id AND s.partition = p.partition AND s.broker_id = r.b
         WHERE r.b = ANY (live) AND (r.b = ANY (p.isr) OR p.unclean)
         ORDER BY (r.b = ANY (p.isr)) DESC, s.log_end DESC NULLS LAST, r.o
         LIMIT 1;
        IF winner IS NULL THEN
            IF p.leader IS NOT NULL THEN
                UPDATE commitlog.cluster_partitions SET leader = NULL
                 WHERE topic_id = p.topic_id AND partition = p.partition;
                changed := changed + 1;
            END IF;
            CONTINUE;
        END IF;
        UPDATE commitlog.cluster_partitions
           SET leader = winner, leader_epoch = p.leader_epoch + 1,
               isr = CASE WHEN winner = ANY (p.isr)
                          THEN ARRAY(SELECT r.b FROM pg_catalog.unnest(p.isr) WITH ORDINALITY r(b, o)
                                      WHERE r.b IS DISTINCT FROM p.leader ORDER BY r.o)
                          ELSE ARRAY[winner] END
         WHERE topic_id = p.topic_id AND partition = p.partition;
        INSERT INTO commitlog.cluster_leader_epochs (topic_id, partition, leader_epoch, start_offset, leader)
        VALUES (p.topic_id, p.partition, p.leader_epoch + 1, NULL, winner);
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$;

-- The new leader of an epoch records where the epoch starts: its log end
-- when it took over, and gets back the recorded start (the same, unless it
-- recorded it already before a crash: then the first one stands).  CL004
-- unless it leads the partition at that epoch.
CREATE FUNCTION commitlog.cluster_begin_epoch(topic_id int, partition int, leader int,
                                              leader_epoch int, start_offset bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded bigint;
BEGIN
    UPDATE commitlog.cluster_leader_epochs e
       SET start_offset = COALESCE(e.start_offset, cluster_begin_epoch.start_offset)
     WHERE e.topic_id = cluster_begin_epoch.topic_id AND e.partition = cluster_begin_epoch.partition
       AND e.leader_epoch = cluster_begin_epoch.leader_epoch AND e.leader = cluster_begin_epoch.leader
       AND EXISTS (SELECT 1 FROM commitlog.cluster_partitions p
                    WHERE p.topic_id = e.topic_id AND p.partition = e.partition
                      AND p.leader = e.leader AND p.leader_epoch = e.leader_epoch)
    RETURNING e.start_offset INTO recorded;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'broker % cannot begin leader epoch % of partition % of topic id %',
                        leader, leader_epoch, partition, topic_id
            USING ERRCODE = 'CL004',
                  DETAIL = 'Only the partition''s current leader begins its epoch.',
                  HINT = 'The broker re-reads the assignment from the coordinator in its next cycle.';
    END IF;
    RETURN recorded;
END
$$;
REVOKE ALL ON FUNCTION commitlog.cluster_elect(int),
                       commitlog.cluster_begin_epoch(int, int, int, int, bigint) FROM PUBLIC;

-- The leader epoch this broker's copy of each partition is at: the epoch it
-- took over as leader, or whose leader it re-pointed to as a follower after
-- truncating what that epoch's start offset says was never acknowledged
-- (src/cluster/cluster_failover.c).  No row: epoch 0, nothing to do.  Local.
CREATE TABLE commitlog.replica_epochs (
    topic_id int NOT NULL,
    partition int NOT NULL,
    leader_epoch int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (topic_id, partition)
);
GRANT SELECT ON commitlog.replica_epochs TO PUBLIC;

-- When the worker last rewrote its copy of the assignment: produce on a
-- leader needs a copy made since the server started (a returning old
-- leader's copy says it still leads).
ALTER TABLE commitlog.cluster_brokers ADD COLUMN synced_at timestamptz NOT NULL DEFAULT pg_catalog.now();

-- A leader's view of its followers at the current leader epoch, per
-- partition it leads after a failover: from_offset is the follower's log
-- end after its truncation, where the publication's row filter starts the
-- follower's copy (so nothing is copied twice and nothing is skipped);
-- ready: the follower's subscription has the partition past that copy, so
-- its slot's position counts for the ISR.  Learned from
-- cluster_replica_state on the coordinator.  Local.
CREATE TABLE commitlog.replica_followers (
    topic_id int NOT NULL,
    partition int NOT NULL,
    follower int NOT NULL,
    leader_epoch int NOT NULL,
    from_offset bigint NOT NULL,
    ready boolean NOT NULL,
    PRIMARY KEY (topic_id, partition, follower)
);
GRANT SELECT ON commitlog.replica_followers TO PUBLIC;

-- Replication slots this broker (as a follower) left on other brokers: a
-- subscription dropped while its leader was unreachable, as in a failover,
-- keeps its slot there (SET slot_name = NONE), and so do its unfinished
-- table syncs (pg_<subid>_sync_<relid>_<sysid>); a slot holds WAL. The
-- worker drops each once that broker answers (src/cluster/cluster_local.c).
CREATE TABLE commitlog.replica_orphan_slots (
    slot_name text PRIMARY KEY,
    conninfo text NOT NULL,
    since timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON commitlog.replica_orphan_slots FROM PUBLIC;
