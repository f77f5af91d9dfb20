"""What the dashboard, the CLI and the API report, computed in the database: tallies, their totals, the charts'
data, the review queue and export rows (SQLAlchemy Core; the same expressions on SQLite and PostgreSQL).

pandas receives aggregated rows or one page of regions, never the whole store. Aggregates read the rollups
(shelf.storage.schema.ROLLUPS): the first grain that has every dimension the query filters or groups by, so a tally
touches thousands of rollup rows, not millions of regions. The numbers are the ones tally defines (tests check
them against it on random stores).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.analytics.tally import (
    GROUPINGS,
    TallyFilter,
    confidence_steps,
    empty_table,
    finish,
    group_columns,
)
from shelf.labels import IMAGENET_CLASSES
from shelf.storage import rollup
from shelf.storage.schema import (
    ROLLUPS,
    THRESHOLD_STEPS,
    UNKNOWN_SKU_KEY,
    class_categories,
    corrections,
    photos,
    predictions,
    regions,
    runs,
    shelf_width_rollup,
    skus,
    threshold_step,
)
from shelf.text import percents

UNKNOWN_SKU, NOT_MATCHED = "Unknown", "Not matched"
MAX_SERIES = 8  # categories beyond this are folded into "Other" in charts
BLANK_FIGURE = "—"


# ---------------------------------------------------------------------------------------------------------------
# Facets: what the filters can choose from


@dataclass(frozen=True)
class Facets:
    stores: list[str]
    aisles: list[str]
    first_date: dt.date | None  # of dated photos
    last_date: dt.date | None
    photos: int


def facets(engine: Engine) -> Facets:
    with engine.connect() as conn:
        stores = conn.execute(sa.select(photos.c.store).distinct().order_by(photos.c.store)).scalars().all()
        aisles = conn.execute(sa.select(photos.c.aisle).distinct().order_by(photos.c.aisle)).scalars().all()
        first, last = _dated_range(conn)
        count = conn.execute(sa.select(sa.func.count()).select_from(photos)).scalar_one()
    return Facets(stores, aisles, first, last, count)


@dataclass(frozen=True)
class Overview:
    photos: int
    regions: int  # current product regions (what tallies count)
    corrected: int
    runs: int


def overview(engine: Engine) -> Overview:
    """The store at a glance, at the same cost whatever its size (photos by index, regions from a rollup)."""
    with engine.connect() as conn:
        cells = _Cells(conn, TallyFilter())
        sums = conn.execute(cells.select({}, cells.measures(0.0))).mappings().one()
        n_photos, n_runs = (conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                            for table in (photos, runs))
    return Overview(n_photos, int(sums["regions"] or 0), int(sums["corrected"] or 0), n_runs)


def newest_photo(engine: Engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(photos.c.id))).scalar()


def unverified_runs(engine: Engine) -> tuple[int, int]:
    """(runs whose weights were not the verified ImageNet file, all runs)."""
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count().filter(sa.not_(runs.c.weights_verified)),
                                            sa.func.count())).one())


def _dated_range(conn: Connection) -> tuple[dt.date | None, dt.date | None]:
    dated = photos.c.day > 0
    first = conn.execute(sa.select(sa.func.min(photos.c.day)).where(dated)).scalar()
    last = conn.execute(sa.select(sa.func.max(photos.c.day)).where(dated)).scalar()
    return (dt.date.fromordinal(first) if first else None), (dt.date.fromordinal(last) if last else None)


# ---------------------------------------------------------------------------------------------------------------
# Aggregates over the rollups


def _region_cells() -> sa.Subquery:
    """The regions as one-region cells with every dimension: what a query reads when no rollup grain fits."""
    return (sa.select(*(dimension.label(name) for name, dimension in rollup.DIMENSIONS.items()),
                      sa.literal(1).label("n"), regions.c.probability.label("sum_p"),
                      regions.c.probability.label("min_p"))
            .select_from(rollup.REGIONS_WITH_CONTEXT).where(rollup.COUNTED).subquery("region_cells"))


def normalised(conn: Connection, f: TallyFilter) -> TallyFilter:
    """A date range covering every dated photo (the pickers' default) is "dated photos, any date": queries then
    read a grain without days, and the review queue walks the confidence index instead of every dated photo."""
    if f.dated_only or not f.dated:
        return f
    first, last = _dated_range(conn)
    if first is None or ((f.date_from or first) <= first and (f.date_to or last) >= last):
        return dataclasses.replace(f, date_from=None, date_to=None, dated_only=True)
    return f


class _Cells:
    """One aggregate query over the first rollup grain that has the dimensions a filter and a grouping need (else
    over the regions)."""

    def __init__(self, conn: Connection, f: TallyFilter, needs: Sequence[str] = ()):
        self.f = f = normalised(conn, f)
        self.date_range = "dated" if f.dated_only else "days" if f.dated else None
        wanted = set(needs) | {"bin", "corrected"}
        wanted |= {name for name, used in (("store", f.stores), ("aisle", f.aisles), ("category", f.categories),
                                           ("class_index", f.class_indices), ("day", self.date_range == "days"),
                                           ("dated", self.date_range == "dated")) if used}
        self.grain = next((g for g in ROLLUPS if wanted - {"bin", "corrected"} <= g.dimensions), None)
        self.t = self.grain.table if self.grain else _region_cells()
        self.computes_category = self.grain is not None and not self.grain.by_category

    def column(self, dim: str):
        t = self.t
        if dim == "category" and self.computes_category:
            return rollup.category_of(t.c.class_index, t.c.sku_key, t.c.corrected)
        if dim == "sku":
            return sa.case((t.c.sku_key > 0, skus.c.name), (t.c.sku_key == UNKNOWN_SKU_KEY, UNKNOWN_SKU),
                           else_=NOT_MATCHED)
        if dim == "brand":
            return sa.case((t.c.sku_key > 0, skus.c.brand), else_="")
        return t.c[dim]

    def source(self):
        if "sku_key" not in self.t.c:
            return self.t
        joined = self.t.outerjoin(skus, skus.c.id == self.t.c.sku_key)
        if self.computes_category:
            joined = joined.outerjoin(class_categories, class_categories.c.class_index == self.t.c.class_index)
        return joined

    def where(self) -> list:
        f, t, conditions = self.f, self.t, []
        if f.stores:
            conditions.append(t.c.store.in_(list(f.stores)))
        if f.aisles:
            conditions.append(t.c.aisle.in_(list(f.aisles)))
        if f.class_indices:
            conditions.append(t.c.class_index.in_([int(i) for i in f.class_indices]))
        if f.categories:
            conditions.append(self.column("category").in_(list(f.categories)))
        if self.date_range == "dated":
            conditions.append(t.c.dated if "dated" in t.c else t.c.day > 0)
        elif self.date_range == "days":
            conditions.append(t.c.day > 0)
            if f.date_from is not None:
                conditions.append(t.c.day >= f.date_from.toordinal())
            if f.date_to is not None:
                conditions.append(t.c.day <= f.date_to.toordinal())
        if f.confidence is not None:
            conditions.extend(bin_range(t.c.bin, *f.confidence))
        return conditions

    def facings(self, threshold: float):
        t = self.t
        return sa.func.coalesce(sa.func.sum(sa.case((sa.or_(t.c.corrected, t.c.bin >= threshold_step(threshold)),
                                                     t.c.n), else_=0)), 0)

    def measures(self, threshold: float) -> list:
        """Facings, regions, corrected; confidence sum and min over the regions the model labelled (tally)."""
        t = self.t
        by_model = sa.not_(t.c.corrected)
        return [self.facings(threshold).label("facings"), sa.func.sum(t.c.n).label("regions"),
                sa.func.coalesce(sa.func.sum(sa.case((by_model, t.c.sum_p))), 0).label("sum_confidence"),
                sa.func.min(sa.case((by_model, t.c.min_p))).label("min_confidence"),
                sa.func.sum(sa.case((t.c.corrected, t.c.n), else_=0)).label("corrected")]

    def select(self, groups: dict[str, object], measures: list) -> sa.Select:
        labelled = [expression.label(name) for name, expression in groups.items()]
        query = sa.select(*labelled, *measures).select_from(self.source()).where(*self.where())
        return query.group_by(*labelled) if labelled else query


def bin_range(bins, low: float, high: float) -> list:
    """Rollup/region bins within a confidence range (low ≤ p < high; a range ending at 1 includes 1)."""
    first, last = confidence_steps(low, high)
    return [bins >= first] + ([] if last == 20 else [bins < last])


def _frame(conn: Connection, query: sa.Select) -> pd.DataFrame:
    result = conn.execute(query)
    columns = list(result.keys())
    return pd.DataFrame(list(map(tuple, result)), columns=columns)  # tuples: pandas probes Row objects slowly


def _dates(days: pd.Series) -> pd.Series:
    return days.map(lambda d: dt.date.fromordinal(int(d)) if d else None)


SQL_DIMENSION = {"label": "class_index", "category": "category", "sku": "sku", "brand": "brand", "store": "store",
                 "aisle": "aisle", "date": "day"}  # the expression each grouping selects
NEEDS = {**SQL_DIMENSION, "sku": "sku_key", "brand": "sku_key"}  # the rollup dimension it needs


def tally_table(engine: Engine, by: Sequence[str] = ("label",), threshold: float = 0.0,
                f: TallyFilter = TallyFilter()) -> pd.DataFrame:
    """shelf.analytics.tally.tally, computed in the database."""
    group_columns(by)  # refuses unknown groupings
    by = list(dict.fromkeys(by))
    with engine.connect() as conn:
        cells = _Cells(conn, f, [NEEDS[g] for g in by])
        groups = {GROUPINGS[g][0] if g != "date" else "day": cells.column(SQL_DIMENSION[g]) for g in by}
        sums = _frame(conn, cells.select(groups, cells.measures(threshold)))
    if sums.empty:
        return empty_table(by)
    if "label" in by:
        sums.insert(sums.columns.get_loc("class_index") + 1, "label",
                    [IMAGENET_CLASSES[int(i)] for i in sums["class_index"]])
    if "date" in by:
        sums = sums.rename(columns={"day": "captured_on"}).assign(captured_on=lambda s: _dates(s["captured_on"]))
    return finish(sums, by)


@dataclass(frozen=True)
class Totals:
    regions: int
    facings: int
    corrected: int

    @property
    def below_threshold(self) -> int:
        return self.regions - self.facings


def totals(engine: Engine, threshold: float = 0.0, f: TallyFilter = TallyFilter()) -> Totals:
    with engine.connect() as conn:
        cells = _Cells(conn, f)
        row = conn.execute(cells.select({}, cells.measures(threshold))).mappings().one()
    return Totals(int(row["regions"] or 0), int(row["facings"] or 0), int(row["corrected"] or 0))


def photo_scope(f: TallyFilter, columns=photos.c) -> list:
    """Conditions on photos (or on a table with their store, aisle and day) for the selected stores, aisles and
    dates."""
    conditions = []
    if f.stores:
        conditions.append(columns.store.in_(list(f.stores)))
    if f.aisles:
        conditions.append(columns.aisle.in_(list(f.aisles)))
    if f.dated:
        conditions.append(columns.day > 0)
        if f.date_from is not None:
            conditions.append(columns.day >= f.date_from.toordinal())
        if f.date_to is not None:
            conditions.append(columns.day <= f.date_to.toordinal())
    return conditions


def photo_count(engine: Engine, f: TallyFilter = TallyFilter()) -> int:
    """Photos in the selected stores, aisles and dates."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(photos).where(*photo_scope(f))).scalar_one()


# ---------------------------------------------------------------------------------------------------------------
# Empty shelf: the gaps auto mode finds (regions of kind gap), as a share of the shelf's width

EMPTY_SHELF_GROUPS = {"store": "store", "aisle": "aisle", "date": "day"}


def shelf_widths(f: TallyFilter, by: Sequence[str]) -> sa.Select:
    """Per group: gap_width and shelf_width (gaps + facings, in pixels) of the current regions of photos
    recognised in a gap-finding mode, from their rollup (shelf.storage.schema.shelf_width_rollup). Empty shelf share =
    gap_width / shelf_width."""
    table = shelf_width_rollup
    groups = [table.c[EMPTY_SHELF_GROUPS[g]] for g in by]
    return (sa.select(*groups, sa.func.sum(table.c.gap_width).label("gap_width"),
                      sa.func.sum(table.c.shelf_width).label("shelf_width"))
            .where(*photo_scope(f, table.c)).group_by(*groups))


def empty_shelf(engine: Engine, f: TallyFilter = TallyFilter(), by: Sequence[str] = ()) -> pd.DataFrame:
    """Empty shelf share per store / aisle / date (any of them, or none: the whole selection). Rows only for
    groups with photos from a gap-finding mode."""
    unknown = [g for g in by if g not in EMPTY_SHELF_GROUPS]
    if unknown:
        raise ValueError(f"empty shelf share groups by store, aisle or date, not {', '.join(unknown)}")
    with engine.connect() as conn:
        frame = _frame(conn, shelf_widths(f, list(dict.fromkeys(by))))
    frame = frame[frame["shelf_width"].fillna(0) > 0]
    frame = frame.assign(empty_share=frame["gap_width"].astype(float) / frame["shelf_width"].astype(float))
    if "day" in frame:
        frame = frame.rename(columns={"day": "captured_on"}).assign(captured_on=lambda t: _dates(t["captured_on"]))
    return frame.reset_index(drop=True)


def empty_share_text(share) -> str:
    """An empty shelf share as it reads in tables and figures (like on-shelf availability and compliance):
    "12.5%", or "not measured" where no photo was recognised in a mode that looks for gaps — never 0 %, never a
    blank."""
    return "not measured" if share is None or pd.isna(share) else f"{share:.1%}"


def empty_share_figure(share) -> dict:
    """st.metric's value (and delta) for an empty shelf share: "12.5%", or "—" over a grey "not measured" (the
    words alone do not fit a narrow column at a metric's size)."""
    if share is None or pd.isna(share):
        return {"value": BLANK_FIGURE, "delta": empty_share_text(None), "delta_color": "off", "delta_arrow": "off"}
    return {"value": empty_share_text(share)}


def _fold_small(frame: pd.DataFrame, column: str, keep: int = MAX_SERIES) -> pd.DataFrame:
    """Values of `column` beyond the `keep` with most facings become "Other" (charts stay legible); the values
    folded are listed in `.attrs["folded"]`, so a pick of "Other" can be turned back into them."""
    top = frame.groupby(column)["facings"].sum().nlargest(keep).index
    folded = sorted(set(frame[column]) - set(top))
    result = frame.assign(**{column: frame[column].where(frame[column].isin(top), "Other")})
    result.attrs["folded"] = folded
    return result


def share_by_store(engine: Engine, threshold: float, f: TallyFilter = TallyFilter()) -> pd.DataFrame:
    """store, category, facings, share (of the store's facings) — for the stacked share-of-shelf chart."""
    with engine.connect() as conn:
        cells = _Cells(conn, f, ["store", "category"])
        frame = _frame(conn, cells.select({"store": cells.column("store"), "category": cells.column("category")},
                                          [cells.facings(threshold).label("facings")]))
    if frame.empty:
        return pd.DataFrame(columns=["store", "category", "facings", "share"])
    folded = _fold_small(frame, "category")
    frame = folded.groupby(["store", "category"], as_index=False)["facings"].sum()
    store_total = frame.groupby("store")["facings"].transform("sum")
    frame = frame.assign(share=frame["facings"] / store_total.where(store_total > 0, 1))
    frame.attrs["folded"] = folded.attrs["folded"]
    return frame


def confidence_histogram(engine: Engine, f: TallyFilter = TallyFilter(), bins: int = 20) -> pd.DataFrame:
    """low, high, regions per 0.05 of top-1 confidence (a probability of exactly 1 is in the last bin)."""
    with engine.connect() as conn:
        cells = _Cells(conn, f)
        frame = _frame(conn, cells.select({"bin": cells.column("bin")}, [sa.func.sum(cells.t.c.n).label("regions")]))
    counts = dict.fromkeys(range(bins), 0)
    for b, n in zip(frame.get("bin", []), frame.get("regions", [])):
        counts[min(int(b), bins - 1)] += int(n)
    return pd.DataFrame({"low": THRESHOLD_STEPS[:bins], "high": THRESHOLD_STEPS[1:bins + 1],
                         "regions": list(counts.values())})


TREND_LINES = ("store", "category")


def trend(engine: Engine, threshold: float, f: TallyFilter = TallyFilter(), by: str = "category") -> pd.DataFrame:
    """date, `by` (store or category), facings, photos, per_photo, share per date of dated photos — for the trend
    charts. `photos`: the photos of that date (and store) in the selection, so facings per photo does not rise and
    fall with how many photos were taken that day, as raw facings do. `share`: of the date's facings (for
    categories). Facings come from the rollups; photos are counted in the photos table (by its day index), never
    from the regions. Categories beyond MAX_SERIES are folded into "Other"."""
    if by not in TREND_LINES:
        raise ValueError(f"a trend has one line per store or per category, not per {by}")
    keys = ["day", *(["store"] if by == "store" else [])]
    with engine.connect() as conn:
        cells = _Cells(conn, f, ["day", by])
        query = cells.select({"day": cells.column("day"), by: cells.column(by)},
                             [cells.facings(threshold).label("facings")]).where(cells.t.c.day > 0)
        frame = _frame(conn, query)
        taken = _frame(conn, sa.select(*(photos.c[k] for k in keys), sa.func.count().label("photos"))
                       .where(*photo_scope(f), photos.c.day > 0).group_by(*(photos.c[k] for k in keys)))
    if frame.empty or taken.empty:
        return pd.DataFrame(columns=["date", by, "facings", "photos", "per_photo", "share"])
    if by == "category":
        frame = _fold_small(frame, "category").groupby(["day", "category"], as_index=False)["facings"].sum()
        frame = frame.merge(taken, on="day")
    else:  # every store photographed that day has a point, none of its facings selected or not
        frame = taken.merge(frame, on=keys, how="left").fillna({"facings": 0})
    frame["facings"] = frame["facings"].astype(int)
    day_total = frame.groupby("day")["facings"].transform("sum")
    frame = frame.assign(date=pd.to_datetime(_dates(frame["day"])), per_photo=frame["facings"] / frame["photos"],
                         share=frame["facings"] / day_total.where(day_total > 0, 1))
    return frame.sort_values(["day", by], ignore_index=True)[["date", by, "facings", "photos", "per_photo", "share"]]


# ---------------------------------------------------------------------------------------------------------------
# Regions: the review queue and exports (one page or one chunk at a time)

REGION_COLUMNS = [
    "photo_id", "photo", "sha256", "file", "width", "height", "store", "aisle", "captured_on", "region_id",
    "position", "x1", "y1", "x2", "y2", "predicted_class_index", "predicted_label", "probability", "top_k",
    "class_index", "label", "category", "corrected", "reviewer", "corrected_at", "sku_id", "sku", "brand",
    "sku_similarity", "run_id", "weights_verified", "weights_untrained"]


def _region_query(f: TallyFilter) -> sa.Select:
    category = sa.case((sa.and_(regions.c.sku_id.is_not(None), sa.not_(regions.c.corrected)), skus.c.category),
                       else_=class_categories.c.category)
    sku = sa.case((regions.c.sku_id.is_not(None), skus.c.name),
                  (regions.c.sku_similarity.is_not(None), UNKNOWN_SKU), else_=NOT_MATCHED)
    query = (sa.select(photos.c.id.label("photo_id"), photos.c.name.label("photo"), photos.c.sha256, photos.c.file,
                       photos.c.width, photos.c.height, photos.c.store, photos.c.aisle, photos.c.day,
                       regions.c.id.label("region_id"), regions.c.position, regions.c.x1, regions.c.y1,
                       regions.c.x2, regions.c.y2, regions.c.predicted_class_index, regions.c.probability,
                       regions.c.class_index, category.label("category"), regions.c.corrected, regions.c.sku_id,
                       sku.label("sku"), sa.func.coalesce(skus.c.brand, "").label("brand"), regions.c.sku_similarity,
                       regions.c.run_id, runs.c.weights_verified, runs.c.weights_untrained)
             .select_from(regions.join(photos, photos.c.id == regions.c.photo_id).join(runs)
                          .join(class_categories, class_categories.c.class_index == regions.c.class_index)
                          .outerjoin(skus, skus.c.id == regions.c.sku_id))
             .where(rollup.COUNTED))
    if f.stores:
        query = query.where(photos.c.store.in_(list(f.stores)))
    if f.aisles:
        query = query.where(photos.c.aisle.in_(list(f.aisles)))
    if f.class_indices:
        query = query.where(regions.c.class_index.in_([int(i) for i in f.class_indices]))
    if f.categories:
        query = query.where(category.in_(list(f.categories)))
    if f.dated_only:
        query = query.where(photos.c.day != 0)  # not "> 0": no index range over every photo
    elif f.dated:
        query = query.where(photos.c.day > 0)
        if f.date_from is not None:
            query = query.where(photos.c.day >= f.date_from.toordinal())
        if f.date_to is not None:
            query = query.where(photos.c.day <= f.date_to.toordinal())
    if f.confidence is not None:
        query = query.where(*bin_range(regions.c.bin, *f.confidence))
    return query


def _complete(conn: Connection, frame: pd.DataFrame, ids=None) -> pd.DataFrame:
    """Rows of _region_query → REGION_COLUMNS: names, dates, top-k text and the newest correction's reviewer.
    `ids` may be a subquery selecting the same region ids (cheaper than a list of 20 000 parameters)."""
    if frame.empty:
        return pd.DataFrame(columns=REGION_COLUMNS)
    ids = frame["region_id"].tolist() if ids is None else ids
    top_k = _frame(conn, sa.select(predictions.c.region_id, predictions.c.rank, predictions.c.class_index,
                                   predictions.c.probability).where(predictions.c.region_id.in_(ids))
                   .order_by(predictions.c.region_id, predictions.c.rank))
    top_k = top_k.assign(text=top_k["class_index"].map(lambda i: IMAGENET_CLASSES[int(i)]) + " "
                         + percents(top_k["probability"]))
    newest = sa.select(sa.func.max(corrections.c.id)).where(corrections.c.region_id.in_(ids)) \
        .group_by(corrections.c.region_id)
    reviews = _frame(conn, sa.select(corrections.c.region_id, corrections.c.reviewer,
                                     corrections.c.created_at.label("corrected_at"))
                     .where(corrections.c.id.in_(newest)))
    frame = frame.merge(_joined_ranks(top_k), left_on="region_id", right_index=True, how="left") \
        .merge(reviews, on="region_id", how="left")
    frame["captured_on"] = _dates(frame["day"])
    frame["label"] = [IMAGENET_CLASSES[int(i)] for i in frame["class_index"]]
    frame["predicted_label"] = [IMAGENET_CLASSES[int(i)] for i in frame["predicted_class_index"]]
    frame["corrected"] = frame["corrected"].astype(bool)
    return frame[REGION_COLUMNS]


def _joined_ranks(top_k: pd.DataFrame) -> pd.Series:
    """'pop bottle 62.3% · beer bottle 20% · …' per region_id, vectorised over the ranks (a chunk: 20 000 regions)."""
    by_rank = top_k.pivot(index="region_id", columns="rank", values="text").fillna("")
    joined = by_rank.iloc[:, 0]
    for rank in by_rank.columns[1:]:
        joined = joined + np.where(by_rank[rank] != "", " · " + by_rank[rank], "")
    return joined.rename("top_k")


@dataclass(frozen=True)
class ReviewFilter:
    scope: TallyFilter = TallyFilter()  # stores, aisles, dates, categories, classes
    confidence: tuple[float, float] = (0.0, 1.0)  # of the model's top-1, in steps of 0.05: low ≤ p < high (≤ 1)
    include_reviewed: bool = False

    def regions(self) -> TallyFilter:
        return TallyFilter(**{**self.scope.__dict__, "confidence": self.confidence})


def review_count(engine: Engine, rf: ReviewFilter) -> int:
    """How many regions the review queue holds (from the rollups)."""
    with engine.connect() as conn:
        cells = _Cells(conn, rf.regions())
        count = cells.select({}, [sa.func.coalesce(sa.func.sum(cells.t.c.n), 0)])
        if not rf.include_reviewed:
            count = count.where(sa.not_(cells.t.c.corrected))
        return int(conn.execute(count).scalar_one())


def review_rows(engine: Engine, rf: ReviewFilter, page: int = 1, size: int = 25) -> pd.DataFrame:
    """One page of the review queue, least confident first (then by photo and position: a stable order)."""
    with engine.connect() as conn:
        query = _region_query(normalised(conn, rf.regions()))
        if not rf.include_reviewed:
            query = query.where(sa.not_(regions.c.corrected))
        query = query.order_by(regions.c.probability, regions.c.photo_id, regions.c.position) \
            .limit(size).offset(max(0, page - 1) * size)
        return _complete(conn, _frame(conn, query))


def region_labels(engine: Engine, region_ids: Sequence[int]) -> pd.DataFrame:
    """region_id, class_index (the label that counts now), photo, position of the given regions."""
    query = (sa.select(regions.c.id.label("region_id"), regions.c.class_index, photos.c.name.label("photo"),
                       regions.c.position).select_from(regions.join(photos))
             .where(regions.c.id.in_([int(i) for i in region_ids])).order_by(regions.c.id))
    with engine.connect() as conn:
        return _frame(conn, query)


def region_chunks(engine: Engine, f: TallyFilter = TallyFilter(), chunk: int = 20_000) -> Iterator[pd.DataFrame]:
    """Every selected region, in region order, `chunk` rows at a time (exports of any size in bounded memory)."""
    with engine.connect() as conn:
        f = normalised(conn, f)
    last = 0
    while True:
        with engine.connect() as conn:
            query = _region_query(f).where(regions.c.id > last).order_by(regions.c.id).limit(chunk)
            frame = _complete(conn, _frame(conn, query), query.with_only_columns(regions.c.id).scalar_subquery())
        if frame.empty:
            return
        yield frame
        last = int(frame["region_id"].iloc[-1])


def selection_photos(f: TallyFilter = TallyFilter()) -> sa.Select:
    """The ids of the photos with selected regions."""
    return _region_query(f).with_only_columns(photos.c.id).distinct()


def selection_runs(f: TallyFilter = TallyFilter()) -> sa.Select:
    """The ids of the runs behind the selected regions."""
    return _region_query(f).with_only_columns(regions.c.run_id).distinct()


def selection_size(engine: Engine, f: TallyFilter = TallyFilter()) -> tuple[int, int]:
    """(regions, photos) an export of this selection holds."""
    regions_ = totals(engine, 0.0, f).regions
    if not regions_:
        return 0, 0
    with engine.connect() as conn:
        photos_ = conn.execute(sa.select(sa.func.count()).select_from(selection_photos(f).subquery())).scalar_one()
    return regions_, photos_


def reviewed_regions(engine: Engine, limit: int = 500) -> pd.DataFrame:
    """region_id, photo, position, label of the most recently corrected regions (candidates for SKU references)."""
    newest = sa.select(corrections.c.region_id, sa.func.max(corrections.c.id).label("last")) \
        .group_by(corrections.c.region_id).subquery()
    query = (sa.select(regions.c.id.label("region_id"), photos.c.name.label("photo"), regions.c.position,
                       regions.c.class_index)
             .select_from(regions.join(photos).join(newest, newest.c.region_id == regions.c.id))
             .where(rollup.COUNTED, regions.c.corrected).order_by(newest.c.last.desc()).limit(limit))
    with engine.connect() as conn:
        frame = _frame(conn, query)
    return frame.assign(label=[IMAGENET_CLASSES[int(i)] for i in frame["class_index"]])
