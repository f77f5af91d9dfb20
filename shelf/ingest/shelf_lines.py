"""Shelf edges for `auto` (shelf.ingest.auto): the photo's straightening angle and the long straight horizontal
lines that shelf edges and rails make, followed across vertical strips so a line slanted by perspective is still one
line."""
from __future__ import annotations

import itertools

import numpy as np
from PIL import Image

GREY_EDGE = 14.0  # grey-level step that counts as an edge between rows (shelf lines)
LINE_STRIPS = 16  # a long line is followed across this many vertical strips, each at its own offset


def edge_span(image: np.ndarray, threshold: float = GREY_EDGE) -> np.ndarray:
    """Per row of an H×W grey image: the fraction of pixels on a strong horizontal edge."""
    diff = np.abs(image[2:] - image[:-2])
    diff = np.maximum(diff[:-1], diff[1:])  # tolerate one pixel of slant
    return np.pad((diff > threshold).mean(axis=1), (1, 2))


def straightening_angle(image: Image.Image, max_degrees: float) -> float:
    """The small rotation that makes shelf edges most horizontal (sharpest row-edge profile)."""
    thumb = image.convert("L").resize((min(400, image.width),
                                       max(1, round(image.height * min(400, image.width) / image.width))))
    best, best_score = 0.0, -1.0
    for angle in np.arange(-max_degrees, max_degrees + 1e-9, 0.25):
        turned = thumb.rotate(float(angle), resample=Image.BILINEAR, fillcolor=thumb.getpixel((0, 0)))
        score = float(np.sort(edge_span(np.asarray(turned, dtype=np.float32)))[-12:].sum())
        if score > best_score + 1e-6:
            best, best_score = float(angle), score
    return best


def line_strips(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows × strips share of each strip's pixels on a horizontal edge, the strips' centres from the middle). An
    edge is a change in any colour channel: a grey price rail under a product of the same grey level still shows
    its upper edge, which the products stand on."""
    w = rgb.shape[1]
    edges = np.pad(np.abs(rgb[2:] - rgb[:-2]).max(axis=2) > GREY_EDGE, ((1, 1), (0, 0)))
    edges = edges | np.roll(edges, 1, axis=0)  # one pixel of tolerance
    bounds = np.linspace(0, w, LINE_STRIPS + 1).astype(int)
    # a photo narrower than LINE_STRIPS pixels: a strip of no columns reads the one column at its start (no NaN mean)
    strips = np.stack([edges[:, a:max(b, a + 1)].mean(axis=1) for a, b in itertools.pairwise(bounds)], axis=1)
    return strips, (bounds[:-1] + bounds[1:]) / 2 - w / 2


def along_lines(strips: np.ndarray, centres: np.ndarray, rows: np.ndarray, slope: float) -> np.ndarray:
    """For lines of `slope` through `rows` (at the photo's middle): the share of the width on an edge."""
    shifted = np.clip(rows[:, None] + np.round(slope * centres).astype(int)[None, :], 0, len(strips) - 1)
    return strips[shifted, np.arange(strips.shape[1])[None, :]].mean(axis=1)


def slopes(max_degrees: float, step: float = 0.25) -> np.ndarray:
    return np.tan(np.radians(np.arange(-max_degrees, max_degrees + 1e-9, step)))


def line_profile(strips: tuple[np.ndarray, np.ndarray], max_degrees: float) -> np.ndarray:
    """Per row: the largest share of the width on one long straight horizontal edge through it, over slants up to
    `max_degrees` (a shelf edge is a long straight line; product tops and print are short)."""
    strips, centres = strips
    rows = np.arange(len(strips))
    return np.max([along_lines(strips, centres, rows, s) for s in slopes(max_degrees)], axis=0)


def floor_line(strips: tuple[np.ndarray, np.ndarray], first: int, last: int, max_degrees: float
                ) -> tuple[int, float, float] | None:
    """(row at the middle, slope, share of the width) of the front edge of a shelf, which products stand on: the
    longest straight horizontal edge whose middle lies in rows first..last (the highest of the rows nearly as
    long, as a shelf's edge may be a few rows thick)."""
    strips, centres = strips
    first, last = max(0, first), min(len(strips), last)
    if last <= first:
        return None
    rows = np.arange(first, last)
    best = None
    for slope in slopes(max_degrees):
        profile = along_lines(strips, centres, rows, slope)
        if best is None or profile.max() > best[2] + 1e-9:
            best = (first + int(np.flatnonzero(profile >= 0.8 * profile.max())[0]), float(slope),
                    float(profile.max()))
    return best
