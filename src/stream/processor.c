/*-------------------------------------------------------------------------
 *
 * processor.c
 *		create_processor, pause_processor, resume_processor, drop_processor,
 *		and what the SQL functions of derived tables share with them.
 *
 * The registry is commitlog.stream_jobs; it is written as the owner of the
 * metadata tables (CatalogExec), like the rest of the metadata.  Pause and
 * drop first lock the job's position rows, waiting for a batch in flight to
 * commit, so that once they return no batch of the job runs any more: a
 * batch claims its row before it reads the paused flag (runner.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "bgworker/bgworker.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "fetch/fetch.h"
#include "groups/groups.h"
#include "miscadmin.h"
#include "stream/stream.h"
#include "topics/topics.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(create_processor);
PG_FUNCTION_INFO_V1(pause_processor);
PG_FUNCTION_INFO_V1(resume_processor);
PG_FUNCTION_INFO_V1(drop_processor);

static bool wake_at_commit = false;
static bool wake_callback_registered = false;

/* A name argument (processor name, table name): not null, not empty. */
char *
StreamNameArg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	char	   *name;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", what)));
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (strlen(name) > GROUP_ID_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", what),
				 errdetail("It is the group id of the job's positions, which has at most %d bytes.",
						   GROUP_ID_MAX_BYTES)));
	return name;
}

/* The OID of commitlog.record[]. */
Oid
StreamRecordArrayType(void)
{
	Oid			record = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										 CStringGetDatum("record"),
										 ObjectIdGetDatum(get_namespace_oid(COMMITLOG_SCHEMA, false)));

	if (!OidIsValid(record))
		elog(ERROR, "type commitlog.record is missing");
	return get_array_type(record);
}

static void
stream_xact_callback(XactEvent event, void *arg)
{
	if (!wake_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT)
		BgworkerWake(MyDatabaseId);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
		wake_at_commit = false;
}

/*
 * Wake the database's worker when this transaction commits, so that a new
 * or resumed job starts within moments rather than a worker naptime.
 */
void
StreamWakeAtCommit(void)
{
	if (!wake_callback_registered)
	{
		RegisterXactCallback(stream_xact_callback, NULL);
		wake_callback_registered = true;
	}
	wake_at_commit = true;
}

/*
 * Give job_id a position in each partition of its topic that has none:
 * the earliest offset, or the latest when from_latest.  Existing positions
 * (a consumer group of the same name) are kept.
 */
void
StreamEnsurePositions(int32 job_id, bool from_latest)
{
	Oid			types[2] = {INT4OID, BOOLOID};
	Datum		args[2] = {Int32GetDatum(job_id), BoolGetDatum(from_latest)};
	int			nestlevel = CatalogBegin();

	CatalogExec("INSERT INTO commitlog.consumer_offsets "
				"(group_id, topic_id, partition, committed_offset, committed_at) "
				"SELECT j.name, t.id, p.partition, "
				"       CASE WHEN $2 THEN commitlog.latest_offset(t.name, p.partition) "
				"            ELSE commitlog.earliest_offset(t.name, p.partition) END, "
				"       pg_catalog.now() "
				"  FROM commitlog.stream_jobs j "
				"  JOIN commitlog.topics t ON t.name = j.topic "
				"  JOIN commitlog.partitions p ON p.topic_id = t.id "
				" WHERE j.id = $1 "
				"   AND NOT EXISTS (SELECT 1 FROM commitlog.consumer_offsets o "
				"                    WHERE o.group_id = j.name AND o.topic_id = t.id "
				"                      AND o.partition = p.partition) "
				"ON CONFLICT (group_id, topic_id, partition) DO NOTHING",
				2, types, args, NULL);
	CatalogEnd(nestlevel);
}

/* A job as the SQL functions need it. */
typedef struct JobRef
{
	int32		id;
	Oid			owner;
	char	   *topic;
} JobRef;

/* The processor named name (inside CatalogBegin), or error 42704. */
static JobRef
processor_find(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	JobRef		job;
	bool		isnull;

	CatalogRead("SELECT id, owner::pg_catalog.oid, topic FROM commitlog.stream_jobs "
				"WHERE name = $1 AND kind = 'processor'", 1, types, args, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("processor \"%s\" does not exist", name),
				 errhint("Look in commitlog.processors for existing processors.")));
	job.id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	job.owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	job.topic = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (!has_privs_of_role(GetUserId(), job.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of processor \"%s\"", name),
				 errdetail("The processor belongs to role %s.",
						   quote_identifier(GetUserNameFromId(job.owner, false))),
				 errhint("Ask that role, or a superuser, to do it.")));
	return job;
}

/*
 * A processor's or derived table's group is its position: only the job's
 * owner (or a member of that role) may move it with commit_offset,
 * consume, reset_offsets or delete_group.  Anyone else who can read the
 * topic could otherwise make it skip or repeat records.  Other groups have
 * no owner, as in Kafka without ACLs.
 */
void
StreamCheckGroupWrite(const char *group)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(group)};
	int			nestlevel = CatalogBegin();
	Oid			owner = InvalidOid;
	bool		processor = false;
	bool		isnull;

	CatalogRead("SELECT owner::pg_catalog.oid, kind = 'processor' FROM commitlog.stream_jobs "
				"WHERE name = $1", 1, types, args, 1);
	if (SPI_processed > 0)
	{
		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		processor = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	CatalogEnd(nestlevel);
	if (OidIsValid(owner) && !has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("consumer group \"%s\" belongs to %s \"%s\"", group,
						processor ? "processor" : "derived table", group),
				 errdetail("Its positions are the %s's; only role %s may move them.",
						   processor ? "processor" : "derived table",
						   quote_identifier(GetUserNameFromId(owner, false))),
				 errhint("Read with another group_id, or ask that role or a superuser.")));
}

/*
 * Wait for the job's batch in flight, if any, and keep its positions
 * locked until this transaction ends (see the file comment).
 */
static void
stream_lock_positions(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};

	CatalogExec("SELECT 1 FROM commitlog.consumer_offsets WHERE group_id = $1 FOR UPDATE",
				1, types, args, NULL);
}

/* Forget a job: its positions in its topic, its state, its row. */
void
StreamForgetJob(int32 job_id, const char *name, const char *topic)
{
	Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		args[3] = {Int32GetDatum(job_id), CStringGetTextDatum(name), CStringGetTextDatum(topic)};

	stream_lock_positions(name);
	CatalogExec("DELETE FROM commitlog.consumer_offsets o USING commitlog.topics t "
				"WHERE o.group_id = $2 AND t.name = $3 AND o.topic_id = t.id",
				3, types, args, NULL);
	CatalogExec("DELETE FROM commitlog.stream_partitions WHERE job_id = $1", 1, types, args, NULL);
	CatalogExec("DELETE FROM commitlog.stream_jobs WHERE id = $1", 1, types, args, NULL);
}

/* Refuse a name some processor or derived table has already. */
void
StreamCheckNameFree(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};

	CatalogRead("SELECT kind FROM commitlog.stream_jobs WHERE name = $1", 1, types, args, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("%s \"%s\" already exists",
						strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "table") == 0
						? "derived table" : "processor", name),
				 errdetail("Processors and derived tables share one namespace: their names are group ids."),
				 errhint("Choose another name, or drop the existing one first.")));
}

/* The handler must be a plain function (commitlog.record[]) RETURNS void. */
static void
processor_check_handler(Oid handler)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", handler)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset && proc->pronargs == 1 &&
		proc->proargtypes.values[0] == StreamRecordArrayType() && proc->prorettype == VOIDOID;
	ReleaseSysCache(tuple);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function %s cannot be a processor's handler", format_procedure(handler)),
				 errdetail("A handler takes one argument of type commitlog.record[] and returns void."),
				 errhint("Declare it as: CREATE FUNCTION my_handler(records commitlog.record[]) RETURNS void ...")));
	if (pg_proc_aclcheck(handler, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(handler)),
				 errdetail("A processor calls its handler as the role that created it.")));
}

static int32
processor_int_arg(FunctionCallInfo fcinfo, int argno, const char *name, int32 min)
{
	if (PG_ARGISNULL(argno) || PG_GETARG_INT32(argno) < min)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %s", name,
						PG_ARGISNULL(argno) ? "null" : psprintf("%d", PG_GETARG_INT32(argno))),
				 errhint("%s must be at least %d.", name, min)));
	return PG_GETARG_INT32(argno);
}

/*
 * The dead-letter topic: the one named, or <topic>.dlq.  Created (as the
 * caller) when missing; otherwise the caller must be able to produce to it.
 */
static char *
processor_dead_letter_topic(FunctionCallInfo fcinfo, const char *topic)
{
	char	   *dlq;
	Oid			relid;

	if (PG_ARGISNULL(5))
	{
		if (strlen(topic) + strlen(".dlq") > COMMITLOG_MAX_TOPIC_NAME)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the default dead-letter topic name \"%s.dlq\" is too long", topic),
					 errdetail("A topic name has at most %d characters.", COMMITLOG_MAX_TOPIC_NAME),
					 errhint("Name a dead-letter topic with the dead_letter_topic argument.")));
		dlq = psprintf("%s.dlq", topic);
	}
	else
		dlq = text_to_cstring(PG_GETARG_TEXT_PP(5));
	TopicValidateName(dlq);
	if (strcmp(dlq, topic) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the dead-letter topic cannot be the processor's own topic \"%s\"", topic),
				 errhint("Name another topic, or leave dead_letter_topic out to use \"%s.dlq\".", topic)));

	relid = get_relname_relid(dlq, TopicSchemaOid(false));
	if (!OidIsValid(relid))
	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(dlq)};

		/* as the caller, who then owns it */
		SPI_connect();
		if (SPI_execute_with_args("SELECT commitlog.create_topic($1)", 1, types, args, NULL,
								  false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not create topic \"%s\"", dlq);
		SPI_finish();
	}
	else if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to produce to dead-letter topic \"%s\"", dlq),
				 errdetail("A processor sends the records its handler keeps failing on to this topic, as the role that created it."),
				 errhint("Grant INSERT on commitlog_topics.%s, or name another dead-letter topic.",
						 quote_identifier(dlq))));
	return dlq;
}

/*
 * create_processor(name text, topic text, handler regprocedure,
 *					batch_size int, max_retries int, dead_letter_topic text,
 *					start_from text) RETURNS void
 */
Datum
create_processor(PG_FUNCTION_ARGS)
{
	char	   *name = StreamNameArg(fcinfo, 0, "name");
	Topic	   *topic;
	Oid			handler;
	int32		batch_size;
	int32		max_retries;
	char	   *dlq;
	char	   *start_from;
	int			nestlevel;
	Oid			types[7] = {TEXTOID, TEXTOID, REGPROCEDUREOID, INT4OID, INT4OID, TEXTOID, OIDOID};
	Datum		args[7];
	bool		isnull;

	PreventCommandIfReadOnly("commitlog.create_processor()");
	topic = TopicOpen(TopicNameArg(PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1)), AccessShareLock);
	FetchRequireSelect(topic);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handler must not be null"),
				 errhint("Pass a function such as 'my_handler(commitlog.record[])'.")));
	handler = PG_GETARG_OID(2);
	processor_check_handler(handler);
	batch_size = processor_int_arg(fcinfo, 3, "batch_size", 1);
	max_retries = processor_int_arg(fcinfo, 4, "max_retries", 0);
	if (PG_ARGISNULL(6))
		start_from = "earliest";
	else
		start_from = text_to_cstring(PG_GETARG_TEXT_PP(6));
	if (strcmp(start_from, "earliest") != 0 && strcmp(start_from, "latest") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid start_from \"%s\"", start_from),
				 errhint("Use 'earliest' or 'latest'.")));

	nestlevel = CatalogBegin();
	StreamCheckNameFree(name);
	dlq = processor_dead_letter_topic(fcinfo, topic->name);

	args[0] = CStringGetTextDatum(name);
	args[1] = CStringGetTextDatum(topic->name);
	args[2] = ObjectIdGetDatum(handler);
	args[3] = Int32GetDatum(batch_size);
	args[4] = Int32GetDatum(max_retries);
	args[5] = CStringGetTextDatum(dlq);
	args[6] = ObjectIdGetDatum(GetUserId());
	CatalogExec("INSERT INTO commitlog.stream_jobs "
				"(name, kind, topic, handler, batch_size, max_retries, dead_letter_topic, owner) "
				"VALUES ($1, 'processor', $2, $3, $4, $5, $6, $7::pg_catalog.regrole) RETURNING id",
				7, types, args, NULL);
	StreamEnsurePositions(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)),
						  strcmp(start_from, "latest") == 0);
	CatalogEnd(nestlevel);
	StreamWakeAtCommit();
	PG_RETURN_VOID();
}

/* pause_processor / resume_processor: set the paused flag. */
static void
processor_set_paused(FunctionCallInfo fcinfo, bool paused)
{
	char	   *name = StreamNameArg(fcinfo, 0, "name");
	int			nestlevel;
	JobRef		job;
	Oid			types[2] = {INT4OID, BOOLOID};
	Datum		args[2];

	PreventCommandIfReadOnly(paused ? "commitlog.pause_processor()" : "commitlog.resume_processor()");
	nestlevel = CatalogBegin();
	job = processor_find(name);
	if (paused)
		stream_lock_positions(name);
	args[0] = Int32GetDatum(job.id);
	args[1] = BoolGetDatum(paused);
	CatalogExec("UPDATE commitlog.stream_jobs SET paused = $2 WHERE id = $1", 2, types, args, NULL);
	CatalogEnd(nestlevel);
	if (!paused)
		StreamWakeAtCommit();
}

/* pause_processor(name text) RETURNS void */
Datum
pause_processor(PG_FUNCTION_ARGS)
{
	processor_set_paused(fcinfo, true);
	PG_RETURN_VOID();
}

/* resume_processor(name text) RETURNS void */
Datum
resume_processor(PG_FUNCTION_ARGS)
{
	processor_set_paused(fcinfo, false);
	PG_RETURN_VOID();
}

/* drop_processor(name text) RETURNS void: positions and counters go too */
Datum
drop_processor(PG_FUNCTION_ARGS)
{
	char	   *name = StreamNameArg(fcinfo, 0, "name");
	int			nestlevel;
	JobRef		job;

	PreventCommandIfReadOnly("commitlog.drop_processor()");
	nestlevel = CatalogBegin();
	job = processor_find(name);
	StreamForgetJob(job.id, name, job.topic);
	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}
