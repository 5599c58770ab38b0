/*-------------------------------------------------------------------------
 *
 * controller.c
 *		Controller election through advisory locks in the coordinator.
 *
 * Each worker keeps one libpq session to the coordinator database
 * (commitlog.coordinator; empty: a loopback connection to the worker's own
 * database, so that a single server is a cluster of its own).  On it:
 *
 *	- after connecting, it looks up its cluster's id c (commitlog.cluster,
 *	  commitlog.cluster_join; 1 is 'default'), takes its broker's liveness
 *	  lock (BGWORKER_LOCK_BROKER + c - 1, broker_id) and records the broker in
 *	  commitlog.broker_registry.  The lock lives exactly as long as the
 *	  session, so commitlog.brokers shows a broker alive while pg_locks shows
 *	  the lock: no heartbeat table;
 *	- every cycle it tries the controller lock (BGWORKER_LOCK_CONTROLLER, c)
 *	  without waiting (a broker that did not get its liveness lock does not
 *	  stand).  The winner bumps commitlog.controller_state.epoch on
 *	  the same session, and is the controller until that session ends.
 *
 * When the session ends (pg_terminate_backend, a coordinator restart, a
 * dead network that keepalives or tcp_user_timeout detect), the server
 * drops both locks.  Every candidate tries the controller lock each cycle,
 * so one of them holds it within a cycle, with a higher epoch.  The
 * controller runs a trivial query each cycle to see that its session still
 * works; if not, it steps down, reconnects and stands again in the same
 * cycle.
 *
 * Fencing: the controller writes only on the session that holds the lock,
 * so a controller whose session is gone cannot write at all; and each write
 * runs in one transaction after commitlog.controller_fence(epoch)
 * (ControllerExec), which refuses an epoch older than the current one and
 * share-locks the state row, so an election waits for a fenced write in
 * flight and an action stamped with an older epoch changes nothing.
 *
 * All I/O is asynchronous libpq waited for with WaitLatchOrSocket, so SIGTERM
 * and postmaster death are served while waiting, and it is bounded by
 * timeouts: an unreachable coordinator delays a worker's cycle by seconds,
 * never by what TCP would take to give up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "bgworker/bgworker_internal.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "errors.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "topics/topics.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

PG_FUNCTION_INFO_V1(controller_fence);
PG_FUNCTION_INFO_V1(cluster_fence);

#define CONTROLLER_CONNECT_TIMEOUT_MS	5000
#define CONTROLLER_QUERY_TIMEOUT_MS		10000
#define CONTROLLER_RETRY_MAX_MS			10000

/* lock keys as SQL literals */
#define BROKER_LOCK_SQL		CppAsString2(BGWORKER_LOCK_BROKER)

/* outcome of a round trip to the coordinator */
typedef enum CoordStatus
{
	COORD_OK,
	COORD_LOST,					/* the session is gone: reconnect now */
	COORD_FAILED				/* a statement failed: disconnect, retry later */
} CoordStatus;

static PGconn *coord = NULL;
static char *coord_target = NULL;	/* commitlog.coordinator it was opened with */
static char *coord_error = NULL;	/* why the last round trip failed */
static int	coord_pid = 0;		/* the session's backend pid */
static char *coord_cluster = NULL;	/* commitlog.cluster it was opened with */
static int	coord_cluster_id = 0;	/* its id on the coordinator; 0: not alive */
static int64 my_epoch = 0;		/* 0: not the controller */
static bool latch_was_set = false;
static int	connect_failures = 0;
static TimestampTz connect_retry_at = 0;

static char *loopback_dbname = NULL;
static char *loopback_user = NULL;

/* Names for the loopback connection; from the worker's start-up. */
void
ControllerStart(const char *dbname, const char *superuser)
{
	loopback_dbname = MemoryContextStrdup(TopMemoryContext, dbname);
	loopback_user = MemoryContextStrdup(TopMemoryContext, superuser);
	coord_error = MemoryContextStrdup(TopMemoryContext, "");
}

int64
ControllerEpoch(void)
{
	return my_epoch;
}

static void
set_coord_error(const char *msg)
{
	pfree(coord_error);
	coord_error = MemoryContextStrdup(TopMemoryContext, msg);
}

/*
 * Wait until conn's socket is ready for events; false at the deadline.
 * A latch set meanwhile (a producer's wakeup) is remembered for the main
 * loop, which would otherwise sleep through it.
 */
static bool
coord_wait(PGconn *conn, int events, TimestampTz deadline)
{
	if (PQsocket(conn) < 0)
		return false;
	for (;;)
	{
		long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		int			rc;

		if (timeout <= 0)
			return false;
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
							   PQsocket(conn), timeout, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_was_set = true;
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & events)
			return true;
	}
}

/* The first Unix socket directory, or localhost. */
static const char *
loopback_host(void)
{
	char	   *raw = pstrdup(GetConfigOption("unix_socket_directories", false, false));
	List	   *dirs;

	if (SplitDirectoriesString(raw, ',', &dirs) && dirs != NIL)
		return (const char *) linitial(dirs);
	return "localhost";
}

/* Append key='value' to a conninfo string. */
static void
conninfo_append(StringInfo buf, const char *key, const char *value)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, ' ');
	appendStringInfo(buf, "%s='", key);
	for (const char *p = value; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '\'');
}

/* What this broker records as its conninfo in commitlog.broker_registry. */
static char *
advertised_conninfo(void)
{
	StringInfoData buf;

	if (commitlog_advertised_conninfo[0] != '\0')
		return commitlog_advertised_conninfo;
	initStringInfo(&buf);
	conninfo_append(&buf, "host", loopback_host());
	appendStringInfo(&buf, " port=%d", PostPortNumber);
	conninfo_append(&buf, "dbname", loopback_dbname);
	return buf.data;
}

/* Open a session to the coordinator; NULL (and coord_error) on failure. */
static PGconn *
coord_connect(void)
{
	const char *keys[13];
	const char *vals[13];
	int			n = 0;
	char		port[16];
	char		appname[NAMEDATALEN];
	bool		remote = commitlog_coordinator[0] != '\0';
	PGconn	   *conn;
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;
	TimestampTz deadline;

	/*
	 * DESIGN 9: a dead host or a split network must not keep our locks until
	 * TCP gives up (hours).  Before dbname, so the coordinator's conninfo can
	 * override them; ignored on Unix sockets.
	 */
	keys[n] = "keepalives", vals[n++] = "1";
	keys[n] = "keepalives_idle", vals[n++] = "10";
	keys[n] = "keepalives_interval", vals[n++] = "5";
	keys[n] = "keepalives_count", vals[n++] = "3";
	keys[n] = "tcp_user_timeout", vals[n++] = "30000";

	/*
	 * The same on the coordinator's side: the backend that holds our
	 * liveness lock waits idle for our next query and would notice a dead
	 * peer only after the kernel's default keepalive time (two hours);
	 * until then no failover could happen.
	 */
	keys[n] = "options", vals[n++] = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
		"-c tcp_keepalives_count=3 -c tcp_user_timeout=30000";
	if (remote)
		keys[n] = "dbname", vals[n++] = commitlog_coordinator;
	else
	{
		snprintf(port, sizeof(port), "%d", PostPortNumber);
		keys[n] = "host", vals[n++] = loopback_host();
		keys[n] = "port", vals[n++] = port;
		keys[n] = "dbname", vals[n++] = loopback_dbname;
		keys[n] = "user", vals[n++] = loopback_user;
	}
	snprintf(appname, sizeof(appname), "pg_commitlog broker %d", commitlog_broker_id);
	keys[n] = "application_name", vals[n++] = appname;
	keys[n] = NULL, vals[n] = NULL;

	conn = PQconnectStartParams(keys, vals, remote ? 1 : 0);
	if (conn == NULL)
	{
		set_coord_error("out of memory");
		return NULL;
	}
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CONTROLLER_CONNECT_TIMEOUT_MS);
	while (PQstatus(conn) != CONNECTION_BAD &&
		   status != PGRES_POLLING_OK && status != PGRES_POLLING_FAILED)
	{
		if (!coord_wait(conn, status == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
						deadline))
		{
			set_coord_error(psprintf("timed out after %d ms", CONTROLLER_CONNECT_TIMEOUT_MS));
			PQfinish(conn);
			return NULL;
		}
		status = PQconnectPoll(conn);
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		set_coord_error(pchomp(PQerrorMessage(conn)));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/*
 * Send sql (parameters as text) and wait for all its results, at most
 * CONTROLLER_QUERY_TIMEOUT_MS.  Returns the first failed result, else the
 * last one; NULL when the session failed or timed out (coord_error says
 * which).  The caller PQclears it.
 */
static PGresult *
coord_exec(const char *sql, int nparams, const char *const *params)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   CONTROLLER_QUERY_TIMEOUT_MS);
	PGresult   *keep = NULL;
	int			sent;

	sent = nparams > 0
		? PQsendQueryParams(coord, sql, nparams, NULL, params, NULL, NULL, 0)
		: PQsendQuery(coord, sql);
	if (!sent)
	{
		set_coord_error(pchomp(PQerrorMessage(coord)));
		return NULL;
	}
	for (;;)
	{
		PGresult   *res;

		while (PQisBusy(coord))
		{
			if (!coord_wait(coord, WL_SOCKET_READABLE, deadline))
			{
				set_coord_error(PQstatus(coord) == CONNECTION_BAD
								? pchomp(PQerrorMessage(coord))
								: psprintf("no answer within %d ms", CONTROLLER_QUERY_TIMEOUT_MS));
				PQclear(keep);
				return NULL;
			}
			if (!PQconsumeInput(coord))
			{
				set_coord_error(pchomp(PQerrorMessage(coord)));
				PQclear(keep);
				return NULL;
			}
		}
		res = PQgetResult(coord);
		if (res == NULL)
			break;
		if (keep != NULL && PQresultStatus(keep) == PGRES_FATAL_ERROR)
			PQclear(res);
		else
		{
			PQclear(keep);
			keep = res;
		}
	}
	if (keep == NULL)
		set_coord_error(pchomp(PQerrorMessage(coord)));
	return keep;
}

/* Classify a result (which is cleared unless it is as expected). */
static CoordStatus
coord_status(PGresult **res, ExecStatusType expected, const char *what)
{
	const char *state;
	bool		missing;

	if (*res != NULL && PQresultStatus(*res) == expected)
		return COORD_OK;
	if (*res == NULL || PQstatus(coord) == CONNECTION_BAD)
	{
		if (*res != NULL)
			set_coord_error(pchomp(PQresultErrorMessage(*res)));
		PQclear(*res);
		*res = NULL;
		ereport(LOG,
				(errmsg("pg_commitlog: lost the session to the coordinator: %s", coord_error)));
		return COORD_LOST;
	}
	set_coord_error(pchomp(PQresultErrorMessage(*res)));
	state = PQresultErrorField(*res, PG_DIAG_SQLSTATE);
	missing = state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "42883") == 0 ||
								strcmp(state, "3F000") == 0);
	ereport(WARNING,
			(errmsg("pg_commitlog: %s on the coordinator failed: %s", what, coord_error),
			 missing ? errhint("The coordinator database needs the pg_commitlog extension.") : 0));
	PQclear(*res);
	*res = NULL;
	return COORD_FAILED;
}

/* Close the coordinator session; this broker is then no controller. */
void
ControllerDisconnect(const char *why)
{
	if (my_epoch > 0)
		ereport(LOG,
				(errmsg("pg_commitlog: broker %d is no longer the controller (epoch " INT64_FORMAT "): %s",
						commitlog_broker_id, my_epoch, why)));
	my_epoch = 0;
	coord_pid = 0;
	coord_cluster_id = 0;
	if (coord != NULL)
		PQfinish(coord);
	coord = NULL;
}

/*
 * Connect, set the session up, take the liveness lock and register.  On
 * failure the session is closed and false returned.
 */
static bool
controller_connect(void)
{
	char		broker[16];
	const char *params[2];
	PGresult   *res;
	bool		alive;

	coord = coord_connect();
	if (coord == NULL)
	{
		ereport(connect_failures == 0 ? WARNING : DEBUG1,
				(errmsg("pg_commitlog could not connect to the coordinator%s: %s",
						commitlog_coordinator[0] ? "" : " (its own database, over the Unix socket)",
						coord_error),
				 commitlog_coordinator[0] ? 0 :
				 errhint("Allow local connections of the bootstrap superuser over the Unix socket (peer or trust in pg_hba.conf), or set commitlog.coordinator.")));
		return false;
	}
	if (coord_target != NULL)
		pfree(coord_target);
	coord_target = MemoryContextStrdup(TopMemoryContext, commitlog_coordinator);

	/* queries are schema-qualified; timeouts so nothing waits for long */
	res = coord_exec("SET search_path = pg_catalog, pg_temp; "
					 "SET statement_timeout = '10s'; SET lock_timeout = '5s'; "
					 "SET idle_session_timeout = 0; SET idle_in_transaction_session_timeout = '10s'",
					 0, NULL);
	if (coord_status(&res, PGRES_COMMAND_OK, "setting up the session") != COORD_OK)
		goto fail;
	PQclear(res);

	if (coord_cluster != NULL)
		pfree(coord_cluster);
	coord_cluster = MemoryContextStrdup(TopMemoryContext, commitlog_cluster);

	/* the cluster's liveness locks are (BROKER_LOCK + cluster id - 1, broker) */
	snprintf(broker, sizeof(broker), "%d", commitlog_broker_id);
	params[0] = broker;
	params[1] = commitlog_cluster;
	res = coord_exec("SELECT pg_catalog.pg_backend_pid(), "
					 "pg_catalog.pg_try_advisory_lock(" BROKER_LOCK_SQL " + c - 1, $1::pg_catalog.int4), c "
					 "FROM commitlog.cluster_join($2) c",
					 2, params);
	if (coord_status(&res, PGRES_TUPLES_OK, "taking the broker's liveness lock") != COORD_OK)
		goto fail;
	coord_pid = atoi(PQgetvalue(res, 0, 0));
	alive = PQgetvalue(res, 0, 1)[0] == 't';
	coord_cluster_id = atoi(PQgetvalue(res, 0, 2));
	PQclear(res);

	if (!alive)
	{
		/* several databases of one broker on a shared coordinator, or a duplicate broker_id */
		ereport(LOG,
				(errmsg("pg_commitlog: another session holds the liveness lock of broker %d on the coordinator",
						commitlog_broker_id),
				 errhint("Each broker of a cluster needs its own commitlog.broker_id.")));
		coord_cluster_id = 0;
		return true;
	}
	{
		const char *reg[4];
		char		cluster_id[16];

		snprintf(cluster_id, sizeof(cluster_id), "%d", coord_cluster_id);
		reg[0] = broker;
		reg[1] = advertised_conninfo();
		reg[2] = cluster_id;
		/* a member hosts replicas: it runs in cluster mode (src/cluster) */
		reg[3] = commitlog_coordinator[0] != '\0' ? "true" : "false";
		res = coord_exec("INSERT INTO commitlog.broker_registry (broker_id, conninfo, registered_at, cluster_id, member) "
						 "VALUES ($1, $2, pg_catalog.now(), $3, $4) "
						 "ON CONFLICT (cluster_id, broker_id) DO UPDATE "
						 "SET conninfo = EXCLUDED.conninfo, registered_at = EXCLUDED.registered_at, "
						 "member = EXCLUDED.member",
						 4, reg);
	}
	if (coord_status(&res, PGRES_COMMAND_OK, "registering the broker") != COORD_OK)
		goto fail;
	PQclear(res);
	return true;

fail:
	ControllerDisconnect("the coordinator session could not be set up");
	return false;
}

/*
 * One round on a working session: the controller checks that it still is
 * one; a candidate tries the lock and, when it gets it, bumps the epoch.
 */
static CoordStatus
controller_stand(void)
{
	char		broker[16];
	char		cluster_id[16];
	const char *params[2];
	PGresult   *res;
	bool		got;

	snprintf(cluster_id, sizeof(cluster_id), "%d", coord_cluster_id);
	params[1] = cluster_id;
	if (coord_cluster_id == 0)
		return COORD_OK;		/* not alive: not a candidate either */
	if (my_epoch > 0)
	{
		int64		epoch;

		res = coord_exec("SELECT epoch FROM commitlog.controller_state WHERE cluster_id = $1",
						 1, params + 1);
		if (coord_status(&res, PGRES_TUPLES_OK, "reading the controller state") != COORD_OK)
			return COORD_LOST;
		epoch = PQntuples(res) == 1 ? strtoi64(PQgetvalue(res, 0, 0), NULL, 10) : 0;
		PQclear(res);
		if (epoch == my_epoch)
			return COORD_OK;
		/* only a hand-made UPDATE can get here; start over with a new epoch */
		ereport(LOG,
				(errmsg("pg_commitlog: the controller epoch changed from " INT64_FORMAT " to " INT64_FORMAT " under broker %d",
						my_epoch, epoch, commitlog_broker_id)));
		return COORD_LOST;
	}

	res = coord_exec("SELECT pg_catalog.pg_try_advisory_lock(" CppAsString2(BGWORKER_LOCK_CONTROLLER)
					 ", $1::pg_catalog.int4)", 1, params + 1);
	if (coord_status(&res, PGRES_TUPLES_OK, "trying the controller lock") != COORD_OK)
		return COORD_LOST;
	got = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!got)
		return COORD_OK;		/* another broker's session holds it */

	snprintf(broker, sizeof(broker), "%d", commitlog_broker_id);
	params[0] = broker;
	res = coord_exec("UPDATE commitlog.controller_state "
					 "SET broker_id = $1, epoch = epoch + 1, elected_at = pg_catalog.now(), "
					 "pid = pg_catalog.pg_backend_pid() WHERE cluster_id = $2 RETURNING epoch",
					 2, params);
	switch (coord_status(&res, PGRES_TUPLES_OK, "bumping the controller epoch"))
	{
		case COORD_OK:
			break;
		case COORD_LOST:
			return COORD_LOST;
		case COORD_FAILED:
			return COORD_FAILED;
	}
	if (PQntuples(res) != 1)
	{
		PQclear(res);
		ereport(WARNING,
				(errmsg("pg_commitlog: commitlog.controller_state on the coordinator has no row")));
		return COORD_FAILED;
	}
	my_epoch = strtoi64(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	ereport(LOG,
			(errmsg("pg_commitlog: broker %d is the controller, epoch " INT64_FORMAT " (coordinator session pid %d)",
					commitlog_broker_id, my_epoch, coord_pid)));
	return COORD_OK;
}

/* Give up on the coordinator until the next try, later and later. */
static void
controller_backoff(void)
{
	int64		backoff;

	connect_failures++;
	backoff = (int64) commitlog_worker_naptime << Min(connect_failures - 1, 16);
	connect_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   Min(backoff, CONTROLLER_RETRY_MAX_MS));
}

/*
 * The controller step of a worker's cycle: keep a session to the
 * coordinator, and be the controller or a candidate on it.  A lost session
 * is replaced, and the broker stands again, in the same call.
 */
void
ControllerUpkeep(void)
{
	pgstat_report_activity(STATE_RUNNING, "pg_commitlog: controller upkeep");
	latch_was_set = false;

	if (coord != NULL && (strcmp(coord_target, commitlog_coordinator) != 0 ||
						  strcmp(coord_cluster, commitlog_cluster) != 0))
		ControllerDisconnect("commitlog.coordinator or commitlog.cluster changed");

	for (int attempt = 0; attempt < 2; attempt++)
	{
		CoordStatus status;

		if (coord == NULL)
		{
			if (connect_failures > 0 && GetCurrentTimestamp() < connect_retry_at)
				break;
			if (!controller_connect())
			{
				controller_backoff();
				break;
			}
			if (connect_failures > 0)
				ereport(LOG, (errmsg("pg_commitlog: connected to the coordinator again")));
			connect_failures = 0;
		}
		status = controller_stand();
		if (status == COORD_OK)
			break;
		ControllerDisconnect(status == COORD_LOST
							 ? "the session to the coordinator ended"
							 : "a statement on the coordinator failed");
		if (status == COORD_FAILED)
		{
			controller_backoff();
			break;
		}
		/* COORD_LOST: reconnect and stand again now */
	}

	if (latch_was_set)
		SetLatch(MyLatch);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run a controller action (bgworker.h).  The fence and the statement go as
 * one simple-query message, which PostgreSQL runs as one transaction.
 */
bool
ControllerExec(const char *sql)
{
	PGresult   *res;
	const char *state;

	if (coord == NULL || my_epoch == 0)
		return false;
	latch_was_set = false;
	res = coord_exec(psprintf("SELECT commitlog.cluster_fence(%s, " INT64_FORMAT "); %s",
							  quote_literal_cstr(coord_cluster), my_epoch, sql), 0, NULL);
	if (res != NULL &&
		(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK))
	{
		PQclear(res);
		if (latch_was_set)
			SetLatch(MyLatch);
		return true;
	}
	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state != NULL && strcmp(state, "CL004") == 0)
	{
		ereport(LOG,
				(errmsg("pg_commitlog: a controller action of broker %d was refused: %s",
						commitlog_broker_id, pchomp(PQresultErrorMessage(res)))));
		PQclear(res);
		ControllerDisconnect("fenced by a newer controller");
	}
	else if (coord_status(&res, PGRES_COMMAND_OK, "a controller action") == COORD_LOST)
		ControllerDisconnect("the session to the coordinator ended");
	if (latch_was_set)
		SetLatch(MyLatch);
	return false;
}

/*
 * controller_fence(epoch bigint) RETURNS void
 *
 * Refuses (CL004) an epoch older than the current controller's.  Share-locks
 * the state row until the caller's transaction ends, so an election cannot
 * slip in between this check and the caller's write.
 */
static void
fence_check(const char *cluster, int64 epoch)
{
	int64		current;
	int32		broker;
	bool		isnull;
	int			nestlevel;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(cluster)};

	nestlevel = CatalogBegin();
	CatalogExec("SELECT s.epoch, s.broker_id FROM commitlog.controller_state s "
				"JOIN commitlog.clusters c ON c.id = s.cluster_id WHERE c.name = $1 FOR SHARE OF s",
				1, argtypes, args, NULL);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("cluster \"%s\" does not exist on this coordinator", cluster)));
	current = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	broker = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		broker = -1;
	CatalogEnd(nestlevel);

	if (epoch < current)
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_STALE_EPOCH),
				 errmsg("controller epoch " INT64_FORMAT " is stale", epoch),
				 errdetail("Broker %d was elected controller with epoch " INT64_FORMAT " since; actions of an older controller are refused.",
						   broker, current),
				 errhint("See commitlog.controller for the current controller.")));
	if (epoch > current)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("controller epoch " INT64_FORMAT " does not exist", epoch),
				 errdetail("The current controller epoch is " INT64_FORMAT ".", current)));
}

/* controller_fence(epoch bigint): the 'default' cluster's fence */
Datum
controller_fence(PG_FUNCTION_ARGS)
{
	fence_check("default", PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}

/* cluster_fence(cluster text, epoch bigint) */
Datum
cluster_fence(PG_FUNCTION_ARGS)
{
	fence_check(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_INT64(1));
	PG_RETURN_VOID();
}

/* The cluster's id on the coordinator while this broker is alive there, else 0. */
int
ControllerClusterId(void)
{
	return coord != NULL ? coord_cluster_id : 0;
}

/*
 * Run a query on the coordinator session (bgworker.h).  NULL, with a
 * WARNING, when it failed; a lost session is closed.
 */
PGresult *
ControllerQuery(const char *sql, int nparams, const char *const *params)
{
	PGresult   *res;
	ExecStatusType expected;

	if (coord == NULL)
		return NULL;
	latch_was_set = false;
	res = coord_exec(sql, nparams, params);
	expected = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK ? PGRES_COMMAND_OK : PGRES_TUPLES_OK;
	if (coord_status(&res, expected, "a cluster query") == COORD_LOST)
		ControllerDisconnect("the session to the coordinator ended");
	if (latch_was_set)
		SetLatch(MyLatch);
	return res;
}
