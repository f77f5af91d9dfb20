import datetime as dt

import pandas as pd
import pytest

from shelf.export import to_csv_bytes
from shelf.tally import TallyFilter, filter_detections, tally_by_label

D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)


def detections(rows):
    return pd.DataFrame(rows, columns=["photo_id", "store", "aisle", "captured_on", "class_index", "label",
                                       "probability"])


@pytest.fixture
def top1():
    return detections([
        (1, "North", "A", D1, 440, "beer bottle", 0.9),
        (1, "North", "A", D1, 440, "beer bottle", 0.5),
        (2, "North", "B", D2, 737, "pop bottle", 0.8),
        (3, "South", "A", D3, 440, "beer bottle", 0.3),
        (3, "South", "A", D3, 134, "crane", 0.6),  # the bird
        (4, "South", "B", None, 517, "crane", 0.7),  # the machine: same name, another class
    ])


def test_counts_share_and_confidence_per_class(top1):
    table = tally_by_label(top1)
    assert table.columns.tolist() == ["class_index", "label", "count", "share", "mean_confidence", "min_confidence"]
    beer = table.set_index("class_index").loc[440]
    assert beer["count"] == 3 and beer["share"] == pytest.approx(3 / 6)
    assert beer["mean_confidence"] == pytest.approx((0.9 + 0.5 + 0.3) / 3) and beer["min_confidence"] == 0.3
    assert table["share"].sum() == pytest.approx(1.0)
    assert table.iloc[0]["class_index"] == 440  # most frequent first


def test_classes_with_the_same_name_stay_apart(top1):
    cranes = tally_by_label(top1).query("label == 'crane'")
    assert sorted(cranes["class_index"]) == [134, 517] and cranes["count"].tolist() == [1, 1]


def test_confidence_threshold(top1):
    table = tally_by_label(filter_detections(top1, TallyFilter(min_confidence=0.6)))
    assert dict(zip(table.class_index, table["count"])) == {440: 1, 737: 1, 134: 1, 517: 1}
    assert table["share"].sum() == pytest.approx(1.0)  # share is within the filtered scope


def test_store_aisle_and_date_filters(top1):
    assert len(filter_detections(top1, TallyFilter(stores=["South"]))) == 3
    assert len(filter_detections(top1, TallyFilter(stores=["South"], aisles=["A"]))) == 2
    assert len(filter_detections(top1, TallyFilter(date_from=D2, date_to=D3))) == 3
    assert len(filter_detections(top1, TallyFilter(date_from=D2, date_to=D2))) == 1
    # Undated photos are counted when no date bound is set, and left out once one is.
    assert 517 in set(filter_detections(top1, TallyFilter()).class_index)
    assert 517 not in set(filter_detections(top1, TallyFilter(date_to=D3)).class_index)


def test_empty_scope_gives_an_empty_table_with_the_columns(top1):
    table = tally_by_label(filter_detections(top1, TallyFilter(stores=["Nowhere"])))
    assert table.empty and table.columns.tolist()[:3] == ["class_index", "label", "count"]
    assert to_csv_bytes(table).decode().strip() == "class_index,label,count,share,mean_confidence,min_confidence"


def test_one_store_only():
    table = tally_by_label(detections([(1, "Only", "", D1, 737, "pop bottle", 0.4)]))
    assert table.to_dict("records") == [{"class_index": 737, "label": "pop bottle", "count": 1, "share": 1.0,
                                         "mean_confidence": 0.4, "min_confidence": 0.4}]
