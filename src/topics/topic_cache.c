/*-------------------------------------------------------------------------
 *
 * topic_cache.c
 *		Per-backend cache of topic metadata for the produce and fetch paths.
 *
 * produce() and fetch() name a topic by text; looking it up in the metadata
 * tables on every call would cost more than the append itself.  Entries are
 * invalidated by relcache invalidations of the topic's table: DROP and
 * ATTACH send them on their own, alter_topic sends one explicitly.  Callers
 * lock the topic's table first and then re-check the entry, because taking
 * the lock is what delivers pending invalidations.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commitlog.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "topics/topics.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

static HTAB *topic_cache = NULL;

static void
topic_release(Topic *topic)
{
	if (topic->seq_relids)
		pfree(topic->seq_relids);
	TopicForgetSegments(topic);
	if (topic->start_plan)
		SPI_freeplan(topic->start_plan);
	topic->seq_relids = NULL;
	topic->start_plan = NULL;
}

static void
topic_cache_inval(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	Topic	   *topic;

	if (topic_cache == NULL)
		return;
	hash_seq_init(&status, topic_cache);
	while ((topic = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || topic->relid == relid)
			topic->valid = false;
}

void
TopicCacheInit(void)
{
	CacheRegisterRelcacheCallback(topic_cache_inval, (Datum) 0);
}

Oid
TopicSchemaOid(bool missing_ok)
{
	Oid			nsp = get_namespace_oid(COMMITLOG_TOPIC_SCHEMA, true);

	if (!OidIsValid(nsp) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pg_commitlog\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION pg_commitlog.")));
	return nsp;
}

/* The topic argument of an SQL function as a C string, refusing NULL. */
char *
TopicNameArg(text *arg)
{
	if (arg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic must not be null"),
				 errhint("Pass the name of a topic listed in commitlog.topic_list.")));
	return text_to_cstring(arg);
}

static void
topic_not_found(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("topic \"%s\" does not exist", name),
			 errhint("Create it with commitlog.create_topic(), or look in commitlog.topic_list for existing topics.")));
}

/* Fill topic from the metadata tables; false if there is no such topic. */
static bool
topic_load(Topic *topic, const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	Oid			nsp = TopicSchemaOid(false);
	bool		isnull;
	char	   *value;

	args[0] = CStringGetTextDatum(name);
	SPI_connect();
	if (CatalogRead("SELECT id, partitions, "
					"config->>'max.message.bytes', "
					"config->>'message.timestamp.type', "
					"config->>'cleanup.policy' "
					"FROM commitlog.topics WHERE name = $1",
					1, argtypes, args, 1) == 0)
	{
		SPI_finish();
		return false;
	}

	topic->id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	topic->partitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	topic->max_message_bytes = value ? TopicConfigParseLong("max.message.bytes", value) : -1;
	topic->timestamp_type =
		TopicConfigParseTimestampType(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4));
	value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
	topic->compacted = value ? strstr(value, "compact") != NULL : TopicConfigDefaultCompacted();
	topic->relid = get_relname_relid(name, nsp);
	if (!OidIsValid(topic->relid))
		elog(ERROR, "table of topic \"%s\" is missing", name);

	topic->seq_relids = MemoryContextAllocZero(TopMemoryContext, sizeof(Oid) * topic->partitions);
	topic->segments = MemoryContextAllocZero(TopMemoryContext,
											 sizeof(PartitionSegments) * topic->partitions);
	SPI_finish();

	for (int p = 0; p < topic->partitions; p++)
	{
		topic->seq_relids[p] = get_relname_relid(TopicSequenceRelname(topic->id, p), nsp);
		if (!OidIsValid(topic->seq_relids[p]))
			elog(ERROR, "storage of partition %d of topic \"%s\" is incomplete", p, name);
	}
	return true;
}

/*
 * Look a topic up and lock its table in lockmode.  Errors with 42704 if
 * there is no such topic.  The entry stays valid until the lock is released
 * at the end of the transaction.
 */
Topic *
TopicOpen(const char *name, LOCKMODE lockmode)
{
	if (topic_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(Topic);
		topic_cache = hash_create("pg_commitlog topics", 64, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	if (strlen(name) >= NAMEDATALEN)
		topic_not_found(name);

	for (;;)
	{
		bool		found;
		Topic	   *topic = hash_search(topic_cache, name, HASH_ENTER, &found);

		if (!found)
		{
			memset(((char *) topic) + NAMEDATALEN, 0, sizeof(Topic) - NAMEDATALEN);
			topic->next_sticky = pg_prng_uint32(&pg_global_prng_state);
		}
		if (!topic->valid)
		{
			bool		ok;

			topic_release(topic);
			PG_TRY();
			{
				ok = topic_load(topic, name);
			}
			PG_CATCH();
			{
				topic_release(topic);
				hash_search(topic_cache, name, HASH_REMOVE, NULL);
				PG_RE_THROW();
			}
			PG_END_TRY();
			if (!ok)
			{
				hash_search(topic_cache, name, HASH_REMOVE, NULL);
				topic_not_found(name);
			}
			topic->valid = true;
		}

		/* taking the lock processes invalidations: re-check afterwards */
		LockRelationOid(topic->relid, lockmode);
		if (topic->valid && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(topic->relid)))
			return topic;
		UnlockRelationOid(topic->relid, lockmode);
		topic->valid = false;
	}
}

/*
 * Check that the partition exists.  Partitions are only ever added, so one
 * beyond the cached count may have been added by a transaction that
 * committed while ours already held the topic's lock (which is when
 * invalidations arrive): look again before refusing.
 */
void
TopicCheckPartition(Topic *topic, int32 partition)
{
	if (partition >= topic->partitions && topic->valid)
	{
		topic_release(topic);
		topic->valid = false;
		if (!topic_load(topic, topic->name))
			topic_not_found(topic->name);
		topic->valid = true;
	}
	if (partition < 0 || partition >= topic->partitions)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition %d of topic \"%s\" does not exist", partition, topic->name),
				 errdetail("Topic \"%s\" has %d partition%s, numbered 0 to %d.",
						   topic->name, topic->partitions,
						   topic->partitions == 1 ? "" : "s", topic->partitions - 1),
				 errhint("Use commitlog.add_partitions() to add partitions.")));
}

int64
TopicMaxMessageBytes(const Topic *topic)
{
	return topic->max_message_bytes >= 0 ? topic->max_message_bytes :
		TopicConfigDefaultMaxMessageBytes();
}

bool
TopicUsesLogAppendTime(const Topic *topic)
{
	if (topic->timestamp_type == TOPIC_TS_DEFAULT)
		return TopicConfigDefaultLogAppendTime();
	return topic->timestamp_type == TOPIC_TS_LOG_APPEND_TIME;
}

/* The offsets subsystem's name for one of the topic's partitions. */
OffsetsPartitionKey
TopicPartitionKey(const Topic *topic, int32 partition)
{
	OffsetsPartitionKey key;

	key.dbid = MyDatabaseId;
	key.seqrelid = topic->seq_relids[partition];
	key.topic_id = topic->id;
	key.partition = partition;
	return key;
}
