"""ResNet-18 weights: where they come from, whether they are the real ImageNet ones, and loading them safely.

Resolution order (the first usable file wins):
  1. SHELF_WEIGHTS, a file the operator names;
  2. a file imported through the app or `python -m shelf weights import` (kept in the data dir);
  3. the torch hub cache (resnet18-f37072fd.pth), where torchvision itself keeps the file;
  4. a download from torchvision's URL, hash-checked (skipped with SHELF_OFFLINE=1);
  5. otherwise: "unavailable", with instructions. Offline is a normal state, not a crash.

A file is *verified* when its sha256 starts with the prefix torchvision publishes for IMAGENET1K_V1. Anything else
(an untrained checkpoint for tests or demos, someone's fine-tune) is usable only with
SHELF_ALLOW_UNVERIFIED_WEIGHTS=1, and every run made with it records that, so untrained weights never pass for
ImageNet ones. Without that setting an unverified (or broken) file is skipped, with a note in `tried`, so a file
someone imported can never take the verified weights away; when nothing usable is found, the first skipped file's
problem is reported.

Start-up: nothing here imports torchvision (whose package import pulls in torch._dynamo, a second of start-up). The
torchvision facts Shelf relies on (the file's URL and hash, the preprocessing constants, the class names) are kept
as data, and a test checks them against torchvision. torch itself is imported only to build the torch model, on
first use: the ONNX Runtime backends load their cached model and never need it (2 s of start-up saved). A weights
file whose checks passed once is remembered by its sha256 (in the data dir), so a new process hashes the file
instead of unpickling and checking it again.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from shelf import config
from shelf.access import LOCAL, Identity, require
from shelf.files import MB, FileTooLarge, read_bounded, size_problem, write_atomically
from shelf.labels import IMAGENET_CLASSES

if TYPE_CHECKING:  # the ONNX Runtime backends run without torch: it is imported where a model is built
    import torch

# torchvision's ResNet18_Weights.IMAGENET1K_V1, as data (tests/test_imports.py checks them against torchvision)
WEIGHTS_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SIZE = 256  # the short side, bilinear with antialias
CROP_SIZE = 224
INTERPOLATION = "bilinear"
OFFICIAL_FILENAME = WEIGHTS_URL.rsplit("/", 1)[-1]  # resnet18-f37072fd.pth
OFFICIAL_HASH_PREFIX = OFFICIAL_FILENAME.split("-")[1].split(".")[0]  # f37072fd
IMPORTED_FILENAME = "imported-resnet18.pth"
MAX_WEIGHTS_MB = 200  # the weights uploader passes it to Streamlit as max_upload_size
MAX_WEIGHTS_BYTES = MAX_WEIGHTS_MB * MB
MAX_CHECKPOINT_RECORDS = 4096  # a ResNet-18 checkpoint has ~130
DOWNLOAD_TIMEOUT_S = 20
CATEGORIES: tuple[str, ...] = IMAGENET_CLASSES  # the weights' meta["categories"], as data (a test checks)


def hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch (2 s of start-up): $TORCH_HOME/hub, by default
    ~/.cache/torch/hub (tests/test_imports.py checks it against torch's)."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub"


HOW_TO_GET_WEIGHTS = (
    "Shelf needs the ImageNet ResNet-18 weights file `resnet18-f37072fd.pth` (45 MB). Either:\n"
    "- import it in the app: **Home & model** page, *Import a weights file*, or\n"
    "- run `python -m shelf weights import PATH`, or\n"
    "- set `SHELF_WEIGHTS=/path/to/resnet18-f37072fd.pth`, or\n"
    f"- put it in the torch hub cache: `{hub_dir() / 'checkpoints'}/`, or\n"
    "- on a machine with internet access, run `python -m shelf weights download`.\n"
    f"The file is published by torchvision at {WEIGHTS_URL}."
)
FP32_FILE = "resnet18-fp32.onnx"  # the converted model the ONNX Runtime backends run (shelf.recognition.backends)
RUN_THE_CONVERT_JOB = (
    "This installation has no PyTorch (Shelf's serving image), which checking a weights file and converting it "
    "for ONNX Runtime need. Run the convert job once (`docker compose run --rm convert`, or `python -m shelf "
    "weights convert` where requirements.txt is installed, with the same data dir); it converts the weights into "
    "the data dir, and this installation then runs them.")


class WeightsError(ValueError):
    """A weights file that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class WeightsInfo:
    path: Path
    source: str  # "SHELF_WEIGHTS", "imported", "torch hub cache", "download"
    sha256: str
    verified: bool  # the official torchvision ImageNet-1K file
    untrained: bool  # batch-norm statistics still at their initial values: a random-init checkpoint

    @property
    def kind(self) -> str:
        if self.verified:
            return "ImageNet-1K (verified torchvision file)"
        if self.untrained:
            return "UNTRAINED (random initialization) — predictions are meaningless"
        return "unverified (not the torchvision ImageNet file)"


@dataclass(frozen=True)
class WeightsStatus:
    """The outcome of resolution: usable weights, or the reason there are none."""

    info: WeightsInfo | None
    problem: str | None = None
    tried: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # files found and not used, short: "imported (not the verified ImageNet file)"

    @property
    def available(self) -> bool:
        return self.info is not None and self.problem is None


class TorchModel:
    """The torch ResNet-18 of a LoadedModel, built on first use (thread-safe) and then shared by every copy of it."""

    def __init__(self, build: Callable[[], torch.nn.Module]):
        self._build, self._model, self._lock = build, None, threading.Lock()

    def get(self) -> torch.nn.Module:
        with self._lock:
            if self._model is None:
                self._model, self._build = self._build(), None
        return self._model


@dataclass(frozen=True)
class LoadedModel:
    torch_model: TorchModel = field(repr=False)
    weights: WeightsInfo
    categories: tuple[str, ...] = CATEGORIES
    backend: object = None  # a shelf.recognition.backends backend; None means torch eager fp32

    @property
    def model(self) -> torch.nn.Module:
        """The torch model (eval mode; shared by all sessions, never mutated after loading), built on first use."""
        return self.torch_model.get()

    @property
    def backend_name(self) -> str:
        return getattr(self.backend, "name", "torch eager fp32")


def torchvision_version() -> str:
    """Without importing torchvision (a second of start-up)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("torchvision")
    except PackageNotFoundError:
        return "unknown"


def torch_version() -> str:
    """torch.__version__ (with its build tag, e.g. 2.14.1+cu130), without importing torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.__version__
    if not torch_installed():
        return "not installed"
    from importlib.util import find_spec
    spec = find_spec("torch")
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()
        return re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.M).group(1)
    except (AttributeError, OSError, TypeError, IndexError):
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("torch")
        except PackageNotFoundError:
            return "not installed"


def cpu_threads() -> int:
    """The threads inference uses: torch's count once torch is loaded, else the CPUs this process may run on."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every CPU
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def onnx_session(model: bytes | str):
    """An ONNX Runtime CPU session with every graph optimisation (NCHWc layouts: fp32 runs at twice the speed), on the
    cores torch uses (no oversubscription), logging errors only (a checked model may warn of unused initialisers).
    Its idle pool threads sleep instead of spinning: a spinning thread holds a core the decode thread
    (pipeline.recognize) needs; with both, a photo took 0.82–0.83× the time on either CPU kind (README)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (the serving image runs without it, on converted models)."""
    from importlib.util import find_spec
    return sys.modules.get("torch") is not None or find_spec("torch") is not None


def runtime_summary() -> str:
    return f"CPU, {cpu_threads()} threads · torch {torch_version()} · torchvision {torchvision_version()}"


def imported_weights_path() -> Path:
    return config.data_dir() / "weights" / IMPORTED_FILENAME


def hub_cache_path() -> Path:
    return hub_dir() / "checkpoints" / OFFICIAL_FILENAME


def resnet18() -> torch.nn.Module:
    from torchvision.models import resnet18 as torchvision_resnet18
    return torchvision_resnet18(weights=None)


@cache
def _reference_shapes() -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in resnet18().state_dict().items()}


def models_dir(weights_sha256: str) -> Path:
    """Where what Shelf derives from one weights file is kept: converted models, calibration, the checks record."""
    return config.data_dir() / "models" / weights_sha256[:16]


def converted(weights_sha256: str) -> bool:
    """Whether these weights were converted for ONNX Runtime (what runs them where PyTorch is not installed)."""
    return (models_dir(weights_sha256) / FP32_FILE).is_file()


CHECKED_FILE = "checked.json"


def parse_weights(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """Untrusted bytes → a ResNet-18 state dict, checked key by key and shape by shape. Never runs pickled code."""
    if not torch_installed():
        raise WeightsError(f"{name}: cannot be checked here. {RUN_THE_CONVERT_JOB}")
    import torch
    if not data:
        raise WeightsError(f"{name}: the file is empty")
    if len(data) > MAX_WEIGHTS_BYTES:
        raise WeightsError(f"{name}: {size_problem(len(data), MAX_WEIGHTS_BYTES)} for ResNet-18 weights")
    check_checkpoint_container(data, name, MAX_WEIGHTS_BYTES)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{name}: not a loadable PyTorch weights file (refused by the safe loader: "
                           f"{_first_line(exc)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{name}: the file does not hold a state dict of tensors")
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    check_state_dict(state, name)
    return state


def _first_line(exc: Exception, limit: int = 200) -> str:
    """The first line of an error, cut at a word (with an ellipsis) when it is long."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def check_checkpoint_container(data: bytes, name: str, limit: int) -> None:
    """Refuse a checkpoint torch.load would inflate: it allocates the size a zip record *declares* before checking
    anything, so a 50 MB file can declare gigabytes. torch.save writes a zip of stored (uncompressed) records; require
    exactly that, with records the file really holds, adding up to at most `limit` bytes. (For detector files too.)"""
    if _looks_like_safetensors(data):
        raise WeightsError(f"{name}: this is a safetensors file. Shelf loads PyTorch checkpoints written by "
                           "torch.save (.pth); convert it with torch.save(safetensors.torch.load_file(PATH), "
                           "'resnet18.pth') and import that file.")
    try:
        records = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error):
        raise WeightsError(f"{name}: not a PyTorch checkpoint (torch.save writes a zip archive, and this file is "
                           "not one; a checkpoint in the legacy pre-1.6 format must be saved again with a current "
                           "PyTorch).") from None
    if len(records) > MAX_CHECKPOINT_RECORDS:
        raise WeightsError(f"{name}: {len(records)} records is far more than a ResNet-18 checkpoint holds")
    total = 0
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.compress_size != record.file_size:
            raise WeightsError(f"{name}: record {record.filename[:80]!r} is compressed. torch.save stores records "
                               "uncompressed, and a compressed record can inflate to gigabytes, so the file is "
                               "refused.")
        if record.header_offset + record.file_size > len(data):
            raise WeightsError(f"{name}: record {record.filename[:80]!r} declares more bytes than the file holds")
        total += record.file_size
    if total > limit:
        raise WeightsError(f"{name}: its records add up to {total / MB:.0f} MB; the limit is {limit / MB:g} MB")


def _looks_like_safetensors(data: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    return len(data) > 9 and data[8:9] == b"{" and int.from_bytes(data[:8], "little") < len(data)


def check_state_dict(state: dict[str, torch.Tensor], name: str) -> None:
    expected = _reference_shapes()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
             for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} tensors of the wrong shape (e.g. {'; '.join(wrong[:2])})")
    if problems:
        raise WeightsError(f"{name}: not ResNet-18 ImageNet weights: " + "; ".join(problems))
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise WeightsError(f"{name}: contains NaN or infinite values (e.g. {bad[0]})")


def looks_untrained(state: dict[str, torch.Tensor]) -> bool:
    """Batch-norm running statistics that never moved (mean 0, var 1 everywhere) mean nobody trained this."""
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    return all(bool((m == 0).all()) for m in means) and all(bool((v == 1).all()) for v in variances)


def read_weights_file(path: Path, source: str, *, lazy: bool = False
                      ) -> tuple[dict[str, torch.Tensor] | Callable[[], dict[str, torch.Tensor]], WeightsInfo]:
    """(state dict, info) of a weights file, checked. With `lazy`, a file whose very bytes (by sha256) passed the
    checks before is not unpickled now: the state comes back as a function that parses it when the torch model is
    first needed."""
    try:
        data = read_bounded(path, MAX_WEIGHTS_BYTES)
    except FileTooLarge as exc:
        raise WeightsError(str(exc)) from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    sha = hashlib.sha256(data).hexdigest()
    record = models_dir(sha) / CHECKED_FILE
    checked = _checked_before(record, sha) if lazy else None
    if checked is not None:
        state = lambda: parse_weights(data, str(path))  # noqa: E731
        untrained = checked
    else:
        state = parse_weights(data, str(path))
        untrained = looks_untrained(state)
        _remember_checked(record, sha, untrained)
    info = WeightsInfo(path=path, source=source, sha256=sha, verified=sha.startswith(OFFICIAL_HASH_PREFIX),
                       untrained=untrained)
    return state, info


def _checked_before(record: Path, sha: str) -> bool | None:
    """`untrained` of a file with this sha256 that passed the checks before; None if none did."""
    try:
        found = json.loads(record.read_text())
        return bool(found["untrained"]) if found.get("sha256") == sha else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _remember_checked(record: Path, sha: str, untrained: bool) -> None:
    try:
        write_atomically(json.dumps({"sha256": sha, "untrained": untrained}).encode(), record)
    except OSError:
        pass  # a read-only data dir: the file is checked again next time, nothing worse


def _candidates() -> list[tuple[str, Path]]:
    found = []
    explicit = config.weights_file_from_env()
    if explicit is not None:
        found.append(("SHELF_WEIGHTS", explicit))
    found.append(("imported", imported_weights_path()))
    found.append(("torch hub cache", hub_cache_path()))
    return found


def resolve_weights(download: bool | None = None) -> tuple[dict | Callable[[], dict] | None, WeightsStatus]:
    """Find weights in the documented order; return (state dict or None, status). A file that is there but not
    usable here (broken, or unverified without SHELF_ALLOW_UNVERIFIED_WEIGHTS=1) is skipped with a note in `tried`,
    never silently, and never at the cost of a usable file later in the order."""
    if download is None:
        download = not config.offline()
    tried: list[str] = []
    skipped: list[str] = []
    refused: tuple[WeightsInfo | None, str] | None = None  # the first file found and not usable, and why
    for source, path in _candidates():
        if source != "SHELF_WEIGHTS" and not path.exists():
            tried.append(f"{source}: {path} (not there)")
            continue
        try:
            state, info = read_weights_file(path, source, lazy=True)
        except WeightsError as exc:
            refused = refused or (None, str(exc))
            tried.append(f"{source}: skipped, {exc}")
            skipped.append(f"{source} (cannot be loaded)")
            continue
        if usable(info):
            return state, WeightsStatus(info=info, tried=tuple(tried), skipped=tuple(skipped))
        refused = refused or (info, _unverified_problem(info))
        tried.append(f"{source}: {path} skipped, not the verified ImageNet file (sha256 {info.sha256[:12]}…)")
        skipped.append(f"{source} (not the verified ImageNet file)")
    if download:
        try:
            _fetch_official_weights()
            state, info = read_weights_file(hub_cache_path(), "download")
            return state, WeightsStatus(info=info, tried=tuple(tried), skipped=tuple(skipped))
        except (WeightsError, OSError) as exc:
            tried.append(f"download from {WEIGHTS_URL}: failed ({exc})")
    else:
        tried.append("download: skipped (SHELF_OFFLINE=1)")
    info, problem = refused or (None, "No ResNet-18 weights found.")
    return None, WeightsStatus(info=info, problem=problem, tried=tuple(tried), skipped=tuple(skipped))


def usable(info: WeightsInfo) -> bool:
    return info.verified or config.allow_unverified_weights()


def _unverified_problem(info: WeightsInfo) -> str:
    return (f"{info.path} is not the torchvision ImageNet ResNet-18 file (sha256 {info.sha256[:12]}…, "
            f"expected {OFFICIAL_HASH_PREFIX}…){'; it looks untrained' if info.untrained else ''}. "
            "To use it anyway for a demo or a test, set SHELF_ALLOW_UNVERIFIED_WEIGHTS=1; "
            "its predictions will be marked as unverified.")


def build_model(state: dict[str, torch.Tensor] | Callable[[], dict[str, torch.Tensor]], info: WeightsInfo
                ) -> LoadedModel:
    """A LoadedModel for checked weights; the torch model is built when first used."""
    def build() -> torch.nn.Module:
        model = resnet18()
        model.load_state_dict(state() if callable(state) else state, strict=True)
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model
    return LoadedModel(TorchModel(build), weights=info)


def load_model(download: bool | None = None) -> tuple[LoadedModel | None, WeightsStatus]:
    """The weights resolved and ready to run, or None and why. Without PyTorch they run only once converted."""
    state, status = resolve_weights(download)
    if state is None or not status.available:
        return None, status
    if not torch_installed() and not converted(status.info.sha256):
        problem = f"{status.info.path} has not been converted for ONNX Runtime yet. {RUN_THE_CONVERT_JOB}"
        return None, replace(status, problem=problem)
    return build_model(state, status.info), status


def import_weights(data: bytes, name: str, *, by: Identity = LOCAL, engine=None) -> WeightsInfo:
    """Validate an uploaded weights file and keep it (under Shelf's own name) as the imported weights; audited in
    `engine` (default: the configured store)."""
    require(by, "manage_weights")
    state = parse_weights(data, name)
    target = imported_weights_path()
    before = hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else None
    write_atomically(data, target)
    sha = hashlib.sha256(data).hexdigest()
    info = WeightsInfo(path=target, source="imported", sha256=sha, verified=sha.startswith(OFFICIAL_HASH_PREFIX),
                       untrained=looks_untrained(state))
    from shelf.storage import store  # here: the store is not needed to load a model
    store.record_audit(engine, by, "manage_weights", f"import weights {Path(name).name}"[:300], before,
                       {"sha256": sha, "kind": info.kind})
    return info


def download_weights(timeout: float = DOWNLOAD_TIMEOUT_S, *, by: Identity = LOCAL, engine=None) -> Path:
    """Someone downloads the official file (the Home page's button, `weights download`): checked, kept in the torch
    hub cache, and audited in `engine` (default: the configured store)."""
    require(by, "manage_weights")
    target = hub_cache_path()
    before = hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else None
    sha = _fetch_official_weights(timeout)
    from shelf.storage import store  # here: the store is not needed to load a model
    store.record_audit(engine, by, "manage_weights", f"download weights {OFFICIAL_FILENAME}", before,
                       {"sha256": sha, "kind": "verified ImageNet weights"})
    return target


def _fetch_official_weights(timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
    """Download the official file into the torch hub cache, checking torchvision's published hash prefix; returns
    its sha256. Also what loading the model does when no file is found (not audited: nobody asked)."""
    with urllib.request.urlopen(WEIGHTS_URL, timeout=timeout) as response:
        data = response.read(MAX_WEIGHTS_BYTES + 1)
    sha = hashlib.sha256(data).hexdigest()
    if not sha.startswith(OFFICIAL_HASH_PREFIX):
        raise WeightsError(f"downloaded file has sha256 {sha[:12]}…, expected {OFFICIAL_HASH_PREFIX}…; not kept")
    write_atomically(data, hub_cache_path())
    return sha
