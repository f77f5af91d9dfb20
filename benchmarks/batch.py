"""Batch benchmark: the same generated archive through `--engine local` and `--engine ray` on this machine, side by
side, and what the database write costs per photo. Run from the project root:

    python -m benchmarks.batch [--photos 200] [--size 4000x3000] [--grid 5x8] [--db postgresql+psycopg://…]

`--db` must be a scratch database: its Shelf tables are dropped before each engine's run (default: the throwaway
server in SHELF_TEST_POSTGRES_URL, else a temporary SQLite file). Photos are generated once per size and cached
(~/.cache/shelf-bench/batch-*): a few distinct 12 MP shelves, each saved as many photos that differ in trailing
bytes after the JPEG end marker, so every photo has its own content hash but decodes to the same work.
The weights are a random-init ResNet-18 (inference cost does not depend on the weight values). Timings on a shared
2-core machine vary; the ratio within one run is what this measures. Speed is printed, never asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
import torch
from torchvision.models import resnet18

from tests.synthetic import shelf_jpeg

TARGET_RATIO = 0.85  # Ray's photos/s over local's on the same cores: its overhead is small
DISTINCT_SHELVES = 8


def archive(photos: int, width: int, height: int) -> Path:
    from shelf.recognition.backends import bench_cache
    folder = bench_cache() / f"batch-{width}x{height}"
    folder.mkdir(parents=True, exist_ok=True)
    bases = {}
    for i in range(photos):
        path = folder / f"IMG_{i:04d}.jpg"
        if not path.exists():
            seed = 5000 + i % DISTINCT_SHELVES
            if seed not in bases:
                bases[seed] = shelf_jpeg(seed, width, height)[0]
            path.write_bytes(bases[seed] + f"shelf-bench {i}".encode())
    return folder


def scratch(url: str) -> str:
    from shelf.storage import store
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        store.metadata.drop_all(conn)
    engine.dispose()
    return url


def run_engine(name: str, jobs, url: str, grid: str, loaded, workers: int | None) -> dict:
    from shelf.recognition import engines, pipeline, stages
    from shelf.storage import store
    engine = store.open_store(scratch(url))
    settings = stages.Settings(url, f"grid:{grid}", backend=loaded.backend.kind,
                               weights_sha256=loaded.weights.sha256, environment=engines.worker_environment())
    settings = dataclasses.replace(settings, run_id=store.create_run(
        engine, pipeline.run_provenance(loaded, settings.region_mode, settings.top_k)))
    cluster = None
    start = time.perf_counter()
    if name == "ray":
        cluster = engines.connect(None)
        workers = workers or engines.default_workers(cluster)
        results = engines.run_ray(jobs, settings, cluster, workers)
    else:
        results = engines.run_local(jobs, settings, loaded)
    rows, first = [], None
    for row in results:
        first = first or time.perf_counter()
        rows.append(row)
    seconds = time.perf_counter() - start
    if cluster is not None:
        engines.disconnect(cluster)
    stored = [r for r in rows if r["status"] == stages.STORED]
    assert len(stored) == len(jobs), f"{name}: {len(stored)} of {len(jobs)} stored"
    return {"engine": name, "workers": workers or 1, "seconds": seconds, "first_s": first - start,
            "photos_s": len(stored) / seconds,
            "crops_s": sum(int(r["regions"]) for r in stored) / seconds,
            "store_ms": 1000 * statistics.median(float(r["store_seconds"]) for r in stored),
            "store_ms_p90": 1000 * statistics.quantiles([float(r["store_seconds"]) for r in stored], n=10)[-1],
            "regions": int(stored[0]["regions"])}


def photo_file_ms(source: str, repeats: int = 5) -> float:
    """What keeping a photo's original bytes costs (atomic write + fsync, as the store does), median of a few."""
    from shelf.files import write_atomically
    data = Path(source).read_bytes()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            start = time.perf_counter()
            write_atomically(data, Path(tmp) / f"{i}.jpg")
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--grid", default="5x8")
    parser.add_argument("--db", default=os.environ.get("SHELF_TEST_POSTGRES_URL"))
    parser.add_argument("--workers", type=int, default=None, help="Ray classifier actors (default: as for batch)")
    args = parser.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(SHELF_DATA_DIR=tmp, SHELF_ALLOW_UNVERIFIED_WEIGHTS="1", SHELF_OFFLINE="1")
        weights = Path(tmp) / "random-resnet18.pth"
        torch.manual_seed(0)
        torch.save(resnet18().state_dict(), weights)
        os.environ["SHELF_WEIGHTS"] = str(weights)
        from shelf.ingest.sources import list_jobs
        from shelf.recognition.backends import chosen_backend, with_backend
        from shelf.recognition.model import load_model
        loaded = with_backend(load_model()[0], chosen_backend())
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        started = time.perf_counter()
        jobs, _ = list_jobs([str(archive(args.photos, width, height))])
        jobs = jobs[:args.photos]
        print(f"{len(jobs)} generated {width}×{height} JPEG shelf photos (made or found in "
              f"{time.perf_counter() - started:.0f} s), grid {args.grid}, backend {loaded.backend_name}, "
              f"{os.cpu_count()} CPUs, store {sa.engine.make_url(url).get_backend_name()}")
        rows = [run_engine(name, jobs, url, args.grid, loaded, args.workers) for name in ("local", "ray")]
    print(f"\n{'engine':8}{'workers':>8}{'seconds':>9}{'first':>8}{'photos/s':>10}{'crops/s':>9}"
          f"{'store ms p50':>14}{'p90':>7}")
    for r in rows:
        print(f"{r['engine']:8}{r['workers']:>8}{r['seconds']:>9.1f}{r['first_s']:>8.1f}{r['photos_s']:>10.2f}"
              f"{r['crops_s']:>9.1f}{r['store_ms']:>14.1f}{r['store_ms_p90']:>7.1f}")
    local, ray_ = rows
    file_ms = photo_file_ms(jobs[0].source)
    ratio = ray_["photos_s"] / local["photos_s"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"\nRay / local photos/s: {ratio:.2f} (target ≥ {TARGET_RATIO}: {verdict}); Ray's first result after "
          f"{ray_['first_s']:.1f} s (actors start and load the model; Ray hands results back in blocks)")
    per_worker_s = ray_["workers"] / ray_["photos_s"]  # seconds one classifier spends per photo, start-up included
    write_s = max(local["store_ms"] - file_ms, 1.0) / 1000
    print(f"Storing a photo ({local['regions']} regions): {local['store_ms']:.1f} ms median (local engine), of "
          f"which ≈ {file_ms:.1f} ms write and fsync its original bytes to the photo folder and "
          f"≈ {1000 * write_s:.1f} ms are the database transaction; one classifier here needs {per_worker_s:.2f} s "
          "per photo.")
    print(f"One database that did every write one after another would keep up with ≈ {per_worker_s / write_s:.0f} "
          "classifiers like these before the writes become the bottleneck (PostgreSQL writes in parallel on "
          "several cores, so this is a floor).")


if __name__ == "__main__":
    main()
