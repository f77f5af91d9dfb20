"""The roofline of `python -m shelf bench`: the CPU's features read right, and the network's work counted right
(nothing here is timed)."""
from __future__ import annotations

import numpy as np

from benchmarks import roofline

SAPPHIRE_RAPIDS = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse2 avx2 fma avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
bugs		: spectre_v1

processor	: 1
model name	: Some Other CPU
flags		: fpu sse2
"""
ZEN3 = """processor	: 0
model name	: AMD EPYC 7763 64-Core Processor
flags		: fpu sse2 avx2 fma
"""


def test_the_first_processors_model_and_matrix_flags_are_read():
    model, flags = roofline.parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == {"avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
    cpu = roofline.Cpu(model, flags, 2)
    assert cpu.features == "AMX-INT8 AMX-BF16 AVX-512 AVX512-VNNI AVX-VNNI AVX512-BF16"


def test_a_cpu_without_matrix_features_says_so():
    model, flags = roofline.parse_cpuinfo(ZEN3)
    assert model == "AMD EPYC 7763 64-Core Processor" and flags == frozenset()
    assert roofline.Cpu(model, flags, 4).features == "none of AMX/VNNI/AVX-512"
    assert roofline.parse_cpuinfo("") == ("unknown CPU", frozenset())


def test_resnet18_is_counted_at_1_8_gmac_per_image():
    macs = roofline.resnet18_macs()
    assert abs(macs - 1.814e9) / 1.814e9 < 0.02, macs


def test_the_mac_count_follows_the_layers():
    import torch
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)  # 8 × 10 × 10 outputs, 2 × 3 × 3 inputs each
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.Linear(800, 5))
    assert roofline.count_macs(model, (2, 4, 10, 10)) == 8 * 10 * 10 * 2 * 9 + 5 * 800


def test_the_int8_peak_graph_computes_the_product():
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    model = roofline.int8_gemm_model(8, -1)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    activations = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    weights = numpy_helper.to_array(next(i for i in onnx.load_from_string(model).graph.initializer if i.name == "B"))
    expected = (activations.astype(np.int32) - 128) @ (weights.astype(np.int32) + 1)
    np.testing.assert_array_equal(session.run(None, {"A": activations})[0], expected)


def test_the_int8_conv_peak_graph_computes_a_quantised_convolution():
    import onnxruntime as ort
    import torch
    session = ort.InferenceSession(roofline.int8_conv_model(4, 6), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(2).integers(0, 256, (1, 4, 6, 6), dtype=np.uint8)
    weights = np.random.default_rng(0).integers(-127, 128, (4, 4, 3, 3), dtype=np.int8)  # as the model makes them
    real = torch.nn.functional.conv2d(torch.tensor((pixels.astype(np.float64) - 128) * 0.02),
                                      torch.tensor(weights * 0.01), padding=1).numpy()
    expected = np.clip(np.round(real / 0.5) + 128, 0, 255)
    assert np.abs(session.run(None, {"X": pixels})[0].astype(int) - expected).max() <= 1
