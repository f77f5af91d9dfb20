"""The serving image has no PyTorch: once the convert job has converted the weights into the data dir, Shelf
classifies, recognizes (detector mode too) and shows its pages on ONNX Runtime; where only PyTorch can do something
(checking a new weights file, converting it, the eager backend, the fidelity check) it says to run the convert job.
Here torch is made unimportable in this process (sys.modules["torch"] = None), as it is in the image."""
import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from shelf.recognition import backends, model
from shelf.serving.cli import main
from tests.conftest import skimage_photo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_torch(monkeypatch):
    for name in ("torch", "torchvision"):
        monkeypatch.setitem(sys.modules, name, None)  # `import torch` raises ImportError, find_spec finds nothing
    assert not model.torch_installed()


def test_without_the_convert_job_nothing_runs_and_every_door_says_to_run_it(no_torch, capsys):
    loaded, status = model.load_model()
    assert loaded is None and "convert job" in status.problem
    assert main(["classify", str(skimage_photo("rocket.jpg"))]) == 3
    assert "docker compose run --rm convert" in capsys.readouterr().err
    assert main(["weights", "status"]) == 3
    out = capsys.readouterr().out
    assert "cannot be checked here" in out and "Run the convert job once" in out
    assert main(["weights", "convert"]) == 1
    assert "converting needs PyTorch" in capsys.readouterr().err


def test_after_the_convert_job_classify_and_recognize_run_on_onnx_runtime(monkeypatch, capsys):
    assert main(["weights", "convert"]) == 0  # here, with torch: what the convert image does
    out = capsys.readouterr().out
    assert out.startswith("converted ") and model.FP32_FILE in out
    for name in ("torch", "torchvision"):
        monkeypatch.setitem(sys.modules, name, None)
    photo = str(skimage_photo("rocket.jpg"))
    assert main(["classify", photo, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"][0]["rank"] == 1
    monkeypatch.setenv("SHELF_BACKEND", "eager")  # the reference backend: needs torch, so ONNX Runtime runs
    assert main(["recognize", photo, "--regions", "grid:2x2"]) == 0
    assert "PyTorch reference backend needs PyTorch" in capsys.readouterr().err
    monkeypatch.setenv("SHELF_BACKEND", "bf16")  # balanced mode runs on torch too (on a CPU that offers it)
    monkeypatch.setattr(backends, "usable_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert main(["recognize", photo, "--regions", "grid:2x2"]) == 0
    assert "balanced mode (bfloat16) needs PyTorch" in capsys.readouterr().err
    monkeypatch.setenv("SHELF_BACKEND", "eager")
    assert main(["weights", "status"]) == 0
    loaded, _ = model.load_model()
    (model.models_dir(loaded.weights.sha256) / model.FP32_FILE).unlink()  # checked once, the conversion gone
    assert main(["weights", "status"]) == 3
    assert "not converted for ONNX Runtime yet" in capsys.readouterr().out
    assert main(["classify", photo]) == 3
    assert "has not been converted for ONNX Runtime yet" in capsys.readouterr().err


def test_a_weights_file_cannot_be_checked_without_torch(no_torch, weights_file):
    with pytest.raises(model.WeightsError, match="cannot be checked here.*convert job"):
        model.import_weights(weights_file.read_bytes(), "resnet18.pth")
    with pytest.raises(backends.BackendError, match="no converted model.*convert job"):
        backends.build_backend("onnx", lambda: None, "f" * 64)


def test_detector_regions_need_no_torch(monkeypatch, tmp_path):
    from shelf.ingest.regions import Box
    from shelf.recognition.detector import detect, inspect_detector
    from tests.detectors import fixed_detector
    data = fixed_detector([(5, 5, 50, 50), (6, 6, 51, 51), (100, 100, 150, 150)], [0.9, 0.8, 0.7], "yolov8")
    for name in ("torch", "torchvision"):  # the test model is made with torch; the detector runs without it
        monkeypatch.setitem(sys.modules, name, None)
    path = tmp_path / "d.onnx"
    path.write_bytes(data)
    found, scores = detect(inspect_detector(data, "d.onnx", path), Image.new("RGB", (320, 320)), tiles="off")
    assert len(found) == 2 and isinstance(found[0], Box) and scores[0] == pytest.approx(0.9)


def test_the_home_page_without_torch_offers_no_pytorch_fidelity_check(capsys):
    import streamlit as st
    assert main(["weights", "convert"]) == 0
    real = {name: sys.modules.get(name) for name in ("torch", "torchvision")}
    sys.modules.update(torch=None, torchvision=None)
    try:
        st.cache_resource.clear()
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
        assert not at.exception, at.exception
        captions = " ".join(c.value for c in at.caption)
        assert "runs PyTorch, which this installation (Shelf's serving image) does not have" in captions
        assert "torch not installed" in " ".join(m.value for m in at.markdown)
        assert not [b for b in at.button if b.key == "check_fidelity"]
    finally:
        sys.modules.update(real)
        st.cache_resource.clear()


def test_fast_mode_is_calibrated_and_runs_without_torch(monkeypatch, capsys):
    """int8: quantised by ONNX Runtime from the converted model and stored crops, no PyTorch involved."""
    assert main(["weights", "convert"]) == 0
    for name in ("torch", "torchvision"):
        monkeypatch.setitem(sys.modules, name, None)
    photo = str(skimage_photo("coffee.png"))
    assert main(["recognize", photo, "--regions", "grid:4x4"]) == 0  # 16 crops to calibrate on
    assert main(["weights", "recalibrate"]) == 0
    assert "fast mode recalibrated: 16 crops" in capsys.readouterr().out
    monkeypatch.setenv("SHELF_BACKEND", "int8")
    assert main(["classify", photo]) == 0
    assert "fast mode (int8) is on" in capsys.readouterr().err
