"""Retail categories for ImageNet classes, keyed by class index, never by name (label lists differ in their names:
ImageNet's own has two 'crane's, 134 and 517; torchvision calls 134 'crane bird').

The shipped map (data/categories.csv) covers what a shelf shows; every other class is "Not a product". Analysts'
edits live in the store and take precedence.
"""
from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from sqlalchemy.engine import Engine

from shelf import store
from shelf.model import CATEGORIES as IMAGENET_LABELS

RETAIL_CATEGORIES = ("Beverages", "Snacks & packaged food", "Produce", "Bakery", "Personal care", "Household",
                     "Store fixtures", "Not a product")
NOT_A_PRODUCT = "Not a product"
DEFAULT_MAP_FILE = Path(__file__).parent / "data" / "categories.csv"


@cache
def default_map() -> dict[int, str]:
    """Class index → category for all 1000 classes, from the shipped file."""
    mapping = dict.fromkeys(range(len(IMAGENET_LABELS)), NOT_A_PRODUCT)
    with DEFAULT_MAP_FILE.open(newline="") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        for row in rows:
            index = int(row["class_index"])
            if row["label"] != IMAGENET_LABELS[index] or row["category"] not in RETAIL_CATEGORIES:
                raise ValueError(f"{DEFAULT_MAP_FILE.name}: class {index} row does not match ImageNet or the "
                                 f"category list: {row}")
            mapping[index] = row["category"]
    return mapping


def category_map(engine: Engine) -> dict[int, str]:
    """The map in force: the shipped one with the analysts' edits on top."""
    return {**default_map(), **store.category_overrides_map(engine)}


def save_category_edits(engine: Engine, edits: dict[int, str], analyst: str) -> int:
    """Persist category changes; a class set back to its shipped category loses its override. Returns changes."""
    unknown = {c for c in edits.values() if c not in RETAIL_CATEGORIES}
    if unknown:
        raise ValueError(f"unknown categories: {', '.join(sorted(unknown))}")
    shipped = default_map()
    store.set_category_overrides(engine, {index: (None if category == shipped[index] else category)
                                          for index, category in edits.items()}, analyst)
    return len(edits)
