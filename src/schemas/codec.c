/*-------------------------------------------------------------------------
 *
 * codec.c
 *		Confluent's wire format, and the SQL functions encode_value,
 *		encode_key, decode_value and decode_key.
 *
 * A record is the magic byte 0, the schema id as a 4-byte big-endian
 * integer, and the Avro binary encoding of the value (no container
 * header, no sync markers).  The Avro C library writes and reads the body.
 *
 * Bytes from outside (produce of bytea, decode of any stored record) are
 * first checked here against the schema, before the library sees them:
 * the library trusts lengths and counts (a string length of 2^60, an
 * array of 2^60 nulls in six bytes) and reports few errors by field.  The
 * check walks the schema over the bytes, bounds every length by what is
 * left, bounds the total number of array and map items by the size of the
 * input, checks UTF-8, and names the field where the data goes wrong.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "schemas/schemas.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(encode_value);
PG_FUNCTION_INFO_V1(encode_key);
PG_FUNCTION_INFO_V1(decode_value);
PG_FUNCTION_INFO_V1(decode_key);

/* zero-width items (nulls, empty records) an input may declare beyond its size */
#define SCHEMAS_EXTRA_ITEMS	65536

typedef struct ReadState
{
	const unsigned char *p;
	const unsigned char *end;
	int64		items_left;
	const SchemaWhere *where;
	StringInfoData path;
} ReadState;

/* Bytes that do not match the schema: name the field. */
static void
pg_attribute_noreturn()
read_error(ReadState *rs, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Avro data for field \"%s\": %s",
					rs->path.len > 0 ? rs->path.data : "(the whole value)", problem),
			 rs->where->subject
			 ? errdetail("The record names schema %d (subject \"%s\") and its bytes must be that schema's Avro binary encoding.",
						 rs->where->id, rs->where->subject)
			 : errdetail("The record names schema %d and its bytes must be that schema's Avro binary encoding.",
						 rs->where->id)));
}

/* A zig-zag varint long. */
static int64
read_long(ReadState *rs)
{
	uint64		v = 0;
	int			shift = 0;

	for (;;)
	{
		unsigned char b;

		if (rs->p >= rs->end)
			read_error(rs, "the data ends inside a number");
		b = *rs->p++;
		v |= (uint64) (b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
		shift += 7;
		if (shift > 63)
			read_error(rs, "a number is longer than 10 bytes");
	}
	return (int64) (v >> 1) ^ -(int64) (v & 1);
}

/* A length: 0 <= n <= bytes left. */
static int64
read_length(ReadState *rs, const char *what)
{
	int64		n = read_long(rs);

	if (n < 0 || n > rs->end - rs->p)
		read_error(rs, psprintf("%s length " INT64_FORMAT " is negative or runs past the end of the data",
								what, n));
	return n;
}

/* A string: a length, then that many bytes of UTF-8. */
static void
read_string(ReadState *rs)
{
	int64		n = read_length(rs, "string");

	if (!pg_verify_mbstr(PG_UTF8, (const char *) rs->p, (int) n, true))
		read_error(rs, "a string is not valid UTF-8 (or contains a NUL)");
	rs->p += n;
}

static void check_value(ReadState *rs, avro_schema_t schema);

/* Array or map blocks: count, [byte size,] items; a zero count ends. */
static void
check_blocks(ReadState *rs, avro_schema_t items, bool is_map)
{
	int			saved = rs->path.len;

	appendStringInfoString(&rs->path, is_map ? "{}" : "[]");
	for (;;)
	{
		int64		count = read_long(rs);

		if (count == 0)
			break;
		if (count < 0)
		{
			if (count == PG_INT64_MIN)
				read_error(rs, "a block count is out of range");
			count = -count;
			(void) read_length(rs, "block");
		}
		rs->items_left -= count;
		if (rs->items_left < 0)
			read_error(rs, "more array or map items than the data can hold");
		for (int64 i = 0; i < count; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (is_map)
				read_string(rs);
			check_value(rs, items);
		}
	}
	rs->path.len = saved;
	rs->path.data[saved] = '\0';
}

/* Skip one value of schema, checking it. */
static void
check_value(ReadState *rs, avro_schema_t schema)
{
	int64		n;

	check_stack_depth();
	schema = SchemasResolveLink(schema);
	switch (avro_typeof(schema))
	{
		case AVRO_NULL:
			break;
		case AVRO_BOOLEAN:
			if (rs->p >= rs->end || *rs->p > 1)
				read_error(rs, "a boolean is missing or not 0 or 1");
			rs->p++;
			break;
		case AVRO_INT32:
			n = read_long(rs);
			if (n < PG_INT32_MIN || n > PG_INT32_MAX)
				read_error(rs, "an int is out of range");
			break;
		case AVRO_INT64:
			(void) read_long(rs);
			break;
		case AVRO_FLOAT:
		case AVRO_DOUBLE:
			n = avro_typeof(schema) == AVRO_FLOAT ? 4 : 8;
			if (rs->end - rs->p < n)
				read_error(rs, "the data ends inside a floating-point number");
			rs->p += n;
			break;
		case AVRO_STRING:
			read_string(rs);
			break;
		case AVRO_BYTES:
			rs->p += read_length(rs, "bytes");
			break;
		case AVRO_FIXED:
			if (rs->end - rs->p < avro_schema_fixed_size(schema))
				read_error(rs, "the data ends inside a fixed");
			rs->p += avro_schema_fixed_size(schema);
			break;
		case AVRO_ENUM:
			n = read_long(rs);
			if (n < 0 || n >= avro_schema_enum_number_of_symbols(schema))
				read_error(rs, psprintf("enum index " INT64_FORMAT " is not a symbol of %s",
										n, avro_schema_name(schema)));
			break;
		case AVRO_UNION:
			n = read_long(rs);
			if (n < 0 || n >= (int64) avro_schema_union_size(schema))
				read_error(rs, psprintf("union branch " INT64_FORMAT " does not exist", n));
			check_value(rs, avro_schema_union_branch(schema, (int) n));
			break;
		case AVRO_ARRAY:
			check_blocks(rs, avro_schema_array_items(schema), false);
			break;
		case AVRO_MAP:
			check_blocks(rs, avro_schema_map_values(schema), true);
			break;
		case AVRO_RECORD:
			{
				int			saved = rs->path.len;

				for (size_t i = 0; i < avro_schema_record_size(schema); i++)
				{
					appendStringInfo(&rs->path, "%s%s", saved ? "." : "",
									 avro_schema_record_field_name(schema, (int) i));
					check_value(rs, avro_schema_record_field_get_by_index(schema, (int) i));
					rs->path.len = saved;
					rs->path.data[saved] = '\0';
				}
				break;
			}
		default:
			elog(ERROR, "unexpected Avro type %d", (int) avro_typeof(schema));
	}
}

/* Check that body is one value of schema s, all of it. */
void
SchemasValidate(AvroSchema *s, const char *body, int len, const SchemaWhere *where)
{
	ReadState	rs;

	rs.p = (const unsigned char *) body;
	rs.end = rs.p + len;
	rs.items_left = (int64) len + SCHEMAS_EXTRA_ITEMS;
	rs.where = where;
	initStringInfo(&rs.path);
	check_value(&rs, s->schema);
	if (rs.p != rs.end)
		read_error(&rs, rs.end - rs.p == 1 ? pstrdup("1 byte follows the end of the value")
				   : psprintf("%d bytes follow the end of the value", (int) (rs.end - rs.p)));
}

/* The schema id of a record in the wire format; what is "value" or "key". */
int32
SchemasWireId(const char *data, int len, const char *what, const SchemaWhere *where)
{
	const unsigned char *p = (const unsigned char *) data;

	if (len < SCHEMAS_HEADER_BYTES || p[0] != SCHEMAS_MAGIC_BYTE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not in the schema registry's wire format", what),
				 errdetail("Records of subject \"%s\" are a magic byte 0, a 4-byte schema id and an Avro body; this %s %s.",
						   where->subject, what,
						   len < SCHEMAS_HEADER_BYTES ? "is shorter than 5 bytes" : "starts with another byte"),
				 errhint("Produce jsonb (encoded with the latest schema), or encode with commitlog.encode_%s().",
						 what)));
	return (int32) (((uint32) p[1] << 24) | ((uint32) p[2] << 16) | ((uint32) p[3] << 8) | p[4]);
}

/* Decode an Avro body of schema s (checked first) to jsonb. */
Jsonb *
SchemasDecode(AvroSchema *s, const char *body, int len, const SchemaWhere *where)
{
	static avro_reader_t reader = NULL;
	avro_value_t *val;

	SchemasValidate(s, body, len, where);
	if (reader == NULL)
		reader = avro_reader_memory(body, len);
	else
		avro_reader_memory_set_source(reader, body, len);
	if (reader == NULL)
		elog(ERROR, "could not make an Avro reader");
	val = SchemasValue(s);
	if (avro_value_read(reader, val) != 0)
		elog(ERROR, "could not read checked Avro data of schema %d: %s", where->id, avro_strerror());
	return SchemasAvroToJsonb(val);
}

/* Encode jb with schema s in the wire format. */
bytea *
SchemasEncode(AvroSchema *s, Jsonb *jb, const SchemaWhere *where)
{
	static avro_writer_t writer = NULL;
	avro_value_t *val = SchemasValue(s);
	size_t		size;
	bytea	   *out;
	unsigned char *p;

	SchemasJsonbToAvro(s, jb, val, where);
	if (avro_value_sizeof(val, &size) != 0)
		elog(ERROR, "could not size an Avro value: %s", avro_strerror());
	if (size > MaxAllocSize - VARHDRSZ - SCHEMAS_HEADER_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("encoded value of %zu bytes is too large", size)));
	out = palloc(VARHDRSZ + SCHEMAS_HEADER_BYTES + size);
	SET_VARSIZE(out, VARHDRSZ + SCHEMAS_HEADER_BYTES + size);
	p = (unsigned char *) VARDATA(out);
	p[0] = SCHEMAS_MAGIC_BYTE;
	p[1] = (s->id >> 24) & 0xff;
	p[2] = (s->id >> 16) & 0xff;
	p[3] = (s->id >> 8) & 0xff;
	p[4] = s->id & 0xff;
	if (writer == NULL)
		writer = avro_writer_memory((char *) p + SCHEMAS_HEADER_BYTES, size);
	else
		avro_writer_memory_set_dest(writer, (char *) p + SCHEMAS_HEADER_BYTES, size);
	if (writer == NULL || avro_value_write(writer, val) != 0)
		elog(ERROR, "could not write an Avro value: %s", avro_strerror());
	return out;
}

/* encode_value / encode_key: the latest schema of the subject, else JSON text. */
static Datum
encode_common(FunctionCallInfo fcinfo, bool key)
{
	char	   *topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *jb = PG_GETARG_JSONB_P(1);
	const SchemasSubject *sub = SchemasSubjectOf(topic, key);
	SchemaWhere where;
	char	   *json;

	if (sub->n == 0)
	{
		/* no schema: what produce(topic, jsonb) always stored */
		json = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
		json = pg_server_to_any(json, strlen(json), PG_UTF8);
		PG_RETURN_BYTEA_P(cstring_to_text(json));
	}
	/* copies: looking the schema up may drop the cache */
	where.subject = pstrdup(sub->subject);
	where.id = sub->ids[sub->n - 1];
	PG_RETURN_BYTEA_P(SchemasEncode(SchemasById(where.id, false), jb, &where));
}

/* decode_value / decode_key: with the writer's schema, named by the record. */
static Datum
decode_common(FunctionCallInfo fcinfo, bool key)
{
	char	   *topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bytea	   *data = PG_GETARG_BYTEA_PP(1);
	SchemaWhere where;
	AvroSchema *s;

	where.subject = psprintf("%s-%s", topic, key ? "key" : "value");
	where.id = SchemasWireId(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data), key ? "key" : "value", &where);
	s = SchemasById(where.id, true);
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("schema %d is not registered", where.id),
				 errdetail("The %s names schema id %d, which commitlog.schema_list does not have.",
						   key ? "key" : "value", where.id),
				 errhint("A record written by another registry needs its schemas registered here, in the same order, so that the ids agree.")));
	PG_RETURN_JSONB_P(SchemasDecode(s, VARDATA_ANY(data) + SCHEMAS_HEADER_BYTES,
									VARSIZE_ANY_EXHDR(data) - SCHEMAS_HEADER_BYTES, &where));
}

/* encode_value(topic text, value jsonb) RETURNS bytea */
Datum
encode_value(PG_FUNCTION_ARGS)
{
	return encode_common(fcinfo, false);
}

/* encode_key(topic text, key jsonb) RETURNS bytea */
Datum
encode_key(PG_FUNCTION_ARGS)
{
	return encode_common(fcinfo, true);
}

/* decode_value(topic text, value bytea) RETURNS jsonb */
Datum
decode_value(PG_FUNCTION_ARGS)
{
	return decode_common(fcinfo, false);
}

/* decode_key(topic text, key bytea) RETURNS jsonb */
Datum
decode_key(PG_FUNCTION_ARGS)
{
	return decode_common(fcinfo, true);
}
