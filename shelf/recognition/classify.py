"""Classification: batched ResNet-18 on prepared inputs (`inputs`), softmax, top-k, embeddings.

`classify_images` takes RGB images (whole photos or region crops); `classify_inputs` takes model inputs made where
the photo was decoded (`inputs.model_input`, or fast mode's `inputs.region_input`) and runs them on the loaded
model's backend (`backends`: ONNX Runtime fp32 by default, int8 in fast mode, torch eager as the reference).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shelf.recognition.backends import EagerBackend, softmax
from shelf.recognition.inputs import check_crop_mode, model_input
from shelf.recognition.model import LoadedModel

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
    backend = loaded.backend or EagerBackend(loaded.model)
    indices, probabilities, embeddings = [], [], []
    for start in range(0, len(inputs), batch_size):
        features, logits = backend.run(backend.prepare(inputs[start:start + batch_size]))
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
    from shelf.ingest.images import ImageError, decode_image
    try:
        decoded = decode_image(data, image)
    except ImageError as exc:
        return {"image": image, "error": exc.problem}
    (result,) = classify_images(loaded, [decoded.image], top_k)
    return {"image": image, "predictions": prediction_records(result.predictions)}
