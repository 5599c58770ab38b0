/*-------------------------------------------------------------------------
 *
 * guard.c
 *		Keep topic tables append-only and immutable; see guard.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "commitlog.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "guard/guard.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "topics/topics.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

static ExecutorCheckPerms_hook_type prev_check_perms_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/* > 0 while the extension itself changes topic storage */
static int	internal_depth = 0;

static bool
guard_bypassed(void)
{
	return internal_depth > 0 || commitlog_restore_mode || commitlog_internal_maintenance;
}

static bool
is_topic_relation(Oid relid)
{
	Oid			nsp;

	if (!OidIsValid(relid))
		return false;
	nsp = TopicSchemaOid(true);
	return OidIsValid(nsp) && get_rel_namespace(relid) == nsp;
}

static void
guard_refuse(Oid relid, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s topic table \"%s\"", what, get_rel_name(relid)),
			 errdetail("Topic data is append-only and immutable; records are added only by commitlog.produce()."),
			 errhint("Append with commitlog.produce(); drop the whole topic with commitlog.drop_topic().")));
}

static bool
guard_check_perms(List *rangeTable, bool ereport_on_violation)
{
	ListCell   *lc;

	if (!guard_bypassed())
	{
		foreach(lc, rangeTable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_RELATION &&
				(rte->requiredPerms & (ACL_INSERT | ACL_UPDATE | ACL_DELETE)) != 0 &&
				is_topic_relation(rte->relid))
			{
				if (!ereport_on_violation)
					return false;
				guard_refuse(rte->relid, (rte->requiredPerms & ACL_INSERT) ? "insert into" :
							 (rte->requiredPerms & ACL_DELETE) ? "delete from" : "update");
			}
		}
	}
	if (prev_check_perms_hook)
		return prev_check_perms_hook(rangeTable, ereport_on_violation);
	return true;
}

static void
guard_check_rangevar(RangeVar *rv, const char *what)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	if (is_topic_relation(relid))
		guard_refuse(relid, what);
}

/*
 * DROP OWNED BY would drop a topic's table behind drop_topic's back and
 * leave its metadata behind: refuse it for roles that own topic tables.
 */
static void
guard_check_drop_owned(DropOwnedStmt *stmt)
{
	Oid			nsp = TopicSchemaOid(true);
	ListCell   *lc;
	Relation	rel;

	if (!OidIsValid(nsp))
		return;
	rel = table_open(RelationRelationId, AccessShareLock);
	foreach(lc, stmt->roles)
	{
		Oid			roleid = get_rolespec_oid(lfirst(lc), true);
		TableScanDesc scan;
		HeapTuple	tuple;

		if (!OidIsValid(roleid))
			continue;
		scan = table_beginscan_catalog(rel, 0, NULL);
		while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			Form_pg_class cls = (Form_pg_class) GETSTRUCT(tuple);

			if (cls->relnamespace == nsp && cls->relowner == roleid)
			{
				char	   *relname = pstrdup(NameStr(cls->relname));

				table_endscan(scan);
				table_close(rel, AccessShareLock);
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("cannot drop objects owned by %s: it owns topic table \"%s\"",
								GetUserNameFromId(roleid, false), relname),
						 errdetail("DROP OWNED would drop the topic's table and leave its metadata behind."),
						 errhint("Drop the role's topics with commitlog.drop_topic(), or hand them over with ALTER TABLE commitlog_topics.%s OWNER TO another role, first.",
								 quote_identifier(relname))));
			}
		}
		table_endscan(scan);
	}
	table_close(rel, AccessShareLock);
}

/* ALTER TABLE ... OWNER TO only: harmless, and how a DBA hands a topic over */
static bool
alter_is_owner_change(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
		if (lfirst_node(AlterTableCmd, lc)->subtype != AT_ChangeOwner)
			return false;
	return stmt->cmds != NIL;
}

static void
guard_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (!guard_bypassed() && TopicSchemaOid(true) != InvalidOid)
	{
		ListCell   *lc;

		switch (nodeTag(stmt))
		{
			case T_DropOwnedStmt:
				guard_check_drop_owned((DropOwnedStmt *) stmt);
				break;
			case T_TruncateStmt:
				foreach(lc, ((TruncateStmt *) stmt)->relations)
					guard_check_rangevar(lfirst_node(RangeVar, lc), "truncate");
				break;
			case T_AlterTableStmt:
				if (!alter_is_owner_change((AlterTableStmt *) stmt))
					guard_check_rangevar(((AlterTableStmt *) stmt)->relation, "alter");
				break;
			case T_AlterSeqStmt:
				guard_check_rangevar(((AlterSeqStmt *) stmt)->sequence, "alter");
				break;
			case T_RenameStmt:
				if (((RenameStmt *) stmt)->relation != NULL)
					guard_check_rangevar(((RenameStmt *) stmt)->relation, "rename");
				break;
			case T_AlterObjectSchemaStmt:
				if (((AlterObjectSchemaStmt *) stmt)->relation != NULL)
					guard_check_rangevar(((AlterObjectSchemaStmt *) stmt)->relation, "move");
				break;
			case T_DropStmt:
				{
					DropStmt   *drop = (DropStmt *) stmt;

					if (drop->removeType != OBJECT_TABLE && drop->removeType != OBJECT_SEQUENCE &&
						drop->removeType != OBJECT_INDEX)
						break;
					foreach(lc, drop->objects)
						guard_check_rangevar(makeRangeVarFromNameList(lfirst(lc)), "drop");
				}
				break;
			default:
				break;
		}
	}

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params,
								  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* Run sql (inside an SPI connection) past the guard. */
void
GuardExecInternal(const char *sql)
{
	internal_depth++;
	PG_TRY();
	{
		if (SPI_execute(sql, false, 0) < 0)
			elog(ERROR, "internal statement failed: %s", sql);
	}
	PG_FINALLY();
	{
		internal_depth--;
	}
	PG_END_TRY();
}

void
GuardInit(void)
{
	prev_check_perms_hook = ExecutorCheckPerms_hook;
	ExecutorCheckPerms_hook = guard_check_perms;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = guard_process_utility;
}
