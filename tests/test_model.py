import hashlib
import io
import os
import pickle

import pytest
import torch
from torchvision.models import resnet18

from shelf.recognition import model
from shelf.serving.cli import main as cli


def test_shelf_weights_file_is_used_and_marked_untrained(weights_file):
    loaded, status = model.load_model()
    assert status.available
    info = loaded.weights
    assert info.source == "SHELF_WEIGHTS" and info.path == weights_file
    assert info.sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert not info.verified and info.untrained
    assert "UNTRAINED" in info.kind
    assert len(loaded.categories) == 1000 and loaded.categories[0] == "tench"
    assert not loaded.model.training


def test_unverified_weights_need_the_explicit_opt_in(monkeypatch, weights_file):
    monkeypatch.delenv("SHELF_ALLOW_UNVERIFIED_WEIGHTS")
    loaded, status = model.load_model()
    assert loaded is None and not status.available
    assert "SHELF_ALLOW_UNVERIFIED_WEIGHTS=1" in status.problem
    assert "untrained" in status.problem


def test_offline_without_weights_is_a_clear_state_not_a_crash(monkeypatch):
    monkeypatch.delenv("SHELF_WEIGHTS")
    monkeypatch.setattr(model, "download_weights", lambda *a, **k: pytest.fail("must not download offline"))
    loaded, status = model.load_model()
    assert loaded is None
    assert status.problem == "No ResNet-18 weights found."
    assert any("SHELF_OFFLINE=1" in line for line in status.tried)
    assert any("hub cache" in line for line in status.tried)


def test_hub_cache_is_found(monkeypatch, weights_file):
    monkeypatch.delenv("SHELF_WEIGHTS")
    target = model.hub_cache_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(weights_file.read_bytes())
    loaded, _ = model.load_model()
    assert loaded.weights.source == "torch hub cache"


def test_download_failure_is_reported_and_nothing_is_kept(monkeypatch):
    monkeypatch.delenv("SHELF_WEIGHTS")
    monkeypatch.delenv("SHELF_OFFLINE")
    loaded, status = model.load_model()  # the test network guard refuses the connection
    assert loaded is None
    assert any(line.startswith("download from https://download.pytorch.org") and "failed" in line
               for line in status.tried)
    assert not model.hub_cache_path().exists()


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_the_hash(monkeypatch, weights_file):
    data = weights_file.read_bytes()
    monkeypatch.setattr(model.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(data))
    with pytest.raises(model.WeightsError, match="expected f37072fd"):
        model.download_weights()
    assert not model.hub_cache_path().exists()
    # A file whose hash matches the published prefix is kept in the hub cache and then found there.
    monkeypatch.setattr(model, "OFFICIAL_HASH_PREFIX", hashlib.sha256(data).hexdigest()[:8])
    assert model.download_weights() == model.hub_cache_path()
    monkeypatch.delenv("SHELF_WEIGHTS")
    loaded, _ = model.load_model()
    assert loaded.weights.source == "torch hub cache" and loaded.weights.verified


def test_wrong_shape_file_is_refused_with_the_reason(tmp_path, monkeypatch):
    path = tmp_path / "ten-classes.pth"
    torch.save(resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(model.WeightsError,
                       match=r"ten-classes\.pth.*fc\.weight \(10, 512\) \(expected \(1000, 512\)\)"):
        model.read_weights_file(path, "test")
    monkeypatch.setenv("SHELF_WEIGHTS", str(path))
    loaded, status = model.load_model()
    assert loaded is None and "wrong shape" in status.problem  # no silent fallback to another file


def test_missing_keys_and_other_architectures_are_refused(tmp_path):
    from torchvision.models import resnet34
    path = tmp_path / "resnet34.pth"
    torch.save(resnet34().state_dict(), path)
    with pytest.raises(model.WeightsError, match="unexpected keys"):
        model.read_weights_file(path, "test")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"fc.weight": _Exploit(marker)}, handle)
    with pytest.raises(model.WeightsError, match="not a PyTorch checkpoint"):  # a bare pickle: never loaded
        model.read_weights_file(path, "test")
    torch.save({"x": _Exploit(marker)}, path)  # the same inside torch's zip container
    with pytest.raises(model.WeightsError, match="refused by the safe loader"):
        model.read_weights_file(path, "test")
    assert not marker.exists()


@pytest.mark.parametrize("data", [b"", b"not a weights file at all", b"PK\x03\x04broken zip"])
def test_garbage_weights_bytes_are_refused(data):
    with pytest.raises(model.WeightsError, match="upload.pth"):
        model.parse_weights(data, "upload.pth")


def test_nan_weights_are_refused():
    state = resnet18().state_dict()
    state["fc.bias"][0] = float("nan")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with pytest.raises(model.WeightsError, match="NaN"):
        model.parse_weights(buffer.getvalue(), "nan.pth")


def test_trained_looking_statistics_are_not_called_untrained():
    state = resnet18().state_dict()
    assert model.looks_untrained(state)
    state["bn1.running_mean"] += 0.5
    assert not model.looks_untrained(state)


def test_import_keeps_the_file_under_shelfs_own_name(monkeypatch, weights_file, shelf_env):
    info = model.import_weights(weights_file.read_bytes(), "../../../etc/evil name.pth")
    assert info.path == model.imported_weights_path()
    assert info.path.is_relative_to(shelf_env / "data")
    assert not (shelf_env / "etc").exists()
    monkeypatch.delenv("SHELF_WEIGHTS")
    loaded, _ = model.load_model()
    assert loaded.weights.source == "imported"


def test_import_refuses_bad_files_and_keeps_nothing(tmp_path):
    with pytest.raises(model.WeightsError):
        model.import_weights(b"junk", "junk.pth")
    assert not model.imported_weights_path().exists()


def test_cli_weights_status_and_import(monkeypatch, weights_file, tmp_path, capsys):
    assert cli(["weights", "status"]) == 0
    assert "UNTRAINED" in capsys.readouterr().out
    monkeypatch.delenv("SHELF_WEIGHTS")
    assert cli(["weights", "status"]) == 3
    assert "resnet18-f37072fd.pth" in capsys.readouterr().out
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    assert cli(["weights", "import", str(bad)]) == 1
    assert cli(["weights", "import", str(weights_file)]) == 0
    assert cli(["weights", "status"]) == 0
    assert "imported" in capsys.readouterr().out
