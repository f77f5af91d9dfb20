"""What analysts hit in the browser (issue 'corrections saved on the wrong region', items 1-4), in Chromium:
grid edits stay with their region or class across pages and searches; the SKU form keeps its inputs on an error
and refuses a SKU without photos; removing a SKU asks first."""
import datetime as dt

import sqlalchemy as sa

from shelf.analytics.categories import category_map
from shelf.recognition import catalog
from shelf.storage import store
from tests.conftest import image_bytes
from tests.e2e.conftest import open_page, settled
from tests.factory import TEST_RUN, add_photo
from tests.synthetic import make_product

HEADER, SMALL, MEDIUM = 35, 75, 200  # Streamlit's grid: header row and column widths ("small", "medium")


def engine_of(server):
    return store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")


def pick_in_grid(page, x: float, y: float, text: str) -> None:
    """Open the grid's select-box cell at (x, y) (canvas pixels), type to filter its options, take the first."""
    grid = page.get_by_test_id("stDataFrame").first
    grid.locator("canvas").first.wait_for()
    page.wait_for_timeout(500)
    grid.dblclick(position={"x": x, "y": y})
    page.wait_for_timeout(500)
    page.keyboard.type(text)
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    page.keyboard.press("Escape")
    settled(page)


def test_a_review_pick_stays_with_its_region_across_pages(server, page):
    engine = engine_of(server)
    run_id = store.create_run(engine, TEST_RUN)
    add_photo(engine, run_id, 1, [(737, 0.01 + i / 100) for i in range(30)], "North", "A", dt.date(2026, 11, 2),
              name="thirty.jpg")  # 30 regions: two pages of 25, least confident (0.01) first
    page.goto(f"{server.url}/review")
    page.get_by_text("region(s) to review").wait_for()
    page.get_by_label("Your name (saved with each correction)").fill("Ana")
    page.keyboard.press("Enter")
    settled(page)
    # Correct to: after Region (small), Counts as (medium) and Confidence (small); row 1 is 100 px high
    pick_in_grid(page, SMALL + MEDIUM + SMALL + MEDIUM / 2, HEADER + 50, "bagel")
    page.get_by_role("button", name="Save 1 correction(s)").wait_for()
    page.get_by_label("Page (of 2, 25 per page)").fill("2")
    page.keyboard.press("Enter")
    settled(page)
    page.get_by_text("1 pick(s) are for regions not on this page").wait_for()
    page.get_by_role("button", name="Save 1 correction(s)").click()
    page.get_by_text("Saved 1 correction(s)").wait_for()
    corrected = store.latest_corrections(engine)
    with engine.connect() as conn:
        least_confident = conn.execute(sa.select(store.regions.c.id).order_by(store.regions.c.probability)
                                       .limit(1)).scalar()
    assert corrected[["region_id", "class_index", "reviewer"]].values.tolist() == [[least_confident, 931, "Ana"]]
    assert page.get_by_role("button", name="Save 0 correction(s)").is_visible()  # a clean editor


def test_a_category_edit_stays_with_its_class_after_a_search(server, page):
    page.goto(f"{server.url}/categories")
    page.get_by_label("Find a class").fill("great white shark")
    page.keyboard.press("Enter")
    settled(page)
    pick_in_grid(page, SMALL + MEDIUM + MEDIUM / 2, HEADER + 17, "Produce")  # Retail category of row 1
    page.get_by_role("button", name="Save 1 change(s)").wait_for()
    page.get_by_label("Find a class").fill("crane")
    page.keyboard.press("Enter")
    settled(page)
    page.get_by_text("great white shark (2) → Produce").wait_for()  # kept with its class, not on row 1 (a crane)
    page.get_by_label("Your name (saved with each change)").fill("Ana")
    page.keyboard.press("Enter")
    settled(page)
    page.get_by_role("button", name="Save 1 change(s)").click()
    page.get_by_text("Saved 1 change(s)").wait_for()
    current = category_map(engine_of(server))
    assert current[2] == "Produce" and current[134] == "Not a product" and current[517] == "Not a product"


def test_the_sku_form_keeps_its_inputs_and_needs_a_photo(server, page, tmp_path):
    photos = []
    for view in range(2):
        path = tmp_path / f"cola-{view}.png"
        path.write_bytes(image_bytes(make_product(0, view), "PNG"))
        photos.append(str(path))
    page.goto(f"{server.url}/catalog")
    page.get_by_text("Add a SKU").first.wait_for()
    page.get_by_label("Name").fill("Cola 1.5 L")
    page.get_by_label("Brand").fill("Fizzy Co")
    page.get_by_label("GTIN (optional)").fill("123")
    page.get_by_role("button", name="Add SKU").click()
    page.get_by_text("a GTIN is 8, 12, 13 or 14 digits").wait_for()
    assert page.get_by_label("Name").input_value() == "Cola 1.5 L"  # nothing typed was lost
    assert page.get_by_label("Brand").input_value() == "Fizzy Co"
    page.get_by_label("GTIN (optional)").fill("")
    page.get_by_role("button", name="Add SKU").click()  # no photos yet
    page.get_by_text("needs at least one reference photo").wait_for()
    assert catalog.skus_frame(engine_of(server)).empty
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(photos)
    page.get_by_text("cola-1.png").wait_for()
    page.get_by_role("button", name="Add SKU").click()
    page.get_by_text("with 2 reference photo(s)").wait_for()
    assert catalog.skus_frame(engine_of(server))["references"].tolist() == [2]


def test_removing_a_sku_asks_first(server, page, monkeypatch):
    monkeypatch.setenv("SHELF_DATA_DIR", str(server.data_dir))  # the reference photos go where the server reads them
    engine = engine_of(server)
    catalog.create_sku(engine, "Lemonade", "", "Beverages", None,
                       [(f"{v}.png", image_bytes(make_product(1, v), "PNG")) for v in range(2)])
    page.goto(f"{server.url}/catalog")
    page.get_by_label("SKU", exact=True).wait_for()
    names = set(catalog.skus_frame(engine)["name"])
    page.get_by_role("button", name="Remove this SKU …").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("reference photo(s)").wait_for()
    dialog.get_by_role("button", name="Keep it").click()
    settled(page)
    assert set(catalog.skus_frame(engine)["name"]) == names  # nothing removed without a confirmation
    page.get_by_role("button", name="Remove this SKU …").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    page.get_by_text("Removed").first.wait_for()
    assert len(catalog.skus_frame(engine)) == len(names) - 1


def test_a_stored_photo_is_recognized_again_moved_and_deleted(server, page, tmp_path):
    from tests.conftest import skimage_photo
    engine = engine_of(server)
    photo = tmp_path / "coffee.png"
    photo.write_bytes(skimage_photo("coffee.png").read_bytes())
    open_page(page, server, "recognize", "Shelf photos or product crops")
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(photo)])
    page.get_by_role("button", name="Recognize 1 photo").click()
    page.get_by_text("1 new photo(s) stored").wait_for()
    page.get_by_label("Store").first.fill("Uptown")
    page.keyboard.press("Enter")
    settled(page)
    page.get_by_role("button", name="Recognize 1 photo").click()
    page.get_by_text("1 already in the store (shown from it)").wait_for()
    page.get_by_role("button", name="Recognize the 1 stored photo again with these settings").click()
    page.get_by_text("1 recognized again").wait_for()
    photos = store.photos_page(engine).query("name == 'coffee.png'")  # the module's server holds other photos
    assert photos["store"].tolist() == ["Uptown"]
    with engine.connect() as conn:
        runs = conn.execute(sa.select(store.runs.c.preprocessing).order_by(store.runs.c.id.desc()).limit(1)).scalar()
    assert '"recognized_again": true' in runs

    page.get_by_role("button", name="Uptown · no aisle").click()  # the card's store · aisle · date
    popover = page.get_by_test_id("stPopoverBody")
    popover.get_by_label("Aisle").fill("7 – Beverages")
    popover.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Uptown · 7 – Beverages").wait_for()
    settled(page)
    assert store.photo_context(engine, int(photos["id"][0])).aisle == "7 – Beverages"

    page.get_by_role("button", name="Delete this photo …").click()  # the popover stays open after Save
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("This cannot be undone").wait_for()
    dialog.get_by_role("button", name="Keep it").click()
    settled(page)
    assert "coffee.png" in set(store.photos_page(engine)["name"])  # nothing deleted without a confirmation
    delete = page.get_by_role("button", name="Delete this photo …")
    if not delete.is_visible():
        page.get_by_role("button", name="Uptown · 7 – Beverages").click()
    delete.click()
    dialog.get_by_text("This cannot be undone").wait_for()
    settled(page)
    dialog.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_text("Deleted coffee.png").wait_for()
    assert "coffee.png" not in set(store.photos_page(engine)["name"])
