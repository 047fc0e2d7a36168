"""Headless Chromium for the web tests and the bench's latency figure: where it is, how it is
started, and whether it can be.

Debian's ``chromium`` driven by Playwright (a dev dependency; ``playwright install`` is never
run, so no browser is downloaded).
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Headless Chromium for tests and the bench: no network services, no GPU, media allowed without
# prompts (which also stops it from hiding its host candidates behind mDNS names), loopback
# candidates allowed (a sandbox may have no other interface), sound without a click.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_available() -> str | None:
    """None when Playwright and Debian's Chromium are there, else what is missing."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return "Debian's chromium is not installed (tools/setup.sh installs it)"
    return None


__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium_available"]
