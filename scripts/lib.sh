# Shared by the lab scripts: settings and a check for each tool they need.
# shellcheck shell=bash
set -euo pipefail

KIND_CLUSTER=${KIND_CLUSTER:-pulse}
NAMESPACE=${NAMESPACE:-monitoring}
RELEASE=${RELEASE:-pulse}
IMAGE=${IMAGE:-pulse:dev}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KIND_CLUSTER NAMESPACE RELEASE IMAGE ROOT

# install_hint TOOL: where to get it.
install_hint() {
  case $1 in
    docker)  echo "Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/" ;;
    kind)    echo "go install sigs.k8s.io/kind@latest, or https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
    helm)    echo "Helm 3.14+ or 4: https://helm.sh/docs/intro/install/" ;;
    kubectl) echo "https://kubernetes.io/docs/tasks/tools/#kubectl" ;;
    curl)    echo "your package manager (apt-get install curl)" ;;
    cargo)   echo "a Rust toolchain: https://rustup.rs" ;;
    git)     echo "your package manager (apt-get install git), or https://git-scm.com/downloads" ;;
    valgrind | callgrind_control | callgrind_annotate)
             echo "your package manager (apt-get install valgrind)" ;;
    python3) echo "Python 3.11+: your package manager (apt-get install python3), or https://www.python.org/downloads/" ;;
    *)       echo "install it and retry" ;;
  esac
}

# require TOOL...: stop with one message naming every missing tool and where to get it.
require() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) && return 0
  {
    echo "error: not installed: ${missing[*]}. Get them:"
    for tool in "${missing[@]}"; do echo "  $tool: $(install_hint "$tool")"; done
  } >&2
  exit 1
}

# require_docker_daemon: stop with one clear line when docker is installed but cannot build.
require_docker_daemon() {
  local err
  err=$(docker info 2>&1 >/dev/null) && return 0
  case $err in
    *"permission denied"*)
      echo "error: docker's daemon socket refuses user '$(id -un)': add it to the docker group (sudo usermod -aG docker $(id -un), then log in again) or use rootless Docker: https://docs.docker.com/engine/install/linux-postinstall/" >&2 ;;
    *"Cannot connect to the Docker daemon"* | *"Is the docker daemon running"* | *"connection refused"* | *"no such file or directory"*)
      echo "error: docker is installed but its daemon is not running: start Docker Desktop, or 'sudo systemctl start docker'" >&2 ;;
    *)
      echo "error: docker cannot reach its daemon: 'docker info' says: $(echo "$err" | grep -v '^\s*$' | tail -n 1)" >&2 ;;
  esac
  exit 1
}

# require_service SVC: stop with one line unless kubectl has a current context whose cluster holds
# svc/SVC in $NAMESPACE. Without a kubeconfig, kubectl talks to http://localhost:8080, whatever
# answers there: nothing may be port-forwarded before this says the lab is there.
require_service() {
  local svc=$1 context err
  context=$(kubectl config current-context 2>/dev/null) || context=
  if [[ -z $context ]]; then
    echo "error: kubectl has no current context (no cluster configured): run make kind-up, or pick one with kubectl config use-context NAME" >&2
    exit 1
  fi
  if ! err=$(kubectl --request-timeout=10s -n "$NAMESPACE" get svc "$svc" -o name 2>&1 >/dev/null); then
    echo "error: no Service $svc in namespace $NAMESPACE of kube context '$context' (make kind-up first, or set NAMESPACE): kubectl says: $(echo "$err" | grep -v '^\s*$' | tail -n 1)" >&2
    exit 1
  fi
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

# The labels of release $RELEASE's Pulse objects. The chart names them "<release>-pulse" unless the
# release name contains "pulse"; the scripts find them by these labels instead of guessing.
PULSE_SELECTOR="app.kubernetes.io/name=pulse,app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=server"

# pulse_service: the name of release $RELEASE's Pulse Service (also Prometheus's `job` label of its
# targets). Fails when the release has none.
pulse_service() {
  local name
  name=$(kubectl -n "$NAMESPACE" get svc -l "$PULSE_SELECTOR" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
  if [[ -z $name ]]; then
    echo "error: no Pulse Service of release '$RELEASE' in namespace '$NAMESPACE' (make kind-up first?)" >&2
    return 1
  fi
  echo "$name"
}

grafana_password() {
  kubectl -n "$NAMESPACE" get secret pulse-grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d
}

# run_doctor ARGS...: `pulse doctor --kube` (this checkout's code) against release $RELEASE in the current
# kube context: finds Pulse, Prometheus, Grafana, Tempo and Loki by their labels and reaches them through
# the API server's port-forward. Prints its table; exits 1 when a check fails.
run_doctor() {
  local job
  job=$(pulse_service) || return 1
  (cd "$ROOT" && cargo run --quiet --bin pulse -- doctor --kube --namespace "$NAMESPACE" --job "$job" "$@")
}

# wait_ready PULSE URL SECONDS [PID]: until `PULSE probe URL` answers 2xx (PULSE: a pulse
# executable), at most SECONDS, and only while process PID (the server, when given) lives. Fails
# with one line otherwise. The scripts' one wait for a server (the Rust side has
# tests/support/server.rs).
wait_ready() {
  local pulse=$1 url=$2 seconds=$3 pid=${4:-} deadline
  deadline=$((SECONDS + seconds))
  until "$pulse" probe --timeout 5s "$url" >/dev/null 2>&1; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      echo "error: the server exited before $url answered 2xx" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "error: $url did not answer 2xx within $seconds s" >&2
      return 1
    fi
    sleep 0.1
  done
}
