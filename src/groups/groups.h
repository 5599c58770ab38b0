/*
 * groups.h
 *		Consumer groups: committed offsets, consume, resets.
 *
 * A group's position in a partition is a row of commitlog.consumer_offsets
 * (group_id, topic_id, partition) -> committed_offset, the next offset to
 * read, as Kafka's __consumer_offsets.  Ordinary rows: they commit and roll
 * back with the caller's transaction, survive crashes, and pg_dump keeps
 * them.  consume() claims partitions by locking these rows with SKIP
 * LOCKED, so sessions of one group share a topic's partitions and each
 * partition is read by one transaction at a time, in order.
 */
#ifndef COMMITLOG_GROUPS_H
#define COMMITLOG_GROUPS_H

#include "postgres.h"

#include "topics/topics.h"

extern char *GroupIdArg(FunctionCallInfo fcinfo, int argno);
extern bool GroupTryCreateLock(Datum group, int32 topic_id);

/* Kafka sets no limit; ours keeps a group id inside a btree index entry */
#define GROUP_ID_MAX_BYTES	1000

#endif							/* COMMITLOG_GROUPS_H */
