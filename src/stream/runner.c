/*-------------------------------------------------------------------------
 *
 * runner.c
 *		The processor worker: runs the batches of processors and derived
 *		tables.
 *
 * A batch is one transaction:
 *
 *	1. claim the (job, partition) position row in commitlog.consumer_offsets
 *	   with FOR UPDATE SKIP LOCKED (another worker, or a consume() of the
 *	   same group, holding it means: try another pair);
 *	2. only then read the job (paused?) and the partition's retry state,
 *	   with a fresh snapshot, so a pause_processor that committed before the
 *	   claim is seen;
 *	3. read up to batch_size records after the position (stable offset
 *	   first, snapshot after: fetch.c's FetchRangeOf and FetchRead);
 *	4. call the handler with them as commitlog.record[], as the job's owner,
 *	   in a subtransaction;
 *	5. move the position past the batch, count it, commit.
 *
 * Effects and position commit together or not at all, so a crash anywhere
 * (kill -9 of this worker, of the postmaster) either keeps both or neither:
 * every record takes effect exactly once, and since one transaction at a
 * time holds a partition, in offset order.
 *
 * When the handler fails, its subtransaction is rolled back and, in the
 * same transaction, the failure is recorded (commitlog.stream_partitions:
 * failures, last_error, retry_at with exponential backoff) without moving
 * the position.  The batch that fails for the (max_retries + 1)-th time is
 * dead-lettered: the records are bisected, each half handled in a
 * subtransaction of its own, so that the records that succeed take effect,
 * in order, and only the ones that fail on their own go to the dead-letter
 * topic, with the error in their headers; then the position moves past the
 * batch.  Nothing is skipped silently: a record either took effect or is in
 * the dead-letter topic.  If producing to the dead-letter topic fails, all
 * of that is rolled back and the batch waits for its next retry.
 *
 * Settings a handler changes (even with plain SET) are undone after each
 * call: one worker serves the jobs of many owners.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fetch/fetch.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "stream/stream.h"
#include "tcop/tcopprot.h"
#include "topics/topics.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

/* an idle worker looks for work this often */
#define RUNNER_POLL_MS		100

/* and for a restore in progress at most this often */
#define RUNNER_RESTORE_CHECK_MS	1000

/*
 * How the owner's code runs (handler, derived-table upsert, dead-letter
 * produce): as the owner, unable to SET ROLE, and security-restricted, as
 * PostgreSQL runs a table owner's code in VACUUM or CREATE INDEX.  The
 * restriction refuses what would outlive the call and run later with the
 * worker's superuser rights or in another owner's batch: deferred triggers
 * (they would fire at the batch's commit), temporary tables and WITH HOLD
 * cursors (the worker's session serves the jobs of every owner).  So that
 * deferrable constraints (a DEFERRABLE INITIALLY DEFERRED foreign key) still
 * work, each call starts with SET CONSTRAINTS ALL IMMEDIATE: they are
 * checked at the end of each statement, as the owner; only a handler that
 * defers them itself meets the refusal.
 */
#define RUNNER_OWNER_SEC_CONTEXT \
	(SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION)

/* A job, as a batch needs it. */
typedef struct RunnerJob
{
	int32		id;
	char	   *name;
	bool		is_table;
	char	   *topic;
	Oid			handler;
	Oid			relid;
	int32		batch_size;
	int32		max_retries;
	char	   *dead_letter_topic;
	Oid			owner;			/* a derived table's: its current owner */
	int32		failures;		/* of the current batch, so far */
	int32		handler_failures;	/* of those, the handler's */
} RunnerJob;

/* The records of one batch. */
typedef struct RunnerBatch
{
	RunnerJob  *job;
	int32		partition;
	int			n;
	Datum	   *records;		/* commitlog.record composites */
	Oid			record_type;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int64		dead_lettered;
} RunnerBatch;

static bool extension_gone = false;

/* the last look for a restore in progress */
static TimestampTz restore_checked_at = 0;
static bool restore_running = false;

/* Run a catalog statement of the batch (search_path is pinned). */
static void
runner_exec(const char *sql, int nargs, Oid *types, Datum *args, const char *nulls, int expected)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, args, nulls, false, 0);

	if (ret != expected)
		elog(ERROR, "stream catalog statement failed (%d): %s", ret, sql);
}

/* The retry delay after the n-th failure: doubling, bounded. */
static int
runner_backoff_ms(int failures)
{
	int64		ms = (int64) STREAM_RETRY_BASE_MS << Min(Max(failures - 1, 0), 20);

	return (int) Min(ms, (int64) STREAM_RETRY_MAX_MS);
}

/*
 * Record a failure of (job, partition): the count, the error and when to
 * try again.  handler_failures: the handler's failures on the batch so far
 * (what max_retries counts), or -1 for a failure that was not the
 * handler's, which keeps them.  In the caller's transaction.
 */
static void
runner_record_failure(int32 job_id, int32 partition, int32 failures, int32 handler_failures,
					  const char *message)
{
	Oid			types[6] = {INT4OID, INT4OID, INT4OID, INT4OID, TEXTOID, INT4OID};
	Datum		args[6] = {Int32GetDatum(job_id), Int32GetDatum(partition), Int32GetDatum(failures),
		Int32GetDatum(runner_backoff_ms(failures)), CStringGetTextDatum(message),
	Int32GetDatum(handler_failures)};

	runner_exec("INSERT INTO commitlog.stream_partitions AS s "
				"(job_id, partition, failures, handler_failures, retry_at, last_error, last_error_at) "
				"VALUES ($1, $2, $3, GREATEST($6, 0), pg_catalog.clock_timestamp() + $4 * interval '1 ms', $5, "
				"        pg_catalog.clock_timestamp()) "
				"ON CONFLICT (job_id, partition) DO UPDATE SET failures = EXCLUDED.failures, "
				"handler_failures = CASE WHEN $6 < 0 THEN s.handler_failures ELSE $6 END, "
				"retry_at = EXCLUDED.retry_at, last_error = EXCLUDED.last_error, "
				"last_error_at = EXCLUDED.last_error_at",
				6, types, args, NULL, SPI_OK_INSERT);
}

/* A batch went through: count it, clear the retry state. */
static void
runner_record_success(int32 job_id, int32 partition, int64 processed, int64 dead_lettered,
					  const char *last_error)
{
	Oid			types[5] = {INT4OID, INT4OID, INT8OID, INT8OID, TEXTOID};
	Datum		args[5] = {Int32GetDatum(job_id), Int32GetDatum(partition), Int64GetDatum(processed),
	Int64GetDatum(dead_lettered), last_error ? CStringGetTextDatum(last_error) : (Datum) 0};
	char		nulls[5] = {' ', ' ', ' ', ' ', last_error ? ' ' : 'n'};

	runner_exec("INSERT INTO commitlog.stream_partitions AS s "
				"(job_id, partition, processed, dead_lettered, last_error, last_error_at) "
				"VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 IS NOT NULL THEN pg_catalog.clock_timestamp() END) "
				"ON CONFLICT (job_id, partition) DO UPDATE SET "
				"processed = s.processed + EXCLUDED.processed, "
				"dead_lettered = s.dead_lettered + EXCLUDED.dead_lettered, "
				"failures = 0, handler_failures = 0, retry_at = NULL, "
				"last_error = COALESCE(EXCLUDED.last_error, s.last_error), "
				"last_error_at = COALESCE(EXCLUDED.last_error_at, s.last_error_at)",
				5, types, args, nulls, SPI_OK_INSERT);
}

/* Move the claimed position to next. */
static void
runner_commit_position(RunnerJob *job, int32 topic_id, int32 partition, int64 next)
{
	Oid			types[4] = {TEXTOID, INT4OID, INT4OID, INT8OID};
	Datum		args[4] = {CStringGetTextDatum(job->name), Int32GetDatum(topic_id),
	Int32GetDatum(partition), Int64GetDatum(next)};

	runner_exec("UPDATE commitlog.consumer_offsets "
				"SET committed_offset = $4, committed_at = pg_catalog.now() "
				"WHERE group_id = $1 AND topic_id = $2 AND partition = $3",
				4, types, args, NULL, SPI_OK_UPDATE);
}

/*
 * Call the job's handler with records [lo, hi) of the batch, as the job's
 * owner (the table's owner for a derived table), with the session's own
 * settings, undoing any setting it changes.
 */
static void
runner_call(RunnerBatch *batch, int lo, int hi, ErrorData *unused)
{
	RunnerJob  *job = batch->job;
	ArrayType  *array = construct_array(batch->records + lo, hi - lo, batch->record_type,
										batch->typlen, batch->typbyval, batch->typalign);
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel = NewGUCNestLevel();
	ConstraintsSetStmt all_immediate = {.type = T_ConstraintsSetStmt, .constraints = NIL, .deferred = false};

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(job->owner, save_sec_context | RUNNER_OWNER_SEC_CONTEXT);
	/* deferrable constraints are checked now, as the owner (see above) */
	AfterTriggerSetState(&all_immediate);
	if (job->is_table)
		StreamApplyToTable(job->relid, PointerGetDatum(array));
	else
	{
		FmgrInfo	flinfo;
		LOCAL_FCINFO(hfcinfo, 1);

		(void) set_config_option("search_path", GetConfigOptionResetString("search_path"),
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		fmgr_info(job->handler, &flinfo);
		InitFunctionCallInfoData(*hfcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
		hfcinfo->args[0].value = PointerGetDatum(array);
		hfcinfo->args[0].isnull = false;
		(void) FunctionCallInvoke(hfcinfo);
	}
	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/* Work on records [lo, hi) of a batch; error: the failure that led to it. */
typedef void (*RunnerWork) (RunnerBatch *batch, int lo, int hi, ErrorData *error);

/*
 * Run work in a subtransaction.  True if it succeeded (its effects stay);
 * false with *error set (in the caller's memory context) if it failed (its
 * effects are gone).
 */
static bool
runner_subxact(RunnerWork work, RunnerBatch *batch, int lo, int hi, ErrorData *cause,
			   ErrorData **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		work(batch, lo, hi, cause);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		*error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/* The handler on records [lo, hi), in a subtransaction (runner_subxact). */
static bool
runner_try(RunnerBatch *batch, int lo, int hi, ErrorData **error)
{
	return runner_subxact(runner_call, batch, lo, hi, NULL, error);
}

/*
 * Produce record i of the batch to the job's dead-letter topic, with its
 * key, value, headers and timestamp, and the error in headers named
 * commitlog.error.*.  As the job's owner.
 */
static void
runner_dead_letter_one(RunnerBatch *batch, int i, ErrorData *error)
{
	RunnerJob  *job = batch->job;
	Oid			types[5] = {TEXTOID, batch->record_type, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[5];
	Oid			save_userid;
	int			save_sec_context;

	args[0] = CStringGetTextDatum(job->dead_letter_topic);
	args[1] = batch->records[i];
	args[2] = CStringGetTextDatum(error->message ? error->message : "unknown error");
	args[3] = CStringGetTextDatum(unpack_sql_state(error->sqlerrcode));
	args[4] = CStringGetTextDatum(job->name);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(job->owner, save_sec_context | RUNNER_OWNER_SEC_CONTEXT);
	runner_exec("SELECT commitlog.produce($1, ($2).value, ($2).key, NULL::int4, "
				"  COALESCE(($2).headers, '{}'::commitlog.header[]) || ARRAY["
				"    ROW('" STREAM_DLQ_HEADER_PREFIX "message', pg_catalog.convert_to($3, 'UTF8')), "
				"    ROW('" STREAM_DLQ_HEADER_PREFIX "sqlstate', pg_catalog.convert_to($4, 'UTF8')), "
				"    ROW('" STREAM_DLQ_HEADER_PREFIX "processor', pg_catalog.convert_to($5, 'UTF8')), "
				"    ROW('" STREAM_DLQ_HEADER_PREFIX "topic', pg_catalog.convert_to(($2).topic, 'UTF8')), "
				"    ROW('" STREAM_DLQ_HEADER_PREFIX "partition', pg_catalog.convert_to(($2).partition::text, 'UTF8')), "
				"    ROW('" STREAM_DLQ_HEADER_PREFIX "offset', pg_catalog.convert_to(($2).log_offset::text, 'UTF8'))"
				"  ]::commitlog.header[], ($2).\"timestamp\")",
				5, types, args, NULL, SPI_OK_SELECT);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	batch->dead_lettered++;
}

/*
 * Records [lo, hi) failed together with error: bisect.  Each half is tried
 * on its own, left first (so what succeeds takes effect in offset order);
 * a half that fails is bisected again, and a single record that fails goes
 * to the dead-letter topic.  At most 2(hi - lo) - 1 handler calls.
 */
static void
runner_dead_letter(RunnerBatch *batch, int lo, int hi, ErrorData *error)
{
	int			mid;

	CHECK_FOR_INTERRUPTS();
	if (hi - lo == 1)
	{
		runner_dead_letter_one(batch, lo, error);
		return;
	}
	mid = lo + (hi - lo) / 2;
	for (int half = 0; half < 2; half++)
	{
		int			a = half == 0 ? lo : mid;
		int			b = half == 0 ? mid : hi;
		ErrorData  *e = NULL;

		if (!runner_try(batch, a, b, &e))
			runner_dead_letter(batch, a, b, e);
	}
}

/*
 * Dead-letter the batch in a subtransaction: false (nothing changed, *error
 * set) when that failed, e.g. the dead-letter topic was dropped.
 */
static bool
runner_dead_letter_batch(RunnerBatch *batch, ErrorData *first, ErrorData **error)
{
	if (runner_subxact(runner_dead_letter, batch, 0, batch->n, first, error))
		return true;
	batch->dead_lettered = 0;
	return false;
}

/*
 * Read the job and the partition's retry state, after the claim.  False
 * when the batch must not run now (paused, dropped, waiting to retry).
 */
static bool
runner_load_job(int32 job_id, int32 partition, RunnerJob *job)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(job_id), Int32GetDatum(partition)};
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;

	runner_exec("SELECT j.name, j.kind = 'table', j.topic, j.handler::pg_catalog.oid, "
				"       j.derived_table::pg_catalog.oid, j.batch_size, j.max_retries, "
				"       j.dead_letter_topic, "
				"       CASE WHEN j.kind = 'table' "
				"            THEN COALESCE((SELECT c.relowner FROM pg_catalog.pg_class c "
				"                            WHERE c.oid = j.derived_table), j.owner::pg_catalog.oid) "
				"            ELSE j.owner::pg_catalog.oid END, "
				"       COALESCE(s.failures, 0), COALESCE(s.handler_failures, 0), "
				"       j.paused OR COALESCE(s.retry_at > pg_catalog.clock_timestamp(), false) "
				"  FROM commitlog.stream_jobs j "
				"  LEFT JOIN commitlog.stream_partitions s ON s.job_id = j.id AND s.partition = $2 "
				" WHERE j.id = $1", 2, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (DatumGetBool(SPI_getbinval(tuple, desc, 12, &isnull)))
		return false;
	job->id = job_id;
	job->name = SPI_getvalue(tuple, desc, 1);
	job->is_table = DatumGetBool(SPI_getbinval(tuple, desc, 2, &isnull));
	job->topic = SPI_getvalue(tuple, desc, 3);
	job->handler = DatumGetObjectId(SPI_getbinval(tuple, desc, 4, &isnull));
	if (isnull)
		job->handler = InvalidOid;
	job->relid = DatumGetObjectId(SPI_getbinval(tuple, desc, 5, &isnull));
	if (isnull)
		job->relid = InvalidOid;
	job->batch_size = DatumGetInt32(SPI_getbinval(tuple, desc, 6, &isnull));
	job->max_retries = DatumGetInt32(SPI_getbinval(tuple, desc, 7, &isnull));
	job->dead_letter_topic = SPI_getvalue(tuple, desc, 8);
	job->owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 9, &isnull));
	job->failures = DatumGetInt32(SPI_getbinval(tuple, desc, 10, &isnull));
	job->handler_failures = DatumGetInt32(SPI_getbinval(tuple, desc, 11, &isnull));
	return true;
}

/*
 * What a batch needs besides its handler working: the handler (or table)
 * still there, and the owner's rights.  Checked before the batch, so that
 * a failure here is retried but never dead-letters records.
 */
static void
runner_check_job(RunnerJob *job)
{
	if (job->is_table)
	{
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(job->relid)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("derived table \"%s\" was dropped", job->name)));
		return;
	}
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(job->handler)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the handler function of processor \"%s\" no longer exists", job->name)));
	if (pg_proc_aclcheck(job->handler, job->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(job->handler)),
				 errdetail("Processor \"%s\" calls its handler as role %s.", job->name,
						   quote_identifier(GetUserNameFromId(job->owner, false)))));
}

/*
 * Read the batch: up to batch_size records of the partition from *from on.
 * Sets *next to the position after it (past any gap).  Inside SPI.
 */
static void
runner_read(RunnerBatch *batch, Topic *topic, int64 *from, int64 *next)
{
	Oid			record_type = get_element_type(StreamRecordArrayType());
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(record_type, -1);
	ReturnSetInfo rsinfo;
	Snapshot	snapshot;
	FetchRange	range;
	TupleTableSlot *slot;

	LOCAL_FCINFO(fcinfo, 0);

	batch->n = 0;
	batch->record_type = record_type;
	get_typlenbyvalalign(record_type, &batch->typlen, &batch->typbyval, &batch->typalign);
	range = FetchRangeOf(topic, batch->partition, &snapshot);
	if (*from < 0)
		*from = range.earliest; /* no position yet */
	else if (*from < range.earliest)
	{
		ereport(WARNING,
				(errmsg("pg_commitlog: %s \"%s\" skips offsets " INT64_FORMAT " to " INT64_FORMAT
						" of partition %d of topic \"%s\": retention removed them before they were processed",
						batch->job->is_table ? "derived table" : "processor", batch->job->name,
						*from, range.earliest - 1, batch->partition, topic->name)));
		*from = range.earliest;
	}
	*next = *from;
	if (*from >= range.stable)
	{
		UnregisterSnapshot(snapshot);
		return;
	}

	memset(&rsinfo, 0, sizeof(rsinfo));
	rsinfo.type = T_ReturnSetInfo;
	rsinfo.setDesc = desc;
	rsinfo.setResult = tuplestore_begin_heap(false, false, work_mem);
	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, (fmNodePtr) &rsinfo);
	batch->n = (int) FetchRead(fcinfo, topic, batch->partition, *from, range, snapshot,
							   batch->job->batch_size, INT_MAX, next);
	UnregisterSnapshot(snapshot);

	batch->records = palloc(sizeof(Datum) * Max(batch->n, 1));
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	for (int i = 0; i < batch->n; i++)
	{
		if (!tuplestore_gettupleslot(rsinfo.setResult, true, false, slot))
			elog(ERROR, "batch of %d records ended at %d", batch->n, i);
		batch->records[i] = ExecFetchSlotHeapTupleDatum(slot);
	}
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(rsinfo.setResult);
}

/*
 * One batch of (job_id, partition), in one transaction.  Returns true if
 * the position moved (records processed or dead-lettered, or a gap
 * skipped).  *claimed says whether the partition was ours to run.
 */
static bool
runner_batch(int32 job_id, int32 partition, bool *claimed)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(job_id), Int32GetDatum(partition)};
	RunnerJob	job;
	RunnerBatch batch;
	Topic	   *topic;
	bool		isnull;
	int64		position;
	int64		from;
	int64		next;
	int32		topic_id;
	bool		moved = false;
	ErrorData  *error = NULL;
	int			nestlevel;

	*claimed = false;
	nestlevel = CatalogBegin();
	runner_exec("SELECT o.committed_offset, o.topic_id "
				"  FROM commitlog.consumer_offsets o "
				"  JOIN commitlog.stream_jobs j ON j.name = o.group_id "
				"  JOIN commitlog.topics t ON t.name = j.topic AND t.id = o.topic_id "
				" WHERE j.id = $1 AND o.partition = $2 "
				"   FOR UPDATE OF o SKIP LOCKED", 2, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		CatalogEnd(nestlevel);
		return false;
	}
	position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		position = -1;			/* consume() made the row: from the earliest */
	topic_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!runner_load_job(job_id, partition, &job))
	{
		CatalogEnd(nestlevel);
		return false;
	}
	*claimed = true;
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("pg_commitlog: %s \"%s\", partition %d",
									job.is_table ? "derived table" : "processor", job.name, partition));

	topic = TopicOpen(job.topic, AccessShareLock);
	if (pg_class_aclcheck(topic->relid, job.owner, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read topic \"%s\"", topic->name),
				 errdetail("%s \"%s\" reads it as role %s.",
						   job.is_table ? "Derived table" : "Processor", job.name,
						   quote_identifier(GetUserNameFromId(job.owner, false)))));
	runner_check_job(&job);
	memset(&batch, 0, sizeof(batch));
	batch.job = &job;
	batch.partition = partition;
	from = position;
	runner_read(&batch, topic, &from, &next);

	if (batch.n == 0)
		moved = next != position;
	else if (runner_try(&batch, 0, batch.n, &error))
	{
		runner_record_success(job.id, partition, batch.n, 0, NULL);
		moved = true;
	}
	else
	{
		int64		first = DatumGetInt64(GetAttributeByNum((HeapTupleHeader) DatumGetPointer(batch.records[0]), 3, &isnull));
		int32		failures = job.failures + 1;
		/* failures that were not the handler's (runner_unit_failed) don't count */
		bool		give_up = !job.is_table && job.handler_failures + 1 > job.max_retries;

		ereport(LOG,
				(errmsg("pg_commitlog: %s \"%s\" failed on partition %d, offsets " INT64_FORMAT " to " INT64_FORMAT " (failure %d%s): %s",
						job.is_table ? "derived table" : "processor", job.name, partition,
						first, next - 1, failures,
						give_up ? ", dead-lettering" : "", error->message)));
		if (give_up)
		{
			ErrorData  *dlq_error = NULL;

			if (runner_dead_letter_batch(&batch, error, &dlq_error))
			{
				runner_record_success(job.id, partition, batch.n - batch.dead_lettered,
									  batch.dead_lettered, error->message);
				moved = true;
			}
			else
				runner_record_failure(job.id, partition, failures, job.handler_failures + 1,
									  psprintf("could not dead-letter to topic \"%s\": %s",
											   job.dead_letter_topic, dlq_error->message));
		}
		else
			runner_record_failure(job.id, partition, failures, job.handler_failures + 1,
								  error->message);
	}
	if (moved)
		runner_commit_position(&job, topic_id, partition, next);
	CatalogEnd(nestlevel);
	return moved;
}

/* A unit of work: a job's partition. */
typedef struct RunnerUnit
{
	int32		job_id;
	int32		partition;
} RunnerUnit;

/* The units with records to process, in one short transaction. */
static RunnerUnit *
runner_list_work(int *n)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunnerUnit *units = NULL;
	int			nestlevel;
	bool		isnull;

	*n = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(get_extension_oid("pg_commitlog", true)))
		extension_gone = true;
	else
	{
		nestlevel = CatalogBegin();
		/* pg_locks is not free: look at most every RUNNER_RESTORE_CHECK_MS */
		if (TimestampDifferenceExceeds(restore_checked_at, GetCurrentTimestamp(),
									   RUNNER_RESTORE_CHECK_MS))
		{
			restore_running = StreamRestoreRunning();
			restore_checked_at = GetCurrentTimestamp();
		}
		if (restore_running)
		{
			CatalogEnd(nestlevel);
			PopActiveSnapshot();
			CommitTransactionCommand();
			MemoryContextSwitchTo(cxt);
			return NULL;
		}
		runner_exec(STREAM_WORK_QUERY, 0, NULL, NULL, NULL, SPI_OK_SELECT);
		units = MemoryContextAlloc(cxt, sizeof(RunnerUnit) * (SPI_processed + 1));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			units[i].job_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			units[i].partition = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		}
		*n = (int) SPI_processed;
		CatalogEnd(nestlevel);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return units;
}

/*
 * An error outside the handler (the topic was dropped, a privilege was
 * revoked, ...): log it, and record it for the unit in a new transaction so
 * that the unit waits before its next try and commitlog.processors shows it.
 */
static void
runner_unit_failed(RunnerUnit *unit, ErrorData *error)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(unit->job_id), Int32GetDatum(unit->partition)};
	int			nestlevel;
	bool		isnull;
	int32		failures = 1;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	nestlevel = CatalogBegin();
	runner_exec("SELECT failures FROM commitlog.stream_partitions WHERE job_id = $1 AND partition = $2",
				2, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		failures = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) + 1;
	runner_exec("SELECT 1 FROM commitlog.stream_jobs WHERE id = $1", 1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		runner_record_failure(unit->job_id, unit->partition, failures, -1, error->message);
	CatalogEnd(nestlevel);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/* One batch of one unit, errors caught; true if a position moved. */
static bool
runner_unit(RunnerUnit *unit)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool moved = false;
	volatile bool claimed = false;

	PG_TRY();
	{
		bool		c;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		moved = runner_batch(unit->job_id, unit->partition, &c);
		claimed = c;
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *error;

		MemoryContextSwitchTo(cxt);
		error = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		runner_unit_failed(unit, error);
		moved = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return moved || claimed;
}

/*
 * Look for work once: run one batch of the first unit (from a rotating
 * start, so units take turns) that can run.  True if one ran.
 */
static bool
runner_step(void)
{
	static uint32 turn = 0;
	int			n;
	RunnerUnit *units = runner_list_work(&n);

	if (n == 0)
		return false;
	turn++;
	for (int k = 0; k < n; k++)
	{
		CHECK_FOR_INTERRUPTS();
		if (runner_unit(&units[(turn + k) % n]))
			return true;
	}
	return false;
}

void
commitlog_processor_main(Datum main_arg)
{
	Oid			dbid = DatumGetObjectId(main_arg);
	MemoryContext step_cxt;
	TimestampTz last_work;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	pgstat_report_appname(STREAM_WORKER_TYPE);
	if (!StreamAttachWorker())
		proc_exit(0);			/* the server runs as many as it may */
	/* claims with SKIP LOCKED need a new snapshot per statement */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);

	step_cxt = AllocSetContextCreate(TopMemoryContext, "pg_commitlog processor step",
									 ALLOCSET_DEFAULT_SIZES);
	last_work = GetCurrentTimestamp();
	for (;;)
	{
		bool		worked;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextSwitchTo(step_cxt);
		worked = runner_step();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(step_cxt);
		if (extension_gone)
			proc_exit(0);

		pgstat_report_stat(false);
		if (worked)
		{
			last_work = GetCurrentTimestamp();
			continue;
		}
		if (TimestampDifferenceExceeds(last_work, GetCurrentTimestamp(),
									   commitlog_processor_idle_timeout))
			proc_exit(0);		/* the database's worker starts us again */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RUNNER_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
