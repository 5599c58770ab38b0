#!/usr/bin/python3
"""Stress checker for consumer groups: two members of one group see every
committed record exactly once (DESIGN 5, issue 3).

A unique topic with 4 partitions.  Producer threads (3 by default), each on
its own connection, run transactions of 1-5 produce calls
(commitlog.produce with or without an explicit partition, or
commitlog.produce_batch) of unique values for ~15 s; about 25% of the
transactions are rolled back.  The checker knows exactly which values
committed (COMMIT returned OK) and which were rolled back.

Meanwhile two consumer threads of one group loop
    BEGIN;
    SELECT partition, log_offset, value
      FROM commitlog.consume(group, topic, max_records => 1..20, wait_ms => 200);
    SELECT nextval(<stamp sequence>);     -- only if rows came back
    COMMIT;      -- ~20% of the time ROLLBACK instead
Records of a rolled-back consume are not counted as seen: they must be
delivered again.  When the producers are done, the consumers go on until the
group's lag is 0 in every partition (commitlog.group_offsets).

Checks:
  missing           a committed record never seen in a committed consume;
  duplicate         a record seen in more than one committed consume (or
                    twice in one);
  rolled_back_seen  a record of a rolled-back produce returned by consume
                    (committed or rolled-back consume alike);
  unknown_value     a value nobody produced;
  offset_mismatch   a record seen at another partition/offset than produce
                    returned for it;
  order             in a partition, offsets seen in committed consumes, both
                    members combined, do not strictly increase.  The combined
                    order is the order of the stamps: a stamp is taken after
                    consume returned, inside the consuming transaction, and a
                    partition is claimed by one transaction at a time, so the
                    transaction that read a partition earlier has the smaller
                    stamp;
  batch_too_large   consume returned more than max_records rows;
  count             records seen != records committed;
  position          a partition's committed group offset != latest_offset at
                    the end;
  no_progress       a member never got a record (the members share the topic);
  unexpected_error  any error in a thread.
Pass/fail does not depend on timing, only on what committed and what was seen.

--self-test runs the same, then corrupts copies of what the consumers saw
(drop a record, duplicate one, count a rolled-back consume, add a rolled-back
or unknown value, swap the order of two records, move one to another offset)
and requires the checker to flag each.

Exit status: 0 = pass, 1 = anomalies or errors.
"""

import argparse
import collections
import copy
import os
import random
import sys
import threading
import time
import traceback

import psycopg2

NPART = 4


def connect(args, app):
    conn = psycopg2.connect(host=args.host, port=args.port, user=args.user, dbname=args.dbname,
                            application_name=app,
                            options="-c statement_timeout=60000 -c lock_timeout=30000")
    conn.autocommit = True  # transactions are explicit BEGIN/COMMIT
    return conn


def to_text(v):
    if isinstance(v, memoryview):
        v = v.tobytes()
    return v.decode("utf-8") if isinstance(v, bytes) else v


class Producer(threading.Thread):
    def __init__(self, args, topic, tid, seed, stop):
        super().__init__(name="producer-%d" % tid, daemon=True)
        self.args, self.topic, self.tid, self.stop = args, topic, tid, stop
        self.rng = random.Random(seed)
        self.committed = {}      # value -> (partition, offset)
        self.rolled_back = set()
        self.txns = [0, 0]       # committed, rolled back
        self.error = None
        self.n = 0

    def value(self):
        self.n += 1
        return "v-%d-%d" % (self.tid, self.n)

    def run(self):
        conn = None
        try:
            conn = connect(self.args, self.name)
            cur = conn.cursor()
            while not self.stop.is_set():
                cur.execute("BEGIN")
                pending = []
                for _ in range(self.rng.randint(1, 5)):
                    part = self.rng.randrange(NPART) if self.rng.random() < 0.7 else None
                    if self.rng.random() < 0.7:
                        v = self.value()
                        cur.execute("SELECT partition, log_offset FROM commitlog.produce(%s, %s::text, "
                                    "partition => %s::int)", (self.topic, v, part))
                        p, off = cur.fetchone()
                        pending.append((v, p, off))
                    else:
                        vals = [self.value() for _ in range(self.rng.randint(1, 5))]
                        cur.execute("SELECT partition, log_offset FROM commitlog.produce_batch(%s, %s::bytea[], "
                                    "partition => %s::int)",
                                    (self.topic, [psycopg2.Binary(v.encode()) for v in vals], part))
                        rows = cur.fetchall()
                        if len(rows) != len(vals):
                            raise RuntimeError("produce_batch returned %d rows for %d payloads"
                                               % (len(rows), len(vals)))
                        pending.extend((v, p, off) for v, (p, off) in zip(vals, rows))
                    time.sleep(self.rng.uniform(0, 0.003))
                if self.rng.random() < 0.25:
                    cur.execute("ROLLBACK")
                    self.rolled_back.update(v for v, _, _ in pending)
                    self.txns[1] += 1
                else:
                    cur.execute("COMMIT")  # raises if the commit failed: the run then fails
                    for v, p, off in pending:
                        self.committed[v] = (p, off)
                    self.txns[0] += 1
        except Exception:
            self.error = "%s:\n%s" % (self.name, traceback.format_exc())
        finally:
            if conn is not None:
                conn.close()


class Consumer(threading.Thread):
    def __init__(self, args, topic, group, seq, label, seed, stop, abort):
        super().__init__(name=label, daemon=True)
        self.args, self.topic, self.group, self.seq = args, topic, group, seq
        self.label, self.stop, self.abort = label, stop, abort
        self.rng = random.Random(seed)
        # committed consumes: (stamp, [(partition, offset, value), ...])
        self.txns = []
        # rows of rolled-back consumes: [(partition, offset, value), ...]
        self.rolled_back_rows = []
        self.calls = [0, 0, 0]   # committed, rolled back, empty
        self.anomalies = []
        self.error = None

    def run(self):
        conn = None
        try:
            conn = connect(self.args, "groups-stress-" + self.label)
            cur = conn.cursor()
            while not self.stop.is_set() and not self.abort.is_set():
                n = self.rng.randint(1, 20)
                cur.execute("BEGIN")
                cur.execute("SELECT partition, log_offset, value FROM commitlog.consume(%s, %s, "
                            "max_records => %s, wait_ms => 200)", (self.group, self.topic, n))
                rows = [(p, off, to_text(v)) for p, off, v in cur.fetchall()]
                if len(rows) > n:
                    self.anomalies.append(("batch_too_large", "%s: consume(max_records => %d) returned %d rows"
                                           % (self.label, n, len(rows))))
                stamp = None
                if rows:
                    cur.execute("SELECT nextval(%s)", (self.seq,))
                    stamp = cur.fetchone()[0]
                if self.rng.random() < 0.2:
                    time.sleep(self.rng.uniform(0, 0.002))
                    cur.execute("ROLLBACK")
                    self.rolled_back_rows.extend(rows)
                    self.calls[1] += 1
                else:
                    cur.execute("COMMIT")
                    if rows:
                        self.txns.append((stamp, rows))
                        self.calls[0] += 1
                    else:
                        self.calls[2] += 1
        except Exception:
            self.error = "%s:\n%s" % (self.label, traceback.format_exc())
            self.abort.set()
        finally:
            if conn is not None:
                conn.close()


def check(committed, rolled_back, consumers, positions=None, latest=None):
    """consumers: {label: (txns, rolled_back_rows)}.  Returns [(kind, message)]."""
    anomalies = []
    seen = []  # (stamp, index, label, partition, offset, value)
    for label, (txns, _) in sorted(consumers.items()):
        for stamp, rows in txns:
            for i, (p, off, v) in enumerate(rows):
                seen.append((stamp, i, label, p, off, v))

    times = collections.Counter(s[5] for s in seen)
    for v in committed:
        if times[v] == 0:
            anomalies.append(("missing", "committed %s at %r never seen" % (v, committed[v])))
    for v, k in times.items():
        if k > 1:
            anomalies.append(("duplicate", "%s seen %d times" % (v, k)))
    for stamp, i, label, p, off, v in seen:
        if v in committed:
            if committed[v] != (p, off):
                anomalies.append(("offset_mismatch", "%s: %s seen at %d/%d, produced at %d/%d"
                                  % (label, v, p, off, committed[v][0], committed[v][1])))
        elif v in rolled_back:
            anomalies.append(("rolled_back_seen", "%s: rolled-back %s seen at %d/%d" % (label, v, p, off)))
        else:
            anomalies.append(("unknown_value", "%s: unknown value %r at %d/%d" % (label, v, p, off)))
    for label, (_, rb_rows) in sorted(consumers.items()):
        for p, off, v in rb_rows:
            if v in rolled_back:
                anomalies.append(("rolled_back_seen", "%s: rolled-back %s returned (to a rolled-back consume) "
                                  "at %d/%d" % (label, v, p, off)))
            elif v not in committed:
                anomalies.append(("unknown_value", "%s: unknown value %r at %d/%d (rolled-back consume)"
                                  % (label, v, p, off)))

    by_part = collections.defaultdict(list)
    for s in seen:
        by_part[s[3]].append(s)
    for p in sorted(by_part):
        last = None
        for stamp, i, label, _, off, v in sorted(by_part[p], key=lambda s: (s[0], s[1])):
            if last is not None and off <= last[0]:
                anomalies.append(("order", "partition %d: offset %d (%s, stamp %d) after offset %d (%s, stamp %d)"
                                  % (p, off, label, stamp, last[0], last[1], last[2])))
            last = (off, label, stamp)

    if len(seen) != len(committed):
        anomalies.append(("count", "%d records seen in committed consumes, %d committed"
                          % (len(seen), len(committed))))
    for label, (txns, _) in sorted(consumers.items()):
        if not any(rows for _, rows in txns):
            anomalies.append(("no_progress", "%s never got a record" % label))
    if positions is not None:
        for p in range(NPART):
            if positions.get(p) != latest.get(p):
                anomalies.append(("position", "partition %d: group offset %r, latest_offset %r"
                                  % (p, positions.get(p), latest.get(p))))
    return anomalies


def report(anomalies, limit=10):
    by_kind = collections.defaultdict(list)
    for kind, msg in anomalies:
        by_kind[kind].append(msg)
    for kind in sorted(by_kind):
        print("  %s: %d" % (kind, len(by_kind[kind])))
        for msg in by_kind[kind][:limit]:
            print("    " + msg)


def self_test(committed, rolled_back, consumers, rng):
    """Corrupt copies of what the consumers saw; the checker must flag each."""
    failures = []
    labels = sorted(consumers)

    def expect(name, kind, corrupted):
        kinds = {k for k, _ in check(committed, rolled_back, corrupted)}
        ok = kind in kinds
        print("  self-test %-28s -> %s %s" % (name, "flagged" if ok else "NOT FLAGGED", sorted(kinds)))
        if not ok:
            failures.append(name)

    def txn_with_rows(c):
        return [i for i, (_, rows) in enumerate(c[0]) if rows]

    # drop one record
    c = copy.deepcopy(consumers)
    lab = rng.choice(labels)
    i = rng.choice(txn_with_rows(c[lab]))
    c[lab][0][i][1].pop(rng.randrange(len(c[lab][0][i][1])))
    expect("drop a record", "missing", c)

    # the same record in a second committed consume
    c = copy.deepcopy(consumers)
    lab = rng.choice(labels)
    i = rng.choice(txn_with_rows(c[lab]))
    rec = rng.choice(c[lab][0][i][1])
    other = labels[(labels.index(lab) + 1) % len(labels)]
    c[other][0].append((10 ** 12, [rec]))
    expect("duplicate a record", "duplicate", c)

    # count the rows of a rolled-back consume as seen
    rb = [(lab, rows) for lab in labels for rows in [consumers[lab][1]] if rows]
    if rb:
        c = copy.deepcopy(consumers)
        lab, rows = rb[0]
        c[lab][0].append((10 ** 12, list(rows)))
        expect("count a rolled-back consume", "duplicate", c)
    else:
        print("  self-test: no rolled-back consume returned rows; that case is skipped")

    # a rolled-back produce in a committed consume, and in a rolled-back one
    v = sorted(rolled_back)[0] if rolled_back else "v-never-committed"
    rb_set = set(rolled_back) | {v}
    c = copy.deepcopy(consumers)
    c[labels[0]][0].append((10 ** 12, [(0, 10 ** 9, v)]))
    kinds = {k for k, _ in check(committed, rb_set, c)}
    ok = "rolled_back_seen" in kinds
    print("  self-test %-28s -> %s %s" % ("see a rolled-back record", "flagged" if ok else "NOT FLAGGED",
                                          sorted(kinds)))
    if not ok:
        failures.append("see a rolled-back record")
    c = copy.deepcopy(consumers)
    c[labels[0]][1].append((0, 10 ** 9, v))
    kinds = {k for k, _ in check(committed, rb_set, c)}
    ok = "rolled_back_seen" in kinds
    print("  self-test %-28s -> %s %s" % ("rolled-back record, rb consume", "flagged" if ok else "NOT FLAGGED",
                                          sorted(kinds)))
    if not ok:
        failures.append("rolled-back record in a rolled-back consume")

    # a value nobody produced
    c = copy.deepcopy(consumers)
    c[labels[1]][0].append((10 ** 12, [(1, 10 ** 9, "v-unknown")]))
    expect("an unknown value", "unknown_value", c)

    # swap two records of one partition that came in different consumes
    c = copy.deepcopy(consumers)
    flat = [(lab, ti, ri) for lab in labels for ti, (_, rows) in enumerate(c[lab][0])
            for ri, _ in enumerate(rows)]
    by_part = collections.defaultdict(list)
    for lab, ti, ri in flat:
        by_part[c[lab][0][ti][1][ri][0]].append((c[lab][0][ti][0], ri, lab, ti))
    p = max(by_part, key=lambda q: len({s[0] for s in by_part[q]}))
    entries = sorted(by_part[p])
    (_, r1, l1, t1), (_, r2, l2, t2) = entries[0], entries[-1]
    a, b = c[l1][0][t1][1][r1], c[l2][0][t2][1][r2]
    c[l1][0][t1][1][r1], c[l2][0][t2][1][r2] = b, a
    expect("swap the order of two", "order", c)

    # one record at another offset
    c = copy.deepcopy(consumers)
    lab = rng.choice(labels)
    i = rng.choice(txn_with_rows(c[lab]))
    rows = c[lab][0][i][1]
    p, off, v = rows[0]
    rows[0] = (p, off + 10 ** 9, v)
    expect("move a record's offset", "offset_mismatch", c)

    # the real data passes
    clean = check(committed, rolled_back, consumers)
    print("  self-test %-28s -> %s" % ("unmodified data", "clean" if not clean else "FLAGGED"))
    if clean:
        failures.append("unmodified data")
    return failures


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default=os.environ.get("PGHOST"))
    ap.add_argument("--port", default=os.environ.get("PGPORT", "5432"))
    ap.add_argument("--user", default=os.environ.get("PGUSER", "postgres"))
    ap.add_argument("--dbname", default=os.environ.get("PGDATABASE") or "postgres",
                    help="database (default: $PGDATABASE, else postgres)")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long the producers run (default 15)")
    ap.add_argument("--producers", type=int, default=3, help="producer threads (default 3)")
    ap.add_argument("--drain-seconds", type=float, default=120.0,
                    help="how long the consumers may take to reach lag 0 after the producers stop (default 120)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--keep-topic", action="store_true", help="do not drop the topic at the end")
    ap.add_argument("--self-test", action="store_true",
                    help="also check that the checker flags corrupted copies of what was seen")
    return ap.parse_args()


def main():
    args = parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2 ** 31)
    rng = random.Random(seed)
    tag = "%d_%d" % (os.getpid(), int(time.time() * 1000) % 10 ** 9)
    topic = "groups_stress_" + tag
    group = "groups_stress_g_" + tag
    seq = "public.groups_stress_stamp_" + tag
    print("groups_stress: seed %d, topic %s, %d producers for %.0f s, 2 consumers"
          % (seed, topic, args.producers, args.seconds))

    admin = connect(args, "groups-stress-admin")
    cur = admin.cursor()
    cur.execute("SET client_min_messages = warning")
    cur.execute("CREATE EXTENSION IF NOT EXISTS pg_commitlog")
    cur.execute("SELECT commitlog.create_topic(%s, %s)", (topic, NPART))
    cur.execute("CREATE SEQUENCE %s" % seq)

    errors = []
    stop_producers = threading.Event()
    stop_consumers = threading.Event()
    abort = threading.Event()
    producers = [Producer(args, topic, i, rng.randrange(2 ** 31), stop_producers)
                 for i in range(args.producers)]
    consumers = [Consumer(args, topic, group, seq, "c%d" % i, rng.randrange(2 ** 31), stop_consumers, abort)
                 for i in (1, 2)]
    t0 = time.monotonic()
    for t in producers + consumers:
        t.start()
    while time.monotonic() - t0 < args.seconds and not abort.is_set():
        time.sleep(0.1)
    stop_producers.set()
    for t in producers:
        t.join()
    t_prod = time.monotonic() - t0

    # drain: the group's committed offsets reach latest_offset everywhere
    deadline = time.monotonic() + args.drain_seconds
    drained = False
    while time.monotonic() < deadline and not abort.is_set():
        cur.execute("SELECT count(*), count(*) FILTER (WHERE lag = 0) FROM commitlog.group_offsets "
                    "WHERE group_id = %s AND topic = %s", (group, topic))
        total, zero = cur.fetchone()
        if total == NPART and zero == NPART:
            drained = True
            break
        time.sleep(0.1)
    stop_consumers.set()
    for t in consumers:
        t.join(timeout=120)
        if t.is_alive():
            errors.append("%s did not stop" % t.label)
    t_all = time.monotonic() - t0
    if not drained and not abort.is_set():
        errors.append("the group did not reach lag 0 within %.0f s after the producers stopped"
                      % args.drain_seconds)

    for t in producers + consumers:
        if t.error:
            errors.append(t.error)

    cur.execute("SELECT partition, committed_offset, latest_offset FROM commitlog.group_offsets "
                "WHERE group_id = %s AND topic = %s", (group, topic))
    positions, latest = {}, {}
    for p, pos, lat in cur.fetchall():
        positions[p], latest[p] = pos, lat

    committed, rolled_back = {}, set()
    for pr in producers:
        committed.update(pr.committed)
        rolled_back |= pr.rolled_back
    data = {c.label: (c.txns, c.rolled_back_rows) for c in consumers}
    anomalies = [a for c in consumers for a in c.anomalies]
    anomalies += check(committed, rolled_back, data, positions, latest)

    ptx = [sum(pr.txns[i] for pr in producers) for i in (0, 1)]
    print("produced: %d records committed in %d transactions, %d rolled back in %d transactions (%.1f s)"
          % (len(committed), ptx[0], len(rolled_back), ptx[1], t_prod))
    for c in consumers:
        got = sum(len(rows) for _, rows in c.txns)
        parts = collections.Counter(p for _, rows in c.txns for p, _, _ in rows)
        print("%s: %d committed consumes with %d records (per partition %s), %d rolled back (%d records "
              "to be re-delivered), %d empty"
              % (c.label, c.calls[0], got, dict(sorted(parts.items())), c.calls[1],
                 len(c.rolled_back_rows), c.calls[2]))
    print("group positions %s, latest %s; total %.1f s" % (dict(sorted(positions.items())),
                                                           dict(sorted(latest.items())), t_all))
    redelivered = {v for c in consumers for _, _, v in c.rolled_back_rows} & set(committed)
    print("records returned to a rolled-back consume and later seen committed: %d" % len(redelivered))

    failed = False
    if errors:
        failed = True
        print("ERRORS:")
        for e in errors:
            print(e)
    if anomalies:
        failed = True
        print("ANOMALIES:")
        report(anomalies)

    if args.self_test:
        if not committed or not all(c.txns for c in consumers):
            print("self-test: not enough data to corrupt")
            failed = True
        else:
            bad = self_test(committed, rolled_back, data, random.Random(seed))
            if bad:
                failed = True
                print("self-test FAILED: the checker did not flag: %s" % ", ".join(bad))
            else:
                print("self-test: the checker flagged every corruption")

    if not args.keep_topic:
        try:
            cur.execute("SELECT commitlog.delete_group(%s)", (group,))
        except psycopg2.Error:
            pass
        cur.execute("SELECT commitlog.drop_topic(%s)", (topic,))
        cur.execute("DROP SEQUENCE %s" % seq)
    admin.close()

    print("groups_stress: %s" % ("FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
