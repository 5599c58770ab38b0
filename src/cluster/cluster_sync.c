/*-------------------------------------------------------------------------
 *
 * cluster_sync.c
 *		The worker's cluster step: the controller's assignment, and this
 *		broker's copy of the cluster's metadata.
 *
 * Each cycle, in cluster mode and while the broker holds its liveness lock
 * on the coordinator: the controller runs commitlog.cluster_assign and
 * commitlog.cluster_elect (fenced by its epoch); every broker reads its cluster's topics, partitions and
 * brokers on its coordinator session and, when they changed, rewrites its
 * local copy (commitlog.cluster_assignments, commitlog.cluster_brokers)
 * in one transaction, so produce, fetch and partition_list read a
 * consistent assignment without a round trip.  Then cluster_local.c makes
 * this broker match it.  If the coordinator cannot be read, the copy stays
 * as it was and nothing is changed locally.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "bgworker/bgworker.h"
#include "catalog/pg_type.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#define SYNC_TOPICS_SQL \
	"SELECT t.id, t.name, p.partition, t.partitions, t.replication_factor, t.config::text, " \
	"t.deleting, p.replicas::text, p.leader, p.isr::text, p.leader_epoch " \
	"FROM commitlog.cluster_topics t JOIN commitlog.cluster_partitions p ON p.topic_id = t.id " \
	"WHERE t.cluster_id = $1 ORDER BY t.id, p.partition"

#define SYNC_LOCK_SQL \
	"SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory' AND l.granted " \
	"AND l.objsubid = 2 AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d " \
	"WHERE d.datname = pg_catalog.current_database()) "

#define SYNC_BROKERS_SQL \
	"SELECT r.broker_id, r.conninfo, " \
	"EXISTS (" SYNC_LOCK_SQL "AND l.classid = (1129070162 + $1 - 1)::pg_catalog.oid " \
	"        AND l.objid = r.broker_id::pg_catalog.oid)::text, " \
	"COALESCE(r.broker_id = (SELECT s.broker_id FROM commitlog.controller_state s " \
	"  WHERE s.cluster_id = $1 AND EXISTS (" SYNC_LOCK_SQL "AND l.classid = 1129074503 " \
	"  AND l.objid = $1::pg_catalog.oid AND l.pid = s.pid)), false)::text " \
	"FROM commitlog.broker_registry r WHERE r.cluster_id = $1 ORDER BY r.broker_id"

/* what the copy was last made from, to skip rewriting it when unchanged */
static char *synced_from = NULL;

/* the memory context ClusterXactBegin was called in */
static MemoryContext xact_caller_cxt = NULL;

/* Start a worker transaction with SPI and a snapshot. */
void
ClusterXactBegin(const char *what)
{
	xact_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

void
ClusterXactEnd(void)
{
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(xact_caller_cxt);
}

/* Every value of a result, for comparing with the last one. */
static void
append_result(StringInfo buf, PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++)
	{
		for (int j = 0; j < PQnfields(res); j++)
			appendStringInfo(buf, "%s%s", PQgetisnull(res, i, j) ? "\\N" : PQgetvalue(res, i, j),
							 j + 1 < PQnfields(res) ? "\t" : "\n");
	}
	appendStringInfoChar(buf, '\f');
}

/* Insert each row of res into table, its columns cast as casts says. */
static void
copy_rows(PGresult *res, const char *table, const char *const *casts)
{
	int			ncols = PQnfields(res);
	StringInfoData sql;
	Oid		   *types = palloc(sizeof(Oid) * ncols);
	Datum	   *values = palloc(sizeof(Datum) * ncols);
	char	   *nulls = palloc(ncols + 1);

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO commitlog.%s VALUES (", table);
	for (int j = 0; j < ncols; j++)
	{
		appendStringInfo(&sql, "%s$%d::%s", j ? ", " : "", j + 1, casts[j]);
		types[j] = TEXTOID;
	}
	appendStringInfoChar(&sql, ')');
	nulls[ncols] = '\0';
	for (int i = 0; i < PQntuples(res); i++)
	{
		for (int j = 0; j < ncols; j++)
		{
			nulls[j] = PQgetisnull(res, i, j) ? 'n' : ' ';
			values[j] = nulls[j] == 'n' ? (Datum) 0 : CStringGetTextDatum(PQgetvalue(res, i, j));
		}
		if (SPI_execute_with_args(sql.data, ncols, types, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not copy the cluster metadata into commitlog.%s", table);
	}
}

/* Refresh this broker's copy of the cluster's metadata; false if unreadable. */
static bool
cluster_sync(int cluster_id)
{
	static const char *const topic_casts[] = {"int", "text", "int", "int", "int", "jsonb", "bool",
	"int[]", "int", "int[]", "int"};
	static const char *const broker_casts[] = {"int", "text", "bool", "bool"};
	char		cid[16];
	const char *params[1] = {cid};
	PGresult   *topics;
	PGresult   *brokers;
	StringInfoData seen;

	snprintf(cid, sizeof(cid), "%d", cluster_id);
	topics = ControllerQuery(SYNC_TOPICS_SQL, 1, params);
	if (topics == NULL)
		return false;
	brokers = ControllerQuery(SYNC_BROKERS_SQL, 1, params);
	if (brokers == NULL)
	{
		PQclear(topics);
		return false;
	}
	initStringInfo(&seen);
	append_result(&seen, topics);
	append_result(&seen, brokers);
	if (synced_from != NULL && strcmp(synced_from, seen.data) == 0)
	{
		PQclear(topics);
		PQclear(brokers);
		return true;
	}

	PG_TRY();
	{
		ClusterXactBegin("pg_commitlog: copying the cluster metadata");
		if (SPI_execute("DELETE FROM commitlog.cluster_assignments", false, 0) < 0 ||
			SPI_execute("DELETE FROM commitlog.cluster_brokers", false, 0) < 0)
			elog(ERROR, "could not clear the copy of the cluster metadata");
		copy_rows(topics, "cluster_assignments", topic_casts);
		copy_rows(brokers, "cluster_brokers", broker_casts);
		ClusterXactEnd();
	}
	PG_FINALLY();
	{
		PQclear(topics);
		PQclear(brokers);
	}
	PG_END_TRY();
	if (synced_from != NULL)
		pfree(synced_from);
	synced_from = MemoryContextStrdup(TopMemoryContext, seen.data);
	return true;
}

/* Tell the coordinator this broker holds no copy of a dropped topic. */
bool
ClusterConfirmDropped(int32 topic_id)
{
	char		tid[16];
	char		me[16];
	const char *params[2] = {tid, me};
	PGresult   *res;

	snprintf(tid, sizeof(tid), "%d", topic_id);
	snprintf(me, sizeof(me), "%d", commitlog_broker_id);
	res = ControllerQuery("UPDATE commitlog.cluster_topics SET dropped_on = dropped_on || $2::int "
						  "WHERE id = $1::int AND deleting AND NOT $2::int = ANY (dropped_on)",
						  2, params);
	if (res == NULL)
		return false;
	PQclear(res);
	/* the copy changes (dropped_on is not in it, but the row goes soon) */
	return true;
}

/*
 * The cluster step of a worker cycle (worker.c), after controller upkeep:
 * assignment (controller only), the metadata copy, then reconciliation.
 */
void
ClusterUpkeep(void)
{
	int			cluster_id;

	if (!ClusterEnabled())
	{
		if (synced_from != NULL)
			pfree(synced_from);
		synced_from = NULL;
		return;
	}
	cluster_id = ControllerClusterId();
	if (cluster_id == 0)
		return;
	pgstat_report_activity(STATE_RUNNING, "pg_commitlog: cluster upkeep");
	if (ControllerEpoch() > 0)
	{
		(void) ControllerExec(psprintf("SELECT commitlog.cluster_assign(%d)", cluster_id));
		/* failover: partitions whose leader died get a live in-sync replica */
		(void) ControllerExec(psprintf("SELECT commitlog.cluster_elect(%d)", cluster_id));
	}
	if (!cluster_sync(cluster_id))
		return;
	ClusterReconcile();
	ClusterReportReplicas();
	pgstat_report_activity(STATE_IDLE, NULL);
}
