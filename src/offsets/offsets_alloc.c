/*-------------------------------------------------------------------------
 *
 * offsets_alloc.c
 *		Handing out offsets, and ending a transaction's in-flight entries.
 *
 * Producers to one partition never wait for each other's commits: taking
 * offsets is a few instructions under the partition's LWLock, and the only
 * thing that waits for an open transaction is the stable offset readers see.
 *
 * Blocks of OFFSETS_BLOCK_SIZE offsets come from the partition's sequence.
 * nextval() is WAL-logged but that WAL is not flushed by itself; if the
 * tail of a block were rolled back and the server crashed before any flush,
 * the sequence could come back below offsets a reader was already told
 * about (latest_offset).  So each new block's WAL is flushed before the
 * block is used: one flush per block, usually already done by group commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "offsets/offsets_internal.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/fmgrprotos.h"

/* does this backend's current transaction have open entries? */
static bool xact_has_entries = false;
static bool exit_callback_registered = false;

/*
 * Make the sequence's advance durable.  nextval() WAL-logs 32 values ahead
 * and served this one either from a record it just wrote or from an earlier
 * one; either way the sequence page's LSN is that record.
 */
static void
sequence_flush(Oid seqrelid)
{
	Relation	rel = relation_open(seqrelid, AccessShareLock);
	Buffer		buf = ReadBuffer(rel, 0);
	XLogRecPtr	lsn;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	lsn = PageGetLSN(BufferGetPage(buf));
	UnlockReleaseBuffer(buf);
	relation_close(rel, AccessShareLock);
	XLogFlush(lsn);
}

/* Take the next block from the sequence, flushed, and install it. */
static void
offsets_take_block(PartitionSlot *slot)
{
	int64		block = nextval_internal(slot->key.seqrelid, false);

	sequence_flush(slot->key.seqrelid);

	/*
	 * A block below the current reservation would make offsets go back; it
	 * cannot happen while refills are serialized, but a refused block is
	 * only a gap, so refuse rather than trust.
	 */
	LWLockAcquire(&slot->lock, LW_EXCLUSIVE);
	if (slot->next_offset == slot->reserved_end && block >= slot->reserved_end)
	{
		slot->next_offset = block;
		slot->reserved_end = block + OFFSETS_BLOCK_SIZE;
	}
	LWLockRelease(&slot->lock);
}

/*
 * Refill an exhausted slot.  One backend refills at a time and the others
 * wait for it: if each called nextval() itself, all blocks but one would be
 * thrown away, and under load most offsets would be gaps.  The wait is on a
 * condition variable, so it is interruptible.
 */
static void
offsets_refill(PartitionSlot *slot)
{
	for (;;)
	{
		LWLockAcquire(&slot->lock, LW_EXCLUSIVE);
		if (slot->next_offset < slot->reserved_end)
		{
			LWLockRelease(&slot->lock);
			ConditionVariableCancelSleep();
			return;				/* someone else refilled */
		}
		if (!slot->refilling)
		{
			slot->refilling = true;
			LWLockRelease(&slot->lock);
			break;
		}
		LWLockRelease(&slot->lock);
		ConditionVariableSleep(&slot->refill_cv, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();

	PG_TRY();
	{
		offsets_take_block(slot);
	}
	PG_FINALLY();
	{
		LWLockAcquire(&slot->lock, LW_EXCLUSIVE);
		slot->refilling = false;
		LWLockRelease(&slot->lock);
		ConditionVariableBroadcast(&slot->refill_cv);
	}
	PG_END_TRY();
}

/* The commit LSN the set's asynchronous commits still wait to be flushed. */
static XLogRecPtr
offsets_pending_lsn(InflightSet *set)
{
	uint32		used = pg_atomic_read_u32(&set->used);
	XLogRecPtr	pending = InvalidXLogRecPtr;

	for (uint32 i = 0; i < used; i++)
		if (set->entries[i].key.partition != INFLIGHT_FREE)
			pending = Max(pending, pg_atomic_read_u64(&set->entries[i].commit_lsn));
	return pending;
}

/* Mark the entries of asynchronous commits that are now durable as free. */
static void
offsets_release_flushed(InflightSet *set)
{
	uint32		used = pg_atomic_read_u32(&set->used);
	XLogRecPtr	flushed = GetFlushRecPtr(NULL);
	bool		any_live = false;

	for (uint32 i = 0; i < used; i++)
	{
		InflightEntry *e = &set->entries[i];
		XLogRecPtr	lsn;

		if (e->key.partition == INFLIGHT_FREE)
			continue;
		lsn = pg_atomic_read_u64(&e->commit_lsn);
		if (lsn != InvalidXLogRecPtr && lsn <= flushed)
			e->key.partition = INFLIGHT_FREE;
		else
			any_live = true;
	}
	if (!any_live)
		pg_atomic_write_u32(&set->used, 0);
}

/* This transaction's open entry for the partition, or -1. */
static int
offsets_find_open(InflightSet *set, const OffsetsPartitionKey *key)
{
	uint32		used = pg_atomic_read_u32(&set->used);

	for (uint32 i = 0; i < used; i++)
	{
		InflightEntry *e = &set->entries[i];

		if (offsets_key_equal(&e->key, key) &&
			pg_atomic_read_u64(&e->commit_lsn) == InvalidXLogRecPtr)
			return (int) i;
	}
	return -1;
}

/*
 * A free entry index, making room if needed.  Entries of asynchronous
 * commits still waiting for their flush are made durable here rather than
 * failing the producer.
 */
static int
offsets_free_entry(InflightSet *set)
{
	uint32		used;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		offsets_release_flushed(set);
		used = pg_atomic_read_u32(&set->used);
		for (uint32 i = 0; i < used; i++)
			if (set->entries[i].key.partition == INFLIGHT_FREE)
				return (int) i;
		if (used < OFFSETS_MAX_TXN_PARTITIONS)
			return (int) used;
		if (attempt == 0)
			XLogFlush(offsets_pending_lsn(set));
	}
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("a transaction can produce to at most %d partitions",
					OFFSETS_MAX_TXN_PARTITIONS),
			 errhint("Commit the transaction and produce the remaining records in another one.")));
	return -1;					/* keep the compiler quiet */
}

static void
offsets_exit_callback(int code, Datum arg)
{
	InflightSet *set;
	uint32		used;

	if (offsets_shared == NULL || MyProc == NULL)
		return;
	set = OffsetsMySet();
	used = pg_atomic_read_u32(&set->used);

	/*
	 * Entries of asynchronous commits still hold readers back until their
	 * flush; make them durable before dropping them, or a reader could see a
	 * record that a crash takes back.
	 */
	if (!RecoveryInProgress() && offsets_pending_lsn(set) != InvalidXLogRecPtr)
		XLogFlush(offsets_pending_lsn(set));
	for (uint32 i = 0; i < used; i++)
		set->entries[i].key.partition = INFLIGHT_FREE;
	pg_atomic_write_u32(&set->used, 0);
}

/*
 * Hand out count offsets of one partition into offsets[], in increasing
 * order.  They are contiguous unless a block boundary falls inside.
 */
void
OffsetsAllocate(const OffsetsPartitionKey *key, int count, int64 *offsets)
{
	PartitionSlot *slot = OffsetsGetSlot(key);
	InflightSet *set = OffsetsMySet();
	int			open_entry = offsets_find_open(set, key);
	int			free_entry = -1;
	int			filled = 0;

	if (!exit_callback_registered)
	{
		before_shmem_exit(offsets_exit_callback, (Datum) 0);
		exit_callback_registered = true;
	}

	/* the set is ours alone: pick the entry before taking the slot lock */
	if (open_entry < 0)
		free_entry = offsets_free_entry(set);

	while (filled < count)
	{
		int64		avail;

		LWLockAcquire(&slot->lock, LW_EXCLUSIVE);
		avail = slot->reserved_end - slot->next_offset;
		if (avail <= 0)
		{
			LWLockRelease(&slot->lock);
			offsets_refill(slot);
			continue;
		}

		if (open_entry < 0)
		{
			int			i = free_entry;
			InflightEntry *e = &set->entries[i];

			e->lowest = slot->next_offset;
			e->since = GetCurrentTimestamp();
			pg_atomic_write_u64(&e->commit_lsn, InvalidXLogRecPtr);
			e->key.dbid = key->dbid;
			e->key.seqrelid = key->seqrelid;
			e->key.topic_id = key->topic_id;
			pg_write_barrier();
			e->key.partition = key->partition;
			if ((uint32) i >= pg_atomic_read_u32(&set->used))
			{
				pg_write_barrier();
				pg_atomic_write_u32(&set->used, i + 1);
			}
			open_entry = i;
			xact_has_entries = true;
		}

		while (filled < count && slot->next_offset < slot->reserved_end)
			offsets[filled++] = slot->next_offset++;
		LWLockRelease(&slot->lock);
	}
}

/*
 * End this transaction's entries.  Both COMMIT and ABORT fire after
 * ProcArrayEndTransaction, so the rows are already visible (or dead) to new
 * snapshots.  After an asynchronous commit whose record is not flushed yet,
 * the entries stay, stamped with the commit's end, so that no reader sees a
 * record a crash could still take back.
 */
static void
offsets_end_xact(XLogRecPtr commit_end)
{
	InflightSet *set = OffsetsMySet();
	uint32		used = pg_atomic_read_u32(&set->used);
	bool		durable = commit_end == InvalidXLogRecPtr ||
		commit_end <= GetFlushRecPtr(NULL);
	OffsetsPartitionKey ended[OFFSETS_MAX_TXN_PARTITIONS];
	int			nended = 0;

	for (uint32 i = 0; i < used; i++)
	{
		InflightEntry *e = &set->entries[i];

		if (e->key.partition == INFLIGHT_FREE ||
			pg_atomic_read_u64(&e->commit_lsn) != InvalidXLogRecPtr)
			continue;
		ended[nended++] = e->key;
		if (durable)
			e->key.partition = INFLIGHT_FREE;
		else
			pg_atomic_write_u64(&e->commit_lsn, commit_end);
	}
	offsets_release_flushed(set);
	xact_has_entries = false;

	/*
	 * Wake long-polling readers, after the entries are gone.  An abort
	 * wakes them too: it may uncover records committed above its offsets.
	 */
	for (int i = 0; i < nended; i++)
		OffsetsWakeReaders(&ended[i]);
}

static void
offsets_xact_callback(XactEvent event, void *arg)
{
	if (!xact_has_entries)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			/* a prepared transaction would hold readers back indefinitely */
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot prepare a transaction that produced records"),
					 errdetail("A prepared transaction would hold back every reader of the partitions it produced to."),
					 errhint("Commit the transaction instead of preparing it.")));
			break;
		case XACT_EVENT_COMMIT:
			offsets_end_xact(XactLastCommitEnd);
			break;
		case XACT_EVENT_ABORT:
			offsets_end_xact(InvalidXLogRecPtr);
			break;
		default:
			break;
	}
}

void
OffsetsInit(void)
{
	OffsetsShmemRequest();
	RegisterXactCallback(offsets_xact_callback, NULL);
}

/*
 * Start a partition's offsets over at base, below where its sequence may
 * be: a broker taking over a replicated partition as its new leader
 * (cluster_failover.c) continues at its log end, as Kafka's new leader
 * does, rather than past the offsets its sequence logged ahead before a
 * crash (32 blocks).  Only for a partition nobody produces to and whose
 * readers never saw the sequence: a replicated partition is read up to its
 * high watermark, never above the log end.  The sequence is set and
 * flushed before the slot moves.
 */
void
OffsetsResetTo(const OffsetsPartitionKey *key, int64 base)
{
	PartitionSlot *slot = OffsetsGetSlot(key);

	(void) DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(key->seqrelid),
							   Int64GetDatum(base), BoolGetDatum(false));
	sequence_flush(key->seqrelid);

	LWLockAcquire(&slot->lock, LW_EXCLUSIVE);
	slot->next_offset = base;
	slot->reserved_end = base;
	LWLockRelease(&slot->lock);
}

/*
 * Move a partition's log end up to base (a segment roll by time, a new
 * leader taking a partition over): offsets in between become a gap.  The
 * sequence is advanced first, by taking blocks until one reaches past base
 * (taking blocks, never setval, so it cannot move back under a concurrent
 * producer), and that is flushed; only then may readers see the new log
 * end, so that after a crash no offset below it is handed out again.  The
 * last block taken is ours alone: when it holds base, the partition goes
 * on from base exactly, in that block.
 */
void
OffsetsSkipTo(const OffsetsPartitionKey *key, int64 base)
{
	PartitionSlot *slot = OffsetsGetSlot(key);
	int64		block;

	while ((block = nextval_internal(key->seqrelid, false)) + OFFSETS_BLOCK_SIZE <= base)
		CHECK_FOR_INTERRUPTS();
	sequence_flush(key->seqrelid);

	LWLockAcquire(&slot->lock, LW_EXCLUSIVE);
	if (slot->next_offset < base)
	{
		slot->next_offset = base;
		slot->reserved_end = Max(slot->reserved_end, base);
		if (block <= base && slot->reserved_end == base)
			slot->reserved_end = block + OFFSETS_BLOCK_SIZE;
	}
	LWLockRelease(&slot->lock);
}
