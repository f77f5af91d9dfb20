"""Tallies math on hand-built detections (the frame shelf.detections builds from the store)."""
import datetime as dt

import pandas as pd
import pytest

from shelf.analytics.export import to_csv_bytes
from shelf.analytics.tally import (
    TallyFilter,
    facings_per_photo,
    filter_detections,
    tally,
)
from tests.reference import build_detections

D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)
CATEGORIES = {440: "Beverages", 737: "Beverages", 134: "Not a product", 517: "Not a product", 931: "Bakery"}


def detections(rows, corrected=()):
    """rows: (photo_id, store, aisle, date, class_index, label, probability); `corrected`: {row: (index, label)}."""
    predictions = pd.DataFrame([
        {"photo_id": p, "photo": f"p{p}.jpg", "sha256": f"{p:064d}", "file": "", "width": 100, "height": 100,
         "store": s, "aisle": a, "captured_on": d, "region_id": i, "position": i, "x1": 0, "y1": 0, "x2": 10,
         "y2": 10, "rank": 1, "class_index": c, "label": l, "probability": pr, "run_id": 1, "weights_verified": True,
         "weights_untrained": False} for i, (p, s, a, d, c, l, pr) in enumerate(rows)])
    fixes = pd.DataFrame([{"region_id": i, "class_index": c, "label": l, "reviewer": "ana",
                           "created_at": pd.Timestamp("2026-11-05")} for i, (c, l) in dict(corrected).items()],
                         columns=["region_id", "class_index", "label", "reviewer", "created_at"])
    return build_detections(predictions, fixes, CATEGORIES)


@pytest.fixture
def shelf():
    return detections([
        (1, "North", "A", D1, 440, "beer bottle", 0.9),
        (1, "North", "A", D1, 440, "beer bottle", 0.5),
        (2, "North", "B", D2, 737, "pop bottle", 0.8),
        (3, "South", "A", D3, 440, "beer bottle", 0.3),
        (3, "South", "A", D3, 134, "crane", 0.6),  # the bird
        (4, "South", "B", None, 517, "crane", 0.7),  # the machine: same name, another class
    ])


def test_facings_share_and_confidence_per_label(shelf):
    table = tally(shelf)
    assert table.columns.tolist() == ["class_index", "label", "facings", "share", "mean_confidence",
                                      "min_confidence", "below_threshold", "corrected"]
    beer = table.set_index("class_index").loc[440]
    assert beer["facings"] == 3 and beer["share"] == pytest.approx(3 / 6)
    assert beer["mean_confidence"] == pytest.approx((0.9 + 0.5 + 0.3) / 3) and beer["min_confidence"] == 0.3
    assert table["share"].sum() == pytest.approx(1.0)
    assert table.iloc[0]["class_index"] == 440  # most facings first


def test_classes_with_the_same_name_stay_apart(shelf):
    cranes = tally(shelf).query("label == 'crane'")
    assert sorted(cranes["class_index"]) == [134, 517] and cranes["facings"].tolist() == [1, 1]


def test_threshold_moves_regions_to_below_threshold(shelf):
    table = tally(shelf, threshold=0.6).set_index("class_index")
    assert table.loc[440, "facings"] == 1 and table.loc[440, "below_threshold"] == 2
    assert table["facings"].sum() == 4 and table["below_threshold"].sum() == 2
    assert table["share"].sum() == pytest.approx(1.0)  # share among counted facings
    assert table.loc[440, "share"] == pytest.approx(1 / 4)


def test_corrections_relabel_count_and_survive_the_threshold():
    shelf = detections([(1, "North", "A", D1, 440, "beer bottle", 0.2), (1, "North", "A", D1, 440, "beer bottle", 0.9)],
                       corrected={0: (931, "bagel")})
    table = tally(shelf, threshold=0.5).set_index("class_index")
    assert table.loc[931, "facings"] == 1 and table.loc[931, "corrected"] == 1  # a reviewed region always counts
    assert table.loc[440, "facings"] == 1 and table.loc[440, "corrected"] == 0
    by_category = tally(shelf, ["category"]).set_index("category")
    assert by_category.loc["Bakery", "facings"] == 1 and by_category.loc["Beverages", "facings"] == 1
    row = shelf.iloc[0]
    assert (row.predicted_class_index, row.class_index, row.label, bool(row.corrected)) == (440, 931, "bagel", True)


def test_share_of_shelf_is_within_each_store(shelf):
    table = tally(shelf, ["store", "category"])
    north = table[table.store == "North"].set_index("category")
    south = table[table.store == "South"].set_index("category")
    assert north.loc["Beverages", "share"] == pytest.approx(1.0)  # all 3 North facings are beverages
    assert south.loc["Beverages", "share"] == pytest.approx(1 / 3)
    assert south.loc["Not a product", "share"] == pytest.approx(2 / 3)
    assert table.groupby("store")["share"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_grouped_by_store_alone_each_row_is_its_share_of_the_selection(shelf):
    table = tally(shelf, ["store"]).set_index("store")
    assert table.loc["North", "share"] == pytest.approx(3 / 6) and table.loc["South", "share"] == pytest.approx(3 / 6)
    by_store_and_date = tally(shelf, ["store", "date"])
    assert by_store_and_date["share"].sum() == pytest.approx(1.0)  # scope columns only: shares of the selection


def test_group_by_date_keeps_undated_photos_as_their_own_group(shelf):
    table = tally(shelf, ["date"])
    assert table["facings"].sum() == 6 and len(table) == 4
    assert table["captured_on"].isna().sum() == 1


def test_store_aisle_date_and_category_filters(shelf):
    assert len(filter_detections(shelf, TallyFilter(stores=["South"]))) == 3
    assert len(filter_detections(shelf, TallyFilter(stores=["South"], aisles=["A"]))) == 2
    assert len(filter_detections(shelf, TallyFilter(date_from=D2, date_to=D3))) == 3
    assert len(filter_detections(shelf, TallyFilter(date_from=D2, date_to=D2))) == 1
    assert len(filter_detections(shelf, TallyFilter(categories=["Beverages"]))) == 4
    assert 517 in set(filter_detections(shelf, TallyFilter()).class_index)
    assert 517 not in set(filter_detections(shelf, TallyFilter(date_to=D3)).class_index)


def test_empty_scope_gives_an_empty_table_with_the_columns(shelf):
    table = tally(filter_detections(shelf, TallyFilter(stores=["Nowhere"])), ["store", "label"])
    assert table.empty and table.columns.tolist()[:3] == ["store", "class_index", "label"]
    assert to_csv_bytes(table).decode().startswith("store,class_index,label,facings,share")


def test_a_scope_with_nothing_counted_has_zero_share_not_nan():
    table = tally(detections([(1, "Only", "", D1, 737, "pop bottle", 0.1)]), ["store", "label"], threshold=0.5)
    assert table["facings"].tolist() == [0] and table["share"].tolist() == [0.0]


def test_one_store_only():
    table = tally(detections([(1, "Only", "", D1, 737, "pop bottle", 0.4)]))
    assert table.to_dict("records") == [{"class_index": 737, "label": "pop bottle", "facings": 1, "share": 1.0,
                                         "mean_confidence": 0.4, "min_confidence": 0.4, "below_threshold": 0,
                                         "corrected": 0}]


def test_facings_per_photo(shelf):
    per_photo = facings_per_photo(shelf)
    assert per_photo[per_photo.photo_id == 1][["class_index", "facings"]].values.tolist() == [[440, 2]]


def test_unknown_grouping_is_refused(shelf):
    with pytest.raises(ValueError, match="group by"):
        tally(shelf, ["colour"])
