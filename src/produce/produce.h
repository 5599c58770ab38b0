/*
 * produce.h
 *		Appending records: produce, produce_batch, produce_messages, and
 *		Kafka's default partitioner.
 */
#ifndef COMMITLOG_PRODUCE_H
#define COMMITLOG_PRODUCE_H

#include "postgres.h"

#include "topics/topics.h"

/* Kafka's murmur2 (Utils.murmur2), bit for bit; returned as Java's int */
extern int32 CommitlogMurmur2(const char *data, int length);

/* The partition Kafka's DefaultPartitioner gives a non-null key */
extern int32 PartitionForKeyBytes(const char *data, int length, int32 partitions);

#endif							/* COMMITLOG_PRODUCE_H */
