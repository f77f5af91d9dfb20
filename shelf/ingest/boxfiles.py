"""Importing product boxes from annotation files: SKU-110K CSV, COCO JSON, YOLO txt.

Untrusted input: every malformed line or annotation is skipped with a message that names the file and the line,
and everything else still loads. Boxes are matched to photos by file name (YOLO: by file stem, since a YOLO file
holds one image's boxes and is named after it). A file's size says little about what parsing it takes, so parsing
goes a line (CSV, YOLO) or an array element (COCO) at a time, and keeps boxes packed in arrays, at most
MAX_BOXES_PER_PHOTO per photo for at most MAX_PHOTOS_PER_BOX_FILE photos: a 64 MB file of 3 million boxes, or of
21 million empty JSON objects, once took 1.8 GB.
"""
from __future__ import annotations

import csv
import json
import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from shelf.files import MB, size_problem
from shelf.ingest import jsonstream
from shelf.ingest.images import clean_filename, renamed_for_export, stem_and_suffix
from shelf.ingest.regions import Box
from shelf.text import FORMULA_PREFIXES

MAX_BOX_FILE_MB = 64  # the box-file uploader passes it to Streamlit as max_upload_size
MAX_BOX_FILE_BYTES = MAX_BOX_FILE_MB * MB
MAX_BOXES_PER_PHOTO = 2000
MAX_PHOTOS_PER_BOX_FILE = 10_000  # SKU-110K's largest annotation file (train) describes 8 219 photos
MAX_JSON_ELEMENT_BYTES = 1 * MB  # one COCO image or annotation (a long segmentation polygon is tens of kB)
MAX_MESSAGES = 20
MAX_DECLARED_SIDE = 1_000_000  # pixels: a declared image size beyond this (or below 1) is not a photo's
MAX_JSON_INTEGER_DIGITS = 30  # longer integers stay text: no box coordinate or id needs more digits
BOX_FILE_EXTENSIONS = ["csv", "json", "txt"]
NO_SIZE = math.nan  # the declared image size of a box whose file declares none


class BoxFileError(ValueError):
    """The file as a whole cannot be used (wrong format, too large, not text)."""


class PhotoBoxes:
    """One photo's boxes, packed: x1, y1, x2, y2 and the declared image width and height (NO_SIZE when none) as six
    doubles a box, and the line or annotation number each came from. As objects, a box took 250 bytes."""

    __slots__ = ("values", "places", "over_cap")

    def __init__(self):
        self.values, self.places, self.over_cap = array("d"), array("q"), 0  # over_cap: boxes beyond the cap

    def __len__(self) -> int:
        return len(self.places)


@dataclass
class BoxImport:
    source: str  # the box file's display name
    format: str  # "SKU-110K CSV" | "COCO JSON" | "YOLO txt"
    by_image: dict[str, PhotoBoxes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    n_problems: int = 0
    other_photos: int = 0  # boxes for photos beyond MAX_PHOTOS_PER_BOX_FILE, skipped

    @property
    def place(self) -> str:
        return "annotation" if self.format == "COCO JSON" else "line"

    def add(self, key: str, x1: float, y1: float, x2: float, y2: float, place: int,
            declared: tuple[float, float] | None = None) -> None:
        photo = self.by_image.get(key)
        if photo is None:
            if len(self.by_image) >= MAX_PHOTOS_PER_BOX_FILE:
                self.other_photos += 1
                return
            photo = self.by_image[key] = PhotoBoxes()
        if len(photo) < MAX_BOXES_PER_PHOTO:
            photo.values.extend((x1, y1, x2, y2, *(declared or (NO_SIZE, NO_SIZE))))
            photo.places.append(place)
        else:
            photo.over_cap += 1

    @property
    def told_enough(self) -> bool:
        """MAX_MESSAGES are kept: later problems are only counted (and need no words: millions may follow)."""
        return len(self.problems) >= MAX_MESSAGES

    def problem(self, where: str, text: str) -> None:
        self.n_problems += 1
        if len(self.problems) < MAX_MESSAGES:
            self.problems.append(f"{self.source}, {where}: {text}")

    @property
    def messages(self) -> list[str]:
        extra = self.n_problems - len(self.problems)
        return self.problems + ([f"{self.source}: … and {extra} more problems"] if extra > 0 else []) + (
            [f"{self.source}: {self.other_photos} boxes are for photos beyond the first {MAX_PHOTOS_PER_BOX_FILE:,} "
             "it describes, the most one box file may; they are skipped"] if self.other_photos else [])

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


LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines cuts


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` as str.splitlines() cuts them (any line ending: a stray CR cannot hide a row), one at a
    time: three million lines in a list take 200 MB."""
    start = 0
    for end in LINE_BREAK.finditer(text):
        yield text[start:end.start()]
        start = end.end()
    if start < len(text):
        yield text[start:]


def _parse_sku110k(text: str, source: str) -> BoxImport:
    result = BoxImport(source, "SKU-110K CSV")
    for number, line in enumerate(_lines(text), start=1):
        where = f"line {number}"
        try:
            row = line.split(",") if '"' not in line else next(csv.reader([line]), [])  # the same cells, sooner
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
            result.add(_key(_without_inert_prefix(row[0]), by_stem=False), x1, y1, x2, y2, number, declared)
    return result


def _without_inert_prefix(name: str) -> str:
    """Shelf's own SKU-110K export writes a name that starts like a formula as '=name: read it back as =name."""
    return name[1:] if name.startswith("'") and name[1:].startswith(FORMULA_PREFIXES) else name


def _parse_coco(text: str, source: str) -> BoxImport:
    """COCO JSON, decoded a chunk of 'images' and of 'annotations' at a time, the images first (annotations that
    come before them are skipped over, then read); nothing else in the file is built."""
    result, images, later = BoxImport(source, "COCO JSON"), CocoImages(), []

    def read_images(i: int) -> int:
        images.read = True
        return _read_array(text, i, result, "image", lambda index, image: _coco_image(result, images, index, image))

    def read_annotations(i: int) -> int:
        if not images.read:
            later.append(i)
            return jsonstream.value_end(text, i)
        return _read_array(text, i, result, "annotation",
                           lambda index, annotation: _coco_annotation(result, index, annotation, images))
    try:
        if not text.startswith("{", jsonstream.space(text, 0)):
            raise BoxFileError(f"{source}: a COCO file needs 'images' and 'annotations' lists")
        found = jsonstream.read_members(text, {"images": read_images, "annotations": read_annotations})
        if not {"images", "annotations"} <= found:
            raise BoxFileError(f"{source}: a COCO file needs 'images' and 'annotations' lists")
        for i in later:
            read_annotations(i)
    except json.JSONDecodeError as exc:
        raise BoxFileError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except NotAList:
        raise BoxFileError(f"{source}: a COCO file needs 'images' and 'annotations' lists") from None
    return result


class NotAList(Exception):
    """'images' or 'annotations' is there, but not a list."""


def _read_array(text: str, i: int, result: BoxImport, what: str, on_element) -> int:
    """A COCO array, decoded a chunk at a time; `what`: 'image' or 'annotation'. Returns the index past it."""
    if not text.startswith("[", i):
        raise NotAList()

    def too_large(index: int, length: int) -> None:
        result.problem(f"{what} {index}", "nested too deeply to be part of a COCO file" if length < 0 else
                       f"{length / MB:,.1f} MB is more than any COCO {what} takes; skipped")
    return jsonstream.read_array(text, i, ELEMENTS, on_element, too_large, MAX_JSON_ELEMENT_BYTES)


@dataclass
class CocoImages:
    by_id: dict[str, tuple[str, tuple[float, float] | None]] = field(default_factory=dict)  # → (photo key, size)
    unusable: set[str] = field(default_factory=set)  # ids whose annotations are skipped (their image was reported)
    capped: bool = False  # more images than MAX_PHOTOS_PER_BOX_FILE: the rest were not kept
    read: bool = False  # the 'images' array has been read


def _coco_image(result: BoxImport, images: CocoImages, index: int, image) -> None:
    if not (isinstance(image, dict) and "id" in image and isinstance(image.get("file_name"), str)):
        result.problem(f"image {index}", "needs an 'id' and a 'file_name'")
        return
    try:
        size = _declared_size(image.get("width"), image.get("height"))
    except ValueError as exc:
        result.problem(f"image {index}", f"{exc}; its annotations are skipped")
        images.unusable.add(str(image["id"]))
        return
    if len(images.by_id) < MAX_PHOTOS_PER_BOX_FILE:
        images.by_id[str(image["id"])] = (_key(image["file_name"], by_stem=False), size)
    else:
        images.capped = True


def _coco_annotation(result: BoxImport, index: int, annotation, images: CocoImages) -> None:
    where = "" if result.told_enough else f"annotation {index}" + (
        f" (id {_short(annotation.get('id'))})" if isinstance(annotation, dict) and "id" in annotation else "")
    if not isinstance(annotation, dict):
        result.problem(where, "not an object")
        return
    image_id = str(annotation.get("image_id"))
    if image_id in images.unusable:
        return  # its image was reported already
    image = images.by_id.get(image_id)
    if image is None and images.capped:
        result.other_photos += 1  # an image beyond the ones kept, or none at all: the file describes too many
        return
    if image is None:
        result.problem(where, "" if result.told_enough else f"refers to image_id {_short(annotation.get('image_id'))}, "
                                                            "which is not in 'images'")
        return
    bbox = annotation.get("bbox")
    try:
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError("not four values")
        x, y, w, h = (_number(v) for v in bbox)
    except (TypeError, ValueError):
        result.problem(where, "bbox must be four numbers [x, y, width, height]")
        return
    if _check(result, where, x, y, x + w, y + h):
        result.add(image[0], x, y, x + w, y + h, index, image[1])


def _json_integer(digits: str) -> int | str:
    """JSON integers as Python ints, except absurdly long ones, kept as text (int() refuses over 4 300 digits, and
    float() of a 400-digit int overflows): as a coordinate such text is refused by _number; as an id it still
    matches."""
    return int(digits) if len(digits) <= MAX_JSON_INTEGER_DIGITS else digits


ELEMENTS = json.JSONDecoder(parse_int=_json_integer)


def _parse_yolo(text: str, source: str) -> BoxImport:
    result = BoxImport(source, "YOLO txt")
    key = _key(source, by_stem=True)
    for number, line in enumerate(_lines(text), start=1):
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
            result.add(key, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, number)
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
    photo = imported.by_image.get(key)
    if not photo:
        return [], [f"{imported.source}: no boxes for {clean_filename(photo_name)}"]
    boxes, messages = [], []
    for number, place in enumerate(photo.places):
        x1, y1, x2, y2, declared_width, declared_height = photo.values[6 * number:6 * number + 6]
        sx, sy = (width, height) if by_stem else (1.0, 1.0)  # YOLO gives fractions of the photo
        if not math.isnan(declared_width) and (declared_width, declared_height) != (width, height):
            sx, sy = width / declared_width, height / declared_height  # a resized copy of the same photo
        # Clamped to the photo before rounding: a far-out coordinate times a scale may overflow to infinity.
        box = Box(math.floor(_clamp(x1 * sx, width)), math.floor(_clamp(y1 * sy, height)),
                  math.ceil(_clamp(x2 * sx, width)), math.ceil(_clamp(y2 * sy, height)))
        if box.width <= 0 or box.height <= 0:
            messages.append(f"{imported.source}, {imported.place} {place}: box lies outside the {width}×{height} "
                            "photo")
            continue
        boxes.append(box)
    if photo.over_cap:
        messages.append(f"{imported.source}: {len(photo) + photo.over_cap} boxes for "
                        f"{clean_filename(photo_name)}; only the first {MAX_BOXES_PER_PHOTO} are used")
    return boxes, messages


def _clamp(value: float, top: int) -> float:
    return min(max(value, 0.0), float(top))
