"""The audit log: who changed what, when, and the value before and after where it applies.

Every admin action, every correction batch and every photo moved or recognised again writes one row, in the same
transaction as the change it records (`record` takes the change's connection), so a change and its row are stored
together or not at all. A change outside the database (a weights file) is recorded by `store.record_audit`: this
module never imports the store. The database keeps the table append-only (shelf.storage.schema: triggers refuse
UPDATE and DELETE). Admins read it a page at a time, newest first, filtered by person, action and date in the
database, with actions in words and what changed as text (`readable`); the CSV keeps the keys and the JSON.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shelf.access import Identity
from shelf.labels import IMAGENET_CLASSES
from shelf.storage.schema import audit_log

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection

COLUMNS = ["at", "who", "role", "via", "action", "target", "before", "after"]

ACTION_NAMES = {  # action key (as stored) → what the Audit log page says
    "correct": "Corrected labels",
    "edit_photo": "Changed a photo's store, aisle or date",
    "recognize_again": "Recognized a photo again",
    "delete_photo": "Deleted a photo",
    "manage_weights": "Imported or downloaded a model file",
    "switch_backend": "Switched the inference backend",
    "edit_categories": "Changed retail categories",
    "edit_catalog": "Changed the SKU catalog",
    "edit_planogram": "Changed planograms",
    "manage_tokens": "Created or revoked an API token",
}
VIA_NAMES = {"local": "no sign-in", "oidc": "sign-in", "header": "sign-in proxy", "token": "API token"}
KEY_NAMES = {  # how the keys of a before/after mapping read, per action (default: the key itself)
    "correct": lambda key: f"region {key}",
    "edit_categories": lambda key: f"{IMAGENET_CLASSES[int(key)]} ({key})",
}
FIELD_NAMES = {"captured_on": "date"}
FIRST_FIELDS = ("name", "store", "aisle", "captured_on")  # shown first, in this order; the rest alphabetically
SHOWN_ENTRIES = 8  # of a long mapping (a batch of corrections); the CSV has them all


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def record(conn: Connection, by: Identity, action: str, target: str, before=None, after=None) -> None:
    """One row for a change made on `conn` (inside its transaction). `before`/`after`: anything JSON can hold."""
    conn.execute(audit_log.insert().values(
        at=dt.datetime.now(dt.timezone.utc), who=by.name[:200], role=by.role, via=by.via, action=action,
        target=str(target)[:300], before=_json(before), after=_json(after)))


@dataclass(frozen=True)
class AuditFilter:
    """Which rows to show: any of these people, any of these actions (empty: all), between two UTC days."""

    people: Sequence[str] = ()
    actions: Sequence[str] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None  # inclusive

    def conditions(self) -> list:
        conditions = []
        if self.people:
            conditions.append(audit_log.c.who.in_(list(self.people)))
        if self.actions:
            conditions.append(audit_log.c.action.in_(list(self.actions)))
        if self.date_from is not None:
            conditions.append(audit_log.c.at >= _utc_midnight(self.date_from))
        if self.date_to is not None:
            conditions.append(audit_log.c.at < _utc_midnight(self.date_to + dt.timedelta(days=1)))
        return conditions


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def count(engine: Engine, f: AuditFilter = AuditFilter()) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(audit_log).where(*f.conditions())).scalar_one()


def _distinct(engine: Engine, column: sa.Column) -> list[str]:
    """The distinct values of an indexed column, one index probe per value (a loose index scan, written as a
    recursive query): as quick with millions of rows as with ten, where SELECT DISTINCT would read them all."""
    found = sa.select(sa.func.min(column).label("value")).cte("found", recursive=True)
    following = sa.select(sa.func.min(column)).where(column > found.c.value).scalar_subquery()
    found = found.union_all(sa.select(following).where(found.c.value.is_not(None)))
    with engine.connect() as conn:
        return conn.execute(sa.select(found.c.value).where(found.c.value.is_not(None))).scalars().all()


def people(engine: Engine) -> list[str]:
    """Everyone the log has a row of, by name, for the person filter."""
    return _distinct(engine, audit_log.c.who)


def actions(engine: Engine) -> list[str]:
    """The action keys the log has rows of, for the action filter."""
    return _distinct(engine, audit_log.c.action)


def _query(f: AuditFilter):
    return sa.select(*(audit_log.c[c] for c in COLUMNS)).where(*f.conditions()).order_by(audit_log.c.id.desc())


def page(engine: Engine, number: int = 1, size: int = 50, f: AuditFilter = AuditFilter()) -> pd.DataFrame:
    """One page of the rows `f` selects, newest first (WHERE, LIMIT and OFFSET in the database)."""
    import pandas as pd  # here, not at the top: the store writes audit rows on the recognize path, which has none
    with engine.connect() as conn:
        rows = conn.execute(_query(f).limit(size).offset((max(1, number) - 1) * size)).all()
    return pd.DataFrame(rows, columns=COLUMNS)


def csv_bytes(engine: Engine, chunk: int = 5_000, f: AuditFilter = AuditFilter()) -> bytes:
    """The rows `f` selects (all by default) as CSV, newest first, with the action keys and before/after JSON as
    stored; text cells made inert for spreadsheets (shelf.analytics.export)."""
    import pandas as pd

    from shelf.text import inert_frame
    parts = []
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(_query(f))
        header = True
        while rows := result.fetchmany(chunk):
            parts.append(inert_frame(pd.DataFrame(rows, columns=COLUMNS)).to_csv(index=False, header=header))
            header = False
    return "".join(parts).encode() if parts else (",".join(COLUMNS) + "\n").encode()


# ---------------------------------------------------------------------------------------------------------------
# The log as people read it


def action_name(action: str) -> str:
    return ACTION_NAMES.get(action) or action.replace("_", " ").capitalize()


def _value_text(value) -> str:
    if value is None or value == "" or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"  # a sha256
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value) or "—"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _loaded(stored):
    return json.loads(stored) if isinstance(stored, str) else None  # None, or NaN from a frame: no value


def _numbers_first(key: str) -> tuple:
    """Region and class numbers in numeric order (2 before 10), then names."""
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def describe(action: str, before: str | None, after: str | None) -> str:
    """A row's before and after (JSON as stored) as one line of text: what changed, field by field —
    `{"276": "pop bottle"}` → `{"276": "carton"}` of a correction reads "region 276: pop bottle → carton", a photo
    moved "aisle: 7 → 8" (fields that stayed are left out); what was added or removed, its fields. A long mapping
    (a batch of corrections) shows its first entries and how many more."""
    old, new = _loaded(before), _loaded(after)
    if not isinstance(old, dict | None) or not isinstance(new, dict | None) or old is new is None:
        return f"{_value_text(old)} → {_value_text(new)}"  # a setting: one value each
    old, new = old or {}, new or {}
    name = KEY_NAMES.get(action, lambda key: FIELD_NAMES.get(key, key))
    keys = [k for k in FIRST_FIELDS if k in old or k in new] + sorted((old.keys() | new.keys()) - set(FIRST_FIELDS),
                                                                      key=_numbers_first)
    if old and new:
        keys = [k for k in keys if old.get(k) != new.get(k)]
        entries = [f"{name(k)}: {_value_text(old.get(k))} → {_value_text(new.get(k))}" for k in keys]
    else:  # added (only after) or removed (only before)
        entries = [f"{name(k)}: {_value_text((old or new)[k])}" for k in keys]
    more = len(entries) - SHOWN_ENTRIES
    return " · ".join(entries[:SHOWN_ENTRIES]) + (f" · … and {more} more" if more > 0 else "") or "no change"


def readable(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of `page` as the Audit log page shows them: actions and sign-in kinds in words, and one `change`
    column saying what before and after differ in."""
    change = [describe(a, b, c) for a, b, c in zip(rows["action"], rows["before"], rows["after"])]
    return rows.drop(columns=["before", "after"]).assign(
        action=rows["action"].map(action_name), via=rows["via"].map(lambda v: VIA_NAMES.get(v, v)), change=change)
