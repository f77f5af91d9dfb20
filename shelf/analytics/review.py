"""Reviewing regions: label choices that stay unique where ImageNet names repeat, corrections as plain data, and
crop thumbnails. The queue itself is a database query (shelf.analytics.report.review_page)."""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image

from shelf import config
from shelf.ingest.images import ImageError, decode_image
from shelf.labels import IMAGENET_CLASSES as IMAGENET_LABELS

THUMB_SIDE = 96
PHOTO_SIDE_FOR_THUMBNAILS = 1280  # a facing is ~1/10 of a shelf photo: still ~100 px across


def label_choice(class_index: int) -> str:
    """How a class reads in a picker: unique even where ImageNet names repeat."""
    return f"{IMAGENET_LABELS[class_index]} ({class_index})"


LABEL_CHOICES = [label_choice(i) for i in range(len(IMAGENET_LABELS))]


def parse_label_choice(text: str) -> tuple[int, str]:
    """'crane (517)' → (517, 'crane'); ValueError for anything else."""
    if not isinstance(text, str) or not text.endswith(")") or " (" not in text:
        raise ValueError(f"not a label choice: {text!r}")
    label, index = text[:-1].rsplit(" (", 1)
    class_index = int(index)
    if not 0 <= class_index < len(IMAGENET_LABELS) or IMAGENET_LABELS[class_index] != label:
        raise ValueError(f"not a label choice: {text!r}")
    return class_index, label


def corrections_from_edits(queue: pd.DataFrame, chosen: Sequence) -> dict[int, tuple[int, str]]:
    """{region_id: (class_index, label)} for rows whose chosen label differs from the label that counts now."""
    changes = {}
    for region_id, current, choice in zip(queue["region_id"], queue["class_index"], chosen):
        if _empty(choice):
            continue
        class_index, label = parse_label_choice(choice)
        if class_index != int(current):
            changes[int(region_id)] = (class_index, label)
    return changes


def _empty(choice) -> bool:
    return choice is None or (isinstance(choice, float) and pd.isna(choice)) or choice == ""


def merge_page_edits(pending: dict, ids: Sequence, base: Sequence, chosen: Sequence) -> dict:
    """Pending edits are kept by row id (a region, a class), never by row number: the rows shown replace their ids'
    entries — a value that differs from the row's `base` value is pending, one set back to it (or emptied) is
    not — and edits of rows not shown (another page, search or filter) stay as they are."""
    shown = {int(i) for i in ids}
    merged = {k: v for k, v in pending.items() if k not in shown}
    for row_id, before, choice in zip(ids, base, chosen):
        if not _empty(choice) and choice != before:
            merged[int(row_id)] = choice
    return merged


def photo_for_thumbnails(file: str, width: int) -> tuple[Image.Image, float] | None:
    """The stored photo, decoded small enough for thumbnails; with the factor from stored to decoded pixels."""
    path = config.data_dir() / file
    try:
        decoded = decode_image(path.read_bytes(), Path(file).name, reduce_to=PHOTO_SIDE_FOR_THUMBNAILS)
    except (OSError, ImageError):
        return None
    return decoded.image, decoded.width / width


def thumbnail_uri(image: Image.Image, scale: float, box: tuple[int, int, int, int]) -> str:
    crop = image.crop(tuple(round(v * scale) for v in box))
    crop.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
