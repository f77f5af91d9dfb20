"""The data path wired together: uploaded bytes → decoded photo → regions → predictions → store.

Used by the Recognize page and the CLI alike. Each photo is decoded once; its regions are cropped from that one
decoded image and classified in batches. The next photo is decoded and cut on a second thread while the model runs
on this one. Each file succeeds or fails on its own: a bad file becomes a message naming it, and the batch goes on.
"""
from __future__ import annotations

import contextlib
import json
import platform
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from PIL import Image
from sqlalchemy.engine import Engine

import shelf
from shelf.access import LOCAL, Identity, require
from shelf.ingest.auto import AutoParams
from shelf.ingest.boxfiles import BoxImport, boxes_for_photo
from shelf.ingest.images import ImageError, Skipped, clean_filename, decode_image, sha256_hex
from shelf.ingest.overlay import preview
from shelf.ingest.regions import MAX_STORED_TOP_K, Box, RegionMode, parse_region_mode
from shelf.recognition import stages
from shelf.recognition.catalog import DEFAULT_THRESHOLD, CatalogIndex
from shelf.recognition.classify import DEFAULT_TOP_K, Prediction
from shelf.recognition.detector import DetectorInfo, resolve_detector
from shelf.recognition.detector import provenance as detector_provenance
from shelf.recognition.inputs import preprocessing_provenance
from shelf.recognition.model import LoadedModel, torch_version, torchvision_version
from shelf.recognition.stages import (
    crops,  # noqa: F401  (moved to the stages; benchmarks know it here)
    find_regions,
)
from shelf.storage import profiles, sku_matches, store

if TYPE_CHECKING:  # the price modules load only when prices are read or shown: no cost without them
    from shelf.ingest.prices import ShelfLabel


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
    gaps: list[Box] = field(default_factory=list)  # empty stretches of shelf (auto mode): not classified
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # things the user should know that did not stop the photo
    size: tuple[int, int] = (0, 0)  # of the decoded (EXIF-rotated) photo; boxes are in these pixels
    preview: Image.Image | None = None  # at most overlay.PREVIEW_SIDE pixels: thumbnails, overlays, region crops
    recognized_again: bool = False  # a stored photo's regions replaced by this run's (the old ones kept as history)
    skipped: bool = False  # read, but left out by this run (`error` says why): not a broken file
    regions_total: int | None = None  # of a stored result read one page at a time: all its regions (None: `regions`)
    labels: list[ShelfLabel] = field(default_factory=list)  # shelf-edge price labels; facings are region indices
    prices_read: bool = False  # the labels were looked for (so none found means none there)

    @property
    def ok(self) -> bool:
        return self.error is None

    def label_note(self, index: int) -> str:
        """What the shelf-edge label under region `index` says, for the region inspector ("": prices not read)."""
        if not self.prices_read:
            return ""
        tied = sorted((lb for lb in self.labels if index in lb.facings), key=lambda lb: -lb.confidence)
        if not tied:
            return "none found under this facing"
        best = tied[0]
        price = best.price.text() if best.price else "price unreadable"
        return f"{price} · read “{best.text}”, {best.confidence:.0%}"


def run_provenance(loaded: LoadedModel, region_mode: str, top_k: int, crop_mode: str = "center",
                   catalog: dict | None = None, detector: dict | None = None, recognized_again: bool = False,
                   region_profile: dict | None = None, prices: dict | None = None) -> dict:
    """What a run records. `recognized_again`: its regions replace those of photos that were stored before;
    `region_profile`: auto's profile(s) (stages.Settings.profile_provenance); `prices`: how shelf-edge prices were
    read (shelf.recognition.prices.provenance), when they were."""
    w = loaded.weights
    return {"weights_sha256": w.sha256, "weights_source": w.source, "weights_verified": w.verified,
            "weights_untrained": w.untrained, "torch_version": torch_version(),
            "torchvision_version": torchvision_version(), "shelf_version": shelf.__version__,
            "preprocessing": {**preprocessing_provenance(crop_mode), "python": platform.python_version(),
                              "catalog": catalog, **({"detector": detector} if detector else {}),
                              **({"region_profile": region_profile} if region_profile else {}),
                              **({"recognized_again": True} if recognized_again else {}),
                              **({"prices": prices} if prices else {})},
            "backend": loaded.backend_name, "region_mode": region_mode, "top_k": top_k}


def catalog_provenance(settings: stages.Settings) -> dict | None:
    """How SKUs were matched, for the run's provenance (None: they were not)."""
    if not settings.matching:
        return None
    return {"skus": settings.catalog.size, "references": len(settings.catalog.references), "method": "knn",
            "threshold": settings.catalog_threshold,
            "embedding": "L2-normalised 512-d pooled features, same preprocessing"}


def stored_result(engine: Engine, name: str, photo_id: int, page: range | None = None, top_k: int = MAX_STORED_TOP_K
                  ) -> PhotoResult:
    """A stored photo's current regions at the positions in `page` (all: None), each with its top `top_k`
    predictions: what a reader gets, however many a photo stored before Shelf capped them."""
    frame = store.predictions_frame(engine, photo_ids=[photo_id], positions=page, max_rank=top_k)
    matches = sku_matches.current_sku_matches(engine, photo_id)
    result = PhotoResult(name=name, photo_id=photo_id, already_stored=True, regions_total=len(matches))
    regions: dict[int, RegionResult] = {}
    for row in frame.itertuples(index=False):  # by position, then rank
        region = regions.get(row.position)
        if region is None:
            region = regions[row.position] = RegionResult(Box(int(row.x1), int(row.y1), int(row.x2), int(row.y2)),
                                                          [], *matches.get(row.position, (None, None)))
        region.predictions.append(Prediction(int(row.rank), int(row.class_index), row.label, float(row.probability)))
    result.regions = list(regions.values())
    if not frame.empty:
        result.sha256 = frame.iloc[0].sha256
        index_of = {int(r): i for i, r in enumerate(frame.drop_duplicates("position")["region_id"])}
        from shelf.storage.prices import scanned
        result.labels = stored_labels(engine, photo_id, index_of)
        result.prices_read = scanned(engine, photo_id)
    return result


def stored_labels(engine: Engine, photo_id: int, index_of: dict[int, int]) -> list[ShelfLabel]:
    """A stored photo's current labels, their facings as indices into its regions (`index_of`: region id →)."""
    from decimal import Decimal

    from shelf.ingest.prices import Price, ShelfLabel
    from shelf.storage.prices import labels_frame
    return [ShelfLabel(Box(int(r.x1), int(r.y1), int(r.x2), int(r.y2)),
                       None if r.price is None or r.price != r.price else Price(Decimal(str(r.price)), int(r.quantity),
                                                                                r.per), r.text,
                       float(r.confidence), tuple(index_of[i] for i in r.region_ids if i in index_of))
            for r in labels_frame(engine, [photo_id]).itertuples()]


def mode_provenance(mode: RegionMode, detector: DetectorInfo | None) -> tuple[str, dict | None]:
    """(region mode text, detector description) as a run records them: a detector by its sha256, not its path."""
    if mode.kind != "detector" or detector is None:
        return mode.text, None
    return replace(mode, source=detector.sha256).text, detector_provenance(detector, mode.conf, mode.iou, mode.tiles)


def recognize(loaded: LoadedModel, engine: Engine, uploads: Iterable[Upload], context: store.Context,
              region_mode: str | RegionMode = "whole", top_k: int = DEFAULT_TOP_K, crop_mode: str = "center",
              box_file: BoxImport | None = None, catalog: CatalogIndex | None = None,
              catalog_threshold: float = DEFAULT_THRESHOLD, detector: DetectorInfo | None = None,
              on_progress: Callable[[int, int, str], None] | None = None,
              previews: int | None = None, again: bool = False, runs: dict[str, int] | None = None,
              by: Identity = LOCAL, prices: bool = False, total: int | None = None) -> list[PhotoResult]:
    """Decode, split into regions, classify (and match against the SKU catalog, if given) and store each upload.
    `on_progress(done, total, name)` is called as each file starts (with its name) and once at the end (name "").
    A photo already in the store (same bytes) is not classified again — its stored result is returned, marked
    `already_stored` — unless `again`: then it is recognised with these settings, its new regions count from now on
    (the old ones stay as history) and its store/aisle/date become `context`. A detector mode uses `detector`, or
    resolves its FILE before any work (DetectorError if it cannot); auto resolves its region profile(s) likewise
    (ProfileError for an unknown one). `previews`: keep the preview image of only that
    many of the most recent results (a preview is up to ~5 MB; None keeps all). `runs`: run ids by provenance, kept
    across calls by a caller that recognizes one photo per call (the HTTP API), so equal settings share one run.
    `prices`: also read the shelf-edge price labels and tie them to the facings they price. `uploads` may be any
    iterable, read one ahead: the next photo is decoded and cut on a second thread while this one is classified
    and stored (`total`: their number, for `on_progress`, when `uploads` has no len())."""
    require(by, "edit_photo" if again else "recognize")
    mode = parse_region_mode(region_mode) if isinstance(region_mode, str) else region_mode
    preprocessing_provenance(crop_mode)  # an unknown crop mode fails here, before any work
    if mode.kind == "detector" and detector is None:
        detector = resolve_detector(mode.source)
    if prices:
        from shelf.recognition.prices import available, provenance
        if problem := available():
            raise RuntimeError(problem)
    auto_profile, store_profiles = profiles.profiles_for(engine, mode.source) if mode.kind == "auto" else (None, {})
    settings = stages.Settings("", mode.text, crop_mode, top_k, box_file, catalog, catalog_threshold,
                               backend=getattr(loaded.backend, "kind", "eager"), detector=detector,
                               auto_profile=auto_profile, store_profiles=store_profiles, prices=prices)
    classifier = stages.Classifier(settings, loaded)
    row_context = {"store": context.store, "aisle": context.aisle,
                   "captured_on": context.captured_on.isoformat() if context.captured_on else ""}
    results: list[PhotoResult] = []
    total = len(uploads) if total is None else total
    pending = iter(uploads)
    with_preview = previews != 0  # the CLI and the API show none

    def prepared() -> tuple[str, Future] | None:
        """The next upload's name and its decoding and cutting (unless stored and not `again`), started on the
        decode thread; None when there are no more. Reads the next upload (a CLI file) only now."""
        upload = next(pending, None)
        if upload is None:
            return None
        name = clean_filename(upload.name)
        try:
            existing = store.find_photo(engine, sha256_hex(upload.data))  # here, on the caller's connection
        except Exception as exc:  # told when the photo's turn comes, like any other failure of it
            failure = Future()
            failure.set_exception(exc)
            return name, failure
        return name, decoding.submit(_prepare, upload, name, existing, settings, row_context, again, with_preview)

    with ThreadPoolExecutor(1, thread_name_prefix="shelf-decode") as decoding:
        ahead = prepared()
        while ahead is not None:
            (name, current), ahead = ahead, None
            if on_progress:
                on_progress(len(results), total, name)
            try:
                photo = current.result()
                ahead = prepared()  # the next photo is decoded and cut while this one is classified and stored
                if photo.existing is not None and not again:
                    result = stored_result(engine, name, photo.existing)
                else:
                    (row,) = stages.rows(classifier(stages.batch([photo.row])))
                    if row["status"] != stages.FAILED and not settings.run_id:  # recorded with its first photo
                        mode_text, detector_info = mode_provenance(mode, detector)
                        settings = replace(settings, run_id=_run_id(engine, run_provenance(
                            loaded, mode_text, top_k, crop_mode, catalog_provenance(settings), detector_info,
                            recognized_again=again, region_profile=settings.profile_provenance(),
                            prices=provenance() if prices else None), runs))
                    result = _stored_result(row, engine, settings) if photo.existing is None else \
                        _replaced_result(row, engine, settings, photo.existing, context, by)
                result.size, result.preview = photo.size, photo.preview
            except ImageError as exc:
                result = PhotoResult(name=name, error=str(exc), skipped=isinstance(exc, Skipped))
            except Exception as exc:  # one file's failure must not end the batch or lose what is stored
                result = PhotoResult(name=name, error=f"{name}: could not be processed ({exc.__class__.__name__}: "
                                                      f"{str(exc)[:200]})")
            results.append(result)
            if previews is not None and len(results) > previews:
                results[-previews - 1].preview = None
            ahead = ahead or prepared()  # (when this photo failed before its next was started)
            current = photo = None  # its model inputs go before the next photo's are made
    if on_progress:
        on_progress(len(results), total, "")
    return results


@dataclass
class _Prepared:
    """One upload as the decode thread hands it on: the decoded photo itself stays there."""
    existing: int | None  # the stored photo with the same bytes
    size: tuple[int, int]
    preview: Image.Image | None
    row: dict | None  # cut into regions with their model inputs (None: stored, and not recognized again)


def _prepare(upload: Upload, name: str, existing: int | None, settings: stages.Settings, row_context: dict,
             again: bool, with_preview: bool) -> _Prepared:
    """Decode and cut one upload and keep its bytes: the part of a photo's work that needs no model, done on the
    decode thread while the caller's thread classifies and stores the photo before it (ONNX Runtime and Pillow let
    go of the GIL). Raises ImageError for a bad file."""
    decoded = stages.decode_for(upload.data, name, settings)  # at a reduced scale only in fast mode
    row = None
    if existing is None or again:
        row = stages.cut(stages.new_row({"source": name, **row_context}), decoded, upload.data, settings)
    if existing is None:  # the photo's bytes are written (and synced) here rather than by storing, on the model's
        # thread; a file without a row is harmless and reused. If this fails, storing tries again and says why.
        with contextlib.suppress(OSError):
            store.keep_photo_bytes(upload.data, store.photo_file(decoded.sha256, decoded.format))
    return _Prepared(existing, (decoded.width, decoded.height), preview(decoded.image) if with_preview else None,
                     row)


def _run_id(engine: Engine, provenance: dict, runs: dict[str, int] | None) -> int:
    """A new run for `provenance`, or the one `runs` already holds for it."""
    if runs is None:
        return store.create_run(engine, provenance)
    key = json.dumps(provenance, sort_keys=True, default=str)
    with _RUNS_LOCK:  # threads of one server share `runs`: the first photo of a setting creates its run, once
        if key not in runs:
            runs[key] = store.create_run(engine, provenance)
        return runs[key]


_RUNS_LOCK = threading.Lock()


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
                    on_progress: Callable[[int, int, str], None] | None = None,
                    auto_params: AutoParams = AutoParams()) -> list[RegionComparison]:
    """Each photo's regions under a mode and its true boxes from `truth` (matched by file name, like boxes:FILE).
    A photo the truth file has no boxes for, or that cannot be read, gets an error and the rest go on.
    `auto_params`: the region profile's, for auto."""
    mode = parse_region_mode(region_mode) if isinstance(region_mode, str) else region_mode
    if mode.kind == "detector" and detector is None:
        detector = resolve_detector(mode.source)
    results = []
    for number, upload in enumerate(uploads, start=1):
        name = clean_filename(upload.name)
        try:
            decoded = decode_image(upload.data, name)
            image = decoded.image
            true_boxes, notes = boxes_for_photo(truth, name, image.width, image.height, decoded.sha256)
            if not true_boxes:
                raise Skipped(name, f"skipped: the truth file {truth.source} has no boxes for this photo")
            found = find_regions(mode, image, name, box_file, detector, decoded.sha256, auto_params=auto_params)
            result = RegionComparison(name, found.boxes, found.scores, true_boxes, notes + found.notes,
                                      size=image.size, preview=preview(image) if with_preview else None)
        except ImageError as exc:
            result = RegionComparison(name, error=str(exc))
        except Exception as exc:  # one file's failure must not end the batch
            result = RegionComparison(name, error=f"{name}: could not be processed ({exc.__class__.__name__}: "
                                                  f"{str(exc)[:200]})")
        results.append(result)
        decoded = image = None  # gone before the next photo is decoded
        if on_progress:
            on_progress(number, len(uploads), name)
    return results


def _replaced_result(row: dict, engine: Engine, settings: stages.Settings, photo_id: int,
                     context: store.Context, by: Identity) -> PhotoResult:
    """A stored photo recognised again: its regions replaced by this run's, its context by this one (one
    transaction, audited as `by`)."""
    if row["status"] == stages.FAILED:
        return PhotoResult(name=row["name"], error=f"{row['name']}: {row['error']}")
    matched = stages.matches(row, settings)
    store.replace_regions(engine, photo_id, settings.run_id, stages.boxes(row), stages.classifications(row), matched,
                          gaps=stages.boxes(row, "gaps"), context=context, by=by)
    labels = stages.store_prices(row, engine, photo_id, settings.run_id) if settings.prices else []
    return PhotoResult(name=row["name"], photo_id=photo_id, sha256=row["sha256"], recognized_again=True,
                       labels=labels, prices_read=settings.prices,
                       gaps=stages.boxes(row, "gaps"),
                       notes=[note for note in row["notes"].split("\n") if note],
                       regions=[RegionResult(box, c.predictions, *m) for box, c, m in
                                zip(stages.boxes(row), stages.classifications(row),
                                    matched or [(None, None)] * len(row["boxes"]))])


def _stored_result(row: dict, engine: Engine, settings: stages.Settings) -> PhotoResult:
    """Store one classified row and say what became of it."""
    outcome = row if row["status"] == stages.FAILED else stages.store_row(row, engine, settings)
    if outcome["status"] == stages.FAILED:
        return PhotoResult(name=row["name"], error=f"{row['name']}: {outcome['error']}")
    matched = stages.matches(row, settings) or [(None, None)] * len(row["boxes"])
    fresh = outcome["status"] != stages.ALREADY_STORED
    return PhotoResult(name=row["name"], photo_id=outcome["photo_id"], sha256=row["sha256"],
                       already_stored=not fresh, prices_read=settings.prices and fresh,
                       labels=stages.price_labels(row) if settings.prices and fresh else [],
                       notes=[note for note in row["notes"].split("\n") if note],
                       regions=[RegionResult(box, c.predictions, *m) for box, c, m in
                                zip(stages.boxes(row), stages.classifications(row), matched)],
                       gaps=stages.boxes(row, "gaps"))
