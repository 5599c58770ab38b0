-- pg_commitlog demo session, run by scripts/demo.sh (`make demo`) with
-- psql -e so each statement is echoed before its result.
-- Add lines here as features land (e.g. consumer groups: commitlog.consume).

-- Wrap wide columns (topic_list's config) at 120 characters; psql's output is
-- not a terminal here, so it has to be told the width.
\set QUIET on
\pset format wrapped
\pset columns 120
\set QUIET off

SELECT commitlog.create_topic('orders', 3);

-- keyed messages: the key picks the partition
SELECT * FROM commitlog.produce('orders', 'hello', key => 'user-1');
SELECT * FROM commitlog.produce('orders', '{"amount": 42}'::jsonb, key => 'user-2');

-- a batch to an explicit partition
SELECT * FROM commitlog.produce_batch('orders', ARRAY['a','b','c']::bytea[], partition => 0);

SELECT * FROM commitlog.topic_list;
SELECT * FROM commitlog.partition_list;

-- read partition 0 from offset 0
SELECT partition, log_offset, convert_from(value,'UTF8') FROM commitlog.fetch('orders', 0, 0);
SELECT commitlog.latest_offset('orders', 0);

-- a consumer group: reads every partition from the group's committed offsets
-- and moves them on in the same transaction
BEGIN;
SELECT partition, log_offset, convert_from(value, 'UTF8') AS value
  FROM commitlog.consume('billing', 'orders', max_records => 10);
COMMIT;
-- nothing new for the group now
SELECT count(*) FROM commitlog.consume('billing', 'orders');
SELECT group_id, topic, partition, committed_offset, lag FROM commitlog.group_offsets;

-- an Avro topic: register the value schema, produce jsonb (encoded to
-- Confluent's wire format on the way in), read it back decoded
SELECT commitlog.create_topic('users');
SELECT commitlog.register_schema('users-value',
  '{"type": "record", "name": "User", "fields": [
     {"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}');
SELECT log_offset FROM commitlog.produce('users', '{"id": 1, "name": "ada"}'::jsonb);
SELECT r.log_offset, commitlog.decode_value('users', r.value) AS value
  FROM commitlog.fetch('users', 0, 0) r;
