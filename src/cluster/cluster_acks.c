/*-------------------------------------------------------------------------
 *
 * cluster_acks.c
 *		acks=all: the commit refused when the ISR is too small, and
 *		commitlog.await_replication() after it (DESIGN 9).
 *
 * Not PostgreSQL synchronous replication: that is instance-wide, not
 * bounded by statement_timeout, and a cancelled wait leaves the row
 * committed with only a WARNING.  Here produce notes, per transaction, the
 * clustered partitions it wrote and their highest offset.  With
 * commitlog.acks = 'all', XACT_EVENT_PRE_COMMIT refuses the commit
 * (not-enough-replicas, CL003; nothing is written) when a partition's ISR
 * is smaller than its topic's min.insync.replicas, or this broker no
 * longer leads it (CL002).  After commit the session remembers the
 * partitions; await_replication waits until the leader's high watermark
 * passes every record the session committed, or raises an error: the
 * records are then in doubt, as after a Kafka request timeout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "errors.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(await_replication);

int			commitlog_acks = CLUSTER_ACKS_ONE;

static const struct config_enum_entry acks_options[] = {
	{"1", CLUSTER_ACKS_ONE, false},
	{"all", CLUSTER_ACKS_ALL, false},
	{"-1", CLUSTER_ACKS_ALL, true},
	{NULL, 0, false}
};

/* What a session wrote to one partition. */
typedef struct AckedPartition
{
	int32		topic_id;
	int32		partition;
	int64		end;			/* highest offset written + 1 */
	int64		count;			/* records */
	int32		epoch;			/* leader epoch at commit; -1: not checked */
} AckedPartition;

/* this transaction's writes (TopTransactionContext) */
static List *xact_written = NIL;

/* committed, not yet confirmed by await_replication (TopMemoryContext) */
static List *pending = NIL;

static bool callback_registered = false;

void
ClusterAcksDefineGucs(void)
{
	DefineCustomEnumVariable("commitlog.acks",
							 "Which replicas must have a record before it is acknowledged: '1' (the leader) or 'all' (the ISR).",
							 "With 'all', the commit is refused when the ISR is smaller than min.insync.replicas, "
							 "and commitlog.await_replication() confirms the records.",
							 &commitlog_acks,
							 CLUSTER_ACKS_ONE, acks_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
}

/* Find the entry of (topic_id, partition) in list, or NULL. */
static AckedPartition *
acked_find(List *list, int32 topic_id, int32 partition)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		AckedPartition *a = lfirst(lc);

		if (a->topic_id == topic_id && a->partition == partition)
			return a;
	}
	return NULL;
}

/* The partition's state in this broker's copy of the assignment. */
typedef struct PartitionState
{
	bool		clustered;
	bool		leads;
	int32		leader;
	char	   *conninfo;
	int32		epoch;
	int			isr;
	int			replicas;
	int64		min_isr;
	int64		hw;
	char	   *topic;
} PartitionState;

static PartitionState
partition_state(int32 topic_id, int32 partition)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(topic_id), Int32GetDatum(partition)};
	PartitionState st = {false};
	int			nestlevel = CatalogBegin();
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	CatalogRead("SELECT a.leader IS NOT DISTINCT FROM pg_catalog.current_setting('commitlog.broker_id')::int, "
				"a.leader, b.conninfo, a.leader_epoch, pg_catalog.cardinality(a.isr), "
				"pg_catalog.cardinality(a.replicas), t.config, w.stable_offset, t.name "
				"FROM commitlog.cluster_assignments a "
				"JOIN commitlog.topics t ON t.id = a.topic_id "
				"LEFT JOIN commitlog.cluster_brokers b ON b.broker_id = a.leader "
				"LEFT JOIN commitlog.replica_watermarks w ON w.topic_id = a.topic_id "
				"AND w.partition = a.partition "
				"AND w.leader_id = pg_catalog.current_setting('commitlog.broker_id')::int "
				"WHERE a.topic_id = $1 AND a.partition = $2 AND a.replicas IS NOT NULL",
				2, argtypes, args, 1);
	if (SPI_processed == 1)
	{
		row = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		st.clustered = true;
		st.leads = DatumGetBool(SPI_getbinval(row, desc, 1, &isnull));
		d = SPI_getbinval(row, desc, 2, &isnull);
		st.leader = isnull ? -1 : DatumGetInt32(d);
		st.conninfo = SPI_getvalue(row, desc, 3);
		st.conninfo = st.conninfo ? pstrdup(st.conninfo) : NULL;
		st.epoch = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
		d = SPI_getbinval(row, desc, 5, &isnull);
		st.isr = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(row, desc, 6, &isnull);
		st.replicas = isnull ? 0 : DatumGetInt32(d);
		st.min_isr = TopicConfigEffectiveLong(DatumGetJsonbPCopy(SPI_getbinval(row, desc, 7, &isnull)),
											  "min.insync.replicas");
		d = SPI_getbinval(row, desc, 8, &isnull);
		st.hw = isnull ? 0 : DatumGetInt64(d);
		st.topic = pstrdup(SPI_getvalue(row, desc, 9));
	}
	CatalogEnd(nestlevel);
	return st;
}

/* CL002: leadership of the partition moved away from this broker. */
static void
report_not_leader(const PartitionState *st, int32 partition, const char *when)
{
	ereport(ERROR,
			(errcode(ERRCODE_COMMITLOG_NOT_LEADER),
			 errmsg("broker %d is no longer the leader of partition %d of topic \"%s\"",
					commitlog_broker_id, partition, st->topic),
			 errdetail("%s", when),
			 st->leader >= 0 ?
			 errhint("The leader is broker %d (%s).", st->leader,
					 st->conninfo ? st->conninfo : "its conninfo is not known yet") :
			 errhint("The partition has no leader now; retry once commitlog.partition_list shows one.")));
}

/* CL003: the ISR is smaller than min.insync.replicas. */
static void
report_not_enough(const PartitionState *st, int32 partition, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_COMMITLOG_NOT_ENOUGH_REPLICAS),
			 errmsg("not enough in-sync replicas for partition %d of topic \"%s\": %d, min.insync.replicas is " INT64_FORMAT,
					partition, st->topic, st->isr, st->min_isr),
			 errdetail("%s", what),
			 errhint("Retry once the followers have caught up (commitlog.partition_list shows the isr), or produce with commitlog.acks = '1'.")));
}

/* PRE_COMMIT under acks=all: refuse unless every written partition may ack. */
static void
acks_check_commit(void)
{
	ListCell   *lc;

	foreach(lc, xact_written)
	{
		AckedPartition *a = lfirst(lc);
		PartitionState st = partition_state(a->topic_id, a->partition);

		if (!st.clustered)
			continue;
		if (!st.leads)
			report_not_leader(&st, a->partition,
							  "With commitlog.acks = 'all', records are committed only on the partition's leader; nothing was written.");
		if (st.isr < st.min_isr)
			report_not_enough(&st, a->partition,
							  "With commitlog.acks = 'all', a transaction commits only while the partition's ISR has at least min.insync.replicas members; nothing was written.");
		a->epoch = st.epoch;
	}
}

/* After commit: the partitions become pending, merged per partition. */
static void
acks_remember(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	ListCell   *lc;

	foreach(lc, xact_written)
	{
		AckedPartition *a = lfirst(lc);
		AckedPartition *p = acked_find(pending, a->topic_id, a->partition);

		if (p == NULL)
		{
			p = palloc(sizeof(AckedPartition));
			*p = *a;
			pending = lappend(pending, p);
			continue;
		}
		p->end = Max(p->end, a->end);
		p->count += a->count;
		if (a->epoch >= 0)
			p->epoch = a->epoch;
	}
	MemoryContextSwitchTo(old);
}

static void
acks_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (xact_written != NIL && commitlog_acks == CLUSTER_ACKS_ALL)
				acks_check_commit();
			break;
		case XACT_EVENT_COMMIT:
			if (xact_written != NIL)
				acks_remember();
			xact_written = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			xact_written = NIL;
			break;
		default:
			break;
	}
}

/*
 * produce wrote count records to a partition, the last at last_offset
 * (produce.c).  Only in cluster mode, not for the worker's own copies.
 */
void
ClusterProduced(int32 topic_id, int32 partition, int64 last_offset, int count)
{
	AckedPartition *a;
	MemoryContext old;

	if (!ClusterEnabled() || ClusterMaterializeId() != 0)
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(acks_xact_callback, NULL);
		callback_registered = true;
	}
	a = acked_find(xact_written, topic_id, partition);
	if (a != NULL)
	{
		a->end = Max(a->end, last_offset + 1);
		a->count += count;
		return;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	a = palloc(sizeof(AckedPartition));
	a->topic_id = topic_id;
	a->partition = partition;
	a->end = last_offset + 1;
	a->count = count;
	a->epoch = -1;
	xact_written = lappend(xact_written, a);
	MemoryContextSwitchTo(old);
}

/* Forget a pending partition (confirmed, or never confirmable here). */
static void
pending_forget(AckedPartition *a)
{
	pending = list_delete_ptr(pending, a);
	pfree(a);
}

/*
 * await_replication(timeout_ms int DEFAULT 30000) RETURNS bigint
 *
 * Waits until every record this session committed (and has not had
 * confirmed yet) is below its partition's high watermark; returns how many
 * records that confirmed.  CL002 when the partition's leadership moved (the
 * records may be truncated by the failover; they are forgotten), CL003 when
 * the ISR fell below min.insync.replicas, CL005 at the timeout; after CL003
 * and CL005 the records stay pending, so a later call waits for them again.
 */
Datum
await_replication(PG_FUNCTION_ARGS)
{
	int32		timeout_ms = PG_GETARG_INT32(0);
	TimestampTz deadline;
	int64		confirmed = 0;

	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative"),
				 errdetail("timeout_ms is how long to wait for the in-sync replicas, in milliseconds.")));
	if (xact_written != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("await_replication must be called after the records are committed"),
				 errdetail("This transaction produced records to clustered partitions; they cannot be replicated before it commits."),
				 errhint("Commit first, then call commitlog.await_replication() in a new transaction.")));
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	while (pending != NIL)
	{
		List	   *todo = list_copy(pending);
		ListCell   *lc;
		long		remaining;

		foreach(lc, todo)
		{
			AckedPartition *a = lfirst(lc);
			PartitionState st = partition_state(a->topic_id, a->partition);

			if (!st.clustered || st.replicas <= 1)
			{
				confirmed += a->count;
				pending_forget(a);
				continue;
			}
			if (!st.leads || (a->epoch >= 0 && st.epoch != a->epoch))
			{
				pending_forget(a);
				report_not_leader(&st, a->partition,
								  "The leadership moved while the records were waiting for the in-sync replicas; they may have been lost in the failover.");
			}
			/* as Kafka: acknowledged only while min.insync.replicas have them */
			if (commitlog_acks == CLUSTER_ACKS_ALL && st.isr < st.min_isr)
				report_not_enough(&st, a->partition,
								  "The ISR is smaller than min.insync.replicas, so the records are not acknowledged; they stay pending.");
			if (st.hw >= a->end)
			{
				confirmed += a->count;
				pending_forget(a);
				continue;
			}
		}
		list_free(todo);
		if (pending == NIL)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_COMMITLOG_REQUEST_TIMED_OUT),
					 errmsg("timed out after %d ms waiting for the in-sync replicas", timeout_ms),
					 errdetail("%d partition(s) written by this session have records above the high watermark; those records are in doubt.",
							   list_length(pending)),
					 errhint("Call commitlog.await_replication() again to keep waiting; commitlog.partition_list shows the isr.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(remaining, CLUSTER_FOLLOWER_POLL_MS), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_INT64(confirmed);
}
