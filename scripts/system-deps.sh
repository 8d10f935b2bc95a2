#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (promtool, prometheus, alertmanager, amtool,
# chromium for the radiator's rendering test, podman, runc and mmdebstrap for the container image test,
# nodejs and npm for the dashboard schema check),
# when they are missing and this shell can (root with apt-get). Otherwise it says what is missing;
# the tests then skip locally, and fail under CI=true.
set -u
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# The container image test (tests/test_container.py, scripts/build-image.sh): podman with runc (crun fails
# on hybrid cgroup hosts), mmdebstrap for the base image from Debian's packages, and podman's helpers.
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v fuse-overlayfs >/dev/null 2>&1 || need+=(fuse-overlayfs)
command -v slirp4netns >/dev/null 2>&1 || need+=(slirp4netns)
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The dashboard schema check (tests/test_dashboard_schema.py, grafana/schema-check): npm ci and tsc.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The kustomize build of deploy/ (tests/system/test_kustomize.py): kubectl's built-in kustomize
# (the Kubernetes apt repository's package; Debian 12's kubernetes-client is too old for `patches`).
command -v kubectl >/dev/null 2>&1 || need+=(kubectl)
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || echo "system-deps: apt-get update failed" >&2
  # --no-install-recommends keeps it small; the services are never started by the packages' users here.
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    echo "system-deps: apt-get install ${need[*]} failed" >&2
    exit 1
  fi
  # Debian starts the services after install; the tests start their own on loopback ports.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  done
else
  echo "system-deps: missing ${need[*]}: install with 'sudo apt-get install ${need[*]}' (tests that need them will skip; under CI=true they fail)" >&2
fi
exit 0
