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
		for (int k = 0; k < i; k++)
			if (strcmp(avro_schema_enum_get(node, i), avro_schema_enum_get(node, k)) == 0)
				schema_error(path, psprintf("duplicate symbol \"%s\" in enum \"%s\"",
											avro_schema_enum_get(node, i), avro_schema_name(node)));
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
				SchemaNamed *info = named_add(ps, node);

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

	/* defaults must be values of their field's type (the first branch of a union) */
	for (int i = 0; i < s->nnamed; i++)
		for (int f = 0; f < s->named[i].nfields; f++)
			if (s->named[i].fields[f].default_value)
				SchemasCheckDefault(s,
									avro_schema_record_field_get_by_index(s->named[i].schema, f),
									s->named[i].fields[f].default_value,
									psprintf("%s.%s", avro_schema_name(s->named[i].schema),
											 s->named[i].fields[f].name));
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
