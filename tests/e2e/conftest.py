"""Real-browser fixtures: `streamlit run` on a free port with a generated weights file and a temporary store, and
Debian's Chromium driven by Playwright. A failing test leaves a screenshot in test-artifacts/."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """A server process on this machine, its output in `log`: started, then polled until `healthy()` (a condition,
    not a sleep), and stopped."""
    what = "the server"

    def start(self, command: list[str], env: dict, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.what} did not become healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        raise NotImplementedError

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Server(LocalServer):
    what = "streamlit"

    def __init__(self, data_dir: Path, weights: Path, extra_env: dict | None = None, port: int | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        env = {key: value for key, value in os.environ.items() if key != "SHELF_DATABASE_URL"}
        env.update({"SHELF_DATA_DIR": str(data_dir), "SHELF_WEIGHTS": str(weights),
                    "SHELF_ALLOW_UNVERIFIED_WEIGHTS": "1", "SHELF_OFFLINE": "1", **(extra_env or {})})
        data_dir.mkdir(parents=True, exist_ok=True)
        self.start([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(self.port),
                    "--server.headless", "true", "--browser.gatherUsageStats", "false", *extra_args],
                   env, data_dir / "server.log")

    def healthy(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1)
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights_file):
    instance = Server(tmp_path_factory.mktemp("e2e-data"), weights_file)
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def browser():
    require_service(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.failed_call = report.failed


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.runs = ScriptRuns(tab)
    yield tab
    if getattr(request.node, "failed_call", False):
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{request.node.name}.png"
        tab.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failure: {path}")
    context.close()


class ScriptRuns:
    """What the app's websocket says about script runs: the browser asked for one (a widget changed) and the server
    finished one. A run asked for is not visible in the page until the server starts it, which on a loaded machine
    can be a second later; a file set on an uploader in that gap is lost (Streamlit drops the upload URLs it owes
    the browser when the next run starts), so `settled` waits on these rather than on what the page shows."""

    def __init__(self, page):
        self.events = 0
        self.asked = self.finished = -1  # event numbers, on the current websocket
        page.on("websocket", self._watch)

    def _watch(self, socket) -> None:
        self.asked = self.finished = -1
        socket.on("framesent", self._sent)
        socket.on("framereceived", self._received)

    def _sent(self, payload) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        self.events += 1
        if isinstance(payload, bytes) and BackMsg.FromString(payload).WhichOneof("type") == "rerun_script":
            self.asked = self.events

    def _received(self, payload) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        self.events += 1
        if not isinstance(payload, bytes):
            return
        message = ForwardMsg.FromString(payload)
        if (message.WhichOneof("type") == "script_finished"
                and message.script_finished != ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN):
            self.finished = self.events

    def idle(self) -> bool:
        return self.finished > self.asked


def settled(page, timeout_ms: int = 60_000) -> None:
    """Wait until the app has finished every run asked for so far (Streamlit shows its running status widget
    meanwhile), so a popover opened or a file set next is not lost to a rerun that was still on its way."""
    page.wait_for_timeout(300)  # a widget's change reaches the websocket a moment after the event that causes it
    runs = getattr(page, "runs", None)
    deadline = time.monotonic() + timeout_ms / 1000
    while runs is not None and not runs.idle():
        assert time.monotonic() < deadline, f"the app did not finish its run within {timeout_ms} ms"
        page.wait_for_timeout(100)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=timeout_ms)


def open_page(page, server, path: str, ready_text: str) -> None:
    """Open a page and wait until its first run has finished: a file set on an uploader while the page is still
    being built can land on an element that run then replaces."""
    page.goto(f"{server.url}/{path}")
    page.get_by_text(ready_text).first.wait_for()
    settled(page)


def pick_option(page, selectbox, option: str, attempts: int = 3) -> None:
    """Open `selectbox` and choose `option`. A click that lands while the box is being drawn again opens nothing
    (once in CI, under load): then close whatever opened, let the app settle and click again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    for attempt in range(attempts):
        selectbox.click()
        try:
            page.get_by_role("option", name=option).click(timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            settled(page)


def correct_one_region(page, to: str) -> None:
    """On the Review page: open the one-region correction, pick `to` ("bagel (931)") and save it."""
    page.get_by_text("Correct one region").click()
    settled(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Correct to").click()
    page.keyboard.type(to)
    page.get_by_role("option", name=to).click()
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("Saved 1 correction(s)").wait_for()
