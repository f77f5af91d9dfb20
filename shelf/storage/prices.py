"""Shelf-edge price labels in the store: what a run read on a photo, the facing group each label prices, and the
prices reviewers corrected.

A photo's labels are written right after its regions, in a transaction of their own, with a `price_scans` row
saying the run looked for them: a photo whose labels were not written (a crash between the two) reads as "prices
not read", never as "label missing". A photo's *current* labels are those of the run of its active regions, so a
photo recognised again without `--prices` has none, and one recognised again with it has the new run's.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shelf.access import Identity, acting, require
from shelf.ingest.prices import ShelfLabel, parse_price
from shelf.storage import audit
from shelf.storage.schema import (
    PRODUCT,
    price_corrections,
    price_label_facings,
    price_labels,
    price_scans,
    regions,
    task_checks,
)
from shelf.storage.store import utc_now, write_transaction
from shelf.text import clean_text

if TYPE_CHECKING:
    import pandas as pd

LABEL_COLUMNS = ["label_id", "photo_id", "x1", "y1", "x2", "y2", "text", "confidence", "read_price", "price",
                 "quantity", "per", "corrected", "region_ids"]


def current_run(photo_id_column):
    """The run of a photo's active regions (SQL, for a photo id column or value)."""
    return (sa.select(regions.c.run_id).where(regions.c.photo_id == photo_id_column, regions.c.active)
            .limit(1).scalar_subquery())


def save_labels(engine: Engine, photo_id: int, run_id: int, labels: Sequence[ShelfLabel], seconds: float = 0.0
                ) -> list[int]:
    """Store a run's labels of a photo (facings given by region position in that run); returns their ids. Saving
    the same run's labels again replaces them."""
    with write_transaction(engine) as conn:
        conn.execute(price_labels.delete().where(price_labels.c.photo_id == photo_id, price_labels.c.run_id == run_id))
        conn.execute(price_scans.delete().where(price_scans.c.photo_id == photo_id, price_scans.c.run_id == run_id))
        conn.execute(price_scans.insert().values(photo_id=photo_id, run_id=run_id, labels=len(labels),
                                                 seconds=float(seconds)))
        # the photo is evaluated for store tasks again, with its labels: an evaluation that ran between storing its
        # regions and its labels (the task worker's) saw no prices, which opens and verifies no price task
        conn.execute(task_checks.insert().values(photo_id=photo_id, created_at=utc_now()))
        if not labels:
            return []
        by_position = dict(conn.execute(sa.select(regions.c.position, regions.c.id).where(
            regions.c.photo_id == photo_id, regions.c.run_id == run_id, regions.c.kind == PRODUCT)).all())
        ids = conn.execute(price_labels.insert().returning(price_labels.c.id, sort_by_parameter_order=True), [
            {"photo_id": photo_id, "run_id": run_id, "x1": label.box.x1, "y1": label.box.y1, "x2": label.box.x2,
             "y2": label.box.y2, "text": label.text[:300], "confidence": float(label.confidence),
             "read_price": _amount(label), "price": _amount(label),
             "quantity": label.price.quantity if label.price else 1, "per": label.price.per if label.price else "",
             "corrected": False} for label in labels]).scalars().all()
        links = [{"label_id": label_id, "region_id": by_position[p], "anchor": k == 0}
                 for label_id, label in zip(ids, labels) for k, p in enumerate(label.facings) if p in by_position]
        if links:
            conn.execute(price_label_facings.insert(), links)
    return list(ids)


def _amount(label: ShelfLabel) -> float | None:
    return None if label.price is None else float(label.price.amount)


def labels_frame(engine: Engine, photo_ids: Sequence[int] | None = None, label_ids: Sequence[int] | None = None
                 ) -> pd.DataFrame:
    """The current labels of the given photos (or the given labels): LABEL_COLUMNS, `region_ids` the facing group
    (the facing the label sits under first)."""
    import pandas as pd
    query = sa.select(price_labels.c.id.label("label_id"), *(price_labels.c[c] for c in LABEL_COLUMNS[1:-1])) \
        .where(price_labels.c.run_id == current_run(price_labels.c.photo_id)).order_by(price_labels.c.id)
    if photo_ids is not None:
        query = query.where(price_labels.c.photo_id.in_([int(i) for i in photo_ids]))
    if label_ids is not None:
        query = query.where(price_labels.c.id.in_([int(i) for i in label_ids]))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=LABEL_COLUMNS[:-1])
        links = conn.execute(sa.select(price_label_facings.c.label_id, price_label_facings.c.region_id)
                             .where(price_label_facings.c.label_id.in_(frame["label_id"].tolist()))
                             .order_by(price_label_facings.c.label_id, price_label_facings.c.anchor.desc(),
                                       price_label_facings.c.region_id)).all()
    groups: dict[int, list[int]] = {}
    for label_id, region_id in links:
        groups.setdefault(label_id, []).append(region_id)
    frame["region_ids"] = [groups.get(int(i), []) for i in frame["label_id"]]  # the anchor first
    frame["corrected"] = frame["corrected"].astype(bool)
    return frame


def scanned(engine: Engine, photo_id: int) -> bool:
    """Whether the run of a photo's current regions read its prices."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(price_scans).where(
            price_scans.c.photo_id == photo_id, price_scans.c.run_id == current_run(photo_id))).scalar_one() > 0


def correct_prices(engine: Engine, changes: Mapping[int, str], reviewer: Identity | str) -> int:
    """Store reviewers' prices for labels: {label_id: price as typed ("1,99", "2 for 3.00"; "" for "shows no
    price")}. All or nothing; ValueError naming the label when a text is not a price. Returns how many."""
    by = acting(reviewer)
    require(by, "correct")
    name = clean_text(by.name)
    if not name:
        raise ValueError("a reviewer name is required")
    parsed = {}
    for label_id, text in changes.items():
        text = clean_text(str(text or ""))[:100]
        price = parse_price(text) if text else None
        if text and price is None:
            raise ValueError(f"label {label_id}: {text!r} is not a price (write it as 1.99, 1,99 or 2 for 3.00)")
        parsed[int(label_id)] = (text, price)
    if not parsed:
        return 0
    now = utc_now()
    with write_transaction(engine) as conn:
        before = dict(conn.execute(sa.select(price_labels.c.id, price_labels.c.price)
                                   .where(price_labels.c.id.in_(list(parsed)))).all())
        missing = sorted(set(parsed) - set(before))
        if missing:
            raise ValueError(f"no such label(s): {', '.join(map(str, missing[:5]))}")
        audit.record(conn, by, "correct_price", f"{len(parsed)} label(s)", {str(i): before[i] for i in sorted(parsed)},
                     {str(i): parsed[i][0] for i in sorted(parsed)})
        conn.execute(price_corrections.insert(), [
            {"label_id": i, "text": text, "price": None if p is None else float(p.amount),
             "quantity": p.quantity if p else 1, "reviewer": name, "created_at": now}
            for i, (text, p) in parsed.items()])
        conn.execute(price_labels.update().where(price_labels.c.id == sa.bindparam("lid")).values(
            price=sa.bindparam("amount"), quantity=sa.bindparam("n"), per=sa.bindparam("unit"), corrected=True), [
            {"lid": i, "amount": None if p is None else float(p.amount), "n": p.quantity if p else 1,
             "unit": p.per if p else ""} for i, (_, p) in parsed.items()])
    return len(parsed)


def each_price(price: float | None, quantity: int) -> Decimal | None:
    """What one item costs on a label: its price, or a multi-buy's shared out (to the cent)."""
    if price is None or price != price:  # NULL or NaN
        return None
    amount = Decimal(str(price))
    return amount if quantity <= 1 else (amount / quantity).quantize(Decimal("0.01"))


def region_prices(engine: Engine, region_ids: Sequence[int]) -> pd.DataFrame:
    """region_id, price (each), price_text, price_confidence of the given regions' labels (the most confident label
    where a facing has several)."""
    import pandas as pd
    columns = ["region_id", "price", "price_text", "price_confidence"]
    if not len(region_ids):
        return pd.DataFrame(columns=columns)
    query = (sa.select(price_label_facings.c.region_id, price_labels.c.price, price_labels.c.quantity,
                       price_labels.c.text, price_labels.c.confidence)
             .select_from(price_label_facings.join(price_labels))
             .where(price_label_facings.c.region_id.in_([int(i) for i in region_ids])))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(),
                             columns=["region_id", "price", "quantity", "text", "confidence"])
    frame = frame.sort_values("confidence", ascending=False).drop_duplicates("region_id")
    each = [each_price(p, int(q)) for p, q in zip(frame["price"], frame["quantity"])]
    return pd.DataFrame({"region_id": frame["region_id"], "price": [None if e is None else float(e) for e in each],
                         "price_text": frame["text"], "price_confidence": frame["confidence"]}, columns=columns)
