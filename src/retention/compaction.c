/*-------------------------------------------------------------------------
 *
 * compaction.c
 *		cleanup.policy=compact: keep the newest record per key.
 *
 * Kafka's log cleaner rewrites closed segments keeping only the newest
 * record of each key, and removes tombstones (NULL value) once they are
 * older than delete.retention.ms, so that consumers that were behind still
 * see the delete.  Here the sealed segments of a partition are cleaned in
 * place with one DELETE: a record goes if a newer record with the same key
 * exists below the stable offset, or if it is a tombstone older than
 * delete.retention.ms.  Kept records keep their offsets; removed ones are
 * gaps, as in Kafka.  Unlike dropping segments, this leaves dead tuples for
 * (auto)vacuum, and it reads the partition's readable range each time it
 * runs, so it is done at the retention interval only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "guard/guard.h"
#include "retention/retention_internal.h"
#include "topics/topics.h"
#include "utils/builtins.h"

void
RetentionCompact(const RetentionPartition *rp)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(rp->topic_id), Int32GetDatum(rp->partition)};
	OffsetsEnd	end = OffsetsGetEnd(&rp->key);
	bool		isnull;
	int64		start;
	int64		sealed_end;
	uint64		deleted;
	const char *partition_table = quote_identifier(TopicPartitionRelname(rp->topic_id, rp->partition));

	CatalogExec("SELECT p.log_start_offset, "
				"(SELECT pg_catalog.max(s.end_offset) FROM commitlog.segments s "
				"  WHERE s.topic_id = p.topic_id AND s.partition = p.partition AND s.sealed) "
				"FROM commitlog.partitions p WHERE p.topic_id = $1 AND p.partition = $2",
				2, types, args, NULL);
	if (SPI_processed == 0)
		return;
	start = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	sealed_end = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull || sealed_end <= start)
		return;
	sealed_end = Min(sealed_end, end.stable);

	/* offsets are literals: the statement runs past the guard, without parameters */
	GuardExecInternal(psprintf(
							   "DELETE FROM commitlog_topics.%s r USING ("
							   "  SELECT log_offset FROM ("
							   "    SELECT log_offset, value IS NULL AS tombstone, \"timestamp\","
							   "           pg_catalog.row_number() OVER (PARTITION BY key ORDER BY log_offset DESC) AS newer"
							   "      FROM commitlog_topics.%s"
							   "     WHERE log_offset >= " INT64_FORMAT " AND log_offset < " INT64_FORMAT
							   "       AND key IS NOT NULL) k"
							   "  WHERE log_offset < " INT64_FORMAT
							   "    AND (newer > 1 OR (tombstone AND \"timestamp\" < pg_catalog.now() - "
							   "         pg_catalog.make_interval(secs => " INT64_FORMAT " / 1000.0)))"
							   ") d WHERE r.log_offset = d.log_offset",
							   partition_table, partition_table,
							   start, end.stable, sealed_end, rp->delete_retention_ms));
	deleted = SPI_processed;
	if (deleted == 0)
		return;

	/* recount the sealed segments touched: retention decides by these */
	CatalogExec("SELECT base_offset, relname FROM commitlog.segments "
				"WHERE topic_id = $1 AND partition = $2 AND sealed",
				2, types, args, NULL);
	{
		uint64		n = SPI_processed;
		int64	   *bases = palloc(sizeof(int64) * Max(n, 1));
		char	  **relnames = palloc(sizeof(char *) * Max(n, 1));

		for (uint64 i = 0; i < n; i++)
		{
			bases[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			relnames[i] = pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		}
		for (uint64 i = 0; i < n; i++)
			RetentionRecountSegment(rp, bases[i], relnames[i], true);
	}
	ereport(LOG,
			(errmsg("pg_commitlog: compacted partition %d of topic \"%s\": " UINT64_FORMAT " records removed",
					rp->partition, rp->topic_name, deleted)));
}
