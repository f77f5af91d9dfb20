"""The app's start, as a user meets it: `streamlit run` in a fresh process (the int8 model already built and cached,
as on any machine after its first run), then headless Chromium opening the Home page and the Recognize page.
Measured from the moment the server process is started: health endpoint up, the Home page's first paint (title,
navigation, store figures: everything before the model section), the Home page complete (its last section on
screen, after the model has loaded: the target's "usable"), Recognize ready for an upload. Chromium is started
beforehand, as a user's browser is already open. Printed against the ≤ 3 s target, never asserted.

    python -m shelf bench --part app          (or python -m benchmarks.app_start)
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 3.0


def _prepared(data_dir: Path, weights: Path) -> dict:
    """A data dir whose store has a photo and whose fast-mode model is built and cached; its environment."""
    from tests.synthetic import shelf_jpeg
    photo = data_dir / "calibration.jpg"
    photo.write_bytes(shelf_jpeg(990, 4000, 3000)[0])
    env = {k: v for k, v in os.environ.items() if k not in ("SHELF_DATABASE_URL", "SHELF_BACKEND")}
    env.update(SHELF_DATA_DIR=str(data_dir), SHELF_WEIGHTS=str(weights), SHELF_ALLOW_UNVERIFIED_WEIGHTS="1",
               SHELF_OFFLINE="1")
    for backend in ("onnx", "int8"):  # the faithful export first (fast mode calibrates on its stored crops)
        subprocess.run([sys.executable, "-m", "shelf", "recognize", str(photo), "--regions", "grid:5x8",
                        *(["--again"] if backend == "int8" else [])], cwd=ROOT, check=True, capture_output=True,
                       env={**env, "SHELF_BACKEND": backend})
    return {**env, "SHELF_BACKEND": "int8"}


def _one_start(browser, env: dict) -> dict:
    from tests.e2e.conftest import Server
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    start = time.perf_counter()
    server = Server(Path(env["SHELF_DATA_DIR"]), Path(env["SHELF_WEIGHTS"]), {"SHELF_BACKEND": "int8"})
    try:
        figures = {"health": time.perf_counter() - start}
        page.goto(server.url)
        page.get_by_role("heading", name="Store").wait_for(timeout=60_000)
        figures["paint"] = time.perf_counter() - start
        page.get_by_role("heading", name="Batches").wait_for(timeout=60_000)
        figures["home"] = time.perf_counter() - start
        page.goto(f"{server.url}/recognize")
        page.get_by_test_id("stFileUploaderDropzone").first.wait_for(timeout=60_000)
        figures["recognize"] = time.perf_counter() - start
    finally:
        server.stop()
        page.close()
    return figures


def run(weights: Path, rounds: int = 3) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        env = _prepared(Path(folder), weights)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            starts = [_one_start(browser, env) for _ in range(rounds)]
        finally:
            browser.close()
    return {key: {"median": statistics.median(s[key] for s in starts), "min": min(s[key] for s in starts)}
            for key in starts[0]} | {"rounds": rounds, "load": os.getloadavg()[0]}


def report(result: dict) -> None:
    print(f"\napp start: `streamlit run` to a page in headless Chromium, int8 model cached, {result['rounds']} starts "
          f"(median, fastest); load average {result['load']:.1f}")
    names = {"health": "server answers /_stcore/health", "paint": "Home page first paint (store figures)",
             "home": "Home page complete (model loaded)",
             "recognize": "Recognize ready (model loaded)"}
    for key, name in names.items():
        figure = result[key]
        verdict = f"target ≤ {TARGET_S:g} s: {'met' if figure['median'] <= TARGET_S else 'NOT met'}" \
            if key == "home" else ""
        print(f"  {name:<34}{figure['median']:6.2f} s {figure['min']:6.2f} s  {verdict}")


def main() -> int:
    from benchmarks.common import finetuned_weights
    report(run(finetuned_weights()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
