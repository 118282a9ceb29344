#!/usr/bin/env bash
# `make e2e`: after `make kind-up`, prove the lab works end to end: `helm test`, `pulse doctor --kube`
# (every check passes: scraping, rules, exemplars, traces in Tempo, logs in Loki, Grafana's datasources
# and dashboards), Prometheus scrapes Pulse (up == 1) and has loaded its rules, Grafana lists the Pulse
# dashboards.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require helm kubectl curl cargo

echo "== helm test"
helm test "$RELEASE" -n "$NAMESPACE" --timeout 2m

echo "== pulse doctor --kube"
run_doctor --timeout 180s

echo "== Prometheus scrapes Pulse"
# The job label of Pulse's targets is its Service's name.
job=$(pulse_service)
port_forward pulse-kps-prometheus 19090:9090
ok=""
for _ in $(seq 1 60); do
  up=$(curl -s "http://127.0.0.1:19090/api/v1/query" --data-urlencode "query=min(up{job=\"$job\"})" \
    | sed -n 's/.*"value":\[[^,]*,"\([0-9.]*\)"\].*/\1/p')
  if [ "$up" = "1" ]; then ok=1; break; fi
  sleep 2
done
[ -n "$ok" ] || { echo "error: up{job=\"$job\"} is not 1" >&2; exit 1; }
echo "up{job=\"$job\"} == 1"
curl -s "http://127.0.0.1:19090/api/v1/rules" | grep -q '"name":"pulse.alerts"' \
  || { echo "error: Pulse's rule group is not loaded" >&2; exit 1; }
echo "rule group pulse.alerts loaded"

echo "== Grafana lists the dashboards"
port_forward pulse-grafana 13000:80
dashboards=("$ROOT"/dashboards/*.json)
expected=${#dashboards[@]}
found=0
for _ in $(seq 1 60); do
  found=$(curl -s -u "admin:$(grafana_password)" "http://127.0.0.1:13000/api/search?tag=pulse&type=dash-db" \
    | grep -o '"uid":"pulse-[a-z-]*"' | sort -u | wc -l)
  [ "$found" -ge "$expected" ] && break
  sleep 2
done
[ "$found" -ge "$expected" ] || { echo "error: Grafana lists $found of $expected Pulse dashboards" >&2; exit 1; }
echo "Grafana lists $found Pulse dashboards"
echo "e2e: all checks passed"
