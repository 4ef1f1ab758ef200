"""A real browser for the dashboard's tests: Debian's Chromium driven by Playwright for Python.

Playwright's own browser download is unreachable here and in CI, so it is never used: Chromium comes from
apt-get (installed by ``make test`` and, failing that, by :func:`ensure_chromium` when running as root, as CI
does), and Playwright launches it through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path(os.environ.get("ORCHEST_TEST_CHROMIUM", "/usr/bin/chromium"))
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
"""Screenshots of the pages under test (gitignored; the CI workflows upload them)."""


class NoBrowser(RuntimeError):
    """Chromium is missing and cannot be installed from here."""


def ensure_chromium() -> Path:
    """The Chromium executable, installed with apt-get first if it is missing and we are root."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise NoBrowser(
            f"{CHROMIUM} is missing: install Debian's chromium (`sudo apt-get install chromium`) or run "
            "`make test`, which installs it; set ORCHEST_TEST_CHROMIUM to use another Chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ("-o", "DPkg::Lock::Timeout=600")
    subprocess.run(["apt-get", *lock, "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", *lock, "install", "-y", "-qq", "chromium"], check=True, env=env)
    if not CHROMIUM.exists():
        raise NoBrowser(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM
