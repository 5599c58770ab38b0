/*-------------------------------------------------------------------------
 *
 * topic_ddl.c
 *		create_topic, drop_topic, add_partitions, alter_topic.
 *
 * Topic DDL is serialized by a SHARE ROW EXCLUSIVE lock on commitlog.topics,
 * which produce and fetch never conflict with (they only read it, and only
 * on a cache miss).  Storage is created by the caller, who owns the topic's
 * table and so may GRANT on it; the metadata rows are written as the
 * extension's owner, with search_path pinned, so that users need no rights
 * on the metadata tables.
 *
 * New partitions are CREATE TABLE + ATTACH PARTITION, which takes only
 * SHARE UPDATE EXCLUSIVE on the topic's table: add_partitions does not stop
 * producers and readers of the existing partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "guard/guard.h"
#include "miscadmin.h"
#include "offsets/offsets.h"
#include "storage/lmgr.h"
#include "topics/topics.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(create_topic);
PG_FUNCTION_INFO_V1(drop_topic);
PG_FUNCTION_INFO_V1(add_partitions);
PG_FUNCTION_INFO_V1(alter_topic);
PG_FUNCTION_INFO_V1(effective_config);

/* what DDL needs to know about an existing topic */
typedef struct TopicRow
{
	int32		id;
	int32		partitions;
	Jsonb	   *config;
	Oid			relid;
} TopicRow;

/* Kafka's legal characters; "." and ".." would confuse file-based tools. */
void
TopicValidateName(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid topic name \"\""),
				 errdetail("A topic name has 1 to %d characters.", COMMITLOG_MAX_TOPIC_NAME),
				 errhint("Name the topic, e.g. 'orders'.")));
	if (len > COMMITLOG_MAX_TOPIC_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid topic name \"%s\"", name),
				 errdetail("A topic name has 1 to %d characters; this one has %zu.",
						   COMMITLOG_MAX_TOPIC_NAME, len),
				 errhint("Choose a shorter name.")));
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid topic name \"%s\"", name),
				 errdetail("\".\" and \"..\" are not allowed as topic names."),
				 errhint("Choose a name with at least one letter or digit.")));
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			  (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid topic name \"%s\"", name),
					 errdetail("Topic names may contain only ASCII letters, digits, \".\", \"_\" and \"-\"."),
					 errhint("Replace the character \"%c\".", *c)));
}

/* Serialize topic DDL; see the file comment. */
static void
ddl_lock(void)
{
	Oid			relid = get_relname_relid("topics", get_namespace_oid(COMMITLOG_SCHEMA, false));

	LockRelationOid(relid, ShareRowExclusiveLock);
}

/* The topic's metadata row (within CatalogBegin), or error 42704. */
static TopicRow
ddl_find_topic(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	TopicRow	row;
	bool		isnull;

	CatalogRead("SELECT id, partitions, config FROM commitlog.topics WHERE name = $1",
				1, argtypes, args, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" does not exist", name),
				 errhint("Look in commitlog.topic_list for existing topics.")));
	row.id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	row.partitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	row.config = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	row.relid = get_relname_relid(name, TopicSchemaOid(false));
	if (!OidIsValid(row.relid))
		elog(ERROR, "table of topic \"%s\" is missing", name);
	return row;
}

static void
ddl_check_owner(const char *name, Oid relid)
{
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of topic \"%s\"", name),
				 errdetail("Dropping or reconfiguring a topic needs ownership of its table commitlog_topics.%s.",
						   quote_identifier(name)),
				 errhint("Ask the owner, or a superuser, to do it.")));
}

/* CatalogBegin + lock + the topic's row, checking the caller owns it */
static TopicRow
ddl_open_owned(const char *name, int *nestlevel)
{
	TopicRow	row;

	*nestlevel = CatalogBegin();
	ddl_lock();
	row = ddl_find_topic(name);
	ddl_check_owner(name, row.relid);
	return row;
}

static void
ddl_check_partition_count(int32 partitions)
{
	if (partitions < 1 || partitions > commitlog_max_partitions)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid number of partitions: %d", partitions),
				 errdetail("A topic has from 1 to %d partitions (commitlog.max_partitions).",
						   commitlog_max_partitions),
				 errhint("Choose a number in that range.")));
}

/*
 * Storage of one partition: a table range-partitioned by offset holding its
 * first segment, attached to the topic's table, and the offset sequence.
 * The first segment is open-ended until segment rolling divides the range.
 */
/*
 * Create segment [base, end) of a partition: CREATE TABLE + ATTACH
 * PARTITION, as the extension's owner (like all storage below the topic's
 * own table, so that a topic handed over to a new owner keeps working), which takes only SHARE UPDATE EXCLUSIVE on the partition's
 * table (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and stop
 * its readers).  Must run inside SPI.  Used by create_topic for the first
 * segment and by the background worker for the rest.
 */
void
TopicCreateSegment(const char *topic_name, int32 topic_id, int32 partition, int64 base, int64 end)
{
	Oid			argtypes[5] = {INT4OID, INT4OID, INT8OID, INT8OID, TEXTOID};
	Datum		args[5];
	char	   *segment = TopicSegmentRelname(topic_id, partition, base);

	CatalogDDL(psprintf("CREATE TABLE commitlog_topics.%s (LIKE commitlog_topics.%s)",
						quote_identifier(segment), quote_identifier(topic_name)));
	CatalogDDL(psprintf("ALTER TABLE commitlog_topics.%s ATTACH PARTITION commitlog_topics.%s "
						"FOR VALUES FROM (" INT64_FORMAT ") TO (" INT64_FORMAT ")",
						quote_identifier(TopicPartitionRelname(topic_id, partition)),
						quote_identifier(segment), base, end));
	args[0] = Int32GetDatum(topic_id);
	args[1] = Int32GetDatum(partition);
	args[2] = Int64GetDatum(base);
	args[3] = Int64GetDatum(end);
	args[4] = CStringGetTextDatum(segment);
	(void) CatalogExec("INSERT INTO commitlog.segments (topic_id, partition, base_offset, end_offset, relname) "
					   "VALUES ($1, $2, $3, $4, $5)", 5, argtypes, args, NULL);
	ClusterSegmentCreated(topic_id, partition, end);
}

/*
 * Storage of one partition: a table range-partitioned by offset, attached
 * to the topic's table, its first segment and a spare, and the offset
 * sequence.
 */
static void
ddl_create_partition(const char *name, int32 topic_id, int32 p, Jsonb *config)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	const char *partition_table = quote_identifier(TopicPartitionRelname(topic_id, p));
	int64		span = TopicSegmentSpan(TopicConfigEffectiveLong(config, "segment.bytes"),
										TOPIC_DEFAULT_RECORD_BYTES);

	CatalogDDL(psprintf("CREATE TABLE commitlog_topics.%s (LIKE commitlog_topics.%s) "
						"PARTITION BY RANGE (log_offset)", partition_table, quote_identifier(name)));
	CatalogDDL(psprintf("ALTER TABLE commitlog_topics.%s ATTACH PARTITION "
						"commitlog_topics.%s FOR VALUES IN (%d)",
						quote_identifier(name), partition_table, p));
	/* the first segment and its spare; the worker keeps one spare ahead */
	TopicCreateSegment(name, topic_id, p, 0, span);
	TopicCreateSegment(name, topic_id, p, span, 2 * span);
	CatalogDDL(psprintf("CREATE SEQUENCE commitlog_topics.%s "
						"INCREMENT BY %d MINVALUE 0 START WITH 0 NO CYCLE",
						quote_identifier(TopicSequenceRelname(topic_id, p)), OFFSETS_BLOCK_SIZE));

	args[0] = Int32GetDatum(topic_id);
	args[1] = Int32GetDatum(p);
	(void) CatalogExec("INSERT INTO commitlog.partitions (topic_id, partition) VALUES ($1, $2)",
					   2, argtypes, args, NULL);
}

/* create_topic(topic text, partitions int, replication_factor int, config jsonb) */
Datum
create_topic(PG_FUNCTION_ARGS)
{
	char	   *name = TopicNameArg(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	int32		partitions;
	int32		rf;
	Jsonb	   *config;
	Oid			nsp;
	int			nestlevel;
	Oid			argtypes[5] = {TEXTOID, INT4OID, INT4OID, JSONBOID, INT4OID};
	Datum		args[5];
	bool		isnull;
	int32		topic_id;
	AclResult	aclresult;

	TopicValidateName(name);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions and replication_factor must not be null"),
				 errhint("Leave them out to get 1 partition and replication factor 1.")));
	partitions = PG_GETARG_INT32(1);
	rf = PG_GETARG_INT32(2);
	ddl_check_partition_count(partitions);
	if (rf < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid replication factor: %d", rf),
				 errhint("The replication factor is at least 1.")));
	if (rf > 1 && !ClusterEnabled())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("replication factor %d is larger than the number of available brokers (1)", rf),
				 errdetail("This broker has no coordinator configured, so it is a cluster of one broker."),
				 errhint("Use replication_factor 1.")));
	config = TopicConfigNormalize(PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3), NULL);

	nsp = TopicSchemaOid(false);
	aclresult = pg_namespace_aclcheck(nsp, GetUserId(), ACL_CREATE);
	if (aclresult != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create topic \"%s\"", name),
				 errdetail("Creating a topic needs the CREATE privilege on schema commitlog_topics."),
				 errhint("A superuser can run: GRANT CREATE ON SCHEMA commitlog_topics TO %s;",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	/* cluster mode: the coordinator holds the topic, the workers make it */
	if (ClusterCreateTopic(name, partitions, rf, config))
		PG_RETURN_VOID();

	nestlevel = CatalogBegin();
	ddl_lock();
	args[0] = CStringGetTextDatum(name);
	CatalogRead("SELECT 1 FROM commitlog.topics WHERE name = $1", 1, argtypes, args, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("topic \"%s\" already exists", name),
				 errhint("Choose another name, or drop the topic first with commitlog.drop_topic().")));
	if (OidIsValid(get_relname_relid(name, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation commitlog_topics.%s already exists", quote_identifier(name)),
				 errdetail("A table that is not a topic has the topic's name in schema commitlog_topics."),
				 errhint("Rename or drop that table, or choose another topic name.")));

	args[1] = Int32GetDatum(partitions);
	args[2] = Int32GetDatum(rf);
	args[3] = JsonbPGetDatum(config);
	args[4] = Int32GetDatum(ClusterMaterializeId());
	(void) CatalogExec("INSERT INTO commitlog.topics (id, name, partitions, replication_factor, config) "
					   "VALUES (COALESCE(NULLIF($5, 0), pg_catalog.nextval('commitlog.topics_id_seq')), "
					   "$1, $2, $3, $4) RETURNING id", 5, argtypes, args, NULL);
	topic_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	GuardExecInternal(psprintf("CREATE TABLE commitlog_topics.%s ("
							   "partition int4 NOT NULL, log_offset int8 NOT NULL, "
							   "\"timestamp\" timestamptz NOT NULL, key bytea, value bytea, "
							   "headers commitlog.header[], "
							   "CONSTRAINT %s PRIMARY KEY (partition, log_offset)) "
							   "PARTITION BY LIST (partition)",
							   quote_identifier(name), quote_identifier(psprintf("t%d$pkey", topic_id))));
	for (int32 p = 0; p < partitions; p++)
		ddl_create_partition(name, topic_id, p, config);

	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}

/*
 * DROP TABLE of the topic's table.  PostgreSQL's error for dependent
 * objects (a view over the topic) suggests DROP ... CASCADE, which
 * drop_topic does not offer: say what to do instead.  The error is only
 * re-thrown, so no subtransaction is needed.
 */
static void
ddl_drop_topic_table(const char *name)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		GuardExecInternal(psprintf("DROP TABLE commitlog_topics.%s", quote_identifier(name)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop topic \"%s\" because other objects depend on its table", name),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("Drop the objects that use commitlog_topics.%s (such as views over the topic) first.",
						 quote_identifier(name))));
	}
	PG_END_TRY();
}

/* drop_topic(topic text) */
Datum
drop_topic(PG_FUNCTION_ARGS)
{
	char	   *name = TopicNameArg(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	int			nestlevel;
	TopicRow	row;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];

	if (ClusterDropTopic(name))
		PG_RETURN_VOID();
	row = ddl_open_owned(name, &nestlevel);

	/* waits for open producers and readers of the topic */
	ddl_drop_topic_table(name);
	for (int32 p = 0; p < row.partitions; p++)
	{
		char	   *seqname = TopicSequenceRelname(row.id, p);
		OffsetsPartitionKey key;

		key.dbid = MyDatabaseId;
		key.seqrelid = get_relname_relid(seqname, TopicSchemaOid(false));
		key.topic_id = row.id;
		key.partition = p;
		CatalogDDL(psprintf("DROP SEQUENCE commitlog_topics.%s", quote_identifier(seqname)));
		OffsetsForgetPartition(&key);
	}

	args[0] = Int32GetDatum(row.id);
	(void) CatalogExec("DELETE FROM commitlog.segments WHERE topic_id = $1", 1, argtypes, args, NULL);
	(void) CatalogExec("DELETE FROM commitlog.partitions WHERE topic_id = $1", 1, argtypes, args, NULL);
	(void) CatalogExec("DELETE FROM commitlog.consumer_offsets WHERE topic_id = $1", 1, argtypes, args, NULL);
	(void) CatalogExec("DELETE FROM commitlog.topics WHERE id = $1", 1, argtypes, args, NULL);

	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}

/* add_partitions(topic text, partitions int): the new total */
Datum
add_partitions(PG_FUNCTION_ARGS)
{
	char	   *name = TopicNameArg(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	int32		partitions;
	int			nestlevel;
	TopicRow	row;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions must not be null"),
				 errhint("Pass the new total number of partitions.")));
	partitions = PG_GETARG_INT32(1);
	ddl_check_partition_count(partitions);
	ClusterRefuseDDL("add_partitions");

	row = ddl_open_owned(name, &nestlevel);
	if (partitions <= row.partitions)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic \"%s\" already has %d partition%s", name, row.partitions,
						row.partitions == 1 ? "" : "s"),
				 errdetail("add_partitions takes the new total, and partitions can never be removed."),
				 errhint("Pass a number larger than %d.", row.partitions)));

	for (int32 p = row.partitions; p < partitions; p++)
		ddl_create_partition(name, row.id, p, row.config);
	args[0] = Int32GetDatum(row.id);
	args[1] = Int32GetDatum(partitions);
	(void) CatalogExec("UPDATE commitlog.topics SET partitions = $2 WHERE id = $1", 2, argtypes, args, NULL);
	CacheInvalidateRelcacheByRelid(row.relid);

	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}

/* alter_topic(topic text, config jsonb): merge keys; JSON null resets one */
Datum
alter_topic(PG_FUNCTION_ARGS)
{
	char	   *name = TopicNameArg(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	Jsonb	   *config;
	int			nestlevel;
	TopicRow	row;
	Oid			argtypes[2] = {INT4OID, JSONBOID};
	Datum		args[2];

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("config must not be null"),
				 errhint("Pass the keys to change, e.g. '{\"retention.ms\": 3600000}'; a key set to null returns to its default.")));

	ClusterRefuseDDL("alter_topic");
	row = ddl_open_owned(name, &nestlevel);
	config = TopicConfigNormalize(PG_GETARG_JSONB_P(1), row.config);

	args[0] = Int32GetDatum(row.id);
	args[1] = JsonbPGetDatum(config);
	(void) CatalogExec("UPDATE commitlog.topics SET config = $2 WHERE id = $1", 2, argtypes, args, NULL);
	/* producers cache max.message.bytes and the timestamp type */
	CacheInvalidateRelcacheByRelid(row.relid);

	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}

/* effective_config(config jsonb): every key, defaults filled in (topic_list) */
Datum
effective_config(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(TopicConfigEffective(PG_GETARG_JSONB_P(0)));
}
