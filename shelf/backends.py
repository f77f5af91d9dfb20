"""Inference backends for the same ResNet-18 weights.

  eager  torch eager fp32 — the reference.
  onnx   ONNX Runtime fp32 — faithful (probabilities within 1e-6 of eager here) and faster on CPU. Default.
  int8   ONNX Runtime int8, static post-training quantisation (QDQ, per-channel weights) calibrated on shelf
         crops — the opt-in *fast mode*. Not faithful by construction: the Model page's fidelity check and the
         benchmark measure how far it moves from fp32.

Converted models are cached on disk under the data dir, keyed by the weights' sha256 (and, for int8, by the
calibration set's hash), so a restart does not convert again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from shelf import config

BACKENDS = {"eager": "torch eager fp32", "onnx": "onnxruntime fp32", "int8": "onnxruntime int8 (fast mode)"}  # runs
CHOICE_NAMES = {"onnx": "Faithful (ONNX Runtime)", "eager": "Faithful (PyTorch, reference)",  # record BACKENDS; the
                "int8": "Fast mode (int8)"}  # app says CHOICE_NAMES: one name per thing for people
FAITHFUL = {"eager", "onnx"}
DEFAULT_BACKEND = "onnx"
log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A backend that cannot be built here; the message says why."""


class EagerBackend:
    kind = "eager"
    name = BACKENDS["eager"]

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def run(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,3,224,224) normalised → ((N,512) pooled features, (N,1000) logits)."""
        from shelf.classify import pooled_features
        with torch.inference_mode():
            features = pooled_features(self.model, batch)
            return features, self.model.fc(features)


class _FeaturesAndLogits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        from shelf.classify import pooled_features
        features = pooled_features(self.model, x)
        return features, self.model.fc(features)


class OnnxBackend:
    def __init__(self, kind: str, path: Path):
        import onnxruntime as ort
        self.kind, self.name, self.path = kind, BACKENDS[kind], path
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same cores torch uses: no oversubscription
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self.session.run(None, {"input": batch.numpy()})
        return torch.from_numpy(features), torch.from_numpy(logits)


def models_dir(weights_sha256: str) -> Path:
    return config.data_dir() / "models" / weights_sha256[:16]


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
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_FeaturesAndLogits(model).eval(), torch.zeros(1, 3, 224, 224), str(partial),
                          input_names=["input"], output_names=["features", "logits"],
                          dynamic_axes={"input": {0: "n"}, "features": {0: "n"}, "logits": {0: "n"}},
                          opset_version=17, dynamo=False)
    os.replace(partial, target)
    return target


def calibration_key(batches: Sequence[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(batch.numpy().tobytes())
    return digest.hexdigest()[:12]


def quantize_int8(fp32: Path, calibration: Sequence[torch.Tensor], target: Path) -> Path:
    """Static int8 post-training quantisation of every convolution, calibrated on `calibration` (preprocessed
    batches of shelf crops). The classifier (one Gemm, a tiny share of the compute) stays fp32: quantising it moved
    top-1 on ~1.5 % of held-out crops in the benchmark, keeping it moved none."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": b[i:i + 1].numpy()} for b in calibration for i in range(len(b))])

        def get_next(self):
            return next(self.batches, None)

    target.parent.mkdir(parents=True, exist_ok=True)
    prepared = target.with_suffix(f".pre-{os.getpid()}.onnx")
    partial = target.with_suffix(f".partial-{os.getpid()}")
    try:
        quant_pre_process(str(fp32), str(prepared))
        classifier = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Gemm"]
        quantize_static(str(prepared), str(partial), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=classifier)
        os.replace(partial, target)
    finally:
        prepared.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return target


def build_backend(kind: str, model: torch.nn.Module, weights_sha256: str,
                  calibration: Sequence[torch.Tensor] | None = None):
    """The backend `kind` for these weights, converting (once, cached on disk) where needed."""
    if kind == "eager":
        return EagerBackend(model)
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
    fp32 = folder / "resnet18-fp32.onnx"
    if not fp32.exists():
        export_onnx(model, fp32)
    if kind == "onnx":
        return OnnxBackend("onnx", fp32)
    if not calibration:
        raise BackendError("fast mode needs calibration crops (recognize some shelf photos first)")
    int8 = folder / f"resnet18-int8-{calibration_key(calibration)}.onnx"
    if not int8.exists():
        quantize_int8(fp32, calibration, int8)
    return OnnxBackend("int8", int8)


def agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(max abs probability difference, top-1 agreement) between two (N,1000) probability arrays."""
    if not len(reference):
        return 0.0, 1.0
    return float(np.abs(reference - other).max()), float((reference.argmax(1) == other.argmax(1)).mean())


BACKEND_SETTING = "backend"
CALIBRATION_REGIONS = 64


def chosen_backend(engine=None) -> str:
    """SHELF_BACKEND if the operator set it, else the choice saved on the Model page, else the faithful default."""
    from shelf import store
    operator = os.environ.get("SHELF_BACKEND")
    if operator in BACKENDS:
        return operator
    if operator:
        log.warning("SHELF_BACKEND=%s is not one of %s; ignored", operator, ", ".join(BACKENDS))
    saved = store.get_setting(engine, BACKEND_SETTING) if engine is not None else None
    return saved if saved in BACKENDS else DEFAULT_BACKEND


def switch_backend(engine, kind: str, *, by) -> None:
    """Make `kind` the backend for everyone using this store (checked and audited)."""
    from shelf import store
    from shelf.access import require
    require(by, "switch_backend")
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r}; one of {', '.join(BACKENDS)}")
    store.change_setting(engine, BACKEND_SETTING, kind, by=by, action="switch_backend")


def calibration_from_store(engine, crop_mode: str = "center", limit: int = CALIBRATION_REGIONS
                           ) -> list[torch.Tensor]:
    """Preprocessed crops of stored regions (spread over the store, each photo decoded once) for int8 calibration."""
    import sqlalchemy as sa

    from shelf import store
    from shelf.classify import preprocessing
    from shelf.images import ImageError, decode_image
    query = (sa.select(store.regions.c.x1, store.regions.c.y1, store.regions.c.x2, store.regions.c.y2,
                       store.photos.c.file, store.photos.c.width)
             .select_from(store.regions.join(store.photos)).where(store.regions.c.kind == store.PRODUCT)
             .order_by(store.regions.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if len(rows) > limit:
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, limit).astype(int)]
    transform, tensors, photos = preprocessing(crop_mode), [], {}
    for r in rows:
        if r.file not in photos:
            try:
                photos[r.file] = decode_image((config.data_dir() / r.file).read_bytes(), r.file).image
            except (OSError, ImageError):
                photos[r.file] = None
        if photos[r.file] is not None:
            tensors.append(transform(photos[r.file].crop((r.x1, r.y1, r.x2, r.y2))))
    return [torch.stack(tensors[i:i + 16]) for i in range(0, len(tensors), 16)]


def with_backend(loaded, kind: str, engine=None):
    """`loaded` running on backend `kind`. A faithful backend that cannot be built here falls back to eager (with
    a log line); fast mode that cannot be built raises BackendError, since silently losing it would mislead."""
    import dataclasses
    calibration = calibration_from_store(engine) if kind == "int8" and engine is not None else None
    if kind == "int8" and (not calibration or sum(len(b) for b in calibration) < 16):
        raise BackendError("fast mode is calibrated on stored shelf crops: recognize photos with at least 16 "
                           "regions first")
    try:
        backend = build_backend(kind, loaded.model, loaded.weights.sha256, calibration)
    except Exception as exc:
        if kind == "int8":
            raise BackendError(f"fast mode could not be built: {exc}") from exc
        log.warning("backend %s unavailable (%s); using torch eager fp32", kind, exc)
        backend = EagerBackend(loaded.model)
    return dataclasses.replace(loaded, backend=backend)


def check_fidelity(loaded, engine, limit: int = CALIBRATION_REGIONS) -> dict | None:
    """The running backend against eager fp32 on stored photos' crops: max |Δp| and top-1 agreement."""
    batches = calibration_from_store(engine, limit=limit)
    if not batches:
        return None
    reference, current = EagerBackend(loaded.model), loaded.backend or EagerBackend(loaded.model)
    expected = np.concatenate([reference.run(b)[1].softmax(1).numpy() for b in batches])
    actual = np.concatenate([current.run(b)[1].softmax(1).numpy() for b in batches])
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
