# Podman options for sandboxes such as CI's machines (sourced by scripts/build-image.sh and the tests).
# runc instead of crun: crun refuses hosts with hybrid cgroup v1/v2 hierarchies.
# Explicit ulimits: podman's defaults ask for more than the hard limits of such a sandbox, which fails
# without CAP_SYS_RESOURCE; open files at this shell's hard limit, processes at 4096 (runc fails to
# set the hard limit itself there).
# shellcheck shell=bash disable=SC2034
PODMAN_GLOBAL=()
if command -v runc >/dev/null 2>&1; then PODMAN_GLOBAL+=(--runtime "$(command -v runc)"); fi
_nofile=$(ulimit -Hn); [ "$_nofile" = unlimited ] && _nofile=65536
_nproc=$(ulimit -Hu); { [ "$_nproc" = unlimited ] || [ "$_nproc" -gt 4096 ]; } && _nproc=4096
PODMAN_ULIMITS=(--ulimit "nofile=$_nofile:$_nofile" --ulimit "nproc=$_nproc:$_nproc")
PODMAN_BUILD=("${PODMAN_ULIMITS[@]}")
PODMAN_RUN=("${PODMAN_ULIMITS[@]}")
