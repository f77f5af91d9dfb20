"""Keeping the tally rollups (shelf.storage.schema.ROLLUPS) in step with the regions, inside the writer's transaction.

- New regions are *added*: one INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE per grain (count and sum add up,
  min takes the smaller). Rows are upserted in key order so concurrent writers lock them in the same order and
  never deadlock.
- Regions that change (a correction, a SKU re-match, an edited photo context, a superseded run, a deletion) are
  handled by `changing()`: the cells they count in before and after the change are recomputed from the regions
  (a min cannot be subtracted).
- When the category of classes or SKUs changes (a category edit, a SKU removed), `recategorise()` rebuilds the
  category grains from the class grains of the same context (thousands of rows), and the day × store one from the
  regions (it has no class twin: about a minute at 10 M regions on PostgreSQL).
- `rebuild()` recomputes everything (after a bulk load or a store-wide re-match).
- The empty-shelf widths (shelf.storage.schema.shelf_width_rollup) are sums only: new regions add their widths, a change
  applies the difference between the widths its regions had before and after it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from shelf.labels import NOT_A_PRODUCT
from shelf.storage.schema import (
    GAP,
    GAP_FINDING_MODES,
    NOT_MATCHED_SKU_KEY,
    PRODUCT,
    ROLLUP_MEASURES,
    ROLLUPS,
    UNKNOWN_SKU_KEY,
    WIDTH_CONTEXT,
    WIDTH_MEASURES,
    Grain,
    class_categories,
    photos,
    regions,
    runs,
    shelf_width_rollup,
    skus,
)

MAX_KEYS_PER_REFRESH = 5_000  # beyond this a refresh recomputes the whole grain: fewer, larger statements


def category_of(class_index, sku_key, corrected):
    """A cell's retail category: its SKU's when a catalog match stands (and no reviewer relabelled it), else its
    class's in the map in force. Needs class_categories and skus (outer) joined on the cell's columns."""
    return sa.case((sa.and_(sku_key > 0, sa.not_(corrected)), skus.c.category),
                   else_=sa.func.coalesce(class_categories.c.category, NOT_A_PRODUCT))


SKU_KEY = sa.case((regions.c.sku_id.is_not(None), regions.c.sku_id),
                  (regions.c.sku_similarity.is_not(None), UNKNOWN_SKU_KEY), else_=NOT_MATCHED_SKU_KEY)
DIMENSIONS = {"day": photos.c.day, "dated": photos.c.day > 0, "store": photos.c.store, "aisle": photos.c.aisle,
              "class_index": regions.c.class_index, "sku_key": SKU_KEY, "corrected": regions.c.corrected,
              "bin": regions.c.bin, "category": category_of(regions.c.class_index, SKU_KEY, regions.c.corrected)}
COUNTED = sa.and_(regions.c.active, regions.c.kind == PRODUCT)  # what tallies count: current product regions
REGIONS_WITH_CONTEXT = (regions.join(photos, photos.c.id == regions.c.photo_id)
                        .outerjoin(class_categories, class_categories.c.class_index == regions.c.class_index)
                        .outerjoin(skus, skus.c.id == regions.c.sku_id))


def _aggregate(grain: Grain, where) -> sa.Select:
    dims = [DIMENSIONS[k].label(k) for k in grain.columns]
    return (sa.select(*dims, sa.func.count().label("n"), sa.func.sum(regions.c.probability).label("sum_p"),
                      sa.func.min(regions.c.probability).label("min_p"))
            .select_from(REGIONS_WITH_CONTEXT).where(COUNTED, where).group_by(*dims).order_by(*dims))


def _insert(conn: Connection):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _merge(conn: Connection, grain: Grain, rows: sa.Select) -> None:
    """Upsert aggregated `rows` (the grain's columns, then n, sum_p, min_p), adding to the cells already there."""
    table = grain.table
    statement = _insert(conn)(table).from_select(list(grain.columns) + list(ROLLUP_MEASURES), rows)
    new = statement.excluded
    conn.execute(statement.on_conflict_do_update(
        index_elements=list(grain.columns),
        set_={"n": table.c.n + new.n, "sum_p": table.c.sum_p + new.sum_p,
              "min_p": sa.case((new.min_p < table.c.min_p, new.min_p), else_=table.c.min_p)}))


def add(conn: Connection, where) -> None:
    """Add the regions matching `where` (new ones, not yet counted) to every rollup."""
    for grain in ROLLUPS:
        _merge(conn, grain, _aggregate(grain, where))
    _apply_widths(conn, {}, _widths_of(conn, where))


def _widths(where) -> sa.Select:
    """gap_width and shelf_width per photo context, of the current regions matching `where` in photos recognised
    in a gap-finding mode: there a shelf row is cut into cells that are a facing or a gap, so their widths add up
    to the row's."""
    width = regions.c.x2 - regions.c.x1
    dims = [photos.c[c].label(c) for c in WIDTH_CONTEXT]
    return (sa.select(*dims, sa.func.sum(sa.case((regions.c.kind == GAP, width), else_=0)).label("gap_width"),
                      sa.func.sum(width).label("shelf_width"))
            .select_from(regions.join(photos, photos.c.id == regions.c.photo_id)
                         .join(runs, runs.c.id == regions.c.run_id))
            .where(regions.c.active, runs.c.region_mode.in_(GAP_FINDING_MODES), where).group_by(*dims))


def _widths_of(conn: Connection, where) -> dict[tuple, tuple[int, int]]:
    return {tuple(row[:len(WIDTH_CONTEXT)]): (int(row.gap_width), int(row.shelf_width))
            for row in conn.execute(_widths(where))}


def _apply_widths(conn: Connection, before: dict, after: dict) -> None:
    """Add (after − before) to the width cells; cells left with no shelf are removed."""
    deltas = {key: (after.get(key, (0, 0))[0] - before.get(key, (0, 0))[0],
                    after.get(key, (0, 0))[1] - before.get(key, (0, 0))[1]) for key in before.keys() | after.keys()}
    rows = [dict(zip(WIDTH_CONTEXT + WIDTH_MEASURES, key + delta))
            for key, delta in sorted(deltas.items(), key=repr) if delta != (0, 0)]
    if not rows:
        return
    table = shelf_width_rollup
    statement = _insert(conn)(table)
    conn.execute(statement.on_conflict_do_update(
        index_elements=list(WIDTH_CONTEXT),
        set_={m: table.c[m] + statement.excluded[m] for m in WIDTH_MEASURES}), rows)
    changed = [tuple(row[c] for c in WIDTH_CONTEXT) for row in rows]
    key = sa.tuple_(*(table.c[c] for c in WIDTH_CONTEXT))
    for start in range(0, len(changed), 500):
        conn.execute(table.delete().where(key.in_(changed[start:start + 500]), table.c.shelf_width == 0))


def _touched(conn: Connection, where) -> list[set[tuple]]:
    query = sa.select(*(d.label(k) for k, d in DIMENSIONS.items())).select_from(REGIONS_WITH_CONTEXT) \
        .where(COUNTED, where).distinct()
    rows = conn.execute(query).mappings().all()
    return [{tuple(row[k] for k in grain.columns) for row in rows} for grain in ROLLUPS]


def _refresh(conn: Connection, grain: Grain, keys: set[tuple]) -> None:
    if len(keys) > MAX_KEYS_PER_REFRESH:
        _recompute_all(conn, grain)
        return
    table, names = grain.table, list(grain.columns)
    ordered = sorted(keys, key=repr)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start:start + 500]
        conn.execute(table.delete().where(sa.tuple_(*(table.c[k] for k in names)).in_(chunk)))
        matching = sa.tuple_(*(DIMENSIONS[k] for k in names)).in_(chunk)
        conn.execute(table.insert().from_select(names + list(ROLLUP_MEASURES), _aggregate(grain, matching)))


@contextmanager
def changing(conn: Connection, where) -> Iterator[None]:
    """Wrap a change to the regions matching `where` (evaluated before and after it): the cells those regions
    counted in, and the ones they count in now, are recomputed. `where` must select the same regions afterwards
    (use ids or photo ids, not the columns being changed)."""
    before, widths_before = _touched(conn, where), _widths_of(conn, where)
    yield
    after = _touched(conn, where)
    for grain, old, new in zip(ROLLUPS, before, after):
        if old | new:
            _refresh(conn, grain, old | new)
    _apply_widths(conn, widths_before, _widths_of(conn, where))


def _class_source(grain: Grain) -> Grain | None:
    return next((g for g in ROLLUPS if not g.by_category and g.context == grain.context), None)


def _from_classes(grain: Grain) -> sa.Select:
    """A category grain's cells from the class grain of the same context (or from the regions, if none)."""
    if _class_source(grain) is None:
        return _aggregate(grain, sa.true())
    source = _class_source(grain).table
    dims = [source.c[c].label(c) for c in grain.context] + [
        category_of(source.c.class_index, source.c.sku_key, source.c.corrected).label("category"),
        source.c.corrected, source.c.bin]
    return (sa.select(*dims, sa.func.sum(source.c.n), sa.func.sum(source.c.sum_p), sa.func.min(source.c.min_p))
            .select_from(source.outerjoin(class_categories, class_categories.c.class_index == source.c.class_index)
                         .outerjoin(skus, skus.c.id == source.c.sku_key))
            .group_by(*dims))


def _recompute_all(conn: Connection, grain: Grain) -> None:
    conn.execute(grain.table.delete())
    rows = _from_classes(grain) if grain.by_category else _aggregate(grain, sa.true())
    conn.execute(grain.table.insert().from_select(list(grain.columns) + list(ROLLUP_MEASURES), rows))


def rebuild(conn: Connection) -> None:
    """Recompute every rollup from the regions (category grains from the class grains, built first)."""
    for grain in sorted(ROLLUPS, key=lambda g: g.by_category):
        _recompute_all(conn, grain)
    conn.execute(shelf_width_rollup.delete())
    conn.execute(shelf_width_rollup.insert().from_select(list(WIDTH_CONTEXT + WIDTH_MEASURES), _widths(sa.true())))


def recategorise(conn: Connection) -> None:
    """The category of some classes or SKUs changed: rebuild the category grains (from the class grains)."""
    for grain in ROLLUPS:
        if grain.by_category:
            _recompute_all(conn, grain)


def move_sku(conn: Connection, old_key: int, new_key: int) -> None:
    """Count everything counted under SKU `old_key` under `new_key` instead (a SKU removed → Unknown); the
    category grains follow once the SKU row itself is gone (`recategorise`)."""
    for grain in ROLLUPS:
        if grain.by_category:
            continue
        table = grain.table
        columns = [sa.literal(new_key).label(k) if k == "sku_key" else table.c[k] for k in grain.columns]
        moved = sa.select(*columns, *(table.c[m] for m in ROLLUP_MEASURES)).where(table.c.sku_key == old_key)
        _merge(conn, grain, moved.order_by(*columns))
        conn.execute(table.delete().where(table.c.sku_key == old_key))
