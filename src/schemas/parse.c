/*-------------------------------------------------------------------------
 *
 * parse.c
 *		Parsing an Avro schema: the Avro C library's parse, plus what it
 *		leaves out.
 *
 * The library (avro_schema_from_json_length) resolves names, namespaces and
 * references, and gives the nodes that its reader, writer and generic
 * values work on.  It silently drops field defaults, field and type
 * aliases and enum defaults, and accepts duplicate field names, enum
 * symbols and union branches.  Schema evolution depends on exactly those,
 * so the JSON text is parsed a second time (as jsonb) and walked in step
 * with the library's nodes: each named type's definition is found where
 * the library found it, and its extras are kept keyed by the library's
 * node, so that no namespace logic is repeated here.
 *
 * The library allocates with malloc and counts references.  Every parsed
 * schema owns a memory context whose reset callback releases the
 * library's objects, so an ereport between parse and use never leaks them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "schemas/schemas.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

/*
 * The library's generic values hold a fixed's bytes inline, and a record's
 * fields too: making a value of a record allocates and zeroes every fixed
 * it holds outside unions, arrays and maps, before any data is seen.  So
 * a fixed is at most 1 MB, and the fixed fields a record holds so at most
 * 16 MB, lest one encode of a small schema allocate gigabytes.
 */
#define SCHEMAS_MAX_FIXED	(1024 * 1024)
#define SCHEMAS_MAX_INLINE	(16 * 1024 * 1024)

/* Release the library's objects when the schema's context goes away. */
static void
schema_release(void *arg)
{
	AvroSchema *s = (AvroSchema *) arg;

	if (s->has_value)
		avro_value_decref(&s->value);
	if (s->iface)
		avro_value_iface_decref(s->iface);
	if (s->schema)
		avro_schema_decref(s->schema);
	s->has_value = false;
	s->iface = NULL;
	s->schema = NULL;
}

/* A schema error: the user's mistake, with the path to it. */
static void
schema_error(const char *path, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Avro schema: %s%s%s", problem,
					path[0] ? " at " : "", path),
			 errhint("See the Avro specification, https://avro.apache.org/docs/1.11.1/specification/.")));
}

/* The value of key in a JSON object, or NULL (also when obj is no object). */
static JsonbValue *
json_key(JsonbValue *obj, const char *key)
{
	if (obj == NULL || obj->type != jbvBinary || !JsonContainerIsObject(obj->val.binary.data))
		return NULL;
	return getKeyJsonValueFromContainer(obj->val.binary.data, key, strlen(key), NULL);
}

/* Elements of a JSON array, or -1 when v is no array. */
static int
json_array_size(JsonbValue *v)
{
	if (v == NULL || v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		return -1;
	return JsonContainerSize(v->val.binary.data);
}

/* An array of strings (aliases) as a C array; non-strings are an error. */
static const char **
json_strings(JsonbValue *arr, int *n, const char *path, const char *what)
{
	const char **out;

	*n = json_array_size(arr);
	if (arr == NULL)
	{
		*n = 0;
		return NULL;
	}
	if (*n < 0)
		schema_error(path, psprintf("\"%s\" must be an array of names", what));
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr->val.binary.data, i);

		if (e->type != jbvString)
			schema_error(path, psprintf("\"%s\" must be an array of names", what));
		out[i] = pnstrdup(e->val.string.val, e->val.string.len);
	}
	return out;
}

typedef struct ParseState
{
	AvroSchema *s;
	int			cap;
} ParseState;

/* Room for one more named type's extras, keyed by the library's node. */
static SchemaNamed *
named_add(ParseState *ps, avro_schema_t node)
{
	AvroSchema *s = ps->s;

	if (s->nnamed == ps->cap)
	{
		ps->cap = Max(8, ps->cap * 2);
		s->named = s->named ? repalloc(s->named, sizeof(SchemaNamed) * ps->cap)
			: palloc(sizeof(SchemaNamed) * ps->cap);
	}
	memset(&s->named[s->nnamed], 0, sizeof(SchemaNamed));
	s->named[s->nnamed].schema = node;
	return &s->named[s->nnamed++];
}

/* Follow a reference to a named type to its definition. */
avro_schema_t
SchemasResolveLink(avro_schema_t s)
{
	while (is_avro_link(s))
		s = avro_schema_link_target(s);
	return s;
}

/*
 * The name a union branch goes by in Avro's JSON encoding: the full name
 * of a named type, else the type's name ("int", "array", ...).
 */
const char *
SchemasBranchName(avro_schema_t s)
{
	s = SchemasResolveLink(s);
	if (is_avro_named_type(s))
	{
		const char *ns = avro_schema_namespace(s);

		if (ns && ns[0])
			return psprintf("%s.%s", ns, avro_schema_name(s));
		return avro_schema_name(s);
	}
	return avro_schema_type_name(s);
}

/* What the library keeps of a named type's definition, or NULL. */
const SchemaNamed *
SchemasNamedInfo(const AvroSchema *s, avro_schema_t named)
{
	named = SchemasResolveLink(named);
	for (int i = 0; i < s->nnamed; i++)
		if (s->named[i].schema == named)
			return &s->named[i];
	return NULL;
}

static void collect(ParseState *ps, avro_schema_t node, JsonbValue *j, const char *path);

/*
 * A fixed's size must be what the JSON says and fit in memory: the library
 * keeps any integer, negative too, and truncates past 2^31, and its
 * reader and writer then move by that many bytes.
 */
static void
check_fixed_size(avro_schema_t node, JsonbValue *size, const char *path)
{
	int64		n = avro_schema_fixed_size(node);

	if (size == NULL || size->type != jbvNumeric || n < 0 || n > SCHEMAS_MAX_FIXED ||
		!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(size->val.numeric),
										  NumericGetDatum(int64_to_numeric(n)))))
		schema_error(path, psprintf("the size of fixed \"%s\" must be an integer from 0 to %d (use bytes for larger values)",
									avro_schema_name(node), SCHEMAS_MAX_FIXED));
}

/* Is name an Avro name, [A-Za-z_][A-Za-z0-9_]*?  The library checks only type and field names. */
static bool
is_avro_name(const char *name)
{
	for (const char *p = name; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
			  (p > name && *p >= '0' && *p <= '9')))
			return false;
	return name[0] != '\0';
}

/* A record's definition: fields with defaults and aliases. */
static void
collect_record(ParseState *ps, avro_schema_t node, JsonbValue *j, const char *path)
{
	JsonbValue *fields = json_key(j, "fields");
	int			n = (int) avro_schema_record_size(node);
	SchemaNamed *info;

	if (json_array_size(fields) != n)
		schema_error(path, "a record needs a \"fields\" array");
	info = named_add(ps, node);
	info->aliases = json_strings(json_key(j, "aliases"), &info->naliases, path, "aliases");
	info->nfields = n;
	info->fields = palloc0(sizeof(SchemaField) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *fj = getIthJsonbValueFromContainer(fields->val.binary.data, i);
		SchemaField *f = &info->fields[i];
		JsonbValue *def = json_key(fj, "default");
		char	   *fpath;

		f->name = avro_schema_record_field_name(node, i);
		fpath = path[0] ? psprintf("%s.%s", path, f->name) : pstrdup(f->name);
		for (int k = 0; k < i; k++)
			if (strcmp(info->fields[k].name, f->name) == 0)
				schema_error(path, psprintf("duplicate field \"%s\"", f->name));
		if (def)
			f->default_value = JsonbValueToJsonb(def);
		f->aliases = json_strings(json_key(fj, "aliases"), &f->naliases, fpath, "aliases");
		collect(ps, avro_schema_record_field_get_by_index(node, i), json_key(fj, "type"), fpath);
	}
}

/* An enum's definition: no duplicate symbols, a default among them. */
static void
collect_enum(ParseState *ps, avro_schema_t node, JsonbValue *j, const char *path)
{
	int			n = avro_schema_enum_number_of_symbols(node);
	JsonbValue *def = json_key(j, "default");
	SchemaNamed *info = named_add(ps, node);

	info->aliases = json_strings(json_key(j, "aliases"), &info->naliases, path, "aliases");
	for (int i = 0; i < n; i++)
	{
		if (!is_avro_name(avro_schema_enum_get(node, i)))
			schema_error(path, psprintf("symbol \"%s\" of enum \"%s\" is not an Avro name ([A-Za-z_][A-Za-z0-9_]*)",
										avro_schema_enum_get(node, i), avro_schema_name(node)));
		for (int k = 0; k < i; k++)
			if (strcmp(avro_schema_enum_get(node, i), avro_schema_enum_get(node, k)) == 0)
				schema_error(path, psprintf("duplicate symbol \"%s\" in enum \"%s\"",
											avro_schema_enum_get(node, i), avro_schema_name(node)));
	}
	if (def)
	{
		if (def->type != jbvString)
			schema_error(path, "an enum's default must be one of its symbols");
		info->enum_default = pnstrdup(def->val.string.val, def->val.string.len);
		if (avro_schema_enum_get_by_name(node, info->enum_default) < 0)
			schema_error(path, psprintf("enum default \"%s\" is not one of its symbols",
										info->enum_default));
	}
}

/*
 * Walk the library's node and its JSON together.  A string in the JSON is
 * a primitive's name or a reference to a type defined elsewhere.
 */
static void
collect(ParseState *ps, avro_schema_t node, JsonbValue *j, const char *path)
{
	JsonbValue *inner;

	check_stack_depth();
	if (j == NULL || is_avro_link(node) || j->type != jbvBinary)
		return;
	/* {"type": {...}} and {"type": [...]} wrap a definition */
	while ((inner = json_key(j, "type")) != NULL && inner->type == jbvBinary)
		j = inner;

	switch (avro_typeof(node))
	{
		case AVRO_RECORD:
			if (SchemasNamedInfo(ps->s, node) == NULL)
				collect_record(ps, node, j, path);
			break;
		case AVRO_ENUM:
			if (SchemasNamedInfo(ps->s, node) == NULL)
				collect_enum(ps, node, j, path);
			break;
		case AVRO_FIXED:
			if (SchemasNamedInfo(ps->s, node) == NULL)
			{
				SchemaNamed *info;

				check_fixed_size(node, json_key(j, "size"), path);
				info = named_add(ps, node);

				info->aliases = json_strings(json_key(j, "aliases"), &info->naliases, path, "aliases");
			}
			break;
		case AVRO_ARRAY:
			collect(ps, avro_schema_array_items(node), json_key(j, "items"),
					psprintf("%s[]", path));
			break;
		case AVRO_MAP:
			collect(ps, avro_schema_map_values(node), json_key(j, "values"),
					psprintf("%s{}", path));
			break;
		case AVRO_UNION:
			{
				int			n = (int) avro_schema_union_size(node);

				if (json_array_size(j) != n)
					return;
				for (int i = 0; i < n; i++)
				{
					avro_schema_t b = avro_schema_union_branch(node, i);

					if (is_avro_union(SchemasResolveLink(b)))
						schema_error(path, "a union may not directly contain a union");
					for (int k = 0; k < i; k++)
						if (strcmp(SchemasBranchName(b),
								   SchemasBranchName(avro_schema_union_branch(node, k))) == 0)
							schema_error(path, psprintf("a union may not contain \"%s\" twice",
														SchemasBranchName(b)));
					collect(ps, b, getIthJsonbValueFromContainer(j->val.binary.data, i), path);
				}
				break;
			}
		default:
			break;
	}
}

/*
 * Refuse a record that holds itself through record fields alone, with no
 * union, array or map between: it has no finite value, and the library's
 * generic value for it recurses until the stack overflows.  Returns the
 * bytes of fixed a value of node holds inline, and refuses a record
 * holding more than SCHEMAS_MAX_INLINE.  state[i] is 1 while named type i
 * is being walked, 2 once it is known to be finite, with inline[i] bytes.
 */
static int64
check_finite(AvroSchema *s, avro_schema_t node, char *state, int64 *inline_bytes)
{
	int			idx = -1;
	int64		total = 0;

	check_stack_depth();
	node = SchemasResolveLink(node);
	if (is_avro_fixed(node))
		return avro_schema_fixed_size(node);
	if (!is_avro_record(node))
		return 0;
	for (int i = 0; i < s->nnamed && idx < 0; i++)
		if (s->named[i].schema == node)
			idx = i;
	if (idx >= 0 && state[idx] == 2)
		return inline_bytes[idx];
	if (idx >= 0 && state[idx] == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Avro schema: record \"%s\" contains itself", SchemasBranchName(node)),
				 errdetail("A record that holds itself through record fields alone has no finite value."),
				 errhint("Make the recursive field a union with null, such as [\"null\", \"%s\"], or an array or map of it.",
						 SchemasBranchName(node))));
	if (idx >= 0)
		state[idx] = 1;
	for (int f = 0; f < (int) avro_schema_record_size(node); f++)
	{
		total += check_finite(s, avro_schema_record_field_get_by_index(node, f), state, inline_bytes);
		if (total > SCHEMAS_MAX_INLINE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Avro schema: record \"%s\" holds more than %d bytes of fixed fields",
							SchemasBranchName(node), SCHEMAS_MAX_INLINE),
					 errdetail("Every value of a record holds its fixed fields (those outside unions, arrays and maps) in memory at once."),
					 errhint("Use bytes for large binary fields.")));
	}
	if (idx >= 0)
	{
		state[idx] = 2;
		inline_bytes[idx] = total;
	}
	return total;
}

/*
 * Parse schema text into a new context under parent.  Errors (syntax,
 * unknown types, duplicates, defaults that do not match their field) are
 * the user's and say where.
 */
AvroSchema *
SchemasParse(const char *text, int len, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "commitlog Avro schema",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	AvroSchema *s = palloc0(sizeof(AvroSchema));
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));
	ParseState	ps = {s, 0};
	Jsonb	   *jb;
	JsonbValue	root;

	s->cxt = cxt;
	cb->func = schema_release;
	cb->arg = s;
	MemoryContextRegisterResetCallback(cxt, cb);

	if (avro_schema_from_json_length(text, len, &s->schema) != 0)
	{
		s->schema = NULL;
		schema_error("", pstrdup(avro_strerror()));
	}
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(text, len))));
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &jb->root;
		root.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	collect(&ps, s->schema, &root, "");
	if (s->nnamed > 0)
	{
		char	   *state = palloc0(s->nnamed);
		int64	   *inline_bytes = palloc0(sizeof(int64) * s->nnamed);

		for (int i = 0; i < s->nnamed; i++)
			(void) check_finite(s, s->named[i].schema, state, inline_bytes);
	}
	SchemasCheckDefaults(s);
	MemoryContextSwitchTo(old);
	return s;
}

/* The schema's reusable generic value, reset; made on first use. */
avro_value_t *
SchemasValue(AvroSchema *s)
{
	if (s->iface == NULL)
	{
		s->iface = avro_generic_class_from_schema(s->schema);
		if (s->iface == NULL)
			elog(ERROR, "could not make an Avro value class: %s", avro_strerror());
	}
	if (!s->has_value)
	{
		if (avro_generic_value_new(s->iface, &s->value) != 0)
			elog(ERROR, "could not make an Avro value: %s", avro_strerror());
		s->has_value = true;
	}
	avro_value_reset(&s->value);
	return &s->value;
}
