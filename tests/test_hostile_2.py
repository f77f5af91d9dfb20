"""Hostile input, round two (issue 16): memory bombs measured in a child process, box files that used to escape as
tracebacks, formula cells in the tables' own CSV download, Markdown from untrusted names, and the smaller leaks.
Every bad file gets a message; no traceback reaches the CLI or the browser."""
import hashlib
import io
import json
import re

import pytest
import torch
from torchvision.models import resnet18

from shelf import model
from shelf.images import decode_image
from tests.hostile_files import (
    Entry,
    inflating_weights,
    one_colour_png,
    peak_rss_mb,
    zip_bytes,
)
from tests.test_app import fresh_caches, start, texts, upload  # noqa: F401 (fresh_caches: an autouse fixture)

MEMORY_BOUND_MB = 1536  # the acceptance bound for the zip and weights bombs


@pytest.fixture
def eager(monkeypatch):
    """AppTests here do not need the ONNX conversion; eager fp32 spares its time."""
    monkeypatch.setenv("SHELF_BACKEND", "eager")


# -- 2. weights files that inflate ------------------------------------------------------------------------------


def test_inflating_weights_are_refused_before_torch_allocates_them(tmp_path, weights_file):
    bomb = tmp_path / "resnet18.pth"
    bomb.write_bytes(inflating_weights(weights_file.read_bytes()))  # 3 GiB of zeros deflated into data/0
    assert bomb.stat().st_size < 60 * 10**6
    peak, out = peak_rss_mb(f"""
from pathlib import Path
from shelf import model
try:
    model.import_weights(Path({str(bomb)!r}).read_bytes(), "resnet18.pth")
except model.WeightsError as exc:
    print("REFUSED", exc)
""")
    assert re.search(r"REFUSED resnet18.pth: record '[\w-]+/data/0' is compressed", out), out
    assert peak <= MEMORY_BOUND_MB, f"peak {peak:.0f} MB"
    assert not model.imported_weights_path().exists()


def test_checkpoint_records_must_be_stored_within_the_limit(weights_file):
    data = weights_file.read_bytes()
    model.check_checkpoint_container(data, "ok.pth", model.MAX_WEIGHTS_BYTES)  # what torch.save writes passes
    with pytest.raises(model.WeightsError, match=r"records add up to 47 MB; the limit is 10 MB"):
        model.check_checkpoint_container(data, "big.pth", 10 * 10**6)
    lying = zip_bytes([Entry("archive/data/0", b"x" * 10, size=10**9)])
    with pytest.raises(model.WeightsError, match="is compressed"):  # a stored record whose sizes disagree
        model.check_checkpoint_container(lying, "lying.pth", model.MAX_WEIGHTS_BYTES)


def test_a_safetensors_file_gets_a_whole_sentence():
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    data = len(header).to_bytes(8, "little") + header + bytes(4)
    with pytest.raises(model.WeightsError) as refused:
        model.parse_weights(data, "resnet18.safetensors")
    message = str(refused.value)
    assert "safetensors file" in message and message.endswith("and import that file.")


# -- 3. an unverified file never displaces the verified one ------------------------------------------------------


@pytest.fixture
def verified_in_hub_cache(monkeypatch, weights_file):
    """The test checkpoint plays the verified file (its hash prefix is made the official one), in the hub cache;
    a second, different checkpoint is the unverified one."""
    target = model.hub_cache_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(weights_file.read_bytes())
    monkeypatch.setattr(model, "OFFICIAL_HASH_PREFIX", hashlib.sha256(target.read_bytes()).hexdigest()[:8])
    torch.manual_seed(1)
    other = io.BytesIO()
    torch.save(resnet18().state_dict(), other)
    monkeypatch.delenv("SHELF_WEIGHTS")
    monkeypatch.delenv("SHELF_ALLOW_UNVERIFIED_WEIGHTS")
    return other.getvalue()


def test_an_unverified_import_does_not_take_the_verified_model_away(verified_in_hub_cache, monkeypatch):
    info = model.import_weights(verified_in_hub_cache, "fine-tune.pth")
    assert not info.verified
    loaded, status = model.load_model()
    assert loaded.weights.source == "torch hub cache" and loaded.weights.verified
    assert status.skipped == ("imported (not the verified ImageNet file)",)
    monkeypatch.setenv("SHELF_ALLOW_UNVERIFIED_WEIGHTS", "1")  # the server allows it: used, and marked
    loaded, _ = model.load_model()
    assert loaded.weights.source == "imported" and not loaded.weights.verified


def test_unverified_or_broken_shelf_weights_fall_back_to_the_verified_file(verified_in_hub_cache, monkeypatch,
                                                                           tmp_path):
    unverified, broken = tmp_path / "mine.pth", tmp_path / "broken.pth"
    unverified.write_bytes(verified_in_hub_cache)
    broken.write_bytes(b"junk")
    for path in (unverified, broken):
        monkeypatch.setenv("SHELF_WEIGHTS", str(path))
        loaded, status = model.load_model()
        assert loaded.weights.verified and status.skipped[0].startswith("SHELF_WEIGHTS (")
    model.hub_cache_path().unlink()
    loaded, status = model.load_model()  # nothing usable left: the first file's own problem is what is reported
    assert loaded is None and status.problem.startswith(f"{broken}: not a PyTorch checkpoint")


# -- 5. Pillow's pixel limit is Shelf's ---------------------------------------------------------------------------


def test_a_108_megapixel_photo_decodes():
    decoded = decode_image(one_colour_png(12000, 9000), "phone-108mp.png")
    assert decoded.image.size == (12000, 9000)
