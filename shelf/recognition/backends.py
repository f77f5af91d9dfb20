"""Inference backends for the same ResNet-18 weights.

  eager  torch eager fp32 — the reference.
  onnx   ONNX Runtime fp32 — faithful (probabilities within 1e-6 of eager here) and faster on CPU. Default.
  int8   ONNX Runtime int8, static post-training quantisation (QDQ, per-channel weights) calibrated on shelf
         crops — the opt-in *fast mode*. Not faithful by construction: the Model page's fidelity check and the
         benchmark measure how far it moves from fp32.
  bf16   torch eager under bfloat16 autocast, channels_last — the opt-in *balanced mode*, offered only where the
         CPU has bf16 matrix tiles (AMX-BF16): with AVX512-BF16 alone it measured slower than ONNX Runtime fp32
         (README, "Inference backends"), and a mode slower and less faithful than the default is no choice.

Converted models are cached on disk under the data dir, keyed by the weights' sha256 only, so a restart (a new CLI
process, a new server) does not convert again. Fast mode's calibration set is frozen when it is first taken: its
crops are kept beside the int8 model (`calibration-int8.npz`, with `calibration-int8.json` saying where they came
from), and the int8 model is built once from them. It is re-taken only when someone asks (`python -m shelf weights
recalibrate`, or the Model page), never because the store grew. Fast mode runs a copy of the int8 model derived from
it (`int8_for_this_cpu`) that computes the very same numbers for less: without AMX it takes the quantised bytes its
first QuantizeLinear would make, with the 7×7 stem as a space-to-depth convolution; on AMX CPUs its weights are off
zero point 0.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shelf import config
from shelf.recognition.int8_rewrites import input_preparation, quantised_input_copy, shift_weight_zero_points

if TYPE_CHECKING:  # the ONNX Runtime backends run without torch; it is imported to build or convert a model
    import torch

BACKENDS = {"eager": "torch eager fp32", "onnx": "onnxruntime fp32", "bf16": "torch bfloat16 (balanced)",
            "int8": "onnxruntime int8 (fast mode)"}  # runs record BACKENDS; the app says CHOICE_NAMES: one name per
CHOICE_NAMES = {"onnx": "Faithful (ONNX Runtime)", "eager": "Faithful (PyTorch, reference)",  # thing for people
                "bf16": "Balanced (bfloat16)", "int8": "Fast mode (int8)"}
FAITHFUL = {"eager", "onnx"}
DEFAULT_BACKEND = "onnx"
log = logging.getLogger(__name__)


def pooled_features(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """ResNet's forward up to the 512-d pooled features (torchvision's `_forward_impl` minus `fc`)."""
    import torch
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(batch))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (as torch computes it: shifted by the row's maximum)."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


class BackendError(RuntimeError):
    """A backend that cannot be built here; the message says why."""


class EagerBackend:
    kind = "eager"
    name = BACKENDS["eager"]

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @staticmethod
    def prepare(inputs: np.ndarray) -> np.ndarray:
        """(N,224,224,3) uint8 model inputs → what `run` takes."""
        from shelf.recognition.inputs import normalise
        return normalise(inputs)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,3,224,224) normalised → ((N,512) pooled features, (N,1000) logits), both float32."""
        import torch

        with torch.inference_mode():
            features = self.features(torch.from_numpy(batch)).float()
            return features.numpy(), self.model.fc(features).numpy()

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.model, batch)


class Bf16Backend(EagerBackend):
    """Balanced mode: the convolutions in bfloat16 (torch autocast on a channels_last copy of the model), the
    classifier in fp32 on the pooled features. Measured on the benchmark's fine-tuned ResNet-18 and real crops
    (README, "Inference backends"): probabilities within 2.2e-3 of fp32 where a `.to(torch.bfloat16)` copy of the
    model moved them by 4.9e-2 (its batch norms and residual sums round to bf16 too) and was not faster; the
    classifier under autocast too moved them by 2.4e-2; without channels_last it ran at 0.4–0.6× the speed
    (oneDNN reorders every activation otherwise)."""
    kind = "bf16"
    name = BACKENDS["bf16"]

    def __init__(self, model: torch.nn.Module):
        import copy

        import torch
        super().__init__(copy.deepcopy(model).to(memory_format=torch.channels_last))  # the fp32 model stays as it is

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        import torch
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return pooled_features(self.model, batch.contiguous(memory_format=torch.channels_last))


class OnnxBackend:
    def __init__(self, kind: str, path: Path):
        from shelf.recognition.model import onnx_session
        self.kind, self.name, self.path = kind, BACKENDS[kind], path
        self.session = onnx_session(str(path))
        self.prepare = input_preparation(self.session.get_modelmeta().custom_metadata_map, path)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, logits = self.session.run(None, {"input": batch})
        return features, logits


def models_dir(weights_sha256: str) -> Path:
    from shelf.recognition.model import models_dir
    return models_dir(weights_sha256)


PARTIAL_FILE = re.compile(r"\.(?:partial|pre)-(\d+)(?:\.onnx)?$")  # what export_onnx and quantize_int8 write first


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the half-written models of conversions whose process is gone (killed mid-export, say), so they do
    not sit in the data dir forever; a conversion still running in another process keeps its file."""
    removed = []
    for path in folder.glob("*/*") if folder.is_dir() else ():
        found = PARTIAL_FILE.search(path.name)
        if found and not _process_alive(int(found[1])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid at all: leave the file alone
    return True


def export_onnx(model: torch.nn.Module, target: Path) -> Path:
    """ResNet-18 → ONNX with two outputs (features, logits) and a dynamic batch; written atomically."""
    import warnings

    import torch


    class FeaturesAndLogits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            features = pooled_features(self.model, x)
            return features, self.model.fc(features)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FeaturesAndLogits(model).eval(), torch.zeros(1, 3, 224, 224), str(partial),
                          input_names=["input"], output_names=["features", "logits"],
                          dynamic_axes={"input": {0: "n"}, "features": {0: "n"}, "logits": {0: "n"}},
                          opset_version=17, dynamo=False)
    os.replace(partial, target)
    return target


INT8_FILE = "resnet18-int8.onnx"
INT8_RUN_FILE = "resnet18-int8-u8.onnx"  # what fast mode runs without AMX, derived from INT8_FILE: int8_for_this_cpu
INT8_AMX_FILE = "resnet18-int8-amx.onnx"  # what it runs on AMX CPUs, derived likewise
CALIBRATION_FILE = "calibration-int8.npz"  # the frozen calibration crops: (N, 224, 224, 3) uint8 model inputs
CALIBRATION_INFO = "calibration-int8.json"  # where they came from, when, and their hash


def calibration_key(inputs: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(inputs).tobytes()).hexdigest()[:12]


def as_model_inputs(calibration) -> np.ndarray:
    """Calibration crops as (N, 224, 224, 3) uint8 model inputs. Normalised float batches (N, 3, 224, 224), as older
    callers pass them, are turned back exactly enough for min/max calibration."""
    if isinstance(calibration, np.ndarray) and calibration.dtype == np.uint8:
        return calibration
    from shelf.recognition.model import IMAGENET_MEAN, IMAGENET_STD
    batch = calibration if isinstance(calibration, np.ndarray) else np.concatenate([np.asarray(b) for b in calibration])
    mean = np.array(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, np.float32)[:, None, None]
    pixels = np.clip(np.round((batch * std + mean) * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def frozen_calibration(weights_sha256: str) -> dict | None:
    """What fast mode was calibrated on for these weights (crops, photos, when, how), or None if it never was."""
    import json
    folder = models_dir(weights_sha256)
    try:
        info = json.loads((folder / CALIBRATION_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if (folder / INT8_FILE).exists() else None


def describe_calibration(info: dict | None) -> str:
    """One line for people: what fast mode's frozen calibration set is."""
    if not info:
        return "not calibrated yet (it is, from stored crops, the first time fast mode runs)"
    photos = f" from {info['photos']} stored photo(s)" if info.get("photos") else ""
    return f"{info['crops']} crops{photos}, taken {info.get('taken_at', '?')}"


def quantize_int8(fp32: Path, calibration: Sequence[torch.Tensor] | np.ndarray, target: Path, *,
                  stem_fp32: bool = False, **changes) -> Path:
    """Static int8 post-training quantisation of every convolution, calibrated on `calibration` (preprocessed
    batches of shelf crops). The classifier (one Gemm, a tiny share of the compute) stays fp32: quantising it moved
    top-1 on ~1.5 % of held-out crops in the benchmark, keeping it moved none. `stem_fp32` (the first convolution
    left fp32 too) and `changes` (quantize_static arguments) make the variants benchmarks/runtimes.py measures."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from shelf.recognition.inputs import normalise
    inputs = as_model_inputs(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": normalise(inputs[i:i + 1])} for i in range(len(inputs))])

        def get_next(self):
            return next(self.batches, None)

    target.parent.mkdir(parents=True, exist_ok=True)
    prepared = target.with_suffix(f".pre-{os.getpid()}.onnx")
    partial = target.with_suffix(f".partial-{os.getpid()}")
    try:
        quant_pre_process(str(fp32), str(prepared))
        nodes = onnx.load(str(prepared)).graph.node
        fp32_nodes = [n.name for n in nodes if n.op_type == "Gemm"]  # the classifier
        fp32_nodes += [next(n.name for n in nodes if n.op_type == "Conv")] if stem_fp32 else []
        settings = dict(quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax)
        quantize_static(str(prepared), str(partial), Reader(), nodes_to_exclude=fp32_nodes, **settings | changes)
        os.replace(partial, target)
    finally:
        prepared.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return target


def has_amx_int8(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this process can use AMX int8 tile instructions: the CPU lists them and the kernel grants this
    process the tiles (amx_granted)."""
    return "amx_int8" in cpu_flags(cpuinfo) and amx_granted()


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where it cannot be read)."""
    try:
        return frozenset(cpuinfo.read_text().split())
    except OSError:
        return frozenset()


def amx_granted() -> bool:
    """Whether the kernel lets this process use AMX tiles: ask for the tile data state (arch_prctl
    ARCH_REQ_XCOMP_PERM), as ONNX Runtime and oneDNN do before their first tile instruction, quietly doing without
    when refused. A CPU can list AMX and still refuse: a sandbox, a container's seccomp profile, or
    `python -m benchmarks.no_amx`, which emulates a CPU without AMX this way."""
    import ctypes
    import platform
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    arch_prctl, request_permission, tile_data = 158, 0x1023, 18
    try:
        return ctypes.CDLL(None, use_errno=True).syscall(arch_prctl, request_permission, tile_data) == 0
    except (OSError, AttributeError):
        return False


def offered_backends(flags: frozenset[str] | None = None) -> list[str]:
    """The backends to offer on a CPU with these flags (this one's by default): balanced mode only where bf16 runs
    on AMX tiles — with AVX512-BF16 alone it measured slower than the faithful default (Bf16Backend)."""
    flags = usable_cpu_flags() if flags is None else flags
    return [kind for kind in BACKENDS if kind != "bf16" or "amx_bf16" in flags]


@functools.cache
def usable_cpu_flags() -> frozenset[str]:
    """This CPU's flags without AMX's where the kernel refuses this process the tiles (read once per process)."""
    return cpu_flags() if amx_granted() else frozenset(f for f in cpu_flags() if not f.startswith("amx"))


def int8_for_this_cpu(int8: Path) -> Path:
    """The int8 model to run here, a copy of it computing the very same numbers, derived once and kept beside it, and
    again whenever the model is re-calibrated (a model calibrated before gets its copy on its next start, without
    quantising again). Without AMX: the copy takes its input already quantised and runs its stem as space-to-depth
    (quantised_input_copy). On AMX CPUs: its weights are off zero point 0 (shift_weight_zero_points), input and stem
    as quantised — the rewrite measured no faster there (input plus network 0.93–1.04× the time, a photo 0.9–1.2×:
    README), and nothing may get slower where it runs fast already."""
    amx = has_amx_int8()
    derived = int8.with_name(INT8_AMX_FILE if amx else INT8_RUN_FILE)
    if derived.exists() and derived.stat().st_mtime_ns >= int8.stat().st_mtime_ns:
        return derived
    import onnx
    model = onnx.load(str(int8))
    if amx:
        shift_weight_zero_points(model)
    elif not quantised_input_copy(model):
        return int8  # not a model quantize_int8 made (none of Shelf's): run it as it is
    partial = derived.with_suffix(f".partial-{os.getpid()}")
    try:
        onnx.save(model, str(partial))
        os.replace(partial, derived)
    finally:
        partial.unlink(missing_ok=True)
    return derived


def build_backend(kind: str, model, weights_sha256: str, calibration=None, *, recalibrate: bool = False,
                  described: dict | None = None):
    """The backend `kind` for these weights, converting (once, cached on disk) where needed. `model` is the torch
    model or a callable returning it (only eager and a conversion need it). For int8, `calibration` (crops: uint8
    model inputs or normalised batches, or a callable returning them) is used only when no int8 model is cached for
    these weights, or with `recalibrate`; it is then frozen beside the model, `described` (where the crops came
    from) with it."""
    from shelf.recognition.model import FP32_FILE, RUN_THE_CONVERT_JOB, torch_installed
    torch_model = model if callable(model) and not hasattr(model, "parameters") else lambda: model  # a builder
    if kind in ("eager", "bf16"):
        if not torch_installed():
            what = "the PyTorch reference backend" if kind == "eager" else "balanced mode (bfloat16)"
            raise BackendError(f"{what} needs PyTorch. {RUN_THE_CONVERT_JOB}")
        return (EagerBackend if kind == "eager" else Bf16Backend)(torch_model())
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r}; use one of {', '.join(BACKENDS)}")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise BackendError("onnxruntime is not installed") from None
    removed = remove_stale_partials(models_dir(weights_sha256).parent)
    if removed:
        log.info("removed %d half-written model file(s) left by interrupted conversions", len(removed))
    folder = models_dir(weights_sha256)
    int8 = folder / INT8_FILE
    if kind == "int8" and int8.exists() and not recalibrate:
        return OnnxBackend("int8", int8_for_this_cpu(int8))  # calibrated once; the store growing does not change it
    fp32 = folder / FP32_FILE
    if not fp32.exists():
        if not torch_installed():
            raise BackendError(f"no converted model for weights {weights_sha256[:16]}…. {RUN_THE_CONVERT_JOB}")
        export_onnx(torch_model(), fp32)
    if kind == "onnx":
        return OnnxBackend("onnx", fp32)
    crops = calibration() if callable(calibration) else calibration
    if crops is None or not len(crops):
        raise BackendError("fast mode needs calibration crops (recognize some shelf photos first)")
    freeze_calibration(folder, as_model_inputs(crops), described or {})
    quantize_int8(fp32, crops, int8)
    return OnnxBackend("int8", int8_for_this_cpu(int8))


def freeze_calibration(folder: Path, inputs: np.ndarray, described: dict) -> None:
    """Keep the calibration crops and what they are beside the int8 model (written before it: a model on disk
    always has its calibration set)."""
    import io
    import json
    import time

    from shelf.files import write_atomically
    buffer = io.BytesIO()
    np.savez_compressed(buffer, inputs=inputs)
    write_atomically(buffer.getvalue(), folder / CALIBRATION_FILE)
    info = {"crops": int(len(inputs)), "sha256": calibration_key(inputs),
            "taken_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **described}
    write_atomically(json.dumps(info).encode(), folder / CALIBRATION_INFO)


def agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(max abs probability difference, top-1 agreement) between two (N,1000) probability arrays."""
    if not len(reference):
        return 0.0, 1.0
    return float(np.abs(reference - other).max()), float((reference.argmax(1) == other.argmax(1)).mean())


BACKEND_SETTING = "backend"
CALIBRATION_REGIONS = 64


def chosen_backend(engine=None, offered: Sequence[str] | None = None) -> str:
    """SHELF_BACKEND if the operator set it, else the choice saved on the Model page, else the faithful default —
    among the backends offered on this CPU (offered_backends): balanced mode saved by a server with AMX is not
    run by one without."""
    from shelf.storage import store
    offered = offered_backends() if offered is None else offered
    operator = os.environ.get("SHELF_BACKEND")
    if operator in offered:
        return operator
    if operator in BACKENDS:
        log.warning("SHELF_BACKEND=%s is not offered on this CPU (balanced mode needs AMX-BF16); ignored", operator)
    elif operator:
        log.warning("SHELF_BACKEND=%s is not one of %s; ignored", operator, ", ".join(BACKENDS))
    saved = store.get_setting(engine, BACKEND_SETTING) if engine is not None else None
    return saved if saved in offered else DEFAULT_BACKEND


def switch_backend(engine, kind: str, *, by) -> None:
    """Make `kind` the backend for everyone using this store (checked and audited)."""
    from shelf.access import require
    from shelf.storage import store
    require(by, "switch_backend")
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r}; one of {', '.join(BACKENDS)}")
    if kind not in offered_backends():
        raise BackendError(f"{CHOICE_NAMES[kind]} is not offered on this CPU (it needs AMX-BF16)")
    store.change_setting(engine, BACKEND_SETTING, kind, by=by, action="switch_backend")


def stored_crops(engine, crop_mode: str = "center", limit: int = CALIBRATION_REGIONS) -> tuple[np.ndarray, int]:
    """(uint8 model inputs of up to `limit` stored regions spread over the store, number of photos they are from);
    each photo is decoded once."""
    import sqlalchemy as sa

    from shelf.ingest.images import ImageError, decode_image
    from shelf.recognition.inputs import model_input
    from shelf.storage import store
    query = (sa.select(store.regions.c.x1, store.regions.c.y1, store.regions.c.x2, store.regions.c.y2,
                       store.photos.c.file, store.photos.c.width)
             .select_from(store.regions.join(store.photos)).where(store.regions.c.kind == store.PRODUCT)
             .order_by(store.regions.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if len(rows) > limit:
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, limit).astype(int)]
    by_photo: dict[str, list[int]] = {}
    for number, r in enumerate(rows):
        by_photo.setdefault(r.file, []).append(number)
    inputs, used = {}, 0
    for file, numbers in by_photo.items():  # one photo in memory at a time
        try:
            photo = decode_image((config.data_dir() / file).read_bytes(), file).image
        except (OSError, ImageError):
            continue
        used += 1
        for number in numbers:
            r = rows[number]
            inputs[number] = model_input(photo.crop((r.x1, r.y1, r.x2, r.y2)), crop_mode)
        photo = None
    ordered = [inputs[number] for number in sorted(inputs)]  # in the regions' order, as before
    return (np.stack(ordered) if ordered else np.zeros((0, 224, 224, 3), np.uint8)), used


MIN_CALIBRATION_CROPS = 16


def with_backend(loaded, kind: str, engine=None, *, recalibrate: bool = False):
    """`loaded` running on backend `kind`. A faithful backend that cannot be built here falls back to eager (with
    a log line); fast mode that cannot be built raises BackendError, since silently losing it would mislead.
    Fast mode is calibrated on stored crops the first time only (or with `recalibrate`): afterwards the frozen
    int8 model is loaded as it is, without reading the store."""
    import dataclasses

    from shelf.recognition.model import torch_installed
    described = {}

    def calibration():
        inputs, photos = stored_crops(engine) if engine is not None else (np.zeros((0,)), 0)
        if len(inputs) < MIN_CALIBRATION_CROPS:
            raise BackendError(f"fast mode is calibrated on stored shelf crops: recognize photos with at least "
                               f"{MIN_CALIBRATION_CROPS} regions first")
        described.update(source="stored regions", photos=photos)
        return inputs

    try:
        backend = build_backend(kind, lambda: loaded.model, loaded.weights.sha256, calibration,
                                recalibrate=recalibrate, described=described)
    except Exception as exc:
        if kind == "int8" or not torch_installed():  # without torch there is no eager model to fall back to
            if isinstance(exc, BackendError):
                raise
            raise BackendError(f"{'fast mode' if kind == 'int8' else kind} could not be built: {exc}") from exc
        log.warning("backend %s unavailable (%s); using torch eager fp32", kind, exc)
        backend = EagerBackend(loaded.model)
    return dataclasses.replace(loaded, backend=backend)


def check_fidelity(loaded, engine, limit: int = CALIBRATION_REGIONS) -> dict | None:
    """The running backend against eager fp32 on stored photos' crops: max |Δp| and top-1 agreement."""
    inputs, _ = stored_crops(engine, limit=limit)
    if not len(inputs):
        return None
    reference, current = EagerBackend(loaded.model), loaded.backend or EagerBackend(loaded.model)
    batches = [inputs[i:i + 16] for i in range(0, len(inputs), 16)]
    expected = np.concatenate([softmax(reference.run(reference.prepare(b))[1]) for b in batches])
    actual = np.concatenate([softmax(current.run(current.prepare(b))[1]) for b in batches])
    diff, top1 = agreement(expected, actual)
    return {"backend": current.name, "kind": current.kind, "crops": len(expected), "max_prob_diff": diff,
            "top1_agreement": top1}


def bench_cache() -> Path:
    """Where `python -m shelf bench` keeps its fine-tuned model and its last figures."""
    return Path(os.environ.get("SHELF_BENCH_CACHE", Path.home() / ".cache" / "shelf-bench"))


def last_benchmark() -> dict | None:
    """The figures `python -m shelf bench` saved last on this machine, if any."""
    import json
    path = bench_cache() / "last-bench.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
