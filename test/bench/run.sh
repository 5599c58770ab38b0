#!/usr/bin/env bash
# pg_commitlog benchmark (`make bench`; DESIGN section 11, issue 5).
#
# Runs each workload beside its baselines on one server, prints a table and
# one line per workload and baseline:
#   BENCH <workload> vs=<baseline> ours=<x> base=<y> ratio=<r> unit=<u>
# and writes benchmarks.md + benchmarks.png.  Never fails on a number, only on
# an error.
#
# Environment:
#   BENCH_SCALE=full|small   full (default): 1M records, 20 s pgbench runs;
#                            small: 20k records, 3 s runs (a smoke run)
#   BENCH_OUT=DIR            where benchmarks.md/.png go (default: docs/ at full
#                            scale, a temp dir that is removed at small scale)
#   PGHOST/PGPORT/PGUSER/PGDATABASE   if PGHOST is set, use that running server
#                            (as `make test` does: pg_commitlog already created
#                            in PGDATABASE) instead of starting one
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO"

SCALE=${BENCH_SCALE:-full}
case "$SCALE" in
full) N=1000000 T=20 LAT_S=20 ;;
small) N=20000 T=3 LAT_S=3 ;;
*) echo "BENCH_SCALE must be full or small" >&2; exit 2 ;;
esac

# --- packages (only when missing) -------------------------------------------
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
install_pkgs() {
	local missing=() p
	for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
	((${#missing[@]})) || return 0
	echo "installing ${missing[*]}"
	local sudo=()
	((EUID == 0)) || sudo=(sudo -n)
	"${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
		{ "${sudo[@]}" apt-get update -q >/dev/null 2>&1 &&
			"${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; } ||
		echo "note: could not install ${missing[*]}"
}
install_pkgs postgresql-15-pgq3 gnuplot-nox

# --- server --------------------------------------------------------------------
SETTINGS=(
	"shared_buffers = 512MB"
	"synchronous_commit = on"
	"fsync = on"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"max_connections = 100"
)
BDIR=$(make_tmpdir pg_commitlog_bench)
OWN_SERVER=0
cleanup() {
	((OWN_SERVER)) && stop_server "$BDIR"
	rm -rf "$BDIR"
}
trap cleanup EXIT

if [[ -z "${PGHOST:-}" ]]; then
	unset PGHOSTADDR PGSERVICE PGOPTIONS
	PORT=$(pick_port 55432)
	echo "== starting a throwaway server in $BDIR (port $PORT)"
	start_server "$BDIR" "$PORT" "${SETTINGS[@]}"
	OWN_SERVER=1
	export PGHOST=$BDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
	psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pg_commitlog"
else
	echo "== using the running server at $PGHOST (port ${PGPORT:-5432}), database ${PGDATABASE:-}"
fi
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -At)

BENCH_PGQ=0
if "${PSQL[@]}" -c "SELECT 1 FROM pg_available_extensions WHERE name = 'pgq'" | grep -q 1; then
	"${PSQL[@]}" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pgq"
	BENCH_PGQ=1
else
	echo "note: PgQ (postgresql-15-pgq3) is not available: its baselines are skipped"
fi

{
	for s in shared_preload_libraries shared_buffers synchronous_commit fsync max_wal_size \
		checkpoint_timeout wal_level commitlog.worker_naptime; do
		printf '%s = %s\n' "$s" "$("${PSQL[@]}" -c "SHOW $s")"
	done
	echo "server: $("${PSQL[@]}" -c "SELECT version()")"
	echo "pg_commitlog $("${PSQL[@]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_commitlog'")"
	if ((BENCH_PGQ)); then
		echo "pgq $("${PSQL[@]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'pgq'")"
	fi
	echo "scale: $SCALE ($N records of 100 B; pgbench runs of $T s; latency run of $LAT_S s)"
} >"$BDIR/settings.txt"
{
	grep -m1 'model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*: /cpu: /'
	echo "nproc: $(nproc)"
	free -h | sed -n '1,2p'
	echo "kernel: $(uname -r)"
} >"$BDIR/machine.txt"
echo "== settings"
cat "$BDIR/settings.txt"
echo "== machine"
cat "$BDIR/machine.txt"

# --- workloads -----------------------------------------------------------------
echo "== workloads"
export BENCH_N=$N BENCH_T=$T BENCH_LAT_S=$LAT_S BENCH_DIR=$BDIR BENCH_PGQ
export BENCH_PGBENCH=$PGBIN/pgbench PYTHONDONTWRITEBYTECODE=1
# Debian's python3 (it has psycopg2), not a pyenv shim first on PATH
/usr/bin/python3 test/bench/bench.py "$BDIR/results.json"

# --- report --------------------------------------------------------------------
if [[ -n "${BENCH_OUT:-}" ]]; then
	OUT=$BENCH_OUT
elif [[ "$SCALE" == full ]]; then
	OUT=$REPO/docs
else
	OUT=$BDIR/out
fi
mkdir -p "$OUT"
CMD="make bench"
[[ "$SCALE" == small ]] && CMD="make bench BENCH_SCALE=small"
echo "== results"
/usr/bin/python3 test/bench/report.py "$BDIR/results.json" "$OUT" "$SCALE" \
	"$BDIR/settings.txt" "$BDIR/machine.txt" "$CMD"

if command -v gnuplot >/dev/null; then
	gnuplot <<EOF || echo "note: gnuplot failed; no plot"
set terminal pngcairo size 1000,520 font "sans,10" noenhanced
set output "$OUT/benchmarks.png"
set title "pg_commitlog vs baselines ($SCALE scale): ratio > 1 means pg_commitlog is better"
set style fill solid 0.8 border -1
set boxwidth 0.6
set logscale y 2
set ylabel "ratio (log scale)"
set grid ytics
set xtics rotate by -30 left
set bmargin 7
set rmargin 10
set offsets 0.5, 0.5, 0, 0
set yrange [0.0625:32]
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "black"
set key off
plot "$OUT/benchmarks.dat" using 0:(\$2 >= 1 ? \$2 : 1/0) with boxes lc rgb "#3a9a4a", \
     "" using 0:(\$2 < 1 ? \$2 : 1/0) with boxes lc rgb "#c8553d", \
     "" using 0:2:(sprintf("%.2f", \$2)):xtic(1) with labels offset 0,0.8
EOF
else
	echo "note: gnuplot is not installed; no plot"
fi
rm -f "$OUT/benchmarks.dat"
echo "== wrote $OUT/benchmarks.md and $OUT/benchmarks.png"
