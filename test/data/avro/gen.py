#!/usr/bin/python3
"""Test vectors for the schema registry, written by an independent Avro
implementation: Debian's python3-avro (the pure-Python Apache Avro).

Each case is a schema and values in pg_commitlog's jsonb conventions
(docs/schemas.md: a union's value is null or {"<branch>": value}, bytes and
fixed are base64, NaN and infinities are strings).  This script turns each
value into the datum Apache Avro expects, encodes it with avro.io, and
writes

  test/data/avro/vectors.tsv         name, schema, value (jsonb), body (hex)
  the block between the gen.py markers in sql/schemas.sql (the same rows
  as VALUES, so that the regression test needs no file access)

The regression test checks that commitlog.encode_value gives these bytes,
byte for byte, and that commitlog.decode_value reads them back to the
value.  Run it after changing a case:  /usr/bin/python3 test/data/avro/gen.py
"""
import base64
import decimal
import io
import json
import math
import os
import sys

import avro.io
import avro.schema

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

CASES = [
    ("primitives",
     {"type": "record", "name": "Primitives", "fields": [
         {"name": "i", "type": "int"},
         {"name": "l", "type": "long"},
         {"name": "f", "type": "float"},
         {"name": "d", "type": "double"},
         {"name": "b", "type": "boolean"},
         {"name": "s", "type": "string"},
         {"name": "y", "type": "bytes"},
         {"name": "n", "type": "null"}]},
     [{"i": 1, "l": 2, "f": 3.5, "d": 0.1, "b": True, "s": "hello", "y": "AAH/", "n": None},
      {"i": -1, "l": -64, "f": -0.25, "d": -1e300, "b": False, "s": "ünïcødé ✓ 😀",
       "y": "", "n": None},
      {"i": 2147483647, "l": 9223372036854775807, "f": 0.1, "d": 3.141592653589793, "b": True,
       "s": "", "y": "AA==", "n": None},
      {"i": -2147483648, "l": -9223372036854775808, "f": 1e-10, "d": 5e-324, "b": False,
       "s": "tab\there \"quoted\" back\\slash", "y": "3q2+7w==", "n": None}]),
    ("longs", "long",
     [0, -1, 1, 63, 64, -64, -65, 2147483648, -2147483649, -9223372036854775808,
      9223372036854775807]),
    ("special_doubles", "double", ["NaN", "Infinity", "-Infinity", 1.5]),
    ("top_union", ["null", "string", "long"],
     [None, {"string": "text"}, {"long": -42}]),
    ("nested",
     {"type": "record", "name": "User", "namespace": "com.example", "fields": [
         {"name": "id", "type": "long"},
         {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
             {"name": "street", "type": "string"},
             {"name": "zip", "type": ["null", "int"], "default": None}]}},
         {"name": "color", "type": {"type": "enum", "name": "Color",
                                    "symbols": ["RED", "GREEN", "BLUE"]}},
         {"name": "hash", "type": {"type": "fixed", "name": "MD5", "size": 4}},
         {"name": "favourite", "type": ["null", "Color", "Address"]}]},
     [{"id": 7, "address": {"street": "Main St", "zip": {"int": 12345}}, "color": "GREEN",
       "hash": "AAECAw==", "favourite": {"com.example.Color": "BLUE"}},
      {"id": -7, "address": {"street": "", "zip": None}, "color": "RED",
       "hash": "/////w==", "favourite": {"com.example.Address": {"street": "x", "zip": None}}},
      {"id": 0, "address": {"street": "y", "zip": {"int": -1}}, "color": "BLUE",
       "hash": "AAAAAA==", "favourite": None}]),
    ("collections",
     {"type": "record", "name": "Collections", "fields": [
         {"name": "ints", "type": {"type": "array", "items": "int"}},
         {"name": "tags", "type": {"type": "map", "values": "string"}},
         {"name": "points", "type": {"type": "array", "items": {
             "type": "record", "name": "Point", "fields": [
                 {"name": "x", "type": "double"}, {"name": "y", "type": "double"}]}}},
         {"name": "nested", "type": {"type": "map", "values": {"type": "array", "items": "long"}}},
         {"name": "maybe", "type": {"type": "array", "items": ["null", "string"]}}]},
     [{"ints": [1, -2, 300000], "tags": {"a": "1", "b": "two"},
       "points": [{"x": 1.5, "y": -2.5}], "nested": {"k": [1, -1, 1099511627776]},
       "maybe": [None, {"string": "s"}]},
      {"ints": [], "tags": {}, "points": [], "nested": {}, "maybe": []},
      {"ints": list(range(-70, 70, 7)), "tags": {"ключ": "значение"},
       "points": [{"x": 0.0, "y": 0.0}, {"x": 1e10, "y": -1e-10}],
       "nested": {"empty": [], "one": [0]}, "maybe": [None, None]}]),
    ("linked_list",
     {"type": "record", "name": "Node", "fields": [
         {"name": "value", "type": "int"},
         {"name": "next", "type": ["null", "Node"]}]},
     [{"value": 1, "next": {"Node": {"value": 2, "next": {"Node": {"value": 3, "next": None}}}}},
      {"value": 0, "next": None}]),
    # decimals are read and written as their underlying bytes (two's
    # complement, big-endian unscaled value): 123.45 at scale 2 is 12345
    ("decimal",
     {"type": "record", "name": "Money", "fields": [
         {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                     "precision": 9, "scale": 2}}]},
     [{"amount": "MDk="}, {"amount": "/w=="}, {"amount": "AQA="}]),
]


def branch_name(s):
    return s.fullname if isinstance(s, avro.schema.NamedSchema) else s.type


def to_datum(s, v):
    """A value in pg_commitlog's jsonb conventions as Apache Avro's datum."""
    t = s.type
    if t == "union":
        if v is None:
            return None
        (name, inner), = v.items()
        for b in s.schemas:
            if branch_name(b) == name:
                return to_datum(b, inner)
        raise ValueError("no branch %s" % name)
    if t == "record" or t == "error":
        return {f.name: to_datum(f.type, v[f.name]) for f in s.fields}
    if t == "array":
        return [to_datum(s.items, e) for e in v]
    if t == "map":
        # pg_commitlog writes a map's entries in jsonb's key order (shorter
        # keys first, then bytewise); Avro maps are unordered, so write the
        # same order to compare bytes
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return {k: to_datum(s.values, v[k]) for k in keys}
    if t in ("bytes", "fixed"):
        raw = base64.b64decode(v)
        if getattr(s, "logical_type", None) == "decimal" or s.get_prop("logicalType") == "decimal":
            unscaled = int.from_bytes(raw, "big", signed=True)
            return decimal.Decimal(unscaled).scaleb(-s.get_prop("scale"))
        return raw
    if t in ("float", "double"):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v) \
            if isinstance(v, str) else float(v)
    return v


def encode(schema_json, value):
    s = avro.schema.parse(json.dumps(schema_json))
    buf = io.BytesIO()
    avro.io.DatumWriter(s).write(to_datum(s, value), avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def sql_literal(text):
    return "'" + text.replace("'", "''") + "'"


def main():
    rows = []
    for name, schema, values in CASES:
        for n, value in enumerate(values, 1):
            body = encode(schema, value)
            rows.append((name, n, json.dumps(schema, separators=(",", ":")),
                         json.dumps(value, ensure_ascii=False, separators=(",", ":")), body.hex()))

    with open(os.path.join(HERE, "vectors.tsv"), "w", encoding="utf-8") as f:
        f.write("# written by gen.py (python3-avro %s): case, n, schema, value, avro body (hex)\n"
                % avro.__version__)
        for r in rows:
            f.write("\t".join(str(c) for c in r) + "\n")

    values = ",\n".join("    (%s, %d, %s, %s, %s)" % (sql_literal(r[0]), r[1], sql_literal(r[2]),
                                                       sql_literal(r[3]), sql_literal(r[4]))
                        for r in rows)
    block = "INSERT INTO vectors VALUES\n" + values + ";\n"
    path = os.path.join(REPO, "sql", "schemas.sql")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    begin = "-- BEGIN gen.py vectors\n"
    end = "-- END gen.py vectors\n"
    if begin not in text or end not in text:
        sys.exit("gen.py: markers missing in sql/schemas.sql")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + begin + block + end + tail)
    print("gen.py: %d vectors" % len(rows))


if __name__ == "__main__":
    main()
