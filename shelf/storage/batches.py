"""The `batches` table: one row per batch, written by its driver, read by the Home page.

A running batch updates its row about once a second (`updated_at` is its heartbeat); a batch whose driver died
without a word (kill -9, a lost machine) stays `running` with an old heartbeat, and is shown as stalled.
"""
from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shelf.storage.schema import batches
from shelf.storage.store import utc_now, write_transaction

RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"
STALLED_AFTER = dt.timedelta(minutes=2)
COLUMNS = ["id", "source", "engine", "place", "status", "total", "done", "stored", "errors", "errors_file",
           "started_at", "updated_at", "finished_at", "run_id"]


def start_batch(engine: Engine, source: str, engine_name: str, place: str, total: int, run_id: int | None) -> int:
    now = utc_now()
    with write_transaction(engine) as conn:
        return conn.execute(batches.insert().values(
            source=source[:500], engine=engine_name, place=place[:200], run_id=run_id, status=RUNNING, total=total,
            started_at=now, updated_at=now)).inserted_primary_key[0]


def update_batch(engine: Engine, batch_id: int, *, status: str | None = None, **values) -> None:
    """Progress (done, stored, errors), the errors file, or a final status (which also sets finished_at)."""
    now = utc_now()
    if status is not None:
        values.update(status=status, finished_at=None if status == RUNNING else now)
    with write_transaction(engine) as conn:
        conn.execute(batches.update().where(batches.c.id == batch_id).values(updated_at=now, **values))


def recent_batches(engine: Engine, limit: int = 10, now: dt.datetime | None = None) -> pd.DataFrame:
    """The newest batches, newest first, with `state` (running / stalled / finished / interrupted / failed),
    `progress` (0–1) and `rate` (photos per second)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(batches).order_by(batches.c.id.desc()).limit(limit)).mappings().all()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    now = now or utc_now()
    for column in ("started_at", "updated_at", "finished_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)  # SQLite hands back naive UTC
    stalled = (frame["status"] == RUNNING) & (frame["updated_at"] < pd.Timestamp(now - STALLED_AFTER))
    frame["state"] = frame["status"].where(~stalled, "stalled")
    frame["progress"] = (frame["done"] / frame["total"].where(frame["total"] > 0)).fillna(1.0).clip(0, 1)
    seconds = ((frame["finished_at"].fillna(frame["updated_at"]) - frame["started_at"]).dt.total_seconds())
    frame["rate"] = (frame["done"] / seconds.where(seconds > 0)).fillna(0.0)
    return frame


def any_running(frame: pd.DataFrame) -> bool:
    return bool((frame["state"] == RUNNING).any())


def batch_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The recent batches as the Home page shows them."""
    return pd.DataFrame({
        "Batch": frame["id"], "State": frame["state"], "Progress": frame["progress"],
        "Photos": frame["done"].astype(str) + " / " + frame["total"].astype(str), "Stored": frame["stored"],
        "Errors": frame["errors"], "Photos/s": frame["rate"].round(2), "Source": frame["source"],
        "Engine": frame["engine"], "Where": frame["place"], "Started": frame["started_at"],
        "Error list": frame["errors_file"]})


def progress_line(row) -> str:
    """One running batch, in words: what it reads, how far it is, how fast."""
    return (f"Batch {row.id} ({row.engine}) — {row.done} of {row.total} photos, {row.rate:.2f} photos/s, "
            f"{row.errors} error(s) — {row.source}")
