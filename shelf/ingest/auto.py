"""`auto` regions: shelf rows, then the facings along each row, from the photo alone (no learned model).

Shelf edges are long straight horizontal lines that repeat down the photo (the rails' edges), found with the
smooth bands between product rows; each row is straightened along its own shelf edge (perspective tilts rows
differently) and cut into facings where product edges are: a product's side is a vertical edge running most of
the product's height, while the print inside a pack, a label or a picture, runs only part of it. The cuts are
placed by dynamic programming that collects the most edge evidence for a fixed cost per facing, so a weak edge
inside a wide product is not worth a cut; where a row is rhythmic (uniform packs) the rhythm also pulls the cuts
to its spacing, so a boundary that glare hides is still cut. A facing is then split where an edge runs nearly its
whole height (narrow products side by side, narrower than a facing's least width), and its box spans the product
from its cap (a bottle's neck is narrower than its body) to the shelf, across plain stretches of the wall's colour.
Stretches of a row with no product are kept as gaps.

Every number that matters is a field of `AutoParams`; a region profile (tuned from labelled photos by
`shelf.ingest.tuning`) is a set of them. `prepare` does the work no tunable changes (downscale, straightening),
so a tuner runs `layout` many times on one prepared photo.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from shelf.ingest.regions import Box, RegionMode, parse_region_mode, sized_regions
from shelf.ingest.shelf_lines import GREY_EDGE, floor_line, line_profile, line_strips, slopes, straightening_angle

LINE_POWER = 4  # the shelf pitch is read from lines raised to this power: rails run the full width, product tops less
SHELF_DEPTH = 0.1  # of the shelf pitch: how far below the shelf's upper edge its lower edge may be
NECK = 0.2  # of a facing's width: a narrower part above it (a bottle's neck and cap) is still the product
BRIDGE = 0.25  # of the row's product height: a pack's plain stretch this long between printed parts is still pack
SHELF_COLOUR = 25.0  # per channel: a column this close to the shelf's usual colour below its edge is shelf


@dataclass(frozen=True)
class AutoParams:
    """auto's settings. The defaults were tuned by benchmarks.regions_default (shelf.ingest.tuning's search on the
    mean F1 of three sets: the shared real shelf photos, generated mixed and uniform training shelves), after the
    same search on either half of the real photos had been checked on the other half and on held-out generated
    seeds (README, `python -m benchmarks.regions`). They assume a photo of one shelf section (a facing at least
    4.5 % of its width; narrower products side by side are split where their common side shows); a tuned profile
    changes the fields in shelf.ingest.tuning.TUNABLE."""

    work_width: int = 800  # the analysis runs on a copy this wide; boxes are scaled back
    work_pixels: int = 4_000_000  # ... and no larger: a photo 50 times taller than wide is not analysed whole
    max_tilt_degrees: float = 3.0  # search range for straightening the photo
    max_band_tilt_degrees: float = 3.0  # ... and each shelf edge after that (perspective)
    shelf_pitch: tuple[float, float] = (0.08, 0.5)  # distance between shelf edges searched, of the image height
    min_shelf_rhythm: float = 0.5  # autocorrelation at that pitch; below it the photo is not of shelves
    shelf_line_weight: float = 0.5  # how much long straight lines, against smooth bands, mark a shelf edge
    floor_line: float = 0.5  # share of the width a shelf's front edge must span to straighten its row by it
    shelf_extent: float = 0.7  # a facing needs this share of its width above a shelf edge (not a fixture beside)
    product_level: float = 0.25  # rows of a shelf band whose texture rises this far from its low to its high
    edge_percentile: float = 80.0  # colour changes above this percentile of the photo's count as edges
    facing_width: tuple[float, float] = (0.045, 0.3)  # a facing's width, of the image width
    min_facing_aspect: float = 0.15  # ... and at least this fraction of the products' height
    edge_power: float = 1.5  # sharpens the edge evidence: full-height edges dominate partial ones
    cut_cost: float = 0.25  # evidence a cut must bring to be worth making (0..1: share of the height, ^ power)
    rhythm_weight: float = 0.25  # cost (squared log) of a facing off the row's rhythm, in a fully rhythmic row
    half_facing: float = 0.6  # a rhythmic row's pack cut into two cells narrower than this × its period is joined
    half_alignment: float = 0.05  # ... when the two agree in top and bottom within this share of the row's height
    rhythm_floor: float = 0.2  # rows whose rhythm is weaker than this are cut by their edges alone
    min_fill: float = 0.3  # a facing with less product than this is an empty gap
    split_run: float = 0.9  # an edge this share of a facing's height inside it splits it (narrow twins)
    split_aspect: float = 0.35  # ... into parts at least this wide of their height
    partial_width: float = 0.0  # a facing cut by the photo's side and narrower than this × its row's is dropped
    fixture_colour: float = 0.45  # a row's end facing less colourful than this × its row's median ...
    fixture_step: float = 12.0  # ... whose top runs on into what is above it (a smaller colour step) is fixture
    min_facing_pixels: int = 12  # in the original photo; smaller boxes are noise
    wall_chroma: float = 0.035  # chromaticity distance from the background that counts as product
    wall_brightness: tuple[float, float] = (0.7, 1.4)  # brightness ratio to the background that still counts as it

    def replaced(self, **changes) -> AutoParams:
        return dataclasses.replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})

    def changes(self) -> dict:
        """The fields that differ from the default profile (what a profile stores and provenance records)."""
        default = AutoParams()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


@dataclass(frozen=True)
class ShelfLayout:
    """What auto mode reads off a shelf photo: the facings, and the empty gaps between them (stretches of a shelf
    row that should hold a product, but that show the shelf or the back wall instead)."""

    facings: list[Box]
    gaps: list[Box]


@dataclass(frozen=True)
class Prepared:
    """A photo made ready for `layout`: downscaled and straightened (what no tunable field changes)."""

    rgb: np.ndarray  # H×W×3 float32, straightened work copy
    texture: np.ndarray  # H×W horizontal colour change
    angle: float
    scale: float
    size: tuple[int, int]  # the original photo's
    edge_levels: dict = field(default_factory=dict, compare=False, repr=False)


def auto_regions(image: Image.Image, params: AutoParams = AutoParams()) -> list[Box]:
    """Product facings on a shelf photo, row by row, left to right; [] when the photo shows no shelf rows."""
    return auto_layout(image, params).facings


def auto_layout(image: Image.Image, params: AutoParams = AutoParams()) -> ShelfLayout:
    """Facings and empty gaps on a shelf photo, row by row, left to right; both empty without shelf rows."""
    return layout(prepare(image, params), params)


def prepare(image: Image.Image, params: AutoParams = AutoParams()) -> Prepared:
    scale = min(1.0, params.work_width / image.width, math.sqrt(params.work_pixels / (image.width * image.height)))
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BILINEAR) if scale < 1 else image
    angle = straightening_angle(small, params.max_tilt_degrees)
    work = small.rotate(angle, resample=Image.BILINEAR, expand=False, fillcolor=small.getpixel((0, 0))) \
        if angle else small
    rgb = np.asarray(work.convert("RGB"), dtype=np.float32)
    texture = np.pad(np.abs(rgb[:, 2:] - rgb[:, :-2]).max(axis=2), ((0, 0), (1, 1)))  # horizontal colour change
    return Prepared(rgb, texture, angle, scale, image.size)


ROW_FIELDS = ("max_band_tilt_degrees", "shelf_pitch", "min_shelf_rhythm", "shelf_line_weight", "floor_line")


@dataclass(frozen=True)
class ShelfRow:
    """One shelf band, straightened along its shelf: its pixels sheared so the shelf runs along an image row."""

    y0: int  # the band's first row in the prepared photo
    shift: np.ndarray  # rows each column was moved by
    rgb: np.ndarray
    texture: np.ndarray
    top: int  # of the band, within these pixels
    bottom: int
    pitch: int
    floor: int | None  # the row the products stand on, if a shelf edge shows it
    support: np.ndarray | None  # per column: whether the shelf's edge runs there (None: not known)
    masks: dict = field(default_factory=dict, compare=False, repr=False)  # the background mask, per settings


def shelf_rows(prepared: Prepared, params: AutoParams = AutoParams()) -> list[ShelfRow]:
    """The shelf bands of a prepared photo, each straightened; depends only on the fields in ROW_FIELDS."""
    strips = line_strips(prepared.rgb)
    lines = line_profile(strips, params.max_band_tilt_degrees)
    return [_straightened(prepared, strips, top, bottom, pitch, params)
            for top, bottom, pitch in _shelf_bands(prepared.texture, lines, params)]


def layout(prepared: Prepared, params: AutoParams = AutoParams(), rows: list[ShelfRow] | None = None
           ) -> ShelfLayout:
    """Facings and gaps of a prepared photo; `rows` are its shelf_rows for these params, if already made."""
    h, w = prepared.texture.shape
    edge_level = edge_level_of(prepared, params.edge_percentile)
    found = [_facings_of_row(row, edge_level, w, h, params)
             for row in (shelf_rows(prepared, params) if rows is None else rows)]

    def original(boxes: list[Box]) -> list[Box]:
        moved = [_back_to_original(b, prepared.angle, (w, h), prepared.scale, prepared.size) for b in boxes]
        return [b for b in moved if min(b.width, b.height) >= params.min_facing_pixels]
    return ShelfLayout(original([b for facings, _ in found for b in facings]),
                       original([b for _, gaps in found for b in gaps]))


def edge_level_of(prepared: Prepared, percentile: float) -> float:
    """The colour change that counts as an edge on this photo (kept per percentile: a tuner asks often)."""
    if percentile not in prepared.edge_levels:
        prepared.edge_levels[percentile] = max(10.0, float(np.percentile(prepared.texture, percentile)))
    return prepared.edge_levels[percentile]


def regions_for(mode: RegionMode | str, image: Image.Image, imported: list[Box] | None = None,
                params: AutoParams = AutoParams()) -> list[Box]:
    """The boxes for one photo. `imported` carries the boxes matched from a box file for mode boxes:FILE;
    `params` are the profile's for auto."""
    if isinstance(mode, str):
        mode = parse_region_mode(mode)
    if mode.kind in ("whole", "grid"):
        return sized_regions(mode, image.width, image.height)
    if mode.kind == "auto":
        return auto_regions(image, params)
    return list(imported or [])


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


def _cuts(strength: np.ndarray, period: float, shortest: int, longest: int, rhythm_weight: float,
          cut_cost: float = 0.0) -> list[int]:
    """Cut positions that collect the most `strength`, consecutive cuts `shortest`..`longest` apart, each spacing
    costing `cut_cost` + `rhythm_weight` × log(spacing / period)². The first cut lies within one spacing of the
    start, the last within one of the end (a row may run off the photo)."""
    n = len(strength)
    shortest = max(1, shortest)
    longest = max(shortest + 1, longest)
    spacings = np.arange(longest, shortest - 1, -1)  # longest first: lines up with a slice of `best`
    cost = cut_cost + rhythm_weight * np.log(spacings / period) ** 2
    best = np.full(n + longest, -np.inf)  # best[longest + x]: the best total with a cut at x; before 0, none
    previous = np.full(n, -1)
    for start in range(0, n, shortest):  # a block of `shortest` positions looks back only at finished ones
        xs = np.arange(start, min(n, start + shortest))
        scores = best[longest + xs[:, None] - spacings[None, :]] - cost[None, :]
        j = np.argmax(scores, axis=1)
        joined = scores[np.arange(len(xs)), j] + strength[xs]
        first = np.where(xs < longest, strength[xs], -np.inf)  # the first cut
        join = (xs >= shortest) & (joined > first)
        best[longest + xs] = np.where(join, joined, first)
        previous[xs] = np.where(join, xs - spacings[j], -1)
    x = max(range(max(0, n - longest), n), key=lambda i: best[longest + i])
    cuts = []
    while x >= 0:
        cuts.append(x)
        x = int(previous[x])
    return cuts[::-1]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True, end exclusive."""
    steps = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(steps == 1).tolist(), np.flatnonzero(steps == -1).tolist()))


def _shelf_bands(texture: np.ndarray, lines: np.ndarray, params: AutoParams) -> list[tuple[int, int, int]]:
    """(top, bottom, pitch) of each band between shelf edges. Shelf edges repeat at the shelf pitch, read from
    the texture valleys (smooth rails, price strips, dark gaps) or the long straight lines, whichever is more
    regular, or the shorter of the two if nearly as regular (rows of alike heights make twice the pitch regular
    in the texture); no clear pitch means no shelf rows. They are placed where a valley and a long line come
    together."""
    h = texture.shape[0]
    profile = texture.mean(axis=1)
    span = int(params.shelf_pitch[0] * h), int(params.shelf_pitch[1] * h)
    candidates = [r for r in (_rhythm(_smooth(profile, 5), *span), _rhythm(_smooth(lines ** LINE_POWER, 5), *span))
                  if r]
    if not candidates:
        return []
    strongest = max(r[1] for r in candidates)  # as in _rhythm: twice the pitch must not win over the pitch
    pitch, regularity = min((r for r in candidates if r[1] >= 0.8 * strongest), key=lambda r: r[0])
    if regularity < params.min_shelf_rhythm:
        return []
    valleys = _smooth(profile, max(3, pitch // 6))
    depth = (valleys.max() - valleys) / (np.ptp(valleys) + 1e-9)
    reach = pitch // 12
    near_line = np.lib.stride_tricks.sliding_window_view(np.pad(lines, reach, mode="edge"), 2 * reach + 1).max(axis=1)
    strength = depth * (1 - params.shelf_line_weight + params.shelf_line_weight * near_line / (near_line.max() + 1e-9))
    edges = [0] + _cuts(strength, pitch, int(0.7 * pitch), math.ceil(1.4 * pitch), 1.0) + [h]
    return [(top, bottom, pitch) for top, bottom in itertools.pairwise(edges) if bottom - top >= 0.4 * pitch]


# ---------------------------------------------------------------------------------------------------------------
# facings along a shelf


def _straightened(prepared: Prepared, strips: tuple[np.ndarray, np.ndarray], top: int, bottom: int, pitch: int,
                  params: AutoParams) -> ShelfRow:
    """A shelf band following its shelf's own slant: in a photo taken at an angle the shelves are not parallel
    (perspective), so each band is sheared straight along the front edge its products stand on (or, without a
    clear one, along its texture); its boxes are sheared back."""
    texture = prepared.texture
    h, w = texture.shape
    margin = pitch // 3
    y0, y1 = max(0, top - margin), min(h, bottom + margin)
    floor = floor_line(strips, bottom - pitch // 4, bottom + pitch // 8, params.max_band_tilt_degrees)
    if floor is not None and floor[2] < params.floor_line:
        floor = None
    slope = floor[1] if floor else _band_slope(texture[y0:y1], params)
    shift = np.round(slope * (np.arange(w) - w / 2)).astype(int)  # rows to move each column by
    rows = np.clip(np.arange(y0, y1)[:, None] + shift[None, :], 0, h - 1)
    columns = np.arange(w)[None, :]
    floor_row = floor[0] - y0 if floor else None
    support = _shelf_support(prepared.rgb[rows, columns], floor_row, pitch) if floor else None
    return ShelfRow(y0, shift, prepared.rgb[rows, columns], texture[rows, columns], top - y0, bottom - y0, pitch,
                    floor_row, support)


def _facings_of_row(row: ShelfRow, edge_level: float, w: int, h: int, params: AutoParams
                    ) -> tuple[list[Box], list[Box]]:
    """The facings and gaps of one straightened shelf band, in the prepared photo's pixels."""
    facings, gaps = _facings(row, edge_level, params)
    if row.support is not None:
        facings = _within_shelf(facings, row.support, params.shelf_extent)
        gaps = _within_shelf(gaps, row.support, params.shelf_extent)
    if facings:  # a product cut by the photo's side cannot be told, and the next photo shows it whole
        typical = float(np.median([b.width for b in facings]))
        facings = [b for b in facings if not ((b.x1 <= 2 or b.x2 >= w - 2) and b.width < params.partial_width
                                              * typical)]
        facings = _without_fixture_ends(facings, row.rgb, params)
    shift, y0 = row.shift, row.y0
    return tuple([Box(b.x1, y0 + b.y1 + int(min(shift[b.x1], shift[b.x2 - 1])), b.x2,
                      y0 + b.y2 + int(max(shift[b.x1], shift[b.x2 - 1]))).clipped(w, h) for b in boxes]
                 for boxes in (facings, gaps))


def _shelf_support(rgb: np.ndarray, floor: int, pitch: int) -> np.ndarray:
    """Per column of a straightened band: whether the shelf runs there, smoothed — an edge on the shelf's upper or
    lower side, or the shelf's own colour just below its edge (a dark product on a dark shelf shows no edge)."""
    grey = rgb.mean(axis=2)
    edges = np.abs(grey[2:] - grey[:-2]) > GREY_EDGE
    present = edges[max(0, floor - 3):floor + max(2, int(pitch * SHELF_DEPTH))].any(axis=0)
    below = rgb[floor + 2:floor + 2 + max(2, pitch // 20)]
    if len(below):
        colour = below.mean(axis=0)
        present |= np.abs(colour - np.median(colour, axis=0)).max(axis=1) < SHELF_COLOUR
    return _smooth(present.astype(float), 9)


def _within_shelf(boxes: list[Box], support: np.ndarray, needed: float) -> list[Box]:
    """`boxes` (left to right) without those at either end of the row that stand where the shelf does not run (a
    pillar, the cabinet's frame): from each end inwards, up to the first box the shelf's edge supports. Boxes
    between supported ones stay (a dark product on a dark shelf shows no edge)."""
    supported = [support[b.x1:b.x2].mean() >= needed for b in boxes]
    if not any(supported):
        return []
    first, last = supported.index(True), len(supported) - supported[::-1].index(True)
    return boxes[first:last]


def _without_fixture_ends(boxes: list[Box], rgb: np.ndarray, params: AutoParams) -> list[Box]:
    """`boxes` (left to right) without those at either end of the row that are the fixture, not a product: a
    cabinet's upright or side panel, an empty compartment, a price list beside the products. Such a box is far less
    colourful than the row's products (packs carry colour print; metal, black panels and white paper do not), and
    its top runs on into what is above it with no step in colour (an upright continues; a product ends against the
    wall behind it). Peeled from each end inwards, as _within_shelf does."""
    if len(boxes) < 3 or not params.fixture_colour:
        return boxes
    colour = [_colourfulness(rgb[b.y1:b.y2, b.x1:b.x2]) for b in boxes]
    least = params.fixture_colour * float(np.median(colour))

    def fixture(k: int) -> bool:
        b = boxes[k]
        part = max(2, b.height // 5)
        above = rgb[max(0, b.y1 - part):b.y1, b.x1:b.x2]
        return colour[k] < least and len(above) > 0 and float(np.abs(
            rgb[b.y1:b.y1 + part, b.x1:b.x2].mean(axis=(0, 1)) - above.mean(axis=(0, 1))).max()) < params.fixture_step
    first, last = 0, len(boxes)
    while first < last and fixture(first):
        first += 1
    while last > first and fixture(last - 1):
        last -= 1
    return boxes[first:last]


def _colourfulness(rgb: np.ndarray) -> float:
    """Mean distance of a block's pixels from grey (0 for black, white and metal)."""
    return float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()) if rgb.size else 0.0


def _band_slope(texture: np.ndarray, params: AutoParams) -> float:
    """The shear (rows per column) that makes a band's row texture profile sharpest: rails and product rows line
    up with the image rows."""
    h, w = texture.shape
    sample = np.arange(0, w, 2)  # every other column is plenty for a profile
    x = sample - w / 2
    best, best_score = 0.0, -1.0
    for slope in slopes(params.max_band_tilt_degrees):
        rows = np.clip(np.arange(h)[:, None] + np.round(slope * x)[None, :].astype(int), 0, h - 1)
        score = float(np.var(texture[rows, sample[None, :]].mean(axis=1)))
        if score > best_score * (1 + 1e-3):
            best, best_score = float(slope), score
    return best


def _product_rows(profile: np.ndarray, level: float) -> tuple[int, int] | None:
    """The run of rows where the texture stands `level` of the way from the band's low to its high: products."""
    low, high = np.percentile(profile, 5), np.percentile(profile, 95)
    runs = _runs(profile >= low + level * (high - low))
    return max(runs, key=lambda run: profile[run[0]:run[1]].sum()) if runs else None


def _vertical_runs(edges: np.ndarray, tolerance: int = 2) -> np.ndarray:
    """Per column: the longest vertical run of edge pixels (one column of slack either side, gaps of up to
    `tolerance` rows bridged) — a product's side spans its height, print inside it does not."""
    wide = edges | np.roll(edges, 1, axis=1) | np.roll(edges, -1, axis=1)
    current, missed, longest = (np.zeros(edges.shape[1]) for _ in range(3))
    for row in wide:
        missed = np.where(row, 0, missed + 1)
        current = np.where(row, current + 1, np.where(missed <= tolerance, current, 0))
        longest = np.maximum(longest, current)
    return longest


def _facings(row: ShelfRow, edge_level: float, params: AutoParams) -> tuple[list[Box], list[Box]]:
    """(facings, gaps) of a straightened band: the cells between cuts that hold a product, and the ones that
    do not (their box spans the row's product height)."""
    texture, top, bottom, pitch = row.texture, row.top, row.bottom, row.pitch
    w = texture.shape[1]
    rows = _product_rows(_smooth(texture[top:bottom].mean(axis=1), 3), params.product_level)
    if rows is None or rows[1] - rows[0] < 0.15 * pitch:
        return [], []
    upper, lower = rows  # of the products, within the band
    if row.floor is not None and row.floor - top > upper + 0.15 * pitch:
        lower = row.floor - top  # products end where the shelf's front edge begins, price labels or not
    product = (texture[top:bottom] > edge_level) | _background_differs(row, upper, params)
    height = lower - upper
    occupancy = _smooth(product[upper:lower].mean(axis=0), 3)
    evidence = np.maximum(_vertical_runs(texture[top + upper:top + lower] > edge_level) / height,
                          np.minimum(1.0, 2 * np.abs(np.gradient(occupancy))))  # product ↔ empty shelf too
    shortest = int(max(params.facing_width[0] * w, params.min_facing_aspect * height))
    longest = int(params.facing_width[1] * w)
    rhythm = _rhythm(_smooth(evidence, 3), shortest, longest)
    period, regularity = (float(rhythm[0]), rhythm[1]) if rhythm else (2.0 * shortest, 0.0)
    weight = params.rhythm_weight * float(np.clip((regularity - params.rhythm_floor) / (1 - params.rhythm_floor),
                                                  0, 1))
    cuts = _cuts(evidence ** params.edge_power, period, shortest, longest, weight, params.cut_cost)
    # the row's ends bound cells too: low products at an end of a row of tall ones show edges too weak to cut at
    cuts = ([0] if cuts[0] >= shortest else []) + cuts + ([w] if w - cuts[-1] >= shortest else [])
    cells, gaps = [], []
    allowed_top = max(0, upper - int(0.15 * height))  # products in a row differ a little in height
    for x1, x2 in itertools.pairwise(cuts):
        cell = product[:, x1:x2]
        filled = cell.mean(axis=1)
        filled[:allowed_top] = 0
        filled[lower:] = 0
        runs = _bridged(_runs(filled > 0.5), BRIDGE * height)
        y1, y2 = max(runs, key=lambda run: filled[run[0]:run[1]].sum()) if runs else (0, 0)
        above = np.flatnonzero(filled[:y1] < NECK)  # up a bottle's neck to its cap
        y1 = int(above[-1]) + 1 if len(above) else 0
        if y2 - y1 >= 0.3 * height and cell[y1:y2].mean() >= params.min_fill:
            across = np.flatnonzero(cell[y1:y2].mean(axis=0) >= 0.5)  # trim wall at the ends of the row
            cells.append((x2 - x1, Box(x1 + int(across[0]), top + y1, x1 + int(across[-1]) + 1, top + y2)
                          if len(across) else Box(x1, top + y1, x2, top + y2)))
        else:
            cells.append((x2 - x1, None))
            gaps.append(Box(x1, top + upper, x2, top + lower))
    if regularity > params.rhythm_floor:
        cells = _halves_joined(cells, period, height, params)
    boxes = [part for _, box in cells if box for part in _split_twins(box, row.texture > edge_level, params)]
    return boxes, _gap_slots(gaps, boxes)


def _halves_joined(cells: list[tuple[int, Box | None]], period: float, height: int, params: AutoParams
                   ) -> list[tuple[int, Box | None]]:
    """Cells (width, box or None for a gap) of a rhythmic row with the halves of one pack joined: two neighbouring
    boxes, each narrower than `half_facing` of the row's period, that together make about one period, no wider than
    the row's typical cell, and whose tops and bottoms agree, are one pack cut at its picture. Narrow products side
    by side are split again by _split_twins where their common side runs their height; a row whose rhythm is two
    facings long has typical cells of half the period."""
    typical = float(np.median([width for width, _ in cells])) if cells else 0.0
    tolerance = params.half_alignment * height
    joined: list[tuple[int, Box | None]] = []
    for width, box in cells:
        if joined and box and joined[-1][1]:
            left_width, left = joined[-1]
            if max(left_width, width) < params.half_facing * period \
                    and 0.75 * period <= left_width + width <= min(1.25 * period, 1.4 * typical) \
                    and abs(left.y1 - box.y1) <= tolerance and abs(left.y2 - box.y2) <= tolerance \
                    and box.x1 - left.x2 <= 1:  # no wall shows between them
                joined[-1] = (left_width + width, Box(left.x1, min(left.y1, box.y1), box.x2, max(left.y2, box.y2)))
                continue
        joined.append((width, box))
    return joined


def _split_twins(box: Box, edges: np.ndarray, params: AutoParams) -> list[Box]:
    """`box` cut where an edge runs nearly its whole height (`split_run` of it), into parts at least
    `split_aspect` as wide as tall: products narrower than a facing's least width stand side by side (two cans)
    and their common side runs the height of both, while the print inside a wide product runs part of it."""
    narrowest = max(2, int(params.split_aspect * box.height))
    if box.width < 2 * narrowest:
        return [box]
    runs = _vertical_runs(edges[box.y1:box.y2, box.x1:box.x2])[narrowest:box.width - narrowest] / box.height
    if not len(runs) or runs.max() < params.split_run:
        return [box]
    x = box.x1 + narrowest + int(np.argmax(runs))
    return _split_twins(Box(box.x1, box.y1, x, box.y2), edges, params) + \
        _split_twins(Box(x, box.y1, box.x2, box.y2), edges, params)


def _bridged(runs: list[tuple[int, int]], gap: float) -> list[tuple[int, int]]:
    """Runs joined across gaps up to `gap` long: a pack's plain top (white, silver) looks like the wall behind it
    between its printed parts, and the box must span the whole pack, not its largest printed part."""
    joined: list[tuple[int, int]] = []
    for start, end in runs:
        if joined and start - joined[-1][1] <= gap:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined


def _gap_slots(gaps: list[Box], facings: list[Box]) -> list[Box]:
    """Gaps as many as the facings they would hold: a stretch of empty shelf twice as wide as the row's typical
    facing is two empty facings (no edge divides it: there is nothing there)."""
    if not facings:
        return gaps
    typical = float(np.median([b.width for b in facings]))
    slots = []
    for gap in gaps:
        n = max(1, round(gap.width / typical))
        edges = np.linspace(gap.x1, gap.x2, n + 1).round().astype(int)
        slots += [Box(int(a), gap.y1, int(b), gap.y2) for a, b in itertools.pairwise(edges)]
    return slots


def _background_differs(row: ShelfRow, upper: int, params: AutoParams) -> np.ndarray:
    """The band's pixels that differ from the background above its products (all of them when no background
    shows above them)."""
    key = (upper, params.wall_chroma, params.wall_brightness)
    if key not in row.masks:
        band = row.rgb[row.top:row.bottom]
        row.masks[key] = _not_wall(band, _commonest_colour(band[:upper]), params) if upper >= 3 else \
            np.ones(band.shape[:2], bool)
    return row.masks[key]


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
