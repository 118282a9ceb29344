#!/usr/bin/env bash
# `make image`: build the container image $IMAGE (default pulse:dev), after checking that Docker can
# build at all. The image has no .git: the revision goes in as the PULSE_REVISION build argument.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require docker
require_docker_daemon

revision=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
docker build -t "$IMAGE" --build-arg "PULSE_REVISION=$revision" "$ROOT"
