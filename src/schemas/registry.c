/*-------------------------------------------------------------------------
 *
 * registry.c
 *		register_schema and set_compatibility.
 *
 * Registration follows Confluent's registry: a schema identical (as JSON)
 * to one of the subject's versions returns that version's id and adds
 * nothing; a schema identical to one registered under another subject
 * reuses its id; otherwise the new version must pass the subject's
 * compatibility mode against the versions the mode names, and gets the
 * next version number.  Registrations are serialised by a lock on
 * commitlog.schemas (they are rare), so two sessions cannot both take the
 * same version, or make two ids for one schema.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "errors.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "schemas/schemas.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(register_schema);
PG_FUNCTION_INFO_V1(set_compatibility);

/* longest subject name, as Confluent's registry has no limit but we print them */
#define SCHEMAS_MAX_SUBJECT	255

/* Confluent's modes; which versions each checks, and in which direction */
typedef struct CompatMode
{
	const char *name;
	bool		backward;		/* the new schema reads old data */
	bool		forward;		/* old schemas read new data */
	bool		transitive;		/* against every version, not only the latest */
} CompatMode;

static const CompatMode compat_modes[] = {
	{"BACKWARD", true, false, false},
	{"BACKWARD_TRANSITIVE", true, false, true},
	{"FORWARD", false, true, false},
	{"FORWARD_TRANSITIVE", false, true, true},
	{"FULL", true, true, false},
	{"FULL_TRANSITIVE", true, true, true},
	{"NONE", false, false, false},
};

/* A text argument that must not be null. */
static char *
text_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * Check the subject's name, and that a subject of an existing topic
 * ("<topic>-value", "<topic>-key") is changed only by the topic's owner:
 * its schemas decide what producers may write.
 */
static void
check_subject(const char *subject)
{
	size_t		len = strlen(subject);
	const char *suffix = NULL;
	Oid			nsp;

	if (len == 0 || len > SCHEMAS_MAX_SUBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subject name \"%s\"", subject),
				 errdetail("A subject name has 1 to %d characters.", SCHEMAS_MAX_SUBJECT),
				 errhint("A topic's subjects are \"<topic>-value\" and \"<topic>-key\".")));
	if (len > 6 && strcmp(subject + len - 6, "-value") == 0)
		suffix = subject + len - 6;
	else if (len > 4 && strcmp(subject + len - 4, "-key") == 0)
		suffix = subject + len - 4;
	nsp = TopicSchemaOid(false);
	if (suffix && suffix - subject < NAMEDATALEN)
	{
		char	   *topic = pnstrdup(subject, suffix - subject);
		Oid			relid = get_relname_relid(topic, nsp);

		if (OidIsValid(relid) && !pg_class_ownercheck(relid, GetUserId()))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of topic \"%s\" to change subject \"%s\"", topic, subject),
					 errdetail("The schemas of a topic's subjects decide what its producers may write."),
					 errhint("Ask the topic's owner, or a superuser, to do it.")));
	}
}

/* A mode by name, case-insensitively; an unknown name is an error. */
static const CompatMode *
compat_mode(const char *name)
{
	for (int i = 0; i < lengthof(compat_modes); i++)
		if (pg_strcasecmp(name, compat_modes[i].name) == 0)
			return &compat_modes[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown compatibility mode \"%s\"", name),
			 errhint("Use BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE.")));
}

/* An int4 from the first column of SPI result row i. */
static int32
spi_int(uint64 i, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/* Refuse the candidate if the mode's checks fail against version v (id). */
static void
check_version(const CompatMode *mode, const char *subject, AvroSchema *candidate,
			  int32 version, int32 id)
{
	AvroSchema *old = SchemasById(id, false);
	char	   *why = NULL;
	const char *direction = NULL;

	if (mode->backward && (why = SchemasIncompatibility(candidate, old)) != NULL)
		direction = psprintf("the new schema must read data written with version %d", version);
	else if (mode->forward && (why = SchemasIncompatibility(old, candidate)) != NULL)
		direction = psprintf("version %d must read data written with the new schema", version);
	if (why)
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_INCOMPATIBLE_SCHEMA),
				 errmsg("schema is incompatible with version %d of subject \"%s\": %s",
						version, subject, why),
				 errdetail("The subject's compatibility mode is %s: %s.", mode->name, direction),
				 errhint("Give a new field a default, keep removed fields' defaults, or use an alias to rename; or change the mode with commitlog.set_compatibility().")));
}

/*
 * register_schema(subject text, schema text, schema_type text DEFAULT 'AVRO')
 * RETURNS int: the schema's id.
 */
Datum
register_schema(PG_FUNCTION_ARGS)
{
	char	   *subject = text_arg(fcinfo, 0, "subject");
	char	   *schema = text_arg(fcinfo, 1, "schema");
	char	   *type = text_arg(fcinfo, 2, "schema_type");
	AvroSchema *candidate;
	const CompatMode *mode = &compat_modes[0];
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int			nestlevel;
	uint64		n;
	int32	   *versions;
	int32	   *ids;
	int32		id = 0;

	if (pg_strcasecmp(type, "AVRO") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("schema type \"%s\" is not supported", type),
				 errhint("Only AVRO schemas are supported.")));
	check_subject(subject);
	candidate = SchemasParse(schema, strlen(schema), CurrentMemoryContext);

	args[0] = CStringGetTextDatum(subject);
	args[1] = CStringGetTextDatum(schema);
	nestlevel = CatalogBegin();
	CatalogExec("LOCK TABLE commitlog.schemas IN SHARE ROW EXCLUSIVE MODE", 0, NULL, NULL, NULL);

	/* already a version of this subject: its id, nothing new */
	CatalogExec("SELECT v.schema_id FROM commitlog.schema_versions v"
				" JOIN commitlog.schemas s ON s.id = v.schema_id"
				" WHERE v.subject = $1 AND s.schema::jsonb = $2::jsonb"
				" ORDER BY v.version LIMIT 1", 2, argtypes, args, NULL);
	if (SPI_processed == 1)
	{
		id = spi_int(0, 1);
		CatalogEnd(nestlevel);
		PG_RETURN_INT32(id);
	}

	CatalogExec("SELECT compatibility FROM commitlog.schema_subjects WHERE subject = $1",
				1, argtypes, args, NULL);
	if (SPI_processed == 1)
	{
		char	   *m = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (m)
			mode = compat_mode(m);
	}
	CatalogExec("SELECT version, schema_id FROM commitlog.schema_versions"
				" WHERE subject = $1 ORDER BY version", 1, argtypes, args, NULL);
	n = SPI_processed;
	versions = palloc(sizeof(int32) * (n + 1));
	ids = palloc(sizeof(int32) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		versions[i] = spi_int(i, 1);
		ids[i] = spi_int(i, 2);
	}
	for (uint64 i = mode->transitive ? 0 : (n > 0 ? n - 1 : 0); i < n; i++)
		check_version(mode, subject, candidate, versions[i], ids[i]);

	/* the same schema under another subject keeps its id */
	CatalogExec("SELECT id FROM commitlog.schemas WHERE schema_type = 'AVRO'"
				" AND schema::jsonb = $2::jsonb ORDER BY id LIMIT 1", 2, argtypes, args, NULL);
	if (SPI_processed == 1)
		id = spi_int(0, 1);
	else
	{
		CatalogExec("INSERT INTO commitlog.schemas (schema_type, schema) VALUES ('AVRO', $2)"
					" RETURNING id", 2, argtypes, args, NULL);
		id = spi_int(0, 1);
	}
	CatalogExec("INSERT INTO commitlog.schema_subjects (subject) VALUES ($1)"
				" ON CONFLICT (subject) DO NOTHING", 1, argtypes, args, NULL);
	args[1] = Int32GetDatum(id);
	argtypes[1] = INT4OID;
	CatalogExec("INSERT INTO commitlog.schema_versions (subject, version, schema_id)"
				" SELECT $1, COALESCE(max(version), 0) + 1, $2"
				"   FROM commitlog.schema_versions WHERE subject = $1",
				2, argtypes, args, NULL);
	CatalogEnd(nestlevel);

	/* every backend's produce hook must see the new subject or version */
	CacheInvalidateRelcacheByRelid(SchemasVersionsRelid());
	PG_RETURN_INT32(id);
}

/* set_compatibility(subject text, mode text) RETURNS void */
Datum
set_compatibility(PG_FUNCTION_ARGS)
{
	char	   *subject = text_arg(fcinfo, 0, "subject");
	const CompatMode *mode = compat_mode(text_arg(fcinfo, 1, "mode"));
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int			nestlevel;

	check_subject(subject);
	args[0] = CStringGetTextDatum(subject);
	args[1] = CStringGetTextDatum(mode->name);
	nestlevel = CatalogBegin();
	CatalogExec("INSERT INTO commitlog.schema_subjects (subject, compatibility) VALUES ($1, $2)"
				" ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
				2, argtypes, args, NULL);
	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}
