"""Regions benchmark: auto mode's precision/recall on generated shelves, and a 12 MP shelf photo from upload to
stored predictions. Run from the project root:  python -m benchmarks.regions [--shelves N]

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

from shelf.evaluation import precision_recall
from tests.synthetic import make_shelf, shelf_jpeg

FIRST_SEED = 1000  # held out from the seeds the tests use


def auto_quality(n_shelves: int) -> None:
    from shelf.regions import auto_regions
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


def timed(into: dict, name: str, function, *args):
    start = time.perf_counter()
    value = function(*args)
    into[name] = time.perf_counter() - start
    return value


def twelve_megapixel_upload(tmp: Path) -> None:
    from shelf import model, pipeline, store
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
    from shelf.classify import classify_images
    from shelf.regions import auto_regions
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHELF_DATA_DIR"] = tmp
        auto_quality(args.shelves)
        twelve_megapixel_upload(Path(tmp))


if __name__ == "__main__":
    main()
