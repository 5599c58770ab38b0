/*
 * offsets_internal.h
 *		Shared-memory layout of the offsets subsystem; private to src/offsets.
 */
#ifndef COMMITLOG_OFFSETS_INTERNAL_H
#define COMMITLOG_OFFSETS_INTERNAL_H

#include "offsets/offsets.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* marks an in-flight entry as free: no real partition number is negative */
#define INFLIGHT_FREE	(-1)

/*
 * Per-partition state, an entry of a shared hash table.  next_offset and
 * reserved_end are protected by lock; so is the creation and the removal of
 * every in-flight entry that names this partition.
 */
typedef struct PartitionSlot
{
	OffsetsPartitionKey key;	/* hash key, must be first */
	LWLock		lock;
	int64		next_offset;	/* next offset to hand out (log end) */
	int64		reserved_end;	/* end of the block reserved from the sequence */
	bool		refilling;		/* a backend is taking the next block */
	ConditionVariable cv;		/* broadcast when producing transactions end */
	ConditionVariable refill_cv;	/* broadcast when a refill is done */
} PartitionSlot;

/*
 * The lowest offset one backend's transaction took in one partition.
 * commit_lsn is 0 while the transaction is open; after an asynchronous
 * commit it holds the commit record's end, and the entry keeps holding the
 * stable offset back until the WAL is flushed past it.
 */
typedef struct InflightEntry
{
	OffsetsPartitionKey key;	/* key.partition == INFLIGHT_FREE: unused */
	int64		lowest;
	TimestampTz since;			/* when the transaction took its first offset here */
	pg_atomic_uint64 commit_lsn;
} InflightEntry;

/* One per PGPROC; written only by its owner, read by everyone. */
typedef struct InflightSet
{
	pg_atomic_uint32 used;		/* entries[0 .. used) may be live */
	InflightEntry entries[OFFSETS_MAX_TXN_PARTITIONS];
} InflightSet;

/*
 * Wakeups for readers of a whole topic (consume), hashed by topic: a
 * generation counter bumped on every broadcast lets a waiter tell whether it
 * missed one between its scan and its sleep.
 */
#define OFFSETS_TOPIC_WAKEUPS	64

typedef struct TopicWakeup
{
	pg_atomic_uint64 generation;
	ConditionVariable cv;
} TopicWakeup;

typedef struct OffsetsShared
{
	LWLock	   *map_lock;		/* protects the hash table's membership */
	int			slot_tranche;	/* tranche of the per-partition locks */
	TopicWakeup topic_wakeups[OFFSETS_TOPIC_WAKEUPS];
	ConditionVariable segments_cv;	/* broadcast when the worker adds segments */
	int			nsets;
	InflightSet sets[FLEXIBLE_ARRAY_MEMBER];
} OffsetsShared;

extern OffsetsShared *offsets_shared;

extern PartitionSlot *OffsetsGetSlot(const OffsetsPartitionKey *key);
extern InflightSet *OffsetsMySet(void);
extern void OffsetsWakeReaders(const OffsetsPartitionKey *key);

static inline bool
offsets_key_equal(const OffsetsPartitionKey *a, const OffsetsPartitionKey *b)
{
	return a->partition == b->partition && a->seqrelid == b->seqrelid &&
		a->topic_id == b->topic_id && a->dbid == b->dbid;
}

#endif							/* COMMITLOG_OFFSETS_INTERNAL_H */
