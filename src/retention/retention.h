/*
 * retention.h
 *		Segments and retention (DESIGN 3 and 7).
 *
 * Each partition is range-partitioned by offset into segments, created
 * ahead of need by the background worker only.  Retention removes whole
 * non-active segments in two steps: raise the partition's log start offset
 * transactionally (readers stop at once), then detach and drop the
 * segments wholly below it as top-level statements.
 */
#ifndef COMMITLOG_RETENTION_H
#define COMMITLOG_RETENTION_H

#include "postgres.h"

/*
 * One maintenance cycle of the background worker for its database: create
 * spare segments, roll segments by time, and, when retention_due, enforce
 * retention and compaction and drop the segments below the log start
 * offsets.  Called outside any transaction; runs its own.
 */
extern void RetentionMaintain(bool retention_due);

#endif							/* COMMITLOG_RETENTION_H */
