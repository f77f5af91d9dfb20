"""The Audit log page's queries on a large log: the people and actions to filter by (a loose index scan, against
SELECT DISTINCT), and a count plus the first page of each filter. Run:
    python -m benchmarks.audit [--rows 1000000] [--db postgresql+psycopg://…]
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time

import sqlalchemy as sa

from shelf.storage import audit, store
from shelf.storage.schema import audit_log

PEOPLE = 400
ACTIONS = ["correct"] * 6 + ["edit_photo", "recognize_again", "edit_catalog", "edit_planogram", "delete_photo"]


def fill(engine, rows: int, chunk: int = 50_000) -> None:
    """`rows` audit rows over a year, PEOPLE people, mostly corrections (what a chain's log holds)."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    step = dt.timedelta(days=365) / rows
    for first in range(0, rows, chunk):
        with engine.begin() as conn:
            conn.execute(audit_log.insert(), [
                {"at": start + i * step, "who": f"reviewer{i % PEOPLE:03d}@stores.example.com", "role": "reviewer",
                 "via": "oidc", "action": ACTIONS[i % len(ACTIONS)], "target": "1 region(s)",
                 "before": f'{{"{i}": "pop bottle"}}', "after": f'{{"{i}": "carton"}}'}
                for i in range(first, min(rows, first + chunk))])


def timed(function) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(3):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: an SQLite file in a temp folder)")
    args = parser.parse_args(argv)
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='shelf-audit-bench-')}/store.db"
    engine = store.open_store(url)
    if audit.count(engine) < args.rows:
        start = time.perf_counter()
        fill(engine, args.rows - audit.count(engine))
        print(f"filled {args.rows:,} rows in {time.perf_counter() - start:.0f} s ({engine.dialect.name})")

    def select_distinct(column):
        with engine.connect() as conn:
            return conn.execute(sa.select(column).distinct().order_by(column)).scalars().all()

    for name, function in [("people (loose index scan)", lambda: audit.people(engine)),
                           ("people (SELECT DISTINCT)", lambda: select_distinct(audit_log.c.who)),
                           ("actions (loose index scan)", lambda: audit.actions(engine)),
                           ("actions (SELECT DISTINCT)", lambda: select_distinct(audit_log.c.action))]:
        seconds, found = timed(function)
        print(f"{name:<30} {1000 * seconds:8.1f} ms  ({len(found)} values)")
    filters = {"no filter": audit.AuditFilter(),
               "one person": audit.AuditFilter(people=["reviewer007@stores.example.com"]),
               "one rare action": audit.AuditFilter(actions=["delete_photo"]),
               "one day": audit.AuditFilter(date_from=dt.date(2026, 6, 1), date_to=dt.date(2026, 6, 1)),
               "person + action + month": audit.AuditFilter(["reviewer007@stores.example.com"], ["edit_photo"],
                                                            dt.date(2026, 6, 1), dt.date(2026, 6, 30))}
    for name, chosen in filters.items():
        count_s, total = timed(lambda: audit.count(engine, chosen))
        page_s, _ = timed(lambda: audit.page(engine, 1, 50, chosen))
        last_s, _ = timed(lambda: audit.page(engine, max(1, -(-total // 50)), 50, chosen))
        print(f"{name:<30} count {1000 * count_s:7.1f} ms ({total:,} rows)   first page {1000 * page_s:6.1f} ms   "
              f"last page {1000 * last_s:7.1f} ms")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
