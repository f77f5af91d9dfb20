"""Generated shelves of mixed product kinds, for measuring `auto` beyond rows of uniform packs (not a feature).

Each shelf row holds merchandising blocks: a product repeated 1–4 facings side by side, then the next product, of
one of several kinds with their own widths and silhouettes — bottles with shoulders and caps, cans, tall and low
wide boxes, sachets — with empty stretches between some blocks, a price rail with labels on every shelf edge, and
sometimes a row of bags hanging from a rail instead of standing on a shelf. The photo look: a perspective warp
(the camera a little off-centre and tilted), uneven light, blur, sensor noise and JPEG. The true boxes are the
bounds of each product's warped outline, as an annotator would draw them.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from shelf.ingest.regions import Box
from tests.synthetic import _colour

KINDS = ("bottle", "can", "box", "low_box", "sachet")


@dataclass(frozen=True)
class Design:
    """One product's look: its kind, size (fractions of the photo width / of the row's height) and colours."""

    kind: str
    width: float
    height: float
    body: tuple[int, int, int]
    label: tuple[int, int, int]
    mark: tuple[int, int, int]
    cap: tuple[int, int, int]


def _design(rng: random.Random, kind: str) -> Design:
    width, height = {"bottle": (rng.uniform(0.045, 0.07), rng.uniform(0.75, 0.95)),
                     "can": (rng.uniform(0.035, 0.05), rng.uniform(0.35, 0.5)),
                     "box": (rng.uniform(0.08, 0.15), rng.uniform(0.7, 0.92)),
                     "low_box": (rng.uniform(0.11, 0.2), rng.uniform(0.3, 0.45)),
                     "sachet": (rng.uniform(0.04, 0.06), rng.uniform(0.3, 0.45)),
                     "bag": (rng.uniform(0.06, 0.1), rng.uniform(0.55, 0.75))}[kind]
    return Design(kind, width, height, _colour(rng), _colour(rng), _colour(rng), _colour(rng))


def _draw(draw: ImageDraw.ImageDraw, d: Design, box: Box) -> None:
    """A product of design `d` filling `box` (its bounds: a bottle's cap touches the top, its base the bottom)."""
    x1, y1, x2, y2 = box.as_tuple
    w, h = x2 - x1, y2 - y1
    if d.kind == "bottle":
        neck = max(2, w // 3)
        cx = (x1 + x2) // 2
        cap_h, neck_h, shoulder_h = int(h * 0.08), int(h * 0.12), int(h * 0.15)
        draw.rectangle((cx - neck // 2, y1, cx + neck // 2, y1 + cap_h), fill=d.cap)
        draw.rectangle((cx - neck // 2, y1 + cap_h, cx + neck // 2, y1 + cap_h + neck_h), fill=d.body)
        top = y1 + cap_h + neck_h
        draw.polygon([(cx - neck // 2, top), (cx + neck // 2, top), (x2, top + shoulder_h), (x2, y2), (x1, y2),
                      (x1, top + shoulder_h)], fill=d.body)
        draw.rectangle((x1, top + shoulder_h + int(h * 0.15), x2, top + shoulder_h + int(h * 0.4)), fill=d.label)
        draw.ellipse((cx - w // 5, top + shoulder_h + int(h * 0.2), cx + w // 5, top + shoulder_h + int(h * 0.3)),
                     fill=d.mark)
        _round(draw, x1, top + shoulder_h, x2, y2)
        return
    if d.kind == "can":
        draw.rectangle((x1, y1 + 3, x2, y2), fill=d.body)
        draw.rectangle((x1 + 1, y1, x2 - 1, y1 + 3), fill=(190, 190, 195))  # the rim
        draw.rectangle((x1, y1 + int(h * 0.35), x2, y1 + int(h * 0.6)), fill=d.label)
        _round(draw, x1, y1 + 3, x2, y2)
        return
    draw.rectangle(box.as_tuple, fill=d.body, outline=tuple(c // 2 for c in d.body))  # a box's edges catch shadow
    if d.kind == "sachet":
        for x in range(x1, x2, 4):  # a serrated top seal
            draw.polygon([(x, y1 + 4), (x + 2, y1), (x + 4, y1 + 4)], fill=d.label)
        draw.ellipse((x1 + w // 4, y1 + h // 3, x2 - w // 4, y1 + h // 3 + w // 2), fill=d.mark)
        return
    if d.kind == "bag":
        draw.rectangle((x1, y1, x2, y1 + int(h * 0.12)), fill=d.label)  # the header card with its hole
        draw.ellipse((x1 + w // 2 - 4, y1 + 4, x1 + w // 2 + 4, y1 + 12), fill=(60, 60, 60))
        draw.ellipse((x1 + w // 6, y1 + int(h * 0.35), x2 - w // 6, y1 + int(h * 0.75)), fill=d.mark)
        return
    # boxes: a title band, a picture and a few lines of print; the title band stops short of the sides
    draw.rectangle((x1 + w // 10, y1 + int(h * 0.08), x2 - w // 10, y1 + int(h * 0.22)), fill=d.label)
    draw.rectangle((x1 + w // 5, y1 + int(h * 0.35), x2 - w // 5, y1 + int(h * 0.7)), fill=d.mark)
    for k in range(3):
        y = y1 + int(h * (0.76 + 0.06 * k))
        draw.line((x1 + w // 6, y, x2 - w // 6, y), fill=d.label, width=max(1, h // 80))


def _round(draw: ImageDraw.ImageDraw, x1: int, y1: int, x2: int, y2: int) -> None:
    """Darken a cylinder (bottle, can) towards its sides, as light falls on a round product."""
    image = draw._image
    part = np.asarray(image.crop((x1, y1, x2, y2)), dtype=np.float32)
    shade = 1 - 0.4 * np.abs(np.linspace(-1, 1, part.shape[1])) ** 3
    image.paste(Image.fromarray((part * shade[None, :, None]).astype(np.uint8)), (x1, y1))


def _price_rail(draw: ImageDraw.ImageDraw, rng: random.Random, y: int, height: int, width: int) -> None:
    draw.rectangle((0, y, width, y + height), fill=(70, 72, 78))
    x = rng.randint(0, width // 12)
    while x < width - 40:
        w = rng.randint(width // 30, width // 18)
        draw.rectangle((x, y + 2, x + w, y + height - 2), fill=(245, 245, 240))
        draw.rectangle((x + 3, y + height // 3, x + w // 2, y + height // 3 + 3), fill=(30, 30, 30))
        x += w + rng.randint(width // 25, width // 8)


def _standing_row(draw, rng, truth, top: int, floor: int, width: int) -> None:
    x = rng.randint(0, width // 40)
    while True:
        if rng.random() < 0.12:
            x += int(width * rng.uniform(0.05, 0.12))  # an empty stretch
        d = _design(rng, rng.choice(KINDS))
        w, h = max(8, int(width * d.width)), int((floor - top) * d.height)
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
            if x + w > width - 4:
                return
            box = Box(x, floor - h, x + w, floor)
            _draw(draw, d, box)
            truth.append(box)
            x += w + rng.choice([0, 1, 2, 3, 5])
        x += rng.choice([0, 2, 4, 8])


def _hanging_row(draw, rng, truth, top: int, floor: int, width: int) -> None:
    draw.rectangle((0, top, width, top + 6), fill=(150, 150, 155))  # the rail the hooks hang from
    x = rng.randint(4, width // 30)
    while True:
        d = _design(rng, "bag")
        w, h = max(10, int(width * d.width)), int((floor - top) * d.height)
        for _ in range(rng.choice([1, 2, 3])):
            if x + w > width - 4:
                return
            draw.line((x + w // 2, top + 6, x + w // 2, top + 18), fill=(120, 120, 125), width=2)  # the hook
            box = Box(x, top + 16, x + w, top + 16 + h)
            _draw(draw, d, box)
            truth.append(box)
            x += w + rng.randint(3, 10)
        x += rng.randint(0, 12)


def _perspective(image: Image.Image, boxes: list[Box], rng: random.Random) -> tuple[Image.Image, list[Box]]:
    """A mild keystone: the photo taken a little from one side and from below or above."""
    w, h = image.size
    dx, dy = w * rng.uniform(-0.05, 0.05), h * rng.uniform(-0.04, 0.04)
    corners = [(max(0, dx), max(0, dy)), (w - max(0, -dx), max(0, -dy)), (w - max(0, dx), h - max(0, dy)),
               (max(0, -dx), h - max(0, -dy))]  # where the photo's corners go
    target = [(0, 0), (w, 0), (w, h), (0, h)]
    forward = _homography(target, corners)  # source point → output point
    backward = _homography(corners, target)  # Pillow wants output → source
    warped = image.transform((w, h), Image.PERSPECTIVE, tuple(backward.flatten()[:8]), Image.BICUBIC,
                             fillcolor=image.getpixel((0, 0)))

    def moved(b: Box) -> Box:
        points = np.array([[x, y, 1.0] for x, y in ((b.x1, b.y1), (b.x2, b.y1), (b.x1, b.y2), (b.x2, b.y2))])
        out = points @ forward.T
        xs, ys = out[:, 0] / out[:, 2], out[:, 1] / out[:, 2]
        return Box(round(xs.min()), round(ys.min()), round(xs.max()), round(ys.max())).clipped(w, h)
    return warped, [moved(b) for b in boxes]


def _homography(source, target) -> np.ndarray:
    rows = []
    for (x, y), (u, v) in zip(source, target):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.array(rows, dtype=np.float64))
    return vt[-1].reshape(3, 3) / vt[-1][-1]


def _photo_look(image: Image.Image, rng: random.Random) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    h, w = array.shape[:2]
    x, y = np.meshgrid(np.linspace(-1, 1, w), np.linspace(-1, 1, h))
    cx, cy = rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8)  # the brightest spot: a ceiling light
    light = 1.15 - rng.uniform(0.15, 0.4) * ((x - cx) ** 2 + (y - cy) ** 2) / 4
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 4, array.shape)
    array = np.clip(array * light[..., None] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(array).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.3)))


def make_mixed_shelf(seed: int, width: int = 1600, height: int = 1200) -> tuple[Image.Image, list[Box]]:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), _colour(rng, light=True))
    draw = ImageDraw.Draw(image)
    n_rows = rng.randint(3, 5)
    rail = max(12, int(height * rng.uniform(0.025, 0.04)))
    band = height // n_rows
    hanging = rng.randrange(n_rows) if rng.random() < 0.3 else -1
    truth: list[Box] = []
    for row in range(n_rows):
        top, floor = row * band, (row + 1) * band - rail
        if row == hanging:
            _hanging_row(draw, rng, truth, top, floor, width)
        else:
            _standing_row(draw, rng, truth, top + 4, floor, width)
        _price_rail(draw, rng, floor, rail, width)
    image, truth = _perspective(image, truth, rng)
    return _photo_look(image, rng), [b for b in truth if b.width > 4 and b.height > 4]


def mixed_shelf_jpeg(seed: int, width: int = 1600, height: int = 1200) -> tuple[bytes, list[Box]]:
    image, truth = make_mixed_shelf(seed, width, height)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=random.Random(seed).randint(70, 90))
    return buffer.getvalue(), truth
