"""Tallies at chain scale: fill a store through the bulk path (benchmarks/seed.py), then time what an analyst waits
for — the Tallies page's first render, a filter change, another session's upload, the Review page — and a 1 M-region
CSV export, with the memory each costs, against the targets. Printed, never asserted (timings here are noisy).

    python -m benchmarks.tallies --photos 25000                      # 1 M regions, SQLite in a temp folder
    python -m benchmarks.tallies --photos 250000 --db postgresql+psycopg://…   # 10 M regions
    python -m benchmarks.tallies --photos 250000 --db URL --seed-only          # fill once, measure later

A store that already holds the photos is measured as it is (no second seeding).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"postgresql": {"first": 1.5, "change": 0.5}, "sqlite": {"first": 2.0, "change": 2.0}}
RSS_TARGET_MB, REVIEW_TARGET_S, UPLOAD_TARGET_S = 150, 0.5, 0.5


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """The process's peak RSS since start, or since the last reset_peak(). Not ru_maxrss: a forked child's starts
    at its parent's peak (the process that seeded the store)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start the peak RSS afresh (Linux), so a peak from before (the Home page's run) is not counted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def measure_app(url: str) -> dict:
    """In a fresh process: the pages through AppTest, as a browser session would drive them."""
    os.environ.update(SHELF_DATABASE_URL=url, SHELF_OFFLINE="1")
    os.environ.pop("SHELF_WEIGHTS", None)
    from streamlit.testing.v1 import AppTest

    from shelf.analytics import report
    from shelf.ingest.images import DecodedImage
    from shelf.storage import store
    from tests.factory import PHOTO, result

    figures = {}

    def timed(name, action):
        start = time.perf_counter()
        action()
        figures[name] = time.perf_counter() - start
        assert not at.exception, at.exception

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    timed("app start", at.run)
    figures["home peak rss"] = peak_mb()
    reset_peak()
    baseline = rss_mb()
    facets = report.facets(store.open_store(url))
    timed("first", lambda: at.switch_page("pages/tallies.py").run())
    timed("threshold", lambda: at.slider(key="min_confidence").set_value(0.5).run())
    timed("store filter", lambda: at.multiselect(key="tallies_stores").set_value(facets.stores[:3]).run())
    timed("group by store, category", lambda: at.multiselect(key="group_by").set_value(["store", "category"]).run())
    week = (facets.last_date.toordinal() - 6, facets.last_date.toordinal())
    import datetime as dt
    timed("last 7 days", lambda: at.date_input(key="tallies_dates").set_value(
        tuple(dt.date.fromordinal(d) for d in week)).run())
    engine = store.open_store(url)  # another session stores a 40-region photo meanwhile
    run_id = store.create_run(engine, {"weights_sha256": "0" * 64, "weights_source": "benchmark",
                                       "weights_verified": False, "weights_untrained": True, "torch_version": "",
                                       "torchvision_version": "", "shelf_version": "", "preprocessing": {},
                                       "backend": "generated", "region_mode": "grid:5x8", "top_k": 2})
    from shelf.ingest.regions import grid
    decoded = DecodedImage(f"upload-{time.time_ns()}.jpg", f"{time.time_ns():064x}"[-64:], PHOTO, "JPEG", 0)
    boxes = grid(400, 300, 5, 8)
    start = time.perf_counter()
    store.save_photo(engine, run_id, decoded, b"", store.Context(facets.stores[0], "Aisle 1", facets.last_date),
                     boxes, [result(737, 0.5 + i / 100, seed=i) for i in range(len(boxes))])
    figures["store one photo (40 regions)"] = time.perf_counter() - start
    timed("after an upload elsewhere", lambda: at.run())
    figures["tallies rss"] = peak_mb() - baseline
    timed("review", lambda: at.switch_page("pages/review.py").run())
    timed("review, next page", lambda: at.number_input(key="review_page").set_value(2).run())
    return figures


def measure_export(url: str, out: Path, regions_wanted: int) -> dict:
    """`python -m shelf export detections` over a date range holding about `regions_wanted` regions."""
    import sqlalchemy as sa

    from shelf.storage import store
    engine = store.open_store(url)
    with engine.connect() as conn:
        days = conn.execute(sa.select(store.photos.c.captured_on, sa.func.count()).group_by(store.photos.c.captured_on)
                            .order_by(store.photos.c.captured_on)).all()
    per_photo = 40
    chosen, total = [], 0
    for day, photos in days:
        if total >= regions_wanted:
            break
        chosen.append(day)
        total += photos * per_photo
    # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's peak (this process seeded the store)
    command = [sys.executable, "-c", "import sys, runpy; sys.argv = ['shelf'] + sys.argv[1:]; "
               "code = 0\ntry: runpy.run_module('shelf', run_name='__main__')\nexcept SystemExit as e: code = e.code\n"
               "from benchmarks.tallies import peak_mb\nprint('PEAK', peak_mb(), file=sys.stderr); sys.exit(code)",
               "export", "detections", "--db", url, "--from", str(chosen[0]), "--to", str(chosen[-1]),
               "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    peak = float(done.stderr.split("PEAK")[-1])
    rows = sum(1 for _ in out.open()) - 1
    out.unlink()
    return {"export seconds": seconds, "export regions": rows, "export peak mb": peak}


def storage(url: str) -> dict:
    import sqlalchemy as sa

    from shelf.storage import store
    from shelf.storage.schema import ROLLUPS
    engine = store.open_store(url)
    with engine.connect() as conn:
        regions = conn.execute(sa.select(sa.func.count()).select_from(store.regions)).scalar_one()
        rollups = {g.table.name: conn.execute(sa.select(sa.func.count()).select_from(g.table)).scalar_one()
                   for g in ROLLUPS}
        if engine.dialect.name == "postgresql":
            per_region = sum(conn.execute(sa.text(f"SELECT pg_total_relation_size('{t}')")).scalar_one()
                             for t in ("regions", "predictions", "embeddings")) / regions
            total = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
        else:
            total = Path(engine.url.database).stat().st_size
            per_region = sum(conn.exec_driver_sql(f"SELECT sum(pgsize) FROM dbstat WHERE name IN (SELECT name "
                                                  f"FROM sqlite_master WHERE tbl_name = '{t}')").scalar_one() or 0
                             for t in ("regions", "predictions", "embeddings")) / regions \
                if _has_dbstat(conn) else total / regions
    return {"regions": regions, "bytes per region": per_region, "database bytes": total, "rollup rows": rollups}


def _has_dbstat(conn) -> bool:
    try:
        conn.exec_driver_sql("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=25_000)
    parser.add_argument("--regions", type=int, default=40, help="regions per photo")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: an SQLite file in a temp folder)")
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_app(args.db)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["SHELF_DATA_DIR"] = tmp
        from benchmarks.seed import seed, stored_photos
        have = stored_photos(url)
        kind = "postgresql" if url.startswith("postgresql") else "sqlite"
        print(f"store: {kind}, {args.photos:,} photos × {args.regions} regions wanted, {have:,} photos there")
        if have < args.photos:
            if have:
                raise SystemExit("the store holds some photos but fewer than asked: use an empty database")
            seconds = seed(url, args.photos, args.regions)
            print(f"bulk seeding: {seconds:.0f} s, {args.photos * args.regions / seconds:,.0f} regions/s "
                  f"(target: 1 M regions in ≤ 120 s → ≥ 8 333 regions/s)")
        if args.seed_only:
            return 0
        size = storage(url)
        print(f"storage: {size['bytes per region']:,.0f} bytes per region with its top-k and embedding "
              f"(target ≤ 1 536); database {size['database bytes'] / 2**30:.2f} GiB; rollup rows "
              + ", ".join(f"{k} {v:,}" for k, v in size["rollup rows"].items()))
        child = subprocess.run([sys.executable, "-m", "benchmarks.tallies", "--measure", "--db", url], cwd=ROOT,
                               capture_output=True, text=True, env={**os.environ, "SHELF_DATA_DIR": tmp})
        if child.returncode:
            raise SystemExit(child.stderr[-3000:])
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        target = TARGETS[kind]
        print(f"{'measure':<36} {'value':>10}   target")
        rows = [("Tallies first render", figures["first"], f"≤ {target['first']} s"),
                ("  threshold change", figures["threshold"], f"≤ {target['change']} s"),
                ("  store filter (3 stores)", figures["store filter"], f"≤ {target['change']} s"),
                ("  group by store × category", figures["group by store, category"], f"≤ {target['change']} s"),
                ("  date range → last 7 days", figures["last 7 days"], f"≤ {target['change']} s"),
                ("  rerun after an upload elsewhere", figures["after an upload elsewhere"], f"≤ {UPLOAD_TARGET_S} s"),
                ("Review page", figures["review"], f"≤ {REVIEW_TARGET_S} s"),
                ("  next page", figures["review, next page"], f"≤ {REVIEW_TARGET_S} s"),
                ("storing one 40-region photo", figures["store one photo (40 regions)"], "")]
        for name, value, goal in rows:
            print(f"{name:<36} {value:>8.2f} s   {goal}")
        print(f"{'RSS added by rendering Tallies':<36} {figures['tallies rss']:>7.0f} MB   ≤ {RSS_TARGET_MB} MB"
              f"   (the app process: {figures['home peak rss']:.0f} MB at its peak before)")
        export = measure_export(url, Path(tmp) / "export.csv", 1_000_000)
        print(f"{'CSV export (CLI)':<36} {export['export seconds']:>8.1f} s   {export['export regions']:,} regions, "
              f"peak RSS {export['export peak mb']:.0f} MB (bounded: chunks of 20 000 regions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
