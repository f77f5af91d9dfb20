"""The numbers the database computes (shelf.analytics.report, over rollups kept in step on every write) equal the
pandas definition (shelf.analytics.tally over tests.reference, built from the predictions and the corrections
history) on random stores: corrections, category edits, SKU matches and removals, thresholds, filters and dates —
on SQLite and on PostgreSQL."""
import datetime as dt
import math

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shelf.analytics import categories, report
from shelf.analytics.report import ReviewFilter
from shelf.analytics.tally import (
    GROUPINGS,
    TallyFilter,
    counted,
    filter_detections,
    in_confidence_range,
    tally,
)
from shelf.ingest.regions import Box
from shelf.labels import IMAGENET_CLASSES, RETAIL_CATEGORIES
from shelf.recognition import catalog
from shelf.storage import sku_matches, store
from shelf.storage.schema import THRESHOLD_STEPS
from tests.conftest import POSTGRES_URL, require_service
from tests.factory import TEST_RUN, add_photo, gap_boxes, result
from tests.reference import empty_shelf_reference, load_detections, review_queue

AUTO_RUN = {**TEST_RUN, "region_mode": "auto"}
CLASSES = [440, 737, 931, 134, 517, 1]
STORES, AISLES = ["", "North", "South", "=1+2"], ["", "A", "B"]
DATES = [None, dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 5), dt.date(2026, 12, 1)]
probabilities = st.one_of(st.sampled_from(THRESHOLD_STEPS), st.floats(0, 1),  # and the floats right beside a step
                          st.sampled_from(THRESHOLD_STEPS[1:]).map(lambda s: math.nextafter(s, 0)),
                          st.sampled_from(THRESHOLD_STEPS[:-1]).map(lambda s: math.nextafter(s, 1)))


@st.composite
def stores(draw):
    """A recipe for a store: photos with regions, SKU matches, corrections, category edits, a SKU removed."""
    photos = draw(st.lists(st.tuples(st.sampled_from(STORES), st.sampled_from(AISLES), st.sampled_from(DATES),
                                     st.lists(st.tuples(st.sampled_from(CLASSES), probabilities), min_size=1,
                                              max_size=5),
                                     st.sampled_from(["none", "some", "all"])),
                           min_size=1, max_size=7))
    n_regions = sum(len(p[3]) for p in photos)
    corrections = draw(st.lists(st.tuples(st.integers(0, n_regions - 1), st.sampled_from(CLASSES)), max_size=6))
    edits = draw(st.dictionaries(st.sampled_from(CLASSES), st.sampled_from(RETAIL_CATEGORIES), max_size=3))
    rematch = draw(st.lists(st.tuples(st.integers(0, n_regions - 1), st.sampled_from([None, 0, 1])), max_size=4))
    remove_sku = draw(st.booleans())
    n_photos = len(photos)
    # per photo: None = recognised in a mode that does not look for gaps; else auto mode with gaps of these widths
    gap_widths = st.one_of(st.none(), st.lists(st.integers(1, 30), max_size=3))
    gaps = draw(st.lists(gap_widths, min_size=n_photos, max_size=n_photos))
    photo_changes = draw(st.lists(st.one_of(
        st.tuples(st.just("edit"), st.integers(0, n_photos - 1), st.sampled_from(STORES), st.sampled_from(AISLES),
                  st.sampled_from(DATES)),
        st.tuples(st.just("again"), st.integers(0, n_photos - 1),
                  st.lists(st.tuples(st.sampled_from(CLASSES), probabilities), min_size=1, max_size=4), gap_widths),
        st.tuples(st.just("delete"), st.integers(0, n_photos - 1))), max_size=3))
    return photos, corrections, edits, rematch, remove_sku, photo_changes, gaps


def build(engine, recipe) -> None:
    photos, corrections, edits, rematch, remove_sku, photo_changes, gaps = recipe
    run_id, auto_run_id = store.create_run(engine, TEST_RUN), store.create_run(engine, AUTO_RUN)
    sku_ids = [catalog.add_sku(engine, "Cola", "Fizzy", "Beverages"), catalog.add_sku(engine, "Crisps", "Crunch",
                                                                                      "Snacks & packaged food")]
    for number, (store_name, aisle, date, regions, matched) in enumerate(photos):
        matches = None if matched == "none" else [
            (sku_ids[i % 2] if matched == "all" or i % 2 else None, 0.5 + 0.01 * i) for i in range(len(regions))]
        widths = gaps[number]
        add_photo(engine, run_id if widths is None else auto_run_id, number, regions, store_name, aisle, date,
                  matches, gaps=gap_boxes(len(regions), widths or []))
    with engine.connect() as conn:
        ids = conn.execute(sa.select(store.regions.c.id).where(store.regions.c.kind == store.PRODUCT)
                           .order_by(store.regions.c.id)).scalars().all()
    for region, class_index in corrections:  # one at a time: a region corrected twice keeps the newest
        store.add_corrections(engine, {ids[region]: (class_index, IMAGENET_CLASSES[class_index])}, "Ana")
    categories.save_category_edits(engine, edits, "Ana")
    if rematch:
        sku_matches.set_sku_matches(engine, [(ids[r], None if s is None else sku_ids[s], 0.7) for r, s in rematch])
    if remove_sku:
        catalog.remove_sku(engine, sku_ids[0])
    with engine.connect() as conn:
        photo_ids = conn.execute(sa.select(store.photos.c.id).order_by(store.photos.c.id)).scalars().all()
    deleted = set()
    for change in photo_changes:  # a photo's context corrected, recognised again, or deleted
        photo_id = photo_ids[change[1]]
        if photo_id in deleted:
            continue
        if change[0] == "edit":
            store.set_photo_context(engine, photo_id, store.Context(*change[2:]))
        elif change[0] == "again":
            boxes, widths = [Box(0, 0, 10, 10)] * len(change[2]), change[3]
            store.replace_regions(engine, photo_id, store.create_run(engine, TEST_RUN if widths is None else AUTO_RUN),
                                  boxes, [result(c, p) for c, p in change[2]], gaps=gap_boxes(1, widths or []))
        else:
            store.delete_photo(engine, photo_id)
            deleted.add(photo_id)


queries = st.tuples(
    st.lists(st.sampled_from(list(GROUPINGS)), min_size=1, max_size=3, unique=True),
    st.sampled_from(THRESHOLD_STEPS),
    st.builds(TallyFilter,
              stores=st.lists(st.sampled_from(STORES), max_size=2, unique=True),
              aisles=st.lists(st.sampled_from(AISLES), max_size=2, unique=True),
              date_from=st.sampled_from([None, None] + DATES[1:]),
              date_to=st.sampled_from([None, None] + DATES[1:]),
              categories=st.lists(st.sampled_from(RETAIL_CATEGORIES), max_size=2, unique=True),
              class_indices=st.lists(st.sampled_from(CLASSES), max_size=2, unique=True),
              confidence=st.one_of(st.none(), st.tuples(st.sampled_from(THRESHOLD_STEPS),
                                                        st.sampled_from(THRESHOLD_STEPS))
                                   .filter(lambda r: r[0] != r[1]))))


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    if "captured_on" in table:
        table["captured_on"] = [None if pd.isna(d) else str(d)[:10] for d in table["captured_on"]]
    return table.reset_index(drop=True).astype({c: "int64" for c in ("facings", "below_threshold", "corrected")
                                                if c in table})


def by_group(shares: pd.DataFrame, by) -> pd.DataFrame:
    """Empty-shelf shares in a stable order, comparable across SQL and pandas."""
    columns = ["captured_on" if g == "date" else g for g in by]
    shares = comparable(shares)[columns + ["gap_width", "shelf_width", "empty_share"]].fillna({c: "" for c in columns})
    return shares.sort_values(columns, ignore_index=True) if columns else shares.reset_index(drop=True)


def check(engine, queries_):
    detections = load_detections(engine)
    for by, threshold, f in queries_:
        selected = filter_detections(detections, f)
        expected, actual = comparable(tally(selected, by, threshold)), comparable(report.tally_table(engine, by,
                                                                                                      threshold, f))
        pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, rtol=1e-9)
        totals = report.totals(engine, threshold, f)
        is_counted = counted(selected, threshold)
        assert (totals.regions, totals.facings, totals.corrected) == (
            len(selected), int(is_counted.sum()), int(selected["corrected"].sum()))
        histogram = report.confidence_histogram(engine, f)
        reference = [int(in_confidence_range(selected["probability"], THRESHOLD_STEPS[k],
                                             THRESHOLD_STEPS[k + 1] if k < 19 else 1.0).sum()) for k in range(20)]
        assert histogram["regions"].tolist() == reference
        review = ReviewFilter(TallyFilter(**{**f.__dict__, "confidence": None}), f.confidence or (0.0, 1.0))
        expected_queue = review_queue(detections, review)
        assert report.review_count(engine, review) == len(expected_queue)
        assert report.review_rows(engine, review, 1, 1000)["region_id"].tolist() == \
            expected_queue["region_id"].tolist()
        for empty_by in ([], ["store", "aisle", "date"], ["date"]):
            pd.testing.assert_frame_equal(by_group(report.empty_shelf(engine, f, empty_by), empty_by),
                                          by_group(empty_shelf_reference(engine, f, empty_by), empty_by),
                                          check_dtype=False, check_exact=False, rtol=1e-12)
    exported = pd.concat(list(report.region_chunks(engine, TallyFilter(), chunk=3)) or [pd.DataFrame()])
    columns = ["region_id", "class_index", "label", "category", "corrected", "sku", "brand", "top_k", "reviewer",
               "predicted_class_index", "store", "aisle"]
    if len(detections):
        pd.testing.assert_frame_equal(exported[columns].reset_index(drop=True).fillna(""),  # in region order
                                      detections[columns].sort_values("region_id").reset_index(drop=True).fillna(""),
                                      check_dtype=False)


def fresh_engine(url: str):
    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()
    return store.open_store(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sql_tallies_equal_the_pandas_definition(backend, tmp_path_factory):
    if backend == "postgresql":
        require_service(bool(POSTGRES_URL), "PostgreSQL (SHELF_TEST_POSTGRES_URL)")
    examples = 60 if backend == "sqlite" else 25

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(recipe=stores(), queries_=st.lists(queries, min_size=1, max_size=4))
    def run(recipe, queries_):
        url = POSTGRES_URL if backend == "postgresql" else \
            f"sqlite:///{tmp_path_factory.mktemp('equality') / 'store.db'}"
        engine = fresh_engine(url)
        try:
            build(engine, recipe)
            check(engine, queries_)
        finally:
            engine.dispose()

    run()
