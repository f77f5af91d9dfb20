"""Planogram compliance at chain scale: fill a store through the bulk path (benchmarks/seed.py), give every seeded
store × aisle a planogram, then time shelf.analytics.compliance (summary and lines for one date, for all dates,
for one store; the trend) and the Compliance page's first render, against the target. Printed, never asserted
(timings here are noisy).

    python -m benchmarks.compliance --regions 1000000                       # SQLite in a temp folder
    python -m benchmarks.compliance --regions 10000000 --db postgresql+psycopg://…

The planograms: each odd-numbered store has its own planogram for every aisle — its seeded assortment (a SKU where
the product has one, else its ImageNet class), 4–9 facings each, so there are ok, under, missing and extra lines;
the even-numbered stores fall back to a `*` planogram per aisle (Store 000's assortment, mostly missing and extras
elsewhere). A store that already holds the photos is measured as it is (no second seeding; planograms replaced).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_PHOTO = 40
TARGET_S = {"one date": 1.0}  # like Tallies: what a page shows for one date of a chain answers within a second
REPEAT_UNDER_S = 5.0  # calls faster than this are repeated (3 in all) and the median reported


def plan_lines():
    """The planogram lines described above, from the seed's own assortments (same generator, same draws)."""
    import numpy as np

    from benchmarks import seed as s
    from shelf.analytics.planogram import ANY_STORE, PlanLine
    from shelf.labels import default_map
    from shelf.storage.schema import CLASS_PRODUCT, SKU_PRODUCT

    rng = np.random.default_rng(0)
    shelf_classes = np.array(sorted(i for i, c in default_map().items() if c != "Not a product"))
    classes, skus, _ = s._assortments(rng, shelf_classes, n_skus=300)
    facings = np.random.default_rng(1).integers(4, 10, classes.shape)
    lines, seen = [], set()
    for place in range(s.N_STORES * s.AISLES):
        number, aisle = place // s.AISLES, f"Aisle {place % s.AISLES + 1}"
        if number % 2 == 1:
            store = f"Store {number:03d}"
        elif number == 0:
            store = ANY_STORE
        else:
            continue
        for product in range(s.ASSORTMENT):
            kind, pid = (SKU_PRODUCT, int(skus[place, product])) if skus[place, product] > 0 \
                else (CLASS_PRODUCT, int(classes[place, product]))
            if (store, aisle, kind, pid) not in seen:
                seen.add((store, aisle, kind, pid))
                lines.append(PlanLine(store, aisle, kind, pid, int(facings[place, product]), product // 4 + 1))
    return lines


def timed(action) -> tuple[float, object]:
    """Median seconds of the calls (one if slow, else three) and the last result."""
    times = []
    while True:
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
        if len(times) == 3 or times[0] > REPEAT_UNDER_S:
            return statistics.median(times), result


def measure_functions(url: str) -> list[tuple[str, float, int]]:
    from shelf.analytics import compliance, report
    from shelf.analytics.tally import TallyFilter
    from shelf.storage import store

    engine = store.open_store(url)
    facets = report.facets(engine)
    last = facets.last_date
    one_store = next(s for s in facets.stores if s.endswith("1"))  # one with its own planograms
    cases = {"one date": TallyFilter(date_from=last, date_to=last),
             "one store, all dates": TallyFilter(stores=[one_store]),
             "all dates": TallyFilter()}
    rows = []
    for name, f in cases.items():
        for what, function in (("summary", compliance.summary), ("lines", compliance.lines)):
            seconds, frame = timed(lambda: function(engine, f, 0.5))
            rows.append((f"{what}, {name}", seconds, len(frame)))
            print(f"  {rows[-1][0]}: {seconds:.2f} s", flush=True)
    seconds, frame = timed(lambda: compliance.trend(engine, TallyFilter(), 0.5))
    rows.append(("trend, all dates", seconds, len(frame)))
    engine.dispose()
    return rows


def measure_page(url: str) -> dict:
    """In a fresh process: the Compliance page through AppTest, as a browser session would open it."""
    os.environ.update(SHELF_DATABASE_URL=url, SHELF_OFFLINE="1")
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
    step("first render (newest date)", lambda: at.switch_page("pages/compliance.py").run())
    step("threshold change", lambda: at.slider(key="compliance_threshold").set_value(0.5).run())
    step("all dates", lambda: at.selectbox(key="compliance_day").set_value(-1).run())
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=1_000_000, help="regions in all (40 a photo)")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: an SQLite file in a temp folder)")
    parser.add_argument("--no-page", action="store_true", help="skip the AppTest render")
    parser.add_argument("--measure-page", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.measure_page:
        print(json.dumps(measure_page(args.db)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["SHELF_DATA_DIR"] = tmp
        from benchmarks.seed import seed, stored_photos
        from shelf import access
        from shelf.analytics import planogram
        from shelf.storage import store

        photos = -(-args.regions // PER_PHOTO)
        have = stored_photos(url)
        kind = "postgresql" if url.startswith("postgresql") else "sqlite"
        print(f"store: {kind}, {photos:,} photos × {PER_PHOTO} regions wanted, {have:,} photos there")
        if have < photos:
            if have:
                raise SystemExit("the store holds some photos but fewer than asked: use an empty database")
            seconds = seed(url, photos, PER_PHOTO)
            print(f"bulk seeding: {seconds:.0f} s")
        engine = store.open_store(url)
        lines = plan_lines()
        start = time.perf_counter()
        planogram.replace(engine, lines, access.LOCAL, "benchmark")
        pairs = len({(line.store, line.aisle) for line in lines})
        print(f"planograms: {len(lines):,} lines for {pairs} store/aisles, stored in "
              f"{time.perf_counter() - start:.1f} s")
        engine.dispose()
        rows = measure_functions(url)
        if not args.no_page:
            child = subprocess.run([sys.executable, "-m", "benchmarks.compliance", "--measure-page", "--db", url],
                                   cwd=ROOT, capture_output=True, text=True, env={**os.environ, "SHELF_DATA_DIR": tmp})
            if child.returncode:
                raise SystemExit(child.stderr[-3000:])
            page = json.loads(child.stdout.strip().splitlines()[-1])
            rows += [(f"page: {name}", seconds, None) for name, seconds in page.items() if name != "app start"]
        print(f"{'measure (threshold 0.5)':<40} {'seconds':>8} {'rows':>9}   target")
        for name, seconds, n in rows:
            goal = f"≤ {TARGET_S['one date']:.0f} s" if "one date" in name or "first render" in name else ""
            ratio = f" ({seconds / TARGET_S['one date']:.2f} × target)" if goal else ""
            print(f"{name:<40} {seconds:>8.2f} {'' if n is None else f'{n:,}':>9}   {goal}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
