/*-------------------------------------------------------------------------
 *
 * cluster.c
 *		Cluster mode in the backends: commitlog.cluster, topic DDL sent to
 *		the coordinator, the not-leader check of produce, the follower's
 *		readable end, and the trigger that creates segments on followers.
 *
 * create_topic and drop_topic cannot wait for the workers (CREATE
 * SUBSCRIPTION cannot run inside a function), so in cluster mode they only
 * record the intent in the coordinator, over a libpq connection of their
 * own, and return; the controller and the workers do the rest within a few
 * cycles (docs/replication.md says how to watch it).  The coordinator's
 * write commits on its own: rolling back the caller's transaction does not
 * take it back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "cluster/cluster.h"
#include "commands/trigger.h"
#include "commitlog.h"
#include "bgworker/bgworker.h"
#include "errors.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(replica_watermark_applied);

char	   *commitlog_cluster = NULL;

/* set by the worker while it creates or drops its local copy of a topic */
static int32 materialize_id = 0;

/*
 * The partitions of one topic that passed the leader check in this
 * transaction (produce checks per record, and a keyed batch alternates
 * between partitions); in TopMemoryContext, reset when either changes.
 */
static LocalTransactionId checked_lxid = InvalidLocalTransactionId;
static int32 checked_topic = -1;
static Bitmapset *checked_partitions = NULL;

/* A cluster name: 1 to 63 characters. */
static bool
check_cluster(char **newval, void **extra, GucSource source)
{
	size_t		len = strlen(*newval);

	if (len == 0 || len > NAMEDATALEN - 1)
	{
		GUC_check_errdetail("commitlog.cluster must have 1 to %d characters.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

void
ClusterDefineGucs(void)
{
	DefineCustomStringVariable("commitlog.cluster",
							   "Name of this broker's cluster in the coordinator.",
							   "One coordinator database can serve several clusters, as a "
							   "ZooKeeper chroot does; brokers with the same name form one cluster.",
							   &commitlog_cluster,
							   "default",
							   PGC_SIGHUP, 0,
							   check_cluster, NULL, NULL);	ClusterIsrDefineGucs();
	ClusterAcksDefineGucs();
}

bool
ClusterEnabled(void)
{
	return commitlog_coordinator != NULL && commitlog_coordinator[0] != '\0';
}

int32
ClusterMaterializeId(void)
{
	return materialize_id;
}

void
ClusterSetMaterializeId(int32 topic_id)
{
	materialize_id = topic_id;
}

/* coordinator_call's connection timeout */
#define CLUSTER_COORDINATOR_CONNECT_MS	10000

/*
 * Wait until the coordinator's socket is ready for events, or deadline (0:
 * none), serving interrupts meanwhile: a query cancel, statement_timeout
 * or pg_terminate_backend must not wait for the coordinator.  False on
 * timeout.
 */
static bool
coordinator_wait(PGconn *conn, int events, TimestampTz deadline)
{
	long		timeout = -1;
	int			rc;

	if (deadline != 0)
	{
		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (timeout <= 0)
			return false;
		events |= WL_TIMEOUT;
	}
	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | events,
						   PQsocket(conn), timeout, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return !(rc & WL_TIMEOUT) || (rc & events & ~WL_TIMEOUT);
}

/* Connect to the coordinator; error if it cannot be reached. */
static void
coordinator_connect(PGconn *conn)
{
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   CLUSTER_COORDINATOR_CONNECT_MS);
	const char *msg = NULL;

	while (PQstatus(conn) != CONNECTION_BAD &&
		   status != PGRES_POLLING_OK && status != PGRES_POLLING_FAILED)
	{
		if (!coordinator_wait(conn, status == PGRES_POLLING_READING ?
							  WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE, deadline))
		{
			msg = psprintf("timed out after %d ms", CLUSTER_COORDINATOR_CONNECT_MS);
			break;
		}
		status = PQconnectPoll(conn);
	}
	if (msg == NULL && PQstatus(conn) == CONNECTION_OK)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not connect to the coordinator: %s", msg ? msg : pchomp(PQerrorMessage(conn))),
			 errdetail("In cluster mode, topic metadata lives in the coordinator (commitlog.coordinator)."),
			 errhint("Check that the coordinator is running and reachable with commitlog.coordinator.")));
}

/* Send sql and return its first failed result, else its last; NULL if the session broke. */
static PGresult *
coordinator_exec(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	PGresult   *keep = NULL;
	PGresult   *res;

	if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0))
		return NULL;
	for (;;)
	{
		while (PQisBusy(conn))
		{
			(void) coordinator_wait(conn, WL_SOCKET_READABLE, 0);
			if (!PQconsumeInput(conn))
			{
				PQclear(keep);
				return NULL;
			}
		}
		res = PQgetResult(conn);
		if (res == NULL)
			return keep;
		if (keep == NULL || PQresultStatus(keep) == PGRES_TUPLES_OK ||
			PQresultStatus(keep) == PGRES_COMMAND_OK)
		{
			PQclear(keep);
			keep = res;
		}
		else
			PQclear(res);
	}
}

/*
 * Run one statement on the coordinator over a connection of this backend's
 * own, and re-raise its error here with its SQLSTATE, detail and hint.
 * The waits serve interrupts; an interrupted statement is cancelled on the
 * coordinator too (it may have committed already: see the file comment).
 */
static void
coordinator_call(const char *sql, int nparams, const char *const *params)
{
	/* DESIGN 9: a split network must not hang us until TCP gives up */
	const char *keys[] = {"keepalives", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "tcp_user_timeout", "dbname", "application_name", "options", NULL};
	const char *vals[] = {"1", "10", "5", "3", "30000", commitlog_coordinator,
		"pg_commitlog topic ddl", "-c statement_timeout=30s", NULL};
	PGconn	   *volatile conn = PQconnectStartParams(keys, vals, 1);

	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	PG_TRY();
	{
		PGresult   *res;
		ExecStatusType status;

		coordinator_connect(conn);
		res = coordinator_exec(conn, sql, nparams, params);
		status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
		if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
		{
			const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
			const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
			const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
			const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
			int			code = ERRCODE_CONNECTION_FAILURE;

			if (state != NULL && strlen(state) == 5)
				code = MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4]);
			msg = pstrdup(msg ? msg : pchomp(PQerrorMessage(conn)));
			detail = detail ? pstrdup(detail) : NULL;
			hint = hint ? pstrdup(hint) : NULL;
			PQclear(res);
			ereport(ERROR,
					(errcode(code),
					 errmsg_internal("%s", msg),
					 detail ? errdetail_internal("%s", detail) : 0,
					 hint ? errhint("%s", hint) : 0));
		}
		PQclear(res);
	}
	PG_CATCH();
	{
		/* interrupted while the coordinator runs it: cancel it there */
		if (PQtransactionStatus(conn) == PQTRANS_ACTIVE)
		{
			PGcancel   *cancel = PQgetCancel(conn);
			char		errbuf[256];

			if (cancel != NULL)
			{
				(void) PQcancel(cancel, errbuf, sizeof(errbuf));
				PQfreeCancel(cancel);
			}
		}
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	PQfinish(conn);
}

/* add_partitions, alter_topic: not in cluster mode yet (the copies would differ) */
void
ClusterRefuseDDL(const char *what)
{
	if (!ClusterEnabled() || materialize_id != 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s is not supported in cluster mode yet", what),
			 errdetail("Each replica holds its own copy of the topic, and the coordinator does not carry this change to them."),
			 errhint("Create a new topic with the partitions and config you need.")));
}

/* create_topic in cluster mode: record the topic in the coordinator. */
bool
ClusterCreateTopic(const char *name, int32 partitions, int32 rf, Jsonb *config)
{
	const char *params[5];

	if (!ClusterEnabled() || materialize_id != 0)
		return false;
	params[0] = commitlog_cluster;
	params[1] = name;
	params[2] = psprintf("%d", partitions);
	params[3] = psprintf("%d", rf);
	params[4] = JsonbToCString(NULL, &config->root, VARSIZE(config));
	coordinator_call("SELECT commitlog.cluster_create_topic($1, $2, $3, $4, $5)", 5, params);
	return true;
}

/* drop_topic in cluster mode: mark the topic for removal everywhere. */
bool
ClusterDropTopic(const char *name)
{
	const char *params[2];

	Oid			relid;

	if (!ClusterEnabled() || materialize_id != 0)
		return false;

	/*
	 * As for a local topic: the owner of the topic's table (this broker's
	 * copy, which the worker made as a superuser), or a superuser.
	 */
	relid = get_relname_relid(name, TopicSchemaOid(false));
	if (OidIsValid(relid) ? !pg_class_ownercheck(relid, GetUserId()) : !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of topic \"%s\"", name),
				 errdetail("In cluster mode, dropping a topic needs ownership of its copy commitlog_topics.%s on this broker, or superuser.",
						   quote_identifier(name)),
				 errhint("Ask the owner, or a superuser, to do it.")));
	params[0] = commitlog_cluster;
	params[1] = name;
	coordinator_call("SELECT commitlog.cluster_drop_topic($1, $2)", 2, params);
	return true;
}

/*
 * The not-leader error (Kafka's NOT_LEADER_OR_FOLLOWER): this broker does
 * not lead the partition (partition -1: the topic has no copy here at all).
 * The assignment is this broker's copy of the coordinator's, refreshed each
 * worker cycle; a partition not in it is not clustered and passes.
 */
void
ClusterCheckLeader(const char *topic, int32 topic_id, int32 partition)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		args[2];
	int			nestlevel;
	bool		isnull;
	int32		leader;
	int32		found_partition;
	bool		alive;
	bool		assigned;
	bool		mine;
	int32		epoch;
	char	   *conninfo;

	if (!ClusterEnabled())
		return;
	if (partition >= 0 && checked_lxid == MyProc->lxid && checked_topic == topic_id &&
		bms_is_member(partition, checked_partitions))
		return;

	nestlevel = CatalogBegin();
	args[0] = CStringGetTextDatum(topic);
	args[1] = Int32GetDatum(partition);
	if (partition < 0)
		CatalogRead("SELECT a.leader, b.conninfo, a.partition, COALESCE(b.alive, true), "
					"a.replicas IS NOT NULL, false, a.leader_epoch FROM commitlog.cluster_assignments a "
					"LEFT JOIN commitlog.cluster_brokers b ON b.broker_id = a.leader "
					"WHERE a.topic = $1 AND $2 < 0 "
					"AND NOT EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.name = $1) "
					"ORDER BY a.partition LIMIT 1", 2, argtypes, args, 1);
	else

		/*
		 * This broker leads only once it took the partition over at the
		 * current leader epoch (cluster_failover.c), and only with a copy
		 * of the assignment made since the server started: a returning
		 * old leader's copy still says it leads.
		 */
		CatalogRead("SELECT a.leader, b.conninfo, a.partition, COALESCE(b.alive, true), "
					"a.replicas IS NOT NULL, "
					"a.leader IS NOT DISTINCT FROM pg_catalog.current_setting('commitlog.broker_id')::int, "
					"a.leader_epoch "
					"FROM commitlog.cluster_assignments a "
					"LEFT JOIN commitlog.cluster_brokers b ON b.broker_id = a.leader "
					"WHERE a.topic = $1 AND a.partition = $2 "
					"AND NOT COALESCE(a.leader = pg_catalog.current_setting('commitlog.broker_id')::int "
					"  AND a.leader_epoch = COALESCE((SELECT e.leader_epoch FROM commitlog.replica_epochs e "
					"    WHERE e.topic_id = a.topic_id AND e.partition = a.partition), 0) "
					"  AND EXISTS (SELECT 1 FROM commitlog.cluster_brokers m "
					"    WHERE m.synced_at > pg_catalog.pg_postmaster_start_time()), false)",
					2, argtypes, args, 1);
	if (SPI_processed == 0)
	{
		CatalogEnd(nestlevel);
		if (partition >= 0)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			if (checked_lxid != MyProc->lxid || checked_topic != topic_id)
			{
				bms_free(checked_partitions);
				checked_partitions = NULL;
				checked_lxid = MyProc->lxid;
				checked_topic = topic_id;
			}
			checked_partitions = bms_add_member(checked_partitions, partition);
			MemoryContextSwitchTo(old);
		}
		return;
	}
	leader = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		leader = -1;
	conninfo = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	found_partition = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	alive = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	assigned = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	mine = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	epoch = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));
	conninfo = conninfo ? pstrdup(conninfo) : NULL;
	CatalogEnd(nestlevel);

	if (leader < 0 && !assigned)
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_NOT_LEADER),
				 errmsg("partition %d of topic \"%s\" has no leader yet", found_partition, topic),
				 errdetail("The controller has not assigned its replicas yet; replication setup is asynchronous."),
				 errhint("Retry in a moment; commitlog.partition_list shows the leader once it is assigned.")));
	/* no unclean election: a partition whose in-sync replicas are all down waits */
	if (leader < 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_NOT_LEADER),
				 errmsg("partition %d of topic \"%s\" has no leader", found_partition, topic),
				 errdetail("Its leader's broker is not alive and no in-sync replica is alive to take over; "
						   "electing a replica that is not in sync could lose acknowledged records."),
				 errhint("Restart a broker of the partition's isr (commitlog.partition_list); its records are kept. "
						 "The topic setting unclean.leader.election.enable allows electing any replica.")));
	if (mine)
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_NOT_LEADER),
				 errmsg("broker %d is taking over partition %d of topic \"%s\"",
						commitlog_broker_id, found_partition, topic),
				 errdetail("It was elected leader at leader epoch %d, or has just restarted; its worker takes the partition over in its next cycle.",
						   epoch),
				 errhint("Retry in a moment.")));
	if (!alive)
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_NOT_LEADER),
				 errmsg("the leader of partition %d of topic \"%s\", broker %d, is not alive",
						found_partition, topic, leader),
				 errdetail("The controller elects a new leader from the partition's in-sync replicas."),
				 errhint("Retry in a moment; this error then names the new leader (commitlog.partition_list shows it).")));
	ereport(ERROR,
			(errcode(ERRCODE_COMMITLOG_NOT_LEADER),
			 errmsg("broker %d is not the leader of partition %d of topic \"%s\"",
					commitlog_broker_id, found_partition, topic),
			 errdetail("Records are produced on the partition's leader and replicated to its followers."),
			 errhint("The leader is broker %d (%s).", leader,
					 conninfo ? conninfo : "its conninfo is not known yet")));
}

/*
 * Keyless records (produce.c's round-robin): the first partition from
 * candidate on, cyclically, that this broker leads, so that round-robin
 * stays on this broker's partitions; candidate when it leads none (the
 * leader check then names the leader).
 */
int32
ClusterLedPartition(const Topic *topic, int32 candidate)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT4OID};
	Datum		args[3];
	int			nestlevel;
	bool		isnull;
	int32		partition = candidate;

	if (!ClusterEnabled())
		return candidate;
	nestlevel = CatalogBegin();
	args[0] = Int32GetDatum(topic->id);
	args[1] = Int32GetDatum(candidate);
	args[2] = Int32GetDatum(topic->partitions);
	CatalogRead("SELECT a.partition FROM commitlog.cluster_assignments a "
				"WHERE a.topic_id = $1 AND a.partition < $3 "
				"AND a.leader = pg_catalog.current_setting('commitlog.broker_id')::int "
				"ORDER BY (a.partition - $2 + $3) % $3 LIMIT 1", 3, argtypes, args, 1);
	if (SPI_processed == 1)
		partition = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	CatalogEnd(nestlevel);
	return partition;
}

/*
 * The follower's readable end: the watermark its leader last replicated
 * (the high watermark: what every in-sync replica holds).  The leader
 * writes it after every record below it has committed, and the apply
 * worker applies in commit order, so every record below it is here; the
 * caller takes its snapshot after this.  A leader with followers reads its
 * own published row: it serves no record above the high watermark either.
 */
bool
ClusterFollowerEnd(const Topic *topic, int32 partition, OffsetsEnd *end)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(topic->id), Int32GetDatum(partition)};
	int			nestlevel;
	bool		isnull;
	bool		replica;
	bool		leader;
	bool		synced;
	int64		stable = 0;
	int64		log_end;

	if (!ClusterEnabled())
		return false;
	nestlevel = CatalogBegin();
	/* a leader with followers serves up to the high watermark it publishes */
	CatalogRead("SELECT w.stable_offset, "
				"pg_catalog.current_setting('commitlog.broker_id')::int = ANY (a.replicas), "
				"a.leader, b.conninfo, "
				/* both tables past their initial copy (ready) in the subscription */
				"(SELECT pg_catalog.count(*) = 2 FROM pg_catalog.pg_subscription s "
				"  JOIN pg_catalog.pg_subscription_rel r ON r.srsubid = s.oid "
				"  WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d "
				"                     WHERE d.datname = pg_catalog.current_database()) "
				"  AND s.subname = pg_catalog.format('commitlog_b%s_to_b%s', a.leader, "
				"      pg_catalog.current_setting('commitlog.broker_id')) "
				"  AND r.srsubstate = 'r' "
				"  AND r.srrelid IN ('commitlog.replica_watermarks'::pg_catalog.regclass, "
				"      pg_catalog.to_regclass(pg_catalog.format('commitlog_topics.%I', "
				"      pg_catalog.format('t%s$p%s', a.topic_id, a.partition))))), "
				"(SELECT p.log_start_offset FROM commitlog.partitions p "
				"  WHERE p.topic_id = a.topic_id AND p.partition = a.partition), "
				"a.leader IS NOT DISTINCT FROM pg_catalog.current_setting('commitlog.broker_id')::int "
				"FROM commitlog.cluster_assignments a "
				"LEFT JOIN commitlog.replica_watermarks w ON w.leader_id = a.leader "
				"AND w.topic_id = a.topic_id AND w.partition = a.partition "
				"LEFT JOIN commitlog.cluster_brokers b ON b.broker_id = a.leader "
				"WHERE a.topic_id = $1 AND a.partition = $2 "
				"AND (a.leader IS DISTINCT FROM pg_catalog.current_setting('commitlog.broker_id')::int "
				"OR pg_catalog.cardinality(a.replicas) > 1)",
				2, argtypes, args, 1);
	if (SPI_processed == 0)
	{
		CatalogEnd(nestlevel);
		return false;
	}
	replica = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull || !replica)
	{
		char	   *leader = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
		char	   *conninfo = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);

		/* the local copy of a partition hosted elsewhere stays empty */
		ereport(ERROR,
				(errcode(ERRCODE_COMMITLOG_NOT_LEADER),
				 errmsg("broker %d holds no replica of partition %d of topic \"%s\"",
						commitlog_broker_id, partition, topic->name),
				 errdetail("Its replicas are on other brokers of the cluster."),
				 errhint("Read it on its leader, broker %s (%s), or on one of its followers.",
						 leader ? leader : "?", conninfo ? conninfo : "its conninfo is not known yet")));
	}
	stable = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || stable < 0)
		stable = 0;
	leader = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));
	if (leader)
	{
		/* records between the HW and the log end exist: not out of range */
		CatalogEnd(nestlevel);
		end->stable = Min(end->stable, stable);
		return true;
	}
	log_end = stable;

	/*
	 * While the subscription still copies the partition or the watermarks
	 * (a new subscription, or a table added by REFRESH PUBLICATION), each
	 * table is synced on its own, so the watermark can be ahead of the
	 * records here: serve nothing yet (reading would skip the missing
	 * records as gaps), and keep offsets up to the watermark in range.
	 */
	synced = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	if (isnull || !synced)
	{
		int64		log_start = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 6, &isnull));
		Datum		earlier;

		if (isnull)
			log_start = 0;
		stable = Min(stable, log_start);

		/*
		 * After a failover, until the new leader's copy is done: what an
		 * earlier leader made readable here is still here (a failover
		 * truncates only above it), so keep serving it rather than going
		 * back to nothing (readers would be told their offset is out of
		 * range).  Not past this copy's own last record, though: after an
		 * unclean election truncated it below that watermark, the offsets
		 * between are the new leader's to fill.  Read only here, off the
		 * path of a synced follower's fetch.
		 */
		CatalogRead(psprintf("SELECT (SELECT pg_catalog.max(o.stable_offset) FROM commitlog.replica_watermarks o "
							 "  WHERE o.topic_id = $1 AND o.partition = $2 "
							 "  AND o.leader_id IS DISTINCT FROM (SELECT a.leader FROM commitlog.cluster_assignments a "
							 "    WHERE a.topic_id = $1 AND a.partition = $2)), "
							 "(SELECT COALESCE(pg_catalog.max(log_offset) + 1, 0) FROM commitlog_topics.%s)",
							 quote_identifier(psprintf("t%d$p%d", topic->id, partition))),
					2, argtypes, args, 1);
		earlier = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			int64		own_end = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
															   SPI_tuptable->tupdesc, 2, &isnull));

			stable = Max(stable, Min(DatumGetInt64(earlier), Max(log_start, own_end)));
		}
		log_end = Max(log_end, stable);
	}
	CatalogEnd(nestlevel);
	end->stable = stable;
	end->log_end = log_end;
	end->reserved_end = log_end;
	end->awaiting_flush = false;
	return true;
}

/*
 * A long poll on a follower: no producer here wakes the reader, so sleep a
 * little and let the caller re-read the watermark.  False on a leader
 * without followers (it is woken by its producers).
 */
bool
ClusterFollowerWait(const Topic *topic, int32 partition, long timeout_ms)
{
	OffsetsEnd	end;

	if (!ClusterFollowerEnd(topic, partition, &end))
		return false;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Min(timeout_ms, CLUSTER_FOLLOWER_POLL_MS), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return true;
}

/*
 * A leader created a segment: raise the segment end it replicates, in the
 * same transaction, so that followers create it before any record in it
 * arrives.  Inside SPI (TopicCreateSegment).
 */
void
ClusterSegmentCreated(int32 topic_id, int32 partition, int64 end)
{
	Oid			argtypes[4] = {INT4OID, INT4OID, INT8OID, INT4OID};
	Datum		args[4];

	if (!ClusterEnabled())
		return;
	args[0] = Int32GetDatum(topic_id);
	args[1] = Int32GetDatum(partition);
	args[2] = Int64GetDatum(end);
	args[3] = Int32GetDatum(commitlog_broker_id);
	(void) CatalogExec("UPDATE commitlog.replica_watermarks "
					   "SET segment_end = GREATEST(segment_end, $3), updated_at = pg_catalog.now() "
					   "WHERE leader_id = $4 AND topic_id = $1 AND partition = $2",
					   4, argtypes, args, NULL);
}

/*
 * Trigger on commitlog.replica_watermarks, enabled only for replication
 * (ENABLE REPLICA): in the apply worker, before a leader's watermark row is
 * stored, create the local segments up to its segment end, so that the
 * records that follow in the stream find a segment to go to.
 */
Datum
replica_watermark_applied(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	int32		topic_id;
	int32		partition;
	int64		segment_end;
	int64		last_end;
	int64		log_start;
	char	   *name;
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3];
	int			nestlevel;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "replica_watermark_applied must run as a row trigger on insert or update");
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = trigdata->tg_relation->rd_att;
	topic_id = DatumGetInt32(heap_getattr(tuple, 2, desc, &isnull));
	partition = DatumGetInt32(heap_getattr(tuple, 3, desc, &isnull));
	log_start = DatumGetInt64(heap_getattr(tuple, 5, desc, &isnull));
	segment_end = DatumGetInt64(heap_getattr(tuple, 6, desc, &isnull));

	nestlevel = CatalogBegin();
	args[0] = Int32GetDatum(topic_id);
	args[1] = Int32GetDatum(partition);
	CatalogRead("SELECT t.name, (SELECT pg_catalog.max(s.end_offset) FROM commitlog.segments s "
				"WHERE s.topic_id = t.id AND s.partition = $2) "
				"FROM commitlog.topics t WHERE t.id = $1 AND $2 < t.partitions",
				2, argtypes, args, 1);
	if (SPI_processed == 1)
	{
		name = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		last_end = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (!isnull && last_end < segment_end)
			TopicCreateSegment(name, topic_id, partition, last_end, segment_end);

		/*
		 * The leader's retention raised its log start offset: so does this
		 * copy, and the worker here drops the segments wholly below it.
		 */
		args[2] = Int64GetDatum(log_start);
		(void) CatalogExec("UPDATE commitlog.partitions SET log_start_offset = $3 "
						   "WHERE topic_id = $1 AND partition = $2 AND log_start_offset < $3",
						   3, argtypes, args, NULL);
	}
	CatalogEnd(nestlevel);
	return PointerGetDatum(tuple);
}
