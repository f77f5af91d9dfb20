"""How close the network runs to what this CPU can do (`python -m shelf bench`, issue 28 item 1).

The CPU's matrix features (AMX, VNNI, AVX-512, BF16) are read from /proc/cpuinfo; its peak is *measured* with a large
GEMM on the cores the backends use — fp32 and bf16 with torch.matmul (bf16 on AMX tiles where the CPU has them, as
balanced mode runs), int8 with ONNX Runtime's MatMulInteger, whose general GEMM runs on AMX tiles when the weights' zero
point is not 0 (torch._int_mm, oneDNN's s8s8 gemm, reached a fifth of it here).
Measured peaks are floors, not the spec: ONNX Runtime's fp32 convolutions ran above this fp32 one here. Each backend's
network-only throughput becomes GFLOP/s through the network's MAC count (counted from the model, not copied from a
paper), and its share of the matching peak says whether a gap is the runtime or the physics.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shelf.recognition.backends import amx_granted

MATRIX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16")
GEMM_SIZE = 2048


@dataclass(frozen=True)
class Cpu:
    model: str
    flags: frozenset[str]  # the matrix features this process can use
    cores: int  # logical CPUs this process may run on
    amx_refused: bool = False  # the CPU lists AMX but the kernel refused it to this process (benchmarks/no_amx.py)

    @property
    def features(self) -> str:
        """The matrix features, as one short line ('AMX-INT8 AMX-BF16 AVX512-VNNI …' or 'none')."""
        names = {"amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
                 "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16"}
        listed = " ".join(name for flag, name in names.items() if flag in self.flags) or "none of AMX/VNNI/AVX-512"
        return listed + (" (AMX listed by the CPU but refused to this process)" if self.amx_refused else "")


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, matrix flags) of the first processor in a /proc/cpuinfo text."""
    model, flags = "unknown CPU", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split()) & frozenset(MATRIX_FLAGS)
        elif not line.strip() and flags:  # the end of the first processor's block
            break
    return model, flags


def this_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    try:
        model, flags = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, flags = "unknown CPU (no /proc/cpuinfo)", frozenset()
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else os.cpu_count() or 1
    if "amx_tile" in flags and not amx_granted():
        return Cpu(model, frozenset(f for f in flags if not f.startswith("amx_")), cores, amx_refused=True)
    return Cpu(model, flags, cores)


# --- the network's work -----------------------------------------------------------------------------------------

def count_macs(model, input_shape=(1, 3, 224, 224)) -> int:
    """Multiply-accumulates of one forward pass, counted with hooks: a convolution does
    out_elements × in_channels/groups × kh × kw, a linear layer out_elements × in_features (batch norm, ReLU,
    pooling and the residual adds are a fraction of a percent and left out, as in the usual GMAC figures)."""
    import torch
    total = [0]

    def conv(module, _inputs, output):
        kh, kw = module.kernel_size
        total[0] += output.numel() * module.in_channels // module.groups * kh * kw

    def linear(module, _inputs, output):
        total[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            model(torch.zeros(input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return total[0] // input_shape[0]


def resnet18_macs() -> int:
    from torchvision.models import resnet18
    return count_macs(resnet18().eval())


# --- the CPU's peak ---------------------------------------------------------------------------------------------

def _best_seconds(run, repeats: int) -> float:
    run()  # warm-up: packing, thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def peak_gemm_gflops(threads: int, dtype: str = "float32", n: int = GEMM_SIZE, repeats: int = 5) -> float:
    """A `dtype` GEMM (n×n by n×n) with torch on `threads` threads, best of `repeats`: 2n³ FLOP."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = (torch.randn(n, n).to(getattr(torch, dtype)) for _ in range(2))
        return 2 * n ** 3 / _best_seconds(lambda: torch.matmul(a, b), repeats) / 1e9
    finally:
        torch.set_num_threads(before)


def _onnx_model(node, inputs: list, output, initializers: dict) -> bytes:
    from onnx import helper, numpy_helper
    graph = helper.make_graph([node], node.op_type, inputs, [output],
                              [numpy_helper.from_array(value, name) for name, value in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def int8_gemm_model(n: int, weight_zero_point: int) -> bytes:
    """A one-node ONNX graph: uint8 activations (n×n, zero point 128) × constant int8 weights (n×n)."""
    from onnx import TensorProto, helper
    weights = np.random.default_rng(0).integers(-127, 128, (n, n), dtype=np.int8)
    return _onnx_model(helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"]),
                       [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
                       helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n]),
                       {"B": weights, "a_zero": np.array(128, np.uint8),
                        "b_zero": np.array(weight_zero_point, np.int8)})


def int8_conv_model(channels: int, size: int) -> bytes:
    """A one-node ONNX graph: a 3×3 QLinearConv (uint8 activations, symmetric per-channel int8 weights, as fast
    mode's convolutions) — ONNX Runtime's direct int8 convolution kernels, which run VNNI where there is no AMX."""
    from onnx import TensorProto, helper
    weights = np.random.default_rng(0).integers(-127, 128, (channels, channels, 3, 3), dtype=np.int8)
    shape = [1, channels, size, size]
    return _onnx_model(
        helper.make_node("QLinearConv", ["X", "x_scale", "x_zero", "W", "w_scale", "w_zero", "y_scale", "y_zero"],
                         ["Y"], pads=[1, 1, 1, 1]),
        [helper.make_tensor_value_info("X", TensorProto.UINT8, shape)],
        helper.make_tensor_value_info("Y", TensorProto.UINT8, shape),
        {"x_scale": np.array(0.02, np.float32), "x_zero": np.array(128, np.uint8), "W": weights,
         "w_scale": np.full(channels, 0.01, np.float32), "w_zero": np.zeros(channels, np.int8),
         "y_scale": np.array(0.5, np.float32), "y_zero": np.array(128, np.uint8)})


INT8_CONV = (256, 56)  # ResNet-18's layer 2 input width, at layer 1's resolution: 1.85 G MAC


def peak_int8_gops(threads: int, n: int = GEMM_SIZE, repeats: int = 5) -> tuple[float, str]:
    """The best int8 rate ONNX Runtime reaches here, in integer ops/s (2 per MAC), best of `repeats` over: its
    general GEMM (MatMulInteger, weight zero points 0 and −1: on AMX CPUs only the latter reaches the tiles, which
    is why fast mode shifts its weights) and its direct convolution kernels for symmetric weights (a 3×3
    QLinearConv; without AMX these beat the GEMM, ~1.6× here with AMX refused). Returns (GOP/s, which kernel)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    rng = np.random.default_rng(1)
    channels, size = INT8_CONV
    candidates = [(f"MatMulInteger {n}², weight zero point {zero_point}", int8_gemm_model(n, zero_point), "A",
                   (n, n), n ** 3) for zero_point in (0, -1)]
    candidates.append((f"3×3 QLinearConv {channels} channels {size}²", int8_conv_model(channels, size), "X",
                       (1, channels, size, size), channels * channels * 9 * size * size))
    best = (0.0, "")
    for label, model, name, shape, macs in candidates:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        activations = rng.integers(0, 256, shape, dtype=np.uint8)
        seconds = _best_seconds(lambda: session.run(None, {name: activations}), repeats)
        best = max(best, (2 * macs / seconds / 1e9, label))
    return best


# --- a backend's network alone ----------------------------------------------------------------------------------

def network_images_per_s(backend, batch: np.ndarray, repeats: int = 5) -> float:
    """Images/s of `backend.run` alone on one prepared batch (`backend.prepare`), best of `repeats` after a warm-up."""
    return len(batch) / _best_seconds(lambda: backend.run(batch), repeats)


@dataclass(frozen=True)
class Peaks:
    cpu: Cpu
    threads: int
    fp32_gflops: float
    bf16_gflops: float
    int8_gops: float
    int8_kernel: str  # which of peak_int8_gops's kernels reached it
    macs: int

    def share(self, images_per_s: float, precision: str) -> tuple[float, float]:
        """(achieved GFLOP/s or GOP/s, share of the peak of the same `precision`: fp32, bf16 or int8)."""
        achieved = images_per_s * 2 * self.macs / 1e9
        return achieved, achieved / {"fp32": self.fp32_gflops, "bf16": self.bf16_gflops, "int8": self.int8_gops}[
            precision]


def measure_peaks(threads: int) -> Peaks:
    return Peaks(this_cpu(), threads, peak_gemm_gflops(threads), peak_gemm_gflops(threads, "bfloat16"),
                 *peak_int8_gops(threads), resnet18_macs())


def report(peaks: Peaks, rows: list[tuple[str, float, str]], batch: int) -> list[dict]:
    """Print the CPU line and, per backend (name, network images/s, precision), its share of the peak."""
    cpu = peaks.cpu
    load = _loadavg()
    print(f"CPU: {cpu.model}, {cpu.cores} logical core(s), {peaks.threads} thread(s) used; {cpu.features}; "
          f"load {load}")
    print(f"  measured peak: fp32 {peaks.fp32_gflops:.0f} GFLOP/s and bf16 {peaks.bf16_gflops:.0f} GFLOP/s "
          f"({GEMM_SIZE}² torch.matmul), int8 {peaks.int8_gops:.0f} GOP/s (ONNX Runtime {peaks.int8_kernel}); "
          f"ResNet-18 {peaks.macs / 1e9:.2f} GMAC = {2 * peaks.macs / 1e9:.2f} GFLOP per image")
    out = []
    for name, images_per_s, precision in rows:
        achieved, share = peaks.share(images_per_s, precision)
        unit = "GOP/s" if precision == "int8" else "GFLOP/s"
        print(f"  {name:<26} network alone (batch {batch}) {images_per_s:6.1f} images/s = {achieved:5.0f} {unit:<7} "
              f"{share:5.1%} of the {precision} peak")
        out.append({"pipeline": name, "network_images_per_s": images_per_s, "achieved": achieved, "share": share})
    return out


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"
