"""Stores filled without the model: photos whose regions carry chosen top-k predictions, through the product's own
write path (store.save_photo), for tests of what is computed from the store."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shelf.ingest.images import DecodedImage
from shelf.ingest.regions import Box
from shelf.labels import IMAGENET_CLASSES
from shelf.recognition.classify import Prediction
from shelf.storage import store

TEST_RUN = {"weights_sha256": "x" * 64, "weights_source": "test", "weights_verified": False,
            "weights_untrained": True, "torch_version": "t", "torchvision_version": "tv", "shelf_version": "s",
            "preprocessing": {}, "backend": "b", "region_mode": "grid", "top_k": 3}
PHOTO = Image.new("RGB", (400, 300))  # only its size is stored


@dataclass(frozen=True)
class Result:
    predictions: list[Prediction]
    embedding: np.ndarray


def result(class_index: int, probability: float, runner_up: int = 1, seed: int = 0) -> Result:
    """A region's classification: top-1 `class_index` at `probability`, then a runner-up."""
    rest = (1.0 - probability) * 0.9
    embedding = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    return Result([Prediction(1, class_index, IMAGENET_CLASSES[class_index], probability),
                   Prediction(2, runner_up, IMAGENET_CLASSES[runner_up], rest)], embedding)


def gap_boxes(n_facings: int, widths: Sequence[int]) -> list[Box]:
    """Gaps of the given widths to the right of `n_facings` facings laid out as add_photo lays them."""
    x, boxes = 10 * n_facings, []
    for width in widths:
        boxes.append(Box(x, 0, x + width, 100))
        x += width
    return boxes


def add_photo(engine, run_id: int, number: int, regions: Sequence[tuple[int, float]], store_name: str = "",
              aisle: str = "", date: dt.date | None = None, matches=None, name: str | None = None,
              gaps: Sequence[Box] = ()) -> int:
    """Store photo `number` (its content hash) with one region per (class_index, probability), and `gaps`."""
    decoded = DecodedImage(name=name or f"IMG_{number:05d}.jpg", sha256=f"{number:064x}", image=PHOTO, format="JPEG",
                           n_bytes=0)
    boxes = [Box(10 * i, 0, 10 * i + 10, 100) for i in range(len(regions))]
    results = [result(c, p, seed=number * 1000 + i) for i, (c, p) in enumerate(regions)]
    photo_id, created = store.save_photo(engine, run_id, decoded, b"", store.Context(store_name, aisle, date), boxes,
                                         results, matches, gaps)
    assert created
    return photo_id
