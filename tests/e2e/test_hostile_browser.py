"""Hostile input in a real browser (issue 16): a file name written as Markdown stays text (the browser fetches
nothing it names), and a table's own "Download as CSV" gives no cell a spreadsheet would run as a formula."""
import pandas as pd

from shelf.recognition import catalog
from shelf.storage import store
from tests.e2e.conftest import open_page
from tests.hostile_files import HOSTILE_NAME, png_bytes

FORMULA_NAME, FORMULA_BRAND = '=HYPERLINK("http://x","click")', "+SUM(1,2)"


def test_markdown_in_file_names_stays_text(server, page, tmp_path):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    stem = HOSTILE_NAME.removesuffix(".jpg")
    good, bad = tmp_path / f"{stem}.png", tmp_path / f"{stem}.jpg"
    good.write_bytes(png_bytes())
    bad.write_text("not a photo")
    open_page(page, server, "recognize", "Shelf photos or product crops")
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(good), str(bad)])
    page.get_by_role("button", name="Recognize 2 photos").click()
    page.get_by_text("See the tallies").wait_for()
    caption = page.get_by_test_id("stImageCaption").first.inner_text()
    error = page.get_by_test_id("stAlertContentError").first.inner_text()
    for shown in (caption, error):
        assert "![p](http:&#47;&#47;HOST&#47;x.png) &#x202E;gnp" in shown  # exactly as typed, entities and all
    assert page.locator("[data-testid='stMain'] img[src*='host' i], a[href*='host' i]").count() == 0
    assert not [url for url in requested if "//host/" in url.lower()]


def test_a_tables_own_csv_download_has_no_formula_cells(server, page):
    engine = store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")
    catalog.add_sku(engine, FORMULA_NAME, FORMULA_BRAND, "Beverages")
    engine.dispose()
    # Without the File System Access API, Streamlit's toolbar falls back to an ordinary download Playwright sees.
    page.add_init_script("delete Window.prototype.showSaveFilePicker; delete window.showSaveFilePicker;")
    open_page(page, server, "catalog", "SKU(s)")
    page.get_by_test_id("stDataFrame").first.hover()
    with page.expect_download() as download:  # dispatched: the heading above the table may overlap the toolbar
        page.get_by_role("button", name="Download as CSV").dispatch_event("click")
    table = pd.read_csv(download.value.path(), encoding="utf-8-sig")
    assert table.loc[0, "name"] == "'" + FORMULA_NAME and table.loc[0, "brand"] == "'" + FORMULA_BRAND
