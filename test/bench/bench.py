#!/usr/bin/python3
"""pg_commitlog benchmark driver (run by test/bench/run.sh; not on its own).

Connects through the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE),
runs every workload beside its baselines on the same server, and writes the
results as JSON (argv[1]).  pgbench runs are described by environment:
BENCH_N (records), BENCH_T (pgbench seconds), BENCH_LAT_S (latency seconds),
BENCH_DIR (a directory the server can write to), BENCH_PGQ (1 = PgQ present),
BENCH_PGBENCH (path of pgbench).  No timing is ever asserted: any error ends
the run non-zero, numbers never do.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

import psycopg2

N = int(os.environ.get("BENCH_N", "20000"))
T = int(os.environ.get("BENCH_T", "3"))
LAT_S = float(os.environ.get("BENCH_LAT_S", "3"))
DIR = os.environ["BENCH_DIR"]
HAVE_PGQ = os.environ.get("BENCH_PGQ") == "1"
PGBENCH = os.environ.get("BENCH_PGBENCH", "pgbench")
BATCH = 1000
VALUE_LEN = 100
KIB = 1024          # the large-record variants of workloads 1 and 4
N_KIB = max(N // 4, BATCH)  # a quarter of the records: 256 MB at full scale
# Retention's topic: segments of 16 MiB, ~11 segments for 1M records.  Each
# segment costs a DETACH CONCURRENTLY (~1.7 ms here), so the time is linear
# in the segment count; docs/benchmarks.md gives the figure for 1 MiB too.
RET_SEGMENT_BYTES = 16 * 1024 * 1024

results = []  # dicts: workload, baseline, ours, base, unit, kind, note


def log(msg):
    print(msg, flush=True)


def connect():
    c = psycopg2.connect("")
    c.autocommit = True
    return c


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        if cur.description is not None:
            return cur.fetchall()
        return None


def timed(conn, sql, args=None):
    t0 = time.perf_counter()
    q(conn, sql, args)
    return time.perf_counter() - t0


def add(workload, baseline, ours, base, unit, kind, note="", value_len=VALUE_LEN):
    """kind: 'tput' (ratio ours/base) or 'time' (ratio base/ours)."""
    if ours is None or base is None or ours <= 0 or base <= 0:
        ratio = None
    elif kind == "tput":
        ratio = ours / base
    else:
        ratio = base / ours
    results.append(dict(workload=workload, baseline=baseline, ours=ours,
                        base=base, unit=unit, kind=kind, ratio=ratio, note=note,
                        value_len=value_len))


def pgbench(script_text, clients, seconds, name):
    path = os.path.join(DIR, name + ".sql")
    with open(path, "w") as f:
        f.write(script_text)
    os.chmod(path, 0o644)
    out = subprocess.run(
        [PGBENCH, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
         "-T", str(seconds), "-f", path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout)
        raise RuntimeError("pgbench %s failed" % name)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    if not m:
        sys.stderr.write(out.stdout)
        raise RuntimeError("pgbench %s: no tps in output" % name)
    m2 = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if m2 and int(m2.group(1)) > 0:
        raise RuntimeError("pgbench %s: %s failed transactions" % (name, m2.group(1)))
    return float(m.group(1))


def value_sql(i_expr, length=VALUE_LEN):
    # a value of length bytes: the number, left-padded with 'x'
    return "convert_to(lpad((%s)::text, %d, 'x'), 'UTF8')" % (i_expr, length)


def setup(conn):
    q(conn, "SET client_min_messages = warning")
    for t in ("bench_plain", "bench_plain2", "bench_plain1k", "bench_serial", "bench_payload"):
        q(conn, "DROP TABLE IF EXISTS %s" % t)
    for t in ("pb", "pb2", "pb1k", "ps", "lat", "ret"):
        if q(conn, "SELECT 1 FROM commitlog.topic_list WHERE topic = %s", (t,)):
            q(conn, "SELECT commitlog.drop_topic(%s)", (t,))
    plain_cols = ("(partition int NOT NULL, log_offset bigint PRIMARY KEY, "
                  "\"timestamp\" timestamptz NOT NULL, key bytea, value bytea)")
    q(conn, "CREATE TABLE bench_plain " + plain_cols)
    q(conn, "CREATE TABLE bench_plain2 " + plain_cols)
    q(conn, "CREATE TABLE bench_plain1k " + plain_cols)
    q(conn, "CREATE TABLE bench_serial (id bigserial PRIMARY KEY, "
            "\"timestamp\" timestamptz NOT NULL DEFAULT now(), value bytea)")
    # one batch of 1000 values, built once, so no workload pays to generate it
    q(conn, "CREATE TABLE bench_payload (arr bytea[], tarr text[], arr1k bytea[], tarr1k text[])")
    q(conn, "INSERT INTO bench_payload SELECT array_agg(%s), "
            "array_agg(lpad(i::text, %d, 'x')), array_agg(%s), "
            "array_agg(lpad(i::text, %d, 'x')) FROM generate_series(1, %d) i"
      % (value_sql("i"), VALUE_LEN, value_sql("i", KIB), KIB, BATCH))
    q(conn, "SELECT commitlog.create_topic('pb')")
    q(conn, "SELECT commitlog.create_topic('pb2', partitions => 2)")
    q(conn, "SELECT commitlog.create_topic('pb1k')")
    q(conn, "SELECT commitlog.create_topic('ps')")
    q(conn, "SELECT commitlog.create_topic('lat')")
    q(conn, "SELECT commitlog.create_topic('ret', config => %s)",
      (json.dumps({"segment.bytes": RET_SEGMENT_BYTES}),))
    if HAVE_PGQ:
        for qu in ("bq", "bq1", "bqk"):
            if q(conn, "SELECT 1 FROM pgq.queue WHERE queue_name = %s", (qu,)):
                q(conn, "SELECT pgq.drop_queue(%s, true)", (qu,))
            q(conn, "SELECT pgq.create_queue(%s)", (qu,))
        q(conn, "SELECT pgq.register_consumer('bq', 'bc')")
    # binary COPY files of the same rows: one for 1 client, halves for 2
    rows = ("SELECT %s, i::bigint, now(), NULL::bytea, %s FROM generate_series(%d, %d) i")
    q(conn, "COPY (%s) TO '%s/rows.bin' WITH (FORMAT binary)"
      % (rows % (0, value_sql("i"), 0, N - 1), DIR))
    half = N // 2
    q(conn, "COPY (%s) TO '%s/rows_a.bin' WITH (FORMAT binary)"
      % (rows % (0, value_sql("i"), 0, half - 1), DIR))
    q(conn, "COPY (%s) TO '%s/rows_b.bin' WITH (FORMAT binary)"
      % (rows % (1, value_sql("i"), half, N - 1), DIR))
    q(conn, "COPY (%s) TO '%s/rows1k.bin' WITH (FORMAT binary)"
      % (rows % (0, value_sql("i", KIB), 0, N_KIB - 1), DIR))
    # warm up: the database's worker must be running before we time producers
    q(conn, "SELECT commitlog.produce('lat', 'warm'::bytea, partition => 0)")
    # ... and the server must have written WAL before: on a fresh server the
    # first workload creates (zero-fills) every WAL segment it writes, while
    # later ones recycle segments after a checkpoint.  Whatever ran first
    # measured at about half its speed.  Two loads of the rows into a scratch
    # table, dropped, leave enough WAL segments to recycle (and shared
    # buffers touched) for every workload that follows.
    for _ in range(2):
        q(conn, "CREATE TABLE bench_warm (LIKE bench_plain INCLUDING ALL)")
        q(conn, "COPY bench_warm FROM '%s/rows.bin' WITH (FORMAT binary)" % DIR)
        q(conn, "DROP TABLE bench_warm")
        q(conn, "CHECKPOINT")


def produce_batch_calls(conn, topic, partition, calls, col="arr"):
    sql = ("SELECT count(*) FROM commitlog.produce_batch(%%s, "
           "(SELECT %s FROM bench_payload), partition => %%s)" % col)
    with conn.cursor() as cur:
        for _ in range(calls):
            cur.execute(sql, (topic, partition))
            cur.fetchall()


def w_produce_batch(conn, kib=False):
    name, n, vlen = ("produce_batch_1k", N_KIB, KIB) if kib else ("produce_batch", N, VALUE_LEN)
    topic, table, rows, queue = (("pb1k", "bench_plain1k", "rows1k.bin", "bqk") if kib
                                 else ("pb", "bench_plain", "rows.bin", "bq"))
    col = "arr1k" if kib else "arr"
    calls = n // BATCH
    log("-- %s: %d records of %d B, %d per call, 1 client" % (name, calls * BATCH, vlen, BATCH))
    q(conn, "CHECKPOINT")
    t0 = time.perf_counter()
    produce_batch_calls(conn, topic, 0, calls, col)
    ours = calls * BATCH / (time.perf_counter() - t0)
    q(conn, "CHECKPOINT")
    d = timed(conn, "COPY %s FROM '%s/%s' WITH (FORMAT binary)" % (table, DIR, rows))
    add(name, "copy", ours, n / d, "records/s", "tput", value_len=vlen)
    if HAVE_PGQ:
        q(conn, "CHECKPOINT")
        sql = ("SELECT count(pgq.insert_event('%s', 'ev', v)) FROM unnest((SELECT t%s FROM bench_payload)) v"
               % (queue, col))
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for _ in range(calls):
                cur.execute(sql)  # autocommit: one transaction of 1000 events
                cur.fetchall()
        add(name, "pgq", ours, calls * BATCH / (time.perf_counter() - t0),
            "records/s", "tput", value_len=vlen)


def parallel(fns):
    errs = []

    def run(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported below
            errs.append(e)
    ths = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if errs:
        raise errs[0]
    return time.perf_counter() - t0


def w_produce_batch_2p(conn):
    calls = (N // BATCH) // 2
    log("-- produce_batch_2p: %d records, 2 clients on 2 partitions" % (2 * calls * BATCH))
    c1, c2 = connect(), connect()
    q(conn, "CHECKPOINT")
    d = parallel([lambda: produce_batch_calls(c1, "pb2", 0, calls),
                  lambda: produce_batch_calls(c2, "pb2", 1, calls)])
    ours = 2 * calls * BATCH / d
    q(conn, "CHECKPOINT")
    d = parallel([lambda: q(c1, "COPY bench_plain2 FROM '%s/rows_a.bin' WITH (FORMAT binary)" % DIR),
                  lambda: q(c2, "COPY bench_plain2 FROM '%s/rows_b.bin' WITH (FORMAT binary)" % DIR)])
    add("produce_batch_2p", "copy", ours, N / d, "records/s", "tput",
        "2 concurrent COPYs into one table")
    c1.close()
    c2.close()


def w_produce_single(conn):
    log("-- produce_single: pgbench, 8 clients, %d s each" % T)
    lit = "'\\x%s'::bytea" % ("78" * VALUE_LEN)
    q(conn, "CHECKPOINT")
    ours = pgbench("SELECT commitlog.produce('ps', %s, partition => 0);\n" % lit, 8, T, "ps")
    q(conn, "CHECKPOINT")
    base = pgbench("INSERT INTO bench_serial (value) VALUES (%s);\n" % lit, 8, T, "ins")
    add("produce_single", "insert", ours, base, "records/s", "tput")
    if HAVE_PGQ:
        q(conn, "CHECKPOINT")
        base = pgbench("SELECT pgq.insert_event('bq1', 'ev', '%s');\n" % ("x" * VALUE_LEN),
                       8, T, "pgq")
        add("produce_single", "pgq", ours, base, "records/s", "tput")


def w_fetch(conn, kib=False):
    name, n, vlen = ("fetch_1k", N_KIB, KIB) if kib else ("fetch", N, VALUE_LEN)
    topic, table = ("pb1k", "bench_plain1k") if kib else ("pb", "bench_plain")
    log("-- %s: %d records of %d B in pages of %d, 1 client (client loop)" % (name, n, vlen, BATCH))
    total = n - n % BATCH
    with conn.cursor() as cur:
        t0 = time.perf_counter()
        nxt, got = 0, 0
        while got < total:
            # max_bytes large enough that pages are BATCH records in both
            cur.execute("SELECT log_offset, value FROM commitlog.fetch(%s, 0, %s, %s, "
                        "max_bytes => 16777216)", (topic, nxt, BATCH))
            rows = cur.fetchall()
            if not rows:
                raise RuntimeError("fetch returned nothing at offset %d" % nxt)
            got += len(rows)
            nxt = rows[-1][0] + 1
        ours = got / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        nxt, got = 0, 0
        while got < n:
            cur.execute("SELECT log_offset, value FROM " + table + " WHERE log_offset >= %s "
                        "ORDER BY log_offset LIMIT %s", (nxt, BATCH))
            rows = cur.fetchall()
            if not rows:
                raise RuntimeError("scan returned nothing at %d" % nxt)
            got += len(rows)
            nxt = rows[-1][0] + 1
        base = got / (time.perf_counter() - t0)
    add(name, "scan", ours, base, "records/s", "tput", value_len=vlen)
    if HAVE_PGQ and not kib:
        # the events produce_batch's PgQ baseline inserted, in one PgQ batch
        q(conn, "SELECT pgq.ticker('bq')")
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                t0 = time.perf_counter()
                cur.execute("SELECT pgq.next_batch('bq', 'bc')")
                bid = cur.fetchone()[0]
                got = 0
                if bid is not None:
                    cur.execute("SELECT ev_id, ev_data FROM pgq.get_batch_cursor(%s, 'bcur', %s)",
                                (bid, BATCH))
                    rows = cur.fetchall()
                    got += len(rows)
                    while len(rows) == BATCH:
                        cur.execute("FETCH %d FROM bcur" % BATCH)
                        rows = cur.fetchall()
                        got += len(rows)
                    cur.execute("SELECT pgq.finish_batch(%s)", (bid,))
                conn.commit()
                d = time.perf_counter() - t0
        finally:
            conn.autocommit = True
        if got > 0:
            add("fetch", "pgq", ours, got / d, "records/s", "tput",
                "get_batch_cursor + FETCH %d, %d events" % (BATCH, got))
        else:
            log("   (PgQ produced no batch; fetch vs pgq skipped)")


def w_latency(conn):
    log("-- latency_p99: 1 producer at ~1000 records/s, 1 long-polling consumer, %.0f s" % LAT_S)
    prod, cons = connect(), connect()
    start = q(cons, "SELECT commitlog.latest_offset('lat', 0)")[0][0]
    sent = {}  # sequence number -> perf_counter at the produce call
    lats = []
    stop = threading.Event()
    count = int(LAT_S * 1000)

    def producer():
        with prod.cursor() as cur:
            t0 = time.perf_counter()
            for i in range(count):
                target = t0 + i / 1000.0
                now = time.perf_counter()
                if target > now:
                    time.sleep(target - now)
                v = ("%012d" % i).encode().ljust(VALUE_LEN, b"x")
                sent[i] = time.perf_counter()
                cur.execute("SELECT commitlog.produce('lat', %s, partition => 0)",
                            (psycopg2.Binary(v),))

    def consumer():
        nxt = start
        with cons.cursor() as cur:
            while len(lats) < count and not stop.is_set():
                cur.execute("SELECT log_offset, value FROM commitlog.fetch('lat', 0, %s, "
                            "wait_ms => 1000)", (nxt,))
                rows = cur.fetchall()
                now = time.perf_counter()
                for off, val in rows:
                    i = int(bytes(val)[:12])
                    lats.append(now - sent[i])
                    nxt = off + 1

    ct = threading.Thread(target=consumer)
    ct.start()
    pt = threading.Thread(target=producer)
    pt.start()
    pt.join()
    ct.join(timeout=10)
    stop.set()
    ct.join()
    prod.close()
    cons.close()
    if len(lats) < count:
        raise RuntimeError("consumer got %d of %d records" % (len(lats), count))
    lats.sort()

    def pct(p):
        return lats[min(len(lats) - 1, int(p / 100.0 * len(lats)))] * 1000.0
    p50, p99, p999 = pct(50), pct(99), pct(99.9)
    log("   p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  (%d records)" % (p50, p99, p999, len(lats)))
    add("latency_p99", "target", p99, 5.0, "ms", "time",
        "p50 %.3f ms, p99.9 %.3f ms; base is the 5 ms target, not a measurement" % (p50, p999))


def produce_calls(conn, stop, count, out=None):
    """Autocommit produce calls at ~1000/s on topic 'lat'; returns their durations."""
    durs = out if out is not None else []
    v = psycopg2.Binary(b"r" * VALUE_LEN)
    with conn.cursor() as cur:
        t0 = time.perf_counter()
        for i in range(count):
            if stop is not None and stop.is_set():
                break
            target = t0 + i / 1000.0
            now = time.perf_counter()
            if target > now:
                time.sleep(target - now)
            a = time.perf_counter()
            cur.execute("SELECT commitlog.produce('lat', %s, partition => 0)", (v,))
            durs.append(time.perf_counter() - a)
    return durs


def p99ms(durs):
    if not durs:
        return float("nan")
    d = sorted(durs)
    return d[min(len(d) - 1, int(0.99 * len(d)))] * 1000.0


def w_retention(conn):
    log("-- retention: %d records, segment.bytes %d MiB" % (N, RET_SEGMENT_BYTES >> 20))
    calls = N // BATCH
    produce_batch_calls(conn, "ret", 0, calls)
    latest = q(conn, "SELECT commitlog.latest_offset('ret', 0)")[0][0]
    tid = q(conn, "SELECT id FROM commitlog.topics WHERE name = 'ret'")[0][0]
    nseg = q(conn, "SELECT count(*) FROM commitlog.segments WHERE topic_id = %s", (tid,))[0][0]
    q(conn, "CHECKPOINT")
    # a producer at ~1000 records/s on another topic: its produce-call p99
    # while nothing else runs, then while retention runs
    pconn = connect()
    quiet = produce_calls(pconn, None, 500)
    busy = []
    stop = threading.Event()
    pt = threading.Thread(target=produce_calls, args=(pconn, stop, 10 ** 9, busy))
    pt.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    removed = q(conn, "SELECT commitlog.delete_records('ret', 0, %s)", (latest,))[0][0]
    t_visible = time.perf_counter() - t0
    deadline = time.perf_counter() + 60
    while True:
        left = q(conn, "SELECT count(*) FROM commitlog.segments WHERE topic_id = %s "
                       "AND partition = 0 AND end_offset <= %s", (tid, latest))[0][0]
        if left == 0:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError("worker did not drop %d expired segments within 60 s" % left)
        time.sleep(0.005)
    t_dropped = time.perf_counter() - t0
    stop.set()
    pt.join()
    pconn.close()
    pq, pb = p99ms(quiet), p99ms(busy)
    log("   producer on another topic: produce p99 %.3f ms before, %.3f ms during retention (%d calls)"
        % (pq, pb, len(busy)))
    log("   %d segments; delete_records removed %d records in %.1f ms; segments dropped after %.1f ms"
        % (nseg, removed, t_visible * 1000, t_dropped * 1000))
    q(conn, "CHECKPOINT")
    t0 = time.perf_counter()
    q(conn, "DELETE FROM bench_plain WHERE log_offset < %s", (N,))
    q(conn, "VACUUM bench_plain")
    base = time.perf_counter() - t0
    add("retention", "delete_vacuum", t_dropped * 1000, base * 1000, "ms", "time",
        "ours = delete_records (%.1f ms, records unreadable) + worker dropping %d segments; "
        "a producer's produce p99 %.3f ms over %d calls before, %.3f ms over %d calls during "
        "(with under 100 calls, their maximum)"
        % (t_visible * 1000, nseg, pq, len(quiet), pb, len(busy)))


def main():
    out = sys.argv[1]
    conn = connect()
    setup(conn)
    w_produce_batch(conn)
    w_produce_batch_2p(conn)
    w_produce_single(conn)
    w_fetch(conn)
    w_produce_batch(conn, kib=True)
    w_fetch(conn, kib=True)
    w_latency(conn)
    w_retention(conn)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
