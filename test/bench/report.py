#!/usr/bin/python3
"""Print the benchmark table and BENCH lines; write benchmarks.md and the plot data.

usage: report.py RESULTS.json OUTDIR SCALE SETTINGS_FILE MACHINE_FILE COMMAND
"""
import json
import os
import sys

res_path, outdir, scale, settings_file, machine_file, command = sys.argv[1:7]
results = json.load(open(res_path))
settings = open(settings_file).read().strip()
machine = open(machine_file).read().strip()


def fmt(x):
    if x is None:
        return "-"
    if x >= 1000:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.3f" % x


# the machine-readable lines
for r in results:
    print("BENCH %s vs=%s ours=%s base=%s ratio=%s unit=%s" % (
        r["workload"], r["baseline"], fmt(r["ours"]), fmt(r["base"]),
        "%.3f" % r["ratio"] if r["ratio"] is not None else "NA",
        r["unit"].replace(" ", "_")))

for r in results:  # MB/s of values beside records/s
    if r["unit"] == "records/s" and r["ours"] and r["base"]:
        vlen = r.get("value_len", 100)
        mbs = "%.1f vs %.1f MB/s of %d B values" % (r["ours"] * vlen / 1e6, r["base"] * vlen / 1e6, vlen)
        r["note"] = mbs + ("; " + r["note"] if r.get("note") else "")

head = "| workload | baseline | pg_commitlog | baseline | unit | ratio (>1: we are better) | note |"
rows = [head, "|---|---|---:|---:|---|---:|---|"]
for r in results:
    rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
        r["workload"], r["baseline"], fmt(r["ours"]), fmt(r["base"]), r["unit"],
        "%.2f" % r["ratio"] if r["ratio"] is not None else "-", r.get("note", "")))
table = "\n".join(rows)
print()
print(table)

# plot data: one bar per workload/baseline pair
with open(os.path.join(outdir, "benchmarks.dat"), "w") as f:
    for r in results:
        if r["ratio"] is not None:
            f.write('"%s\\nvs %s" %.4f\n' % (r["workload"], r["baseline"], r["ratio"]))

def get(w, b):
    for r in results:
        if r["workload"] == w and r["baseline"] == b:
            return r
    return None


def slower():
    paras = []
    r = get("produce_batch", "copy")
    if r and r["ratio"] is not None:
        r2 = get("produce_batch_2p", "copy")
        extra = (" With 2 clients on 2 partitions it reaches %.2fx two concurrent COPYs."
                 % r2["ratio"]) if r2 and r2["ratio"] else ""
        paras.append(
            "- **Batched produce: %.2fx binary COPY** (target: at least 0.8x). COPY here is one "
            "statement and one commit for all the rows; `produce_batch` is one call, one "
            "transaction and one WAL flush per 1000 records, builds its input array, takes "
            "offsets from shared memory, checks each record's size and writes through the "
            "active segment with a multi-row insert.%s This is the largest gap and the "
            "first hot path to profile." % (r["ratio"], extra))
    r = get("fetch", "scan")
    if r and r["ratio"] is not None:
        paras.append(
            "- **Fetch: %.2fx the plain index range scan** (target: at least 0.9x and 1M "
            "records/s; measured %.0f records/s end to end through psycopg2). Both "
            "queries return the same two columns, so the gap is server side: `fetch` is a "
            "set-returning function that builds full `commitlog.record` rows (timestamp, "
            "key, headers) and checks the stable offset and byte budget per call, where the "
            "scan is a plain Index Scan with LIMIT." % (r["ratio"], r["ours"]))
    r = get("retention", "delete_vacuum")
    if r and r["ratio"] is not None:
        paras.append(
            "- **Retention: %.0f ms vs %.0f ms for DELETE + VACUUM** (target: under 100 ms for "
            "1M records). %s. `delete_records` counts the records it removes (it returns the "
            "number) with a `count(*)` over the removed range, so it is linear in the records "
            "removed; then it wakes the worker, which then drops the segments wholly below "
            "the new start. Taking the count from the sealed segments' recorded "
            "counts would make the user-visible part independent of the data size." % (r["ours"], r["base"], r["note"]))
    r = get("produce_single", "insert")
    if r and r["ratio"] is not None:
        paras.append(
            "- **Single-record produce: %.2fx plain INSERT** with 8 clients on one partition "
            "(target: at least 0.8x): both are bound by WAL flushes shared by group commit; "
            "%s" % (r["ratio"], "the function's per-call cost (topic lookup, offset "
                    "reservation) over an INSERT is what remains." if r["ratio"] < 1 else
                    "the two are level within run-to-run noise."))
    r = get("latency_p99", "target")
    if r and r["ours"] is not None:
        paras.append(
            "- **Latency**: p99 %.3f ms against the 5 ms target (%s). It is bounded below by "
            "the producer's commit (synchronous_commit and fsync on)." % (r["ours"], r["note"].split(";")[0]))
    return "\n".join(paras)


label = ("full scale" if scale == "full" else
         "**small scale (BENCH_SCALE=small): a smoke run; small numbers are noisy and "
         "dominated by start-up costs, not representative**")
with open(os.path.join(outdir, "benchmarks.md"), "w") as f:
    f.write("""# Benchmarks

Produced by `make bench` (test/bench/run.sh); this file and
[benchmarks.png](benchmarks.png) are written by it. Scale: %s.
Every figure is measured beside its baseline in the same run, on the same
throwaway server. Each figure is from one run: on a small shared VM they move by
tens of percent from run to run, so read the ratios, not the third digit. Ratio > 1 means pg_commitlog is better: for throughputs it is
ours / baseline, for latencies and durations baseline / ours.

![ratio per workload](benchmarks.png)

%s

## Workloads

Values are 100 bytes.

- **produce_batch**: `commitlog.produce_batch(topic, payloads)` with 1000 records
  per call (one transaction each), 1 client, 1 partition. Baselines: server-side
  binary `COPY ... FROM file WITH (FORMAT binary)` of the same rows into a plain
  table `(partition int, log_offset bigint PRIMARY KEY, timestamp timestamptz,
  key bytea, value bytea)`, in one statement (Postgres's bulk-load ceiling);
  PgQ `pgq.insert_event` in transactions of 1000.
- **produce_batch_2p**: the same with 2 clients on 2 partitions; baseline: two
  concurrent binary COPYs of half the rows each into one plain table.
- **produce_single**: pgbench, 8 clients, autocommit
  `SELECT commitlog.produce('t', <100 B>, partition => 0)`. Baselines: a
  single-row `INSERT` into a bigserial table, and `pgq.insert_event`, both with
  8 clients.
- **fetch**: a Python (psycopg2) client reads every record of the
  produce_batch topic with `commitlog.fetch` in pages of 1000, walking the next
  offset. Baselines: the plain table read by an index range scan
  (`WHERE log_offset >= $1 ORDER BY log_offset LIMIT 1000`); PgQ: the events of
  produce_batch's PgQ baseline read as one batch with `get_batch_cursor` and
  `FETCH 1000`.
- **latency_p99**: one producer at ~1000 records/s (autocommit `produce`), one
  consumer long-polling `fetch(..., wait_ms => 1000)` on its own connection;
  latency from the start of the produce call to the consumer holding the record.
  There is no measured baseline: `base` is the 5 ms target.
- **retention**: records produced into a topic with `segment.bytes` = 1 MiB;
  timed: `commitlog.delete_records` up to the latest offset (records are
  unreadable when it returns) plus the background worker dropping every segment
  wholly below the new log start (polled in `commitlog.segments`). Baseline:
  `DELETE` of the same number of rows from the plain table plus `VACUUM`.
  Meanwhile a producer on another topic makes ~1000 autocommit `produce` calls
  per second; the note gives its call p99 before (500 calls) and during the
  retention window.

## Machine

```
%s
```

## Settings

```
%s
```

## Reproduce

```
%s
```

`make bench` installs what is missing (postgresql-15-pgq3, gnuplot-nox), starts
a throwaway server with the settings above, and prints one line per workload
and baseline: `BENCH <workload> vs=<baseline> ours=<x> base=<y> ratio=<r> unit=<u>`.
`make bench BENCH_SCALE=small` is the quick smoke run that `make test` uses.

## Where pg_commitlog is slower, and why

%s

Not measured yet (issue 5 asks for it): 1 KiB values for produce_batch and
fetch. No profile (perf / callgrind) has been taken yet, so the causes above that are not
measured directly are the likely ones, not proven ones.
""" % (label, table, machine, settings, command, slower()))
