"""Charts are built from aggregates the database computes: their embedded data stays small and their numbers match
the tallies."""
import datetime as dt
import random

import pandas as pd
import pytest

from shelf.analytics import charts, report
from shelf.analytics.tally import TallyFilter
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
                  charts.store_trend_chart(report.trend(big, 0.3, by="store"), "per_photo", "Facings per photo"),
                  charts.category_trend_chart(report.trend(big, 0.3, TallyFilter(["S1"])), as_share=False)):
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


DAY1, DAY2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)


@pytest.fixture
def photographed(any_engine):
    """North's shelf as full on both days, photographed once on day 1 and three times on day 2; South once a day,
    with half its shelf gone on day 2, one facing of Produce (a banana) and one of Bakery (a bagel) each day."""
    engine = any_engine
    run_id = store.create_run(engine, TEST_RUN)
    shelf = [(737, 0.9)] * 4
    add_photo(engine, run_id, 1, shelf, "North", "A", DAY1)
    for number in (2, 3, 4):
        add_photo(engine, run_id, number, shelf, "North", "A", DAY2)
    add_photo(engine, run_id, 5, [(737, 0.9)] * 6 + [(954, 0.9), (931, 0.9)], "South", "A", DAY1)
    add_photo(engine, run_id, 6, [(737, 0.9)] * 2 + [(954, 0.9), (931, 0.9)], "South", "A", DAY2)
    add_photo(engine, run_id, 7, shelf, "North", "A")  # undated: in no trend
    return engine


def test_the_trend_is_facings_per_photo_per_store(photographed):
    trend = report.trend(photographed, 0.5, by="store")
    rows = {(d.date(), s): (f, p, pp) for d, s, f, p, pp in
            trend[["date", "store", "facings", "photos", "per_photo"]].itertuples(index=False)}
    assert rows == {(DAY1, "North"): (4, 1, 4.0), (DAY2, "North"): (12, 3, 4.0),  # more photos, not a fuller shelf
                    (DAY1, "South"): (8, 1, 8.0), (DAY2, "South"): (4, 1, 4.0)}
    only_bakery = report.trend(photographed, 0.5, TallyFilter(categories=["Bakery"]), by="store")
    assert only_bakery["per_photo"].tolist() == [0.0, 1.0, 0.0, 1.0]  # North has photos but no bagel: 0, not absent


def test_a_stores_trend_by_category_has_facings_per_photo_and_share(photographed):
    trend = report.trend(photographed, 0.5, TallyFilter(["South"]), by="category")
    day2 = trend[trend["date"].dt.date == DAY2].set_index("category")
    assert day2["facings"].to_dict() == {"Bakery": 1, "Beverages": 2, "Produce": 1}
    assert day2["share"].to_dict() == pytest.approx({"Bakery": 0.25, "Beverages": 0.5, "Produce": 0.25})
    assert set(trend["photos"]) == {1}
    with pytest.raises(ValueError, match="one line per store or per category"):
        report.trend(photographed, 0.5, by="aisle")


def test_trend_charts_never_join_stores_and_stack_categories(photographed):
    lines = charts.store_trend_chart(report.trend(photographed, 0.5, by="store"), "per_photo", "Facings per photo")
    spec = lines.to_dict()
    assert spec["mark"]["type"] == "line" and spec["encoding"]["color"]["field"] == "store"
    assert spec["encoding"]["y"]["title"] == "Facings per photo"
    many = pd.DataFrame({"date": pd.to_datetime([DAY1] * 12), "store": [f"S{i}" for i in range(12)],
                         "per_photo": range(12)})
    assert charts.store_trend_chart(many, "per_photo", "Facings per photo").to_dict()["mark"]["type"] == "rect"
    bands = charts.category_trend_chart(report.trend(photographed, 0.5, TallyFilter(["South"])), as_share=True)
    spec = bands.to_dict()
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["y"]["stack"] == "zero"
    assert spec["encoding"]["y"]["field"] == "share" and spec["encoding"]["color"]["field"] == "category"


@pytest.mark.parametrize("skus", [16, 40])
def test_the_confusion_heat_map_stays_readable(skus):
    """Rows of a fixed height whatever the number of SKUs (they were squeezed to 7 px), long names slanted 45° so
    neighbours never overprint, and each cell's count written in it."""
    names = {i: f"Garant Ecological Medium Fat Milk {i}" for i in range(skus)}
    confusion = pd.DataFrame({"true": range(skus), "predicted": [(i * 7) % skus for i in range(skus)],
                              "count": [1 + i % 6 for i in range(skus)]})
    spec = charts.confusion_heatmap(confusion, names).to_dict()
    assert spec["height"]["step"] >= 18 and spec["width"]["step"] == spec["height"]["step"]
    cells, counts = spec["layer"]
    x_axis = cells["encoding"]["x"]["axis"]
    assert x_axis["labelAngle"] == -45 and x_axis["labelOverlap"] is False and x_axis["labelLimit"] >= 180
    assert cells["encoding"]["x"]["sort"] == cells["encoding"]["y"]["sort"]  # matches on the diagonal
    assert counts["mark"]["type"] == "text" and counts["encoding"]["text"]["field"] == "count"


def test_the_compliance_heat_map_legend_is_whole_and_its_figures_read():
    table = pd.DataFrame({"store": ["S1", "S2"], "aisle": ["A1", "A1"], "compliance": [0.77, 0.93], "osa": [1, 1],
                          "missing": [0, 0]})
    cells, labels = charts.compliance_heatmap(table).to_dict()["layer"]
    legend = cells["encoding"]["color"]["legend"]
    assert (legend["orient"], legend["direction"]) == ("bottom", "horizontal")  # beside two rows, "0%" was cut off
    assert "datum.compliance < 0.8" in labels["encoding"]["color"]["condition"]["test"]  # 77 %: black on light blue
