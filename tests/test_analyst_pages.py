"""What analysts read on the dashboard (issue 29, items 11–13), through AppTest: trends plotted per photo and per
store, Review back on page 1 after a filter change with the region's number in sight."""
import datetime as dt

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from shelf.storage import store
from tests.factory import TEST_RUN, add_photo
from tests.test_app import APP, TIMEOUT, texts

DAY1, DAY2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def charts_with(at: AppTest, text: str) -> list[str]:
    return [c.proto.spec for c in at.get("vega_lite_chart") if text in c.proto.spec]


def test_tallies_trend_is_per_photo_one_line_per_store_and_says_so(loaded):
    engine = store.open_store()
    run_id = store.create_run(engine, TEST_RUN)
    add_photo(engine, run_id, 1, [(737, 0.9)] * 4, "North", "A", DAY1)
    for number in (2, 3, 4):  # three photos of the same full shelf the next day
        add_photo(engine, run_id, number, [(737, 0.9)] * 4, "North", "A", DAY2)
    add_photo(engine, run_id, 5, [(737, 0.9), (954, 0.9), (931, 0.9)], "South", "A", DAY2)
    at = open_page("pages/tallies.py")
    assert not charts_with(at, "per_photo")  # computed only while its tab is open
    at.session_state["tallies_tab"] = "Trend"  # what a click on the tab does
    at.run()
    (lines,) = charts_with(at, "per_photo")
    assert '"line"' in lines and '"field": "store"' in lines and '"title": "Facings per photo"' in lines
    assert "**Facings per photo**: counted facings ÷ photos taken, per store and photo date" in texts(at.caption)

    at.selectbox(key="trend_store").set_value("South").run()
    assert not at.exception, at.exception
    (bands,) = charts_with(at, "per_photo")
    assert '"bar"' in bands and '"stack": "zero"' in bands and '"field": "category"' in bands
    at.segmented_control(key="trend_measure").set_value("Share of shelf").run()
    (bands,) = charts_with(at, "per_photo")
    assert '"field": "share"' in bands and '"title": "Share of shelf"' in bands
    assert "each category's **share** of the store's counted facings that day" in texts(at.caption)


def test_review_starts_at_page_1_after_a_filter_change(loaded):
    engine = store.open_store()
    run_id = store.create_run(engine, TEST_RUN)
    for number, name in enumerate(("North", "South"), start=1):  # 30 regions each: 3 pages in all, 2 per store
        add_photo(engine, run_id, number, [(737, 0.01 + i / 100) for i in range(30)], name, "A", DAY1)
    at = open_page("pages/review.py")
    at.number_input(key="review_page").set_value(2).run()
    assert "page 2 of 3" in texts(at.caption)
    at.multiselect(key="review_stores").set_value(["South"]).run()
    assert not at.exception, at.exception
    assert "30 region(s) to review, least confident first · page 1 of 2" in texts(at.caption)
    assert at.number_input(key="review_page").value == 1
    rows = at.dataframe[0].value
    assert rows["where"].str.match(r"#\d+ · IMG_00002\.jpg \(").all() and len(rows) == 25  # South's first page
    at.number_input(key="review_page").set_value(2).run()  # paging still works, and stays put without a change
    assert "page 2 of 2" in texts(at.caption) and len(at.dataframe[0].value) == 5
    assert "Session State" not in texts(at.warning), texts(at.warning)  # no warning about setting the page
