"""Persistence with SQLAlchemy Core: photos, regions, predictions, corrections and runs (provenance).

SQLite by default (WAL, busy timeout, BEGIN IMMEDIATE for writes, so concurrent sessions and the CLI queue up
instead of failing); any SQLAlchemy URL through SHELF_DATABASE_URL. One photo is written in one transaction: it is
stored whole or not at all, and a failure on one photo leaves the others alone. Every write keeps the tally rollups
in step in the same transaction (shelf.storage.rollup). The tables are declared in shelf.storage.schema.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from shelf import config
from shelf.access import LOCAL, Identity, acting, require
from shelf.files import write_atomically
from shelf.labels import IMAGENET_CLASSES, default_map
from shelf.storage import audit, rollup
from shelf.storage.schema import (  # noqa: F401  (re-exported: callers use store.photos, store.regions, ...)
    GAP,
    PRODUCT,
    category_overrides,
    class_categories,
    confidence_bin,
    corrections,
    embeddings,
    metadata,
    photos,
    predictions,
    reference_embeddings,
    regions,
    runs,
    schema_version,
    settings,
    sku_references,
    skus,
    storable_id,
    task_checks,
)
from shelf.storage.vectors import (  # noqa: F401  (re-exported: callers use store.embedding_array, ...)
    EMBEDDING_DTYPE,
    EMBEDDING_SIZE,
    embedding_array,
    embedding_bytes,
    region_embeddings_of,
)
from shelf.text import clean_text

if TYPE_CHECKING:  # the store needs no torch: results are duck-typed (shelf.recognition.classify.Classification)
    import pandas as pd  # imported where a frame is made: storing a photo, the CLI's start-up, need none

    from shelf.ingest.images import DecodedImage
    from shelf.ingest.regions import Box

SCHEMA_VERSION = 8


@dataclass(frozen=True)
class Context:
    """Where and when the photos were taken, as the analyst typed it."""

    store: str = ""
    aisle: str = ""
    captured_on: dt.date | None = None

    def cleaned(self) -> Context:
        return Context(clean_text(self.store), clean_text(self.aisle), self.captured_on)


def day_number(date: dt.date | None) -> int:
    """A photo date as an integer the rollups key on (0: no date)."""
    return date.toordinal() if date else 0


def date_of_day(day: int) -> dt.date | None:
    return dt.date.fromordinal(int(day)) if day else None


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


def open_store(url: str | None = None, pool_size: int | None = None) -> Engine:
    """Engine for the store at `url` (default from the environment); creates or migrates the schema if needed.
    `pool_size` bounds a server database's connections from this process (default SQLAlchemy's 5 + 10 overflow)."""
    url = url or config.database_url()
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    else:
        pool = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0}
        engine = sa.create_engine(url, pool_pre_ping=True, **pool)
    with write_transaction(engine) as conn:
        migrate(conn)
    return engine


class SchemaError(RuntimeError):
    """The database was written by a newer Shelf (or is not a Shelf database)."""


def migrate(conn: Connection) -> int:
    """Create missing tables and apply pending migration steps, in one transaction; idempotent, and safe when
    several processes start at once (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock)."""
    from shelf.storage.migrations import MIGRATIONS, REBUILDS_ROLLUPS, existing_version
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724519)")  # any constant: Shelf's migration lock
    current = existing_version(conn)
    if current > SCHEMA_VERSION:
        raise SchemaError(f"the database is at schema version {current}; this Shelf knows up to {SCHEMA_VERSION}. "
                          "Upgrade Shelf, or point SHELF_DATABASE_URL at another database.")
    # A new database is created at the current version; an older one takes each step in turn.
    steps = range(current + 1, SCHEMA_VERSION + 1) if current else [SCHEMA_VERSION]
    for version in steps:
        if current and version in MIGRATIONS:
            MIGRATIONS[version](conn)
    metadata.create_all(conn, checkfirst=True)
    for version in steps:
        conn.execute(schema_version.insert().values(version=version, applied_at=utc_now()))
    _sync_class_categories(conn)
    if current and REBUILDS_ROLLUPS.intersection(steps):
        rollup.rebuild(conn)
    return SCHEMA_VERSION


def _sync_class_categories(conn: Connection) -> None:
    """Make `class_categories` the map in force (shipped + overrides); writes only what differs."""
    wanted = {**default_map(), **dict(conn.execute(sa.select(category_overrides.c.class_index,
                                                             category_overrides.c.category)).all())}
    have = dict(conn.execute(sa.select(class_categories.c.class_index, class_categories.c.category)).all())
    stale = [index for index, category in wanted.items() if have.get(index) != category]
    if stale:
        conn.execute(class_categories.delete().where(class_categories.c.class_index.in_(stale)))
        conn.execute(class_categories.insert(), [{"class_index": i, "category": wanted[i]} for i in stale])
        rollup.recategorise(conn)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(shelf_write=True) as conn:
        with conn.begin():
            yield conn


def record_audit(engine: Engine | None, by: Identity, action: str, target: str, before=None, after=None) -> None:
    """An audit row for a change outside the database (a weights or detector file), in a transaction of its own,
    in `engine` or (the CLI) the configured store. Changes inside the database use `audit.record` on their own
    connection instead, so the change and its row commit together."""
    own = engine is None
    engine = open_store() if own else engine
    try:
        with write_transaction(engine) as conn:
            audit.record(conn, by, action, target, before, after)
    finally:
        if own:
            engine.dispose()


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


def region_rows(photo_id: int, run_id: int, boxes: Sequence[Box], results: Sequence,
                matches: Sequence[tuple[int | None, float]] | None = None) -> list[dict]:
    """Region rows for a photo's classified boxes: top-1, its confidence bin and the catalog match, if any."""
    rows = []
    for position, (box, result) in enumerate(zip(boxes, results)):
        top1 = result.predictions[0]
        sku_id, similarity = matches[position] if matches is not None else (None, None)
        rows.append({"photo_id": photo_id, "run_id": run_id, "position": position, "x1": box.x1, "y1": box.y1,
                     "x2": box.x2, "y2": box.y2, "kind": PRODUCT, "active": True,
                     "predicted_class_index": top1.class_index, "probability": top1.probability,
                     "bin": confidence_bin(top1.probability), "class_index": top1.class_index, "corrected": False,
                     "sku_id": sku_id, "sku_similarity": similarity})
    return rows


def gap_rows(photo_id: int, run_id: int, gaps: Sequence[Box], first_position: int) -> list[dict]:
    """Region rows for a photo's empty gaps: never classified, never counted as facings (kind gap), numbered after
    the products so product positions keep indexing the embeddings."""
    return [{"photo_id": photo_id, "run_id": run_id, "position": first_position + i, "x1": box.x1, "y1": box.y1,
             "x2": box.x2, "y2": box.y2, "kind": GAP, "active": True, "predicted_class_index": 0, "probability": 0.0,
             "bin": 0, "class_index": 0, "corrected": False, "sku_id": None, "sku_similarity": None}
            for i, box in enumerate(gaps)]


def insert_regions(conn: Connection, rows: Sequence[dict], results: Sequence, gaps: Sequence[dict] = ()
                   ) -> list[int]:
    """Insert region rows with their top-k and embeddings, and gap rows; returns the new product region ids
    (rollups not touched)."""
    if gaps:
        conn.execute(regions.insert(), list(gaps))
    if not rows:
        return []
    ids = conn.execute(regions.insert().returning(regions.c.id, sort_by_parameter_order=True), list(rows)
                       ).scalars().all()
    conn.execute(predictions.insert(), [{"region_id": region_id, "rank": p.rank, "class_index": p.class_index,
                                         "probability": p.probability}
                                        for region_id, result in zip(ids, results) for p in result.predictions])
    first = rows[0]
    conn.execute(embeddings.insert().values(photo_id=first["photo_id"], run_id=first["run_id"], vectors=embedding_bytes(
        np.stack([np.asarray(r.embedding, dtype=np.float32) for r in results]))))
    return ids


def save_photo(engine: Engine, run_id: int, decoded: DecodedImage, data: bytes, context: Context,
               boxes: Sequence[Box], results: Sequence, matches: Sequence[tuple[int | None, float]] | None = None,
               gaps: Sequence[Box] = ()) -> tuple[int, bool]:
    """Store one photo with its regions and predictions in one transaction.

    `results` are classifications (`.predictions` best first, `.embedding`), one per box; `matches` the catalog's
    (sku_id or None, similarity) per box when the run used the catalog. Returns (photo id, created). If the same
    photo (by content hash) is already stored, nothing is written and the existing id is returned with
    created=False — also when another session stored it a moment ago. `gaps`: empty stretches of shelf (auto mode),
    stored as gap regions.
    """
    if len(boxes) != len(results) or (matches is not None and len(matches) != len(results)):
        raise ValueError("one classification (and one match) per region is required")
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
                aisle=context.aisle, captured_on=context.captured_on, day=day_number(context.captured_on),
                created_at=utc_now(),
            )).inserted_primary_key[0]
            insert_regions(conn, region_rows(photo_id, run_id, boxes, results, matches), results,
                           gap_rows(photo_id, run_id, gaps, len(boxes)))
            rollup.add(conn, regions.c.photo_id == photo_id)
            conn.execute(task_checks.insert().values(photo_id=photo_id, created_at=utc_now()))  # tasks: to evaluate
    except IntegrityError:
        # Lost a race with another session storing the same photo: theirs stands, ours is dropped whole.
        existing = find_photo(engine, decoded.sha256)
        if existing is None:
            raise
        return existing, False
    return photo_id, True


def replace_regions(engine: Engine, photo_id: int, run_id: int, boxes: Sequence[Box], results: Sequence,
                    matches: Sequence[tuple[int | None, float]] | None = None, gaps: Sequence[Box] = (),
                    context: Context | None = None, *, by: Identity = LOCAL) -> None:
    """A photo recognised again (other regions, crop or catalog): the new run's regions count from now on; the
    previous ones stay, inactive, with their corrections, as history. `context` (if given) becomes the photo's
    store, aisle and date. One transaction, with its audit row."""
    require(by, "edit_photo")
    if len(boxes) != len(results) or (matches is not None and len(matches) != len(results)):
        raise ValueError("one classification (and one match) per region is required")
    current = (regions.c.photo_id == photo_id) & regions.c.active
    with write_transaction(engine) as conn:
        name, before = _photo_place(conn, photo_id)
        run_before, n_before = conn.execute(sa.select(sa.func.max(regions.c.run_id), sa.func.count())
                                            .where(current, regions.c.kind == PRODUCT)).one()
        after = before if context is None else context.cleaned()
        with rollup.changing(conn, regions.c.photo_id == photo_id):
            conn.execute(regions.update().where(current).values(active=False))
            insert_regions(conn, region_rows(photo_id, run_id, boxes, results, matches), results,
                           gap_rows(photo_id, run_id, gaps, len(boxes)))
            _move_photo(conn, photo_id, after)
            conn.execute(task_checks.insert().values(photo_id=photo_id, created_at=utc_now()))  # new evidence
        audit.record(conn, by, "recognize_again", f"photo {photo_id} {name}",
                     {**asdict(before), "run": run_before, "regions": n_before},
                     {**asdict(after), "run": run_id, "regions": len(boxes)})


def _photo_place(conn: Connection, photo_id: int) -> tuple[str, Context]:
    """A photo's name and its store, aisle and date (ValueError if there is no such photo)."""
    row = conn.execute(sa.select(photos.c.name, photos.c.store, photos.c.aisle, photos.c.captured_on)
                       .where(photos.c.id == photo_id)).one_or_none()
    if row is None:
        raise ValueError(f"no such photo: {photo_id}")
    return row.name, Context(row.store, row.aisle, row.captured_on)


def _move_photo(conn: Connection, photo_id: int, context: Context) -> None:
    """Set a photo's store, aisle and date (inside rollup.changing of its regions)."""
    conn.execute(photos.update().where(photos.c.id == photo_id).values(
        store=context.store, aisle=context.aisle, captured_on=context.captured_on,
        day=day_number(context.captured_on)))


def photo_context(engine: Engine, photo_id: int) -> Context:
    """Where and when a stored photo was taken (ValueError if there is no such photo)."""
    record = photo_record(engine, photo_id)
    if record is None:
        raise ValueError(f"no such photo: {photo_id}")
    return Context(record["store"], record["aisle"], record["captured_on"])


def photos_page(engine: Engine, store_name: str | None = None, limit: int = 50) -> pd.DataFrame:
    """The newest stored photos (optionally of one store) with their current region count: one page, for listing."""
    import pandas as pd
    counted = (sa.select(regions.c.photo_id, sa.func.count().label("regions"))
               .where(regions.c.active, regions.c.kind == PRODUCT)
               .group_by(regions.c.photo_id).subquery())
    query = (sa.select(photos.c.id, photos.c.name, photos.c.store, photos.c.aisle, photos.c.captured_on,
                       sa.func.coalesce(counted.c.regions, 0).label("regions"), photos.c.created_at)
             .outerjoin(counted, counted.c.photo_id == photos.c.id)
             .order_by(photos.c.id.desc()).limit(limit))
    if store_name is not None:
        query = query.where(photos.c.store == store_name)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all(),
                            columns=["id", "name", "store", "aisle", "captured_on", "regions", "created_at"])


def set_photo_context(engine: Engine, photo_id: int, context: Context, *, by: Identity = LOCAL) -> None:
    """Correct where and when a stored photo was taken; its regions move in the tallies with it."""
    require(by, "edit_photo")
    context = context.cleaned()
    with write_transaction(engine) as conn:
        name, before = _photo_place(conn, photo_id)
        with rollup.changing(conn, regions.c.photo_id == photo_id):
            _move_photo(conn, photo_id, context)
        audit.record(conn, by, "edit_photo", f"photo {photo_id} {name}", asdict(before), asdict(context))


def delete_photo(engine: Engine, photo_id: int, *, by: Identity = LOCAL) -> str:
    """Delete a photo with its regions, predictions and corrections, and its file unless a SKU reference shares
    it. Returns the photo's name."""
    require(by, "delete_photo")
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(photos.c.name, photos.c.file, photos.c.sha256, photos.c.store, photos.c.aisle)
                           .where(photos.c.id == photo_id)).one_or_none()
        if row is None:
            raise ValueError(f"no such photo: {photo_id}")
        audit.record(conn, by, "delete_photo", f"photo {photo_id} {row.name}",
                     {"sha256": row.sha256, "store": row.store, "aisle": row.aisle}, None)
        with rollup.changing(conn, regions.c.photo_id == photo_id):
            conn.execute(photos.delete().where(photos.c.id == photo_id))  # regions and the rest cascade
        shared = conn.execute(sa.select(sa.func.count()).select_from(sku_references)
                              .where(sku_references.c.file == row.file)).scalar_one()
    if not shared:
        (config.data_dir() / row.file).unlink(missing_ok=True)
    return row.name


PREDICTION_COLUMNS = ["photo_id", "photo", "sha256", "file", "width", "height", "store", "aisle", "captured_on",
                      "region_id", "position", "x1", "y1", "x2", "y2", "rank", "class_index", "label", "probability",
                      "run_id", "weights_verified", "weights_untrained"]


def predictions_frame(engine: Engine, *, top1_only: bool = False, photo_ids: Sequence[int] | None = None,
                      positions: range | None = None, max_rank: int | None = None) -> pd.DataFrame:
    """The model's predictions joined with their region, photo and run: one row per (region, rank), for the current
    regions of the given photos (all: small stores and tests only) at `positions` (all: None), ranks ≤ `max_rank`."""
    query = (
        sa.select(photos.c.id.label("photo_id"), photos.c.name.label("photo"), photos.c.sha256, photos.c.file,
                  photos.c.width, photos.c.height, photos.c.store, photos.c.aisle, photos.c.captured_on,
                  regions.c.id.label("region_id"), regions.c.position, regions.c.x1, regions.c.y1, regions.c.x2,
                  regions.c.y2, predictions.c.rank, predictions.c.class_index, predictions.c.probability,
                  runs.c.id.label("run_id"), runs.c.weights_verified, runs.c.weights_untrained)
        .select_from(predictions.join(regions).join(photos).join(runs))
        .where(regions.c.active)
        .order_by(photos.c.id, regions.c.position, predictions.c.rank)
    )
    if top1_only or max_rank:
        query = query.where(predictions.c.rank <= (1 if top1_only else max_rank))
    if positions is not None:
        query = query.where(regions.c.position >= positions.start, regions.c.position < positions.stop)
    if photo_ids is not None:
        query = query.where(photos.c.id.in_(list(photo_ids)))
    import pandas as pd
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(),
                             columns=[c for c in PREDICTION_COLUMNS if c != "label"])
    frame.insert(PREDICTION_COLUMNS.index("label"), "label",
                 [IMAGENET_CLASSES[int(i)] for i in frame["class_index"]])
    frame["captured_on"] = pd.to_datetime(frame["captured_on"]).dt.date
    return frame


def photo_record(engine: Engine, photo_id: int) -> dict | None:
    """One stored photo's row (name, hash, file, size, context), or None if there is no such photo."""
    if not storable_id(photo_id):
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.select(photos).where(photos.c.id == photo_id)).mappings().one_or_none()
    return None if row is None else dict(row)


def add_corrections(engine: Engine, changes: dict[int, tuple[int, str]], reviewer: Identity | str) -> int:
    """Store reviewer labels: {region_id: (class_index, label)}. All or nothing. Returns how many were stored.
    `reviewer`: the signed-in identity (or, without sign-in, the name typed). The region's effective label, the
    rollups and the batch's audit row change in the same transaction."""
    by = acting(reviewer)
    require(by, "correct")
    reviewer = clean_text(by.name)
    if not reviewer:
        raise ValueError("a reviewer name is required")
    if not changes:
        return 0
    ids = list(changes)
    now = utc_now()
    with write_transaction(engine) as conn:
        previous = dict(conn.execute(sa.select(regions.c.id, regions.c.class_index)
                                     .where(regions.c.id.in_(ids), regions.c.kind == PRODUCT)).all())  # a gap: never
        missing = sorted(set(changes) - set(previous))
        if missing:
            raise ValueError(f"no such region(s): {', '.join(map(str, missing[:5]))}")
        audit.record(conn, by, "correct", f"{len(changes)} region(s)",
                     {str(r): IMAGENET_CLASSES[previous[r]] for r in sorted(changes)},
                     {str(r): changes[r][1] for r in sorted(changes)})
        conn.execute(corrections.insert(), [
            {"region_id": region_id, "class_index": index, "label": label, "reviewer": reviewer, "created_at": now}
            for region_id, (index, label) in changes.items()])
        with rollup.changing(conn, regions.c.id.in_(ids)):
            conn.execute(regions.update().where(regions.c.id == sa.bindparam("rid"))
                         .values(class_index=sa.bindparam("index"), corrected=True),
                         [{"rid": region_id, "index": index} for region_id, (index, _) in changes.items()])
    return len(changes)


def latest_corrections(engine: Engine, region_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """The correction that counts for each corrected region (the newest), for the given regions or all."""
    import pandas as pd
    newest = sa.select(sa.func.max(corrections.c.id)).group_by(corrections.c.region_id)
    if region_ids is not None:
        newest = newest.where(corrections.c.region_id.in_(list(region_ids)))
    query = (sa.select(corrections.c.region_id, corrections.c.class_index, corrections.c.label,
                       corrections.c.reviewer, corrections.c.created_at)
             .where(corrections.c.id.in_(newest)).order_by(corrections.c.region_id))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all(),
                            columns=["region_id", "class_index", "label", "reviewer", "created_at"])


def category_overrides_map(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(category_overrides.c.class_index, category_overrides.c.category)).all())


def set_category_overrides(engine: Engine, overrides: dict[int, str | None], analyst: Identity | str) -> None:
    """Set (or, with None, remove) the category of classes; the shipped map applies where none is set.
    `analyst`: the signed-in identity (or, without sign-in, the name typed)."""
    by = acting(analyst)
    require(by, "edit_categories")
    analyst = by.name
    now = utc_now()
    with write_transaction(engine) as conn:
        before = dict(conn.execute(sa.select(class_categories.c.class_index, class_categories.c.category)
                                   .where(class_categories.c.class_index.in_(list(overrides)))).all())
        audit.record(conn, by, "edit_categories", f"{len(overrides)} class(es)",
                     {str(i): before.get(i) for i in sorted(overrides)},
                     {str(i): overrides[i] or default_map()[i] for i in sorted(overrides)})
        for class_index, category in overrides.items():
            conn.execute(category_overrides.delete().where(category_overrides.c.class_index == class_index))
            if category is not None:
                conn.execute(category_overrides.insert().values(class_index=class_index, category=category,
                                                                updated_by=clean_text(analyst) or "unknown",
                                                                updated_at=now))
        _sync_class_categories(conn)


def get_setting(engine: Engine, key: str, default: str | None = None) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar_one_or_none()
    return default if value is None else value


def set_setting(engine: Engine, key: str, value: str) -> None:
    with write_transaction(engine) as conn:
        _set_setting(conn, key, value)


def _set_setting(conn: Connection, key: str, value: str) -> None:
    conn.execute(settings.delete().where(settings.c.key == key))
    conn.execute(settings.insert().values(key=key, value=value))


def change_setting(engine: Engine, key: str, value: str, *, by: Identity, action: str) -> None:
    """A setting that changes Shelf for everyone (backend, catalog threshold): checked against `action`, and
    audited with its previous value, in one transaction."""
    require(by, action)
    with write_transaction(engine) as conn:
        before = conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar_one_or_none()
        _set_setting(conn, key, value)
        audit.record(conn, by, action, f"setting {key}", before, value)


def runs_frame(engine: Engine, run_ids: Sequence[int] | None = None) -> pd.DataFrame:
    import pandas as pd
    query = sa.select(runs).order_by(runs.c.id)
    if run_ids is not None:
        query = query.where(runs.c.id.in_(list(run_ids)))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=[c.name for c in runs.columns])
    frame["preprocessing"] = frame["preprocessing"].map(json.loads)
    return frame


def version(engine: Engine) -> tuple:
    """Changes whenever anything tallies are built from changes: a cheap key for caching what is derived from the
    store (filter choices, thumbnails). Each part is an indexed max, so it costs the same at any size."""
    parts = (sa.func.max(photos.c.id), sa.func.max(regions.c.id), sa.func.max(corrections.c.id),
             sa.func.max(category_overrides.c.updated_at), sa.func.max(skus.c.id))
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(part)).scalar() for part in parts) + (
            conn.execute(sa.select(sa.func.count()).select_from(skus)).scalar(),)


def counts(engine: Engine) -> dict[str, int]:
    """Rows per table; "regions" counts product regions (what is classified), not the empty gaps auto mode found."""
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)
                                     .where(*([regions.c.kind == PRODUCT] if t is regions else []))).scalar_one()
                for t in (photos, regions, predictions, runs, corrections, skus)}
