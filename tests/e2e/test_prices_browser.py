"""Shelf-edge prices in a real browser: recognise a labelled shelf with *Read shelf-edge prices* on; the overlay
draws the labels (in their own colour) and the region inspector says what the label under a facing reads."""
import io
from decimal import Decimal

import numpy as np
import pytest
from PIL import Image

from shelf.ingest.overlay import PRICE_COLOUR
from shelf.ingest.prices import Price
from tests.e2e.conftest import open_page, settled
from tests.labelled_shelves import fonts_available, make_labelled_shelf

pytestmark = pytest.mark.skipif(not fonts_available(), reason="no DejaVu fonts (fonts-dejavu-core)")


def test_the_overlay_and_the_inspector_show_a_read_price(server, page, tmp_path):
    shelf = make_labelled_shelf(3, 1600, 1200, rows=[[1, 1, 2, 2], [3, 3, 4, 4]],
                                prices={d: Price(Decimal(p)) for d, p in {1: "1.99", 2: "6.49", 3: "2.29",
                                                                          4: "0.89"}.items()},
                                hidden_share=0.0, glare_spots=0, tilt_degrees=0.5)
    photo, boxes = tmp_path / "shelf.jpg", tmp_path / "boxes.csv"
    photo.write_bytes(shelf.jpeg())
    boxes.write_text("".join(f"shelf.jpg,{b.x1},{b.y1},{b.x2},{b.y2},object,1600,1200\n" for _, b in shelf.facings))

    open_page(page, server, "recognize", "Shelf photos or product crops")
    page.get_by_test_id("stSelectbox").filter(has_text="Regions").click()
    page.get_by_role("option", name="Boxes from a file").click()
    settled(page)
    page.get_by_test_id("stFileUploader").filter(has_text="Box file").get_by_test_id(
        "stFileUploaderDropzoneInput").set_input_files(str(boxes))
    settled(page)
    page.get_by_text("Read shelf-edge prices").click()
    settled(page)
    page.get_by_test_id("stFileUploader").filter(has_text="Shelf photos or product crops").get_by_test_id(
        "stFileUploaderDropzoneInput").set_input_files(str(photo))
    settled(page)
    page.get_by_role("button", name="Recognize 1 photo").click()
    page.get_by_text("See the tallies").wait_for(timeout=180_000)

    note = page.get_by_text("Shelf label:").first
    note.wait_for()
    assert "1.99" in note.inner_text()  # region 1 (a facing of the first product) and the label under it

    overlay = page.get_by_test_id("stImage").locator("img").first
    picture = Image.open(io.BytesIO(page.request.get(overlay.get_attribute("src")).body())).convert("RGB")
    pixels = np.asarray(picture).reshape(-1, 3)
    near = (np.abs(pixels.astype(int) - np.array(PRICE_COLOUR)) <= 16).all(axis=1)  # served as JPEG: close
    assert near.sum() > 200  # the labels' outlines and price tags
