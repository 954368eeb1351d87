"""A headless chromium for looking at the viewer as a user would: the tests, the benchmark
and the README screenshots. Debian's chromium, driven by Playwright (whose own browser
download needs a network)."""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# sandboxing needs privileges a container lacks; the rest keeps chromium off the network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 800, "height": 600}


@contextlib.contextmanager
def chromium(viewport: dict = VIEWPORT, args: list[str] = ()):
    """A browser context with a fresh profile; `args`: more chromium switches."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                                 args=CHROMIUM_ARGS + list(args), viewport=viewport)
        try:
            yield context
        finally:
            context.close()
