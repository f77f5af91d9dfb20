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

from benchmarks.common import REAL_SHELVES
from shelf.ingest.prices import ShelfLabel
from shelf.ingest.regions import Box
from shelf.recognition import prices
from tests.labelled_shelves import make_labelled_shelf

FIRST_SEED = 5000  # held out from the seeds the tests use


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


def generated(n: int, repeats: int, width: int, height: int, reader: prices.LabelReader) -> None:
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


def real_shelves(folder: Path, sheet: Path) -> None:
    """What `--prices` reads on the real shelf photos (their hand-drawn boxes as facings), and a contact sheet of
    every label found with its reading (written outside the project: the photos' licence is research-only)."""
    from PIL import Image, ImageDraw, ImageFont

    from shelf.ingest.boxfiles import boxes_for_photo, parse_box_file
    from shelf.ingest.images import decode_image
    photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    truth_file = folder / "boxes_sku110k.csv"
    if not photos or not truth_file.is_file():
        print(f"real shelf photos: none in {folder} (skipped)")
        return
    truth = parse_box_file(truth_file.read_bytes(), truth_file.name)
    tiles, walls = [], []
    font = ImageFont.load_default(size=14)
    print(f"\nreal shelf photos in {folder} (their boxed packs as facings):")
    for path in photos:
        decoded = decode_image(path.read_bytes(), path.name)
        boxes, _ = boxes_for_photo(truth, path.name, decoded.width, decoded.height)
        start = time.perf_counter()
        found, stats = prices.read_labels(decoded.image, boxes)
        found = prices.assign(found, boxes, [0] * len(boxes))
        walls.append(time.perf_counter() - start)
        read = [f for f in found if f.price is not None]
        print(f"  {path.name} ({decoded.width}×{decoded.height}, {len(boxes)} packs): {len(found)} label(s), "
              f"{len(read)} with a price: " + ", ".join(f.price.text() for f in read[:12]))
        for label in found:
            pad = label.box.height // 2
            crop = decoded.image.crop((label.box.x1 - pad, label.box.y1 - pad, label.box.x2 + pad, label.box.y2 + pad))
            crop.thumbnail((220, 90))
            tile = Image.new("RGB", (230, 130), (255, 255, 255))
            tile.paste(crop, (5, 5))
            caption = f"{path.stem[:10]}: {label.price.text() if label.price else '?'} <- {label.text[:22]}"
            ImageDraw.Draw(tile).text((5, 105), caption, font=font, fill=(0, 0, 0))
            tiles.append(tile)
    if walls:
        print(f"  time per photo: median {statistics.median(walls):.2f} s wall")
    if tiles:
        columns = 6
        canvas = Image.new("RGB", (230 * columns, 130 * -(-len(tiles) // columns)), (240, 240, 240))
        for i, tile in enumerate(tiles):
            canvas.paste(tile, (230 * (i % columns), 130 * (i // columns)))
        canvas.save(sheet)
        print(f"  contact sheet of the {len(tiles)} labels found: {sheet}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shelves", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--threads", type=int, default=1, help="OCR threads (Shelf uses 1)")
    parser.add_argument("--real", type=Path, default=REAL_SHELVES)
    parser.add_argument("--sheet", type=Path, default=Path("/tmp/shelf-prices-real-shelves.png"),
                        help="where the contact sheet of the real photos' labels goes (never into the project)")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    start = time.perf_counter()
    reader = prices.LabelReader(args.threads)
    print(f"OCR sessions loaded in {time.perf_counter() - start:.2f} s ({prices.OCR_MODEL}, {args.threads} "
          "thread(s))")
    if args.shelves:
        generated(args.shelves, args.repeats, width, height, reader)
    real_shelves(args.real, args.sheet)


if __name__ == "__main__":
    main()
