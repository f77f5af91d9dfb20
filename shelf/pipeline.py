"""The data path wired together: uploaded bytes → decoded photo → regions → predictions → store.

Used by the Recognize page and the CLI alike. Each photo is decoded once; its regions are cropped from that one
decoded image and classified in batches. Each file succeeds or fails on its own: a bad file becomes a message naming
it, and the batch goes on.
"""
from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
import torchvision
from PIL import Image
from sqlalchemy.engine import Engine

import shelf
from shelf import store
from shelf.boxfiles import BoxImport, boxes_for_photo
from shelf.catalog import DEFAULT_THRESHOLD, CatalogIndex, match
from shelf.classify import DEFAULT_TOP_K, Prediction, classify_images, preprocessing_provenance
from shelf.detector import DetectorInfo, detect, resolve_detector
from shelf.detector import provenance as detector_provenance
from shelf.images import ImageError, clean_filename, decode_image
from shelf.model import LoadedModel
from shelf.overlay import preview
from shelf.regions import Box, RegionMode, parse_region_mode, regions_for, whole_image


@dataclass(frozen=True)
class Upload:
    name: str  # as the user's browser or shell gave it: display only
    data: bytes


@dataclass
class RegionResult:
    box: Box
    predictions: list[Prediction]
    sku_id: int | None = None  # the catalog match, when the run used the catalog (None: unknown or not matched)
    sku_similarity: float | None = None

    @property
    def top1(self) -> Prediction:
        return self.predictions[0]


@dataclass
class PhotoResult:
    name: str
    photo_id: int | None = None
    sha256: str | None = None
    already_stored: bool = False
    regions: list[RegionResult] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # things the user should know that did not stop the photo
    size: tuple[int, int] = (0, 0)  # of the decoded (EXIF-rotated) photo; boxes are in these pixels
    preview: Image.Image | None = None  # at most overlay.PREVIEW_SIDE pixels: thumbnails, overlays, region crops

    @property
    def ok(self) -> bool:
        return self.error is None


def run_provenance(loaded: LoadedModel, region_mode: str, top_k: int, crop_mode: str = "center",
                   catalog: dict | None = None, detector: dict | None = None) -> dict:
    w = loaded.weights
    return {"weights_sha256": w.sha256, "weights_source": w.source, "weights_verified": w.verified,
            "weights_untrained": w.untrained, "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__, "shelf_version": shelf.__version__,
            "preprocessing": {**preprocessing_provenance(crop_mode), "python": platform.python_version(),
                              "catalog": catalog, **({"detector": detector} if detector else {})},
            "backend": loaded.backend_name, "region_mode": region_mode, "top_k": top_k}


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


class FoundRegions(NamedTuple):
    boxes: list[Box]
    notes: list[str]  # for the user
    scores: list[float] | None = None  # one per box, from modes that score their boxes (detector)


def find_regions(mode: RegionMode, image: Image.Image, name: str, box_file: BoxImport | None,
                 detector: DetectorInfo | None = None) -> FoundRegions:
    """What a region mode finds on one photo, possibly nothing. Raises ImageError when the photo cannot be done."""
    if mode.kind == "boxes":
        if box_file is None:
            raise ImageError(name, "region mode 'boxes' needs a box file")
        boxes, notes = boxes_for_photo(box_file, name, image.width, image.height)
        if not boxes:
            raise ImageError(name, f"the box file {box_file.source} has no usable boxes for this photo")
        return FoundRegions(boxes, notes)
    if mode.kind == "detector":
        boxes, scores = detect(detector or resolve_detector(mode.source), image, mode.conf, mode.iou, mode.tiles)
        return FoundRegions(boxes, [], scores)
    return FoundRegions(regions_for(mode, image), [])


def photo_regions(mode: RegionMode, image: Image.Image, name: str, box_file: BoxImport | None,
                  detector: DetectorInfo | None = None) -> FoundRegions:
    """The regions to classify on one photo: what the mode finds, or the whole photo (with a note) if nothing."""
    found = find_regions(mode, image, name, box_file, detector)
    if found.boxes:
        return found
    why = f"the detector found no products at conf {mode.conf:g}" if mode.kind == "detector" \
        else "no shelf rows found"  # a close-up of one product, most likely
    return FoundRegions(whole_image(image.width, image.height), [f"{why}; the whole photo was classified"])


def mode_provenance(mode: RegionMode, detector: DetectorInfo | None) -> tuple[str, dict | None]:
    """(region mode text, detector description) as a run records them: a detector by its sha256, not its path."""
    if mode.kind != "detector" or detector is None:
        return mode.text, None
    return replace(mode, source=detector.sha256).text, detector_provenance(detector, mode.conf, mode.iou, mode.tiles)


def recognize(loaded: LoadedModel, engine: Engine, uploads: Sequence[Upload], context: store.Context,
              region_mode: str | RegionMode = "whole", top_k: int = DEFAULT_TOP_K, crop_mode: str = "center",
              box_file: BoxImport | None = None, catalog: CatalogIndex | None = None,
              catalog_threshold: float = DEFAULT_THRESHOLD, detector: DetectorInfo | None = None,
              on_progress: Callable[[int, int, str], None] | None = None,
              previews: int | None = None) -> list[PhotoResult]:
    """Decode, split into regions, classify (and match against the SKU catalog, if given) and store each upload.
    `on_progress(done, total, name)` is called after each file. A photo already in the store (same bytes) is not
    classified again: its stored result is returned, marked `already_stored`. A detector mode uses `detector`, or
    resolves its FILE before any work (DetectorError if it cannot). `previews`: keep the preview image of only that
    many of the most recent results (a preview is up to ~5 MB; None keeps all)."""
    mode = parse_region_mode(region_mode) if isinstance(region_mode, str) else region_mode
    preprocessing_provenance(crop_mode)  # an unknown crop mode fails here, before any work
    if mode.kind == "detector" and detector is None:
        detector = resolve_detector(mode.source)
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
                boxes, notes, _ = photo_regions(mode, decoded.image, name, box_file, detector)
                classified = classify_images(loaded, crops(decoded.image, boxes), top_k, crop_mode=crop_mode)
                matched = None
                if catalog is not None and catalog.size:
                    found = match(catalog, torch.stack([c.embedding for c in classified]).numpy(),
                                  catalog_threshold)
                    matched = list(zip(found.sku_ids, map(float, found.similarity)))
                if run_id is None:
                    catalog_info = {"skus": catalog.size, "references": len(catalog.references),
                                    "method": "knn", "threshold": catalog_threshold,
                                    "embedding": "L2-normalised 512-d pooled features, same preprocessing"} \
                        if matched is not None else None
                    mode_text, detector_info = mode_provenance(mode, detector)
                    run_id = store.create_run(engine, run_provenance(loaded, mode_text, top_k, crop_mode,
                                                                     catalog_info, detector_info))
                photo_id, created = store.save_photo(engine, run_id, decoded, upload.data, context, boxes,
                                                     classified, matched)
                result = PhotoResult(name=name, photo_id=photo_id, sha256=decoded.sha256,
                                     already_stored=not created, notes=notes,
                                     regions=[RegionResult(b, c.predictions, *(matched[i] if matched else
                                                                               (None, None)))
                                              for i, (b, c) in enumerate(zip(boxes, classified))])
            result.size = decoded.image.size
            result.preview = preview(decoded.image)
        except ImageError as exc:
            result = PhotoResult(name=name, error=str(exc))
        except Exception as exc:  # one file's failure must not end the batch or lose what is stored
            result = PhotoResult(name=name, error=f"{name}: could not be processed ({exc.__class__.__name__}: "
                                                  f"{str(exc)[:200]})")
        results.append(result)
        if previews is not None and len(results) > previews:
            results[-previews - 1].preview = None
        if on_progress:
            on_progress(number, len(uploads), name)
    return results


@dataclass
class RegionComparison:
    """A region mode's boxes on one photo beside the true boxes from a labelled file (nothing is stored)."""

    name: str
    found: list[Box] = field(default_factory=list)
    scores: list[float] | None = None
    truth: list[Box] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] = (0, 0)
    preview: Image.Image | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def compare_regions(uploads: Sequence[Upload], region_mode: str | RegionMode, truth: BoxImport,
                    box_file: BoxImport | None = None, detector: DetectorInfo | None = None,
                    with_preview: bool = False,
                    on_progress: Callable[[int, int, str], None] | None = None) -> list[RegionComparison]:
    """Each photo's regions under a mode and its true boxes from `truth` (matched by file name, like boxes:FILE).
    A photo the truth file has no boxes for, or that cannot be read, gets an error and the rest go on."""
    mode = parse_region_mode(region_mode) if isinstance(region_mode, str) else region_mode
    if mode.kind == "detector" and detector is None:
        detector = resolve_detector(mode.source)
    results = []
    for number, upload in enumerate(uploads, start=1):
        name = clean_filename(upload.name)
        try:
            image = decode_image(upload.data, name).image
            true_boxes, notes = boxes_for_photo(truth, name, image.width, image.height)
            if not true_boxes:
                raise ImageError(name, f"the truth file {truth.source} has no boxes for this photo")
            found = find_regions(mode, image, name, box_file, detector)
            result = RegionComparison(name, found.boxes, found.scores, true_boxes, notes + found.notes,
                                      size=image.size, preview=preview(image) if with_preview else None)
        except ImageError as exc:
            result = RegionComparison(name, error=str(exc))
        except Exception as exc:  # one file's failure must not end the batch
            result = RegionComparison(name, error=f"{name}: could not be processed ({exc.__class__.__name__}: "
                                                  f"{str(exc)[:200]})")
        results.append(result)
        if on_progress:
            on_progress(number, len(uploads), name)
    return results
