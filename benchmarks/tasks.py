"""Store tasks at chain scale: what evaluating tasks adds to storing a photo, and the Tasks page with 100 000 tasks.
Printed, never asserted (timings here are noisy).

    python -m benchmarks.tasks                                   # SQLite in a temp folder
    python -m benchmarks.tasks --db postgresql+psycopg://…       # an empty PostgreSQL database

The store: benchmarks/seed.py's chain (100 stores × 10 aisles, 20 photos per store a day, 40 regions a photo; the
history, `--photos`) with benchmarks/compliance.py's planograms, and `--tasks` tasks in bulk (one not yet verified
for a tenth of the store × aisle × products, the rest verified, 1–72 hours after they opened; two events each).
Then a new day's photos of 100 stores go in through the product's own path, `store.save_photo` (40 regions each,
drawn from the aisle's assortment with its SKU matches, so products come out at plan, under and missing), each
followed by `shelf.analytics.tasks.evaluate_pending`, as the app, the CLI and the API run it: the time of each is
kept per photo, and the medians compared (target: evaluation adds ≤ 20 ms). Last, in a fresh process, the Tasks
page through AppTest: first render, a store filter, every state (target ≤ 1 s).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PER_PHOTO = 40
TARGET_ADDED_MS, TARGET_PAGE_S = 20.0, 1.0


def seed_tasks(url: str, n_tasks: int) -> float:
    """`n_tasks` tasks over the seeded store × aisle × products, with their events, through bulk inserts."""
    import sqlalchemy as sa

    from benchmarks import seed as s
    from shelf.storage import store
    from shelf.storage.schema import CLASS_PRODUCT, DONE, OPEN, VERIFIED, task_events, tasks

    engine = store.open_store(url)
    start = time.perf_counter()
    rng = np.random.default_rng(2)
    places = s.N_STORES * s.AISLES
    now = store.utc_now()
    last_day = s.FIRST_DAY.toordinal()
    rows, events = [], []
    active_keys = set()
    for n in range(n_tasks):
        place, product = int(rng.integers(places)), int(rng.integers(1000))
        key = (place, product)
        active = key not in active_keys and rng.random() < 0.1
        active_keys.add(key) if active else None
        opened = now - dt.timedelta(hours=float(rng.uniform(1, 24 * 60)))
        fixed = float(rng.gamma(2.0, 6.0 + place % 7))
        state = (OPEN if rng.random() < 0.7 else DONE) if active else VERIFIED
        rows.append({"id": n + 1, "store": f"Store {place // s.AISLES:03d}", "aisle": f"Aisle {place % s.AISLES + 1}",
                     "product_kind": CLASS_PRODUCT, "product_id": product, "product": f"product {product}",
                     "state": state, "finding": "missing", "expected_facings": 4, "found_facings": 0,
                     "day": last_day, "photo_id": None, "evidence": "{}", "opened_at": opened, "updated_at": opened,
                     "verified_at": opened + dt.timedelta(hours=fixed) if state == VERIFIED else None,
                     "hours_to_fix": fixed if state == VERIFIED else None,
                     "done_by": "staff" if state == DONE else None, "reopened": 0,
                     "done_at": opened + dt.timedelta(hours=1) if state == DONE else None})
        for k, event in enumerate(("task.opened", "task.verified") if state == VERIFIED else ("task.opened",)):
            events.append({"task_id": n + 1, "event": event, "key": f"{n:028x}{k:04x}", "body": "{}",
                           "created_at": opened})
    with store.write_transaction(engine) as conn:
        for first in range(0, len(rows), 20_000):
            conn.execute(tasks.insert(), rows[first:first + 20_000])
        for first in range(0, len(events), 20_000):
            conn.execute(task_events.insert(), events[first:first + 20_000])
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT max(id) FROM tasks))")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:  # statistics, as seed.py
        conn.exec_driver_sql("VACUUM ANALYZE tasks" if conn.dialect.name == "postgresql" else "ANALYZE tasks")
    with engine.connect() as conn:
        counted = conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one()
    engine.dispose()
    assert counted == n_tasks
    return time.perf_counter() - start


def new_day(url: str, photos: int, history: int, later: int = 1) -> tuple[list[float], list[float], dict]:
    """Store `photos` photos of the `later`-th day after the history (save_photo, then evaluate_pending each);
    returns the milliseconds of each, and what the evaluations changed."""
    from collections import Counter

    from benchmarks import seed as s
    from shelf.analytics.tasks import evaluate_pending
    from shelf.ingest.images import DecodedImage
    from shelf.ingest.regions import Box
    from shelf.labels import default_map
    from shelf.storage import store
    from tests.factory import PHOTO, TEST_RUN, result

    engine = store.open_store(url)
    run_id = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    rng = np.random.default_rng(0)  # the seed's and the planograms' assortments (same generator, same draws)
    shelf_classes = np.array(sorted(i for i, c in default_map().items() if c != "Not a product"))
    classes, skus, _ = s._assortments(rng, shelf_classes, n_skus=300)
    draw = np.random.default_rng(3 + later)
    day = s.FIRST_DAY + dt.timedelta(days=history // (s.N_STORES * s.PHOTOS_PER_STORE_DAY) + later)
    storing, evaluating, changes = [], [], Counter()
    boxes = [Box(100 * i, 0, 100 * i + 100, 400) for i in range(PER_PHOTO)]
    for n in range(photos):
        place = (n * 7) % (s.N_STORES * s.AISLES)  # every store, aisles in turn
        products = draw.choice(s.ASSORTMENT, PER_PHOTO, p=draw.dirichlet(np.ones(s.ASSORTMENT)))
        results = [result(int(classes[place, p]), 0.9, seed=i) for i, p in enumerate(products)]
        matches = [(int(skus[place, p]), 0.9) if skus[place, p] > 0 else (None, 0.2) for p in products]
        decoded = DecodedImage(name=f"new-{n}.jpg", sha256=f"{10**12 * later + n:064x}", image=PHOTO, format="JPEG",
                               n_bytes=0)
        context = store.Context(f"Store {place // s.AISLES:03d}", f"Aisle {place % s.AISLES + 1}", day)
        start = time.perf_counter()
        store.save_photo(engine, run_id, decoded, b"", context, boxes, results, matches)
        middle = time.perf_counter()
        changes += evaluate_pending(engine)
        end = time.perf_counter()
        storing.append((middle - start) * 1000)
        evaluating.append((end - middle) * 1000)
    engine.dispose()
    return storing, evaluating, dict(changes)


def measure_page(url: str) -> dict:
    """In a fresh process: the Tasks page through AppTest, as a browser session would open it."""
    os.environ.update(SHELF_DATABASE_URL=url, SHELF_OFFLINE="1", SHELF_TASK_WORKER="off")
    os.environ.pop("SHELF_WEIGHTS", None)
    from streamlit.testing.v1 import AppTest

    figures = {}
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=900)

    def step(name, action):
        start = time.perf_counter()
        action()
        figures[name] = time.perf_counter() - start
        assert not at.exception, at.exception

    step("app start", at.run)
    step("first render", lambda: at.switch_page("pages/tasks.py").run())
    step("one store", lambda: at.multiselect(key="tasks_stores").set_value(["Store 042"]).run())
    step("every state, every store", lambda: (at.multiselect(key="tasks_stores").set_value([]),
                                               at.multiselect(key="tasks_states").set_value([]).run()))
    step("opened in the last 7 days", lambda: at.selectbox(key="tasks_age").set_value("Opened in the last 7 days")
         .run())
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20_000, help="photos of history (40 regions each)")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=200, help="new photos stored and evaluated, one at a time")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: an SQLite file in a temp folder)")
    parser.add_argument("--measure-page", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.measure_page:
        print(json.dumps(measure_page(args.db)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["SHELF_DATA_DIR"] = tmp
        from benchmarks.compliance import plan_lines
        from benchmarks.seed import seed, stored_photos
        from shelf import access
        from shelf.analytics import planogram
        from shelf.storage import store

        if stored_photos(url):
            raise SystemExit("use an empty database")
        kind = "postgresql" if url.startswith("postgresql") else "sqlite"
        print(f"store: {kind}; seeding {args.photos:,} photos × {PER_PHOTO} regions", flush=True)
        print(f"bulk seeding: {seed(url, args.photos, PER_PHOTO, report=lambda *_: None):.0f} s", flush=True)
        engine = store.open_store(url)
        planogram.replace(engine, plan_lines(), access.LOCAL, "benchmark")
        engine.dispose()
        print(f"tasks: {args.tasks:,} in {seed_tasks(url, args.tasks):.0f} s", flush=True)
        first = new_day(url, args.new, args.photos, 1)  # the chain's first day with tasks: most of them open
        storing, evaluating, changes = new_day(url, args.new, args.photos, 2)  # a day later: the usual day
        child = subprocess.run([sys.executable, "-m", "benchmarks.tasks", "--measure-page", "--db", url], cwd=ROOT,
                               capture_output=True, text=True, env={**os.environ, "SHELF_DATA_DIR": tmp})
        if child.returncode:
            raise SystemExit(child.stderr[-3000:])
        page = json.loads(child.stdout.strip().splitlines()[-1])
    store_ms, eval_ms = statistics.median(storing), statistics.median(evaluating)
    print(f"\nthe first day with tasks, {args.new} photos: storing median {statistics.median(first[0]):.1f} ms, "
          f"evaluating median {statistics.median(first[1]):.1f} ms; the evaluations: {first[2]}")
    print(f"a day later, {args.new} new photos, one at a time; the evaluations: {changes}")
    print(f"  storing a photo (save_photo, 40 regions):  median {store_ms:6.1f} ms, p90 "
          f"{np.percentile(storing, 90):6.1f} ms")
    print(f"  evaluating its tasks (evaluate_pending):   median {eval_ms:6.1f} ms, p90 "
          f"{np.percentile(evaluating, 90):6.1f} ms   target ≤ {TARGET_ADDED_MS:.0f} ms "
          f"({eval_ms / TARGET_ADDED_MS:.2f} × target)")
    print(f"Tasks page with {args.tasks:,} tasks (AppTest, a fresh process):")
    for name, seconds in page.items():
        goal = f"   target ≤ {TARGET_PAGE_S:.0f} s ({seconds / TARGET_PAGE_S:.2f} × target)" \
            if name != "app start" else ""
        print(f"  {name:<28} {seconds:6.2f} s{goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
