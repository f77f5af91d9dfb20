"""Regions of a photo to classify: pure functions from an image (or its size) to pixel boxes.

Modes (the same strings in the app, the CLI and provenance):
  whole        the photo is one product crop
  grid:RxC     R rows × C columns of equal tiles; grid:RxC@F overlaps neighbouring tiles by the fraction F
  auto[:PROFILE]
               shelf rows, then facings at the product edges along each row (shelf.ingest.auto); empty gaps are
               kept apart (stored as regions of kind gap, never classified). PROFILE names a region profile tuned
               from labelled photos (shelf.ingest.tuning); without one, the default profile or the store's
  boxes:FILE   boxes imported from an SKU-110K CSV, COCO JSON or YOLO txt file (see shelf.ingest.boxfiles)
  detector:FILE[@conf=C,iou=I,tiles=auto|off|N]
               boxes from a YOLO detector exported to ONNX (see shelf.recognition.detector); FILE is an .onnx path
               or the start of an imported detector's sha256, and `detector` alone is the newest imported one
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_GRID = 30
# What one stored photo may hold: what every later reader of it pays for (a photo's page in the API, its overlay, its
# stored result on Recognize). grid:30x30 (900 tiles) fits; a box file or a detector finding more is refused.
MAX_REGIONS = 1000
MAX_STORED_TOP_K = 10  # predictions kept per region (classifying without storing may ask for all 1000 classes)
STORED_LIMITS = (f"Shelf stores at most {MAX_REGIONS} regions per photo and the top {MAX_STORED_TOP_K} predictions "
                 "of each region")
DETECTOR_CONF, DETECTOR_IOU, DETECTOR_TILES = 0.25, 0.6, "auto"
MAX_TILES_ACROSS = 16


@dataclass(frozen=True)
class Box:
    """Pixel box, x2/y2 exclusive, in the EXIF-rotated image's coordinates."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    def clipped(self, width: int, height: int) -> Box:
        return Box(min(max(self.x1, 0), width), min(max(self.y1, 0), height),
                   min(max(self.x2, 0), width), min(max(self.y2, 0), height))


@dataclass(frozen=True)
class RegionMode:
    """A parsed region mode. `text` is what provenance records."""

    kind: str  # whole | grid | auto | boxes | detector
    rows: int = 1
    cols: int = 1
    overlap: float = 0.0
    source: str = ""  # boxes: the box file's name; detector: a path or the start of a sha256 ('' = newest import);
    # auto: a region profile's name ('' = the store's profile, else the default)
    conf: float = DETECTOR_CONF  # detector: lowest score kept
    iou: float = DETECTOR_IOU  # detector: NMS overlap
    tiles: str = DETECTOR_TILES  # detector: auto | off | N tiles along the longer side

    @property
    def text(self) -> str:
        if self.kind == "grid":
            return f"grid:{self.rows}x{self.cols}" + (f"@{self.overlap:g}" if self.overlap else "")
        if self.kind == "boxes":
            return f"boxes:{self.source}"
        if self.kind == "detector":
            return f"detector{':' if self.source else ''}{self.source}@conf={self.conf:g},iou={self.iou:g}," \
                   f"tiles={self.tiles}"
        if self.kind == "auto" and self.source:
            return f"auto:{self.source}"
        return self.kind


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def check_profile_name(name: str) -> str:
    """A region profile's name as typed, or ValueError saying what a name may hold (it appears in region modes,
    file names of exports and the CLI)."""
    if not PROFILE_NAME.match(name or ""):
        raise ValueError(f"region profile name {name!r}: use 1–40 letters, digits, '.', '_' or '-', starting with "
                         "a letter or digit")
    return name


GRID_PATTERN = re.compile(r"grid:(\d+)x(\d+)(?:@(0(?:\.\d+)?))?$")


def parse_region_mode(text: str) -> RegionMode:
    """'whole' | 'auto' | 'auto:PROFILE' | 'grid:3x4' | 'grid:3x4@0.1' | 'boxes:FILE' | 'detector…' → RegionMode,
    or ValueError saying why."""
    text = (text or "").strip()
    if text in ("whole", "auto"):
        return RegionMode(text)
    if text.startswith("auto:"):
        return RegionMode("auto", source=check_profile_name(text[len("auto:"):]))
    if text.startswith("boxes:") and len(text) > len("boxes:"):
        return RegionMode("boxes", source=text[len("boxes:"):])
    if text == "detector" or text.startswith(("detector:", "detector@")):
        return _parse_detector(text)
    match = GRID_PATTERN.match(text)
    if match:
        rows, cols = int(match[1]), int(match[2])
        overlap = float(match[3] or 0)
        if not (1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID):
            raise ValueError(f"grid rows and columns must be between 1 and {MAX_GRID}")
        if not 0 <= overlap < 0.5:
            raise ValueError("grid overlap must be at least 0 and below 0.5")
        return RegionMode("grid", rows=rows, cols=cols, overlap=overlap)
    raise ValueError(f"unknown region mode {text!r}; use whole, auto[:PROFILE], grid:RxC (e.g. grid:3x4 or "
                     "grid:3x4@0.1), boxes:FILE or detector[:FILE][@conf=0.25,iou=0.6,tiles=auto]")


def _parse_detector(text: str) -> RegionMode:
    body, options = text[len("detector"):], ""
    if "@" in body and "=" in body.rsplit("@", 1)[1]:
        body, options = body.rsplit("@", 1)
    source = body[1:].strip()  # after the ':'; '' when there is none
    values = {"conf": DETECTOR_CONF, "iou": DETECTOR_IOU, "tiles": DETECTOR_TILES}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, _, value = item.partition("=")
        if key not in values:
            raise ValueError(f"unknown detector option {key!r}; use conf=, iou= and tiles=")
        if key == "tiles":
            if value not in ("auto", "off") and not (value.isdigit() and 1 <= int(value) <= MAX_TILES_ACROSS):
                raise ValueError(f"tiles must be auto, off or a number of tiles from 1 to {MAX_TILES_ACROSS}")
            values[key] = value
            continue
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"detector option {key} needs a number, not {value!r}") from None
        if not 0 < number <= 1:
            raise ValueError(f"detector option {key} must be above 0 and at most 1")
        values[key] = number
    return RegionMode("detector", source=source, **values)


def check_stored_top_k(top_k: int) -> None:
    """ValueError (saying the limits) unless `top_k` predictions per region may be stored."""
    if not 1 <= top_k <= MAX_STORED_TOP_K:
        raise ValueError(f"top-k {top_k} cannot be stored: {STORED_LIMITS}")


def stored_regions_problem(count: int) -> str | None:
    """Why a photo with `count` regions (products and gaps) cannot be stored, or None when it can."""
    return f"{count} regions found: {STORED_LIMITS}" if count > MAX_REGIONS else None


def whole_image(width: int, height: int) -> list[Box]:
    return [Box(0, 0, width, height)]


def grid(width: int, height: int, rows: int, cols: int, overlap: float = 0.0) -> list[Box]:
    """Row-major tiles covering the image; each tile grows by `overlap` of its size into its neighbours."""
    boxes = []
    tile_w, tile_h = width / cols, height / rows
    pad_x, pad_y = tile_w * overlap / 2, tile_h * overlap / 2
    for r in range(rows):
        for c in range(cols):
            box = Box(math.floor(c * tile_w - pad_x), math.floor(r * tile_h - pad_y),
                      math.ceil((c + 1) * tile_w + pad_x), math.ceil((r + 1) * tile_h + pad_y))
            box = box.clipped(width, height)
            if box.width > 0 and box.height > 0:
                boxes.append(box)
    return boxes


def reading_order(boxes: Sequence[Box]) -> list[int]:
    """The indices of `boxes` in reading order: shelf rows top to bottom, each row left to right — the order grid
    and auto number their regions in — so region #n is where a reader looks for it, whatever order a box file or
    a detector listed the boxes in. A box joins the row its vertical extent overlaps most (by at least half of
    the box's or the row's mean height, whichever is smaller: products of one shelf stand on the same edge but
    differ in height); rows are ordered by their mean centre."""
    rows: list[list[int]] = []
    extents: list[list[float]] = []  # per row: sum of y1, sum of y2
    for i in sorted(range(len(boxes)), key=lambda i: (boxes[i].y1 + boxes[i].y2, boxes[i].x1)):
        box, best, best_overlap = boxes[i], None, 0.0
        for r, (sum_top, sum_bottom) in enumerate(extents):
            top, bottom = sum_top / len(rows[r]), sum_bottom / len(rows[r])
            overlap = min(bottom, box.y2) - max(top, box.y1)
            if overlap >= 0.5 * min(box.height, bottom - top) and overlap > best_overlap:
                best, best_overlap = r, overlap
        if best is None:
            rows.append([i])
            extents.append([float(box.y1), float(box.y2)])
        else:
            rows[best].append(i)
            extents[best][0] += box.y1
            extents[best][1] += box.y2
    by_centre = sorted(range(len(rows)), key=lambda r: sum(extents[r]) / len(rows[r]))
    return [i for r in by_centre for i in sorted(rows[r], key=lambda i: (boxes[i].x1, boxes[i].y1))]


def sized_regions(mode: RegionMode, width: int, height: int) -> list[Box] | None:
    """The boxes of a mode that needs only the photo's size (whole, grid); None for the others."""
    if mode.kind == "whole":
        return whole_image(width, height)
    if mode.kind == "grid":
        return grid(width, height, mode.rows, mode.cols, mode.overlap)
    return None
