/*-------------------------------------------------------------------------
 *
 * offsets_shmem.c
 *		Shared memory of the offsets subsystem, and the stable-offset read.
 *
 * Two structures live here.  A hash table maps each partition to a
 * PartitionSlot holding the next offset to hand out and the end of the
 * block reserved from the partition's sequence.  An array with one
 * InflightSet per PGPROC records, for the transaction each backend has open,
 * the lowest offset it took in every partition it produced to.
 *
 * The stable offset of a partition is min(next_offset, lowest in-flight
 * offset).  Registration of an in-flight entry and the advance of
 * next_offset happen under the slot's lock, exclusively; the reader scans
 * under the same lock, shared.  So a reader either sees an offset as not yet
 * handed out, or sees the entry of the transaction that took it.  Entries
 * are removed without the lock (a single aligned store) because a removal
 * only ever happens after the commit became visible, or after an abort.
 *
 * A slot created after a restart (or for a partition nobody has touched)
 * starts at the sequence's upper bound, which is above every offset ever
 * handed out: the sequence is WAL-logged and the allocator flushes that WAL
 * before it hands out a new block (offsets_alloc.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "commitlog.h"
#include "miscadmin.h"
#include "offsets/offsets_internal.h"
#include "storage/ipc.h"
#include "pgstat.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/fmgrprotos.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"

OffsetsShared *offsets_shared = NULL;
static HTAB *offsets_slots = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* every PGPROC may own a set; prepared-transaction dummies never produce */
static int
offsets_nsets(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
offsets_shmem_size(void)
{
	Size		size;

	size = add_size(offsetof(OffsetsShared, sets),
					mul_size(offsets_nsets(), sizeof(InflightSet)));
	size = add_size(size, hash_estimate_size(commitlog_max_partitions,
											 sizeof(PartitionSlot)));
	return size;
}

static void
offsets_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(offsets_shmem_size());
	RequestNamedLWLockTranche("pg_commitlog", 1);
}

void
OffsetsShmemStartup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	offsets_shared = ShmemInitStruct("pg_commitlog offsets",
									 offsetof(OffsetsShared, sets) +
									 offsets_nsets() * sizeof(InflightSet),
									 &found);
	if (!found)
	{
		offsets_shared->map_lock = &(GetNamedLWLockTranche("pg_commitlog"))->lock;
		offsets_shared->slot_tranche = LWLockNewTrancheId();
		offsets_shared->nsets = offsets_nsets();
		ConditionVariableInit(&offsets_shared->segments_cv);
		for (int i = 0; i < OFFSETS_TOPIC_WAKEUPS; i++)
		{
			pg_atomic_init_u64(&offsets_shared->topic_wakeups[i].generation, 0);
			ConditionVariableInit(&offsets_shared->topic_wakeups[i].cv);
		}
		for (int i = 0; i < offsets_shared->nsets; i++)
		{
			InflightSet *set = &offsets_shared->sets[i];

			pg_atomic_init_u32(&set->used, 0);
			for (int j = 0; j < OFFSETS_MAX_TXN_PARTITIONS; j++)
			{
				set->entries[j].key.partition = INFLIGHT_FREE;
				pg_atomic_init_u64(&set->entries[j].commit_lsn, 0);
			}
		}
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(OffsetsPartitionKey);
	info.entrysize = sizeof(PartitionSlot);
	offsets_slots = ShmemInitHash("pg_commitlog partitions",
								  commitlog_max_partitions,
								  commitlog_max_partitions,
								  &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);

	LWLockRegisterTranche(offsets_shared->slot_tranche, "pg_commitlog_partition");
}

/* Install the hooks; called from _PG_init. */
void
OffsetsShmemRequest(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = offsets_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = OffsetsShmemStartup;
}

InflightSet *
OffsetsMySet(void)
{
	Assert(MyProc != NULL && MyProc->pgprocno < offsets_shared->nsets);
	return &offsets_shared->sets[MyProc->pgprocno];
}

/*
 * The sequence's upper bound: every offset ever handed out is below it and
 * the next nextval() returns at least it.  Read without advancing the
 * sequence, so that read-only transactions can compute it too.
 */
static int64
sequence_upper_bound(Oid seqrelid)
{
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_userid;
	int			save_sec_context;
	Datum		last;

	/* the reader may lack rights on the sequence; the bound is not secret */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqrelid);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	/* never called: the first block starts at 0 */
	if (fcinfo->isnull)
		return 0;
	return DatumGetInt64(last) + OFFSETS_BLOCK_SIZE;
}

/*
 * Find the partition's slot, creating it on first use.  The caller holds a
 * lock on the topic's table, so the partition cannot be dropped meanwhile.
 */
PartitionSlot *
OffsetsGetSlot(const OffsetsPartitionKey *key)
{
	PartitionSlot *slot;
	bool		found;
	int64		bound;

	if (offsets_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_commitlog must be loaded via \"shared_preload_libraries\"")));

	LWLockAcquire(offsets_shared->map_lock, LW_SHARED);
	slot = hash_search(offsets_slots, key, HASH_FIND, NULL);
	LWLockRelease(offsets_shared->map_lock);
	if (slot != NULL)
		return slot;

	/*
	 * Read the bound before taking the map lock (it reads a buffer).  If a
	 * producer calls nextval() in between, its block starts at or above the
	 * bound and is accepted; if the slot appears meanwhile, ours is unused.
	 */
	bound = sequence_upper_bound(key->seqrelid);

	LWLockAcquire(offsets_shared->map_lock, LW_EXCLUSIVE);
	slot = hash_search(offsets_slots, key, HASH_ENTER_NULL, &found);
	if (slot == NULL)
	{
		LWLockRelease(offsets_shared->map_lock);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many partitions in use"),
				 errdetail("The shared memory of pg_commitlog holds the state of at most %d partitions.",
						   commitlog_max_partitions),
				 errhint("Increase \"commitlog.max_partitions\" and restart the server.")));
	}
	if (!found)
	{
		LWLockInitialize(&slot->lock, offsets_shared->slot_tranche);
		ConditionVariableInit(&slot->cv);
		ConditionVariableInit(&slot->refill_cv);
		slot->refilling = false;
		slot->next_offset = bound;
		slot->reserved_end = bound;
	}
	LWLockRelease(offsets_shared->map_lock);
	return slot;
}

/*
 * The partition's end as a reader must see it.  Call this BEFORE taking the
 * snapshot to read with: offsets below the stable offset are then either
 * visible in that snapshot or never committed.
 */
OffsetsEnd
OffsetsGetEnd(const OffsetsPartitionKey *key)
{
	PartitionSlot *slot = OffsetsGetSlot(key);
	OffsetsEnd	end;
	XLogRecPtr	flushed;

	LWLockAcquire(&slot->lock, LW_SHARED);
	end.log_end = slot->next_offset;
	end.reserved_end = slot->reserved_end;
	end.stable = end.log_end;
	end.awaiting_flush = false;
	flushed = GetFlushRecPtr(NULL);
	for (int i = 0; i < offsets_shared->nsets; i++)
	{
		InflightSet *set = &offsets_shared->sets[i];
		uint32		used = pg_atomic_read_u32(&set->used);

		if (used == 0)
			continue;
		pg_read_barrier();
		for (uint32 j = 0; j < used; j++)
		{
			InflightEntry *e = &set->entries[j];
			XLogRecPtr	lsn;

			if (!offsets_key_equal(&e->key, key))
				continue;
			lsn = pg_atomic_read_u64(&e->commit_lsn);
			if (lsn == InvalidXLogRecPtr || lsn > flushed)
			{
				end.stable = Min(end.stable, e->lowest);
				end.awaiting_flush |= lsn != InvalidXLogRecPtr;
			}
		}
	}
	LWLockRelease(&slot->lock);
	return end;
}

/*
 * Forget the slot of a dropped partition.  Safe even if the drop rolls
 * back: a slot created again starts from the sequence's bound, which never
 * goes back.  Producers cannot hold entries for it (the drop holds an
 * exclusive lock on the topic's table); entries of asynchronous commits not
 * yet flushed may linger and only hold a reader back until the flush.
 */
void
OffsetsForgetPartition(const OffsetsPartitionKey *key)
{
	if (offsets_shared == NULL)
		return;
	LWLockAcquire(offsets_shared->map_lock, LW_EXCLUSIVE);
	hash_search(offsets_slots, key, HASH_REMOVE, NULL);
	LWLockRelease(offsets_shared->map_lock);
}

static TopicWakeup *
topic_wakeup(Oid dbid, int32 topic_id)
{
	uint32		h = hash_bytes_uint32((uint32) dbid ^ ((uint32) topic_id * 0x9E3779B9U));

	return &offsets_shared->topic_wakeups[h % OFFSETS_TOPIC_WAKEUPS];
}

/* Wake the readers waiting on a whole topic (consume). */
void
OffsetsWakeTopic(Oid dbid, int32 topic_id)
{
	TopicWakeup *wakeup = topic_wakeup(dbid, topic_id);

	pg_atomic_fetch_add_u64(&wakeup->generation, 1);
	ConditionVariableBroadcast(&wakeup->cv);
}

/* Wake the readers waiting on a partition (a producing transaction ended). */
void
OffsetsWakeReaders(const OffsetsPartitionKey *key)
{
	PartitionSlot *slot;

	OffsetsWakeTopic(key->dbid, key->topic_id);

	LWLockAcquire(offsets_shared->map_lock, LW_SHARED);
	slot = hash_search(offsets_slots, key, HASH_FIND, NULL);
	if (slot != NULL)
		ConditionVariableBroadcast(&slot->cv);
	LWLockRelease(offsets_shared->map_lock);
}

/*
 * Sleep until the partition's stable offset may have moved past seen_stable,
 * or timeout_ms passes.  Producers broadcast when their transactions end;
 * an asynchronous commit becomes readable only when the WAL writer flushes
 * it, which nobody broadcasts, so then the sleep is short and the caller
 * re-checks.  Interruptible: the sleep processes interrupts.
 */
void
OffsetsWaitForChange(const OffsetsPartitionKey *key, int64 seen_stable, long timeout_ms)
{
	PartitionSlot *slot = OffsetsGetSlot(key);
	OffsetsEnd	end;

	/* prepare first, then re-check, so a broadcast in between is not lost */
	ConditionVariablePrepareToSleep(&slot->cv);
	end = OffsetsGetEnd(key);
	if (end.stable == seen_stable)
	{
		if (end.awaiting_flush)
			timeout_ms = Min(timeout_ms, 10);
		(void) ConditionVariableTimedSleep(&slot->cv, timeout_ms, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}

/* The wakeup generation of a topic; pass it to OffsetsWaitForTopic. */
uint64
OffsetsTopicGeneration(Oid dbid, int32 topic_id)
{
	return pg_atomic_read_u64(&topic_wakeup(dbid, topic_id)->generation);
}

/*
 * Sleep until a producing transaction on the topic (or one hashed with it)
 * ends after the generation seen was read, or timeout_ms passes.
 */
void
OffsetsWaitForTopic(Oid dbid, int32 topic_id, uint64 seen_generation, long timeout_ms)
{
	TopicWakeup *wakeup = topic_wakeup(dbid, topic_id);

	ConditionVariablePrepareToSleep(&wakeup->cv);
	if (pg_atomic_read_u64(&wakeup->generation) == seen_generation)
		(void) ConditionVariableTimedSleep(&wakeup->cv, timeout_ms, PG_WAIT_EXTENSION);
	ConditionVariableCancelSleep();
}

/*
 * Backends of database dbid whose open producing transaction has held a
 * stable offset back since before older_than (commitlog.transaction_timeout,
 * Kafka's transaction.timeout.ms).  Fills pids[] and returns how many.
 * Racy by nature: the caller re-checks nothing and the worst case is ending
 * a transaction that was just about to commit on its own.
 */
int
OffsetsStuckProducers(Oid dbid, TimestampTz older_than, int *pids, int max_pids)
{
	int			n = 0;

	for (int i = 0; i < offsets_shared->nsets && n < max_pids; i++)
	{
		InflightSet *set = &offsets_shared->sets[i];
		uint32		used = pg_atomic_read_u32(&set->used);

		pg_read_barrier();
		for (uint32 j = 0; j < used; j++)
		{
			InflightEntry *e = &set->entries[j];

			if (e->key.partition != INFLIGHT_FREE && e->key.dbid == dbid &&
				pg_atomic_read_u64(&e->commit_lsn) == InvalidXLogRecPtr &&
				e->since < older_than)
			{
				PGPROC	   *proc = &ProcGlobal->allProcs[i];

				if (proc->pid != 0)
					pids[n++] = proc->pid;
				break;
			}
		}
	}
	return n;
}

/*
 * Producers that run past the last segment sleep here until the background
 * worker has attached more; it broadcasts after each change.  (It lives in
 * this subsystem's shared memory only to avoid a second allocation.)
 */
ConditionVariable *
OffsetsSegmentsCV(void)
{
	return &offsets_shared->segments_cv;
}
