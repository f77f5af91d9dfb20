"""Charts are built from aggregates: their embedded data stays small and their numbers match the tallies."""
import datetime as dt
import random

import pandas as pd
import pytest

from shelf import charts
from shelf.tally import tally
from tests.test_tally import detections


@pytest.fixture(scope="module")
def big():
    rng = random.Random(1)
    classes = [(440, "beer bottle"), (737, "pop bottle"), (931, "bagel"), (134, "crane")]
    rows = [(p, f"S{p % 7}", "A", dt.date(2026, 11, 1 + p % 20), *rng.choice(classes), rng.random())
            for p in range(2000) for _ in range(6)]
    return detections(rows)


def embedded_rows(chart) -> int:
    return sum(len(v) for v in chart.to_dict()["datasets"].values())


def test_every_chart_embeds_aggregates_not_regions(big):
    table = tally(big, ["label"], 0.3)
    for chart in (charts.facings_bar_chart(table, ["label"]), charts.share_of_shelf_chart(big, 0.3),
                  charts.confidence_histogram(big, 0.3), charts.trend_chart(big, 0.3)):
        assert embedded_rows(chart) < 500  # 12 000 regions in, Altair's 5 000-row limit never near


def test_share_chart_numbers_match_the_tally(big):
    frame = charts.share_by_store_frame(big, 0.3)
    expected = tally(big, ["store", "category"], 0.3)
    merged = frame.merge(expected, on=["store", "category"], suffixes=("", "_tally"))
    assert len(merged) == len(expected)
    assert merged["facings"].tolist() == merged["facings_tally"].tolist()
    assert merged["share"].tolist() == pytest.approx(merged["share_tally"].tolist())


def test_histogram_counts_every_region_once(big):
    assert charts.confidence_histogram_frame(big)["regions"].sum() == len(big)


def test_selections_are_read_from_streamlit_state():
    assert charts.picked_categories({charts.CATEGORY_PICK: [{"category": "Beverages"}]}) == ["Beverages"]
    assert charts.picked_categories({}) == [] and charts.picked_categories(None) == []
    assert charts.brushed_range({charts.CONFIDENCE_BRUSH: {"low": [0.7, 0.2]}}) == (0.2, 0.7)
    assert charts.brushed_range({charts.CONFIDENCE_BRUSH: {}}) is None


def test_group_names_read_well():
    table = pd.DataFrame({"class_index": [737], "label": ["pop bottle"], "store": [""]})
    assert charts.group_name(table, ["label", "store"]).tolist() == ["pop bottle (737) · —"]
