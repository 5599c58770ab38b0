--
-- Schema registry (DESIGN 12, docs/schemas.md): register_schema,
-- set_compatibility, schema_list, the compatibility modes, produce of
-- jsonb and of wire-format bytes on a topic with a schema, encode_value /
-- encode_key, decode_value / decode_key, and test vectors written by an
-- independent Avro implementation (test/data/avro/gen.py, python3-avro).
--
\set VERBOSITY default
\set SHOW_CONTEXT errors
\pset null '<null>'
SET client_min_messages = warning;

------------------------------------------------------------------------------
-- Registering: ids, versions, identical schemas
------------------------------------------------------------------------------
SELECT commitlog.create_topic('users');
SELECT commitlog.register_schema('users-value',
  '{"type": "record", "name": "User", "fields": [
     {"name": "id", "type": "long"},
     {"name": "name", "type": "string"}]}') AS v1_id \gset
SELECT :v1_id > 0 AS has_id;
-- the same schema again (whitespace and key order aside): same id, no new version
SELECT commitlog.register_schema('users-value',
  '{"name":"User","type":"record","fields":[{"name":"id","type":"long"},{"type":"string","name":"name"}]}') = :v1_id AS same_id;
-- the same schema under another subject keeps its id
SELECT commitlog.register_schema('other-value',
  '{"type": "record", "name": "User", "fields": [
     {"name": "id", "type": "long"},
     {"name": "name", "type": "string"}]}') = :v1_id AS shared_id;
-- version 2 adds a field with a default (BACKWARD, the default mode)
SELECT commitlog.register_schema('users-value',
  '{"type": "record", "name": "User", "fields": [
     {"name": "id", "type": "long"},
     {"name": "name", "type": "string"},
     {"name": "email", "type": ["null", "string"], "default": null}]}') AS v2_id \gset
SELECT :v2_id > :v1_id AS new_id;
SELECT subject, version, id - :v1_id AS id_offset, schema_type
  FROM commitlog.schema_list WHERE subject IN ('users-value', 'other-value')
 ORDER BY subject, version;
SELECT count(*) AS registered_schemas FROM commitlog.schemas;

------------------------------------------------------------------------------
-- Bad schemas and arguments: clear errors, nothing registered
------------------------------------------------------------------------------
SELECT commitlog.register_schema('bad-value', '{"type": "record", "name": "R", "fields": [');
SELECT commitlog.register_schema('bad-value', '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "strng"}]}');
SELECT commitlog.register_schema('bad-value', '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "long"}]}');
SELECT commitlog.register_schema('bad-value', '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "seven"}]}');
SELECT commitlog.register_schema('bad-value', '{"type": "record", "name": "R", "fields": [{"name": "a", "type": ["string", "null"], "default": null}]}');
SELECT commitlog.register_schema('bad-value', '{"type": "record", "name": "R", "fields": [{"name": "a", "type": {"type": "record", "name": "S", "fields": [{"name": "b", "type": "int"}]}, "default": {"b": "x"}}]}');
SELECT commitlog.register_schema('bad-value', '["null", ["int", "long"]]');
SELECT commitlog.register_schema('bad-value', '["int", "string", "int"]');
SELECT commitlog.register_schema('bad-value', '{"type": "enum", "name": "E", "symbols": ["A", "B", "A"]}');
SELECT commitlog.register_schema('bad-value', '{"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "C"}');
SELECT commitlog.register_schema('bad-value', '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "aliases": "b"}]}');
SELECT commitlog.register_schema('bad-value', '"int"', 'JSON');
SELECT commitlog.register_schema('bad-value', '"int"', 'PROTOBUF');
SELECT commitlog.register_schema(NULL, '"int"');
SELECT commitlog.register_schema('bad-value', NULL);
SELECT commitlog.register_schema('', '"int"');
SELECT count(*) AS bad_subjects FROM commitlog.schema_list WHERE subject = 'bad-value';
-- schema_type is case-insensitive
SELECT commitlog.register_schema('prim-value', '"int"', 'avro') > 0 AS lower_case_type;

------------------------------------------------------------------------------
-- Compatibility modes: the textbook cases, accepted and refused.
-- R(fields) below is a record "R" with those fields.
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.r(fields text) RETURNS text LANGUAGE sql
AS $$ SELECT '{"type": "record", "name": "R", "fields": [' || fields || ']}' $$;
CREATE FUNCTION pg_temp.try(subject text, fields text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM commitlog.register_schema(subject, pg_temp.r(fields));
  RETURN 'version ' || (SELECT max(version) FROM commitlog.schema_list s WHERE s.subject = try.subject);
EXCEPTION WHEN SQLSTATE 'CLS01' THEN
  RETURN 'refused: ' || SQLERRM;
END $$;

-- BACKWARD (default): new schema reads data of the latest version
SELECT pg_temp.try('bw', '{"name": "a", "type": "int"}');
SELECT pg_temp.try('bw', '{"name": "a", "type": "int"}, {"name": "b", "type": "string"}');
SELECT pg_temp.try('bw', '{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": "x"}');
SELECT pg_temp.try('bw', '{"name": "b", "type": "string", "default": "x"}');
SELECT pg_temp.try('bw', '{"name": "b", "type": "int", "default": 0}');
SELECT pg_temp.try('bw', '{"name": "b", "type": "bytes", "default": ""}');
SELECT pg_temp.try('bw', '{"name": "c", "type": "bytes", "aliases": ["b"]}');
SELECT pg_temp.try('bw', '{"name": "d", "type": "bytes"}');

-- type promotions: int to long to float to double; refused the other way
SELECT pg_temp.try('promote', '{"name": "n", "type": "int"}');
SELECT pg_temp.try('promote', '{"name": "n", "type": "long"}');
SELECT pg_temp.try('promote', '{"name": "n", "type": "float"}');
SELECT pg_temp.try('promote', '{"name": "n", "type": "double"}');
SELECT pg_temp.try('promote', '{"name": "n", "type": "float", "doc": "narrower"}');
SELECT pg_temp.try('promote', '{"name": "n", "type": "string"}');
SELECT pg_temp.try('promote', '{"name": "n", "type": ["null", "double"], "default": null}');
SELECT pg_temp.try('promote', '{"name": "n", "type": "double", "doc": "no null"}');
-- registering an existing version again returns its id and adds nothing
SELECT commitlog.register_schema('promote', pg_temp.r('{"name": "n", "type": "float"}'))
       = (SELECT id FROM commitlog.schema_list WHERE subject = 'promote' AND version = 3) AS id_of_v3,
       (SELECT max(version) FROM commitlog.schema_list WHERE subject = 'promote') AS versions;

-- BACKWARD_TRANSITIVE checks every version, BACKWARD only the latest
SELECT commitlog.set_compatibility('bwt', 'BACKWARD_TRANSITIVE');
SELECT pg_temp.try('bwt', '{"name": "a", "type": "int"}');
SELECT pg_temp.try('bwt', '{"name": "a", "type": "int", "default": 1}');
SELECT pg_temp.try('bwt', '{"name": "b", "type": "int", "default": 2}');
SELECT pg_temp.try('bwt', '{"name": "b", "type": "int", "default": 2}, {"name": "a", "type": "string", "default": ""}');
SELECT commitlog.set_compatibility('bwt', 'backward');
SELECT pg_temp.try('bwt', '{"name": "b", "type": "int", "default": 2}, {"name": "a", "type": "string", "default": ""}');

-- FORWARD: the latest version reads data of the new schema
SELECT commitlog.set_compatibility('fw', 'FORWARD');
SELECT pg_temp.try('fw', '{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": "x"}');
SELECT pg_temp.try('fw', '{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": "x"}, {"name": "c", "type": "long"}');
SELECT pg_temp.try('fw', '{"name": "a", "type": "int"}, {"name": "c", "type": "long"}');
SELECT pg_temp.try('fw', '{"name": "b", "type": "string"}, {"name": "c", "type": "long"}');
SELECT pg_temp.try('fw', '{"name": "a", "type": "long"}, {"name": "c", "type": "long"}');

-- FORWARD_TRANSITIVE: every version reads data of the new schema
SELECT commitlog.set_compatibility('fwt', 'FORWARD_TRANSITIVE');
SELECT pg_temp.try('fwt', '{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}');
SELECT pg_temp.try('fwt', '{"name": "a", "type": "int", "default": 0}, {"name": "b", "type": "int"}');
SELECT pg_temp.try('fwt', '{"name": "b", "type": "int"}');
SELECT commitlog.set_compatibility('fwt', 'FORWARD');
SELECT pg_temp.try('fwt', '{"name": "b", "type": "int"}');

-- FULL: both directions with the latest version
SELECT commitlog.set_compatibility('full', 'FULL');
SELECT pg_temp.try('full', '{"name": "a", "type": "int"}');
SELECT pg_temp.try('full', '{"name": "a", "type": "int"}, {"name": "b", "type": "int"}');
SELECT pg_temp.try('full', '{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}');
SELECT pg_temp.try('full', '{"name": "a", "type": "long"}, {"name": "b", "type": "int", "default": 0}');
SELECT pg_temp.try('full', '{"name": "b", "type": "int", "default": 0}');

-- FULL_TRANSITIVE: both directions with every version
SELECT commitlog.set_compatibility('fullt', 'FULL_TRANSITIVE');
SELECT pg_temp.try('fullt', '{"name": "a", "type": "int", "default": 0}');
SELECT pg_temp.try('fullt', '{"name": "b", "type": "int", "default": 0}');
SELECT pg_temp.try('fullt', '{"name": "b", "type": "int"}');
SELECT pg_temp.try('fullt', '{"name": "b", "type": "int", "default": 0}, {"name": "c", "type": "int", "default": 0}');

-- NONE: anything goes
SELECT commitlog.set_compatibility('none', 'NONE');
SELECT pg_temp.try('none', '{"name": "a", "type": "int"}');
SELECT pg_temp.try('none', '{"name": "a", "type": "string"}');
SELECT pg_temp.try('none', '{"name": "z", "type": "boolean"}');

-- enums: a symbol the reader lacks breaks it, unless the reader has a default
SELECT commitlog.register_schema('enum', '{"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}') > 0 AS v1;
SELECT commitlog.register_schema('enum', '{"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}') > 0 AS v2_added_symbol;
SELECT commitlog.set_compatibility('enum', 'FORWARD');
SELECT commitlog.register_schema('enum', '{"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE", "PINK"]}');
SELECT commitlog.set_compatibility('enum', 'BACKWARD');
SELECT commitlog.register_schema('enum', '{"type": "enum", "name": "Color", "symbols": ["RED", "BLUE"]}');
SELECT commitlog.register_schema('enum', '{"type": "enum", "name": "Color", "symbols": ["RED", "BLUE"], "default": "RED"}') > 0 AS removed_with_default;

-- nested records, arrays, maps, unions and renamed types: the path names the field
SELECT commitlog.register_schema('deep', '{"type": "record", "name": "Order", "fields": [
  {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
     {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
  {"name": "attrs", "type": {"type": "map", "values": "long"}},
  {"name": "note", "type": ["null", "string"], "default": null}]}') > 0 AS v1;
SELECT commitlog.register_schema('deep', '{"type": "record", "name": "Order", "fields": [
  {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
     {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}, {"name": "unit", "type": "string"}]}}},
  {"name": "attrs", "type": {"type": "map", "values": "long"}},
  {"name": "note", "type": ["null", "string"], "default": null}]}');
SELECT commitlog.register_schema('deep', '{"type": "record", "name": "Order", "fields": [
  {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
     {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
  {"name": "attrs", "type": {"type": "map", "values": "int"}},
  {"name": "note", "type": ["null", "string"], "default": null}]}');
SELECT commitlog.register_schema('deep', '{"type": "record", "name": "Order", "fields": [
  {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
     {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
  {"name": "attrs", "type": {"type": "map", "values": "double"}},
  {"name": "note", "type": "string"}]}');
SELECT commitlog.register_schema('deep', '{"type": "record", "name": "Order", "fields": [
  {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
     {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
  {"name": "attrs", "type": {"type": "map", "values": "long"}},
  {"name": "note", "type": ["null", "string"], "default": null}]}');
SELECT commitlog.register_schema('deep', '{"type": "record", "name": "Order", "fields": [
  {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Item", "aliases": ["Line"], "fields": [
     {"name": "sku", "type": "string"}, {"name": "quantity", "type": "long", "aliases": ["qty"]}]}}},
  {"name": "attrs", "type": {"type": "map", "values": "long"}},
  {"name": "note", "type": ["null", "string"], "default": null}]}') > 0 AS renamed_with_aliases;
SELECT subject, max(version) AS versions FROM commitlog.schema_list
 WHERE subject IN ('bw', 'promote', 'bwt', 'fw', 'fwt', 'full', 'fullt', 'none', 'enum', 'deep')
 GROUP BY subject ORDER BY subject;

SELECT commitlog.set_compatibility('bw', 'SIDEWAYS');
SELECT commitlog.set_compatibility('bw', NULL);
SELECT subject, compatibility FROM commitlog.schema_subjects
 WHERE subject IN ('bwt', 'fw', 'enum', 'none') ORDER BY subject;

------------------------------------------------------------------------------
-- Produce on a topic with a value schema
------------------------------------------------------------------------------
-- jsonb is encoded with the latest version (v2: email defaults to null)
SELECT * FROM commitlog.produce('users', '{"id": 1, "name": "ann"}'::jsonb);
SELECT * FROM commitlog.produce('users', '{"id": 2, "name": "bob", "email": "bob@example.com"}'::jsonb);
SELECT * FROM commitlog.produce('users', '{"id": 3, "name": "cy", "email": {"string": "cy@example.com"}}'::jsonb);
-- invalid jsonb: refused, the error names the field
SELECT * FROM commitlog.produce('users', '{"id": "four", "name": "dee"}'::jsonb);
SELECT * FROM commitlog.produce('users', '{"id": 4.5, "name": "dee"}'::jsonb);
SELECT * FROM commitlog.produce('users', '{"id": 4}'::jsonb);
SELECT * FROM commitlog.produce('users', '{"id": 4, "name": "dee", "mail": "x"}'::jsonb);
SELECT * FROM commitlog.produce('users', '{"id": 4, "name": "dee", "email": 5}'::jsonb);
SELECT * FROM commitlog.produce('users', '[1, 2]'::jsonb);
-- bytes must already be in the wire format, with a version of the subject
SELECT * FROM commitlog.produce('users', 'plain text');
SELECT * FROM commitlog.produce('users', '\x0000'::bytea);
SELECT * FROM commitlog.produce('users', commitlog.encode_value('users', '{"id": 5, "name": "eve"}'));
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(:v1_id) || '\x0a06656c69'::bytea);
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(:v1_id) || '\x0a06656c'::bytea);
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(:v1_id) || '\x0a06656c6900'::bytea);
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(:v1_id) || '\x0aff656c69'::bytea);
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(:v1_id) || '\x0a04c328'::bytea);
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(:v2_id) || '\x0c02780401'::bytea);
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(99999) || '\x0a06656c69'::bytea);
SELECT id AS prim_id FROM commitlog.schema_list WHERE subject = 'prim-value' \gset
SELECT * FROM commitlog.produce('users', '\x00'::bytea || int4send(:prim_id) || '\x02'::bytea);
-- a tombstone needs no schema
SELECT * FROM commitlog.produce('users', NULL::bytea, key => 'k');
-- a batch with one bad record writes nothing
SELECT commitlog.latest_offset('users', 0) AS before \gset
SELECT * FROM commitlog.produce_batch('users', ARRAY[
  commitlog.encode_value('users', '{"id": 6, "name": "fay"}'),
  'not avro'::bytea,
  commitlog.encode_value('users', '{"id": 7, "name": "gus"}')]);
SELECT * FROM commitlog.produce_messages('users', ARRAY[
  ROW(NULL, commitlog.encode_value('users', '{"id": 6, "name": "fay"}'), NULL, NULL, NULL)::commitlog.message,
  ROW(NULL, '\x00'::bytea || int4send(:v1_id) || '\x0c'::bytea, NULL, NULL, NULL)::commitlog.message]);
SELECT commitlog.latest_offset('users', 0) - :before AS written_by_bad_batches;
SELECT count(*) AS written FROM commitlog.produce_batch('users', ARRAY[
  commitlog.encode_value('users', '{"id": 6, "name": "fay"}'),
  commitlog.encode_value('users', '{"id": 7, "name": "gus", "email": null}')]);

------------------------------------------------------------------------------
-- Decoding: the writer's schema from the record's id, across versions
------------------------------------------------------------------------------
SELECT log_offset, commitlog.decode_value('users', value)
  FROM commitlog.fetch('users', 0, 0) ORDER BY log_offset;
-- an old version's record decodes with the old version
SELECT commitlog.decode_value('users', '\x00'::bytea || int4send(:v1_id) || '\x0a06656c69'::bytea);
SELECT commitlog.decode_value('users', 'not avro');
SELECT commitlog.decode_value('users', '\x00'::bytea || int4send(99999) || '\x00'::bytea);
SELECT commitlog.decode_value('users', '\x00'::bytea || int4send(:v1_id) || '\x0a'::bytea);
SELECT commitlog.decode_value('users', NULL) IS NULL AS null_is_null;

-- the walkthrough of docs/schemas.md: version 3 adds "plan" with a default;
-- a view reads old and new records alike
SELECT commitlog.register_schema('users-value',
  '{"type": "record", "name": "User", "fields": [
     {"name": "id", "type": "long"},
     {"name": "name", "type": "string"},
     {"name": "email", "type": ["null", "string"], "default": null},
     {"name": "plan", "type": "string", "default": "free"}]}') > :v2_id AS v3;
SELECT * FROM commitlog.produce('users', '{"id": 8, "name": "hal", "plan": "pro"}'::jsonb);
SELECT * FROM commitlog.produce('users', '{"id": 9, "name": "ida"}'::jsonb);
CREATE VIEW users_view AS
SELECT r.log_offset,
       (v->>'id')::bigint AS id,
       v->>'name' AS name,
       v->'email'->>'string' AS email,
       COALESCE(v->>'plan', 'free') AS plan
  FROM commitlog.fetch('users', 0, 0, 1000) r,
       LATERAL commitlog.decode_value('users', r.value) v;
SELECT * FROM users_view ORDER BY log_offset;
DROP VIEW users_view;

------------------------------------------------------------------------------
-- Keys: with a "<topic>-key" subject, keys must be in the wire format
------------------------------------------------------------------------------
SELECT commitlog.create_topic('keyed', 3);
SELECT commitlog.register_schema('keyed-key', '{"type": "record", "name": "Key", "fields": [{"name": "tenant", "type": "string"}, {"name": "n", "type": "int"}]}') > 0 AS key_schema;
SELECT partition = commitlog.partition_for_key('keyed', commitlog.encode_key('keyed', '{"tenant": "a", "n": 1}')) AS hashed_on_encoded_key
  FROM commitlog.produce('keyed', 'any value', key => commitlog.encode_key('keyed', '{"tenant": "a", "n": 1}'));
SELECT * FROM commitlog.produce('keyed', 'any value', key => 'raw key');
SELECT * FROM commitlog.produce('keyed', 'any value', key => commitlog.encode_key('keyed', '{"tenant": "a"}'));
SELECT commitlog.decode_key('keyed', key), convert_from(value, 'UTF8')
  FROM commitlog.fetch('keyed', commitlog.partition_for_key('keyed', commitlog.encode_key('keyed', '{"tenant": "a", "n": 1}')), 0);
-- a keyless record needs no key schema
SELECT count(*) FROM commitlog.produce('keyed', 'no key');

------------------------------------------------------------------------------
-- Topics without subjects are unchanged
------------------------------------------------------------------------------
SELECT commitlog.create_topic('plain');
SELECT * FROM commitlog.produce('plain', '{"any": ["json", 1]}'::jsonb);
SELECT * FROM commitlog.produce('plain', 'text');
SELECT convert_from(value, 'UTF8') FROM commitlog.fetch('plain', 0, 0);
SELECT convert_from(commitlog.encode_value('plain', '{"b": 1, "a": [true]}'), 'UTF8') AS no_schema_text;
SELECT commitlog.decode_value('plain', '\x00'::bytea || int4send(:v1_id) || '\x0a06656c69'::bytea) AS decodes_by_id;

------------------------------------------------------------------------------
-- Only a topic's owner changes its subjects
------------------------------------------------------------------------------
CREATE ROLE schemas_stranger;
SET ROLE schemas_stranger;
SELECT commitlog.register_schema('users-value', '"string"');
SELECT commitlog.set_compatibility('users-key', 'NONE');
SELECT commitlog.register_schema('no-such-topic-value', '"string"') > 0 AS free_subject;
RESET ROLE;
DROP ROLE schemas_stranger;

------------------------------------------------------------------------------
-- Test vectors from python3-avro (test/data/avro/gen.py): our encoding is
-- byte-identical, and we decode their bytes.  Only mismatches are printed.
------------------------------------------------------------------------------
CREATE TEMP TABLE vectors (name text, n int, schema text, value text, body text);
-- BEGIN gen.py vectors
INSERT INTO vectors VALUES
    ('primitives', 1, '{"type":"record","name":"Primitives","fields":[{"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"b","type":"boolean"},{"name":"s","type":"string"},{"name":"y","type":"bytes"},{"name":"n","type":"null"}]}', '{"i":1,"l":2,"f":3.5,"d":0.1,"b":true,"s":"hello","y":"AAH/","n":null}', '0204000060409a9999999999b93f010a68656c6c6f060001ff'),
    ('primitives', 2, '{"type":"record","name":"Primitives","fields":[{"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"b","type":"boolean"},{"name":"s","type":"string"},{"name":"y","type":"bytes"},{"name":"n","type":"null"}]}', '{"i":-1,"l":-64,"f":-0.25,"d":-1e+300,"b":false,"s":"ünïcødé ✓ 😀","y":"","n":null}', '017f000080be9c7500883ce437fe0028c3bc6ec3af63c3b864c3a920e29c9320f09f988000'),
    ('primitives', 3, '{"type":"record","name":"Primitives","fields":[{"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"b","type":"boolean"},{"name":"s","type":"string"},{"name":"y","type":"bytes"},{"name":"n","type":"null"}]}', '{"i":2147483647,"l":9223372036854775807,"f":0.1,"d":3.141592653589793,"b":true,"s":"","y":"AA==","n":null}', 'feffffff0ffeffffffffffffffff01cdcccc3d182d4454fb21094001000200'),
    ('primitives', 4, '{"type":"record","name":"Primitives","fields":[{"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"b","type":"boolean"},{"name":"s","type":"string"},{"name":"y","type":"bytes"},{"name":"n","type":"null"}]}', '{"i":-2147483648,"l":-9223372036854775808,"f":1e-10,"d":5e-324,"b":false,"s":"tab\there \"quoted\" back\\slash","y":"3q2+7w==","n":null}', 'ffffffff0fffffffffffffffffff01ffe6db2e010000000000000000387461620968657265202271756f74656422206261636b5c736c61736808deadbeef'),
    ('longs', 1, '"long"', '0', '00'),
    ('longs', 2, '"long"', '-1', '01'),
    ('longs', 3, '"long"', '1', '02'),
    ('longs', 4, '"long"', '63', '7e'),
    ('longs', 5, '"long"', '64', '8001'),
    ('longs', 6, '"long"', '-64', '7f'),
    ('longs', 7, '"long"', '-65', '8101'),
    ('longs', 8, '"long"', '2147483648', '8080808010'),
    ('longs', 9, '"long"', '-2147483649', '8180808010'),
    ('longs', 10, '"long"', '-9223372036854775808', 'ffffffffffffffffff01'),
    ('longs', 11, '"long"', '9223372036854775807', 'feffffffffffffffff01'),
    ('special_doubles', 1, '"double"', '"NaN"', '000000000000f87f'),
    ('special_doubles', 2, '"double"', '"Infinity"', '000000000000f07f'),
    ('special_doubles', 3, '"double"', '"-Infinity"', '000000000000f0ff'),
    ('special_doubles', 4, '"double"', '1.5', '000000000000f83f'),
    ('top_union', 1, '["null","string","long"]', 'null', '00'),
    ('top_union', 2, '["null","string","long"]', '{"string":"text"}', '020874657874'),
    ('top_union', 3, '["null","string","long"]', '{"long":-42}', '0453'),
    ('nested', 1, '{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"address","type":{"type":"record","name":"Address","fields":[{"name":"street","type":"string"},{"name":"zip","type":["null","int"],"default":null}]}},{"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},{"name":"hash","type":{"type":"fixed","name":"MD5","size":4}},{"name":"favourite","type":["null","Color","Address"]}]}', '{"id":7,"address":{"street":"Main St","zip":{"int":12345}},"color":"GREEN","hash":"AAECAw==","favourite":{"com.example.Color":"BLUE"}}', '0e0e4d61696e20537402f2c00102000102030204'),
    ('nested', 2, '{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"address","type":{"type":"record","name":"Address","fields":[{"name":"street","type":"string"},{"name":"zip","type":["null","int"],"default":null}]}},{"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},{"name":"hash","type":{"type":"fixed","name":"MD5","size":4}},{"name":"favourite","type":["null","Color","Address"]}]}', '{"id":-7,"address":{"street":"","zip":null},"color":"RED","hash":"/////w==","favourite":{"com.example.Address":{"street":"x","zip":null}}}', '0d000000ffffffff04027800'),
    ('nested', 3, '{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"address","type":{"type":"record","name":"Address","fields":[{"name":"street","type":"string"},{"name":"zip","type":["null","int"],"default":null}]}},{"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},{"name":"hash","type":{"type":"fixed","name":"MD5","size":4}},{"name":"favourite","type":["null","Color","Address"]}]}', '{"id":0,"address":{"street":"y","zip":{"int":-1}},"color":"BLUE","hash":"AAAAAA==","favourite":null}', '0002790201040000000000'),
    ('collections', 1, '{"type":"record","name":"Collections","fields":[{"name":"ints","type":{"type":"array","items":"int"}},{"name":"tags","type":{"type":"map","values":"string"}},{"name":"points","type":{"type":"array","items":{"type":"record","name":"Point","fields":[{"name":"x","type":"double"},{"name":"y","type":"double"}]}}},{"name":"nested","type":{"type":"map","values":{"type":"array","items":"long"}}},{"name":"maybe","type":{"type":"array","items":["null","string"]}}]}', '{"ints":[1,-2,300000],"tags":{"a":"1","b":"two"},"points":[{"x":1.5,"y":-2.5}],"nested":{"k":[1,-1,1099511627776]},"maybe":[null,{"string":"s"}]}', '060203c0cf2400040261023102620674776f0002000000000000f83f00000000000004c00002026b0602018080808080400000040002027300'),
    ('collections', 2, '{"type":"record","name":"Collections","fields":[{"name":"ints","type":{"type":"array","items":"int"}},{"name":"tags","type":{"type":"map","values":"string"}},{"name":"points","type":{"type":"array","items":{"type":"record","name":"Point","fields":[{"name":"x","type":"double"},{"name":"y","type":"double"}]}}},{"name":"nested","type":{"type":"map","values":{"type":"array","items":"long"}}},{"name":"maybe","type":{"type":"array","items":["null","string"]}}]}', '{"ints":[],"tags":{},"points":[],"nested":{},"maybe":[]}', '0000000000'),
    ('collections', 3, '{"type":"record","name":"Collections","fields":[{"name":"ints","type":{"type":"array","items":"int"}},{"name":"tags","type":{"type":"map","values":"string"}},{"name":"points","type":{"type":"array","items":{"type":"record","name":"Point","fields":[{"name":"x","type":"double"},{"name":"y","type":"double"}]}}},{"name":"nested","type":{"type":"map","values":{"type":"array","items":"long"}}},{"name":"maybe","type":{"type":"array","items":["null","string"]}}]}', '{"ints":[-70,-63,-56,-49,-42,-35,-28,-21,-14,-7,0,7,14,21,28,35,42,49,56,63],"tags":{"ключ":"значение"},"points":[{"x":0.0,"y":0.0},{"x":10000000000.0,"y":-1e-10}],"nested":{"empty":[],"one":[0]},"maybe":[null,null]}', '288b017d6f61534537291b0d000e1c2a38465462707e000210d0bad0bbd18ed18720d0b7d0bdd0b0d187d0b5d0bdd0b8d0b5000400000000000000000000000000000000000000205fa00242bbbdd7d9df7cdbbd0004066f6e650200000a656d707479000004000000'),
    ('linked_list', 1, '{"type":"record","name":"Node","fields":[{"name":"value","type":"int"},{"name":"next","type":["null","Node"]}]}', '{"value":1,"next":{"Node":{"value":2,"next":{"Node":{"value":3,"next":null}}}}}', '020204020600'),
    ('linked_list', 2, '{"type":"record","name":"Node","fields":[{"name":"value","type":"int"},{"name":"next","type":["null","Node"]}]}', '{"value":0,"next":null}', '0000'),
    ('decimal', 1, '{"type":"record","name":"Money","fields":[{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}]}', '{"amount":"MDk="}', '043039'),
    ('decimal', 2, '{"type":"record","name":"Money","fields":[{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}]}', '{"amount":"/w=="}', '02ff'),
    ('decimal', 3, '{"type":"record","name":"Money","fields":[{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}]}', '{"amount":"AQA="}', '040100');
-- END gen.py vectors
CREATE TEMP TABLE vector_ids AS
SELECT name, commitlog.register_schema('vec_' || name || '-value', schema) AS id
  FROM (SELECT DISTINCT name, schema FROM vectors ORDER BY name) s;
SELECT count(*) AS vectors, count(DISTINCT name) AS schemas FROM vectors;
-- encode: commitlog.encode_value gives python3-avro's bytes
SELECT v.name, v.n, v.body AS expected,
       encode(substr(commitlog.encode_value('vec_' || v.name, v.value::jsonb), 6), 'hex') AS ours
  FROM vectors v
 WHERE encode(commitlog.encode_value('vec_' || v.name, v.value::jsonb), 'hex')
       IS DISTINCT FROM '00' || encode(int4send((SELECT id FROM vector_ids i WHERE i.name = v.name)), 'hex') || v.body;
-- decode: python3-avro's bytes read back to the value
SELECT v.name, v.n, v.value AS expected, d AS ours
  FROM vectors v,
       LATERAL commitlog.decode_value('vec_' || v.name,
                 '\x00'::bytea || int4send((SELECT id FROM vector_ids i WHERE i.name = v.name))
                 || decode(v.body, 'hex')) d
 WHERE d IS DISTINCT FROM v.value::jsonb;
-- and through produce and fetch, as a consumer would see them
SELECT commitlog.create_topic('vec_nested');
SELECT count(*) AS produced FROM vectors v,
       LATERAL commitlog.produce('vec_nested', v.value::jsonb)
 WHERE v.name = 'nested';
SELECT (commitlog.decode_value('vec_nested', f.value) = v.value::jsonb) AS same, v.n
  FROM commitlog.fetch('vec_nested', 0, 0) f
  JOIN vectors v ON v.name = 'nested' AND v.n = f.log_offset + 1
 ORDER BY v.n;
-- bare union values are accepted on input and come back wrapped
SELECT commitlog.decode_value('vec_top_union', commitlog.encode_value('vec_top_union', '"text"')),
       commitlog.decode_value('vec_top_union', commitlog.encode_value('vec_top_union', '-42')),
       commitlog.decode_value('vec_top_union', commitlog.encode_value('vec_top_union', 'null'));
SELECT commitlog.encode_value('vec_top_union', '1.5');
SELECT commitlog.encode_value('vec_nested', '{"id": 1, "address": {"street": "s", "zip": "x"}, "color": "RED", "hash": "AAAAAA==", "favourite": null}');
SELECT commitlog.encode_value('vec_nested', '{"id": 1, "address": {"street": "s"}, "color": "PURPLE", "hash": "AAAAAA==", "favourite": null}');
SELECT commitlog.encode_value('vec_nested', '{"id": 1, "address": {"street": "s"}, "color": "RED", "hash": "AAAA", "favourite": null}');
SELECT commitlog.encode_value('vec_collections', '{"ints": [1, "2"], "tags": {}, "points": [], "nested": {}, "maybe": []}');
SELECT commitlog.encode_value('vec_collections', '{"ints": [], "tags": {"k": 1}, "points": [], "nested": {}, "maybe": []}');
SELECT commitlog.encode_value('vec_collections', '{"ints": [], "tags": {}, "points": [], "nested": {"k": [1, 2.5]}, "maybe": []}');
SELECT commitlog.encode_value('vec_longs', '9223372036854775808');
SELECT commitlog.encode_value('vec_primitives', '{"i": 2147483648, "l": 0, "f": 0, "d": 0, "b": true, "s": "", "y": "", "n": null}');
SELECT commitlog.encode_value('vec_primitives', '{"i": 0, "l": 0, "f": 0, "d": 0, "b": true, "s": "", "y": "not base64!", "n": null}');
-- defaults are written as the Avro specification says (bytes and fixed as
-- characters U+0000..U+00FF, a union's as its first branch) and fill in
-- every field the jsonb leaves out
SELECT commitlog.register_schema('defaults-value', '{"type": "record", "name": "D", "fields": [
  {"name": "raw", "type": "bytes", "default": "\u00ff\u0001"},
  {"name": "tag", "type": {"type": "fixed", "name": "T", "size": 2}, "default": "ab"},
  {"name": "u", "type": ["long", "null"], "default": 7},
  {"name": "nested", "type": {"type": "record", "name": "N", "fields": [{"name": "x", "type": "int"}]}, "default": {"x": 1}},
  {"name": "list", "type": {"type": "array", "items": "string"}, "default": ["a"]},
  {"name": "color", "type": {"type": "enum", "name": "C", "symbols": ["R", "G"]}, "default": "G"}]}') > 0 AS registered;
SELECT commitlog.decode_value('defaults', commitlog.encode_value('defaults', '{}'));
SELECT commitlog.decode_value('defaults', commitlog.encode_value('defaults', '{"raw": "AA==", "u": null, "list": []}'));
-- hostile bytes: huge counts and lengths are refused before any allocation
SELECT commitlog.decode_value('vec_collections', '\x00'::bytea || int4send((SELECT id FROM vector_ids WHERE name = 'collections')) || '\xfeffffffffffffff01'::bytea);
SELECT commitlog.decode_value('vec_collections', '\x00'::bytea || int4send((SELECT id FROM vector_ids WHERE name = 'collections')) || '\x0002feffffffffffffff01'::bytea);
SELECT commitlog.decode_value('vec_primitives', '\x00'::bytea || int4send((SELECT id FROM vector_ids WHERE name = 'primitives')) || '\x0202'::bytea);
