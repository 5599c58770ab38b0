/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher: one worker per database.
 *
 * A static background worker connected to no database (it reads only the
 * shared catalog pg_database).  Every commitlog.launcher_naptime, or at once
 * when CREATE EXTENSION pg_commitlog commits somewhere, it lists the
 * databases that allow connections and are not templates (and are named in
 * commitlog.databases, when that is set), and starts a dynamic worker for
 * each one that has none.  A worker exits at once where the extension is
 * not installed, so such databases are checked again once per naptime and
 * a later CREATE EXTENSION is served within a naptime at most.
 *
 * Whether a database has a worker comes from the shared slots (the worker
 * registers there), not from the launcher's memory: a launcher restarted
 * after an error does not start a second worker beside a running one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "bgworker/bgworker_internal.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* a database the launcher may start a worker for */
typedef struct LauncherDatabase
{
	Oid			dbid;
	char		name[NAMEDATALEN];
} LauncherDatabase;

/* log "out of slots" once per shortage, not once per naptime */
static bool warned_no_bgworker = false;
static bool warned_no_slot = false;

/* Register the launcher; from _PG_init, during shared_preload_libraries. */
void
BgworkerRegisterLauncher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_commitlog");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "commitlog_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, BGWORKER_LAUNCHER_TYPE);
	snprintf(worker.bgw_type, BGW_MAXLEN, BGWORKER_LAUNCHER_TYPE);
	RegisterBackgroundWorker(&worker);
}

/* The databases to serve, from pg_database; in the caller's memory context. */
static List *
launcher_databases(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tuple = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		LauncherDatabase *entry;
		MemoryContext old;

		/* template0 and template1 are templates */
		if (!db->datallowconn || db->datistemplate)
			continue;
#ifdef DATCONNLIMIT_INVALID_DB
		/* half dropped by an interrupted DROP DATABASE (15.4 and later) */
		if (database_is_invalid_form(db))
			continue;
#endif
		old = MemoryContextSwitchTo(cxt);
		entry = palloc(sizeof(LauncherDatabase));
		entry->dbid = db->oid;
		strlcpy(entry->name, NameStr(db->datname), NAMEDATALEN);
		result = lappend(result, entry);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return result;
}

/* Start a worker for db; false when no background worker slot is free. */
static bool
launcher_start(const LauncherDatabase *db)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_commitlog");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "commitlog_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for database %s", BGWORKER_WORKER_TYPE, db->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, BGWORKER_WORKER_TYPE);
	worker.bgw_main_arg = ObjectIdGetDatum(db->dbid);
	worker.bgw_notify_pid = 0;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;
	/* the worker's own slot tells whether it runs; the handle is not needed */
	pfree(handle);
	return true;
}

/*
 * One scan: start a worker for each database that has none.  A worker
 * started by the previous scan may not have registered yet and so look
 * missing; then two start, and the second finds the slot taken and exits.
 */
static void
launcher_scan(void)
{
	List	   *dbs = launcher_databases();
	int			nfree = BgworkerFreeSlots();
	ListCell   *lc;

	foreach(lc, dbs)
	{
		LauncherDatabase *db = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		if (!BgworkerServesDatabase(db->name) || BgworkerRunning(db->dbid) ||
			BgworkerPaused(db->dbid))
			continue;
		if (nfree <= 0)
		{
			if (!warned_no_slot)
				ereport(WARNING,
						(errmsg("pg_commitlog cannot serve more than %d databases with workers",
								BGWORKER_MAX_DATABASES),
						 errhint("Name the databases that need a worker in commitlog.databases.")));
			warned_no_slot = true;
			break;
		}
		if (!launcher_start(db))
		{
			if (!warned_no_bgworker)
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("pg_commitlog could not start a worker for database \"%s\": no background worker slot is free",
								db->name),
						 errhint("Raise max_worker_processes: pg_commitlog needs one for its launcher and one per database that has the extension.")));
			warned_no_bgworker = true;
			return;
		}
		ereport(DEBUG1,
				(errmsg("pg_commitlog launcher started a worker for database \"%s\"", db->name)));
		warned_no_bgworker = false;
	}
	if (nfree > 0)
		warned_no_slot = false;
}

void
commitlog_launcher_main(Datum main_arg)
{
	MemoryContext scan_cxt;
	TimestampTz next_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: pg_database is a shared catalog */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(BGWORKER_LAUNCHER_TYPE);
	BgworkerSetLauncher();
	ereport(LOG, (errmsg("pg_commitlog launcher started")));

	scan_cxt = AllocSetContextCreate(TopMemoryContext, "pg_commitlog launcher",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		TimestampTz now;
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_scan = 0;		/* commitlog.databases may name new ones */
		}

		now = GetCurrentTimestamp();
		if (BgworkerTakeRescanRequest() || now >= next_scan)
		{
			MemoryContext old = MemoryContextSwitchTo(scan_cxt);

			pgstat_report_activity(STATE_RUNNING, "pg_commitlog: starting workers");
			launcher_scan();
			pgstat_report_activity(STATE_IDLE, NULL);
			MemoryContextSwitchTo(old);
			MemoryContextReset(scan_cxt);
			now = GetCurrentTimestamp();
			next_scan = TimestampTzPlusMilliseconds(now, commitlog_launcher_naptime);
		}

		wait_ms = Max(TimestampDifferenceMilliseconds(now, next_scan), 1);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
