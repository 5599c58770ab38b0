# shellcheck shell=bash
# Shared helpers for test/run.sh and scripts/demo.sh.  Source it; do not run.
#
# Provides: REPO, PGBIN, PG_CONFIG, PGXS_DIR, as_pg, make_tmpdir, pick_port,
# build_and_install, start_server, stop_server.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PGROOT (default: empty, the system installation) prefixes every PostgreSQL
# path, so a relocated copy made by scripts/private-pg.sh lets two checkouts
# build, install and test side by side without replacing each other's
# installed library.
PGROOT=${PGROOT:-}
PGBIN=$PGROOT/usr/lib/postgresql/15/bin
PG_CONFIG=$PGBIN/pg_config
# shellcheck disable=SC2034  # used by the scripts that source this
PGXS_DIR=$PGROOT/usr/lib/postgresql/15/lib/pgxs
export PG_CONFIG

# PostgreSQL refuses to run as root: run server-side commands (and anything
# that writes into the temp dir) as the `postgres` OS user when we are root.
as_pg() {
	if ((EUID == 0)); then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# make_tmpdir PREFIX: print the path of a new directory under /tmp (kept short:
# unix socket paths are limited to ~107 bytes), owned by postgres when root.
# Mode 755 so any local user can reach the socket in it.
make_tmpdir() {
	local d
	d=$(mktemp -d "/tmp/$1.XXXXXX") || return 1
	chmod 755 "$d"
	((EUID == 0)) && chown postgres: "$d"
	printf '%s\n' "$d"
}

# port_in_use PORT: true if something answers on 127.0.0.1:PORT or a socket
# for it exists in the usual directories or in another of our temp dirs.
port_in_use() {
	local p=$1 s
	for s in /var/run/postgresql/.s.PGSQL."$p" /tmp/.s.PGSQL."$p" /tmp/pg_commitlog_*/.s.PGSQL."$p"; do
		[[ -e "$s" ]] && return 0
	done
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
	return 1
}

# pick_port START: first port >= START that is not in use.  (Our servers only
# listen on a socket in their own directory, so a clash would be harmless, but
# a distinct number keeps logs and printed instructions unambiguous.)
pick_port() {
	local p=$1
	while port_in_use "$p"; do p=$((p + 1)); done
	echo "$p"
}

# build_and_install: clean build with -Werror, then install into the system
# PostgreSQL.  Returns non-zero on failure.
build_and_install() {
	(
		cd "$REPO" || exit 1
		echo "== build"
		make -s clean PG_CONFIG="$PG_CONFIG" || exit 1
		make -s WERROR=1 PG_CONFIG="$PG_CONFIG" || exit 1
		echo "== install"
		if ((EUID == 0)); then
			make -s install PG_CONFIG="$PG_CONFIG" || exit 1
		elif command -v sudo >/dev/null; then
			sudo make -s install PG_CONFIG="$PG_CONFIG" || exit 1
		else
			make -s install PG_CONFIG="$PG_CONFIG" || exit 1
		fi
	)
}

# start_server DIR PORT [EXTRA_CONF_LINE...]: initdb DIR/data and start it,
# listening only on a unix socket in DIR, logging to DIR/server.log.
start_server() {
	local dir=$1 port=$2
	shift 2
	(
		# cwd must be readable by postgres, or initdb/pg_ctl complain.
		cd "$dir" || exit 1
		as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale \
			>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
		{
			echo
			echo "# added by pg_commitlog scripts"
			echo "shared_preload_libraries = 'pg_commitlog'"
			echo "max_prepared_transactions = 10"
			# a launcher plus one worker per database with the extension
			echo "max_worker_processes = 32"
			echo "unix_socket_directories = '$dir'"
			echo "listen_addresses = ''"
			echo "port = $port"
			echo "logging_collector = off"
			local line
			for line in "$@"; do echo "$line"; done
		} | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
		if ! as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null; then
			echo "server failed to start; tail of $dir/server.log:" >&2
			tail -n 40 "$dir/server.log" >&2
			exit 1
		fi
	)
}

# stop_server DIR: stop the server in DIR/data if it is running.
stop_server() {
	local dir=$1
	[[ -f "$dir/data/postmaster.pid" ]] || return 0
	(
		cd "$dir" || exit 1
		as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
			as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1
	)
}
