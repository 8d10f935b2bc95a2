"""Locating the real components some tests need (promtool, prometheus, alertmanager, amtool, node, npm,
kubectl).

Locally a missing tool skips the test with a message naming the Debian package that brings it;
under CI (CI=true) it fails, because CI must run every test for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# binary -> Debian package that ships it
PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "podman": "podman",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "node": "nodejs",
    "npm": "npm",
    "kubectl": "kubectl",
}


def in_ci() -> bool:
    """True when running under CI, where a missing component is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Return the path of `name`, or skip (locally) / fail (in CI) saying what to install."""
    path = shutil.which(name)
    if path:
        return path
    package = PACKAGES.get(name, name)
    message = (
        f"{name} is not installed: install the Debian package '{package}' "
        f"(sudo apt-get install {package}, or `make system-deps` as root)"
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


ROOT = Path(__file__).resolve().parent.parent


def require_image_build() -> None:
    """Skip (locally) or fail (in CI) unless podman, runc and mmdebstrap are here and we are root."""
    for tool in ("podman", "runc", "mmdebstrap"):
        require_binary(tool)
    if os.geteuid() != 0:
        message = "building the image needs root (podman storage, mmdebstrap)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def podman_flags() -> tuple[list[str], list[str]]:
    """PODMAN_GLOBAL and PODMAN_RUN (the ulimits, which builds take too) from scripts/podman-flags.sh."""
    script = f'. "{ROOT}/scripts/podman-flags.sh"; printf "%s\\0" "${{PODMAN_GLOBAL[@]}}"; printf "\\1"; ' \
             'printf "%s\\0" "${PODMAN_RUN[@]}"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    first, second = out.split("\1")
    return [a for a in first.split("\0") if a], [a for a in second.split("\0") if a]
