"""Tallies at scale: seed a store with generated detections (1 000 photos × 40 regions by default), then time
loading the detections, the tallies and every chart, and a full render of the Tallies page through AppTest.
Charts must stay small whatever the store holds (they aggregate first). Run:  python -m benchmarks.tallies
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import tempfile
import time
from pathlib import Path

import torch


def seed_store(url: str, n_photos: int, regions_per_photo: int) -> None:
    from PIL import Image

    from shelf import store
    from shelf.categories import default_map
    from shelf.classify import Classification, Prediction
    from shelf.images import DecodedImage
    from shelf.model import CATEGORIES
    from shelf.regions import grid

    engine = store.open_store(url)
    rng = random.Random(0)
    shelf_classes = [i for i, c in default_map().items() if c != "Not a product"]
    run_id = store.create_run(engine, {"weights_sha256": "0" * 64, "weights_source": "benchmark",
                                       "weights_verified": False, "weights_untrained": True, "torch_version": "",
                                       "torchvision_version": "", "shelf_version": "", "preprocessing": {},
                                       "backend": "generated", "region_mode": "grid:5x8", "top_k": 3})
    tiny = Image.new("RGB", (4000, 3000))  # only its size is stored
    boxes = grid(4000, 3000, 5, 8)[:regions_per_photo]
    for n in range(n_photos):
        decoded = DecodedImage(name=f"IMG_{n:05d}.jpg", sha256=f"{n:064x}", image=tiny, format="JPEG", n_bytes=0)
        results = []
        for _ in boxes:
            ranked = rng.sample(shelf_classes, 3)
            probabilities = sorted((rng.random() for _ in ranked), reverse=True)
            results.append(Classification([Prediction(r + 1, c, CATEGORIES[c], p)
                                           for r, (c, p) in enumerate(zip(ranked, probabilities))],
                                          torch.zeros(1000), torch.zeros(512)))
        context = store.Context(f"Store {n % 12}", f"Aisle {n % 9}", dt.date(2026, 10, 1) + dt.timedelta(n % 45))
        store.save_photo(engine, run_id, decoded, b"", context, boxes, results)


def timed(label: str, function, *args):
    start = time.perf_counter()
    value = function(*args)
    print(f"  {label:<42} {1000 * (time.perf_counter() - start):8.0f} ms")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHELF_DATA_DIR"] = tmp
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["SHELF_DATABASE_URL"] = url
        from shelf import charts
        from shelf.detections import load_detections
        from shelf.store import open_store
        from shelf.tally import tally

        print(f"store with {args.photos} photos × {args.regions} regions:")
        timed("seed (one transaction per photo)", seed_store, url, args.photos, args.regions)
        detections = timed("load detections", load_detections, open_store(url))
        table = timed("tally by label", tally, detections, ["label"], 0.3)
        timed("tally by store × category", tally, detections, ["store", "category"], 0.3)
        for name, build in [("facings chart", lambda: charts.facings_bar_chart(table, ["label"])),
                            ("share-of-shelf chart", lambda: charts.share_of_shelf_chart(detections, 0.3)),
                            ("confidence histogram", lambda: charts.confidence_histogram(detections, 0.3)),
                            ("trend chart", lambda: charts.trend_chart(detections, 0.3))]:
            spec = timed(f"{name} (build + to_dict)", lambda: build().to_dict())
            rows = sum(len(v) for v in spec.get("datasets", {}).values())
            print(f"  {'':<42} {rows:8d} rows embedded")

        from streamlit.testing.v1 import AppTest
        os.environ.update(SHELF_OFFLINE="1")
        app = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
        at = AppTest.from_file(app, default_timeout=300)
        timed("app start (no weights: the page needs none)", at.run)
        timed("Tallies page, first render (loads detections)", lambda: at.switch_page("pages/tallies.py").run())
        timed("Tallies page, rerun after a filter change", lambda: at.slider(key="min_confidence").set_value(0.5).run())
        timed("Review page render (25 rows; no photo files)", lambda: at.switch_page("pages/review.py").run())
        assert not at.exception, at.exception


if __name__ == "__main__":
    main()
