/*
 * bgworker_internal.h
 *		Private to src/bgworker.
 */
#ifndef COMMITLOG_BGWORKER_INTERNAL_H
#define COMMITLOG_BGWORKER_INTERNAL_H

#include "bgworker/bgworker.h"
#include "utils/timestamp.h"

/* databases whose workers the shared state can track at once */
#define BGWORKER_MAX_DATABASES		64

/* longest a DROP/RENAME DATABASE keeps the database's worker from restarting */
#define BGWORKER_PAUSE_MS			60000

/* backend types shown in pg_stat_activity */
#define BGWORKER_LAUNCHER_TYPE		"pg_commitlog launcher"
#define BGWORKER_WORKER_TYPE		"pg_commitlog worker"

/* bgworker.c: shared state of the launcher and the workers */
extern void BgworkerSetLauncher(void);
extern bool BgworkerAttach(Oid dbid);
extern bool BgworkerRunning(Oid dbid);
extern bool BgworkerPaused(Oid dbid);
extern int	BgworkerFreeSlots(void);
extern bool BgworkerTakeRescanRequest(void);
extern bool BgworkerServesDatabase(const char *datname);

/* launcher.c, worker.c: entry points named in bgw_function_name */
extern PGDLLEXPORT void commitlog_launcher_main(Datum main_arg) pg_attribute_noreturn();
extern PGDLLEXPORT void commitlog_worker_main(Datum main_arg) pg_attribute_noreturn();
extern void BgworkerRegisterLauncher(void);

/* controller.c, for worker.c */
extern void ControllerStart(const char *dbname, const char *superuser);
extern void ControllerUpkeep(void);
extern void ControllerDisconnect(const char *why);

#endif							/* COMMITLOG_BGWORKER_INTERNAL_H */
