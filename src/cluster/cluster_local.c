/*-------------------------------------------------------------------------
 *
 * cluster_local.c
 *		Make this broker match its copy of the cluster's assignment.
 *
 * Run by the worker each cycle after the copy was refreshed.  Steps, each
 * in its own transaction or on a loopback connection, all idempotent so
 * that a failed step is simply done again next cycle:
 *
 *	1. materialize: create the local copy of every topic that has a
 *	   partition this broker hosts (create_topic under the cluster-wide id,
 *	   so the internal names t<id>$p<n> match on every replica);
 *	2. publish: for each follower F of a partition this broker leads, the
 *	   publication commitlog_b<me>_to_b<F> lists those partition tables
 *	   (publish_via_partition_root: the follower routes rows into its own
 *	   segments) and this broker's rows of commitlog.replica_watermarks.
 *	   A dropped topic's partitions leave the publications in the same
 *	   transaction that writes their watermark tombstone (stable_offset -1);
 *	3. watermarks: the stable offset and log start offset of every
 *	   partition it leads, when they moved;
 *	4. subscribe: one subscription commitlog_b<L>_to_b<me> per leader L of
 *	   a partition it follows; REFRESH PUBLICATION when the leader has
 *	   published tables the subscription lacks; DROP SUBSCRIPTION (and with
 *	   it the slot on L) once it follows nothing of L's.  CREATE/DROP
 *	   SUBSCRIPTION cannot run in a transaction block: a loopback libpq
 *	   connection runs them;
 *	5. drop: the local copy of a dropped topic, once every partition it
 *	   follows has its tombstone here (so no record of it is still on the
 *	   way) or no subscription to its leader exists; then it tells the
 *	   coordinator (dropped_on), and the controller forgets the topic.
 *
 * Why one publication per (leader, follower) pair rather than one per
 * leader: a subscription receives every table of its publication, and the
 * apply worker stops at a table the follower does not have; with one
 * publication per leader, every follower would need a copy of every
 * partition the leader leads.  The number of slots, walsenders and apply
 * workers is the same: one per (follower, leader) pair.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "bgworker/bgworker.h"
#include "cluster/cluster.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

/* at most one REFRESH PUBLICATION round per this many ms */
#define CLUSTER_REFRESH_MS		1000

static TimestampTz last_refresh = 0;

/* Column i of row r of SPI_tuptable as text (NULL stays NULL), copied. */
char *
ClusterSpiText(uint64 r, int i)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, i);

	return v ? pstrdup(v) : NULL;
}

int32
ClusterSpiInt(uint64 r, int i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, i, &isnull);

	return isnull ? -1 : DatumGetInt32(d);
}

/* Run a statement as the worker (a superuser); error on failure. */
void
ClusterSpiRun(const char *sql)
{
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "pg_commitlog cluster statement failed: %s", sql);
}

uint64
ClusterSpiQuery(const char *sql)
{
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_commitlog cluster query failed: %s", sql);
	return SPI_processed;
}

/*
 * Run the statements a query generates: every non-null column of every
 * row, in order.  All are read before any runs, since running one replaces
 * SPI_tuptable.
 */
void
ClusterSpiRunGenerated(const char *query)
{
	uint64		n = ClusterSpiQuery(query);
	List	   *stmts = NIL;
	ListCell   *lc;

	for (uint64 i = 0; i < n; i++)
		for (int c = 1; c <= SPI_tuptable->tupdesc->natts; c++)
		{
			char	   *sql = ClusterSpiText(i, c);

			if (sql != NULL)
				stmts = lappend(stmts, sql);
		}
	foreach(lc, stmts)
		ClusterSpiRun(lfirst(lc));
}

/* Call a topic function on the local copy of cluster topic topic_id. */
static void
local_topic_call(int32 topic_id, const char *sql)
{
	ClusterSetMaterializeId(topic_id);
	PG_TRY();
	{
		ClusterSpiRun(sql);
	}
	PG_FINALLY();
	{
		ClusterSetMaterializeId(0);
	}
	PG_END_TRY();
}

/* Step 1: a local copy of each topic with a partition hosted here. */
static void
reconcile_materialize(void)
{
	uint64		n;

	ClusterXactBegin("pg_commitlog: creating local copies of cluster topics");
	n = ClusterSpiQuery(psprintf("SELECT DISTINCT a.topic_id, a.topic, a.partitions, a.replication_factor, a.config, "
						   "EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.name = a.topic) "
						   "FROM commitlog.cluster_assignments a "
						   "WHERE NOT a.deleting AND %d = ANY (a.replicas) "
						   "AND NOT EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.id = a.topic_id) "
						   "ORDER BY 1", commitlog_broker_id));
	if (n > 0)
	{
		SPITupleTable *rows = SPI_tuptable;

		for (uint64 i = 0; i < n; i++)
		{
			int32		id;
			char	   *name;

			SPI_tuptable = rows;
			id = ClusterSpiInt(i, 1);
			name = ClusterSpiText(i, 2);
			if (strcmp(ClusterSpiText(i, 6), "t") == 0)
			{
				ereport(WARNING,
						(errmsg("pg_commitlog: cannot host cluster topic \"%s\": a local topic has its name", name),
						 errhint("Drop or rename the local topic on broker %d.", commitlog_broker_id)));
				continue;
			}
			local_topic_call(id, psprintf("SELECT commitlog.create_topic(%s, %s, %s, %s::jsonb)",
										  quote_literal_cstr(name), ClusterSpiText(i, 3), ClusterSpiText(i, 4),
										  quote_literal_cstr(ClusterSpiText(i, 5))));
			ereport(LOG,
					(errmsg("pg_commitlog: broker %d created its copy of topic \"%s\" (id %d)",
							commitlog_broker_id, name, id)));
		}
	}
	ClusterXactEnd();
}

/* Step 2: the publications of the partitions this broker leads. */
static void
reconcile_publish(void)
{
	int			me = commitlog_broker_id;
	const char *desired;

	ClusterXactBegin("pg_commitlog: publishing led partitions");

	/* tombstones first: a dropped topic's partitions led here */
	ClusterSpiRun(psprintf("INSERT INTO commitlog.replica_watermarks AS w "
					 "(leader_id, topic_id, partition, stable_offset, log_start_offset, segment_end) "
					 "SELECT %d, a.topic_id, a.partition, -1, 0, 0 FROM commitlog.cluster_assignments a "
					 "WHERE a.deleting AND a.leader = %d "
					 "AND EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.id = a.topic_id) "
					 "ON CONFLICT (leader_id, topic_id, partition) DO UPDATE SET stable_offset = -1 "
					 "WHERE w.stable_offset <> -1", me, me));

	/*
	 * (follower, table) pairs that should be published.  After a failover
	 * (epoch above 0) a table goes to a follower only once the leader knows
	 * where the follower's copy ends (commitlog.replica_followers,
	 * cluster_failover.c), and with a row filter from there: the
	 * subscription's initial copy then brings just what it lacks.
	 */
	desired = psprintf("SELECT f.b AS follower, a.topic_id, a.partition, "
					   "pg_catalog.format('t%%s$p%%s', a.topic_id, a.partition) AS relname, "
					   "CASE WHEN a.leader_epoch > 0 THEN ' WHERE (log_offset >= ' || "
					   "  (SELECT r.from_offset FROM commitlog.replica_followers r WHERE r.topic_id = a.topic_id "
					   "   AND r.partition = a.partition AND r.follower = f.b AND r.leader_epoch = a.leader_epoch) || ')' "
					   "  ELSE '' END AS filter "
					   "FROM commitlog.cluster_assignments a "
					   "CROSS JOIN LATERAL pg_catalog.unnest(a.replicas) f(b) "
					   "WHERE a.leader = %d AND NOT a.deleting AND f.b <> %d "
					   "AND EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.id = a.topic_id)", me, me);

	/* publications to create */
	ClusterSpiRunGenerated(psprintf("SELECT DISTINCT pg_catalog.format('CREATE PUBLICATION %%I "
							   "FOR TABLE commitlog.replica_watermarks WHERE (leader_id = %%s) "
							   "WITH (publish = ''insert, update, delete'', publish_via_partition_root = true)', "
							   "pg_catalog.format('commitlog_b%%s_to_b%%s', %d, d.follower), %d) "
							   "FROM (%s) d "
							   "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication p "
							   "WHERE p.pubname = pg_catalog.format('commitlog_b%%s_to_b%%s', %d, d.follower))",
							   me, me, desired, me));

	/* tables to add, each with its watermark row in the same transaction */
	ClusterSpiRunGenerated(psprintf("SELECT pg_catalog.format('INSERT INTO commitlog.replica_watermarks "
							   "(leader_id, topic_id, partition, stable_offset, log_start_offset, segment_end) "
							   "SELECT %%s, %%s, %%s, 0, 0, pg_catalog.max(s.end_offset) FROM commitlog.segments s "
							   "WHERE s.topic_id = %%s AND s.partition = %%s ON CONFLICT DO NOTHING', "
							   "%d, d.topic_id, d.partition, d.topic_id, d.partition), "
							   "pg_catalog.format('ALTER PUBLICATION %%I ADD TABLE commitlog_topics.%%I%%s', "
							   "pg_catalog.format('commitlog_b%%s_to_b%%s', %d, d.follower), d.relname, d.filter) "
							   "FROM (%s) d "
							   "WHERE d.filter IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication p "
							   "JOIN pg_catalog.pg_publication_rel r ON r.prpubid = p.oid "
							   "WHERE p.pubname = pg_catalog.format('commitlog_b%%s_to_b%%s', %d, d.follower) "
							   "AND r.prrelid = pg_catalog.to_regclass(pg_catalog.format('commitlog_topics.%%I', d.relname)))",
							   me, me, desired, me));

	/* tables to remove: published here but no longer wanted */
	ClusterSpiRunGenerated(psprintf(CLUSTER_UNPUBLISH_SQL
							   "AND c.relnamespace = 'commitlog_topics'::pg_catalog.regnamespace "
							   "AND NOT EXISTS (SELECT 1 FROM (%s) d WHERE d.relname = c.relname "
							   "AND p.pubname = pg_catalog.format('commitlog_b%%s_to_b%%s', %d, d.follower))",
							   me, desired, me));

	/*
	 * Slots of pairs with no partition left in common, not in use: left by
	 * a follower that dropped its subscription while this broker was
	 * unreachable (SET slot_name = NONE); a slot keeps WAL forever.  Once
	 * the coordinator forgot the topics, the follower needs nothing more.
	 * While they share a partition, whoever leads it, the slot stays: a
	 * leaderless partition may come back to this broker, and a follower
	 * that never saw it leaderless still streams from that slot.  Slots
	 * a failover left behind are dropped by their followers
	 * (reconcile_orphans).
	 */
	ClusterSpiRunGenerated(psprintf("SELECT pg_catalog.format('SELECT pg_catalog.pg_drop_replication_slot(%%L)', "
							   "s.slot_name) FROM pg_catalog.pg_replication_slots s "
							   "WHERE s.slot_name LIKE 'commitlog\\_b%d\\_to\\_b%%' AND NOT s.active "
							   "AND s.database = pg_catalog.current_database() "
							   "AND NOT EXISTS (SELECT 1 FROM commitlog.cluster_assignments a "
							   "  CROSS JOIN LATERAL pg_catalog.unnest(a.replicas) f(b) "
							   "  WHERE %d = ANY (a.replicas) AND f.b <> %d "
							   "  AND s.slot_name = pg_catalog.format('commitlog_b%%s_to_b%%s', %d, f.b))",
							   me, me, me, me));

	/* publications nobody needs: no table, no follower, no slot left */
	ClusterSpiRunGenerated(psprintf("SELECT pg_catalog.format('DROP PUBLICATION %%I', p.pubname) "
							   "FROM pg_catalog.pg_publication p "
							   "WHERE p.pubname LIKE 'commitlog\\_b%d\\_to\\_b%%' "
							   "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r "
							   "  JOIN pg_catalog.pg_class c ON c.oid = r.prrelid "
							   "  WHERE r.prpubid = p.oid AND c.relnamespace = 'commitlog_topics'::pg_catalog.regnamespace) "
							   "AND NOT EXISTS (SELECT 1 FROM (%s) d "
							   "  WHERE p.pubname = pg_catalog.format('commitlog_b%%s_to_b%%s', %d, d.follower)) "
							   "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = p.pubname)",
							   me, desired, me));
	ClusterXactEnd();
}

/* Step 3: the watermarks of the partitions this broker leads. */
static void
reconcile_watermarks(void)
{
	uint64		n;
	SPITupleTable *rows;

	ClusterXactBegin("pg_commitlog: replicating watermarks");
	n = ClusterSpiQuery(psprintf("SELECT t.name, w.topic_id, w.partition, w.stable_offset, p.log_start_offset, "
						   "w.log_start_offset "
						   "FROM commitlog.replica_watermarks w "
						   "JOIN commitlog.topics t ON t.id = w.topic_id "
						   "JOIN commitlog.partitions p ON p.topic_id = w.topic_id AND p.partition = w.partition "
						   "WHERE w.leader_id = %d AND w.stable_offset >= 0 "
						   /* led here, and taken over at the current epoch (cluster_failover.c) */
						   "AND EXISTS (SELECT 1 FROM commitlog.cluster_assignments a "
						   "  LEFT JOIN commitlog.replica_epochs e ON e.topic_id = a.topic_id AND e.partition = a.partition "
						   "  WHERE a.topic_id = w.topic_id AND a.partition = w.partition AND a.leader = w.leader_id "
						   "  AND a.leader_epoch = COALESCE(e.leader_epoch, 0))",
						   commitlog_broker_id));
	rows = SPI_tuptable;
	for (uint64 i = 0; i < n; i++)
	{
		Topic	   *topic;
		OffsetsPartitionKey key;
		OffsetsEnd	end;
		int64		seen;
		int64		log_start;
		int64		hw;
		bool		isnull;

		SPI_tuptable = rows;
		seen = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 4, &isnull));
		log_start = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 5, &isnull));
		topic = TopicOpen(ClusterSpiText(i, 1), AccessShareLock);
		key = TopicPartitionKey(topic, ClusterSpiInt(i, 3));
		end = OffsetsGetEnd(&key);
		/* with followers, they may serve (and this broker) only up to the HW */
		hw = ClusterIsrUpdate(ClusterSpiInt(i, 2), ClusterSpiInt(i, 3), end.stable, seen);
		SPI_tuptable = rows;
		if (hw == seen &&
			log_start == DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 6, &isnull)))
			continue;
		ClusterSpiRun(psprintf("UPDATE commitlog.replica_watermarks SET stable_offset = " INT64_FORMAT
						 ", log_start_offset = " INT64_FORMAT ", updated_at = pg_catalog.now() "
						 "WHERE leader_id = %d AND topic_id = %d AND partition = %d",
						 hw, log_start, commitlog_broker_id, ClusterSpiInt(i, 2), ClusterSpiInt(i, 3)));
	}
	ClusterXactEnd();
}

/* Run sql on the loopback session; false (with a WARNING) if it failed. */
static bool
loopback_run(PGconn *conn, const char *sql)
{
	char	   *error = BgworkerLoopbackExec(conn, sql);

	if (error != NULL)
		ereport(WARNING,
				(errmsg("pg_commitlog: \"%s\" failed: %s", sql, error)));
	return error == NULL;
}

/*
 * Does the leader at conninfo have the publication yet?  If so, drop an
 * unused slot of the same name there: this broker has no subscription of
 * that name, so the slot is an orphan (a subscription dropped while the
 * leader was unreachable, a CREATE SUBSCRIPTION cut short), and CREATE
 * SUBSCRIPTION would fail on it every cycle.
 */
/* A connection to another broker, or NULL; one that stops answering must not hold the worker long. */
static PGconn *
broker_connect(const char *conninfo)
{
	const char *keys[] = {"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
	"tcp_user_timeout", "dbname", "connect_timeout", "options", NULL};
	const char *vals[] = {"1", "10", "5", "3", "30000", conninfo, "5", "-c statement_timeout=10s", NULL};
	PGconn	   *conn = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(conn) == CONNECTION_OK)
		return conn;
	PQfinish(conn);
	return NULL;
}

/*
 * Drop our pair's slot on another broker unless it is in use; false if
 * that broker could not be asked.
 */
static bool
drop_remote_slot(PGconn *conn, const char *slot, const char *whose)
{
	const char *params[1] = {slot};
	PGresult   *res = PQexecParams(conn, "SELECT pg_catalog.pg_drop_replication_slot(s.slot_name) "
								   "FROM pg_catalog.pg_replication_slots s "
								   "WHERE s.slot_name = $1 AND NOT s.active",
								   1, NULL, params, NULL, NULL, 0);
	bool		ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	if (ok && PQntuples(res) == 1)
		ereport(LOG,
				(errmsg("pg_commitlog: broker %d dropped its orphaned replication slot \"%s\" on %s",
						commitlog_broker_id, slot, whose)));
	PQclear(res);
	return ok;
}

static bool
leader_has_publication(const char *conninfo, const char *pubname)
{
	const char *params[1] = {pubname};
	PGconn	   *conn = broker_connect(conninfo);
	PGresult   *res;
	bool		found;

	if (conn == NULL)
		return false;
	res = PQexecParams(conn, "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
					   1, NULL, params, NULL, NULL, 0);
	found = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	PQclear(res);
	if (found)
		(void) drop_remote_slot(conn, pubname, "its leader");
	PQfinish(conn);
	return found;
}

/*
 * Slots this broker left on others: a subscription dropped while its
 * leader was unreachable (a failover) keeps its slot there, holding WAL.
 * Drop each once its broker answers, unless this broker subscribed again
 * under that name (the slot is then in use again).
 */
static void
reconcile_orphans(void)
{
	List	   *names = NIL;
	List	   *conninfos = NIL;
	List	   *done = NIL;
	ListCell   *lc;
	ListCell   *lc2;
	MemoryContext outer = CurrentMemoryContext;
	uint64		n;

	ClusterXactBegin("pg_commitlog: dropping slots left on other brokers");
	ClusterSpiRun(psprintf("DELETE FROM commitlog.replica_orphan_slots o WHERE EXISTS (SELECT 1 "
						   "FROM pg_catalog.pg_subscription s WHERE s.subdbid = %u AND s.subname = o.slot_name)",
						   MyDatabaseId));
	n = ClusterSpiQuery("SELECT slot_name, conninfo FROM commitlog.replica_orphan_slots ORDER BY 1");
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext cxt = MemoryContextSwitchTo(outer);

		names = lappend(names, ClusterSpiText(i, 1));
		conninfos = lappend(conninfos, ClusterSpiText(i, 2));
		MemoryContextSwitchTo(cxt);
	}
	ClusterXactEnd();
	if (names == NIL)
		return;

	forboth(lc, names, lc2, conninfos)
	{
		PGconn	   *conn = broker_connect(lfirst(lc2));

		if (conn == NULL)
			continue;
		if (drop_remote_slot(conn, lfirst(lc), "its former leader"))
			done = lappend(done, quote_literal_cstr(lfirst(lc)));
		PQfinish(conn);
	}
	if (done == NIL)
		return;
	ClusterXactBegin("pg_commitlog: dropping slots left on other brokers");
	foreach(lc, done)
		ClusterSpiRun(psprintf("DELETE FROM commitlog.replica_orphan_slots WHERE slot_name = %s",
							   (char *) lfirst(lc)));
	ClusterXactEnd();
}

/* The subscription commands step 4 needs, read in a transaction. */
typedef struct SubscriptionPlan
{
	List	   *create_names;
	List	   *create_conninfos;
	List	   *create_leaders;
	List	   *refresh;
	List	   *drop;
} SubscriptionPlan;

static SubscriptionPlan
plan_subscriptions(void)
{
	int			me = commitlog_broker_id;
	SubscriptionPlan plan = {NIL, NIL, NIL, NIL, NIL};
	const char *wanted;
	uint64		n;
	MemoryContext outer = CurrentMemoryContext;

	ClusterXactBegin("pg_commitlog: planning subscriptions");
	/*
	 * Leaders of partitions followed here whose local copy exists.  Not a
	 * dead leader of a topic being dropped: such a partition is not failed
	 * over, and a subscription kept for it would also keep the partitions
	 * that did fail over from their new leaders (it lists them, and cannot
	 * be refreshed while that leader is down).
	 */
	wanted = psprintf("SELECT DISTINCT a.leader, b.conninfo, "
					  "pg_catalog.format('commitlog_b%%s_to_b%%s', a.leader, %d) AS subname "
					  "FROM commitlog.cluster_assignments a "
					  "LEFT JOIN commitlog.cluster_brokers b ON b.broker_id = a.leader "
					  "WHERE %d = ANY (a.replicas) AND a.leader <> %d "
					  "AND NOT (a.deleting AND NOT COALESCE(b.alive, false)) "
					  "AND EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.id = a.topic_id)",
					  me, me, me);
	n = ClusterSpiQuery(psprintf("SELECT w.subname, w.conninfo, w.leader FROM (%s) w WHERE w.conninfo IS NOT NULL "
						   "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s "
						   "WHERE s.subname = w.subname AND s.subdbid = %u)", wanted, MyDatabaseId));
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext cxt = MemoryContextSwitchTo(outer);

		plan.create_names = lappend(plan.create_names, ClusterSpiText(i, 1));
		plan.create_conninfos = lappend(plan.create_conninfos, ClusterSpiText(i, 2));
		plan.create_leaders = lappend_int(plan.create_leaders, ClusterSpiInt(i, 3));
		MemoryContextSwitchTo(cxt);
	}
	n = ClusterSpiQuery(psprintf("SELECT s.subname FROM pg_catalog.pg_subscription s "
						   "WHERE s.subdbid = %u AND s.subname LIKE 'commitlog\\_b%%\\_to\\_b%d' "
						   "AND NOT EXISTS (SELECT 1 FROM (%s) w WHERE w.subname = s.subname)",
						   MyDatabaseId, me, wanted));
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext cxt = MemoryContextSwitchTo(outer);

		plan.drop = lappend(plan.drop, ClusterSpiText(i, 1));
		MemoryContextSwitchTo(cxt);
	}
	/*
	 * Subscriptions lacking a table of a live topic they should carry; and,
	 * after a failover, those still carrying a partition that another
	 * broker leads now or whose copy must first move to a new epoch: its
	 * old leader took it out of its publication, and a refresh drops it
	 * from the subscription, so that the next leader's filtered copy is
	 * made afresh (cluster_failover.c waits for that).
	 */
	n = ClusterSpiQuery(psprintf("SELECT DISTINCT s.subname FROM pg_catalog.pg_subscription s "
						   "JOIN commitlog.cluster_assignments a "
						   "  ON s.subname = pg_catalog.format('commitlog_b%%s_to_b%%s', a.leader, %d) "
						   "WHERE s.subdbid = %u AND NOT a.deleting AND %d = ANY (a.replicas) "
						   "AND EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.id = a.topic_id) "
						   "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel r "
						   "  WHERE r.srsubid = s.oid AND r.srrelid = pg_catalog.to_regclass("
						   "  pg_catalog.format('commitlog_topics.%%I', pg_catalog.format('t%%s$p%%s', a.topic_id, a.partition)))) "
						   "UNION "
						   "SELECT s.subname FROM pg_catalog.pg_subscription s "
						   "JOIN pg_catalog.pg_subscription_rel r ON r.srsubid = s.oid "
						   "JOIN commitlog.cluster_assignments a ON r.srrelid = pg_catalog.to_regclass("
						   "  pg_catalog.format('commitlog_topics.%%I', pg_catalog.format('t%%s$p%%s', a.topic_id, a.partition))) "
						   "LEFT JOIN commitlog.replica_epochs e ON e.topic_id = a.topic_id AND e.partition = a.partition "
						   "WHERE s.subdbid = %u AND s.subname LIKE 'commitlog\\_b%%\\_to\\_b%d' "
						   "AND (a.leader IS NULL OR a.leader_epoch > COALESCE(e.leader_epoch, 0) "
						   "  OR s.subname <> pg_catalog.format('commitlog_b%%s_to_b%%s', a.leader, %d))",
						   me, MyDatabaseId, me, MyDatabaseId, me, me));
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext cxt = MemoryContextSwitchTo(outer);

		plan.refresh = lappend(plan.refresh, ClusterSpiText(i, 1));
		MemoryContextSwitchTo(cxt);
	}
	ClusterXactEnd();
	return plan;
}

/* Step 4: this broker's subscriptions to its leaders. */
static void
reconcile_subscribe(void)
{
	SubscriptionPlan plan = plan_subscriptions();
	bool		refresh_due;
	PGconn	   *conn;
	ListCell   *lc;
	ListCell   *lc2;
	ListCell   *lc3;

	refresh_due = plan.refresh != NIL &&
		TimestampDifferenceExceeds(last_refresh, GetCurrentTimestamp(), CLUSTER_REFRESH_MS);
	if (plan.create_names == NIL && plan.drop == NIL && !refresh_due)
		return;

	conn = BgworkerLoopbackConnect("pg_commitlog cluster", "manage subscriptions");
	forthree(lc, plan.create_names, lc2, plan.create_conninfos, lc3, plan.create_leaders)
	{
		char	   *name = lfirst(lc);
		char	   *conninfo = lfirst(lc2);

		if (!leader_has_publication(conninfo, name))
			continue;			/* the leader publishes it in one of its next cycles */

		/*
		 * Watermark rows of this leader from an earlier subscription to it
		 * (it led before a failover): the new subscription's initial copy
		 * brings the current ones, and would fail on the old ones' keys.
		 */
		if (!loopback_run(conn, psprintf("DELETE FROM commitlog.replica_watermarks WHERE leader_id = %d "
										 "AND leader_id <> %d", lfirst_int(lc3), commitlog_broker_id)))
			continue;
		if (loopback_run(conn, psprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s "
										"WITH (slot_name = %s, copy_data = true, create_slot = true)",
										name, quote_literal_cstr(conninfo), name, name)))
			ereport(LOG,
					(errmsg("pg_commitlog: broker %d subscribed to its leader: %s",
							commitlog_broker_id, name)));
	}
	if (refresh_due)
	{
		last_refresh = GetCurrentTimestamp();
		foreach(lc, plan.refresh)
			(void) loopback_run(conn, psprintf("ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = true)",
											   quote_identifier(lfirst(lc))));
	}
	foreach(lc, plan.drop)
	{
		char	   *name = lfirst(lc);
		const char *sub = quote_identifier(name);

		if (loopback_run(conn, psprintf("DROP SUBSCRIPTION %s", sub)))
			ereport(LOG,
					(errmsg("pg_commitlog: broker %d dropped subscription %s and its slot",
							commitlog_broker_id, name)));
		/*
		 * Unreachable leader: remember its slots to drop them later.  Also
		 * those of table syncs not done (a copy cut short by the failover):
		 * DROP SUBSCRIPTION without a slot leaves them on the leader, where
		 * each would hold WAL for ever (named as PostgreSQL's
		 * ReplicationSlotNameForTablesync names them).
		 */
		else if (loopback_run(conn, psprintf("INSERT INTO commitlog.replica_orphan_slots (slot_name, conninfo) "
											 "SELECT s.subslotname, s.subconninfo FROM pg_catalog.pg_subscription s "
											 "WHERE s.subname = %s AND s.subslotname IS NOT NULL "
											 "UNION ALL SELECT pg_catalog.format('pg_%%s_sync_%%s_%%s', s.oid, r.srrelid, "
											 "  (SELECT c.system_identifier FROM pg_catalog.pg_control_system() c)), s.subconninfo "
											 "FROM pg_catalog.pg_subscription s "
											 "JOIN pg_catalog.pg_subscription_rel r ON r.srsubid = s.oid "
											 "WHERE s.subname = %s AND r.srsubstate NOT IN ('r', 's') "
											 "ON CONFLICT (slot_name) DO UPDATE SET conninfo = EXCLUDED.conninfo",
											 quote_literal_cstr(name), quote_literal_cstr(name))) &&
				 loopback_run(conn, psprintf("ALTER SUBSCRIPTION %s DISABLE", sub)) &&
				 loopback_run(conn, psprintf("ALTER SUBSCRIPTION %s SET (slot_name = NONE)", sub)) &&
				 loopback_run(conn, psprintf("DROP SUBSCRIPTION %s", sub)))
			ereport(LOG,
					(errmsg("pg_commitlog: broker %d dropped subscription %s, but its leader was unreachable",
							commitlog_broker_id, name),
					 errdetail("Its replication slot \"%s\" stays on the leader; this broker drops it once the leader answers.", name)));
	}
	PQfinish(conn);
}

/*
 * Step 5: drop the local copies of dropped topics once nothing of them can
 * still arrive, and tell the coordinator.
 */
static void
reconcile_drop(void)
{
	int			me = commitlog_broker_id;
	uint64		n;
	List	   *dropped = NIL;
	List	   *confirm = NIL;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;

	ClusterXactBegin("pg_commitlog: dropping local copies of dropped topics");
	ClusterSpiRun("SET LOCAL lock_timeout = '5s'");
	n = ClusterSpiQuery(psprintf("SELECT t.id, t.name FROM commitlog.topics t "
						   "WHERE t.id >= %d "
						   "AND (NOT EXISTS (SELECT 1 FROM commitlog.cluster_assignments a WHERE a.topic_id = t.id) "
						   "  OR EXISTS (SELECT 1 FROM commitlog.cluster_assignments a WHERE a.topic_id = t.id AND a.deleting)) "
						   /* no partition still waiting for its leader's tombstone */
						   "AND NOT EXISTS (SELECT 1 FROM commitlog.cluster_assignments a "
						   "  JOIN pg_catalog.pg_subscription s ON s.subdbid = %u "
						   "   AND s.subname = pg_catalog.format('commitlog_b%%s_to_b%%s', a.leader, %d) "
						   "  WHERE a.topic_id = t.id AND a.leader <> %d AND %d = ANY (a.replicas) "
						   "  AND NOT EXISTS (SELECT 1 FROM commitlog.replica_watermarks w "
						   "    WHERE w.leader_id = a.leader AND w.topic_id = a.topic_id "
						   "    AND w.partition = a.partition AND w.stable_offset = -1)) "
						   /* nor published here any more */
						   "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r "
						   "  JOIN pg_catalog.pg_class c ON c.oid = r.prrelid "
						   "  WHERE c.relnamespace = 'commitlog_topics'::pg_catalog.regnamespace "
						   "  AND c.relname LIKE 't' || t.id || '$p%%')",
						   CLUSTER_FIRST_TOPIC_ID, MyDatabaseId, me, me, me));
	if (n > 0)
	{
		SPITupleTable *rows = SPI_tuptable;

		for (uint64 i = 0; i < n; i++)
		{
			int32		id;
			char	   *name;

			SPI_tuptable = rows;
			id = ClusterSpiInt(i, 1);
			name = ClusterSpiText(i, 2);
			local_topic_call(id, psprintf("SELECT commitlog.drop_topic(%s)", quote_literal_cstr(name)));
			ereport(LOG,
					(errmsg("pg_commitlog: broker %d dropped its copy of topic \"%s\" (id %d)", me, name, id)));
			{
				MemoryContext cxt = MemoryContextSwitchTo(outer);

				dropped = lappend_int(dropped, id);
				MemoryContextSwitchTo(cxt);
			}
		}
	}
	/* dropped topics this broker hosts no copy of: confirm to the coordinator */
	n = ClusterSpiQuery(psprintf("SELECT DISTINCT a.topic_id FROM commitlog.cluster_assignments a "
						   "WHERE a.deleting AND %d = ANY (a.replicas) "
						   "AND NOT EXISTS (SELECT 1 FROM commitlog.topics t WHERE t.id = a.topic_id)", me));
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext cxt = MemoryContextSwitchTo(outer);

		confirm = lappend_int(confirm, ClusterSpiInt(i, 1));
		MemoryContextSwitchTo(cxt);
	}
	/* tombstones of topics the cluster has forgotten */
	ClusterSpiRun(psprintf("DELETE FROM commitlog.replica_watermarks w WHERE w.leader_id = %d "
					 "AND NOT EXISTS (SELECT 1 FROM commitlog.cluster_assignments a WHERE a.topic_id = w.topic_id)",
					 me));
	/* the epochs and follower views of partitions the cluster forgot */
	ClusterSpiRun("DELETE FROM commitlog.replica_epochs e WHERE NOT EXISTS (SELECT 1 "
				  "FROM commitlog.cluster_assignments a WHERE a.topic_id = e.topic_id)");
	ClusterSpiRun(psprintf("DELETE FROM commitlog.replica_followers f WHERE NOT EXISTS (SELECT 1 "
						   "FROM commitlog.cluster_assignments a WHERE a.topic_id = f.topic_id "
						   "AND a.partition = f.partition AND a.leader = %d)", me));
	/* and the ISR marks of partitions no longer led here */
	ClusterSpiRun(psprintf("DELETE FROM commitlog.replica_marks m WHERE NOT EXISTS (SELECT 1 "
					 "FROM commitlog.cluster_assignments a WHERE a.topic_id = m.topic_id "
					 "AND a.partition = m.partition AND a.leader = %d)", me));
	ClusterXactEnd();

	foreach(lc, list_concat(dropped, confirm))
		(void) ClusterConfirmDropped(lfirst_int(lc));
}

/* Make this broker match the cluster's assignment (file comment). */
void
ClusterReconcile(void)
{
	reconcile_materialize();
	reconcile_publish();
	reconcile_watermarks();
	reconcile_orphans();
	reconcile_subscribe();
	ClusterFailover();
	ClusterFollowerReports();
	reconcile_drop();
}
