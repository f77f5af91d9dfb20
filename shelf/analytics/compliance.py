"""Planogram compliance and on-shelf availability, computed in the database.

For each store × aisle × date with photos and a planogram (planogram; a store's own planogram for an aisle,
else the `*` one), per planned product: expected facings, found facings and a status —

  ok       found at least the planned facings
  under    found, but fewer facings than planned
  missing  none found: out of stock
  extra    found, but not planned for the aisle

Found facings are counted facings (tally: confidence at least the threshold, or corrected by a reviewer) of
the current product regions of that store, aisle and date, whose effective label is the planned ImageNet class or
whose catalog match is the planned SKU (a match a reviewer relabelled no longer counts for its SKU). A facing that
matches no planned product counts as an extra, under its SKU when it has one, else under its label.

Per store × aisle × date:
  on-shelf availability (OSA)  planned products found / planned products
  compliance                   Σ min(found, expected) / Σ expected  (extra facings of one product do not make up for
                               another's missing ones)
  empty shelf share            gap width / shelf width, where photos were recognised in auto mode (report)

Everything is a GROUP BY over the regions of the selected photos joined with the planograms (one date of a chain
reads that date's regions through the photos' day index); pandas receives one row per product line or per aisle.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.analytics import report
from shelf.analytics.planogram import ANY_STORE, product_name, product_text, sku_names
from shelf.analytics.tally import TallyFilter
from shelf.storage import rollup
from shelf.storage.schema import (
    CLASS_PRODUCT,
    GAP,
    GAP_FINDING_MODES,
    SKU_PRODUCT,
    THRESHOLD_STEPS,
    photos,
    planograms,
    regions,
    runs,
    threshold_step,
)

OK, UNDER, MISSING, EXTRA = "ok", "under", "missing", "extra"
STATUSES = (MISSING, UNDER, EXTRA, OK)  # worst first
LINE_COLUMNS = ["store", "aisle", "captured_on", "product", "name", "shelf_row", "expected_facings", "found_facings",
                "status"]
SUMMARY_COLUMNS = ["store", "aisle", "captured_on", "planned_products", "found_products", "missing", "under",
                   "extra", "expected_facings", "found_facings", "osa", "compliance", "empty_share"]


@dataclass(frozen=True)
class Parts:
    """The CTEs a compliance query is built from, for one selection and threshold."""

    lines: sa.CTE  # store, aisle, day, product_kind, product_id, expected_facings, shelf_row, found
    extras: sa.CTE  # store, aisle, day, product_kind, product_id, found


def _parts(f: TallyFilter, threshold: float, only: Sequence[tuple[str, str, int]] | str | None = None) -> Parts:
    """`only` (store, aisle, day) contexts (or ONE_PLACE) narrow the photos read, not only the rows returned."""
    scope = report.photo_scope(f) + _contexts_filter(photos, only)
    contexts = sa.select(photos.c.store, photos.c.aisle, photos.c.day).where(*scope).distinct().cte("contexts")
    own = planograms.alias("own")
    has_own = sa.exists().where(own.c.store == contexts.c.store, own.c.aisle == contexts.c.aisle)
    # the store whose planogram applies: its own, else '*'. An equality, so (aisle, store) is an index lookup;
    # written as "own OR ('*' AND NOT has_own)" it read every store's lines of the aisle for each context.
    plan_store = sa.case((has_own, contexts.c.store), else_=ANY_STORE)
    plan = (sa.select(contexts.c.store, contexts.c.aisle, contexts.c.day, planograms.c.product_kind,
                      planograms.c.product_id, planograms.c.expected_facings, planograms.c.shelf_row)
            .select_from(contexts.join(planograms, sa.and_(planograms.c.aisle == contexts.c.aisle,
                                                           planograms.c.store == plan_store)))
            .cte("plan"))
    sku = sa.case((sa.and_(regions.c.sku_id.is_not(None), sa.not_(regions.c.corrected)), regions.c.sku_id))
    found = (sa.select(photos.c.store, photos.c.aisle, photos.c.day, regions.c.class_index, sku.label("sku_id"),
                       sa.func.count().label("n"))
             .select_from(regions.join(photos, photos.c.id == regions.c.photo_id))
             .where(rollup.COUNTED, sa.or_(regions.c.corrected, regions.c.bin >= threshold_step(threshold)), *scope)
             .group_by(photos.c.store, photos.c.aisle, photos.c.day, regions.c.class_index, sku)
             .cte("found"))

    def planned(line, facing):
        return sa.and_(facing.c.store == line.c.store, facing.c.aisle == line.c.aisle, facing.c.day == line.c.day,
                       sa.or_(sa.and_(line.c.product_kind == CLASS_PRODUCT, facing.c.class_index == line.c.product_id),
                              sa.and_(line.c.product_kind == SKU_PRODUCT, facing.c.sku_id == line.c.product_id)))

    line_columns = [plan.c.store, plan.c.aisle, plan.c.day, plan.c.product_kind, plan.c.product_id,
                    plan.c.expected_facings, plan.c.shelf_row]
    lines = (sa.select(*line_columns, _whole(sa.func.coalesce(sa.func.sum(found.c.n), 0)).label("found"))
             .select_from(plan.outerjoin(found, planned(plan, found))).group_by(*line_columns).cte("lines"))
    other = plan.alias("other")
    kind = sa.case((found.c.sku_id.is_not(None), SKU_PRODUCT), else_=CLASS_PRODUCT)
    product = sa.func.coalesce(found.c.sku_id, found.c.class_index)
    extras = (sa.select(found.c.store, found.c.aisle, found.c.day, kind.label("product_kind"),
                        product.label("product_id"), _whole(sa.func.sum(found.c.n)).label("found"))
              .where(sa.exists().where(other.c.store == found.c.store, other.c.aisle == found.c.aisle,
                                       other.c.day == found.c.day),
                     sa.not_(sa.exists().where(planned(other, found))))
              .group_by(found.c.store, found.c.aisle, found.c.day, kind, product)
              .cte("extras"))
    return Parts(lines, extras)


def _whole(total):
    """A sum of counts as an integer (PostgreSQL sums bigints as numeric: Decimal in Python)."""
    return sa.cast(total, sa.Integer)


def _status(found, expected):
    return sa.case((found == 0, MISSING), (found < expected, UNDER), else_=OK)


def _capped(found, expected):
    return sa.case((found < expected, found), else_=expected)


def _dates(days: pd.Series) -> pd.Series:
    return days.map(lambda d: dt.date.fromordinal(int(d)) if d else None)


def _frame(conn: Connection, query) -> pd.DataFrame:
    result = conn.execute(query)
    return pd.DataFrame(list(map(tuple, result)), columns=list(result.keys()))


ONE_PLACE = "one place"  # `only`: the store × aisle × date given when the statement runs (place_lines)


def _contexts_filter(table, contexts: Sequence[tuple[str, str, int]] | str | None) -> list:
    if contexts is None:
        return []
    if contexts == ONE_PLACE:
        return [table.c.store == sa.bindparam("place_store"), table.c.aisle == sa.bindparam("place_aisle"),
                table.c.day == sa.bindparam("place_day")]
    return [sa.tuple_(table.c.store, table.c.aisle, table.c.day).in_([tuple(c) for c in contexts])]


def lines(engine: Engine, f: TallyFilter = TallyFilter(), threshold: float = 0.0,
          contexts: Sequence[tuple[str, str, int]] | None = None, statuses: Sequence[str] = ()) -> pd.DataFrame:
    """One row per planned product (and per extra product) of every store × aisle × date with photos and a
    planogram: LINE_COLUMNS, worst status first within each aisle. `contexts` (store, aisle, day) and
    `statuses` narrow it down."""
    parts = _parts(f, threshold, contexts)
    planned = sa.select(parts.lines.c.store, parts.lines.c.aisle, parts.lines.c.day, parts.lines.c.product_kind,
                        parts.lines.c.product_id, parts.lines.c.shelf_row, parts.lines.c.expected_facings,
                        parts.lines.c.found.label("found_facings"),
                        _status(parts.lines.c.found, parts.lines.c.expected_facings).label("status"))
    extra = sa.select(parts.extras.c.store, parts.extras.c.aisle, parts.extras.c.day, parts.extras.c.product_kind,
                      parts.extras.c.product_id, sa.null().label("shelf_row"), sa.null().label("expected_facings"),
                      parts.extras.c.found.label("found_facings"), sa.literal(EXTRA).label("status"))
    query = sa.union_all(planned, extra).subquery("compliance_lines")
    query = sa.select(query).where(query.c.status.in_(list(statuses))) if statuses else sa.select(query)
    with engine.connect() as conn:
        frame = _frame(conn, query)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LINE_COLUMNS})
    names = sku_names(engine)
    frame = frame.assign(
        captured_on=_dates(frame["day"]),
        product=[product_text(k, int(i), names) for k, i in zip(frame["product_kind"], frame["product_id"])],
        name=[product_name(k, int(i), names) for k, i in zip(frame["product_kind"], frame["product_id"])],
        order=frame["status"].map(STATUSES.index))
    frame = frame.sort_values(["store", "aisle", "day", "order", "shelf_row", "product"], ignore_index=True,
                              na_position="last")
    for column in ("shelf_row", "expected_facings", "found_facings"):
        frame[column] = frame[column].astype("Int64")
    return frame[LINE_COLUMNS]


def place_lines(conn: Connection, store: str, aisle: str, day: int, threshold: float) -> list:
    """(product_kind, product_id, expected_facings, found) per planned product of one store × aisle × date, read on
    `conn` (the task evaluator's transaction: shelf.analytics.tasks)."""
    return conn.execute(_place_statement(threshold_step(threshold)),
                        {"place_store": store, "place_aisle": aisle, "place_day": day}).all()


@functools.lru_cache(maxsize=21)
def _place_statement(step: int) -> sa.Select:
    """Built once per threshold step (building the CTEs costs more than running them for one aisle)."""
    lines_ = _parts(TallyFilter(), THRESHOLD_STEPS[step], ONE_PLACE).lines
    return sa.select(lines_.c.product_kind, lines_.c.product_id, lines_.c.expected_facings, lines_.c.found)


def summary(engine: Engine, f: TallyFilter = TallyFilter(), threshold: float = 0.0) -> pd.DataFrame:
    """One row per store × aisle × date with photos and a planogram: SUMMARY_COLUMNS, least compliant first."""
    parts = _parts(f, threshold)
    lines_, extras = parts.lines, parts.extras
    context = [lines_.c.store, lines_.c.aisle, lines_.c.day]
    per_aisle = (sa.select(*context, sa.func.count().label("planned_products"),
                           sa.func.sum(sa.case((lines_.c.found > 0, 1), else_=0)).label("found_products"),
                           sa.func.sum(sa.case((lines_.c.found == 0, 1), else_=0)).label("missing"),
                           sa.func.sum(sa.case((sa.and_(lines_.c.found > 0, lines_.c.found < lines_.c.expected_facings),
                                                1), else_=0)).label("under"),
                           sa.func.sum(lines_.c.expected_facings).label("expected_facings"),
                           sa.func.sum(_capped(lines_.c.found, lines_.c.expected_facings)).label("found_facings"))
                 .group_by(*context).subquery("per_aisle"))
    extra_count = (sa.select(extras.c.store, extras.c.aisle, extras.c.day, sa.func.count().label("extra"))
                   .group_by(extras.c.store, extras.c.aisle, extras.c.day).subquery("extra_count"))
    widths = report.shelf_widths(f, ["store", "aisle", "date"]).subquery("widths")

    def same(other):
        return sa.and_(other.c.store == per_aisle.c.store, other.c.aisle == per_aisle.c.aisle,
                       other.c.day == per_aisle.c.day)
    query = (sa.select(per_aisle, sa.func.coalesce(extra_count.c.extra, 0).label("extra"), widths.c.gap_width,
                       widths.c.shelf_width)
             .select_from(per_aisle.outerjoin(extra_count, same(extra_count)).outerjoin(widths, same(widths))))
    with engine.connect() as conn:
        frame = _frame(conn, query)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SUMMARY_COLUMNS})
    shelf = frame["shelf_width"].astype(float)
    frame = frame.assign(captured_on=_dates(frame["day"]),
                         osa=frame["found_products"] / frame["planned_products"],
                         compliance=frame["found_facings"] / frame["expected_facings"],
                         empty_share=(frame["gap_width"].astype(float) / shelf).where(shelf > 0))
    frame = frame.sort_values(["compliance", "osa", "store", "aisle", "day"], ignore_index=True)
    return frame[SUMMARY_COLUMNS]


def trend(engine: Engine, f: TallyFilter = TallyFilter(), threshold: float = 0.0) -> pd.DataFrame:
    """date, store, osa, compliance per date of dated photos and store, over the store's aisles with a planogram
    photographed that day (the selection's dates). Per store: which stores were photographed changes from day to
    day, so one figure over every store would move with that, not with the shelves."""
    parts = _parts(f if f.dated else dataclasses.replace(f, dated_only=True), threshold)
    lines_ = parts.lines
    query = (sa.select(lines_.c.day, lines_.c.store, sa.func.count().label("planned_products"),
                       sa.func.sum(sa.case((lines_.c.found > 0, 1), else_=0)).label("found_products"),
                       sa.func.sum(lines_.c.expected_facings).label("expected_facings"),
                       sa.func.sum(_capped(lines_.c.found, lines_.c.expected_facings)).label("found_facings"))
             .where(lines_.c.day > 0).group_by(lines_.c.day, lines_.c.store).order_by(lines_.c.day, lines_.c.store))
    with engine.connect() as conn:
        frame = _frame(conn, query)
    if frame.empty:
        return pd.DataFrame(columns=["date", "store", "osa", "compliance"])
    return pd.DataFrame({"date": pd.to_datetime(_dates(frame["day"])), "store": frame["store"],
                         "osa": frame["found_products"] / frame["planned_products"],
                         "compliance": frame["found_facings"] / frame["expected_facings"]})


def photos_of(engine: Engine, store: str, aisle: str, day: int) -> pd.DataFrame:
    """photo_id, name, file, width, height of the photos of one store × aisle × date (for the drill-down), and
    finds_gaps: whether its current regions come from a region mode that looks for empty gaps (other photos'
    empty shelf is not measured, whatever their overlay shows)."""
    finds_gaps = sa.exists().where(regions.c.photo_id == photos.c.id, regions.c.active, regions.c.run_id == runs.c.id,
                                   runs.c.region_mode.in_(GAP_FINDING_MODES))
    query = (sa.select(photos.c.id.label("photo_id"), photos.c.name, photos.c.file, photos.c.width, photos.c.height,
                       finds_gaps.label("finds_gaps"))
             .where(photos.c.store == store, photos.c.aisle == aisle, photos.c.day == int(day))
             .order_by(photos.c.id))
    with engine.connect() as conn:
        return _frame(conn, query)


def photo_regions(engine: Engine, photo_id: int) -> pd.DataFrame:
    """The current regions of one photo, facings and gaps: x1…y2, kind, class_index, probability, sku_id."""
    query = (sa.select(regions.c.x1, regions.c.y1, regions.c.x2, regions.c.y2, regions.c.kind,
                       regions.c.class_index, regions.c.probability, regions.c.corrected, regions.c.sku_id)
             .where(regions.c.photo_id == int(photo_id), regions.c.active).order_by(regions.c.position))
    with engine.connect() as conn:
        return _frame(conn, query)


def photo_days(engine: Engine) -> list[int]:
    """The dates photos were taken (day numbers, newest first; 0 for undated photos, last)."""
    with engine.connect() as conn:
        days = conn.execute(sa.select(photos.c.day).distinct().order_by(photos.c.day.desc())).scalars().all()
    return [d for d in days if d] + [d for d in days if not d]


def overall(table: pd.DataFrame) -> dict[str, float | None]:
    """OSA, compliance and empty shelf share over the rows of a summary (sums of its counts, not a mean of
    ratios)."""
    if table.empty:
        return {"osa": None, "compliance": None, "empty_share": None}
    shares = table["empty_share"].dropna()
    return {"osa": table["found_products"].sum() / table["planned_products"].sum(),
            "compliance": table["found_facings"].sum() / table["expected_facings"].sum(),
            "empty_share": float(shares.mean()) if len(shares) else None}


def by_store_and_aisle(table: pd.DataFrame) -> pd.DataFrame:
    """A summary over several dates folded to store × aisle (for the heat map): compliance and OSA from the sums."""
    if table.empty:
        return pd.DataFrame(columns=["store", "aisle", "compliance", "osa", "missing", "dates"])
    sums = table.groupby(["store", "aisle"], as_index=False).agg(
        expected_facings=("expected_facings", "sum"), found_facings=("found_facings", "sum"),
        planned_products=("planned_products", "sum"), found_products=("found_products", "sum"),
        missing=("missing", "sum"), dates=("captured_on", "size"))
    return sums.assign(compliance=sums["found_facings"] / sums["expected_facings"],
                       osa=sums["found_products"] / sums["planned_products"])


def overlay_of(engine: Engine, photo: pd.Series):
    """The stored photo (photos_of row) with its facings labelled and its gaps hatched; None if its file cannot
    be read."""
    from shelf.analytics.review import photo_for_thumbnails
    from shelf.ingest.overlay import draw_overlay
    from shelf.ingest.regions import Box
    from shelf.labels import IMAGENET_CLASSES
    loaded = photo_for_thumbnails(photo["file"], int(photo["width"]))
    if loaded is None:
        return None
    image, _ = loaded
    found = photo_regions(engine, int(photo["photo_id"]))
    names = sku_names(engine)
    facings = [(Box(r.x1, r.y1, r.x2, r.y2),
                names.get(int(r.sku_id)) if r.sku_id is not None and not pd.isna(r.sku_id) and not r.corrected
                else IMAGENET_CLASSES[int(r.class_index)], int(r.class_index), float(r.probability))
               for r in found.itertuples() if r.kind != GAP]
    gaps = [Box(r.x1, r.y1, r.x2, r.y2) for r in found.itertuples() if r.kind == GAP]
    return draw_overlay(image, (int(photo["width"]), int(photo["height"])), facings, gaps=gaps)
