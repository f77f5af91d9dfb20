"""auto regions on real shelf photos (../shared/data/real-shelves: 12 photos, every front-facing pack boxed).
The photos are research-only and never copied into the repository; without them these tests skip (CI fails)."""
from pathlib import Path

import pytest
from PIL import Image

from shelf.ingest.auto import auto_regions
from shelf.ingest.boxfiles import boxes_for_photo, parse_box_file
from shelf.ingest.evaluation import summarise
from tests.conftest import require_service

REAL_SHELVES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-shelves"
# Issue 25's targets for the default profile. Measured here (JPEG's 1/2-scale decode) when they were set: recall
# 0.949, precision 0.892, 10 of 12 photos counted within ±10 % (benchmarks/regions.py, full-size decode: README).
RECALL_FLOOR, PRECISION_FLOOR = 0.9, 0.75
COUNT_TOLERANCE, PHOTOS_COUNTED_WITHIN = 0.1, 10


@pytest.fixture(scope="module")
def real_shelves():
    truth_file = REAL_SHELVES / "boxes_sku110k.csv"
    require_service(truth_file.is_file(), f"real shelf photos in {REAL_SHELVES}")
    truth = parse_box_file(truth_file.read_bytes(), truth_file.name)
    photos = []
    for path in sorted(REAL_SHELVES.glob("*.JPG")):
        with Image.open(path) as image:
            image.draft("RGB", (image.width // 2, image.height // 2))  # JPEG's own 1/2 scale: fast, same photo
            image = image.convert("RGB")
        boxes, _ = boxes_for_photo(truth, path.name, image.width, image.height)  # scaled from the stated size
        photos.append((path.name, image, boxes))
    return photos


def test_auto_finds_most_products_on_real_shelves(real_shelves):
    per_photo, overall = summarise([(name, auto_regions(image), None, truth) for name, image, truth in real_shelves])
    table = "\n".join(f"{e.name}: recall {e.recall:.2f} precision {e.precision:.2f}" for e in per_photo)
    assert overall.recall >= RECALL_FLOOR, table
    assert overall.precision >= PRECISION_FLOOR, table
    assert all(e.found for e in per_photo), table  # no shelf photo falls back to the whole photo


def test_auto_counts_most_real_shelves_within_ten_percent(real_shelves):
    """Facings are what an analyst counts: the number of boxes per photo is within ±10 % of the true count on at
    least 10 of the 12 photos (cabinet uprights or packs cut in two at their picture used to add 10-25 %)."""
    counts = [(name, len(auto_regions(image)), len(truth)) for name, image, truth in real_shelves]
    within = [name for name, found, true in counts if abs(found - true) <= COUNT_TOLERANCE * true]
    assert len(within) >= PHOTOS_COUNTED_WITHIN, "\n".join(f"{n}: found {f}, true {t}" for n, f, t in counts)


def test_auto_boxes_stay_inside_real_photos(real_shelves):
    _, image, _ = real_shelves[0]
    assert all(0 <= b.x1 < b.x2 <= image.width and 0 <= b.y1 < b.y2 <= image.height for b in auto_regions(image))
