"""Reading shelf-edge labels: tying labels to the facings they price (geometry), reading rendered labels with the
OCR, and `--prices` through the pipeline into the store."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image, ImageDraw

from shelf.ingest.boxfiles import parse_box_file
from shelf.ingest.prices import Price, ShelfLabel, labels_from_json, labels_json, parse_price
from shelf.ingest.regions import Box
from shelf.recognition import label_print, prices
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from shelf.storage.prices import labels_frame, scanned
from shelf.storage.schema import price_label_facings, price_labels
from tests.conftest import image_bytes
from tests.labelled_shelves import _font, draw_label, fonts_available, make_labelled_shelf

needs_fonts = pytest.mark.skipif(not fonts_available(), reason="no DejaVu fonts (fonts-dejavu-core)")


def row(y_bottom: int, xs: list[int], width: int = 100, height: int = 300) -> list[Box]:
    return [Box(x, y_bottom - height, x + width, y_bottom) for x in xs]


def label(x: int, y: int, width: int = 120, height: int = 40) -> ShelfLabel:
    return ShelfLabel(Box(x, y, x + width, y + height), Price(Decimal("1.99")), "1.99", 0.9)


def test_a_label_prices_the_group_of_same_products_above_it():
    facings = row(400, [0, 100, 200, 300, 400]) + row(900, [0, 100, 200])
    products = ["a", "a", "a", "b", "b", "c", "d", "d"]
    tied = prices.assign([label(10, 410), label(305, 410), label(110, 910)], facings, products)
    assert [t.facings for t in tied] == [(0, 1, 2), (3, 4), (6, 7)]
    assert prices.assign([label(110, 410)], facings, products)[0].facings == (1, 0, 2)  # where it hangs first


def test_the_label_points_with_its_left_part_and_empty_stretches_price_nothing():
    facings = row(400, [0, 100, 300])  # an empty stretch from 200 to 300
    products = ["a", "b", "c"]
    wide = label(80, 410, width=300)  # a quarter in: x = 155, under b (its middle hangs under the empty stretch)
    under_gap = label(205, 410, width=80)  # x = 225: nothing above, out of stock
    assert [t.facings for t in prices.assign([wide, under_gap], facings, products)] == [(1,), ()]


def test_a_hanging_rail_prices_the_products_below_it():
    hooks = [Box(x, 200, x + 100, 450) for x in (0, 100, 200)]
    products = ["a", "a", "b"]
    rail = [label(5, 150), label(205, 150)]  # on the rail above the hanging packs; nothing stands above it
    assert [t.facings for t in prices.assign(rail, hooks, products)] == [(0, 1), (2,)]


def test_a_label_far_below_a_row_prices_nothing():
    assert prices.assign([label(10, 2000)], row(400, [0, 100]), ["a", "a"])[0].facings == ()


def test_rows_and_the_bands_searched():
    facings = row(400, [0, 100, 200]) + row(410, [300]) + row(900, [0, 100])
    rows = prices.rows_of(facings)
    assert [r.facings for r in rows] == [(0, 1, 2, 3), (4, 5)]
    bands = prices.bands_below(rows, (1000, 1200))
    assert all(b.y1 < r.low_bottom <= r.bottom < b.y2 for b, r in zip(bands, rows))
    assert prices.merged([Box(0, 0, 10, 50), Box(0, 40, 20, 90), Box(0, 100, 5, 120)]) == [
        Box(0, 0, 20, 90), Box(0, 100, 5, 120)]


def test_labels_travel_as_json():
    original = [ShelfLabel(Box(1, 2, 3, 4), Price(Decimal("2.50"), 2, "", "€"), "2 for €2.50", 0.8, (3, 4)),
                ShelfLabel(Box(5, 6, 7, 8), None, "Apples", 0.5)]
    assert labels_from_json(labels_json(original)) == original


@needs_fonts
def test_raised_cents_are_seen_in_the_ink():
    canvas = Image.new("RGB", (400, 160), (90, 90, 90))
    style = {"font": "DejaVuSans-Bold.ttf", "decimal": ",", "currency": "", "raised": True, "paper": (250, 250, 245),
             "ink": (10, 10, 10), "unit_line": False, "scale": 1.0}
    box, printed = draw_label(canvas, 20, 20, 110, Price(Decimal("12.49")), "Tea", style, 360)
    assert printed == "12⁴⁹"
    crop = np.asarray(canvas.crop((box.x1, box.y1 + 25, box.x2, box.y2 - 15)))
    assert label_print.raised_cents(crop) is not None
    assert label_print.with_cents_lowered(crop) is not None
    (text, _), = prices.read_figure(prices.reader(), [crop])  # read with the cents set beside the figure
    assert parse_price(text).amount == Decimal("12.49"), text
    flat = Image.new("RGB", (300, 80), (250, 250, 245))
    ImageDraw.Draw(flat).text((10, 5), "12,49", font=_font("DejaVuSans-Bold.ttf", 60), fill=(10, 10, 10))
    assert label_print.raised_cents(np.asarray(flat)) is None


@needs_fonts
def test_rendered_labels_are_found_and_read():
    """A generated shelf (tilt, blur, glare, a hidden label): labels found, prices read, each tied to its group."""
    shelf = make_labelled_shelf(11, 2400, 1800)
    boxes = [b for _, b in shelf.facings]
    found, stats = prices.read_labels(shelf.image, boxes)
    found = prices.assign(found, boxes, [d for d, _ in shelf.facings])
    assert stats.bands >= 3 and stats.lines > 0
    matched = [max(found, key=lambda f: prices._overlap(f.box, t.box)) for t in shelf.labels]
    hits = [m for m, t in zip(matched, shelf.labels) if prices._overlap(m.box, t.box) >= 0.5]
    exact = [t for m, t in zip(matched, shelf.labels) if m.price and (m.price.amount, m.price.quantity) ==
             (t.price.amount, t.price.quantity)]
    assert len(hits) >= 0.85 * len(shelf.labels), [t.printed for t in shelf.labels]  # 12 MP: benchmarks/prices.py
    assert len(exact) >= 0.75 * len(shelf.labels), [(t.printed, m.text) for m, t in zip(matched, shelf.labels)]
    assert sum(set(m.facings) == set(t.facings) for m, t in zip(matched, shelf.labels)) >= 0.85 * len(shelf.labels)


@needs_fonts
def test_prices_go_through_the_pipeline_into_the_store(loaded, engine):
    shelf = make_labelled_shelf(12, 2000, 1500)
    lines = "".join(f"shelf.jpg,{b.x1},{b.y1},{b.x2},{b.y2},object,2000,1500\n" for _, b in shelf.facings)
    boxes = parse_box_file(lines.encode(), "boxes.csv")
    upload = Upload("shelf.jpg", shelf.jpeg())
    (result,) = recognize(loaded, engine, [upload], store.Context("North", "7"), "boxes:boxes.csv", box_file=boxes,
                          prices=True)
    assert result.ok and result.prices_read and len(result.labels) >= 0.9 * len(shelf.labels)
    assert any(label.facings for label in result.labels)
    stored = labels_frame(engine, [result.photo_id])
    assert len(stored) == len(result.labels) and scanned(engine, result.photo_id)
    assert sorted(stored["read_price"].dropna()) == sorted(float(lb.price.amount) for lb in result.labels
                                                          if lb.price)
    with engine.connect() as conn:
        links = conn.execute(sa.select(sa.func.count()).select_from(price_label_facings)).scalar_one()
    assert links == sum(len(lb.facings) for lb in result.labels)
    provenance = store.runs_frame(engine)["preprocessing"].iloc[-1]
    assert provenance["prices"]["ocr"] == prices.OCR_MODEL

    (again,) = recognize(loaded, engine, [upload], store.Context("North", "7"))  # stored: shown from the store
    assert again.already_stored and again.prices_read and len(again.labels) == len(result.labels)
    assert [lb.facings for lb in again.labels] == [lb.facings for lb in result.labels]

    (plain,) = recognize(loaded, engine, [upload], store.Context("North", "7"), "boxes:boxes.csv", box_file=boxes,
                         again=True)  # recognised again without --prices: the old labels no longer count
    assert plain.recognized_again and not plain.labels
    assert labels_frame(engine, [result.photo_id]).empty and not scanned(engine, result.photo_id)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(price_labels)).scalar_one() == len(result.labels)


def test_without_prices_nothing_is_read(loaded, engine, monkeypatch):
    monkeypatch.setattr(prices, "read_labels", lambda *a, **k: pytest.fail("labels read without --prices"))
    image = Image.new("RGB", (320, 240), (200, 200, 200))
    (result,) = recognize(loaded, engine, [Upload("plain.png", image_bytes(image, "PNG"))], store.Context())
    assert result.ok and not result.prices_read and not result.labels


@needs_fonts
def test_a_photo_without_rows_of_facings_is_searched_whole_for_prices():
    shelf = make_labelled_shelf(13, 2000, 1500, hidden_share=0.0, glare_spots=0)
    found, stats = prices.read_labels(shelf.image, [Box(0, 0, 2000, 1500)])  # whole mode: one region
    assert stats.bands == 1 and all(label.price is not None for label in found)  # only what reads as a price
    printed = {(t.price.amount, t.price.quantity) for t in shelf.labels}
    assert sum((f.price.amount, f.price.quantity) in printed for f in found) >= 0.4 * len(shelf.labels)  # 10 of 20


def test_without_prices_the_recognize_path_loads_no_price_reading():
    """No OCR (rapidocr, OpenCV) and not even the price modules on the recognize path: nothing is slower."""
    import subprocess
    import sys
    code = ("import sys, shelf.recognition.pipeline, shelf.recognition.stages, shelf.serving.cli\n"
            "print(sorted(m for m in sys.modules if m.startswith(('rapidocr', 'cv2')) or m.endswith('.prices')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_tiles_and_whole_photos_are_no_rows_of_facings(monkeypatch):
    """A grid's tiles (or the whole photo) are not products standing on shelves: such a photo is searched whole."""
    from shelf.ingest.images import decode_image
    from shelf.ingest.regions import RegionMode
    from shelf.recognition import stages
    seen = []
    monkeypatch.setattr(prices, "read_labels", lambda image, facings, size: seen.append(list(facings)) or
                        ([], prices.ScanStats()))
    decoded = decode_image(image_bytes(Image.new("RGB", (200, 100)), "PNG"), "p.png")
    tiles = [Box(0, 0, 100, 100), Box(100, 0, 200, 100)]
    for mode, expected in ((RegionMode("grid", rows=1, cols=2), []), (RegionMode("boxes", source="b.csv"), tiles)):
        stages.read_prices({}, decoded, tiles, mode)
        assert seen.pop() == expected
