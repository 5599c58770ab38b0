--
-- Topic config (DESIGN 5): Kafka's keys and defaults, the effective config
-- in topic_list, setting keys at create_topic, merging with alter_topic,
-- JSON null back to the default, bad keys and values (22023), and the
-- broker-level defaults from the commitlog.default_* settings.
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

-- a topic's effective config, one key per row
CREATE FUNCTION pg_temp.effective(t text)
RETURNS TABLE (key text, value jsonb, type text)
LANGUAGE sql AS $$
	SELECT e.key, e.value, jsonb_typeof(e.value)
	  FROM commitlog.topic_list l, jsonb_each(l.config) e
	 WHERE l.topic = t
	 ORDER BY e.key
$$;

------------------------------------------------------------------------------
-- Every key, with Kafka's default, typed as JSON
------------------------------------------------------------------------------
SELECT commitlog.create_topic('config_plain');
SELECT * FROM pg_temp.effective('config_plain');
-- nothing is stored for a topic that sets nothing
SELECT config FROM commitlog.topics WHERE name = 'config_plain';
-- the broker defaults behind them
SELECT name, setting, context FROM pg_settings
 WHERE name LIKE 'commitlog.default\_%' ORDER BY name;

------------------------------------------------------------------------------
-- Keys set at create_topic: only those are stored, all are effective
------------------------------------------------------------------------------
SELECT commitlog.create_topic('config_set', 2, config => '{
    "retention.ms": 3600000,
    "retention.bytes": 1048576,
    "segment.bytes": 16384,
    "segment.ms": 60000,
    "cleanup.policy": "compact",
    "max.message.bytes": 100,
    "message.timestamp.type": "LogAppendTime",
    "min.insync.replicas": 1,
    "delete.retention.ms": 0,
    "unclean.leader.election.enable": true
}');
SELECT jsonb_pretty(config) FROM commitlog.topics WHERE name = 'config_set';
SELECT * FROM pg_temp.effective('config_set');

-- values are stored typed: numbers and booleans given as JSON strings, and
-- numbers written with an exponent, are normalized
SELECT commitlog.create_topic('config_typed', config => '{
    "retention.ms": "7200000",
    "segment.ms": 6e4,
    "unclean.leader.election.enable": "true",
    "cleanup.policy": "delete,compact"
}');
SELECT config FROM commitlog.topics WHERE name = 'config_typed';
SELECT * FROM pg_temp.effective('config_typed')
 WHERE key IN ('retention.ms', 'segment.ms', 'unclean.leader.election.enable', 'cleanup.policy');

-- the edge values each key accepts
SELECT v AS config, pg_temp.err(format('SELECT commitlog.alter_topic(%L, %L)', 'config_plain', v)) AS result
  FROM (VALUES
    ('{"retention.ms": -1}'),
    ('{"retention.ms": 0}'),
    ('{"retention.ms": 9223372036854775807}'),
    ('{"retention.bytes": -1}'),
    ('{"segment.bytes": 14}'),
    ('{"segment.ms": 1}'),
    ('{"cleanup.policy": "delete"}'),
    ('{"cleanup.policy": "compact"}'),
    ('{"cleanup.policy": "compact,delete"}'),
    ('{"cleanup.policy": "delete,compact"}'),
    ('{"max.message.bytes": 0}'),
    ('{"message.timestamp.type": "CreateTime"}'),
    ('{"message.timestamp.type": "LogAppendTime"}'),
    ('{"min.insync.replicas": 1}'),
    ('{"delete.retention.ms": 0}'),
    ('{"unclean.leader.election.enable": false}'),
    ('{"unclean.leader.election.enable": true}'),
    ('{}')) AS t(v);

------------------------------------------------------------------------------
-- alter_topic merges; a key set to JSON null returns to the default
------------------------------------------------------------------------------
SELECT commitlog.create_topic('config_alter', config => '{"retention.ms": 1000, "cleanup.policy": "compact"}');
SELECT commitlog.alter_topic('config_alter', '{"max.message.bytes": 2048}');
SELECT config FROM commitlog.topics WHERE name = 'config_alter';
SELECT commitlog.alter_topic('config_alter', '{"retention.ms": 2000}');
SELECT config FROM commitlog.topics WHERE name = 'config_alter';
SELECT commitlog.alter_topic('config_alter', '{"retention.ms": null}');
SELECT config FROM commitlog.topics WHERE name = 'config_alter';
SELECT config->'retention.ms' AS retention_ms FROM commitlog.topic_list WHERE topic = 'config_alter';
-- null for a key that was never set is a no-op; '{}' changes nothing
SELECT commitlog.alter_topic('config_alter', '{"segment.ms": null}');
SELECT commitlog.alter_topic('config_alter', '{}');
SELECT config FROM commitlog.topics WHERE name = 'config_alter';
-- several keys at once, set and reset together
SELECT commitlog.alter_topic('config_alter', '{"cleanup.policy": null, "max.message.bytes": null, "segment.bytes": 1000000}');
SELECT config FROM commitlog.topics WHERE name = 'config_alter';
SELECT * FROM pg_temp.effective('config_alter') WHERE key IN ('cleanup.policy', 'max.message.bytes', 'segment.bytes');
-- null at create_topic means "the default" too
SELECT commitlog.create_topic('config_null', config => '{"retention.ms": null}');
SELECT config FROM commitlog.topics WHERE name = 'config_null';

------------------------------------------------------------------------------
-- Unknown keys and bad values: 22023, and nothing changes
------------------------------------------------------------------------------
SELECT commitlog.create_topic('config_bad', config => '{"retention.mss": 1}');
SELECT commitlog.create_topic('config_bad', config => '{"retention.ms": "abc"}');
SELECT commitlog.create_topic('config_bad', config => '{"retention.ms": -5}');
SELECT commitlog.create_topic('config_bad', config => '{"cleanup.policy": "nope"}');
SELECT commitlog.create_topic('config_bad', config => '{"unclean.leader.election.enable": "maybe"}');
SELECT commitlog.create_topic('config_bad', config => '[1]');
SELECT commitlog.create_topic('config_bad', config => '3');
SELECT commitlog.create_topic('config_bad', config => '{"retention.ms": [1]}');

SELECT v AS config,
       pg_temp.err(format('SELECT commitlog.create_topic(%L, config => %L)', 'config_bad', v)) AS create_topic,
       pg_temp.err(format('SELECT commitlog.alter_topic(%L, %L)', 'config_alter', v)) AS alter_topic
  FROM (VALUES
    ('{"retention.mss": 1}'),
    ('{"Retention.ms": 1}'),
    ('{"log.retention.ms": 1}'),
    ('{"": 1}'),
    ('{"retention.ms": "abc"}'),
    ('{"retention.ms": ""}'),
    ('{"retention.ms": -5}'),
    ('{"retention.ms": -2}'),
    ('{"retention.ms": 1.5}'),
    ('{"retention.ms": "1 "}'),
    ('{"retention.ms": true}'),
    ('{"retention.ms": 9223372036854775808}'),
    ('{"retention.bytes": -2}'),
    ('{"segment.bytes": 13}'),
    ('{"segment.ms": 0}'),
    ('{"max.message.bytes": -1}'),
    ('{"min.insync.replicas": 0}'),
    ('{"delete.retention.ms": -1}'),
    ('{"cleanup.policy": "nope"}'),
    ('{"cleanup.policy": "Compact"}'),
    ('{"cleanup.policy": "compact, delete"}'),
    ('{"cleanup.policy": ""}'),
    ('{"cleanup.policy": 1}'),
    ('{"message.timestamp.type": "createtime"}'),
    ('{"message.timestamp.type": "LogAppend"}'),
    ('{"unclean.leader.election.enable": "maybe"}'),
    ('{"unclean.leader.election.enable": 1}'),
    ('{"unclean.leader.election.enable": "True"}'),
    ('{"retention.ms": [1]}'),
    ('{"retention.ms": {"a": 1}}'),
    ('[1]'),
    ('[]'),
    ('3'),
    ('"retention.ms"'),
    ('true'),
    ('null')) AS t(v);

-- the failures changed nothing
SELECT count(*) FROM commitlog.topics WHERE name = 'config_bad';
SELECT config FROM commitlog.topics WHERE name = 'config_alter';
-- one bad key spoils the whole change
SELECT pg_temp.err($$SELECT commitlog.alter_topic('config_alter', '{"retention.ms": 5, "nope": 1}')$$);
SELECT pg_temp.err($$SELECT commitlog.alter_topic('config_alter', '{"retention.ms": 5, "segment.ms": 0}')$$);
SELECT config FROM commitlog.topics WHERE name = 'config_alter';

-- effective_config (the helper behind topic_list) checks what it is given
SELECT commitlog.effective_config(NULL);
SELECT commitlog.effective_config('{"cleanup.policy": "compact"}')->'cleanup.policy';
SELECT pg_temp.err($$SELECT commitlog.effective_config('{"nope": 1}')$$);
SELECT pg_temp.err($$SELECT commitlog.effective_config('[1]')$$);
-- a bad value is a 22023 as everywhere else, never a JSON syntax error,
-- and a value can never add keys of its own
SELECT split_part(pg_temp.err($$SELECT commitlog.effective_config('{"retention.ms": "abc"}')$$), ':', 1) AS sqlstate;
SELECT split_part(pg_temp.err($$SELECT commitlog.effective_config('{"retention.ms": "1, \"x\": 2"}')$$), ':', 1) AS sqlstate;
SELECT split_part(pg_temp.err($$SELECT commitlog.effective_config('{"cleanup.policy": "nope"}')$$), ':', 1) AS sqlstate;

------------------------------------------------------------------------------
-- Broker defaults: the commitlog.default_* settings
------------------------------------------------------------------------------
-- config_plain has no value of its own; config_set has 3600000
SELECT commitlog.alter_topic('config_plain', '{"retention.ms": null, "cleanup.policy": null,
    "message.timestamp.type": null, "unclean.leader.election.enable": null, "segment.bytes": null,
    "segment.ms": null, "max.message.bytes": null, "min.insync.replicas": null,
    "delete.retention.ms": null, "retention.bytes": null}');
SELECT config FROM commitlog.topics WHERE name = 'config_plain';
SET commitlog.default_retention_ms = '1000';
SELECT topic, config->'retention.ms' AS retention_ms FROM commitlog.topic_list
 WHERE topic IN ('config_plain', 'config_set') ORDER BY topic;
RESET commitlog.default_retention_ms;
SELECT topic, config->'retention.ms' AS retention_ms FROM commitlog.topic_list
 WHERE topic IN ('config_plain', 'config_set') ORDER BY topic;

-- every default can be set, and shows up typed
SET commitlog.default_retention_bytes = '1073741824';
SET commitlog.default_segment_bytes = '1048576';
SET commitlog.default_segment_ms = '3600000';
SET commitlog.default_cleanup_policy = 'compact';
SET commitlog.default_max_message_bytes = '500';
SET commitlog.default_message_timestamp_type = 'LogAppendTime';
SET commitlog.default_min_insync_replicas = '2';
SET commitlog.default_delete_retention_ms = '1000';
SET commitlog.default_unclean_leader_election_enable = 'true';
SELECT * FROM pg_temp.effective('config_plain');
RESET ALL;
SELECT * FROM pg_temp.effective('config_plain');

-- "delete,compact" is the same policy as "compact,delete"
SET commitlog.default_cleanup_policy = 'delete,compact';
SELECT config->'cleanup.policy' FROM commitlog.topic_list WHERE topic = 'config_plain';
RESET commitlog.default_cleanup_policy;

-- invalid values are refused (22023) and the setting keeps its value
SET commitlog.default_retention_ms = 'abc';
SET commitlog.default_retention_ms = '-5';
SET commitlog.default_segment_bytes = '13';
SET commitlog.default_cleanup_policy = 'nope';
SET commitlog.default_message_timestamp_type = 'createtime';
SET commitlog.default_unclean_leader_election_enable = 'maybe';
SELECT pg_temp.err($$SET commitlog.default_max_message_bytes = '1.5'$$);
SELECT pg_temp.err($$SET commitlog.default_min_insync_replicas = '0'$$);
SELECT pg_temp.err($$SET commitlog.default_delete_retention_ms = ''$$);
SHOW commitlog.default_retention_ms;
SELECT config->'retention.ms' FROM commitlog.topic_list WHERE topic = 'config_plain';
-- unknown settings in the reserved prefix are refused
SELECT pg_temp.err($$SET commitlog.default_retention = '1'$$);

-- the defaults act on produce, too: max.message.bytes
SET commitlog.default_max_message_bytes = '5';
SELECT pg_temp.err($$SELECT commitlog.produce('config_plain', '123456'::text)$$);
-- (config_set is compacted, so its records need a key)
SELECT pg_temp.err($$SELECT commitlog.produce('config_set', '123456'::text, key => 'k', partition => 1)$$);   -- its own 100
RESET commitlog.default_max_message_bytes;
SELECT pg_temp.err($$SELECT commitlog.produce('config_plain', '123456'::text)$$);

-- and message.timestamp.type: LogAppendTime ignores the given ts
SET commitlog.default_message_timestamp_type = 'LogAppendTime';
SELECT * FROM commitlog.produce('config_plain', 'append', ts => '2001-01-01 00:00:00+00');
RESET commitlog.default_message_timestamp_type;
SELECT * FROM commitlog.produce('config_plain', 'create', ts => '2001-01-01 00:00:00+00');
SELECT convert_from(value, 'UTF8') AS value,
       "timestamp" = '2001-01-01 00:00:00+00' AS kept_ts,
       "timestamp" > now() - interval '1 hour' AS recent
  FROM commitlog.fetch('config_plain', 0, 1) ORDER BY log_offset;

-- a topic's own message.timestamp.type beats the default
SET commitlog.default_message_timestamp_type = 'CreateTime';
SELECT * FROM commitlog.produce('config_set', 'own', key => 'k', ts => '2001-01-01 00:00:00+00', partition => 0);
RESET commitlog.default_message_timestamp_type;
SELECT "timestamp" = '2001-01-01 00:00:00+00' AS kept_ts, "timestamp" > now() - interval '1 hour' AS recent
  FROM commitlog.fetch('config_set', 0, 0);

-- alter_topic is seen by the next produce of the same session (cached);
-- 100 value bytes + 1 key byte
SELECT pg_temp.err($$SELECT commitlog.produce('config_set', repeat('x', 100), key => 'k', partition => 1)$$);
SELECT commitlog.alter_topic('config_set', '{"max.message.bytes": 101}');
SELECT pg_temp.err($$SELECT commitlog.produce('config_set', repeat('x', 100), key => 'k', partition => 1)$$);
SELECT commitlog.alter_topic('config_set', '{"max.message.bytes": null}');
SELECT pg_temp.err($$SELECT commitlog.produce('config_set', repeat('x', 1000), key => 'k', partition => 1)$$);
-- a compacted topic refuses records without a key, as Kafka does
SELECT pg_temp.err($$SELECT commitlog.produce('config_set', 'no key'::text, partition => 1)$$);

-- only superusers change the broker defaults
CREATE ROLE regress_cl_config;
SET ROLE regress_cl_config;
SELECT pg_temp.err($$SET commitlog.default_retention_ms = '1000'$$);
SELECT config->'retention.ms' FROM commitlog.topic_list WHERE topic = 'config_plain';
RESET ROLE;
DROP ROLE regress_cl_config;

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
SELECT commitlog.drop_topic(topic) FROM commitlog.topic_list WHERE topic LIKE 'config\_%' ORDER BY topic;
SELECT count(*) FROM commitlog.topic_list WHERE topic LIKE 'config\_%';
