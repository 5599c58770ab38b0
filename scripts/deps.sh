#!/usr/bin/env bash
# Install the Debian packages that building, testing and demoing pg_commitlog
# need, but only those that are missing.  Quiet when everything is present.
#
# As root: installs with apt-get (running `apt-get update` only when the
# install fails without it).  As any other user: prints the command to run
# and exits 1.
set -uo pipefail

PACKAGES=(
	postgresql-15                            # server binaries
	postgresql-server-dev-15                 # PGXS, headers, pg_regress, isolation tester, Perl test modules
	postgresql-15-pgtap                      # pgTAP extension
	libtap-parser-sourcehandler-pgtap-perl   # pg_prove
	libipc-run-perl                          # needed by PostgreSQL::Test::Cluster (Perl TAP tests)
	python3-psycopg2                         # stress tests, run with /usr/bin/python3
	gcc                                      # compiler (clang comes with postgresql-server-dev-15)
	make
	libavro-dev                              # Avro C library: schema registry (src/schemas)
	python3-avro                             # test/data/avro/gen.py, the independent Avro implementation
)

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)
	[[ "$status" == installed ]] || missing+=("$pkg")
done

((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
	echo "deps.sh: missing packages: ${missing[*]}" >&2
	echo "deps.sh: install them with:" >&2
	echo "  sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps.sh: installing ${missing[*]}" >&2

install() {
	apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" >/tmp/pg_commitlog-deps.log 2>&1
}

if ! install; then
	# Package lists are probably absent or stale (fresh container): refresh once.
	if ! apt-get update -qq >>/tmp/pg_commitlog-deps.log 2>&1 || ! install; then
		echo "deps.sh: apt-get failed; last lines of /tmp/pg_commitlog-deps.log:" >&2
		tail -n 30 /tmp/pg_commitlog-deps.log >&2
		exit 1
	fi
fi
rm -f /tmp/pg_commitlog-deps.log
echo "deps.sh: done" >&2
exit 0
