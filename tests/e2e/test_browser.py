"""End to end in a real browser: upload through the file input, recognise, review, tally, download the CSV."""

import pandas as pd

from shelf.analytics.tally import tally
from shelf.storage import sku_matches, store
from tests.conftest import image_bytes, skimage_photo
from tests.e2e.conftest import correct_one_region, open_page, settled
from tests.reference import build_detections
from tests.synthetic import make_product


def detections_of(server):
    engine = store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")
    with engine.connect():
        frame = build_detections(store.predictions_frame(engine), store.latest_corrections(engine),
                                 {}, sku_matches.sku_match_frame(engine))
    engine.dispose()
    return frame


def test_upload_review_tally_and_download(server, page, tmp_path):
    photos = [skimage_photo("chelsea.png"), skimage_photo("rocket.jpg")]
    open_page(page, server, "recognize", "Shelf photos or product crops")
    page.get_by_label("Store").fill("North")
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(p) for p in photos])
    page.get_by_role("button", name="Recognize 2 photos").click()
    page.get_by_text("See the tallies").wait_for()
    assert page.get_by_text("2 new photo(s) stored").is_visible()
    assert len(detections_of(server)) == 2

    page.get_by_role("link", name="Review").click()
    page.get_by_text("region(s) to review").wait_for()
    page.get_by_label("Your name (saved with each correction)").fill("Ana")
    page.keyboard.press("Enter")  # commits the name: one rerun, finished before the picker opens
    settled(page)
    correct_one_region(page, "bagel (931)")
    corrected = detections_of(server).query("corrected")
    assert corrected[["class_index", "reviewer"]].values.tolist() == [[931, "Ana"]]

    page.get_by_role("link", name="Tallies").click()
    page.get_by_text("Download this table (CSV)").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download this table (CSV)").click()
    csv = pd.read_csv(download.value.path())
    expected = tally(detections_of(server), ["label"])
    assert dict(zip(csv.class_index, csv.facings)) == dict(zip(expected.class_index, expected.facings))
    assert csv.set_index("class_index").loc[931, "corrected"] == 1


def test_bad_file_gets_a_message_and_the_rest_is_stored(server, page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    good = tmp_path / "product.png"
    good.write_bytes(image_bytes(make_product(3, 1), "PNG"))
    open_page(page, server, "recognize", "Shelf photos or product crops")
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(bad), str(good)])
    page.get_by_role("button", name="Recognize 2 photos").click()
    page.get_by_text("See the tallies").wait_for()
    assert page.get_by_text("notes.jpg: not an image Shelf can read").is_visible()
    assert "product.png" in set(detections_of(server)["photo"])
