"""Run the real app in-process on a free port, and drive headless Chromium against it."""
from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from i2v.settings import load_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags measured to work here (../shared/ENGINEERING.md); the profile folder is added per browser.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def playwright_or_skip():
    """Playwright's sync API for a browser test module: skipped without Playwright, but under
    ``I2V_REQUIRE_BROWSER=1`` (``.ci/run``) a missing Playwright or browser fails instead. The ``browser`` fixture
    (conftest) skips the tests themselves when chromium is missing."""
    import os

    import pytest

    if os.environ.get("I2V_REQUIRE_BROWSER") == "1":
        import playwright.sync_api as playwright_api

        assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
        return playwright_api
    return pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(outputs: Path, *, monitor=None, model: str = "tiny", queue_size: int = 8,
                extra_args: Sequence[str] = ()) -> Iterator:
    """The app as ``app.py`` builds it (same settings path), served from a thread; yields the ServerThread.
    ``extra_args`` are more ``app.py`` flags, e.g. ``["--max-upload-mb", "1"]``. Jobs run in the app's own process
    (``--gpus none``: tests instrument its engine, and a fake GPU cannot host a worker) unless ``extra_args`` say
    otherwise (``--cpu-workers 2``)."""
    from i2v.web.server import ServerThread, create_app

    port = free_port()
    settings = load_settings(["--gpus", "none", "--port", str(port), "--model", model, "--output-dir", str(outputs),
                              "--queue-size", str(queue_size), *extra_args], environ={})
    server = ServerThread(create_app(settings, monitor=monitor), port=port).start()
    try:
        yield server
    finally:
        server.stop()
