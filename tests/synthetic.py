"""Synthetic shelf photos with ground-truth product boxes, for tests and the regions benchmark (not a feature).

A pale back wall, 3–5 shelf boards, and on each board a row of product-like boxes of varied width, height, colour and
print (a label band, stripes, a logo disc), with occasional empty gaps; then a small rotation, lighting gradient,
sensor noise and JPEG compression as a phone photo would have.
"""
from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from shelf.ingest.regions import Box


def _colour(rng: random.Random, light: bool = False) -> tuple[int, int, int]:
    if light:
        return tuple(rng.randint(200, 240) for _ in range(3))
    hue = rng.random()
    r, g, b = (abs((hue * 6 + k) % 6 - 3) - 1 for k in (0, 4, 2))
    base = rng.uniform(0.35, 0.9)
    return tuple(int(255 * base * min(1, max(0.15, c))) for c in (r, g, b))


def _draw_product(draw: ImageDraw.ImageDraw, box: Box, rng: random.Random) -> None:
    body = _colour(rng)
    draw.rectangle(box.as_tuple, fill=body)
    w, h = box.x2 - box.x1, box.y2 - box.y1
    if rng.random() < 0.8:  # a label band across the middle
        top = box.y1 + int(h * rng.uniform(0.25, 0.5))
        draw.rectangle((box.x1 + 2, top, box.x2 - 2, top + int(h * rng.uniform(0.15, 0.3))), fill=_colour(rng))
    for _ in range(rng.randint(0, 4)):  # stripes of print
        y = box.y1 + int(h * rng.uniform(0.05, 0.95))
        draw.line((box.x1 + int(w * 0.15), y, box.x2 - int(w * 0.15), y), fill=_colour(rng), width=max(1, h // 60))
    if rng.random() < 0.5:  # a logo
        r = int(min(w, h) * rng.uniform(0.12, 0.25))
        cx, cy = box.x1 + w // 2, box.y1 + int(h * 0.3)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(rng))


def make_shelf(seed: int, width: int = 1600, height: int = 1200, tilt_degrees: float = 1.5
               ) -> tuple[Image.Image, list[Box]]:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), _colour(rng, light=True))
    draw = ImageDraw.Draw(image)
    n_rows = rng.randint(3, 5)
    board = max(6, int(height * rng.uniform(0.02, 0.035)))
    board_colour = tuple(rng.randint(60, 130) for _ in range(3))
    top_margin = int(height * rng.uniform(0.0, 0.05))
    band = (height - top_margin) // n_rows
    truth: list[Box] = []
    for row in range(n_rows):
        floor = top_margin + (row + 1) * band - board  # top of this row's board
        draw.rectangle((0, floor, width, floor + board), fill=board_colour)
        x = int(width * rng.uniform(0.0, 0.03))
        while True:
            if rng.random() < 0.12:
                x += int(width * rng.uniform(0.04, 0.10))  # an empty facing
            w = int(width * rng.uniform(0.045, 0.11))
            if x + w > width - 4:
                break
            h = int((band - board) * rng.uniform(0.45, 0.92))
            box = Box(x, floor - h, x + w, floor)
            _draw_product(draw, box, rng)
            truth.append(box)
            x += w + rng.choice([0, 0, 1, 2, 4, 8])
    angle = rng.uniform(-tilt_degrees, tilt_degrees)
    image, truth = _rotate(image, truth, angle)
    return _photo_look(image, rng), truth


def _rotate(image: Image.Image, boxes: list[Box], degrees: float) -> tuple[Image.Image, list[Box]]:
    """Rotate about the centre (PIL: counter-clockwise); boxes become the bounds of their rotated corners."""
    rotated = image.rotate(degrees, resample=Image.BICUBIC, fillcolor=image.getpixel((0, 0)))
    cx, cy = image.width / 2, image.height / 2
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    moved = []
    for b in boxes:
        xs, ys = [], []
        for x, y in ((b.x1, b.y1), (b.x2, b.y1), (b.x1, b.y2), (b.x2, b.y2)):
            dx, dy = x - cx, y - cy
            xs.append(cx + dx * c + dy * s)
            ys.append(cy - dx * s + dy * c)
        moved.append(Box(max(0, round(min(xs))), max(0, round(min(ys))), min(image.width, round(max(xs))),
                         min(image.height, round(max(ys)))))
    return rotated, moved


def _photo_look(image: Image.Image, rng: random.Random) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    h, w = array.shape[:2]
    gradient = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.15), w, dtype=np.float32)[None, :, None]
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 4, array.shape).astype(np.float32)
    array = np.clip(array * gradient + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(array).filter(ImageFilter.GaussianBlur(0.6))


def shelf_jpeg(seed: int, width: int = 1600, height: int = 1200, quality: int = 88) -> tuple[bytes, list[Box]]:
    image, truth = make_shelf(seed, width, height)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), truth


def make_product(sku: int, view: int, size: int = 224) -> Image.Image:
    """One photo of product `sku` (a distinct package design per SKU), seen as view `view`: another crop, light,
    blur and slight rotation, as repeated shelf photos of the same product look."""
    design = random.Random(10_000 + sku)
    package = Image.new("RGB", (160, 240), _colour(design))
    draw = ImageDraw.Draw(package)
    _draw_product(draw, Box(0, 0, 160, 240), design)
    for _ in range(design.randint(2, 5)):  # a few extra marks that make the design its own
        x, y = design.randint(0, 140), design.randint(0, 220)
        draw.rectangle((x, y, x + design.randint(8, 40), y + design.randint(4, 20)), fill=_colour(design))
    rng = random.Random(sku * 1_000 + view)
    background = Image.new("RGB", (size, size), _colour(rng, light=True))
    scale = rng.uniform(0.75, 0.95)
    w, h = int(size * scale * 160 / 240), int(size * scale)
    turned = package.resize((w, h), Image.BILINEAR).rotate(rng.uniform(-8, 8), expand=True,
                                                            fillcolor=background.getpixel((0, 0)))
    background.paste(turned, ((size - turned.width) // 2 + rng.randint(-10, 10),
                              (size - turned.height) // 2 + rng.randint(-10, 10)))
    array = np.asarray(background, dtype=np.float32) * rng.uniform(0.75, 1.2)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def make_planned_shelf(rows: list[list[int | None]], width: int = 1600, height: int = 1200, seed: int = 0
                       ) -> tuple[Image.Image, list[tuple[int, Box]], list[Box]]:
    """A shelf laid out to plan: each row a list of slots of equal width, each slot a product design (the same
    number, the same package) or None for an empty stretch of shelf. Returns the photo, (design, box) of every
    facing and the box of every gap (spanning its row's product height), for tests with known products and gaps."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (226, 222, 214))
    draw = ImageDraw.Draw(image)
    band, board = height // len(rows), max(6, height // 40)
    facings, gaps = [], []
    for r, slots in enumerate(rows):
        floor = (r + 1) * band - board
        draw.rectangle((0, floor, width, floor + board), fill=(95, 80, 70))
        slot = (width - 8) // len(slots)
        top = floor - int((band - board) * 0.8)
        for i, design in enumerate(slots):
            box = Box(4 + i * slot, top, 4 + (i + 1) * slot - 3, floor)
            if design is None:
                gaps.append(box)
                continue
            _draw_product(draw, box, random.Random(10_000 + design))
            facings.append((design, box))
    return _photo_look(image, rng), facings, gaps
