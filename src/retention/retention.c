/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Retention: enforce_retention, delete_records, and dropping segments.
 *
 * Removing data takes two steps (DESIGN 3):
 *
 *	1. raise the partition's log start offset in commitlog.partitions, in a
 *	   transaction.  Readers check it under the snapshot they read with, so
 *	   from that commit on a fetch below it is out of range, and one that
 *	   raced it read a consistent snapshot;
 *	2. detach and drop the segments wholly below it, as top-level
 *	   statements: ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY cannot
 *	   run in a transaction block or a function, so the worker sends it over
 *	   a libpq connection to its own database.  A detach left pending by a
 *	   crash is finished (FINALIZE) on the next cycle.
 *
 * Kafka's rules: only whole non-active segments go (here: sealed ones, which
 * the stable offset has passed); by time when a segment's newest timestamp
 * is older than retention.ms, oldest first while that holds; by size while
 * the partition minus its oldest segment still holds retention.bytes.  The
 * cost is O(segments): sizes, counts and timestamps were recorded when the
 * segment was sealed, and dropping a table leaves no dead tuples.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "bgworker/bgworker.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commitlog.h"
#include "errors.h"
#include "executor/spi.h"
#include "fetch/fetch.h"
#include "fmgr.h"
#include "guard/guard.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "retention/retention_internal.h"
#include "storage/condition_variable.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "topics/topics.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(enforce_retention);
PG_FUNCTION_INFO_V1(delete_records);

/*
 * The partitions of one topic (or all, topic NULL) with their effective
 * config.  Inside SPI; allocated in the caller's memory context.
 */
static List *
retention_partitions(const char *topic)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {topic ? CStringGetTextDatum(topic) : (Datum) 0};
	char		nulls[1] = {topic ? ' ' : 'n'};
	MemoryContext outer = CurrentMemoryContext;
	List	   *result = NIL;
	Oid			nsp = TopicSchemaOid(false);

	CatalogExec("SELECT t.id, t.name, p.partition, "
				"(c->>'retention.ms')::int8, (c->>'retention.bytes')::int8, "
				"(c->>'segment.bytes')::int8, (c->>'segment.ms')::int8, "
				"(c->>'delete.retention.ms')::int8, c->>'cleanup.policy' "
				"FROM commitlog.topics t "
				"CROSS JOIN LATERAL commitlog.effective_config(t.config) c "
				"JOIN commitlog.partitions p ON p.topic_id = t.id "
				"WHERE $1 IS NULL OR t.name = $1 ORDER BY t.id, p.partition",
				1, types, args, nulls);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(outer);
		RetentionPartition *rp = palloc0(sizeof(RetentionPartition));
		bool		isnull;
		char	   *policy;

		rp->topic_id = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		rp->topic_name = SPI_getvalue(tuple, desc, 2);
		rp->partition = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
		rp->retention_ms = DatumGetInt64(SPI_getbinval(tuple, desc, 4, &isnull));
		rp->retention_bytes = DatumGetInt64(SPI_getbinval(tuple, desc, 5, &isnull));
		rp->segment_bytes = DatumGetInt64(SPI_getbinval(tuple, desc, 6, &isnull));
		rp->segment_ms = DatumGetInt64(SPI_getbinval(tuple, desc, 7, &isnull));
		rp->delete_retention_ms = DatumGetInt64(SPI_getbinval(tuple, desc, 8, &isnull));
		policy = SPI_getvalue(tuple, desc, 9);
		rp->delete_policy = strstr(policy, "delete") != NULL;
		rp->compact_policy = strstr(policy, "compact") != NULL;
		rp->key.dbid = MyDatabaseId;
		rp->key.seqrelid = get_relname_relid(TopicSequenceRelname(rp->topic_id, rp->partition), nsp);
		rp->key.topic_id = rp->topic_id;
		rp->key.partition = rp->partition;
		if (OidIsValid(rp->key.seqrelid))
			result = lappend(result, rp);
		MemoryContextSwitchTo(old);
	}
	return result;
}

/*
 * Records of a partition in [from, to): sealed segments wholly inside by
 * the count recorded when they were sealed (O(segments)), the rest, at
 * most a partly covered segment at each end and unsealed ones, by counting.
 */
static int64
retention_count(const RetentionPartition *rp, int64 from, int64 to)
{
	Oid			types[4] = {INT4OID, INT4OID, INT8OID, INT8OID};
	Datum		args[4] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition),
	Int64GetDatum(from), Int64GetDatum(to)};
	uint64		n;
	int64		total = 0;
	int64	   *lo;
	int64	   *hi;
	int64	   *counts;

	CatalogExec("SELECT GREATEST(base_offset, $3), LEAST(end_offset, $4), "
				"CASE WHEN sealed AND base_offset >= $3 AND end_offset <= $4 THEN record_count END "
				"FROM commitlog.segments WHERE topic_id = $1 AND partition = $2 "
				"AND end_offset > $3 AND base_offset < $4", 4, types, args, NULL);
	n = SPI_processed;
	lo = palloc(sizeof(int64) * Max(n, 1));
	hi = palloc(sizeof(int64) * Max(n, 1));
	counts = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		c;

		lo[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		hi[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		c = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull);
		counts[i] = isnull ? -1 : DatumGetInt64(c);
	}
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		if (counts[i] >= 0)
		{
			total += counts[i];
			continue;
		}
		args[2] = Int64GetDatum(lo[i]);
		args[3] = Int64GetDatum(hi[i]);
		CatalogExec(psprintf("SELECT pg_catalog.count(*) FROM commitlog_topics.%s "
							 "WHERE partition = $2 AND log_offset >= $3 AND log_offset < $4 "
							 "AND $1 IS NOT NULL",
							 quote_identifier(rp->topic_name)), 4, types, args, NULL);
		total += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	return total;
}

/*
 * Raise a partition's log start offset to new_start (never lower it).
 * Returns the records that were readable below it.
 */
static int64
retention_raise_start(const RetentionPartition *rp, int64 new_start)
{
	Oid			types[4] = {INT4OID, INT4OID, INT8OID, INT8OID};
	Datum		args[4] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition),
	Int64GetDatum(new_start), 0};
	bool		isnull;
	int64		old_start;
	int64		removed;

	CatalogExec("UPDATE commitlog.partitions p SET log_start_offset = $3 "
				"FROM commitlog.partitions o "
				"WHERE p.topic_id = $1 AND p.partition = $2 AND o.topic_id = p.topic_id "
				"AND o.partition = p.partition AND p.log_start_offset < $3 "
				"RETURNING o.log_start_offset", 3, types, args, NULL);
	if (SPI_processed == 0)
		return 0;
	old_start = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	removed = retention_count(rp, old_start, new_start);
	ereport(LOG,
			(errmsg("pg_commitlog: log start offset of partition %d of topic \"%s\" raised from "
					INT64_FORMAT " to " INT64_FORMAT " (" INT64_FORMAT " records)",
					rp->partition, rp->topic_name, old_start, new_start, removed)));
	return removed;
}

/*
 * Apply time and size retention to one partition: the new log start offset
 * is the end of the last sealed segment to go.  Returns records removed.
 */
static int64
retention_apply(const RetentionPartition *rp)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition)};
	OffsetsEnd	end = OffsetsGetEnd(&rp->key);
	TimestampTz cutoff = 0;
	int64		new_start = -1;
	int64		total = 0;
	uint64		n;
	bool		by_time = true;

	if (!rp->delete_policy || (rp->retention_ms < 0 && rp->retention_bytes < 0))
		return 0;
	if (rp->retention_ms >= 0)
		cutoff = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -Min(rp->retention_ms, INT64CONST(1) << 40));

	/* segments still readable, oldest first; live sizes for unsealed ones */
	CatalogExec("SELECT s.end_offset, s.sealed, "
				"s.max_timestamp, s.created_at, "
				"CASE WHEN s.sealed THEN s.size_bytes ELSE pg_catalog.pg_total_relation_size("
				"  pg_catalog.format('commitlog_topics.%I', s.relname)::pg_catalog.regclass) END "
				"FROM commitlog.segments s JOIN commitlog.partitions p "
				"  ON p.topic_id = s.topic_id AND p.partition = s.partition "
				"WHERE s.topic_id = $1 AND s.partition = $2 AND s.end_offset > p.log_start_offset "
				"ORDER BY s.base_offset", 2, types, args, NULL);
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		total += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 5, &isnull));
	}

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		seg_end = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		bool		sealed = DatumGetBool(SPI_getbinval(tuple, desc, 2, &isnull));
		Datum		maxts = SPI_getbinval(tuple, desc, 3, &isnull);
		TimestampTz newest = isnull ?
			DatumGetTimestampTz(SPI_getbinval(tuple, desc, 4, &isnull)) : DatumGetTimestampTz(maxts);
		int64		size = DatumGetInt64(SPI_getbinval(tuple, desc, 5, &isnull));
		bool		expired;

		/* never the active segment, nor one a reader cannot have passed */
		if (!sealed || seg_end > end.stable)
			break;
		by_time = by_time && rp->retention_ms >= 0 && newest < cutoff;
		expired = by_time ||
			(rp->retention_bytes >= 0 && total - size >= rp->retention_bytes);
		if (!expired)
			break;
		new_start = seg_end;
		total -= size;
	}
	return new_start >= 0 ? retention_raise_start(rp, new_start) : 0;
}

/* May the current user remove records of this topic?  Its owner may. */
static bool
retention_may_delete(const char *topic, bool complain)
{
	Oid			relid = get_relname_relid(topic, TopicSchemaOid(false));

	if (OidIsValid(relid) && pg_class_ownercheck(relid, GetUserId()))
		return true;
	if (complain)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of topic \"%s\"", topic),
				 errdetail("Removing records needs ownership of the topic's table, as Kafka's Delete right."),
				 errhint("Ask the topic's owner or a superuser.")));
	return false;
}

/*
 * Time and size retention and compaction over the given partitions.
 * Returns records removed by retention.
 */
static int64
retention_enforce(List *partitions, bool owners_only)
{
	ListCell   *lc;
	int64		removed = 0;

	foreach(lc, partitions)
	{
		RetentionPartition *rp = lfirst(lc);

		if (owners_only && !retention_may_delete(rp->topic_name, false))
			continue;
		removed += retention_apply(rp);
		if (rp->compact_policy)
			RetentionCompact(rp);
	}
	return removed;
}

/* enforce_retention(topic text DEFAULT NULL) RETURNS bigint */
Datum
enforce_retention(PG_FUNCTION_ARGS)
{
	char	   *topic = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			nestlevel;
	int64		removed;
	List	   *partitions;

	FetchRequirePrimary();
	PreventCommandIfReadOnly("commitlog.enforce_retention()");
	if (topic != NULL)
	{
		/* lock and check it exists */
		(void) TopicOpen(topic, AccessShareLock);
		retention_may_delete(topic, true);
	}
	nestlevel = CatalogBegin();
	partitions = retention_partitions(topic);
	removed = retention_enforce(partitions, topic == NULL && !superuser());
	CatalogEnd(nestlevel);
	BgworkerWakeAtCommit();
	PG_RETURN_INT64(removed);
}

/* delete_records(topic text, partition int, before_offset bigint) RETURNS bigint */
Datum
delete_records(PG_FUNCTION_ARGS)
{
	Topic	   *topic;
	int32		partition;
	int64		before;
	int			nestlevel;
	List	   *partitions;
	RetentionPartition *rp = NULL;
	ListCell   *lc;
	OffsetsEnd	end;
	int64		removed;
	Snapshot	snapshot;
	FetchRange	range;

	FetchRequirePrimary();
	PreventCommandIfReadOnly("commitlog.delete_records()");
	topic = TopicOpen(TopicNameArg(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0)), AccessShareLock);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition and before_offset must not be null"),
				 errhint("Pass the partition and the offset below which records go.")));
	partition = PG_GETARG_INT32(1);
	TopicCheckPartition(topic, partition);
	before = PG_GETARG_INT64(2);
	retention_may_delete(topic->name, true);

	nestlevel = CatalogBegin();
	range = FetchRangeOf(topic, partition, &snapshot);
	UnregisterSnapshot(snapshot);
	end.stable = range.stable;

	/* Kafka's DeleteRecords: up to the high watermark, which is ours stable */
	if (before < 0 || before > end.stable)
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_OFFSET_OUT_OF_RANGE),
				 errmsg("offset " INT64_FORMAT " is out of range for partition %d of topic \"%s\"",
						before, partition, topic->name),
				 errdetail("Records can be deleted below an offset from the earliest, " INT64_FORMAT
						   ", up to the latest, " INT64_FORMAT ".", range.earliest, end.stable),
				 errhint("Pass an offset in that range; commitlog.latest_offset() gives its end.")));

	partitions = retention_partitions(topic->name);
	foreach(lc, partitions)
		if (((RetentionPartition *) lfirst(lc))->partition == partition)
			rp = lfirst(lc);
	if (rp == NULL)
		elog(ERROR, "partition %d of topic \"%s\" has no metadata", partition, topic->name);
	removed = retention_raise_start(rp, before);
	CatalogEnd(nestlevel);
	BgworkerWakeAtCommit();
	PG_RETURN_INT64(removed);
}

/* Run sql on the loopback session, or error. */
static void
retention_loopback_exec(PGconn *conn, const char *sql)
{
	char	   *error = BgworkerLoopbackExec(conn, sql);

	if (error != NULL)
		ereport(ERROR,
				(errmsg("pg_commitlog could not run \"%s\": %s", sql, error)));
}

/*
 * Segments dropped per transaction: each takes the locks of a table, its
 * index and its TOAST table and index, from the shared lock table.
 */
#define RETENTION_DROP_BATCH	32

/* A segment wholly below its partition's log start offset. */
typedef struct DeadSegment
{
	int32		topic_id;
	int32		partition;
	int64		base;
	char	   *relname;
	bool		attached;		/* still in pg_inherits */
	bool		detach_pending; /* a crash left DETACH ... CONCURRENTLY half done */
} DeadSegment;

/*
 * Segments to drop; in a transaction of its own.  Not inlined: gcc would
 * then warn that its locals might be clobbered by the caller's PG_TRY.
 */
static pg_noinline List *
retention_dead_segments(void)
{
	List	   *result = NIL;
	MemoryContext outer = CurrentMemoryContext;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	CatalogExec("SELECT s.topic_id, s.partition, s.base_offset, s.relname, "
				"i.inhrelid IS NOT NULL, COALESCE(i.inhdetachpending, false) "
				"FROM commitlog.segments s "
				"JOIN commitlog.partitions p ON p.topic_id = s.topic_id AND p.partition = s.partition "
				"LEFT JOIN pg_catalog.pg_class c ON c.relname = s.relname "
				"  AND c.relnamespace = 'commitlog_topics'::pg_catalog.regnamespace "
				"LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid "
				"WHERE s.end_offset <= p.log_start_offset ORDER BY 1, 2, 3",
				0, NULL, NULL, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(outer);
		DeadSegment *seg = palloc0(sizeof(DeadSegment));

		seg->topic_id = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		seg->partition = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
		seg->base = DatumGetInt64(SPI_getbinval(tuple, desc, 3, &isnull));
		seg->relname = SPI_getvalue(tuple, desc, 4);
		seg->attached = DatumGetBool(SPI_getbinval(tuple, desc, 5, &isnull));
		seg->detach_pending = DatumGetBool(SPI_getbinval(tuple, desc, 6, &isnull));
		result = lappend(result, seg);
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return result;
}

/* Drop the detached segments in dead, in one transaction. */
static void
retention_drop_detached(List *dead)
{
	StringInfoData sql;
	ListCell   *lc;
	int			n = 0;

	initStringInfo(&sql);
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, dead)
	{
		DeadSegment *seg = lfirst(lc);

		if (!OidIsValid(get_relname_relid(seg->relname, TopicSchemaOid(false))))
			continue;
		appendStringInfo(&sql, "%scommitlog_topics.%s", n++ ? ", " : "DROP TABLE ",
						 quote_identifier(seg->relname));
	}
	if (n > 0)
		GuardExecInternal(sql.data);
	foreach(lc, dead)
	{
		DeadSegment *seg = lfirst(lc);

		CatalogExec("DELETE FROM commitlog.segments WHERE topic_id = $1 AND partition = $2 AND base_offset = $3",
					3, (Oid[]) {INT4OID, INT4OID, INT8OID},
					(Datum[]) {Int32GetDatum(seg->topic_id), Int32GetDatum(seg->partition), Int64GetDatum(seg->base)},
					NULL);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	foreach(lc, dead)
		ereport(LOG,
				(errmsg("pg_commitlog: dropped segment %s, below its partition's log start offset",
						((DeadSegment *) lfirst(lc))->relname)));
}

/*
 * Step 2 of removal: detach (concurrently, over the loopback connection)
 * and drop the segments below the log start offsets.
 *
 * The cost is in commits, so there are few: the loopback session commits
 * its detaches asynchronously (a detach lost in a crash is redone, and one
 * left half done is finalized, on the next cycle), and the drops of a
 * batch share one transaction (a commit that unlinks files is always
 * flushed).  Together with waking the worker at the commit that raised
 * the log start, this took dropping 197 segments from 1380 ms to 350 ms;
 * what is left is DETACH CONCURRENTLY's own two transactions (~1.7 ms a
 * segment), which is why segments should not be made tiny.
 */
static void
retention_drop_segments(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *dead = retention_dead_segments();
	List	   *volatile batch = NIL;
	PGconn	   *volatile conn = NULL;

	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ListCell   *lc;

		foreach(lc, dead)
		{
			DeadSegment *seg = lfirst(lc);

			if (seg->attached)
			{
				char	   *sql;

				if (conn == NULL)
				{
					conn = BgworkerLoopbackConnect("pg_commitlog retention", "detach segments");
					retention_loopback_exec(conn, "SET commitlog.internal_maintenance = on");
					retention_loopback_exec(conn, "SET synchronous_commit = off");
				}
				sql = psprintf("ALTER TABLE commitlog_topics.%s DETACH PARTITION commitlog_topics.%s %s",
							   quote_identifier(TopicPartitionRelname(seg->topic_id, seg->partition)),
							   quote_identifier(seg->relname),
							   seg->detach_pending ? "FINALIZE" : "CONCURRENTLY");
				pgstat_report_activity(STATE_RUNNING, sql);
				retention_loopback_exec(conn, sql);
			}
			batch = lappend(batch, seg);
			if (list_length(batch) >= RETENTION_DROP_BATCH)
			{
				retention_drop_detached(batch);
				MemoryContextSwitchTo(cxt);
				batch = NIL;
			}
		}
		if (batch != NIL)
			retention_drop_detached(batch);
		MemoryContextSwitchTo(cxt);
	}
	PG_FINALLY();
	{
		if (conn != NULL)
			PQfinish(conn);
	}
	PG_END_TRY();
}

/*
 * One maintenance cycle of the worker (retention.h).  Segment upkeep per
 * topic in its own transaction, so one bad topic does not stop the rest;
 * retention and drops when due.
 */
void
RetentionMaintain(bool retention_due)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *partitions;
	ListCell   *lc;
	bool		attached = false;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cxt);
	partitions = retention_partitions(NULL);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	foreach(lc, partitions)
	{
		RetentionPartition *rp = lfirst(lc);

		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "pg_commitlog: segment upkeep");
		/* the topic may have been dropped since the list was read */
		if (OidIsValid(get_relname_relid(rp->topic_name, TopicSchemaOid(false))))
		{
			LockRelationOid(get_relname_relid(rp->topic_name, TopicSchemaOid(false)), AccessShareLock);
			attached |= RetentionSegmentUpkeep(rp, retention_due);
			if (retention_due)
				(void) retention_enforce(list_make1(rp), false);
		}
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	if (attached)
		ConditionVariableBroadcast(OffsetsSegmentsCV());

	retention_drop_segments();
	pgstat_report_activity(STATE_IDLE, NULL);
}
