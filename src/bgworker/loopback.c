/*-------------------------------------------------------------------------
 *
 * loopback.c
 *		The worker's libpq sessions to its own database, for the statements
 *		that cannot run inside its transactions (DETACH PARTITION ...
 *		CONCURRENTLY for retention, CREATE/DROP SUBSCRIPTION for the
 *		cluster).
 *
 * Statements are waited for on the socket and the latch, not in PQexec
 * (whose poll() retries through signals), so SIGTERM and postmaster death
 * are served while one waits, e.g. a detach waiting for old snapshots up
 * to its statement_timeout.  A worker told to stop cancels the statement
 * first, so the other backend does not go on alone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "bgworker/bgworker.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

/*
 * A session to this database as the bootstrap superuser, over the first
 * Unix socket directory, with a 60 s statement_timeout (a statement never
 * waits forever behind an old snapshot: the caller retries next cycle).
 * purpose ends the error message when the connection fails.
 */
PGconn *
BgworkerLoopbackConnect(const char *appname, const char *purpose)
{
	const char *keys[7] = {"host", "port", "dbname", "user", "application_name", "options", NULL};
	const char *values[7];
	char	   *raw = pstrdup(GetConfigOption("unix_socket_directories", false, false));
	List	   *dirs;
	bool		started = !IsTransactionState();
	MemoryContext cxt = CurrentMemoryContext;
	PGconn	   *conn;

	if (!SplitDirectoriesString(raw, ',', &dirs) || dirs == NIL)
		dirs = list_make1("localhost");
	values[0] = linitial(dirs);
	values[1] = psprintf("%d", PostPortNumber);
	/* catalog lookups need a transaction; keep the names beyond it */
	if (started)
		StartTransactionCommand();
	values[2] = MemoryContextStrdup(cxt, get_database_name(MyDatabaseId));
	values[3] = MemoryContextStrdup(cxt, GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false));
	if (started)
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	values[4] = appname;
	values[5] = "-c statement_timeout=60s";
	values[6] = NULL;

	conn = PQconnectdbParams(keys, values, false);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *msg = pchomp(PQerrorMessage(conn));

		PQfinish(conn);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("pg_commitlog could not connect to its own database to %s: %s", purpose, msg),
				 errhint("Allow local connections of the bootstrap superuser over the Unix socket (peer or trust in pg_hba.conf).")));
	}
	return conn;
}

/*
 * Run one statement on a loopback session.  Returns NULL on success, else
 * the error text.  A latch set meanwhile (a producer's wakeup) is set again
 * for the worker's main loop.
 */
char *
BgworkerLoopbackExec(PGconn *conn, const char *sql)
{
	bool		woken = false;
	char	   *error = NULL;
	PGresult   *res;

	if (PQsendQuery(conn, sql))
	{
		while (PQisBusy(conn))
		{
			int			rc = WaitLatchOrSocket(MyLatch,
											   WL_LATCH_SET | WL_SOCKET_READABLE | WL_EXIT_ON_PM_DEATH,
											   PQsocket(conn), -1L, PG_WAIT_EXTENSION);

			if (rc & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				woken = true;
				if (ProcDiePending || QueryCancelPending)
				{
					/*
					 * The session is a backend of this server: a signal does
					 * what pg_cancel_backend() would, without a cancel
					 * connection through the postmaster that might not be
					 * served before this process exits.
					 */
					int			pid = PQbackendPID(conn);

					if (pid > 0 && kill(pid, SIGINT) != 0)
						ereport(LOG,
								(errmsg("pg_commitlog could not cancel a statement of its loopback session (pid %d): %m",
										pid)));
					CHECK_FOR_INTERRUPTS();
				}
			}
			if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
				break;
		}
		while ((res = PQgetResult(conn)) != NULL)
		{
			ExecStatusType status = PQresultStatus(res);

			if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && error == NULL)
				error = pchomp(PQresultErrorMessage(res));
			PQclear(res);
		}
	}
	if (woken)
		SetLatch(MyLatch);
	if (error == NULL && PQstatus(conn) == CONNECTION_BAD)
		error = pchomp(PQerrorMessage(conn));
	return error;
}
