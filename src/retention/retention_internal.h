/*
 * retention_internal.h
 *		Private to src/retention.
 */
#ifndef COMMITLOG_RETENTION_INTERNAL_H
#define COMMITLOG_RETENTION_INTERNAL_H

#include "retention/retention.h"
#include "offsets/offsets.h"

/* One partition with the effective config retention needs. */
typedef struct RetentionPartition
{
	int32		topic_id;
	char	   *topic_name;
	int32		partition;
	OffsetsPartitionKey key;
	int64		retention_ms;	/* -1: forever */
	int64		retention_bytes;	/* -1: no limit */
	int64		segment_bytes;
	int64		segment_ms;
	int64		delete_retention_ms;
	bool		delete_policy;	/* cleanup.policy includes delete */
	bool		compact_policy; /* cleanup.policy includes compact */
} RetentionPartition;

/* segments.c */
extern bool RetentionSegmentUpkeep(const RetentionPartition *rp, bool full);
extern void RetentionRecountSegment(const RetentionPartition *rp, int64 base,
									const char *relname, bool seal);

/* compaction.c */
extern void RetentionCompact(const RetentionPartition *rp);

#endif							/* COMMITLOG_RETENTION_INTERNAL_H */
