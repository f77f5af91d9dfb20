"""Review in Chromium at laptop and narrow widths (issue 29, item 13): each row's region number is in sight."""
import datetime as dt
import re

import pytest

from shelf.storage import store
from tests.e2e.conftest import settled
from tests.factory import TEST_RUN, add_photo

LONG_NAME = "IMG_20261104_153012_store-north_aisle-7-beverages.jpg"


@pytest.mark.parametrize("width", [1280, 800])
def test_the_region_number_is_in_sight(server, browser, width):
    engine = store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")
    if not len(store.photos_page(engine)):
        add_photo(engine, store.create_run(engine, TEST_RUN), 1, [(737, 0.2 + i / 100) for i in range(12)], "North",
                  "7", dt.date(2026, 11, 4), name=LONG_NAME)
    engine.dispose()
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{server.url}/review")
        page.get_by_test_id("stDataFrame").first.locator("canvas").first.wait_for()
        settled(page)
        # the grid draws on a canvas; its accessible twin holds the cells of the columns in view
        cells = page.locator("[id^='glide-cell-']").all_inner_texts()
        numbered = [c for c in cells if re.match(r"#\d+ · ", c)]
        assert len(numbered) == 12, cells[:12]
        assert f"#1 · {LONG_NAME} (" in numbered[0]
    finally:
        context.close()
