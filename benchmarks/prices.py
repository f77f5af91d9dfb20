"""Price labels benchmark: label recall, exact price reads and the time `--prices` adds, on generated 12 MP shelves
with rendered labels (tests/labelled_shelves.py: several fonts, sizes, decimal styles, raised cents, multi-buys,
blur, tilt, glare, partly hidden labels); and what it reads on the real shelf photos in ../shared/data.
Run from the project root:

    python -m benchmarks.prices [--shelves N] [--repeats R] [--real DIR] [--sheet FILE.png]

A label is found when a read label overlaps it (half of the smaller box); its price is read exactly when the amount
and the multi-buy quantity are the printed ones. Time is the median over photos of `read_labels` (text detection,
recognition, parsing) plus assignment, with the OCR sessions loaded; a photo recognised without `--prices` runs
none of it. Timings on a shared 2-core machine are noisy: CPU seconds are printed beside wall seconds.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

from shelf.ingest.prices import ShelfLabel
from shelf.ingest.regions import Box
from shelf.recognition import prices
from tests.labelled_shelves import make_labelled_shelf

FIRST_SEED = 5000  # held out from the seeds the tests use
REAL_SHELVES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-shelves"


def overlap(a: Box, b: Box) -> float:
    return prices._overlap(a, b)


def score(found: list[ShelfLabel], truth) -> tuple[int, int, list]:
    """(labels found, prices read exactly, misses as (truth label, read label or None))."""
    hit = exact = 0
    misses = []
    for label in truth:
        match = max(found, key=lambda f: overlap(f.box, label.box), default=None)
        if match is None or overlap(match.box, label.box) < 0.5:
            misses.append((label, None))
            continue
        hit += 1
        if match.price is not None and (match.price.amount, match.price.quantity) == (label.price.amount,
                                                                                      label.price.quantity):
            exact += 1
        else:
            misses.append((label, match))
    return hit, exact, misses


def generated(n: int, repeats: int, width: int, height: int) -> None:
    reader = prices.reader()
    labels = hits = exact = 0
    walls, cpus = [], []
    why = Counter()
    assigned_right = assigned = 0
    for seed in range(FIRST_SEED, FIRST_SEED + n):
        shelf = make_labelled_shelf(seed, width, height)
        boxes = [b for _, b in shelf.facings]
        designs = [d for d, _ in shelf.facings]
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            found, stats = prices.read_labels(shelf.image, boxes, ocr=reader)
            print(f"  seed {seed}: {stats.bands} bands, {stats.pixels / 1e6:.2f} MP searched, {stats.lines} lines "
                  f"read; CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in stats.timings.items()))
            found = prices.assign(found, boxes, designs)
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        h, e, misses = score(found, shelf.labels)
        labels, hits, exact = labels + len(shelf.labels), hits + h, exact + e
        for label, read in misses:
            kind = "not found" if read is None else "no price" if read.price is None else "wrong price"
            why[kind] += 1
            style = {k: v for k, v in label.style.items() if k in ("font", "raised", "hidden", "currency")}
            print(f"  seed {seed}: {label.printed!r} {kind}" + (f" (read {read.text!r})" if read else "") + f" {style}")
        for label in shelf.labels:
            match = max(found, key=lambda f: overlap(f.box, label.box), default=None)
            if match is not None and overlap(match.box, label.box) >= 0.5:
                assigned += 1
                assigned_right += set(match.facings) == set(label.facings)
    print(f"\n{n} generated {width}×{height} shelves, {labels} labels:")
    print(f"  labels found {hits / labels:.1%} ({hits}/{labels})   prices read exactly {exact / labels:.1%} "
          f"({exact}/{labels})   misses: {dict(why)}")
    print(f"  tied to the right facing group: {assigned_right / max(1, assigned):.1%} of the labels found")
    print(f"  time added per photo (read + assign): median {statistics.median(walls):.2f} s wall, "
          f"{statistics.median(cpus):.2f} s CPU (max {max(walls):.2f} s wall; {len(walls)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shelves", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--size", default="4000x3000")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    start = time.perf_counter()
    prices.reader()
    print(f"OCR sessions loaded in {time.perf_counter() - start:.2f} s ({prices.OCR_MODEL})")
    generated(args.shelves, args.repeats, width, height)


if __name__ == "__main__":
    main()
