"""Planograms: which products each aisle should hold, and how many facings of each.

A planogram line is (store, aisle, product, expected facings[, shelf row][, price]). `store` is a store's name as
photos carry it, or `*` for every store that has no planogram of its own for that aisle. `product` is a SKU's name
from the catalog or `imagenet:<class index>`. `price` is the shelf price head office set (1.99, 1,99 or €1.99: read
as label prices are, shelf.ingest.prices), for price compliance. The CSV layout (the template) is

    store,aisle,product,expected_facings,shelf_row,price

Imports are untrusted input: each bad line gets a message naming the file, the line and the problem, and the good
lines are kept. An import replaces the planogram of every (store, aisle) it has lines for; other aisles keep theirs.
Every change records who made it and when; only identities allowed "edit_planogram" (shelf.access) may change one.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shelf import access
from shelf.analytics.export import to_csv_bytes
from shelf.ingest.prices import parse_amount
from shelf.labels import IMAGENET_CLASSES
from shelf.storage import audit
from shelf.storage.schema import CLASS_PRODUCT, SKU_PRODUCT, planograms, skus
from shelf.storage.store import utc_now, write_transaction
from shelf.text import clean_text

ANY_STORE = "*"
COLUMNS = ["store", "aisle", "product", "expected_facings", "shelf_row", "price"]
REQUIRED = ["store", "aisle", "product", "expected_facings"]
MAX_FACINGS, MAX_SHELF_ROW, MAX_PRICE = 1000, 50, 1_000_000
MAX_BYTES, MAX_LINES = 5 * 1024 * 1024, 100_000
CLASS_PREFIX = f"{CLASS_PRODUCT}:"


class PlanogramError(ValueError):
    """A planogram file that cannot be read at all (not CSV, no header, a required column missing)."""


@dataclass(frozen=True)
class PlanLine:
    store: str
    aisle: str
    product_kind: str  # sku | imagenet
    product_id: int  # a SKU id or an ImageNet class index
    expected_facings: int
    shelf_row: int | None = None
    price: float | None = None  # the planned shelf price

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.store, self.aisle, self.product_kind, self.product_id


@dataclass
class Parsed:
    lines: list[PlanLine]
    errors: list[str]  # one per refused line: "FILE, line N: problem"


def sku_names(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(skus.c.id, skus.c.name)).all())


def product_text(kind: str, product_id: int, names: dict[int, str]) -> str:
    """How a product reads in a planogram file: the SKU's name, or imagenet:<index>."""
    if kind == CLASS_PRODUCT:
        return f"{CLASS_PREFIX}{product_id}"
    return names.get(int(product_id), f"(removed SKU #{product_id})")


def product_name(kind: str, product_id: int, names: dict[int, str]) -> str:
    """A readable name: the SKU's, or the ImageNet label with its index."""
    if kind == CLASS_PRODUCT:
        return f"{IMAGENET_CLASSES[int(product_id)]} ({product_id})" if 0 <= product_id < len(IMAGENET_CLASSES) \
            else f"class {product_id}"
    return product_text(kind, product_id, names)


def _whole_number(text: str, what: str, low: int, high: int) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, not {text[:40]!r}") from None
    if not value.is_integer() or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, not {text[:40]!r}")
    return int(value)


def _product(text: str, by_name: dict[str, int]) -> tuple[str, int]:
    if text.lower().startswith(CLASS_PREFIX):
        index = text[len(CLASS_PREFIX):].strip()
        if not index.isdigit() or not 0 <= int(index) < len(IMAGENET_CLASSES):
            raise ValueError(f"{text[:40]!r} is not an ImageNet class: use imagenet:0 to imagenet:"
                             f"{len(IMAGENET_CLASSES) - 1}")
        return CLASS_PRODUCT, int(index)
    if not text:
        raise ValueError("product is empty: give a SKU name from the catalog or imagenet:<class index>")
    if text.lower() not in by_name:
        raise ValueError(f"no SKU named {text[:60]!r} in the catalog (add it on the SKU catalog page, or use "
                         "imagenet:<class index>)")
    return SKU_PRODUCT, by_name[text.lower()]


def parse_line(record: dict, by_name: dict[str, int]) -> PlanLine:
    """One line (a dict of the template's columns, text values) → PlanLine, or ValueError saying what is wrong."""
    def cell(name: str) -> str:
        value = record.get(name)
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()

    store, aisle = clean_text(cell("store")), clean_text(cell("aisle"))
    if not store:
        raise ValueError(f"store is empty (use {ANY_STORE} for every store)")
    if not aisle:
        raise ValueError("aisle is empty")
    kind, product_id = _product(cell("product"), by_name)
    facings = _whole_number(cell("expected_facings"), "expected_facings", 1, MAX_FACINGS)
    row = cell("shelf_row")
    shelf_row = _whole_number(row, "shelf_row", 1, MAX_SHELF_ROW) if row else None
    return PlanLine(store, aisle, kind, product_id, facings, shelf_row, _price(cell("price")))


def _price(text: str) -> float | None:
    if not text:
        return None
    amount = parse_amount(text)
    if amount is None or not 0 < amount < MAX_PRICE:
        raise ValueError(f"price must be a shelf price such as 1.99, 1,99 or €1.99, not {text[:40]!r}")
    return float(amount)


def validate(records: Iterable[tuple[int, dict]], by_name: dict[str, int], source: str) -> Parsed:
    """(line number, record) pairs → the good lines and a message per bad one. A product listed twice for the
    same store and aisle keeps its first line."""
    lines, errors, first = [], [], {}
    for number, record in records:
        try:
            line = parse_line(record, by_name)
        except ValueError as exc:
            errors.append(f"{source}, line {number}: {exc}")
            continue
        if line.key in first:
            errors.append(f"{source}, line {number}: {cell_text(record, 'product')} is already planned for store "
                          f"{line.store!r}, aisle {line.aisle!r} on line {first[line.key]}; the first is kept")
            continue
        first[line.key] = number
        lines.append(line)
    return Parsed(lines, errors)


def cell_text(record: dict, name: str) -> str:
    return str(record.get(name) or "").strip()[:60]


def parse_csv(data: bytes, source: str, by_name: dict[str, int]) -> Parsed:
    """A planogram CSV (the template's columns, any order, header required) → lines and per-line errors.
    Raises PlanogramError when the file as a whole cannot be used."""
    if len(data) > MAX_BYTES:
        raise PlanogramError(f"{source}: {len(data) / 1e6:.1f} MB is more than a planogram file may be "
                             f"({MAX_BYTES // (1024 * 1024)} MB)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PlanogramError(f"{source}: not UTF-8 text; save the planogram as CSV (UTF-8)") from None
    if "\0" in text:
        raise PlanogramError(f"{source}: not a CSV file (it holds binary data)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise PlanogramError(f"{source}: the file is empty; it needs the header {','.join(COLUMNS)}") from None
    except csv.Error as exc:
        raise PlanogramError(f"{source}: not a readable CSV file ({exc})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise PlanogramError(f"{source}: line 1 must be the header {','.join(COLUMNS)} (shelf_row and price are "
                             "optional); "
                             f"missing: {', '.join(missing)}")

    def records():
        number = 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise PlanogramError(f"{source}, line {reader.line_num}: not readable CSV ({exc})") from None
            number = reader.line_num
            if number > MAX_LINES + 1:
                raise PlanogramError(f"{source}: more than {MAX_LINES:,} lines; split the planogram into files")
            if not any(v.strip() for v in values):
                continue  # blank lines are no lines
            yield number, dict(zip(header, values))
    return validate(records(), by_name, source)


def parse_frame(frame: pd.DataFrame, by_name: dict[str, int], source: str = "the table") -> Parsed:
    """An edited table (st.data_editor) → lines and per-row errors (rows numbered from 1 as shown)."""
    rows = frame.reindex(columns=COLUMNS).to_dict("records")
    return validate(((n, r) for n, r in enumerate(rows, start=1)
                     if any(str(v).strip() for v in r.values() if v is not None and not
                            (isinstance(v, float) and pd.isna(v)))), by_name, source)


def by_name_map(engine: Engine) -> dict[str, int]:
    return {name.lower(): sku_id for sku_id, name in sku_names(engine).items()}


def replace(engine: Engine, lines: Sequence[PlanLine], identity: access.Identity, changed_by: str | None = None,
            scope: Iterable[tuple[str, str]] | None = None) -> int:
    """Make `lines` the planogram of each (store, aisle) in `scope` (default: the pairs the lines name), in one
    transaction. A line that is unchanged keeps who changed it last and when. Returns the lines stored."""
    access.require(identity, "edit_planogram")
    who = clean_text(changed_by or identity.name) or identity.name
    pairs = sorted(set(scope if scope is not None else ((line.store, line.aisle) for line in lines)))
    now = utc_now()
    with write_transaction(engine) as conn:
        for start in range(0, len(pairs), 500):
            chunk = pairs[start:start + 500]
            in_chunk = set(chunk)
            where = sa.tuple_(planograms.c.store, planograms.c.aisle).in_(chunk)
            before = {(r.store, r.aisle, r.product_kind, r.product_id): r
                      for r in conn.execute(sa.select(planograms).where(where))}
            conn.execute(planograms.delete().where(where))
            rows = []
            for line in lines:
                if (line.store, line.aisle) not in in_chunk:
                    continue
                old = before.get(line.key)
                same = old is not None and (old.expected_facings, old.shelf_row, old.price) == (
                    line.expected_facings, line.shelf_row, line.price)
                rows.append({"store": line.store, "aisle": line.aisle, "product_kind": line.product_kind,
                             "product_id": line.product_id, "expected_facings": line.expected_facings,
                             "shelf_row": line.shelf_row, "price": line.price,
                             "changed_by": old.changed_by if same else who,
                             "changed_at": old.changed_at if same else now})
            if rows:
                conn.execute(planograms.insert(), rows)
            audit.record(conn, identity, "edit_planogram", f"{len(chunk)} store/aisle planogram(s)",
                         {f"{s} / {a}": n for (s, a), n in _counts(before.values()).items()},
                         {f"{s} / {a}": n for (s, a), n in _counts(rows).items()})
    wanted = set(pairs)
    return sum(1 for line in lines if (line.store, line.aisle) in wanted)


def _counts(rows) -> dict[tuple[str, str], int]:
    """Planned facings per (store, aisle) of planogram rows (mappings or rows): what the audit log keeps."""
    totals: dict[tuple[str, str], int] = {}
    for row in rows:
        row = row if isinstance(row, dict) else row._mapping
        key = (row["store"], row["aisle"])
        totals[key] = totals.get(key, 0) + int(row["expected_facings"])
    return totals


def import_csv(engine: Engine, data: bytes, source: str, identity: access.Identity,
               changed_by: str | None = None) -> Parsed:
    """Parse and store a planogram file: the good lines replace the planograms of the store/aisles they name.
    Returns what was parsed (the lines stored and the errors). Raises PlanogramError or access.Forbidden."""
    access.require(identity, "edit_planogram")
    parsed = parse_csv(data, source, by_name_map(engine))
    replace(engine, parsed.lines, identity, changed_by)
    return parsed


def frame(engine: Engine, stores: Sequence[str] = (), aisles: Sequence[str] = ()) -> pd.DataFrame:
    """The stored planogram lines (of the given stores and aisles; '*' lines count for every store) as the
    template's columns plus the product's readable name, who changed the line last and when."""
    query = sa.select(planograms).order_by(planograms.c.store, planograms.c.aisle, planograms.c.shelf_row,
                                           planograms.c.product_kind, planograms.c.product_id)
    if stores:
        query = query.where(planograms.c.store.in_(list(stores) + [ANY_STORE]))
    if aisles:
        query = query.where(planograms.c.aisle.in_(list(aisles)))
    names = sku_names(engine)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    result = pd.DataFrame([{"store": r.store, "aisle": r.aisle,
                            "product": product_text(r.product_kind, r.product_id, names),
                            "name": product_name(r.product_kind, r.product_id, names),
                            "expected_facings": r.expected_facings, "shelf_row": r.shelf_row, "price": r.price,
                            "changed_by": r.changed_by, "changed_at": r.changed_at} for r in rows],
                          columns=COLUMNS[:3] + ["name"] + COLUMNS[3:] + ["changed_by", "changed_at"])
    result["shelf_row"] = result["shelf_row"].astype("Int64")
    result["price"] = result["price"].astype(float)
    return result


def export_csv_bytes(engine: Engine) -> bytes:
    """Every planogram line, in the template's layout (re-importable), with who changed it and when."""
    lines = frame(engine).drop(columns="name")
    lines["changed_at"] = lines["changed_at"].map(lambda t: t.isoformat() if hasattr(t, "isoformat") else t)
    return to_csv_bytes(lines)


def template_bytes() -> bytes:
    example = pd.DataFrame([["*", "7 - Beverages", "imagenet:737", 6, 2, "1.99"],
                            ["*", "7 - Beverages", "imagenet:907", 4, 2, "6.49"],
                            ["Downtown #12", "7 - Beverages", "imagenet:440", 3, 3, ""]], columns=COLUMNS)
    return to_csv_bytes(example)
