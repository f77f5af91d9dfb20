"""Rewrites of fast mode's int8 ONNX model (backends.quantize_int8 makes it) that compute the very same numbers for
less, and the input preparation a rewritten model asks for. backends.int8_for_this_cpu applies them once per
calibration and keeps the copy beside the model."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

INPUT_METADATA = "shelf.input"  # a rewritten model's input: layout, table, pad (quantised_input_copy)


def input_preparation(metadata: dict[str, str], path: Path):
    """`prepare` for a model with this metadata: normalisation, or a derived int8 model's own quantised input."""
    import json

    from shelf.recognition.inputs import SPACE_TO_DEPTH, normalise, quantised_input
    if INPUT_METADATA not in metadata:
        return normalise
    described = json.loads(metadata[INPUT_METADATA])
    if described.get("layout") != SPACE_TO_DEPTH:
        raise ValueError(f"{path.name}: input layout {described.get('layout')!r} is not one Shelf makes")
    table = np.array(described["table"], np.uint8).reshape(3, 256)
    return functools.partial(quantised_input, table=table, pad=int(described["pad"]))


def shift_weight_zero_points(model) -> int:
    """Store each symmetric int8 convolution weight (zero point 0, values within ±127) as value − 1 with zero point
    −1: the same numbers, but ONNX Runtime then runs the convolution through its general int8 GEMM, which uses AMX
    tiles, instead of its direct kernels for symmetric weights, which use VNNI only. On this project's 2-core AMX
    machine ResNet-18 on 40 crops took 130 ms instead of 179, with identical outputs (README, "Inference
    backends"). Done only where AMX exists: elsewhere the direct kernels are the fast ones. Returns how many
    weights were shifted."""
    from onnx import numpy_helper
    initializers = {i.name: i for i in model.graph.initializer}
    shifted = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[0] not in initializers:
            continue
        weights, zero_point = (numpy_helper.to_array(initializers[name]) for name in (node.input[0], node.input[2]))
        if weights.dtype != np.int8 or weights.ndim != 4 or np.any(zero_point != 0) or weights.min() < -127:
            continue
        initializers[node.input[0]].CopyFrom(numpy_helper.from_array(weights - np.int8(1), node.input[0]))
        initializers[node.input[2]].CopyFrom(numpy_helper.from_array(np.full_like(zero_point, -1), node.input[2]))
        shifted += 1
    return shifted


def quantised_input_copy(model) -> bool:
    """Rewrite quantize_int8's model in place to compute the same numbers for less: it takes the uint8 values its
    first QuantizeLinear would make (inputs.quantised_input makes them from the uint8 model inputs, through a
    256-entry table per channel taken from this very QuantizeLinear), and its 7×7 stride-2 stem convolution over
    3 channels becomes a 4×4 stride-1 convolution over 12 (2×2 space-to-depth; the kernel gains a zero row and
    column): 192-long dot products instead of 147-long ones over 3 channels, which suit the int8 kernels better.
    The int32 sums are the very same, so the outputs are identical (tests/test_backends.py). Input plus network
    measured 0.90–0.97× the time of normalising plus the model as quantised with AMX refused, level with AMX, so
    fast mode uses it only without AMX (`python -m benchmarks.int8_rewrite`, README). False (unchanged) when the
    model does not start as quantize_int8 makes it."""
    import json

    from onnx import TensorProto, helper, numpy_helper

    from shelf.recognition.inputs import SPACE_TO_DEPTH, STEM_AFTER, STEM_BEFORE
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}

    def readers(tensor: str) -> list:
        return [node for node in graph.node if tensor in node.input]

    (input_value,) = [i for i in graph.input if i.name == "input"] or [None]
    quantize = readers("input")
    if input_value is None or [n.op_type for n in quantize] != ["QuantizeLinear"]:
        return False
    dequantize = readers(quantize[0].output[0])
    if [n.op_type for n in dequantize] != ["DequantizeLinear"]:
        return False
    stem = readers(dequantize[0].output[0])
    if [n.op_type for n in stem] != ["Conv"] or [d.dim_value for d in input_value.type.tensor_type.shape.dim[1:]] != [
            3, 224, 224]:
        return False
    weights = producers.get(stem[0].input[1])
    attributes = {a.name: helper.get_attribute_value(a) for a in stem[0].attribute}
    if (weights is None or weights.op_type != "DequantizeLinear" or weights.input[0] not in initializers
            or list(attributes.get("kernel_shape", ())) != [7, 7] or list(attributes.get("strides", ())) != [2, 2]
            or list(attributes.get("pads", ())) != [3] * 4 or list(attributes.get("dilations", [1, 1])) != [1, 1]
            or attributes.get("group", 1) != 1):
        return False
    kernel = numpy_helper.to_array(initializers[weights.input[0]])
    scale, zero_point = (numpy_helper.to_array(initializers[name]) for name in quantize[0].input[1:3])
    grown = np.zeros((kernel.shape[0], 3, 8, 8), kernel.dtype)
    grown[:, :, 1:, 1:] = kernel
    blocks = grown.reshape(-1, 3, 4, 2, 4, 2).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 12, 4, 4)
    initializers[weights.input[0]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(blocks), weights.input[0]))
    for attribute in stem[0].attribute:
        value = {"kernel_shape": [4, 4], "strides": [1, 1], "pads": [0] * 4}.get(attribute.name)
        if value is not None:
            attribute.ints[:] = value
    table = _quantised_values(scale, zero_point)
    graph.node.remove(quantize[0])
    dequantize[0].input[0] = "input"
    side = (224 + STEM_BEFORE + STEM_AFTER) // 2
    input_value.CopyFrom(helper.make_tensor_value_info("input", TensorProto.UINT8, ["n", 12, side, side]))
    stale = {quantize[0].output[0], dequantize[0].output[0]}  # their shapes changed
    for info in [v for v in graph.value_info if v.name in stale]:
        graph.value_info.remove(info)
    model.metadata_props.add(key=INPUT_METADATA, value=json.dumps(
        {"layout": SPACE_TO_DEPTH, "table": table.ravel().tolist(), "pad": int(zero_point)}))
    return True


def _quantised_values(scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """(3, 256) uint8: each channel's 256 input values, normalised as the backends do and quantised by ONNX Runtime
    itself with the model's input scale and zero point, so the table gives the bytes the model's QuantizeLinear
    gave, whatever rounding that runtime uses."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from shelf.recognition.inputs import normalise
    values = np.repeat(np.arange(256, dtype=np.uint8)[None, None, :, None], 3, axis=3)  # a 1×256 image, grey levels
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["y"])], "input_table",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 3, 1, 256])],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(zero_point, "zero_point")])
    quantizer = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(quantizer.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": normalise(values)})[0][0, :, 0, :]
