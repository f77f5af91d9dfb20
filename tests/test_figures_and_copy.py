"""Figures and copy that said something wrong or odd: a top-k of "0%" beside a confidence of 0.25 %, a corrected
region's confidence taken from another label, "None" for an empty shelf nobody measured, gaps "hatched" on a
photo whose regions never look for gaps, an exception's class name as the reason a file failed, the demo-weights
warning twice on Home, and two different answers to "how many reference photos does a SKU need"."""
import datetime as dt
import io
import json

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from shelf.analytics import charts, export, planogram, report
from shelf.analytics.tally import tally
from shelf.ingest.images import ImageError, decode_image
from shelf.ingest.regions import Box
from shelf.storage import store
from shelf.text import percent, percents
from tests.conftest import image_bytes
from tests.factory import TEST_RUN, add_photo, result
from tests.reference import load_detections
from tests.synthetic import shelf_jpeg
from tests.test_app import APP, TIMEOUT, texts

POP, BEER, BAGEL = 737, 440, 931


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


# ---------------------------------------------------------------------------------------------------------------
# Probabilities as text


def test_probabilities_read_with_enough_digits_and_never_0_percent_unless_0():
    assert percents([1.0, 0.623, 0.2, 0.025, 0.0025, 0.00031, 0.0000999, 1e-5, 1e-300, 0.0]) == [
        "100%", "62.3%", "20%", "2.5%", "0.25%", "0.031%", "0.01%", "<0.01%", "<0.01%", "0%"]
    values = np.random.default_rng(0).random(1000) ** 8  # many small ones
    assert percents(values) == [percent(v) for v in values]


def test_review_shows_the_top_k_with_the_digits_of_its_confidence_column(engine):
    """An untrained model's top-1 can be 0.25 %: the top-k text used to round it to "0%" beside it."""
    add_photo(engine, store.create_run(engine, TEST_RUN), 1, [(POP, 0.0025), (BEER, 0.031), (BAGEL, 0.62)])
    at = open_page("pages/review.py")
    shown = at.dataframe[0].value
    assert shown["top_k"].str.split(" · ").str[0].tolist() == ["pop bottle 0.25%", "beer bottle 3.1%", "bagel 62%"]
    assert shown["probability"].tolist() == pytest.approx([0.0025, 0.031, 0.62])  # its "percent" column: 0.25%


def test_recognize_names_each_region_with_its_confidence_not_0_percent(loaded, engine):
    at = open_page("pages/recognize.py")
    at.file_uploader(key="uploads").set_value([("crop.jpg", shelf_jpeg(4, 300, 200)[0], "image/jpeg")]).run()
    at.button(key="recognize").click().run()
    (crop,) = at.session_state["results"]
    best = crop.regions[0].top1  # a single crop: its line
    assert f"**{best.label}** · class {best.class_index} · {percent(best.probability)}" in texts(at.markdown)
    at.selectbox(key="region_kind").set_value("grid").run()
    at.number_input(key="grid_rows").set_value(2).run()
    at.number_input(key="grid_cols").set_value(2).run()
    at.file_uploader(key="uploads").set_value([("shelf.jpg", shelf_jpeg(3, 600, 450)[0], "image/jpeg")]).run()
    at.button(key="recognize").click().run()
    assert not at.exception, at.exception
    (shelf,) = at.session_state["results"]
    options = at.selectbox(key=f"region-{shelf.photo_id}").options  # the region picker of a shelf
    assert options == [f"#{i + 1} · {r.top1.label} · {percent(r.top1.probability)}"
                       for i, r in enumerate(shelf.regions)]
    assert not any(option.endswith(" 0%") for option in options)


# ---------------------------------------------------------------------------------------------------------------
# A corrected region's confidence


@pytest.fixture
def corrected(engine):
    """Beer 0.9 and 0.6, pop 0.3 and 0.2; one pop region corrected to beer, the other to bagel."""
    run = store.create_run(engine, TEST_RUN)
    add_photo(engine, run, 1, [(BEER, 0.9), (BEER, 0.6), (POP, 0.3), (POP, 0.2)], "North", "7", dt.date(2026, 11, 2))
    regions = load_detections(engine).set_index("position")["region_id"]
    store.add_corrections(engine, {int(regions[2]): (BEER, "beer bottle"), int(regions[3]): (BAGEL, "bagel")}, "Ana")
    return engine


def test_a_corrected_region_lends_no_confidence_to_its_new_label(corrected):
    """The model's 0.3 was for "pop bottle": under "beer bottle" it would drag the mean down and the min to 0.3, and
    "bagel" would show a confidence the model never gave it."""
    table = report.tally_table(corrected, ["label"]).set_index("label")
    assert table.loc["beer bottle", ["facings", "corrected"]].tolist() == [3, 1]
    assert table.loc["beer bottle", "mean_confidence"] == pytest.approx(0.75)
    assert table.loc["beer bottle", "min_confidence"] == pytest.approx(0.6)
    assert table.loc["bagel", ["facings", "corrected"]].tolist() == [1, 1]
    assert np.isnan(table.loc["bagel", "mean_confidence"]) and np.isnan(table.loc["bagel", "min_confidence"])
    assert "pop bottle" not in table.index
    oracle = tally(load_detections(corrected), ["label"]).set_index("label")  # the pure definition agrees
    pd.testing.assert_frame_equal(table, oracle, check_dtype=False)
    assert report.tally_table(corrected, ["store"])["mean_confidence"].tolist() == [pytest.approx(0.75)]


def test_exports_leave_a_corrected_regions_confidence_blank_and_keep_the_models_own(corrected):
    frame = pd.read_csv(io.BytesIO(export.regions_bytes("csv", corrected, threshold=0.5)))
    frame = frame.set_index("position")
    assert frame.loc[[0, 1], "probability"].tolist() == pytest.approx([0.9, 0.6])
    assert frame.loc[[2, 3], "probability"].isna().all()  # the confidence of `label`: none for a reviewer's label
    assert frame.loc[[2, 3], "label"].tolist() == ["beer bottle", "bagel"]
    assert frame.loc[[2, 3], "predicted_label"].tolist() == ["pop bottle"] * 2
    assert frame["predicted_probability"].tolist() == pytest.approx([0.9, 0.6, 0.3, 0.2])
    assert frame["counted"].tolist() == [True, True, True, True]  # corrected: counted whatever the threshold
    coco = json.loads(export.regions_bytes("coco", corrected))
    by_class = sorted(coco["annotations"], key=lambda a: a["id"])
    assert [a["score"] for a in by_class] == [pytest.approx(0.9), pytest.approx(0.6), None, None]
    assert [(a.get("predicted_category_id"), a.get("predicted_score")) for a in by_class[2:]] == [
        (POP, pytest.approx(0.3)), (POP, pytest.approx(0.2))]
    assert "predicted_score" not in by_class[0]


def test_tallies_show_a_dash_not_a_borrowed_confidence_for_corrected_rows(corrected):
    at = open_page("pages/tallies.py")
    shown = next(df for df in at.dataframe if "mean_confidence" in df.value.columns)
    rows = shown.value.set_index("label")
    assert rows.loc["beer bottle", "mean_confidence"] == pytest.approx(0.75)
    assert np.isnan(rows.loc["bagel", "mean_confidence"]) and shown.proto.placeholder == "—"


def test_a_bar_of_corrected_regions_only_is_drawn_grey_not_dropped(corrected):
    """Vega-Lite leaves out a mark whose continuous colour is null: the bagel bar would vanish from the chart."""
    spec = charts.facings_bar_chart(report.tally_table(corrected, ["label"]), ["label"]).to_dict()
    (rows,) = spec["datasets"].values()
    assert {r["label"]: r["mean_confidence"] for r in rows}["bagel"] is None
    assert spec["config"]["scale"]["invalid"]["color"] == {"value": charts.NO_CONFIDENCE}


# ---------------------------------------------------------------------------------------------------------------
# Empty shelf: measured or not


def stored_photo(engine, run_id: int, number: int, gaps=()) -> int:
    """A real (small) shelf photo of North · 7, stored with its file, two facings and `gaps`."""
    data = shelf_jpeg(number, 320, 240)[0]
    decoded = decode_image(data, f"shelf-{number}.jpg")
    photo_id, _ = store.save_photo(engine, run_id, decoded, data, store.Context("North", "7", dt.date(2026, 11, 2)),
                                   [Box(0, 0, 100, 200), Box(100, 0, 200, 200)],
                                   [result(POP, 0.9, seed=number), result(POP, 0.8, seed=number + 1)], gaps=gaps)
    return photo_id


@pytest.fixture
def planned(engine):
    planogram.import_csv(engine, b"store,aisle,product,expected_facings\nNorth,7,imagenet:737,2\n", "plan.csv",
                         store.LOCAL, "Ana")
    return engine


def test_an_unmeasured_empty_shelf_reads_not_measured_and_its_photo_hatches_nothing(planned):
    stored_photo(planned, store.create_run(planned, {**TEST_RUN, "region_mode": "boxes:shelf.csv"}), 1)
    at = open_page("pages/compliance.py")
    assert {m.label: (m.value, m.delta) for m in at.metric}["Empty shelf"] == ("—", "not measured")
    worst = next(df.value for df in at.dataframe if "missing_products" in df.value.columns)
    assert worst["empty_share"].tolist() == ["not measured"]
    at.toggle(key="compliance_photos").set_value(True).run()
    (image,) = at.get("image")
    assert [c.replace("\\", "") for c in image.captions] == [
        "shelf-1.jpg · empty shelf not measured (its regions were not found in auto mode, which finds gaps)"]
    at.switch_page("pages/tallies.py").run()
    assert {m.label: (m.value, m.delta) for m in at.metric}["Empty shelf"] == ("—", "not measured")


def test_a_measured_empty_shelf_reads_as_a_share_and_its_gaps_are_hatched(planned):
    stored_photo(planned, store.create_run(planned, {**TEST_RUN, "region_mode": "auto"}), 2,
                 gaps=[Box(200, 0, 300, 200)])
    at = open_page("pages/compliance.py")
    assert {m.label: m.value for m in at.metric}["Empty shelf"] == "33.3%"
    worst = next(df.value for df in at.dataframe if "missing_products" in df.value.columns)
    assert worst["empty_share"].tolist() == ["33.3%"]
    at.toggle(key="compliance_photos").set_value(True).run()
    (image,) = at.get("image")
    assert [c.replace("\\", "") for c in image.captions] == ["shelf-2.jpg · empty gaps hatched"]


# ---------------------------------------------------------------------------------------------------------------
# Copy


def test_a_file_with_a_broken_header_is_refused_in_plain_words(loaded, engine):
    cut_short = image_bytes(Image.new("RGB", (40, 30), "red"), "PNG")[:20]
    with pytest.raises(ImageError) as refused:
        decode_image(cut_short, "IMG_7.png")
    assert str(refused.value) == "IMG_7.png: the file is damaged and cannot be opened: its image header is cut " \
                                 "short or corrupt"
    at = open_page("pages/recognize.py")
    at.file_uploader(key="uploads").set_value([("IMG_7.png", cut_short, "image/png")]).run()
    at.button(key="recognize").click().run()
    assert "IMG\\_7\\.png: the file is damaged and cannot be opened" in texts(at.error)
    assert "Error)" not in texts(at.error)


def test_home_warns_about_demo_weights_once(loaded):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning if "UNTRAINED" in w.value] == [
        next(w.value for w in at.warning if w.value.startswith("**Demo weights in use"))]


def test_the_sku_form_and_the_empty_catalog_ask_for_the_same_photos(loaded):
    at = open_page("pages/catalog.py")
    label = at.get("file_uploader")[0].proto.label if at.get("file_uploader") else None
    empty = next(i.value for i in at.info if i.value.startswith("The catalog is empty."))
    assert label == "Reference photos (at least one; a few views of the product match better)"
    assert "(at least one; a few views of the product match better)" in empty
    assert "two or more" not in empty
