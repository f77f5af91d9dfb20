"""auto on shelves of mixed product kinds, each test a shelf built for one behaviour that went wrong before
(benchmarks/regions_why.py put the misses down to these causes)."""
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from shelf.ingest.auto import AutoParams, _halves_joined, _without_fixture_ends, auto_regions
from shelf.ingest.evaluation import greedy_matches
from shelf.ingest.regions import Box
from tests.mixed_shelves import Design, _draw, _price_rail

WIDTH, HEIGHT = 1600, 1200
WALL = (226, 222, 232)
RAIL = 36


@dataclass(frozen=True)
class PlainBandPack:
    """A cigarette-like pack with a plain band of the wall's colour across it, between its picture and its
    warning text (a white pack on a white wall shows only its print)."""

    width: float = 0.07
    height: float = 0.85
    picture: tuple[int, int, int] = (40, 60, 150)

    def paint(self, draw: ImageDraw.ImageDraw, box: Box) -> None:
        x1, y1, x2, y2 = box.as_tuple
        h = y2 - y1
        draw.rectangle(box.as_tuple, fill=WALL)
        draw.rectangle((x1, y1 + int(0.03 * h), x2, y1 + int(0.45 * h)), fill=self.picture)
        draw.rectangle((x1, y1 + int(0.65 * h), x2, y2), fill=(90, 90, 90))  # the warning's band
        for x in range(x1 + 6, x2 - 6, 14):  # the picture's detail and the warning's lettering
            draw.rectangle((x, y1 + int(0.1 * h), x + 5, y1 + int(0.4 * h)), fill=(230, 200, 170))
            draw.rectangle((x, y1 + int(0.72 * h), x + 8, y1 + int(0.92 * h)), fill=(250, 250, 250))


def shelf(rows: list[list[tuple[Design | PlainBandPack, float]]], row_heights: list[float] | None = None
          ) -> tuple[Image.Image, list[Box]]:
    """A photo of shelf rows, each a list of (design, gap after it, of the width) standing on a grey price rail;
    `row_heights` are the rows' shares of the photo's height (equal by default)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), WALL)
    draw, rng, truth = ImageDraw.Draw(image), random.Random(0), []
    shares = row_heights or [1 / len(rows)] * len(rows)
    floor = 0
    for products, share in zip(rows, shares):
        top, floor = floor, floor + int(share * HEIGHT)
        x = 20
        for design, gap in products:
            w, h = int(design.width * WIDTH), int((floor - RAIL - top - 8) * design.height)
            box = Box(x, floor - RAIL - h, x + w, floor - RAIL)
            design.paint(draw, box) if isinstance(design, PlainBandPack) else _draw(draw, design, box)
            truth.append(box)
            x += w + int(gap * WIDTH)
        _price_rail(draw, rng, floor - RAIL, RAIL, WIDTH)
    return image.filter(ImageFilter.GaussianBlur(0.8)), truth


def matched(image: Image.Image, truth: list[Box]) -> tuple[list[Box], int]:
    found = auto_regions(image)
    return found, len(greedy_matches(found, truth))


def test_twin_cans_narrower_than_a_facing_are_cut_apart_and_a_wide_box_stays_whole():
    """Cans 4 % of the photo wide (narrower than the default's narrowest facing, 4.5 %) side by side between
    bottles and a wide box: the cans' common sides run their whole height, so each can is a facing; the box, whose
    print has edges part of its height, stays one facing."""
    red_can = Design("can", 0.04, 0.45, (150, 30, 40), (240, 200, 60), (20, 20, 20), (200, 200, 200))
    green_can = Design("can", 0.04, 0.45, (30, 110, 60), (120, 40, 120), (20, 20, 20), (200, 200, 200))
    bottle = Design("bottle", 0.055, 0.9, (40, 90, 170), (230, 120, 30), (250, 250, 250), (200, 30, 30))
    box = Design("box", 0.12, 0.85, (60, 140, 60), (240, 220, 60), (200, 60, 60), (0, 0, 0))
    row = [(bottle, 0.002), (bottle, 0.002), (red_can, 0.001), (red_can, 0.001), (red_can, 0.001), (red_can, 0.002),
           (box, 0.002), (green_can, 0.001), (green_can, 0.002), (green_can, 0.001), (bottle, 0.002), (box, 0.002),
           (red_can, 0.002), (red_can, 0.002)]
    image, truth = shelf([row, row, row])
    found, hits = matched(image, truth)
    assert hits >= 0.9 * len(truth), f"{hits} of {len(truth)} products found as one facing each ({len(found)} found)"
    assert len(found) <= 1.1 * len(truth)


def test_products_of_the_rails_grey_stand_on_its_upper_edge():
    """Products whose grey level is the price rail's (a blue or red as dark as the grey rail): the rail's upper
    edge shows only as a change of colour, and the boxes must end there, not at the rail's lower edge."""
    blue = Design("box", 0.1, 0.8, (40, 60, 120), (60, 80, 90), (90, 60, 70), (0, 0, 0))
    red = Design("bottle", 0.06, 0.9, (150, 30, 40), (130, 40, 50), (40, 90, 90), (160, 20, 40))
    row = [(blue, 0.01), (red, 0.01), (blue, 0.01), (red, 0.01), (red, 0.01), (blue, 0.01), (blue, 0.01), (red, 0.01),
           (blue, 0.01), (red, 0.01)]
    image, truth = shelf([row, row[::-1], row])
    found, hits = matched(image, truth)
    assert hits >= 0.9 * len(truth)
    pairs = greedy_matches(found, truth)
    assert all(found[i].y2 <= truth[j].y2 + RAIL // 3 for i, j in pairs), "boxes run into the price rail"


def test_low_rows_between_tall_rows_are_all_found():
    """Five shelves of equal spacing holding low products and tall ones in turn: the photo's texture repeats
    every two shelves, the shelf edges every one; every row is found."""
    low = Design("low_box", 0.14, 0.4, (170, 40, 60), (240, 220, 60), (40, 60, 150), (0, 0, 0))
    can = Design("can", 0.05, 0.45, (30, 110, 60), (120, 40, 120), (20, 20, 20), (200, 200, 200))
    tall = Design("box", 0.1, 0.9, (40, 120, 70), (240, 240, 240), (200, 60, 60), (0, 0, 0))
    bottle = Design("bottle", 0.06, 0.9, (40, 90, 170), (230, 120, 30), (250, 250, 250), (200, 30, 30))
    low_row = [(low, 0.01), (can, 0.002), (can, 0.01), (low, 0.01), (low, 0.01), (can, 0.002), (can, 0.01),
               (low, 0.01)]
    tall_row = [(tall, 0.01), (bottle, 0.005), (bottle, 0.01), (tall, 0.01), (tall, 0.01), (bottle, 0.005),
                (bottle, 0.01), (tall, 0.01)]
    image, truth = shelf([low_row, tall_row, low_row, tall_row, low_row])
    found, hits = matched(image, truth)
    assert hits >= 0.9 * len(truth), f"{hits} of {len(truth)} found"


def test_a_pack_with_a_plain_band_of_the_walls_colour_is_boxed_whole():
    """Packs with a plain band of the wall's colour between their picture and their warning text: the box spans
    the pack, not only its picture."""
    packs = [PlainBandPack(picture=colour) for colour in ((40, 60, 150), (30, 120, 60), (150, 110, 30))]
    row = [(packs[k % 3], 0.006) for k in range(12)]
    image, truth = shelf([row, row, row])
    found, hits = matched(image, truth)
    assert hits >= 0.9 * len(truth), f"{hits} of {len(truth)} found"


def test_a_bottles_box_reaches_up_its_neck_to_its_cap():
    """Bottles (a neck a third of their width, a cap on it) beside boxes: each bottle's box starts at its cap."""
    bottles = [Design("bottle", 0.06, 0.9, body, (230, 230, 230), (200, 30, 30), (240, 200, 40))
               for body in ((40, 90, 170), (150, 40, 50), (40, 130, 70))]
    box = Design("box", 0.11, 0.7, (60, 140, 60), (240, 220, 60), (200, 60, 60), (0, 0, 0))
    row = [(bottles[k % 3], 0.003) for k in range(6)] + [(box, 0.01), (box, 0.01)] + \
        [(bottles[k % 3], 0.003) for k in range(4)]
    image, truth = shelf([row, row[::-1], row])
    found = auto_regions(image)
    pairs = greedy_matches(found, truth)
    assert len(pairs) >= 0.9 * len(truth)
    tall = [(found[i], truth[j]) for i, j in pairs if truth[j].height > 0.8 * max(t.height for t in truth)]
    assert tall and all(f.y1 <= t.y1 + 0.06 * t.height for f, t in tall), "a bottle's box starts below its cap"


def test_low_products_at_the_ends_of_a_row_of_tall_ones_are_found():
    """Low boxes at either end of a row of tall boxes: their sides are short beside the row's height, too weak
    for a cut of their own, but the row's ends bound them."""
    low = Design("box", 0.06, 0.35, (70, 150, 60), (230, 60, 160), (120, 40, 140), (0, 0, 0))
    tall = Design("box", 0.11, 0.9, (200, 110, 40), (230, 60, 160), (130, 80, 30), (0, 0, 0))
    row = [(low, 0.002), (low, 0.002), (low, 0.003)] + [(tall, 0.003)] * 6 + [(low, 0.002), (low, 0.002)]
    image, truth = shelf([row, row, row])
    found, hits = matched(image, truth)
    lows = [j for j, t in enumerate(truth) if t.height < 0.5 * max(t.height for t in truth)]
    hit = {j for _, j in greedy_matches(found, truth)}
    assert sum(j in hit for j in lows) >= 0.8 * len(lows), f"{sum(j in hit for j in lows)} of {len(lows)} low"


def _band_with_ends(left_end: tuple[int, int, int], above_left: tuple[int, int, int]) -> tuple[np.ndarray, list[Box]]:
    """A straightened band: six colourful packs standing at 60 % of its height under a wall, a grey block at the
    right end whose colour runs on above it (a cabinet's upright), and at the left end a block of `left_end`
    under `above_left`."""
    rgb = np.zeros((100, 400, 3), np.float32)
    rgb[:] = (225, 222, 230)  # the wall
    boxes = [Box(0, 40, 40, 100)]
    rgb[40:, 0:40] = left_end
    rgb[:40, 0:40] = above_left
    for k in range(6):
        x = 45 + 50 * k
        rgb[40:, x:x + 45] = ((200, 40, 50), (40, 160, 60), (50, 70, 190))[k % 3]
        rgb[60:80, x + 10:x + 35] = (240, 210, 40)  # the print
        boxes.append(Box(x, 40, x + 45, 100))
    rgb[:, 350:400] = (130, 132, 136)  # the upright, the band's whole height
    rgb[::7, 350:400] = (60, 60, 60)  # its slots
    boxes.append(Box(350, 40, 400, 100))
    return rgb, boxes


def test_a_grey_fixture_at_a_rows_end_is_dropped_but_a_white_product_is_kept():
    """Real cabinets' uprights, side panels and empty compartments at the ends of a row were boxed as facings
    (C4_P05's uprights: 7 extra boxes). Such a box is far less colourful than the row's packs and its colour runs
    on above it; a white product at an end is as grey, but its top ends against the wall behind it."""
    rgb, boxes = _band_with_ends(left_end=(245, 245, 245), above_left=(225, 222, 230))  # white product, wall above
    kept = _without_fixture_ends(boxes, rgb, AutoParams())
    assert kept == boxes[:-1], "the upright is a facing, or the white product was dropped"
    rgb, boxes = _band_with_ends(left_end=(30, 30, 32), above_left=(30, 30, 32))  # a black side panel, all the way up
    assert _without_fixture_ends(boxes, rgb, AutoParams()) == boxes[1:-1]
    assert _without_fixture_ends(boxes, rgb, AutoParams(fixture_colour=0)) == boxes  # a profile can switch it off


def test_the_halves_of_a_pack_in_a_rhythmic_row_are_joined_but_two_facings_of_the_rhythm_are_not():
    """On real shelves of uniform packs the cuts sometimes fell inside a pack, at a strong edge of its picture,
    leaving two boxes half a facing wide (C2_P07: 7 such pieces). Two neighbouring cells of about half the row's
    period that together make one, with the same top and bottom, are one pack."""
    params = AutoParams()

    def cells(widths, tops=None):
        x, out = 0, []
        for k, width in enumerate(widths):
            top = tops[k] if tops else 10
            out.append((width, Box(x, top, x + width, 100)))
            x += width
        return out
    row = cells([80, 80, 38, 42, 80, 80])
    joined = _halves_joined(row, period=80.0, height=90, params=params)
    assert [width for width, _ in joined] == [80, 80, 80, 80, 80]
    assert joined[2][1] == Box(160, 10, 240, 100)
    # a row whose rhythm is two facings long (its period 90, its packs 45 wide) stays as it is
    even = cells([45] * 8)
    assert _halves_joined(even, period=90.0, height=90, params=params) == even
    # two products of different heights (a can beside a sachet) are not one pack
    mixed = cells([80, 38, 42, 80], tops=[10, 10, 40, 10])
    assert _halves_joined(mixed, period=80.0, height=90, params=params) == mixed
    assert _halves_joined(row, period=80.0, height=90, params=AutoParams(half_facing=0)) == row
