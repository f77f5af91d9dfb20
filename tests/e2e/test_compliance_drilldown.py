"""Compliance's *Look closer* in Chromium (issue 29, item 10): after the date changes, the picker names the
store/aisle/date whose lines the table shows, not the one picked on the previous date."""
from shelf import access
from shelf.analytics import planogram
from shelf.storage import store
from tests.e2e.conftest import open_page, pick_option, settled
from tests.factory import TEST_RUN
from tests.test_compliance import DAY1, DAY2, POP, WINE, add_shelf


def picker_text(page) -> str:
    """What the picker shows (its input holds the chosen option's text)."""
    return page.get_by_test_id("stSelectbox").filter(has_text="Store · aisle · date").locator("input").input_value()


def test_the_drill_down_follows_a_date_change(server, page):
    engine = store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")
    run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    add_shelf(engine, run, 911, "S2", "A1", DAY1, [(POP, 0.9)] * 2)
    add_shelf(engine, run, 912, "S3", "A1", DAY2, [(WINE, 0.9)])
    planogram.import_csv(engine, b"store,aisle,product,expected_facings\n*,A1,imagenet:737,2\n", "plan.csv",
                         access.LOCAL)
    engine.dispose()

    open_page(page, server, "compliance", "Look closer")
    assert "S3 · A1 · 2026-03-02" in picker_text(page)  # the newest date comes first
    pick_option(page, page.get_by_test_id("stSelectbox").filter(has_text="Date").first, "2026-03-01")
    page.get_by_test_id("stMetric").filter(has_text="Compliance").get_by_text("100.0%").wait_for()  # S2's figures
    settled(page)
    assert "S2 · A1 · 2026-03-01" in picker_text(page)
    assert page.get_by_text("Compliance 100% · on-shelf availability 100%").is_visible()  # the picked aisle's
