"""Importing product boxes from annotation files: SKU-110K CSV, COCO JSON, YOLO txt.

Untrusted input: every malformed line or annotation is skipped with a message that names the file and the line,
and everything else still loads. Boxes are matched to photos by file name (YOLO: by file stem, since a YOLO file
holds one image's boxes and is named after it). At most MAX_BOXES_PER_PHOTO boxes per photo are kept while parsing,
so a file of millions of boxes for one photo costs no more memory than a normal one.
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from shelf.files import MB, size_problem
from shelf.ingest.images import clean_filename, renamed_for_export, stem_and_suffix
from shelf.ingest.regions import Box
from shelf.text import FORMULA_PREFIXES

MAX_BOX_FILE_MB = 64  # the box-file uploader passes it to Streamlit as max_upload_size
MAX_BOX_FILE_BYTES = MAX_BOX_FILE_MB * MB
MAX_BOXES_PER_PHOTO = 2000
MAX_MESSAGES = 20
MAX_DECLARED_SIDE = 1_000_000  # pixels: a declared image size beyond this (or below 1) is not a photo's
MAX_JSON_INTEGER_DIGITS = 30  # longer integers stay text: no box coordinate or id needs more digits
BOX_FILE_EXTENSIONS = ["csv", "json", "txt"]


class BoxFileError(ValueError):
    """The file as a whole cannot be used (wrong format, too large, not text)."""


@dataclass(frozen=True, slots=True)
class RawBox:
    """A box as the file gives it: absolute pixels, or (YOLO) fractions of the image size."""

    x1: float
    y1: float
    x2: float
    y2: float
    where: str  # "line 12" / "annotation 7", for messages
    normalised: bool = False
    declared_size: tuple[float, float] | None = None  # image width/height the file states, if any


@dataclass
class BoxImport:
    source: str  # the box file's display name
    format: str  # "SKU-110K CSV" | "COCO JSON" | "YOLO txt"
    by_image: dict[str, list[RawBox]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)
    n_problems: int = 0
    over_cap: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # boxes beyond the cap, per image

    def add(self, key: str, box: RawBox) -> None:
        kept = self.by_image[key]
        if len(kept) < MAX_BOXES_PER_PHOTO:
            kept.append(box)
        else:
            self.over_cap[key] += 1

    def problem(self, where: str, text: str) -> None:
        self.n_problems += 1
        if len(self.problems) < MAX_MESSAGES:
            self.problems.append(f"{self.source}, {where}: {text}")

    @property
    def messages(self) -> list[str]:
        extra = self.n_problems - len(self.problems)
        return self.problems + ([f"{self.source}: … and {extra} more problems"] if extra > 0 else [])

    @property
    def n_boxes(self) -> int:
        return sum(len(v) for v in self.by_image.values())


def _key(name: str, by_stem: bool) -> str:
    base = clean_filename(name).lower()
    return stem_and_suffix(base)[0] if by_stem else base


def parse_box_file(data: bytes, name: str) -> BoxImport:
    """Parse a box file; its format comes from the extension (or, failing that, the content)."""
    source = clean_filename(name)
    if len(data) > MAX_BOX_FILE_BYTES:
        raise BoxFileError(f"{source}: {size_problem(len(data), MAX_BOX_FILE_BYTES)} for box files")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BoxFileError(f"{source}: not a text file (box files are CSV, JSON or YOLO txt)") from None
    suffix = stem_and_suffix(source)[1].lower()
    if suffix == ".json" or (suffix not in (".csv", ".txt") and text.lstrip().startswith("{")):
        return _parse_coco(text, source)
    if suffix == ".txt":
        return _parse_yolo(text, source)
    return _parse_sku110k(text, source)


def _number(value) -> float:
    """A finite float, or ValueError: for numbers beyond float's range too (float(10**400) raises OverflowError)."""
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("not a finite number") from None
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _declared_size(width, height) -> tuple[float, float] | None:
    """The image size a file declares: None when it gives none (missing, not numbers, or 0 and below, as before);
    ValueError when it gives one no photo has, such as 1e-310 (scaling by it would overflow)."""
    try:
        size = (_number(width), _number(height))
    except (TypeError, ValueError):
        return None
    if min(size) <= 0:
        return None
    if not all(1 <= side <= MAX_DECLARED_SIDE for side in size):
        raise ValueError(f"declared image size {size[0]:g}×{size[1]:g} is not a photo's (1 to "
                         f"{MAX_DECLARED_SIDE:,} pixels a side)")
    return size


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _check(result: BoxImport, where: str, x1: float, y1: float, x2: float, y2: float) -> bool:
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        result.problem(where, "the box reaches beyond any number (x + width or y + height overflows)")
        return False
    if x2 <= x1 or y2 <= y1:
        result.problem(where, f"degenerate box ({x1:g}, {y1:g}, {x2:g}, {y2:g}): it needs x2 > x1 and y2 > y1")
        return False
    return True


def _parse_sku110k(text: str, source: str) -> BoxImport:
    result = BoxImport(source, "SKU-110K CSV")
    for number, line in enumerate(text.splitlines(), start=1):  # any line ending; a stray CR cannot hide a row
        where = f"line {number}"
        try:
            row = next(csv.reader([line]), [])
        except csv.Error as exc:
            result.problem(where, f"not a CSV line ({exc})")
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 5:
            result.problem(where, f"expected image_name,x1,y1,x2,y2[,class,image_width,image_height], "
                                  f"found {len(row)} field(s)")
            continue
        try:
            x1, y1, x2, y2 = (_number(v) for v in row[1:5])
        except ValueError:
            if number == 1:
                continue  # a header line
            result.problem(where, "coordinates are not numbers")
            continue
        try:
            declared = _declared_size(row[6], row[7]) if len(row) >= 8 else None
        except ValueError as exc:
            result.problem(where, str(exc))
            continue
        if _check(result, where, x1, y1, x2, y2):
            result.add(_key(_without_inert_prefix(row[0]), by_stem=False),
                       RawBox(x1, y1, x2, y2, where, declared_size=declared))
    return result


def _without_inert_prefix(name: str) -> str:
    """Shelf's own SKU-110K export writes a name that starts like a formula as '=name: read it back as =name."""
    return name[1:] if name.startswith("'") and name[1:].startswith(FORMULA_PREFIXES) else name


def _parse_coco(text: str, source: str) -> BoxImport:
    result = BoxImport(source, "COCO JSON")
    try:
        document = json.loads(text, parse_int=_json_integer)
    except json.JSONDecodeError as exc:
        raise BoxFileError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise BoxFileError(f"{source}: nested too deeply to be a COCO file") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) \
            or not isinstance(document.get("annotations"), list):
        raise BoxFileError(f"{source}: a COCO file needs 'images' and 'annotations' lists")
    images, unusable = {}, set()
    for index, image in enumerate(document["images"]):
        if isinstance(image, dict) and "id" in image and isinstance(image.get("file_name"), str):
            try:
                size = _declared_size(image.get("width"), image.get("height"))
            except ValueError as exc:
                result.problem(f"image {index}", f"{exc}; its annotations are skipped")
                unusable.add(str(image["id"]))
                continue
            images[str(image["id"])] = (_key(image["file_name"], by_stem=False), size)
        else:
            result.problem(f"image {index}", "needs an 'id' and a 'file_name'")
    for index, annotation in enumerate(document["annotations"]):
        where = f"annotation {index}" + (f" (id {_short(annotation.get('id'))})" if isinstance(annotation, dict)
                                         and "id" in annotation else "")
        if not isinstance(annotation, dict):
            result.problem(where, "not an object")
            continue
        image_id = str(annotation.get("image_id"))
        if image_id in unusable:
            continue  # its image was reported already
        image = images.get(image_id)
        if image is None:
            result.problem(where, f"refers to image_id {_short(annotation.get('image_id'))}, which is not in "
                                  "'images'")
            continue
        bbox = annotation.get("bbox")
        try:
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError("not four values")
            x, y, w, h = (_number(v) for v in bbox)
        except (TypeError, ValueError):
            result.problem(where, "bbox must be four numbers [x, y, width, height]")
            continue
        if _check(result, where, x, y, x + w, y + h):
            result.add(image[0], RawBox(x, y, x + w, y + h, where, declared_size=image[1]))
    return result


def _json_integer(digits: str) -> int | str:
    """JSON integers as Python ints, except absurdly long ones, kept as text (int() refuses over 4 300 digits, and
    float() of a 400-digit int overflows): as a coordinate such text is refused by _number; as an id it still
    matches."""
    return int(digits) if len(digits) <= MAX_JSON_INTEGER_DIGITS else digits


def _parse_yolo(text: str, source: str) -> BoxImport:
    result = BoxImport(source, "YOLO txt")
    key = _key(source, by_stem=True)
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number}"
        fields = line.split()
        if not fields or line.lstrip().startswith("#"):
            continue
        if len(fields) not in (5, 6):
            result.problem(where, f"expected 'class cx cy w h' (fractions of the image), found {len(fields)} "
                                  "field(s)")
            continue
        try:
            cx, cy, w, h = (_number(v) for v in fields[1:5])
        except ValueError:
            result.problem(where, "values are not numbers")
            continue
        if not all(-0.5 <= v <= 1.5 for v in (cx, cy, w, h)):
            result.problem(where, "YOLO values are fractions of the image size (0–1); these are not")
            continue
        if _check(result, where, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2):
            result.add(key, RawBox(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, where, normalised=True))
    return result


def boxes_for_photo(imported: BoxImport, photo_name: str, width: int, height: int, sha256: str | None = None
                    ) -> tuple[list[Box], list[str]]:
    """The imported boxes of one photo in its pixel coordinates: scaled, clipped, and checked. With the photo's
    `sha256`, boxes filed under the name Shelf's own exports give it when names clash ('shelf0-d389a26e.jpg') are
    found too.

    Returns (boxes, messages). A photo with no boxes in the file gets a message, not an error: the caller decides.
    """
    by_stem = imported.format == "YOLO txt"
    key = _key(photo_name, by_stem)
    if key not in imported.by_image and sha256:
        key = _key(renamed_for_export(clean_filename(photo_name), sha256), by_stem)
    raw = imported.by_image.get(key, [])
    messages = []
    if not raw:
        return [], [f"{imported.source}: no boxes for {clean_filename(photo_name)}"]
    boxes = []
    for r in raw:
        sx, sy = (width, height) if r.normalised else (1.0, 1.0)
        if r.declared_size and r.declared_size != (width, height):
            sx, sy = width / r.declared_size[0], height / r.declared_size[1]  # a resized copy of the same photo
        # Clamped to the photo before rounding: a far-out coordinate times a scale may overflow to infinity.
        box = Box(math.floor(_clamp(r.x1 * sx, width)), math.floor(_clamp(r.y1 * sy, height)),
                  math.ceil(_clamp(r.x2 * sx, width)), math.ceil(_clamp(r.y2 * sy, height)))
        if box.width <= 0 or box.height <= 0:
            messages.append(f"{imported.source}, {r.where}: box lies outside the {width}×{height} photo")
            continue
        boxes.append(box)
    if imported.over_cap.get(key):
        messages.append(f"{imported.source}: {len(raw) + imported.over_cap[key]} boxes for "
                        f"{clean_filename(photo_name)}; only the first {MAX_BOXES_PER_PHOTO} are used")
    return boxes, messages


def _clamp(value: float, top: int) -> float:
    return min(max(value, 0.0), float(top))
