"""Shelf-edge prices: find the price labels on a shelf photo, read them, and tie each to the facings it prices.

Reading is PP-OCR (detection and recognition, ONNX) as RapidOCR ships it inside its wheel (`rapidocr-onnxruntime`):
nothing is downloaded, and it runs on the ONNX Runtime Shelf already uses. The models are loaded once per process,
on the first photo read with prices; this module imports neither until then, so runs without `--prices` pay
nothing.

Where to look: labels hang on the shelf edge under each row of products (or on the rail above products that hang,
peg hooks). The rows come from the facings (`auto`, `boxes` or `detector` regions, clustered by where the products
stand), so only bands under (and, for a row with no label under it, above) each row are searched, at a reduced
scale: a 12 MP photo is a few hundred thousand pixels of text detection instead of twelve million. A photo without
rows of facings (`whole` or `grid` regions) is searched whole, smaller still, and there only text that reads as a
price counts. Beside the text detector, bright solid rectangles in a band (label papers) are read too: a short
price in thin print can be too small for the detector at the reduced scale while its paper still shows.

Each label is a cluster of text lines (name, price, unit price); its biggest line is recognised (at the photo's own
resolution) and parsed (shelf.ingest.prices); smaller lines only when the biggest shows no price. Cents printed
raised (1⁹⁹), which the recogniser reads as "199", are found from the glyphs' ink: two trailing digits whose ink
ends well above the others' baseline are cents.

Tying labels to facings is geometry (`assign`): a label belongs to the facing directly above its left part (labels
hang at the left of their group, as most chains hang them) whose bottom is within reach, else (a hanging rail) the
facing directly below; then to that facing's neighbours on the row that show the same product (its facing group).
A label under an empty stretch belongs to no facing.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image

from shelf.ingest.prices import LabelLine, LabelReading, ShelfLabel, parse_price, read_label
from shelf.ingest.regions import Box
from shelf.recognition.label_print import (
    SUPERSCRIPTS,
    label_papers,
    line_crop,
    one_per_paper,
    touches,
    union,
    with_cents_lowered,
)

DET_TARGET_ROW_HEIGHT = 150  # px: a row of products this tall in the detector's input keeps price digits ~15 px
WHOLE_PHOTO_SIDE = 1600  # px: the longer side a photo without rows of facings is searched at
REC_HEIGHT = 48  # the recogniser's input height (PP-OCRv4)
REC_BATCH = 8
MAX_LINES_PER_LABEL = 3  # the biggest line first; smaller ones only while no price has been read
OCR_MODEL = "PP-OCRv4 det + rec (RapidOCR 1.4, ONNX)"


@dataclass
class ScanStats:
    """What reading one photo cost, for provenance and the benchmark."""

    bands: int = 0
    pixels: int = 0  # searched by the text detector, at its scale
    lines: int = 0  # recognised
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Rows of facings and the bands to search


@dataclass(frozen=True)
class Row:
    facings: tuple[int, ...]
    top: int  # highest product top
    bottom: int  # lowest product bottom
    low_bottom: int  # highest product bottom (a tilted shelf's bottoms spread)
    height: float  # median product height
    x1: int
    x2: int


def rows_of(facings: Sequence[Box]) -> list[Row]:
    """Facings grouped into shelf rows by where they stand (their bottoms), top row first."""
    order = sorted(range(len(facings)), key=lambda i: facings[i].y2)
    rows: list[list[int]] = []
    for i in order:
        if rows:
            last = rows[-1]
            height = float(np.median([facings[j].height for j in last]))
            if facings[i].y2 - float(np.median([facings[j].y2 for j in last])) < 0.3 * height:
                last.append(i)
                continue
        rows.append([i])
    result = []
    for members in rows:
        boxes = [facings[i] for i in members]
        result.append(Row(tuple(sorted(members, key=lambda i: facings[i].x1)), min(b.y1 for b in boxes),
                          max(b.y2 for b in boxes), min(b.y2 for b in boxes),
                          float(np.median([b.height for b in boxes])), min(b.x1 for b in boxes),
                          max(b.x2 for b in boxes)))
    return result


def _clip(box: Box, size: tuple[int, int]) -> Box | None:
    clipped = Box(max(0, box.x1), max(0, box.y1), min(size[0], box.x2), min(size[1], box.y2))
    return clipped if clipped.width > 8 and clipped.height > 8 else None


def bands_below(rows: Sequence[Row], size: tuple[int, int]) -> list[Box]:
    """Where each row's labels hang: the shelf edge under it."""
    bands = [Box(row.x1 - int(0.1 * row.height), row.low_bottom - int(0.08 * row.height),
                 row.x2 + int(0.1 * row.height), row.bottom + int(0.4 * row.height)) for row in rows]
    return [b for band in bands if (b := _clip(band, size))]


def band_above(row: Row, size: tuple[int, int]) -> Box | None:
    """Where a hanging row's labels are: the rail over it."""
    return _clip(Box(row.x1 - int(0.1 * row.height), row.top - int(0.4 * row.height), row.x2 + int(0.1 * row.height),
                     row.top + int(0.08 * row.height)), size)


def merged(bands: Sequence[Box]) -> list[Box]:
    """Bands that overlap become one (a tall photo's rows can share a shelf edge)."""
    out: list[Box] = []
    for band in sorted(bands, key=lambda b: b.y1):
        if out and band.y1 <= out[-1].y2:
            last = out.pop()
            band = Box(min(last.x1, band.x1), last.y1, max(last.x2, band.x2), max(last.y2, band.y2))
        out.append(band)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The OCR models


class LabelReader:
    """PP-OCR text detection and recognition as RapidOCR ships them: sessions made once (per process, `reader()`).
    One thread each by default: measured on 24 generated 12 MP shelves on this 2-core machine under load, two
    threads took 2.07 s of CPU and 6.2 s of wall time a photo (median), one 0.70 s and 2.1 s."""

    def __init__(self, threads: int = 1):
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
        from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
        from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
        from rapidocr_onnxruntime.utils import read_yaml, update_model_path

        config = update_model_path(read_yaml(DEFAULT_CFG_PATH))
        for part in ("Det", "Rec"):  # one thread: the small OCR inputs gain little from two, and on a shared
            config[part]["intra_op_num_threads"] = threads  # machine a second spinning thread tripled the wall time
            config[part]["inter_op_num_threads"] = 1
        # inputs are sized here, not there; small, thin print at the reduced scale: a lower box score, wider boxes
        config["Det"].update(limit_type="max", limit_side_len=1 << 16, box_thresh=0.25, thresh=0.25,
                              unclip_ratio=2.0)
        self.detector = TextDetector(config["Det"])
        self.recognizer = TextRecognizer(config["Rec"])
        self.lock = threading.Lock()  # one photo at a time per process: the sessions use every core already

    def detect(self, image: Image.Image, area: Box, scale: float) -> list[Box]:
        """Text lines in `area` of `image`, searched at `scale`; boxes in `image`'s pixels."""
        w, h = max(32, round(area.width * scale)), max(32, round(area.height * scale))
        part = image.crop(area.as_tuple).resize((w, h), Image.BILINEAR, reducing_gap=2.0)
        rgb = np.asarray(part.convert("RGB"))
        polygons, _ = self.detector(np.ascontiguousarray(rgb[:, :, ::-1]))
        found = [] if polygons is None else [(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
                                             for p in polygons]
        found += [paper for paper in label_papers(rgb) if not any(touches(paper, box) for box in found)]
        sx, sy = area.width / w, area.height / h
        return [Box(area.x1 + int(x1 * sx), area.y1 + int(y1 * sy), area.x1 + int(np.ceil(x2 * sx)) + 1,
                    area.y1 + int(np.ceil(y2 * sy)) + 1) for x1, y1, x2, y2 in found]

    def recognise(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence of each crop (RGB uint8), in one batch padded to the widest (not to 320 px)."""
        if not crops:
            return []
        inputs = [_rec_input(c) for c in crops]
        order = sorted(range(len(inputs)), key=lambda i: inputs[i].shape[2])
        read: list[tuple[str, float]] = [("", 0.0)] * len(inputs)
        for start in range(0, len(order), REC_BATCH):  # like widths together: less padding to compute
            chunk = order[start:start + REC_BATCH]
            width = max(inputs[i].shape[2] for i in chunk)
            batch = np.zeros((len(chunk), 3, REC_HEIGHT, width), np.float32)
            for row, i in enumerate(chunk):
                batch[row, :, :, :inputs[i].shape[2]] = inputs[i]
            out = self.recognizer.session(batch)[0]
            for i, (text, conf) in zip(chunk, self.recognizer.postprocess_op(out)):
                read[i] = (text, float(conf))
        return read


def _rec_input(crop: np.ndarray) -> np.ndarray:
    """A crop as the recogniser wants it: BGR, 48 px high, scaled to [-1, 1], channels first."""
    h, w = crop.shape[:2]
    width = max(8, min(1600, int(np.ceil(REC_HEIGHT * w / max(1, h)))))
    resized = np.asarray(Image.fromarray(crop).resize((width, REC_HEIGHT), Image.BILINEAR), np.float32)
    return (resized[:, :, ::-1].transpose(2, 0, 1) / 127.5 - 1.0).astype(np.float32)


_READER_LOCK = threading.Lock()


@cache
def _reader() -> LabelReader:
    return LabelReader()


def reader() -> LabelReader:
    """The process's label reader (OCR sessions loaded on first use, ~0.5 s)."""
    with _READER_LOCK:
        return _reader()


def available() -> str | None:
    """None when labels can be read here, else why not."""
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except Exception as exc:  # ImportError, or cv2's missing system libraries
        return f"price reading needs rapidocr-onnxruntime (pip install -r requirements.txt): {exc}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Text lines → labels → prices


def _near(a: Box, b: Box) -> bool:
    """Two text lines of one label: overlapping or close across, and close down."""
    h = max(a.height, b.height)
    gap_x = max(a.x1, b.x1) - min(a.x2, b.x2)
    gap_y = max(a.y1, b.y1) - min(a.y2, b.y2)
    return gap_x < 0.25 * h and gap_y < 0.5 * h


def clusters(lines: Sequence[Box]) -> list[list[int]]:
    """Text lines grouped into labels (union–find over `_near`)."""
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            if _near(lines[i], lines[j]):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(lines)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: (min(lines[i].y1 for i in g), min(lines[i].x1 for i in g)))


def text_lines(lines: Sequence[Box]) -> list[Box]:
    """A label's lines as the recogniser should see them: boxes side by side on one line ("2", "for", "3.00"; or a
    price and its raised cents) joined, biggest first."""
    order = sorted(lines, key=lambda b: -b.height)
    joined: list[Box] = []
    for box in order:
        for k, line in enumerate(joined):
            centre = (box.y1 + box.y2) / 2
            if line.y1 <= centre <= line.y2 or (box.y1 >= line.y1 and box.y2 <= line.y2):
                joined[k] = union([line, box])
                break
        else:
            joined.append(box)
    return joined


def read_figure(ocr: LabelReader, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
    """Text and confidence of each line crop; a price with raised cents is read with its cents lowered and given
    back as '1⁹⁹' (the parser's spelling of raised cents)."""
    lowered = [with_cents_lowered(crop) for crop in crops]
    read = ocr.recognise([crop if low is None else low for crop, low in zip(crops, lowered)])
    out = []
    for (text, confidence), low in zip(read, lowered):
        text = text.strip()
        if low is not None:  # the figure and its cents, whatever the recogniser saw between them
            text = re.sub(r"(\d)[\s:.,'·]?(\d\d)$", lambda m: m.group(1) + m.group(2).translate(SUPERSCRIPTS), text)
        out.append((text, confidence))
    return out


def read_labels(image: Image.Image, facings: Sequence[Box], photo_size: tuple[int, int] | None = None,
                ocr: LabelReader | None = None) -> tuple[list[ShelfLabel], ScanStats]:
    """The price labels on a photo, read. `facings` are the photo's product regions in its own pixels
    (`photo_size`; `image` may be decoded smaller). Labels come back in photo pixels, not yet assigned."""
    ocr = ocr or reader()
    stats = ScanStats()
    start = time.perf_counter()
    size = photo_size or image.size
    sx, sy = image.width / size[0], image.height / size[1]
    to_image = [Box(round(b.x1 * sx), round(b.y1 * sy), round(b.x2 * sx), round(b.y2 * sy)) for b in facings]
    whole_photo = len(to_image) <= 1 or all(b.width * b.height > 0.5 * image.width * image.height for b in to_image)
    with ocr.lock:
        if whole_photo:
            scale = min(1.0, WHOLE_PHOTO_SIDE / max(image.size))
            lines = ocr.detect(image, Box(0, 0, *image.size), scale)
            stats.bands, stats.pixels = 1, int(image.width * image.height * scale * scale)
            labels = _read(ocr, image, lines, stats, need_price=True)
        else:
            rows = rows_of(to_image)
            labels, seen = [], []
            for row in rows:
                scale = min(1.0, DET_TARGET_ROW_HEIGHT / max(1.0, row.height))
                found = []
                for band in (bands_below([row], image.size) or []):
                    if any(band.y1 >= s.y1 and band.y2 <= s.y2 and band.x1 >= s.x1 and band.x2 <= s.x2 for s in seen):
                        continue
                    seen.append(band)
                    found += _scan(ocr, image, band, scale, stats)
                if not found and (band := band_above(row, image.size)) is not None:
                    found += _scan(ocr, image, band, scale, stats)
                labels += _read(ocr, image, found, stats, need_price=False, rows=[to_image[i] for i in row.facings])
        stats.seconds = time.perf_counter() - start
    back = [ShelfLabel(Box(round(lb.box.x1 / sx), round(lb.box.y1 / sy), round(lb.box.x2 / sx), round(lb.box.y2 / sy)),
                      lb.price, lb.text, lb.confidence) for lb in labels]
    return _distinct(back), stats


def _scan(ocr: LabelReader, image: Image.Image, band: Box, scale: float, stats: ScanStats) -> list[Box]:
    t = time.process_time()
    lines = ocr.detect(image, band, scale)
    stats.bands += 1
    stats.pixels += int(band.width * band.height * scale * scale)
    stats.timings["detect_cpu"] = stats.timings.get("detect_cpu", 0.0) + time.process_time() - t
    return lines


def _inside_a_product(box: Box, products: Sequence[Box]) -> bool:
    """Print on a pack, not a label: the text's centre is well inside a facing."""
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    return any(p.x1 < cx < p.x2 and p.y1 < cy < p.y2 - 0.06 * p.height for p in products)


def _read(ocr: LabelReader, image: Image.Image, lines: Sequence[Box], stats: ScanStats, need_price: bool,
          rows: Sequence[Box] = ()) -> list[ShelfLabel]:
    """Recognise each label's biggest line (then smaller ones while no price has been read) and parse it."""
    t = time.process_time()
    lines = [b for b in lines if not _inside_a_product(b, rows)]
    labels = [text_lines(part) for group in clusters(lines) for part in one_per_paper(image, [lines[i] for i in group])]
    readings: list[list[LabelLine]] = [[] for _ in labels]
    for depth in range(MAX_LINES_PER_LABEL):
        todo = [k for k, label in enumerate(labels) if depth < len(label)
                and not any(parse_price(line.text) for line in readings[k])]
        if not todo:
            break
        pixels = [line_crop(image, labels[k][depth]) for k in todo]
        for k, (text, confidence), pixel in zip(todo, read_figure(ocr, pixels), pixels):
            readings[k].append(LabelLine(text, confidence, pixel.shape[0]))
        stats.lines += len(todo)
    out = []
    for k, label in enumerate(labels):
        reading: LabelReading = read_label(readings[k])
        if not readings[k] or (need_price and reading.price is None):
            continue
        if reading.price is None and not any(c.isdigit() for c in reading.text):
            continue  # shelf-edge text that is not a price label (a strip, a sign)
        out.append(ShelfLabel(union(label), reading.price, reading.text, reading.confidence))
    stats.timings["recognise_cpu"] = stats.timings.get("recognise_cpu", 0.0) + time.process_time() - t
    return out


def _distinct(labels: Sequence[ShelfLabel]) -> list[ShelfLabel]:
    """One label per place: where two bands saw the same label, keep the one read with more confidence."""
    kept: list[ShelfLabel] = []
    for label in sorted(labels, key=lambda lb: -lb.confidence):
        if not any(_overlap(label.box, other.box) > 0.5 for other in kept):
            kept.append(label)
    return sorted(kept, key=lambda lb: (lb.box.y1, lb.box.x1))


def _overlap(a: Box, b: Box) -> float:
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min(a.width * a.height, b.width * b.height)


# ---------------------------------------------------------------------------------------------------------------
# Labels → facing groups


def anchor_x(label: Box) -> float:
    """The x a label points at: a quarter in from its left (labels hang at the left of their group)."""
    return label.x1 + 0.25 * label.width


def _x_distance(x: float, box: Box) -> float:
    return 0.0 if box.x1 <= x <= box.x2 else min(abs(x - box.x1), abs(x - box.x2))


def facing_for(label: Box, facings: Sequence[Box]) -> int | None:
    """The facing a label sits under (or, on a hanging rail, over): directly above its anchor within reach, else
    directly below; None when it hangs under an empty stretch."""
    x = anchor_x(label)
    above = [i for i, f in enumerate(facings) if f.y2 <= (label.y1 + label.y2) / 2
             and label.y1 - f.y2 < max(0.35 * f.height, 2 * label.height)
             and _x_distance(x, f) <= 0.15 * f.width]
    below = [i for i, f in enumerate(facings) if f.y1 >= (label.y1 + label.y2) / 2
             and f.y1 - label.y2 < max(0.35 * f.height, 2 * label.height)
             and _x_distance(x, f) <= 0.15 * f.width]
    for candidates, gap in ((above, lambda f: label.y1 - f.y2), (below, lambda f: f.y1 - label.y2)):
        if candidates:
            return min(candidates, key=lambda i: (_x_distance(x, facings[i]), abs(gap(facings[i]))))
    return None


def facing_group(first: int, facings: Sequence[Box], products: Sequence[Hashable]) -> tuple[int, ...]:
    """`first` and its neighbours on the same row showing the same product: `first` first, then the others left to
    right. The group follows the products as recognised; `first`, the facing the label sits under, is what price
    compliance goes by (a reviewer's later correction can change the products, not where the label hangs)."""
    anchor = facings[first]
    same_row = [i for i, f in enumerate(facings) if abs(f.y2 - anchor.y2) < 0.3 * anchor.height
                or abs(f.y1 - anchor.y1) < 0.3 * anchor.height]
    same_row.sort(key=lambda i: facings[i].x1)
    at = same_row.index(first)
    group = [first]
    for step in (-1, 1):
        k, here = at + step, first
        while 0 <= k < len(same_row):
            nxt = same_row[k]
            gap = max(facings[nxt].x1, facings[here].x1) - min(facings[nxt].x2, facings[here].x2)
            if products[nxt] != products[first] or gap > 0.3 * min(facings[nxt].width, facings[here].width):
                break
            group.append(nxt)
            here, k = nxt, k + step
    return (first, *sorted((i for i in group if i != first), key=lambda i: facings[i].x1))


def assign(labels: Sequence[ShelfLabel], facings: Sequence[Box], products: Sequence[Hashable]) -> list[ShelfLabel]:
    """Each label with the facing group it prices (`products`: what each facing shows, e.g. its SKU or class)."""
    out = []
    for label in labels:
        first = facing_for(label.box, facings)
        group = () if first is None else facing_group(first, facings, products)
        out.append(ShelfLabel(label.box, label.price, label.text, label.confidence, group))
    return out


def provenance() -> dict:
    """What a run that read prices records."""
    from importlib.metadata import version
    return {"ocr": OCR_MODEL, "rapidocr_onnxruntime": version("rapidocr-onnxruntime"),
            "target_row_height": DET_TARGET_ROW_HEIGHT, "lines_per_label": MAX_LINES_PER_LABEL}
