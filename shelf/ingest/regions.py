"""Regions of a photo to classify: pure functions from an image (or its size) to pixel boxes.

Modes (the same strings in the app, the CLI and provenance):
  whole        the photo is one product crop
  grid:RxC     R rows × C columns of equal tiles; grid:RxC@F overlaps neighbouring tiles by the fraction F
  auto         shelf rows from the shelves' regular spacing, then facings from each row's repeating pattern and
               product edges; empty gaps are kept apart (stored as regions of kind gap, never classified) — a
               heuristic for shelf photos, tuned by `AutoParams`
  boxes:FILE   boxes imported from an SKU-110K CSV, COCO JSON or YOLO txt file (see shelf.ingest.boxfiles)
  detector:FILE[@conf=C,iou=I,tiles=auto|off|N]
               boxes from a YOLO detector exported to ONNX (see shelf.recognition.detector); FILE is an .onnx path
               or the start of an imported detector's sha256, and `detector` alone is the newest imported one
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_GRID = 30
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
    source: str = ""  # boxes: the box file's name; detector: a path or the start of a sha256 ('' = newest import)
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
        return self.kind


GRID_PATTERN = re.compile(r"grid:(\d+)x(\d+)(?:@(0(?:\.\d+)?))?$")


def parse_region_mode(text: str) -> RegionMode:
    """'whole' | 'auto' | 'grid:3x4' | 'grid:3x4@0.1' | 'boxes:FILE' → RegionMode, or ValueError saying why."""
    text = (text or "").strip()
    if text in ("whole", "auto"):
        return RegionMode(text)
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
    raise ValueError(f"unknown region mode {text!r}; use whole, auto, grid:RxC (e.g. grid:3x4 or grid:3x4@0.1), "
                     "boxes:FILE or detector[:FILE][@conf=0.25,iou=0.6,tiles=auto]")


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
#
# Shelves are rhythmic: shelf edges repeat down the photo at a near-constant pitch, and facings repeat along each
# shelf. Both rhythms are read from autocorrelations of simple profiles (texture per image row; vertical-edge
# density per column), then the cuts are placed by dynamic programming where the evidence is strongest while their
# spacing stays near the rhythm — so a boundary that glare or print hides is still cut, and a printed edge inside a
# pack is not. Products with plain faces (no print to give a rhythm) are cut at their strong edges instead.


@dataclass(frozen=True)
class AutoParams:
    work_width: int = 800  # the analysis runs on a copy this wide; boxes are scaled back
    work_pixels: int = 4_000_000  # ... and no larger: a photo 50 times taller than wide is not analysed whole
    max_tilt_degrees: float = 3.0  # search range for straightening the photo
    max_band_tilt_degrees: float = 3.0  # ... and each shelf band after that (perspective)
    shelf_pitch: tuple[float, float] = (0.08, 0.5)  # distance between shelf edges searched, of the image height
    min_shelf_rhythm: float = 0.55  # autocorrelation at that pitch; below it the photo is not of shelves
    product_level: float = 0.25  # rows of a shelf band whose texture rises this far from its low to its high
    facing_width: tuple[float, float] = (0.02, 0.3)  # facing rhythm searched, of the image width
    min_facing_aspect: float = 0.25  # ... and at least this fraction of the products' height
    facing_spread: tuple[float, float] = (0.4, 2.5)  # a facing's width relative to its row's rhythm
    rhythm_penalty: float = 0.5  # cost of a facing (squared log) wider or narrower than the rhythm
    boundary_power: float = 3.0  # sharpens the boundary profile: full-height edges dominate partial ones
    plain_products: float = 0.1  # median boundary profile below this: plain faces, cut at strong edges
    strong_boundary: float = 0.6  # an edge this much above its neighbourhood is a product boundary
    min_fill: float = 0.5  # a facing with less product than this is an empty gap
    min_facing_pixels: int = 12  # in the original photo; smaller boxes are noise
    wall_chroma: float = 0.035  # chromaticity distance from the background that counts as product
    wall_brightness: tuple[float, float] = (0.7, 1.4)  # brightness ratio to the background that still counts as it


@dataclass(frozen=True)
class ShelfLayout:
    """What auto mode reads off a shelf photo: the facings, and the empty gaps between them (stretches of a shelf
    row the facing rhythm says should hold a product, but that show the shelf or the back wall instead)."""

    facings: list[Box]
    gaps: list[Box]


def auto_regions(image: Image.Image, params: AutoParams = AutoParams()) -> list[Box]:
    """Product facings on a shelf photo, row by row, left to right; [] when the photo shows no shelf rows."""
    return auto_layout(image, params).facings


def auto_layout(image: Image.Image, params: AutoParams = AutoParams()) -> ShelfLayout:
    """Facings and empty gaps on a shelf photo, row by row, left to right; both empty without shelf rows."""
    scale = min(1.0, params.work_width / image.width, math.sqrt(params.work_pixels / (image.width * image.height)))
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BILINEAR) if scale < 1 else image
    angle = _straightening_angle(small, params)
    work = small.rotate(angle, resample=Image.BILINEAR, expand=False, fillcolor=small.getpixel((0, 0))) \
        if angle else small
    rgb = np.asarray(work, dtype=np.float32)
    h, w = rgb.shape[:2]
    texture = np.pad(np.abs(rgb[:, 2:] - rgb[:, :-2]).max(axis=2), ((0, 0), (1, 1)))  # horizontal colour change
    edge_level = max(10.0, float(np.percentile(texture, 75)))
    rows = [_facings_along_the_shelf(rgb, texture, edge_level, top, bottom, pitch, params)
            for top, bottom, pitch in _shelf_bands(texture, params)]

    def original(boxes: list[Box]) -> list[Box]:
        moved = [_back_to_original(b, angle, (w, h), scale, image.size) for b in boxes]
        return [b for b in moved if min(b.width, b.height) >= params.min_facing_pixels]
    return ShelfLayout(original([b for facings, _ in rows for b in facings]), original([b for _, gaps in rows
                                                                                         for b in gaps]))


def _edge_span(image: np.ndarray, threshold: float = 14.0) -> np.ndarray:
    """Per row of an H×W grey image: the fraction of pixels on a strong horizontal edge."""
    diff = np.abs(image[2:] - image[:-2])
    diff = np.maximum(diff[:-1], diff[1:])  # tolerate one pixel of slant
    return np.pad((diff > threshold).mean(axis=1), (1, 2))


def _straightening_angle(image: Image.Image, params: AutoParams) -> float:
    """The small rotation that makes shelf edges most horizontal (sharpest row-edge profile)."""
    thumb = image.convert("L").resize((min(400, image.width),
                                       max(1, round(image.height * min(400, image.width) / image.width))))
    best, best_score = 0.0, -1.0
    for angle in np.arange(-params.max_tilt_degrees, params.max_tilt_degrees + 1e-9, 0.25):
        turned = thumb.rotate(float(angle), resample=Image.BILINEAR, fillcolor=thumb.getpixel((0, 0)))
        score = float(np.sort(_edge_span(np.asarray(turned, dtype=np.float32)))[-12:].sum())
        if score > best_score + 1e-6:
            best, best_score = float(angle), score
    return best


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    width = max(1, int(width)) | 1
    return np.convolve(np.pad(values, width // 2, mode="edge"), np.ones(width) / width, mode="valid")


def _rhythm(profile: np.ndarray, shortest: int, longest: int) -> tuple[int, float] | None:
    """The fundamental period of a profile and its autocorrelation there: the shortest lag whose autocorrelation
    peak is within 80 % of the strongest (so twice the period never wins over the period itself)."""
    centred = profile - profile.mean()
    n = len(centred)
    longest = min(longest, n - 2)
    if longest <= max(shortest, 1) + 1 or not centred.any():
        return None
    energy = float(np.dot(centred, centred)) / n
    correlation = np.array([np.dot(centred[:n - k], centred[k:]) / (n - k) for k in range(longest + 1)]) / energy
    peaks = [k for k in range(max(shortest, 1), longest)
             if correlation[k] >= correlation[k - 1] and correlation[k] >= correlation[k + 1] and correlation[k] > 0.05]
    if not peaks:
        return None
    strongest = max(correlation[k] for k in peaks)
    period = min(k for k in peaks if correlation[k] >= 0.8 * strongest)
    return period, float(correlation[period])


def _rhythmic_cuts(strength: np.ndarray, period: float, spread: tuple[float, float], penalty: float) -> list[int]:
    """Cut positions that collect the most `strength`, consecutive cuts `spread` × `period` apart, each spacing
    costing `penalty` × log(spacing / period)². The first cut lies within one spacing of the start, the last
    within one of the end (a row may run off the photo)."""
    n = len(strength)
    shortest, longest = max(1, int(spread[0] * period)), max(2, math.ceil(spread[1] * period))
    spacings = np.arange(shortest, longest + 1)
    cost = penalty * np.log(spacings / period) ** 2
    best, previous = np.full(n, -np.inf), np.full(n, -1)
    for x in range(n):
        best[x] = strength[x] if x < longest else -np.inf  # the first cut
        if x >= shortest:
            before = x - spacings
            scores = np.where(before >= 0, best[np.maximum(before, 0)] - cost, -np.inf)
            j = int(np.argmax(scores))
            if scores[j] + strength[x] > best[x]:
                best[x], previous[x] = scores[j] + strength[x], before[j]
    x = max(range(max(0, n - longest), n), key=lambda i: best[i])
    cuts = []
    while x >= 0:
        cuts.append(x)
        x = int(previous[x])
    return cuts[::-1]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True, end exclusive."""
    steps = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(steps == 1).tolist(), np.flatnonzero(steps == -1).tolist()))


def _shelf_bands(texture: np.ndarray, params: AutoParams) -> list[tuple[int, int, int]]:
    """(top, bottom, pitch) of each band between shelf edges. Shelf edges are the texture valleys (smooth rails,
    price strips, dark gaps) that repeat at the shelf pitch; no clear pitch means no shelf rows."""
    h = texture.shape[0]
    profile = texture.mean(axis=1)
    rhythm = _rhythm(_smooth(profile, 5), int(params.shelf_pitch[0] * h), int(params.shelf_pitch[1] * h))
    if rhythm is None or rhythm[1] < params.min_shelf_rhythm:
        return []
    pitch = rhythm[0]
    valleys = _smooth(profile, max(3, pitch // 6))
    depth = (valleys.max() - valleys) / (np.ptp(valleys) + 1e-9)
    edges = [0] + _rhythmic_cuts(depth, pitch, (0.7, 1.4), 1.0) + [h]
    return [(top, bottom, pitch) for top, bottom in itertools.pairwise(edges) if bottom - top >= 0.4 * pitch]


def _facings_along_the_shelf(rgb: np.ndarray, texture: np.ndarray, edge_level: float, top: int, bottom: int,
                             pitch: int, params: AutoParams) -> tuple[list[Box], list[Box]]:
    """The facings and gaps of one shelf band, following the shelf's own slant: in a photo taken at an angle the shelves
    are not parallel (perspective), so each band is sheared straight before it is cut, and its boxes sheared back."""
    h, w = texture.shape
    margin = pitch // 3
    y0, y1 = max(0, top - margin), min(h, bottom + margin)
    slope = _band_slope(texture[y0:y1], params)
    shift = np.round(slope * (np.arange(w) - w / 2)).astype(int)  # rows to move each column by
    rows = np.clip(np.arange(y0, y1)[:, None] + shift[None, :], 0, h - 1)
    columns = np.arange(w)[None, :]
    found = _facings(rgb[rows, columns], texture[rows, columns], edge_level, top - y0, bottom - y0, pitch, params)
    return tuple([Box(b.x1, y0 + b.y1 + int(min(shift[b.x1], shift[b.x2 - 1])), b.x2,
                      y0 + b.y2 + int(max(shift[b.x1], shift[b.x2 - 1]))).clipped(w, h) for b in boxes]
                 for boxes in found)


def _band_slope(texture: np.ndarray, params: AutoParams) -> float:
    """The shear (rows per column) that makes a band's row texture profile sharpest: rails and product rows line
    up with the image rows."""
    h, w = texture.shape
    sample = np.arange(0, w, 2)  # every other column is plenty for a profile
    x = sample - w / 2
    best, best_score = 0.0, -1.0
    for angle in np.arange(-params.max_band_tilt_degrees, params.max_band_tilt_degrees + 1e-9, 0.25):
        slope = math.tan(math.radians(angle))
        rows = np.clip(np.arange(h)[:, None] + np.round(slope * x)[None, :].astype(int), 0, h - 1)
        score = float(np.var(texture[rows, sample[None, :]].mean(axis=1)))
        if score > best_score * (1 + 1e-3):
            best, best_score = slope, score
    return best


def _product_rows(profile: np.ndarray, level: float) -> tuple[int, int] | None:
    """The run of rows where the texture stands `level` of the way from the band's low to its high: products."""
    low, high = np.percentile(profile, 5), np.percentile(profile, 95)
    runs = _runs(profile >= low + level * (high - low))
    return max(runs, key=lambda run: profile[run[0]:run[1]].sum()) if runs else None


def _facings(rgb: np.ndarray, texture: np.ndarray, edge_level: float, top: int, bottom: int, pitch: int,
             params: AutoParams) -> tuple[list[Box], list[Box]]:
    """(facings, gaps) of a straightened band: the cells between cuts that hold a product, and the ones that
    do not (their box spans the row's product height)."""
    w = rgb.shape[1]
    rows = _product_rows(_smooth(texture[top:bottom].mean(axis=1), 3), params.product_level)
    if rows is None or rows[1] - rows[0] < 0.15 * pitch:
        return [], []
    upper, lower = rows  # of the products, within the band
    band = rgb[top:bottom]
    product = texture[top:bottom] > edge_level
    if upper >= 3:  # the background above the products is known: whatever differs from it is product too
        product |= _not_wall(band, _commonest_colour(band[:upper]), params)
    else:
        product[:] = True
    boundary = _smooth((texture[top + upper:top + lower] > edge_level).mean(axis=0), 3)
    occupancy = _smooth(product[upper:lower].mean(axis=0), 3)
    boundary = np.maximum(boundary, 2 * np.abs(np.gradient(occupancy)))  # where product gives way to empty shelf
    period = _facing_period(boundary, lower - upper, w, params)
    if period is None:
        return [], []
    cuts = _rhythmic_cuts(boundary ** params.boundary_power, period, params.facing_spread, params.rhythm_penalty)
    boxes, gaps = [], []
    allowed_top = max(0, upper - int(0.15 * (lower - upper)))  # products in a row differ a little in height
    for x1, x2 in itertools.pairwise(cuts):
        cell = product[:, x1:x2]
        filled = cell.mean(axis=1)
        filled[:allowed_top] = 0
        filled[lower:] = 0
        runs = _runs(filled > 0.5)
        y1, y2 = max(runs, key=lambda run: filled[run[0]:run[1]].sum()) if runs else (0, 0)
        if y2 - y1 >= 0.3 * (lower - upper) and cell[y1:y2].mean() >= params.min_fill:
            boxes.append(Box(x1, top + y1, x2, top + y2))
        else:
            gaps.append(Box(x1, top + upper, x2, top + lower))
    return boxes, gaps


def _facing_period(boundary: np.ndarray, product_height: int, w: int, params: AutoParams) -> float | None:
    """The facing rhythm of a row: from the autocorrelation of its boundary profile, or — for plain products,
    whose faces give no rhythm — the median spacing of their strong edges."""
    shortest = int(max(params.facing_width[0] * w, params.min_facing_aspect * product_height))
    rhythm = _rhythm(boundary, shortest, int(params.facing_width[1] * w))
    if np.median(boundary) < params.plain_products:
        window = int(0.06 * w) | 1  # the neighbourhood a boundary must stand out from
        local = np.percentile(np.lib.stride_tricks.sliding_window_view(np.pad(boundary, window // 2, mode="edge"),
                                                                        window), 30, axis=1)
        rise = boundary - local
        strong = [x for x in range(1, w - 1)
                  if rise[x] >= params.strong_boundary and rise[x] >= rise[x - 1] and rise[x] > rise[x + 1]]
        if len(strong) >= 4:
            return float(np.median(np.diff(strong)))
    return float(rhythm[0]) if rhythm else None


def _commonest_colour(pixels: np.ndarray) -> np.ndarray:
    """The commonest colour (in 16-level bins) of an H×W×3 block: the background behind the products."""
    flat = pixels.reshape(-1, 3)
    quantised = (flat // 16).astype(np.int32)
    keys = quantised[:, 0] * 256 + quantised[:, 1] * 16 + quantised[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    return flat[keys == values[np.argmax(counts)]].mean(axis=0)


def _not_wall(band: np.ndarray, wall: np.ndarray, params: AutoParams) -> np.ndarray:
    """Pixels that are not background. Compared by chromaticity and by a brightness ratio, so the uneven lighting
    of a real shelf (brighter on one side) does not turn the background into product."""
    brightness = band.sum(axis=2) + 1.0
    wall_brightness = float(wall.sum()) + 1.0
    chroma_distance = np.linalg.norm(band / brightness[..., None] - wall / wall_brightness, axis=2)
    ratio = brightness / wall_brightness
    return (chroma_distance > params.wall_chroma) | (ratio < params.wall_brightness[0]) | \
        (ratio > params.wall_brightness[1])


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


def sized_regions(mode: RegionMode, width: int, height: int) -> list[Box] | None:
    """The boxes of a mode that needs only the photo's size (whole, grid); None for the others."""
    if mode.kind == "whole":
        return whole_image(width, height)
    if mode.kind == "grid":
        return grid(width, height, mode.rows, mode.cols, mode.overlap)
    return None


def regions_for(mode: RegionMode | str, image: Image.Image, imported: list[Box] | None = None) -> list[Box]:
    """The boxes for one photo. `imported` carries the boxes matched from a box file for mode boxes:FILE."""
    if isinstance(mode, str):
        mode = parse_region_mode(mode)
    if mode.kind in ("whole", "grid"):
        return sized_regions(mode, image.width, image.height)
    if mode.kind == "auto":
        return auto_regions(image)
    return list(imported or [])
