"""The model's inputs: the weights' own preprocessing, step for step, without torch.

Crop modes:
  center  torchvision's `IMAGENET1K_V1.transforms()` (Resize 256 bilinear with antialias, CenterCrop 224, ImageNet
          mean/std), so Shelf's probabilities equal the reference pipeline's. Default. `model_input`+`normalise`
          do it step for step with Pillow and numpy, without importing torchvision (a second of start-up) or
          torch (two more: the ONNX Runtime backends never need it once their model is converted);
          tests/test_classify.py checks they give the reference transform's very tensor.
  pad     the crop is scaled to fit 224×224 and padded with the ImageNet mean colour, so a tall bottle keeps its
          cap and base (Resize+CenterCrop would cut them off). Same normalisation; recorded in provenance.

Below the backends and the classifier, which both prepare inputs with it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from shelf.recognition.model import (
    CROP_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATION,
    RESIZE_SIZE,
)

if TYPE_CHECKING:
    import torch

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


# Fast mode's own input (int8_rewrites.quantised_input_copy): what its int8 model's first QuantizeLinear would make
# of the normalised batch, made here from the uint8 inputs, laid out for a stem rewritten as space-to-depth.
STEM_BEFORE, STEM_AFTER = 4, 2  # the 7×7 stride-2 stem (padding 3) as a 4×4 convolution over 2×2 blocks: its
# kernel grows a zero first row and column, so the padding becomes 4 before and 2 after (224 + 6 = 2 × 115 blocks)
SPACE_TO_DEPTH = "space_to_depth_2x2"


def quantised_input(inputs: np.ndarray, table: np.ndarray, pad: int) -> np.ndarray:
    """(N, 224, 224, 3) uint8 model inputs → (N, 12, 115, 115) uint8: each value through `table` ((3, 256): per
    channel, the normalised value as the int8 model quantises it), padded with `pad` (the quantised 0 the
    convolution padded with) and cut into 2×2 blocks: channel 4c + 2dy + dx of block (i, j) is channel c's pixel
    (2i + dy − 4, 2j + dx − 4). The same numbers reach the stem as from `normalise` and the model's own
    QuantizeLinear, for the cost of one pass over bytes instead of three over floats."""
    n, height, width, _ = inputs.shape
    side = (height + STEM_BEFORE + STEM_AFTER) // 2
    if not n:
        return np.zeros((0, 12, side, side), np.uint8)
    mapped = np.asarray(Image.fromarray(inputs.reshape(n * height, width, 3)).point(table.ravel().tolist()))
    out = np.full((n, 3, 2, 2, side, side), pad, np.uint8)
    first, last = STEM_BEFORE // 2, side - STEM_AFTER // 2
    out[..., first:last, first:last] = mapped.reshape(n, height // 2, 2, width // 2, 2, 3).transpose(0, 5, 2, 4, 1, 3)
    return out.reshape(n, 12, side, side)
