/*-------------------------------------------------------------------------
 *
 * avro_json.c
 *		jsonb to Avro values and back, following Avro's JSON encoding.
 *
 * Conventions (docs/schemas.md):
 *	- a union's value is null for its null branch, else {"<branch>": value}
 *	  where <branch> is the type name ("string", "long", "array", ...) or a
 *	  named type's full name.  On input a bare value is accepted too: the
 *	  first branch that takes a JSON value of its kind is used;
 *	- bytes and fixed are base64 strings (jsonb cannot hold the U+0000 that
 *	  Avro's own \u00XX convention would need); field defaults, which the
 *	  Avro specification writes in that convention, are read in it;
 *	- float and double NaN and infinities are the strings "NaN",
 *	  "Infinity" and "-Infinity";
 *	- a record field missing from the jsonb takes its default; a key that
 *	  is no field of the record is an error, so a misspelt field is caught.
 *
 * Every data error names the field (a path like address.zip or
 * items[2]), because a producer must be able to find the mistake.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "schemas/schemas.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/float.h"
#include "utils/numeric.h"

typedef struct EncodeState
{
	AvroSchema *s;
	const SchemaWhere *where;	/* NULL: checking a default of the schema */
	StringInfoData path;
} EncodeState;

/* A value that does not match the schema: name the field. */
static void
pg_attribute_noreturn()
encode_error(EncodeState *es, const char *problem)
{
	const char *field = es->path.len > 0 ? es->path.data : "(the whole value)";

	if (es->where == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Avro schema: default of field \"%s\" %s", field, problem),
				 errhint("A default must be a value of the field's type; for a union, of its first branch.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for field \"%s\": %s", field, problem),
			 es->where->subject
			 ? errdetail("The value must match schema %d, the latest version of subject \"%s\".",
						 es->where->id, es->where->subject)
			 : errdetail("The value must match schema %d.", es->where->id)));
}

/* What kind of JSON value v is, for messages. */
static const char *
json_kind(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "a JSON value";
	}
}

/* Is v a JSON object (or, with object false, an array)? */
static bool
json_is(JsonbValue *v, bool object)
{
	return v->type == jbvBinary &&
		(object ? JsonContainerIsObject(v->val.binary.data) : JsonContainerIsArray(v->val.binary.data));
}

/* An integral number within [min, max], else false. */
static bool
json_integer(JsonbValue *v, int64 min, int64 max, int64 *out)
{
	Datum		n;

	if (v->type != jbvNumeric || numeric_is_nan(v->val.numeric) || numeric_is_inf(v->val.numeric))
		return false;
	n = NumericGetDatum(v->val.numeric);
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, n,
										  DirectFunctionCall2(numeric_trunc, n, Int32GetDatum(0)))))
		return false;
	if (DatumGetBool(DirectFunctionCall2(numeric_lt, n, NumericGetDatum(int64_to_numeric(min)))) ||
		DatumGetBool(DirectFunctionCall2(numeric_gt, n, NumericGetDatum(int64_to_numeric(max)))))
		return false;
	*out = DatumGetInt64(DirectFunctionCall1(numeric_int8, n));
	return true;
}

/* A number, or one of the strings NaN, Infinity, -Infinity. */
static bool
json_double(JsonbValue *v, double *out)
{
	if (v->type == jbvNumeric)
	{
		*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
		return true;
	}
	if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

		if (strcmp(s, "NaN") == 0)
			*out = get_float8_nan();
		else if (strcmp(s, "Infinity") == 0)
			*out = get_float8_infinity();
		else if (strcmp(s, "-Infinity") == 0)
			*out = -get_float8_infinity();
		else
			return false;
		return true;
	}
	return false;
}

/*
 * Bytes from a JSON string: base64 for data, Avro's one-character-per-byte
 * convention (U+0000..U+00FF) for defaults in a schema.
 */
static char *
json_bytes(EncodeState *es, JsonbValue *v, bool deflt, int *len)
{
	char	   *out;

	if (v->type != jbvString)
		encode_error(es, psprintf("expected a %s string, found %s",
								  deflt ? "bytes" : "base64", json_kind(v)));
	if (deflt && GetDatabaseEncoding() == PG_UTF8)
	{
		const unsigned char *p = (const unsigned char *) v->val.string.val;
		const unsigned char *end = p + v->val.string.len;

		out = palloc(v->val.string.len + 1);
		*len = 0;
		for (; p < end; p += pg_utf_mblen(p))
		{
			pg_wchar	c = utf8_to_unicode(p);

			if (c > 0xff)
				encode_error(es, "is a bytes string with a character above U+00FF");
			out[(*len)++] = (char) c;
		}
		return out;
	}
	if (deflt)
	{
		*len = v->val.string.len;
		return pnstrdup(v->val.string.val, *len);
	}
	out = palloc(pg_b64_dec_len(v->val.string.len) + 1);
	*len = pg_b64_decode(v->val.string.val, v->val.string.len, out,
						 pg_b64_dec_len(v->val.string.len));
	if (*len < 0)
		encode_error(es, "expected a base64 string, found a string that is not base64");
	return out;
}

/* Does branch b take the JSON value v as it is (a bare union value)? */
static bool
branch_takes(avro_schema_t b, JsonbValue *v)
{
	int64		i;
	double		d;

	b = SchemasResolveLink(b);
	switch (avro_typeof(b))
	{
		case AVRO_NULL:
			return v->type == jbvNull;
		case AVRO_BOOLEAN:
			return v->type == jbvBool;
		case AVRO_INT32:
			return json_integer(v, PG_INT32_MIN, PG_INT32_MAX, &i);
		case AVRO_INT64:
			return json_integer(v, PG_INT64_MIN, PG_INT64_MAX, &i);
		case AVRO_FLOAT:
		case AVRO_DOUBLE:
			return json_double(v, &d);
		case AVRO_STRING:
		case AVRO_BYTES:
		case AVRO_FIXED:
			return v->type == jbvString;
		case AVRO_ENUM:
			return v->type == jbvString &&
				avro_schema_enum_get_by_name(b, pnstrdup(v->val.string.val, v->val.string.len)) >= 0;
		case AVRO_RECORD:
		case AVRO_MAP:
			return json_is(v, true);
		case AVRO_ARRAY:
			return json_is(v, false);
		default:
			return false;
	}
}

/*
 * The union branch for v: {"<branch>": x} names it (x is then the value),
 * else the first branch that takes v.  A default takes the first branch.
 */
static int
union_branch(EncodeState *es, avro_schema_t u, JsonbValue **v, bool deflt)
{
	int			n = (int) avro_schema_union_size(u);
	StringInfoData names;

	if (deflt)
		return 0;
	if (json_is(*v, true) && JsonContainerSize((*v)->val.binary.data) == 1)
	{
		JsonbIterator *it = JsonbIteratorInit((*v)->val.binary.data);
		JsonbValue	k;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
			if (tok == WJB_KEY)
			{
				char	   *key = pnstrdup(k.val.string.val, k.val.string.len);

				for (int i = 0; i < n; i++)
				{
					avro_schema_t b = SchemasResolveLink(avro_schema_union_branch(u, i));

					if (strcmp(key, SchemasBranchName(b)) == 0 ||
						(is_avro_named_type(b) && strcmp(key, avro_schema_name(b)) == 0))
					{
						*v = getKeyJsonValueFromContainer((*v)->val.binary.data, k.val.string.val,
														  k.val.string.len, NULL);
						return i;
					}
				}
			}
	}
	for (int i = 0; i < n; i++)
		if (branch_takes(avro_schema_union_branch(u, i), *v))
			return i;

	initStringInfo(&names);
	for (int i = 0; i < n; i++)
		appendStringInfo(&names, "%s%s", i ? ", " : "", SchemasBranchName(avro_schema_union_branch(u, i)));
	encode_error(es, psprintf("no branch of the union [%s] takes %s", names.data, json_kind(*v)));
}

static void encode(EncodeState *es, JsonbValue *v, avro_value_t *val, bool deflt);

/* A record from a JSON object: each field, or its default. */
static void
encode_record(EncodeState *es, JsonbValue *v, avro_value_t *val, bool deflt)
{
	avro_schema_t schema = avro_value_get_schema(val);
	const SchemaNamed *info = SchemasNamedInfo(es->s, schema);
	size_t		n;
	int			saved = es->path.len;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (!json_is(v, true))
		encode_error(es, psprintf("expected an object (record %s), found %s",
								  avro_schema_name(schema), json_kind(v)));
	/* unknown keys first: a misspelt field reads better than a missing one */
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		if (tok == WJB_KEY &&
			avro_schema_record_field_get_index(schema, pnstrdup(k.val.string.val, k.val.string.len)) < 0)
		{
			appendStringInfo(&es->path, "%s%.*s", saved ? "." : "", k.val.string.len, k.val.string.val);
			encode_error(es, psprintf("record %s has no such field", avro_schema_name(schema)));
		}

	avro_value_get_size(val, &n);
	for (size_t i = 0; i < n; i++)
	{
		avro_value_t field;
		const char *name;
		JsonbValue *fv;

		avro_value_get_by_index(val, i, &field, &name);
		appendStringInfo(&es->path, "%s%s", saved ? "." : "", name);
		fv = getKeyJsonValueFromContainer(v->val.binary.data, name, strlen(name), NULL);
		if (fv != NULL)
			encode(es, fv, &field, deflt);
		else if (info && info->fields[i].default_value)
		{
			Jsonb	   *def = info->fields[i].default_value;
			JsonbValue	dv;

			if (JB_ROOT_IS_SCALAR(def))
				JsonbExtractScalar(&def->root, &dv);
			else
			{
				dv.type = jbvBinary;
				dv.val.binary.data = &def->root;
				dv.val.binary.len = VARSIZE(def) - VARHDRSZ;
			}
			encode(es, &dv, &field, true);
		}
		else
			encode_error(es, "is missing and has no default");
		es->path.len = saved;
		es->path.data[saved] = '\0';
	}
}

/* An array or map: elements or entries, with the path of each. */
static void
encode_container(EncodeState *es, JsonbValue *v, avro_value_t *val, bool deflt, bool is_map)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	int			saved = es->path.len;
	int			i = 0;
	char	   *key = NULL;

	if (!json_is(v, is_map))
		encode_error(es, psprintf("expected %s, found %s", is_map ? "an object (map)" : "an array",
								  json_kind(v)));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		avro_value_t child;

		CHECK_FOR_INTERRUPTS();
		if (tok == WJB_KEY)
		{
			key = pnstrdup(e.val.string.val, e.val.string.len);
			continue;
		}
		if (tok != WJB_ELEM && tok != WJB_VALUE)
			continue;
		if (is_map)
		{
			char	   *ukey = pg_server_to_any(key, strlen(key), PG_UTF8);

			appendStringInfo(&es->path, "[\"%s\"]", key);
			if (avro_value_add(val, ukey, &child, NULL, NULL) != 0)
				elog(ERROR, "could not add an Avro map entry: %s", avro_strerror());
		}
		else
		{
			appendStringInfo(&es->path, "[%d]", i++);
			if (avro_value_append(val, &child, NULL) != 0)
				elog(ERROR, "could not append an Avro array element: %s", avro_strerror());
		}
		encode(es, &e, &child, deflt);
		es->path.len = saved;
		es->path.data[saved] = '\0';
	}
}

/* Set val (of the schema's type) from the JSON value v. */
static void
encode(EncodeState *es, JsonbValue *v, avro_value_t *val, bool deflt)
{
	avro_schema_t schema = avro_value_get_schema(val);
	int64		i;
	double		d;
	int			rc = 0;

	check_stack_depth();
	switch (avro_value_get_type(val))
	{
		case AVRO_NULL:
			if (v->type != jbvNull)
				encode_error(es, psprintf("expected null, found %s", json_kind(v)));
			rc = avro_value_set_null(val);
			break;
		case AVRO_BOOLEAN:
			if (v->type != jbvBool)
				encode_error(es, psprintf("expected a boolean, found %s", json_kind(v)));
			rc = avro_value_set_boolean(val, v->val.boolean);
			break;
		case AVRO_INT32:
			if (!json_integer(v, PG_INT32_MIN, PG_INT32_MAX, &i))
				encode_error(es, psprintf("expected an int (32-bit integer), found %s", json_kind(v)));
			rc = avro_value_set_int(val, (int32) i);
			break;
		case AVRO_INT64:
			if (!json_integer(v, PG_INT64_MIN, PG_INT64_MAX, &i))
				encode_error(es, psprintf("expected a long (64-bit integer), found %s", json_kind(v)));
			rc = avro_value_set_long(val, i);
			break;
		case AVRO_FLOAT:
		case AVRO_DOUBLE:
			if (!json_double(v, &d))
				encode_error(es, psprintf("expected a number, found %s", json_kind(v)));
			rc = avro_value_get_type(val) == AVRO_FLOAT
				? avro_value_set_float(val, (float) d) : avro_value_set_double(val, d);
			break;
		case AVRO_STRING:
			{
				char	   *s;

				if (v->type != jbvString)
					encode_error(es, psprintf("expected a string, found %s", json_kind(v)));
				s = pnstrdup(v->val.string.val, v->val.string.len);
				s = pg_server_to_any(s, strlen(s), PG_UTF8);
				rc = avro_value_set_string_len(val, s, strlen(s) + 1);
				break;
			}
		case AVRO_BYTES:
			{
				int			len;
				char	   *b = json_bytes(es, v, deflt, &len);

				rc = avro_value_set_bytes(val, b, len);
				break;
			}
		case AVRO_FIXED:
			{
				int			len;
				char	   *b = json_bytes(es, v, deflt, &len);

				if (len != avro_schema_fixed_size(schema))
					encode_error(es, psprintf("expected %d bytes (fixed %s), found %d",
											  (int) avro_schema_fixed_size(schema),
											  avro_schema_name(schema), len));
				rc = avro_value_set_fixed(val, b, len);
				break;
			}
		case AVRO_ENUM:
			{
				int			sym = -1;

				if (v->type == jbvString)
					sym = avro_schema_enum_get_by_name(schema, pnstrdup(v->val.string.val,
																		v->val.string.len));
				if (sym < 0)
					encode_error(es, v->type == jbvString
								 ? psprintf("\"%.*s\" is not a symbol of enum %s",
											v->val.string.len, v->val.string.val, avro_schema_name(schema))
								 : psprintf("expected a symbol of enum %s, found %s",
											avro_schema_name(schema), json_kind(v)));
				rc = avro_value_set_enum(val, sym);
				break;
			}
		case AVRO_ARRAY:
			encode_container(es, v, val, deflt, false);
			break;
		case AVRO_MAP:
			encode_container(es, v, val, deflt, true);
			break;
		case AVRO_RECORD:
			encode_record(es, v, val, deflt);
			break;
		case AVRO_UNION:
			{
				avro_value_t branch;
				int			b = union_branch(es, schema, &v, deflt);

				if (avro_value_set_branch(val, b, &branch) != 0)
					elog(ERROR, "could not set an Avro union branch: %s", avro_strerror());
				encode(es, v, &branch, deflt);
				break;
			}
		default:
			elog(ERROR, "unexpected Avro type %d", (int) avro_value_get_type(val));
	}
	if (rc != 0)
		elog(ERROR, "could not set an Avro value: %s", avro_strerror());
}

/* The root JsonbValue of a jsonb datum. */
static void
jsonb_root(Jsonb *jb, JsonbValue *v)
{
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/* Fill val, a value of schema s, from jb; errors name the field. */
void
SchemasJsonbToAvro(AvroSchema *s, Jsonb *jb, avro_value_t *val, const SchemaWhere *where)
{
	EncodeState es = {s, where};
	JsonbValue	root;

	initStringInfo(&es.path);
	jsonb_root(jb, &root);
	encode(&es, &root, val, false);
}

/* Refuse a field default that is not a value of the field's type. */
void
SchemasCheckDefault(AvroSchema *s, avro_schema_t field_schema, Jsonb *def, const char *path)
{
	EncodeState es = {s, NULL};
	JsonbValue	root;
	avro_value_iface_t *volatile iface = avro_generic_class_from_schema(field_schema);
	avro_value_t val;

	if (iface == NULL || avro_generic_value_new(iface, &val) != 0)
		elog(ERROR, "could not make an Avro value: %s", avro_strerror());
	initStringInfo(&es.path);
	appendStringInfoString(&es.path, path);
	jsonb_root(def, &root);
	PG_TRY();
	{
		encode(&es, &root, &val, true);
	}
	PG_FINALLY();
	{
		avro_value_decref(&val);
		avro_value_iface_decref(iface);
	}
	PG_END_TRY();
}

/* A float or double as a JSON value: a number, or a string for NaN and infinities. */
static void
float_json(double d, bool single, JsonbValue *out)
{
	char		buf[64];

	if (isnan(d) || isinf(d))
	{
		out->type = jbvString;
		out->val.string.val = pstrdup(isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
		out->val.string.len = strlen(out->val.string.val);
		return;
	}
	if (single)
		float_to_shortest_decimal_buf((float) d, buf);
	else
		double_to_shortest_decimal_buf(d, buf);
	out->type = jbvNumeric;
	out->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
}

/* A JSON string pointing at s (not copied). */
static void
string_json(const char *s, int len, JsonbValue *out)
{
	out->type = jbvString;
	out->val.string.val = (char *) s;
	out->val.string.len = len;
}

/* Bytes as a base64 JSON string. */
static void
bytes_json(const void *b, size_t len, JsonbValue *out)
{
	int			cap = pg_b64_enc_len(len);
	char	   *buf = palloc(cap + 1);
	int			n = pg_b64_encode(b, len, buf, cap);

	if (n < 0)
		elog(ERROR, "could not base64-encode %zu bytes", len);
	string_json(buf, n, out);
}

/*
 * Push val onto the jsonb being built, as token tok (WJB_VALUE or
 * WJB_ELEM); with no state yet (the root), return a scalar as it is.
 */
static JsonbValue *
decode(avro_value_t *val, JsonbParseState **st, JsonbIteratorToken tok)
{
	JsonbValue	jv;
	avro_schema_t schema = avro_value_get_schema(val);

	check_stack_depth();
	switch (avro_value_get_type(val))
	{
		case AVRO_NULL:
			jv.type = jbvNull;
			break;
		case AVRO_BOOLEAN:
			{
				int			b;

				avro_value_get_boolean(val, &b);
				jv.type = jbvBool;
				jv.val.boolean = b != 0;
				break;
			}
		case AVRO_INT32:
			{
				int32_t		i;

				avro_value_get_int(val, &i);
				jv.type = jbvNumeric;
				jv.val.numeric = int64_to_numeric(i);
				break;
			}
		case AVRO_INT64:
			{
				int64_t		l;

				avro_value_get_long(val, &l);
				jv.type = jbvNumeric;
				jv.val.numeric = int64_to_numeric(l);
				break;
			}
		case AVRO_FLOAT:
			{
				float		f;

				avro_value_get_float(val, &f);
				float_json(f, true, &jv);
				break;
			}
		case AVRO_DOUBLE:
			{
				double		d;

				avro_value_get_double(val, &d);
				float_json(d, false, &jv);
				break;
			}
		case AVRO_STRING:
			{
				const char *s;
				size_t		size;
				char	   *conv;

				avro_value_get_string(val, &s, &size);
				/* size counts the terminating NUL; the codec checked the UTF-8 */
				conv = pg_any_to_server(s, size > 0 ? size - 1 : 0, PG_UTF8);
				string_json(conv, strlen(conv), &jv);
				break;
			}
		case AVRO_BYTES:
			{
				const void *b;
				size_t		size;

				avro_value_get_bytes(val, &b, &size);
				bytes_json(b, size, &jv);
				break;
			}
		case AVRO_FIXED:
			{
				const void *b;
				size_t		size;

				avro_value_get_fixed(val, &b, &size);
				bytes_json(b, size, &jv);
				break;
			}
		case AVRO_ENUM:
			{
				int			sym;

				avro_value_get_enum(val, &sym);
				string_json(avro_schema_enum_get(schema, sym),
							strlen(avro_schema_enum_get(schema, sym)), &jv);
				break;
			}
		case AVRO_UNION:
			{
				avro_value_t branch;
				int			disc;
				const char *name;

				avro_value_get_discriminant(val, &disc);
				avro_value_get_current_branch(val, &branch);
				if (avro_value_get_type(&branch) == AVRO_NULL)
					return decode(&branch, st, tok);
				pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
				name = SchemasBranchName(avro_schema_union_branch(schema, disc));
				string_json(name, strlen(name), &jv);
				pushJsonbValue(st, WJB_KEY, &jv);
				decode(&branch, st, WJB_VALUE);
				return pushJsonbValue(st, WJB_END_OBJECT, NULL);
			}
		case AVRO_RECORD:
		case AVRO_MAP:
			{
				size_t		n;

				avro_value_get_size(val, &n);
				pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
				for (size_t i = 0; i < n; i++)
				{
					avro_value_t child;
					const char *name;
					char	   *conv;

					avro_value_get_by_index(val, i, &child, &name);
					conv = pg_any_to_server(name, strlen(name), PG_UTF8);
					string_json(conv, strlen(conv), &jv);
					pushJsonbValue(st, WJB_KEY, &jv);
					decode(&child, st, WJB_VALUE);
				}
				return pushJsonbValue(st, WJB_END_OBJECT, NULL);
			}
		case AVRO_ARRAY:
			{
				size_t		n;

				avro_value_get_size(val, &n);
				pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
				for (size_t i = 0; i < n; i++)
				{
					avro_value_t child;

					CHECK_FOR_INTERRUPTS();
					avro_value_get_by_index(val, i, &child, NULL);
					decode(&child, st, WJB_ELEM);
				}
				return pushJsonbValue(st, WJB_END_ARRAY, NULL);
			}
		default:
			elog(ERROR, "unexpected Avro type %d", (int) avro_value_get_type(val));
	}
	if (*st == NULL)
		return memcpy(palloc(sizeof(JsonbValue)), &jv, sizeof(JsonbValue));
	return pushJsonbValue(st, tok, &jv);
}

/* An Avro value as jsonb, in the conventions above. */
Jsonb *
SchemasAvroToJsonb(avro_value_t *val)
{
	JsonbParseState *st = NULL;

	return JsonbValueToJsonb(decode(val, &st, WJB_VALUE));
}
