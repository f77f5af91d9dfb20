"""Schema migrations: a database written by the first schema (version 1) is upgraded in place — regions gain their
effective labels, bins and SKU matches, embeddings move to float16, rollups are built — and reports the same numbers
as a store written by this Shelf; on SQLite and PostgreSQL."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from shelf.access import LOCAL
from shelf.analytics import report
from shelf.analytics.tally import TallyFilter
from shelf.labels import IMAGENET_CLASSES
from shelf.storage import audit, rollup, store
from shelf.storage.schema import (
    APPEND_ONLY,
    audit_log,
    confidence_bin,
    shelf_width_rollup,
)
from tests.factory import TEST_RUN, add_photo, gap_boxes
from tests.reference import load_detections

# The version 1 tables, as Shelf 0.1 declared them.
V1 = sa.MetaData()
runs = sa.Table(
    "runs", V1,
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
    "photos", V1,
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
    "regions", V1,
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
    "predictions", V1,
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
    "corrections", V1,  # a reviewer's label for a region; the newest per region is the one that counts
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("class_index", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("reviewer", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
category_overrides = sa.Table(
    "category_overrides", V1,  # analysts' edits of the shipped class → retail category map
    sa.Column("class_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("category", sa.String(60), nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
skus = sa.Table(
    "skus", V1,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("brand", sa.String(100), nullable=False, server_default=""),
    sa.Column("category", sa.String(60), nullable=False),
    sa.Column("gtin", sa.String(14), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sku_references = sa.Table(
    "sku_references", V1,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sku_id", sa.Integer, sa.ForeignKey("skus.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("file", sa.String(200), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),  # "upload: NAME" or "region 123"
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("sku_id", "sha256"),
)
reference_embeddings = sa.Table(
    "reference_embeddings", V1,  # computed once per weights file and crop mode
    sa.Column("reference_id", sa.Integer, sa.ForeignKey("sku_references.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("weights_sha256", sa.String(64), primary_key=True),
    sa.Column("crop_mode", sa.String(20), primary_key=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
)
sku_matches = sa.Table(
    "sku_matches", V1,  # the catalog match of a region (sku_id NULL: nothing close enough, "unknown")
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sku_id", sa.Integer, sa.ForeignKey("skus.id", ondelete="SET NULL"), nullable=True),
    sa.Column("similarity", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
)
settings = sa.Table(
    "settings", V1,
    sa.Column("key", sa.String(60), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

schema_version = sa.Table(
    "schema_version", V1,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def write_v1(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        V1.create_all(conn)
        conn.execute(schema_version.insert().values(version=1, applied_at=NOW))
        conn.execute(runs.insert().values(id=1, created_at=NOW, weights_sha256="x" * 64, weights_source="test",
                                          weights_verified=False, weights_untrained=True, torch_version="t",
                                          torchvision_version="tv", shelf_version="0.1.0", preprocessing="{}",
                                          backend="b", region_mode="grid:1x3", top_k=2))
        conn.execute(skus.insert().values(id=1, name="Cola", brand="Fizzy", category="Beverages", created_at=NOW))
        rng = np.random.default_rng(0)
        for p in range(1, 4):
            conn.execute(photos.insert().values(id=p, sha256=f"{p:064x}", name=f"p{p}.jpg", format="JPEG", width=300,
                                                height=100, n_bytes=1, file=f"photos/{p}.jpg", store=f"S{p % 2}",
                                                aisle="A", captured_on=dt.date(2026, 10, p) if p < 3 else None,
                                                created_at=NOW))
            for position in range(3):
                region_id = p * 10 + position
                embedding = rng.normal(size=512).astype("<f4")
                conn.execute(regions.insert().values(id=region_id, photo_id=p, run_id=1, position=position,
                                                     x1=100 * position, y1=0, x2=100 * position + 100, y2=100,
                                                     embedding=embedding.tobytes()))
                top1 = [440, 737, 931][position]
                probability = [0.15, 0.35, 0.95][(p + position) % 3]
                conn.execute(predictions.insert(), [
                    {"region_id": region_id, "rank": 1, "class_index": top1, "label": IMAGENET_CLASSES[top1],
                     "probability": probability},
                    {"region_id": region_id, "rank": 2, "class_index": 1, "label": IMAGENET_CLASSES[1],
                     "probability": (1 - probability) / 2}])
        conn.execute(corrections.insert(), [
            {"region_id": 10, "class_index": 931, "label": "bagel", "reviewer": "Ana", "created_at": NOW},
            {"region_id": 10, "class_index": 1, "label": "goldfish", "reviewer": "Ben", "created_at": NOW}])
        conn.execute(sku_matches.insert(), [
            {"region_id": 11, "sku_id": 1, "similarity": 0.9, "threshold": 0.8, "matched_at": NOW},
            {"region_id": 12, "sku_id": None, "similarity": 0.4, "threshold": 0.8, "matched_at": NOW}])
    engine.dispose()


def test_a_version_1_store_is_migrated_in_place(db_url):
    write_v1(db_url)  # into an empty database
    engine = store.open_store(db_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.select(store.schema_version.c.version)).scalars().all()
        assert versions == list(range(1, store.SCHEMA_VERSION + 1))
        rows = {r.id: r for r in conn.execute(sa.select(store.regions))}
        assert sa.inspect(conn).has_table("sku_matches") is False
    assert (rows[10].class_index, rows[10].predicted_class_index, rows[10].corrected) == (1, 440, True)  # newest
    assert (rows[11].sku_id, rows[11].sku_similarity, rows[12].sku_id, rows[12].sku_similarity) == (1, 0.9, None, 0.4)
    assert all(r.bin == confidence_bin(r.probability) for r in rows.values())
    assert store.region_embeddings_of(engine, 1).shape == (3, 512)
    detections = load_detections(engine)
    assert len(detections) == 9 and detections.set_index("region_id").loc[11, "sku"] == "Cola"
    table = report.tally_table(engine, ["label"], 0.3)
    from shelf.analytics.tally import tally
    pd.testing.assert_frame_equal(table, tally(detections, ["label"], 0.3), check_dtype=False)
    assert report.review_count(engine, report.ReviewFilter()) == 8
    store.open_store(db_url)  # again: nothing left to do
    with engine.connect() as conn:
        versions = conn.execute(sa.select(sa.func.count()).select_from(store.schema_version)).scalar()
    assert versions == store.SCHEMA_VERSION


def test_a_version_2_store_gains_its_empty_shelf_widths(db_url):
    engine = store.open_store(db_url)
    auto_run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    add_photo(engine, auto_run, 1, [(440, 0.9)] * 3, "North", "7", dt.date(2026, 11, 2), gaps=gap_boxes(3, [10, 5]))
    add_photo(engine, store.create_run(engine, TEST_RUN), 2, [(440, 0.9)] * 2, "North", "7", gaps=gap_boxes(2, [9]))
    with engine.begin() as conn:  # what a version 2 store looks like
        conn.execute(shelf_width_rollup.delete())
        conn.exec_driver_sql(f"DROP TABLE {shelf_width_rollup.name}")
        conn.execute(store.schema_version.update().values(version=2))  # created at the newest: one row
    engine.dispose()
    engine = store.open_store(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.schema_version.c.version)).scalars().all() == \
            list(range(2, store.SCHEMA_VERSION + 1))
    shares = report.empty_shelf(engine, TallyFilter(), ["store", "date"])
    assert shares[["store", "gap_width", "shelf_width"]].values.tolist() == [["North", 15, 45]]  # auto photo only
    assert shares["empty_share"].tolist() == [pytest.approx(15 / 45)]


def assert_append_only(engine) -> None:
    """The audit log takes new rows and refuses every change to the ones it has, from any SQL."""
    store.record_audit(engine, LOCAL, "manage_weights", "a new row", None, {"sha256": "f" * 64})
    refused = [audit_log.update().values(who="someone else"), audit_log.delete(),
               audit_log.delete().where(audit_log.c.action == "manage_weights")]
    if engine.dialect.name == "postgresql":
        refused.append(sa.text("TRUNCATE audit_log"))
    for statement in refused:
        with pytest.raises(sa.exc.DBAPIError, match=APPEND_ONLY):
            with engine.begin() as conn:
                conn.execute(statement)
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(audit_log.c.who)).scalars()) == {LOCAL.name}


def test_a_new_store_keeps_an_append_only_audit_log(db_url):
    engine = store.open_store(db_url)
    assert_append_only(engine)
    assert audit.count(engine) == 1


def test_a_version_3_store_gains_an_append_only_indexed_audit_log(db_url, monkeypatch):
    engine = store.open_store(db_url)
    store.record_audit(engine, LOCAL, "edit_catalog", "kept from version 3", None, {"threshold": 0.5})
    with engine.begin() as conn:  # what a version 3 store looks like: no triggers, no filter indexes
        if engine.dialect.name == "sqlite":
            for trigger in ("audit_log_no_update", "audit_log_no_delete"):
                conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_append_only ON audit_log")
            conn.exec_driver_sql("DROP FUNCTION audit_log_append_only()")
        for index in ("ix_audit_log_who_id", "ix_audit_log_action_id"):
            conn.exec_driver_sql(f"DROP INDEX {index}")
        conn.execute(store.schema_version.update().values(version=3))
        conn.execute(audit_log.update().values(target="v3 rows could be changed"))  # proof: no trigger yet
    engine.dispose()
    monkeypatch.setattr(rollup, "rebuild", lambda conn: pytest.fail("no rollup changed shape: none is rebuilt"))
    engine = store.open_store(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.schema_version.c.version)).scalars().all() == \
            list(range(3, store.SCHEMA_VERSION + 1))
        indexes = {index["name"] for index in sa.inspect(conn).get_indexes("audit_log")}
    assert {"ix_audit_log_who_id", "ix_audit_log_action_id"} <= indexes
    assert_append_only(engine)
    assert audit.page(engine)["target"].tolist() == ["a new row", "v3 rows could be changed"]
    store.open_store(db_url)  # again: nothing left to do


def _open_at(job: tuple[str, float]) -> str:
    """In a process of its own: wait for the common start time, then open (and so migrate) the store."""
    import time
    url, start = job
    time.sleep(max(0.0, start - time.time()))
    try:
        store.open_store(url).dispose()
    except Exception as exc:  # the test shows what went wrong in which process
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    return "ok"


@pytest.mark.parametrize("older", [False, True], ids=["fresh", "version-1"])
def test_services_starting_together_migrate_the_store_exactly_once(db_url, older):
    """The dashboard, the API and batch workers start at the same moment in a container deployment: against a
    fresh database, or one an older Shelf wrote, every one starts and the schema is created or upgraded once."""
    import multiprocessing
    import time
    if older:
        write_v1(db_url)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        start = time.time() + 3  # after the workers have imported Shelf
        outcomes = pool.map(_open_at, [(db_url, start)] * 3)
    assert outcomes == ["ok"] * 3
    engine = store.open_store(db_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.select(store.schema_version.c.version).order_by(store.schema_version.c.version))
        assert versions.scalars().all() == list(range(1 if older else store.SCHEMA_VERSION, store.SCHEMA_VERSION + 1))
    if older:
        assert report.review_count(engine, report.ReviewFilter()) == 8  # the rollups were built once, not twice
        assert report.tally_table(engine, ["label"])["facings"].sum() == 9


def test_a_version_4_store_gains_the_task_tables_and_token_stores(db_url):
    from shelf.serving import tokens
    from shelf.storage.schema import TASK_TABLES, api_tokens
    engine = store.open_store(db_url)
    tokens.create_token(engine, "store-app", "viewer")
    with engine.begin() as conn:  # what a version 4 store looks like: no task tables, tokens without a store
        for table in reversed(TASK_TABLES):
            conn.exec_driver_sql(f"DROP TABLE {table.name}")
        conn.exec_driver_sql("ALTER TABLE api_tokens DROP COLUMN store")
        conn.execute(store.schema_version.update().values(version=4))  # created at the newest: one row
    engine.dispose()
    engine = store.open_store(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.schema_version.c.version)).scalars().all() == \
            list(range(4, store.SCHEMA_VERSION + 1))
        assert conn.execute(sa.select(api_tokens.c.name, api_tokens.c.store)).all() == [("store-app", None)]
        assert {t.name for t in TASK_TABLES} <= set(sa.inspect(conn).get_table_names())


def test_a_version_6_store_gains_shelf_edge_prices(db_url):
    """Version 7: the price label tables, and a planned price on every planogram line (none for the old ones)."""
    from shelf import access
    from shelf.analytics import planogram
    from shelf.storage.schema import PRICE_TABLES
    engine = store.open_store(db_url)
    planogram.import_csv(engine, b"store,aisle,product,expected_facings\n*,7,imagenet:737,4\n", "p.csv",
                         access.LOCAL)
    with engine.begin() as conn:  # what a version 6 store looks like
        for table in reversed(PRICE_TABLES):
            conn.exec_driver_sql(f"DROP TABLE {table.name}")
        conn.exec_driver_sql("ALTER TABLE planograms DROP COLUMN price")
        conn.execute(store.schema_version.update().values(version=6))
    engine.dispose()
    engine = store.open_store(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.schema_version.c.version)).scalars().all() == \
            list(range(6, store.SCHEMA_VERSION + 1))
    assert all(sa.inspect(engine).has_table(t.name) for t in PRICE_TABLES)
    lines = planogram.frame(engine)
    assert lines["product"].tolist() == ["imagenet:737"] and lines["price"].isna().all()


def test_a_version_7_store_takes_price_tasks(db_url):
    """Version 8: a task's product kind and finding take `price:imagenet` and `label_missing` (PostgreSQL enforces
    a VARCHAR's length; version 7 declared 10)."""
    from shelf.storage import tasks as stored
    engine = store.open_store(db_url)
    with engine.begin() as conn:  # what a version 7 store looks like
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE tasks ALTER COLUMN product_kind TYPE VARCHAR(10), "
                                 "ALTER COLUMN finding TYPE VARCHAR(10)")
        conn.execute(store.schema_version.update().values(version=7))
    engine.dispose()
    engine = store.open_store(db_url)
    with engine.begin() as conn:
        assert conn.execute(sa.select(store.schema_version.c.version)).scalars().all() == \
            list(range(7, store.SCHEMA_VERSION + 1))
        stored.open_task(conn, {"store": "S014", "aisle": "7", "product_kind": "price:imagenet", "product_id": 898,
                                "product": "water bottle (898)", "finding": "label_missing", "day": 1,
                                "evidence": "{}"}, NOW)
