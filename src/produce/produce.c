/*-------------------------------------------------------------------------
 *
 * produce.c
 *		produce, produce_batch and produce_messages.
 *
 * A call resolves each record's partition (explicit, else the key's murmur2
 * hash, else one round-robin partition for all keyless records of the call:
 * Kafka's sticky partitioner with the call as the batch), takes the offsets
 * each partition needs in one allocation (offsets/), and writes each
 * partition's records straight into its active segment: table_multi_insert
 * plus index insertion, as COPY does, with no executor, no tuple routing and
 * no per-row trigger machinery.  The guard (guard/) refuses every other way
 * of inserting, so this is the only writer and offsets stay unique.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "bgworker/bgworker.h"
#include "catalog/pg_type.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "offsets/offsets.h"
#include "produce/produce.h"
#include "schemas/schemas.h"
#include "tcop/utility.h"
#include "topics/topics.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "storage/condition_variable.h"
#include "pgstat.h"

PG_FUNCTION_INFO_V1(produce);
PG_FUNCTION_INFO_V1(produce_batch);
PG_FUNCTION_INFO_V1(produce_messages);

#define NUM_COLS		6

/* how long a producer waits for the worker to attach a segment */
#define PRODUCE_SEGMENT_WAIT_MS	30000

typedef struct ProduceRecord
{
	int32		partition;		/* -1 until resolved */
	Datum		key;			/* 0 when null */
	Datum		value;			/* 0 when null (a tombstone) */
	Datum		headers;		/* 0 when null */
	TimestampTz ts;				/* DT_NOBEGIN until resolved */
	int64		offset;			/* assigned */
} ProduceRecord;

/* Open the topic for producing: lock, privilege, writable server. */
static Topic *
produce_open(text *topic_arg)
{
	char	   *name = TopicNameArg(topic_arg);
	Topic	   *topic;
	AclResult	aclresult;

	PreventCommandIfReadOnly("commitlog.produce()");
	PreventCommandDuringRecovery("commitlog.produce()");

	ClusterCheckLeader(name, 0, -1);
	topic = TopicOpen(name, RowExclusiveLock);
	aclresult = pg_class_aclcheck(topic->relid, GetUserId(), ACL_INSERT);
	if (aclresult != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to produce to topic \"%s\"", name),
				 errdetail("Producing needs the INSERT privilege on commitlog_topics.%s.",
						   quote_identifier(name)),
				 errhint("The topic's owner can run: GRANT INSERT ON commitlog_topics.%s TO %s;",
						 quote_identifier(name),
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	return topic;
}

static Size
datum_bytes(Datum d)
{
	return d == (Datum) 0 ? 0 : toast_raw_datum_size(d) - VARHDRSZ;
}

/*
 * Resolve partitions and timestamps, and check sizes.  One keyless
 * partition per call, chosen round-robin per backend.
 */
static void
produce_resolve(Topic *topic, ProduceRecord *recs, int n)
{
	int64		max_bytes = TopicMaxMessageBytes(topic);
	bool		append_time = TopicUsesLogAppendTime(topic);
	TimestampTz now = GetCurrentTimestamp();
	int32		sticky = -1;

	for (int i = 0; i < n; i++)
	{
		ProduceRecord *r = &recs[i];
		Size		size;

		SchemasCheckRecord(topic, r->key, r->value, i, n);
		if (r->partition >= 0)
			TopicCheckPartition(topic, r->partition);
		else if (r->key != (Datum) 0)
		{
			bytea	   *key = DatumGetByteaPP(r->key);

			r->partition = PartitionForKeyBytes(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
												topic->partitions);
			r->key = PointerGetDatum(key);
		}
		else
		{
			if (sticky < 0)
				sticky = ClusterLedPartition(topic, (int32) (topic->next_sticky++ % (uint32) topic->partitions));
			r->partition = sticky;
		}
		ClusterCheckLeader(topic->name, topic->id, r->partition);

		if (topic->compacted && r->key == (Datum) 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("records of compacted topic \"%s\" need a key", topic->name),
					 errdetail("Compaction keeps the newest record per key (cleanup.policy includes compact)."),
					 errhint("Pass key => ..., as Kafka requires for compacted topics.")));
		if (append_time || r->ts == DT_NOBEGIN)
			r->ts = now;

		size = datum_bytes(r->key) + datum_bytes(r->value) + datum_bytes(r->headers);
		if ((int64) size > max_bytes)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("record of %zu bytes is larger than max.message.bytes of topic \"%s\"",
							size, topic->name),
					 errdetail("The topic accepts records of at most " INT64_FORMAT " bytes (key, value and headers).",
							   max_bytes),
					 errhint("Send a smaller record, or raise the limit with commitlog.alter_topic('%s', '{\"max.message.bytes\": %zu}').",
							 topic->name, size)));
	}
}

/*
 * Slots for the records of a write, kept for the backend's life: making
 * and dropping 1000 slots per batch showed in profiles.  They share one
 * descriptor, a copy that is not reference counted: with a relation's own
 * descriptor each slot would be remembered by the resource owner, whose
 * hash of 1000 equal pointers degrades to a linear probe (that alone took
 * half of produce_batch's time).  Every topic table and segment has the
 * same columns (DESIGN 3; the guard forbids altering them), so one
 * descriptor serves all.
 */
static TupleTableSlot **slot_pool = NULL;
static int	slot_pool_size = 0;
static TupleDesc slot_pool_desc = NULL;

static TupleTableSlot **
produce_slots(Relation rel, int n)
{
	MemoryContext old;

	if (RelationGetDescr(rel)->natts != TOPIC_NCOLS)
		elog(ERROR, "segment \"%s\" has %d columns, expected %d",
			 RelationGetRelationName(rel), RelationGetDescr(rel)->natts, TOPIC_NCOLS);
	if (n <= slot_pool_size)
		return slot_pool;

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (slot_pool_desc == NULL)
		slot_pool_desc = CreateTupleDescCopy(RelationGetDescr(rel));
	slot_pool = slot_pool == NULL ? palloc(sizeof(TupleTableSlot *) * n) :
		repalloc(slot_pool, sizeof(TupleTableSlot *) * n);
	for (int i = slot_pool_size; i < n; i++)
		slot_pool[i] = MakeSingleTupleTableSlot(slot_pool_desc, table_slot_callbacks(rel));
	slot_pool_size = n;
	MemoryContextSwitchTo(old);
	return slot_pool;
}

/* Write the records recs[idx[0..n)] of one partition into its segment. */
static void
produce_write_segment(Oid segment_relid, ProduceRecord *recs, const int *idx, int n)
{
	Relation	rel = table_open(segment_relid, RowExclusiveLock);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	EState	   *estate = CreateExecutorState();
	TupleTableSlot **slots = produce_slots(rel, n);
	CommandId	cid = GetCurrentCommandId(true);

	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	for (int i = 0; i < n; i++)
	{
		ProduceRecord *r = &recs[idx[i]];
		TupleTableSlot *slot = slots[i];

		ExecClearTuple(slot);
		slot->tts_values[TOPIC_COL_PARTITION] = Int32GetDatum(r->partition);
		slot->tts_values[TOPIC_COL_OFFSET] = Int64GetDatum(r->offset);
		slot->tts_values[TOPIC_COL_TIMESTAMP] = TimestampTzGetDatum(r->ts);
		slot->tts_values[TOPIC_COL_KEY] = r->key;
		slot->tts_values[TOPIC_COL_VALUE] = r->value;
		slot->tts_values[TOPIC_COL_HEADERS] = r->headers;
		slot->tts_isnull[TOPIC_COL_PARTITION] = false;
		slot->tts_isnull[TOPIC_COL_OFFSET] = false;
		slot->tts_isnull[TOPIC_COL_TIMESTAMP] = false;
		slot->tts_isnull[TOPIC_COL_KEY] = r->key == (Datum) 0;
		slot->tts_isnull[TOPIC_COL_VALUE] = r->value == (Datum) 0;
		slot->tts_isnull[TOPIC_COL_HEADERS] = r->headers == (Datum) 0;
		ExecStoreVirtualTuple(slot);
	}

	if (n == 1)
		table_tuple_insert(rel, slots[0], cid, 0, NULL);
	else
		table_multi_insert(rel, slots, n, cid, 0, NULL);

	for (int i = 0; i < n; i++)
	{
		if (rri->ri_NumIndices > 0)
			ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
		/* frees the tuple the insert materialized in the slot */
		ExecClearTuple(slots[i]);
		ResetPerTupleExprContext(estate);
	}

	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/*
 * The segment that holds offset.  Past the last one, wake the background
 * worker and wait for it to attach more: a producer never creates a segment
 * in its own transaction (it would hold the partition's locks until it
 * commits, and the segment would vanish on rollback).
 */
static Oid
produce_segment(Topic *topic, int32 partition, int64 offset, int64 *end)
{
	Oid			segment = TopicSegmentFor(topic, partition, offset, end);
	TimestampTz give_up;
	ConditionVariable *cv;

	if (OidIsValid(segment))
		return segment;

	give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PRODUCE_SEGMENT_WAIT_MS);
	cv = OffsetsSegmentsCV();
	ConditionVariablePrepareToSleep(cv);
	for (;;)
	{
		BgworkerWake(MyDatabaseId);
		segment = TopicSegmentFor(topic, partition, offset, end);
		if (OidIsValid(segment))
			break;
		if (GetCurrentTimestamp() >= give_up)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no segment of partition %d of topic \"%s\" holds offset " INT64_FORMAT " yet",
							partition, topic->name, offset),
					 errdetail("The pg_commitlog background worker creates segments ahead of producers, and it did not within %d seconds.",
							   PRODUCE_SEGMENT_WAIT_MS / 1000),
					 errhint("Check that the worker runs (pg_stat_activity, backend_type \"pg_commitlog worker\") and look for its errors in the server log.")));
		}
		/* a timeout as well: the worker may start only now */
		(void) ConditionVariableTimedSleep(cv, 100, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return segment;
}

/*
 * Append recs[0..n): resolve, take offsets per partition, write.  Fills in
 * each record's partition and offset.
 */
static void
produce_records(Topic *topic, ProduceRecord *recs, int n)
{
	int		   *counts;
	int		   *idx;
	int64	   *offsets;
	produce_resolve(topic, recs, n);

	/* bucket records by partition, keeping input order within each */
	counts = palloc0(sizeof(int) * topic->partitions);
	for (int i = 0; i < n; i++)
		counts[recs[i].partition]++;
	idx = palloc(sizeof(int) * n);
	offsets = palloc(sizeof(int64) * n);

	for (int p = 0; p < topic->partitions; p++)
	{
		int			m = 0;
		OffsetsPartitionKey key;

		if (counts[p] == 0)
			continue;
		for (int i = 0; i < n; i++)
			if (recs[i].partition == p)
				idx[m++] = i;

		key = TopicPartitionKey(topic, p);
		OffsetsAllocate(&key, m, offsets);
		for (int i = 0; i < m; i++)
			recs[idx[i]].offset = offsets[i];
		ClusterProduced(topic->id, p, offsets[m - 1], m);

		/* offsets increase along idx: write each segment's run at once */
		for (int start = 0, stop; start < m; start = stop)
		{
			int64		end;
			Oid			segment = produce_segment(topic, p, offsets[start], &end);

			for (stop = start; stop < m && offsets[stop] < end; stop++)
				;
			produce_write_segment(segment, recs, idx + start, stop - start);
		}
	}
	pfree(counts);
	pfree(idx);
	pfree(offsets);
}

static Datum
position_datum(TupleDesc desc, const ProduceRecord *r)
{
	Datum		values[2] = {Int32GetDatum(r->partition), Int64GetDatum(r->offset)};
	bool		nulls[2] = {false, false};

	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

static void
record_init(ProduceRecord *r)
{
	r->partition = -1;
	r->key = r->value = r->headers = (Datum) 0;
	r->ts = DT_NOBEGIN;
	r->offset = -1;
}

static int32
partition_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return -1;
	if (PG_GETARG_INT32(argno) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid partition: %d", PG_GETARG_INT32(argno)),
				 errhint("Partitions are numbered from 0; pass NULL to let the key choose.")));
	return PG_GETARG_INT32(argno);
}

/*
 * produce(topic text, value bytea, key bytea, partition int,
 *		   headers commitlog.header[], ts timestamptz) RETURNS commitlog.position
 */
Datum
produce(PG_FUNCTION_ARGS)
{
	Topic	   *topic = produce_open(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	ProduceRecord rec;
	TupleDesc	desc;

	record_init(&rec);
	if (!PG_ARGISNULL(1))
		rec.value = PointerGetDatum(PG_GETARG_BYTEA_PP(1));
	if (!PG_ARGISNULL(2))
		rec.key = PointerGetDatum(PG_GETARG_BYTEA_PP(2));
	rec.partition = partition_arg(fcinfo, 3);
	if (!PG_ARGISNULL(4))
		rec.headers = PointerGetDatum(PG_GETARG_ARRAYTYPE_P(4));
	if (!PG_ARGISNULL(5))
		rec.ts = PG_GETARG_TIMESTAMPTZ(5);

	produce_records(topic, &rec, 1);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	PG_RETURN_DATUM(position_datum(BlessTupleDesc(desc), &rec));
}

/* Return one commitlog.position per record, in input order. */
static void
produce_return(FunctionCallInfo fcinfo, ProduceRecord *recs, int n)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	for (int i = 0; i < n; i++)
	{
		Datum		values[2] = {Int32GetDatum(recs[i].partition), Int64GetDatum(recs[i].offset)};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* A one-dimensional array argument; NULL is an error with hint. */
static ArrayType *
array_arg(FunctionCallInfo fcinfo, int argno, const char *what, const char *hint)
{
	ArrayType  *arr;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", what),
				 errhint("%s", hint)));
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", what),
				 errhint("Pass ARRAY[...] with one element per record.")));
	return arr;
}

/*
 * produce_batch(topic text, payloads bytea[], keys bytea[], partition int)
 * RETURNS SETOF commitlog.position: the fast path.
 */
Datum
produce_batch(PG_FUNCTION_ARGS)
{
	Topic	   *topic;
	ArrayType  *payloads;
	Datum	   *values;
	bool	   *value_nulls;
	Datum	   *keys = NULL;
	bool	   *key_nulls = NULL;
	int			n;
	int			nkeys = 0;
	int32		partition;
	ProduceRecord *recs;

	SetSingleFuncCall(fcinfo, 0);
	topic = produce_open(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	payloads = array_arg(fcinfo, 1, "payloads",
						 "Pass an array of values; an element may be NULL for a tombstone.");
	deconstruct_array(payloads, BYTEAOID, -1, false, TYPALIGN_INT, &values, &value_nulls, &n);
	if (!PG_ARGISNULL(2))
	{
		ArrayType  *keyarr = array_arg(fcinfo, 2, "keys", "");
		deconstruct_array(keyarr, BYTEAOID, -1, false, TYPALIGN_INT, &keys, &key_nulls, &nkeys);
		if (nkeys != n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("keys has %d elements but payloads has %d", nkeys, n),
					 errhint("Pass one key per payload (NULL elements for no key), or NULL for no keys.")));
	}
	partition = partition_arg(fcinfo, 3);
	if (n == 0)
		return (Datum) 0;

	recs = palloc(sizeof(ProduceRecord) * n);
	for (int i = 0; i < n; i++)
	{
		record_init(&recs[i]);
		recs[i].partition = partition;
		if (!value_nulls[i])
			recs[i].value = values[i];
		if (keys && !key_nulls[i])
			recs[i].key = keys[i];
	}
	produce_records(topic, recs, n);
	produce_return(fcinfo, recs, n);
	return (Datum) 0;
}

/*
 * produce_messages(topic text, messages commitlog.message[])
 * RETURNS SETOF commitlog.position: per-message key, value, headers,
 * partition and timestamp.
 */
Datum
produce_messages(PG_FUNCTION_ARGS)
{
	Topic	   *topic;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	ProduceRecord *recs;

	SetSingleFuncCall(fcinfo, 0);
	topic = produce_open(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	arr = array_arg(fcinfo, 1, "messages", "Pass an array of commitlog.message values.");
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, &elem_nulls, &n);
	if (n == 0)
		return (Datum) 0;

	recs = palloc(sizeof(ProduceRecord) * n);
	for (int i = 0; i < n; i++)
	{
		HeapTupleHeader msg;
		bool		isnull;
		Datum		d;

		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("message %d is null", i + 1),
					 errhint("Use a message with a NULL value for a tombstone, not a NULL message.")));
		msg = DatumGetHeapTupleHeader(elems[i]);
		record_init(&recs[i]);
		/* commitlog.message: key, value, headers, partition, ts */
		d = GetAttributeByNum(msg, 1, &isnull);
		if (!isnull)
			recs[i].key = d;
		d = GetAttributeByNum(msg, 2, &isnull);
		if (!isnull)
			recs[i].value = d;
		d = GetAttributeByNum(msg, 3, &isnull);
		if (!isnull)
			recs[i].headers = d;
		d = GetAttributeByNum(msg, 4, &isnull);
		if (!isnull)
		{
			if (DatumGetInt32(d) < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid partition %d in message %d", DatumGetInt32(d), i + 1),
						 errhint("Partitions are numbered from 0; leave partition NULL to let the key choose.")));
			recs[i].partition = DatumGetInt32(d);
		}
		d = GetAttributeByNum(msg, 5, &isnull);
		if (!isnull)
			recs[i].ts = DatumGetTimestampTz(d);
	}
	produce_records(topic, recs, n);
	produce_return(fcinfo, recs, n);
	return (Datum) 0;
}
