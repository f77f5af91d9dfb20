"""Tiny ONNX detectors with the exact output layouts of Ultralytics YOLO exports, for tests (not a feature).

- `fixed_detector`: outputs the boxes it is given (letterboxed input pixels), whatever the input: checks the
  letterbox arithmetic.
- `colour_detector`: finds rectangles of given colours in its input (one box per colour, score 1 when the colour is
  present, 0 when not): a real detector whose answers follow the pixels, so tiles see what they contain.
Layouts: "yolov5" → (1, N, 5+C) with objectness then C class scores; "yolov8" → (1, 4+C, N).
"""
from __future__ import annotations

import io
import warnings

import torch

INPUT = 320


def _to_layout(cxcywh: torch.Tensor, scores: torch.Tensor, layout: str, classes: int) -> torch.Tensor:
    """(N, 4) boxes and (N,) scores → one YOLO output; the score goes to class 0, other classes score 0."""
    class_scores = torch.cat([scores[:, None], torch.zeros(len(scores), classes - 1)], dim=1)
    if layout == "yolov8":
        return torch.cat([cxcywh, class_scores], dim=1).T[None]  # (1, 4+C, N)
    return torch.cat([cxcywh, torch.ones(len(scores), 1), class_scores], dim=1)[None]  # (1, N, 5+C)


def _export(module: torch.nn.Module, input_size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.zeros(1, 3, input_size[1], input_size[0]), buffer,
                          input_names=["images"], output_names=["output0"], opset_version=17, dynamo=False)
    return buffer.getvalue()


class _Fixed(torch.nn.Module):
    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.register_buffer("output", output)

    def forward(self, x):
        return self.output + 0 * x.mean()  # keeps the input in the graph


def fixed_detector(boxes_xyxy: list[tuple[float, float, float, float]], scores: list[float], layout: str,
                   classes: int = 1, input_size: tuple[int, int] = (INPUT, INPUT), padding: int = 8) -> bytes:
    """A model whose output is these boxes (+ `padding` zero-score rows so N is larger than 4+C / 5+C)."""
    xyxy = torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4)
    cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
    cxcywh = torch.cat([cxcywh, torch.full((padding, 4), 10.0)])
    all_scores = torch.cat([torch.tensor(scores, dtype=torch.float32), torch.zeros(padding)])
    return _export(_Fixed(_to_layout(cxcywh, all_scores, layout, classes)), input_size)


class _Colours(torch.nn.Module):
    def __init__(self, colours: list[tuple[int, int, int]], layout: str, classes: int, tolerance: float):
        super().__init__()
        self.register_buffer("colours", torch.tensor(colours, dtype=torch.float32)[:, :, None, None] / 255)
        self.layout, self.classes, self.tolerance = layout, classes, tolerance

    def forward(self, x):
        match = ((x[0][None] - self.colours).abs() < self.tolerance).float().amin(dim=1)  # (K, H, W)
        columns, rows = match.amax(dim=1), match.amax(dim=2)  # (K, W), (K, H)
        present = columns.amax(dim=1)
        xs = torch.arange(columns.shape[1], dtype=torch.float32)
        ys = torch.arange(rows.shape[1], dtype=torch.float32)
        x1 = torch.argmax(columns * (columns.shape[1] - xs), dim=1).float()  # first matching column
        x2 = torch.argmax(columns * (xs + 1), dim=1).float() + 1  # one past the last
        y1 = torch.argmax(rows * (rows.shape[1] - ys), dim=1).float()
        y2 = torch.argmax(rows * (ys + 1), dim=1).float() + 1
        cxcywh = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=1)
        return _to_layout(cxcywh, present, self.layout, self.classes)


def colour_detector(colours: list[tuple[int, int, int]], layout: str, classes: int = 1,
                    input_size: tuple[int, int] = (INPUT, INPUT), tolerance: float = 0.06) -> bytes:
    return _export(_Colours(colours, layout, classes, tolerance), input_size)


class _Classifier(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)).repeat(1, 334)[:, :1000]


def classifier_model() -> bytes:
    """An ImageNet-style classifier: output (1, 1000), not a detector."""
    return _export(_Classifier(), (224, 224))


# -- hostile graphs (issue 29), built with onnx.helper: a YOLOv8 output (1, 84, 8400) on top of what they do ----------


def _graph_model(nodes, initializers, *, subgraph_opset: bool = False) -> bytes:
    from onnx import TensorProto, helper
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                               [1, 3, INPUT, INPUT])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 8400])],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _ints(name: str, values: list[int]):
    from onnx import TensorProto, helper
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _yolo_output(source: str) -> list:
    """Nodes making the (1, 84, 8400) output from the scalar-ish tensor `source` (so it stays in the graph)."""
    from onnx import helper
    return [helper.make_node("ReduceMean", [source], ["level"], keepdims=0),
            helper.make_node("Expand", ["level", "yolo_shape"], ["output0"])]


def expanding_detector(side: int = 40000) -> bytes:
    """Expands the input's mean to [1, side, side] floats (6.4 GB at 40000), then answers like a YOLOv8."""
    from onnx import helper
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
             helper.make_node("Expand", ["mean", "huge_shape"], ["huge"]), *_yolo_output("huge")]
    return _graph_model(nodes, [_ints("huge_shape", [1, side, side]), _ints("yolo_shape", [1, 84, 8400])])


def expanding_at_run_time_detector(side: int = 40000) -> bytes:
    """The same, with the size computed from the input's pixels (grey 114/255 → `side`): no shape inference sees
    it, only running it does."""
    from onnx import TensorProto, helper
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [side / (114 / 255)])
    nodes = [helper.make_node("ReduceMax", ["images"], ["top"], keepdims=0),
             helper.make_node("Mul", ["top", "scale"], ["scaled"]),
             helper.make_node("Round", ["scaled"], ["rounded"]),
             helper.make_node("Cast", ["rounded"], ["length"], to=TensorProto.INT64),
             helper.make_node("Concat", ["one", "length", "length"], ["huge_shape"], axis=0),
             helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
             helper.make_node("Expand", ["mean", "huge_shape"], ["huge"]), *_yolo_output("huge")]
    return _graph_model(nodes, [scale, _ints("one", [1]), _ints("yolo_shape", [1, 84, 8400])])


def looping_detector(steps: int = 10**13) -> bytes:
    """A Loop of `steps` iterations adding 1 to the input's mean, then a YOLOv8 answer."""
    from onnx import TensorProto, helper
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "step"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        initializer=[helper.make_tensor("step", TensorProto.FLOAT, [], [1.0])])
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
             helper.make_node("Loop", ["steps", "keep_going", "mean"], ["counted"], body=body),
             *_yolo_output("counted")]
    return _graph_model(nodes, [helper.make_tensor("steps", TensorProto.INT64, [], [steps]),
                                helper.make_tensor("keep_going", TensorProto.BOOL, [], [True]),
                                _ints("yolo_shape", [1, 84, 8400])])


def slow_detector(side: int = 1500, products: int = 40) -> bytes:
    """`products` matrix products of side × side floats made from the input (nothing to fold ahead): seconds of
    work in tensors of a few megabytes, which no shape tells."""
    from onnx import helper
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
             helper.make_node("Expand", ["mean", "square"], ["m0"])]
    nodes += [helper.make_node("MatMul", [f"m{i}", "m0"], [f"m{i + 1}"]) for i in range(products)]
    return _graph_model(nodes + _yolo_output(f"m{products}"), [_ints("square", [side, side]),
                                                                _ints("yolo_shape", [1, 84, 8400])])
