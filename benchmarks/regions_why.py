"""Why auto misses: every unmatched true box and every unmatched found box (IoU 0.5, default profile) put down to
one cause, per set and per photo, so changes to auto aim at the misses that dominate instead of at a guess.
Run from the project root:  python -m benchmarks.regions_why [--shelves N] [--real DIR] [--rows] [--draw DIR]

Causes of a missed true box: its row missed (no found box at its height); merged (one found box spans it and
another true box); split (two or more found boxes lie inside it); vertical (a found box covers its width but not
its height, IoU < 0.5); horizontal (its height but offset sideways); both; dropped (its row is found, nothing there).
Causes of an extra found box: merged, split (a piece), vertical, horizontal, both as above; extra at the photo's
side; extra off the true rows (fixture, price rail, packs stacked above); extra within a row (a pack behind the
front row, an empty stretch boxed). --draw saves each photo with true boxes (green, missed: red) and found boxes
(blue, extra: orange) as PNGs.
"""
from __future__ import annotations

import argparse
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.regions import FIRST_SEED, REAL_SHELVES, generated, real
from shelf.ingest import tuning
from shelf.ingest.auto import AutoParams, layout
from shelf.ingest.evaluation import greedy_matches
from shelf.ingest.regions import Box
from tests.mixed_shelves import mixed_shelf_jpeg
from tests.synthetic import shelf_jpeg

TRUTH_CAUSES = ("row missed", "merged", "split", "vertical", "horizontal", "both", "dropped")
FOUND_CAUSES = ("merged", "split", "vertical", "horizontal", "both", "side", "off rows", "in row")
COVERS = 0.5  # a box spans another along an axis when it covers this share of it


def _overlap(a1: int, a2: int, b1: int, b2: int) -> int:
    return max(0, min(a2, b2) - max(a1, b1))


def _iou_1d(a1: int, a2: int, b1: int, b2: int) -> float:
    inter = _overlap(a1, a2, b1, b2)
    return inter / max(1, (a2 - a1) + (b2 - b1) - inter)


def _spans(outer: Box, inner: Box) -> bool:
    """`outer` covers most of `inner`'s width and height."""
    return (_overlap(outer.x1, outer.x2, inner.x1, inner.x2) >= COVERS * inner.width
            and _overlap(outer.y1, outer.y2, inner.y1, inner.y2) >= COVERS * inner.height)


def _inside(inner: Box, outer: Box) -> bool:
    area = _overlap(inner.x1, inner.x2, outer.x1, outer.x2) * _overlap(inner.y1, inner.y2, outer.y1, outer.y2)
    return area >= 0.6 * inner.width * inner.height


def _area_iou(a: Box, b: Box) -> float:
    inter = _overlap(a.x1, a.x2, b.x1, b.x2) * _overlap(a.y1, a.y2, b.y1, b.y2)
    return inter / max(1, a.width * a.height + b.width * b.height - inter)


def _misplaced(a: Box, b: Box) -> str:
    along_x, along_y = _iou_1d(a.x1, a.x2, b.x1, b.x2), _iou_1d(a.y1, a.y2, b.y1, b.y2)
    if along_x >= 0.7 and along_y < 0.7:
        return "vertical"
    if along_y >= 0.7 and along_x < 0.7:
        return "horizontal"
    return "both"


def causes(found: list[Box], truth: list[Box], width: int) -> tuple[list[str | None], list[str | None]]:
    """(cause per true box, cause per found box); None where the box is matched."""
    pairs = greedy_matches(found, truth)
    matched_found, matched_truth = {i for i, _ in pairs}, {j for _, j in pairs}
    merging = [sum(_spans(f, t) for t in truth) >= 2 for f in found]
    pieces = [[i for i, f in enumerate(found) if _inside(f, t)] for t in truth]
    split_truth = [len(p) >= 2 for p in pieces]
    truth_causes: list[str | None] = []
    for j, t in enumerate(truth):
        if j in matched_truth:
            truth_causes.append(None)
            continue
        best = max(found, key=lambda f: _area_iou(f, t), default=None)
        if any(merging[i] and _spans(f, t) for i, f in enumerate(found)):
            truth_causes.append("merged")
        elif split_truth[j]:
            truth_causes.append("split")
        elif best is not None and _area_iou(best, t) > 0:
            truth_causes.append(_misplaced(best, t))
        elif not any(_overlap(f.y1, f.y2, t.y1, t.y2) >= 0.5 * t.height for f in found):
            truth_causes.append("row missed")
        else:
            truth_causes.append("dropped")
    found_causes: list[str | None] = []
    for i, f in enumerate(found):
        if i in matched_found:
            found_causes.append(None)
            continue
        best = max(truth, key=lambda t: _area_iou(f, t), default=None)
        if merging[i]:
            found_causes.append("merged")
        elif any(split_truth[j] and i in pieces[j] for j in range(len(truth))):
            found_causes.append("split")
        elif best is not None and _area_iou(f, best) >= 0.1:
            found_causes.append(_misplaced(f, best))
        elif f.x1 <= 0.01 * width or f.x2 >= 0.99 * width:
            found_causes.append("side")
        elif not any(_overlap(f.y1, f.y2, t.y1, t.y2) >= 0.5 * f.height for t in truth):
            found_causes.append("off rows")
        else:
            found_causes.append("in row")
    return truth_causes, found_causes


def truth_rows(truth: list[Box]) -> list[int]:
    """A row number per true box: boxes whose vertical middles lie close together (by the typical height)."""
    if not truth:
        return []
    middles = np.array([(t.y1 + t.y2) / 2 for t in truth])
    gap = 0.5 * float(np.median([t.height for t in truth]))
    order = np.argsort(middles)
    rows, row = np.zeros(len(truth), int), 0
    for previous, current in zip(order[:-1], order[1:]):
        row += middles[current] - middles[previous] > gap
        rows[current] = row
    return rows.tolist()


def _counts(labels) -> str:
    counted = Counter(c for c in labels if c)
    return " ".join(f"{k} {counted[k]}" for k in dict.fromkeys((*TRUTH_CAUSES, *FOUND_CAUSES)) if counted[k]) or "-"


def _draw(item: tuning.Labelled, image, found, truth_causes, found_causes, folder: Path) -> None:
    picture = image.convert("RGB")
    draw = ImageDraw.Draw(picture)
    line = max(2, picture.width // 500)
    for t, cause in zip(item.truth, truth_causes):
        draw.rectangle(t.as_tuple, outline=(220, 0, 0) if cause else (0, 200, 0), width=line)
    for f, cause in zip(found, found_causes):
        box = (f.x1 + line, f.y1 + line, f.x2 - line, f.y2 - line)
        draw.rectangle(box, outline=(255, 140, 0) if cause else (0, 90, 255), width=line)
        if cause:
            draw.text((f.x1 + 2 * line, f.y1 + 2 * line), cause, fill=(255, 140, 0))
    folder.mkdir(parents=True, exist_ok=True)
    picture.save(folder / f"{Path(item.name).stem}.png")


def why(name: str, items: list[tuple[tuning.Labelled, object]], rows: bool, draw: Path | None,
        params: AutoParams = AutoParams()) -> None:
    truth_total, found_total, score = Counter(), Counter(), tuning.Score()
    print(f"{name}: {len(items)} photos")
    for item, image in items:
        found = layout(item.prepared, params).facings
        truth = list(item.truth)
        truth_causes, found_causes = causes(found, truth, item.prepared.size[0])
        truth_total.update(c for c in truth_causes if c)
        found_total.update(c for c in found_causes if c)
        matched = sum(c is None for c in truth_causes)
        score += tuning.Score(matched, len(found), len(truth))
        print(f"  {item.name[:28]:28s} true {len(truth):4d} found {len(found):4d} matched {matched:4d} | "
              f"missed: {_counts(truth_causes)} | extra: {_counts(found_causes)}")
        if rows:
            for row, members in _by_row(truth_rows(truth), truth_causes):
                print(f"      row {row}: {len(members)} true, missed: {_counts(members)}")
        if draw:
            _draw(item, image, found, truth_causes, found_causes, draw / name.split()[0])
    print(f"  recall {score.recall:.3f}  precision {score.precision:.3f}  F1 {score.f1:.3f}")
    print(f"  {'all':28s} missed true boxes: {_counts(truth_total.elements())} | "
          f"extra found boxes: {_counts(found_total.elements())}")


def _by_row(row_numbers: list[int], labels: list[str | None]):
    for row in sorted(set(row_numbers)):
        yield row, [label for r, label in zip(row_numbers, labels) if r == row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shelves", type=int, default=12, help="held-out generated shelves per kind")
    parser.add_argument("--real", type=Path, default=REAL_SHELVES, help="photos + boxes_sku110k.csv")
    parser.add_argument("--rows", action="store_true", help="also per shelf row (rows of true boxes)")
    parser.add_argument("--draw", type=Path, help="save each photo with its boxes into this folder")
    parser.add_argument("--params", type=json.loads, default={}, help='a profile\'s changes, e.g. {"cut_cost": 0.1}')
    parser.add_argument("--sets", default="real,mixed,uniform", help="which sets, comma-separated")
    args = parser.parse_args()
    wanted, params = args.sets.split(","), AutoParams().replaced(**args.params)
    if "real" in wanted:
        items = real(args.real)
        images = {p.name: p for p in args.real.glob("*")}
        why("real shelves", [(i, Image.open(images[i.name])) for i in items], args.rows, args.draw, params)
    for key, maker in (("mixed", mixed_shelf_jpeg), ("uniform", shelf_jpeg)):
        if key in wanted:
            items = generated(maker, range(FIRST_SEED, FIRST_SEED + args.shelves))
            pictures = [Image.open(io.BytesIO(maker(FIRST_SEED + k)[0])) for k in range(len(items))]
            why(f"{key} generated", list(zip(items, pictures)), args.rows, args.draw, params)


if __name__ == "__main__":
    main()
