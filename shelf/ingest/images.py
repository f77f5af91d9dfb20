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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, UnidentifiedImageError

from shelf.files import MB, size_problem
from shelf.ingest.memory import DECODES, MAX_DECODE_BYTES, Busy, decoding_cost

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
    if name and name.isascii() and name.isprintable() and not any(ch in name for ch in "/\\<"):
        base = name.strip()  # nothing to drop: no look at each character (a box file names millions of photos)
    else:
        base = _displayable_base(name or "")
    if len(base) > MAX_NAME_LENGTH:
        base = base[: MAX_NAME_LENGTH - 1] + "…"
    return base or "unnamed"


def _displayable_base(name: str) -> str:
    text = name.replace("\\", "/")
    start, position = 0, 0
    for index, piece in enumerate(TAG.split(text)):  # odd pieces are the tags
        if index % 2 == 0 and "/" in piece:
            start = position + piece.rindex("/") + 1
        position += len(piece)
    # Control/format characters (incl. bidi overrides) go; every kind of space or line separator becomes " ".
    return "".join(" " if unicodedata.category(ch)[0] == "Z" else ch for ch in text[start:]
                   if unicodedata.category(ch)[0] != "C").strip()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, name: str | None, *, max_bytes: int = MAX_BYTES,
                 max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES, reduce_to: int | None = None,
                 draft_eighths: Callable[[int, int], int] | None = None) -> DecodedImage:
    """Decode untrusted bytes. `reduce_to` (for previews only) lets a JPEG decode at 1/2, 1/4 or 1/8 scale as long
    as its long side stays at least that many pixels, which is several times faster than a full decode.
    `draft_eighths(width, height)` (of the upright photo) may return M < 8 to decode a JPEG at M/8 of its size
    (libjpeg's scaled IDCT); the result keeps the photo's own size in `full_size`. `max_memory` bounds what the
    decode takes through every conversion (memory.decoding_cost); big decodes take turns (memory.DECODES)."""
    filename = clean_filename(name)
    if not data:
        raise ImageError(filename, "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(filename, size_problem(len(data), max_bytes))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _opened(data, filename, max_pixels)
        width, height = image.size
        fmt = image.format or "unknown"
        exif_follows = fmt == "PNG"  # Pillow reads a PNG's EXIF by loading it: its turn is known only after that
        turn = None if exif_follows else upright_turn(image)
        reduced = bool(reduce_to) and fmt in ("JPEG", "MPO") and max(width, height) > reduce_to
        if reduced:
            factor = reduce_to / max(width, height)
            image.draft(None, (math.ceil(width * factor), math.ceil(height * factor)))
        cost = decoding_cost(image, exif_follows or turn is not None, width * height)  # a draft only lowers it
        if cost > max_memory:
            raise ImageError(filename, f"refused: decoding this {width}×{height} {fmt} image ({image.mode}) would "
                                       f"take {cost / MB:,.0f} MB of memory; the limit is {max_memory / MB:,.0f} MB "
                                       "(possible decompression bomb)")
        full_size = None
        try:
            with DECODES.turn(cost) as reservation:
                if draft_eighths and fmt in ("JPEG", "MPO") and not reduced:
                    upright = (height, width) if turn in QUARTER_TURNS else (width, height)
                    image = drafted(image, data, draft_eighths(*upright))
                    full_size = upright if image.size != (width, height) else None
                _load(image, filename)
                if exif_follows:
                    turn = upright_turn(image)
                rgb = _converted(detached(image), turn, filename)
                reservation.keep(rgb)
        except Busy:
            raise ImageError(filename, "refused for now: other large photos being decoded here hold the memory it "
                                       "needs; try again in a few minutes") from None
    return DecodedImage(name=filename, sha256=sha256_hex(data), image=rgb, format=fmt, n_bytes=len(data),
                        full_size=full_size)


def _opened(data: bytes, filename: str, max_pixels: int) -> Image.Image:
    """The image opened (its header read, nothing decoded) and within the pixel limit, or ImageError."""
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
    return image


def _load(image: Image.Image, filename: str) -> None:
    try:
        image.seek(0)  # first frame of animations
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(filename, "refused: possible decompression bomb") from None
    except Exception as exc:
        problem = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(filename, f"the file is {problem} and cannot be decoded") from None


def _converted(image: Image.Image, turn: Image.Transpose | None, filename: str) -> Image.Image:
    try:
        return upright_rgb(image, turn)
    except Exception:
        raise ImageError(filename, f"its pixel format ({image.mode}) cannot be converted to RGB") from None


def detached(image: Image.Image) -> Image.Image:
    """A loaded image as a plain Image on the same pixels, without its file's decoder: libwebp's canvas and frame
    and libavif's buffers (8 and 5 bytes a pixel) live as long as the ImageFile does, and a photo lives through
    its whole recognition."""
    return image._new(image.im) if isinstance(image, ImageFile.ImageFile) else image


def drafted(image: Image.Image, data: bytes, eighths: int) -> Image.Image:
    """The JPEG `image` (opened, not yet loaded) set to decode at `eighths`/8 of its size, or as close above as
    can be. Pillow's draft does 1/2, 1/4 and 1/8; the other eighths (a 12 MP photo's grid cells keep 312 px at
    5/8, too few at 1/2) come from simplejpeg, the same libjpeg-turbo, returned decoded (EXIF orientation is
    applied after, as for any photo). CMYK JPEGs and MPO files stay with Pillow.
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
            return Image.fromarray(pixels[..., 0] if image.mode == "L" else pixels, image.mode)
    power = next(p for p in (1, 2, 4, 8) if p >= eighths)
    if power < 8:
        image.draft(None, (width * power // 8, height * power // 8))  # rounded down: Pillow divides by it
    return image


# EXIF orientation → the turn that shows the photo upright (as ImageOps.exif_transpose does it)
TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}
QUARTER_TURNS = (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE,
                 Image.Transpose.ROTATE_90)  # they swap width and height
# Where the point (x, y) of a w×h image lands once turned
TURNED_POINT = {Image.Transpose.FLIP_LEFT_RIGHT: lambda x, y, w, h: (w - x, y),
                Image.Transpose.ROTATE_180: lambda x, y, w, h: (w - x, h - y),
                Image.Transpose.FLIP_TOP_BOTTOM: lambda x, y, w, h: (x, h - y),
                Image.Transpose.TRANSPOSE: lambda x, y, w, h: (y, x),
                Image.Transpose.ROTATE_270: lambda x, y, w, h: (h - y, x),
                Image.Transpose.TRANSVERSE: lambda x, y, w, h: (h - y, w - x),
                Image.Transpose.ROTATE_90: lambda x, y, w, h: (y, w - x)}


def upright_turn(image: Image.Image) -> Image.Transpose | None:
    """The turn EXIF orientation asks for, read from the opened file (None: upright already, or a broken EXIF
    block, which should not cost the user the photo)."""
    try:
        return TURNS.get(image.getexif().get(0x0112))
    except Exception:
        return None


BAND_PIXELS = 1 << 20  # converted a band of rows of about this many pixels at a time (memory.BAND_BYTES)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
WHITE = (255, 255, 255)


def upright_rgb(image: Image.Image, turn: Image.Transpose | None = None) -> Image.Image:
    """Any Pillow mode → 8-bit RGB, turned upright. Transparency is composited on white, as a viewer shows it.
    A conversion that needs a step between (transparency, 16/32-bit and float values) or a turn goes a band of
    rows at a time into the one RGB result: the image is never whole in a third mode on the way (an RGBA photo
    would take its 4 bytes a pixel three more times, a 16-bit one 8 bytes a pixel as float64)."""
    if image.mode == "RGB":
        return image if turn is None else image.transpose(turn)
    top = _wide_top(image) if _wide(image) else None
    alpha = image.mode in ALPHA_MODES or image.mode == "P" and image.has_transparency_data
    if turn is None and top is None and not alpha:
        return image.convert("RGB")  # straight into the result: nothing in between
    width, height = image.size
    out = Image.new("RGB", (height, width) if turn in QUARTER_TURNS else (width, height), WHITE if alpha else 0)
    rows = max(1, BAND_PIXELS // width)
    for box in _bands(image, rows):
        band = image if rows >= height else image.crop(box)
        band = _wide_to_8bit(band, top) if top is not None else band
        band = band.convert("RGBA" if alpha else "RGB")
        at = box[:2]
        if turn is not None:
            band = band.transpose(turn)
            corners = [TURNED_POINT[turn](x, y, width, height) for x, y in (box[:2], box[2:])]
            at = (min(x for x, _ in corners), min(y for _, y in corners))
        out.paste(band, at, band if alpha else None)  # over white: the same pixels as alpha_composite gives
    return out


def _bands(image: Image.Image, rows: int) -> Iterator[tuple[int, int, int, int]]:
    for top in range(0, image.height, rows):
        yield 0, top, image.width, min(top + rows, image.height)


def _wide(image: Image.Image) -> bool:
    return image.mode.startswith("I") or image.mode == "F"


def _wide_top(image: Image.Image) -> float:
    """The top of the range a 16/32-bit integer or float greyscale image's data can have, from its largest value
    (read a band at a time): 65535 or 255 for integers, 1 or 255 for floats. NaN is no value."""
    rows = max(1, BAND_PIXELS // image.width)
    largest = np.fmax.reduce([np.fmax.reduce(np.asarray(image.crop(box)), axis=None)
                              for box in _bands(image, rows)])
    if image.mode == "F":
        return 1.0 if largest <= 1.0 else 255.0
    return 65535.0 if largest > 255 else 255.0


def _wide_to_8bit(image: Image.Image, top: float) -> Image.Image:
    """16/32-bit integer and float greyscale → 8-bit, scaled by the range the data can have (not clipped)."""
    array = np.nan_to_num(np.asarray(image, dtype=np.float64), copy=False)
    array *= 255.0 / top
    return Image.fromarray(np.rint(np.clip(array, 0, 255, out=array), out=array).astype(np.uint8))
