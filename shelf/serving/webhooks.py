"""Delivering task events to webhooks: HTTP POSTs with retries and exponential back-off, never inside an upload.

A photo's transaction only writes rows (a task check; the evaluation then writes tasks and their outbox events).
This worker reads the outbox afterwards and POSTs each event's JSON body to each webhook, with

    Content-Type: application/json
    X-Shelf-Event: task.opened                 (task.updated, .acknowledged, .done, .verified, .reopened)
    X-Shelf-Delivery: <key>                    the event's idempotency key (also "key" in the body; the same
    Idempotency-Key: <key>                     on every retry: a receiver that has seen it ignores it)
    X-Shelf-Signature: sha256=<hex>            HMAC-SHA256 of the body with the webhook's secret

A 2xx answer marks it delivered; anything else (or no answer in `TIMEOUT_S`) is tried again after 1, 2, 4 …
seconds, at most `SHELF_WEBHOOK_MAX_BACKOFF` (default 300 s) apart, without end, so a receiver that is down for an
hour gets every event once it is back. One worker at a time delivers to a webhook (a lease in the database), in
event order, and an event waits while an earlier one of its task has not gone out: in order per task.

Where it runs: a thread in every `python -m shelf serve` worker and in the Streamlit server (started with the store;
`SHELF_TASK_WORKER=off` turns it off), or `python -m shelf tasks deliver --forever` as a service of its own. Each
round also evaluates the photos still waiting for task evaluation (after a crash, say).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

from sqlalchemy.engine import Engine

import shelf
from shelf.storage import outbox

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Shelf-Signature"
TIMEOUT_S = 10.0
FIRST_RETRY_S = 1.0
LEASE_S = 60.0
ROUND_S = 1.0  # a background worker's pause between rounds
WORKER_ENV, BACKOFF_ENV = "SHELF_TASK_WORKER", "SHELF_WEBHOOK_MAX_BACKOFF"


def sign(secret: str, body: bytes) -> str:
    """The X-Shelf-Signature of `body`: what a receiver computes with the webhook's secret and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """A receiver's check (constant time): the body came from Shelf with this secret, unchanged."""
    return hmac.compare_digest(sign(secret, body), signature or "")


def max_backoff() -> float:
    value = os.environ.get(BACKOFF_ENV, "")
    try:
        return max(0.01, float(value)) if value else 300.0
    except ValueError:
        raise ValueError(f"{BACKOFF_ENV}={value!r}: give the longest wait between retries in seconds") from None


def backoff(attempts: int, cap: float | None = None) -> float:
    """Seconds to wait after the `attempts`-th failure: 1, 2, 4 … up to the cap."""
    return min(cap if cap is not None else max_backoff(), FIRST_RETRY_S * 2 ** max(0, attempts - 1))


def post(url: str, secret: str, due: outbox.Due, timeout: float = TIMEOUT_S) -> tuple[int | None, str | None]:
    """(HTTP status or None, problem or None) of one POST."""
    request = urllib.request.Request(url, data=due.body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"Shelf/{shelf.__version__}", "X-Shelf-Event": due.event,
        "X-Shelf-Delivery": due.key, "Idempotency-Key": due.key, SIGNATURE_HEADER: sign(secret, due.body)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"cannot reach the receiver: {reason}"


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def deliver_due(engine: Engine, owner: str | None = None, timeout: float = TIMEOUT_S) -> Counter:
    """One round: for each webhook with work that no other worker holds, POST what is due, in order. Returns
    counts of delivered and failed posts."""
    import datetime as dt
    owner, done = owner or owner_name(), Counter()
    for webhook_id, url, secret in outbox.webhooks_with_work(engine):
        if not outbox.claim(engine, webhook_id, owner, LEASE_S):
            continue
        claimed = time.monotonic()
        try:
            blocked: set[int] = set()  # tasks with an earlier event still to go: theirs wait, in order
            for due, next_at in outbox.pending(engine, webhook_id):
                if due.task_id in blocked or next_at > dt.datetime.now(dt.timezone.utc):
                    blocked.add(due.task_id)
                    continue
                if time.monotonic() - claimed > LEASE_S / 3:
                    if not outbox.claim(engine, webhook_id, owner, LEASE_S):
                        break
                    claimed = time.monotonic()
                status, problem = post(url, secret, due, timeout)
                if problem is None:
                    outbox.delivered(engine, due, status)
                    done["delivered"] += 1
                    continue
                outbox.failed(engine, due, problem, status, backoff(due.attempts + 1))
                done["failed"] += 1
                blocked.add(due.task_id)
                if status is None:  # nobody answered: the rest waits for the next round
                    break
        finally:
            outbox.release(engine, webhook_id, owner)
    return done


def work_round(engine: Engine) -> Counter:
    """Evaluate what waits for task evaluation, then deliver what is due."""
    from shelf.analytics import tasks
    return tasks.evaluate_pending(engine) + deliver_due(engine)


class Worker(threading.Thread):
    """Rounds of `work_round` until stopped; a round that fails is logged and the next one tries again."""

    def __init__(self, engine: Engine, interval: float = ROUND_S):
        super().__init__(name="shelf-task-worker", daemon=True)
        self.engine, self.interval, self.stopping = engine, interval, threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                work_round(self.engine)
            except Exception:  # the database away for a moment, say: the next round tries again
                log.exception("store tasks: a delivery round failed")
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=TIMEOUT_S + 5)


_running: dict[str, Worker] = {}
_lock = threading.Lock()


def start_background(engine: Engine) -> Worker | None:
    """The background worker for this store in this process (one per store, started once); None when
    SHELF_TASK_WORKER=off (a separate `tasks deliver --forever` service does the work)."""
    if os.environ.get(WORKER_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        worker = _running.get(key)
        if worker is None or not worker.is_alive():
            worker = _running[key] = Worker(engine)
            worker.start()
    return worker


def started_with(engine: Engine) -> Engine:
    """`engine`, with its background worker started (the Streamlit server's store)."""
    start_background(engine)
    return engine


def stop_background(worker: Worker | None) -> None:
    if worker is None:
        return
    with _lock:
        for key, running in list(_running.items()):
            if running is worker:
                del _running[key]
    worker.stop()
