#!/usr/bin/env bash
# pg_commitlog test runner (`make test`).
#
# Installs missing packages, builds with -Werror, installs, starts a
# throwaway server and runs every suite against it (or its own servers, for
# the Perl TAP tests).  The last line printed is always "N passed, M failed".
#
# Environment:
#   SUITES="regress isolation pgtap tap stress bench"   suites to run (default: all)
#   TESTS="topics fetch* crash_*"   only run tests whose name matches one of
#                                   these shell patterns (default: all)
#   KEEP_TMP=1                      keep the temp dir even when all passed
#   SKIP_BUILD=1                    do not build/install; test what is installed
#   TEST_TIMEOUT=900                seconds allowed per pgTAP / Perl TAP /
#                                   stress / bench file, and per pg_regress /
#                                   isolation run
#
# Suites and where their tests live:
#   regress    REGRESS in Makefile: sql/<t>.sql, expected/<t>.out (pg_regress)
#   isolation  test/isolation/specs/<t>.spec, test/isolation/expected/<t>.out
#   pgtap      test/pgtap/<t>.sql, each in a fresh database with pgtap and
#              pg_commitlog created (pg_prove)
#   tap        test/t/<t>.pl, Perl TAP with PostgreSQL::Test::Cluster (prove);
#              these start their own servers
#   stress     test/stress/<t>.py, run as /usr/bin/python3 <t>.py --host H
#              --port P --user postgres, with PGDATABASE naming a fresh
#              database where pg_commitlog is created; exit 0 = pass
#   bench      test/bench/run.sh, if present (`make bench BENCH_SCALE=small`)
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO" || exit 1

ALL_SUITES="regress isolation pgtap tap stress bench"
SUITES=${SUITES:-$ALL_SUITES}
TESTS=${TESTS:-}
TEST_TIMEOUT=${TEST_TIMEOUT:-900}
PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS_DIR/src/test/isolation/pg_isolation_regress
PERL_TEST_LIB=$PGXS_DIR/src/test/perl

# Never let the caller's libpq settings redirect our clients.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGPASSWORD PGOPTIONS

passed=0
failed=0
failed_names=()
TMP=""
PORT=""
TESTROOT=$REPO # where test inputs are read from (see below)
finished=0

pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); failed_names+=("$1"); echo "FAIL: $1"; }

# Print the summary and exit; the summary is the last line of output.
finish() {
	finished=1
	if [[ -n "$TMP" ]]; then
		stop_tap_nodes
		stop_server "$TMP"
		if ((failed > 0)); then
			echo
			echo "failed: ${failed_names[*]}"
			if [[ -f "$TMP/server.log" ]] &&
				grep -qE 'PANIC|TRAP:|terminated by signal|was terminated' "$TMP/server.log"; then
				echo "server crashes in $TMP/server.log:"
				grep -E 'PANIC|TRAP:|terminated by signal|was terminated' "$TMP/server.log" | head -n 20
			fi
			echo "temp dir kept: $TMP"
		elif [[ "${KEEP_TMP:-0}" == 1 ]]; then
			echo "temp dir kept: $TMP"
		else
			rm -rf "$TMP"
		fi
	fi
	echo "$passed passed, $failed failed"
	((failed == 0))
	exit
}

# Servers left behind by Perl TAP tests that were killed (timeout, ^C):
# Cluster.pm stops its nodes only when the test script exits normally.
stop_tap_nodes() {
	[[ -n "$TMP" && -d "$TMP/tap" ]] || return 0
	local pidfile
	while IFS= read -r pidfile; do
		(cd "$TMP" && as_pg "$PGBIN/pg_ctl" -D "$(dirname "$pidfile")" -m immediate -w -t 30 stop >/dev/null 2>&1)
	done < <(find "$TMP/tap" -name postmaster.pid 2>/dev/null)
}

# Interrupted or died unexpectedly: still stop the servers.
on_exit() {
	if ((finished == 0)) && [[ -n "$TMP" ]]; then
		stop_tap_nodes
		stop_server "$TMP"
		echo "interrupted; temp dir kept: $TMP" >&2
	fi
}
# On ^C / TERM also kill the running test's process group (see limited).
on_signal() {
	if [[ -n "$CHILD" ]]; then
		kill -TERM -- "-$CHILD" 2>/dev/null || kill -TERM "$CHILD" 2>/dev/null
	fi
	exit 130
}
CHILD=""
trap on_exit EXIT
trap on_signal INT TERM

# limited pg|me DIR CMD...: run CMD in DIR (as postgres when root, for "pg"),
# killed after TEST_TIMEOUT seconds.  timeout(1) puts CMD in a process group
# of its own, which a ^C on the terminal does not reach: so run it in the
# background and wait, letting on_signal fire at once and kill that group.
limited() {
	local who=$1 dir=$2 rc as=()
	shift 2
	[[ "$who" == pg ]] && ((EUID == 0)) && as=(runuser -u postgres --)
	(cd "$dir" && exec timeout -k 10 "$TEST_TIMEOUT" "${as[@]}" "$@") &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=""
	((rc == 124)) && echo "timed out after ${TEST_TIMEOUT}s"
	return "$rc"
}

suite_enabled() { [[ " $SUITES " == *" $1 "* ]]; }

# selected NAME: does NAME pass the TESTS filter?
selected() {
	[[ -z "$TESTS" ]] && return 0
	local pat pats
	read -r -a pats <<<"$TESTS" # read, not $TESTS unquoted: no globbing against files
	for pat in "${pats[@]}"; do
		# shellcheck disable=SC2053  # pattern match is intended
		[[ "$1" == $pat ]] && return 0
	done
	return 1
}

psql_admin() {
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PORT" -U postgres "$@"
}

# fresh_db NAME [EXTENSION...]: (re)create database NAME with the extensions.
fresh_db() {
	local db=$1 ext
	shift
	psql_admin -d postgres -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS \"$db\"" -c "CREATE DATABASE \"$db\"" || return 1
	for ext in "$@"; do
		psql_admin -d "$db" -c "CREATE EXTENSION \"$ext\"" || return 1
	done
}

# The server may have died (e.g. a crash that did not recover): restart it so
# one bad test does not fail every later suite.
ensure_server() {
	local i rc
	for ((i = 0; i < 60; i++)); do
		"$PGBIN/pg_isready" -q -h "$TMP" -p "$PORT" -t 5
		rc=$?
		((rc == 0)) && return 0
		((rc == 1)) || break # 1 = rejecting connections (crash recovery): wait
		sleep 1
	done
	echo "server is not answering; restarting it"
	(
		cd "$TMP" || exit 1
		as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate -w -t 30 stop >/dev/null 2>&1
		as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -w -t 120 start >/dev/null
	)
}

# mkdir_pg DIR: create DIR writable by the user the tests run as.
mkdir_pg() { as_pg mkdir -p "$1"; }

# Parse "test NAME ... ok|FAILED" lines of pg_regress / pg_isolation_regress
# (PG15 format; tests in a parallel group are indented instead of prefixed
# with "test").  Args: SUITE LOGFILE DIFFS NAME...
count_pg_regress_results() {
	local suite=$1 log=$2 diffs=$3 name line any_fail=0
	shift 3
	for name in "$@"; do
		line=$(grep -E "^(test|    ) +$name +\.\.\. " "$log" | tail -n 1)
		if [[ "$line" =~ \.\.\.\ +ok ]] || [[ "$line" =~ failed\ \(ignored\) ]]; then
			pass "$suite/$name"
		else
			[[ -z "$line" ]] && echo "no result line for $name"
			fail "$suite/$name"
			any_fail=1
		fi
	done
	if ((any_fail)); then
		if [[ -s "$diffs" ]]; then
			echo "---- $diffs (first 200 lines)"
			head -n 200 "$diffs"
			echo "----"
		else
			echo "---- $log (last 30 lines)"
			tail -n 30 "$log"
			[[ -n "$(tail -c 1 "$log")" ]] && echo # log may end mid-line
			echo "----"
		fi
	fi
}

regress_timed_out() {
	(($1 == 124)) && printf '\n%s\n' "timed out after ${TEST_TIMEOUT}s"
	return 0
}

suite_regress() {
	echo "== regress"
	# REGRESS = a b c  (backslash continuations allowed)
	local names=() n
	read -r -a names <<<"$(awk '
		/^REGRESS[ \t]*[:+]?=/ { sub(/^REGRESS[ \t]*[:+]?=[ \t]*/, ""); grab = 1 }
		grab { cont = sub(/\\[ \t]*$/, ""); printf "%s ", $0; if (!cont) grab = 0 }
	' Makefile)"
	local run=()
	for n in "${names[@]}"; do
		selected "$n" || continue
		if [[ ! -f "sql/$n.sql" ]]; then
			echo "sql/$n.sql is missing (listed in REGRESS)"
			fail "regress/$n"
			continue
		fi
		run+=("$n")
	done
	if ((${#run[@]} == 0)); then
		echo "(no regress tests to run)"
		return
	fi
	local out=$TMP/regress
	mkdir_pg "$out"
	# No --use-existing: with it pg_regress would neither create the database
	# nor load the extension.  Without it (and without --temp-instance) it
	# drops and recreates --dbname on the running server, like installcheck.
	# timeout --foreground: pg_regress stays in our process group, so ^C
	# reaches it.
	(cd "$TMP" && as_pg timeout --foreground -k 10 "$TEST_TIMEOUT" "$PG_REGRESS" --bindir="$PGBIN" \
		--host="$TMP" --port="$PORT" --user=postgres \
		--inputdir="$TESTROOT" --outputdir="$out" \
		--dbname=contrib_regression --load-extension=pg_commitlog \
		"${run[@]}") 2>&1 | tee "$TMP/regress.log"
	regress_timed_out "${PIPESTATUS[0]}"
	count_pg_regress_results regress "$TMP/regress.log" "$out/regression.diffs" "${run[@]}"
}

suite_isolation() {
	echo "== isolation"
	local run=() f n
	for f in test/isolation/specs/*.spec; do
		[[ -f "$f" ]] || continue
		n=$(basename "$f" .spec)
		selected "$n" && run+=("$n")
	done
	if ((${#run[@]} == 0)); then
		echo "(no isolation specs)"
		return
	fi
	local out=$TMP/isolation
	mkdir_pg "$out"
	(cd "$TMP" && as_pg timeout --foreground -k 10 "$TEST_TIMEOUT" "$PG_ISOLATION_REGRESS" --bindir="$PGBIN" \
		--host="$TMP" --port="$PORT" --user=postgres \
		--inputdir="$TESTROOT/test/isolation" --outputdir="$out" \
		--dbname=isolation_regression --load-extension=pg_commitlog \
		"${run[@]}") 2>&1 | tee "$TMP/isolation.log"
	regress_timed_out "${PIPESTATUS[0]}"
	count_pg_regress_results isolation "$TMP/isolation.log" "$out/regression.diffs" "${run[@]}"
}

suite_pgtap() {
	echo "== pgtap"
	local any=0 f n db
	for f in test/pgtap/*.sql; do
		[[ -f "$f" ]] || continue
		n=$(basename "$f" .sql)
		selected "$n" || continue
		any=1
		db="pgtap_$n"
		if ! fresh_db "$db" pgtap pg_commitlog; then
			fail "pgtap/$n"
			continue
		fi
		if limited me "$TMP" pg_prove -h "$TMP" -p "$PORT" -U postgres -d "$db" "$REPO/$f"; then
			pass "pgtap/$n"
		else
			fail "pgtap/$n"
		fi
	done
	((any)) || echo "(no pgtap tests)"
}

suite_tap() {
	echo "== tap"
	local any=0 f n testdir logf
	for f in test/t/*.pl; do
		[[ -f "$f" ]] || continue
		n=$(basename "$f" .pl)
		selected "$n" || continue
		any=1
		# One TESTDIR per file: Cluster.pm puts tmp_check/ (data dirs, logs)
		# under it.  TMPDIR keeps its short-lived socket dirs in our temp dir.
		testdir=$TMP/tap/$n
		mkdir_pg "$testdir/tmp"
		if limited pg "$testdir" env \
			PATH="$PGBIN:$PATH" \
			PG_REGRESS="$PG_REGRESS" \
			TESTDIR="$testdir" \
			TMPDIR="$testdir/tmp" \
			PG_COMMITLOG_REPO="$TESTROOT" \
			prove -I "$PERL_TEST_LIB" -I "$TESTROOT/test/t" "$TESTROOT/$f"; then
			pass "tap/$n"
		else
			stop_tap_nodes
			fail "tap/$n"
			for logf in "$testdir"/tmp_check/log/*; do
				[[ -f "$logf" ]] || continue
				echo "---- tail of $logf"
				tail -n 60 "$logf"
			done
			echo "----"
		fi
	done
	((any)) || echo "(no Perl TAP tests)"
}

suite_stress() {
	echo "== stress"
	local any=0 f n db
	for f in test/stress/*.py; do
		[[ -f "$f" ]] || continue
		n=$(basename "$f" .py)
		selected "$n" || continue
		any=1
		db="stress_$n"
		if ! fresh_db "$db" pg_commitlog; then
			fail "stress/$n"
			continue
		fi
		# Debian's python3 (has psycopg2), not a pyenv shim that may be first
		# on PATH.  libpq picks the database up from PGDATABASE.
		if limited pg "$TMP" env PGDATABASE="$db" PYTHONDONTWRITEBYTECODE=1 \
			/usr/bin/python3 "$TESTROOT/$f" --host "$TMP" --port "$PORT" --user postgres; then
			pass "stress/$n"
		else
			fail "stress/$n"
		fi
	done
	((any)) || echo "(no stress tests)"
}

suite_bench() {
	echo "== bench"
	if [[ ! -f test/bench/run.sh ]] || ! selected bench; then
		echo "(no benchmark smoke test)"
		return
	fi
	if ! fresh_db bench pg_commitlog; then
		fail "bench/smoke"
		return
	fi
	# The bench gets the running server through the libpq environment.  Use
	# `make bench` once the Makefile has a bench rule (.PHONY alone is a no-op).
	local cmd=(bash test/bench/run.sh)
	grep -qE '^bench[ \t]*:' Makefile && cmd=(make -s bench BENCH_SCALE=small)
	if limited me "$REPO" env PGHOST="$TMP" PGPORT="$PORT" PGUSER=postgres \
		PGDATABASE=bench BENCH_SCALE=small "${cmd[@]}"; then
		pass "bench/smoke"
	else
		fail "bench/smoke"
	fi
}

# ---------------------------------------------------------------------------

for s in $SUITES; do
	if [[ " $ALL_SUITES " != *" $s "* ]]; then
		echo "unknown suite '$s' (known: $ALL_SUITES)"
		fail "suites"
		finish
	fi
done

echo "== dependencies"
if ! bash "$REPO/scripts/deps.sh"; then
	fail "dependencies"
	finish
fi

if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
	echo "== build skipped (SKIP_BUILD=1): testing the installed pg_commitlog"
elif ! build_and_install; then
	fail "build"
	finish
fi

TMP=$(make_tmpdir pg_commitlog_test) || { fail "mktemp"; finish; }
PORT=$(pick_port $((54321 + $$ % 1000)))
echo "== server: socket $TMP, port $PORT"
# Tests run as postgres when we are root.  If postgres cannot read the
# checkout (e.g. a clone under /root), give it a copy of the test inputs.
if ((EUID == 0)) && ! runuser -u postgres -- test -r "$REPO/Makefile" -a -x "$REPO/test" 2>/dev/null; then
	echo "postgres cannot read $REPO: copying test inputs to $TMP/src"
	mkdir -p "$TMP/src"
	for d in sql expected test docs; do
		[[ -d "$REPO/$d" ]] && cp -r "$REPO/$d" "$TMP/src/"
	done
	chown -R postgres: "$TMP/src"
	TESTROOT=$TMP/src
fi

# fsync off is fine here: this shared server is never crashed on purpose
# (crash tests are Perl TAP tests with their own servers).
if ! start_server "$TMP" "$PORT" "fsync = off"; then
	fail "server start"
	finish
fi

for s in $ALL_SUITES; do
	suite_enabled "$s" || continue
	[[ "$s" == tap ]] || ensure_server
	"suite_$s"
done

finish
