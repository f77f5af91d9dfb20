"""What decoding a photo costs in memory, and the process-wide budget that big decodes share.

A file's size says nothing about its decoded size: a 90 kB GIF or a 5 kB WebP can hold 120 megapixels. What a
decode takes is the pixels times the bytes per pixel of every buffer alive at once: the codec's own (libwebp keeps
a canvas and hands Pillow a copy of the frame), Pillow's image in the file's own mode, and the RGB result of the
conversion. `decoding_cost` adds them up per format and mode (the figures are measured by
`python -m benchmarks.hostile`), so a photo is refused for what decoding it would take, not for its pixel count
alone.

`DecodeMemory` lets the decodes of one process hold at most `limit` bytes at once: a decode over `BIG` bytes waits
until the big photos other threads decoded are gone (their reservation lasts as long as the decoded image does),
so two 120 MP photos posted at once are decoded one after the other.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import threading
import weakref
from collections.abc import Iterator

from PIL import Image

from shelf.files import MB

MAX_DECODE_BYTES = 900 * MB  # a 108 MP phone photo turned upright (two images of 432 MB at once) fits
BIG = 100 * MB  # decodes above this take their turn in DecodeMemory (a 24 MP RGB photo is 96 MB)
WAIT_SECONDS = 300.0  # longest a big decode waits for the memory other big photos hold

# Pillow's own storage, in bytes a pixel. Every mode not listed takes 4: RGB too (Pillow pads it to RGBX), LA, I, F.
MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
RGB_BYTES = 4
# The codec's buffers besides Pillow's image while a frame loads, in bytes a pixel (measured, with a margin):
# libwebp's canvas, its decoded frame and the copy handed to Pillow (16.2 in all); libavif's YUV planes, its RGB
# conversion and the copy (13.4 for 8-bit 4:4:4 with alpha, more for 10 and 12 bits); libheif's planes and output
# (11.9 for 16-bit RGBA).
CODEC_BYTES = {"WEBP": 13, "AVIF": 16, "HEIF": 10}
PROGRESSIVE_JPEG_BYTES = 6  # libjpeg's coefficient buffers for a progressive JPEG (4:4:4), a pixel of the full photo
BAND_BYTES = 32 * MB  # what converting one band of rows (images.BAND_PIXELS) holds besides the two images


def mode_bytes(mode: str) -> int:
    return MODE_BYTES.get(mode, 4)


def decoding_cost(image: Image.Image, turned: bool, full_pixels: int) -> int:
    """Peak bytes that loading `image` (opened, not loaded; drafted if it will be) and making it upright RGB take.
    The codec's buffers are gone before the conversion starts (images.detached); the image in its own mode is
    not. `full_pixels`: the photo's own pixel count (a progressive JPEG keeps coefficients for all of them even
    when drafted)."""
    pixels = image.width * image.height
    native = pixels * mode_bytes(image.mode)
    loading = native + pixels * CODEC_BYTES.get(image.format or "", 0)
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        loading += full_pixels * PROGRESSIVE_JPEG_BYTES
    converting = native
    if image.mode != "RGB":
        converting += pixels * RGB_BYTES + BAND_BYTES
    elif turned:
        converting += pixels * RGB_BYTES
    return max(loading, converting)


def image_bytes(image: Image.Image) -> int:
    return image.width * image.height * mode_bytes(image.mode)


class Busy(Exception):
    """A big decode waited WAIT_SECONDS and the memory was still held by other big photos."""


class DecodeMemory:
    """The bytes big decodes of this process hold, by reservation. A thread never waits for its own reservations
    (it would wait forever), only for other threads'."""

    def __init__(self, limit: int = MAX_DECODE_BYTES):
        self.limit = limit
        self.held: dict[int, tuple[int, int]] = {}  # reservation → (owner thread, bytes)
        self.changed = threading.Condition(threading.RLock())  # re-entrant: a finalizer may run inside wait_for
        self.numbers = itertools.count()

    def others(self, thread: int) -> int:
        return sum(n for owner, n in self.held.values() if owner != thread)

    @property
    def in_use(self) -> int:
        with self.changed:
            return sum(n for _, n in self.held.values())

    @contextlib.contextmanager
    def turn(self, n_bytes: int, timeout: float | None = None) -> Iterator[Reservation]:
        """Reserve `n_bytes` (waiting for other threads' big photos to go), for the decode inside the block; the
        block ends with `keep(image)` to hold the image's own bytes for as long as it lives. Raises Busy."""
        reservation = Reservation(self, None)
        if n_bytes > BIG:
            me = threading.get_ident()
            with self.changed:
                if not self.changed.wait_for(lambda: self.others(me) + n_bytes <= self.limit,
                                             WAIT_SECONDS if timeout is None else timeout):
                    raise Busy()
                reservation.number = next(self.numbers)
                self.held[reservation.number] = (me, n_bytes)
            give_back_freed_memory()
        try:
            yield reservation
        finally:
            reservation.settle()

    def release(self, number: int) -> None:
        with self.changed:
            self.held.pop(number, None)
            self.changed.notify_all()


class Reservation:
    def __init__(self, memory: DecodeMemory, number: int | None):
        self.memory, self.number, self.kept = memory, number, None

    def keep(self, image: Image.Image) -> None:
        self.kept = image

    def settle(self) -> None:
        """What the decode reserved shrinks to its result's bytes, given back when the result is gone; all of it
        when the decode failed."""
        if self.number is None:
            return
        memory, number, kept = self.memory, self.number, self.kept
        self.kept = None
        if kept is None or image_bytes(kept) <= BIG:
            memory.release(number)
            return
        with memory.changed:
            owner, _ = memory.held[number]
            memory.held[number] = (owner, image_bytes(kept))
            memory.changed.notify_all()
        weakref.finalize(kept, memory.release, number)


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: its allocator returns memory in its own way
        return None


MALLOC_TRIM = _malloc_trim()


def give_back_freed_memory() -> None:
    """Hand the pages of freed images back to the system before a big decode. glibc keeps what another thread's
    arena freed for that arena: without this, two big photos decoded one after the other by two threads of a
    server take the memory of both."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


DECODES = DecodeMemory()
