"""Which SKU each region matched (the catalog's answer, kept on the region rows), read and written with the rollups
kept in step."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.storage import rollup
from shelf.storage.schema import PRODUCT, regions, skus
from shelf.storage.store import write_transaction

if TYPE_CHECKING:
    import pandas as pd


def current_sku_matches(engine: Engine, photo_id: int) -> dict[int, tuple[int | None, float | None]]:
    """position → (SKU id or None, similarity or None) of a photo's current product regions."""
    query = sa.select(regions.c.position, regions.c.sku_id, regions.c.sku_similarity) \
        .where(regions.c.photo_id == photo_id, regions.c.active, regions.c.kind == PRODUCT)
    with engine.connect() as conn:
        return {row.position: (row.sku_id, row.sku_similarity) for row in conn.execute(query)}


def sku_match_frame(engine: Engine) -> pd.DataFrame:
    """Region → matched SKU (name, brand, category) and similarity, for regions that were matched; sku_id is
    missing where the catalog had nothing close enough (Unknown)."""
    import pandas as pd
    query = (sa.select(regions.c.id.label("region_id"), regions.c.sku_id, skus.c.name, skus.c.brand,
                       skus.c.category, regions.c.sku_similarity)
             .select_from(regions.outerjoin(skus, skus.c.id == regions.c.sku_id))
             .where(regions.c.sku_similarity.is_not(None)))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=["region_id", "sku_id", "sku", "brand",
                                                                "sku_category", "sku_similarity"])


def record_sku_matches(conn: Connection, matches: Sequence[tuple[int, int | None, float]]) -> None:
    """Write catalog matches (region_id, sku_id or None, similarity) without touching the rollups: for bulk
    re-matching, which rebuilds them once at the end."""
    conn.execute(regions.update().where(regions.c.id == sa.bindparam("rid"))
                 .values(sku_id=sa.bindparam("sku"), sku_similarity=sa.bindparam("similarity")),
                 [{"rid": r, "sku": s, "similarity": float(x)} for r, s, x in matches])


def set_sku_matches(engine: Engine, matches: Sequence[tuple[int, int | None, float]]) -> None:
    """Record catalog matches (region_id, sku_id or None, similarity) and keep the rollups in step."""
    with write_transaction(engine) as conn:
        with rollup.changing(conn, regions.c.id.in_([m[0] for m in matches])):
            record_sku_matches(conn, matches)


def forget_sku(conn: Connection, sku_id: int) -> None:
    """A removed SKU's regions become Unknown (their similarity stays); the rollups follow."""
    rollup.move_sku(conn, sku_id, rollup.UNKNOWN_SKU_KEY)
    conn.execute(regions.update().where(regions.c.sku_id == sku_id).values(sku_id=None))
    rollup.recategorise(conn)
