"""`ulm dashboard` served for real and every page opened in headless Chromium: it renders, with no exception and
no error element. A screenshot of each page goes to a temporary folder, or with ULM_SCREENSHOTS=1 to
docs/screenshots/dashboard_<page>.png (ULM_SCREENSHOTS_SNAPSHOT=<serving.duckdb> to shoot a bigger snapshot than the
test fixture's, as the committed ones were).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_dashboard import PAGES, build_snapshot

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
READY = """title => { const app = document.querySelector('[data-testid="stApp"]'); const h1 = document.querySelector('h1');
  return app && app.getAttribute('data-test-script-state') === 'notRunning' && h1 && h1.innerText.trim() === title; }"""

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="install Chromium: apt-get install chromium")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `ulm dashboard` stops its streamlit child on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only the processes this test started
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    chosen = os.environ.get("ULM_SCREENSHOTS_SNAPSHOT")
    snapshot = Path(chosen) if chosen else build_snapshot(tmp_path_factory)
    port = _free_port()
    log = tmp_path_factory.mktemp("dashboard_server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ulm.cli", "dashboard", "--port", str(port),
                                 "--snapshot", str(snapshot)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ulm dashboard exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as res:
                    if res.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ulm dashboard did not come up in 90 s:\n{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("ULM_SCREENSHOTS") == "1":
        out = ROOT / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("index", range(len(PAGES)), ids=[slug for slug, _, _ in PAGES])
def test_page_renders_in_a_browser(server, browser, shots, index) -> None:
    slug, title, _ = PAGES[index]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/{'' if index == 0 else slug}")  # the first page is the default: served at /
        page.wait_for_function(READY, arg=title, timeout=90_000)
        page.wait_for_timeout(1500)  # charts draw after the script run
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        assert page.get_by_text("Page not found").count() == 0
        assert page.locator('[data-testid="stSidebarNavLink"]').count() == len(PAGES)
        height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body)"
                               ".scrollHeight")
        page.set_viewport_size({"width": 1400, "height": min(max(height + 40, 1000), 6000)})  # the whole page
        page.wait_for_timeout(1000)
        path = shots / f"dashboard_{slug}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
    finally:
        page.close()
