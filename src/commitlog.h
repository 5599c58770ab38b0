/*
 * commitlog.h
 *		Names and settings shared by every subsystem of pg_commitlog.
 *
 * Each subsystem has its own header (offsets/offsets.h, topics/topics.h,
 * produce/produce.h, fetch/fetch.h, guard/guard.h); this one holds only what
 * all of them need: schema names and the GUC variables.
 */
#ifndef COMMITLOG_H
#define COMMITLOG_H

#include "postgres.h"

/* schema of the API and metadata, and schema of the topic tables */
#define COMMITLOG_SCHEMA		"commitlog"
#define COMMITLOG_TOPIC_SCHEMA	"commitlog_topics"

/* Kafka's limit on topic names is 249; ours is a PostgreSQL identifier */
#define COMMITLOG_MAX_TOPIC_NAME	(NAMEDATALEN - 1)

/* GUCs (pg_commitlog.c) */
extern int	commitlog_broker_id;
extern int	commitlog_max_partitions;
extern bool commitlog_restore_mode;
extern bool commitlog_internal_maintenance;


#endif							/* COMMITLOG_H */
