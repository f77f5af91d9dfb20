"""The print on a shelf-edge label, from its pixels (numpy and Pillow; OpenCV's connected components for papers):
where the print is (ink), the line with the most of it (the price), cents printed small or raised, and label
papers. What shelf.recognition.prices crops and hands the recogniser comes from here."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from shelf.ingest.regions import Box


def union(boxes: Sequence[Box]) -> Box:
    """The box around `boxes`."""
    return Box(min(b.x1 for b in boxes), min(b.y1 for b in boxes), max(b.x2 for b in boxes), max(b.y2 for b in boxes))


def _pad(box: Box, size: tuple[int, int]) -> Box:
    """A text box with a margin: the detector's box can clip a raised cent or a currency sign."""
    px, py = max(2, box.height // 5), max(2, box.height // 8)
    return Box(max(0, box.x1 - px), max(0, box.y1 - py), min(size[0], box.x2 + px), min(size[1], box.y2 + py))


def line_crop(image: Image.Image, box: Box) -> np.ndarray:
    """The pixels of a label's biggest line: its tallest line of print (at the reduced scale the detector often boxes
    a whole label), as far left and right as the print runs without a wide gap (the detector's box can miss a
    currency sign or raised cents), so the price fills the recogniser's 48 px."""
    reach = Box(box.x1 - box.height // 3, box.y1, box.x2 + box.height * 2 // 3, box.y2)
    padded = _pad(reach, image.size)
    crop = np.asarray(image.crop(padded.as_tuple).convert("RGB"))
    ink = ink_of(crop)
    line = main_line(ink) if ink is not None else None
    if line is None or line[1] - line[0] < 0.2 * crop.shape[0]:
        return np.asarray(image.crop(_pad(box, image.size).as_tuple).convert("RGB"))
    height = line[1] - line[0]
    columns = np.flatnonzero(ink[line[0]:line[1]].any(axis=0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 0.5 * height) + 1)
    inside = (box.x1 - padded.x1, box.x2 - padded.x1)
    kept = [r for r in runs if r[-1] >= inside[0] and r[0] <= inside[1]] or runs
    margin = max(2, height // 6)
    left, right = max(0, kept[0][0] - margin), kept[-1][-1] + margin + 1
    return crop[max(0, line[0] - margin):line[1] + margin, left:right]


def ink_of(crop: np.ndarray) -> np.ndarray | None:
    """Where a label crop has print: its darkest tones (or lightest, on a dark ground) on the label's paper (the
    brightest stretch of the crop; the shelf edge around it is no print); None when it has too little contrast."""
    grey = crop.astype(np.float32).mean(axis=2)
    low, high = np.percentile(grey, 2), np.percentile(grey, 98)
    if high - low < 40:
        return None
    ink = grey < low + 0.4 * (high - low)
    if ink.mean() > 0.5:
        ink = grey > high - 0.4 * (high - low)
        return ink
    paper = grey > low + 0.6 * (high - low)
    rows, columns = paper.mean(axis=1) > 0.3, paper.mean(axis=0) > 0.3
    if rows.any() and columns.any():
        top, bottom = np.flatnonzero(rows)[[0, -1]]
        ink[:top] = ink[bottom + 1:] = False
        ink[:, ~columns] = False  # between two labels: the shelf edge, no print
    return ink


def main_line(ink: np.ndarray) -> tuple[int, int] | None:
    """The rows (top, bottom) of the line of print with the most ink: on a label, the price."""
    profile = ink.sum(axis=1).astype(np.float32)
    if profile.max() <= 0:
        return None
    rows = np.append(profile > max(1.0, 0.08 * profile.max()), False)
    runs, start = [], None
    for y, on in enumerate(rows):
        if on and start is None:
            start = y
        elif not on and start is not None:
            runs.append((start, y))
            start = None
    return max(runs, key=lambda r: profile[r[0]:r[1]].sum()) if runs else None


def raised_cents(crop: np.ndarray) -> int | None:
    """Where cents printed small start in a line of print (raised as in 1⁹⁹, or small on the baseline as in ₺9₀₀),
    from its ink: the glyphs (column runs of ink) after the last full-size one are all well shorter than the
    figure's, and together at least a small digit wide. None when the line ends in full-size print."""
    ink = ink_of(crop)
    line = main_line(ink) if ink is not None else None
    if line is None:
        return None
    ink = ink[line[0]:line[1]]
    height = line[1] - line[0]
    columns = np.flatnonzero(ink.any(axis=0))
    if height < 8 or len(columns) < 10:
        return None
    glyphs = []  # (first column, last column, ink height)
    for run in np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1):
        rows = np.flatnonzero(ink[:, run[0]:run[-1] + 1].any(axis=1))
        glyphs.append((run[0], run[-1], rows[-1] - rows[0] + 1))
    tall = max(g[2] for g in glyphs)
    full = [i for i, g in enumerate(glyphs) if g[2] >= 0.8 * tall]
    small = glyphs[full[-1] + 1:]
    if not small or len(full) < 1 or any(g[2] > 0.72 * tall for g in small) \
            or small[-1][1] - small[0][0] < 0.3 * tall:
        return None
    return int(small[0][0])


SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def with_cents_lowered(crop: np.ndarray) -> np.ndarray | None:
    """A line ending in small cents (1⁹⁹, ₺9₀₀) redrawn as one line of even print: the cents cut out, scaled to
    the figure's height and set beside it (the recogniser reads small digits beside big ones poorly, and a line of
    even print well); None when the line has no small cents."""
    start = raised_cents(crop)
    if start is None:
        return None
    ink = ink_of(crop)
    rows = np.flatnonzero(ink[:, start:].any(axis=1))
    line = main_line(ink)
    if len(rows) == 0 or line is None:
        return None
    margin = max(2, crop.shape[0] // 10)
    cents = crop[max(0, rows[0] - margin):rows[-1] + margin + 1, max(0, start - margin // 2):]
    figure = crop[max(0, line[0] - margin):line[1] + margin + 1, :start]
    height = figure.shape[0]
    width = max(1, round(cents.shape[1] * height / max(1, cents.shape[0])))
    cents = np.asarray(Image.fromarray(cents).resize((width, height), Image.BILINEAR))
    return np.concatenate([figure, cents], axis=1)


def papers(image: Image.Image, box: Box) -> list[tuple[int, int]]:
    """The x-ranges of the separate label papers in `box` (bright stretches split by the darker shelf edge): two
    labels hung side by side that the detector saw as one."""
    grey = np.asarray(image.crop(box.as_tuple).convert("L"), np.float32)
    low, high = np.percentile(grey, 2), np.percentile(grey, 98)
    if high - low < 40:
        return [(box.x1, box.x2)]
    columns = np.append((grey > low + 0.6 * (high - low)).mean(axis=0) > 0.3, False)
    runs, start = [], None
    for x, on in enumerate(columns):
        if on and start is None:
            start = x
        elif not on and start is not None:
            if x - start > 0.5 * box.height:
                runs.append((box.x1 + start, box.x1 + x))
            start = None
    return runs if len(runs) > 1 else [(box.x1, box.x2)]


def one_per_paper(image: Image.Image, lines: Sequence[Box]) -> list[list[Box]]:
    """A cluster of text lines, split where it spans several label papers (each line cut at their edges)."""
    ranges = papers(image, union(lines))
    if len(ranges) == 1:
        return [list(lines)]
    parts = [[Box(max(b.x1, x1), b.y1, min(b.x2, x2), b.y2) for b in lines if min(b.x2, x2) - max(b.x1, x1) > 4]
             for x1, x2 in ranges]
    return [part for part in parts if part]


def label_papers(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Label-like rectangles in a band (bright, solid, wider than tall): where a label's print is too small or thin
    for the text detector at this scale, its paper still shows. Boxes (x1, y1, x2, y2) in the band's pixels."""
    import cv2
    grey = rgb.astype(np.float32).mean(axis=2)
    bright = (grey > max(150.0, float(np.percentile(grey, 97)) - 45)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=4)
    papers = []
    for x, y, w, h, area in stats[1:count]:
        if h >= 8 and 0.05 * rgb.shape[0] < h < 0.6 * rgb.shape[0] and 0.9 < w / h < 5 and area > 0.85 * w * h:
            papers.append((int(x), int(y), int(x + w), int(y + h)))
    return papers


def touches(a: tuple, b: tuple) -> bool:
    """Whether two (x1, y1, x2, y2) boxes overlap."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
