#!/usr/bin/env bash
# Runs a command with a private Redis server for the tests, then stops it.
#
#   scripts/with-redis.sh cargo test --test integration cache::
#
# With PULSE_TEST_REDIS_URL already set (a server of your own), runs the command as it is.
# Otherwise: `redis-server` on a free loopback port, no persistence (--save '' --appendonly no),
# its files in a temporary directory, PULSE_TEST_REDIS_URL pointing at it; stopped and deleted on
# exit, whatever the command's result. Needs Debian's `redis-server` package (any Redis 6+ whose
# redis-server is on PATH). The system service, if any, is not used.
set -euo pipefail

if [ -n "${PULSE_TEST_REDIS_URL:-}" ]; then
  exec "$@"
fi

if ! command -v redis-server >/dev/null; then
  echo "Redis missing: apt-get install redis-server (or run .ci/run), or set PULSE_TEST_REDIS_URL" >&2
  exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/pulse-redis.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pid=""

stop() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap stop EXIT

redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  --daemonize no --logfile "$dir/server.log" &
pid=$!
for _ in $(seq 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  sleep 0.05
done

export PULSE_TEST_REDIS_URL="redis://127.0.0.1:$port"
echo "with-redis: $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port"
"$@"
