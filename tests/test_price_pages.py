"""The Compliance page's Prices tab and Review's price corrections, through AppTest."""
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from shelf.analytics import planogram
from shelf.storage import store
from shelf.storage.prices import labels_frame, save_labels
from tests.factory import TEST_RUN, add_photo
from tests.test_app import APP, TIMEOUT
from tests.test_price_compliance import BEER, DAY, MILK, PLAN, POP, WATER, WINE, tag


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def priced_store():
    from shelf import access
    engine = store.open_store()
    run = store.create_run(engine, TEST_RUN)
    photo = add_photo(engine, run, 1, [(POP, 0.9), (POP, 0.9), (WINE, 0.9), (BEER, 0.9), (WATER, 0.9), (MILK, 0.9)],
                      "North", "7", DAY)
    save_labels(engine, photo, run, [tag(0, "1.99", (0, 1)), tag(20, "6.99", (2,)), tag(30, None, (3,), 0.4)])
    planogram.import_csv(engine, PLAN.encode(), "plan.csv", access.LOCAL)
    return engine, photo


def test_the_prices_tab_shows_each_status(priced_store):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/compliance.py").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Price compliance"] == "25%"
    assert all(metrics[s] == "1" for s in ("Price OK", "Wrong price", "Label missing", "Unreadable"))
    table = next(df.value for df in at.dataframe if "price_status" in df.value.columns)
    assert table.set_index("product").loc["imagenet:907", "price_read"] == 6.99


def test_a_reviewer_corrects_a_price_on_review(priced_store):
    engine, photo = priced_store
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    shown = next(df.value for df in at.dataframe if "correct_price" in df.value.columns)
    assert shown["text"].tolist()[0] == "Apples"  # unreadable first
    row = shown["text"].tolist().index("6.99")
    at.text_input(key="reviewer").set_value("Ana")
    at.session_state["price_editor"] = {"edited_rows": {row: {"correct_price": "6,49"}}, "added_rows": [],
                                        "deleted_rows": []}
    at.run()
    at.button(key="save_prices").click().run()
    assert not at.exception, at.exception
    assert "Saved 1 price correction(s)." in " ".join(s.value for s in at.success)
    stored = labels_frame(engine, [photo]).set_index("text").loc["6.99"]
    assert stored["price"] == 6.49 and stored["corrected"]
