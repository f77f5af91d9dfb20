"""The Compliance page through AppTest: planogram import with per-line errors, the heat map, the worst list with
its missing products, and a CSV that matches the table."""
import io

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from shelf import access
from shelf.analytics import planogram
from shelf.recognition import catalog
from shelf.storage import store
from tests.factory import TEST_RUN
from tests.test_app import APP, TIMEOUT, downloads, texts  # noqa: F401  (downloads is a fixture)
from tests.test_compliance import (
    BEER,
    DAY1,
    DAY2,
    PLANOGRAM,
    POP,
    WATER,
    WINE,
    add_shelf,
)


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first table shown that has these columns (AppTest does not expose a dataframe's key)."""
    return next(df.value for df in at.dataframe if set(columns) <= set(df.value.columns))


def open_compliance() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/compliance.py").run()
    assert not at.exception, at.exception
    return at


def test_import_then_heat_map_worst_list_and_csv(downloads):  # noqa: F811
    engine = store.open_store()
    catalog.add_sku(engine, "Cola", "Fizz", "Beverages")
    run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    add_shelf(engine, run, 1, "North", "7", DAY1, [(POP, 0.9)] * 4 + [(WINE, 0.9)] * 3 + [(BEER, 0.9)] * 2)
    add_shelf(engine, run, 2, "North", "7", DAY2, [(POP, 0.9)] * 4 + [(WINE, 0.9), (WATER, 0.9)], gaps=[40])
    at = open_compliance()
    assert "No store/aisle/date in this selection has both photos and a planogram" in texts(at.info)

    bad = PLANOGRAM + "*,7,imagenet:5000,1\n*,8,Fanta,2\n"
    at.file_uploader(key="planogram_upload").set_value(("plan.csv", bad.encode(), "text/csv")).run()
    at.button(key="planogram_import").click().run()
    assert not at.exception, at.exception
    assert "4 line(s) imported for 2 store/aisle(s)." in texts(at.success)
    errors = texts(at.error)
    assert "2 line(s) refused" in errors and "plan\\.csv, line 6" in errors and "plan\\.csv, line 7" in errors
    assert len(planogram.frame(engine)) == 4

    at.selectbox(key="compliance_day").set_value(DAY2.toordinal()).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["On-shelf availability"] == "66.7%" and metrics["Compliance"] == f"{5 / 9:.1%}"
    assert metrics["Empty shelf"] == f"{40 / 100:.1%}"
    (heat_map,) = at.get("vega_lite_chart")  # the trend (every date: costly at chain scale) waits to be asked for
    assert '"rect"' in heat_map.proto.spec and '"compliance"' in heat_map.proto.spec
    at.toggle(key="compliance_trend").set_value(True).run()
    heat_map, trend = at.get("vega_lite_chart")  # the trend covers every date whatever the date picked
    assert '"line"' in trend.proto.spec and '"field": "store"' in trend.proto.spec  # a line per store
    assert "**Compliance** per store and photo date" in texts(at.caption)
    worst = table_with(at, "missing_products")
    assert worst["missing_products"].tolist() == ["beer bottle (440)"]
    detail = table_with(at, "status")
    assert dict(zip(detail["product"], detail["status"])) == {"imagenet:440": "missing", "imagenet:907": "under",
                                                              "imagenet:898": "extra", "imagenet:737": "ok"}
    extra = detail.set_index("product").loc["imagenet:898"]
    assert (extra["expected_facings"], extra["shelf_row"]) == (0, "")  # planned nowhere, not "None"
    shown = table_with(at, "planned_products", "extra")
    url = next(b.proto.url for b in at.get("download_button") if b.label == "Download the store/aisle table (CSV)")
    csv = pd.read_csv(io.BytesIO(downloads[url]), dtype={"aisle": str})
    assert csv.columns.tolist() == shown.columns.tolist()
    assert csv[["store", "aisle", "planned_products", "missing", "extra"]].values.tolist() == \
        shown[["store", "aisle", "planned_products", "missing", "extra"]].values.tolist()
    assert csv["compliance"].tolist() == pytest.approx(shown["compliance"].tolist())

    at.selectbox(key="compliance_day").set_value(-1).run()  # every date: both rows of North · 7
    assert not at.exception, at.exception
    assert len(table_with(at, "planned_products", "extra")) == 2
    at.toggle(key="compliance_photos").set_value(True).run()
    assert not at.exception, at.exception
    assert "the stored photo file cannot be read" in texts(at.caption)  # the factory stores no bytes


def test_tallies_show_empty_shelf_share():
    engine = store.open_store()
    run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    add_shelf(engine, run, 1, "North", "7", DAY1, [(POP, 0.9)] * 3, gaps=[10])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/tallies.py").run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Empty shelf"] == "25.0%"
    assert table_with(at, "empty_share")["empty_share"].tolist() == [0.25]


def test_an_admin_edits_a_planogram_in_its_grid():
    engine = store.open_store()
    planogram.import_csv(engine, b"store,aisle,product,expected_facings\n*,7,imagenet:737,4\n*,7,imagenet:907,3\n",
                         "plan.csv", access.LOCAL)
    at = open_compliance()
    at.selectbox(key="planogram_pair").set_value(("*", "7")).run()
    grid = table_with(at, "name", "expected_facings")
    assert grid["name"].tolist() == ["pop bottle (737)", "wine bottle (907)"]  # what each product is, beside it
    at.session_state["planogram_editor_('*', '7')"] = {"edited_rows": {0: {"expected_facings": 6}},
                                                       "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="planogram_save").click().run()
    assert not at.exception, at.exception
    assert "Saved 2 line(s)." in texts(at.success)
    saved = planogram.frame(engine)
    assert dict(zip(saved["product"], saved["expected_facings"])) == {"imagenet:737": 6, "imagenet:907": 3}
