#!/usr/bin/env bash
# `make kind-up`: a kind cluster with Pulse, Prometheus and Grafana, from nothing. Safe to re-run: it
# reuses the cluster, rebuilds and reloads the image, and upgrades the release.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require docker kind helm kubectl cargo
require_docker_daemon

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  echo "kind cluster '$KIND_CLUSTER' exists: reusing it"
else
  kind create cluster --name "$KIND_CLUSTER" --config "$ROOT/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

make -C "$ROOT" image IMAGE="$IMAGE"
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

# The lab installs the stack chart: Pulse's chart (from this checkout) plus kube-prometheus-stack.
# It runs the image built above, never the published one (ghcr.io/pulse-observability/pulse, the
# chart's default): the lab tests this working tree. The --set-string lines below name it.
stack="$ROOT/charts/pulse-stack"
"$ROOT/scripts/chart-repos.sh" "$stack"
helm dependency build "$stack"

# The image id as a pod annotation: a rebuilt image rolls the pods even though the tag stays "dev".
image_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
helm upgrade --install "$RELEASE" "$stack" \
  --namespace "$NAMESPACE" --create-namespace \
  -f "$stack/ci/kind-values.yaml" \
  --set-string pulse.image.repository="${IMAGE%:*}",pulse.image.tag="${IMAGE##*:}" \
  --set-string pulse-backend.image.repository="${IMAGE%:*}",pulse-backend.image.tag="${IMAGE##*:}" \
  --set-string "pulse.podAnnotations.pulse\.dev/image-id=${image_id#sha256:}" \
  --set-string "pulse-backend.podAnnotations.pulse\.dev/image-id=${image_id#sha256:}" \
  --wait --timeout 10m
service=$(pulse_service)

# Helm waited for the pods; signals take longer (the first scrapes, rule evaluations, the collector's
# first batches). Doctor waits for each within its timeout, then says what works and what does not.
echo
echo "== pulse doctor --kube: is the lab working?"
doctor_status=0
run_doctor --timeout 300s || doctor_status=$?

cat <<MSG

Pulse is running in kind cluster '$KIND_CLUSTER', namespace '$NAMESPACE'.

  Grafana:     make grafana      then http://127.0.0.1:3000  (user admin, password: $(grafana_password))
               i.e. kubectl -n $NAMESPACE port-forward svc/pulse-grafana 3000:80
               dashboards: Dashboards > Pulse
  Prometheus:  make prometheus   then http://127.0.0.1:9090/targets
  Pulse:       kubectl -n $NAMESPACE port-forward svc/$service 8080:8080
  Checks:      make doctor        make e2e          Tear down: make kind-down
MSG
if [ "$doctor_status" -ne 0 ]; then
  echo
  echo "error: pulse doctor found a problem (above): README.md, \"Is it working?\", lists each cause and its fix" >&2
  exit "$doctor_status"
fi
