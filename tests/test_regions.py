import random

import pytest
from PIL import Image

from shelf.ingest.auto import AutoParams, auto_regions, regions_for
from shelf.ingest.evaluation import precision_recall
from shelf.ingest.regions import Box, grid, parse_region_mode, reading_order
from tests.synthetic import make_shelf

# Reached on these shelves when the floor was set: precision 0.98, recall 0.98 (see benchmarks/regions.py for the
# wider set). The floor leaves room for harmless tuning, not for a regression.
AUTO_FLOOR = 0.9
TEST_SHELVES = range(6)


@pytest.mark.parametrize("text,expected", [
    ("whole", "whole"), ("auto", "auto"), ("grid:3x4", "grid:3x4"), ("grid:2x5@0.2", "grid:2x5@0.2"),
    ("boxes:shelf.csv", "boxes:shelf.csv"),
])
def test_region_modes_round_trip(text, expected):
    assert parse_region_mode(text).text == expected


@pytest.mark.parametrize("text", ["", "grid", "grid:0x3", "grid:3x40", "grid:2x2@0.7", "boxes:", "everything"])
def test_bad_region_modes_say_why(text):
    with pytest.raises(ValueError):
        parse_region_mode(text)


def test_reading_order_is_rows_top_to_bottom_then_left_to_right():
    """Three shelves of products of mixed heights standing on a slanted edge (the right end 30 px lower), listed
    in a shuffled order as a box file or a detector may list them: numbered as a grid would be."""
    shelves = []
    for row, edge in enumerate((300, 650, 1000)):
        shelves.append([Box(x, edge + x // 40 - height, x + 90, edge + x // 40)
                        for x, height in zip(range(0, 1200, 100), [250, 120, 200, 90] * 3)])
    expected = [box for shelf in shelves for box in shelf]
    listed = expected[:]
    random.Random(7).shuffle(listed)
    assert [listed[i] for i in reading_order(listed)] == expected
    assert grid(1000, 600, 3, 4) == [grid(1000, 600, 3, 4)[i] for i in reading_order(grid(1000, 600, 3, 4))]
    assert reading_order([]) == []


def test_grid_tiles_cover_the_image_exactly():
    boxes = grid(1000, 600, 3, 4)
    assert len(boxes) == 12
    assert sum(b.width * b.height for b in boxes) == 1000 * 600
    assert boxes[0] == Box(0, 0, 250, 200) and boxes[-1] == Box(750, 400, 1000, 600)


def test_grid_overlap_grows_tiles_into_neighbours_and_stays_inside():
    plain, overlapped = grid(1000, 600, 2, 2), grid(1000, 600, 2, 2, overlap=0.2)
    assert overlapped[0] == Box(0, 0, 550, 330) and overlapped[3] == Box(450, 270, 1000, 600)
    assert all(o.width >= p.width for o, p in zip(overlapped, plain))


def test_grid_on_tiny_images_drops_empty_tiles():
    assert all(b.width > 0 and b.height > 0 for b in grid(3, 2, 5, 5))


def test_whole_mode_is_one_box():
    assert regions_for("whole", Image.new("RGB", (30, 20))) == [Box(0, 0, 30, 20)]


def test_auto_finds_the_facings_of_generated_shelves():
    matched = found = truth = 0
    for seed in TEST_SHELVES:
        image, boxes = make_shelf(seed)
        detected = auto_regions(image)
        _, _, m = precision_recall(detected, boxes)
        matched, found, truth = matched + m, found + len(detected), truth + len(boxes)
    assert matched / found >= AUTO_FLOOR, f"precision {matched / found:.3f}"
    assert matched / truth >= AUTO_FLOOR, f"recall {matched / truth:.3f}"


def test_auto_boxes_stay_inside_the_photo_and_are_not_empty():
    image, _ = make_shelf(3, 900, 700)
    for box in auto_regions(image):
        assert 0 <= box.x1 < box.x2 <= 900 and 0 <= box.y1 < box.y2 <= 700


def test_auto_on_a_blank_wall_finds_nothing():
    assert auto_regions(Image.new("RGB", (800, 600), (230, 225, 220))) == []


def test_auto_works_the_same_at_any_resolution():
    image, _ = make_shelf(4, 1600, 1200)
    small = [Box(b.x1 * 2, b.y1 * 2, b.x2 * 2, b.y2 * 2) for b in auto_regions(image)]
    big = auto_regions(image.resize((3200, 2400)), AutoParams())
    p, r, _ = precision_recall(big, small, threshold=0.8)  # the analysis runs at a fixed working width
    assert p >= 0.95 and r >= 0.95
