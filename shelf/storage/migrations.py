"""Schema migration steps, by the version they produce (run by shelf.storage.store.migrate inside its transaction).

Version 1 was the first schema; version 2 lays the store out for chain scale (schema's docstring): region rows
carry their top-1, confidence bin, effective label and SKU match; embeddings move to their own table as float16;
predictions lose their surrogate id and redundant label; the SKU match table folds into regions. Version 3 adds the
empty-shelf width rollup (a new table only). Version 4 makes the audit log append-only (database triggers) and
indexes it for the Audit log page's filters. Version 5 adds store tasks: the task tables, their outbox and webhooks
(schema.TASK_TABLES), and a store column on API tokens. Version 6 adds the region profiles and their per-store choice
(new tables only). Version 7 adds shelf-edge prices: the label tables and the planograms' optional `price`.
Version 8 lets tasks be about shelf-edge labels: a task's product_kind and finding take up to 20 characters
(`price:imagenet`, `label_missing`).
store.migrate creates new tables and builds the rollups once the steps are done.
"""
from __future__ import annotations

import itertools

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shelf.storage.schema import (
    PRICE_TABLES,
    TASK_TABLES,
    THRESHOLD_STEPS,
    audit_log,
    embeddings,
    guard_audit_log,
    metadata,
    photos,
    planograms,
    predictions,
    regions,
    schema_version,
    tasks,
)
from shelf.storage.vectors import EMBEDDING_DTYPE


def existing_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def _bin_expression(probability) -> sa.Case:
    """shelf.storage.schema.confidence_bin in SQL, with the same float constants."""
    return sa.case(*((probability >= step, index) for index, step in reversed(list(enumerate(THRESHOLD_STEPS)))
                     if index), else_=0)


def _to_v2(conn: Connection) -> None:
    import numpy as np

    metadata.create_all(conn, checkfirst=True)  # the new tables (embeddings, class categories, rollups)
    q = conn.dialect.identifier_preparer.quote
    add = [("kind", "VARCHAR(10) NOT NULL DEFAULT 'product'"), ("active", "BOOLEAN NOT NULL DEFAULT TRUE"),
           ("predicted_class_index", "SMALLINT NOT NULL DEFAULT 0"),
           ("probability", "DOUBLE PRECISION NOT NULL DEFAULT 0"), ("bin", "SMALLINT NOT NULL DEFAULT 0"),
           ("class_index", "SMALLINT NOT NULL DEFAULT 0"), ("corrected", "BOOLEAN NOT NULL DEFAULT FALSE"),
           ("sku_id", "INTEGER REFERENCES skus (id)"), ("sku_similarity", "DOUBLE PRECISION")]
    for column, ddl in add:
        conn.exec_driver_sql(f"ALTER TABLE regions ADD COLUMN {q(column)} {ddl}")
    conn.exec_driver_sql("ALTER TABLE photos ADD COLUMN day INTEGER NOT NULL DEFAULT 0")
    for date in conn.execute(sa.select(photos.c.captured_on).where(photos.c.captured_on.is_not(None)).distinct()
                             ).scalars().all():
        conn.execute(photos.update().where(photos.c.captured_on == date).values(day=date.toordinal()))

    old_predictions = sa.table("predictions", sa.column("region_id"), sa.column("rank"), sa.column("class_index"),
                               sa.column("probability"))
    top1 = sa.select(old_predictions.c.class_index, old_predictions.c.probability).where(
        old_predictions.c.region_id == regions.c.id, old_predictions.c.rank == 1)
    conn.execute(regions.update().values(predicted_class_index=top1.with_only_columns(old_predictions.c.class_index)
                                         .scalar_subquery(),
                                         probability=top1.with_only_columns(old_predictions.c.probability)
                                         .scalar_subquery()))
    conn.execute(regions.update().values(bin=_bin_expression(regions.c.probability),
                                         class_index=regions.c.predicted_class_index))
    corrections_ = sa.table("corrections", sa.column("id"), sa.column("region_id"), sa.column("class_index"))
    newest = sa.select(corrections_.c.class_index).where(corrections_.c.region_id == regions.c.id) \
        .order_by(corrections_.c.id.desc()).limit(1).scalar_subquery()
    corrected = sa.exists().where(corrections_.c.region_id == regions.c.id)
    conn.execute(regions.update().where(corrected).values(class_index=newest, corrected=True))
    matches = sa.table("sku_matches", sa.column("region_id"), sa.column("sku_id"), sa.column("similarity"))
    match = sa.select(matches.c.sku_id).where(matches.c.region_id == regions.c.id)
    conn.execute(regions.update().where(sa.exists(match)).values(
        sku_id=match.scalar_subquery(),
        sku_similarity=match.with_only_columns(matches.c.similarity).scalar_subquery()))
    conn.exec_driver_sql("DROP TABLE sku_matches")

    old = sa.table("regions", sa.column("photo_id"), sa.column("run_id"), sa.column("position"),
                   sa.column("embedding"))
    result = conn.execute(sa.select(old.c.photo_id, old.c.run_id, old.c.embedding)
                          .where(old.c.embedding.is_not(None)).order_by(old.c.photo_id, old.c.run_id, old.c.position))
    for (photo_id, run_id), group in itertools.groupby(result, key=lambda r: (r.photo_id, r.run_id)):
        vectors = np.stack([np.frombuffer(r.embedding, "<f4") for r in group])
        conn.execute(embeddings.insert().values(photo_id=photo_id, run_id=run_id,
                                                vectors=vectors.astype(EMBEDDING_DTYPE).tobytes()))
    conn.exec_driver_sql("ALTER TABLE regions DROP COLUMN embedding")

    conn.exec_driver_sql("CREATE TABLE predictions_v1 AS SELECT region_id, rank, class_index, probability "
                         "FROM predictions")
    conn.exec_driver_sql("DROP TABLE predictions")
    predictions.create(conn)
    conn.exec_driver_sql("INSERT INTO predictions (region_id, rank, class_index, probability) "
                         "SELECT region_id, rank, class_index, probability FROM predictions_v1")
    conn.exec_driver_sql("DROP TABLE predictions_v1")
    for table in (photos, regions):
        _create_missing_indexes(conn, table)


def _create_missing_indexes(conn: Connection, table: sa.Table) -> None:
    existing = {index["name"] for index in sa.inspect(conn).get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in existing:
            index.create(conn)


def _to_v4(conn: Connection) -> None:
    """The audit log becomes append-only and gains the indexes its filters use. A store without the table yet gets
    it whole, triggers included, from create_all after the steps."""
    if sa.inspect(conn).has_table(audit_log.name):
        guard_audit_log(conn)
        _create_missing_indexes(conn, audit_log)


def _to_v5(conn: Connection) -> None:
    """Store tasks: new tables only, and the store a token acts for."""
    for table in TASK_TABLES:
        table.create(conn, checkfirst=True)
    if "store" not in {c["name"] for c in sa.inspect(conn).get_columns("api_tokens")}:  # not when an earlier step
        conn.exec_driver_sql("ALTER TABLE api_tokens ADD COLUMN store VARCHAR(100)")  # made the table as it is now


def _to_v7(conn: Connection) -> None:
    """Shelf-edge prices: the label tables, and a planned price per planogram line (NULL: no price planned)."""
    for table in PRICE_TABLES:
        table.create(conn, checkfirst=True)
    if "price" not in {c["name"] for c in sa.inspect(conn).get_columns(planograms.name)}:  # v2 made it already
        conn.exec_driver_sql("ALTER TABLE planograms ADD COLUMN price DOUBLE PRECISION")


def _to_v8(conn: Connection) -> None:
    """Price tasks: longer product kinds and findings. SQLite does not enforce a VARCHAR's length; PostgreSQL
    widens the columns in place (a change of length limit only: no rewrite of the table)."""
    if conn.dialect.name == "postgresql" and sa.inspect(conn).has_table(tasks.name):
        conn.exec_driver_sql("ALTER TABLE tasks ALTER COLUMN product_kind TYPE VARCHAR(20), "
                             "ALTER COLUMN finding TYPE VARCHAR(20)")


MIGRATIONS = {2: _to_v2, 4: _to_v4, 5: _to_v5, 7: _to_v7, 8: _to_v8}  # 3 and 6 add tables only: create_all makes them
REBUILDS_ROLLUPS = {2, 3}  # steps after which store.migrate rebuilds the rollups (a new or reshaped one)
