"""The review queue: doubtful regions first, with crop thumbnails, and corrections as plain data."""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from shelf import config
from shelf.images import ImageError, decode_image
from shelf.model import CATEGORIES as IMAGENET_LABELS
from shelf.tally import TallyFilter, filter_detections

THUMB_SIDE = 96
PHOTO_SIDE_FOR_THUMBNAILS = 1280  # a facing is ~1/10 of a shelf photo: still ~100 px across


@dataclass(frozen=True)
class ReviewFilter:
    scope: TallyFilter = TallyFilter()  # stores, aisles, dates, categories, classes
    confidence: tuple[float, float] = (0.0, 1.0)  # inclusive band of the model's top-1 probability
    include_reviewed: bool = False


def review_queue(detections: pd.DataFrame, f: ReviewFilter) -> pd.DataFrame:
    """Regions to review, least confident first (then by photo and position, so the order is stable)."""
    rows = filter_detections(detections, f.scope)
    low, high = f.confidence
    rows = rows[(rows["probability"] >= low) & (rows["probability"] <= high)]
    if not f.include_reviewed:
        rows = rows[~rows["corrected"].astype(bool)]
    return rows.sort_values(["probability", "photo_id", "position"], ignore_index=True)


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
        if choice is None or (isinstance(choice, float) and pd.isna(choice)) or choice == "":
            continue
        class_index, label = parse_label_choice(choice)
        if class_index != int(current):
            changes[int(region_id)] = (class_index, label)
    return changes


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
