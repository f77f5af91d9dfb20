"""Safe decoding of untrusted image bytes into RGB Pillow images.

Every failure raises `ImageError`, whose message names the file and says what is wrong with it, so a batch can
report it and go on with the next file.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from shelf.files import MB, size_problem

pillow_heif.register_heif_opener()

# Only formats a shelf photo comes in; Pillow must never guess its way into EPS (Ghostscript) and friends.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "HEIF", "AVIF")  # JPEG covers MPO
UPLOAD_EXTENSIONS = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif"]
MAX_UPLOAD_MB = 50  # per photo; every photo uploader passes it to Streamlit as max_upload_size
MAX_BYTES = MAX_UPLOAD_MB * MB
MAX_PIXELS = 120_000_000  # a 108 MP phone photo fits; a decompression bomb does not
# Pillow refuses images over its own limit (89.5 MP by default) before Shelf's check runs: make them the same.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
MAX_NAME_LENGTH = 120


class ImageError(ValueError):
    """An upload that cannot be used as a photo. `str()` is a message fit for the user."""

    def __init__(self, filename: str, problem: str):
        self.filename = filename
        self.problem = problem
        super().__init__(f"{filename}: {problem}")


class Skipped(ImageError):
    """A photo that was read but that this run leaves out (the box file has no boxes for it)."""


@dataclass(frozen=True)
class DecodedImage:
    name: str  # display name only; never used as a path
    sha256: str  # of the original bytes: identifies the photo
    image: Image.Image  # RGB, EXIF orientation applied
    format: str
    n_bytes: int
    full_size: tuple[int, int] | None = None  # set when `image` was decoded at a reduced scale (JPEG draft)

    @property
    def width(self) -> int:  # of the photo itself (boxes are in these pixels), even when `image` is reduced
        return self.full_size[0] if self.full_size else self.image.width

    @property
    def height(self) -> int:
        return self.full_size[1] if self.full_size else self.image.height

    @property
    def scale(self) -> float:
        """The decoded image's size relative to the photo's: 1, or the M/8 of a JPEG draft (its size is rounded up
        to whole pixels; the IDCT's scale is exact)."""
        return round(8 * self.image.width / self.width) / 8 if self.full_size else 1.0


def stem_and_suffix(name: str) -> tuple[str, str]:
    """'shelf0.jpg' -> ('shelf0', '.jpg') for a cleaned name, which may hold a slash ('<b>x</b>.jpg')."""
    stem, dot, suffix = name.rpartition(".")
    return (stem, dot + suffix) if stem and "/" not in suffix else (name, "")


def renamed_for_export(name: str, sha256: str) -> str:
    """How exports name a photo whose name another photo in the export shares: 'shelf0-d389a26e.jpg'."""
    stem, suffix = stem_and_suffix(name)
    return f"{stem}-{sha256[:8]}{suffix}"


TAG = re.compile(r"(<[^<>]*>)")


def clean_filename(name: str | None) -> str:
    """A file name fit for display and CSV: no directories, no control characters, bounded length. A slash inside
    a tag ('<b>x</b>.jpg') is kept; every other slash or backslash ends a directory name, which is dropped."""
    text = (name or "").replace("\\", "/")
    start, position = 0, 0
    for index, piece in enumerate(TAG.split(text)):  # odd pieces are the tags
        if index % 2 == 0 and "/" in piece:
            start = position + piece.rindex("/") + 1
        position += len(piece)
    base = text[start:]
    # Control/format characters (incl. bidi overrides) go; every kind of space or line separator becomes " ".
    base = "".join(" " if unicodedata.category(ch)[0] == "Z" else ch for ch in base
                   if unicodedata.category(ch)[0] != "C").strip()
    if len(base) > MAX_NAME_LENGTH:
        base = base[: MAX_NAME_LENGTH - 1] + "…"
    return base or "unnamed"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, name: str | None, *, max_bytes: int = MAX_BYTES,
                 max_pixels: int = MAX_PIXELS, reduce_to: int | None = None,
                 draft_eighths: Callable[[int, int], int] | None = None) -> DecodedImage:
    """Decode untrusted bytes. `reduce_to` (for previews only) lets a JPEG decode at 1/2, 1/4 or 1/8 scale as long
    as its long side stays at least that many pixels, which is several times faster than a full decode.
    `draft_eighths(width, height)` (of the upright photo) may return M < 8 to decode a JPEG at M/8 of its size
    (libjpeg's scaled IDCT); the result keeps the photo's own size in `full_size`."""
    filename = clean_filename(name)
    if not data:
        raise ImageError(filename, "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(filename, size_problem(len(data), max_bytes))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except UnidentifiedImageError:
            raise ImageError(filename, "not an image Shelf can read (supported: JPEG, PNG, WebP, BMP, GIF, TIFF, "
                                       "HEIC/HEIF, AVIF)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(filename, "refused: the image claims an enormous size (possible decompression bomb)") \
                from None
        except Exception:  # malformed headers make decoders raise almost anything: say what it means, not which
            raise ImageError(filename, "the file is damaged and cannot be opened: its image header is cut short or "
                                       "corrupt") from None
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(filename, "the image has no pixels")
        if width * height > max_pixels:
            raise ImageError(filename, f"refused: {width}×{height} pixels is over the limit of "
                                       f"{max_pixels / 1e6:.0f} megapixels (possible decompression bomb)")
        fmt = image.format or "unknown"
        full_size = None
        if reduce_to and fmt in ("JPEG", "MPO") and max(width, height) > reduce_to:
            factor = reduce_to / max(width, height)
            image.draft(None, (math.ceil(width * factor), math.ceil(height * factor)))
        elif draft_eighths and fmt in ("JPEG", "MPO"):
            upright = (height, width) if _turned(image) else (width, height)
            image = drafted(image, data, draft_eighths(*upright))
            full_size = upright if image.size != (width, height) else None
        try:
            image.seek(0)  # first frame of animations
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(filename, "refused: possible decompression bomb") from None
        except Exception as exc:
            problem = "truncated" if "truncated" in str(exc).lower() else "corrupt"
            raise ImageError(filename, f"the file is {problem} and cannot be decoded") from None
    try:
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright photo
    except Exception:  # a broken EXIF block should not cost the user the photo
        pass
    try:
        rgb = to_rgb(image)
    except Exception:
        raise ImageError(filename, f"its pixel format ({image.mode}) cannot be converted to RGB") from None
    return DecodedImage(name=filename, sha256=sha256_hex(data), image=rgb, format=fmt, n_bytes=len(data),
                        full_size=full_size)


def drafted(image: Image.Image, data: bytes, eighths: int) -> Image.Image:
    """The JPEG `image` (opened, not yet loaded) set to decode at `eighths`/8 of its size, or as close above as
    can be. Pillow's draft does 1/2, 1/4 and 1/8; the other eighths (a 12 MP photo's grid cells keep 312 px at
    5/8, too few at 1/2) come from simplejpeg, the same libjpeg-turbo, returned decoded with the original's
    metadata (EXIF orientation is applied later, as for any photo). CMYK JPEGs and MPO files stay with Pillow.
    7/8 is not worth it: libjpeg-turbo's 7×7 IDCT has no SIMD, so a 12 MP photo takes 68 ms against 45 at full size
    (6/8: 50 ms, 5/8: 43, 3/8: 24, won back and more on the smaller regions' resizes)."""
    if eighths >= 7:
        return image
    width, height = image.size
    if eighths not in (1, 2, 4) and image.format == "JPEG" and image.mode in ("RGB", "L"):
        size = (math.ceil(width * eighths / 8), math.ceil(height * eighths / 8))
        try:
            import simplejpeg
            pixels = simplejpeg.decode_jpeg(data, "RGB" if image.mode == "RGB" else "GRAY", min_width=size[0],
                                            min_height=size[1])
        except Exception:  # anything libjpeg-turbo's own API refuses, Pillow decodes (at a power of two) below
            pixels = None
        if pixels is not None and pixels.shape[1::-1] == size:
            scaled = Image.fromarray(pixels[..., 0] if image.mode == "L" else pixels, image.mode)
            scaled.info = dict(image.info)
            return scaled
    power = next(p for p in (1, 2, 4, 8) if p >= eighths)
    if power < 8:
        image.draft(None, (width * power // 8, height * power // 8))  # rounded down: Pillow divides by it
    return image


def _turned(image: Image.Image) -> bool:
    """Whether EXIF orientation turns the photo a quarter (5-8), swapping its width and height."""
    try:
        return image.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block: exif_transpose will not turn it either
        return False


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB. Transparency is composited on white, as a viewer shows it."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        image = _wide_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float greyscale → 8-bit, scaled by the range the data can have (not clipped)."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if array.size and np.nanmax(array) <= 1.0 else 255.0
    else:
        top = 65535.0 if array.size and array.max() > 255 else 255.0
    scaled = np.clip(np.nan_to_num(array) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled)
