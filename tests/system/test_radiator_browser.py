"""`/status` in headless Chromium: the radiator renders, and markup in names shows as text."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.test_radiator import serving_radiator
from tests.support import cli_process, free_port, wait_http
from tests.system_tools import in_ci


@pytest.fixture
def radiator_server() -> Iterator[str]:
    with serving_radiator() as url:
        yield url


def require_chromium() -> str:
    """Chromium's path, or skip (locally) / fail (under CI=true) naming the Debian package, like system_tools."""
    path = shutil.which("chromium")
    if path:
        return path
    message = ("chromium is not installed: install the Debian package 'chromium' "
               "(sudo apt-get install chromium, or `make system-deps` as root)")
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


def chromium(binary: str, url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1600,1000", *extra, url],
        capture_output=True, text=True, timeout=120)


def test_chromium_renders_the_radiator_and_shows_markup_as_text(radiator_server: str, tmp_path: Path) -> None:
    binary = require_chromium()
    png = tmp_path / "status.png"
    shot = chromium(binary, f"{radiator_server}/status", tmp_path, f"--screenshot={png}")
    assert png.exists(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    dom = chromium(binary, f"{radiator_server}/status", tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert "infra/deploy-api" in text
    assert "&lt;script&gt;document.body.setAttribute('data-pwned','1')&lt;/script&gt;" in text  # shown as text
    assert 'data-pwned="1"' not in text  # and never executed
    assert "<script" not in text


def test_chromium_on_the_demo_exporter(tmp_path: Path) -> None:
    """The real process (`--demo` on the simulator), its /status page, rendered by Chromium."""
    binary = require_chromium()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with cli_process("--demo", "--listen", f"127.0.0.1:{port}", output=subprocess.DEVNULL) as process:
        wait_http(f"{base}/readyz", process=process)
        answer = requests.get(f"{base}/status", timeout=10)
        assert answer.status_code == 200 and "Content-Security-Policy" in answer.headers
        png = tmp_path / "demo.png"
        chromium(binary, f"{base}/status", tmp_path, f"--screenshot={png}")
        assert png.exists() and len(png.read_bytes()) > 10_000
        dom = chromium(binary, f"{base}/status", tmp_path, "--dump-dom").stdout
        rows = re.findall(r'<tr class="broken">(.*?)</tr>', dom, flags=re.S)
        deploy_api = [row for row in rows if "infra/deploy-api" in row]
        assert deploy_api, dom[:2000]
        assert "Payments" in deploy_api[0] and re.search(r">\s*[4-9]h \d+m\s*<", deploy_api[0])
