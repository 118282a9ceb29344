# Shared by the lab scripts: settings and a check for each tool they need.
# shellcheck shell=bash
set -euo pipefail

KIND_CLUSTER=${KIND_CLUSTER:-pulse}
NAMESPACE=${NAMESPACE:-monitoring}
RELEASE=${RELEASE:-pulse}
IMAGE=${IMAGE:-pulse:dev}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KIND_CLUSTER NAMESPACE RELEASE IMAGE ROOT

# require TOOL: stop with what is missing and where to get it.
require() {
  local tool=$1 hint
  command -v "$tool" >/dev/null 2>&1 && return 0
  case $tool in
    docker)  hint="Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/" ;;
    kind)    hint="go install sigs.k8s.io/kind@latest, or https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
    helm)    hint="Helm 3.14+ or 4: https://helm.sh/docs/intro/install/" ;;
    kubectl) hint="https://kubernetes.io/docs/tasks/tools/#kubectl" ;;
    curl)    hint="your package manager (apt-get install curl)" ;;
    cargo)   hint="a Rust toolchain: https://rustup.rs" ;;
    *)       hint="install it and retry" ;;
  esac
  echo "error: '$tool' is not installed. Get it: $hint" >&2
  exit 1
}

# Port-forwards started by port_forward, all stopped when the calling script exits.
FORWARDS=()
stop_forwards() {
  local pid
  for pid in "${FORWARDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_forwards EXIT

# port_forward SVC LOCAL:REMOTE: start a port-forward in the background and wait until it answers.
port_forward() {
  local svc=$1 ports=$2 local_port=${2%%:*}
  kubectl -n "$NAMESPACE" port-forward "svc/$svc" "$ports" >/dev/null 2>&1 &
  FORWARDS+=($!)
  for _ in $(seq 1 50); do
    if curl -s -o /dev/null "http://127.0.0.1:$local_port/"; then return 0; fi
    sleep 0.2
  done
  echo "error: port-forward to svc/$svc did not come up" >&2
  exit 1
}

grafana_password() {
  kubectl -n "$NAMESPACE" get secret pulse-grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d
}
