"""Locating the real components some tests need (promtool, prometheus, alertmanager, amtool, node, npm,
kubectl).

Locally a missing tool skips the test with a message naming the Debian package that brings it;
under CI (CI=true) it fails, because CI must run every test for real.
"""

from __future__ import annotations

import os
import shutil

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
