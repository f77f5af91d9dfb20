"""SKU catalog: few-shot product recognition by ResNet-18 embedding similarity.

Each SKU has a few reference photos. Their 512-d pooled embeddings (the same preprocessing as classification) are
L2-normalised and cached in the store per weights file and crop mode. A region matches the SKU it is most similar
to — by nearest reference (`knn`) or by the SKU's mean embedding (`prototype`) — or is "unknown" when even the best
similarity is below the threshold. Matching Q regions against N references is one (Q×512)·(512×N) product.
"""
from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shelf import config
from shelf.access import LOCAL, Identity, require
from shelf.files import MB, FileTooLarge, read_bounded, size_problem
from shelf.ingest.images import MAX_BYTES, ImageError, clean_filename, decode_image
from shelf.labels import RETAIL_CATEGORIES
from shelf.recognition.model import LoadedModel
from shelf.storage import audit, rollup, sku_matches, store

if TYPE_CHECKING:  # pandas is imported where a frame is made: recognizing with a catalog needs none
    import pandas as pd

METHODS = ("knn", "prototype")
DEFAULT_THRESHOLD = 0.80
THRESHOLD_SETTING = "catalog_threshold"
MAX_REFERENCES_PER_SKU = 200


# ---------------------------------------------------------------------------------------------------------------
# Pure matching and evaluation


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class CatalogIndex:
    sku_ids: np.ndarray  # (S,) store ids, in the order of the columns of every similarity matrix
    references: np.ndarray  # (N, 512) normalised, grouped by SKU
    reference_sku: np.ndarray  # (N,) position in sku_ids of each reference
    starts: np.ndarray  # (S,) first reference of each SKU (for the per-SKU maximum)
    prototypes: np.ndarray  # (S, 512) normalised mean of each SKU's normalised references

    @property
    def size(self) -> int:
        return len(self.sku_ids)


def build_index(embeddings: np.ndarray, sku_ids: Sequence[int]) -> CatalogIndex:
    embeddings = l2_normalise(embeddings)
    sku_ids = np.asarray(sku_ids)
    order = np.argsort(sku_ids, kind="stable")
    embeddings, sku_ids = embeddings[order], sku_ids[order]
    unique, starts, reference_sku = np.unique(sku_ids, return_index=True, return_inverse=True)
    sums = np.add.reduceat(embeddings, starts, axis=0) if len(embeddings) else np.zeros((0, 512), np.float32)
    return CatalogIndex(unique, embeddings, reference_sku, starts, l2_normalise(sums))


def similarities(index: CatalogIndex, queries: np.ndarray, method: str = "knn") -> np.ndarray:
    """(Q, S) cosine similarity of each query to each SKU: one matrix product, then a per-SKU maximum."""
    queries = l2_normalise(queries)
    if method == "prototype":
        return queries @ index.prototypes.T
    if method != "knn":
        raise ValueError(f"unknown matching method {method!r}; use one of {', '.join(METHODS)}")
    return np.maximum.reduceat(queries @ index.references.T, index.starts, axis=1)


@dataclass(frozen=True)
class Matches:
    sku_ids: list[int | None]  # None: unknown
    similarity: np.ndarray  # best similarity, also for unknowns
    best_sku_ids: list[int]  # the closest SKU even when below the threshold


def match(index: CatalogIndex, queries: np.ndarray, threshold: float, method: str = "knn") -> Matches:
    if index.size == 0 or len(queries) == 0:
        return Matches([None] * len(queries), np.zeros(len(queries), np.float32), [])
    sims = similarities(index, queries, method)
    best = sims.argmax(axis=1)
    best_sims = sims[np.arange(len(sims)), best]
    best_ids = [int(index.sku_ids[b]) for b in best]
    return Matches([sku if s >= threshold else None for sku, s in zip(best_ids, best_sims)], best_sims, best_ids)


def leave_one_out(embeddings: np.ndarray, sku_ids: Sequence[int], method: str = "knn") -> pd.DataFrame:
    """Each reference matched against all the others (its own SKU present unless it was that SKU's only one)
    and against the catalog without its whole SKU (the 'unknown product' case).

    Columns: true, predicted, similarity (SKU present), unknown_similarity (SKU held out)."""
    import pandas as pd
    sku_ids = np.asarray(sku_ids)
    vectors = l2_normalise(embeddings)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    skus = np.unique(sku_ids)
    rows = []
    for i, own in enumerate(sku_ids):
        per_sku = {}
        for sku in skus:
            members = np.flatnonzero(sku_ids == sku)
            members = members[members != i]
            if not len(members):
                continue
            if method == "knn":
                per_sku[sku] = float(sims[i, members].max())
            else:
                prototype = l2_normalise(vectors[members].sum(axis=0))
                per_sku[sku] = float(vectors[i] @ prototype)
        present = max(per_sku.items(), key=lambda kv: kv[1]) if per_sku else (None, -1.0)
        others = [v for k, v in per_sku.items() if k != own]
        rows.append({"true": int(own), "predicted": None if present[0] is None else int(present[0]),
                     "similarity": present[1], "unknown_similarity": max(others) if others else -1.0})
    return pd.DataFrame(rows, columns=["true", "predicted", "similarity", "unknown_similarity"])


def known_unknown_f1(results: pd.DataFrame, threshold: float) -> float:
    """F1 of 'this is catalog SKU X' decisions at `threshold`: a correct match above it is a true positive; a wrong
    match or an unknown product above it a false positive; a correct match below it a false negative."""
    correct = results["predicted"] == results["true"]
    accepted = results["similarity"] >= threshold
    tp = int((accepted & correct).sum())
    fp = int((accepted & ~correct).sum()) + int((results["unknown_similarity"] >= threshold).sum())
    fn = int((~accepted & correct).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def suggest_threshold(results: pd.DataFrame) -> tuple[float, float]:
    """(threshold, F1) maximising known-vs-unknown F1 over the observed similarities. Shown, never applied."""
    candidates = np.unique(np.concatenate([results["similarity"], results["unknown_similarity"]]))
    candidates = candidates[np.isfinite(candidates)]
    if not len(candidates):
        return DEFAULT_THRESHOLD, 0.0
    scores = [(known_unknown_f1(results, float(t)), float(t)) for t in candidates]
    best_f1, best_t = max(scores, key=lambda s: (s[0], -s[1]))
    return best_t, best_f1


@dataclass(frozen=True)
class Evaluation:
    accuracy: float  # of matches with the threshold applied (unknown counts as wrong for a known SKU)
    per_sku: pd.DataFrame  # sku (UNKNOWN for outside the catalog), support, precision, recall
    confusion: pd.DataFrame  # true, predicted, count
    worst: pd.DataFrame  # the most confident wrong matches (index: position in the input): true, predicted, similarity


UNKNOWN = -1  # the "SKU" of a product that is not in the catalog, in evaluation frames


def evaluate(true: Sequence[int | None], predicted: Sequence[int | None], similarity: Sequence[float],
             threshold: float) -> Evaluation:
    """Accuracy, per-SKU precision/recall, confusion counts and the worst confusions of matches at `threshold`.
    A true or predicted None is a product outside the catalog (UNKNOWN)."""
    import pandas as pd
    frame = pd.DataFrame({"true": [UNKNOWN if t is None or pd.isna(t) else int(t) for t in true],
                          "best": [UNKNOWN if p is None or pd.isna(p) else int(p) for p in predicted],
                          "similarity": list(similarity)})
    frame["predicted"] = frame["best"].where(frame["similarity"] >= threshold, UNKNOWN)
    frame["correct"] = frame["predicted"] == frame["true"]
    per_sku = []
    for sku in sorted(set(frame["true"]) | set(frame["predicted"])):
        support = int((frame["true"] == sku).sum())
        predicted_as = int((frame["predicted"] == sku).sum())
        hits = int(((frame["true"] == sku) & frame["correct"]).sum())
        per_sku.append({"sku": sku, "support": support, "precision": hits / predicted_as if predicted_as else 0.0,
                        "recall": hits / support if support else 0.0})
    confusion = frame.groupby(["true", "predicted"]).size().rename("count").reset_index()
    worst = frame[(frame["best"] != frame["true"]) & (frame["best"] != UNKNOWN) & (frame["predicted"] != UNKNOWN)] \
        .sort_values("similarity", ascending=False)[["true", "predicted", "similarity"]]
    return Evaluation(float(frame["correct"].mean()) if len(frame) else 0.0,
                      pd.DataFrame(per_sku, columns=["sku", "support", "precision", "recall"]), confusion, worst)


# ---------------------------------------------------------------------------------------------------------------
# The catalog in the store


class CatalogError(ValueError):
    """A catalog change that cannot be made; the message says why."""


def add_sku(engine: Engine, name: str, brand: str, category: str, gtin: str | None = None, *,
            by: Identity = LOCAL) -> int:
    require(by, "edit_catalog")
    name, brand = store.clean_text(name), store.clean_text(brand)
    if not name:
        raise CatalogError("a SKU needs a name")
    if category not in RETAIL_CATEGORIES:
        raise CatalogError(f"unknown category {category!r}")
    gtin = (gtin or "").strip() or None
    if gtin is not None and not (gtin.isdigit() and len(gtin) in (8, 12, 13, 14)):
        raise CatalogError("a GTIN is 8, 12, 13 or 14 digits")
    try:
        with store.write_transaction(engine) as conn:
            sku_id = conn.execute(store.skus.insert().values(name=name, brand=brand, category=category, gtin=gtin,
                                                             created_at=store.utc_now())).inserted_primary_key[0]
            audit.record(conn, by, "edit_catalog", f"add SKU {sku_id} {name}", None,
                         {"name": name, "brand": brand, "category": category, "gtin": gtin})
            return sku_id
    except sa.exc.IntegrityError:
        raise CatalogError(f"a SKU named {name!r} already exists") from None


def create_sku(engine: Engine, name: str, brand: str, category: str, gtin: str | None,
               files: Iterable[tuple[str, bytes]], *, by: Identity = LOCAL) -> tuple[int, int, list[str]]:
    """A new SKU with its reference photos, or nothing at all: a SKU is only kept when at least one of its photos
    can be read (a SKU without references can never be matched). Returns (sku id, photos added, messages)."""
    sku_id = add_sku(engine, name, brand, category, gtin, by=by)
    added, messages = add_references(engine, sku_id, files, by=by)
    if not added:
        remove_sku(engine, sku_id, by=by)
        raise CatalogError("a SKU needs at least one reference photo that can be read"
                           + (f" ({'; '.join(messages[:3])})" if messages else
                              " — add photos, and wait until they have finished uploading"))
    return sku_id, added, messages


def sku_usage(engine: Engine, sku_id: int) -> tuple[int, int]:
    """(reference photos, stored regions matched to it) of a SKU: what removing it takes away."""
    with engine.connect() as conn:
        references = conn.execute(sa.select(sa.func.count()).select_from(store.sku_references)
                                  .where(store.sku_references.c.sku_id == sku_id)).scalar_one()
        regions = conn.execute(sa.select(sa.func.count()).select_from(store.regions)
                               .where(store.regions.c.sku_id == sku_id)).scalar_one()
    return references, regions


def remove_sku(engine: Engine, sku_id: int, *, by: Identity = LOCAL) -> None:
    """Remove a SKU with its references; regions matched to it become unknown. A reference's photo file goes too,
    unless another reference or a stored photo has the same content (files are named by content hash)."""
    require(by, "edit_catalog")
    refs = store.sku_references
    with store.write_transaction(engine) as conn:
        sku = conn.execute(sa.select(store.skus.c.name, store.skus.c.brand, store.skus.c.category)
                           .where(store.skus.c.id == sku_id)).one_or_none()
        if sku is not None:
            audit.record(conn, by, "edit_catalog", f"remove SKU {sku_id} {sku.name}", dict(sku._mapping), None)
        files = dict(conn.execute(sa.select(refs.c.sha256, refs.c.file).where(refs.c.sku_id == sku_id)).all())
        sku_matches.forget_sku(conn, sku_id)
        conn.execute(refs.delete().where(refs.c.sku_id == sku_id))
        conn.execute(store.skus.delete().where(store.skus.c.id == sku_id))
        hashes = list(files)
        still_used = set(conn.execute(sa.select(refs.c.sha256).where(refs.c.sha256.in_(hashes))).scalars()) | \
            set(conn.execute(sa.select(store.photos.c.sha256).where(store.photos.c.sha256.in_(hashes))).scalars())
    root = config.data_dir()
    for sha, file in files.items():
        path = (root / file).resolve()
        if sha not in still_used and path.is_relative_to(root):
            path.unlink(missing_ok=True)


def add_references(engine: Engine, sku_id: int, files: Iterable[tuple[str, bytes]], source: str = "upload", *,
                   by: Identity = LOCAL) -> tuple[int, list[str]]:
    """Decode each reference photo safely and keep it; returns (added, messages for the files that were not).
    `files` may be a generator, so a caller can read the photos one at a time."""
    require(by, "edit_catalog")
    problems = [_add_reference(engine, sku_id, name, data, source, by) for name, data in files]
    return problems.count(None), [p for p in problems if p is not None]


def _add_reference(engine: Engine, sku_id: int, name: str, data: bytes, source: str, by: Identity) -> str | None:
    """Keep one reference photo; None, or why it was not kept. One function per photo: its decoded image is gone
    before the next is decoded."""
    try:
        decoded = decode_image(data, name)
    except ImageError as exc:
        return str(exc)
    relative = store.photo_file(decoded.sha256, decoded.format)
    store.keep_photo_bytes(data, relative)
    try:
        with store.write_transaction(engine) as conn:
            count = conn.execute(sa.select(sa.func.count()).where(store.sku_references.c.sku_id == sku_id)
                                 ).scalar_one()
            if count >= MAX_REFERENCES_PER_SKU:
                return f"{decoded.name}: this SKU already has {MAX_REFERENCES_PER_SKU} references"
            conn.execute(store.sku_references.insert().values(
                sku_id=sku_id, sha256=decoded.sha256, file=relative.as_posix(),
                source=f"{source}: {decoded.name}"[:100], created_at=store.utc_now()))
            audit.record(conn, by, "edit_catalog", f"SKU {sku_id} reference", None,
                         {"file": decoded.name, "sha256": decoded.sha256, "source": source})
    except sa.exc.IntegrityError:
        return f"{decoded.name}: already a reference of this SKU (or the SKU was removed)"
    return None


def promote_regions(engine: Engine, sku_id: int, region_ids: Sequence[int], *, by: Identity = LOCAL
                    ) -> tuple[int, list[str]]:
    """Make stored regions (typically reviewed ones) reference photos of a SKU: their crops, from the stored photo."""
    require(by, "edit_catalog")
    query = (sa.select(store.regions.c.id, store.regions.c.x1, store.regions.c.y1, store.regions.c.x2,
                       store.regions.c.y2, store.photos.c.file, store.photos.c.name)
             .select_from(store.regions.join(store.photos)).where(store.regions.c.id.in_(list(region_ids))))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    files, messages = [], [f"region {i}: not in the store" for i in set(region_ids) - {r.id for r in rows}]
    for r in rows:
        try:
            photo = decode_image((config.data_dir() / r.file).read_bytes(), r.name).image
        except (OSError, ImageError) as exc:
            messages.append(f"region {r.id}: its photo cannot be read ({exc})")
            continue
        buffer = io.BytesIO()
        photo.crop((r.x1, r.y1, r.x2, r.y2)).save(buffer, format="PNG")
        files.append((f"region-{r.id}.png", buffer.getvalue()))
    added, problems = add_references(engine, sku_id, files, source="region", by=by)
    return added, messages + problems


def skus_frame(engine: Engine) -> pd.DataFrame:
    import pandas as pd
    query = (sa.select(store.skus.c.id, store.skus.c.name, store.skus.c.brand, store.skus.c.category,
                       store.skus.c.gtin, sa.func.count(store.sku_references.c.id).label("references"))
             .select_from(store.skus.outerjoin(store.sku_references))
             .group_by(store.skus.c.id).order_by(store.skus.c.name))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(),
                            columns=["id", "name", "brand", "category", "gtin", "references"])


def reference_embeddings(engine: Engine, loaded: LoadedModel, crop_mode: str = "center"
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, sku_ids, reference_ids) of every reference, computing and caching the missing ones."""
    from shelf.recognition.classify import classify_inputs
    from shelf.recognition.inputs import model_input
    weights = loaded.weights.sha256
    refs = store.sku_references
    cached = store.reference_embeddings
    query = (sa.select(refs.c.id, refs.c.sku_id, refs.c.file, cached.c.embedding)
             .select_from(refs.outerjoin(cached, sa.and_(cached.c.reference_id == refs.c.id,
                                                         cached.c.weights_sha256 == weights,
                                                         cached.c.crop_mode == crop_mode)))
             .order_by(refs.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    missing = [r for r in rows if r.embedding is None]
    computed = {}
    for start in range(0, len(missing), 32):
        chunk = missing[start:start + 32]
        # each photo becomes its model input as it is decoded: one photo in memory at a time, not 32
        inputs = np.stack([model_input(decode_image((config.data_dir() / r.file).read_bytes(), r.file).image,
                                       crop_mode) for r in chunk])
        arrays = classify_inputs(loaded, inputs, top_k=1)
        for r, embedding in zip(chunk, arrays.embeddings):
            computed[r.id] = embedding.astype("<f4")
    if computed:
        with store.write_transaction(engine) as conn:
            conn.execute(cached.insert(), [{"reference_id": i, "weights_sha256": weights, "crop_mode": crop_mode,
                                            "embedding": e.tobytes()} for i, e in computed.items()])
    vectors = [computed[r.id] if r.embedding is None else np.frombuffer(r.embedding, "<f4") for r in rows]
    return (np.stack(vectors) if vectors else np.zeros((0, 512), np.float32),
            np.array([r.sku_id for r in rows]), np.array([r.id for r in rows]))


def reference_photo(engine: Engine, reference_id: int, side: int = 160):
    """A reference photo, small, for galleries (None if its file is gone)."""
    with engine.connect() as conn:
        file = conn.execute(sa.select(store.sku_references.c.file)
                            .where(store.sku_references.c.id == reference_id)).scalar_one_or_none()
    try:
        image = decode_image((config.data_dir() / file).read_bytes(), file, reduce_to=side).image
    except (OSError, TypeError, ImageError):
        return None
    image.thumbnail((side, side))
    return image


def load_index(engine: Engine, loaded: LoadedModel, crop_mode: str = "center") -> CatalogIndex:
    embeddings, sku_ids, _ = reference_embeddings(engine, loaded, crop_mode)
    return build_index(embeddings, sku_ids)


def get_threshold(engine: Engine) -> float:
    return float(store.get_setting(engine, THRESHOLD_SETTING, repr(DEFAULT_THRESHOLD)))


def set_threshold(engine: Engine, threshold: float, *, by: Identity = LOCAL) -> None:
    require(by, "edit_catalog")
    if not -1.0 <= threshold <= 1.0:
        raise CatalogError("a similarity threshold lies between -1 and 1")
    store.change_setting(engine, THRESHOLD_SETTING, repr(float(threshold)), by=by, action="edit_catalog")


def match_stored_regions(engine: Engine, index: CatalogIndex, weights_sha256: str, threshold: float,
                         method: str = "knn", photos_per_chunk: int = 2_000, *, by: Identity = LOCAL) -> int:
    """(Re)match every current region whose embedding came from these weights, a chunk of photos at a time (a
    chain's store does not fit in memory as float32). Returns how many were matched."""
    require(by, "edit_catalog")
    embeddings, regions, runs = store.embeddings, store.regions, store.runs
    query = (sa.select(embeddings.c.photo_id, embeddings.c.run_id, embeddings.c.vectors)
             .select_from(embeddings.join(runs)).where(runs.c.weights_sha256 == weights_sha256)
             .order_by(embeddings.c.photo_id, embeddings.c.run_id))
    matched = 0
    with store.write_transaction(engine) as conn:
        result = conn.execute(query.execution_options(yield_per=photos_per_chunk))
        for chunk in result.partitions():
            keys = [(r.photo_id, r.run_id) for r in chunk]
            ids = conn.execute(sa.select(regions.c.id, regions.c.photo_id, regions.c.run_id, regions.c.position)
                               .where(sa.tuple_(regions.c.photo_id, regions.c.run_id).in_(keys), regions.c.active,
                                      regions.c.kind == store.PRODUCT)
                               ).all()
            vectors = {(r.photo_id, r.run_id): store.embedding_array(r.vectors) for r in chunk}
            if not ids:
                continue
            found = match(index, np.stack([vectors[(r.photo_id, r.run_id)][r.position] for r in ids]), threshold,
                          method)
            sku_matches.record_sku_matches(conn, [(r.id, sku, float(similarity))
                                            for r, sku, similarity in zip(ids, found.sku_ids, found.similarity)])
            matched += len(ids)
        rollup.rebuild(conn)
        audit.record(conn, by, "edit_catalog", "match stored regions", None,
                     {"regions": matched, "threshold": threshold, "weights_sha256": weights_sha256})
    return matched


# ---------------------------------------------------------------------------------------------------------------
# Labelled sets: folder-per-SKU (a folder or a zip of one) or a CSV of file,sku

MAX_LABELLED_FILES = 5000
MAX_LABELLED_BYTES = 1000 * MB  # unpacked, per zip
MAX_LABELLED_PIXELS = 2_000_000_000  # decoded, per evaluation: ~170 photos of 12 MP, thousands of product crops
MAX_LABELLED_CSV_BYTES = 16 * MB


class LabelledItem(NamedTuple):
    """One photo of a labelled set. Its bytes are read only when it is evaluated, one photo at a time; `read`
    raises ImageError (naming the file) when they cannot be."""

    name: str
    read: Callable[[], bytes]
    sku: str


def labelled_from_zip(data: bytes | Path, name: str = "labelled.zip") -> tuple[list[LabelledItem], list[str]]:
    """Images in SKU-named folders of a zip (its bytes, or its path), read lazily: each entry streams out capped at
    the per-photo limit, so neither a declared size of a gigabyte nor a bomb of one-colour photos is held in
    memory."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise CatalogError(f"{name}: not a zip file") from None
    items, problems, total = [], [], 0
    for info in entries:
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
        if info.is_dir() or len(parts) < 2 or parts[0] == "__MACOSX" or parts[-1].startswith("."):
            continue
        if len(items) >= MAX_LABELLED_FILES:
            problems.append(f"{name}: only the first {MAX_LABELLED_FILES} files are used")
            break
        photo = clean_filename(parts[-1])
        if info.file_size > MAX_BYTES:
            problems.append(f"{photo}: {size_problem(info.file_size, MAX_BYTES)}")
            continue
        total += info.file_size
        if total > MAX_LABELLED_BYTES:
            raise CatalogError(f"{name}: unpacks to more than {MAX_LABELLED_BYTES // MB} MB")
        items.append(LabelledItem(photo, _zip_entry_reader(archive, info, photo), parts[-2]))
    return items, problems


def _zip_entry_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with archive.open(info) as entry:  # stops at the declared size (≤ MAX_BYTES), or fails its CRC
                return entry.read(MAX_BYTES)
        except NotImplementedError:  # before RuntimeError, its base class
            raise ImageError(name, "is packed with a compression method Shelf cannot read (use deflate or "
                                   "none)") from None
        except RuntimeError:  # zipfile's word for "encrypted"
            raise ImageError(name, "is encrypted in the zip; Shelf reads unencrypted zips only") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise ImageError(name, f"is damaged in the zip ({str(exc)[:100] or exc.__class__.__name__})") from None
    return read


def _file_reader(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return read_bounded(path, MAX_BYTES)
        except FileTooLarge:
            raise ImageError(path.name, f"is larger than the limit of {MAX_BYTES / MB:g} MB") from None
        except OSError as exc:
            raise ImageError(path.name, f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    return read


def labelled_from_folder(root: Path) -> list[LabelledItem]:
    return [LabelledItem(f.name, _file_reader(f), f.parent.name) for f in sorted(root.glob("*/*")) if f.is_file()
            and not f.name.startswith(".")][:MAX_LABELLED_FILES]


def labelled_from_csv(path: Path) -> tuple[list[LabelledItem], list[str]]:
    """Rows of file,sku; files relative to the CSV's folder and never outside it."""
    import csv
    try:
        text = read_bounded(path, MAX_LABELLED_CSV_BYTES).decode("utf-8-sig")
    except FileTooLarge as exc:
        raise CatalogError(str(exc)) from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not a text file (a labelled set is a CSV of file,sku, a folder of SKU "
                           "folders, or a zip of one)") from None
    items, problems, base = [], [], path.parent.resolve()
    try:
        for number, row in enumerate(csv.reader(text.splitlines()), start=1):
            if len(row) < 2 or (number == 1 and row[0].strip().lower() == "file"):
                continue
            target = (base / row[0].strip()).resolve()
            if not target.is_relative_to(base) or not target.is_file():
                problems.append(f"{path.name}, line {number}: {row[0][:80]!r} is not a file beside the CSV")
                continue
            items.append(LabelledItem(target.name, _file_reader(target), row[1].strip()))
    except (csv.Error, OSError, ValueError) as exc:
        raise CatalogError(f"{path}: not a CSV of file,sku ({str(exc)[:100]})") from None
    return items[:MAX_LABELLED_FILES], problems


def evaluate_labelled(engine: Engine, loaded: LoadedModel, items: Iterable[LabelledItem],
                      threshold: float, crop_mode: str = "center") -> tuple[Evaluation, dict[int, str], list[str]]:
    """Match a labelled set against the catalog. Names not in the catalog are products that should be Unknown.
    Photos are read, decoded and embedded one at a time, and the evaluation stops once the photos decoded so far
    add up to MAX_LABELLED_PIXELS. Returns (evaluation, sku id → name, problems)."""
    from shelf.recognition.classify import classify_images
    skus = skus_frame(engine)
    by_name = {n.lower(): i for i, n in zip(skus["id"], skus["name"])}
    index = load_index(engine, loaded, crop_mode)
    embeddings, truth, problems, pixels = [], [], [], 0
    for done, item in enumerate(items):
        if pixels > MAX_LABELLED_PIXELS:
            problems.append(f"only the first {done} photo(s) were evaluated: together they decode to more than "
                            f"{MAX_LABELLED_PIXELS / 1e6:,.0f} megapixels, the limit of one evaluation")
            break
        try:
            image = decode_image(item.read(), item.name).image
        except ImageError as exc:
            problems.append(str(exc))
            continue
        pixels += image.width * image.height
        (result,) = classify_images(loaded, [image], top_k=1, crop_mode=crop_mode)
        del image  # before the next decode: one photo in memory at a time
        embeddings.append(result.embedding)
        truth.append(by_name.get(item.sku.strip().lower()))
    found = match(index, np.stack(embeddings) if embeddings else np.zeros((0, 512), np.float32), -np.inf)
    evaluation = evaluate(truth, found.best_sku_ids or [None] * len(truth), found.similarity, threshold)
    return evaluation, dict(zip(skus["id"], skus["name"])) | {UNKNOWN: "Unknown"}, problems
