"""Generated shelf photos with price labels on the shelf edges and their ground truth, for the price tests and
benchmarks/prices.py (not a feature).

Each shelf row holds groups of facings of one product; a label sits on the shelf edge under each group (left-aligned,
as most chains hang them): a product name line, the price in big print and often a unit price line. Labels vary
as they do in stores: font (DejaVu and, where installed, Liberation), size, paper colour, decimal point or comma,
currency before or after, raised cents (1⁹⁹), multi-buys (2 for 3.00), a red price. The photo then gets what a
phone adds: slight rotation (tilt), blur, lighting gradient, glare spots and noise; some labels are partly hidden
behind an overhanging pack.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from shelf.ingest.prices import Price
from shelf.ingest.regions import Box
from tests.synthetic import _colour, _draw_product, _photo_look, _rotate

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
PRICE_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSansCondensed-Bold.ttf", "DejaVuSerif-Bold.ttf",
               "DejaVuSansMono-Bold.ttf", "DejaVuSans.ttf", "LiberationSans-Bold.ttf", "LiberationSansNarrow-Bold.ttf",
               "LiberationSerif-Bold.ttf")
NAME_FONT = "DejaVuSans.ttf"
NAMES = ("Cola Zero 1.5 L", "Orange juice 1 L", "Crisps paprika", "Oat biscuits", "Mineral water", "Tomato soup",
         "Green tea 20 bags", "Pasta fusilli", "Dish soap lemon", "Espresso beans", "Rice 1 kg", "Apple cider")


def fonts_available() -> list[str]:
    """The label fonts installed here (DejaVu ships with Debian's base image; Liberation comes with Chromium)."""
    return [name for name in PRICE_FONTS if any((d / name).is_file() for d in FONT_DIRS)]


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = next(d / name for d in FONT_DIRS if (d / name).is_file())
    return ImageFont.truetype(str(path), size)


@dataclass
class TrueLabel:
    box: Box  # in the photo's pixels (after rotation)
    price: Price  # what the label's main price says
    printed: str  # how it was printed, e.g. "1,99 €", "1⁹⁹", "2 for 3.00"
    facings: list[int]  # indices into the photo's facings: the group the label belongs to
    style: dict = field(default_factory=dict)  # font, size, hidden, glare … for reports


@dataclass
class LabelledShelf:
    image: Image.Image
    facings: list[tuple[int, Box]]  # (product design, box)
    labels: list[TrueLabel]

    def jpeg(self, quality: int = 90) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()


def random_price(rng: random.Random) -> Price:
    if rng.random() < 0.1:
        quantity = rng.choice([2, 3, 4])
        return Price(Decimal(rng.choice([3, 4, 5, 6, 10])) + Decimal(rng.choice([0, 0, 50, 99])) / 100, quantity)
    cents = rng.choice([rng.randint(19, 999), rng.randint(100, 2999), rng.randint(1000, 9999)])
    if rng.random() < 0.5:
        cents = cents // 10 * 10 + 9  # x.x9 pricing
    return Price(Decimal(cents) / 100)


def _style(rng: random.Random, fonts: list[str]) -> dict:
    return {"font": rng.choice(fonts), "decimal": rng.choice([".", ","]),
            "currency": rng.choice(["", "", "€", "€ after", "$", "£"]), "raised": rng.random() < 0.2,
            "paper": rng.choice([(250, 250, 246), (250, 250, 246), (255, 226, 60), (246, 246, 250)]),
            "ink": (200, 20, 30) if rng.random() < 0.15 else (15, 15, 15), "unit_line": rng.random() < 0.6,
            "scale": rng.uniform(0.8, 1.15)}


def _printed_parts(price: Price, style: dict) -> tuple[str, str, str]:
    """(before, big figure, raised cents or "") as the label prints them."""
    whole, cents = divmod(int(price.amount * 100), 100)
    currency = style["currency"]
    sign, after = (currency, "") if currency in ("€", "$", "£") else ("", " €" if currency == "€ after" else "")
    if price.quantity > 1:
        return f"{price.quantity} for ", f"{sign}{whole}{style['decimal']}{cents:02d}{after}", ""
    if style["raised"]:
        return "", f"{sign}{whole}", f"{cents:02d}"
    return "", f"{sign}{whole}{style['decimal']}{cents:02d}{after}", ""


def draw_label(canvas: Image.Image, x: int, y: int, height: int, price: Price, name: str, style: dict,
               max_width: int) -> tuple[Box, str]:
    """A label with its top-left corner at (x, y), `height` px tall; returns its box and the price as printed."""
    draw = ImageDraw.Draw(canvas)
    big = _font(style["font"], max(10, int(height * 0.5 * style["scale"])))
    small = _font(NAME_FONT, max(8, int(height * 0.13)))
    before, figure, raised = _printed_parts(price, style)
    cents_font = _font(style["font"], max(8, int(big.size * 0.5)))
    lead = draw.textlength(before, font=big) if before else 0
    width = int(lead + draw.textlength(figure, font=big) + (draw.textlength(raised, font=cents_font) + 4
                                                             if raised else 0)) + int(height * 0.3)
    width = min(max(width, int(height * 1.6)), max_width)
    draw.rectangle((x, y, x + width, y + height), fill=style["paper"], outline=(150, 150, 150))
    pad = max(2, height // 14)
    draw.text((x + pad, y + pad), name, font=small, fill=(40, 40, 40))
    top = y + int(height * 0.22)
    draw.text((x + pad, top), before + figure, font=big, fill=style["ink"])
    if raised:
        left = x + pad + draw.textlength(before + figure, font=big) + 2
        draw.text((left, top + int(big.size * 0.08)), raised, font=cents_font, fill=style["ink"])
    if style["unit_line"]:
        per = (price.each * Decimal(rng_unit_factor(name))).quantize(Decimal("0.01"))
        unit_text = f"{per:.2f}".replace(".", style["decimal"]) + " / kg"
        draw.text((x + pad, y + height - pad - small.size), unit_text, font=small, fill=(60, 60, 60))
    printed = before + figure + ("".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(d)] for d in raised))
    return Box(x, y, x + width, y + height), printed


def rng_unit_factor(name: str) -> float:
    return 1 + (sum(map(ord, name)) % 7) / 3  # some unit price: not what the test reads


def _glare(image: Image.Image, rng: random.Random, spots: int) -> None:
    """Bright soft spots, as a ceiling light leaves on glossy labels."""
    for _ in range(spots):
        w, h = image.size
        r = int(min(w, h) * rng.uniform(0.03, 0.08))
        cx, cy = rng.randint(0, w), rng.randint(0, h)
        spot = Image.new("L", (2 * r, 2 * r), 0)
        ImageDraw.Draw(spot).ellipse((r // 3, r // 3, 2 * r - r // 3, 2 * r - r // 3),
                                     fill=int(255 * rng.uniform(0.45, 0.75)))
        spot = spot.filter(ImageFilter.GaussianBlur(r / 3))
        white = Image.new("RGB", spot.size, (255, 255, 250))
        region = image.crop((cx - r, cy - r, cx + r, cy + r))
        image.paste(Image.composite(white, region, spot), (cx - r, cy - r))


def make_labelled_shelf(seed: int, width: int = 4000, height: int = 3000, rows: list[list[int | None]] | None = None,
                        prices: dict[int, Price] | None = None, without_label: set[int] = frozenset(),
                        tilt_degrees: float = 1.5, hidden_share: float = 0.1, glare_spots: int = 3,
                        blur: tuple[float, float] = (0.4, 1.2)) -> LabelledShelf:
    """A shelf with labelled facings. `rows`: each row's slots (a product design, or None for an empty stretch);
    random when not given. `prices`: a design's price (random otherwise); designs in `without_label` get none."""
    rng = random.Random(seed)
    fonts = fonts_available()
    if not fonts:
        raise RuntimeError(f"no label fonts in {', '.join(map(str, FONT_DIRS))}: install fonts-dejavu-core")
    image = Image.new("RGB", (width, height), _colour(rng, light=True))
    draw = ImageDraw.Draw(image)
    rows = rows or [_random_row(rng) for _ in range(rng.randint(3, 5))]
    band = height // len(rows)
    board = int(band * rng.uniform(0.16, 0.2))  # the shelf edge the labels hang on
    board_colour = tuple(rng.randint(60, 130) for _ in range(3))
    facings: list[tuple[int, Box]] = []
    planned: list[tuple[Box, Price, str, list[int], dict]] = []
    hidden: list[Box] = []
    for r, slots in enumerate(rows):
        floor = (r + 1) * band - board
        draw.rectangle((0, floor, width, floor + board), fill=board_colour)
        slot = (width - 8) // len(slots)
        i = 0
        while i < len(slots):
            design = slots[i]
            j = i
            while j < len(slots) and slots[j] == design:
                j += 1
            if design is not None:
                group = []
                for k in range(i, j):
                    h = int((band - board) * (0.8 if prices is not None else rng.uniform(0.55, 0.9)))
                    box = Box(4 + k * slot, floor - h, 4 + (k + 1) * slot - 3, floor)
                    _draw_product(draw, box, random.Random(10_000 + design))
                    group.append(len(facings))
                    facings.append((design, box))
                if design not in without_label:
                    price = (prices or {}).get(design) or random_price(rng)
                    style = _style(rng, fonts)
                    label_height = int(board * rng.uniform(0.7, 0.85))
                    x = 4 + i * slot + rng.randint(0, max(1, slot // 10))
                    y = floor + (board - label_height) // 2
                    box, printed = draw_label(image, x, y, label_height, price, NAMES[design % len(NAMES)], style,
                                              max_width=(j - i) * slot - 8)
                    if rng.random() < hidden_share:
                        share = rng.uniform(0.12, 0.25)  # a pack hangs over the label's right-hand end
                        cover = Box(box.x2 - int(box.width * share), box.y1 - 2, box.x2 + 4, box.y2 + 2)
                        draw.rectangle(cover.as_tuple, fill=_colour(rng))
                        style = {**style, "hidden": round(share, 2)}
                        hidden.append(cover)
                    planned.append((box, price, printed, group, style))
            i = j
    if glare_spots:
        _glare(image, rng, glare_spots)
    angle = rng.uniform(-tilt_degrees, tilt_degrees)
    boxes = [b for _, b in facings] + [p[0] for p in planned]
    image, moved = _rotate(image, boxes, angle)
    facings = [(design, box) for (design, _), box in zip(facings, moved)]
    labels = [TrueLabel(box, price, printed, group, {**style, "tilt": round(angle, 2)})
              for (_, price, printed, group, style), box in zip(planned, moved[len(facings):])]
    image = _photo_look(image, rng).filter(ImageFilter.GaussianBlur(rng.uniform(*blur)))
    return LabelledShelf(image, facings, labels)


def _random_row(rng: random.Random) -> list[int | None]:
    """8–14 slots in groups of 1–4 facings of one product, now and then an empty stretch."""
    slots: list[int | None] = []
    n = rng.randint(8, 14)
    while len(slots) < n:
        if rng.random() < 0.08:
            slots.append(None)
            continue
        design = rng.randint(0, 40)
        if slots and slots[-1] == design:
            continue
        slots += [design] * rng.randint(1, 4)
    return slots[:n]
