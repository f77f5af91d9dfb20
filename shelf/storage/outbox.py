"""The outbox of task events, and the webhooks they go to.

An event is written by `add_event` on the connection of the change that caused it, so the change and its event
commit together or not at all: a crash (even `kill -9`) right after the commit loses nothing, because delivery
reads the table later (shelf.serving.webhooks). Each event gets one delivery row per webhook active at that moment;
a delivery is retried with exponential back-off until the receiver answers 2xx. Every event carries an idempotency
key (also in its body) that stays the same on every retry, so a receiver that saw it already can ignore it.

A webhook's worker takes a lease on it (`claim`) before delivering, so two workers (two API processes, a separate
`tasks deliver` service) never post to the same receiver at once, and its events leave in order.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.access import LOCAL, Identity, require
from shelf.storage import audit
from shelf.storage.schema import task_events, webhook_deliveries, webhooks
from shelf.storage.store import write_transaction
from shelf.text import clean_text

SECRET_PREFIX = "whsec_"
EVENTS = ("task.opened", "task.updated", "task.acknowledged", "task.done", "task.verified", "task.reopened")


class WebhookError(ValueError):
    """A webhook that cannot be added or removed; the message says why."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def event_body(event: str, key: str, at: dt.datetime, task: dict) -> bytes:
    """The bytes a receiver gets (and the signature covers): compact JSON, keys sorted."""
    return json.dumps({"event": event, "key": key, "created_at": at.isoformat(), "task": task}, sort_keys=True,
                      separators=(",", ":"), default=str, ensure_ascii=False).encode()


def add_event(conn: Connection, task_id: int, event: str, task: dict, at: dt.datetime | None = None) -> str:
    """Write one task event and a delivery for each active webhook, in `conn`'s transaction; returns its key."""
    if event not in EVENTS:
        raise ValueError(f"unknown task event {event!r}")
    at = at or _now()
    key = uuid.uuid4().hex
    event_id = conn.execute(task_events.insert(), {"task_id": task_id, "event": event, "key": key, "created_at": at,
                                                   "body": event_body(event, key, at, task).decode()}
                            ).inserted_primary_key[0]
    conn.execute(_FAN_OUT, {"event_id": event_id, "task_id": task_id, "at": at})
    return key


_FAN_OUT = webhook_deliveries.insert().from_select(  # built once: an upload may write dozens of events
    ["webhook_id", "event_id", "task_id", "next_attempt_at"],
    sa.select(webhooks.c.id, sa.bindparam("event_id", type_=sa.Integer), sa.bindparam("task_id", type_=sa.Integer),
              sa.bindparam("at", type_=sa.DateTime(timezone=True))).where(webhooks.c.active))


# ---------------------------------------------------------------------------------------------------------------
# Webhooks (admins)


@dataclass(frozen=True)
class Webhook:
    id: int
    name: str
    url: str
    active: bool
    created_by: str
    created_at: dt.datetime
    pending: int = 0  # deliveries not made yet
    failing: int = 0  # of those, how many failed at least once


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"{url[:80]!r} is not an http(s) URL")
    return url


def add_webhook(engine: Engine, name: str, url: str, *, by: Identity = LOCAL) -> str:
    """A new webhook; returns its signing secret (shown to the admin once, kept to sign every body)."""
    require(by, "manage_tasks")
    name, url = clean_text(name), check_url(url)
    if not name:
        raise WebhookError("a webhook needs a name (where it goes: 'store chat', 'ticketing')")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        conn.execute(webhooks.insert().values(name=name, url=url, secret=secret, active=True, created_by=by.name,
                                              created_at=_now()))
        audit.record(conn, by, "manage_tasks", f"webhook {name}", None, {"url": url})
    return secret


def remove_webhook(engine: Engine, webhook_id: int, *, by: Identity = LOCAL) -> None:
    """Stop a webhook: it gets no new events and its pending deliveries are dropped (it stays listed)."""
    require(by, "manage_tasks")
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(webhooks.c.name, webhooks.c.url).where(webhooks.c.id == webhook_id,
                                                                            webhooks.c.active)).one_or_none()
        if row is None:
            raise WebhookError(f"no active webhook with id {webhook_id}")
        conn.execute(webhooks.update().where(webhooks.c.id == webhook_id).values(active=False))
        conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.webhook_id == webhook_id,
                                                       webhook_deliveries.c.delivered_at.is_(None)))
        audit.record(conn, by, "manage_tasks", f"webhook {row.name}", {"url": row.url, "active": True},
                     {"active": False})


def list_webhooks(engine: Engine) -> list[Webhook]:
    pending = sa.func.count(webhook_deliveries.c.event_id)
    failing = sa.func.sum(sa.case((webhook_deliveries.c.attempts > 0, 1), else_=0))
    query = (sa.select(webhooks.c.id, webhooks.c.name, webhooks.c.url, webhooks.c.active, webhooks.c.created_by,
                       webhooks.c.created_at, pending, sa.func.coalesce(failing, 0))
             .select_from(webhooks.outerjoin(webhook_deliveries, sa.and_(
                 webhook_deliveries.c.webhook_id == webhooks.c.id, webhook_deliveries.c.delivered_at.is_(None))))
             .group_by(*[webhooks.c[c] for c in ("id", "name", "url", "active", "created_by", "created_at")])
             .order_by(webhooks.c.active.desc(), webhooks.c.id))
    with engine.connect() as conn:
        return [Webhook(*row) for row in conn.execute(query)]


# ---------------------------------------------------------------------------------------------------------------
# Delivery (shelf.serving.webhooks drives these)


@dataclass(frozen=True)
class Due:
    webhook_id: int
    event_id: int
    task_id: int
    attempts: int
    key: str
    event: str
    body: bytes


def claim(engine: Engine, webhook_id: int, owner: str, seconds: float) -> bool:
    """Take (or renew) the lease on a webhook for `seconds`; False when another worker holds it."""
    now = _now()
    with write_transaction(engine) as conn:
        taken = conn.execute(webhooks.update().where(
            webhooks.c.id == webhook_id, webhooks.c.active,
            sa.or_(webhooks.c.lease_until.is_(None), webhooks.c.lease_until < now, webhooks.c.lease_owner == owner))
            .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=seconds))).rowcount
    return bool(taken)


def release(engine: Engine, webhook_id: int, owner: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(webhooks.update().where(webhooks.c.id == webhook_id, webhooks.c.lease_owner == owner)
                     .values(lease_owner=None, lease_until=None))


def webhooks_with_work(engine: Engine) -> list[tuple[int, str, str]]:
    """(id, url, secret) of the active webhooks with deliveries to make."""
    pending = sa.exists().where(webhook_deliveries.c.webhook_id == webhooks.c.id,
                                webhook_deliveries.c.delivered_at.is_(None))
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(webhooks.c.id, webhooks.c.url, webhooks.c.secret)
                                               .where(webhooks.c.active, pending).order_by(webhooks.c.id))]


def pending(engine: Engine, webhook_id: int, limit: int = 200) -> list[tuple[Due, dt.datetime]]:
    """The webhook's undelivered events, oldest first, with when each may be tried next."""
    query = (sa.select(webhook_deliveries.c.webhook_id, webhook_deliveries.c.event_id, webhook_deliveries.c.task_id,
                       webhook_deliveries.c.attempts, task_events.c.key, task_events.c.event, task_events.c.body,
                       webhook_deliveries.c.next_attempt_at)
             .select_from(webhook_deliveries.join(task_events, task_events.c.id == webhook_deliveries.c.event_id))
             .where(webhook_deliveries.c.webhook_id == webhook_id, webhook_deliveries.c.delivered_at.is_(None))
             .order_by(webhook_deliveries.c.event_id).limit(limit))
    with engine.connect() as conn:
        return [(Due(*row[:6], row.body.encode()), _aware(row.next_attempt_at)) for row in conn.execute(query)]


def _aware(at: dt.datetime) -> dt.datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)


def delivered(engine: Engine, due: Due, status: int) -> None:
    with write_transaction(engine) as conn:
        conn.execute(_row(due).values(delivered_at=_now(), last_status=status, attempts=due.attempts + 1,
                                      last_error=None))


def failed(engine: Engine, due: Due, problem: str, status: int | None, retry_in: float) -> None:
    with write_transaction(engine) as conn:
        conn.execute(_row(due).values(attempts=due.attempts + 1, last_status=status, last_error=problem[:300],
                                      next_attempt_at=_now() + dt.timedelta(seconds=retry_in)))


def _row(due: Due):
    return webhook_deliveries.update().where(webhook_deliveries.c.webhook_id == due.webhook_id,
                                             webhook_deliveries.c.event_id == due.event_id)


OUTBOX_COLUMNS = ["event_id", "created_at", "event", "task_id", "webhook", "attempts", "next_attempt_at",
                  "delivered_at", "last_status", "last_error", "key"]


def outbox_rows(engine: Engine, undelivered_only: bool = False, limit: int = 200) -> list[dict]:
    """The newest deliveries (each event × webhook), for admins: what went out, what waits, what failed and why."""
    query = (sa.select(task_events.c.id.label("event_id"), task_events.c.created_at, task_events.c.event,
                       task_events.c.task_id, webhooks.c.name.label("webhook"), webhook_deliveries.c.attempts,
                       webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.delivered_at,
                       webhook_deliveries.c.last_status, webhook_deliveries.c.last_error, task_events.c.key)
             .select_from(webhook_deliveries.join(task_events, task_events.c.id == webhook_deliveries.c.event_id)
                          .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id))
             .order_by(task_events.c.id.desc()).limit(limit))
    if undelivered_only:
        query = query.where(webhook_deliveries.c.delivered_at.is_(None))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def events_of(engine: Engine, task_ids: Sequence[int]) -> list[dict]:
    """The events of some tasks, oldest first: event, created_at, key."""
    query = (sa.select(task_events.c.task_id, task_events.c.event, task_events.c.created_at, task_events.c.key)
             .where(task_events.c.task_id.in_(list(task_ids))).order_by(task_events.c.id))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
