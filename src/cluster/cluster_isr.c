/*-------------------------------------------------------------------------
 *
 * cluster_isr.c
 *		In-sync replicas and the high watermark, measured by the leader.
 *
 * A follower's subscription slot on the leader says up to which leader
 * LSN the follower has applied and flushed (confirmed_flush_lsn).  The
 * leader maps LSNs to offsets with marks: each worker cycle in which a
 * led partition's stable offset S moved, it stores (S, the WAL insert LSN
 * read after S, now) in commitlog.replica_marks; every record below S
 * committed before that LSN.  So a follower holds every record below the
 * S of the newest mark its slot has confirmed (applied), and it was last
 * caught up just before the first mark above that (Kafka's
 * lastCaughtUpTime).  A member that has not caught up within
 * commitlog.replica_lag_time_max_ms, or whose broker is not alive, leaves
 * the ISR; a non-member rejoins once it holds everything below the high
 * watermark.  ISR changes go to the coordinator (cluster_alter_isr, fenced
 * by leader and leader epoch); the high watermark is the minimum of what
 * the ISR holds, never moves back, and is what the leader publishes to its
 * followers and serves itself.  README.md, "ISR, acks and failover".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "bgworker/bgworker.h"
#include "catalog/pg_type.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

int			commitlog_replica_lag_time_max_ms = 10000;

/* The per-follower measurement (one row per other replica, in replica order). */
#define ISR_FOLLOWERS_SQL \
	"WITH f AS (" \
	"  SELECT r.b, r.ord, COALESCE(b.alive, false) AS alive, " \
	"         r.b = ANY (COALESCE(a.isr, a.replicas)) AS member, " \
	"         (SELECT pg_catalog.max(m.stable_offset) FROM commitlog.replica_marks m " \
	"           WHERE m.topic_id = $1 AND m.partition = $2 " \
	"             AND m.lsn <= s.confirmed_flush_lsn " \
	"             AND EXISTS (SELECT 1 FROM commitlog.replica_followers rf " \
	"                   WHERE rf.topic_id = $1 AND rf.partition = $2 AND rf.follower = r.b " \
	"                     AND rf.leader_epoch = a.leader_epoch AND rf.ready)) AS applied " \
	"    FROM commitlog.cluster_assignments a " \
	"   CROSS JOIN LATERAL pg_catalog.unnest(a.replicas) WITH ORDINALITY r(b, ord) " \
	"    LEFT JOIN commitlog.cluster_brokers b ON b.broker_id = r.b " \
	"    LEFT JOIN pg_catalog.pg_replication_slots s " \
	"      ON s.slot_name = pg_catalog.format('commitlog_b%s_to_b%s', $3, r.b) " \
	"   WHERE a.topic_id = $1 AND a.partition = $2 AND r.b <> $3) " \
	"SELECT f.b, f.alive, f.member, f.applied, " \
	"       COALESCE((SELECT pg_catalog.min(m.at) FROM commitlog.replica_marks m " \
	"                  WHERE m.topic_id = $1 AND m.partition = $2 " \
	"                    AND m.stable_offset > COALESCE(f.applied, -1)), pg_catalog.now()) " \
	"         >= pg_catalog.now() - pg_catalog.make_interval(secs => $4 / 1000.0) AS recent " \
	"  FROM f ORDER BY f.ord"

void
ClusterIsrDefineGucs(void)
{
	DefineCustomIntVariable("commitlog.replica_lag_time_max_ms",
							"A follower that has not caught up with its leader for this long leaves the ISR.",
							"Caught up: holds every record the leader had made stable then.",
							&commitlog_replica_lag_time_max_ms,
							10000, 100, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* SPI with int4/int8 arguments, seeing this transaction's writes; error unless it ran. */
static void
isr_exec(const char *sql, int nargs, Oid *types, Datum *args)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "pg_commitlog ISR statement failed: %s", sql);
}

/* Record a mark for the stable offset when it moved; trim old marks. */
static void
isr_mark(int32 topic_id, int32 partition, int64 stable)
{
	Oid			types[4] = {INT4OID, INT4OID, INT8OID, INT4OID};
	Datum		args[4] = {Int32GetDatum(topic_id), Int32GetDatum(partition), Int64GetDatum(stable),
	Int32GetDatum(commitlog_replica_lag_time_max_ms)};

	/* the LSN is read after the stable offset: every record below it is before */
	isr_exec("INSERT INTO commitlog.replica_marks (topic_id, partition, stable_offset, lsn, at) "
			 "SELECT $1, $2, $3, pg_catalog.pg_current_wal_insert_lsn(), pg_catalog.now() "
			 "WHERE NOT EXISTS (SELECT 1 FROM commitlog.replica_marks m "
			 "WHERE m.topic_id = $1 AND m.partition = $2 AND m.stable_offset >= $3)",
			 3, types, args);

	/*
	 * Older than twice the lag: not needed, except the newest of those,
	 * which still proves that a follower behind it is out of sync.
	 */
	isr_exec("DELETE FROM commitlog.replica_marks m "
			 "WHERE m.topic_id = $1 AND m.partition = $2 "
			 "AND m.at < pg_catalog.now() - pg_catalog.make_interval(secs => $4 / 500.0) "
			 "AND EXISTS (SELECT 1 FROM commitlog.replica_marks n "
			 "WHERE n.topic_id = $1 AND n.partition = $2 AND n.stable_offset > m.stable_offset "
			 "AND n.at < pg_catalog.now() - pg_catalog.make_interval(secs => $4 / 500.0))",
			 4, types, args);
}

/* "{1,2,3}" of the ids in ids (the leader, me, included where it belongs). */
static char *
isr_text(List *ids)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	foreach(lc, ids)
		appendStringInfo(&buf, "%s%d", foreach_current_index(lc) > 0 ? "," : "", lfirst_int(lc));
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* Propose an ISR to the coordinator; true when it took it. */
static bool
isr_propose(int32 topic_id, int32 partition, int32 epoch, const char *isr)
{
	char		tid[16];
	char		part[16];
	char		me[16];
	char		ep[16];
	const char *params[5] = {tid, part, me, ep, isr};
	PGresult   *res;

	snprintf(tid, sizeof(tid), "%d", topic_id);
	snprintf(part, sizeof(part), "%d", partition);
	snprintf(me, sizeof(me), "%d", commitlog_broker_id);
	snprintf(ep, sizeof(ep), "%d", epoch);
	res = ControllerQuery("SELECT commitlog.cluster_alter_isr($1::int, $2::int, $3::int, $4::int, $5::int[])",
						  5, params);
	if (res == NULL)
		return false;
	PQclear(res);
	return true;
}

/*
 * For a partition this broker leads: mark, measure the followers, move the
 * ISR if it changed, and return the high watermark to publish (at least
 * hw, the one published so far).  With no other replica, the stable
 * offset.  Inside SPI, in the worker's watermark transaction.
 */
int64
ClusterIsrUpdate(int32 topic_id, int32 partition, int64 stable, int64 hw)
{
	Oid			types[4] = {INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		args[4] = {Int32GetDatum(topic_id), Int32GetDatum(partition),
	Int32GetDatum(commitlog_broker_id), Int32GetDatum(commitlog_replica_lag_time_max_ms)};
	SPITupleTable *rows;
	uint64		n;
	List	   *old_isr = list_make1_int(commitlog_broker_id);
	List	   *new_isr = list_make1_int(commitlog_broker_id);
	List	   *counted;
	bool		changed = false;
	int32		epoch = 0;
	int64		low = stable;
	bool		isnull;
	uint64		i;

	isr_exec("SELECT a.leader_epoch FROM commitlog.cluster_assignments a "
			 "WHERE a.topic_id = $1 AND a.partition = $2 AND a.leader = $3 "
			 "AND pg_catalog.cardinality(a.replicas) > 1",
			 3, types, args);
	if (SPI_processed != 1)
		return stable;
	epoch = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	isr_mark(topic_id, partition, stable);
	isr_exec(ISR_FOLLOWERS_SQL, 4, types, args);
	rows = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple	row = rows->vals[i];
		int32		b = DatumGetInt32(SPI_getbinval(row, rows->tupdesc, 1, &isnull));
		bool		alive = DatumGetBool(SPI_getbinval(row, rows->tupdesc, 2, &isnull));
		bool		member = DatumGetBool(SPI_getbinval(row, rows->tupdesc, 3, &isnull));
		Datum		applied_d = SPI_getbinval(row, rows->tupdesc, 4, &isnull);
		int64		applied = isnull ? -1 : DatumGetInt64(applied_d);
		bool		recent = DatumGetBool(SPI_getbinval(row, rows->tupdesc, 5, &isnull));
		bool		in_sync;

		/* a member stays while caught up recently; a non-member rejoins at the HW */
		in_sync = alive && (member ? recent : applied >= hw && applied >= 0);
		if (member)
			old_isr = lappend_int(old_isr, b);
		if (in_sync)
			new_isr = lappend_int(new_isr, b);
		if (member != in_sync)
			changed = true;
	}

	/* until the coordinator has the new ISR, the old members count too */
	counted = new_isr;
	if (changed)
	{
		char	   *from = isr_text(old_isr);
		char	   *to = isr_text(new_isr);

		if (isr_propose(topic_id, partition, epoch, to))
			ereport(LOG,
					(errmsg("pg_commitlog: broker %d changed the ISR of partition %d of topic id %d from %s to %s",
							commitlog_broker_id, partition, topic_id, from, to)));
		else
			counted = list_union_int(old_isr, new_isr);
	}

	/* the high watermark: what every counted member holds */
	for (i = 0; i < n; i++)
	{
		HeapTuple	row = rows->vals[i];
		int32		b = DatumGetInt32(SPI_getbinval(row, rows->tupdesc, 1, &isnull));
		Datum		applied_d = SPI_getbinval(row, rows->tupdesc, 4, &isnull);

		if (!list_member_int(counted, b))
			continue;
		if (isnull)
			low = -1;
		else
			low = Min(low, DatumGetInt64(applied_d));
	}

	/*
	 * Not past a trailing gap (a rolled-back tail): until a record follows
	 * it, a new leader's log could end before it and fill it, hiding those
	 * records from consumers that had moved past the gap.  Capped at the
	 * last record here, every in-sync replica's log end is at or above the
	 * high watermark.
	 */
	if (low > hw)
	{
		isr_exec(psprintf("SELECT GREATEST(COALESCE(pg_catalog.max(log_offset) + 1, 0), "
						  "(SELECT p.log_start_offset FROM commitlog.partitions p "
						  "WHERE p.topic_id = $1 AND p.partition = $2)) FROM commitlog_topics.%s",
						  quote_identifier(psprintf("t%d$p%d", topic_id, partition))),
				 2, types, args);
		low = Min(low, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	}
	return Max(hw, low);
}

/* the last report sent, to send only changes */
static char *reported = NULL;

/*
 * Report the log end of every partition hosted here to the coordinator
 * (commitlog.cluster_replica_state), when it changed: the controller ranks
 * election candidates by it.  A follower's log end is its highest applied
 * offset + 1 (offsets come from the leader), so it is read from the copy.
 */
void
ClusterReportReplicas(void)
{
	StringInfoData topics;
	StringInfoData parts;
	StringInfoData ends;
	StringInfoData epochs;
	StringInfoData ready;
	char		me[16];
	const char *params[6];
	uint64		n;
	PGresult   *res;

	initStringInfo(&topics);
	initStringInfo(&parts);
	initStringInfo(&ends);
	initStringInfo(&epochs);
	initStringInfo(&ready);
	ClusterXactBegin("pg_commitlog: reporting replica log ends");
	/*
	 * The epoch is the one the copy is at (commitlog.replica_epochs), read
	 * with the log end in one snapshot: a leader takes a follower's log end
	 * at the new epoch as the start of what it sends it.  ready: the
	 * follower's subscription to its leader has the partition past its
	 * initial copy.
	 */
	if (SPI_execute(psprintf("SELECT a.topic_id, a.partition, COALESCE(e.leader_epoch, 0), "
							 "pg_catalog.format('SELECT GREATEST(COALESCE(pg_catalog.max(log_offset) + 1, 0), %%s) "
							 "FROM commitlog_topics.%%I', p.log_start_offset, "
							 "pg_catalog.format('t%%s$p%%s', a.topic_id, a.partition)), "
							 "COALESCE(a.leader = %d OR EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s "
							 "  JOIN pg_catalog.pg_subscription_rel r ON r.srsubid = s.oid "
							 "  WHERE s.subname = pg_catalog.format('commitlog_b%%s_to_b%%s', a.leader, %d) "
							 "  AND r.srsubstate = 'r' AND r.srrelid = pg_catalog.to_regclass(pg_catalog.format("
							 "  'commitlog_topics.%%I', pg_catalog.format('t%%s$p%%s', a.topic_id, a.partition)))), false)::text "
							 "FROM commitlog.cluster_assignments a "
							 "JOIN commitlog.partitions p ON p.topic_id = a.topic_id AND p.partition = a.partition "
							 "LEFT JOIN commitlog.replica_epochs e ON e.topic_id = a.topic_id AND e.partition = a.partition "
							 "WHERE %d = ANY (a.replicas) AND NOT a.deleting "
							 "AND pg_catalog.to_regclass(pg_catalog.format('commitlog_topics.%%I', "
							 "pg_catalog.format('t%%s$p%%s', a.topic_id, a.partition))) IS NOT NULL "
							 "ORDER BY 1, 2", commitlog_broker_id, commitlog_broker_id, commitlog_broker_id),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the partitions hosted here");
	n = SPI_processed;
	if (n > 0)
	{
		SPITupleTable *rows = SPI_tuptable;

		for (uint64 i = 0; i < n; i++)
		{
			const char *sep = i > 0 ? "," : "";
			char	   *end;

			if (SPI_execute(SPI_getvalue(rows->vals[i], rows->tupdesc, 4), true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not read the log end of a hosted partition");
			end = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			appendStringInfo(&topics, "%s%s", sep, SPI_getvalue(rows->vals[i], rows->tupdesc, 1));
			appendStringInfo(&parts, "%s%s", sep, SPI_getvalue(rows->vals[i], rows->tupdesc, 2));
			appendStringInfo(&epochs, "%s%s", sep, SPI_getvalue(rows->vals[i], rows->tupdesc, 3));
			appendStringInfo(&ends, "%s%s", sep, end);
			appendStringInfo(&ready, "%s%s", sep, SPI_getvalue(rows->vals[i], rows->tupdesc, 5));
		}
	}
	ClusterXactEnd();

	{
		StringInfoData all;

		initStringInfo(&all);
		appendStringInfo(&all, "%s|%s|%s|%s|%s", topics.data, parts.data, epochs.data, ends.data, ready.data);
		if (reported != NULL && strcmp(reported, all.data) == 0)
			return;
		snprintf(me, sizeof(me), "%d", commitlog_broker_id);
		params[0] = psprintf("{%s}", topics.data);
		params[1] = psprintf("{%s}", parts.data);
		params[2] = me;
		params[3] = psprintf("{%s}", ends.data);
		params[4] = psprintf("{%s}", epochs.data);
		params[5] = psprintf("{%s}", ready.data);
		res = ControllerQuery("INSERT INTO commitlog.cluster_replica_state AS s "
							  "(topic_id, partition, broker_id, log_end, leader_epoch, ready, reported_at) "
							  "SELECT r.t, r.p, $3::int, r.e, r.le, r.ok, pg_catalog.now() "
							  "FROM ROWS FROM (pg_catalog.unnest($1::int[]), pg_catalog.unnest($2::int[]), "
							  "pg_catalog.unnest($4::bigint[]), pg_catalog.unnest($5::int[]), "
							  "pg_catalog.unnest($6::boolean[])) r(t, p, e, le, ok) "
							  "WHERE EXISTS (SELECT 1 FROM commitlog.cluster_partitions c "
							  "WHERE c.topic_id = r.t AND c.partition = r.p) "
							  "ON CONFLICT (topic_id, partition, broker_id) DO UPDATE "
							  "SET log_end = EXCLUDED.log_end, leader_epoch = EXCLUDED.leader_epoch, "
							  "ready = EXCLUDED.ready, reported_at = EXCLUDED.reported_at "
							  "WHERE (s.log_end, s.leader_epoch, s.ready) IS DISTINCT FROM "
							  "(EXCLUDED.log_end, EXCLUDED.leader_epoch, EXCLUDED.ready)",
							  6, params);
		if (res == NULL)
			return;
		PQclear(res);
		if (reported != NULL)
			pfree(reported);
		reported = MemoryContextStrdup(TopMemoryContext, all.data);
	}
}
