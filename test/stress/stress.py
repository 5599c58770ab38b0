#!/usr/bin/python3
"""Stress checker for pg_commitlog's offset invariants (DESIGN 4 and 10).

Several producer threads, each on its own connection, run transactions of
1-20 produce calls (commitlog.produce, produce_batch, produce_messages; with
explicit partitions, keys, or neither), with random small sleeps so that
transactions interleave.  About a quarter of the transactions are rolled back,
wholly (ROLLBACK, or a failing statement) or in part (ROLLBACK TO SAVEPOINT,
then COMMIT).  Every record's value is a unique id, so the checker knows
exactly which records committed (COMMIT returned OK) and which did not.

While they run, readers follow each partition with
    SELECT ... FROM commitlog.fetch(topic, p, next_offset, max_records => 1..50)
setting next_offset = last offset + 1 after each non-empty batch:
  * "follower-p<N>": one autocommit reader per partition;
  * "rr-follower":   one reader of both partitions inside long REPEATABLE READ
                     transactions (committed every ~50 fetches): fetch must
                     use a fresh snapshot, not the transaction's;
  * "consumer-group": two members of one consumer group calling
                     commitlog.consume() in autocommit (some calls rolled back,
                     so their records must come again); together one reader;
  * "final-scan":    after everything, one reader of the whole log.
Followers sometimes long-poll (wait_ms) after an empty fetch.
When the producers are done, the WAL is flushed and latest_offset() of each
partition becomes the readers' target; each follower must reach it.

Checks, for every reader:
  (a) every committed record was seen exactly once;
  (b) no rolled-back record (or unknown value) was ever seen;
  (c) offsets seen in a partition strictly increase, and stay below
      latest_offset; every record is in the partition it was fetched from;
  (d) the partition/offset produce returned for a committed record is where
      the reader saw it (and the key is the one produced);
  (e) the number of records seen equals the number committed.
Producer side: the partition produce returns is the explicit one, or
partition_for_key(key), or one partition per call for keyless records; the
offsets one producer gets in a partition strictly increase.

Pass/fail does not depend on timing: only on what was committed and seen.

--self-test additionally proves the checker is not vacuous: it corrupts copies
of what a reader saw (drops a record, duplicates one, adds a rolled-back or an
unknown one, reorders, swaps values) and requires the checker to flag each;
it also runs a naive reader that scans the topic table without the stable
offset and reports what it missed (informational: a race, not guaranteed).

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
from psycopg2 import sql

NPART = 2
NKEYS = 16
EXPECTED_ERRORS = {
    "22012",  # division_by_zero: the deliberate failing statements
    "22023",  # invalid_parameter_value: nonexistent partition, keys/payloads mismatch
}
KIND_ORDER = [
    "unexpected_error", "missing", "duplicate", "rolled_back_seen", "unknown_value", "order",
    "offset_mismatch", "partition_mismatch", "key_mismatch", "beyond_latest",
    "batch_too_large", "count", "produce_partition", "produce_order",
    "produce_result",
]


class StressError(Exception):
    pass


class Rec:
    """One record a producer tried to produce."""
    __slots__ = ("vid", "pid", "txn", "partition", "offset", "key", "status", "how", "t_commit")

    def __init__(self, vid, pid, txn, key):
        self.vid = vid
        self.pid = pid
        self.txn = txn
        self.partition = None
        self.offset = None
        self.key = key
        self.status = "pending"  # -> committed | rolled_back
        self.how = None
        self.t_commit = None

    def describe(self):
        where = ("partition %s offset %s" % (self.partition, self.offset)
                 if self.offset is not None else "never got an offset back")
        s = "%s (producer %d txn %d, %s" % (self.vid, self.pid, self.txn, where)
        if self.status == "committed":
            s += ", COMMIT returned at t=%.3fs" % self.t_commit
        else:
            s += ", rolled back: %s" % self.how
        return s + ")"


class Ctx:
    def __init__(self, args, topic):
        self.args = args
        self.topic = topic
        self.t0 = time.monotonic()
        self.stop = threading.Event()      # producers: finish the current transaction and stop
        self.abort = threading.Event()     # somebody failed: everyone stops now
        self.targets = None                # {partition: latest_offset} once producers are done
        self.targets_set = threading.Event()
        self.catchup_deadline = None
        self.key_partition = {}            # key bytes -> partition_for_key
        self.keys = []

    def now(self):
        return time.monotonic() - self.t0


def connect(args, app):
    kw = dict(host=args.host, port=args.port, user=args.user, dbname=args.dbname,
              application_name=app,
              options="-c statement_timeout=120000 -c lock_timeout=60000")
    conn = psycopg2.connect(**kw)
    conn.autocommit = True  # transactions are explicit BEGIN/COMMIT below
    return conn


def fetch_sql(with_bytes, with_wait=False):
    return ("SELECT log_offset, value, key, partition FROM commitlog.fetch(%s, %s, %s, max_records => %s"
            + (", max_bytes => %s" if with_bytes else "")
            + (", wait_ms => %s" if with_wait else "") + ")")


def to_bytes(v):
    return None if v is None else bytes(v)


# ---------------------------------------------------------------------------
# Producers
# ---------------------------------------------------------------------------

class Producer(threading.Thread):
    MODES = ("rollback", "fail", "partial", "commit")

    def __init__(self, ctx, pid, seed):
        super().__init__(name="producer-%d" % pid, daemon=True)
        self.ctx = ctx
        self.pid = pid
        self.rng = random.Random(seed)
        self.seq = 0
        self.txn = 0
        self.records = {}                      # vid -> Rec
        self.stats = collections.Counter()
        self.anomalies = []                    # (kind, message)
        self.last_offset = {p: -1 for p in range(NPART)}
        self.commits = []                      # (t_commit, pid, txn, {p: [offsets]})
        self.error = None

    # -- helpers --------------------------------------------------------------

    def anomaly(self, kind, msg):
        self.anomalies.append((kind, "producer %d txn %d: %s" % (self.pid, self.txn, msg)))

    def new_rec(self, key):
        self.seq += 1
        vid = "p%d-%07d" % (self.pid, self.seq)
        rec = Rec(vid, self.pid, self.txn, key)
        self.records[vid] = rec
        return rec

    def pause(self):
        r = self.rng.random()
        if r < 0.03:
            time.sleep(self.rng.uniform(0.010, 0.040))  # hold the transaction open a while
        else:
            time.sleep(self.rng.uniform(0, self.ctx.args.max_sleep_ms / 1000.0))

    def rollback_recs(self, recs, how):
        for r in recs:
            r.status = "rolled_back"
            r.how = how

    def take_results(self, recs, rows, expected, sticky_group):
        """Record the positions produce returned, in input order, and check them."""
        if len(rows) != len(recs):
            self.anomaly("produce_result", "%d records in, %d positions out" % (len(recs), len(rows)))
        sticky = None
        for rec, (part, off), exp, keyless in zip(recs, rows, expected, sticky_group):
            rec.partition, rec.offset = part, off
            if part is None or off is None or not 0 <= part < NPART:
                self.anomaly("produce_result", "%s: position (%r, %r)" % (rec.vid, part, off))
                continue
            if exp is not None and part != exp:
                self.anomaly("produce_partition", "%s went to partition %d, expected %d (%s)"
                             % (rec.vid, part, exp, "explicit" if rec.key is None else "key %r" % rec.key))
            if keyless:
                if sticky is None:
                    sticky = part
                elif part != sticky:
                    self.anomaly("produce_partition", "keyless records of one call in partitions %d and %d"
                                 % (sticky, part))
            if off <= self.last_offset[part]:
                self.anomaly("produce_order", "%s got offset %d in partition %d after this producer already got %d"
                             % (rec.vid, off, part, self.last_offset[part]))
            self.last_offset[part] = max(self.last_offset[part], off)

    def route(self):
        """(key, partition, expected partition or None, keyless)."""
        r = self.rng.random()
        if r < 0.35:
            p = self.rng.randrange(NPART)
            key = self.rng.choice(self.ctx.keys) if self.rng.random() < 0.3 else None
            return key, p, p, False
        if r < 0.80:
            key = self.rng.choice(self.ctx.keys)
            return key, None, self.ctx.key_partition[key], False
        return None, None, None, True

    # -- produce calls --------------------------------------------------------

    def produce_call(self, cur, pending):
        r = self.rng.random()
        if r < 0.55:
            self.produce_single(cur, pending)
        elif r < 0.90:
            self.produce_batch(cur, pending)
        else:
            self.produce_messages(cur, pending)

    def produce_single(self, cur, pending):
        key, part, exp, keyless = self.route()
        rec = self.new_rec(key)
        pending.append(rec)
        if self.rng.random() < 0.2:  # the text convenience overload
            q = ("SELECT partition, log_offset FROM commitlog.produce(%s, %s::text, key => %s::bytea, "
                 "partition => %s::int)")
            val = rec.vid
        else:
            q = ("SELECT partition, log_offset FROM commitlog.produce(%s, %s::bytea, key => %s::bytea, "
                 "partition => %s::int)")
            val = rec.vid.encode()
        cur.execute(q, (self.ctx.topic, val, key, part))
        self.take_results([rec], cur.fetchall(), [exp], [keyless])
        self.stats["produce"] += 1

    def produce_batch(self, cur, pending):
        n = self.rng.randint(1, 8)
        r = self.rng.random()
        part = None
        keys = None
        if r < 0.35:  # one explicit partition for the batch (keys, if any, do not matter)
            part = self.rng.randrange(NPART)
            if self.rng.random() < 0.3:
                keys = [self.rng.choice(self.ctx.keys) for _ in range(n)]
        elif r < 0.75:  # keys, some of them NULL (those go to the call's sticky partition)
            keys = [self.rng.choice(self.ctx.keys) if self.rng.random() < 0.8 else None for _ in range(n)]
        recs = [self.new_rec(keys[i] if keys else None) for i in range(n)]
        pending.extend(recs)
        expected, keyless = [], []
        for rec in recs:
            if part is not None:
                expected.append(part)
                keyless.append(False)
            elif rec.key is not None:
                expected.append(self.ctx.key_partition[rec.key])
                keyless.append(False)
            else:
                expected.append(None)
                keyless.append(True)
        cur.execute("SELECT b.partition, b.log_offset FROM commitlog.produce_batch(%s, %s::bytea[], %s::bytea[], %s::int) "
                    "WITH ORDINALITY AS b(partition, log_offset, ord) ORDER BY b.ord",
                    (self.ctx.topic, [rec.vid.encode() for rec in recs], keys, part))
        self.take_results(recs, cur.fetchall(), expected, keyless)
        self.stats["produce_batch"] += 1

    def produce_messages(self, cur, pending):
        n = self.rng.randint(1, 5)
        recs, params, expected, keyless = [], [], [], []
        for _ in range(n):
            key, part, exp, kl = self.route()
            rec = self.new_rec(key)
            recs.append(rec)
            params.extend([key, rec.vid.encode(), part])
            expected.append(exp)
            keyless.append(kl)
        pending.extend(recs)
        arr = ", ".join(["ROW(%s::bytea, %s::bytea, NULL, %s::int, NULL)::commitlog.message"] * n)
        cur.execute("SELECT m.partition, m.log_offset FROM commitlog.produce_messages(%s, ARRAY[" + arr + "]) "
                    "WITH ORDINALITY AS m(partition, log_offset, ord) ORDER BY m.ord",
                    [self.ctx.topic] + params)
        self.take_results(recs, cur.fetchall(), expected, keyless)
        self.stats["produce_messages"] += 1

    def failing_statement(self, cur):
        """A statement that must fail; its records (if any) are rolled back."""
        kind = self.rng.choice(["produce_then_error", "batch_then_error", "bad_partition",
                                "bad_keys", "bad_message", "plain_error"])
        recs = []
        if kind == "produce_then_error":  # inserted, offset taken, then the statement fails
            recs = [self.new_rec(None)]
            q = ("SELECT p.log_offset / 0 FROM commitlog.produce(%s, %s::bytea, partition => %s::int) p")
            params = (self.ctx.topic, recs[0].vid.encode(), self.rng.randrange(NPART))
        elif kind == "batch_then_error":
            keys = [self.rng.choice(self.ctx.keys) for _ in range(self.rng.randint(2, 6))]
            recs = [self.new_rec(k) for k in keys]
            q = ("SELECT sum(b.log_offset) / 0 FROM commitlog.produce_batch(%s, %s::bytea[], %s::bytea[]) b")
            params = (self.ctx.topic, [r.vid.encode() for r in recs], keys)
        elif kind == "bad_partition":
            recs = [self.new_rec(None)]
            q = "SELECT * FROM commitlog.produce(%s, %s::bytea, partition => %s::int)"
            params = (self.ctx.topic, recs[0].vid.encode(), NPART + self.rng.randrange(3))
        elif kind == "bad_keys":
            recs = [self.new_rec(None) for _ in range(3)]
            q = "SELECT * FROM commitlog.produce_batch(%s, %s::bytea[], %s::bytea[])"
            params = (self.ctx.topic, [r.vid.encode() for r in recs], [self.ctx.keys[0]])
        elif kind == "bad_message":  # a good message, then one for a partition that does not exist
            recs = [self.new_rec(None), self.new_rec(None)]
            q = ("SELECT * FROM commitlog.produce_messages(%s, ARRAY["
                 "ROW(NULL, %s::bytea, NULL, 0, NULL)::commitlog.message, "
                 "ROW(NULL, %s::bytea, NULL, %s::int, NULL)::commitlog.message])")
            params = (self.ctx.topic, recs[0].vid.encode(), recs[1].vid.encode(), NPART + 5)
        else:
            q = "SELECT 1 / (random() * 0)::int"
            params = None
        try:
            cur.execute(q, params)
        except psycopg2.Error as e:
            if e.pgcode not in EXPECTED_ERRORS:
                raise
        else:
            raise StressError("failing statement (%s) did not fail: %s" % (kind, cur.query))
        self.rollback_recs(recs, "failing statement (%s)" % kind)
        self.stats["fail_" + kind] += 1
        return recs

    # -- transactions ---------------------------------------------------------

    def pick_mode(self):
        # The first transactions of each producer cover every mode, so a run
        # always exercises them; then about 25% are rolled back (in whole or in part).
        if self.txn <= len(self.MODES):
            return self.MODES[(self.txn - 1 + self.pid) % len(self.MODES)]
        r = self.rng.random()
        if r < 0.09:
            return "rollback"
        if r < 0.17:
            return "fail"
        if r < 0.25:
            return "partial"
        return "commit"

    def one_txn(self, cur):
        self.txn += 1
        mode = self.pick_mode()
        ncalls = self.rng.randint(1, 20)
        pending = []       # records that commit if the transaction does
        cur.execute("BEGIN")
        if self.ctx.args.async_commit and self.rng.random() < 0.2:
            cur.execute("SET LOCAL synchronous_commit = off")
            self.stats["async_commit_txns"] += 1
        self.pause()

        sp_start = sp_end = fail_after = None
        if mode == "partial":  # calls [sp_start, sp_end) run in a savepoint that is rolled back
            sp_start = self.rng.randrange(ncalls)
            sp_end = self.rng.randint(sp_start + 1, ncalls)
        elif mode == "commit" and self.rng.random() < 0.15:  # a savepoint that is released
            sp_start = self.rng.randrange(ncalls)
            sp_end = self.rng.randint(sp_start + 1, ncalls)
        elif mode == "fail":
            fail_after = self.rng.randint(1, ncalls)

        mark = None
        for i in range(ncalls):
            if i == sp_start:
                cur.execute("SAVEPOINT s1")
                mark = len(pending)
                self.pause()
            self.produce_call(cur, pending)
            self.pause()
            if fail_after is not None and i + 1 == fail_after:
                self.failing_statement(cur)
                break
            if sp_end is not None and i + 1 == sp_end:
                if mode == "partial":
                    if self.rng.random() < 0.4:
                        self.failing_statement(cur)
                    cur.execute("ROLLBACK TO SAVEPOINT s1")
                    self.rollback_recs(pending[mark:], "ROLLBACK TO SAVEPOINT")
                    self.stats["savepoint_records_rolled_back"] += len(pending) - mark
                    del pending[mark:]
                else:
                    cur.execute("RELEASE SAVEPOINT s1")
                self.pause()

        if mode == "rollback":
            cur.execute("ROLLBACK")
            self.rollback_recs(pending, "ROLLBACK")
            self.stats["txn_rollback"] += 1
        elif mode == "fail":
            if self.rng.random() < 0.25:
                try:  # the transaction is aborted: anything else fails too
                    cur.execute("SELECT 1")
                except psycopg2.errors.InFailedSqlTransaction:
                    pass
                else:
                    raise StressError("statement after a failed one did not fail")
            if self.rng.random() < 0.5:
                cur.execute("ROLLBACK")
            else:
                cur.execute("COMMIT")  # of a failed transaction: the server rolls back
                if cur.statusmessage != "ROLLBACK":
                    raise StressError("COMMIT of a failed transaction returned %r" % cur.statusmessage)
            self.rollback_recs(pending, "failed transaction")
            self.stats["txn_failed"] += 1
        else:
            try:
                cur.execute("COMMIT")
            except psycopg2.Error as e:
                raise StressError("COMMIT failed (%s %s): the outcome of %d records is unknown"
                                  % (e.pgcode, str(e).strip(), len(pending)))
            if cur.statusmessage != "COMMIT":
                raise StressError("COMMIT returned %r" % cur.statusmessage)
            t = self.ctx.now()
            by_part = collections.defaultdict(list)
            for rec in pending:
                rec.status = "committed"
                rec.t_commit = t
                by_part[rec.partition].append(rec.offset)
            self.commits.append((t, self.pid, self.txn, dict(by_part)))
            self.stats["txn_partial" if mode == "partial" else "txn_commit"] += 1
        self.pause()

    def run(self):
        conn = None
        try:
            conn = connect(self.ctx.args, "stress-producer-%d" % self.pid)
            cur = conn.cursor()
            while not self.ctx.stop.is_set() and not self.ctx.abort.is_set():
                try:
                    self.one_txn(cur)
                except psycopg2.Error as e:
                    # An error nothing asked for (not at COMMIT: that raises
                    # StressError).  The transaction is aborted, so its records
                    # are rolled back: note it, end it, and go on checking.
                    if conn.closed or e.pgcode is None:
                        raise
                    query = (cur.query or b"").decode(errors="replace")
                    self.anomaly("unexpected_error", "%s %s (statement: %s)"
                                 % (e.pgcode, str(e).strip().replace("\n", " | "),
                                    query[:160] + ("..." if len(query) > 160 else "")))
                    self.stats["unexpected_errors"] += 1
                    cur.execute("ROLLBACK")
                    self.rollback_recs([r for r in self.records.values()
                                        if r.txn == self.txn and r.status == "pending"],
                                       "transaction aborted by an unexpected error")
        except Exception:
            self.error = "producer %d, txn %d:\n%s" % (self.pid, self.txn, traceback.format_exc())
            self.ctx.abort.set()
        finally:
            if conn is not None:
                conn.close()


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------

class Follower(threading.Thread):
    """Follows partitions with fetch until the producers are done and it has
    reached latest_offset.  rr: inside REPEATABLE READ transactions.
    naive: reads the topic table directly, ignoring the stable offset (a
    deliberately broken reader, for --self-test)."""

    def __init__(self, ctx, label, partitions, seed, rr=False, naive=False):
        super().__init__(name=label, daemon=True)
        self.ctx = ctx
        self.label = label
        self.partitions = list(partitions)
        self.rng = random.Random(seed)
        self.rr = rr
        self.naive = naive
        self.seen = {p: [] for p in self.partitions}        # (offset, value, key, partition)
        self.fetch_log = {p: [] for p in self.partitions}   # (t, from, max_records, n, first, last)
        self.next = {}
        self.anomalies = []
        self.fetches = 0
        self.rr_txns = 0
        self.rr_past_snapshot = 0   # blocks in which fetch returned rows the txn snapshot cannot see
        self.error = None
        self.finished = False
        self.last_empty = {}
        self.waits = 0

    def fetch(self, cur, p):
        n = self.rng.randint(1, 50)
        frm = self.next[p]
        if self.naive:
            cur.execute(sql.SQL("SELECT log_offset, value, key, partition FROM commitlog_topics.{} "
                                "WHERE partition = %s AND log_offset >= %s ORDER BY log_offset LIMIT %s")
                        .format(sql.Identifier(self.ctx.topic)), (p, frm, n))
        elif self.last_empty.get(p) and self.rng.random() < 0.5:  # long polling
            cur.execute(fetch_sql(False, True), (self.ctx.topic, p, frm, n, self.rng.randint(1, 30)))
            self.waits += 1
        elif self.rng.random() < 0.1:  # tiny max_bytes: still at least one record
            cur.execute(fetch_sql(True), (self.ctx.topic, p, frm, n, self.rng.randint(1, 40)))
        else:
            cur.execute(fetch_sql(False), (self.ctx.topic, p, frm, n))
        rows = [(r[0], to_bytes(r[1]), to_bytes(r[2]), r[3]) for r in cur.fetchall()]
        self.fetches += 1
        self.fetch_log[p].append((self.ctx.now(), frm, n, len(rows),
                                  rows[0][0] if rows else None, rows[-1][0] if rows else None))
        if len(rows) > n:
            self.anomalies.append(("batch_too_large", "%s: fetch(%d, from %d, max_records %d) returned %d rows"
                                   % (self.label, p, frm, n, len(rows))))
        if rows:
            self.seen[p].extend(rows)
            self.next[p] = rows[-1][0] + 1
        self.last_empty[p] = not rows
        return rows

    def rr_begin(self, cur):
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self.block_start = dict(self.next)
        self.block_count = {p: 0 for p in self.partitions}
        self.block_len = self.rng.randint(40, 60)
        self.block_fetches = 0

    def rr_end(self, cur):
        # How many records of this block's range can the transaction snapshot
        # see?  Fewer than fetch returned proves fetch read past it.
        past = False
        for p in self.partitions:
            cur.execute(sql.SQL("SELECT count(*) FROM commitlog_topics.{} WHERE partition = %s "
                                "AND log_offset >= %s AND log_offset < %s")
                        .format(sql.Identifier(self.ctx.topic)), (p, self.block_start[p], self.next[p]))
            visible = cur.fetchone()[0]
            if self.block_count[p] > visible:
                past = True
        cur.execute("COMMIT")
        if cur.statusmessage != "COMMIT":
            raise StressError("%s: COMMIT returned %r" % (self.label, cur.statusmessage))
        self.rr_txns += 1
        if past:
            self.rr_past_snapshot += 1

    def run(self):
        conn = None
        try:
            conn = connect(self.ctx.args, "stress-" + self.label)
            cur = conn.cursor()
            for p in self.partitions:
                cur.execute("SELECT commitlog.earliest_offset(%s, %s)", (self.ctx.topic, p))
                self.next[p] = cur.fetchone()[0]
            if self.rr:
                self.rr_begin(cur)
            done = set()
            while len(done) < len(self.partitions):
                if self.ctx.abort.is_set():
                    return
                got_any = False
                for p in self.partitions:
                    if p in done:
                        continue
                    # Once the producers are done and the WAL is flushed, an
                    # empty fetch means the reader has everything below
                    # latest_offset.  (next_offset itself may stay below it:
                    # a reader cannot step over a gap at the tail.)  Read the
                    # flag BEFORE fetching: an empty fetch from before then
                    # proves nothing.
                    quiet = self.ctx.targets_set.is_set()
                    rows = self.fetch(cur, p)
                    if rows:
                        got_any = True
                        if self.rr:
                            self.block_count[p] += len(rows)
                    elif quiet:
                        done.add(p)
                    if self.rr:
                        self.block_fetches += 1
                        if self.block_fetches >= self.block_len:
                            self.rr_end(cur)
                            self.rr_begin(cur)
                if self.ctx.targets_set.is_set() and time.monotonic() > self.ctx.catchup_deadline:
                    raise StressError("%s did not catch up within %ss: next offsets %s, targets %s"
                                      % (self.label, self.ctx.args.catchup_seconds, self.next, self.ctx.targets))
                if not got_any:
                    time.sleep(self.rng.uniform(0, 0.002))
            if self.rr:
                self.rr_end(cur)
            self.finished = True
        except Exception:
            self.error = "%s:\n%s" % (self.label, traceback.format_exc())
            self.ctx.abort.set()
        finally:
            if conn is not None:
                conn.close()

class GroupMember(threading.Thread):
    """A member of a consumer group reading the topic with commitlog.consume()
    in autocommit (each call commits the group's new positions); about 10% of
    the calls run in a transaction that is rolled back, whose records must be
    delivered again.  The members' records together form one reader."""

    def __init__(self, ctx, label, group, seed):
        super().__init__(name=label, daemon=True)
        self.ctx = ctx
        self.label = label
        self.group = group
        self.rng = random.Random(seed)
        self.seen = {p: [] for p in range(NPART)}
        self.anomalies = []
        self.calls = 0
        self.rolled_back_calls = 0
        self.rolled_back_rows = 0
        self.error = None
        self.finished = False

    def caught_up(self, cur):
        for p in range(NPART):
            cur.execute("SELECT commitlog.committed_offset(%s, %s, %s)", (self.group, self.ctx.topic, p))
            pos = cur.fetchone()[0]
            if pos is None or pos < self.ctx.targets[p]:
                return False
        return True

    def run(self):
        conn = None
        try:
            conn = connect(self.ctx.args, "stress-" + self.label)
            cur = conn.cursor()
            last = {p: -1 for p in range(NPART)}
            while True:
                if self.ctx.abort.is_set():
                    return
                n = self.rng.randint(1, 50)
                wait = self.rng.randint(1, 20) if self.rng.random() < 0.3 else 0
                discard = self.rng.random() < 0.1
                if discard:
                    cur.execute("BEGIN")
                quiet = self.ctx.targets_set.is_set()
                cur.execute("SELECT partition, log_offset, value, key FROM commitlog.consume(%s, %s, "
                            "max_records => %s, wait_ms => %s)", (self.group, self.ctx.topic, n, wait))
                rows = [(r[0], r[1], to_bytes(r[2]), to_bytes(r[3])) for r in cur.fetchall()]
                self.calls += 1
                if len(rows) > n:
                    self.anomalies.append(("batch_too_large", "%s: consume(max_records %d) returned %d rows"
                                           % (self.label, n, len(rows))))
                if discard:
                    self.time_sleep()
                    cur.execute("ROLLBACK")
                    self.rolled_back_calls += 1
                    self.rolled_back_rows += len(rows)
                    continue
                for part, off, val, key in rows:
                    if part not in self.seen:
                        self.anomalies.append(("partition_mismatch", "%s: consume returned partition %r"
                                               % (self.label, part)))
                        continue
                    if off <= last[part]:
                        self.anomalies.append(("order", "%s: partition %d: offset %d consumed after %d"
                                               % (self.label, part, off, last[part])))
                    last[part] = max(last[part], off)
                    self.seen[part].append((off, val, key, part))
                if not rows:
                    if quiet:
                        if self.caught_up(cur):
                            break
                        if time.monotonic() > self.ctx.catchup_deadline:
                            raise StressError("%s did not catch up within %ss" % (self.label,
                                                                                  self.ctx.args.catchup_seconds))
                    self.time_sleep()
            self.finished = True
        except Exception:
            self.error = "%s:\n%s" % (self.label, traceback.format_exc())
            self.ctx.abort.set()
        finally:
            if conn is not None:
                conn.close()

    def time_sleep(self):
        time.sleep(self.rng.uniform(0, 0.002))


def final_scan(ctx, conn):
    """One reader of the whole log after everything is quiet."""
    f = Follower(ctx, "final-scan", range(NPART), 0)
    cur = conn.cursor()
    for p in range(NPART):
        cur.execute("SELECT commitlog.earliest_offset(%s, %s)", (ctx.topic, p))
        f.next[p] = cur.fetchone()[0]
        while True:
            cur.execute(fetch_sql(False), (ctx.topic, p, f.next[p], 1000))
            rows = [(r[0], to_bytes(r[1]), to_bytes(r[2]), r[3]) for r in cur.fetchall()]
            f.fetches += 1
            f.fetch_log[p].append((ctx.now(), f.next[p], 1000, len(rows),
                                   rows[0][0] if rows else None, rows[-1][0] if rows else None))
            if not rows:
                break
            f.seen[p].extend(rows)
            f.next[p] = rows[-1][0] + 1
    f.finished = True
    return f


# ---------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------

def fetch_covering(fetch_log, p, off):
    """The fetch calls of a reader that went past offset off of partition p
    (returned a range including it)."""
    return [f for f in fetch_log.get(p, []) if f[3] and f[4] <= off <= f[5]]


def check(label, seen, records, targets, fetch_log=None, other_views=()):
    """Anomalies (kind, message) in what reader `label` saw (seen: {p: rows})."""
    out = []

    def add(kind, msg):
        out.append((kind, "%s: %s" % (label, msg)))

    count = collections.Counter()
    n_seen = 0
    for p, rows in sorted(seen.items()):
        prev = None
        for off, val, key, part in rows:
            n_seen += 1
            if part != p:
                add("partition_mismatch", "fetch of partition %d returned a record of partition %r at offset %d"
                    % (p, part, off))
            if prev is not None and off <= prev:
                add("order", "partition %d: offset %d seen after offset %d" % (p, off, prev))
            prev = off
            if targets is not None and off >= targets[p]:
                add("beyond_latest", "partition %d: offset %d seen, but latest_offset is %d" % (p, off, targets[p]))
            try:
                vid = val.decode() if val is not None else None
            except UnicodeDecodeError:
                vid = None
            rec = records.get(vid)
            count[vid] += 1
            if rec is None:
                add("unknown_value", "partition %d offset %d: value %r was never produced" % (p, off, val))
                continue
            if count[vid] == 2:
                add("duplicate", "%s seen more than once (again at partition %d offset %d)" % (rec.describe(), p, off))
            if rec.status != "committed":
                add("rolled_back_seen", "partition %d offset %d: %s" % (p, off, rec.describe()))
                continue
            if rec.partition != p or rec.offset != off:
                add("offset_mismatch", "%s seen at partition %d offset %d" % (rec.describe(), p, off))
            if rec.key != key:
                add("key_mismatch", "%s: key %r produced, %r seen" % (rec.vid, rec.key, key))

    committed = [r for r in records.values() if r.status == "committed"]
    for r in sorted(committed, key=lambda r: (r.partition, r.offset)):
        if count[r.vid] == 0:
            msg = "never saw " + r.describe()
            if fetch_log is not None:
                cov = fetch_covering(fetch_log, r.partition, r.offset)
                if cov:
                    t, frm, n, got, first, last = cov[0]
                    msg += "; fetch at t=%.3fs from offset %d (max_records %d) returned %d rows %d..%d without it" % (
                        t, frm, n, got, first, last)
            for name, view in other_views:
                present = any(row[0] == r.offset and row[1] == r.vid.encode()
                              for row in view.get(r.partition, []))
                msg += "; %s %s it" % (name, "saw" if present else "did not see")
            add("missing", msg)
    if n_seen != len(committed):
        add("count", "%d records seen, %d committed" % (n_seen, len(committed)))
    return out


def kinds_of(anomalies):
    return collections.Counter(k for k, _ in anomalies)


def report(anomalies, limit):
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    shown = sorted(anomalies, key=lambda a: order.get(a[0], len(order)))
    for kind, msg in shown[:limit]:
        print("  [%s] %s" % (kind, msg))
    if len(anomalies) > limit:
        print("  ... and %d more" % (len(anomalies) - limit))


def self_test(records, follower, targets):
    """Corrupt copies of what a reader saw; the checker must flag each."""
    base = {p: list(rows) for p, rows in follower.seen.items()}
    failures = []
    committed_rows = [(p, i) for p, rows in base.items() for i in range(len(rows) - 1)]
    rolled_known = [r for r in records.values()
                    if r.status == "rolled_back" and r.offset is not None]
    if not committed_rows or not rolled_known:
        return ["not enough data for the self-test (%d rows seen, %d rolled-back records with offsets)"
                % (len(committed_rows), len(rolled_known))]
    rng = random.Random(12345)
    p, i = committed_rows[len(committed_rows) // 2]

    def mutation(name, expected, fn):
        seen = copy.deepcopy(base)
        fn(seen)
        found = kinds_of(check("self-test/" + name, seen, records, targets))
        ok = set(expected) <= set(found)
        print("self-test: %-24s -> %s (%s)" % (name, "detected" if ok else "NOT DETECTED",
                                              ", ".join("%s=%d" % kv for kv in sorted(found.items())) or "no anomalies"))
        if not ok:
            failures.append("mutation %s not detected: expected %s, got %s" % (name, expected, dict(found)))

    mutation("drop a record", ["missing", "count"], lambda s: s[p].pop(i))
    mutation("duplicate a record", ["duplicate", "order", "count"], lambda s: s[p].insert(i + 1, s[p][i]))
    mutation("re-deliver the last", ["duplicate", "order", "count"],
             lambda s: s[p].append(s[p][-1]))

    def add_rolled(s):
        r = rng.choice(rolled_known)
        rows = s[r.partition]
        rows.append((r.offset, r.vid.encode(), r.key, r.partition))
        rows.sort(key=lambda row: row[0])
    mutation("see a rolled-back record", ["rolled_back_seen", "count"], add_rolled)
    mutation("see an unknown value", ["unknown_value", "count"],
             lambda s: s[p].insert(i + 1, (s[p][i][0], b"bogus", None, p)))
    mutation("reorder two records", ["order"],
             lambda s: s[p].__setitem__(slice(i, i + 2), [s[p][i + 1], s[p][i]]))

    def swap_values(s):
        a, b = s[p][i], s[p][i + 1]
        s[p][i] = (a[0], b[1], b[2], a[3])
        s[p][i + 1] = (b[0], a[1], a[2], b[3])
    mutation("swap two values", ["offset_mismatch"], swap_values)
    mutation("wrong partition column", ["partition_mismatch"],
             lambda s: s[p].__setitem__(i, s[p][i][:3] + (1 - p,)))
    mutation("record past latest", ["beyond_latest"],
             lambda s: s[p].append((targets[p], s[p][-1][1], s[p][-1][2], p)) or s[p].pop(-2))
    return failures


# ---------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default=os.environ.get("PGHOST"))
    ap.add_argument("--port", default=os.environ.get("PGPORT", "5432"))
    ap.add_argument("--user", default=os.environ.get("PGUSER", "postgres"))
    ap.add_argument("--dbname", default=os.environ.get("PGDATABASE") or "postgres",
                    help="database (default: $PGDATABASE, else postgres)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the producers run (default 20)")
    ap.add_argument("--producers", type=int, default=6, help="producer threads (default 6)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--max-sleep-ms", type=float, default=3.0, help="max sleep between statements (default 3)")
    ap.add_argument("--catchup-seconds", type=float, default=120.0,
                    help="time the readers get to reach latest_offset after the producers stop")
    ap.add_argument("--no-async-commit", dest="async_commit", action="store_false",
                    help="never use synchronous_commit = off in producer transactions")
    ap.add_argument("--no-group", dest="group", action="store_false",
                    help="do not run the consumer-group reader (commitlog.consume)")
    ap.add_argument("--keep-topic", action="store_true", help="do not drop the topic at the end")
    ap.add_argument("--self-test", action="store_true",
                    help="also prove the checker flags corrupted observations")
    ap.add_argument("--show", type=int, default=10, help="anomalies to print per reader (default 10)")
    args = ap.parse_args()
    if args.producers < 1:
        ap.error("--producers must be at least 1")
    return args


def wait_flushed(conn):
    """Make all WAL written so far durable, so that asynchronous commits of
    the producers no longer hold the stable offset back: a synchronous commit
    of a transaction with an xid flushes the WAL up to its commit record.
    (Not "wait until flush_lsn >= insert_lsn": at a WAL page boundary the
    insert position points past the next page's header, which is not written
    until more WAL comes, so on a quiet server that wait would never end.)"""
    cur = conn.cursor()
    cur.execute("SET synchronous_commit = on")
    cur.execute("BEGIN")
    cur.execute("SELECT pg_current_xact_id()")
    cur.execute("COMMIT")


def out_of_order_commits(producers):
    """Commits whose offsets lie below an offset an earlier-returning commit
    already had (per partition): evidence that transactions interleaved the
    way invariant 2 is about (approximate, from client-side times)."""
    commits = sorted(c for pr in producers for c in pr.commits)
    high = collections.defaultdict(lambda: -1)
    n = 0
    for t, pid, txn, by_part in commits:
        below = any(offs and min(offs) < high[p] for p, offs in by_part.items())
        n += below
        for p, offs in by_part.items():
            if offs:
                high[p] = max(high[p], max(offs))
    return n


def main():
    args = parse_args()
    state = {}
    rc = run(args, state)
    return rc if not state.get("late_failure") else 1


def run(args, state):
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    master = random.Random(seed)
    topic = "stress_%d_%06x" % (os.getpid(), master.randrange(1 << 24))
    ctx = Ctx(args, topic)
    print("stress: database %s, topic %s, %d partitions, %d producers, %.0fs, seed %d%s"
          % (args.dbname, topic, NPART, args.producers, args.seconds, seed,
             ", self-test" if args.self_test else ""))
    sys.stdout.flush()

    admin = connect(args, "stress-main")
    acur = admin.cursor()
    acur.execute("SET client_min_messages = warning")
    acur.execute("CREATE EXTENSION IF NOT EXISTS pg_commitlog")
    acur.execute("SELECT commitlog.create_topic(%s, %s)", (topic, NPART))
    created = True

    errors = []
    producers, followers = [], []
    ok = False
    try:
        ctx.keys = [("key-%d" % i).encode() for i in range(NKEYS)]
        for k in ctx.keys:
            acur.execute("SELECT commitlog.partition_for_key(%s, %s::bytea)", (topic, k))
            ctx.key_partition[k] = acur.fetchone()[0]

        followers = [Follower(ctx, "follower-p%d" % p, [p], master.randrange(1 << 30)) for p in range(NPART)]
        followers.append(Follower(ctx, "rr-follower", range(NPART), master.randrange(1 << 30), rr=True))
        if args.self_test:
            followers.append(Follower(ctx, "naive-table-reader", range(NPART), master.randrange(1 << 30), naive=True))
        members = []
        if args.group:
            members = [GroupMember(ctx, "group-member-%d" % i, topic + "-group", master.randrange(1 << 30))
                       for i in range(2)]
            followers.extend(members)
        producers = [Producer(ctx, i, master.randrange(1 << 30)) for i in range(args.producers)]
        for t in followers + producers:
            t.start()

        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline and not ctx.abort.is_set():
            time.sleep(0.05)
        ctx.stop.set()
        for pr in producers:
            pr.join(60)
            if pr.is_alive():
                errors.append("producer %d did not stop" % pr.pid)
                ctx.abort.set()
        t_produced = ctx.now()

        targets = None
        if not ctx.abort.is_set():
            wait_flushed(admin)
            targets = {}
            for p in range(NPART):
                acur.execute("SELECT commitlog.latest_offset(%s, %s)", (topic, p))
                targets[p] = acur.fetchone()[0]
            ctx.targets = targets
            ctx.catchup_deadline = time.monotonic() + args.catchup_seconds
            ctx.targets_set.set()  # (on abort the readers stop by themselves)
        for f in followers:
            f.join(args.catchup_seconds + 30)
            if f.is_alive():
                errors.append("%s did not stop" % f.label)
                ctx.abort.set()
        t_caught_up = ctx.now()

        for t in producers + followers:
            if t.error:
                errors.append(t.error.rstrip())
        if errors:
            return 1

        # -- checks --------------------------------------------------------------
        records = {}
        for pr in producers:
            records.update(pr.records)
        pending = [r for r in records.values() if r.status == "pending"]
        if pending:
            errors.append("%d records in no known state (first: %s)" % (len(pending), pending[0].vid))
            return 1
        committed = [r for r in records.values() if r.status == "committed"]
        rolled = [r for r in records.values() if r.status == "rolled_back"]

        final = final_scan(ctx, admin)
        views = [("final-scan", final.seen)]
        real = [f for f in followers if isinstance(f, Follower) and not f.naive]
        all_anoms = []
        for pr in producers:
            all_anoms.extend(pr.anomalies)
        for p in range(NPART):
            top = max([r.offset for r in committed if r.partition == p], default=-1)
            if top >= targets[p]:
                all_anoms.append(("beyond_latest", "latest_offset(%d) = %d after the producers stopped, "
                                  "but offset %d committed" % (p, targets[p], top)))
        reader_anoms = {}
        for f in real + [final]:
            # a per-partition follower answers for the committed records of its partition
            mine = {r.vid: r for r in records.values()
                    if r.status != "committed" or r.partition in f.partitions}
            a = check(f.label, f.seen, mine, targets, f.fetch_log, [v for v in views if v[0] != f.label])
            a.extend(f.anomalies)
            reader_anoms[f.label] = a
            all_anoms.extend(a)
        if members:
            gseen = {p: sorted((row for m in members for row in m.seen[p]), key=lambda row: row[0])
                     for p in range(NPART)}
            a = check("consumer-group", gseen, records, targets, None, views)
            for m in members:
                a.extend(m.anomalies)
            reader_anoms["consumer-group"] = a
            all_anoms.extend(a)

        # -- summary -------------------------------------------------------------
        st = collections.Counter()
        for pr in producers:
            st.update(pr.stats)
        n_txn_ok = st["txn_commit"] + st["txn_partial"]
        n_txn_rb = st["txn_rollback"] + st["txn_failed"]
        fails = sum(v for k, v in st.items() if k.startswith("fail_"))
        per_part = collections.Counter(r.partition for r in committed)
        rr = [f for f in followers if isinstance(f, Follower) and f.rr][0]
        print("stress: producers ran %.1fs, readers caught up at %.1fs" % (t_produced, t_caught_up))
        print("stress: transactions: %d committed (%d of them after ROLLBACK TO SAVEPOINT), %d rolled back "
              "(%d ROLLBACK, %d after a failing statement); %d failing statements; %d with synchronous_commit=off"
              % (n_txn_ok, st["txn_partial"], n_txn_rb, st["txn_rollback"], st["txn_failed"], fails,
                 st["async_commit_txns"]))
        print("stress: produce calls: %d produce, %d produce_batch, %d produce_messages; %d unexpected errors"
              % (st["produce"], st["produce_batch"], st["produce_messages"], st["unexpected_errors"]))
        print("stress: records: %d committed (%s), %d rolled back (%d by ROLLBACK TO SAVEPOINT); latest_offset %s"
              % (len(committed), ", ".join("p%d %d" % (p, per_part[p]) for p in range(NPART)), len(rolled),
                 st["savepoint_records_rolled_back"], targets))
        print("stress: commits landing below an earlier commit's offsets (interleaving, approx.): %d"
              % out_of_order_commits(producers))
        used = collections.Counter(r.partition for r in records.values() if r.offset is not None)
        print("stress: offset space: %s (gaps: rollbacks, failing statements, refill blocks dropped)"
              % "; ".join("p%d %d of %d offsets hold a produced record, %.0f%% never used"
                          % (p, used[p], targets[p], 100.0 * (1 - used[p] / targets[p]) if targets[p] else 0)
                          for p in range(NPART)))
        state["summary"] = ("%d transactions committed (%d partly rolled back), %d rolled back; "
                            "%d records committed, %d rolled back; %d readers"
                            % (n_txn_ok, st["txn_partial"], n_txn_rb, len(committed), len(rolled),
                               len(reader_anoms)))
        for f in real + [final]:
            extra = ""
            if f.rr:
                extra = ", %d REPEATABLE READ transactions, %d of them fetched rows their snapshot cannot see" % (
                    f.rr_txns, f.rr_past_snapshot)
            if f.waits:
                extra += ", %d of them with wait_ms" % f.waits
            extra += ", stopped at next offset %s" % ({p: f.next[p] for p in f.partitions},)
            print("stress: %s: %d records seen in %d fetches%s; %d anomalies"
                  % (f.label, sum(len(v) for v in f.seen.values()), f.fetches, extra, len(reader_anoms[f.label])))
        if members:
            print("stress: consumer-group (%d members, commitlog.consume): %d records consumed in %d calls "
                  "(%s), %d more rolled back for redelivery in %d calls; %d anomalies"
                  % (len(members), sum(len(v) for m in members for v in m.seen.values()),
                     sum(m.calls for m in members),
                     ", ".join("%s %d" % (m.label, sum(len(v) for v in m.seen.values())) for m in members),
                     sum(m.rolled_back_rows for m in members), sum(m.rolled_back_calls for m in members),
                     len(reader_anoms["consumer-group"])))

        failures = []
        if all_anoms:
            failures.append("%d anomalies: %s" % (
                len(all_anoms), ", ".join("%s=%d" % kv for kv in sorted(kinds_of(all_anoms).items()))))
            report(all_anoms, args.show)
        if n_txn_ok == 0 or not committed:
            failures.append("nothing was committed")

        if args.self_test:
            naive = [f for f in followers if isinstance(f, Follower) and f.naive][0]
            na = check(naive.label, naive.seen, records, targets, naive.fetch_log)
            print("self-test: naive table reader (no stable offset): %s"
                  % (", ".join("%s=%d" % kv for kv in sorted(kinds_of(na).items())) or "no anomalies (race not hit)"))
            report(na, 3)
            failures.extend(self_test(records, rr, targets))
            need = {"txn_commit": n_txn_ok, "txn_rollback": st["txn_rollback"], "txn_failed": st["txn_failed"],
                    "txn_partial": st["txn_partial"], "rr_past_snapshot": rr.rr_past_snapshot}
            for k, v in need.items():
                if v == 0:
                    failures.append("self-test: no coverage of %s" % k)

        if failures:
            errors.extend(failures)
            return 1
        ok = True
        return 0
    except Exception:
        errors.append(traceback.format_exc().rstrip())
        ctx.abort.set()
        return 1
    finally:
        ctx.stop.set()
        if not ok:
            ctx.abort.set()
        for t in producers + followers:
            t.join(10)
        if created and not args.keep_topic:
            try:
                acur.execute("SELECT commitlog.drop_topic(%s)", (topic,))
            except psycopg2.Error as e:
                errors.append("drop_topic(%s) failed: %s" % (topic, str(e).strip()))
                state["late_failure"] = True
        admin.close()
        if errors:
            print("stress: FAIL%s (seed %d)" % (": " + state["summary"] if "summary" in state else "", seed))
            for e in errors:
                print("  " + e.replace("\n", "\n  "))
            if args.keep_topic:
                print("stress: topic %s kept" % topic)
        else:
            print("stress: PASS: %s, each saw every committed record exactly once (seed %d)"
                  % (state.get("summary", "?"), seed))
        sys.stdout.flush()


if __name__ == "__main__":
    rc = main()
    sys.exit(rc)
