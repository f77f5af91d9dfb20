"""The photo with its regions drawn on it: boxes and short labels, readable when a 12 MP photo is shown small."""
from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from shelf.regions import Box

PREVIEW_SIDE = 1280
# Distinct, colour-blind-friendly hues (Okabe–Ito, extended); a label's colour is picked by its class index.
PALETTE = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
           (240, 228, 66), (117, 112, 179), (27, 158, 119), (217, 95, 2), (102, 166, 30), (166, 118, 29)]
COLOUR_MODES = ("label", "confidence")


def preview(image: Image.Image, side: int = PREVIEW_SIDE) -> Image.Image:
    """A copy no larger than `side` pixels: enough to read, small enough to keep per photo."""
    small = image.copy()
    small.thumbnail((side, side), Image.BILINEAR)
    return small


def confidence_colour(p: float) -> tuple[int, int, int]:
    """Red below 30 %, amber around 50 %, green from 80 %."""
    p = min(max((p - 0.3) / 0.5, 0.0), 1.0)
    if p < 0.5:
        return (213, int(94 + (180 - 94) * p * 2), 0)
    return (int(213 - 213 * (p - 0.5) * 2), int(180 - 22 * (p - 0.5) * 2), int(115 * (p - 0.5) * 2))


def draw_overlay(image: Image.Image, full_size: tuple[int, int], regions: Sequence[tuple[Box, str, int, float]],
                 colour_by: str = "label") -> Image.Image:
    """Draw numbered boxes with 'n · label p%' on `image` (a preview of a photo of `full_size`).

    `regions` holds (box in full-size pixels, label, class index, probability) in region order."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas, "RGBA")
    scale = canvas.width / full_size[0]
    side = max(canvas.size)
    line = max(2, side // 400)
    font = ImageFont.load_default(size=max(12, side // 45))
    for number, (box, label, class_index, probability) in enumerate(regions, start=1):
        colour = PALETTE[class_index % len(PALETTE)] if colour_by == "label" else confidence_colour(probability)
        x1, y1, x2, y2 = (round(v * scale) for v in box.as_tuple)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colour + (255,), width=line)
        text = _fitting_label(draw, font, number, label, probability, max(x2 - x1, 3 * font.size))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y1 + line  # inside the box's top edge: neighbours in a row never cover each other's tags
        draw.rectangle((x1, ty, x1 + tw + 2 * line, ty + th + 2 * line), fill=colour + (225,))
        dark = sum(colour) / 3 > 140
        draw.text((x1 + line - left, ty + line - top), text, font=font, fill=(0, 0, 0) if dark else (255, 255, 255))
    return canvas


def _fitting_label(draw: ImageDraw.ImageDraw, font, number: int, label: str, probability: float,
                   width: int) -> str:
    """'n label p%' shortened until it fits the box width; at least 'n p%'."""
    tail = f" {probability:.0%}"
    for length in range(min(len(label), 18), min(len(label), 6) - 1, -1):  # a stub of a label helps nobody
        text = f"{number} {label[:length]}{'…' if length < len(label) else ''}{tail}"
        if draw.textlength(text, font=font) <= width:
            return text
    return f"{number}{tail}"


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
