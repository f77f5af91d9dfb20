"""The audit log: who changed what, when, and the value before and after where it applies.

Every admin action and every correction batch writes one row, in the same transaction as the change it records
(`record` takes the change's connection), so a change and its row are stored together or not at all. A change
outside the database (a weights file) is recorded by `store.record_audit`: this module never imports the store.
Admins read it a page at a time, newest first, and download it as CSV.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.access import Identity
from shelf.storage.schema import audit_log

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["at", "who", "role", "via", "action", "target", "before", "after"]


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def record(conn: Connection, by: Identity, action: str, target: str, before=None, after=None) -> None:
    """One row for a change made on `conn` (inside its transaction). `before`/`after`: anything JSON can hold."""
    conn.execute(audit_log.insert().values(
        at=dt.datetime.now(dt.timezone.utc), who=by.name[:200], role=by.role, via=by.via, action=action,
        target=str(target)[:300], before=_json(before), after=_json(after)))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()


def _query():
    return sa.select(*(audit_log.c[c] for c in COLUMNS)).order_by(audit_log.c.id.desc())


def page(engine: Engine, number: int = 1, size: int = 50) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: the store writes audit rows on the recognize path, which has none
    """One page of rows, newest first (LIMIT/OFFSET in the database)."""
    with engine.connect() as conn:
        rows = conn.execute(_query().limit(size).offset((max(1, number) - 1) * size)).all()
    return pd.DataFrame(rows, columns=COLUMNS)


def csv_bytes(engine: Engine, chunk: int = 5_000) -> bytes:
    """The whole log as CSV, newest first; text cells made inert for spreadsheets (shelf.analytics.export)."""
    import pandas as pd

    from shelf.text import inert_frame
    parts = []
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(_query())
        header = True
        while rows := result.fetchmany(chunk):
            parts.append(inert_frame(pd.DataFrame(rows, columns=COLUMNS)).to_csv(index=False, header=header))
            header = False
    return "".join(parts).encode() if parts else (",".join(COLUMNS) + "\n").encode()
