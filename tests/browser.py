"""Headless Chromium for the HTML tests (Debian: ``apt-get install -y chromium``).

Tests that need it are skipped, with the install command as the reason, when no
Chromium is on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_HINT = "headless Chromium not found; install it with: apt-get install -y chromium"


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


needs_chromium = pytest.mark.skipif(chromium_path() is None, reason=INSTALL_HINT)


def _run(url: str, profile: Path, extra: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    exe = chromium_path()
    assert exe is not None, INSTALL_HINT
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-default-apps", "--disable-extensions", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def dump_dom(page: Path, fragment: str = "", *, profile: Path) -> str:
    """The DOM after the page's scripts ran (``--dump-dom``)."""
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    proc = _run(url, profile, ["--virtual-time-budget=5000", "--dump-dom"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, out: Path, fragment: str = "", *, profile: Path, size: str = "1400,2400") -> Path:
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    proc = _run(url, profile, ["--virtual-time-budget=5000", f"--window-size={size}", f"--screenshot={out}"])
    assert proc.returncode == 0 and out.is_file() and out.stat().st_size > 10_000, proc.stderr[-2000:]
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
