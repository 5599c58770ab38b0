-- Block refills (src/offsets/offsets_alloc.c).
--
-- Regression: a refill whose nextval() was served from the sequence's
-- pre-logged values writes no WAL; flushing "the current insert position"
-- then failed with XX000 when that position sat right after a WAL page
-- header.  Put the insert position there, exhaust a block, produce.
SELECT commitlog.create_topic('refill_t', 1);
CREATE TEMP TABLE produced (n int);

DO $$
DECLARE
    pos commitlog.position;
    next_offset bigint := commitlog.latest_offset('refill_t', 0);
    total int := 0;
BEGIN
    FOR attempt IN 1..3 LOOP
        -- use up the current block exactly (nobody else produces here)
        PERFORM commitlog.produce_batch('refill_t',
            array_fill('x'::bytea, ARRAY[(1024 - next_offset % 1024)::int]),
            partition => 0);
        total := total + (1024 - next_offset % 1024)::int + 1;
        -- walk the WAL insert position to just after a page header
        FOR i IN 1..200000 LOOP
            EXIT WHEN (pg_current_wal_insert_lsn() - '0/0'::pg_lsn) % 8192 = 24;
            PERFORM pg_logical_emit_message(false, 'refill', repeat('a', (i % 97)));
        END LOOP;
        pos := commitlog.produce('refill_t', 'after refill'::bytea, partition => 0);
        IF pos.log_offset % 1024 <> 0 THEN
            RAISE EXCEPTION 'expected a fresh block, got offset %', pos.log_offset;
        END IF;
        next_offset := pos.log_offset + 1;
    END LOOP;
    INSERT INTO produced VALUES (total);
END
$$;

-- every produced record is readable, offsets strictly increasing
SELECT count(*) = (SELECT n FROM produced) AS all_readable,
       bool_and(log_offset > prev) AS increasing
  FROM (SELECT log_offset, lag(log_offset, 1, -1::bigint) OVER (ORDER BY log_offset) AS prev
          FROM commitlog.fetch('refill_t', 0, 0, max_records => 100000)) f;

SELECT commitlog.drop_topic('refill_t');
