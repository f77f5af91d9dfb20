import io
import json

import pytest
import sqlalchemy as sa
from PIL import Image, ImageDraw, ImageFont

from shelf.analytics.tally import facings_per_photo
from shelf.ingest.boxfiles import parse_box_file
from shelf.ingest.images import decode_image
from shelf.ingest.overlay import (
    LABEL_PALETTE,
    OTHER_COLOUR,
    _tag_texts,
    colours,
    confidence_colour,
    draw_legend,
    draw_overlay,
    png_bytes,
    preview,
    tag_font_size,
    tag_layout,
)
from shelf.ingest.regions import MAX_REGIONS, STORED_LIMITS, Box
from shelf.recognition import stages
from shelf.recognition.classify import classify_images
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from tests.conftest import image_bytes
from tests.reference import load_detections
from tests.synthetic import shelf_jpeg

CONTEXT = store.Context("North", "3")


def test_a_shelf_photo_is_decoded_once_for_all_its_regions(loaded, engine, monkeypatch):
    data, truth = shelf_jpeg(2, 2400, 1800)
    calls = []
    real = stages.decode_image  # recognize decodes through stages.decode_for
    monkeypatch.setattr(stages, "decode_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    (result,) = recognize(loaded, engine, [Upload("shelf.jpg", data)], CONTEXT, region_mode="auto")
    assert result.ok and len(calls) == 1
    assert len(result.regions) == pytest.approx(len(truth), rel=0.15)
    assert store.counts(engine)["regions"] == len(result.regions)


def test_region_predictions_equal_classifying_the_crop(loaded, engine):
    data, _ = shelf_jpeg(5, 1200, 900)
    (result,) = recognize(loaded, engine, [Upload("shelf.jpg", data)], CONTEXT, region_mode="grid:2x3", top_k=5)
    assert [r.box for r in result.regions][:2] == [Box(0, 0, 400, 450), Box(400, 0, 800, 450)]
    image = decode_image(data, "shelf.jpg").image
    for region in result.regions:
        (direct,) = classify_images(loaded, [image.crop(region.box.as_tuple)], top_k=5)
        assert [p.class_index for p in region.predictions] == [p.class_index for p in direct.predictions]
        assert [p.probability for p in region.predictions] == pytest.approx([p.probability
                                                                             for p in direct.predictions], abs=1e-6)


def test_stored_regions_give_facings_per_label_per_photo(loaded, engine):
    data, _ = shelf_jpeg(6, 1200, 900)
    (result,) = recognize(loaded, engine, [Upload("shelf.jpg", data)], CONTEXT, region_mode="grid:3x4")
    facings = facings_per_photo(load_detections(engine))
    assert facings["facings"].sum() == 12
    expected = {}
    for region in result.regions:
        expected[region.top1.class_index] = expected.get(region.top1.class_index, 0) + 1
    assert dict(zip(facings.class_index, facings.facings)) == expected


def test_pad_mode_keeps_tall_products_whole_and_is_recorded(loaded, engine):
    tall = Image.new("RGB", (100, 400), (250, 250, 250))
    tall.paste((200, 0, 0), (0, 0, 100, 60))  # a red cap that centre-cropping cuts off
    (center,) = classify_images(loaded, [tall], crop_mode="center")
    (padded,) = classify_images(loaded, [tall], crop_mode="pad")
    assert abs(center.probabilities - padded.probabilities).max() > 1e-4
    recognize(loaded, engine, [Upload("tall.png", image_bytes(tall, "PNG"))], CONTEXT, crop_mode="pad")
    with engine.connect() as conn:
        provenance = json.loads(conn.execute(sa.select(store.runs.c.preprocessing)).scalar_one())
    assert provenance["crop_mode"] == "pad" and provenance["crop"] is None


def test_boxes_mode_matches_photos_by_name_and_reports_the_rest(loaded, engine):
    photo = image_bytes(Image.new("RGB", (300, 200), (10, 120, 200)), "PNG")
    other = image_bytes(Image.new("RGB", (300, 200), (200, 120, 10)), "PNG")
    box_file = parse_box_file(b"a.png,0,0,100,200\na.png,100,0,300,200\na.png,250,150,900,900\n", "boxes.csv")
    results = recognize(loaded, engine, [Upload("a.png", photo), Upload("b.png", other)], CONTEXT,
                        region_mode=f"boxes:{box_file.source}", box_file=box_file)
    assert [r.box for r in results[0].regions] == [Box(0, 0, 100, 200), Box(100, 0, 300, 200),
                                                   Box(250, 150, 300, 200)]
    assert results[1].error == "b.png: skipped: the box file boxes.csv has no usable boxes for this photo"
    assert results[1].skipped and not any(r.skipped for r in results if r is not results[1])
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.runs.c.region_mode)).scalar_one() == "boxes:boxes.csv"
    assert store.counts(engine)["photos"] == 1


def test_boxes_mode_numbers_regions_in_reading_order(loaded, engine):
    """A box file lists the bottom shelf first, right to left: region #1 is still the top-left product, in the
    result (overlay and region picker), in the store (Review's '#n') and in the exports."""
    photo = image_bytes(Image.new("RGB", (300, 200), (10, 120, 200)), "PNG")
    listed = [Box(200, 100, 300, 200), Box(0, 110, 100, 200), Box(100, 0, 200, 90), Box(0, 0, 100, 100)]
    box_file = parse_box_file("".join(f"a.png,{b.x1},{b.y1},{b.x2},{b.y2}\n" for b in listed).encode(), "boxes.csv")
    (result,) = recognize(loaded, engine, [Upload("a.png", photo)], CONTEXT, region_mode="boxes:boxes.csv",
                          box_file=box_file)
    in_reading_order = [listed[3], listed[2], listed[1], listed[0]]
    assert [r.box for r in result.regions] == in_reading_order
    stored = load_detections(engine).sort_values("position")
    assert [Box(*b) for b in stored[["x1", "y1", "x2", "y2"]].itertuples(index=False)] == in_reading_order


def test_auto_on_a_close_up_falls_back_to_the_whole_photo(loaded, engine):
    close_up = image_bytes(Image.new("RGB", (400, 300), (230, 225, 220)), "PNG")
    (result,) = recognize(loaded, engine, [Upload("crop.png", close_up)], CONTEXT, region_mode="auto")
    assert [r.box for r in result.regions] == [Box(0, 0, 400, 300)]
    assert "whole photo" in result.notes[0]


def test_unknown_crop_mode_fails_before_any_work(loaded, engine):
    with pytest.raises(ValueError, match="crop mode"):
        recognize(loaded, engine, [Upload("x.png", b"")], CONTEXT, crop_mode="stretch")


def test_a_photo_stores_at_most_the_capped_regions_and_top_k(loaded, engine):
    """What a photo stores is what every later reader of it pays for: regions and top-k are capped, in the app,
    the CLI, the API and batches alike (stages.Settings and stages.photo_regions), with one message."""
    with pytest.raises(ValueError, match=f"top-k 11 cannot be stored: {STORED_LIMITS}"):
        recognize(loaded, engine, [Upload("x.png", b"")], CONTEXT, region_mode="grid:30x30", top_k=11)
    with pytest.raises(ValueError, match="top-k 1000 cannot be stored"):
        stages.Settings("sqlite://", "grid:30x30", top_k=1000)  # what `shelf batch` builds
    photo = image_bytes(Image.new("RGB", (1100, 20), (10, 120, 200)), "PNG")
    rows = "".join(f"a.png,{x},0,{x + 1},20\n" for x in range(MAX_REGIONS + 1)).encode()
    box_file = parse_box_file(rows, "boxes.csv")
    (result,) = recognize(loaded, engine, [Upload("a.png", photo)], CONTEXT, region_mode="boxes:boxes.csv",
                          box_file=box_file, top_k=10)
    assert result.error == f"a.png: {MAX_REGIONS + 1} regions found: {STORED_LIMITS}"
    assert store.counts(engine)["photos"] == 0


def test_overlay_draws_each_box_in_its_colour():
    photo = Image.new("RGB", (4000, 3000), (255, 255, 255))
    small = preview(photo)
    assert max(small.size) == 1280
    regions = [(Box(400, 400, 2000, 2600), "pop bottle", 737, 0.91), (Box(2200, 400, 3800, 2600), "crane", 134,
                                                                      0.12)]
    drawn = draw_overlay(small, photo.size, regions, colour_by="confidence")
    assert drawn.size == small.size
    scale = small.width / photo.width
    left_edge = drawn.getpixel((round(400 * scale) + 1, round(1500 * scale)))
    right_edge = drawn.getpixel((round(2200 * scale) + 1, round(1500 * scale)))
    assert left_edge == confidence_colour(0.91) and right_edge == confidence_colour(0.12)
    assert Image.open(io.BytesIO(png_bytes(drawn))).size == small.size


def test_label_colours_are_distinct_most_frequent_first_and_explained_by_a_legend():
    counts = {737: 5, 440: 3, **{c: 1 for c in range(100, 112)}}  # 14 labels: 9 colours, then "other"
    regions = [(Box(0, 0, 10, 10), f"class {c}", c, 0.5) for c, n in counts.items() for _ in range(n)]
    picked, legend = colours(regions, "label")
    assert picked[0] == LABEL_PALETTE[0] and picked[5] == LABEL_PALETTE[1]  # 737 (5 facings), then 440 (3)
    assert len(set(LABEL_PALETTE)) == 9 and len({c for c in picked if c != OTHER_COLOUR}) == 9
    assert [e.count for e in legend] == [5, 3, 1, 1, 1, 1, 1, 1, 1, 5]
    assert legend[-1].text == "5 other labels" and legend[-1].colour == OTHER_COLOUR
    assert draw_legend(legend).height > 10 * 18


def test_tags_stay_inside_the_picture_and_read_as_numbers():
    image = Image.new("RGB", (400, 300), (255, 255, 255))
    regions = [(Box(0, 0, 390, 100), "pop bottle", 737, 0.91), (Box(390, 0, 400, 100), "crane", 134, 0.5)]
    drawn = draw_overlay(image, image.size, regions)
    assert drawn.size == image.size
    font = ImageFont.load_default(size=12)
    draw = ImageDraw.Draw(image)
    assert _tag_texts(draw, font, 22, "pop bottle", 0.91, 400) == ["#22 pop bottle · 91%", "#22 · 91%", "#22"]
    assert _tag_texts(draw, font, 3, "pop bottle", 0.03, 60) == ["#3 · 3%", "#3"]  # not "#3 3%", read "#33%"
    assert _tag_texts(draw, font, 22, "pop bottle", 0.91, 5) == ["#22"]
    # the narrow box at the right edge: its tag is moved left into the picture, not cut off
    assert drawn.getpixel((399, 4)) != (255, 255, 255)


def test_tags_of_a_dense_shelf_never_cover_one_another():
    """120 narrow products in two rows whose boxes overlap (as a detector's or a box file's do), on a 1280 px
    preview: every region keeps a readable '#n' tag of its own, none on top of another."""
    photo = (4000, 3000)
    boxes = [Box(x, y, x + 95, y + 1200 + (x % 7) * 20) for y in (100, 1250) for x in range(0, 3900, 65)]
    regions = [(box, "water bottle", 898, 0.03) for box in boxes]
    small = Image.new("RGB", (1280, 960), (255, 255, 255))
    assert draw_overlay(small, photo, regions).size == small.size
    scaled = [tuple(round(v * 1280 / 4000) for v in b.as_tuple) for b in boxes]
    size = tag_font_size(small.size, scaled)
    assert 10 <= size < 1280 // 50  # smaller than on a sparse shelf, still readable
    tags = tag_layout(ImageDraw.Draw(small), ImageFont.load_default(size=size), scaled,
                      [("water bottle", 0.03)] * len(boxes), small.size, 3)
    assert [text.split(" ")[0] for text, _ in tags] == [f"#{n}" for n in range(1, len(boxes) + 1)]
    for i, (_, a) in enumerate(tags):
        assert 0 <= a[0] < a[2] <= 1280 and 0 <= a[1] < a[3] <= 960
        for _, b in tags[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_confidence_bands_are_told_apart_without_red_green():
    low, mid, high = (confidence_colour(p) for p in (0.1, 0.6, 0.95))
    assert len({low, mid, high}) == 3 and high[2] > high[0]  # blue for confident, vermillion for doubtful
    assert confidence_colour(1.0) == high and confidence_colour(0.5) == mid


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a tiny photo once gave NaN shelf-line strips
def test_non_shelf_photos_are_classified_whole_and_tiny_ones_are_flagged(loaded, engine):
    from tests.conftest import skimage_photo
    cat = Upload("chelsea.png", skimage_photo("chelsea.png").read_bytes())
    cup = Upload("coffee.png", skimage_photo("coffee.png").read_bytes())
    tiny = Upload("tiny.png", image_bytes(Image.new("RGB", (4, 4), (200, 30, 30)), "PNG"))
    results = recognize(loaded, engine, [cat, cup, tiny], CONTEXT, region_mode="auto")
    assert [len(r.regions) for r in results] == [1, 1, 1]  # no shelf: one product, not dozens of "facings"
    assert all("no shelf rows found; the whole photo was classified" in r.notes for r in results[:2])
    assert not any("tiny image" in n for r in results[:2] for n in r.notes)
    assert any(n.startswith("tiny image (4×4 px)") for n in results[2].notes)
    strip = Upload("strip.png", image_bytes(Image.new("RGB", (400, 100), (10, 120, 200)), "PNG"))
    gridded = recognize(loaded, engine, [strip], CONTEXT, region_mode="grid:1x4")[0]
    assert gridded.notes == []  # 100×100 px tiles are fine
    gridded = recognize(loaded, engine, [strip], CONTEXT, region_mode="grid:2x4", again=True)[0]
    assert gridded.notes == ["8 of 8 region(s) are under 64 px on a side: blown up to the model's 224 px, "
                             "their predictions are not reliable whatever their confidence"]
