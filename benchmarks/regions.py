"""Regions benchmark: auto mode per set of shelves, with the default profile and with a profile tuned on other
photos of the same set — the shared real shelf photos (../shared/data/real-shelves: tuned on one half, scored on the
other, both ways), generated mixed shelves (tests/mixed_shelves.py) and generated uniform shelves
(tests/synthetic.py: tuned on training seeds, scored on held-out seeds) — as recall, precision and F1 at IoU ≥ 0.5
and counting error (found − true); then a 12 MP shelf photo from upload to stored predictions.
Run from the project root:  python -m benchmarks.regions [--shelves N] [--real DIR] [--regions MODE] [--passes P]

Speed is printed, never asserted: timings on a shared 2-core machine are noisy. The weights are a random-init
ResNet-18 (no ImageNet weights can be downloaded here); inference cost does not depend on the weight values.
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.models import resnet18

from benchmarks.common import REAL_SHELVES
from shelf.ingest import tuning
from shelf.ingest.auto import AutoParams
from tests.mixed_shelves import mixed_shelf_jpeg
from tests.synthetic import shelf_jpeg

FIRST_SEED = 1000  # held out from the seeds the tests use
TRAINING_SEED = 5000  # the generated shelves a profile is tuned on


def generated(maker, seeds) -> list[tuning.Labelled]:
    items = []
    for seed in seeds:
        data, truth = maker(seed)
        items.append(tuning.labelled(f"{maker.__name__}-{seed}", Image.open(io.BytesIO(data)).convert("RGB"), truth))
    return items


def real(folder: Path) -> list[tuning.Labelled]:
    from shelf.ingest.boxfiles import parse_box_file
    truth_file = folder / "boxes_sku110k.csv"
    if not truth_file.is_file():
        return []
    photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    items, problems = tuning.labelled_photos(((p.name, p.read_bytes()) for p in photos),
                                             parse_box_file(truth_file.read_bytes(), truth_file.name))
    for problem in problems:
        print(f"  note: {problem}")
    return items


def _line(label: str, scores: list[tuning.Score]) -> str:
    total = sum(scores, tuning.Score())
    within = sum(abs(s.found - s.truth) <= 0.1 * s.truth for s in scores)
    return (f"  {label:34s} recall {total.recall:.3f}  precision {total.precision:.3f}  F1 {total.f1:.3f}  "
            f"count error {total.found - total.truth:+5d} ({within}/{len(scores)} photos within ±10 %)")


def per_set(name: str, folds: list[tuple[list[tuning.Labelled], list[tuning.Labelled]]], passes: int) -> dict:
    """Each fold: (photos to tune on, photos to score). Prints and returns the default and tuned scores."""
    scorer, default, tuned, unchecked = tuning._Scorer(), [], [], []
    for train, test in folds:
        result = tuning.tune(train, passes=passes)  # as `regions tune` does: kept only if cross-validation gains
        searched = result.searched or result.params
        default += [scorer.photo(item, AutoParams()) for item in test]
        tuned += [scorer.photo(item, result.params) for item in test]
        unchecked += [scorer.photo(item, searched) for item in test]
        print(f"  tuned on {len(train)} photo(s): {result.params.changes() or 'no change'}"
              + (f" (the search found {searched.changes()}; leaving each photo out, no better)"
                 if result.searched else ""))
    photos = sum(len(test) for _, test in folds)
    print(f"{name}: {photos} photos, {sum(s.truth for s in default)} true boxes")
    print(_line("default profile", default))
    print(_line("profile tuned on the other photos", tuned))
    print(_line("... the search's, unchecked", unchecked))
    return {"default": default, "tuned": tuned}


def auto_per_set(n_shelves: int, folder: Path, passes: int) -> None:
    results = {}
    real_items = real(folder)
    if real_items:
        halves = real_items[0::2], real_items[1::2]
        results["real shelves"] = per_set(f"real shelves ({folder.name})", [halves, halves[::-1]], passes)
    else:
        print(f"real shelf photos: none in {folder} (skipped)")
    for name, maker in (("generated mixed shelves", mixed_shelf_jpeg), ("generated uniform shelves", shelf_jpeg)):
        held_out = generated(maker, range(FIRST_SEED, FIRST_SEED + n_shelves))
        training = generated(maker, range(TRAINING_SEED, TRAINING_SEED + max(4, n_shelves // 2)))
        results[name] = per_set(name, [(training, held_out)], passes)
    print("all sets")
    for which in ("default", "tuned"):
        print(_line("default profile" if which == "default" else "profiles tuned per set",
                    [s for r in results.values() for s in r[which]]))


def other_mode_on_real(folder: Path, mode: str) -> None:
    """A region mode other than auto on the real photos (a detector, a grid), as `regions evaluate` does."""
    from shelf.ingest.boxfiles import parse_box_file
    from shelf.ingest.evaluation import summarise
    from shelf.recognition.pipeline import Upload, compare_regions
    photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    truth = parse_box_file((folder / "boxes_sku110k.csv").read_bytes(), "boxes_sku110k.csv")
    compared = [c for p in photos for c in compare_regions([Upload(p.name, p.read_bytes())], mode, truth)]
    _, overall = summarise([(c.name, c.found, c.scores, c.truth) for c in compared if c.ok])
    print(f"{mode} on {len(photos)} real shelf photos: recall {overall.recall:.3f}  precision "
          f"{overall.precision:.3f}  F1 {overall.f1:.3f}  count error {overall.count_error:+d}")


def timed(into: dict, name: str, function, *args):
    start = time.perf_counter()
    value = function(*args)
    into[name] = time.perf_counter() - start
    return value


def twelve_megapixel_upload(tmp: Path) -> None:
    from shelf.recognition import model, pipeline, stages
    from shelf.storage import store
    weights = tmp / "random-resnet18.pth"
    torch.manual_seed(0)
    torch.save(resnet18().state_dict(), weights)
    state, info = model.read_weights_file(weights, "benchmark")
    loaded = model.build_model(state, info)
    engine = store.open_store(f"sqlite:///{tmp / 'bench.db'}")
    data, truth = shelf_jpeg(FIRST_SEED, 4000, 3000)
    decodes = []
    real_decode = stages.decode_image
    stages.decode_image = lambda *a, **k: decodes.append(1) or real_decode(*a, **k)
    try:
        pipeline.recognize(loaded, engine, [pipeline.Upload("warm-up.jpg", shelf_jpeg(1, 640, 480)[0])],
                           store.Context(), region_mode="grid:2x2")  # first call pays for lazy init
        decodes.clear()
        start = time.perf_counter()
        (result,) = pipeline.recognize(loaded, engine, [pipeline.Upload("shelf-12mp.jpg", data)], store.Context(),
                                       region_mode="auto")
        total = time.perf_counter() - start
    finally:
        stages.decode_image = real_decode
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
    parser.add_argument("--shelves", type=int, default=12, help="held-out generated shelves per kind")
    parser.add_argument("--real", type=Path, default=REAL_SHELVES, help="photos + boxes_sku110k.csv")
    parser.add_argument("--regions", default="auto", help="another mode to measure on the real photos too")
    parser.add_argument("--passes", type=int, default=2, help="rounds of each tuning search")
    args = parser.parse_args()
    auto_per_set(args.shelves, args.real, args.passes)
    if args.regions != "auto":  # in the user's data dir: a detector mode may name an imported detector
        other_mode_on_real(args.real, args.regions)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHELF_DATA_DIR"] = tmp
        twelve_megapixel_upload(Path(tmp))


if __name__ == "__main__":
    main()
