"""Persistence with SQLAlchemy Core: photos, regions, predictions and runs (provenance).

SQLite by default (WAL, busy timeout, BEGIN IMMEDIATE for writes, so concurrent sessions and the CLI queue up
instead of failing); any SQLAlchemy URL through SHELF_DATABASE_URL. One photo is written in one transaction: it is
stored whole or not at all, and a failure on one photo leaves the others alone.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from shelf import config
from shelf.classify import Classification
from shelf.files import write_atomically
from shelf.images import DecodedImage
from shelf.regions import Box

metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("weights_sha256", sa.String(64), nullable=False),
    sa.Column("weights_source", sa.String(40), nullable=False),
    sa.Column("weights_verified", sa.Boolean, nullable=False),
    sa.Column("weights_untrained", sa.Boolean, nullable=False),
    sa.Column("torch_version", sa.String(40), nullable=False),
    sa.Column("torchvision_version", sa.String(40), nullable=False),
    sa.Column("shelf_version", sa.String(40), nullable=False),
    sa.Column("preprocessing", sa.Text, nullable=False),  # JSON
    sa.Column("backend", sa.String(60), nullable=False),
    sa.Column("region_mode", sa.String(200), nullable=False),
    sa.Column("top_k", sa.Integer, nullable=False),
)

photos = sa.Table(
    "photos", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),  # cleaned display name; never a path
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("n_bytes", sa.Integer, nullable=False),
    sa.Column("file", sa.String(200), nullable=False),  # relative to the data dir, named by content hash
    sa.Column("store", sa.String(100), nullable=False, server_default=""),
    sa.Column("aisle", sa.String(100), nullable=False, server_default=""),
    sa.Column("captured_on", sa.Date, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

regions = sa.Table(
    "regions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("x1", sa.Integer, nullable=False),
    sa.Column("y1", sa.Integer, nullable=False),
    sa.Column("x2", sa.Integer, nullable=False),
    sa.Column("y2", sa.Integer, nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=True),  # 512 float32, for later similarity search
)

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("class_index", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.UniqueConstraint("region_id", "rank"),
)

corrections = sa.Table(
    "corrections", metadata,  # a reviewer's label for a region; the newest per region is the one that counts
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("class_index", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("reviewer", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

category_overrides = sa.Table(
    "category_overrides", metadata,  # analysts' edits of the shipped class → retail category map
    sa.Column("class_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("category", sa.String(60), nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

skus = sa.Table(
    "skus", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("brand", sa.String(100), nullable=False, server_default=""),
    sa.Column("category", sa.String(60), nullable=False),
    sa.Column("gtin", sa.String(14), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

sku_references = sa.Table(
    "sku_references", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sku_id", sa.Integer, sa.ForeignKey("skus.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("file", sa.String(200), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),  # "upload: NAME" or "region 123"
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("sku_id", "sha256"),
)

reference_embeddings = sa.Table(
    "reference_embeddings", metadata,  # computed once per weights file and crop mode
    sa.Column("reference_id", sa.Integer, sa.ForeignKey("sku_references.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("weights_sha256", sa.String(64), primary_key=True),
    sa.Column("crop_mode", sa.String(20), primary_key=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
)

sku_matches = sa.Table(
    "sku_matches", metadata,  # the catalog match of a region (sku_id NULL: nothing close enough, "unknown")
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sku_id", sa.Integer, sa.ForeignKey("skus.id", ondelete="SET NULL"), nullable=True),
    sa.Column("similarity", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
)

settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(60), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

schema_version = sa.Table(
    "schema_version", metadata,  # one row per migration step applied
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

SCHEMA_VERSION = 1
# Steps that change existing tables, by the version they produce. Version 1 is the schema as metadata declares it
# (create_all); a later version adds `N: function(connection)` here and bumps SCHEMA_VERSION.
MIGRATIONS: dict = {}

MAX_CONTEXT_LENGTH = 100


@dataclass(frozen=True)
class Context:
    """Where and when the photos were taken, as the analyst typed it."""

    store: str = ""
    aisle: str = ""
    captured_on: dt.date | None = None

    def cleaned(self) -> Context:
        return Context(clean_text(self.store), clean_text(self.aisle), self.captured_on)


def clean_text(value: str | None) -> str:
    """User-typed text: control characters out, whitespace trimmed, length bounded. Kept verbatim otherwise;
    exports make formula-looking cells inert."""
    text = "".join(ch if ch.isprintable() else " " for ch in (value or "")).strip()
    return text[:MAX_CONTEXT_LENGTH]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front; a deferred upgrade could fail with "database is locked" at once.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("shelf_write") else "BEGIN")


def open_store(url: str | None = None) -> Engine:
    """Engine for the store at `url` (default from the environment); creates the schema if needed."""
    url = url or config.database_url()
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    with write_transaction(engine) as conn:
        migrate(conn)
    return engine


class SchemaError(RuntimeError):
    """The database was written by a newer Shelf (or is not a Shelf database)."""


def migrate(conn: Connection) -> int:
    """Create missing tables and apply pending migration steps, in one transaction; idempotent, and safe when
    several processes start at once (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724519)")  # any constant: Shelf's migration lock
    metadata.create_all(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
    if current > SCHEMA_VERSION:
        raise SchemaError(f"the database is at schema version {current}; this Shelf knows up to {SCHEMA_VERSION}. "
                          "Upgrade Shelf, or point SHELF_DATABASE_URL at another database.")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        if version in MIGRATIONS:
            MIGRATIONS[version](conn)
        conn.execute(schema_version.insert().values(version=version, applied_at=utc_now()))
    return SCHEMA_VERSION


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(shelf_write=True) as conn:
        with conn.begin():
            yield conn


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_run(engine: Engine, provenance: dict) -> int:
    row = dict(provenance)
    row["preprocessing"] = json.dumps(row["preprocessing"], sort_keys=True)
    row.setdefault("created_at", utc_now())
    with write_transaction(engine) as conn:
        return conn.execute(runs.insert().values(**row)).inserted_primary_key[0]


def find_photo(engine: Engine, sha256: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(photos.c.id).where(photos.c.sha256 == sha256)).scalar_one_or_none()


def photo_file(sha256: str, fmt: str) -> Path:
    """Where the original bytes of a photo live: named by content hash, never by the uploaded name."""
    ext = {"JPEG": "jpg", "MPO": "jpg", "HEIF": "heic"}.get(fmt, fmt.lower() if fmt.isalnum() else "bin")
    return Path("photos") / sha256[:2] / f"{sha256}.{ext}"


def keep_photo_bytes(data: bytes, relative: Path) -> None:
    target = config.data_dir() / relative
    if not target.exists():
        write_atomically(data, target)


def save_photo(engine: Engine, run_id: int, decoded: DecodedImage, data: bytes, context: Context,
               boxes: Sequence[Box], results: Sequence[Classification],
               matches: Sequence[tuple[int | None, float]] | None = None, threshold: float = 0.0
               ) -> tuple[int, bool]:
    """Store one photo with its regions and predictions in one transaction.

    Returns (photo id, created). If the same photo (by content hash) is already stored, nothing is written and
    the existing id is returned with created=False — also when another session stored it a moment ago.
    """
    if len(boxes) != len(results):
        raise ValueError("one classification per region is required")
    relative = photo_file(decoded.sha256, decoded.format)
    keep_photo_bytes(data, relative)  # content-addressed: a file without a row is harmless and reused
    context = context.cleaned()
    try:
        with write_transaction(engine) as conn:
            existing = conn.execute(sa.select(photos.c.id).where(photos.c.sha256 == decoded.sha256)).scalar()
            if existing is not None:
                return existing, False
            photo_id = conn.execute(photos.insert().values(
                sha256=decoded.sha256, name=decoded.name, format=decoded.format, width=decoded.width,
                height=decoded.height, n_bytes=decoded.n_bytes, file=relative.as_posix(), store=context.store,
                aisle=context.aisle, captured_on=context.captured_on, created_at=utc_now(),
            )).inserted_primary_key[0]
            for position, (box, result) in enumerate(zip(boxes, results)):
                region_id = conn.execute(regions.insert().values(
                    photo_id=photo_id, run_id=run_id, position=position, x1=box.x1, y1=box.y1, x2=box.x2,
                    y2=box.y2, embedding=result.embedding.numpy().astype("<f4").tobytes(),
                )).inserted_primary_key[0]
                conn.execute(predictions.insert(), [
                    {"region_id": region_id, "rank": p.rank, "class_index": p.class_index, "label": p.label,
                     "probability": p.probability} for p in result.predictions])
                if matches is not None:
                    sku_id, similarity = matches[position]
                    conn.execute(sku_matches.insert().values(region_id=region_id, sku_id=sku_id,
                                                             similarity=similarity, threshold=threshold,
                                                             matched_at=utc_now()))
    except IntegrityError:
        # Lost a race with another session storing the same photo: theirs stands, ours is dropped whole.
        existing = find_photo(engine, decoded.sha256)
        if existing is None:
            raise
        return existing, False
    return photo_id, True


def region_embeddings(engine: Engine, photo_id: int) -> np.ndarray:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(regions.c.embedding).where(regions.c.photo_id == photo_id)
                            .order_by(regions.c.position)).scalars().all()
    return np.stack([np.frombuffer(r, dtype="<f4") for r in rows]) if rows else np.zeros((0, 512), "<f4")


PREDICTION_COLUMNS = ["photo_id", "photo", "sha256", "file", "width", "height", "store", "aisle", "captured_on",
                      "region_id", "position",
                      "x1", "y1", "x2", "y2", "rank", "class_index", "label", "probability", "run_id",
                      "weights_verified", "weights_untrained"]


def predictions_frame(engine: Engine, *, top1_only: bool = False, photo_ids: Sequence[int] | None = None
                      ) -> pd.DataFrame:
    """Predictions joined with their region, photo and run: one row per (region, rank)."""
    query = (
        sa.select(photos.c.id.label("photo_id"), photos.c.name.label("photo"), photos.c.sha256, photos.c.file,
                  photos.c.width, photos.c.height, photos.c.store,
                  photos.c.aisle, photos.c.captured_on, regions.c.id.label("region_id"), regions.c.position,
                  regions.c.x1, regions.c.y1, regions.c.x2, regions.c.y2, predictions.c.rank,
                  predictions.c.class_index, predictions.c.label, predictions.c.probability,
                  runs.c.id.label("run_id"), runs.c.weights_verified, runs.c.weights_untrained)
        .select_from(predictions.join(regions).join(photos).join(runs))
        .order_by(photos.c.id, regions.c.position, predictions.c.rank)
    )
    if top1_only:
        query = query.where(predictions.c.rank == 1)
    if photo_ids is not None:
        query = query.where(photos.c.id.in_(list(photo_ids)))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=PREDICTION_COLUMNS)
    frame["captured_on"] = pd.to_datetime(frame["captured_on"]).dt.date
    return frame


def add_corrections(engine: Engine, changes: dict[int, tuple[int, str]], reviewer: str) -> int:
    """Store reviewer labels: {region_id: (class_index, label)}. All or nothing. Returns how many were stored."""
    reviewer = clean_text(reviewer)
    if not reviewer:
        raise ValueError("a reviewer name is required")
    if not changes:
        return 0
    now = utc_now()
    with write_transaction(engine) as conn:
        known = set(conn.execute(sa.select(regions.c.id).where(regions.c.id.in_(list(changes)))).scalars())
        missing = sorted(set(changes) - known)
        if missing:
            raise ValueError(f"no such region(s): {', '.join(map(str, missing[:5]))}")
        conn.execute(corrections.insert(), [
            {"region_id": region_id, "class_index": index, "label": label, "reviewer": reviewer, "created_at": now}
            for region_id, (index, label) in changes.items()])
    return len(changes)


def latest_corrections(engine: Engine) -> pd.DataFrame:
    """The correction that counts for each corrected region (the newest)."""
    query = sa.select(corrections.c.region_id, corrections.c.class_index, corrections.c.label,
                      corrections.c.reviewer, corrections.c.created_at, corrections.c.id).order_by(corrections.c.id)
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(),
                             columns=["region_id", "class_index", "label", "reviewer", "created_at", "id"])
    return frame.drop_duplicates("region_id", keep="last").drop(columns="id")


def sku_match_frame(engine: Engine) -> pd.DataFrame:
    """Region → matched SKU (name, brand, category) and similarity; sku_id is missing where it is unknown."""
    query = (sa.select(sku_matches.c.region_id, sku_matches.c.sku_id, skus.c.name, skus.c.brand, skus.c.category,
                       sku_matches.c.similarity)
             .select_from(sku_matches.outerjoin(skus, skus.c.id == sku_matches.c.sku_id)))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=["region_id", "sku_id", "sku", "brand",
                                                                "sku_category", "sku_similarity"])


def category_overrides_map(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(category_overrides.c.class_index, category_overrides.c.category)).all())


def set_category_overrides(engine: Engine, overrides: dict[int, str | None], analyst: str) -> None:
    """Set (or, with None, remove) the category of classes; the shipped map applies where none is set."""
    now = utc_now()
    with write_transaction(engine) as conn:
        for class_index, category in overrides.items():
            conn.execute(category_overrides.delete().where(category_overrides.c.class_index == class_index))
            if category is not None:
                conn.execute(category_overrides.insert().values(class_index=class_index, category=category,
                                                                updated_by=clean_text(analyst) or "unknown",
                                                                updated_at=now))


def get_setting(engine: Engine, key: str, default: str | None = None) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar_one_or_none()
    return default if value is None else value


def set_setting(engine: Engine, key: str, value: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(settings.delete().where(settings.c.key == key))
        conn.execute(settings.insert().values(key=key, value=value))


def runs_frame(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(sa.select(runs).order_by(runs.c.id)).mappings().all(),
                             columns=[c.name for c in runs.columns])
    frame["preprocessing"] = frame["preprocessing"].map(json.loads)
    return frame


def fingerprint(engine: Engine) -> tuple:
    """Changes whenever anything a detections frame is built from changes: a cheap key for caching it."""
    with engine.connect() as conn:
        return tuple(str(tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(table.c[key]))
                                            .select_from(table)).one()))
                     for table, key in ((photos, "id"), (regions, "id"), (corrections, "id"),
                                        (category_overrides, "updated_at"), (sku_matches, "matched_at"),
                                        (skus, "id")))


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (photos, regions, predictions, runs, corrections, skus)}
