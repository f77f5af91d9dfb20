"""Faithful ResNet-18 classification: the weights' own preprocessing, batched inference, softmax, top-k.

Crop modes:
  center  torchvision's `IMAGENET1K_V1.transforms()` (Resize 256 bilinear with antialias, CenterCrop 224, ImageNet
          mean/std), so Shelf's probabilities equal the reference pipeline's. Default. `model_input`+`normalise`
          do it step for step with Pillow and numpy, without importing torchvision (a second of start-up) or
          torch (two more: the ONNX Runtime backends never need it once their model is converted);
          tests/test_classify.py checks they give the reference transform's very tensor.
  pad     the crop is scaled to fit 224×224 and padded with the ImageNet mean colour, so a tall bottle keeps its
          cap and base (Resize+CenterCrop would cut them off). Same normalisation; recorded in provenance.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from shelf.model import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATION, RESIZE_SIZE, LoadedModel

if TYPE_CHECKING:  # inference on the ONNX Runtime backends needs no torch (2 s of start-up); eager imports it
    import torch

DEFAULT_TOP_K = 3
BATCH_SIZE = 16
EMBEDDING_SIZE = 512


@dataclass(frozen=True)
class Prediction:
    rank: int  # 1 = most probable
    class_index: int  # ImageNet class index; names are not unique ("crane" is 134 and 517)
    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    predictions: list[Prediction]  # top-k, best first
    probabilities: np.ndarray  # (1000,) float32 softmax over all classes
    embedding: np.ndarray  # (512,) float32 global-average-pooled features, before the classifier

    @property
    def top1(self) -> Prediction:
        return self.predictions[0]


CROP_MODES = ("center", "pad")


class PadToSquare:
    """Fit the whole crop into the model's input square, padding with the mean colour (which normalises to 0)."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        import torch
        return torch.from_numpy(normalise(model_input(image, "pad")[None])[0])


def reference_transform():
    """torchvision's own preprocessing object for the weights (imports torchvision)."""
    from torchvision.models import ResNet18_Weights
    return ResNet18_Weights.IMAGENET1K_V1.transforms()


def check_crop_mode(crop_mode: str) -> None:
    if crop_mode not in CROP_MODES:
        raise ValueError(f"unknown crop mode {crop_mode!r}; use one of {', '.join(CROP_MODES)}")


def preprocessing(crop_mode: str = "center"):
    """The whole preprocessing as one callable (PIL image → normalised tensor); `center` is torchvision's own."""
    check_crop_mode(crop_mode)
    return reference_transform() if crop_mode == "center" else PadToSquare()


def preprocessing_provenance(crop_mode: str = "center") -> dict:
    """What the preprocessing does, recorded with every run."""
    common = {"interpolation": INTERPOLATION, "antialias": True, "mean": list(IMAGENET_MEAN),
              "std": list(IMAGENET_STD), "crop_mode": crop_mode}
    if crop_mode == "pad":
        return {**common, "resize": [CROP_SIZE] * 2, "crop": None, "pad": "fit and pad with the mean colour"}
    check_crop_mode(crop_mode)
    return {**common, "resize": [RESIZE_SIZE], "crop": [CROP_SIZE]}


def pooled_features(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """ResNet's forward up to the 512-d pooled features (torchvision's `_forward_impl` minus `fc`)."""
    import torch
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(batch))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def model_input(image: Image.Image, crop_mode: str = "center") -> np.ndarray:
    """An RGB image → the model's (224, 224, 3) uint8 input before normalisation: the first half of
    `preprocessing(crop_mode)`, step for step, so `normalise(model_input(x))` equals `preprocessing(crop_mode)(x)`.
    Small and plain, so it can be made where the photo is decoded and shipped to wherever the model runs."""
    if crop_mode == "pad":
        fill = tuple(round(255 * m) for m in IMAGENET_MEAN)
        return np.asarray(ImageOps.pad(image, (CROP_SIZE, CROP_SIZE), method=Image.BILINEAR, color=fill))
    check_crop_mode(crop_mode)
    return np.asarray(center_crop(resize_short_side(image, RESIZE_SIZE), CROP_SIZE))


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision's resize(image, [size]) of a PIL image: the short side to `size`, the long side truncated,
    Pillow's bilinear filter (which antialiases when it shrinks)."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_width, new_height) == image.size:
        return image
    return image.resize((new_width, new_height), Image.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's center_crop(image, [size, size]) of a PIL image (zero padding where it is smaller)."""
    width, height = image.size
    if width < size or height < size:
        padded = Image.new(image.mode, (max(width, size), max(height, size)))
        padded.paste(image, ((max(size - width, 0)) // 2, (max(size - height, 0)) // 2))
        image, (width, height) = padded, padded.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def region_input(image: Image.Image, box: tuple[int, int, int, int], scale: float = 1.0) -> np.ndarray:
    """Fast mode's `model_input(image.crop(box))` in center crop mode, without copying the region first and
    resizing only the part of it the centre crop keeps (a third less to resize). The filter reads the same pixels
    (the centre crop's edge is 16 px inside the resized region), but its coefficients are computed from other
    offsets, so about 0.03 % of values differ by one level: fast mode only; the faithful backends use model_input.
    `box` is in the photo's own pixels; `scale` is the decoded image's size relative to the photo (JPEG drafts):
    the crop's geometry is the full photo's, so a reduced decode cuts exactly the same part of the region."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    short, long = min(width, height), max(width, height)
    new_long = int(RESIZE_SIZE * long / short)
    new_width, new_height = (RESIZE_SIZE, new_long) if width <= height else (new_long, RESIZE_SIZE)
    sx, sy = width / new_width, height / new_height
    top, left = int(round((new_height - CROP_SIZE) / 2.0)), int(round((new_width - CROP_SIZE) / 2.0))
    kept = (x1 + left * sx, y1 + top * sy, x1 + (left + CROP_SIZE) * sx, y1 + (top + CROP_SIZE) * sy)
    return np.asarray(image.resize((CROP_SIZE, CROP_SIZE), Image.BILINEAR, box=tuple(v * scale for v in kept)))


def normalise(inputs: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 model inputs → the (N, 3, H, W) float32 batch the network takes: torchvision's
    convert_image_dtype and normalize, the same float32 operations in the same order, so the same values
    (tests/test_classify.py compares with the reference transform's tensor). In numpy: the ONNX Runtime backends
    run without importing torch."""
    # Made contiguous while still uint8 (a quarter of the bytes), then converted: three times faster than
    # converting the strided view, and ready for ONNX Runtime as it is.
    batch = np.ascontiguousarray(inputs.transpose(0, 3, 1, 2)).astype(np.float32)
    batch /= np.float32(255.0)
    batch -= np.array(IMAGENET_MEAN, np.float32).reshape(-1, 1, 1)
    batch /= np.array(IMAGENET_STD, np.float32).reshape(-1, 1, 1)
    return batch


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (as torch computes it: shifted by the row's maximum)."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ClassifiedArrays:
    """Classifications of N inputs as plain arrays (what crosses process and machine boundaries)."""

    indices: np.ndarray  # (N, k) int64 class indices, best first
    probabilities: np.ndarray  # (N, 1000) float32 softmax
    embeddings: np.ndarray  # (N, 512) float32 pooled features

    def classifications(self, categories: Sequence[str]) -> list[Classification]:
        return [Classification([Prediction(rank + 1, int(index), categories[int(index)], float(probabilities[index]))
                                for rank, index in enumerate(indices)], probabilities.copy(), embedding.copy())
                for indices, probabilities, embedding in zip(self.indices, self.probabilities, self.embeddings)]


def check_top_k(loaded: LoadedModel, top_k: int) -> None:
    if not 1 <= top_k <= len(loaded.categories):
        raise ValueError(f"top_k must be between 1 and {len(loaded.categories)}")


def classify_inputs(loaded: LoadedModel, inputs: np.ndarray, top_k: int = DEFAULT_TOP_K,
                    batch_size: int = BATCH_SIZE) -> ClassifiedArrays:
    """Classify (N, 224, 224, 3) uint8 model inputs (see `model_input`) in batches."""
    check_top_k(loaded, top_k)
    from shelf.backends import EagerBackend
    backend = loaded.backend or EagerBackend(loaded.model)
    indices, probabilities, embeddings = [], [], []
    for start in range(0, len(inputs), batch_size):
        features, logits = backend.run(normalise(inputs[start:start + batch_size]))
        p = softmax(logits)
        indices.append(np.argsort(-p, axis=1, kind="stable")[:, :top_k])
        probabilities.append(p)
        embeddings.append(features)
    if not indices:
        return ClassifiedArrays(np.zeros((0, top_k), np.int64), np.zeros((0, len(loaded.categories)), np.float32),
                                np.zeros((0, EMBEDDING_SIZE), np.float32))
    return ClassifiedArrays(np.concatenate(indices), np.concatenate(probabilities), np.concatenate(embeddings))


def classify_images(loaded: LoadedModel, images: Sequence[Image.Image], top_k: int = DEFAULT_TOP_K,
                    batch_size: int = BATCH_SIZE, crop_mode: str = "center",
                    on_batch: Callable[[int], None] | None = None) -> list[Classification]:
    """Classify RGB images (whole photos or region crops) in batches. `on_batch(n_done)` reports progress."""
    check_top_k(loaded, top_k)
    check_crop_mode(crop_mode)  # an unknown crop mode fails before any work
    results: list[Classification] = []
    for start in range(0, len(images), batch_size):
        inputs = np.stack([model_input(image, crop_mode) for image in images[start:start + batch_size]])
        results += classify_inputs(loaded, inputs, top_k, batch_size).classifications(loaded.categories)
        if on_batch:
            on_batch(len(results))
    return results


def prediction_records(predictions: Sequence[Prediction]) -> list[dict]:
    """Predictions as the JSON contract gives them (`shelf classify --format json`, the HTTP API)."""
    return [{"rank": p.rank, "class_index": p.class_index, "label": p.label, "probability": p.probability}
            for p in predictions]


def classification_record(loaded: LoadedModel, image: str, data: bytes, top_k: int = DEFAULT_TOP_K) -> dict:
    """One file of `shelf classify --format json` (and of `POST /v1/classify`): {"image", "predictions"}, or
    {"image", "error"} when the bytes are not a photo Shelf can read. `image` is shown as given, never opened."""
    from shelf.images import ImageError, decode_image
    try:
        decoded = decode_image(data, image)
    except ImageError as exc:
        return {"image": image, "error": exc.problem}
    (result,) = classify_images(loaded, [decoded.image], top_k)
    return {"image": image, "predictions": prediction_records(result.predictions)}
