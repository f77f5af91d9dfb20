"""Regions benchmark: auto mode's precision/recall on generated shelves and on the real shelf photos in
../shared/data/real-shelves (per photo and overall), and a 12 MP shelf photo from upload to stored predictions.
Run from the project root:  python -m benchmarks.regions [--shelves N] [--real DIR] [--regions MODE]

Speed is printed, never asserted: timings on a shared 2-core machine are noisy. The weights are a random-init
ResNet-18 (no ImageNet weights can be downloaded here); inference cost does not depend on the weight values.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models import resnet18

from shelf.ingest.evaluation import precision_recall
from tests.synthetic import make_shelf, shelf_jpeg

FIRST_SEED = 1000  # held out from the seeds the tests use
REAL_SHELVES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-shelves"


def auto_quality(n_shelves: int) -> None:
    from shelf.ingest.auto import auto_regions
    matched = found = truth = 0
    seconds = 0.0
    for seed in range(FIRST_SEED, FIRST_SEED + n_shelves):
        image, boxes = make_shelf(seed)
        start = time.perf_counter()
        detected = auto_regions(image)
        seconds += time.perf_counter() - start
        _, _, m = precision_recall(detected, boxes, threshold=0.5)
        matched, found, truth = matched + m, found + len(detected), truth + len(boxes)
    print(f"auto regions on {n_shelves} generated 1600×1200 shelves ({truth} products):")
    print(f"  precision@IoU0.5 {matched / found:.3f}   recall@IoU0.5 {matched / truth:.3f}   "
          f"{1000 * seconds / n_shelves:.0f} ms per photo")


def real_shelves(folder: Path, mode: str) -> None:
    """A region mode on real shelf photos with hand-drawn boxes (boxes_sku110k.csv), as `regions evaluate` does."""
    from shelf.ingest.boxfiles import parse_box_file
    from shelf.ingest.evaluation import summarise
    from shelf.recognition.pipeline import Upload, compare_regions
    photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    truth_file = folder / "boxes_sku110k.csv"
    if not photos or not truth_file.is_file():
        print(f"real shelf photos: none in {folder} (skipped)")
        return
    truth = parse_box_file(truth_file.read_bytes(), truth_file.name)
    start = time.perf_counter()
    compared = [c for p in photos for c in compare_regions([Upload(p.name, p.read_bytes())], mode, truth)]
    seconds = time.perf_counter() - start
    per_photo, overall = summarise([(c.name, c.found, c.scores, c.truth) for c in compared if c.ok])
    print(f"{mode} regions on {len(per_photo)} real shelf photos in {folder} ({overall.truth} boxed products; "
          "only front-facing packs are boxed, so precision reads low):")
    for e in per_photo + [overall]:
        ap = f"   AP@0.5 {e.ap50:.3f}   AP@0.5:0.95 {e.ap50_95:.3f}" if e.ap50 is not None else ""
        print(f"  {e.name:24s} found {e.found:4d}  true {e.truth:4d}  precision {e.precision:.3f}  "
              f"recall {e.recall:.3f}  F1 {e.f1:.3f}  count error {e.count_error:+d}{ap}")
    print(f"  {1000 * seconds / len(photos):.0f} ms per photo (decode and regions)")


def timed(into: dict, name: str, function, *args):
    start = time.perf_counter()
    value = function(*args)
    into[name] = time.perf_counter() - start
    return value


def twelve_megapixel_upload(tmp: Path) -> None:
    from shelf.recognition import model, pipeline
    from shelf.storage import store
    weights = tmp / "random-resnet18.pth"
    torch.manual_seed(0)
    torch.save(resnet18().state_dict(), weights)
    state, info = model.read_weights_file(weights, "benchmark")
    loaded = model.build_model(state, info)
    engine = store.open_store(f"sqlite:///{tmp / 'bench.db'}")
    data, truth = shelf_jpeg(FIRST_SEED, 4000, 3000)
    decodes = []
    real_decode = pipeline.decode_image
    pipeline.decode_image = lambda *a, **k: decodes.append(1) or real_decode(*a, **k)
    try:
        pipeline.recognize(loaded, engine, [pipeline.Upload("warm-up.jpg", shelf_jpeg(1, 640, 480)[0])],
                           store.Context(), region_mode="grid:2x2")  # first call pays for lazy init
        decodes.clear()
        start = time.perf_counter()
        (result,) = pipeline.recognize(loaded, engine, [pipeline.Upload("shelf-12mp.jpg", data)], store.Context(),
                                       region_mode="auto")
        total = time.perf_counter() - start
    finally:
        pipeline.decode_image = real_decode
    from shelf.ingest.auto import auto_regions
    from shelf.recognition.classify import classify_images
    stage = {}
    image = timed(stage, "decode", real_decode, data, "x").image
    boxes = timed(stage, "regions", auto_regions, image)
    timed(stage, "classify", classify_images, loaded, pipeline.crops(image, boxes))
    print(f"12 MP shelf photo (4000×3000 JPEG, {len(data) / 2**20:.1f} MB, {len(truth)} products):")
    print(f"  upload → stored predictions: {total:.2f} s for {len(result.regions)} regions; decoded {len(decodes)}×")
    print("  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stage.items())
          + f" (store and overlay preview: the rest; torch threads {torch.get_num_threads()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shelves", type=int, default=24)
    parser.add_argument("--real", type=Path, default=REAL_SHELVES, help="photos + boxes_sku110k.csv")
    parser.add_argument("--regions", default="auto", help="the mode measured on the real photos")
    args = parser.parse_args()
    auto_quality(args.shelves)
    real_shelves(args.real, args.regions)  # in the user's data dir: a detector mode may name an imported detector
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHELF_DATA_DIR"] = tmp
        twelve_megapixel_upload(Path(tmp))


if __name__ == "__main__":
    main()
