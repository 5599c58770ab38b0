/*-------------------------------------------------------------------------
 *
 * compat.c
 *		Can a reader schema read data written with a writer schema?  Avro's
 *		schema-resolution rules, as Confluent's compatibility modes use them.
 *
 * The Avro C library parses both schemas; the rules need field defaults
 * and aliases too, which parse.c keeps beside the library's nodes.
 *	- same primitive, or a promotion: int to long, float or double; long
 *	  to float or double; float to double; string to and from bytes;
 *	- records: each reader field is found in the writer by name or by one
 *	  of its aliases, and its type reads the writer's, or it has a default;
 *	  writer fields the reader lacks are skipped;
 *	- enums: every writer symbol is a reader symbol, unless the reader has
 *	  a default symbol; fixed: same size; arrays and maps: their items;
 *	- named types: same unqualified name, or the writer's full or short
 *	  name among the reader's aliases;
 *	- a writer union: every branch must be readable; a reader union: some
 *	  branch must read the writer's type.
 * The first problem found is reported with the path of the field.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "schemas/schemas.h"

typedef struct CompatState
{
	AvroSchema *reader;
	AvroSchema *writer;
	List	   *active;			/* reader/writer node pairs being compared */
	StringInfoData path;
	char	   *problem;		/* the first problem, or NULL */
} CompatState;

static bool compat(CompatState *cs, avro_schema_t r, avro_schema_t w);

/* Record the problem at the current path; returns false. */
static bool
problem(CompatState *cs, const char *what)
{
	cs->problem = psprintf("field \"%s\": %s",
						   cs->path.len > 0 ? cs->path.data : "(the whole value)", what);
	return false;
}

/* Does the writer's primitive type promote to the reader's? */
static bool
promotes(avro_type_t w, avro_type_t r)
{
	if (w == r)
		return true;
	switch (w)
	{
		case AVRO_INT32:
			return r == AVRO_INT64 || r == AVRO_FLOAT || r == AVRO_DOUBLE;
		case AVRO_INT64:
			return r == AVRO_FLOAT || r == AVRO_DOUBLE;
		case AVRO_FLOAT:
			return r == AVRO_DOUBLE;
		case AVRO_STRING:
			return r == AVRO_BYTES;
		case AVRO_BYTES:
			return r == AVRO_STRING;
		default:
			return false;
	}
}

/* The last dot-separated part of a name. */
static const char *
short_name(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot ? dot + 1 : name;
}

/* Same name, or the writer's name is one of the reader's aliases. */
static bool
names_match(CompatState *cs, avro_schema_t r, avro_schema_t w)
{
	const SchemaNamed *info = SchemasNamedInfo(cs->reader, r);

	if (strcmp(avro_schema_name(r), avro_schema_name(w)) == 0)
		return true;
	for (int i = 0; info && i < info->naliases; i++)
		if (strcmp(info->aliases[i], SchemasBranchName(w)) == 0 ||
			strcmp(short_name(info->aliases[i]), avro_schema_name(w)) == 0)
			return true;
	return false;
}

/* The writer field a reader field reads: by name, then by its aliases. */
static int
writer_field(avro_schema_t w, const SchemaField *rf)
{
	int			i = avro_schema_record_field_get_index(w, rf->name);

	for (int a = 0; i < 0 && a < rf->naliases; a++)
		i = avro_schema_record_field_get_index(w, rf->aliases[a]);
	return i;
}

/* Records: every reader field reads its writer field or has a default. */
static bool
compat_record(CompatState *cs, avro_schema_t r, avro_schema_t w)
{
	const SchemaNamed *info = SchemasNamedInfo(cs->reader, r);
	int			saved = cs->path.len;

	for (int i = 0; i < (int) avro_schema_record_size(r); i++)
	{
		SchemaField fallback = {avro_schema_record_field_name(r, i), NULL, 0, NULL};
		const SchemaField *rf = info ? &info->fields[i] : &fallback;
		int			wi = writer_field(w, rf);
		bool		ok;

		appendStringInfo(&cs->path, "%s%s", saved ? "." : "", rf->name);
		if (wi < 0)
			ok = rf->default_value != NULL ||
				problem(cs, "the reading schema has it without a default, and the written data does not have it");
		else
			ok = compat(cs, avro_schema_record_field_get_by_index(r, i),
						avro_schema_record_field_get_by_index(w, wi));
		cs->path.len = saved;
		cs->path.data[saved] = '\0';
		if (!ok)
			return false;
	}
	return true;
}

/* Enums: every writer symbol is a reader symbol, or the reader has a default. */
static bool
compat_enum(CompatState *cs, avro_schema_t r, avro_schema_t w)
{
	const SchemaNamed *info = SchemasNamedInfo(cs->reader, r);

	if (info && info->enum_default)
		return true;
	for (int i = 0; i < avro_schema_enum_number_of_symbols(w); i++)
		if (avro_schema_enum_get_by_name(r, avro_schema_enum_get(w, i)) < 0)
			return problem(cs, psprintf("symbol \"%s\" of the written enum %s is not in the reading enum, which has no default",
										avro_schema_enum_get(w, i), avro_schema_name(w)));
	return true;
}

/* Can a reader of r read data written as w? */
static bool
compat(CompatState *cs, avro_schema_t r, avro_schema_t w)
{
	bool		ok;
	int			saved = cs->path.len;

	check_stack_depth();
	r = SchemasResolveLink(r);
	w = SchemasResolveLink(w);

	if (is_avro_union(w))
	{
		for (int i = 0; i < (int) avro_schema_union_size(w); i++)
			if (!compat(cs, r, avro_schema_union_branch(w, i)))
				return false;
		return true;
	}
	if (is_avro_union(r))
	{
		StringInfoData names;

		for (int i = 0; i < (int) avro_schema_union_size(r); i++)
		{
			if (compat(cs, avro_schema_union_branch(r, i), w))
			{
				cs->problem = NULL;
				return true;
			}
			cs->path.len = saved;
			cs->path.data[saved] = '\0';
		}
		initStringInfo(&names);
		for (int i = 0; i < (int) avro_schema_union_size(r); i++)
			appendStringInfo(&names, "%s%s", i ? ", " : "",
							 SchemasBranchName(avro_schema_union_branch(r, i)));
		return problem(cs, psprintf("written %s cannot be read as any branch of the union [%s]",
									SchemasBranchName(w), names.data));
	}

	/* a recursive type compares with itself: assume the pair holds */
	for (int i = 0; i + 1 < list_length(cs->active); i += 2)
		if (list_nth(cs->active, i) == r && list_nth(cs->active, i + 1) == w)
			return true;

	if (avro_typeof(r) != avro_typeof(w))
	{
		if (promotes(avro_typeof(w), avro_typeof(r)))
			return true;
		return problem(cs, psprintf("written %s cannot be read as %s",
									SchemasBranchName(w), SchemasBranchName(r)));
	}
	if (is_avro_named_type(r) && !names_match(cs, r, w))
		return problem(cs, psprintf("written %s %s cannot be read as %s (names differ and no alias matches)",
									is_avro_record(w) ? "record" : is_avro_enum(w) ? "enum" : "fixed",
									SchemasBranchName(w), SchemasBranchName(r)));

	cs->active = lappend(lappend(cs->active, r), w);
	switch (avro_typeof(r))
	{
		case AVRO_RECORD:
			ok = compat_record(cs, r, w);
			break;
		case AVRO_ENUM:
			ok = compat_enum(cs, r, w);
			break;
		case AVRO_FIXED:
			ok = avro_schema_fixed_size(r) == avro_schema_fixed_size(w) ||
				problem(cs, psprintf("written fixed of %d bytes cannot be read as fixed of %d bytes",
									 (int) avro_schema_fixed_size(w), (int) avro_schema_fixed_size(r)));
			break;
		case AVRO_ARRAY:
			appendStringInfoString(&cs->path, "[]");
			ok = compat(cs, avro_schema_array_items(r), avro_schema_array_items(w));
			break;
		case AVRO_MAP:
			appendStringInfoString(&cs->path, "{}");
			ok = compat(cs, avro_schema_map_values(r), avro_schema_map_values(w));
			break;
		default:
			ok = true;
			break;
	}
	cs->active = list_truncate(cs->active, list_length(cs->active) - 2);
	cs->path.len = saved;
	cs->path.data[saved] = '\0';
	return ok;
}

/*
 * Why reader cannot read data written with writer, naming the field; NULL
 * when it can.
 */
char *
SchemasIncompatibility(AvroSchema *reader, AvroSchema *writer)
{
	CompatState cs = {reader, writer, NIL};

	initStringInfo(&cs.path);
	if (compat(&cs, reader->schema, writer->schema))
		return NULL;
	return cs.problem;
}
