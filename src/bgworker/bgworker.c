/*-------------------------------------------------------------------------
 *
 * bgworker.c
 *		Settings, shared state and hooks of the background workers.
 *
 * Shared memory holds one slot per database that has a worker (or had one
 * stopped on purpose): the worker's pid and latch, so that a backend can
 * wake it (BgworkerWake) and the launcher can tell that it runs even after
 * the launcher itself was restarted.  A spinlock protects the slots; every
 * critical section is a scan of 64 entries.
 *
 * A worker is connected to its database, and PostgreSQL refuses DROP
 * DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, and CREATE
 * DATABASE ... TEMPLATE while anyone is.  So a ProcessUtility hook stops the
 * database's worker first and keeps the launcher from restarting it until
 * the command has ended (at most BGWORKER_PAUSE_MS, should the backend die
 * in between).  Once the command holds its lock on the database, a worker
 * started anyway would wait for that lock in InitPostgres (and, after a
 * DROP, find the database gone), so the pause only has to cover the
 * command's first steps.  The same hook asks the launcher for a scan when
 * CREATE EXTENSION pg_commitlog commits, so the new database gets its
 * worker at once rather than within commitlog.launcher_naptime.
 *
 * pg_restore creates the extension first and fills its tables later, so a
 * worker can start in the middle of a restore.  Its segment upkeep would
 * then read metadata that is half there (and seed the offset allocator
 * before the offset sequences are restored).  So a session that runs any
 * statement with commitlog.restore_mode on takes the restore lock in share
 * mode, for as long as it keeps restore_mode on (or until it ends), and the
 * worker runs maintenance only when it gets that lock in exclusive mode.
 * COPY and SET are utility statements, so every pg_restore connection,
 * parallel ones included, takes it with its first statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <signal.h>

#include "access/xact.h"
#include "bgworker/bgworker_internal.h"
#include "commitlog.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/varlena.h"

int			commitlog_launcher_naptime = 5000;
int			commitlog_worker_naptime = 1000;
int			commitlog_transaction_timeout = 60000;
int			commitlog_retention_check_interval = 300000;
char	   *commitlog_coordinator = NULL;
char	   *commitlog_advertised_conninfo = NULL;
char	   *commitlog_databases = NULL;

/* One database's worker. */
typedef struct BgworkerSlot
{
	Oid			dbid;			/* InvalidOid: free */
	pid_t		pid;			/* the worker's pid; 0 while none runs */
	Latch	   *latch;			/* the worker's latch; NULL while none runs */
	TimestampTz paused_until;	/* start no worker before this */
} BgworkerSlot;

typedef struct BgworkerShared
{
	slock_t		mutex;
	Latch	   *launcher_latch; /* NULL while the launcher does not run */
	bool		rescan;			/* a database may need a worker now */
	BgworkerSlot slots[BGWORKER_MAX_DATABASES];
} BgworkerShared;

static BgworkerShared *bgw_shared = NULL;
static BgworkerSlot *my_slot = NULL;	/* this worker's slot */
static bool rescan_at_commit = false;
/* BgworkerWakeAtCommit() was called in this transaction */
static bool wake_at_commit = false;
static bool restore_lock_held = false;	/* this session holds the restore lock */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/* ---------------------------------------------------------------------------
 * Settings
 * ---------------------------------------------------------------------------
 */

/* commitlog.databases must be a list of names */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(raw, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

void
BgworkerDefineGucs(void)
{
	DefineCustomIntVariable("commitlog.launcher_naptime",
							"Time between two scans of the databases by the launcher.",
							"The launcher starts a worker for each database that has none; a database "
							"where the extension appears gets its worker within this time.",
							&commitlog_launcher_naptime,
							5000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("commitlog.worker_naptime",
							"Time between two cycles of a database's worker.",
							"Each cycle: controller upkeep, transaction timeout, segment upkeep "
							"(and retention when due).  Producers that need a segment wake the "
							"worker early.",
							&commitlog_worker_naptime,
							1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("commitlog.transaction_timeout",
							"Ends a backend whose producing transaction holds readers back longer than this.",
							"As Kafka's transaction.timeout.ms.  0 disables it.",
							&commitlog_transaction_timeout,
							60000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("commitlog.retention_check_interval",
							"Time between two retention runs of a database's worker.",
							"As Kafka's log.retention.check.interval.ms.",
							&commitlog_retention_check_interval,
							300000, 10, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("commitlog.coordinator",
							   "Connection string of the coordinator database.",
							   "Empty: this server is a cluster of its own, and each database's "
							   "worker uses its own database as the coordinator.",
							   &commitlog_coordinator,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("commitlog.advertised_conninfo",
							   "How other brokers and clients reach this broker.",
							   "Recorded in commitlog.broker_registry.  Empty: this server's socket "
							   "directory, port and database.",
							   &commitlog_advertised_conninfo,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("commitlog.databases",
							   "Databases the launcher starts workers for.",
							   "A comma-separated list of database names.  Empty: every database "
							   "that allows connections and is not a template.",
							   &commitlog_databases,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   check_databases, NULL, NULL);
}

/* Is datname one of commitlog.databases (or is that list empty)? */
bool
BgworkerServesDatabase(const char *datname)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (commitlog_databases == NULL || commitlog_databases[0] == '\0')
		return true;
	raw = pstrdup(commitlog_databases);
	if (!SplitIdentifierString(raw, ',', &names))
		return false;			/* cannot happen: the check hook parsed it */
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), datname) == 0)
			found = true;
	list_free(names);
	pfree(raw);
	return found;
}

/* ---------------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------------
 */

static void
bgworker_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(BgworkerShared));
}

static void
bgworker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bgw_shared = ShmemInitStruct("pg_commitlog workers", sizeof(BgworkerShared), &found);
	if (!found)
	{
		memset(bgw_shared, 0, sizeof(BgworkerShared));
		SpinLockInit(&bgw_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of dbid, or NULL.  Caller holds the mutex. */
static BgworkerSlot *
bgworker_find(Oid dbid)
{
	for (int i = 0; i < BGWORKER_MAX_DATABASES; i++)
		if (bgw_shared->slots[i].dbid == dbid)
			return &bgw_shared->slots[i];
	return NULL;
}

/* The slot of dbid, taking a free one if it has none; or NULL.  Mutex held. */
static BgworkerSlot *
bgworker_find_or_take(Oid dbid)
{
	BgworkerSlot *slot = bgworker_find(dbid);

	if (slot == NULL && (slot = bgworker_find(InvalidOid)) != NULL)
	{
		slot->dbid = dbid;
		slot->pid = 0;
		slot->latch = NULL;
		slot->paused_until = 0;
	}
	return slot;
}

static void
bgworker_launcher_exit(int code, Datum arg)
{
	SpinLockAcquire(&bgw_shared->mutex);
	bgw_shared->launcher_latch = NULL;
	SpinLockRelease(&bgw_shared->mutex);
}

/* The launcher announces itself, so backends can wake it. */
void
BgworkerSetLauncher(void)
{
	SpinLockAcquire(&bgw_shared->mutex);
	bgw_shared->launcher_latch = MyLatch;
	SpinLockRelease(&bgw_shared->mutex);
	on_shmem_exit(bgworker_launcher_exit, (Datum) 0);
}

/* Has a backend asked the launcher for a scan since the last call? */
bool
BgworkerTakeRescanRequest(void)
{
	bool		rescan;

	SpinLockAcquire(&bgw_shared->mutex);
	rescan = bgw_shared->rescan;
	bgw_shared->rescan = false;
	SpinLockRelease(&bgw_shared->mutex);
	return rescan;
}

static void
bgworker_detach(int code, Datum arg)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&bgw_shared->mutex);
	my_slot->pid = 0;
	my_slot->latch = NULL;
	if (my_slot->paused_until <= now)
		my_slot->dbid = InvalidOid;
	SpinLockRelease(&bgw_shared->mutex);
	my_slot = NULL;
}

/*
 * A worker takes its database's slot.  False if another worker already
 * serves the database, if it is paused (a DROP DATABASE is under way), or
 * if every slot is taken.
 */
bool
BgworkerAttach(Oid dbid)
{
	TimestampTz now = GetCurrentTimestamp();
	BgworkerSlot *slot;
	bool		ok = false;

	SpinLockAcquire(&bgw_shared->mutex);
	slot = bgworker_find_or_take(dbid);
	if (slot != NULL && slot->pid == 0 && slot->paused_until <= now)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		ok = true;
	}
	SpinLockRelease(&bgw_shared->mutex);

	if (ok)
	{
		my_slot = slot;
		on_shmem_exit(bgworker_detach, (Datum) 0);
	}
	else if (slot == NULL)
		ereport(WARNING,
				(errmsg("pg_commitlog cannot serve more than %d databases with workers",
						BGWORKER_MAX_DATABASES),
				 errhint("Name the databases that need a worker in commitlog.databases.")));
	return ok;
}

/* Does a worker serve dbid? */
bool
BgworkerRunning(Oid dbid)
{
	BgworkerSlot *slot;
	bool		running;

	SpinLockAcquire(&bgw_shared->mutex);
	slot = bgworker_find(dbid);
	running = slot != NULL && slot->pid != 0;
	SpinLockRelease(&bgw_shared->mutex);
	return running;
}

/* Must dbid go without a worker for now (DROP DATABASE and the like)? */
bool
BgworkerPaused(Oid dbid)
{
	TimestampTz now = GetCurrentTimestamp();
	BgworkerSlot *slot;
	bool		paused;

	SpinLockAcquire(&bgw_shared->mutex);
	slot = bgworker_find(dbid);
	paused = slot != NULL && slot->paused_until > now;
	SpinLockRelease(&bgw_shared->mutex);
	return paused;
}

/* Free the slots of expired pauses; returns how many slots are free. */
int
BgworkerFreeSlots(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			nfree = 0;

	SpinLockAcquire(&bgw_shared->mutex);
	for (int i = 0; i < BGWORKER_MAX_DATABASES; i++)
	{
		BgworkerSlot *slot = &bgw_shared->slots[i];

		if (slot->dbid != InvalidOid && slot->pid == 0 && slot->paused_until <= now)
			slot->dbid = InvalidOid;
		if (slot->dbid == InvalidOid)
			nfree++;
	}
	SpinLockRelease(&bgw_shared->mutex);
	return nfree;
}

/*
 * Wake the worker of a database; a no-op when it has none.  The latch is
 * set outside the spinlock: a latch pointer stays valid memory (it is in a
 * PGPROC), so at worst a stale one wakes another process for nothing.
 */
void
BgworkerWake(Oid dbid)
{
	BgworkerSlot *slot;
	Latch	   *latch = NULL;

	if (bgw_shared == NULL)
		return;
	SpinLockAcquire(&bgw_shared->mutex);
	slot = bgworker_find(dbid);
	if (slot != NULL)
		latch = slot->latch;
	SpinLockRelease(&bgw_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* ---------------------------------------------------------------------------
 * Database commands that need the database to themselves
 * ---------------------------------------------------------------------------
 */

/* Ask the launcher for a scan now. */
static void
bgworker_request_rescan(void)
{
	Latch	   *latch;

	SpinLockAcquire(&bgw_shared->mutex);
	bgw_shared->rescan = true;
	latch = bgw_shared->launcher_latch;
	SpinLockRelease(&bgw_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Stop dbid's worker and keep it from restarting (until bgworker_resume,
 * or BGWORKER_PAUSE_MS); wait until it has exited.
 */
static void
bgworker_stop_database(Oid dbid)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BGWORKER_PAUSE_MS);
	BgworkerSlot *slot;
	pid_t		pid = 0;

	SpinLockAcquire(&bgw_shared->mutex);
	slot = bgworker_find_or_take(dbid);
	if (slot != NULL)
	{
		slot->paused_until = until;
		pid = slot->pid;
	}
	SpinLockRelease(&bgw_shared->mutex);
	if (pid == 0)
		return;

	ereport(DEBUG1,
			(errmsg("pg_commitlog: stopping the worker of database %u (pid %d)", dbid, (int) pid)));
	(void) kill(pid, SIGTERM);
	while (GetCurrentTimestamp() < until)
	{
		bool		gone;

		SpinLockAcquire(&bgw_shared->mutex);
		gone = slot->dbid != dbid || slot->pid != pid;
		SpinLockRelease(&bgw_shared->mutex);
		if (gone)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The command that needed dbid has ended: its worker may start again. */
static void
bgworker_resume(Oid dbid)
{
	BgworkerSlot *slot;

	SpinLockAcquire(&bgw_shared->mutex);
	slot = bgworker_find(dbid);
	if (slot != NULL)
		slot->paused_until = 0;
	SpinLockRelease(&bgw_shared->mutex);
	bgworker_request_rescan();
}

/*
 * The statement will need database datname to itself: stop its worker, if
 * the caller may run the statement at all (its owner), so that nobody else
 * can stop workers at will.  Returns the database paused, or InvalidOid.
 */
static Oid
bgworker_need_database(const char *datname)
{
	Oid			dbid;

	if (datname == NULL || bgw_shared == NULL)
		return InvalidOid;
	dbid = get_database_oid(datname, true);
	if (!OidIsValid(dbid) || !pg_database_ownercheck(dbid, GetUserId()))
		return InvalidOid;
	bgworker_stop_database(dbid);
	return dbid;
}

/* The value of option name in a list of DefElem, or NULL. */
static const char *
bgworker_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		if (strcmp(def->defname, name) == 0 && def->arg != NULL)
			return defGetString(def);
	}
	return NULL;
}

/*
 * This session restores (commitlog.restore_mode): hold the restore lock
 * in share mode, waiting for a maintenance run in progress to end; let it
 * go when restore_mode is off again.
 */
static void
bgworker_restore_lock(void)
{
	LOCKTAG		tag;

	if (!OidIsValid(MyDatabaseId) || commitlog_restore_mode == restore_lock_held)
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, BGWORKER_LOCK_RESTORE, 0, 2);
	if (commitlog_restore_mode)
		(void) LockAcquire(&tag, ShareLock, true, false);
	else
		LockRelease(&tag, ShareLock, true);
	restore_lock_held = commitlog_restore_mode;
}

static void
bgworker_xact_callback(XactEvent event, void *arg)
{
	if (!rescan_at_commit && !wake_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		if (rescan_at_commit)
			bgworker_request_rescan();
		if (wake_at_commit)
			BgworkerWake(MyDatabaseId);
		rescan_at_commit = wake_at_commit = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		rescan_at_commit = wake_at_commit = false;
}

/*
 * Wake this database's worker when the current transaction commits: for
 * work it can only see then (segments to drop below a raised log start).
 * Woken earlier, it would find nothing and sleep a whole naptime.
 */
void
BgworkerWakeAtCommit(void)
{
	wake_at_commit = true;
}

static void
bgworker_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						 ProcessUtilityContext context, ParamListInfo params,
						 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	volatile bool creating = false;
	volatile Oid paused = InvalidOid;

	bgworker_restore_lock();
	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			paused = bgworker_need_database(((DropdbStmt *) parsetree)->dbname);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				paused = bgworker_need_database(((RenameStmt *) parsetree)->subname);
			break;
		case T_AlterDatabaseStmt:
			if (bgworker_option(((AlterDatabaseStmt *) parsetree)->options, "tablespace"))
				paused = bgworker_need_database(((AlterDatabaseStmt *) parsetree)->dbname);
			break;
		case T_CreatedbStmt:
			paused = bgworker_need_database(bgworker_option(((CreatedbStmt *) parsetree)->options,
															"template"));
			break;
		case T_CreateExtensionStmt:
			creating = strcmp(((CreateExtensionStmt *) parsetree)->extname, "pg_commitlog") == 0;
			break;
		default:
			break;
	}

	PG_TRY();
	{
		if (prev_process_utility_hook)
			prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params,
									  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (OidIsValid(paused))
			bgworker_resume(paused);
	}
	PG_END_TRY();

	if (creating)
		rescan_at_commit = true;
	bgworker_restore_lock();	/* e.g. after SET commitlog.restore_mode = off */
}

/* Shared memory, hooks and the launcher; called from _PG_init. */
void
BgworkerInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = bgworker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = bgworker_shmem_startup;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = bgworker_process_utility;
	RegisterXactCallback(bgworker_xact_callback, NULL);

	/* pg_upgrade runs the server with -b: no worker may touch anything then */
	if (!IsBinaryUpgrade)
		BgworkerRegisterLauncher();
}
