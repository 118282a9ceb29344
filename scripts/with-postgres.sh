#!/usr/bin/env bash
# Runs a command with a private PostgreSQL server for the tests, then stops it.
#
#   scripts/with-postgres.sh cargo test --test integration postgres::
#
# With PULSE_TEST_DATABASE_URL already set (a server of your own), runs the command as it is.
# Otherwise: initdb in a temporary directory (as the `postgres` user when run as root, since
# PostgreSQL refuses to run as root), a server on a free loopback port with trust authentication
# for the loopback only, PULSE_TEST_DATABASE_URL pointing at it; stopped and deleted on exit,
# whatever the command's result. Needs Debian's `postgresql` package (or any PostgreSQL 13+ whose
# initdb and pg_ctl are on PATH or under /usr/lib/postgresql/*/bin).
set -euo pipefail

if [ -n "${PULSE_TEST_DATABASE_URL:-}" ]; then
  exec "$@"
fi

bin=""
if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
  bin=$(dirname "$(command -v initdb)")
else
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && bin=$dir
  done
fi
if [ -z "$bin" ]; then
  echo "PostgreSQL missing: apt-get install postgresql (or run .ci/run), or set PULSE_TEST_DATABASE_URL" >&2
  exit 1
fi

run_as=()
dir=$(mktemp -d "${TMPDIR:-/tmp}/pulse-pg.XXXXXX")
if [ "$(id -u)" -eq 0 ]; then
  run_as=(runuser -u postgres --)
  chown postgres "$dir"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
  "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

"${run_as[@]}" "$bin/initdb" -D "$dir/data" -U pulse -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }
# Loopback only, no Unix socket outside the temporary directory, and settings for a throwaway
# server: no durability waits, many connections (each test process has its pool). In the server's
# own configuration, so a test that stops and starts it (PULSE_TEST_PG_CTL) gets them again.
"${run_as[@]}" sh -c "cat >> '$dir/data/postgresql.conf'" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
max_connections = 300
CONF
"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ||
  { cat "$dir/server.log" >&2; exit 1; }

export PULSE_TEST_DATABASE_URL="postgres://pulse@127.0.0.1:$port/postgres"
# Lets the failure tests stop and start this very server: `$PULSE_TEST_PG_CTL stop|start`.
export PULSE_TEST_PG_CTL="${run_as[*]} $bin/pg_ctl -D $dir/data -l $dir/server.log -w"
echo "with-postgres: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir)"
"$@"
