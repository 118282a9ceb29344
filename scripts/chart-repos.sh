#!/usr/bin/env bash
# Adds the Helm repositories a chart's dependencies come from (every `repository: https://...` line of
# its Chart.yaml; default charts/pulse-stack), so that `helm dependency build` finds them. The lab
# (kind-up.sh) and the release workflow both run it: a dependency added to Chart.yaml needs no edit
# elsewhere. The file:// dependencies (the pulse chart of this checkout) need no repository. Each
# repository is named after its host (prometheus-community.github.io -> prometheus-community).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require helm

chart=${1:-$ROOT/charts/pulse-stack}
urls=$(sed -n 's|^[[:space:]]*repository:[[:space:]]*["'\'']\{0,1\}\(https://[^"'\''[:space:]]*\).*$|\1|p' "$chart/Chart.yaml" | sort -u)
if [ -z "$urls" ]; then
  echo "error: $chart/Chart.yaml names no https:// repository" >&2
  exit 1
fi
for url in $urls; do
  host=${url#https://}
  host=${host%%/*}
  name=${host%.github.io}
  name=${name//./-}
  echo "helm repo add $name $url"
  helm repo add "$name" "$url" --force-update >/dev/null
done
