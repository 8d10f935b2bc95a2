"""Packaging: a wheel and an sdist that pass `twine check` and install into a clean venv; the image builds
from a plain copy of the source with the package index (no wheelhouse), the way `docker build .` does;
`make` refuses a Python older than 3.11 with a clear message.

Under CI=true a missing podman, runc or mmdebstrap fails the image test instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import exporter
from tests.system_tools import podman_flags, require_image_build

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/azdo-base:bookworm-python3"
ONLINE_IMAGE = "localhost/azdo-exporter:test-online"
pytestmark = pytest.mark.slow


def _source_copy(destination: Path) -> Path:
    """What a fresh clone holds: the tracked and not-ignored files, without build/ (no wheelhouse)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if name.startswith("build/") or not source.is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return destination


def test_wheel_and_sdist_pass_twine_and_the_wheel_runs_in_a_clean_venv(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    version = exporter.__version__
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"azdo_exporter-{version}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"azdo_exporter-{version}.tar.gz"]
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and checked.stdout.count("PASSED") == 2, checked.stdout + checked.stderr

    clean = tmp_path / "venv"
    venv.create(clean, with_pip=True)
    python = clean / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheels[0])], capture_output=True,
                               text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    # Run from outside the source tree so the installed package, not the checkout, answers.
    ran = subprocess.run([str(clean / "bin" / "azdo-exporter"), "--version"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert ran.returncode == 0 and ran.stdout.strip() == f"azdo-exporter {version}", ran.stdout + ran.stderr
    where = subprocess.run([str(python), "-c", "import exporter; print(exporter.__file__)"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(clean)), where
    listing = subprocess.run([str(python), "-m", "zipfile", "-l", str(wheels[0])], capture_output=True, text=True,
                             timeout=60).stdout
    assert "exporter/simulator/server.py" in listing and "tests/" not in listing


def test_make_refuses_an_old_python_with_a_clear_message(tmp_path: Path) -> None:
    fake = tmp_path / "python3.10"
    # Answers like a Python 3.10 would: the version probe fails, --version names 3.10.
    fake.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python 3.10.12"; exit 0; fi\nexit 1\n')
    fake.chmod(0o755)
    made = subprocess.run(["make", "-s", "venv", f"PYTHON={fake}", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode != 0
    assert "needs Python 3.11 or later" in made.stdout + made.stderr
    assert "Python 3.10.12" in made.stdout + made.stderr
    assert not (tmp_path / "venv").exists()


def _ca_bundle() -> str | None:
    """The CA bundle this machine trusts (a TLS-inspecting proxy's CA may be in it), for pip in the build."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE"),
                      os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_image_builds_from_a_plain_clone_with_the_package_index(tmp_path: Path) -> None:
    require_image_build()
    podman_global, podman_build = podman_flags()
    base = subprocess.run(["bash", "scripts/build-image.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "BASE_ONLY": "1"})
    assert base.returncode == 0, base.stderr[-3000:]
    source = _source_copy(tmp_path / "src")
    assert not (source / "build").exists()
    command = ["podman", *podman_global, "build", *podman_build, "--no-cache", "--format", "docker",
               "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--tag", ONLINE_IMAGE]
    ca = _ca_bundle()
    if ca:
        command += ["--secret", f"id=ca_bundle,src={ca}"]
    try:
        built = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=900)
        output = built.stdout + built.stderr
        assert built.returncode == 0, output[-4000:]
        said = {line.strip() for line in output.splitlines()}  # the echo's own line, not the echoed RUN command
        assert "installing from the package index" in said and "installing from the wheelhouse, offline" not in said
        ran = subprocess.run(["podman", *podman_global, "run", "--rm", *podman_build, "--entrypoint", "/bin/sh",
                              ONLINE_IMAGE, "-c", "azdo-exporter --version; test ! -e /run/secrets/ca_bundle"],
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ran.stdout.strip() == f"azdo-exporter {exporter.__version__}"
    finally:
        subprocess.run(["podman", *podman_global, "rmi", "--force", ONLINE_IMAGE], capture_output=True, timeout=120)
