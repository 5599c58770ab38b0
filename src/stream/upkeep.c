/*-------------------------------------------------------------------------
 *
 * upkeep.c
 *		Settings, shared slots and the start of processor workers.
 *
 * The database's worker (src/bgworker/worker.c) calls StreamUpkeep() once
 * per cycle.  It keeps the jobs' positions complete (a partition added to a
 * topic, or a topic dropped and created again, gets a position at its
 * earliest offset), forgets derived tables whose table was dropped, counts
 * the (job, partition) pairs that have records to process, and starts
 * processor workers for them: dynamic background workers that report to it
 * (bgw_notify_pid) and that it terminates when it exits itself, so that
 * DROP DATABASE and DROP EXTENSION, which stop the database's worker, stop
 * its processors too.
 *
 * The bound, commitlog.max_processor_workers, is for the whole server: a
 * worker takes a slot in shared memory when it starts and exits at once if
 * none is free under the bound, so two databases (or a start racing the
 * previous one's registration) can never run more than the bound.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "stream/stream.h"
#include "topics/topics.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

int			commitlog_max_processor_workers = 4;
int			commitlog_processor_idle_timeout = 10000;

/* One running processor worker. */
typedef struct StreamSlot
{
	Oid			dbid;			/* InvalidOid: free */
	pid_t		pid;
} StreamSlot;

typedef struct StreamShared
{
	slock_t		mutex;
	int			nslots;			/* max_worker_processes: a bound no GUC value passes */
	StreamSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} StreamShared;

static StreamShared *stream_shared = NULL;
static StreamSlot *my_slot = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* the database worker's processors, started by it (in TopMemoryContext) */
static List *started = NIL;
static bool exit_callback_registered = false;
static bool warned_no_bgworker = false;

void
StreamDefineGucs(void)
{
	DefineCustomIntVariable("commitlog.max_processor_workers",
							"Processor workers that may run at once, in the whole server.",
							"Each runs the batches of stream processors and derived tables of one "
							"database; it takes a background worker slot (max_worker_processes).  "
							"0 stops stream processing.",
							&commitlog_max_processor_workers,
							4, 0, 1024,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("commitlog.processor_idle_timeout",
							"A processor worker with nothing to process exits after this long.",
							"The database's worker starts one again as soon as a processor or "
							"derived table has records to process.",
							&commitlog_processor_idle_timeout,
							10000, 100, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

static Size
stream_shmem_size(void)
{
	return add_size(offsetof(StreamShared, slots),
					mul_size(sizeof(StreamSlot), max_worker_processes));
}

static void
stream_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(stream_shmem_size());
}

static void
stream_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stream_shared = ShmemInitStruct("pg_commitlog processors", stream_shmem_size(), &found);
	if (!found)
	{
		memset(stream_shared, 0, stream_shmem_size());
		SpinLockInit(&stream_shared->mutex);
		stream_shared->nslots = max_worker_processes;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Shared memory hooks; called from _PG_init. */
void
StreamInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stream_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stream_shmem_startup;
}

static void
stream_detach(int code, Datum arg)
{
	SpinLockAcquire(&stream_shared->mutex);
	my_slot->dbid = InvalidOid;
	my_slot->pid = 0;
	SpinLockRelease(&stream_shared->mutex);
	my_slot = NULL;
}

/*
 * A processor worker takes a slot; false when the server already runs
 * commitlog.max_processor_workers of them.
 */
bool
StreamAttachWorker(void)
{
	int			used = 0;
	StreamSlot *free_slot = NULL;

	SpinLockAcquire(&stream_shared->mutex);
	for (int i = 0; i < stream_shared->nslots; i++)
	{
		if (stream_shared->slots[i].dbid != InvalidOid)
			used++;
		else if (free_slot == NULL)
			free_slot = &stream_shared->slots[i];
	}
	if (free_slot != NULL && used < commitlog_max_processor_workers)
	{
		free_slot->dbid = MyDatabaseId;
		free_slot->pid = MyProcPid;
		my_slot = free_slot;
	}
	SpinLockRelease(&stream_shared->mutex);
	if (my_slot == NULL)
		return false;
	on_shmem_exit(stream_detach, (Datum) 0);
	return true;
}

/* Is a session restoring into this database (STREAM_RESTORE_QUERY)?  In SPI. */
bool
StreamRestoreRunning(void)
{
	bool		isnull;

	if (SPI_execute(STREAM_RESTORE_QUERY, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for a restore in progress");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Processor workers running in dbid, and in the whole server. */
static int
stream_running(Oid dbid, int *total)
{
	int			in_db = 0;

	*total = 0;
	SpinLockAcquire(&stream_shared->mutex);
	for (int i = 0; i < stream_shared->nslots; i++)
	{
		if (stream_shared->slots[i].dbid == InvalidOid)
			continue;
		(*total)++;
		if (stream_shared->slots[i].dbid == dbid)
			in_db++;
	}
	SpinLockRelease(&stream_shared->mutex);
	return in_db;
}

/* The database's worker exits: its processors go with it. */
static void
stream_terminate_started(int code, Datum arg)
{
	ListCell   *lc;

	foreach(lc, started)
		TerminateBackgroundWorker((BackgroundWorkerHandle *) lfirst(lc));
}

/*
 * Forget the workers that have stopped; returns how many were started but
 * have not yet run (they hold no slot yet).
 */
static int
stream_prune_started(void)
{
	List	   *alive = NIL;
	ListCell   *lc;
	int			pending = 0;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	foreach(lc, started)
	{
		BackgroundWorkerHandle *handle = lfirst(lc);
		pid_t		pid;
		BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);

		if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED)
		{
			pfree(handle);
			continue;
		}
		if (status == BGWH_NOT_YET_STARTED)
			pending++;
		alive = lappend(alive, handle);
	}
	list_free(started);
	started = alive;
	MemoryContextSwitchTo(old);
	return pending;
}

/* Start one processor worker for this database; false when none could start. */
static bool
stream_start_worker(void)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* upkeep starts another */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_commitlog");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "commitlog_processor_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for database %u", STREAM_WORKER_TYPE, MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, STREAM_WORKER_TYPE);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		MemoryContextSwitchTo(old);
		if (!warned_no_bgworker)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pg_commitlog could not start a processor worker: no background worker slot is free"),
					 errhint("Raise max_worker_processes, or lower commitlog.max_processor_workers.")));
		warned_no_bgworker = true;
		return false;
	}
	started = lappend(started, handle);
	MemoryContextSwitchTo(old);
	warned_no_bgworker = false;
	if (!exit_callback_registered)
	{
		before_shmem_exit(stream_terminate_started, (Datum) 0);
		exit_callback_registered = true;
	}
	return true;
}

/*
 * Catalog upkeep in one transaction; returns how many (job, partition)
 * pairs have records to process now.
 */
static int64
stream_catalog_upkeep(void)
{
	int64		work = 0;
	bool		isnull;
	int			nestlevel;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	nestlevel = CatalogBegin();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pg_commitlog: stream processing upkeep");

	if (SPI_execute("SELECT 1 FROM commitlog.stream_jobs LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read commitlog.stream_jobs");
	if (SPI_processed > 0)
	{
		/* a derived table dropped with DROP TABLE: forget it */
		if (SPI_execute("WITH gone AS ("
						"  DELETE FROM commitlog.stream_jobs j WHERE j.kind = 'table' "
						"     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = j.derived_table) "
						"  RETURNING j.id, j.name, j.topic), "
						"offsets AS ("
						"  DELETE FROM commitlog.consumer_offsets o USING gone, commitlog.topics t "
						"   WHERE o.group_id = gone.name AND t.name = gone.topic AND o.topic_id = t.id), "
						"state AS ("
						"  DELETE FROM commitlog.stream_partitions s USING gone WHERE s.job_id = gone.id) "
						"SELECT name FROM gone", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not forget dropped derived tables");
		for (uint64 i = 0; i < SPI_processed; i++)
			ereport(LOG,
					(errmsg("pg_commitlog: derived table \"%s\" was dropped; it is no longer maintained",
							SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1))));

		/* partitions without a position (added since, or topic re-created) */
		if (SPI_execute("SELECT j.id FROM commitlog.stream_jobs j "
						"  JOIN commitlog.topics t ON t.name = j.topic "
						" WHERE (SELECT pg_catalog.count(*) FROM commitlog.consumer_offsets o "
						"         WHERE o.group_id = j.name AND o.topic_id = t.id) < t.partitions",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not list stream jobs");
		{
			uint64		n = SPI_processed;
			int32	   *ids = palloc(sizeof(int32) * (n + 1));

			for (uint64 i = 0; i < n; i++)
				ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			for (uint64 i = 0; i < n; i++)
				StreamEnsurePositions(ids[i], false);
		}

		if (SPI_execute("SELECT pg_catalog.count(*) FROM (" STREAM_WORK_QUERY ") w",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not count stream work");
		work = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (work > 0 && StreamRestoreRunning())
			work = 0;
	}

	PopActiveSnapshot();
	CatalogEnd(nestlevel);
	CommitTransactionCommand();
	return work;
}

/*
 * One upkeep step of the database's worker: catalog upkeep, then start
 * processor workers while there is more work than workers, within the
 * server-wide bound.
 */
void
StreamUpkeep(void)
{
	int64		work;
	int			pending;
	int			total;
	int			in_db;
	int64		want;

	pending = stream_prune_started();
	/* DROP EXTENSION since the cycle's check: the worker exits next cycle */
	StartTransactionCommand();
	work = OidIsValid(get_extension_oid("pg_commitlog", true));
	CommitTransactionCommand();
	if (!work)
		return;
	work = stream_catalog_upkeep();
	if (work == 0 || commitlog_max_processor_workers == 0)
		return;
	in_db = stream_running(MyDatabaseId, &total);
	want = Min(work, (int64) commitlog_max_processor_workers) - in_db - pending;
	want = Min(want, (int64) commitlog_max_processor_workers - total - pending);
	for (int64 i = 0; i < want; i++)
		if (!stream_start_worker())
			break;
}
