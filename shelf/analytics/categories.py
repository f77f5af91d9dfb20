"""Retail categories for ImageNet classes, keyed by class index: the shipped map (`shelf.labels`) with analysts'
edits on top, which live in the store and take precedence."""
from __future__ import annotations

from sqlalchemy.engine import Engine

from shelf.access import Identity, acting, require
from shelf.labels import NOT_A_PRODUCT, RETAIL_CATEGORIES, default_map
from shelf.storage import store

__all__ = ["NOT_A_PRODUCT", "RETAIL_CATEGORIES", "category_map", "default_map", "save_category_edits"]


def category_map(engine: Engine) -> dict[int, str]:
    """The map in force: the shipped one with the analysts' edits on top."""
    return {**default_map(), **store.category_overrides_map(engine)}


def save_category_edits(engine: Engine, edits: dict[int, str], analyst: Identity | str) -> int:
    """Persist category changes; a class set back to its shipped category loses its override. Returns changes.
    `analyst`: the signed-in identity (or, without sign-in, the name typed)."""
    require(acting(analyst), "edit_categories")
    unknown = {c for c in edits.values() if c not in RETAIL_CATEGORIES}
    if unknown:
        raise ValueError(f"unknown categories: {', '.join(sorted(unknown))}")
    shipped = default_map()
    store.set_category_overrides(engine, {index: (None if category == shipped[index] else category)
                                          for index, category in edits.items()}, analyst)
    return len(edits)
