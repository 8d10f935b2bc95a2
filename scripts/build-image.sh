#!/usr/bin/env bash
# Builds the azdo-exporter container image with podman, with no image registry:
#   1. a Debian bookworm base image with python3, made from Debian's packages with mmdebstrap and
#      imported into podman (kept: reused while the tag exists; FORCE_BASE=1 rebuilds it);
#   2. the dependencies as wheels in build/wheelhouse, prepared on the host with pip (PyPI);
#   3. `podman build` with BASE_IMAGE pointing to the local base image.
# Needs root (mmdebstrap, podman's storage) and the Debian packages podman, runc and mmdebstrap
# (scripts/system-deps.sh installs them).
#
#   scripts/build-image.sh                       # -> localhost/azdo-exporter:dev
#   IMAGE=registry.example.com/azdo-exporter:0.1.0 scripts/build-image.sh
#   BASE_ONLY=1 scripts/build-image.sh           # only the base image (for `podman build .` with the index)
#
# Sandboxes like CI's need two podman settings, passed here on every call (harmless elsewhere):
# `--runtime runc` (crun refuses hybrid cgroup v1/v2 hosts) and ulimits no higher than the hard limits
# of this shell (podman's defaults ask for more, which fails without CAP_SYS_RESOURCE).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/azdo-exporter:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/azdo-base:bookworm-python3}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PYTHON=${PYTHON:-.venv/bin/python}
WHEELHOUSE=build/wheelhouse

# shellcheck source=scripts/podman-flags.sh
. "$(dirname "$0")/podman-flags.sh"

log() { printf 'build-image: %s\n' "$*" >&2; }

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { log "$tool is missing: run scripts/system-deps.sh as root"; exit 1; }
done

started=$(date +%s)
if [ "${FORCE_BASE:-0}" != 1 ] && podman "${PODMAN_GLOBAL[@]}" image exists "$BASE_IMAGE"; then
  log "base image $BASE_IMAGE exists: reusing it"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  log "building the base image $BASE_IMAGE from Debian $SUITE with mmdebstrap"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='Acquire::Retries "3"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$tmp/rootfs.tar" "deb $MIRROR $SUITE main" "deb $SECURITY_MIRROR $SUITE-security main"
  podman "${PODMAN_GLOBAL[@]}" import --change 'CMD ["/bin/bash"]' \
    --change 'LABEL org.opencontainers.image.description="Debian '"$SUITE"' minbase with python3 (mmdebstrap)"' \
    "$tmp/rootfs.tar" "$BASE_IMAGE" >/dev/null
fi

if [ "${BASE_ONLY:-0}" = 1 ]; then
  log "base image $BASE_IMAGE ready"
  exit 0
fi

log "preparing wheels in $WHEELHOUSE"
rm -rf "$WHEELHOUSE"
mkdir -p "$WHEELHOUSE"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$WHEELHOUSE" '.[web,entra]' \
  'setuptools>=68' wheel
rm -f "$WHEELHOUSE"/azdo_exporter-*.whl   # the builder stage builds the exporter from this source

log "building $IMAGE"
podman "${PODMAN_GLOBAL[@]}" build "${PODMAN_BUILD[@]}" --format docker --network none \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg VERSION="$("$PYTHON" -c 'import exporter; print(exporter.__version__)')" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --tag "$IMAGE" .
log "built $IMAGE in $(( $(date +%s) - started ))s"
