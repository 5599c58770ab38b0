/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The worker of one database.
 *
 * Started by the launcher with the database's OID.  It exits at once (code
 * 0, so the postmaster forgets it quietly) unless the extension is installed
 * in the database; the launcher tries again a naptime later.  Otherwise it
 * registers its latch in shared memory (BgworkerWake) and runs a cycle every
 * commitlog.worker_naptime, or sooner when woken:
 *
 *	1. check that the extension is still there (DROP EXTENSION: exit);
 *	2. transaction timeout: end backends whose producing transaction has
 *	   held back readers longer than commitlog.transaction_timeout;
 *	3. segment upkeep, and retention every commitlog.retention_check_interval
 *	   (RetentionMaintain, src/retention);
 *	4. controller upkeep on the coordinator session (controller.c);
 *	5. cluster upkeep, in cluster mode (src/cluster).
 *
 * Segment upkeep comes before the controller so that a producer who woke
 * the worker for a segment does not wait behind coordinator I/O (bounded,
 * but seconds when the coordinator is unreachable).
 *
 * Each step is a unit of work with its own transactions; an error in one is
 * logged (with the step as context), its transaction aborted, and the step
 * retried next cycle; the other steps still run.  Nothing is held between
 * cycles: no transaction, no lock, no snapshot.  The only state kept across
 * cycles is the coordinator session (controller.c) and a few timestamps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "bgworker/bgworker_internal.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "cluster/cluster.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "offsets/offsets.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "retention/retention.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "stream/stream.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/* backends the transaction timeout ends per cycle, at most */
#define WORKER_MAX_STUCK		64

/* longest pause between retries of a failing retention step */
#define WORKER_MAX_BACKOFF_MS	60000

static char *worker_dbname = NULL;

/* set by worker_check */
static const char *worker_stop_reason = NULL;

/* the restore lock (bgworker.h) is held around maintenance */
static bool maintenance_locked = false;
static bool waiting_for_restore = false;

/* retention schedule */
static TimestampTz last_retention = 0;	/* 0: never ran */
static int	retention_failures = 0;
static TimestampTz retention_retry_at = 0;

typedef void (*WorkerStep) (void);

static void
worker_step_context(void *arg)
{
	errcontext("pg_commitlog worker: %s", (const char *) arg);
}

/*
 * Run one step.  On error: log it with the step as context, abort its
 * transaction, call on_error, and return false.
 */
static bool
worker_run(const char *what, WorkerStep step, WorkerStep on_error)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorContextCallback callback;
	volatile bool ok = true;

	callback.callback = worker_step_context;
	callback.arg = (void *) what;
	callback.previous = error_context_stack;
	error_context_stack = &callback;
	PG_TRY();
	{
		step();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		MemoryContextSwitchTo(cxt);
		if (on_error)
			on_error();
		pgstat_report_activity(STATE_IDLE, NULL);
		ok = false;
	}
	PG_END_TRY();
	error_context_stack = callback.previous;
	MemoryContextSwitchTo(cxt);
	return ok;
}

/*
 * Should this worker keep running?  Sets worker_stop_reason when not.
 *
 * A CREATE EXTENSION still in progress in another backend is invisible
 * here (its pg_extension row is not committed), so "exists" also means "is
 * not being created"; creating_extension is only ever true in the backend
 * that runs the script, never in a worker.
 */
static void
worker_check(void)
{
	HeapTuple	tuple;

	worker_stop_reason = NULL;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("pg_commitlog", true)) || creating_extension)
		worker_stop_reason = "the extension is not installed in it";
	tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (!db->datallowconn || db->datistemplate)
			worker_stop_reason = "it is a template or does not allow connections";
		else if (!BgworkerServesDatabase(NameStr(db->datname)))
			worker_stop_reason = "it is not listed in commitlog.databases";
		ReleaseSysCache(tuple);
	}
	CommitTransactionCommand();
}

/*
 * End the backends whose producing transaction has held a stable offset
 * back for longer than commitlog.transaction_timeout, as Kafka aborts a
 * transaction after transaction.timeout.ms.  The backend is terminated:
 * PostgreSQL has no way to abort another session's transaction, and an
 * idle one ignores a cancel.
 */
static void
worker_transaction_timeout(void)
{
	int			pids[WORKER_MAX_STUCK];
	int			n;
	TimestampTz older_than;

	if (commitlog_transaction_timeout <= 0)
		return;
	older_than = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 -(int64) commitlog_transaction_timeout);
	n = OffsetsStuckProducers(MyDatabaseId, older_than, pids, WORKER_MAX_STUCK);
	if (n == 0)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pg_commitlog: transaction timeout");
	for (int i = 0; i < n; i++)
	{
		Oid			argtypes[1] = {INT4OID};
		Datum		args[1] = {Int32GetDatum(pids[i])};
		TupleDesc	desc;
		HeapTuple	tuple;
		bool		isnull;
		char	   *user;
		char	   *app;
		char	   *open_for;

		if (SPI_execute_with_args("SELECT a.usename, a.application_name, "
								  "pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.xact_start), 1)::text, "
								  "pg_catalog.pg_terminate_backend(a.pid) "
								  "FROM pg_catalog.pg_stat_activity a WHERE a.pid = $1",
								  1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look up backend %d", pids[i]);
		if (SPI_processed == 0)
			continue;			/* ended meanwhile */
		desc = SPI_tuptable->tupdesc;
		tuple = SPI_tuptable->vals[0];
		if (!DatumGetBool(SPI_getbinval(tuple, desc, 4, &isnull)) || isnull)
			continue;
		user = SPI_getvalue(tuple, desc, 1);
		app = SPI_getvalue(tuple, desc, 2);
		open_for = SPI_getvalue(tuple, desc, 3);
		ereport(LOG,
				(errmsg("pg_commitlog: terminated backend %d (user \"%s\", application \"%s\"): its producing transaction held back readers for longer than commitlog.transaction_timeout (%d ms)",
						pids[i], user ? user : "", app ? app : "",
						commitlog_transaction_timeout),
				 errdetail("The transaction had been open for %s s.  Its records are rolled back, and the offsets it took are a gap.",
						   open_for ? open_for : "?"),
				 errhint("Keep producing transactions short, or raise commitlog.transaction_timeout.")));
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/*
 * Take the restore lock in exclusive mode, without waiting: false while a
 * session restores into this database (bgworker.c).
 */
static bool
worker_lock_maintenance(void)
{
	LOCKTAG		tag;
	LockAcquireResult result;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, BGWORKER_LOCK_RESTORE, 0, 2);
	StartTransactionCommand();
	result = LockAcquire(&tag, ExclusiveLock, true, true);
	CommitTransactionCommand();
	maintenance_locked = result != LOCKACQUIRE_NOT_AVAIL;
	if (maintenance_locked != !waiting_for_restore)
		ereport(LOG,
				(errmsg(maintenance_locked
						? "pg_commitlog worker for database \"%s\" resumes segment upkeep and retention: the restore has ended"
						: "pg_commitlog worker for database \"%s\" holds off segment upkeep and retention while a restore (commitlog.restore_mode) runs",
						worker_dbname)));
	waiting_for_restore = !maintenance_locked;
	return maintenance_locked;
}

static void
worker_unlock_maintenance(void)
{
	LOCKTAG		tag;

	if (!maintenance_locked)
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, BGWORKER_LOCK_RESTORE, 0, 2);
	LockRelease(&tag, ExclusiveLock, true);
	maintenance_locked = false;
}

/* Segment upkeep every cycle; retention when due; never during a restore. */
static void
worker_retention(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		due;

	if (retention_failures > 0 && now < retention_retry_at)
		return;
	if (!worker_lock_maintenance())
		return;
	due = last_retention == 0 ||
		TimestampDifferenceExceeds(last_retention, now, commitlog_retention_check_interval);
	RetentionMaintain(due);
	worker_unlock_maintenance();
	if (due)
		last_retention = now;
	retention_failures = 0;
}

/* Retry a failing retention step next cycle, then less and less often. */
static void
worker_retention_failed(void)
{
	int64		backoff;

	worker_unlock_maintenance();
	retention_failures++;
	backoff = (int64) commitlog_worker_naptime << Min(retention_failures - 1, 16);
	retention_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 Min(backoff, WORKER_MAX_BACKOFF_MS));
}

/* An error in the middle of controller upkeep: the session's state is unknown. */
static void
worker_controller_failed(void)
{
	ControllerDisconnect("an error during controller upkeep");
}

/* SIGHUP: reload, and say so when our settings changed. */
static void
worker_reload(void)
{
	int			naptime = commitlog_worker_naptime;
	int			timeout = commitlog_transaction_timeout;
	int			interval = commitlog_retention_check_interval;

	ProcessConfigFile(PGC_SIGHUP);
	if (naptime != commitlog_worker_naptime || timeout != commitlog_transaction_timeout ||
		interval != commitlog_retention_check_interval)
		ereport(LOG,
				(errmsg("pg_commitlog worker for database \"%s\" reloaded its settings: worker_naptime = %d ms, transaction_timeout = %d ms, retention_check_interval = %d ms",
						worker_dbname, commitlog_worker_naptime, commitlog_transaction_timeout,
						commitlog_retention_check_interval)));
}

void
commitlog_worker_main(Datum main_arg)
{
	Oid			dbid = DatumGetObjectId(main_arg);
	MemoryContext cycle_cxt;
	char	   *superuser;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* FATAL if the database was dropped since the launcher listed it */
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	pgstat_report_appname(BGWORKER_WORKER_TYPE);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	worker_dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(dbid));
	superuser = MemoryContextStrdup(TopMemoryContext,
									GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false));
	CommitTransactionCommand();

	worker_check();
	if (worker_stop_reason != NULL)
	{
		ereport(DEBUG1,
				(errmsg("pg_commitlog worker for database \"%s\" exits: %s",
						worker_dbname, worker_stop_reason)));
		proc_exit(0);
	}
	/* another worker serves the database, or DROP DATABASE is under way */
	if (!BgworkerAttach(dbid))
		proc_exit(0);
	ereport(LOG, (errmsg("pg_commitlog worker started for database \"%s\"", worker_dbname)));

	ControllerStart(worker_dbname, superuser);
	cycle_cxt = AllocSetContextCreate(TopMemoryContext, "pg_commitlog worker cycle",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			worker_reload();
		}

		MemoryContextSwitchTo(cycle_cxt);
		if (worker_run("checking the extension", worker_check, NULL) &&
			worker_stop_reason != NULL)
		{
			ereport(LOG,
					(errmsg("pg_commitlog worker for database \"%s\" exits: %s",
							worker_dbname, worker_stop_reason)));
			proc_exit(0);
		}
		worker_run("transaction timeout", worker_transaction_timeout, NULL);
		worker_run("segment upkeep and retention", worker_retention, worker_retention_failed);
		worker_run("controller upkeep", ControllerUpkeep, worker_controller_failed);
		worker_run("cluster upkeep", ClusterUpkeep, NULL);
		worker_run("stream processing upkeep", StreamUpkeep, NULL);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(cycle_cxt);

		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 commitlog_worker_naptime, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
