"""The data path wired together: uploaded bytes → decoded photo → regions → predictions → store.

Used by the Recognize page and the CLI alike. Each file succeeds or fails on its own: a bad file becomes a
message naming it, and the batch goes on.
"""
from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torchvision
from PIL import Image
from sqlalchemy.engine import Engine

import shelf
from shelf import store
from shelf.classify import BACKEND, DEFAULT_TOP_K, Classification, Prediction, classify_images, preprocessing_provenance
from shelf.images import ImageError, clean_filename, decode_image
from shelf.model import LoadedModel
from shelf.regions import Box, regions_for


@dataclass(frozen=True)
class Upload:
    name: str  # as the user's browser or shell gave it: display only
    data: bytes


@dataclass
class RegionResult:
    box: Box
    predictions: list[Prediction]


@dataclass
class PhotoResult:
    name: str
    photo_id: int | None = None
    sha256: str | None = None
    already_stored: bool = False
    regions: list[RegionResult] = field(default_factory=list)
    error: str | None = None
    thumbnail: Image.Image | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_provenance(loaded: LoadedModel, region_mode: str, top_k: int) -> dict:
    w = loaded.weights
    return {"weights_sha256": w.sha256, "weights_source": w.source, "weights_verified": w.verified,
            "weights_untrained": w.untrained, "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__, "shelf_version": shelf.__version__,
            "preprocessing": {**preprocessing_provenance(), "python": platform.python_version()},
            "backend": BACKEND, "region_mode": region_mode, "top_k": top_k}


def thumbnail(image: Image.Image, size: int = 320) -> Image.Image:
    thumb = image.copy()
    thumb.thumbnail((size, size))
    return thumb


def crops(image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
    return [image if (b.x1, b.y1, b.x2, b.y2) == (0, 0, image.width, image.height) else image.crop(b.as_tuple)
            for b in boxes]


def stored_result(engine: Engine, name: str, photo_id: int) -> PhotoResult:
    frame = store.predictions_frame(engine, photo_ids=[photo_id])
    result = PhotoResult(name=name, photo_id=photo_id, already_stored=True)
    for _, group in frame.groupby("position", sort=True):
        first = group.iloc[0]
        result.regions.append(RegionResult(
            box=Box(int(first.x1), int(first.y1), int(first.x2), int(first.y2)),
            predictions=[Prediction(int(r["rank"]), int(r.class_index), r.label, float(r.probability))
                         for _, r in group.iterrows()]))
    if not frame.empty:
        result.sha256 = frame.iloc[0].sha256
    return result


def recognize(loaded: LoadedModel, engine: Engine, uploads: Sequence[Upload], context: store.Context,
              region_mode: str = "whole", top_k: int = DEFAULT_TOP_K,
              on_progress: Callable[[int, int, str], None] | None = None) -> list[PhotoResult]:
    """Decode, classify and store each upload. `on_progress(done, total, name)` is called after each file."""
    results: list[PhotoResult] = []
    run_id: int | None = None
    for number, upload in enumerate(uploads, start=1):
        name = clean_filename(upload.name)
        try:
            decoded = decode_image(upload.data, name)
            existing = store.find_photo(engine, decoded.sha256)
            if existing is not None:
                result = stored_result(engine, name, existing)
            else:
                boxes = regions_for(region_mode, decoded.width, decoded.height)
                classified: list[Classification] = classify_images(loaded, crops(decoded.image, boxes), top_k)
                if run_id is None:
                    run_id = store.create_run(engine, run_provenance(loaded, region_mode, top_k))
                photo_id, created = store.save_photo(engine, run_id, decoded, upload.data, context, boxes,
                                                     classified)
                result = PhotoResult(name=name, photo_id=photo_id, sha256=decoded.sha256,
                                     already_stored=not created,
                                     regions=[RegionResult(b, c.predictions) for b, c in zip(boxes, classified)])
            result.thumbnail = thumbnail(decoded.image)
        except ImageError as exc:
            result = PhotoResult(name=name, error=str(exc))
        except Exception as exc:  # one file's failure must not end the batch or lose what is stored
            result = PhotoResult(name=name, error=f"{name}: could not be processed ({exc.__class__.__name__}: "
                                                  f"{str(exc)[:200]})")
        results.append(result)
        if on_progress:
            on_progress(number, len(uploads), name)
    return results
