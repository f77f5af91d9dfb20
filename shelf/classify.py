"""Faithful ResNet-18 classification: the weights' own preprocessing, batched eager fp32, softmax, top-k.

Crop modes:
  center  torchvision's `IMAGENET1K_V1.transforms()` object itself (Resize 256 bilinear with antialias,
          CenterCrop 224, ImageNet mean/std), so Shelf's probabilities equal the reference pipeline's. Default.
  pad     the crop is scaled to fit 224×224 and padded with the ImageNet mean colour, so a tall bottle keeps its
          cap and base (Resize+CenterCrop would cut them off). Same normalisation; recorded in provenance.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageOps
from torchvision.transforms import functional as TF

from shelf.model import IMAGENET_WEIGHTS, LoadedModel

DEFAULT_TOP_K = 3
BATCH_SIZE = 16


@dataclass(frozen=True)
class Prediction:
    rank: int  # 1 = most probable
    class_index: int  # ImageNet class index; names are not unique ("crane" is 134 and 517)
    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    predictions: list[Prediction]  # top-k, best first
    probabilities: torch.Tensor  # (1000,) softmax over all classes
    embedding: torch.Tensor  # (512,) global-average-pooled features, before the classifier

    @property
    def top1(self) -> Prediction:
        return self.predictions[0]


CROP_MODES = ("center", "pad")


class PadToSquare:
    """Fit the whole crop into the model's input square, padding with the mean colour (which normalises to 0)."""

    def __init__(self, reference):
        self.size = reference.crop_size[0]
        self.mean, self.std = list(reference.mean), list(reference.std)
        self.fill = tuple(round(255 * m) for m in self.mean)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        square = ImageOps.pad(image, (self.size, self.size), method=Image.BILINEAR, color=self.fill)
        return TF.normalize(TF.convert_image_dtype(TF.pil_to_tensor(square), torch.float32), self.mean, self.std)


def preprocessing(crop_mode: str = "center"):
    reference = IMAGENET_WEIGHTS.transforms()
    if crop_mode == "center":
        return reference
    if crop_mode == "pad":
        return PadToSquare(reference)
    raise ValueError(f"unknown crop mode {crop_mode!r}; use one of {', '.join(CROP_MODES)}")


def preprocessing_provenance(crop_mode: str = "center") -> dict:
    """What the preprocessing does, recorded with every run."""
    t = IMAGENET_WEIGHTS.transforms()
    common = {"interpolation": t.interpolation.value, "antialias": bool(t.antialias), "mean": list(t.mean),
              "std": list(t.std), "crop_mode": crop_mode}
    if crop_mode == "pad":
        return {**common, "resize": list(t.crop_size) * 2, "crop": None, "pad": "fit and pad with the mean colour"}
    preprocessing(crop_mode)  # rejects unknown modes
    return {**common, "resize": list(t.resize_size), "crop": list(t.crop_size)}


def pooled_features(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """ResNet's forward up to the 512-d pooled features (torchvision's `_forward_impl` minus `fc`)."""
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(batch))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def classify_images(loaded: LoadedModel, images: Sequence[Image.Image], top_k: int = DEFAULT_TOP_K,
                    batch_size: int = BATCH_SIZE, crop_mode: str = "center",
                    on_batch: Callable[[int], None] | None = None) -> list[Classification]:
    """Classify RGB images (whole photos or region crops) in batches. `on_batch(n_done)` reports progress."""
    if not 1 <= top_k <= len(loaded.categories):
        raise ValueError(f"top_k must be between 1 and {len(loaded.categories)}")
    from shelf.backends import EagerBackend
    backend = loaded.backend or EagerBackend(loaded.model)
    transform = preprocessing(crop_mode)
    results: list[Classification] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.stack([transform(image) for image in images[start:start + batch_size]])
            features, logits = backend.run(batch)
            probabilities = logits.softmax(dim=1)
            values, indices = probabilities.topk(top_k, dim=1)
            for row in range(batch.shape[0]):
                predictions = [Prediction(rank=r + 1, class_index=int(i), label=loaded.categories[int(i)],
                                          probability=float(p))
                               for r, (p, i) in enumerate(zip(values[row], indices[row]))]
                results.append(Classification(predictions, probabilities[row].clone(), features[row].clone()))
            if on_batch:
                on_batch(len(results))
    return results
