"""Hostile input: every bad thing gets a clear message, nothing crashes, nothing is written outside the data dir.
Property-based tests (hypothesis) throw arbitrary bytes and text at the decoders and importers."""
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shelf.ingest.boxfiles import BoxFileError, boxes_for_photo, parse_box_file
from shelf.ingest.images import ImageError, clean_filename, decode_image
from shelf.recognition import model
from shelf.recognition.pipeline import Upload, recognize
from shelf.serving.ui import md_escape
from shelf.storage import store
from tests.conftest import image_bytes, solid

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def files_outside(root, data_dir) -> set:
    return {p for p in root.rglob("*") if p.is_file() and data_dir not in p.parents}


@pytest.mark.parametrize("name", ["../../../../tmp/evil.png", "..\\..\\evil.png", "/etc/passwd", "a\x00b\r\n.png",
                                  "\u202eevil.png", "CON", "x" * 5000 + ".png", ""])
def test_hostile_file_names_never_become_paths(loaded, engine, shelf_env, name):
    before = files_outside(shelf_env, shelf_env / "data")
    (result,) = recognize(loaded, engine, [Upload(name, image_bytes(solid(), "PNG"))], store.Context())
    assert result.ok and "/" not in result.name and "\\" not in result.name and "\x00" not in result.name
    assert len(result.name) <= 120
    assert files_outside(shelf_env, shelf_env / "data") == before
    stored = store.predictions_frame(engine)["photo"].iloc[0]
    assert stored == result.name


def test_hostile_weights_names_are_not_used_as_paths(shelf_env, weights_file):
    info = model.import_weights(weights_file.read_bytes(), "../../../outside.pth")
    assert info.path.parent == shelf_env / "data" / "weights" and not (shelf_env / "outside.pth").exists()


def test_text_fields_with_markup_are_kept_verbatim_and_rendered_inert(loaded, engine):
    hostile = '<script>alert(1)</script> [click](http://evil) **bold** =SUM(A1)'
    recognize(loaded, engine, [Upload("a.png", image_bytes(solid(), "PNG"))], store.Context(hostile, hostile))
    assert store.predictions_frame(engine)["store"].iloc[0] == hostile[:100]
    escaped = md_escape(hostile)
    assert "\\[click\\]\\(http://evil\\)" in escaped and "\\*\\*bold\\*\\*" in escaped


@pytest.mark.parametrize("fmt,header", [
    ("GIF", b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\xf0\x00\x00" + b"\x00" * 9),
    ("BMP", b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 60000, 60000, 1, 24, 0, 0,
                                                                     0, 0, 0, 0)),
])
def test_absurd_dimensions_are_refused_before_decoding(fmt, header):
    with pytest.raises(ImageError, match="megapixels|decompression bomb|corrupt|truncated|not an image"):
        decode_image(header, f"huge.{fmt.lower()}")


def test_sixteen_bit_rgb_and_exotic_modes_do_not_crash():
    for mode, value in [("I;16", 40000), ("I", 70000), ("F", 0.5), ("LA", (10, 20)), ("PA", None)]:
        image = Image.new(mode if mode != "PA" else "P", (12, 9), value if value is not None else 0)
        fmt = "TIFF" if mode in ("I", "F") else "PNG"
        try:
            data = image_bytes(image, fmt)
        except (OSError, ValueError):
            continue  # Pillow cannot write this mode in this format: nothing to test
        assert decode_image(data, f"{mode}.img").image.mode == "RGB"


@pytest.mark.parametrize("row", ["p.jpg,1e308,1e308,1e309,1e309", "p.jpg,-1e308,-1e308,1e308,1e308",
                                 "p.jpg,0,0,99999999999999999999,5", "p.jpg,inf,0,5,5", "p.jpg,0,0,5,nan"])
def test_absurd_box_values_are_clipped_or_refused(row):
    imported = parse_box_file(row.encode(), "absurd.csv")
    boxes, messages = boxes_for_photo(imported, "p.jpg", 100, 80)
    for box in boxes:
        assert 0 <= box.x1 < box.x2 <= 100 and 0 <= box.y1 < box.y2 <= 80
    assert boxes or messages or imported.messages


def test_a_million_line_box_file_loads():
    rows = b"".join(b"other%d.jpg,1,1,5,5\n" % (i % 1000) for i in range(1_000_000)) + b"p.jpg,1,1,9,9\n"
    imported = parse_box_file(rows, "million.csv")
    assert imported.n_boxes == 1_000_001 and boxes_for_photo(imported, "p.jpg", 10, 10)[0][0].x2 == 9


@FAST
@given(st.binary(max_size=4096))
def test_decoder_on_arbitrary_bytes_only_ever_raises_image_error(data):
    try:
        decoded = decode_image(data, "fuzz.bin")
    except ImageError as exc:
        assert str(exc).startswith("fuzz.bin: ")
    else:
        assert decoded.image.mode == "RGB"


VALID = {fmt: image_bytes(solid((30, 160, 90), (40, 30)), fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP")}


@FAST
@given(st.sampled_from(sorted(VALID)), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                min_size=1, max_size=8), st.integers(0, 10_000))
def test_decoder_on_damaged_images_only_ever_raises_image_error(fmt, flips, cut):
    data = bytearray(VALID[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        decode_image(bytes(data[: max(1, len(data) - cut % len(data))]), f"damaged.{fmt.lower()}")
    except ImageError:
        pass


box_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                     st.text(max_size=8))


@FAST
@given(st.lists(st.lists(box_cell, min_size=0, max_size=9), max_size=40),
       st.sampled_from(["boxes.csv", "labels.txt", "coco.json"]))
def test_importers_on_arbitrary_rows_never_crash_and_keep_boxes_inside(rows, name):
    text = "\n".join((" " if name.endswith(".txt") else ",").join(row) for row in rows)
    try:
        imported = parse_box_file(text.encode("utf-8", "surrogatepass"), name)
    except (BoxFileError, UnicodeEncodeError):
        return
    for key in list(imported.by_image) + ["labels.jpg"]:
        boxes, _ = boxes_for_photo(imported, key, 640, 480)
        for box in boxes:
            assert 0 <= box.x1 < box.x2 <= 640 and 0 <= box.y1 < box.y2 <= 480


@FAST
@given(st.dictionaries(st.sampled_from(["images", "annotations", "categories"]),
                       st.lists(st.dictionaries(st.sampled_from(["id", "image_id", "file_name", "bbox", "width",
                                                                 "height"]),
                                                st.one_of(st.integers(-5, 5), st.text(max_size=5),
                                                          st.lists(st.floats(), max_size=5), st.none())),
                                max_size=6)))
def test_coco_importer_on_arbitrary_documents(document):
    import json
    try:
        imported = parse_box_file(json.dumps(document).encode(), "coco.json")
    except BoxFileError:
        return
    for key in imported.by_image:
        for box in boxes_for_photo(imported, key, 100, 100)[0]:
            assert 0 <= box.x1 < box.x2 <= 100 and not math.isnan(box.x1)


@FAST
@given(st.text(max_size=300))
def test_clean_filename_is_always_a_safe_display_name(name):
    cleaned = clean_filename(name)
    assert cleaned and "\\" not in cleaned and len(cleaned) <= 120
    # no directory is left: a slash remains only inside a tag ('<b>x</b>.jpg'), i.e. after a '<' not yet closed
    assert all(cleaned.rfind("<", 0, i) > cleaned.rfind(">", 0, i) for i, ch in enumerate(cleaned) if ch == "/")
    assert all(ch.isprintable() or ch == " " for ch in cleaned)
