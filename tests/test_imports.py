"""The storing and reporting side needs no torch, and the class names it uses are the weights' own."""
import os
import subprocess
import sys
from pathlib import Path

from torchvision.models import ResNet18_Weights

from shelf.labels import IMAGENET_CLASSES

ROOT = Path(__file__).resolve().parents[1]
TORCH_FREE = ["shelf.storage.store", "shelf.analytics.tally", "shelf.analytics.report", "shelf.storage.rollup",
              "shelf.storage.schema", "shelf.storage.migrations", "shelf.analytics.charts", "shelf.analytics.export",
              "shelf.analytics.review", "shelf.analytics.categories", "shelf.labels", "shelf.analytics.planogram",
              "shelf.analytics.compliance"]


def test_reporting_modules_import_without_torch():
    code = f"import sys; import {', '.join(TORCH_FREE)}; print(sorted(m for m in ('torch', 'torchvision') " \
           "if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_class_names_are_the_weights_own():
    assert IMAGENET_CLASSES == tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_the_reporting_pages_open_without_loading_torch(tmp_path):
    """Tallies and Review need no model: a fresh server process shows them without importing torch (seconds)."""
    code = ("import sys; from streamlit.testing.v1 import AppTest\n"
            "for page in ('pages/tallies.py', 'pages/review.py', 'pages/categories.py', 'pages/compliance.py'):\n"
            "    at = AppTest.from_file('streamlit_app.py', default_timeout=60)\n"
            "    at.switch_page(page).run()\n"
            "    assert not at.exception, at.exception\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'onnxruntime') if m in sys.modules))")
    env = {**os.environ, "SHELF_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_cli_starts_without_heavy_imports():
    """`python -m shelf --help` and every command's start: no torchvision detection models, no torch._dynamo (a
    second of start-up, pulled in by importing the torchvision package), no onnx (conversion only)."""
    heavy = ("torch", "torchvision", "torchvision.models.detection", "torch._dynamo", "onnx", "pandas")
    code = f"import sys, shelf.serving.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_recognizing_imports_no_torchvision():
    """The recognize path (decode, regions, preprocessing, classify, store) runs without the torchvision package;
    only building the torch model (eager backend, a conversion, checking a new weights file) imports it."""
    code = ("import sys, shelf.recognition.pipeline, shelf.recognition.stages, shelf.recognition.classify, "
            "shelf.recognition.backends, shelf.serving.cli\n"
            "print(sorted(m for m in ('torchvision', 'torch._dynamo', 'onnx', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_torchvision_facts_kept_as_data_are_torchvisions():
    from shelf.recognition import model
    weights, transform = ResNet18_Weights.IMAGENET1K_V1, ResNet18_Weights.IMAGENET1K_V1.transforms()
    assert model.WEIGHTS_URL == weights.url
    assert (list(model.IMAGENET_MEAN), list(model.IMAGENET_STD)) == (list(transform.mean), list(transform.std))
    assert ([model.RESIZE_SIZE], [model.CROP_SIZE]) == (list(transform.resize_size), list(transform.crop_size))
    assert (model.INTERPOLATION, True) == (transform.interpolation.value, transform.antialias)


def test_the_onnx_backends_classify_and_store_without_torch(tmp_path):
    """With the converted model cached (any run after the first), `classify` and `recognize` on the ONNX Runtime
    backends never import torch: it is 2 s of start-up, needed only to build a model or run the eager backend."""
    from tests.conftest import skimage_photo
    photo = str(skimage_photo("rocket.jpg"))
    env = {**os.environ, "SHELF_BACKEND": "onnx", "SHELF_ALLOW_UNVERIFIED_WEIGHTS": "1"}
    run_cli = "import runpy, sys; sys.argv = ['shelf'] + sys.argv[1:]; runpy.run_module('shelf', run_name='__main__')"
    warm = subprocess.run([sys.executable, "-c", run_cli, "classify", photo], capture_output=True, text=True, cwd=ROOT,
                          env=env)  # converts the model (with torch) once, and remembers the checked weights
    assert warm.returncode == 0, warm.stderr
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print('TORCH', 'torch' in sys.modules, file=sys.stderr))\n"
            "sys.argv = ['shelf'] + sys.argv[1:]\nrunpy.run_module('shelf', run_name='__main__')")
    for command in (["classify", photo], ["recognize", photo, "--regions", "grid:2x2"]):
        done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, cwd=ROOT,
                              env=env)
        assert done.returncode == 0 and "TORCH False" in done.stderr, done.stderr[-2000:]
