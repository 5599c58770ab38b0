/*-------------------------------------------------------------------------
 *
 * tables.c
 *		Derived tables: create_table, drop_table, and the built-in handler
 *		that keeps one up to date.
 *
 * A derived table is Kafka Streams' KTable: the newest record per key of a
 * topic, (key bytea PRIMARY KEY, value bytea, partition int, log_offset
 * bigint, timestamp timestamptz).  It is a job like a processor whose
 * handler is built in: each batch upserts the newest record per key of the
 * batch and deletes the keys whose newest record is a tombstone (NULL
 * value), in the transaction that moves the job's positions.  Records
 * without a key cannot be stored by key and are skipped, as a KTable drops
 * them.  The table belongs to whoever called create_table; the workers
 * write it as the table's owner, so it can be granted, indexed and joined
 * like any table.  A derived table never dead-letters: a failing batch is
 * retried, with backoff, until it succeeds (a table that skipped records
 * would no longer be the topic's newest values).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "fetch/fetch.h"
#include "miscadmin.h"
#include "stream/stream.h"
#include "topics/topics.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

PG_FUNCTION_INFO_V1(create_table);
PG_FUNCTION_INFO_V1(drop_table);

/* The table_name argument as a RangeVar. */
static RangeVar *
table_name_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *name = StreamNameArg(fcinfo, argno, "table_name");

	return makeRangeVarFromNameList(textToQualifiedNameList(cstring_to_text(name)));
}

/* schema.table, quoted as needed */
static char *
table_qualified_name(Oid relid)
{
	if (!OidIsValid(get_rel_namespace(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("derived table with OID %u does not exist", relid)));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* create_table(topic text, table_name text) RETURNS void */
Datum
create_table(PG_FUNCTION_ARGS)
{
	Topic	   *topic;
	RangeVar   *rv;
	Oid			nspid;
	char	   *qualified;
	Oid			relid;
	int			nestlevel;
	Oid			types[4] = {TEXTOID, TEXTOID, OIDOID, OIDOID};
	Datum		args[4];
	bool		isnull;

	PreventCommandIfReadOnly("commitlog.create_table()");
	topic = TopicOpen(TopicNameArg(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0)), AccessShareLock);
	FetchRequireSelect(topic);
	rv = table_name_arg(fcinfo, 1);
	/* the caller's search_path decides the schema; CREATE on it is checked */
	nspid = RangeVarGetAndCheckCreationNamespace(rv, NoLock, NULL);
	if (isAnyTempNamespace(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a derived table cannot be a temporary table"),
				 errdetail("The background workers that keep it cannot see another session's temporary tables."),
				 errhint("Name a table in an ordinary schema.")));
	qualified = quote_qualified_identifier(get_namespace_name(nspid), rv->relname);
	if (OidIsValid(get_relname_relid(rv->relname, nspid)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation %s already exists", qualified),
				 errhint("A derived table is created by create_table; choose a name that is not taken.")));

	nestlevel = CatalogBegin();
	StreamCheckNameFree(qualified);
	/* as the caller, who owns the table */
	if (SPI_execute(psprintf("CREATE TABLE %s (key bytea PRIMARY KEY, value bytea, "
							 "partition int4 NOT NULL, log_offset int8 NOT NULL, "
							 "\"timestamp\" timestamptz NOT NULL)", qualified),
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create table %s", qualified);
	relid = get_relname_relid(rv->relname, nspid);

	args[0] = CStringGetTextDatum(qualified);
	args[1] = CStringGetTextDatum(topic->name);
	args[2] = ObjectIdGetDatum(relid);
	args[3] = ObjectIdGetDatum(GetUserId());
	CatalogExec("INSERT INTO commitlog.stream_jobs "
				"(name, kind, topic, derived_table, batch_size, max_retries, owner) "
				"VALUES ($1, 'table', $2, $3::pg_catalog.regclass, 1000, 0, $4::pg_catalog.regrole) "
				"RETURNING id", 4, types, args, NULL);
	StreamEnsurePositions(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)),
						  false);
	CatalogEnd(nestlevel);
	StreamWakeAtCommit();
	PG_RETURN_VOID();
}

/* drop_table(table_name text) RETURNS void: the table and its registration */
Datum
drop_table(PG_FUNCTION_ARGS)
{
	RangeVar   *rv;
	Oid			relid;
	int			nestlevel;
	Oid			types[1] = {OIDOID};
	Datum		args[1];
	bool		isnull;
	int32		job_id;
	char	   *name;
	char	   *topic;
	char	   *qualified;

	PreventCommandIfReadOnly("commitlog.drop_table()");
	rv = table_name_arg(fcinfo, 0);
	relid = RangeVarGetRelid(rv, NoLock, false);
	qualified = table_qualified_name(relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", qualified)));

	nestlevel = CatalogBegin();
	args[0] = ObjectIdGetDatum(relid);
	CatalogRead("SELECT id, name, topic FROM commitlog.stream_jobs "
				"WHERE kind = 'table' AND derived_table = $1::pg_catalog.regclass", 1, types, args, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("table %s is not a derived table", qualified),
				 errhint("Look in commitlog.derived_tables for derived tables; drop other tables with DROP TABLE.")));
	job_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	topic = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	StreamForgetJob(job_id, name, topic);
	/* as the caller; dependent views make it fail, as DROP TABLE does */
	if (SPI_execute(psprintf("DROP TABLE %s", qualified), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not drop table %s", qualified);
	CatalogEnd(nestlevel);
	PG_RETURN_VOID();
}

/*
 * Apply a batch (commitlog.record[] of one partition, in offset order) to
 * derived table relid: per key, the batch's newest record wins; a tombstone
 * deletes the key.  Inside SPI, with search_path pinned, as the table's
 * owner (the caller switches).
 */
void
StreamApplyToTable(Oid relid, Datum records)
{
	char	   *table = table_qualified_name(relid);
	Oid			types[1] = {StreamRecordArrayType()};
	Datum		args[1] = {records};

	if (SPI_execute_with_args(psprintf("WITH newest AS ("
									   "  SELECT DISTINCT ON (r.key) r.key, r.value, r.partition, "
									   "         r.log_offset, r.\"timestamp\" "
									   "    FROM pg_catalog.unnest($1) r WHERE r.key IS NOT NULL "
									   "   ORDER BY r.key, r.log_offset DESC), "
									   "gone AS ("
									   "  DELETE FROM %s d USING newest n "
									   "   WHERE d.key = n.key AND n.value IS NULL) "
									   "INSERT INTO %s AS d (key, value, partition, log_offset, \"timestamp\") "
									   "SELECT key, value, partition, log_offset, \"timestamp\" "
									   "  FROM newest WHERE value IS NOT NULL "
									   "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
									   "  partition = EXCLUDED.partition, log_offset = EXCLUDED.log_offset, "
									   "  \"timestamp\" = EXCLUDED.\"timestamp\"", table, table),
							  1, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not apply a batch to derived table %s", table);
}
