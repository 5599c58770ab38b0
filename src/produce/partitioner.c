/*-------------------------------------------------------------------------
 *
 * partitioner.c
 *		Kafka's default partitioner, byte for byte.
 *
 * A key must land on the partition the Java client would choose, so that
 * records written by Kafka clients and by SQL interleave per key.  This is
 * org.apache.kafka.common.utils.Utils.murmur2 with Java's 32-bit signed
 * arithmetic done in uint32 (identical bits), and
 * partition = (murmur2(key) & 0x7fffffff) % partitions
 * (Utils.toPositive, as BuiltInPartitioner.partitionForKey does).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "produce/produce.h"
#include "storage/lockdefs.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(murmur2);
PG_FUNCTION_INFO_V1(partition_for_key);

int32
CommitlogMurmur2(const char *data, int length)
{
	const uint8 *bytes = (const uint8 *) data;
	const uint32 seed = 0x9747b28cU;
	const uint32 m = 0x5bd1e995U;
	const int	r = 24;
	uint32		h = seed ^ (uint32) length;
	int			length4 = length / 4;

	for (int i = 0; i < length4; i++)
	{
		int			i4 = i * 4;
		uint32		k = (uint32) bytes[i4] | ((uint32) bytes[i4 + 1] << 8) |
			((uint32) bytes[i4 + 2] << 16) | ((uint32) bytes[i4 + 3] << 24);

		k *= m;
		k ^= k >> r;
		k *= m;
		h *= m;
		h ^= k;
	}

	/* the tail, falling through as Java's switch does */
	switch (length % 4)
	{
		case 3:
			h ^= (uint32) bytes[(length & ~3) + 2] << 16;
			/* FALLTHROUGH */
		case 2:
			h ^= (uint32) bytes[(length & ~3) + 1] << 8;
			/* FALLTHROUGH */
		case 1:
			h ^= (uint32) bytes[length & ~3];
			h *= m;
	}

	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return (int32) h;
}

int32
PartitionForKeyBytes(const char *data, int length, int32 partitions)
{
	return (int32) (((uint32) CommitlogMurmur2(data, length) & 0x7fffffffU) % (uint32) partitions);
}

/* murmur2(key bytea) RETURNS int: the raw hash, for checking against Kafka */
Datum
murmur2(PG_FUNCTION_ARGS)
{
	bytea	   *key = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_INT32(CommitlogMurmur2(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));
}

/* partition_for_key(topic text, key bytea) RETURNS int */
Datum
partition_for_key(PG_FUNCTION_ARGS)
{
	char	   *name = TopicNameArg(PG_GETARG_TEXT_PP(0));
	bytea	   *key = PG_GETARG_BYTEA_PP(1);
	Topic	   *topic = TopicOpen(name, AccessShareLock);

	PG_RETURN_INT32(PartitionForKeyBytes(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
										 topic->partitions));
}
