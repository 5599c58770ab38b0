/*-------------------------------------------------------------------------
 *
 * topic_segments.c
 *		The per-backend list of a partition's segments, for produce.
 *
 * produce() writes straight into the segment that holds each offset.  The
 * list is loaded on first use and reloaded when an offset falls past its
 * end (the background worker attached a segment since); segments are only
 * ever added at the end or dropped below the log start offset, which
 * producers never write to, so a stale list is never wrong, only short.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "offsets/offsets.h"
#include "topics/topics.h"
#include "access/table.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

void
TopicForgetSegments(Topic *topic)
{
	if (topic->segments == NULL)
		return;
	for (int p = 0; p < topic->partitions; p++)
		if (topic->segments[p].items)
			pfree(topic->segments[p].items);
	pfree(topic->segments);
	topic->segments = NULL;
}

static void
segments_load(Topic *topic, int32 partition)
{
	PartitionSegments *segs = &topic->segments[partition];
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(topic->id), Int32GetDatum(partition)};
	Oid			nsp = TopicSchemaOid(false);
	uint64		n;

	SPI_connect();
	n = CatalogRead("SELECT base_offset, end_offset, relname FROM commitlog.segments "
					"WHERE topic_id = $1 AND partition = $2 ORDER BY base_offset",
					2, types, args, 0);
	if (segs->items)
		pfree(segs->items);
	segs->items = MemoryContextAllocZero(TopMemoryContext, sizeof(SegmentRef) * Max(n, 1));
	segs->n = 0;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		SegmentRef *seg = &segs->items[segs->n];
		bool		isnull;

		seg->base = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		seg->end = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		seg->relid = get_relname_relid(SPI_getvalue(tuple, desc, 3), nsp);
		if (OidIsValid(seg->relid))
			segs->n++;
	}
	SPI_finish();
	segs->loaded = true;
}

static const SegmentRef *
segments_find(const PartitionSegments *segs, int64 offset)
{
	/* newest first: produce writes at the end */
	for (int i = segs->n - 1; i >= 0; i--)
	{
		if (offset >= segs->items[i].end)
			return NULL;
		if (offset >= segs->items[i].base)
			return &segs->items[i];
	}
	return NULL;
}

/*
 * The segment holding offset in the partition, and its end in *end; or
 * InvalidOid if no segment holds it yet (the worker has not created it).
 */
Oid
TopicSegmentFor(Topic *topic, int32 partition, int64 offset, int64 *end)
{
	PartitionSegments *segs = &topic->segments[partition];
	const SegmentRef *seg = segs->loaded ? segments_find(segs, offset) : NULL;

	if (seg == NULL)
	{
		segments_load(topic, partition);
		seg = segments_find(segs, offset);
	}
	if (seg == NULL)
		return InvalidOid;
	*end = seg->end;
	return seg->relid;
}

/*
 * How many offsets a segment spans: segment.bytes divided by the observed
 * bytes per record, in whole offset blocks, so that a segment approximates
 * segment.bytes as Kafka's do.
 */
int64
TopicSegmentSpan(int64 segment_bytes, double bytes_per_record)
{
	double		span = (double) segment_bytes / Max(bytes_per_record, 1.0);
	int64		blocks = (int64) (span / OFFSETS_BLOCK_SIZE);

	blocks = Max(blocks, 1);
	blocks = Min(blocks, INT64CONST(1) << 40);
	return blocks * OFFSETS_BLOCK_SIZE;
}

/* The oldest segment that ends above offset, or NULL. */
static const SegmentRef *
segments_find_from(const PartitionSegments *segs, int64 offset)
{
	const SegmentRef *found = NULL;

	for (int i = segs->n - 1; i >= 0 && segs->items[i].end > offset; i--)
		found = &segs->items[i];
	return found;
}

/* Open seg with lockmode if it is still the segment the list says it is. */
static Relation
segment_try_open(Topic *topic, int32 partition, const SegmentRef *seg, LOCKMODE lockmode)
{
	Relation	rel = try_table_open(seg->relid, lockmode);
	char	   *expected;
	bool		same;

	if (rel == NULL)
		return NULL;
	expected = TopicSegmentRelname(topic->id, partition, seg->base);
	same = RelationGetNamespace(rel) == TopicSchemaOid(false) &&
		strcmp(RelationGetRelationName(rel), expected) == 0;
	pfree(expected);
	if (same)
		return rel;
	table_close(rel, lockmode);
	return NULL;
}

/*
 * For readers: open, with lockmode, the oldest segment of the partition
 * that holds offset or lies above it, setting *base and *end to its range;
 * NULL if there is none.  The list may name a segment that retention has
 * dropped since it was loaded (or, after OID wraparound, an unrelated
 * relation with its OID), so the opened relation is checked by name, and
 * on a mismatch the list is loaded again and the lookup repeated once.
 * After that, a segment that cannot be opened was dropped by retention:
 * the caller's offset is below the log start.
 */
Relation
TopicSegmentOpen(Topic *topic, int32 partition, int64 offset, LOCKMODE lockmode,
				 int64 *base, int64 *end)
{
	PartitionSegments *segs = &topic->segments[partition];

	for (int attempt = 0; attempt < 2; attempt++)
	{
		const SegmentRef *seg;
		Relation	rel;

		if (!segs->loaded || attempt > 0)
			segments_load(topic, partition);
		seg = segments_find_from(segs, offset);
		if (seg == NULL)
		{
			if (attempt == 0)
				continue;		/* the worker may have attached it since */
			return NULL;
		}
		rel = segment_try_open(topic, partition, seg, lockmode);
		if (rel != NULL)
		{
			*base = seg->base;
			*end = seg->end;
			return rel;
		}
	}
	return NULL;
}
