"""Recognition as three stages: plain callables on plain data, so that any engine can run them.

  prepare     a job (where a photo is, its context) → read, hash, skip if stored, decode, regions, and the uint8
              model inputs of its crops. CPU only, no model.
  Classifier  a callable class that holds the model (loaded once, in `__init__`): a batch of prepared photos →
              top-k, probabilities and embeddings of every crop (and the SKU each matches, with a catalog).
  store_row   one classified photo → one transaction in the store (exactly once by content hash).

A row is a dict of str, int, float, bytes and numpy arrays: what Ray Data carries between workers and machines
(`shelf.recognition.engines` runs the stages on Ray or in this process), and what `pipeline.recognize` uses for the app.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

import numpy as np
from PIL import Image
from sqlalchemy.engine import Engine

from shelf.ingest.auto import AutoParams, auto_layout, regions_for
from shelf.ingest.boxfiles import BoxImport, boxes_for_photo
from shelf.ingest.images import (
    DecodedImage,
    ImageError,
    Skipped,
    clean_filename,
    decode_image,
    sha256_hex,
)
from shelf.ingest.overlay import PREVIEW_SIDE
from shelf.ingest.regions import (
    Box,
    RegionMode,
    check_stored_top_k,
    parse_region_mode,
    reading_order,
    sized_regions,
    stored_regions_problem,
    whole_image,
)
from shelf.ingest.sources import SourceError, read_source
from shelf.recognition.catalog import DEFAULT_THRESHOLD, CatalogIndex, match
from shelf.recognition.classify import (
    DEFAULT_TOP_K,
    Classification,
    ClassifiedArrays,
    classify_inputs,
)
from shelf.recognition.detector import DetectorInfo, detect, resolve_detector
from shelf.recognition.inputs import model_input, region_input
from shelf.recognition.model import CATEGORIES, LoadedModel
from shelf.storage import store
from shelf.storage.profiles import DEFAULT_PROFILE, RegionProfile
from shelf.text import clean_text

PENDING, STORED, ALREADY_STORED, FAILED = "pending", "stored", "already stored", "error"
INPUT_SHAPE = (224, 224, 3)


@dataclass(frozen=True)
class Settings:
    """What the stages need besides the rows. Picklable: an engine ships it to every worker once."""

    db_url: str
    region_mode: str = "whole"
    crop_mode: str = "center"
    top_k: int = DEFAULT_TOP_K
    box_file: BoxImport | None = None
    catalog: CatalogIndex | None = None  # None, or empty: no SKU matching
    catalog_threshold: float = DEFAULT_THRESHOLD
    backend: str = "onnx"  # the backend kind every classifier must run (the run's provenance says so)
    weights_sha256: str = ""  # the weights every classifier must load ("" in-process, where the model is given)
    run_id: int = 0
    db_pool: int = 1  # connections each worker process may hold
    environment: tuple[tuple[str, str], ...] = ()  # SHELF_* settings for workers (see `adopt_environment`)
    detector: DetectorInfo | None = None  # for a detector: region mode (resolved before the batch starts)
    auto_profile: RegionProfile | None = None  # for auto:PROFILE (resolved before the batch starts)
    store_profiles: dict[str, RegionProfile] = field(default_factory=dict)  # for plain auto: per store, if set
    prices: bool = False  # also read the shelf-edge price labels (shelf.recognition.prices)

    def __post_init__(self):
        check_stored_top_k(self.top_k)  # these settings store what they classify: ValueError before any work

    @property
    def mode(self) -> RegionMode:
        return parse_region_mode(self.region_mode)

    def profile_for(self, store_name: str) -> RegionProfile:
        """The region profile auto uses for a photo of `store_name`: the one named, the store's, or the default."""
        return self.auto_profile or self.store_profiles.get(clean_text(store_name), DEFAULT_PROFILE)

    def profile_provenance(self) -> dict | None:
        """Which region profiles a run in auto mode uses, as its provenance records them (None: not auto)."""
        if self.mode.kind != "auto":
            return None
        if self.auto_profile:
            return self.auto_profile.provenance()
        return {**DEFAULT_PROFILE.provenance(),
                "stores": {store: profile.provenance() for store, profile in sorted(self.store_profiles.items())}}

    @property
    def matching(self) -> bool:
        return self.catalog is not None and self.catalog.size > 0


@dataclass(frozen=True)
class PhotoHeader:
    """What the store keeps of a decoded photo (DecodedImage without the pixels, which stay with the decoder)."""

    name: str
    sha256: str
    format: str
    width: int
    height: int
    n_bytes: int


def adopt_environment(settings: Settings) -> None:
    """Take the batch's SHELF_* settings (data dir, weights file, backend) into this worker process. A Ray worker
    runs one task at a time and may serve batches started with other settings, so this happens on every call;
    carrying them in the settings instead of a Ray runtime_env lets every batch reuse the cluster's warm workers."""
    if not settings.environment:  # in-process: the process's own environment is the batch's
        return
    wanted = dict(settings.environment)
    for key in [k for k in os.environ if k.startswith("SHELF_") and k not in wanted]:
        del os.environ[key]
    os.environ.update(wanted)


@cache
def worker_store(url: str, pool_size: int) -> Engine:
    """One engine per worker process and store, its connection pool bounded by `pool_size`."""
    return store.open_store(url, pool_size=pool_size)


def where_am_i() -> str:
    """The Ray node this runs on (its id), or this machine's name outside Ray."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return socket.gethostname()


# ---------------------------------------------------------------------------------------------------------------
# Stage 1: read, decode, regions, model inputs


def new_row(job: Mapping) -> dict:
    """A row with every column present (Ray Data wants one schema per block), for one job."""
    return {"source": str(job["source"]), "line": int(job.get("line", 0)), "store": str(job.get("store", "")),
            "aisle": str(job.get("aisle", "")), "captured_on": str(job.get("captured_on", "")),
            "name": clean_filename(str(job["source"]).split("?", 1)[0]), "status": PENDING, "error": "",
            "photo_id": -1, "sha256": "", "format": "", "width": 0, "height": 0, "n_bytes": 0, "data": b"",
            "notes": "", "boxes": np.zeros((0, 4), np.int32), "gaps": np.zeros((0, 4), np.int32),
            "inputs": np.zeros((0, *INPUT_SHAPE), np.uint8), "labels": "[]", "price_seconds": -1.0}


def crop(image: Image.Image, box: Box) -> Image.Image:
    """A region of `image`; the whole photo is the photo itself, not a copy."""
    return image if box.as_tuple == (0, 0, image.width, image.height) else image.crop(box.as_tuple)


def crops(image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
    return [crop(image, box) for box in boxes]


class FoundRegions(NamedTuple):
    boxes: list[Box]
    notes: list[str]  # for the user
    scores: list[float] | None = None  # one per box, from modes that score their boxes (detector)
    gaps: tuple[Box, ...] = ()  # empty stretches of shelf (auto mode): stored as gap regions, never classified


def find_regions(mode: RegionMode, image: Image.Image | None, name: str, box_file: BoxImport | None,
                 detector: DetectorInfo | None = None, sha256: str | None = None,
                 size: tuple[int, int] | None = None, auto_params: AutoParams = AutoParams()) -> FoundRegions:
    """What a region mode finds on one photo, possibly nothing. Raises ImageError when the photo cannot be done,
    Skipped when the box file has no boxes for it. `size`: the photo's own size when `image` is decoded at a
    reduced scale (or not at all, for the modes that need only the size: whole, grid, boxes). `auto_params`: the
    region profile's, for auto."""
    width, height = size or image.size
    if mode.kind == "boxes":
        if box_file is None:
            raise ImageError(name, "region mode 'boxes' needs a box file")
        boxes, notes = boxes_for_photo(box_file, name, width, height, sha256)
        if not boxes:
            raise Skipped(name, f"skipped: the box file {box_file.source} has no usable boxes for this photo")
        return FoundRegions([boxes[i] for i in reading_order(boxes)], notes)  # numbered as a reader looks
    if mode.kind == "detector":
        boxes, scores = detect(detector or resolve_detector(mode.source), image, mode.conf, mode.iou, mode.tiles)
        return FoundRegions(boxes, [], scores)
    if mode.kind == "auto":
        layout = auto_layout(image, auto_params)
        return FoundRegions(layout.facings, [], None, tuple(layout.gaps))
    sized = sized_regions(mode, width, height)
    return FoundRegions(regions_for(mode, image) if sized is None else sized, [])


def photo_regions(mode: RegionMode, image: Image.Image, name: str, box_file: BoxImport | None,
                  detector: DetectorInfo | None = None, sha256: str | None = None,
                  size: tuple[int, int] | None = None, auto_params: AutoParams = AutoParams()) -> FoundRegions:
    """The regions to classify on one photo: what the mode finds, or the whole photo (with a note) if nothing.
    ImageError when it finds more than a photo may store."""
    found = find_regions(mode, image, name, box_file, detector, sha256, size, auto_params)
    too_many = stored_regions_problem(len(found.boxes) + len(found.gaps))
    if too_many:
        raise ImageError(name, too_many)
    if found.boxes:
        return found
    why = f"the detector found no products at conf {mode.conf:g}" if mode.kind == "detector" \
        else "no shelf rows found"  # a close-up of one product, most likely
    return FoundRegions(whole_image(*(size or image.size)), [f"{why}; the whole photo was classified"],
                        gaps=found.gaps)


SMALL_CROP = 64  # px on the short side: below this a crop is blown up ≥ 3.5× to the model's 224 px


def small_crop_notes(size: tuple[int, int], boxes: Sequence[Box]) -> list[str]:
    """A warning when the photo, or some of its regions, is too small for a prediction to mean much."""
    small = sum(min(b.width, b.height) < SMALL_CROP for b in boxes)
    if not small:
        return []
    if min(size) < SMALL_CROP:
        return [f"tiny image ({size[0]}×{size[1]} px): blown up to the model's 224 px, its predictions are not "
                "reliable whatever their confidence"]
    return [f"{small} of {len(boxes)} region(s) are under {SMALL_CROP} px on a side: blown up to the model's 224 px, "
            "their predictions are not reliable whatever their confidence"]


# A region must keep this many pixels on its short side at a reduced scale, so the model's Resize(256) enlarges it at
# most 1.07×. On the 12 real shelf photos (benchmarks/drafts.py) regions kept at 240–248 px moved fast mode's
# probabilities no more than those kept at ≥ 256 px (max |Δp| ≤ 1e-2, top-1 unchanged), and 4/8 has SIMD where 5/8
# has none: a 12 MP grid:5x8 photo decodes in ~45 ms at 4/8 against ~78 ms at 5/8.
DRAFT_MIN_SIDE = 240
DRAFT_KINDS = ("whole", "grid", "boxes")  # the modes whose regions are known from the photo's size alone


def decode_for(data: bytes, name: str, settings: Settings) -> DecodedImage:
    """The photo decoded for these settings. In fast mode, a JPEG whose regions all keep ≥ DRAFT_MIN_SIDE pixels
    on their short side at a reduced scale (M/8, JPEG's scaled IDCT; and the preview its 1280 px) is decoded at the
    smallest such scale: a 12 MP photo cut into a 5×8 grid decodes at 4/8. The faithful backends always decode the
    full photo: drafting moves probabilities by more than their 1e-4 fidelity bound (tests/test_backends.py)."""
    if settings.backend != "int8" or settings.mode.kind not in DRAFT_KINDS:
        return decode_image(data, name)

    def eighths(width: int, height: int) -> int:
        try:
            boxes = find_regions(settings.mode, None, name, settings.box_file, size=(width, height)).boxes
        except ImageError:
            return 8  # told properly when the photo is cut
        short = min((min(b.width, b.height) for b in boxes), default=min(width, height))
        return next(m for m in range(1, 9)
                    if m == 8 or (short * m // 8 >= DRAFT_MIN_SIDE and max(width, height) * m // 8 >= PREVIEW_SIDE))

    return decode_image(data, name, draft_eighths=eighths)


def region_boxes(decoded: DecodedImage, boxes: Sequence[Box]) -> list[Box]:
    """`boxes` (in the photo's own pixels) in the pixels of the decoded image, at whatever scale it was decoded."""
    image = decoded.image
    if not decoded.full_size:
        return list(boxes)
    sx, sy = image.width / decoded.width, image.height / decoded.height
    return [Box(round(b.x1 * sx), round(b.y1 * sy), round(b.x2 * sx), round(b.y2 * sy)) for b in boxes]


def region_inputs(decoded: DecodedImage, boxes: Sequence[Box], settings: Settings) -> np.ndarray:
    """The model inputs of the regions' crops: as torchvision makes them (model_input) on the faithful backends;
    in fast mode, straight from the photo (classify.region_input), with no copy of each region."""
    image = decoded.image
    if settings.backend == "int8" and settings.crop_mode == "center":
        return np.stack([region_input(image, box.as_tuple, decoded.scale) for box in boxes])
    return np.stack([model_input(crop(image, box), settings.crop_mode) for box in region_boxes(decoded, boxes)])


def cut(row: dict, decoded: DecodedImage, data: bytes, settings: Settings) -> dict:
    """`row` with the decoded photo's regions and the model inputs of their crops. Raises ImageError."""
    boxes, notes, _, gaps = photo_regions(settings.mode, decoded.image, decoded.name, settings.box_file,
                                          settings.detector, decoded.sha256, (decoded.width, decoded.height),
                                          settings.profile_for(row.get("store", "")).params)
    notes = [*notes, *small_crop_notes((decoded.width, decoded.height), boxes)]
    inputs = region_inputs(decoded, boxes, settings)
    row = {**row, "sha256": decoded.sha256, "format": decoded.format, "width": decoded.width,
           "height": decoded.height, "n_bytes": decoded.n_bytes, "data": data, "notes": "\n".join(notes),
           "boxes": box_array(boxes), "gaps": box_array(gaps), "inputs": inputs}
    return read_prices(row, decoded, boxes, settings.mode) if settings.prices else row


FACING_KINDS = ("auto", "boxes", "detector")  # region modes whose regions are products standing in shelf rows


def read_prices(row: dict, decoded: DecodedImage, boxes: Sequence[Box], mode: RegionMode) -> dict:
    """`row` with the photo's price labels read (not yet tied to facings: that needs the products, stage 3). The
    labels are looked for under rows of facings; a whole photo or a grid's tiles are no facings, so such photos
    are searched whole."""
    from shelf.ingest.prices import labels_json
    from shelf.recognition.prices import read_labels
    facings = boxes if mode.kind in FACING_KINDS else []
    labels, stats = read_labels(decoded.image, facings, (decoded.width, decoded.height))
    return {**row, "labels": labels_json(labels), "price_seconds": stats.seconds}


def price_labels(row: Mapping) -> list:
    """A classified row's labels (shelf.ingest.prices.ShelfLabel), each tied to the facing group it prices (same
    top-1 class, or SKU when matched). The price modules are imported only when prices are read."""
    from shelf.ingest.prices import labels_from_json
    from shelf.recognition.prices import assign
    tops = [int(i[0]) for i in np.asarray(row["indices"]).reshape(len(row["boxes"]), -1)] if len(row["boxes"]) else []
    skus = list(row["sku_ids"]) if "sku_ids" in row else [-1] * len(tops)
    products = [("sku", int(s)) if s >= 0 else ("class", c) for c, s in zip(tops, skus)]
    return assign(labels_from_json(row["labels"]), boxes(row), products)


def store_prices(row: Mapping, engine: Engine, photo_id: int, run_id: int) -> list:
    """Tie a row's labels to facings and store them for the photo's regions of `run_id`."""
    from shelf.storage.prices import save_labels
    labels = price_labels(row)
    save_labels(engine, photo_id, run_id, labels, float(row["price_seconds"]))
    return labels


def box_array(boxes: Sequence[Box]) -> np.ndarray:
    return np.array([b.as_tuple for b in boxes], np.int32).reshape(-1, 4)


def prepare(job: Mapping, engine: Engine, settings: Settings) -> dict:
    """Stage 1. A photo already in the store (same bytes) is neither decoded nor classified again."""
    row = new_row(job)
    try:
        data = read_source(row["source"])
        existing = store.find_photo(engine, sha256_hex(data))
        if existing is not None:
            return {**row, "status": ALREADY_STORED, "photo_id": int(existing), "sha256": sha256_hex(data)}
        return cut(row, decode_for(data, row["name"], settings), data, settings)
    except SourceError as exc:
        return failed(row, str(exc))
    except ImageError as exc:
        return failed(row, exc.problem)
    except Exception as exc:  # one photo's failure must not end the batch
        return failed(row, f"could not be prepared ({exc.__class__.__name__}: {str(exc)[:200]})")


def failed(row: dict, problem: str) -> dict:
    """The row of a photo that cannot be done; `problem` says why (the source is in the row)."""
    return {**row, "status": FAILED, "error": problem, "data": b"", "boxes": np.zeros((0, 4), np.int32),
            "gaps": np.zeros((0, 4), np.int32), "inputs": np.zeros((0, *INPUT_SHAPE), np.uint8), "labels": "[]"}


# ---------------------------------------------------------------------------------------------------------------
# Stage 2: classification, one model per worker


def load_worker_model(settings: Settings) -> LoadedModel:
    """The model this worker runs: the run's weights (checked by hash) on the run's backend, converted once."""
    from shelf.recognition.backends import with_backend
    from shelf.recognition.model import load_model
    adopt_environment(settings)
    loaded, status = load_model(download=False)
    if loaded is None:
        raise RuntimeError(f"worker on {socket.gethostname()}: ResNet-18 weights unavailable: {status.problem}")
    if settings.weights_sha256 and loaded.weights.sha256 != settings.weights_sha256:
        raise RuntimeError(f"worker on {socket.gethostname()}: its weights {loaded.weights.path} (sha256 "
                           f"{loaded.weights.sha256[:12]}…) are not the batch's ({settings.weights_sha256[:12]}…); "
                           "give every node the same SHELF_WEIGHTS file")
    engine = worker_store(settings.db_url, settings.db_pool) if settings.backend == "int8" else None
    loaded = with_backend(loaded, settings.backend, engine)
    if loaded.backend.kind != settings.backend:
        raise RuntimeError(f"worker on {socket.gethostname()}: backend {settings.backend} could not be built here "
                           f"(got {loaded.backend_name}); results would not match the run's provenance")
    return loaded


class Classifier:
    """Stage 2, in Ray Data's batch-inference shape: the model is loaded once per worker in `__init__` (or given,
    in-process), and each call classifies a batch of prepared photos. A batch is a dict of columns (a numpy
    array or list per column, one entry per photo); the result adds `indices`, `probabilities`, `embeddings`,
    `sku_ids` (-1: unknown) and `sku_similarity` per photo, and drops the model inputs."""

    def __init__(self, settings: Settings, loaded: LoadedModel | None = None):
        self.settings = settings
        self.loaded = loaded or load_worker_model(settings)
        self.node = where_am_i()

    def __call__(self, batch: dict) -> dict:
        inputs = list(batch["inputs"])
        counts = [len(x) for x in inputs]
        out = {key: value for key, value in batch.items() if key != "inputs"}
        try:
            columns = self.classify(np.concatenate(inputs) if sum(counts) else np.zeros((0, *INPUT_SHAPE), np.uint8))
        except Exception as exc:  # a batch the model cannot do fails its photos, not the whole run
            problem = f"could not be classified ({exc.__class__.__name__}: {str(exc)[:200]})"
            out["error"] = np.array([problem if s == PENDING else e for s, e in zip(batch["status"], batch["error"])],
                                    dtype=object)
            out["status"] = np.array([FAILED if s == PENDING else s for s in batch["status"]], dtype=object)
            counts = [0] * len(counts)
            columns = self.classify(np.zeros((0, *INPUT_SHAPE), np.uint8))  # nothing to run: empty columns
        bounds = np.cumsum([0, *counts])
        for key, values in columns.items():
            out[key] = per_row([values[bounds[i]:bounds[i + 1]] for i in range(len(counts))])
        out["classified_on"] = np.array([self.node] * len(counts), dtype=object)
        return out

    def classify(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """All the crops of a batch at once → one array per output, a row per crop."""
        arrays = classify_inputs(self.loaded, inputs, self.settings.top_k)
        sku_ids = np.full(len(inputs), -1, np.int64)
        similarity = np.zeros(len(inputs), np.float32)
        if self.settings.matching and len(inputs):
            found = match(self.settings.catalog, arrays.embeddings, self.settings.catalog_threshold)
            sku_ids = np.array([-1 if s is None else s for s in found.sku_ids], np.int64)
            similarity = np.asarray(found.similarity, np.float32)
        return {"indices": arrays.indices, "probabilities": arrays.probabilities, "embeddings": arrays.embeddings,
                "sku_ids": sku_ids, "sku_similarity": similarity}


def batch(rows: Sequence[Mapping]) -> dict[str, list]:
    """Rows → the column dict a Classifier takes (what Ray Data hands it, built in-process)."""
    return {key: [row[key] for row in rows] for key in rows[0]}


def rows(columns: Mapping) -> list[dict]:
    """A column dict → rows."""
    n = len(next(iter(columns.values())))
    return [{key: values[i] for key, values in columns.items()} for i in range(n)]


def per_row(arrays: list[np.ndarray]) -> np.ndarray:
    """A column holding one array per row (of varying length)."""
    column = np.empty(len(arrays), dtype=object)
    column[:] = arrays
    return column


# ---------------------------------------------------------------------------------------------------------------
# Stage 3: store


def classifications(row: Mapping) -> list[Classification]:
    return ClassifiedArrays(np.asarray(row["indices"]), np.asarray(row["probabilities"], np.float32),
                            np.asarray(row["embeddings"], np.float32)).classifications(CATEGORIES)


def matches(row: Mapping, settings: Settings) -> list[tuple[int | None, float]] | None:
    if not settings.matching:
        return None
    return [(None if sku < 0 else int(sku), float(similarity))
            for sku, similarity in zip(row["sku_ids"], row["sku_similarity"])]


def boxes(row: Mapping, column: str = "boxes") -> list[Box]:
    """The product boxes of a row (or, with column="gaps", its empty gaps)."""
    return [Box(*map(int, b)) for b in np.asarray(row.get(column, ())).reshape(-1, 4)]


def context(row: Mapping) -> store.Context:
    import datetime as dt
    return store.Context(row["store"], row["aisle"],
                         dt.date.fromisoformat(row["captured_on"]) if row["captured_on"] else None)


RESULT_COLUMNS = ("source", "line", "name", "status", "error", "photo_id", "notes", "classified_on")


def store_row(row: Mapping, engine: Engine, settings: Settings) -> dict:
    """Stage 3: one photo in one transaction. The result is small (no pixels, no bytes): what the driver counts.
    A photo someone stored meanwhile (another batch, or this one before a worker died) counts as already stored."""
    result = {key: row.get(key, "") for key in RESULT_COLUMNS} | {
        "line": int(row["line"]), "photo_id": int(row["photo_id"]), "regions": 0, "store_seconds": 0.0,
        "stored_on": where_am_i(), "pid": os.getpid()}
    if row["status"] != PENDING:
        return result
    try:
        header = PhotoHeader(row["name"], row["sha256"], row["format"], int(row["width"]), int(row["height"]),
                             int(row["n_bytes"]))
        start = time.perf_counter()
        photo_id, created = store.save_photo(engine, settings.run_id, header, bytes(row["data"]), context(row),
                                             boxes(row), classifications(row), matches(row, settings),
                                             gaps=boxes(row, "gaps"))
        seconds = time.perf_counter() - start
    except Exception as exc:
        return result | {"status": FAILED, "error": f"could not be stored ({exc.__class__.__name__}: {str(exc)[:200]})"}
    if settings.prices and created:
        try:  # the photo stands; without its labels it reads as "prices not read", never as "label missing"
            store_prices(row, engine, photo_id, settings.run_id)
        except Exception as exc:
            result["notes"] = "\n".join(filter(None, [result["notes"], "its price labels could not be stored "
                                                       f"({exc.__class__.__name__}: {str(exc)[:200]})"]))
    return result | {"status": STORED if created else ALREADY_STORED, "photo_id": int(photo_id),
                     "regions": len(row["boxes"]), "store_seconds": seconds}
