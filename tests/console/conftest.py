"""The web console in a real browser: Debian's Chromium driven by Playwright,
against a real ``m2mauth serve --dev`` process on port 0 with its own SQLite file.

No browser is ever downloaded (no ``playwright install``): the tests launch the
Chromium that ``scripts/test-browser`` installs from Debian. Without it they
skip, and the run ends with a loud line saying so; with
``M2MAUTH_REQUIRE_BROWSER=1`` (set by .ci/run) they fail instead.

Screenshots of every page, at desktop and phone width, go to
``tests/console/screenshots/`` (gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ViewportSize, sync_playwright

from tests.conftest import BROWSER_SKIPPED

REQUIRE_ENV = "M2MAUTH_REQUIRE_BROWSER"
BROWSER_ENV = "M2MAUTH_CHROMIUM"
SCREENSHOTS = Path(__file__).parent / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
M2MAUTH = [sys.executable, "-m", "m2mauth.cli"]

# Playwright must never fetch a browser of its own, even if something asks it to.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def chromium_path() -> str:
    """Debian's chromium (or $M2MAUTH_CHROMIUM), else a loud skip, or a failure in CI."""
    path = os.environ.get(BROWSER_ENV) or shutil.which("chromium")
    if path is None or not Path(path).exists():
        reason = (
            f"{BROWSER_SKIPPED}: no chromium on PATH: run `scripts/test-browser install` "
            "(Debian's chromium package)"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    return path


@dataclass
class Served:
    """A running ``m2mauth serve --dev`` whose output goes to files the tests read."""

    process: subprocess.Popen[bytes]
    http_url: str
    grpc_target: str
    admin_key: str
    stdout: Path
    stderr: Path

    @property
    def console(self) -> str:
        return f"{self.http_url}/console"

    def log(self) -> str:
        """Everything the server has logged so far (its stdout printed the first
        admin key on purpose, once, at start)."""
        return self.stderr.read_text()


def serve(directory: Path, *args: str) -> Served:
    directory.mkdir(parents=True, exist_ok=True)
    stdout, stderr = directory / "stdout.txt", directory / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2MAUTH_")}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                *M2MAUTH,
                "serve",
                "--dev",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                "--metrics-port",
                "0",
                "--log-format",
                "text",
                *args,
            ],
            cwd=directory,
            stdout=out,
            stderr=err,
            env=env,
        )
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline and process.poll() is None:
        text = stdout.read_text()
        if "Press Ctrl+C to stop" in text:
            break
        time.sleep(0.1)
    http = re.search(r"OAuth over HTTP on (http://\S+)", text)
    grpc_port = re.search(r"serving gRPC on 127\.0\.0\.1:(\d+)", text)
    key = re.search(r"export M2MAUTH_ADMIN_KEY=(\S+)", text)
    if not (http and grpc_port and key and "Web console on" in text):
        process.kill()
        pytest.fail(f"the server did not start: {text}\n{stderr.read_text()}")
    return Served(
        process, http.group(1), f"127.0.0.1:{grpc_port.group(1)}", key.group(1), stdout, stderr
    )


def stop(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    try:
        served.process.wait(30)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = serve(tmp_path_factory.mktemp("console"))
    yield served
    stop(served)


# Module scope, not session: while Playwright's sync API is open it runs an
# event loop on the main thread, and tests after these that run their own
# (anyio.run) would find it there.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        yield browser
        browser.close()
