/*
 * guard.h
 *		Immutability of topic data (DESIGN 3).
 *
 * Topic tables accept rows only through produce (which inserts directly into
 * the segment, past the executor) and the extension's own maintenance.  An
 * ExecutorCheckPerms hook refuses INSERT, UPDATE, DELETE, MERGE and COPY FROM
 * on any table in commitlog_topics, superusers included; a ProcessUtility
 * hook refuses TRUNCATE, DROP, RENAME, SET SCHEMA and ALTER of them (all
 * but ALTER ... OWNER TO).  Hooks, not triggers:
 * triggers can be disabled with session_replication_role and do not run in
 * the logical replication apply worker, which must be let through anyway.
 * commitlog.restore_mode (superuser only) lets pg_restore through.
 */
#ifndef COMMITLOG_GUARD_H
#define COMMITLOG_GUARD_H

#include "postgres.h"

extern void GuardInit(void);

/* Run an SQL statement that changes topic storage, past the guard. */
extern void GuardExecInternal(const char *sql);

#endif							/* COMMITLOG_GUARD_H */
