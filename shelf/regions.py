"""Regions of a photo to classify: pure functions from an image (or its size) to pixel boxes.

Modes (the same strings in the app, the CLI and provenance):
  whole        the photo is one product crop
  grid:RxC     R rows × C columns of equal tiles; grid:RxC@F overlaps neighbouring tiles by the fraction F
  auto         shelf rows first (long horizontal edges), then facings within each row (vertical boundaries and
               empty wall), empty gaps dropped — a heuristic for shelf photos, tuned by `AutoParams`
  boxes:FILE   boxes imported from an SKU-110K CSV, COCO JSON or YOLO txt file (see shelf.boxfiles)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_GRID = 30


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

    kind: str  # whole | grid | auto | boxes
    rows: int = 1
    cols: int = 1
    overlap: float = 0.0
    source: str = ""  # boxes: the box file's name

    @property
    def text(self) -> str:
        if self.kind == "grid":
            return f"grid:{self.rows}x{self.cols}" + (f"@{self.overlap:g}" if self.overlap else "")
        if self.kind == "boxes":
            return f"boxes:{self.source}"
        return self.kind


GRID_PATTERN = re.compile(r"grid:(\d+)x(\d+)(?:@(0(?:\.\d+)?))?$")


def parse_region_mode(text: str) -> RegionMode:
    """'whole' | 'auto' | 'grid:3x4' | 'grid:3x4@0.1' | 'boxes:FILE' → RegionMode, or ValueError saying why."""
    text = (text or "").strip()
    if text in ("whole", "auto"):
        return RegionMode(text)
    if text.startswith("boxes:") and len(text) > len("boxes:"):
        return RegionMode("boxes", source=text[len("boxes:"):])
    match = GRID_PATTERN.match(text)
    if match:
        rows, cols = int(match[1]), int(match[2])
        overlap = float(match[3] or 0)
        if not (1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID):
            raise ValueError(f"grid rows and columns must be between 1 and {MAX_GRID}")
        if not 0 <= overlap < 0.5:
            raise ValueError("grid overlap must be at least 0 and below 0.5")
        return RegionMode("grid", rows=rows, cols=cols, overlap=overlap)
    raise ValueError(f"unknown region mode {text!r}; use whole, auto, grid:RxC (e.g. grid:3x4 or grid:3x4@0.1) "
                     "or boxes:FILE")


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


# ---------------------------------------------------------------------------------------------------------------
# auto: shelf rows → facings


@dataclass(frozen=True)
class AutoParams:
    work_width: int = 800  # the analysis runs on a copy this wide; boxes are scaled back
    max_tilt_degrees: float = 3.0  # search range for straightening the photo
    min_row_height: float = 0.10  # of the image height
    board_span: float = 0.55  # a shelf edge crosses at least this fraction of the width
    min_facing_width: float = 0.025  # of the image width
    boundary_span: float = 0.45  # a facing boundary runs through at least this fraction of the row
    wall_chroma: float = 0.035  # chromaticity distance from the wall that counts as product
    wall_brightness: tuple[float, float] = (0.7, 1.4)  # brightness ratio to the wall that still counts as wall
    min_fill: float = 0.35  # a facing with less product than this is an empty gap


def auto_regions(image: Image.Image, params: AutoParams = AutoParams()) -> list[Box]:
    """Product facings on a shelf photo, row by row, left to right."""
    scale = min(1.0, params.work_width / image.width)
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BILINEAR) if scale < 1 else image
    angle = _straightening_angle(small, params)
    work = small.rotate(angle, resample=Image.BILINEAR, expand=False, fillcolor=small.getpixel((0, 0))) \
        if angle else small
    rgb = np.asarray(work, dtype=np.float32)
    h, w = rgb.shape[:2]
    boxes = [box for top, bottom in _shelf_rows(rgb, params) for box in _facings(rgb, top, bottom, params)]
    return [_back_to_original(b, angle, (w, h), scale, image.size) for b in boxes]


def _edge_span(image: np.ndarray, axis: int, threshold: float = 14.0) -> np.ndarray:
    """Per row (axis=0: horizontal edges) or per column (axis=1: vertical edges) of an H×W×C image: the fraction
    of pixels on a strong colour edge. Long straight edges score high; texture and print score low."""
    if axis == 0:
        diff = np.abs(image[2:] - image[:-2]).max(axis=2)
        diff = np.maximum(diff[:-1], diff[1:])  # tolerate one pixel of slant
        return np.pad((diff > threshold).mean(axis=1), (1, 2))
    diff = np.abs(image[:, 2:] - image[:, :-2]).max(axis=2)
    diff = np.maximum(diff[:, :-1], diff[:, 1:])
    return np.pad((diff > threshold).mean(axis=0), (1, 2))


def _straightening_angle(image: Image.Image, params: AutoParams) -> float:
    """The small rotation that makes shelf edges most horizontal (sharpest row-edge profile)."""
    thumb = image.resize((min(400, image.width), max(1, round(image.height * min(400, image.width) / image.width))))
    best, best_score = 0.0, -1.0
    for angle in np.arange(-params.max_tilt_degrees, params.max_tilt_degrees + 1e-9, 0.25):
        turned = thumb.rotate(float(angle), resample=Image.BILINEAR, fillcolor=thumb.getpixel((0, 0)))
        score = float(np.sort(_edge_span(np.asarray(turned, dtype=np.float32), axis=0))[-12:].sum())
        if score > best_score + 1e-6:
            best, best_score = float(angle), score
    return best


def _shelf_rows(rgb: np.ndarray, params: AutoParams) -> list[tuple[int, int]]:
    """Bands between shelf edges (long horizontal edges), each at least `min_row_height` tall."""
    h = rgb.shape[0]
    span = _edge_span(rgb, axis=0)
    edges = [y for y in range(h) if span[y] >= params.board_span] + [h]
    min_h = params.min_row_height * h
    rows, last = [], 0
    for y in edges:
        if y - last >= min_h:
            rows.append((last, y))
        last = y
    return rows


def _facings(rgb: np.ndarray, top: int, bottom: int, params: AutoParams) -> list[Box]:
    band = rgb[top:bottom]
    product = _not_wall(band, _wall_colour(band), params)
    lower = product[len(product) // 3:]  # products stand on the shelf: judge columns by the lower part
    occupied = lower.mean(axis=0) > 0.5
    min_w = max(2, int(params.min_facing_width * rgb.shape[1]))
    boundary = _edge_span(band[len(band) // 3:], axis=1) >= params.boundary_span
    cuts = _boundaries(occupied, boundary, min_w)
    boxes = []
    for x1, x2 in zip(cuts[:-1], cuts[1:]):
        if x2 - x1 < min_w:
            continue
        columns = product[:, x1:x2]
        if columns[len(columns) // 3:].mean() < params.min_fill:
            continue  # empty shelf: wall, not product
        filled_rows = np.flatnonzero(columns.mean(axis=1) > 0.5)
        if not len(filled_rows):
            continue
        boxes.append(Box(x1, top + int(filled_rows[0]), x2, top + int(filled_rows[-1]) + 1))
    return boxes


def _wall_colour(band: np.ndarray) -> np.ndarray:
    """The commonest colour of the band's top strip: the back wall above the products."""
    strip = band[: max(1, len(band) // 8)].reshape(-1, 3)
    quantised = (strip // 16).astype(np.int32)
    keys = quantised[:, 0] * 256 + quantised[:, 1] * 16 + quantised[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    commonest = values[np.argmax(counts)]
    return strip[keys == commonest].mean(axis=0)


def _not_wall(band: np.ndarray, wall: np.ndarray, params: AutoParams) -> np.ndarray:
    """Pixels that are not back wall. Compared by chromaticity and by a brightness ratio, so the uneven lighting
    of a real shelf (brighter on one side) does not turn the wall into product."""
    brightness = band.sum(axis=2) + 1.0
    wall_brightness = float(wall.sum()) + 1.0
    chroma_distance = np.linalg.norm(band / brightness[..., None] - wall / wall_brightness, axis=2)
    ratio = brightness / wall_brightness
    return (chroma_distance > params.wall_chroma) | (ratio < params.wall_brightness[0]) | \
        (ratio > params.wall_brightness[1])


def _boundaries(occupied: np.ndarray, boundary: np.ndarray, min_w: int) -> list[int]:
    """Cut positions: both ends of every run of product, and strong vertical edges inside a run."""
    cuts = []
    x, w = 0, len(occupied)
    while x < w:
        if not occupied[x]:
            x += 1
            continue
        start = x
        while x < w and occupied[x]:
            x += 1
        cuts.append(start)
        last = start
        for edge in _peaks(boundary[start:x]):
            position = start + edge
            if position - last >= min_w and x - position >= min_w:
                cuts.append(position)
                last = position
        cuts.append(x)
    # Neighbouring runs separated by a sliver shorter than a facing are one cut apart, not two.
    merged = []
    for c in cuts:
        if merged and c - merged[-1] < 2:
            continue
        merged.append(c)
    return merged


def _peaks(mask: np.ndarray) -> list[int]:
    """Centre of each run of True."""
    centres, x = [], 0
    while x < len(mask):
        if mask[x]:
            start = x
            while x < len(mask) and mask[x]:
                x += 1
            centres.append((start + x - 1) // 2)
        x += 1
    return centres


def _back_to_original(box: Box, angle: float, work_size: tuple[int, int], scale: float,
                      size: tuple[int, int]) -> Box:
    """Undo the straightening rotation and the downscale: bounds of the box's corners in the original."""
    w, h = work_size
    cx, cy = w / 2, h / 2
    c, s = math.cos(math.radians(-angle)), math.sin(math.radians(-angle))
    xs, ys = [], []
    for x, y in ((box.x1, box.y1), (box.x2, box.y1), (box.x1, box.y2), (box.x2, box.y2)):
        dx, dy = x - cx, y - cy
        xs.append((cx + dx * c + dy * s) / scale)
        ys.append((cy - dx * s + dy * c) / scale)
    return Box(math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys))).clipped(*size)


def regions_for(mode: RegionMode | str, image: Image.Image, imported: list[Box] | None = None) -> list[Box]:
    """The boxes for one photo. `imported` carries the boxes matched from a box file for mode boxes:FILE."""
    if isinstance(mode, str):
        mode = parse_region_mode(mode)
    if mode.kind == "whole":
        return whole_image(image.width, image.height)
    if mode.kind == "grid":
        return grid(image.width, image.height, mode.rows, mode.cols, mode.overlap)
    if mode.kind == "auto":
        return auto_regions(image)
    return list(imported or [])
