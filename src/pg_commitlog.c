/*-------------------------------------------------------------------------
 *
 * pg_commitlog.c
 *		Module entry point: settings, shared memory and hooks.
 *
 * pg_commitlog needs shared memory for the offset allocator and the
 * in-flight producer state, so it must be loaded at server start through
 * shared_preload_libraries; loading it later is refused with a hint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "bgworker/bgworker.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "fmgr.h"
#include "guard/guard.h"
#include "miscadmin.h"
#include "offsets/offsets.h"
#include "stream/stream.h"
#include "topics/topics.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

int			commitlog_broker_id = 0;
int			commitlog_max_partitions = 10000;
bool		commitlog_restore_mode = false;
bool		commitlog_internal_maintenance = false;

void		_PG_init(void);

static void
define_gucs(void)
{
	DefineCustomIntVariable("commitlog.broker_id",
							"This broker's id, as Kafka's broker.id.",
							"Shown as leader, replicas and isr in commitlog.partition_list.",
							&commitlog_broker_id,
							0, 0, INT_MAX,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("commitlog.max_partitions",
							"Partitions whose offset state fits in shared memory.",
							"Counts the partitions of every topic in every database of the server.",
							&commitlog_max_partitions,
							10000, 16, 1000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("commitlog.restore_mode",
							 "Lets pg_restore write topic tables directly.",
							 "Topic tables are otherwise append-only through commitlog.produce(); "
							 "set this only for a restore.",
							 &commitlog_restore_mode,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("commitlog.internal_maintenance",
							 "Set by the background worker's own connection to detach segments.",
							 NULL,
							 &commitlog_internal_maintenance,
							 false,
							 PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	TopicConfigDefineGucs();
	BgworkerDefineGucs();
	ClusterDefineGucs();
	StreamDefineGucs();
	MarkGUCPrefixReserved("commitlog");
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_commitlog must be loaded via \"shared_preload_libraries\""),
				 errhint("Add pg_commitlog to shared_preload_libraries in postgresql.conf and restart the server.")));

	define_gucs();
	OffsetsInit();
	TopicCacheInit();
	GuardInit();
	BgworkerInit();
	StreamInit();
}
