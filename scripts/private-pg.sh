#!/bin/bash
# scripts/private-pg.sh DIR: copy the system PostgreSQL 15 installation
# (binaries, libraries, share and server headers) under DIR, keeping its
# layout, and print the line to use it:
#
#   PGROOT=DIR make test
#
# PostgreSQL finds its share and library directories relative to its
# binaries, so the copy is a complete, independent installation: `make
# install` there does not touch the system one.  For developers running
# two checkouts (git worktrees) at once; CI and `make test` do not need it.
set -euo pipefail
dir=${1:?usage: scripts/private-pg.sh DIR}
src=/usr/lib/postgresql/15/bin/pg_config
[[ -x $src ]] || { echo "PostgreSQL 15 is not installed (run make test once)" >&2; exit 1; }
mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql" "$dir/usr/include"
cp -a /usr/lib/postgresql/15 "$dir/usr/lib/postgresql/"
cp -a /usr/share/postgresql/15 "$dir/usr/share/postgresql/"
cp -a /usr/include/postgresql "$dir/usr/include/"
# The server's data directories are owned by postgres; it must reach DIR.
chmod 755 "$dir"
echo "PGROOT=$dir make test"
