"""Hostile input, round two (issue 16): memory bombs measured in a child process, box files that used to escape as
tracebacks, formula cells in the tables' own CSV download, Markdown from untrusted names, and the smaller leaks.
Every bad file gets a message; no traceback reaches the CLI or the browser."""

import pytest

from shelf.images import decode_image
from tests.hostile_files import (
    one_colour_png,
)
from tests.test_app import fresh_caches, start, texts, upload  # noqa: F401 (fresh_caches: an autouse fixture)

MEMORY_BOUND_MB = 1536  # the acceptance bound for the zip and weights bombs


@pytest.fixture
def eager(monkeypatch):
    """AppTests here do not need the ONNX conversion; eager fp32 spares its time."""
    monkeypatch.setenv("SHELF_BACKEND", "eager")


# -- 5. Pillow's pixel limit is Shelf's ---------------------------------------------------------------------------


def test_a_108_megapixel_photo_decodes():
    decoded = decode_image(one_colour_png(12000, 9000), "phone-108mp.png")
    assert decoded.image.size == (12000, 9000)
