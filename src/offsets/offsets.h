/*
 * offsets.h
 *		Offset allocation and the last stable offset (LSO).
 *
 * This is the heart of pg_commitlog's correctness; README.md in this folder
 * states the invariants and the argument.  In short:
 *
 *	- offsets come from a per-partition SEQUENCE in blocks and are handed out
 *	  from shared memory, so they never go back, not even after a crash;
 *	- a producing transaction registers the lowest offset it took in each
 *	  partition before the offset is handed out, and drops the registration
 *	  once its commit is visible (and durable) or it aborted;
 *	- a reader computes stable = min(next offset, lowest registered) FIRST and
 *	  takes its snapshot AFTER, then reads below stable: every lower offset is
 *	  either visible in that snapshot or will never commit.
 */
#ifndef COMMITLOG_OFFSETS_H
#define COMMITLOG_OFFSETS_H

#include "postgres.h"

#include "storage/condition_variable.h"
#include "utils/timestamp.h"

/* offsets reserved from the partition's sequence at a time */
#define OFFSETS_BLOCK_SIZE			1024

/* partitions one transaction may produce to (fixed per-backend array) */
#define OFFSETS_MAX_TXN_PARTITIONS	64

/*
 * Identifies one partition in the whole server.  The offset sequence's OID
 * makes it unique even when a topic id comes back after DROP EXTENSION; the
 * allocator also reads the sequence through it.
 */
typedef struct OffsetsPartitionKey
{
	Oid			dbid;
	Oid			seqrelid;
	int32		topic_id;
	int32		partition;
} OffsetsPartitionKey;

/* what a reader needs to know about a partition's end */
typedef struct OffsetsEnd
{
	int64		stable;			/* last stable offset: reads stop below it */
	int64		log_end;		/* next offset to be handed out */
	int64		reserved_end;	/* end of the block reserved so far */
	bool		awaiting_flush; /* held back by an unflushed async commit */
} OffsetsEnd;

extern void OffsetsShmemRequest(void);
extern void OffsetsShmemStartup(void);
extern void OffsetsInit(void);

extern void OffsetsAllocate(const OffsetsPartitionKey *key, int count, int64 *offsets);
extern OffsetsEnd OffsetsGetEnd(const OffsetsPartitionKey *key);
extern void OffsetsForgetPartition(const OffsetsPartitionKey *key);
extern void OffsetsWaitForChange(const OffsetsPartitionKey *key, int64 seen_stable,
								 long timeout_ms);
extern uint64 OffsetsTopicGeneration(Oid dbid, int32 topic_id);
extern ConditionVariable *OffsetsSegmentsCV(void);
extern void OffsetsSkipTo(const OffsetsPartitionKey *key, int64 base);
extern void OffsetsResetTo(const OffsetsPartitionKey *key, int64 base);
extern int	OffsetsStuckProducers(Oid dbid, TimestampTz older_than, int *pids, int max_pids);
extern void OffsetsWakeTopic(Oid dbid, int32 topic_id);
extern void OffsetsWaitForTopic(Oid dbid, int32 topic_id, uint64 seen_generation,
								long timeout_ms);

#endif							/* COMMITLOG_OFFSETS_H */
