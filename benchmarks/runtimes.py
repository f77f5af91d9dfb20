"""Runtimes for the same ResNet-18 (issue 28 item 2): ONNX Runtime with and without its NCHWc layout transforms and
on 1 or 2 threads, OpenVINO on the same fp32 and QDQ int8 ONNX files, and torch eager — network alone, images/s at
the batch sizes Shelf runs (1: a single crop; 16: `classify.BATCH_SIZE`; 40: a 5x8 grid photo in one batch), each
with its fidelity against torch eager fp32 on real product crops (../shared/data: the 96 GroceryStoreDataset product
photos and crops of 6 real shelf photos; fast mode is calibrated on crops of the 6 others, as the product calibrates
on stored crops). Balanced mode (torch bf16) is measured beside the alternative it was chosen over, and fast mode's
int8 beside the same quantisation with one thing changed (INT8_VARIANTS; `--only per-tensor` and so on runs one).

`pip install openvino` (not a Shelf requirement), then `python -m benchmarks.runtimes [--no-amx]`. `--no-amx` runs it
all again in a child refused AMX by the kernel (benchmarks/no_amx.py): torch's and OpenVINO's oneDNN and ONNX
Runtime's MLAS all fall back to AVX-512 / VNNI / AVX512-BF16 kernels, and fast mode runs the unshifted int8 model,
the `ORT int8 (VNNI kernels)` row. An emulation of an AVX-512 CPU without AMX on this Xeon (same caches, same
clock), not a Zen 4 or an older Xeon.

Needs `pip install openvino` (not a Shelf dependency: measured here, not shipped).
"""
from __future__ import annotations

import argparse
import csv
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.roofline import this_cpu

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BATCHES = (1, 16, 40)
CALIBRATION_SHELVES = 6  # the first six shelf photos calibrate fast mode; the other six and the products measure it
CROPS_PER_SHELF = 16


# --- inputs --------------------------------------------------------------------------------------------------

def shelf_crops(names: list[str], boxes: dict[str, list], per_photo: int) -> list[np.ndarray]:
    from PIL import Image

    from shelf.recognition.inputs import model_input
    out = []
    for name in names:
        with Image.open(DATA / "real-shelves" / name) as photo:
            photo = photo.convert("RGB")
            chosen = boxes[name][:: max(1, len(boxes[name]) // per_photo)][:per_photo]
            out += [model_input(photo.crop(box)) for box in chosen]
    return out


def real_inputs() -> tuple[np.ndarray, np.ndarray]:
    """(calibration inputs, measured inputs) as (N, 224, 224, 3) uint8, from the real photos."""
    from PIL import Image

    from shelf.recognition.inputs import model_input
    boxes: dict[str, list] = {}
    with open(DATA / "real-shelves" / "boxes_sku110k.csv", newline="") as table:
        for row in csv.reader(table):
            boxes.setdefault(row[0], []).append(tuple(int(v) for v in row[1:5]))
    shelves = sorted(boxes)
    calibration = shelf_crops(shelves[:CALIBRATION_SHELVES], boxes, 64 // CALIBRATION_SHELVES + 1)[:64]
    measured = shelf_crops(shelves[CALIBRATION_SHELVES:], boxes, CROPS_PER_SHELF)
    for path in sorted((DATA / "real-products").glob("*/*")):
        with Image.open(path) as image:
            measured.append(model_input(image.convert("RGB")))
    return np.stack(calibration), np.stack(measured)


# --- runners: normalised batch → logits (or, with a `prepare` attribute, what that makes of the uint8 inputs) ------

def ort_runner(path: Path, threads: int, level: str, spinning: bool = True):
    """`spinning` False: ONNX Runtime's pool threads sleep between operators instead of busy-waiting (its default),
    which may matter on a machine shared with other processes."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(["logits"], {"input": batch})[0]


def shipped_int8_runner(int8: Path):
    """Fast mode exactly as Shelf runs it here: its own copy of the int8 model (backends.int8_for_this_cpu: without
    AMX quantised bytes in and a space-to-depth stem, with AMX the weights off zero point 0), its session's options
    and input preparation."""
    from shelf.recognition import backends
    backend = backends.OnnxBackend("int8", backends.int8_for_this_cpu(int8))
    runner = lambda batch: backend.run(batch)[1]  # noqa: E731
    runner.prepare = backend.prepare
    return runner


def openvino_runner(path: Path, threads: int, precision: str):
    """OpenVINO on the ONNX file; `precision` "f32" keeps fp32 maths (on AMX CPUs its default is bf16)."""
    import openvino as ov
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    logits = compiled.outputs[1]
    runner = lambda batch: request.infer({0: batch})[logits].copy()  # noqa: E731
    runner.kernels = openvino_kernels(compiled)
    return runner


def openvino_kernels(compiled) -> str:
    """The oneDNN kernels OpenVINO picked for the convolutions (says whether AMX, VNNI or plain AVX-512 runs)."""
    kinds = set()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            kinds.add(info["primitiveType"].astype(str))
    return ", ".join(sorted(kinds))


def eager_runner(model, threads: int):
    import torch
    torch.set_num_threads(threads)

    def run(batch):
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()
    return run


def balanced_runner(model, threads: int):
    """Balanced mode as shipped (backends.Bf16Backend: bf16 autocast, channels_last)."""
    import torch

    from shelf.recognition.backends import Bf16Backend
    torch.set_num_threads(threads)
    backend = Bf16Backend(model)
    return lambda batch: backend.run(batch)[1]


def bf16_copy_runner(model, threads: int):
    """The alternative balanced mode measured against: a `.to(torch.bfloat16)` channels_last copy of the whole model
    (batch norms and residual sums in bf16 too), input cast, logits back to fp32."""
    import copy

    import torch
    torch.set_num_threads(threads)
    bf16 = copy.deepcopy(model).to(memory_format=torch.channels_last).to(torch.bfloat16)

    def run(batch):
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            return bf16(x).float().numpy()
    return run


# --- measuring ---------------------------------------------------------------------------------------------------

def images_per_s(runs: list, inputs: np.ndarray, batch: int, repeats: int = 5) -> list[float]:
    """Each runner's best of `repeats` at this batch size, the runners taking turns within each repeat: the
    machine is shared, and a burst from a neighbour then slows one repeat of every row rather than all of one."""
    chosen, prepared = inputs[np.arange(batch) % len(inputs)], {}
    for prepare in map(prepare_of, runs):  # outside the timing, once per kind of input
        if id(prepare) not in prepared:
            prepared[id(prepare)] = prepare(chosen)
    xs = [prepared[id(prepare_of(run))] for run in runs]
    best = [float("inf")] * len(runs)
    for run, x in zip(runs, xs):
        run(x)
    for _ in range(repeats):
        for i, (run, x) in enumerate(zip(runs, xs)):
            start = time.perf_counter()
            run(x)
            best[i] = min(best[i], time.perf_counter() - start)
    return [batch / seconds for seconds in best]


def prepare_of(run):
    from shelf.recognition.inputs import normalise
    return getattr(run, "prepare", normalise)


def fidelity(run, inputs: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    from shelf.recognition.backends import agreement, softmax
    probabilities = np.concatenate([softmax(run(prepare_of(run)(inputs[i:i + 16])))
                                    for i in range(0, len(inputs), 16)])
    return agreement(reference, probabilities)


def runners(model, fp32: Path, int8: Path, int8_amx: Path, threads: int) -> list[tuple[str, object]]:
    rows = [("torch eager fp32 (reference)", lambda: eager_runner(model, threads)),
            ("torch bf16 autocast, CL (balanced)", lambda: balanced_runner(model, threads)),
            ("torch bf16 .to() copy, CL", lambda: bf16_copy_runner(model, threads))]
    for level in ("ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        for t in sorted({1, threads}):
            rows.append((f"ORT fp32 {level.removeprefix('ORT_ENABLE_').lower()}"
                         f"{' (NCHWc)' if level == 'ORT_ENABLE_ALL' else ''}, {t} thr",
                         lambda level=level, t=t: ort_runner(fp32, t, level)))
    rows += [("ORT int8 (VNNI kernels, zp 0)", lambda: ort_runner(int8, threads, "ORT_ENABLE_ALL")),
             ("ORT int8 (AMX copy, zp -1)", lambda: ort_runner(int8_amx, threads, "ORT_ENABLE_ALL")),
             ("ORT int8 (VNNI kernels, zp 0), no spinning", lambda: ort_runner(int8, threads, "ORT_ENABLE_ALL", False)),
             ("ORT int8 (AMX copy, zp -1), no spinning",
              lambda: ort_runner(int8_amx, threads, "ORT_ENABLE_ALL", False)),
             ("ORT int8 as shipped (this CPU's copy, no spinning)",
              lambda: shipped_int8_runner(int8)),
             ("OpenVINO fp32 (f32 hint)", lambda: openvino_runner(fp32, threads, "f32")),
             ("OpenVINO fp32 file, default hint", lambda: openvino_runner(fp32, threads, "")),
             ("OpenVINO int8 (same QDQ file)", lambda: openvino_runner(int8, threads, "")),
             ("OpenVINO int8, f32 hint", lambda: openvino_runner(int8, threads, "f32"))]  # fp32 classifier stays fp32
    for variant in INT8_VARIANTS:
        rows += [(f"ORT int8 {variant}",
                  lambda v=variant: ort_runner(int8_variant(int8, v), threads, "ORT_ENABLE_ALL")),
                 (f"ORT int8 {variant}, AMX copy",
                  lambda v=variant: ort_runner(amx_copy(int8_variant(int8, v)), threads, "ORT_ENABLE_ALL")),
                 (f"OpenVINO int8 {variant}", lambda v=variant: openvino_runner(int8_variant(int8, v), threads, ""))]
    return rows


INT8_VARIANTS = {  # fast mode's quantize_static call (backends.quantize_int8) with one thing changed
    "per-tensor weights": {"per_channel": False},
    "u8 weights (u8u8)": {"weight_type": "QUInt8"},
    "s8 activations (s8s8)": {"activation_type": "QInt8"},
    "stem conv fp32": {"stem_fp32": True},
    "percentile calibration": {"calibrate_method": "Percentile"},
}


@functools.cache
def int8_variant(int8: Path, variant: str) -> Path:
    """Fast mode's int8 model quantised with the one change INT8_VARIANTS names, from the same fp32 file and the
    same calibration crops (frozen beside it), built once per run."""
    from onnxruntime.quantization import CalibrationMethod, QuantType

    from shelf.recognition import backends
    from shelf.recognition import model as shelf_model
    changes = {name: getattr(CalibrationMethod if name == "calibrate_method" else QuantType, value)
               if isinstance(value, str) else value for name, value in INT8_VARIANTS[variant].items()}
    calibration = np.load(int8.with_name(backends.CALIBRATION_FILE))["inputs"]
    target = int8.with_name("int8-" + re.sub(r"\W+", "-", variant) + ".onnx")
    start = time.perf_counter()
    backends.quantize_int8(int8.with_name(shelf_model.FP32_FILE), calibration, target, **changes)
    print(f"  ({variant}: quantised in {time.perf_counter() - start:.0f} s)", flush=True)
    return target


class Skipped(Exception):
    """A row that would measure nothing new."""


@functools.cache
def amx_copy(int8: Path) -> Path:
    """The int8 model with its symmetric int8 weights shifted to zero point -1, as fast mode's AMX copy is."""
    import onnx

    from shelf.recognition import backends
    copy = onnx.load(str(int8))
    if not backends.shift_weight_zero_points(copy):
        raise Skipped("no symmetric int8 weights to shift: the same model as the row above")
    target = int8.with_suffix(".amx.onnx")
    onnx.save(copy, str(target))
    return target


def build_models(folder: Path, calibration: np.ndarray):
    """The torch model and the fp32, int8 and AMX-copy ONNX files exactly as Shelf makes them."""
    os.environ["SHELF_DATA_DIR"] = str(folder)
    from benchmarks.common import finetuned_weights
    from shelf.recognition import backends
    from shelf.recognition import model as shelf_model
    state, info = shelf_model.read_weights_file(finetuned_weights(), "benchmark")
    loaded = shelf_model.build_model(state, info)
    backends.build_backend("int8", loaded.model, info.sha256, calibration)
    models = backends.models_dir(info.sha256)
    int8 = models / backends.INT8_FILE
    return loaded.model, models / shelf_model.FP32_FILE, int8, amx_copy(int8)  # as quantised, normalised input
    # (fast mode's own copy takes quantised bytes: benchmarks/inference.py measures it); derived on any CPU


def measure(threads: int, only: list[str] | None = None) -> list[dict]:
    calibration, measured = real_inputs()
    with tempfile.TemporaryDirectory() as folder:
        model, fp32, int8, amx = build_models(Path(folder), calibration)
        reference_run = eager_runner(model, threads)
        from shelf.recognition.backends import softmax
        from shelf.recognition.inputs import normalise
        reference = np.concatenate([softmax(reference_run(normalise(measured[i:i + 16])))
                                    for i in range(0, len(measured), 16)])
        built = []
        for name, make in runners(model, fp32, int8, amx, threads):
            if only and not any(text in name for text in only):
                continue
            try:
                run = make()
            except (ImportError, RuntimeError, Skipped) as exc:  # OpenVINO refuses some variants (RuntimeError)
                print(f"  {name:<46} skipped: {str(exc).strip().splitlines()[-1]}", flush=True)
                continue
            built.append((name, run, *fidelity(run, measured, reference)))
        speeds = {batch: images_per_s([run for _, run, *_ in built], measured, batch) for batch in BATCHES}
    rows = []
    for i, (name, run, diff, top1) in enumerate(built):
        kernels = getattr(run, "kernels", "")
        rows.append({"runtime": name, "max_prob_diff": diff, "top1": top1, "kernels": kernels,
                     "images_per_s": {batch: speeds[batch][i] for batch in BATCHES}})
        print(f"  {name:<46} " + "  ".join(f"b{b}: {s[i]:6.1f}/s" for b, s in speeds.items())
              + f"   max|Δp| {diff:.1e}  top-1 {top1:.1%}" + (f"   conv kernels: {kernels}" if kernels else ""),
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runtimes", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="measure only the rows whose name contains TEXT (repeat for more; default: all)")
    parser.add_argument("--no-amx", action="store_true",
                        help="then again in a child refused AMX by the kernel (an emulated CPU without AMX)")
    args = parser.parse_args(argv)
    if not (DATA / "real-shelves").is_dir():
        print(f"error: the real photos are not at {DATA} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    cpu = this_cpu()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {cpu.model}, {cpu.cores} logical cores, {args.threads} threads; "
          f"{cpu.features}; load {load}", flush=True)
    measure(args.threads, args.only)
    print(f"load afterwards {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    if args.no_amx:
        print("\nemulated CPU without AMX (benchmarks/no_amx.py: the kernel refuses AMX to the child):", flush=True)
        subprocess.run([sys.executable, "-m", "benchmarks.no_amx", sys.executable, "-m", "benchmarks.runtimes",
                        "--threads", str(args.threads), *(f"--only={text}" for text in args.only or ())], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
