/*
 * fetch.h
 *		Reading records: fetch, earliest_offset, latest_offset,
 *		offset_for_time.
 *
 * Every read follows the same order (offsets.h): compute the partition's
 * stable offset, THEN take a fresh snapshot (never the transaction's, so a
 * REPEATABLE READ caller cannot skip a record), then read the log start
 * offset and the records with that snapshot, below the stable offset.
 */
#ifndef COMMITLOG_FETCH_H
#define COMMITLOG_FETCH_H

#include "postgres.h"

#include "offsets/offsets.h"
#include "topics/topics.h"

/* A partition's readable range under one snapshot. */
typedef struct FetchRange
{
	int64		earliest;		/* log start offset */
	int64		stable;			/* latest_offset: reads stop below it */
	int64		log_end;		/* next offset to be handed out */
	bool		awaiting_flush; /* stable held back by an unflushed commit */
} FetchRange;

#include "fmgr.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

extern void FetchRequirePrimary(void);
extern void FetchRequireSelect(const Topic *topic);
extern FetchRange FetchRangeOf(Topic *topic, int32 partition, Snapshot *snapshot);
extern void FetchOutOfRange(Topic *topic, int32 partition, int64 offset, FetchRange range);
extern bool FetchOffsetForTime(Topic *topic, int32 partition, FetchRange range,
							   Snapshot snapshot, TimestampTz ts, int64 *offset);
extern uint64 FetchRead(FunctionCallInfo fcinfo, Topic *topic, int32 partition, int64 from,
						FetchRange range, Snapshot snapshot, int32 max_records,
						int32 max_bytes, int64 *next);

#endif							/* COMMITLOG_FETCH_H */
