#!/usr/bin/env bash
# `make profile`: where Pulse's instructions go, at its shipped defaults, for one endpoint.
#
# Builds a release binary with symbols (line tables, not stripped) in a target directory of its
# own, so the normal build is left alone; serves it under callgrind with instrumentation off
# (`--addr`, `--kube off`, `--shutdown-delay 0s` and nothing else: info level, the JSON access
# log written to a file, telemetry on); creates the benchmark's 20 users; warms up; then switches
# instrumentation on for exactly REQUESTS requests `GET ENDPOINT`, sent one at a time on one
# keep-alive connection, and dumps. Writes the top TOP functions of `callgrind_annotate
# --inclusive=yes` to target/profile/<endpoint>.txt, keeps the dump beside it, prints the path.
#
# ENDPOINT (default /status/200), REQUESTS (5000), TOP (60), PROFILE_TARGET_DIR (the build,
# default <target dir>/profile-build), ARGS (extra `pulse serve` flags, e.g. ARGS="--log-level
# warn"; the report's name then says so). The target dir is CARGO_TARGET_DIR, or target/.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
for tool in cargo valgrind callgrind_control callgrind_annotate python3; do require "$tool"; done
cd "$ROOT"

ENDPOINT=${ENDPOINT:-/status/200}
REQUESTS=${REQUESTS:-5000}
TOP=${TOP:-60}
case $ENDPOINT in
  /*) ;;
  *) echo "error: ENDPOINT must be a path starting with /, got '$ENDPOINT'" >&2; exit 1 ;;
esac
case $REQUESTS in
  '' | *[!0-9]* | 0) echo "error: REQUESTS must be a positive integer, got '$REQUESTS'" >&2; exit 1 ;;
esac
target=${CARGO_TARGET_DIR:-target}
build=${PROFILE_TARGET_DIR:-$target/profile-build}
results=$target/profile
slug=${ENDPOINT#/}
slug=${slug//[^A-Za-z0-9]/-}
ARGS=${ARGS:-}
read -r -a extra <<<"$ARGS"
if ((${#extra[@]})); then
  flags=${ARGS//[^A-Za-z0-9]/-}
  flags=${flags#"${flags%%[!-]*}"}
  slug=$slug${flags:+_$flags}
fi

echo "Building pulse with symbols in $build/ (the first build takes a few minutes)"
CARGO_TARGET_DIR=$build CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --release --quiet --bin pulse
mkdir -p "$results"
run=$(mktemp -d)
server=
cleanup() {
  if [[ -n $server ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$run"
  stop_forwards
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The shipped defaults, whatever this shell exports. `exec`: the server keeps this job's pid.
(
  while read -r name; do
    case $name in PULSE_* | OTEL_* | RUST_LOG) unset "$name" ;; esac
  done < <(compgen -e)
  exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$run/callgrind.out" \
    "$build/release/pulse" serve --addr "127.0.0.1:$port" --kube off --shutdown-delay 0s "${extra[@]}"
) >"$run/stdout.log" 2>"$run/stderr.log" &
server=$!

echo "Serving on 127.0.0.1:$port under callgrind (pid $server); $REQUESTS requests GET $ENDPOINT"
if ! wait_ready "$build/release/pulse" "http://127.0.0.1:$port/readyz" 120 "$server"; then
  echo "error: pulse did not become ready; the server said:" >&2
  tail -n 20 "$run/stderr.log" >&2
  exit 1
fi
if ! python3 - "$port" "$REQUESTS" "$ENDPOINT" "$server" <<'PY'
"""Creates the users, warms up, then counts exactly the load."""
import http.client
import json
import subprocess
import sys
from collections import Counter

port, requests, endpoint, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
headers = {"User-Agent": "pulse-bench"}

connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for i in range(1, 21):
    body = json.dumps({"name": f"User {i}", "email": f"user{i}@example.com"})
    connection.request("POST", "/api/users", body, {**headers, "Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 201:
        sys.exit(f"error: creating user {i}: {response.status}")


def load(n):
    statuses = Counter()
    for _ in range(n):
        connection.request("GET", endpoint, headers=headers)
        response = connection.getresponse()
        response.read()
        statuses[response.status] += 1
    return statuses


def control(*args):
    done = subprocess.run(["callgrind_control", *args, pid], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: callgrind_control {' '.join(args)} {pid}: {done.stderr.strip()}")


load(requests // 10 + 1)  # warm-up: the connection, the allocator, per-route state
control("-i", "on")
statuses = load(requests)
control("-d")
print("statuses:", ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items())))
PY
then
  echo "error: the load failed; the server said:" >&2
  tail -n 20 "$run/stderr.log" >&2
  exit 1
fi

dump=$results/$slug.callgrind.out
report=$results/$slug.txt
cp "$run/callgrind.out.1" "$dump"
total=$(sed -n 's/^summary: *//p' "$dump")
# Every function (no threshold): the report keeps the TOP, and the exemplar's cost below is well
# under the default threshold.
callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$dump" >"$run/annotate.txt"
{
  echo "make profile ENDPOINT=$ENDPOINT${ARGS:+ ARGS=\"$ARGS\"}: Pulse at its defaults${ARGS:+ plus $ARGS}, $REQUESTS requests at concurrency 1"
  echo "instructions: $total in all, $((total / REQUESTS)) per request; dump: $dump"
  echo "First column: instructions per request (inclusive). Source paths shortened to crate/file."
  echo
  # Per request first; Pulse's sources as src/..., crate sources as crate-x.y.z/..., std as
  # library/..., no object file names; the TOP functions with the most inclusive instructions.
  awk -v n="$REQUESTS" -v top="$TOP" '
    rows >= top { exit }
    match($0, /^ *[0-9,]+ \(/) {
      ir = substr($0, RSTART, RLENGTH - 2); gsub(/[ ,]/, "", ir)
      printf "%9.0f  %s\n", ir / n, $0
      if (table) rows++
      next
    }
    /file:function/ { table = 1 }
    { print }' "$run/annotate.txt" |
    sed -E "s#$ROOT/##; s#/[^ :]*/registry/src/[^/]+/##; s#/rustc/[0-9a-f]+/##; s# \\[[^]]*\\]\$##"
} >"$report"
echo "instructions per request: $((total / REQUESTS))"
# The exemplar of each sampled request (telemetry/exemplars.rs, never inlined so it shows here): the
# largest inclusive count of its entries (line tables split a function into one entry per file).
exemplar=$(awk '/exemplars::BucketExemplars::record/ { v = $1; gsub(/,/, "", v); if (v + 0 > max) max = v + 0 } END { if (max) print max }' "$run/annotate.txt")
if [ -n "$exemplar" ]; then
  echo "of which recording the exemplar: $((exemplar / REQUESTS)) (target: at most ~500)" | tee -a "$report"
fi
# Likewise the native histogram of each request's duration (telemetry/native.rs, never inlined).
native=$(awk '/native::NativeHistogram::record/ { v = $1; gsub(/,/, "", v); if (v + 0 > max) max = v + 0 } END { if (max) print max }' "$run/annotate.txt")
if [ -n "$native" ]; then
  echo "of which recording the native histogram: $((native / REQUESTS)) (target: at most 150)" | tee -a "$report"
fi
echo "profile: $report"
