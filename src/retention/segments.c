/*-------------------------------------------------------------------------
 *
 * segments.c
 *		Segment upkeep by the background worker: seal, pre-create, roll.
 *
 * A partition's log is a list of segments, fixed offset ranges attached to
 * the partition's table.  Each cycle the worker, for every partition:
 *
 *	1. seals the segments the stable offset has passed (no record can still
 *	   arrive in them): records their size, record count and newest
 *	   timestamp, so that retention can decide per segment;
 *	2. keeps a spare segment ahead of the one producers write to, and covers
 *	   every offset already reserved (after a crash the allocator jumps ahead
 *	   by up to 32 blocks).  The next range is sized from the bytes per
 *	   record observed in the newest sealed segment, to approximate
 *	   segment.bytes;
 *	3. rolls the active segment when it has been active (offsets handed out
 *	   in it) for segment.ms, by moving the allocator to the next segment's
 *	   base (a gap, as the contract allows), so that time retention can drop
 *	   it later even on a quiet partition.
 *
 * Producers never create segments: one that runs past the last segment
 * wakes the worker and waits on OffsetsSegmentsCV(), which is broadcast
 * here after every change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "offsets/offsets.h"
#include "retention/retention_internal.h"
#include "storage/condition_variable.h"
#include "topics/topics.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Record size, count and newest timestamp of segments the stable offset passed. */
static void
segments_seal(const RetentionPartition *rp, int64 stable)
{
	Oid			types[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition), Int64GetDatum(stable)};
	uint64		n;
	char	  **relnames;
	int64	   *bases;

	CatalogExec("SELECT relname, base_offset FROM commitlog.segments "
				"WHERE topic_id = $1 AND partition = $2 AND NOT sealed AND end_offset <= $3 "
				"ORDER BY base_offset", 3, types, args, NULL);
	n = SPI_processed;
	relnames = palloc(sizeof(char *) * Max(n, 1));
	bases = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		relnames[i] = pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		bases[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	for (uint64 i = 0; i < n; i++)
		RetentionRecountSegment(rp, bases[i], relnames[i], true);
}

/* Store a segment's size, count and newest timestamp (compaction calls it too). */
void
RetentionRecountSegment(const RetentionPartition *rp, int64 base, const char *relname, bool seal)
{
	Oid			types[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition), Int64GetDatum(base)};

	CatalogExec(psprintf("UPDATE commitlog.segments s SET sealed = sealed OR %s, "
						 "record_count = c.n, max_timestamp = c.ts, "
						 "size_bytes = pg_catalog.pg_total_relation_size('commitlog_topics.%s'::pg_catalog.regclass) "
						 "FROM (SELECT pg_catalog.count(*) AS n, pg_catalog.max(\"timestamp\") AS ts "
						 "      FROM commitlog_topics.%s) c "
						 "WHERE s.topic_id = $1 AND s.partition = $2 AND s.base_offset = $3",
						 seal ? "true" : "false", quote_identifier(relname), quote_identifier(relname)),
				3, types, args, NULL);
}

/* Bytes per record in the newest sealed segment that has records. */
static double
segments_bytes_per_record(const RetentionPartition *rp)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition)};
	bool		isnull;
	Datum		d;

	CatalogExec("SELECT size_bytes::float8 / record_count FROM commitlog.segments "
				"WHERE topic_id = $1 AND partition = $2 AND sealed AND record_count > 0 "
				"ORDER BY base_offset DESC LIMIT 1", 2, types, args, NULL);
	if (SPI_processed == 0)
		return TOPIC_DEFAULT_RECORD_BYTES;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? TOPIC_DEFAULT_RECORD_BYTES : DatumGetFloat8(d);
}

/*
 * The ends of each partition as the last upkeep saw them, so that a cycle
 * skips partitions where nothing happened: with many partitions, upkeep
 * would otherwise run a few queries per partition every second.
 */
typedef struct UpkeepSeen
{
	OffsetsPartitionKey key;	/* hash key */
	int64		log_end;
	int64		stable;
	int64		reserved_end;
} UpkeepSeen;

static HTAB *upkeep_seen = NULL;

/*
 * Has the partition moved since the last upkeep that completed?  If
 * remember, record these ends as done (call it once the upkeep succeeded,
 * so that a failed one is retried next cycle).
 */
static bool
upkeep_moved(const OffsetsPartitionKey *key, OffsetsEnd end, bool remember)
{
	UpkeepSeen *seen;
	bool		found;
	bool		moved;

	if (upkeep_seen == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(OffsetsPartitionKey);
		ctl.entrysize = sizeof(UpkeepSeen);
		upkeep_seen = hash_create("pg_commitlog upkeep", 256, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	seen = hash_search(upkeep_seen, key, remember ? HASH_ENTER : HASH_FIND, &found);
	moved = !found || seen->log_end != end.log_end || seen->stable != end.stable ||
		seen->reserved_end != end.reserved_end;
	if (!remember)
		return moved;
	seen->log_end = end.log_end;
	seen->stable = end.stable;
	seen->reserved_end = end.reserved_end;
	return moved;
}

/*
 * Upkeep of one partition (see the file comment).  Inside SPI, in the
 * worker's transaction.  Partitions where nothing moved since the last
 * cycle are skipped unless full (the retention interval, when time rolls
 * are checked too).  Returns true if it attached a segment.
 */
bool
RetentionSegmentUpkeep(const RetentionPartition *rp, bool full)
{
	OffsetsEnd	end = OffsetsGetEnd(&rp->key);
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition)};
	bool		isnull;
	int64		last_base = 0;
	int64		last_end = 0;
	int64		active_base = -1;
	int64		active_end = -1;
	Datum		activated_at = (Datum) 0;
	bool		activated_null = true;
	bool		attached = false;

	if (!upkeep_moved(&rp->key, end, false) && !full)
		return false;
	segments_seal(rp, end.stable);

	CatalogExec("SELECT base_offset, end_offset, activated_at FROM commitlog.segments "
				"WHERE topic_id = $1 AND partition = $2 ORDER BY base_offset",
				2, types, args, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		last_base = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		last_end = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		if (end.log_end >= last_base && end.log_end < last_end && end.log_end > last_base)
		{
			/* the active segment, with something handed out in it */
			active_base = last_base;
			active_end = last_end;
			activated_at = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &activated_null);
		}
	}
	if (SPI_processed == 0)
		elog(ERROR, "partition %d of topic \"%s\" has no segments", rp->partition, rp->topic_name);

	/*
	 * Every reserved offset covered, and a spare segment beyond the one
	 * producers write to (which must not be the last one).
	 */
	while (last_end <= end.reserved_end || end.log_end >= last_base)
	{
		int64		span = TopicSegmentSpan(rp->segment_bytes, segments_bytes_per_record(rp));
		int64		new_end = Max(last_end + span,
								  TYPEALIGN64(OFFSETS_BLOCK_SIZE, end.reserved_end));

		TopicCreateSegment(rp->topic_name, rp->topic_id, rp->partition, last_end, new_end);
		attached = true;
		last_base = last_end;
		last_end = new_end;
	}

	/*
	 * Roll the active segment once it has been active for segment.ms.  Its
	 * age counts from when the worker first saw offsets handed out in it
	 * (not from the records' timestamps, which producers choose).
	 */
	if (active_end >= 0 && activated_null)
	{
		Oid			atypes[3] = {INT4OID, INT4OID, INT8OID};
		Datum		aargs[3] = {args[0], args[1], Int64GetDatum(active_base)};

		CatalogExec("UPDATE commitlog.segments SET activated_at = pg_catalog.now() "
					"WHERE topic_id = $1 AND partition = $2 AND base_offset = $3",
					3, atypes, aargs, NULL);
	}
	else if (active_end >= 0 && rp->segment_ms >= 0 &&
			 DatumGetTimestampTz(activated_at) <
			 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -Min(rp->segment_ms, INT64CONST(1) << 40)))
	{
		ereport(DEBUG1,
				(errmsg("pg_commitlog: rolling the active segment of partition %d of topic \"%s\" (segment.ms)",
						rp->partition, rp->topic_name)));
		OffsetsSkipTo(&rp->key, active_end);
	}
	(void) upkeep_moved(&rp->key, end, true);
	return attached;
}
