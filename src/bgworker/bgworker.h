/*
 * bgworker.h
 *		The background workers: a launcher and one worker per database, and
 *		the controller election the workers run (DESIGN 8).
 *
 * The launcher (a static worker, no database) starts a worker for each
 * database that allows connections; a worker stays only where the extension
 * is installed.  Each worker cycle: the transaction timeout, segment upkeep
 * and retention (retention/retention.h), then controller upkeep on the
 * coordinator session.  README.md in this folder has the state diagrams.
 */
#ifndef COMMITLOG_BGWORKER_H
#define COMMITLOG_BGWORKER_H

#include "postgres.h"

#include "libpq-fe.h"

/*
 * Advisory lock keys, pg_try_advisory_lock(int4, int4), taken by a worker on
 * its session in the coordinator database:
 *	- the controller lock: (BGWORKER_LOCK_CONTROLLER, c) for the cluster
 *	  with id c in commitlog.clusters (1: 'default'); its holder is the
 *	  controller;
 *	- a broker's liveness lock: (BGWORKER_LOCK_BROKER + c - 1, broker_id),
 *	  held while the broker's worker is connected, so liveness needs no
 *	  heartbeat.
 * And in each database (not the coordinator):
 *	- the restore lock: (BGWORKER_LOCK_RESTORE, 0), held in share mode by every
 *	  session that ran a statement with commitlog.restore_mode on, and taken
 *	  in exclusive mode, without waiting, by the worker around segment upkeep
 *	  and retention, so that maintenance never sees a half-restored database.
 * In pg_locks they show as locktype 'advisory', classid = the first key,
 * objid = the second, objsubid = 2.
 */
#define BGWORKER_LOCK_CONTROLLER	1129074503	/* 0x434C4F47, "CLOG" */
#define BGWORKER_LOCK_CONTROLLER_ID	1
#define BGWORKER_LOCK_BROKER		1129070162	/* 0x434C4252, "CLBR" */
#define BGWORKER_LOCK_RESTORE		1129075283	/* 0x434C5253, "CLRS" */

/* GUCs (bgworker.c) */
extern int	commitlog_launcher_naptime;
extern int	commitlog_worker_naptime;
extern int	commitlog_transaction_timeout;
extern int	commitlog_retention_check_interval;
extern char *commitlog_coordinator;
extern char *commitlog_advertised_conninfo;
extern char *commitlog_databases;

/* Called from pg_commitlog.c: GUCs from define_gucs(), the rest from _PG_init. */
extern void BgworkerDefineGucs(void);
extern void BgworkerInit(void);

/* Wake the worker of a database (e.g. a producer ran out of segments). */
extern void BgworkerWake(Oid dbid);
extern void BgworkerWakeAtCommit(void);

/*
 * Sessions to this database for statements that cannot run in the
 * worker's transactions (loopback.c).  Exec returns NULL or the error.
 */
extern PGconn *BgworkerLoopbackConnect(const char *appname, const char *purpose);
extern char *BgworkerLoopbackExec(PGconn *conn, const char *sql);

/*
 * Controller actions, for the worker process only (controller.c).
 * ControllerEpoch() is this worker's controller epoch, 0 when it is not the
 * controller.  ControllerExec() runs one SQL statement (no parameters) on
 * the session that holds the controller lock, fenced by the epoch: it runs
 * in one transaction after commitlog.controller_fence(epoch), so it changes
 * nothing once a newer controller exists.  Returns false (and steps down
 * when fenced) if the statement did not run.
 */
extern int64 ControllerEpoch(void);
extern bool ControllerExec(const char *sql);

/*
 * For the cluster step (src/cluster): the id of commitlog.cluster on the
 * coordinator while this broker holds its liveness lock there (else 0), and
 * a query on the coordinator session (NULL, logged, when it failed; the
 * caller PQclears the result).
 */
struct pg_result;
extern int	ControllerClusterId(void);
extern struct pg_result *ControllerQuery(const char *sql, int nparams, const char *const *params);

#endif							/* COMMITLOG_BGWORKER_H */
