/*-------------------------------------------------------------------------
 *
 * groups.c
 *		commit_offset, committed_offset, reset_offsets, delete_group.
 *
 * Administrative changes (reset, delete) refuse a group whose partitions
 * are claimed by a consuming transaction right now, as Kafka refuses to
 * reset or delete a group with active members: they try the rows with SKIP
 * LOCKED and compare counts rather than wait behind a consumer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "fetch/fetch.h"
#include "fmgr.h"
#include "groups/groups.h"
#include "stream/stream.h"
#include "miscadmin.h"
#include "offsets/offsets.h"
#include "storage/lockdefs.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(commit_offset);
PG_FUNCTION_INFO_V1(committed_offset);
PG_FUNCTION_INFO_V1(reset_offsets);
PG_FUNCTION_INFO_V1(delete_group);

/* A group id argument: Kafka allows any non-empty string. */
char *
GroupIdArg(FunctionCallInfo fcinfo, int argno)
{
	char	   *group;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_id must not be null"),
				 errhint("Name the consumer group, e.g. 'billing'.")));
	group = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (group[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_id must not be empty"),
				 errhint("Name the consumer group, e.g. 'billing'.")));
	if (strlen(group) > GROUP_ID_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_id is too long"),
				 errdetail("A group_id has at most %d bytes; this one has %zu.",
						   GROUP_ID_MAX_BYTES, strlen(group)),
				 errhint("Choose a shorter name.")));
	return group;
}

/*
 * The right to create a group's rows for a topic, for this transaction,
 * taken without waiting (see consume_ensure_rows).  Whoever holds it may
 * have inserted rows nobody else can see yet.
 */
bool
GroupTryCreateLock(Datum group, int32 topic_id)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {group, Int32GetDatum(topic_id)};
	bool		isnull;

	CatalogExec("SELECT pg_catalog.pg_try_advisory_xact_lock("
				"pg_catalog.hashtext('pg_commitlog consumer group ' || $1 || ' topic ' || $2))",
				2, types, args, NULL);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Open a topic for group operations: reading it is what a group does. */
static Topic *
group_topic(FunctionCallInfo fcinfo, int argno)
{
	Topic	   *topic = TopicOpen(TopicNameArg(PG_ARGISNULL(argno) ? NULL : PG_GETARG_TEXT_PP(argno)),
								  AccessShareLock);

	FetchRequireSelect(topic);
	return topic;
}

static int32
group_partition_arg(FunctionCallInfo fcinfo, int argno, Topic *topic)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition must not be null")));
	TopicCheckPartition(topic, PG_GETARG_INT32(argno));
	return PG_GETARG_INT32(argno);
}

static void
group_in_use(const char *group)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_IN_USE),
			 errmsg("consumer group \"%s\" has active consumers", group),
			 errdetail("A transaction is consuming with this group right now."),
			 errhint("Retry when the consumers are stopped, as Kafka requires an inactive group.")));
}

/*
 * commit_offset(group_id text, topic text, partition int, log_offset bigint,
 *				 metadata text) RETURNS void
 */
Datum
commit_offset(PG_FUNCTION_ARGS)
{
	char	   *group = GroupIdArg(fcinfo, 0);
	Topic	   *topic = group_topic(fcinfo, 1);
	int32		partition = group_partition_arg(fcinfo, 2, topic);
	int64		offset;
	Oid			types[5] = {TEXTOID, INT4OID, INT4OID, INT8OID, TEXTOID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			nestlevel;

	StreamCheckGroupWrite(group);
	if (PG_ARGISNULL(3) || PG_GETARG_INT64(3) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid offset to commit: %s",
						PG_ARGISNULL(3) ? "null" : psprintf(INT64_FORMAT, PG_GETARG_INT64(3))),
				 errdetail("A committed offset is the next offset the group will read, so it is 0 or more."),
				 errhint("Commit the offset after the last record processed.")));
	offset = PG_GETARG_INT64(3);
	PreventCommandIfReadOnly("commitlog.commit_offset()");

	args[0] = CStringGetTextDatum(group);
	args[1] = Int32GetDatum(topic->id);
	args[2] = Int32GetDatum(partition);
	args[3] = Int64GetDatum(offset);
	if (PG_ARGISNULL(4))
		nulls[4] = 'n';
	else
		args[4] = PG_GETARG_DATUM(4);

	nestlevel = CatalogBegin();
	CatalogExec("INSERT INTO commitlog.consumer_offsets "
				"(group_id, topic_id, partition, committed_offset, metadata, committed_at) "
				"VALUES ($1, $2, $3, $4, $5, pg_catalog.now()) "
				"ON CONFLICT (group_id, topic_id, partition) DO UPDATE "
				"SET committed_offset = EXCLUDED.committed_offset, metadata = EXCLUDED.metadata, "
				"committed_at = EXCLUDED.committed_at",
				5, types, args, nulls);
	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}

/* committed_offset(group_id text, topic text, partition int) RETURNS bigint */
Datum
committed_offset(PG_FUNCTION_ARGS)
{
	char	   *group = GroupIdArg(fcinfo, 0);
	Topic	   *topic = group_topic(fcinfo, 1);
	int32		partition = group_partition_arg(fcinfo, 2, topic);
	Oid			types[3] = {TEXTOID, INT4OID, INT4OID};
	Datum		args[3] = {CStringGetTextDatum(group), Int32GetDatum(topic->id), Int32GetDatum(partition)};
	int			nestlevel = CatalogBegin();
	bool		isnull = true;
	int64		result = 0;

	CatalogExec("SELECT committed_offset FROM commitlog.consumer_offsets "
				"WHERE group_id = $1 AND topic_id = $2 AND partition = $3",
				3, types, args, NULL);
	if (SPI_processed > 0)
		result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	CatalogEnd(nestlevel);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_INT64(result);
}

/* The offset a reset target names in one partition; target parsed once. */
typedef struct ResetTarget
{
	enum
	{
		RESET_EARLIEST, RESET_LATEST, RESET_TIME
	}			kind;
	TimestampTz ts;
} ResetTarget;

static ResetTarget
reset_target_parse(const char *target)
{
	ResetTarget result;

	if (strcmp(target, "earliest") == 0)
		result.kind = RESET_EARLIEST;
	else if (strcmp(target, "latest") == 0)
		result.kind = RESET_LATEST;
	else
	{
		Datum		ts;

		/* a timestamp; a bad one gets a hint that names the choices */
		PG_TRY();
		{
			ts = DirectFunctionCall3(timestamptz_in, CStringGetDatum(target),
									 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		}
		PG_CATCH();
		{
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid reset target \"%s\"", target),
					 errhint("Use 'earliest', 'latest', or a timestamp such as '2026-01-01 00:00+00'.")));
		}
		PG_END_TRY();
		result.kind = RESET_TIME;
		result.ts = DatumGetTimestampTz(ts);
	}
	return result;
}

/* Resolve a target in one partition (inside SPI). */
static int64
reset_target_offset(Topic *topic, int32 partition, ResetTarget target)
{
	Snapshot	snapshot;
	FetchRange	range = FetchRangeOf(topic, partition, &snapshot);
	int64		result = range.stable;

	if (target.kind == RESET_EARLIEST)
		result = range.earliest;
	else if (target.kind == RESET_TIME)
	{
		/* no record at or after ts: the end, as Kafka's offsetsForTimes */
		(void) FetchOffsetForTime(topic, partition, range, snapshot, target.ts, &result);
	}
	UnregisterSnapshot(snapshot);
	return result;
}

/* reset_offsets(group_id text, topic text, target text) RETURNS void */
Datum
reset_offsets(PG_FUNCTION_ARGS)
{
	char	   *group = GroupIdArg(fcinfo, 0);
	Topic	   *topic;
	ResetTarget target;
	int			nestlevel;
	Oid			types[4] = {TEXTOID, INT4OID, INT4OID, INT8OID};
	Datum		args[4];
	uint64		locked;

	FetchRequirePrimary();
	StreamCheckGroupWrite(group);
	topic = group_topic(fcinfo, 1);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target must not be null"),
				 errhint("Use 'earliest', 'latest', or a timestamp.")));
	target = reset_target_parse(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	PreventCommandIfReadOnly("commitlog.reset_offsets()");

	nestlevel = CatalogBegin();
	args[0] = CStringGetTextDatum(group);
	args[1] = Int32GetDatum(topic->id);
	CatalogExec("SELECT count(*) FROM commitlog.consumer_offsets "
				"WHERE group_id = $1 AND topic_id = $2", 2, types, args, NULL);
	{
		bool		isnull;
		int64		total = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		CatalogExec("SELECT 1 FROM commitlog.consumer_offsets "
					"WHERE group_id = $1 AND topic_id = $2 FOR UPDATE SKIP LOCKED", 2, types, args, NULL);
		locked = SPI_processed;
		if ((int64) locked < total)
			group_in_use(group);
	}
	/* a member may be creating the group's rows right now: do not wait on it */
	if (!GroupTryCreateLock(args[0], topic->id))
		group_in_use(group);

	for (int32 p = 0; p < topic->partitions; p++)
	{
		args[2] = Int32GetDatum(p);
		args[3] = Int64GetDatum(reset_target_offset(topic, p, target));
		CatalogExec("INSERT INTO commitlog.consumer_offsets "
					"(group_id, topic_id, partition, committed_offset, committed_at) "
					"VALUES ($1, $2, $3, $4, pg_catalog.now()) "
					"ON CONFLICT (group_id, topic_id, partition) DO UPDATE "
					"SET committed_offset = EXCLUDED.committed_offset, "
					"committed_at = EXCLUDED.committed_at", 4, types, args, NULL);
	}
	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}

/* delete_group(group_id text) RETURNS void */
Datum
delete_group(PG_FUNCTION_ARGS)
{
	char	   *group = GroupIdArg(fcinfo, 0);
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(group)};
	int			nestlevel;
	int64		total;
	bool		isnull;

	PreventCommandIfReadOnly("commitlog.delete_group()");
	StreamCheckGroupWrite(group);
	nestlevel = CatalogBegin();
	CatalogExec("SELECT count(*) FROM commitlog.consumer_offsets WHERE group_id = $1", 1, types, args, NULL);
	total = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (total == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer group \"%s\" does not exist", group),
				 errhint("Look in commitlog.group_offsets for existing groups.")));
	/* the group's rights follow its topics: SELECT on each of them */
	CatalogExec("SELECT DISTINCT t.name FROM commitlog.consumer_offsets g "
				"JOIN commitlog.topics t ON t.id = g.topic_id WHERE g.group_id = $1",
				1, types, args, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Oid			relid = get_relname_relid(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
											  TopicSchemaOid(false));

		if (OidIsValid(relid) && pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to delete consumer group \"%s\"", group),
					 errdetail("The group reads topic \"%s\", which you cannot read.",
							   SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)),
					 errhint("Ask a role with SELECT on that topic's table to delete the group.")));
	}
	CatalogExec("SELECT 1 FROM commitlog.consumer_offsets WHERE group_id = $1 FOR UPDATE SKIP LOCKED",
				1, types, args, NULL);
	if ((int64) SPI_processed < total)
		group_in_use(group);
	CatalogExec("DELETE FROM commitlog.consumer_offsets WHERE group_id = $1", 1, types, args, NULL);
	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}
