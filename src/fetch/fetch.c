/*-------------------------------------------------------------------------
 *
 * fetch.c
 *		fetch, earliest_offset, latest_offset, offset_for_time.
 *
 * Why the order matters (the full argument is in docs/architecture.md):
 * an offset below the stable offset was handed out to a transaction that,
 * when the stable offset was computed, had already ended, and a transaction
 * ends its entries only after its commit became visible to new snapshots.
 * So a snapshot taken after that moment sees every committed record below
 * the stable offset, and a reader that continues from the offset after the
 * last record it got can never miss one that commits later.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commitlog.h"
#include "errors.h"
#include "executor/spi.h"
#include "fetch/fetch.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(fetch);
PG_FUNCTION_INFO_V1(earliest_offset);
PG_FUNCTION_INFO_V1(latest_offset);
PG_FUNCTION_INFO_V1(offset_for_time);

void
FetchRequirePrimary(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot read topics on a hot standby"),
				 errdetail("A standby has no record of the producing transactions still open on the primary, so it cannot tell which records are stable."),
				 errhint("Read from the primary, or from a logical replica of the topic.")));
}

void
FetchRequireSelect(const Topic *topic)
{
	if (pg_class_aclcheck(topic->relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read topic \"%s\"", topic->name),
				 errdetail("Reading needs the SELECT privilege on commitlog_topics.%s.",
						   quote_identifier(topic->name)),
				 errhint("The topic's owner can run: GRANT SELECT ON commitlog_topics.%s TO %s;",
						 quote_identifier(topic->name),
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
}

static int32
int_arg(FunctionCallInfo fcinfo, int argno, const char *name, int32 min)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", name),
				 errhint("Pass a value for %s, or leave it out to use its default where it has one.", name)));
	if (PG_GETARG_INT32(argno) < min)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %d", name, PG_GETARG_INT32(argno)),
				 errhint("%s must be at least %d.", name, min)));
	return PG_GETARG_INT32(argno);
}

/* Open topic/partition from the first two arguments, for reading. */
static Topic *
fetch_open(FunctionCallInfo fcinfo, int32 *partition)
{
	Topic	   *topic;

	FetchRequirePrimary();
	topic = TopicOpen(TopicNameArg(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0)),
					  AccessShareLock);
	*partition = int_arg(fcinfo, 1, "partition", 0);
	TopicCheckPartition(topic, *partition);
	return topic;
}

/* The log start offset, read with snapshot. */
static int64
fetch_log_start(Topic *topic, int32 partition, Snapshot snapshot)
{
	Datum		args[2] = {Int32GetDatum(topic->id), Int32GetDatum(partition)};
	bool		isnull;
	int64		start;

	if (topic->start_plan == NULL)
	{
		Oid			types[2] = {INT4OID, INT4OID};
		SPIPlanPtr	plan = SPI_prepare("SELECT log_start_offset FROM commitlog.partitions "
									   "WHERE topic_id = $1 AND partition = $2", 2, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare the log start lookup");
		SPI_keepplan(plan);
		topic->start_plan = plan;
	}
	if (SPI_execute_snapshot(topic->start_plan, args, NULL, snapshot, InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "partition %d of topic \"%s\" has no metadata", partition, topic->name);
	start = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return start;
}

/*
 * The readable range of a partition, and the snapshot to read it with
 * (registered; the caller unregisters it).  Must be called inside SPI.
 */
FetchRange
FetchRangeOf(Topic *topic, int32 partition, Snapshot *snapshot)
{
	OffsetsPartitionKey key = TopicPartitionKey(topic, partition);
	OffsetsEnd	end = OffsetsGetEnd(&key);
	FetchRange	range;

	/* the snapshot is taken only now, after the stable offset */
	*snapshot = RegisterSnapshot(GetLatestSnapshot());
	range.earliest = fetch_log_start(topic, partition, *snapshot);
	range.stable = end.stable;
	range.log_end = end.log_end;
	range.awaiting_flush = end.awaiting_flush;
	return range;
}

void
FetchOutOfRange(Topic *topic, int32 partition, int64 offset, FetchRange range)
{
	ereport(ERROR,
			(errcode(ERRCODE_COMMITLOG_OFFSET_OUT_OF_RANGE),
			 errmsg("offset " INT64_FORMAT " is out of range for partition %d of topic \"%s\"",
					offset, partition, topic->name),
			 range.log_end == range.stable ?
			 errdetail("The earliest offset is " INT64_FORMAT " and the latest is " INT64_FORMAT ".",
					   range.earliest, range.stable) :
			 errdetail("The earliest offset is " INT64_FORMAT " and the latest is " INT64_FORMAT
					   "; offsets from there to the log end at " INT64_FORMAT
					   " become readable when the producing transactions below them end.",
					   range.earliest, range.stable, range.log_end),
			 errhint("Fetch from an offset in that range; commitlog.earliest_offset() and commitlog.latest_offset() give its ends.")));
}

static Size
datum_raw_bytes(Datum d, bool isnull)
{
	return isnull ? 0 : toast_raw_datum_size(d) - VARHDRSZ;
}

/* Where FetchRead is: what it returned so far, and its limits. */
typedef struct FetchCursor
{
	ReturnSetInfo *rsinfo;
	Datum		topic_name;
	int64		stop;			/* read below this offset only */
	int32		max_records;
	int32		max_bytes;
	uint64		n;				/* records returned */
	Size		bytes;
	int64		next;			/* offset after the last one returned */
	bool		full;			/* a limit cut the read short */
} FetchCursor;

/*
 * Return the records of one segment from offset from on, in offset order,
 * through its primary key index (partition, log_offset).
 */
static void
fetch_segment(FetchCursor *cur, Relation rel, int32 partition, int64 from,
			  Snapshot snapshot)
{
	Relation	index = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan = index_beginscan(rel, index, snapshot, 2, 0);
	ScanKeyData keys[2];

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(partition));
	ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(from));
	index_rescan(scan, keys, 2, NULL, 0);

	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		Datum		values[TOPIC_NCOLS + 1];
		bool		nulls[TOPIC_NCOLS + 1];
		int64		offset;
		Size		size;

		slot_getallattrs(slot);
		offset = DatumGetInt64(slot->tts_values[TOPIC_COL_OFFSET]);
		if (offset >= cur->stop)
			break;

		/* at least one record, even above max_bytes, as Kafka */
		size = datum_raw_bytes(slot->tts_values[TOPIC_COL_KEY], slot->tts_isnull[TOPIC_COL_KEY]) +
			datum_raw_bytes(slot->tts_values[TOPIC_COL_VALUE], slot->tts_isnull[TOPIC_COL_VALUE]) +
			datum_raw_bytes(slot->tts_values[TOPIC_COL_HEADERS], slot->tts_isnull[TOPIC_COL_HEADERS]);
		if (cur->n > 0 && cur->bytes + size > (Size) cur->max_bytes)
		{
			cur->full = true;
			break;
		}
		cur->bytes += size;

		/* commitlog.record: the topic's name, then the table's columns */
		values[0] = cur->topic_name;
		nulls[0] = false;
		memcpy(&values[1], slot->tts_values, sizeof(Datum) * TOPIC_NCOLS);
		memcpy(&nulls[1], slot->tts_isnull, sizeof(bool) * TOPIC_NCOLS);
		tuplestore_putvalues(cur->rsinfo->setResult, cur->rsinfo->setDesc, values, nulls);
		cur->next = offset + 1;
		if (++cur->n >= (uint64) cur->max_records)
		{
			cur->full = true;
			break;
		}
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
}

/*
 * Read the records of [from, range.stable) visible to snapshot into the
 * materialized result of fcinfo (rows of commitlog.record), at most
 * max_records and max_bytes (but at least one).  Returns how many it
 * returned, and sets *next to the offset to continue from.
 *
 * It reads each segment through its index directly rather than querying
 * the topic's partitioned table: a generic plan for the parent cannot know
 * the page size and chose a bitmap scan that collected every offset up to
 * the stable one before returning the first, and planning for the actual
 * parameters each call costs more than the read.  Row-level security, the
 * one thing a query would add, cannot be enabled on topic tables.
 */
uint64
FetchRead(FunctionCallInfo fcinfo, Topic *topic, int32 partition, int64 from,
		  FetchRange range, Snapshot snapshot, int32 max_records, int32 max_bytes,
		  int64 *next)
{
	FetchCursor cur = {0};
	int64		offset = from;

	cur.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	cur.topic_name = CStringGetTextDatum(topic->name);
	cur.stop = range.stable;
	cur.max_records = max_records;
	cur.max_bytes = max_bytes;
	cur.next = from;

	while (!cur.full && offset < range.stable)
	{
		int64		base;
		int64		end;
		Relation	rel = TopicSegmentOpen(topic, partition, offset, AccessShareLock,
										   &base, &end);

		if (rel == NULL)
			break;				/* no segment above: nothing was written there */
		if (base > offset && cur.n == 0 && offset == from)
		{
			/*
			 * No segment holds the first offset wanted, though it is above
			 * the log start in our snapshot: retention dropped its segment
			 * after the snapshot was taken.  Skipping to the next segment
			 * would lose records silently; Kafka reports the offset out of
			 * range.
			 */
			table_close(rel, AccessShareLock);
			ereport(ERROR,
					(errcode(ERRCODE_COMMITLOG_OFFSET_OUT_OF_RANGE),
					 errmsg("offset " INT64_FORMAT " of partition %d of topic \"%s\" was deleted while it was being read",
							from, partition, topic->name),
					 errdetail("Retention removed the segment that held it."),
					 errhint("Fetch again from commitlog.earliest_offset().")));
		}
		fetch_segment(&cur, rel, partition, Max(offset, base), snapshot);
		table_close(rel, AccessShareLock);
		offset = end;
	}

	/*
	 * Everything below the stable offset that was not returned is a gap
	 * (never committed) when the read was not cut short: skip it.
	 */
	*next = cur.full ? cur.next : range.stable;
	return cur.n;
}

/*
 * fetch(topic text, partition int, from_offset bigint, max_records int,
 *		 max_bytes int, wait_ms int) RETURNS SETOF commitlog.record
 *
 * With wait_ms > 0 and nothing to return, sleep on the partition's
 * condition variable (producers broadcast as their transactions end) and
 * read again, until a record comes or the time is up.
 */
Datum
fetch(PG_FUNCTION_ARGS)
{
	int32		partition;
	Topic	   *topic;
	int64		from;
	int32		max_records;
	int32		max_bytes;
	int32		wait_ms;
	TimestampTz deadline;
	OffsetsPartitionKey key;

	SetSingleFuncCall(fcinfo, 0);
	topic = fetch_open(fcinfo, &partition);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_offset must not be null"),
				 errhint("Pass commitlog.earliest_offset() to read from the start.")));
	from = PG_GETARG_INT64(2);
	max_records = int_arg(fcinfo, 3, "max_records", 1);
	max_bytes = int_arg(fcinfo, 4, "max_bytes", 1);
	wait_ms = int_arg(fcinfo, 5, "wait_ms", 0);
	FetchRequireSelect(topic);

	key = TopicPartitionKey(topic, partition);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	SPI_connect();
	for (;;)
	{
		Snapshot	snapshot;
		FetchRange	range = FetchRangeOf(topic, partition, &snapshot);
		uint64		n = 0;
		int64		next = from;
		long		remaining;

		/*
		 * As Kafka: an offset past the log end is out of range, one between
		 * the stable offset and the log end (taken by a transaction still
		 * open) just has nothing to read yet.
		 */
		if (from < range.earliest || from > range.log_end)
			FetchOutOfRange(topic, partition, from, range);
		if (from < range.stable)
			n = FetchRead(fcinfo, topic, partition, from, range, snapshot,
						  max_records, max_bytes, &next);
		UnregisterSnapshot(snapshot);

		if (n > 0 || wait_ms == 0)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		OffsetsWaitForChange(&key, range.stable, remaining);
	}
	SPI_finish();
	return (Datum) 0;
}

/* earliest_offset(topic text, partition int) RETURNS bigint */
Datum
earliest_offset(PG_FUNCTION_ARGS)
{
	int32		partition;
	Topic	   *topic = fetch_open(fcinfo, &partition);
	Snapshot	snapshot;
	int64		start;

	SPI_connect();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	start = fetch_log_start(topic, partition, snapshot);
	UnregisterSnapshot(snapshot);
	SPI_finish();
	PG_RETURN_INT64(start);
}

/* latest_offset(topic text, partition int) RETURNS bigint: the stable offset */
Datum
latest_offset(PG_FUNCTION_ARGS)
{
	int32		partition;
	Topic	   *topic = fetch_open(fcinfo, &partition);
	OffsetsPartitionKey key = TopicPartitionKey(topic, partition);

	PG_RETURN_INT64(OffsetsGetEnd(&key).stable);
}

/*
 * The first readable offset of a partition whose timestamp is at or after
 * ts, under snapshot; false if there is none.  Inside SPI.  Shared by
 * offset_for_time() and reset_offsets() to a timestamp.
 */
bool
FetchOffsetForTime(Topic *topic, int32 partition, FetchRange range, Snapshot snapshot,
				   TimestampTz ts, int64 *offset)
{
	Oid			types[5] = {INT4OID, INT8OID, INT8OID, TIMESTAMPTZOID, INT4OID};
	Datum		args[5] = {Int32GetDatum(partition), Int64GetDatum(range.earliest),
		Int64GetDatum(range.stable), TimestampTzGetDatum(ts), Int32GetDatum(topic->id)};
	SPIPlanPtr	plan;
	bool		found = false;
	bool		isnull;

	/*
	 * As Kafka's time index: a sealed segment whose newest timestamp is
	 * older than ts holds no match (timestamps need not increase with
	 * offsets, so only the segment's maximum says so), and the search
	 * starts at the first segment that may.  Compaction only lowers a
	 * segment's true maximum, so the recorded one stays safe.  Without such
	 * a segment there is no match at all.
	 */
	plan = SPI_prepare(psprintf("SELECT log_offset FROM commitlog_topics.%s "
								"WHERE partition = $1 AND log_offset < $3 AND \"timestamp\" >= $4 "
								"AND log_offset >= GREATEST($2, COALESCE("
								"  (SELECT pg_catalog.min(s.base_offset) FROM commitlog.segments s "
								"    WHERE s.topic_id = $5 AND s.partition = $1 AND s.end_offset > $2 "
								"      AND NOT (s.sealed AND s.max_timestamp IS NOT NULL AND s.max_timestamp < $4)), $3)) "
								"ORDER BY log_offset LIMIT 1",
								quote_identifier(topic->name)), 5, types);
	if (plan == NULL ||
		SPI_execute_snapshot(plan, args, NULL, snapshot, InvalidSnapshot, true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read topic \"%s\"", topic->name);
	if (SPI_processed > 0)
	{
		*offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		found = true;
	}
	SPI_freeplan(plan);
	return found;
}

/*
 * offset_for_time(topic text, partition int, ts timestamptz) RETURNS bigint:
 * the first readable offset whose timestamp is at or after ts, or NULL.
 */
Datum
offset_for_time(PG_FUNCTION_ARGS)
{
	int32		partition;
	Topic	   *topic;
	Snapshot	snapshot;
	FetchRange	range;
	int64		result = 0;
	bool		found;

	topic = fetch_open(fcinfo, &partition);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ts must not be null"),
				 errhint("Pass the timestamp to search from.")));
	FetchRequireSelect(topic);

	SPI_connect();
	range = FetchRangeOf(topic, partition, &snapshot);
	found = FetchOffsetForTime(topic, partition, range, snapshot, PG_GETARG_TIMESTAMPTZ(2), &result);
	UnregisterSnapshot(snapshot);
	SPI_finish();
	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_INT64(result);
}
