"""Keeping the tally rollups (shelf.schema.ROLLUPS) in step with the regions, inside the writer's transaction.

- New regions are *added*: one INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE per grain (count and sum add up,
  min takes the smaller). Rows are upserted in key order so concurrent writers lock them in the same order and
  never deadlock.
- Regions that change (a correction, a SKU re-match, an edited photo context, a superseded run, a deletion) are
  handled by `changing()`: the rollup keys they touch before and after the change are recomputed from the regions
  (min cannot be subtracted).
- `rebuild()` recomputes everything (after a bulk load or a store-wide re-match).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from shelf.schema import (
    NOT_MATCHED_SKU_KEY,
    PRODUCT,
    ROLLUP_KEYS,
    ROLLUP_MEASURES,
    ROLLUPS,
    UNKNOWN_SKU_KEY,
    photos,
    regions,
    rollup_context,
)

MAX_KEYS_PER_REFRESH = 5_000  # beyond this a refresh recomputes the whole grain: fewer, larger statements

SKU_KEY = sa.case((regions.c.sku_id.is_not(None), regions.c.sku_id),
                  (regions.c.sku_similarity.is_not(None), UNKNOWN_SKU_KEY), else_=NOT_MATCHED_SKU_KEY)
DIMENSIONS = {"day": photos.c.day, "dated": photos.c.day > 0, "store": photos.c.store, "aisle": photos.c.aisle,
              "class_index": regions.c.class_index, "sku_key": SKU_KEY, "corrected": regions.c.corrected,
              "bin": regions.c.bin}
COUNTED = sa.and_(regions.c.active, regions.c.kind == PRODUCT)  # what tallies count: current product regions


def _keys(table: sa.Table) -> list[str]:
    return list(rollup_context(table)) + list(ROLLUP_KEYS)


def _aggregate(table: sa.Table, where) -> sa.Select:
    keys = _keys(table)
    dims = [DIMENSIONS[k].label(k) for k in keys]
    return (sa.select(*dims, sa.func.count().label("n"), sa.func.sum(regions.c.probability).label("sum_p"),
                      sa.func.min(regions.c.probability).label("min_p"))
            .select_from(regions.join(photos, photos.c.id == regions.c.photo_id))
            .where(COUNTED, where).group_by(*dims).order_by(*dims))


def _insert(conn: Connection):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _merge(conn: Connection, table: sa.Table, rows: sa.Select) -> None:
    """Upsert aggregated `rows` (key columns then n, sum_p, min_p) into `table`, adding to rows already there."""
    statement = _insert(conn)(table).from_select(_keys(table) + list(ROLLUP_MEASURES), rows)
    new = statement.excluded
    conn.execute(statement.on_conflict_do_update(
        index_elements=_keys(table),
        set_={"n": table.c.n + new.n, "sum_p": table.c.sum_p + new.sum_p,
              "min_p": sa.case((new.min_p < table.c.min_p, new.min_p), else_=table.c.min_p)}))


def add(conn: Connection, where) -> None:
    """Add the regions matching `where` (new ones, not yet counted) to every rollup."""
    for table in ROLLUPS:
        _merge(conn, table, _aggregate(table, where))


def move_sku(conn: Connection, old_key: int, new_key: int) -> None:
    """Count everything counted under SKU `old_key` under `new_key` instead (a SKU removed → Unknown)."""
    for table in ROLLUPS:
        columns = [sa.literal(new_key).label(k) if k == "sku_key" else table.c[k] for k in _keys(table)]
        moved = sa.select(*columns, *(table.c[m] for m in ROLLUP_MEASURES)).where(table.c.sku_key == old_key)
        _merge(conn, table, moved.order_by(*columns))
        conn.execute(table.delete().where(table.c.sku_key == old_key))


def _touched(conn: Connection, where) -> list[set[tuple]]:
    query = sa.select(*DIMENSIONS.values()).select_from(regions.join(photos, photos.c.id == regions.c.photo_id)) \
        .where(COUNTED, where).distinct()
    rows = [dict(zip(DIMENSIONS, row)) for row in conn.execute(query)]
    return [{tuple(row[k] for k in _keys(table)) for row in rows} for table in ROLLUPS]


def _refresh(conn: Connection, table: sa.Table, keys: set[tuple]) -> None:
    names = _keys(table)
    if len(keys) > MAX_KEYS_PER_REFRESH:
        _recompute_all(conn, table)
        return
    ordered = sorted(keys, key=repr)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start:start + 500]
        conn.execute(table.delete().where(sa.tuple_(*(table.c[k] for k in names)).in_(chunk)))
        matching = sa.tuple_(*(DIMENSIONS[k] for k in names)).in_(chunk)
        conn.execute(table.insert().from_select(names + list(ROLLUP_MEASURES), _aggregate(table, matching)))


@contextmanager
def changing(conn: Connection, where) -> Iterator[None]:
    """Wrap a change to the regions matching `where` (evaluated before and after it): the rollup rows those regions
    counted in, and the ones they count in now, are recomputed. `where` must select the same regions afterwards
    (use ids or photo ids, not the columns being changed)."""
    before = _touched(conn, where)
    yield
    after = _touched(conn, where)
    for table, old, new in zip(ROLLUPS, before, after):
        if old | new:
            _refresh(conn, table, old | new)


def _recompute_all(conn: Connection, table: sa.Table) -> None:
    conn.execute(table.delete())
    conn.execute(table.insert().from_select(_keys(table) + list(ROLLUP_MEASURES), _aggregate(table, sa.true())))


def rebuild(conn: Connection) -> None:
    """Recompute every rollup from the regions."""
    for table in ROLLUPS:
        _recompute_all(conn, table)
