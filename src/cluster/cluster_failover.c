/*-------------------------------------------------------------------------
 *
 * cluster_failover.c
 *		A broker acting on a new leader epoch, as Kafka's KIP-101.
 *
 * The controller elects (commitlog.cluster_elect on the coordinator); the
 * brokers do the rest in their worker, each cycle, after the subscription
 * step, for every hosted partition whose epoch in the copy of the
 * assignment is newer than the epoch its data is at
 * (commitlog.replica_epochs):
 *
 *	- the new leader, once no subscription feeds the partition any more
 *	  (the one to the old leader is dropped in the subscription step: it
 *	  leads nothing now), records its log end as the epoch's start offset
 *	  (cluster_begin_epoch), moves its offset sequence there, publishes the
 *	  high watermark it knew from the old leader, and takes the partition
 *	  out of its publications, so that each follower gets it back with a
 *	  row filter matching what that follower holds.  Only then does
 *	  produce pass the not-leader check;
 *	- a follower (a returning old leader too), once no subscription to
 *	  another broker feeds the partition and the epoch's start offset is
 *	  known, deletes what it holds at or above the first start offset of
 *	  the epochs after its own: those records were never above a high
 *	  watermark, so never acknowledged with acks=all nor read.  Then it
 *	  reports its log end at the new epoch;
 *	- the leader learns those reports (ClusterFollowerReports) and adds the
 *	  partition to the follower's publication with WHERE (log_offset >=
 *	  that log end): the subscription's initial copy brings exactly the
 *	  records the follower lacks (those of the new leader below the start
 *	  offset that the follower had not received, and whatever was produced
 *	  since), and streaming goes on from the copy's snapshot, gap-free by
 *	  logical replication's table sync.  A follower counts for the ISR only
 *	  once its report says that copy is done (ready).
 *
 * Every step is idempotent and fenced: cluster_begin_epoch refuses a
 * broker that no longer leads at that epoch, and a step that fails is
 * simply redone next cycle.  README.md, "ISR, acks and failover", 5 and 6.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "bgworker/bgworker.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* One partition whose copy is behind its epoch in the assignment. */
typedef struct EpochTask
{
	int32		topic_id;
	int32		partition;
	int32		epoch;			/* the assignment's */
	int32		from_epoch;		/* the copy's */
	char	   *topic;
	bool		leads;
	int			replicas;
} EpochTask;

/* "commitlog_topics.t<id>$p<n>" of a partition */
#define PARTITION_TABLE_SQL(id_col, part_col) \
	"pg_catalog.to_regclass(pg_catalog.format('commitlog_topics.%%I', " \
	"pg_catalog.format('t%%s$p%%s', " id_col ", " part_col ")))"

/*
 * Partitions hosted here whose epoch moved on, and which no subscription
 * feeds any more: the one to the old leader goes in the subscription step
 * (it leads nothing now), and one that still lists the partition from an
 * earlier epoch is refreshed there until it drops it.
 */
static List *
epoch_tasks(void)
{
	int			me = commitlog_broker_id;
	List	   *tasks = NIL;
	MemoryContext outer = CurrentMemoryContext;
	uint64		n;

	ClusterXactBegin("pg_commitlog: looking for new leader epochs");
	n = ClusterSpiQuery(psprintf("SELECT a.topic_id, a.partition, a.leader_epoch, "
								 "COALESCE(e.leader_epoch, 0), t.name, (a.leader = %d)::int, "
								 "pg_catalog.cardinality(a.replicas) "
								 "FROM commitlog.cluster_assignments a "
								 "JOIN commitlog.topics t ON t.id = a.topic_id "
								 "LEFT JOIN commitlog.replica_epochs e "
								 "  ON e.topic_id = a.topic_id AND e.partition = a.partition "
								 "WHERE %d = ANY (a.replicas) AND NOT a.deleting AND a.leader IS NOT NULL "
								 "AND a.leader_epoch > COALESCE(e.leader_epoch, 0) "
								 "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel r "
								 "  WHERE r.srrelid = " PARTITION_TABLE_SQL("a.topic_id", "a.partition") ") "
								 "ORDER BY 1, 2", me, me));
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext cxt = MemoryContextSwitchTo(outer);
		EpochTask  *t = palloc(sizeof(EpochTask));

		t->topic_id = ClusterSpiInt(i, 1);
		t->partition = ClusterSpiInt(i, 2);
		t->epoch = ClusterSpiInt(i, 3);
		t->from_epoch = ClusterSpiInt(i, 4);
		t->topic = ClusterSpiText(i, 5);
		t->leads = ClusterSpiInt(i, 6) == 1;
		t->replicas = ClusterSpiInt(i, 7);
		tasks = lappend(tasks, t);
		MemoryContextSwitchTo(cxt);
	}
	ClusterXactEnd();
	return tasks;
}

/*
 * The copy's log end: past its last record, and at least its log start;
 * and the highest high watermark it applied from a leader (or published
 * itself), which readers may have passed: offsets below it are records
 * every in-sync replica holds, or gaps (aborted transactions) that no
 * record may fill afterwards.
 */
static void
local_log_end(const EpochTask *t, int64 *log_end, int64 *hw)
{
	bool		isnull;

	/* not read-only: it must see a truncation earlier in the transaction */
	if (SPI_execute(psprintf("SELECT GREATEST((SELECT COALESCE(pg_catalog.max(log_offset) + 1, 0) "
							 "FROM commitlog_topics.%s), "
							 "(SELECT p.log_start_offset FROM commitlog.partitions p "
							 "WHERE p.topic_id = %d AND p.partition = %d)), "
							 "(SELECT COALESCE(pg_catalog.max(w.stable_offset), 0) FROM commitlog.replica_watermarks w "
							 "WHERE w.topic_id = %d AND w.partition = %d)",
							 quote_identifier(psprintf("t%d$p%d", t->topic_id, t->partition)),
							 t->topic_id, t->partition, t->topic_id, t->partition), false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the log end of a hosted partition");
	*log_end = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*hw = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

/* Delete the copy's records at or above from (never acknowledged). */
static void
truncate_from(const EpochTask *t, int64 from)
{
	ClusterSpiRun("SET LOCAL commitlog.internal_maintenance = on");
	ClusterSpiRun(psprintf("DELETE FROM commitlog_topics.%s WHERE log_offset >= " INT64_FORMAT,
						   quote_identifier(psprintf("t%d$p%d", t->topic_id, t->partition)), from));
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("pg_commitlog: broker %d truncated partition %d of topic \"%s\" at offset " INT64_FORMAT
						" for leader epoch %d: " UINT64_FORMAT " records were never acknowledged",
						commitlog_broker_id, t->partition, t->topic, from, t->epoch, SPI_processed)));
	ClusterSpiRun("SET LOCAL commitlog.internal_maintenance = off");
}

/* The copy is now at the task's epoch. */
static void
epoch_done(const EpochTask *t)
{
	ClusterSpiRun(psprintf("INSERT INTO commitlog.replica_epochs (topic_id, partition, leader_epoch) "
						   "VALUES (%d, %d, %d) ON CONFLICT (topic_id, partition) DO UPDATE "
						   "SET leader_epoch = EXCLUDED.leader_epoch, updated_at = pg_catalog.now()",
						   t->topic_id, t->partition, t->epoch));
}

/* Run a one-value query on the coordinator; false if it failed or was NULL. */
static bool
coordinator_int8(const char *sql, int nparams, const char *const *params, int64 *value)
{
	PGresult   *res = ControllerQuery(sql, nparams, params);
	bool		ok;

	if (res == NULL)
		return false;
	ok = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
	if (ok)
		*value = strtoi64(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return ok;
}

/*
 * The first start offset recorded for the partition's epochs after the
 * copy's, up to last_epoch; -1 when none.  False if the coordinator could
 * not be asked or, with need_last, last_epoch's leader has not recorded
 * its start yet.
 */
static bool
first_start_after(const EpochTask *t, int32 last_epoch, bool need_last, int64 *start)
{
	const char *params[5];

	params[0] = psprintf("%d", t->topic_id);
	params[1] = psprintf("%d", t->partition);
	params[2] = psprintf("%d", t->from_epoch);
	params[3] = psprintf("%d", last_epoch);
	params[4] = need_last ? "true" : "false";
	return coordinator_int8("SELECT COALESCE(pg_catalog.min(e.start_offset), -1) "
							"FROM commitlog.cluster_leader_epochs e "
							"WHERE e.topic_id = $1::int AND e.partition = $2::int "
							"AND e.leader_epoch > $3::int AND e.leader_epoch <= $4::int "
							"HAVING NOT $5::boolean "
							"OR pg_catalog.bool_or(e.leader_epoch = $4::int AND e.start_offset IS NOT NULL)",
							5, params, start);
}

/* The new leader takes the partition over (file comment). */
static void
take_over(const EpochTask *t)
{
	int			me = commitlog_broker_id;
	int64		log_end;
	int64		hw;
	int64		start;
	int64		skipped;
	const char *params[5];
	Topic	   *topic;
	OffsetsPartitionKey key;

	/*
	 * Epochs between the copy's and this one (this broker was elected before
	 * it had re-pointed to an intermediate leader): what it holds at or above
	 * the first of their start offsets is an old leader's unacknowledged
	 * tail, which that epoch's leader overwrote; the copy's log end must not
	 * count it, or the followers keep different records at those offsets.
	 */
	if (!first_start_after(t, t->epoch - 1, false, &skipped))
		return;

	ClusterXactBegin("pg_commitlog: taking over a partition as its new leader");
	if (skipped >= 0)
		truncate_from(t, skipped);
	local_log_end(t, &log_end, &hw);
	params[0] = psprintf("%d", t->topic_id);
	params[1] = psprintf("%d", t->partition);
	params[2] = psprintf("%d", me);
	params[3] = psprintf("%d", t->epoch);
	/* never below the high watermark: readers may have moved past its gaps */
	params[4] = psprintf(INT64_FORMAT, Max(log_end, hw));
	if (!coordinator_int8("SELECT commitlog.cluster_begin_epoch($1::int, $2::int, $3::int, $4::int, $5::bigint)",
						  5, params, &start))
	{
		/* no longer the leader at that epoch, or the coordinator is away: next cycle */
		ClusterXactEnd();
		return;
	}
	/* recorded before a crash here: nothing can have been added since */
	if (log_end > start)
		truncate_from(t, start);

	/*
	 * With followers, readers here never saw past the high watermark, so
	 * the offsets may go on at the start exactly, wherever the sequence
	 * is; a single replica's readers saw its sequence: only forward.
	 */
	topic = TopicOpen(t->topic, AccessShareLock);
	key = TopicPartitionKey(topic, t->partition);
	if (t->replicas > 1)
		OffsetsResetTo(&key, start);
	else
		OffsetsSkipTo(&key, start);

	/*
	 * The high watermark it serves and publishes: the highest it applied
	 * from a leader (every record below it is here: a watermark row is
	 * applied after the records below it), at most the start.
	 */
	ClusterSpiRun(psprintf("INSERT INTO commitlog.replica_watermarks AS w "
						   "(leader_id, topic_id, partition, stable_offset, log_start_offset, segment_end, leader_epoch) "
						   "SELECT %d, %d, %d, LEAST(" INT64_FORMAT ", COALESCE((SELECT pg_catalog.max(o.stable_offset) "
						   "  FROM commitlog.replica_watermarks o WHERE o.topic_id = %d AND o.partition = %d), 0)), "
						   "p.log_start_offset, COALESCE((SELECT pg_catalog.max(s.end_offset) FROM commitlog.segments s "
						   "  WHERE s.topic_id = %d AND s.partition = %d), 0), %d "
						   "FROM commitlog.partitions p WHERE p.topic_id = %d AND p.partition = %d "
						   "ON CONFLICT (leader_id, topic_id, partition) DO UPDATE "
						   "SET stable_offset = EXCLUDED.stable_offset, log_start_offset = EXCLUDED.log_start_offset, "
						   "segment_end = EXCLUDED.segment_end, leader_epoch = EXCLUDED.leader_epoch, "
						   "updated_at = pg_catalog.now()",
						   me, t->topic_id, t->partition, start, t->topic_id, t->partition,
						   t->topic_id, t->partition, t->epoch, t->topic_id, t->partition));

	/* LSN marks of an earlier leadership here say nothing about the new slots */
	ClusterSpiRun(psprintf("DELETE FROM commitlog.replica_marks WHERE topic_id = %d AND partition = %d",
						   t->topic_id, t->partition));
	ClusterSpiRun(psprintf("DELETE FROM commitlog.replica_followers WHERE topic_id = %d AND partition = %d",
						   t->topic_id, t->partition));

	/* followers get it back filtered from where each stands (publish step) */
	ClusterSpiRunGenerated(psprintf(CLUSTER_UNPUBLISH_SQL
									"AND r.prrelid = " PARTITION_TABLE_SQL("%d", "%d"),
									me, t->topic_id, t->partition));
	epoch_done(t);
	ClusterXactEnd();
	ereport(LOG,
			(errmsg("pg_commitlog: broker %d leads partition %d of topic \"%s\" at leader epoch %d from offset " INT64_FORMAT,
					me, t->partition, t->topic, t->epoch, start)));
}

/*
 * A follower, or a returning old leader, truncates what the epochs after
 * its own say was never acknowledged, and is then at the new epoch.
 */
static void
repoint(const EpochTask *t)
{
	int64		from;

	/*
	 * The first start offset of the epochs after the copy's; only once the
	 * current epoch's leader has recorded its own (an epoch whose leader
	 * died before recording one wrote nothing).
	 */
	if (!first_start_after(t, t->epoch, true, &from))
		return;

	ClusterXactBegin("pg_commitlog: truncating a partition for its new leader epoch");
	truncate_from(t, from);
	epoch_done(t);
	ClusterXactEnd();
	ereport(LOG,
			(errmsg("pg_commitlog: broker %d follows partition %d of topic \"%s\" at leader epoch %d, its copy ending at or below offset " INT64_FORMAT,
					commitlog_broker_id, t->partition, t->topic, t->epoch, from)));
}

/* Act on new leader epochs of the partitions hosted here (file comment). */
void
ClusterFailover(void)
{
	ListCell   *lc;

	foreach(lc, epoch_tasks())
	{
		EpochTask  *t = lfirst(lc);

		if (t->leads)
			take_over(t);
		else
			repoint(t);
	}
}

/*
 * The leader's view of its followers: for each partition it leads (taken
 * over, at its current epoch) with a follower not known to be ready, read
 * the followers' reports at that epoch from the coordinator into
 * commitlog.replica_followers.  A follower counts for the ISR only once
 * ready: while its subscription still copies the partition, its slot
 * confirms positions past records it does not have yet (the main apply
 * skips the table, the copy brings them), and a high watermark measured
 * with it could acknowledge records that only the leader holds.  A
 * report's log end is kept from the first time it is seen at the epoch:
 * after a failover the publication's filter was made with it.
 */
void
ClusterFollowerReports(void)
{
	int			me = commitlog_broker_id;
	char		mine[16];
	const char *params[1] = {mine};
	PGresult   *res;
	StringInfoData values;
	uint64		n;

	ClusterXactBegin("pg_commitlog: checking followers after a failover");
	n = ClusterSpiQuery(psprintf("SELECT 1 FROM commitlog.cluster_assignments a "
								 "LEFT JOIN commitlog.replica_epochs e ON e.topic_id = a.topic_id "
								 "  AND e.partition = a.partition "
								 "CROSS JOIN LATERAL pg_catalog.unnest(a.replicas) f(b) "
								 "WHERE a.leader = %d AND a.leader_epoch = COALESCE(e.leader_epoch, 0) "
								 "AND NOT a.deleting AND f.b <> %d "
								 "AND NOT EXISTS (SELECT 1 FROM commitlog.replica_followers r "
								 "  WHERE r.topic_id = a.topic_id AND r.partition = a.partition "
								 "  AND r.follower = f.b AND r.leader_epoch = a.leader_epoch AND r.ready) "
								 "LIMIT 1", me, me));
	ClusterXactEnd();
	if (n == 0)
		return;

	snprintf(mine, sizeof(mine), "%d", me);
	res = ControllerQuery("SELECT s.topic_id, s.partition, s.broker_id, s.leader_epoch, s.log_end, s.ready::int "
						  "FROM commitlog.cluster_replica_state s "
						  "JOIN commitlog.cluster_partitions p ON p.topic_id = s.topic_id AND p.partition = s.partition "
						  "WHERE p.leader = $1::int AND s.leader_epoch = p.leader_epoch "
						  "AND s.broker_id <> $1::int", 1, params);
	if (res == NULL)
		return;
	initStringInfo(&values);
	for (int i = 0; i < PQntuples(res); i++)
		appendStringInfo(&values, "%s(%s, %s, %s, %s, %s, %s::boolean)", i > 0 ? ", " : "",
						 PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
						 PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), PQgetvalue(res, i, 5));
	PQclear(res);
	if (values.len == 0)
		return;

	ClusterXactBegin("pg_commitlog: recording followers after a failover");
	ClusterSpiRun(psprintf("INSERT INTO commitlog.replica_followers AS r "
						   "(topic_id, partition, follower, leader_epoch, from_offset, ready) "
						   "SELECT v.t, v.p, v.b, v.e, v.l, v.r FROM (VALUES %s) v(t, p, b, e, l, r) "
						   "JOIN commitlog.cluster_assignments a ON a.topic_id = v.t AND a.partition = v.p "
						   "AND a.leader = %d AND a.leader_epoch = v.e "
						   "LEFT JOIN commitlog.replica_epochs e ON e.topic_id = v.t AND e.partition = v.p "
						   "WHERE COALESCE(e.leader_epoch, 0) = v.e "
						   "ON CONFLICT (topic_id, partition, follower) DO UPDATE "
						   "SET leader_epoch = EXCLUDED.leader_epoch, "
						   "from_offset = CASE WHEN r.leader_epoch = EXCLUDED.leader_epoch "
						   "  THEN r.from_offset ELSE EXCLUDED.from_offset END, "
						   "ready = EXCLUDED.ready AND r.leader_epoch = EXCLUDED.leader_epoch "
						   "WHERE (r.leader_epoch, r.ready) IS DISTINCT FROM (EXCLUDED.leader_epoch, EXCLUDED.ready)",
						   values.data, me));
	ClusterXactEnd();
}
