#!/usr/bin/env bash
# `make scrape-latency`: do scrapes of a large /metrics delay requests? Builds the release binary,
# serves it (`--kube off --log-level warn`), grows the registry with every registered status code
# under five methods on /status/{code} (the duration histogram's buckets, sum and count, and the
# counters, for each), then loads `GET /api/users` at RATE requests/s for DURATION twice:
# alone, then while a scraper asks for /metrics (OpenMetrics, as Prometheus does) back to back.
# Prints the series count and both runs' summaries (`pulse load`: p50, p99, max).
# Loopback only, bounded in time: RATE (default 2000), DURATION (10s);
# PULSE_BIN: a pulse executable to measure instead of building one (e.g. an older build).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
for tool in cargo curl; do require "$tool"; done
cd "$ROOT"

RATE=${RATE:-2000}
DURATION=${DURATION:-10s}
target=${CARGO_TARGET_DIR:-target}
pulse=${PULSE_BIN:-}
if [[ -z $pulse ]]; then
  cargo build --release --quiet
  pulse=$target/release/pulse
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
"$pulse" serve --addr "127.0.0.1:$port" --kube off --log-level warn --shutdown-delay 0s &
server=$!
scraper=
cleanup() {
  [[ -n $scraper ]] && kill "$scraper" 2>/dev/null
  kill "$server" 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT
wait_ready "$pulse" "$base/readyz" 10 "$server"

# Every registered status (others are a 400 of one series) under five methods; `next` separates
# the requests of curl's config.
sep=
for code in $(seq 200 599); do
  for method in GET POST PUT PATCH DELETE; do
    printf '%surl = "%s"\nrequest = "%s"\noutput = "/dev/null"\n' "$sep" "$base/status/$code" "$method"
    sep=$'next\n'
  done
done | curl --silent --no-progress-meter --parallel --parallel-max 8 --config -
curl --silent --fail "$base/api/users" --json '{"name":"Ada","email":"ada@example.com"}' >/dev/null
series=$(curl --silent "$base/metrics" | grep -vc '^#')
scrape=$(curl --silent --output /dev/null --write-out '%{time_total}' \
  -H 'Accept: application/openmetrics-text; version=1.0.0' "$base/metrics")
echo "series: $series; one OpenMetrics scrape: ${scrape}s"

load() {
  "$pulse" load --target "$base" --mix users --rate "$RATE" --concurrency 32 --duration "$DURATION" 2>&1 |
    grep -iE 'p99|latency|requests' || true
}
echo "--- GET /api/users at $RATE/s, no scrapes"
load
(while true; do
  curl --silent --output /dev/null -H 'Accept: application/openmetrics-text; version=1.0.0' "$base/metrics"
done) &
scraper=$!
echo "--- the same, /metrics scraped back to back"
load
