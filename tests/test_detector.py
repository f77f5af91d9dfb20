"""The detector region mode: letterbox round trips to photo pixels, tiles and NMS, refusing wrong models,
importing by sha256, provenance. The models are tiny ONNX exports with the YOLO output layouts (tests/detectors)."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw

from shelf import config
from shelf.ingest.regions import Box, parse_region_mode
from shelf.recognition import detector, pipeline
from shelf.recognition.detector import (
    DetectorError,
    detect,
    import_detector,
    imported_detectors,
    inspect_detector,
    letterbox,
)
from shelf.storage import store
from tests.conftest import image_bytes
from tests.detectors import INPUT, classifier_model, colour_detector, fixed_detector

LAYOUTS = ["yolov5", "yolov8"]
COLOURS = [(220, 20, 20), (20, 160, 20), (20, 20, 220), (230, 200, 0), (200, 0, 200), (0, 190, 200),
           (120, 60, 0), (0, 0, 0)]


def ultralytics_letterbox(box: Box, photo: tuple[int, int], size: int = INPUT) -> tuple[float, ...]:
    """Where a photo box lands in the model's input, by Ultralytics' LetterBox: the photo is resized by one gain to
    round(w·gain) × round(h·gain) pixels and centred with pad round(d/2 − 0.1)."""
    w, h = photo
    gain = min(size / w, size / h)
    new_w, new_h = round(w * gain), round(h * gain)
    left, top = round((size - new_w) / 2 - 0.1), round((size - new_h) / 2 - 0.1)
    return (box.x1 * new_w / w + left, box.y1 * new_h / h + top, box.x2 * new_w / w + left, box.y2 * new_h / h + top)


def info_for(data: bytes, tmp_path: Path, name: str = "model.onnx"):
    path = tmp_path / name
    path.write_bytes(data)
    return inspect_detector(data, name, path)


def assert_within_one_pixel(found: list[Box], expected: list[Box]) -> None:
    assert len(found) == len(expected), (found, expected)
    for box in expected:
        assert any(np.abs(np.subtract(f.as_tuple, box.as_tuple)).max() <= 1 for f in found), (box, found)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("photo", [(1200, 800), (700, 1300), (4000, 3000)], ids=["landscape", "portrait", "12mp"])
def test_known_letterboxed_boxes_come_back_in_photo_pixels(layout, photo, tmp_path):
    truth = [Box(10, 20, 110, 220), Box(photo[0] - 300, photo[1] - 260, photo[0] - 1, photo[1] - 1),
             Box(photo[0] // 2 - 40, photo[1] // 3, photo[0] // 2 + 60, photo[1] // 3 + 150)]
    model = fixed_detector([ultralytics_letterbox(b, photo) for b in truth], [0.9, 0.8, 0.7], layout, classes=3)
    info = info_for(model, tmp_path)
    assert (info.layout, info.classes, info.input_size) == (layout, 3, (INPUT, INPUT))
    boxes, scores = detect(info, Image.new("RGB", photo, (200, 200, 200)), tiles="off")
    assert_within_one_pixel(boxes, truth)
    assert sorted(scores, reverse=True) == pytest.approx([0.9, 0.8, 0.7])


def test_the_letterbox_keeps_the_aspect_and_pads_grey_114():
    photo = Image.new("RGB", (1200, 800), (250, 250, 250))
    ImageDraw.Draw(photo).rectangle((600, 400, 1199, 799), fill=(255, 0, 0))  # the bottom-right quarter
    canvas, placement = letterbox(photo, (INPUT, INPUT))
    pixels = np.asarray(canvas)
    assert canvas.size == (INPUT, INPUT) and (placement.left, placement.top) == (0, 53)
    assert (pixels[:52] == 114).all() and (pixels[53 + 213 + 1:] == 114).all()  # grey above and below
    assert tuple(pixels[53 + 213 - 2, INPUT - 2]) == (255, 0, 0) and tuple(pixels[60, 10]) == (250, 250, 250)


def test_scores_below_conf_are_dropped_and_overlaps_merged(tmp_path):
    photo = (640, 640)
    boxes = [(10, 10, 100, 100), (12, 12, 102, 102), (200, 200, 300, 300), (400, 400, 500, 500)]
    info = info_for(fixed_detector([tuple(v / 2 for v in b) for b in boxes], [0.9, 0.8, 0.7, 0.2], "yolov8"), tmp_path)
    found, scores = detect(info, Image.new("RGB", photo), conf=0.25, iou=0.6, tiles="off")
    assert found == [Box(10, 10, 100, 100), Box(200, 200, 300, 300)] and scores == pytest.approx([0.9, 0.7])
    found, _ = detect(info, Image.new("RGB", photo), conf=0.1, iou=0.99, tiles="off")
    assert len(found) == 4  # the near-duplicate stays when the NMS threshold is above its overlap


def colour_shelf(size: tuple[int, int], boxes: list[Box]) -> Image.Image:
    image = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for box, colour in zip(boxes, COLOURS):
        draw.rectangle((box.x1, box.y1, box.x2 - 1, box.y2 - 1), fill=colour)
    return image


# Tiles of 320 px (tiles=5 along 1280 px: starts 0, 240, 480, 720, 960 across; 0, 213, 427, 640 down), so a tile
# is the model's input at gain 1. Several products straddle tile borders; each is whole in some tile.
TILED_TRUTH = [Box(300, 30, 350, 110), Box(20, 150, 70, 260), Box(530, 190, 600, 250), Box(700, 400, 760, 470),
               Box(900, 600, 980, 700), Box(1200, 880, 1270, 950), Box(230, 500, 300, 560), Box(1000, 100, 1050, 300)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiled_photos_round_trip_with_one_box_per_product(layout, tmp_path):
    info = info_for(colour_detector(COLOURS, layout), tmp_path)
    photo = colour_shelf((1280, 960), TILED_TRUTH)
    assert detector.tile_side_for(5, 1280) == INPUT
    boxes, scores = detect(info, photo, tiles="5")
    assert_within_one_pixel(boxes, TILED_TRUTH)  # NMS left one box per product, none cut by a tile edge
    assert scores == [1.0] * len(TILED_TRUTH)


def test_a_product_cut_by_a_tile_edge_is_dropped_from_that_tile(tmp_path):
    info = info_for(colour_detector(COLOURS, "yolov8"), tmp_path)
    product = Box(300, 30, 350, 110)  # crosses x = 320, the right edge of the first tile
    seen = []
    real_run = detector._run
    detector._run = lambda i, image, conf: seen.append(image.size) or real_run(i, image, conf)
    try:
        boxes, _ = detect(info, colour_shelf((1280, 960), [product]), tiles="5")
    finally:
        detector._run = real_run
    assert len(seen) == 1 + 5 * 4 and seen[1] == (INPUT, INPUT)  # the whole photo, then 20 tiles
    assert_within_one_pixel(boxes, [product])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_auto_tiles_when_products_are_small_in_the_models_input(layout, tmp_path, monkeypatch):
    info = info_for(colour_detector(COLOURS, layout, tolerance=0.1), tmp_path)
    truth = [Box(200 + 390 * k, 300 + 260 * k, 320 + 390 * k, 420 + 260 * k) for k in range(8)]  # 120 px products
    photo = colour_shelf((3200, 2400), truth)  # at gain 0.1 a product spans 12 input pixels: too small
    passes = []
    real_run = detector._run
    monkeypatch.setattr(detector, "_run", lambda i, image, conf: passes.append(image.size) or real_run(i, image,
                                                                                                        conf))
    boxes, _ = detect(info, photo, tiles="auto")
    side = passes[1][0]
    assert len(passes) > 1 and INPUT * 120 / side >= detector.MIN_PRODUCT_INPUT_PIXELS - 1
    assert len(boxes) == len(truth)
    for box in truth:  # at the tiles' gain (~0.27) a pixel of the input is ~4 photo pixels
        assert any(np.abs(np.subtract(f.as_tuple, box.as_tuple)).max() <= 4 for f in boxes)
    passes.clear()
    assert len(detect(info, photo, tiles="off")[0]) == len(truth) and len(passes) == 1


def test_tiles_auto_keeps_one_pass_when_products_are_big_enough(tmp_path, monkeypatch):
    info = info_for(colour_detector(COLOURS, "yolov8"), tmp_path)
    passes = []
    real_run = detector._run
    monkeypatch.setattr(detector, "_run", lambda i, image, conf: passes.append(1) or real_run(i, image, conf))
    boxes, _ = detect(info, colour_shelf((1280, 960), [Box(100, 100, 400, 500)]), tiles="auto")
    assert len(passes) == 1 and len(boxes) == 1


def test_a_classifier_is_refused_saying_what_was_found_and_what_is_supported():
    with pytest.raises(DetectorError) as error:
        inspect_detector(classifier_model(), "resnet.onnx")
    assert "resnet.onnx" in str(error.value) and "(1, 1000)" in str(error.value)
    assert "(1, N, 5+C)" in str(error.value) and "(1, 4+C, N)" in str(error.value)


def test_files_that_are_not_onnx_or_too_big_are_refused(monkeypatch):
    with pytest.raises(DetectorError, match="weights.pth: not an ONNX model"):
        inspect_detector(b"\x80\x02}q\x00PK\x03\x04 not a model", "weights.pth")
    monkeypatch.setattr(detector, "MAX_DETECTOR_BYTES", 1000)
    with pytest.raises(DetectorError, match="over the 0 MB limit"):
        inspect_detector(b"x" * 2000, "huge.onnx")


def test_a_model_the_onnx_checker_refuses_is_refused():
    model = onnx.load_model_from_string(fixed_detector([(1, 1, 5, 5)], [0.5], "yolov8"))
    model.graph.node[0].input[0] = "nowhere"  # an input no node produces
    with pytest.raises(DetectorError, match="ONNX checker"):
        inspect_detector(model.SerializeToString(), "broken.onnx")


def test_a_model_without_a_fixed_input_size_is_refused():
    model = onnx.load_model_from_string(fixed_detector([(1, 1, 5, 5)], [0.5], "yolov5"))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(DetectorError, match=r"input \(1, 3, None, 320\) is not supported.*fixed H and W"):
        inspect_detector(model.SerializeToString(), "dynamic.onnx")


def test_import_keeps_the_file_by_sha256_never_by_its_name():
    data = fixed_detector([(1, 1, 50, 50)], [0.9], "yolov8", classes=2)
    info = import_detector(data, "../../etc/sku110k\u202e.onnx")
    folder = config.data_dir() / "detectors"
    assert info.path == folder / f"{info.sha256}.onnx" and info.path.read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{info.sha256}.onnx", f"{info.sha256}.json"])
    assert json.loads((folder / f"{info.sha256}.json").read_text())["name"] == "sku110k.onnx"
    (listed,) = imported_detectors()
    assert listed == info and listed.format.startswith("YOLOv8/YOLO11 (1, 4+C, N) output (1, 6, 9)")
    assert detector.resolve_detector("") == info == detector.resolve_detector(info.sha256[:12])
    with pytest.raises(DetectorError, match="deadbeefdeadbeef: no imported detector's sha256 starts so"):
        detector.resolve_detector("deadbeefdeadbeef")
    with pytest.raises(DetectorError, match="nothing.onnx: no such detector file"):
        detector.resolve_detector("nothing.onnx")


def test_no_imported_detector_says_how_to_import_one():
    with pytest.raises(DetectorError, match="detector import"):
        detector.resolve_detector("")


def test_one_session_per_detector_file_per_process(tmp_path):
    info = info_for(fixed_detector([(1, 1, 50, 50)], [0.9], "yolov5"), tmp_path)
    detector._session.cache_clear()
    detect(info, Image.new("RGB", (100, 100)), tiles="off")
    detect(info, Image.new("RGB", (200, 100)), tiles="off")
    assert detector._session.cache_info().misses == 1 and detector._session.cache_info().hits == 1


def test_recognize_with_a_detector_records_its_sha256_format_and_thresholds(loaded, engine):
    photo = (640, 480)
    truth = [Box(40, 40, 200, 400), Box(300, 60, 460, 420)]
    info = import_detector(fixed_detector([ultralytics_letterbox(b, photo) for b in truth], [0.9, 0.8], "yolov5"),
                           "sku.onnx")
    mode = parse_region_mode(f"detector:{info.sha256[:10]}@conf=0.3,iou=0.5,tiles=off")
    (result,) = pipeline.recognize(loaded, engine, [pipeline.Upload("shelf.png", image_bytes(Image.new("RGB", photo),
                                                                                              "PNG"))],
                                   store.Context(), region_mode=mode)
    assert_within_one_pixel([r.box for r in result.regions], truth)
    run = store.runs_frame(engine).iloc[0]
    assert run["region_mode"] == f"detector:{info.sha256}@conf=0.3,iou=0.5,tiles=off"
    recorded = run["preprocessing"]["detector"]
    assert recorded["sha256"] == info.sha256 and recorded["format"] == info.format
    assert (recorded["conf"], recorded["iou"], recorded["tiles"]) == (0.3, 0.5, "off")


def test_a_detector_that_finds_nothing_classifies_the_whole_photo(loaded, engine, tmp_path):
    info = info_for(fixed_detector([(1, 1, 5, 5)], [0.1], "yolov8"), tmp_path)
    (result,) = pipeline.recognize(loaded, engine, [pipeline.Upload("p.png", image_bytes(Image.new("RGB", (50, 40)),
                                                                                          "PNG"))],
                                   store.Context(), region_mode="detector", detector=info)
    assert [r.box for r in result.regions] == [Box(0, 0, 50, 40)] and "found no products" in result.notes[0]


@pytest.mark.parametrize("seed", range(40))
def test_nms_keeps_exactly_what_torchvisions_keeps(seed):
    """The serving image has no torch: detector NMS runs in numpy, and must keep the boxes torchvision keeps (dense,
    overlapping shelves; tied scores; boxes sharing an edge; empty boxes), in the same order."""
    import torch
    from torchvision.ops import nms as torchvision_nms
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    corners = rng.uniform(0, 1000, (n, 2)).astype(np.float32)
    sizes = rng.uniform(0, 120, (n, 2)).astype(np.float32) * (rng.random((n, 1)) > 0.02)  # a few empty boxes
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    scores = rng.choice(rng.uniform(0, 1, max(1, n // 3)), n).astype(np.float32)  # many ties
    iou = float(rng.choice([0.3, 0.45, 0.5, 0.6, 0.7]))
    expected = torchvision_nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
    np.testing.assert_array_equal(detector.nms(boxes, scores, iou), expected)


def test_nms_keeps_a_box_whose_overlap_equals_the_threshold():
    """torchvision suppresses only an IoU above the threshold: these two overlap by exactly 0.5."""
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1], [1, 0, 3.9, 1]], np.float32)
    assert detector.nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.5).tolist() == [0, 1]
