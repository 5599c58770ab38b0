/*
 * topics.h
 *		Topic catalog: metadata tables, the per-backend topic cache, config
 *		keys, and the DDL behind create_topic / drop_topic / add_partitions /
 *		alter_topic.
 *
 * Storage (DESIGN 3): commitlog.topics, commitlog.partitions and
 * commitlog.segments hold the metadata; commitlog_topics."<topic>" is a
 * table partitioned by LIST (partition), each partition range-partitioned by
 * log_offset into segments named t<id>$p<n>$s<base>.  Each partition has a
 * sequence t<id>$p<n>$seq that reserves offsets in blocks (offsets.h).
 */
#ifndef COMMITLOG_TOPICS_H
#define COMMITLOG_TOPICS_H

#include "postgres.h"

#include "executor/spi.h"
#include "offsets/offsets.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/jsonb.h"

/* message.timestamp.type */
typedef enum TopicTimestampType
{
	TOPIC_TS_DEFAULT = -1,		/* use commitlog.default_message_timestamp_type */
	TOPIC_TS_CREATE_TIME = 0,
	TOPIC_TS_LOG_APPEND_TIME = 1
} TopicTimestampType;

/* One segment: the range partition [base, end) of a partition's table. */
typedef struct SegmentRef
{
	int64		base;
	int64		end;
	Oid			relid;
} SegmentRef;

/* A partition's segments, oldest first; loaded on first use. */
typedef struct PartitionSegments
{
	bool		loaded;
	int			n;
	SegmentRef *items;
} PartitionSegments;

/* Columns of a topic's table (and of every segment: same order) */
#define TOPIC_COL_PARTITION		0
#define TOPIC_COL_OFFSET		1
#define TOPIC_COL_TIMESTAMP		2
#define TOPIC_COL_KEY			3
#define TOPIC_COL_VALUE			4
#define TOPIC_COL_HEADERS		5
#define TOPIC_NCOLS				6

/* A topic as the hot paths need it; cached per backend, keyed by name. */
typedef struct Topic
{
	char		name[NAMEDATALEN];	/* hash key */
	bool		valid;			/* false once a relcache inval hit it */
	int32		id;
	Oid			relid;			/* commitlog_topics."<topic>" */
	int32		partitions;
	int64		max_message_bytes;	/* -1: the broker default */
	TopicTimestampType timestamp_type;
	Oid		   *seq_relids;		/* per partition: offset block sequence */
	PartitionSegments *segments;	/* per partition */
	bool		compacted;		/* cleanup.policy includes compact */
	uint32		next_sticky;	/* round-robin position for keyless records */
	SPIPlanPtr	start_plan;		/* log-start-offset lookup, or NULL */
} Topic;

/* topic_cache.c */
extern void TopicCacheInit(void);
extern Topic *TopicOpen(const char *name, LOCKMODE lockmode);
extern void TopicCheckPartition(Topic *topic, int32 partition);
extern int64 TopicMaxMessageBytes(const Topic *topic);
extern bool TopicUsesLogAppendTime(const Topic *topic);
extern OffsetsPartitionKey TopicPartitionKey(const Topic *topic, int32 partition);

/* topic_segments.c */
extern Oid	TopicSegmentFor(Topic *topic, int32 partition, int64 offset, int64 *end);
extern Relation TopicSegmentOpen(Topic *topic, int32 partition, int64 offset,
								 LOCKMODE lockmode, int64 *base, int64 *end);
extern void TopicForgetSegments(Topic *topic);
extern int64 TopicSegmentSpan(int64 segment_bytes, double bytes_per_record);
extern Oid	TopicSchemaOid(bool missing_ok);
extern char *TopicNameArg(text *arg);

/* topic_config.c */
extern void TopicConfigDefineGucs(void);
extern Jsonb *TopicConfigNormalize(Jsonb *config, Jsonb *base);
extern Jsonb *TopicConfigEffective(Jsonb *config);
extern int64 TopicConfigDefaultMaxMessageBytes(void);
extern int64 TopicConfigEffectiveLong(Jsonb *config, const char *key);
extern bool TopicConfigDefaultCompacted(void);
extern bool TopicConfigDefaultLogAppendTime(void);
extern int64 TopicConfigParseLong(const char *key, const char *value);
extern TopicTimestampType TopicConfigParseTimestampType(const char *value);

/*
 * Names of a topic's internal objects in commitlog_topics.  They contain
 * '$', which topic names cannot, so no topic can ever take a name the
 * extension (or the worker, later) needs.  Unquoted; quote_identifier them.
 */
#define TopicPartitionRelname(topic_id, partition) \
	psprintf("t%d$p%d", (topic_id), (partition))
#define TopicSegmentRelname(topic_id, partition, base) \
	psprintf("t%d$p%d$s" INT64_FORMAT, (topic_id), (partition), (int64) (base))
#define TopicSequenceRelname(topic_id, partition) \
	psprintf("t%d$p%d$seq", (topic_id), (partition))

/* topic_ddl.c */
extern void TopicValidateName(const char *name);
extern void TopicCreateSegment(const char *topic_name, int32 topic_id, int32 partition,
							   int64 base, int64 end);

/* bytes per record assumed to size a partition's first segment */
#define TOPIC_DEFAULT_RECORD_BYTES	1024.0

/* catalog.c */
extern uint64 CatalogRead(const char *sql, int nargs, Oid *argtypes, Datum *args, long tcount);
extern int	CatalogBegin(void);
extern void CatalogDDL(const char *sql);
extern void CatalogEnd(int nestlevel);
extern int	CatalogExec(const char *sql, int nargs, Oid *argtypes, Datum *args,
						const char *nulls);

#endif							/* COMMITLOG_TOPICS_H */
