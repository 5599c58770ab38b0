/*
 * stream.h
 *		Stream processing (DESIGN 13): processors and derived tables.
 *
 * A job is a processor (a user's handler function called with batches of
 * records) or a derived table (the newest value per key, kept by a built-in
 * handler).  Jobs live in commitlog.stream_jobs; a job's group id is its
 * name, so its positions are ordinary rows of commitlog.consumer_offsets.
 *
 * Processor workers (dynamic background workers, runner.c) run batches: one
 * transaction claims a partition's position row (FOR UPDATE SKIP LOCKED, as
 * consume() does), reads up to batch_size records after it, applies them,
 * and moves the position, so the effects and the position commit together
 * or not at all.  The database's worker starts processor workers when some
 * job has lag (StreamUpkeep, upkeep.c), at most
 * commitlog.max_processor_workers in the whole server; they exit after
 * commitlog.processor_idle_timeout without work.  README.md in this folder
 * has the exactly-once argument and the failure handling.
 */
#ifndef COMMITLOG_STREAM_H
#define COMMITLOG_STREAM_H

#include "postgres.h"

#include "bgworker/bgworker.h"
#include "fmgr.h"

/* backend type shown in pg_stat_activity */
#define STREAM_WORKER_TYPE			"pg_commitlog processor"

/* header keys a dead-lettered record carries (besides its own headers) */
#define STREAM_DLQ_HEADER_PREFIX	"commitlog.error."

/* first retry after this long; each later one waits twice as long */
#define STREAM_RETRY_BASE_MS		100
#define STREAM_RETRY_MAX_MS			30000

/*
 * The (job, partition) pairs with records to process now: not paused, not
 * waiting to retry, handler or table still there, position below the
 * partition's latest offset.  A NULL position (a row consume() created)
 * means the earliest offset.  Shared by the upkeep (how many workers) and
 * the workers (what to claim).
 */
#define STREAM_WORK_QUERY \
	"SELECT j.id, o.partition " \
	"  FROM commitlog.stream_jobs j " \
	"  JOIN commitlog.topics t ON t.name = j.topic " \
	"  JOIN commitlog.consumer_offsets o ON o.group_id = j.name AND o.topic_id = t.id " \
	"  LEFT JOIN commitlog.stream_partitions s ON s.job_id = j.id AND s.partition = o.partition " \
	" WHERE NOT j.paused " \
	"   AND (s.retry_at IS NULL OR s.retry_at <= pg_catalog.clock_timestamp()) " \
	"   AND (j.kind = 'table' OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid = j.handler)) " \
	"   AND (j.kind = 'processor' OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = j.derived_table)) " \
	"   AND (o.committed_offset IS NULL " \
	"        OR o.committed_offset < commitlog.latest_offset(t.name, o.partition))"

/*
 * Does a session restore into this database?  It holds the restore lock
 * (bgworker.h) in share mode; taking the lock to find out would conflict
 * with segment upkeep, so look in pg_locks.  While it does, no batch runs:
 * it would write into tables whose rows are still to come.
 */
#define STREAM_RESTORE_QUERY \
	"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l " \
	"                WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ShareLock' " \
	"                  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d " \
	"                                     WHERE d.datname = pg_catalog.current_database()) " \
	"                  AND l.classid = " CppAsString2(BGWORKER_LOCK_RESTORE) \
	"                  AND l.objid = 0 AND l.objsubid = 2)"

/* GUCs (upkeep.c) */
extern int	commitlog_max_processor_workers;
extern int	commitlog_processor_idle_timeout;

/* upkeep.c: called from pg_commitlog.c and the database's worker */
extern void StreamDefineGucs(void);
extern void StreamInit(void);
extern void StreamUpkeep(void);

/* upkeep.c: the processor workers' shared slots */
extern bool StreamAttachWorker(void);
extern bool StreamRestoreRunning(void);

/* runner.c: entry point named in bgw_function_name */
extern PGDLLEXPORT void commitlog_processor_main(Datum main_arg) pg_attribute_noreturn();

/* tables.c: apply a batch (commitlog.record[]) to a derived table */
extern void StreamApplyToTable(Oid relid, Datum records);

/* processor.c: shared by the SQL functions */
extern void StreamEnsurePositions(int32 job_id, bool from_latest);
extern void StreamCheckNameFree(const char *name);

/* groups.c and consume.c: refuse moving a processor's or derived table's group */
extern void StreamCheckGroupWrite(const char *group);
extern void StreamForgetJob(int32 job_id, const char *name, const char *topic);
extern void StreamWakeAtCommit(void);
extern char *StreamNameArg(FunctionCallInfo fcinfo, int argno, const char *what);
extern Oid	StreamRecordArrayType(void);

#endif							/* COMMITLOG_STREAM_H */
