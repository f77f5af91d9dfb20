"""`python -m shelf regions evaluate` and `python -m shelf detector import|status`."""
import json

import pytest
from PIL import Image

from shelf.serving.cli import main as cli
from shelf.storage import store
from tests.conftest import image_bytes
from tests.detectors import classifier_model, fixed_detector


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "shelf.png"
    path.write_bytes(image_bytes(Image.new("RGB", (640, 640), (90, 90, 90)), "PNG"))
    return path


def evaluate(capsys, *args) -> dict:
    assert cli(["regions", "evaluate", *map(str, args), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_a_grid_against_a_truth_file_by_hand(photo, tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    # grid:1x2 gives (0,0,320,640) and (320,0,640,640): the first matches exactly, the second overlaps
    # (330,0,640,640) by 310/320, and (0,0,50,50) is missed → precision 2/2, recall 2/3, 2 found − 3 true = −1
    truth.write_text("shelf.png,0,0,320,640\nshelf.png,330,0,640,640\nshelf.png,0,0,50,50\n")
    report = evaluate(capsys, photo, "--truth", truth, "--regions", "grid:1x2")
    assert report["regions"] == "grid:1x2" and len(report["photos"]) == 1
    overall = report["overall"]
    assert (overall["found"], overall["true"], overall["matched"], overall["count_error"]) == (2, 3, 2, -1)
    assert overall["precision"] == 1.0 and overall["recall"] == pytest.approx(2 / 3)
    assert overall["f1"] == pytest.approx(0.8) and "ap50" not in overall  # a grid gives no scores


def test_evaluate_a_detector_reports_ap_by_hand(photo, tmp_path, capsys):
    model = tmp_path / "sku110k.onnx"
    # the 640×640 photo fills the 320×320 input at gain 0.5: these input boxes are the photo's halved
    model.write_bytes(fixed_detector([(0, 0, 50, 50), (200, 200, 250, 250), (100, 0, 150, 50)], [0.9, 0.8, 0.7],
                                     "yolov8"))
    truth = tmp_path / "truth.csv"
    truth.write_text("shelf.png,0,0,100,100\nshelf.png,200,0,300,100\nshelf.png,500,500,600,600\n")
    report = evaluate(capsys, photo, "--truth", truth, "--regions", f"detector:{model}@tiles=off")
    overall = report["overall"]
    # ranked hit, miss, hit over 3 true boxes: (34 × 1 + 33 × 2/3) / 101, at every IoU threshold (exact boxes)
    assert overall["ap50"] == pytest.approx(56 / 101) and overall["ap50_95"] == pytest.approx(56 / 101)
    assert (overall["precision"], overall["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))


def test_evaluate_goes_on_past_bad_photos_and_says_why(photo, tmp_path, capsys):
    other = tmp_path / "other.png"
    other.write_bytes(photo.read_bytes())
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"images": [{"id": 1, "file_name": "shelf.png"}],
                                 "annotations": [{"image_id": 1, "bbox": [0, 0, 640, 640]}]}))
    assert cli(["regions", "evaluate", str(photo), str(other), str(tmp_path / "gone.jpg"), "--truth", str(truth),
                "--regions", "whole"]) == 0
    output = capsys.readouterr()
    assert "truth file truth.json has no boxes for this photo" in output.err and "gone.jpg" in output.err
    assert "shelf.png" in output.out and "1.000" in output.out


def test_evaluate_exit_codes(photo, tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text("elsewhere.png,0,0,10,10\n")
    assert cli(["regions", "evaluate", str(photo), "--truth", str(truth)]) == 1  # nothing evaluated
    assert cli(["regions", "evaluate", str(photo), "--truth", str(tmp_path / "missing.csv")]) == 2
    assert cli(["regions", "evaluate", str(photo), "--truth", str(truth), "--regions", "detector"]) == 2
    assert "no detector imported yet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli(["regions", "evaluate", str(photo), "--truth", str(truth), "--regions", "detector:x@conf=7"])
    assert usage.value.code == 2


def test_detector_import_status_and_recognize(photo, tmp_path, capsys):
    assert cli(["detector", "status"]) == 1
    assert "detector import" in capsys.readouterr().out
    wrong = tmp_path / "resnet.onnx"
    wrong.write_bytes(classifier_model())
    assert cli(["detector", "import", str(wrong)]) == 1
    assert "(1, 1000)" in capsys.readouterr().err
    model = tmp_path / "sku.onnx"
    model.write_bytes(fixed_detector([(10, 10, 100, 150), (120, 10, 210, 150)], [0.9, 0.8], "yolov5"))
    assert cli(["detector", "import", str(model)]) == 0
    sha = capsys.readouterr().out.split("sha256 ")[1].split()[0]
    assert cli(["detector", "status"]) == 0
    assert f"{sha[:12]}  sku.onnx  YOLOv5 (1, N, 5+C)" in capsys.readouterr().out
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(["recognize", str(photo), "--regions", "detector@tiles=off", "--db", db]) == 0
    assert "2 region(s)" in capsys.readouterr().out
    assert store.runs_frame(store.open_store(db)).iloc[0]["region_mode"] == \
        f"detector:{sha}@conf=0.25,iou=0.6,tiles=off"
