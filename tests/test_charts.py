"""Charts are built from aggregates the database computes: their embedded data stays small and their numbers match
the tallies."""
import datetime as dt
import random

import pandas as pd
import pytest

from shelf.analytics import charts, report
from shelf.storage import store
from tests.factory import TEST_RUN, add_photo

CLASSES = [440, 737, 931, 134]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """600 photos × 6 regions in 7 stores over 20 days."""
    engine = store.open_store(f"sqlite:///{tmp_path_factory.mktemp('charts') / 'store.db'}")
    run_id = store.create_run(engine, TEST_RUN)
    rng = random.Random(1)
    for p in range(600):
        add_photo(engine, run_id, p, [(rng.choice(CLASSES), rng.random()) for _ in range(6)], f"S{p % 7}", "A",
                  dt.date(2026, 11, 1 + p % 20))
    return engine


def embedded_rows(chart) -> int:
    return sum(len(v) for v in chart.to_dict()["datasets"].values())


def test_every_chart_embeds_aggregates_not_regions(big):
    table = report.tally_table(big, ["label"], 0.3)
    for chart in (charts.facings_bar_chart(table, ["label"]),
                  charts.share_of_shelf_chart(report.share_by_store(big, 0.3)),
                  charts.confidence_histogram(report.confidence_histogram(big), 0.3),
                  charts.trend_chart(report.trend(big, 0.3))):
        assert embedded_rows(chart) < 500  # 3 600 regions in, Altair's 5 000-row limit never near


def test_share_chart_numbers_match_the_tally(big):
    frame = report.share_by_store(big, 0.3)
    expected = report.tally_table(big, ["store", "category"], 0.3)
    merged = frame.merge(expected, on=["store", "category"], suffixes=("", "_tally"))
    assert len(merged) == len(expected)
    assert merged["facings"].tolist() == merged["facings_tally"].tolist()
    assert merged["share"].tolist() == pytest.approx(merged["share_tally"].tolist())


def test_histogram_counts_every_region_once(big):
    assert report.confidence_histogram(big)["regions"].sum() == 3600


def test_selections_are_read_from_streamlit_state():
    assert charts.picked_categories({charts.CATEGORY_PICK: [{"category": "Beverages"}]}) == ["Beverages"]
    assert charts.picked_categories({}) == [] and charts.picked_categories(None) == []
    assert charts.brushed_range({charts.CONFIDENCE_BRUSH: {"low": [0.7, 0.2]}}) == (0.2, 0.7)
    assert charts.brushed_range({charts.CONFIDENCE_BRUSH: {"low": [0.21, 0.44]}}) == (0.2, 0.45)  # whole bins
    assert charts.brushed_range({charts.CONFIDENCE_BRUSH: {}}) is None


def test_group_names_read_well():
    table = pd.DataFrame({"class_index": [737], "label": ["pop bottle"], "store": [""]})
    assert charts.group_name(table, ["label", "store"]).tolist() == ["pop bottle (737) · —"]
