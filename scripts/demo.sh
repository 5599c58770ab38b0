#!/usr/bin/env bash
# `make demo`: build and install pg_commitlog, start a throwaway server in a
# temp dir (unix socket only), create database `demo` with the extension, run
# scripts/demo.sql with echo, and leave the server running.
# SKIP_BUILD=1 uses the pg_commitlog already installed.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO" || exit 1
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS

bash scripts/deps.sh || exit 1
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
	echo "== build skipped (SKIP_BUILD=1): using the installed pg_commitlog"
else
	build_and_install || { echo "demo: build failed" >&2; exit 1; }
fi

DIR=$(make_tmpdir pg_commitlog_demo) || exit 1
PORT=$(pick_port 5499)
echo "== starting demo server: socket dir $DIR, port $PORT"
start_server "$DIR" "$PORT" || exit 1

PSQL=("$PGBIN/psql" -X -h "$DIR" -p "$PORT" -U postgres)
"${PSQL[@]}" -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE demo" &&
	"${PSQL[@]}" -q -v ON_ERROR_STOP=1 -d demo -c "CREATE EXTENSION pg_commitlog"
rc=$?

if ((rc == 0)); then
	echo
	"${PSQL[@]}" -e -v ON_ERROR_STOP=1 -d demo -f scripts/demo.sql
	rc=$?
fi

# Stop command: as root it has to run as postgres.
if ((EUID == 0)); then
	# (cd first: postgres may not be allowed into the caller's cwd)
	stop="(cd /tmp && runuser -u postgres -- $PGBIN/pg_ctl -D $DIR/data stop) && rm -rf $DIR"
else
	stop="$PGBIN/pg_ctl -D $DIR/data stop && rm -rf $DIR"
fi
cat <<MSG

The demo server is still running (log: $DIR/server.log).
  connect:  psql -h $DIR -p $PORT -U postgres demo
  stop:     $stop
MSG
((rc == 0)) || echo "demo: some statements failed (exit $rc)" >&2
exit "$rc"
