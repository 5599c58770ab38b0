/*-------------------------------------------------------------------------
 *
 * hook.c
 *		The produce hook: records of a topic with a "<topic>-value" or
 *		"<topic>-key" subject must be in the wire format, with the id of a
 *		version of that subject, and their Avro body must match it.
 *
 * produce() calls SchemasCheckRecord once per record before anything is
 * written, so a refused record leaves the whole call unwritten.  jsonb
 * values reach produce() already encoded (produce(topic, jsonb) encodes
 * with commitlog.encode_value), so the hook only checks; it never changes
 * a record, and the partitioner and size limit see the stored bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "schemas/schemas.h"

typedef struct RecordContext
{
	int			index;
	int			count;
} RecordContext;

/* Error context: which record of a batch was refused. */
static void
record_context(void *arg)
{
	RecordContext *rc = (RecordContext *) arg;

	errcontext("message %d of %d", rc->index + 1, rc->count);
}

/* Check one key or value against its subject. */
static void
check_datum(Datum d, const SchemasSubject *sub, const char *what)
{
	bytea	   *b = DatumGetByteaPP(d);
	const char *data = VARDATA_ANY(b);
	int			len = VARSIZE_ANY_EXHDR(b);
	SchemaWhere where;
	bool		member = false;

	/* copies: looking the schema up may drop the cache that sub lives in */
	where.subject = pstrdup(sub->subject);
	where.id = SchemasWireId(data, len, what, &where);
	for (int i = 0; i < sub->n && !member; i++)
		member = sub->ids[i] == where.id;
	if (!member)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema %d is not a version of subject \"%s\"", where.id, where.subject),
				 errdetail("A %s must name the id of one of the subject's versions (commitlog.schema_list).",
						   what),
				 errhint("Register the schema under \"%s\" first, or produce jsonb to encode with its latest version.",
						 where.subject)));
	SchemasValidate(SchemasById(where.id, false), data + SCHEMAS_HEADER_BYTES,
					len - SCHEMAS_HEADER_BYTES, &where);
}

/*
 * Refuse a record that does not match its topic's schemas.  Costs one
 * string comparison when the topic has no subject (cache.c).
 */
void
SchemasCheckRecord(Topic *topic, Datum key, Datum value, int index, int count)
{
	const SchemasSubject *vsub = SchemasSubjectOf(topic->name, false);
	const SchemasSubject *ksub;
	ErrorContextCallback errcb;
	RecordContext rc = {index, count};

	ksub = SchemasSubjectOf(topic->name, true);
	if (vsub->n == 0 && ksub->n == 0)
		return;

	errcb.callback = record_context;
	errcb.arg = &rc;
	errcb.previous = error_context_stack;
	if (count > 1)
		error_context_stack = &errcb;
	if (value != (Datum) 0 && vsub->n > 0)
		check_datum(value, vsub, "value");
	/* the value's check may have dropped the cache: ask again */
	ksub = SchemasSubjectOf(topic->name, true);
	if (key != (Datum) 0 && ksub->n > 0)
		check_datum(key, ksub, "key");
	error_context_stack = errcb.previous;
}
