"""Price compliance: the shelf-edge labels read with `--prices` against the prices the planogram sets; and the labels
a reviewer checks.

For each planned product with a planned price that is on the shelf (found facings) in a store × aisle × date whose
photos were read with `--prices`:

  price_ok       a label tied to the product's facings shows the planned price (a multi-buy: its price each)
  price_wrong    its labels show prices, none of them the planned one
  label_missing  no label is tied to any of its facings
  unreadable     it has labels, but no price could be read from them

Products not found on the shelf, or in photos read without `--prices`, get no price status: there is no facing to
tie a label to, or nobody looked. A label ties to the product the facing it sits under shows (its effective label,
or its SKU match when no reviewer relabelled it), so a reviewer's corrections count.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.analytics import compliance, report
from shelf.analytics.planogram import ANY_STORE, product_text, sku_names
from shelf.analytics.tally import TallyFilter
from shelf.ingest.prices import Price, same_price
from shelf.storage.prices import current_run, each_price
from shelf.storage.schema import (
    CLASS_PRODUCT,
    SKU_PRODUCT,
    photos,
    planograms,
    price_label_facings,
    price_labels,
    price_scans,
    regions,
)

PRICE_OK, PRICE_WRONG, LABEL_MISSING, UNREADABLE = "price_ok", "price_wrong", "label_missing", "unreadable"
PRICE_STATUSES = (PRICE_WRONG, LABEL_MISSING, UNREADABLE, PRICE_OK)  # worst first
PRICE_COLUMNS = ["store", "aisle", "captured_on", "product", "name", "found_facings", "planned_price", "label",
                 "price_read", "price_text", "price_confidence", "price_status"]


def _planned_prices(engine: Engine, pairs: set[tuple[str, str]]) -> dict[tuple[str, str, str], float]:
    """(store, aisle, product text) → planned price, from the planogram that applies to each store/aisle."""
    names = sku_names(engine)
    aisles = sorted({a for _, a in pairs})
    with engine.connect() as conn:
        rows = conn.execute(sa.select(planograms).where(planograms.c.aisle.in_(aisles))).all() if aisles else []
    own = {(r.store, r.aisle) for r in rows}
    prices = {}
    for store, aisle in pairs:
        plan_store = store if (store, aisle) in own else ANY_STORE
        for r in rows:
            if (r.store, r.aisle) == (plan_store, aisle) and r.price is not None:
                prices[(store, aisle, product_text(r.product_kind, r.product_id, names))] = float(r.price)
    return prices


def _labels(engine: Engine, scope: list) -> pd.DataFrame:
    """Each current label of the selected photos with the product of the facing it sits under."""
    query = (sa.select(photos.c.store, photos.c.aisle, photos.c.day, price_labels.c.id.label("label_id"),
                       price_labels.c.price, price_labels.c.quantity, price_labels.c.text, price_labels.c.confidence,
                       regions.c.class_index, regions.c.sku_id, regions.c.corrected)
             .select_from(price_labels.join(photos, photos.c.id == price_labels.c.photo_id)
                          .join(price_label_facings, price_label_facings.c.label_id == price_labels.c.id)
                          .join(regions, regions.c.id == price_label_facings.c.region_id))
             .where(regions.c.active, price_label_facings.c.anchor, *scope).distinct())
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(),
                             columns=["store", "aisle", "day", "label_id", "price", "quantity", "text", "confidence",
                                      "class_index", "sku_id", "corrected"])
    names = sku_names(engine)
    by_class = frame.assign(product=[product_text(CLASS_PRODUCT, int(i), names) for i in frame["class_index"]])
    matched = frame[frame["sku_id"].notna() & ~frame["corrected"].astype(bool)]
    by_sku = matched.assign(product=[names.get(int(i), f"(removed SKU #{int(i)})") for i in matched["sku_id"]])
    return pd.concat([by_class, by_sku], ignore_index=True).drop_duplicates(["store", "aisle", "day", "label_id",
                                                                             "product"])


def _scanned(engine: Engine, scope: list) -> set[tuple[str, str, int]]:
    query = (sa.select(photos.c.store, photos.c.aisle, photos.c.day).select_from(price_scans.join(photos))
             .where(price_scans.c.run_id == current_run(photos.c.id), *scope).distinct())
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(query)}


def best_label(planned: float, labels: Sequence) -> tuple[str, object | None]:
    """(status, the label it rests on) of one planned product from the labels tied to it (records with price,
    quantity, text, confidence): the most confident label showing the planned price, else the most confident
    showing a price, else the most confident; None when there is no label."""
    if not labels:
        return LABEL_MISSING, None
    by_confidence = sorted(labels, key=lambda label: -label.confidence)
    priced = [(label, each) for label in by_confidence
              if (each := each_price(label.price, int(label.quantity))) is not None]
    if not priced:
        return UNREADABLE, by_confidence[0]
    right = [label for label, each in priced if same_price(each, planned)]
    return (PRICE_OK, right[0]) if right else (PRICE_WRONG, priced[0][0])


def price_read(label) -> float | None:
    """What one item costs on `label` (a record with price and quantity), as a float."""
    each = None if label is None else each_price(label.price, int(label.quantity))
    return None if each is None else float(each)


def price_status(planned: float, labels: pd.DataFrame) -> tuple[str, float | None, str, float | None]:
    """(status, price read, its text, OCR confidence) of one planned product from the labels tied to it."""
    status, label = best_label(planned, list(labels.itertuples()))
    if label is None:
        return status, None, "", None
    return status, price_read(label), label.text, float(label.confidence)


def price_lines(engine: Engine, f: TallyFilter = TallyFilter(), threshold: float = 0.0,
                contexts: Sequence[tuple[str, str, int]] | None = None) -> pd.DataFrame:
    """One row per planned product with a planned price, found on the shelf, in a store × aisle × date read with
    `--prices`: PRICE_COLUMNS, worst status first."""
    lines = compliance.lines(engine, f, threshold, contexts)
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in PRICE_COLUMNS})
    lines = lines[(lines["status"] != compliance.EXTRA) & (lines["found_facings"].fillna(0) > 0)]
    if lines.empty:
        return empty
    scope = report.photo_scope(f) + compliance._contexts_filter(photos, contexts)
    scanned = _scanned(engine, scope)
    lines = lines.assign(day=[d.toordinal() if d else 0 for d in lines["captured_on"]])
    lines = lines[[(s, a, d) in scanned for s, a, d in zip(lines["store"], lines["aisle"], lines["day"])]]
    planned = _planned_prices(engine, set(zip(lines["store"], lines["aisle"])))
    lines = lines.assign(planned_price=[planned.get(k) for k in zip(lines["store"], lines["aisle"], lines["product"])])
    lines = lines[lines["planned_price"].notna()]
    if lines.empty:
        return empty
    labels = _labels(engine, scope)
    grouped = {key: group for key, group in labels.groupby(["store", "aisle", "day", "product"])}
    rows = []
    for line in lines.itertuples():
        tied = grouped.get((line.store, line.aisle, line.day, line.product), labels.iloc[0:0])
        status, read, text, confidence = price_status(line.planned_price, tied)
        rows.append({"store": line.store, "aisle": line.aisle, "captured_on": line.captured_on,
                     "product": line.product, "name": line.name, "found_facings": line.found_facings,
                     "planned_price": line.planned_price, "label": "missing" if status == LABEL_MISSING else "found",
                     "price_read": read, "price_text": text, "price_confidence": confidence, "price_status": status})
    frame = pd.DataFrame(rows, columns=PRICE_COLUMNS)
    order = frame["price_status"].map(PRICE_STATUSES.index)
    return frame.assign(order=order).sort_values(["store", "aisle", "captured_on", "order", "product"],
                                                 ignore_index=True)[PRICE_COLUMNS]


def price_summary(lines: pd.DataFrame) -> dict[str, int | float | None]:
    """How many products of each price status, and the share priced right."""
    counts = {status: int((lines["price_status"] == status).sum()) for status in PRICE_STATUSES}
    return {**counts, "checked": len(lines), "price_compliance": counts[PRICE_OK] / len(lines) if len(lines) else None}


# ---------------------------------------------------------------------------------------------------------------
# Review


REVIEW_COLUMNS = ["label_id", "photo_id", "photo", "sha256", "file", "width", "store", "aisle", "captured_on", "x1",
                  "y1", "x2", "y2", "text", "confidence", "price", "quantity", "per", "corrected"]


def labels_to_review(engine: Engine, f: TallyFilter = TallyFilter(), unreadable_first: bool = True,
                     limit: int = 25, offset: int = 0) -> pd.DataFrame:
    """Current labels of the selected photos, those without a price first, then the least confident first; `shown`
    is the price as a reviewer reads it ("2 for 3.00", "3.98/kg", "" when none was read)."""
    order = [price_labels.c.price.is_not(None), price_labels.c.confidence] if unreadable_first \
        else [price_labels.c.confidence]
    query = (sa.select(price_labels.c.id.label("label_id"), photos.c.id.label("photo_id"),
                       photos.c.name.label("photo"), photos.c.sha256, photos.c.file, photos.c.width, photos.c.store,
                       photos.c.aisle,
                       photos.c.captured_on, price_labels.c.x1, price_labels.c.y1, price_labels.c.x2,
                       price_labels.c.y2, price_labels.c.text, price_labels.c.confidence, price_labels.c.price,
                       price_labels.c.quantity, price_labels.c.per, price_labels.c.corrected)
             .select_from(price_labels.join(photos, photos.c.id == price_labels.c.photo_id))
             .where(price_labels.c.run_id == current_run(photos.c.id), *report.photo_scope(f))
             .order_by(*order, price_labels.c.id).limit(limit).offset(offset))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=REVIEW_COLUMNS)
    return frame.assign(shown=["" if p is None or p != p else Price(Decimal(str(p)), int(q), u).text()
                               for p, q, u in zip(frame["price"], frame["quantity"], frame["per"])])


# ---------------------------------------------------------------------------------------------------------------
# One store × aisle × date, for store tasks (shelf.analytics.tasks: read on its transaction)


@dataclass(frozen=True)
class PlacePrice:
    product: tuple[str, int]  # (product_kind, product_id), as in planograms
    planned: float
    status: str  # PRICE_STATUSES
    label: object | None  # the label the status rests on (photo_id, box, text, price, quantity …); None: missing


_SCANNED = sa.select(price_scans.c.photo_id).where(price_scans.c.photo_id.in_(sa.bindparam("ids", expanding=True)),
                                                   price_scans.c.run_id == current_run(price_scans.c.photo_id))
_PLANNED = sa.select(planograms.c.store, planograms.c.product_kind, planograms.c.product_id, planograms.c.price).where(
    planograms.c.aisle == sa.bindparam("aisle"), sa.or_(planograms.c.store == sa.bindparam("store"),
                                                        planograms.c.store == ANY_STORE))
_PLACE_LABELS = (sa.select(price_labels.c.id, price_labels.c.photo_id, photos.c.width, photos.c.height,
                           price_labels.c.x1, price_labels.c.y1, price_labels.c.x2, price_labels.c.y2,
                           price_labels.c.price, price_labels.c.quantity, price_labels.c.text,
                           price_labels.c.confidence, regions.c.class_index, regions.c.sku_id, regions.c.corrected)
                 .select_from(price_labels.join(photos, photos.c.id == price_labels.c.photo_id)
                              .join(price_label_facings, price_label_facings.c.label_id == price_labels.c.id)
                              .join(regions, regions.c.id == price_label_facings.c.region_id))
                 .where(regions.c.active, price_label_facings.c.anchor, photos.c.store == sa.bindparam("store"),
                        photos.c.aisle == sa.bindparam("aisle"), photos.c.day == sa.bindparam("day")))


def place_prices(conn: Connection, place: tuple[str, str, int], photo_ids: Sequence[int],
                 found: Mapping[tuple[str, int], int]) -> list[PlacePrice]:
    """The price status of each planned product with a planned price and `found` facings in one store × aisle ×
    date, as price_lines has it — only when one of `photo_ids` (the photos being evaluated) had its prices read:
    a photo recognised without `--prices` says nothing about labels, and costs one lookup."""
    if not photo_ids or conn.execute(_SCANNED, {"ids": list(photo_ids)}).first() is None:
        return []
    store, aisle, day = place
    plan = conn.execute(_PLANNED, {"store": store, "aisle": aisle}).all()
    plan_store = store if any(r.store == store for r in plan) else ANY_STORE
    planned = {(r.product_kind, int(r.product_id)): float(r.price) for r in plan
               if r.store == plan_store and r.price is not None and found.get((r.product_kind, int(r.product_id)))}
    if not planned:
        return []
    tied: dict[tuple[str, int], list] = {}
    for label in conn.execute(_PLACE_LABELS, {"store": store, "aisle": aisle, "day": day}):
        tied.setdefault((CLASS_PRODUCT, int(label.class_index)), []).append(label)
        if label.sku_id is not None and not label.corrected:
            tied.setdefault((SKU_PRODUCT, int(label.sku_id)), []).append(label)
    return [PlacePrice(key, price, *best_label(price, tied.get(key, []))) for key, price in planned.items()]
