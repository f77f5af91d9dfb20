"""The dashboard through Streamlit's AppTest: the same script the browser runs, without a browser."""
import io
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from shelf.analytics import export
from shelf.serving.ui import md_escape as ui_escape
from shelf.storage import store
from tests.conftest import skimage_photo

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TIMEOUT = 120  # the first run loads torch and the model


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()  # the model and engine are cached per process; each test has its own env
    yield
    st.cache_resource.clear()


@pytest.fixture
def downloads(monkeypatch):
    """Bytes handed to st.download_button, by media URL (AppTest keeps them in a throwaway store)."""
    captured = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        captured[self.get_url(file_id)] = path_or_data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return captured


def start(page=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def upload(at: AppTest, key: str, files):
    at.file_uploader(key=key).set_value(files).run()
    assert not at.exception, at.exception


def test_home_shows_the_model_and_the_untrained_banner(loaded):
    at = start()
    assert "Demo weights in use" in texts(at.warning) and "UNTRAINED" in texts(at.warning)
    assert loaded.weights.sha256 in texts(at.markdown)


def test_home_says_which_cpu_the_last_bench_ran_on(loaded, tmp_path):
    """A bench run with AMX refused (benchmarks/no_amx.py) must not pass for this machine's figures."""
    cache = Path(os.environ["SHELF_BENCH_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    row = {"pipeline": "shelf fast (ORT int8)", "crops_per_s": 160.0, "speedup": 3.7, "p50_s": 0.3,
           "top1_agreement": 1.0, "max_prob_diff": 0.02}
    features = "AVX-512 AVX512-VNNI (AMX listed by the CPU but refused to this process)"
    (cache / "last-bench.json").write_text(json.dumps({"at": "2026-12-06 02:30", "cpu": features, "rows": [row]}))
    assert f"(2026-12-06 02:30; {features})" in texts(start().caption)


def test_without_weights_the_app_starts_and_says_what_to_do(monkeypatch):
    monkeypatch.delenv("SHELF_WEIGHTS")
    at = start()
    assert "The ResNet-18 weights are not available" in texts(at.error)
    assert "python -m shelf weights import" in texts(at.markdown)
    at.switch_page("pages/recognize.py").run()
    assert not at.exception and not at.file_uploader  # nothing to upload into until weights exist
    assert "not available" in texts(at.error)


def test_weights_can_be_imported_from_the_browser(monkeypatch, weights_file):
    monkeypatch.delenv("SHELF_WEIGHTS")
    at = start()
    upload(at, "weights_upload", ("resnet18.pth", b"definitely not weights", "application/octet-stream"))
    at.button[0].click().run()
    assert ui_escape("resnet18.pth: not a PyTorch checkpoint") in texts(at.error)
    upload(at, "weights_upload", ("resnet18.pth", weights_file.read_bytes(), "application/octet-stream"))
    at.button[0].click().run()
    assert not at.exception
    assert "Imported weights" in texts(at.info)
    assert "The ResNet-18 weights are not available" not in texts(at.error)
    assert "UNTRAINED" in texts(at.warning)


def test_recognize_two_photos_then_tallies_and_csv_match_the_store(loaded, downloads):
    at = start("pages/recognize.py")
    at.text_input(key="store").input("=HYPERLINK(\"http://x\",\"y\")")
    at.text_input(key="aisle").input("Aisle 7")
    photos = [("chelsea.png", skimage_photo("chelsea.png").read_bytes(), "image/png"),
              ("rocket.jpg", skimage_photo("rocket.jpg").read_bytes(), "image/jpeg"),
              ("notes.jpg", b"this is not a photo", "image/jpeg")]
    upload(at, "uploads", photos)
    assert at.button(key="recognize").label == "Recognize 3 photos"
    at.button(key="recognize").click().run()
    assert not at.exception, at.exception
    assert ui_escape("notes.jpg: not an image") in texts(at.error)
    assert "2 new photo(s) stored" in texts(at.caption)
    assert "Demo weights in use" in texts(at.warning)  # the page ran inside the router
    tables = [df.value for df in at.dataframe]
    assert len(tables) == 2 and all(t["Rank"].tolist() == [1, 2, 3] for t in tables)
    assert all(t["Confidence"].between(0, 100).all() for t in tables)

    engine = store.open_store()
    top1 = store.predictions_frame(engine, top1_only=True)
    assert len(top1) == 2 and set(top1["store"]) == {'=HYPERLINK("http://x","y")'}

    at.switch_page("pages/tallies.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table["facings"].sum() == 2
    url = next(b.proto.url for b in at.get("download_button") if b.label == "Download this table (CSV)")
    csv = pd.read_csv(io.BytesIO(downloads[url]))
    assert csv.columns.tolist() == table.columns.tolist()
    expected = top1.groupby("class_index")["probability"].agg(["size", "mean"])
    assert dict(zip(csv.class_index, csv["facings"])) == expected["size"].to_dict()
    assert csv.set_index("class_index")["mean_confidence"].to_dict() == pytest.approx(expected["mean"].to_dict(),
                                                                                        rel=1e-5)
    assert csv.label.tolist() == [loaded.categories[i] for i in csv.class_index]


def test_reuploading_shows_the_stored_result(loaded):
    at = start("pages/recognize.py")
    photo = ("coffee.png", skimage_photo("coffee.png").read_bytes(), "image/png")
    upload(at, "uploads", [photo])
    at.button(key="recognize").click().run()
    at.button(key="recognize").click().run()
    assert "0 new photo(s) stored · 1 already in the store" in texts(at.caption)
    assert store.counts(store.open_store())["photos"] == 1


def test_a_stored_photo_is_recognized_again_moved_and_deleted_from_recognize(loaded):
    engine = store.open_store()
    at = start("pages/recognize.py")
    photo = ("coffee.png", skimage_photo("coffee.png").read_bytes(), "image/png")
    upload(at, "uploads", [photo])
    at.button(key="recognize").click().run()
    assert "recognize_again" not in keys(at.button)  # nothing was stored before: nothing to do again
    at.selectbox(key="region_kind").set_value("grid").run()
    at.number_input(key="grid_rows").set_value(2).run()
    at.number_input(key="grid_cols").set_value(2).run()
    at.text_input(key="store").set_value("Uptown").run()
    at.button(key="recognize").click().run()  # the stored result, settings ignored …
    assert "1 already in the store" in texts(at.caption)
    assert store.photos_page(engine)["regions"].tolist() == [1]
    at.button(key="recognize_again").click().run()  # … until asked
    assert not at.exception, at.exception
    assert "*recognized again*" in texts(at.markdown) and "recognize_again" not in keys(at.button)
    page = store.photos_page(engine)
    assert page["regions"].tolist() == [4] and page["store"].tolist() == ["Uptown"]

    photo_id = int(page["id"][0])
    at.text_input(key=f"photo-aisle-{photo_id}").set_value("7 – Beverages")
    at.date_input(key=f"photo-date-{photo_id}").set_value(None)
    at.button(key=f"FormSubmitter:photo-context-{photo_id}-Save").click().run()
    assert store.photo_context(engine, photo_id) == store.Context("Uptown", "7 – Beverages", None)
    at.button(key=f"photo-delete-{photo_id}").click().run()
    assert "This cannot be undone" in texts(at.markdown) and len(store.photos_page(engine)) == 1
    at.button(key="photo_delete_cancel").click().run()
    assert len(store.photos_page(engine)) == 1
    at.button(key=f"photo-delete-{photo_id}").click().run()
    at.button(key="photo_delete_confirm").click().run()
    assert not at.exception, at.exception
    assert store.photos_page(engine).empty and "coffee.png" not in texts(at.markdown)


def keys(elements) -> set:
    return {e.key for e in elements}


def test_tallies_filters_and_empty_states(loaded):
    at = start("pages/tallies.py")
    assert "Nothing is stored yet" in texts(at.info)
    at = start("pages/recognize.py")
    upload(at, "uploads", [("coffee.png", skimage_photo("coffee.png").read_bytes(), "image/png")])
    at.button(key="recognize").click().run()
    at.switch_page("pages/tallies.py").run()
    assert at.dataframe[0].value["facings"].sum() == 1
    at.slider(key="min_confidence").set_value(1.0).run()
    table = at.dataframe[0].value
    assert table["facings"].sum() == 0 and table["below_threshold"].sum() == 1
    at.multiselect(key="tallies_categories").set_value(["Produce"]).run()
    assert "No region passes these filters" in texts(at.warning)


def _shelf_upload(seed=1, size=(1200, 900)):
    from tests.synthetic import shelf_jpeg
    data, truth = shelf_jpeg(seed, *size)
    return (f"shelf{seed}.jpg", data, "image/jpeg"), truth


@pytest.mark.parametrize("kind", ["grid", "auto"])
def test_region_modes_on_recognize_show_overlay_facings_and_inspector(loaded, kind):
    at = start("pages/recognize.py")
    at.selectbox(key="region_kind").set_value(kind).run()
    if kind == "grid":
        at.number_input(key="grid_rows").set_value(2).run()
        at.number_input(key="grid_cols").set_value(3).run()
    photo, truth = _shelf_upload()
    upload(at, "uploads", [photo])
    at.button(key="recognize").click().run()
    assert not at.exception, at.exception
    expected = 6 if kind == "grid" else len(truth)
    count = int(re.search(r"shelf1\\?\.jpg\*\* · (\d+) regions", texts(at.markdown))[1])
    assert count == expected if kind == "grid" else abs(count - expected) <= 0.15 * expected
    assert len(at.get("image")) >= 2  # the overlay and the inspected region's crop
    facings = at.dataframe[0].value
    assert facings["facings"].sum() == count
    inspector = at.selectbox(key=f"region-{1}")
    inspector.set_value(count - 1).run()
    assert not at.exception
    assert store.counts(store.open_store())["regions"] == count


def test_boxes_mode_on_recognize(loaded):
    at = start("pages/recognize.py")
    at.selectbox(key="region_kind").set_value("boxes").run()
    photo, _ = _shelf_upload()
    absent = ("not-in-the-file.png", skimage_photo("coffee.png").read_bytes(), "image/png")
    upload(at, "uploads", [photo, absent])
    assert at.button(key="recognize").disabled  # no box file yet
    box_csv = b"shelf1.jpg,300,0,600,400\nshelf1.jpg,0,0,300,400\nshelf1.jpg,50,50,10,10\n"  # right box first
    upload(at, "box_file", [("boxes.csv", box_csv, "text/csv")])
    assert "SKU-110K CSV: 2 boxes for 1 image(s), 1 line(s) skipped" in texts(at.caption)
    assert ui_escape("boxes.csv, line 3: degenerate box") in texts(at.warning)
    at.button(key="recognize").click().run()
    assert not at.exception, at.exception
    assert "2 regions" in texts(at.markdown)
    assert "1 new photo(s) stored · 1 skipped (no boxes for them in the box file)" in texts(at.caption)
    assert "could not be read" not in texts(at.caption) and not at.error
    assert ui_escape("not-in-the-file.png: skipped: the box file boxes.csv has no usable boxes") in texts(at.info)
    frame = store.predictions_frame(store.open_store(), top1_only=True)
    assert sorted(zip(frame.x1, frame.x2)) == [(0, 300), (300, 600)]
    assert frame.sort_values("position")["x1"].tolist() == [0, 300]  # numbered in reading order, not file order
    assert [o.split(" · ")[0] for o in at.selectbox(key=f"region-{frame['photo_id'][0]}").options] == ["#1", "#2"]


def test_a_broken_box_file_is_reported(loaded):
    at = start("pages/recognize.py")
    at.selectbox(key="region_kind").set_value("boxes").run()
    upload(at, "box_file", [("coco.json", b"{broken", "application/json")])
    assert ui_escape("coco.json: not valid JSON") in texts(at.error)


def test_correct_a_label_in_review_then_tallies_and_both_csvs_follow(loaded, downloads):
    at = start("pages/recognize.py")
    at.selectbox(key="region_kind").set_value("grid").run()
    at.number_input(key="grid_rows").set_value(1).run()
    at.number_input(key="grid_cols").set_value(3).run()
    photo, _ = _shelf_upload(seed=21)
    upload(at, "uploads", [photo])
    at.button(key="recognize").click().run()
    engine = store.open_store()
    before = store.predictions_frame(engine, top1_only=True)
    weakest = before.sort_values("probability").iloc[0]

    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    assert "3 region(s) to review" in texts(at.caption)
    edit_review(at, {0: {"correct_to": "bagel (931)"}})
    assert at.button(key="save_corrections").label == "Save 1 correction(s)"
    at.button(key="save_corrections").click().run()
    assert "Type your name first" in texts(at.error)
    assert store.counts(engine)["corrections"] == 0
    at.text_input(key="reviewer").input("Ana").run()
    assert at.button(key="save_corrections").label == "Save 1 correction(s)"  # the pick waited for the name
    at.button(key="save_corrections").click().run()
    assert not at.exception, at.exception
    assert "Saved 1 correction(s)" in texts(at.success)
    fixes = store.latest_corrections(engine)
    assert fixes[["region_id", "class_index", "reviewer"]].values.tolist() == [[weakest.region_id, 931, "Ana"]]

    at.switch_page("pages/tallies.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("class_index")
    assert table.loc[931, "facings"] == 1 and table.loc[931, "corrected"] == 1
    assert "1 region(s) use a reviewer's label" in texts(at.caption)
    urls = {b.label: b.proto.url for b in at.get("download_button")}
    tallies_csv = pd.read_csv(io.BytesIO(downloads[urls["Download this table (CSV)"]]))
    assert "Detections (CSV)" in urls  # built when clicked; the same call here:
    detections_csv = pd.read_csv(io.BytesIO(export.regions_bytes("csv", engine)))
    counts = before.class_index.value_counts().to_dict()
    counts[int(weakest.class_index)] -= 1
    counts = {k: v for k, v in counts.items() if v} | {931: 1}
    assert dict(zip(tallies_csv.class_index, tallies_csv.facings)) == counts
    assert len(detections_csv) == 3
    row = detections_csv.set_index("region_id").loc[weakest.region_id]
    assert (row.class_index, row.label, row.reviewer, row.predicted_class_index) == \
        (931, "bagel", "Ana", weakest.class_index)


def edit_grid(at: AppTest, state: str, edited_rows: dict) -> None:
    """Edit a page's keyed grid (ui.keyed_editor) as the browser would; AppTest cannot type into a data editor."""
    at.session_state[at.session_state[f"{state}_editor"]] = {"edited_rows": edited_rows, "added_rows": [],
                                                             "deleted_rows": []}
    at.run()
    assert not at.exception, at.exception


def edit_review(at: AppTest, edited_rows: dict) -> None:
    edit_grid(at, "review_pending", edited_rows)


def test_a_review_pick_stays_with_its_region_across_pages(loaded):
    at = start("pages/recognize.py")
    at.selectbox(key="region_kind").set_value("grid").run()
    at.number_input(key="grid_rows").set_value(5).run()
    at.number_input(key="grid_cols").set_value(6).run()
    photo, _ = _shelf_upload(seed=22)
    upload(at, "uploads", [photo])
    at.button(key="recognize").click().run()
    at.switch_page("pages/review.py").run()
    at.text_input(key="reviewer").input("Ana").run()
    first_page = at.dataframe[0].value
    edit_review(at, {0: {"correct_to": "bagel (931)"}})
    at.number_input(key="review_page").set_value(2).run()
    second_page = at.dataframe[0].value
    assert set(second_page["where"]).isdisjoint(first_page["where"])
    assert second_page["correct_to"].isna().all()  # page 2's first row did not inherit the pick
    assert at.button(key="save_corrections").label == "Save 1 correction(s)"
    assert "1 pick(s) are for regions not on this page" in texts(at.warning)
    at.button(key="save_corrections").click().run()
    assert not at.exception, at.exception
    (region,) = store.latest_corrections(store.open_store())["region_id"]
    weakest = store.predictions_frame(store.open_store(), top1_only=True).sort_values(
        ["probability", "position"]).iloc[0]
    assert region == weakest.region_id  # the region that was row 1 of page 1
    assert at.button(key="save_corrections").label == "Save 0 correction(s)"
    at.number_input(key="review_page").set_value(1).run()
    assert at.dataframe[0].value["correct_to"].isna().all()  # a clean editor after saving


def test_categories_page_edits_persist(loaded):
    at = start("pages/categories.py")
    at.text_input(key="category_search").input("737").run()
    edit_grid(at, "category_pending", {0: {"category": "Household"}})
    at.button(key="save_categories").click().run()
    assert "Type your name first" in texts(at.error)  # every change records who made it
    at.text_input(key="category_analyst").input("Ana").run()
    at.button(key="save_categories").click().run()
    assert not at.exception, at.exception
    assert "Saved 1 change(s)" in texts(at.success)
    from shelf.analytics.categories import category_map
    assert category_map(store.open_store())[737] == "Household"
    assert at.button(key="save_categories").label == "Save 0 change(s)"  # a clean editor after saving


def test_a_category_edit_stays_with_its_class_when_the_search_changes(loaded):
    at = start("pages/categories.py")
    at.text_input(key="category_analyst").input("Ana").run()
    at.text_input(key="category_search").input("great white shark").run()
    edit_grid(at, "category_pending", {0: {"category": "Produce"}})  # row 0: great white shark (2)
    at.text_input(key="category_search").input("crane").run()  # row 0 is now a crane
    assert at.button(key="save_categories").label == "Save 1 change(s)"
    assert "great white shark (2) → Produce" in texts(at.warning)
    assert "Produce" not in set(at.dataframe[0].value["category"])  # no crane took the pick
    at.button(key="save_categories").click().run()
    from shelf.analytics.categories import category_map
    current = category_map(store.open_store())
    assert current[2] == "Produce" and current[134] == "Not a product" and current[517] == "Not a product"


def fill_sku_form(at: AppTest, form: int, name: str, brand: str, gtin: str, photos: list) -> None:
    """Form widgets commit only with the submit button: set them all, then submit in one run."""
    at.text_input(key=f"sku_name_{form}").input(name)
    at.text_input(key=f"sku_brand_{form}").input(brand)
    at.text_input(key=f"sku_gtin_{form}").input(gtin)
    at.selectbox(key=f"sku_category_{form}").set_value("Beverages")
    at.file_uploader(key=f"sku_photos_{form}").set_value(photos)
    next(b for b in at.button if b.label == "Add SKU").click().run()
    assert not at.exception, at.exception


def test_the_sku_form_keeps_its_inputs_on_error_and_refuses_a_sku_without_photos(loaded):
    from tests.conftest import image_bytes
    from tests.synthetic import make_product
    at = start("pages/catalog.py")
    photos = [(f"cola-{v}.png", image_bytes(make_product(0, v), "PNG"), "image/png") for v in range(2)]
    fill_sku_form(at, 0, "Cola 1.5 L", "Fizzy Co", "123", photos)
    assert "a GTIN is 8, 12, 13 or 14 digits" in texts(at.error)
    assert (at.text_input(key="sku_name_0").value, at.text_input(key="sku_brand_0").value) == ("Cola 1.5 L",
                                                                                               "Fizzy Co")
    fill_sku_form(at, 0, "Cola 1.5 L", "Fizzy Co", "", [])  # Add pressed before any photo arrived
    assert "needs at least one reference photo" in texts(at.error)
    assert "The catalog is empty" in texts(at.info) and catalog_skus() == []
    fill_sku_form(at, 0, "Cola 1.5 L", "Fizzy Co", "", photos + [("notes.png", b"not a photo", "image/png")])
    assert f"Added {ui_escape('Cola 1.5 L')} with 2 of 3 reference photo(s)." in texts(at.warning)
    assert ui_escape("notes.png: not an image") in texts(at.warning) and catalog_skus() == ["Cola 1.5 L"]


def catalog_skus() -> list[str]:
    from shelf.recognition.catalog import skus_frame
    return skus_frame(store.open_store())["name"].tolist()


def test_removing_a_sku_asks_first_and_names_what_goes(loaded):
    from shelf.recognition import catalog
    from tests.conftest import image_bytes
    from tests.synthetic import make_product
    engine = store.open_store()
    for sku, name in [(0, "Cola"), (1, "Lemonade")]:
        catalog.create_sku(engine, name, "", "Beverages", None, [(f"{v}.png", image_bytes(make_product(sku, v), "PNG"))
                                                                 for v in range(2)])
    at = start("pages/catalog.py")
    at.button(key="sku_remove").click().run()
    assert "**Cola** goes, with its 2 reference photo(s); 0 stored region(s)" in texts(at.markdown)
    assert catalog_skus() == ["Cola", "Lemonade"]  # nothing removed by the first click
    at.button(key="sku_remove_cancel").click().run()
    assert catalog_skus() == ["Cola", "Lemonade"]
    at.button(key="sku_remove").click().run()
    at.button(key="sku_remove_confirm").click().run()
    assert not at.exception, at.exception
    assert catalog_skus() == ["Lemonade"] and "Removed Cola." in texts(at.success)


def test_add_a_sku_in_the_catalog_then_see_it_matched(loaded):
    from tests.conftest import image_bytes
    from tests.synthetic import make_product
    at = start("pages/catalog.py")
    assert "The catalog is empty" in texts(at.info)
    for form, (sku, name) in enumerate([(0, "Cola 1.5 L"), (1, "Lemonade 1 L")]):
        fill_sku_form(at, form, name, "Fizzy Co", "",
                      [(f"{name}-{v}.png", image_bytes(make_product(sku, v), "PNG"), "image/png") for v in range(3)])
        assert f"Added {ui_escape(name)} with 3 reference photo(s)." in texts(at.success)
        assert at.text_input(key=f"sku_name_{form + 1}").value == ""  # a fresh form for the next SKU
    assert at.dataframe[0].value["references"].tolist() == [3, 3]
    assert "Leave-one-out accuracy" in [m.label for m in at.metric]

    at.switch_page("pages/recognize.py").run()
    assert at.toggle(key="use_catalog").value  # on by default once the catalog has SKUs
    upload(at, "uploads", [("shelf-shot.png", image_bytes(make_product(0, 9), "PNG"), "image/png")])
    at.button(key="recognize").click().run()
    assert not at.exception, at.exception
    from tests.reference import load_detections
    (sku,) = load_detections(store.open_store())["sku"]
    # Untrained embeddings all lie within cos 0.98 of each other, above the default 0.80: a SKU is always named.
    assert sku in {"Cola 1.5 L", "Lemonade 1 L"}
    assert f"**{ui_escape(sku)}** · SKU match" in texts(at.markdown)


def test_a_detector_is_imported_on_home_then_offered_on_recognize(loaded):
    from PIL import Image

    from tests.conftest import image_bytes
    from tests.detectors import classifier_model, fixed_detector
    at = start()
    assert "detector" not in start("pages/recognize.py").selectbox(key="region_kind").options
    at = start()
    upload(at, "detector_upload", ("resnet.onnx", classifier_model(), "application/octet-stream"))
    at.button(key="import_detector").click().run()
    assert "resnet.onnx: output (1, 1000) is not a YOLO detection layout" in texts(at.error)
    # a 640×480 photo fills a 320×320 input at gain 0.5 with 40 px of grey above and below
    model = fixed_detector([(20, 60, 100, 220), (150, 60, 230, 220)], [0.9, 0.8], "yolov8")
    upload(at, "detector_upload", ("sku110k-yolov8n.onnx", model, "application/octet-stream"))
    at.button(key="import_detector").click().run()
    assert not at.exception, at.exception
    assert "Imported detector sku110k-yolov8n.onnx" in texts(at.success)
    assert at.dataframe[0].value["Detector"].tolist() == ["sku110k-yolov8n.onnx"]

    at.switch_page("pages/recognize.py").run()
    at.selectbox(key="region_kind").set_value("detector").run()
    photo = ("shelf.png", image_bytes(Image.new("RGB", (640, 480), (90, 90, 90)), "PNG"), "image/png")
    upload(at, "uploads", [photo])
    at.button(key="recognize").click().run()
    assert not at.exception, at.exception
    assert "2 regions" in texts(at.markdown)
    run = store.runs_frame(store.open_store()).iloc[0]
    assert run["region_mode"].startswith("detector:") and run["preprocessing"]["detector"]["conf"] == 0.25

    truth = b"shelf.png,40,40,200,360\nshelf.png,500,40,600,360\n"  # the first is found exactly, the second missed
    upload(at, "truth_file", [("truth.csv", truth, "text/csv")])
    at.button(key="compare").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Precision"], metrics["Recall"], metrics["Found − true"]) == ("0.500", "0.500", "+0")
    assert metrics["AP@0.5"] == f"{51 * 1.0 / 101:.3f}"  # hit first (score 0.9): precision 1 up to recall 0.5
    assert "found 2, true 2, precision 0.50, recall 0.50" in " ".join(c for i in at.get("image") for c in i.captions)


def test_compare_auto_with_true_boxes_without_storing_anything(loaded):
    at = start("pages/recognize.py")
    at.selectbox(key="region_kind").set_value("auto").run()
    photo, truth = _shelf_upload()
    upload(at, "uploads", [photo])
    csv = "".join(f"shelf1.jpg,{b.x1},{b.y1},{b.x2},{b.y2}\n" for b in truth).encode()
    upload(at, "truth_file", [("truth.csv", csv, "text/csv")])
    assert "SKU-110K CSV: " in texts(at.caption)
    at.button(key="compare").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: float(m.value) for m in at.metric}
    assert metrics["Recall"] >= 0.9 and metrics["Precision"] >= 0.9 and "AP@0.5" not in metrics
    assert at.dataframe[0].value["true"].tolist() == [len(truth)]
    assert store.counts(store.open_store())["photos"] == 0


def test_fast_mode_calibration_is_shown_and_retaken_only_on_request(loaded, engine):
    from shelf.recognition import backends
    from shelf.recognition.pipeline import Upload, recognize
    from tests.synthetic import shelf_jpeg
    recognize(loaded, engine, [Upload("a.jpg", shelf_jpeg(3, 1200, 900)[0])], store.Context(), region_mode="grid:4x5")
    store.set_setting(engine, backends.BACKEND_SETTING, "int8")
    at = start()
    assert "Fast mode's calibration: 20 crops from 1 stored photo(s)" in texts(at.caption)
    assert ("run on this CPU's AMX int8 tiles" in texts(at.caption)) == backends.has_amx_int8()
    recognize(loaded, engine, [Upload("b.jpg", shelf_jpeg(4, 1200, 900)[0])], store.Context(), region_mode="grid:4x5")
    at.run()
    assert "20 crops from 1 stored photo(s)" in texts(at.caption)  # the store grew; the calibration stays
    at.button(key="recalibrate").click().run()
    assert not at.exception, at.exception
    assert "40 crops from 2 stored photo(s)" in texts(at.caption)
