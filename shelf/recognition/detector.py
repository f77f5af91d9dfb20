"""Learned product detectors: Ultralytics YOLO models exported to ONNX (`yolo export format=onnx`), run with ONNX
Runtime as the `detector:` region mode.

Two output layouts are understood, with any number of classes (facings are class-agnostic):
  (1, N, 5+C)  YOLOv5: cx, cy, w, h, objectness, C class scores (score = objectness × best class)
  (1, 4+C, N)  YOLOv8 / YOLO11: cx, cy, w, h, C class scores (score = best class)
Boxes are in the model's letterboxed input pixels. The input size comes from the model; photos are letterboxed as
Ultralytics does (aspect kept, centred, padded with grey 114) and boxes mapped back to the photo's pixels. Big
photos are cut into overlapping tiles at the model's input size; a box cut by a tile's inner edge is dropped (the
overlap shows that product whole in a neighbouring tile) and the rest merge by class-agnostic NMS (torchvision's
`nms`, step for step in numpy: the serving image has no torch; a test holds the two equal). Models exported with
NMS inside (`nms=True`, end-to-end YOLOv10) are not supported.

Detector files are untrusted: size limit, `onnx.checker`, recognised input/output shapes, no loops and no tensor
over MAX_TENSOR_BYTES where shape inference can tell, and one trial run in a child process held to TRIAL_MEMORY and
TRIAL_SECONDS, before anything is kept; kept under the data dir by their sha256, never under the uploaded name.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shelf import config
from shelf.access import LOCAL, Identity, require
from shelf.files import MB, write_atomically
from shelf.ingest.images import clean_filename
from shelf.ingest.regions import DETECTOR_CONF, DETECTOR_IOU, DETECTOR_TILES, Box, reading_order

MAX_DETECTOR_BYTES = 300 * 1024 * 1024
MAX_TENSOR_BYTES = 512 * MB  # a YOLO's largest activation at 1280 px input is 131 MB (1×80×640×640 floats)
NO_LOOPS = ("Loop", "Scan")  # control flow that runs for as long as its (untrusted) counts say: no YOLO has any
TRIAL_MEMORY = 2_000 * MB  # address space of the trial run's process: a 300 MB model and its activations fit
TRIAL_SECONDS = 60.0
PAD_GREY = 114
TILE_OVERLAP = 0.25  # of a tile's side
MIN_PRODUCT_INPUT_PIXELS = 32  # tiles=auto: a typical product should span at least this much of the model's input
MAX_AUTO_TILES = 64
MAX_DETECTIONS = 2000
SHA256_START = re.compile(r"[0-9a-fA-F]{8,64}")  # `detector:SHA256` names an imported detector, never a file
LAYOUTS = {"yolov5": "YOLOv5 (1, N, 5+C)", "yolov8": "YOLOv8/YOLO11 (1, 4+C, N)"}
SUPPORTED = ("input (1, 3, H, W) with a fixed H and W; output (1, N, 5+C) as YOLOv5 exports it or (1, 4+C, N) as "
             "YOLOv8/YOLO11 export it (Ultralytics `yolo export format=onnx`, without nms=True)")


class DetectorError(ValueError):
    """A detector file that cannot be used; the message names the file and says why."""


@dataclass(frozen=True)
class DetectorInfo:
    sha256: str
    path: Path
    name: str  # for display: the uploaded file's (cleaned) name, or the path given
    layout: str  # yolov5 | yolov8
    input_size: tuple[int, int]  # (width, height) of the model's input
    classes: int
    output_shape: tuple  # as the model declares it (None for a dynamic dimension)
    input_name: str
    input_type: str  # float32 | float16

    @property
    def format(self) -> str:
        shape = ", ".join("N" if d is None else str(d) for d in self.output_shape)
        return f"{LAYOUTS[self.layout]} output ({shape}), input {self.input_size[0]}×{self.input_size[1]}"


def detectors_dir() -> Path:
    return config.data_dir() / "detectors"


# ---------------------------------------------------------------------------------------------------------------
# checking and keeping detector files


def _dims(value_info) -> tuple:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim)


def _layout(shape: tuple) -> tuple[str, int] | None:
    """(layout, classes) of a YOLO output shape, or None."""
    if len(shape) != 3 or shape[0] not in (1, None):
        return None
    rows, cols = shape[1], shape[2]
    if rows is not None and rows >= 5 and (cols is None or rows < cols):
        return "yolov8", rows - 4
    if cols is not None and cols >= 6 and (rows is None or cols < rows):
        return "yolov5", cols - 5
    return None


def _check_size(n_bytes: int, source: str) -> None:
    if n_bytes > MAX_DETECTOR_BYTES:
        raise DetectorError(f"{source}: {n_bytes / 2**20:.0f} MB is over the {MAX_DETECTOR_BYTES // 2**20} MB limit "
                            "for detector files")


def inspect_detector(data: bytes, name: str, path: Path | None = None) -> DetectorInfo:
    """Check a detector file (size, ONNX checker, I/O shapes, one trial run) and describe it."""
    import onnx
    source = clean_filename(name)
    _check_size(len(data), source)
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise DetectorError(f"{source}: the ONNX checker refuses it ({str(exc).splitlines()[0][:200]})") from None
    except Exception:  # protobuf's DecodeError and friends: not ONNX at all
        raise DetectorError(f"{source}: not an ONNX model (a detector is a .onnx file; {SUPPORTED})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    input_shape = _dims(inputs[0]) if len(inputs) == 1 else None
    if input_shape is None or len(input_shape) != 4 or input_shape[0] not in (1, None) or input_shape[1] != 3 \
            or None in input_shape[2:]:
        found = ", ".join(str(_dims(i)) for i in inputs) or "no input"
        raise DetectorError(f"{source}: input {found} is not supported; supported: {SUPPORTED}")
    element = inputs[0].type.tensor_type.elem_type
    if element not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        raise DetectorError(f"{source}: the input is {onnx.TensorProto.DataType.Name(element)}; supported: float32 "
                            "or float16")
    output_shape = _dims(outputs[0]) if outputs else ()
    layout = _layout(output_shape)
    if layout is None:
        found = " ".join(str(tuple("?" if d is None else d for d in _dims(o))) for o in outputs) or "no output"
        raise DetectorError(f"{source}: output {found} is not a YOLO detection layout; supported: {SUPPORTED}")
    check_graph(model, source)
    sha = hashlib.sha256(data).hexdigest()
    info = DetectorInfo(sha256=sha, path=path or Path(), name=source, layout=layout[0],
                        input_size=(input_shape[3], input_shape[2]), classes=layout[1], output_shape=output_shape,
                        input_name=inputs[0].name, input_type="float16" if element == onnx.TensorProto.FLOAT16
                        else "float32")
    _trial_run(info, data)
    return info


def check_graph(model, source: str) -> None:
    """Refuse what would run for ever or take more memory than any detector: loops, and tensors over
    MAX_TENSOR_BYTES wherever shape inference can tell their size before anything runs."""
    import onnx
    for node in _nodes(model):
        if node.op_type in NO_LOOPS:
            raise DetectorError(f"{source}: has a {node.op_type} node; a detector has no loops (a loop runs as long "
                                "as its own counts say)")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # what inference cannot follow, the trial run meets, held to its limits
        return
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = _dims(value)
        if not dims or None in dims:
            continue
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).itemsize
        except Exception:  # strings and the like: no YOLO computes with them
            itemsize = 1
        if math.prod(dims) * itemsize > MAX_TENSOR_BYTES:
            raise DetectorError(f"{source}: tensor '{clean_filename(value.name)[:60]}' would be {list(dims)} "
                                f"({math.prod(dims) * itemsize / 1e9:,.1f} GB); a detector's tensors stay under "
                                f"{MAX_TENSOR_BYTES // MB} MB")


def _nodes(model):
    """Every node of the model: its graph's, its subgraphs' (If branches, loop bodies) and its functions'."""
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs:
        for node in graphs.pop().node:
            nodes.append(node)
            for attribute in node.attribute:
                graphs += ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
    return nodes


# The trial run, in a process of its own: a graph can do anything its shapes allow once it runs. The process limits
# its own address space before it imports ONNX Runtime, so an allocation past it fails there and then.
TRIAL = """
import json, resource, sys
spec = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (spec["memory"], spec["memory"]))
try:
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(sys.stdin.buffer.read(), options, providers=["CPUExecutionProvider"])
    grey = np.full(spec["shape"], spec["value"], dtype=spec["dtype"])
    (output, *_) = session.run(None, {spec["input"]: grey})
    print(json.dumps({"shape": list(output.shape)}))
except BaseException as exc:
    text = str(exc)
    print(json.dumps({"error": f"{exc.__class__.__name__}: {text.splitlines()[0][:200] if text else ''}",
                      "memory": isinstance(exc, MemoryError) or "allocate memory" in text}))
"""


def _trial_run(info: DetectorInfo, data: bytes) -> None:
    """Run the model once on a grey input, in a child process held to TRIAL_MEMORY and TRIAL_SECONDS: it must load
    in ONNX Runtime and give the declared layout."""
    w, h = info.input_size
    spec = {"memory": TRIAL_MEMORY, "shape": [1, 3, h, w], "value": PAD_GREY / 255, "dtype": info.input_type,
            "input": info.input_name}
    try:
        done = subprocess.run([sys.executable, "-I", "-c", TRIAL, json.dumps(spec)], input=data, capture_output=True,
                              timeout=TRIAL_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise DetectorError(f"{info.name}: its trial run did not finish in {TRIAL_SECONDS:g} s (a detector takes a "
                            "few seconds at most)") from None
    limit = f"more memory than a trial run may take ({TRIAL_MEMORY / 1e9:g} GB)"
    try:
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):  # no answer: the process died (an abort past its memory limit, a crash)
        raise DetectorError(f"{info.name}: its trial run ended abruptly (exit status {done.returncode}); it may need "
                            f"{limit}") from None
    if answer.get("memory"):
        raise DetectorError(f"{info.name}: running it once on a grey photo needs {limit}")
    if "error" in answer:
        raise DetectorError(f"{info.name}: ONNX Runtime cannot run it ({answer['error']})")
    if _layout(tuple(answer["shape"])) != (info.layout, info.classes):
        raise DetectorError(f"{info.name}: declares output {info.output_shape} but gives {tuple(answer['shape'])}; "
                            f"supported: {SUPPORTED}")


def import_detector(data: bytes, name: str, *, by: Identity = LOCAL, engine=None) -> DetectorInfo:
    """Check a detector file and keep it as detectors/<sha256>.onnx (+ a small JSON description); audited in
    `engine` (default: the configured store)."""
    require(by, "manage_weights")
    info = inspect_detector(data, name)
    directory = detectors_dir()
    target = directory / f"{info.sha256}.onnx"
    write_atomically(data, target)
    info = DetectorInfo(**{**asdict(info), "path": target})
    description = {**asdict(info), "path": None, "imported_at": dt.datetime.now(dt.UTC).isoformat()}
    write_atomically(json.dumps(description, indent=1).encode(), directory / f"{info.sha256}.json")
    from shelf.storage import store  # here: the store is not needed to load a model
    store.record_audit(engine, by, "manage_weights", f"import detector {info.name}", None,
                       {"sha256": info.sha256, "format": info.format})
    return info


def imported_detectors() -> list[DetectorInfo]:
    """Imported detectors, newest first. A description whose model file is missing or unreadable is skipped."""
    found = []
    for description in detectors_dir().glob("*.json"):
        try:
            fields = json.loads(description.read_text())
            imported_at = fields.pop("imported_at", "")
            fields.update(path=description.with_suffix(".onnx"), input_size=tuple(fields["input_size"]),
                          output_shape=tuple(fields["output_shape"]))
            info = DetectorInfo(**fields)
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if info.path.is_file() and info.sha256 == description.stem:
            found.append((imported_at, info))
    return [info for _, info in sorted(found, key=lambda pair: pair[0], reverse=True)]


def resolve_detector(source: str) -> DetectorInfo:
    """The detector a `detector:SOURCE` mode names: '' → the newest imported one; the start (8 to 64 hex digits)
    of an imported detector's sha256, never a file of that name (write ./NAME for one); or a path to an .onnx file
    (checked on every use, not copied)."""
    source = source.strip()
    imported = imported_detectors()
    if not source:
        if not imported:
            raise DetectorError("no detector imported yet: import one on the Home & model page or with "
                                "`python -m shelf detector import FILE.onnx`")
        return imported[0]
    path = Path(source).expanduser()
    if not SHA256_START.fullmatch(source) and path.is_file():
        try:
            _check_size(path.stat().st_size, source)
            data = path.read_bytes()
        except OSError as exc:
            raise DetectorError(f"{source}: cannot read the file ({exc.strerror or exc})") from None
        return inspect_detector(data, source, path.resolve())
    matches = [d for d in imported if SHA256_START.fullmatch(source) and d.sha256.startswith(source.lower())]
    if len(matches) == 1:
        return matches[0]
    if SHA256_START.fullmatch(source):
        raise DetectorError(f"{source}: no imported detector's sha256 starts so" + (
            " (several do; give more digits)" if matches else " (for a file of that name, write ./" + source + ")"))
    raise DetectorError(f"{source}: no such detector file")


# ---------------------------------------------------------------------------------------------------------------
# running a detector


@functools.lru_cache(maxsize=4)
def _session(path: str, sha256: str):
    """One ONNX Runtime session per detector file per process (sessions are safe to share between threads). The
    graph is checked again: a detector imported before the checks it now has to pass is not run unchecked."""
    import onnx

    from shelf.recognition.model import onnx_session
    check_graph(onnx.load(path), f"detector {sha256[:12]}")
    return onnx_session(path)  # the classifier's options: its pool threads sleep too, as it runs beside it


@dataclass(frozen=True)
class Letterbox:
    """How a photo (or tile) of `size` sits in the model's input: scaled by (sx, sy), shifted by (left, top)."""

    sx: float
    sy: float
    left: int
    top: int

    def to_photo(self, xyxy: np.ndarray) -> np.ndarray:
        out = xyxy.astype(np.float64).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.left) / self.sx
        out[:, [1, 3]] = (out[:, [1, 3]] - self.top) / self.sy
        return out


def letterbox(image: Image.Image, input_size: tuple[int, int]) -> tuple[Image.Image, Letterbox]:
    """Ultralytics' LetterBox (auto=False, scaleup=True, centred): one gain keeps the aspect, grey 114 pads the rest.
    The mapping back uses each axis's true scale (rounded size ÷ original size), so it is exact to the pixel."""
    w_in, h_in = input_size
    gain = min(w_in / image.width, h_in / image.height)
    new_w, new_h = max(1, round(image.width * gain)), max(1, round(image.height * gain))
    left, top = round((w_in - new_w) / 2 - 0.1), round((h_in - new_h) / 2 - 0.1)
    canvas = Image.new("RGB", (w_in, h_in), (PAD_GREY,) * 3)
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB photo whole
    canvas.paste(rgb.resize((new_w, new_h), Image.BILINEAR), (left, top))
    return canvas, Letterbox(new_w / image.width, new_h / image.height, left, top)


def decode_output(output: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """A raw YOLO output → (N×4 boxes x1, y1, x2, y2 in input pixels, N scores)."""
    rows = output[0].T if layout == "yolov8" else output[0]
    rows = rows.astype(np.float32)
    scores = rows[:, 4:].max(axis=1) if layout == "yolov8" else rows[:, 4] * rows[:, 5:].max(axis=1)
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), scores


def _run(info: DetectorInfo, image: Image.Image, conf: float) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass on a letterboxed photo or tile: boxes (in its pixels) and scores, at least `conf`."""
    canvas, placement = letterbox(image, info.input_size)
    batch = (np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0)
    batch = batch.astype(np.float16 if info.input_type == "float16" else np.float32)
    (output, *_) = _session(str(info.path), info.sha256).run(None, {info.input_name: batch})
    boxes, scores = decode_output(np.asarray(output), info.layout)
    keep = scores >= conf
    return placement.to_photo(boxes[keep]), scores[keep]


def tile_starts(length: int, side: int, overlap: float = TILE_OVERLAP) -> list[int]:
    """Where tiles of `side` start along an axis of `length`: evenly spread, neighbours overlapping ≥ `overlap`."""
    if side >= length:
        return [0]
    n = math.ceil((length - side) / (side * (1 - overlap))) + 1
    return [round(v) for v in np.linspace(0, length - side, n)]


def tile_side_for(tiles_across: int, length: int, overlap: float = TILE_OVERLAP) -> int:
    """The tile side that puts `tiles_across` overlapping tiles along `length`."""
    return math.ceil(length / (tiles_across * (1 - overlap) + overlap))


def _auto_tile_side(info: DetectorInfo, image: Image.Image, boxes: np.ndarray) -> int | None:
    """tiles=auto: the tile side (photo pixels, along the model's longer input side) at which a typical product
    found on the whole photo spans MIN_PRODUCT_INPUT_PIXELS of the model's input; None when it already does."""
    if not len(boxes):
        return None
    gain = min(info.input_size[0] / image.width, info.input_size[1] / image.height)
    typical = float(np.median(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))  # photo pixels
    if typical * gain >= MIN_PRODUCT_INPUT_PIXELS:
        return None
    side = max(info.input_size) * typical / MIN_PRODUCT_INPUT_PIXELS
    while len(tile_starts(image.width, round(side))) * len(tile_starts(image.height, round(side))) > MAX_AUTO_TILES:
        side *= 1.25
    return round(side) if side < max(image.size) else None


def detect(info: DetectorInfo, image: Image.Image, conf: float = DETECTOR_CONF, iou: float = DETECTOR_IOU,
           tiles: str = DETECTOR_TILES) -> tuple[list[Box], list[float]]:
    """Product boxes on a photo, with their scores, in reading order (row by row, left to right).

    tiles: 'off' (one pass over the whole photo), 'N' (N overlapping tiles along the photo's longer side), or
    'auto' (a first pass over the whole photo measures the products; tiles follow if they are small)."""
    whole_boxes, whole_scores = _run(info, image, conf)
    side = None
    if tiles == "auto":
        side = _auto_tile_side(info, image, whole_boxes)
    elif tiles != "off":
        side = tile_side_for(int(tiles), max(image.size))
    parts = [(whole_boxes, whole_scores)]
    if side is not None and side < max(image.size):
        margin = max(2.0, 2 * side / max(info.input_size))  # two input pixels, in photo pixels
        windows = [(left, top, min(left + side, image.width), min(top + side, image.height))
                   for top in tile_starts(image.height, side) for left in tile_starts(image.width, side)]
        # the whole-photo pass keeps only the products no tile holds whole: those too big for the tiles
        too_big = ~np.any([_not_cut_by_tile_edge(whole_boxes - [w[0], w[1], w[0], w[1]], w, image.size, margin)
                           & _inside(whole_boxes, w) for w in windows], axis=0)
        parts = [(whole_boxes[too_big], whole_scores[too_big])]
        for window in windows:
            boxes, scores = _run(info, image.crop(window), conf)
            inside = _not_cut_by_tile_edge(boxes, window, image.size, margin)
            parts.append((boxes[inside] + [window[0], window[1], window[0], window[1]], scores[inside]))
    boxes = np.concatenate([p[0] for p in parts]).reshape(-1, 4)
    scores = np.concatenate([p[1] for p in parts])
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image.width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image.height)
    sized = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    boxes, scores = boxes[sized], scores[sized]
    keep = nms(boxes, scores, iou)[:MAX_DETECTIONS]
    found = [(Box(round(b[0]), round(b[1]), round(b[2]), round(b[3])), float(s))
             for b, s in zip(boxes[keep], scores[keep])]
    found = [(b, s) for b, s in found if b.width > 0 and b.height > 0]
    found = [found[i] for i in reading_order([b for b, _ in found])]
    return [b for b, _ in found], [s for _, s in found]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2) kept by non-maximum suppression, best score first: torchvision's
    `nms` in numpy, float32 like it (a stable sort by score; a box goes when its IoU with a kept one exceeds
    `iou`)."""
    boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[position + 1:]
        width = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        height = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = width * height
        with np.errstate(divide="ignore", invalid="ignore"):  # empty boxes: 0/0 is NaN, never over `iou`, as in C++
            overlap = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[overlap.astype(np.float64) > iou]] = True
    return np.asarray(keep, dtype=np.int64)


def _not_cut_by_tile_edge(boxes: np.ndarray, window: tuple[int, int, int, int], size: tuple[int, int],
                          margin: float) -> np.ndarray:
    """Boxes (tile pixels) that do not touch an edge of the tile lying inside the photo: those are products cut
    in two by the tile, seen whole in the neighbouring tile."""
    left, top, right, bottom = window
    w, h = right - left, bottom - top
    keep = np.ones(len(boxes), dtype=bool)
    if left > 0:
        keep &= boxes[:, 0] > margin
    if top > 0:
        keep &= boxes[:, 1] > margin
    if right < size[0]:
        keep &= boxes[:, 2] < w - margin
    if bottom < size[1]:
        keep &= boxes[:, 3] < h - margin
    return keep


def _inside(boxes: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    return (boxes[:, 0] >= window[0]) & (boxes[:, 1] >= window[1]) & (boxes[:, 2] <= window[2]) & \
        (boxes[:, 3] <= window[3])


def provenance(info: DetectorInfo, conf: float, iou: float, tiles: str) -> dict:
    """What a run records about its detector (in the run's preprocessing JSON)."""
    return {"sha256": info.sha256, "name": info.name, "format": info.format, "layout": info.layout,
            "input_size": list(info.input_size), "classes": info.classes, "conf": conf, "iou": iou, "tiles": tiles,
            "letterbox": f"aspect kept, centred, pad {PAD_GREY}", "nms": "class-agnostic, torchvision's nms rule",
            "tile_overlap": TILE_OVERLAP}
