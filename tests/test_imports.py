"""The storing and reporting side needs no torch, and the class names it uses are the weights' own."""
import subprocess
import sys

from torchvision.models import ResNet18_Weights

from shelf.labels import IMAGENET_CLASSES

TORCH_FREE = ["shelf.store", "shelf.tally", "shelf.report", "shelf.rollup", "shelf.schema", "shelf.migrations",
              "shelf.charts", "shelf.export", "shelf.review", "shelf.categories", "shelf.labels"]


def test_reporting_modules_import_without_torch():
    code = f"import sys; import {', '.join(TORCH_FREE)}; print(sorted(m for m in ('torch', 'torchvision') " \
           "if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_class_names_are_the_weights_own():
    assert IMAGENET_CLASSES == tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
