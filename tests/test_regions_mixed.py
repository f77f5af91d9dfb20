"""auto on shelves of mixed product kinds, each test a shelf built for one behaviour that went wrong before
(benchmarks/regions_why.py put the misses down to these causes)."""
import random

from PIL import Image, ImageDraw, ImageFilter

from shelf.ingest.auto import auto_regions
from shelf.ingest.evaluation import greedy_matches
from shelf.ingest.regions import Box
from tests.mixed_shelves import Design, _draw, _price_rail

WIDTH, HEIGHT = 1600, 1200
WALL = (226, 222, 232)
RAIL = 36


def shelf(rows: list[list[tuple[Design, float]]], row_heights: list[float] | None = None
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
            _draw(draw, design, box)
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
