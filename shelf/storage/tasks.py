"""Store tasks: what a store must fix on its shelves, from the finding to the photo that proves it fixed.

    open → acknowledged → done (by someone) → verified (a later photo shows the product at plan)
                                            ↘ reopened (a later photo does not)
    any state but verified → verified when a later photo shows the shelf at plan, whoever touched it or not

At most one task per store × aisle × product is not verified (a partial unique index): a new finding updates it.
Every change writes a task event to the outbox (shelf.storage.outbox) in its own transaction, and a person's
change writes an audit row too. `task_checks` holds the photos stored since their store × aisle × date was last
evaluated: written by the store in the photo's own transaction, so a crash between storing and evaluating loses
nothing (shelf.analytics.tasks evaluates them). This module knows no compliance: it reads and writes rows.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.access import LOCAL, Identity, require
from shelf.storage import audit, outbox
from shelf.storage.schema import (
    ACKNOWLEDGED,
    DONE,
    OPEN,
    REOPENED,
    TASK_FINDINGS,
    TASK_STATES,
    VERIFIED,
    photos,
    planograms,
    task_checks,
    task_rules,
    tasks,
)
from shelf.storage.store import date_of_day, utc_now, write_transaction

ACTIVE_STATES = (OPEN, ACKNOWLEDGED, DONE, REOPENED)
NEXT_STATE = {"acknowledge": ((OPEN, REOPENED), ACKNOWLEDGED), "done": ((OPEN, ACKNOWLEDGED, REOPENED), DONE)}
TASK_COLUMNS = [c.name for c in tasks.columns]


class TaskError(ValueError):
    """A task change that cannot be made (no such task, or not from its state); the message says why."""


def task_document(row) -> dict:
    """A task as events and the API show it: its row, the date as a date, the evidence as data."""
    task = dict(row._mapping if hasattr(row, "_mapping") else row)
    task["date"] = date_of_day(task.pop("day"))
    task["evidence"] = json.loads(task["evidence"]) if task.get("evidence") else {}
    return task


# ---------------------------------------------------------------------------------------------------------------
# What the evaluator uses (inside its transaction)


def lock_place(conn: Connection, store: str, aisle: str) -> None:
    """Evaluations of one store × aisle take turns (PostgreSQL: a transaction advisory lock; SQLite's writers take
    turns anyway), so two uploads of the same aisle at once cannot both open its task."""
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"{store}\x00{aisle}".encode()) - 2 ** 31  # a signed 32-bit key
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(724520, :key)"), {"key": key})


def pending_places(engine: Engine, limit: int = 500) -> list[tuple[str, str, int]]:
    """(store, aisle, day) of the photos waiting to be evaluated, oldest check first."""
    query = (sa.select(photos.c.store, photos.c.aisle, photos.c.day, sa.func.min(task_checks.c.id).label("first"))
             .select_from(task_checks.join(photos, photos.c.id == task_checks.c.photo_id))
             .group_by(photos.c.store, photos.c.aisle, photos.c.day).order_by("first").limit(limit))
    with engine.connect() as conn:
        return [(r.store, r.aisle, r.day) for r in conn.execute(query)]


def drop_checks_when_idle(engine: Engine) -> bool:
    """True, with the waiting checks dropped, when evaluating them could change nothing: no planogram line, no rule
    with an empty-shelf limit and no task still active. A chain without planograms then never pays for an
    evaluation (nor loads its analytics: pandas is a third of a second of a CLI run's start)."""
    with engine.connect() as conn:
        if conn.execute(sa.select(task_checks.c.id).limit(1)).first() is None:
            return True
        could_matter = (sa.select(planograms.c.store),
                        sa.select(task_rules.c.id).where(task_rules.c.empty_share_limit.is_not(None)),
                        sa.select(tasks.c.id).where(tasks.c.state != VERIFIED))
        if any(conn.execute(query.limit(1)).first() is not None for query in could_matter):
            return False
    with write_transaction(engine) as conn:
        conn.execute(task_checks.delete())
    return True


_PLACE = (photos.c.store == sa.bindparam("store"), photos.c.aisle == sa.bindparam("aisle"),
          photos.c.day == sa.bindparam("day"))
# Statements built once: an evaluation runs after every photo stored, and building one costs about what running it
# does.
_CHECKS = sa.select(task_checks.c.id, task_checks.c.photo_id).where(
    task_checks.c.photo_id.in_(sa.select(photos.c.id).where(*_PLACE)))
_DROP_CHECKS = task_checks.delete().where(task_checks.c.id.in_(sa.bindparam("ids", expanding=True)))
_ACTIVE = sa.select(tasks).where(tasks.c.store == sa.bindparam("store"), tasks.c.aisle == sa.bindparam("aisle"),
                                 tasks.c.state != VERIFIED)
_CLOSED = (sa.select(tasks.c.product_kind, tasks.c.product_id, sa.func.max(tasks.c.day).label("day"))
           .where(tasks.c.store == sa.bindparam("store"), tasks.c.aisle == sa.bindparam("aisle"),
                  tasks.c.state == VERIFIED).group_by(tasks.c.product_kind, tasks.c.product_id))


def take_checks(conn: Connection, store: str, aisle: str, day: int) -> list[int]:
    """Remove the checks of one store × aisle × date; returns their photo ids (none: another worker took them)."""
    found = conn.execute(_CHECKS, {"store": store, "aisle": aisle, "day": day}).all()
    if found:
        conn.execute(_DROP_CHECKS, {"ids": [r.id for r in found]})
    return sorted({r.photo_id for r in found})


def tasks_of_place(conn: Connection, store: str, aisle: str) -> tuple[dict, dict]:
    """({(kind, id): active task row}, {(kind, id): day of the newest verified task}) of one store × aisle."""
    place = {"store": store, "aisle": aisle}
    active = {(r.product_kind, r.product_id): r for r in conn.execute(_ACTIVE, place)}
    closed = {(r.product_kind, r.product_id): r.day for r in conn.execute(_CLOSED, place)}
    return active, closed


def open_task(conn: Connection, values: dict, now: dt.datetime) -> int:
    """A new task (state open) with its task.opened event."""
    row = {**values, "state": OPEN, "opened_at": now, "updated_at": now, "reopened": 0}
    task_id = conn.execute(tasks.insert(), row).inserted_primary_key[0]
    outbox.add_event(conn, task_id, "task.opened", task_document({**EMPTY_TASK, **row, "id": task_id}), now)
    return task_id


EMPTY_TASK = {column.name: None for column in tasks.columns}


@functools.lru_cache(maxsize=32)
def _update(columns: tuple[str, ...]) -> sa.Update:
    """UPDATE of these columns of a task still in the state read: built once per set of columns."""
    return tasks.update().where(tasks.c.id == sa.bindparam("task_id"), tasks.c.state == sa.bindparam("was")) \
        .values({**{c: sa.bindparam(f"new_{c}") for c in columns}, "updated_at": sa.bindparam("now")})


def change_task(conn: Connection, task, values: dict, event: str, now: dt.datetime) -> bool:
    """Update `task` (its row as read) if it is still in the state read (another change may have come first: then
    nothing is done and False is returned), and write `event` to the outbox."""
    changed = conn.execute(_update(tuple(sorted(values))), {
        "task_id": task.id, "was": task.state, "now": now, **{f"new_{k}": v for k, v in values.items()}}).rowcount
    if changed:
        outbox.add_event(conn, task.id, event, task_document({**task._mapping, **values, "updated_at": now}), now)
    return bool(changed)


EVIDENCE_FIELDS = ("product", "finding", "expected_facings", "found_facings", "empty_share", "day", "photo_id",
                   "evidence")


def refresh_evidence(conn: Connection, changes: Sequence[tuple[int, str, dict]], now: dt.datetime) -> None:
    """(task id, its state, EVIDENCE_FIELDS values) for tasks whose newest photo says what they said before: their
    evidence moves to it, no event (one statement for them all: a photo touches every open task of its aisle)."""
    if changes:
        conn.execute(_update(EVIDENCE_FIELDS), [{"task_id": task_id, "was": state, "now": now,
                                 **{f"new_{f}": values[f] for f in EVIDENCE_FIELDS}}
                                for task_id, state, values in changes])


# ---------------------------------------------------------------------------------------------------------------
# People's changes


def move(engine: Engine, task_id: int, action: str, *, by: Identity = LOCAL) -> dict:
    """`action` acknowledge or done, by someone allowed to work on the task's store; returns the task after it."""
    if action not in NEXT_STATE:
        raise ValueError(f"unknown task action {action!r}")
    sources, target = NEXT_STATE[action]
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).one_or_none()
        if row is None:
            raise TaskError(f"no task with id {task_id}")
        require(by, "work_task", row.store)
        if row.state not in sources:
            raise TaskError(f"task {task_id} is {row.state}; only a task that is {' or '.join(sources)} can be "
                            f"marked {target}")
        now = utc_now()
        stamp = {"acknowledged_by": by.name[:200], "acknowledged_at": now} if target == ACKNOWLEDGED else \
            {"done_by": by.name[:200], "done_at": now}
        change_task(conn, row, {"state": target, **stamp}, "task.done" if target == DONE else "task.acknowledged", now)
        audit.record(conn, by, "work_task", f"task {task_id} {row.store}/{row.aisle} {row.product}",
                     {"state": row.state}, {"state": target})
        return task_document(conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).one())


# ---------------------------------------------------------------------------------------------------------------
# Reading


MAX_AGE_HOURS = 24 * 366 * 100  # a century: any task's age fits; more is a typo (and would overflow a date)


@dataclass(frozen=True)
class TaskFilter:
    stores: Sequence[str] = ()
    aisles: Sequence[str] = ()
    states: Sequence[str] = ()
    older_than_hours: float | None = None  # opened at least this long ago
    newer_than_hours: float | None = None  # opened at most this long ago
    findings: Sequence[str] = ()  # missing, under, empty, price_wrong, label_missing

    def __post_init__(self):
        for asked, known, what in ((self.states, TASK_STATES, "state"), (self.findings, TASK_FINDINGS, "finding")):
            unknown = set(asked) - set(known)
            if unknown:
                raise ValueError(f"unknown task {what}(s): {', '.join(sorted(unknown))}; {what}s are "
                                 f"{', '.join(known)}")
        for hours in (self.older_than_hours, self.newer_than_hours):
            if hours is not None and not 0 <= hours <= MAX_AGE_HOURS:
                raise ValueError(f"an age is 0 to {MAX_AGE_HOURS} hours, not {hours:g}")

    def where(self, now: dt.datetime | None = None) -> list:
        now = now or utc_now()
        conditions = []
        if self.stores:
            conditions.append(tasks.c.store.in_(list(self.stores)))
        if self.aisles:
            conditions.append(tasks.c.aisle.in_(list(self.aisles)))
        if self.states:
            conditions.append(tasks.c.state.in_(list(self.states)))
        if self.findings:
            conditions.append(tasks.c.finding.in_(list(self.findings)))
        if self.older_than_hours is not None:
            conditions.append(tasks.c.opened_at <= now - dt.timedelta(hours=self.older_than_hours))
        if self.newer_than_hours is not None:
            conditions.append(tasks.c.opened_at >= now - dt.timedelta(hours=self.newer_than_hours))
        return conditions


LIST_COLUMNS = ["id", "state", "store", "aisle", "product", "finding", "expected_facings", "found_facings",
                "empty_share", "day", "photo_id", "opened_at", "updated_at", "acknowledged_by", "done_by",
                "verified_at", "reopened"]


def page(engine: Engine, f: TaskFilter = TaskFilter(), limit: int = 50, offset: int = 0) -> list[dict]:
    """One page of tasks, newest first (LIMIT/OFFSET in the database)."""
    query = (sa.select(*(tasks.c[c] for c in LIST_COLUMNS)).where(*f.where())
             .order_by(tasks.c.opened_at.desc(), tasks.c.id.desc()).limit(limit).offset(offset))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["date"] = date_of_day(row.pop("day"))
    return rows


def _by_age(column, f: TaskFilter):
    """`column` to group or sort by; with an age filter wrapped in an expression, so that SQLite reads the range of
    the opened_at index rather than a whole index already in that column's order (at 100 000 tasks: counts by
    state 8 ms against 200 ms)."""
    return sa.func.coalesce(column, column) if f.older_than_hours is not None or f.newer_than_hours is not None \
        else column


def count_by_state(engine: Engine, f: TaskFilter = TaskFilter()) -> dict[str, int]:
    state = _by_age(tasks.c.state, f)
    query = sa.select(state, sa.func.count()).where(*f.where()).group_by(state)
    with engine.connect() as conn:
        found = dict(conn.execute(query).all())
    return {state: found.get(state, 0) for state in TASK_STATES}


def get(engine: Engine, task_id: int) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).one_or_none()
    return None if row is None else task_document(row)


FETCH_ALL = 20_000


def fix_hour_ranks(engine: Engine, f: TaskFilter, quantiles: Sequence[float]) -> list[tuple[str, int, int, float]]:
    """(store, verified tasks n, rank r, hours) of the verified tasks in the selection whose 0-based rank r - 1 in
    their store's hours to fix is at or just after a quantile's position (n - 1) * q: what interpolating the
    quantiles needs, two rows per store and quantile instead of every task's. Each is an index walk
    (state, store, hours_to_fix) with an OFFSET: 64 ms for 100 stores at 90 000 verified tasks, where a window
    function over them took 0.5 s and fetching them all 0.4 s. A selection of at most FETCH_ALL tasks (the last
    week's, say: its filter is not in that index) is read whole instead, every rank."""
    if f.states and VERIFIED not in f.states:
        return []
    where = replace(f, states=(VERIFIED,)).where()
    store_ = _by_age(tasks.c.store, f)
    found = []
    with engine.connect() as conn:
        sizes = conn.execute(sa.select(store_, sa.func.count()).where(*where).group_by(store_)).all()
        if sum(n for _, n in sizes) <= FETCH_ALL:
            every = conn.execute(sa.select(tasks.c.store, tasks.c.hours_to_fix).where(*where)
                                 .order_by(store_, _by_age(tasks.c.hours_to_fix, f))).all()
            n = dict(sizes)
            rank = {store: 0 for store in n}
            for store, hours in every:
                rank[store] += 1
                found.append((store, n[store], rank[store], hours))
            return found
        for store, n in sizes:
            ordered = sa.select(tasks.c.hours_to_fix).where(*where, tasks.c.store == store) \
                .order_by(tasks.c.hours_to_fix).limit(2)
            for q in quantiles:
                first = int((n - 1) * q)
                hours = conn.execute(ordered.offset(first)).scalars().all()
                found += [(store, n, first + 1 + i, h) for i, h in enumerate(hours)]
    return found


def stores_and_aisles(engine: Engine) -> tuple[list[str], list[str]]:
    """The stores and aisles that have tasks (for the filters): one pass over an index."""
    with engine.connect() as conn:
        pairs = conn.execute(sa.select(tasks.c.store, tasks.c.aisle).distinct()).all()
    return sorted({store for store, _ in pairs}), sorted({aisle for _, aisle in pairs})


def pending_checks(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(task_checks)).scalar_one()


# ---------------------------------------------------------------------------------------------------------------
# Rules (admins)

RULE_COLUMNS = ["store", "aisle", "product", "statuses", "min_gap", "empty_share_limit", "quiet_hours", "timezone"]


def rule_rows(conn_or_engine) -> list[dict]:
    query = sa.select(*(task_rules.c[c] for c in RULE_COLUMNS), task_rules.c.changed_by, task_rules.c.changed_at) \
        .order_by(task_rules.c.store, task_rules.c.aisle, task_rules.c.product)
    if isinstance(conn_or_engine, Connection):
        return [dict(r) for r in conn_or_engine.execute(query).mappings()]
    with conn_or_engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def replace_rules(engine: Engine, rules: Sequence[dict], *, by: Identity = LOCAL) -> None:
    """Make `rules` (dicts of RULE_COLUMNS, already checked by shelf.analytics.tasks.parse_rule) the rules in force,
    audited with the ones they replace."""
    require(by, "manage_tasks")
    now = utc_now()
    with write_transaction(engine) as conn:
        before = [{c: r[c] for c in RULE_COLUMNS} for r in rule_rows(conn)]
        conn.execute(task_rules.delete())
        if rules:
            conn.execute(task_rules.insert(), [{**{c: r[c] for c in RULE_COLUMNS}, "changed_by": by.name[:200],
                                                "changed_at": now} for r in rules])
        audit.record(conn, by, "manage_tasks", f"{len(rules)} task rule(s)", before,
                     [{c: r[c] for c in RULE_COLUMNS} for r in rules])
