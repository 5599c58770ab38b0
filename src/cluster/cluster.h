/*
 * cluster.h
 *		Brokers in a cluster: topic metadata in the coordinator, replicas
 *		kept in step by native logical replication (DESIGN 9).
 *
 * A broker is in cluster mode when commitlog.coordinator is set; then
 * create_topic and drop_topic record the intent in the coordinator
 * (cluster.c), the controller assigns replicas there, and each broker's
 * worker (cluster_sync.c, cluster_local.c) copies the assignment into
 * commitlog.cluster_assignments, materializes the partitions it hosts,
 * publishes the ones it leads (one publication per follower) and
 * subscribes to its leaders (one subscription per leader).  Leaders
 * replicate a watermark (commitlog.replica_watermarks) in the same stream
 * as the records; followers serve reads only below it.  Leaders measure
 * their followers (cluster_isr.c): the ISR, and the high watermark they
 * publish as that watermark and serve themselves; acks=all and
 * await_replication build on it (cluster_acks.c).  With
 * commitlog.coordinator empty, none of this runs: single-broker mode.
 * README.md in this folder has the whole picture.
 */
#ifndef COMMITLOG_CLUSTER_H
#define COMMITLOG_CLUSTER_H

#include "postgres.h"

#include "offsets/offsets.h"
#include "topics/topics.h"
#include "utils/jsonb.h"

/* GUC commitlog.cluster (cluster.c) */
extern char *commitlog_cluster;

extern void ClusterDefineGucs(void);

/* Is this broker in cluster mode (commitlog.coordinator set)? */
extern bool ClusterEnabled(void);

/*
 * Topic DDL (topic_ddl.c).  In cluster mode, outside the worker's own
 * materialization, create_topic / drop_topic go to the coordinator: these
 * return true when they did the work.  ClusterMaterializeId() is the
 * cluster-wide id the worker is creating a local copy under, or 0.
 */
extern bool ClusterCreateTopic(const char *name, int32 partitions, int32 rf, Jsonb *config);
extern bool ClusterDropTopic(const char *name);
extern int32 ClusterMaterializeId(void);
extern void ClusterSetMaterializeId(int32 topic_id);
extern void ClusterRefuseDDL(const char *what);

/* Produce (produce.c): CL002 unless this broker leads the partition (-1: any) */
extern void ClusterCheckLeader(const char *topic, int32 topic_id, int32 partition);
extern int32 ClusterLedPartition(const Topic *topic, int32 candidate);

/*
 * Fetch (fetch.c): on a follower, the readable end is the leader's
 * watermark; a long poll there re-reads it every CLUSTER_FOLLOWER_POLL_MS.
 */
#define CLUSTER_FOLLOWER_POLL_MS	50
extern bool ClusterFollowerEnd(const Topic *topic, int32 partition, OffsetsEnd *end);
extern bool ClusterFollowerWait(const Topic *topic, int32 partition, long timeout_ms);

/* TopicCreateSegment (topic_ddl.c): a leader announces its new segment end */
extern void ClusterSegmentCreated(int32 topic_id, int32 partition, int64 end);

/*
 * In-sync replicas (cluster_isr.c): commitlog.replica_lag_time_max_ms, and
 * the leader's measurement of its followers, which returns the high
 * watermark to publish (README.md, "ISR, acks and failover").
 */
extern int	commitlog_replica_lag_time_max_ms;
extern void ClusterIsrDefineGucs(void);
extern int64 ClusterIsrUpdate(int32 topic_id, int32 partition, int64 stable, int64 hw);
extern void ClusterReportReplicas(void);

/*
 * acks (cluster_acks.c): commitlog.acks, and produce's note of what a
 * transaction wrote, for the PRE_COMMIT check and await_replication.
 */
#define CLUSTER_ACKS_ONE	1
#define CLUSTER_ACKS_ALL	(-1)
extern int	commitlog_acks;
extern void ClusterAcksDefineGucs(void);
extern void ClusterProduced(int32 topic_id, int32 partition, int64 last_offset, int count);

/* The worker's cluster step, after controller upkeep (worker.c) */
extern void ClusterUpkeep(void);

/* cluster_sync.c, for cluster_local.c: a worker transaction with SPI */
extern void ClusterXactBegin(const char *what);
extern void ClusterXactEnd(void);
extern bool ClusterConfirmDropped(int32 topic_id);

/* topic ids the coordinator hands out start here (sql/pg_commitlog.sql) */
#define CLUSTER_FIRST_TOPIC_ID	1048576

/* cluster_local.c, for cluster_sync.c: reconcile this broker with the mirror */
extern void ClusterReconcile(void);

/* cluster_local.c: SPI helpers of the worker's cluster steps (copies; errors raise) */
extern char *ClusterSpiText(uint64 row, int col);
extern int32 ClusterSpiInt(uint64 row, int col);
extern void ClusterSpiRun(const char *sql);
extern uint64 ClusterSpiQuery(const char *sql);
extern void ClusterSpiRunGenerated(const char *query);

/*
 * Leader epochs (cluster_failover.c): a new leader takes over, followers
 * and a returning old leader truncate and re-point (KIP-101); the leader
 * learns where each follower's copy of a partition starts and when it is
 * ready (commitlog.replica_followers).
 */
extern void ClusterFailover(void);
extern void ClusterFollowerReports(void);

/*
 * The statements that take published topic tables out of this broker's
 * pair publications (one %d: this broker's id); the caller adds "AND ..."
 * conditions on p (pg_publication), r (pg_publication_rel), c (pg_class).
 */
#define CLUSTER_UNPUBLISH_SQL \
	"SELECT pg_catalog.format('ALTER PUBLICATION %%I DROP TABLE commitlog_topics.%%I', " \
	"p.pubname, c.relname) " \
	"FROM pg_catalog.pg_publication p " \
	"JOIN pg_catalog.pg_publication_rel r ON r.prpubid = p.oid " \
	"JOIN pg_catalog.pg_class c ON c.oid = r.prrelid " \
	"WHERE p.pubname LIKE 'commitlog\\_b%d\\_to\\_b%%' "

/* Names: pair publication/subscription/slot of leader L and follower F */
#define ClusterPairName(leader, follower) \
	psprintf("commitlog_b%d_to_b%d", (leader), (follower))

#endif							/* COMMITLOG_CLUSTER_H */
