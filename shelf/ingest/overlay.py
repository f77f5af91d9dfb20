"""The photo with its regions drawn on it: boxes and short labels, readable when a 12 MP photo is shown small."""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from shelf.ingest.regions import Box
from shelf.text import percent

PREVIEW_SIDE = 1280
COLOUR_MODES = ("label", "confidence")
# Paul Tol's "muted" qualitative scheme: nine colours told apart with every kind of colour vision. The labels with
# the most facings in the photo get them, in that order; any further labels share a light grey.
LABEL_PALETTE = [(204, 102, 119), (51, 34, 136), (221, 204, 119), (17, 119, 51), (136, 204, 238), (136, 34, 85),
                 (68, 170, 153), (153, 153, 51), (170, 68, 153)]
OTHER_COLOUR = (187, 187, 187)
# Confidence in three bands, Okabe–Ito vermillion, orange and blue (not red-to-green, which many cannot tell apart).
CONFIDENCE_BANDS = ((0.0, 0.5, "under 50 %", (213, 94, 0)), (0.5, 0.8, "50 – 80 %", (230, 159, 0)),
                    (0.8, 1.01, "80 % and more", (0, 114, 178)))
Region = tuple[Box, str, int, float]  # box in full-size pixels, label, class index, top-1 probability


@dataclass(frozen=True)
class LegendEntry:
    colour: tuple[int, int, int]
    text: str
    count: int


def preview(image: Image.Image, side: int = PREVIEW_SIDE) -> Image.Image:
    """A copy no larger than `side` pixels: enough to read, small enough to keep per photo. Resized straight from
    the photo (thumbnail() would first copy all 12 MP of it), by an integer box reduction then a bilinear resize
    (reducing_gap 1: a 12 MP photo in ~25 ms instead of ~50; the box average is as good an antialias at this
    size)."""
    if max(image.size) <= side:
        return image.copy()
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR, reducing_gap=1.0)


def confidence_colour(p: float) -> tuple[int, int, int]:
    return next(colour for low, high, _, colour in CONFIDENCE_BANDS if low <= p < high)


def colours(regions: Sequence[Region], colour_by: str = "label") -> tuple[list[tuple[int, int, int]],
                                                                         list[LegendEntry]]:
    """The colour of each region, and the legend that explains them."""
    if colour_by == "confidence":
        picked = [confidence_colour(p) for *_, p in regions]
        return picked, [LegendEntry(colour, f"confidence {text}", picked.count(colour))
                        for _, _, text, colour in CONFIDENCE_BANDS]
    counts = Counter((class_index, label) for _, label, class_index, _ in regions)
    ranked = sorted(counts, key=lambda key: (-counts[key], key[0]))
    palette = {key: LABEL_PALETTE[i] for i, key in enumerate(ranked[:len(LABEL_PALETTE)])}
    legend = [LegendEntry(palette[key], f"{key[1]} ({key[0]})", counts[key]) for key in ranked[:len(palette)]]
    rest = ranked[len(palette):]
    if rest:
        legend.append(LegendEntry(OTHER_COLOUR, f"{len(rest)} other labels", sum(counts[k] for k in rest)))
    return [palette.get((class_index, label), OTHER_COLOUR) for _, label, class_index, _ in regions], legend


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on `colour` (relative luminance)."""
    r, g, b = colour
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


GAP_COLOUR = (0, 0, 0)  # gaps: black hatching, unlike any label or confidence colour


def draw_gaps(draw: ImageDraw.ImageDraw, gaps: Sequence[Box], scale: float, line: int) -> None:
    """Empty stretches of shelf: a dashed-looking outline and diagonal hatching, so they read as "nothing here"
    in any colour mode and to every eye."""
    for box in gaps:
        x1, y1, x2, y2 = (round(v * scale) for v in box.as_tuple)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=GAP_COLOUR + (40,), outline=GAP_COLOUR + (255,), width=line)
        step = max(6, 4 * line)
        for offset in range(-(y2 - y1), x2 - x1, step):  # 45° lines clipped to the box
            ax, ay = x1 + max(offset, 0), y1 + max(-offset, 0)
            length = min(x2 - ax, y2 - ay)
            draw.line((ax, ay, ax + length, ay + length), fill=GAP_COLOUR + (200,), width=max(1, line // 2))


PRICE_COLOUR = (0, 158, 115)  # Okabe–Ito bluish green: shelf-edge price labels, apart from every label colour
NO_PRICE_COLOUR = (204, 121, 167)  # Okabe–Ito reddish purple: a label whose price could not be read


def draw_labels(draw: ImageDraw.ImageDraw, labels: Sequence, scale: float, line: int, font) -> None:
    """Shelf-edge price labels (shelf.ingest.prices.ShelfLabel): a green outline with the price read ('?' when
    none could be read, in purple), the tag under the label so the products' tags above stay readable."""
    for label in labels:
        x1, y1, x2, y2 = (round(v * scale) for v in label.box.as_tuple)
        colour = PRICE_COLOUR if label.price is not None else NO_PRICE_COLOUR
        draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=colour + (255,), width=line)
        text = label.price.text() if label.price is not None else "price ?"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * line, bottom - top + 2 * line
        width, height = draw.im.size
        tx, ty = max(0, min(x1, width - tw)), min(y2 + line, height - th)
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=colour + (235,))
        draw.text((tx + line - left, ty + line - top), text, font=font, fill=_ink(colour))


def price_legend(labels: Sequence) -> list[LegendEntry]:
    read = sum(label.price is not None for label in labels)
    return ([LegendEntry(PRICE_COLOUR, "shelf label, price read", read)] if read else []) + \
        ([LegendEntry(NO_PRICE_COLOUR, "shelf label, price unreadable", len(labels) - read)]
         if len(labels) > read else [])


def draw_overlay(image: Image.Image, full_size: tuple[int, int], regions: Sequence[Region],
                 colour_by: str = "label", gaps: Sequence[Box] = (), labels: Sequence = ()) -> Image.Image:
    """Draw numbered boxes with '#n label · p%' tags on `image` (a preview of a photo of `full_size`), the empty
    `gaps` hatched and the shelf-edge price `labels` with their prices. Tags never cover one another (see
    tag_layout); boxes are drawn first, so no outline crosses a tag."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas, "RGBA")
    scale = canvas.width / full_size[0]
    line = max(2, max(canvas.size) // 400)
    draw_gaps(draw, gaps, scale, line)
    draw_labels(draw, labels, scale, line, ImageFont.load_default(size=max(12, max(canvas.size) // 50)))
    boxes = [tuple(round(v * scale) for v in box.as_tuple) for box, *_ in regions]
    picked = colours(regions, colour_by)[0]
    for (x1, y1, x2, y2), colour in zip(boxes, picked):
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colour + (255,), width=line)
    font = ImageFont.load_default(size=tag_font_size(canvas.size, boxes))
    tags = tag_layout(draw, font, boxes, [(label, p) for _, label, _, p in regions], canvas.size, line)
    for (text, (tx1, ty1, tx2, ty2)), colour in zip(tags, picked):
        left, top, _, _ = draw.textbbox((0, 0), text, font=font)
        draw.rectangle((tx1, ty1, tx2 - 1, ty2 - 1), fill=colour + (235,))
        draw.text((tx1 + line - left, ty1 + line - top), text, font=font, fill=_ink(colour))
    return canvas


MIN_TAG_FONT = 10  # px: below this a number no longer reads


def tag_font_size(canvas: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]]) -> int:
    """Large enough to read when a 12 MP photo is shown small (1/50 of its longer side), small enough that the
    widest number ('#120') fits a typical box of a dense shelf, so tags need not spill onto the neighbours'."""
    size = max(12, max(canvas) // 50)
    if not boxes:
        return size
    typical = sorted(x2 - x1 for x1, _, x2, _ in boxes)[len(boxes) // 2]
    widest = ImageFont.load_default(size=100).getlength(f"#{len(boxes)}") / 100  # per pixel of font size
    return max(MIN_TAG_FONT, min(size, int(0.9 * typical / widest)))


def tag_layout(draw: ImageDraw.ImageDraw, font, boxes: Sequence[tuple[int, int, int, int]],
               labels: Sequence[tuple[str, float]], canvas: tuple[int, int], line: int
               ) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Each box's tag text and rectangle (x2/y2 exclusive), inside the picture and clear of the tags placed before
    it: the longest text that fits the box's width ('#n label · p%', then '#n · p%', then '#n'), at the first free
    spot among the box's top and bottom inside corners and just above and below it. A tag with no free spot left
    (a pile of overlapping boxes) goes to its box's top corner as a bare '#n'."""
    taken: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}  # a coarse grid of placed tags
    cell = 4 * (font.size + 2 * line)

    def cells(rect):
        return [(cx, cy) for cx in range(rect[0] // cell, (rect[2] - 1) // cell + 1)
                for cy in range(rect[1] // cell, (rect[3] - 1) // cell + 1)]

    def free(rect) -> bool:
        return not any(rect[0] < o[2] and o[0] < rect[2] and rect[1] < o[3] and o[1] < rect[3]
                       for c in cells(rect) for o in taken.get(c, ()))

    placed = []
    for number, ((x1, y1, x2, y2), (label, probability)) in enumerate(zip(boxes, labels), start=1):
        spot = None
        for text in _tag_texts(draw, font, number, label, probability, x2 - x1 - 2 * line):
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            w, h = right - left + 2 * line, bottom - top + 2 * line
            for tx, ty in ((x1, y1 + line), (x1, y2 - line - h), (x1, y1 - h), (x1, y2)):
                tx, ty = max(0, min(tx, canvas[0] - w)), max(0, min(ty, canvas[1] - h))
                if free((tx, ty, tx + w, ty + h)):
                    spot = (text, (tx, ty, tx + w, ty + h))
                    break
            if spot:
                break
        if spot is None:
            text = f"#{number}"
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            w, h = right - left + 2 * line, bottom - top + 2 * line
            tx, ty = max(0, min(x1, canvas[0] - w)), max(0, min(y1 + line, canvas[1] - h))
            spot = (text, (tx, ty, tx + w, ty + h))
        for c in cells(spot[1]):
            taken.setdefault(c, []).append(spot[1])
        placed.append(spot)
    return placed


def _tag_texts(draw: ImageDraw.ImageDraw, font, number: int, label: str, probability: float, width: int
               ) -> list[str]:
    """The tags that fit `width`, longest first: '#n label · p%' (the label shortened, never to a stub), '#n · p%',
    and always '#n'. The '·' keeps '#3 · 3%' from reading as '#33%'."""
    head, tail = f"#{number} ", f" · {percent(probability)}"
    texts = []
    for length in range(min(len(label), 18), min(len(label), 5) - 1, -1):  # a stub of a label helps nobody
        text = f"{head}{label[:length]}{'…' if length < len(label) else ''}{tail}"
        if draw.textlength(text, font=font) <= width:
            texts.append(text)
            break
    short = f"#{number}{tail}"
    return texts + ([short] if draw.textlength(short, font=font) <= width else []) + [f"#{number}"]


def draw_legend(entries: Sequence[LegendEntry], width: int = 320, font_size: int = 18) -> Image.Image:
    """The legend as a picture: a swatch and 'label (class) · n' per line."""
    font = ImageFont.load_default(size=font_size)
    pitch = round(font_size * 1.6)
    legend = Image.new("RGB", (width, pitch * len(entries) + font_size), (255, 255, 255))
    draw = ImageDraw.Draw(legend)
    for row, entry in enumerate(entries):
        y = font_size // 2 + row * pitch
        draw.rectangle((8, y, 8 + font_size, y + font_size), fill=entry.colour, outline=(90, 90, 90))
        text = f"{entry.text} · {entry.count}"
        while draw.textlength(text, font=font) > width - font_size - 24 and len(text) > 4:
            text = text[:-2] + "…"
        draw.text((font_size + 16, y), text, font=font, fill=(31, 41, 51))
    return legend


def gap_legend(gaps: Sequence[Box], labels: Sequence = ()) -> list[LegendEntry]:
    """The legend's lines for what is not a product: empty shelf, and shelf-edge price labels."""
    return ([LegendEntry(GAP_COLOUR, "empty shelf (hatched)", len(gaps))] if gaps else []) + price_legend(labels)


def annotated(image: Image.Image, full_size: tuple[int, int], regions: Sequence[Region],
              colour_by: str = "label", gaps: Sequence[Box] = (), labels: Sequence = ()) -> Image.Image:
    """The overlay with its legend beside it, in one picture (what "Download annotated PNG" gives)."""
    overlay = draw_overlay(image, full_size, regions, colour_by, gaps, labels)
    legend = draw_legend(colours(regions, colour_by)[1] + gap_legend(gaps, labels),
                         font_size=max(14, max(overlay.size) // 60))
    both = Image.new("RGB", (overlay.width + legend.width, max(overlay.height, legend.height)), (255, 255, 255))
    both.paste(overlay, (0, 0))
    both.paste(legend, (overlay.width, 0))
    return both


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


FOUND_COLOUR, TRUE_COLOUR = (0, 114, 178), (230, 159, 0)  # Okabe–Ito blue and orange: apart for every eye


def draw_comparison(image: Image.Image, full_size: tuple[int, int], found: Sequence[Box], truth: Sequence[Box],
                    matches: Sequence[tuple[int, int]]) -> Image.Image:
    """Found boxes in blue, true boxes in orange on a preview of a photo of `full_size`; a found box that matches
    no true box, and a true box that no found box matches, are also tinted, so misses stand out."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas, "RGBA")
    scale = canvas.width / full_size[0]
    line = max(2, max(canvas.size) // 400)
    matched_found, matched_truth = {i for i, _ in matches}, {j for _, j in matches}
    for boxes, colour, matched, inset in ((truth, TRUE_COLOUR, matched_truth, 0),
                                          (found, FOUND_COLOUR, matched_found, line)):
        for index, box in enumerate(boxes):
            x1, y1, x2, y2 = (round(v * scale) for v in box.as_tuple)
            fill = None if index in matched else colour + (90,)
            draw.rectangle((x1 + inset, y1 + inset, max(x1 + inset, x2 - 1 - inset), max(y1 + inset, y2 - 1 - inset)),
                           outline=colour + (255,), width=line, fill=fill)
    return canvas
