"""ImageNet-1K class names and Shelf's shipped class → retail category map, as data.

The storing and reporting side names classes without importing torch: `data/imagenet_classes.txt` holds the names
in class-index order (a test checks them against the weights' own `meta["categories"]`). Categories are keyed by
class index, never by name: label lists differ in their names (ImageNet's own has two "crane"s, 134 and 517).
"""
from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
IMAGENET_CLASSES: tuple[str, ...] = tuple((DATA / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines())
RETAIL_CATEGORIES = ("Beverages", "Snacks & packaged food", "Produce", "Bakery", "Personal care", "Household",
                     "Store fixtures", "Not a product")
NOT_A_PRODUCT = "Not a product"
DEFAULT_MAP_FILE = DATA / "categories.csv"


@cache
def default_map() -> dict[int, str]:
    """Class index → category for all 1000 classes, from the shipped file; classes it does not list are
    "Not a product"."""
    mapping = dict.fromkeys(range(len(IMAGENET_CLASSES)), NOT_A_PRODUCT)
    with DEFAULT_MAP_FILE.open(newline="") as handle:
        for row in csv.DictReader(line for line in handle if not line.startswith("#")):
            index = int(row["class_index"])
            if row["label"] != IMAGENET_CLASSES[index] or row["category"] not in RETAIL_CATEGORIES:
                raise ValueError(f"{DEFAULT_MAP_FILE.name}: class {index} row does not match ImageNet or the "
                                 f"category list: {row}")
            mapping[index] = row["category"]
    return mapping
