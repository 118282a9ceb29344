#!/usr/bin/env bash
# `make load`: traffic from the laptop to the lab's Pulse, through a port-forward.
# RATE (default 20/s), DURATION (60s) and MIX (default) tune it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
for tool in kubectl curl cargo; do require "$tool"; done
service=$(pulse_service)
port_forward "$service" 18080:8080
cd "$ROOT"
cargo run --release --quiet -- load --target http://127.0.0.1:18080 \
  --rate "${RATE:-20}" --duration "${DURATION:-60s}" --mix "${MIX:-default}"
