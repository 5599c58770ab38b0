/*-------------------------------------------------------------------------
 *
 * consume.c
 *		consume(): read a topic as a member of a consumer group.
 *
 * Kafka assigns partitions to group members through a coordinator and a
 * rebalance protocol.  Inside Postgres the transaction is the member: a
 * consume() call claims partitions by locking their rows in
 * commitlog.consumer_offsets with FOR UPDATE SKIP LOCKED, reads from each
 * claimed partition's committed offset, and writes the new offset in the
 * caller's transaction.  So
 *
 *	- sessions of one group share the partitions: a partition locked by one
 *	  open transaction is skipped by the others;
 *	- a partition is read by one transaction at a time, in order: the next
 *	  claim sees the committed offset of the previous holder;
 *	- commit moves the group on; rollback re-delivers; processing done in
 *	  the same transaction happens exactly once.
 *
 * A session claims only what it needs: each partition is tried in its own
 * subtransaction, and one that yields nothing is rolled back, which releases
 * its row lock, so a consumer that needs 10 records does not sit on every
 * partition of the topic until it commits.  The scan starts at a random
 * partition so that concurrent members spread out.
 *
 * SKIP LOCKED claims need a fresh snapshot per statement; with the single
 * snapshot of REPEATABLE READ or SERIALIZABLE a claimed row could be an old
 * version, so consume() refuses those isolation levels.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commitlog.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fetch/fetch.h"
#include "fmgr.h"
#include "funcapi.h"
#include "groups/groups.h"
#include "stream/stream.h"
#include "miscadmin.h"
#include "offsets/offsets.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(consume);

typedef struct ConsumeState
{
	FunctionCallInfo fcinfo;
	Topic	   *topic;
	Datum		group;			/* text */
	bool		reset_latest;	/* auto_offset_reset = 'latest' */
	bool		awaiting_flush; /* some partition waits for an async commit */
} ConsumeState;

/*
 * Create the group's rows for the topic's partitions, if missing.
 *
 * An INSERT ... ON CONFLICT waits behind another member's uncommitted insert
 * of the same rows, which would make a new group's second member wait for
 * the first one's whole transaction.  So only one transaction at a time
 * creates rows for a (group, topic), under a transaction-level advisory
 * lock taken without waiting; the others claim what is already committed,
 * which for a brand-new group is nothing until the creator commits.
 */
static void
consume_ensure_rows(ConsumeState *st)
{
	Oid			types[3] = {TEXTOID, INT4OID, INT4OID};
	Datum		args[3] = {st->group, Int32GetDatum(st->topic->id), Int32GetDatum(st->topic->partitions)};
	bool		isnull;

	CatalogExec("SELECT count(*) FROM commitlog.consumer_offsets WHERE group_id = $1 AND topic_id = $2",
				2, types, args, NULL);
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) ==
		st->topic->partitions)
		return;
	if (!GroupTryCreateLock(st->group, st->topic->id))
		return;
	CatalogExec("INSERT INTO commitlog.consumer_offsets (group_id, topic_id, partition) "
				"SELECT $1, $2, p FROM pg_catalog.generate_series(0, $3 - 1) p "
				"ON CONFLICT DO NOTHING", 3, types, args, NULL);
}

/*
 * Claim one partition and read up to max_records from it, inside the
 * current subtransaction.  Returns the records read; *keep says whether to
 * keep the claim (records read, or the position moved).
 */
static uint64
consume_partition(ConsumeState *st, int32 partition, int32 max_records, bool *keep)
{
	Oid			types[4] = {TEXTOID, INT4OID, INT4OID, INT8OID};
	Datum		args[4] = {st->group, Int32GetDatum(st->topic->id), Int32GetDatum(partition), 0};
	bool		isnull;
	int64		position;
	int64		next;
	Snapshot	snapshot;
	FetchRange	range;
	uint64		n = 0;

	*keep = false;
	CatalogExec("SELECT committed_offset FROM commitlog.consumer_offsets "
				"WHERE group_id = $1 AND topic_id = $2 AND partition = $3 FOR UPDATE SKIP LOCKED",
				3, types, args, NULL);
	if (SPI_processed == 0)
		return 0;				/* another member holds it */
	position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* the stable offset, then the snapshot: after the claim */
	range = FetchRangeOf(st->topic, partition, &snapshot);
	st->awaiting_flush |= range.awaiting_flush;

	/* no position, or one retention passed or that never existed: reset */
	if (isnull || position < range.earliest || position > range.log_end)
		next = st->reset_latest ? range.stable : range.earliest;
	else
		next = position;

	if (next < range.stable)
		n = FetchRead(st->fcinfo, st->topic, partition, next, range, snapshot,
					  max_records, INT_MAX, &next);
	UnregisterSnapshot(snapshot);

	if (n > 0 || isnull || next != position)
	{
		args[3] = Int64GetDatum(next);
		CatalogExec("UPDATE commitlog.consumer_offsets "
					"SET committed_offset = $4, committed_at = pg_catalog.now() "
					"WHERE group_id = $1 AND topic_id = $2 AND partition = $3",
					4, types, args, NULL);
		*keep = true;
	}
	return n;
}

/*
 * Topics this transaction holds claims on.  When it ends, the partitions it
 * held become claimable, perhaps with records left (rollback, or
 * max_records reached): wake the members waiting on the topic.
 */
typedef struct ClaimedTopic
{
	Oid			dbid;
	int32		topic_id;
} ClaimedTopic;

static ClaimedTopic *claimed = NULL;
static int	nclaimed = 0;
static int	claimed_size = 0;
static bool claim_callback_registered = false;

static void
consume_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PREPARE)
		nclaimed = 0;			/* the claims stay with the prepared transaction */
	if (nclaimed == 0 || (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT))
		return;
	for (int i = 0; i < nclaimed; i++)
		OffsetsWakeTopic(claimed[i].dbid, claimed[i].topic_id);
	nclaimed = 0;
}

static void
consume_remember_claim(int32 topic_id)
{
	for (int i = 0; i < nclaimed; i++)
		if (claimed[i].topic_id == topic_id && claimed[i].dbid == MyDatabaseId)
			return;
	if (!claim_callback_registered)
	{
		RegisterXactCallback(consume_xact_callback, NULL);
		claim_callback_registered = true;
	}
	if (nclaimed == claimed_size)
	{
		claimed_size = Max(8, claimed_size * 2);
		claimed = claimed == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(ClaimedTopic) * claimed_size) :
			repalloc(claimed, sizeof(ClaimedTopic) * claimed_size);
	}
	claimed[nclaimed].dbid = MyDatabaseId;
	claimed[nclaimed].topic_id = topic_id;
	nclaimed++;
}

/* consume_partition in a subtransaction, released unless the claim is kept. */
static uint64
consume_partition_subxact(ConsumeState *st, int32 partition, int32 max_records)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	uint64		n = 0;
	bool		keep = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		n = consume_partition(st, partition, max_records, &keep);
		if (keep)
		{
			ReleaseCurrentSubTransaction();
			consume_remember_claim(st->topic->id);
		}
		else
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* leave the subtransaction stack as we found it, then re-throw */
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	return n;
}

/*
 * consume(group_id text, topic text, max_records int, wait_ms int,
 *		   auto_offset_reset text) RETURNS SETOF commitlog.record
 */
Datum
consume(PG_FUNCTION_ARGS)
{
	ConsumeState st;
	char	   *reset;
	int32		max_records;
	int32		wait_ms;
	TimestampTz deadline;
	int			nestlevel;
	int32		start;

	SetSingleFuncCall(fcinfo, 0);
	st.fcinfo = fcinfo;
	st.group = CStringGetTextDatum(GroupIdArg(fcinfo, 0));
	StreamCheckGroupWrite(TextDatumGetCString(st.group));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("commitlog.consume() cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("Claiming partitions with SKIP LOCKED needs a new snapshot for every statement."),
				 errhint("Run it in a READ COMMITTED transaction, or use commitlog.fetch() with your own offsets.")));
	FetchRequirePrimary();
	PreventCommandIfReadOnly("commitlog.consume()");
	st.topic = TopicOpen(TopicNameArg(PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1)), AccessShareLock);
	FetchRequireSelect(st.topic);

	if (PG_ARGISNULL(2) || PG_GETARG_INT32(2) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(PG_ARGISNULL(2) ? "max_records must not be null" : "max_records must be at least 1"),
				 errhint("Pass how many records to return at most, e.g. 100.")));
	max_records = PG_GETARG_INT32(2);
	if (PG_ARGISNULL(3) || PG_GETARG_INT32(3) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(PG_ARGISNULL(3) ? "wait_ms must not be null" : "wait_ms must be 0 or more"),
				 errhint("Pass 0 to return at once, or how many milliseconds to wait for a record.")));
	wait_ms = PG_GETARG_INT32(3);
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auto_offset_reset must not be null"),
				 errhint("Use 'earliest' or 'latest'.")));
	reset = text_to_cstring(PG_GETARG_TEXT_PP(4));
	if (strcmp(reset, "earliest") != 0 && strcmp(reset, "latest") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid auto_offset_reset \"%s\"", reset),
				 errhint("Use 'earliest' or 'latest'.")));
	st.reset_latest = strcmp(reset, "latest") == 0;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	nestlevel = CatalogBegin();
	consume_ensure_rows(&st);
	start = (int32) (pg_prng_uint32(&pg_global_prng_state) % (uint32) st.topic->partitions);
	for (;;)
	{
		uint64		generation = OffsetsTopicGeneration(MyDatabaseId, st.topic->id);
		uint64		total = 0;
		long		remaining;

		st.awaiting_flush = false;
		for (int32 k = 0; k < st.topic->partitions && total < (uint64) max_records; k++)
			total += consume_partition_subxact(&st, (start + k) % st.topic->partitions,
											   max_records - (int32) total);
		if (total > 0 || wait_ms == 0)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		/* an async commit becomes readable on a flush nobody announces */
		OffsetsWaitForTopic(MyDatabaseId, st.topic->id, generation,
							st.awaiting_flush ? Min(remaining, 10) : remaining);
	}
	CatalogEnd(nestlevel);
	return (Datum) 0;
}
