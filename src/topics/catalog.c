/*-------------------------------------------------------------------------
 *
 * catalog.c
 *		How the extension's own functions run SQL on its metadata.
 *
 * Three rules, one place:
 *	- search_path is pinned to pg_catalog while they run, so a caller's
 *	  objects cannot shadow the operators and functions they use;
 *	- metadata is written as the owner of the metadata tables, so users need
 *	  no rights on them (privileges are checked on the topic's table);
 *	- metadata is read with a fresh snapshot, never the transaction's: a
 *	  REPEATABLE READ caller holding a lock on a topic must see the topic as
 *	  it is, not as it was when its transaction began.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "guard/guard.h"
#include "miscadmin.h"
#include "topics/topics.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/*
 * Connect to SPI with search_path pinned, for the statements of the
 * extension's own functions; undone by CatalogEnd.
 */
int
CatalogBegin(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	SPI_connect();
	return nestlevel;
}

void
CatalogEnd(int nestlevel)
{
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
}

/* The owner of the metadata tables: the role that created the extension. */
static Oid
catalog_owner(void)
{
	Oid			relid = get_relname_relid("topics", get_namespace_oid(COMMITLOG_SCHEMA, false));
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Run DDL on the extension's own objects (offset sequences) as the
 * metadata owner, past the guard: a topic's owner must not be able to
 * rewind the sequence its offsets come from.
 */
void
CatalogDDL(const char *sql)
{
	Oid			save_userid;
	int			save_sec_context;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(catalog_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	GuardExecInternal(sql);
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * Run a metadata statement as the owner of the metadata tables, so users
 * need no rights on them.  Returns the SPI result code.
 */
int
CatalogExec(const char *sql, int nargs, Oid *argtypes, Datum *args, const char *nulls)
{
	int			ret;
	Oid			save_userid;
	int			save_sec_context;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(catalog_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	ret = SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 0);
	if (ret < 0)
		elog(ERROR, "metadata statement failed: %s", sql);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return ret;
}

/*
 * Run a read-only metadata query with a fresh snapshot, as the caller.
 * Returns SPI_processed; the rows are in SPI_tuptable.
 */
uint64
CatalogRead(const char *sql, int nargs, Oid *argtypes, Datum *args, long tcount)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);
	Snapshot	snapshot;
	int			ret;

	if (plan == NULL)
		elog(ERROR, "could not prepare metadata query: %s", sql);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	ret = SPI_execute_snapshot(plan, args, NULL, snapshot, InvalidSnapshot, true, false, tcount);
	UnregisterSnapshot(snapshot);
	SPI_freeplan(plan);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "metadata query failed: %s", sql);
	return SPI_processed;
}
