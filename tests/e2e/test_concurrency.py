"""Ten browser sessions upload twenty photos each at the same time, while the CLI writes to the same database
(SQLite file, then a real PostgreSQL): every photo stored exactly once, every prediction there, no error shown."""
import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from shelf.storage import store
from tests.conftest import image_bytes, require_service
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, Server
from tests.synthetic import make_product

SESSIONS, PHOTOS_EACH, CLI_PHOTOS = 10, 20, 20


def write_photos(folder: Path, first_sku: int, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"IMG_{i:04d}.png"  # the same names in every session: names must not matter
        path.write_bytes(image_bytes(make_product(first_sku + i, first_sku), "PNG", compress_level=1))
        paths.append(path)
    return paths


async def one_session(browser, url: str, photos: list[Path]) -> tuple[float, list[str]]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(240_000)
    await page.goto(f"{url}/recognize")
    await page.get_by_text("Shelf photos or product crops").first.wait_for()
    await page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(p) for p in photos])
    button = page.get_by_role("button", name=f"Recognize {len(photos)} photos")
    await button.wait_for()
    start = time.perf_counter()
    await button.click()
    await page.get_by_text("See the tallies").wait_for()
    seconds = time.perf_counter() - start
    errors = await page.get_by_test_id("stAlertContentError").all_inner_texts()
    summary = await page.get_by_text("new photo(s) stored").first.inner_text()
    await context.close()
    return seconds, errors + ([] if summary.startswith(f"{len(photos)} new") else [summary])


async def run_sessions(url: str, batches: list[list[Path]]):
    from playwright.async_api import async_playwright
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(one_session(browser, url, photos) for photos in batches))
        finally:
            await browser.close()


def test_ten_sessions_and_the_cli_at_once(db_url, tmp_path, weights_file):
    require_service(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM}")
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'data' / 'shelf.db'}"
    server = Server(tmp_path / "data", weights_file, {"SHELF_DATABASE_URL": db_url})
    try:
        run_scenario(server, db_url, tmp_path, weights_file)
    finally:
        server.stop()


def run_scenario(server, db_url, tmp_path, weights_file):
    batches = [write_photos(tmp_path / f"session{s}", 1000 * (s + 1), PHOTOS_EACH) for s in range(SESSIONS)]
    cli_photos = write_photos(tmp_path / "cli", 50_000, CLI_PHOTOS)
    before = store.counts(store.open_store(db_url))["photos"]
    cli = subprocess.Popen([sys.executable, "-m", "shelf", "recognize", *map(str, cli_photos), "--db", db_url],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={**os.environ, "SHELF_DATA_DIR": str(server.data_dir),
                                "SHELF_WEIGHTS": str(weights_file), "SHELF_ALLOW_UNVERIFIED_WEIGHTS": "1",
                                "SHELF_OFFLINE": "1"})
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:  # its own thread: its own event loop, whatever pytest's thread runs
        results = pool.submit(asyncio.run, run_sessions(server.url, batches)).result()
    output = cli.communicate(timeout=300)[0].decode()
    elapsed = time.perf_counter() - start
    assert cli.returncode == 0, output
    assert all(not errors for _, errors in results), [errors for _, errors in results if errors]

    engine = store.open_store(db_url)
    total = SESSIONS * PHOTOS_EACH + CLI_PHOTOS
    with engine.connect() as conn:
        photos = conn.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(store.photos.c.sha256)))
                              .select_from(store.photos)).one()
        orphans = conn.execute(sa.select(sa.func.count()).select_from(store.regions.outerjoin(store.predictions))
                               .where(store.predictions.c.region_id.is_(None))).scalar_one()
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert photos[0] - before == total and photos[0] == photos[1]  # each stored once
    counts = store.counts(engine)
    assert counts["predictions"] == 3 * counts["regions"] and orphans == 0
    print(f"\n{engine.dialect.name}: {total} photos from {SESSIONS} browser sessions and the CLI in {elapsed:.1f} s "
          f"({total / elapsed:.1f} photos/s); slowest session {max(s for s, _ in results):.1f} s")
