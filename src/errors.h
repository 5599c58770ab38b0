/*
 * errors.h
 *		pg_commitlog's own SQLSTATEs, in class "CL" (commit log).
 *
 * Everything a user can cause is reported with an SQLSTATE.  Mistakes that
 * PostgreSQL already has a code for use it (42704 unknown topic, 22023 bad
 * argument, 54000 oversized message); conditions a Kafka client would
 * recognise by name get a code of their own here, in one place, so clients
 * can match on them.
 */
#ifndef COMMITLOG_ERRORS_H
#define COMMITLOG_ERRORS_H

#include "utils/elog.h"

/* Kafka's OFFSET_OUT_OF_RANGE: a fetch below earliest or above latest */
#define ERRCODE_COMMITLOG_OFFSET_OUT_OF_RANGE		MAKE_SQLSTATE('C','L','0','0','1')
/* Kafka's NOT_LEADER_OR_FOLLOWER: produce on a broker that does not lead */
#define ERRCODE_COMMITLOG_NOT_LEADER				MAKE_SQLSTATE('C','L','0','0','2')
/* Kafka's NOT_ENOUGH_REPLICAS: acks=all with a too small ISR */
#define ERRCODE_COMMITLOG_NOT_ENOUGH_REPLICAS		MAKE_SQLSTATE('C','L','0','0','3')
/* Kafka's STALE_CONTROLLER_EPOCH: an action of a controller since replaced */
#define ERRCODE_COMMITLOG_STALE_EPOCH				MAKE_SQLSTATE('C','L','0','0','4')
/* Kafka's REQUEST_TIMED_OUT: await_replication gave up; the records are in doubt */
#define ERRCODE_COMMITLOG_REQUEST_TIMED_OUT		MAKE_SQLSTATE('C','L','0','0','5')

/* Confluent's 409: a new schema version breaks the subject's compatibility mode */
#define ERRCODE_COMMITLOG_INCOMPATIBLE_SCHEMA		MAKE_SQLSTATE('C','L','S','0','1')

#endif							/* COMMITLOG_ERRORS_H */
