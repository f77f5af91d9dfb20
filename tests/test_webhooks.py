"""Delivering task events: signed POSTs to a local receiver that is down for a while and still gets every event once,
in order per task; a receiver with the wrong secret can tell; an event committed by a process killed with SIGKILL
before it delivered is delivered by the next worker; 20 uploads of one aisle at once open one task. On SQLite and
PostgreSQL."""
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from shelf import access
from shelf.analytics import planogram
from shelf.analytics import tasks as evaluator
from shelf.serving import webhooks
from shelf.storage import outbox, store
from shelf.storage import tasks as stored
from shelf.storage.schema import webhook_deliveries
from tests.e2e.conftest import free_port
from tests.factory import TEST_RUN
from tests.test_compliance import add_shelf
from tests.test_tasks import AT_PLAN, DAY1, DAY2, NO_BEER, PLAN
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def chain(db_url, monkeypatch):
    monkeypatch.setenv(webhooks.BACKOFF_ENV, "0.2")  # retries 0.2 s apart at most: the test waits for them
    engine = store.open_store(db_url)
    planogram.import_csv(engine, PLAN, "plan.csv", access.LOCAL)
    engine.run_id = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    engine.db_url = db_url
    yield engine
    engine.dispose()


def deliver_until(engine, condition, seconds: float = 30) -> None:
    """Delivery rounds until `condition()` holds (bounded in time)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the events did not arrive in time"
        webhooks.work_round(engine)
        time.sleep(0.05)


def test_a_receiver_down_for_a_while_gets_every_event_once_in_order_and_signed(chain):
    receiver = Receiver(port=free_port())
    receiver.secret = outbox.add_webhook(chain, "store chat", receiver.url)
    for number, store_name in enumerate(["S014", "S015", "S016"], start=1):
        add_shelf(chain, chain.run_id, number, store_name, "3", DAY1, NO_BEER)
    assert evaluator.evaluate_pending(chain) == {"opened": 3}
    first = stored.page(chain, stored.TaskFilter(stores=["S014"]))[0]["id"]
    stored.move(chain, first, "acknowledge")
    stored.move(chain, first, "done")
    failed = webhooks.deliver_due(chain)  # the receiver is down: one refused POST, the rest wait for the next round
    assert failed == {"failed": 1}
    for _ in range(3):
        webhooks.deliver_due(chain)
        time.sleep(0.1)
    with chain.connect() as conn:
        attempts = conn.execute(sa.select(sa.func.max(webhook_deliveries.c.attempts))).scalar()
    assert attempts >= 2 and receiver.received == []
    hook = outbox.list_webhooks(chain)[0]
    assert (hook.pending, hook.failing) == (5, hook.failing) and hook.failing >= 1
    assert "cannot reach the receiver" in outbox.outbox_rows(chain, undelivered_only=True)[-1]["last_error"]

    receiver.up()
    try:
        add_shelf(chain, chain.run_id, 4, "S014", "3", DAY2, AT_PLAN)  # while it was down: verified
        deliver_until(chain, lambda: len(receiver.received) == 6)
        webhooks.work_round(chain)  # nothing left: nothing sent twice
        time.sleep(0.3)
        webhooks.work_round(chain)
    finally:
        receiver.down()
    assert len(receiver.received) == 6 and len(set(receiver.keys())) == 6
    assert all(r["signed"] and r["key"] == r["header_key"] for r in receiver.received)
    assert [e for t, e in receiver.events() if t == first] == ["task.opened", "task.acknowledged", "task.done",
                                                                "task.verified"]
    assert receiver.received[-1]["task"]["state"] == "verified"
    assert outbox.outbox_rows(chain, undelivered_only=True) == []


def test_a_receiver_with_the_wrong_secret_can_tell(chain):
    receiver = Receiver(secret="whsec_not-the-one").up()
    try:
        outbox.add_webhook(chain, "ticketing", receiver.url)
        add_shelf(chain, chain.run_id, 1, "S014", "3", DAY1, NO_BEER)
        deliver_until(chain, lambda: len(receiver.received) == 1)
    finally:
        receiver.down()
    assert receiver.received[0]["signed"] is False
    body = b'{"event":"task.opened"}'
    assert webhooks.verify("s1", body, webhooks.sign("s1", body))
    assert not webhooks.verify("s2", body, webhooks.sign("s1", body))
    assert not webhooks.verify("s1", body + b" ", webhooks.sign("s1", body))


CHILD = textwrap.dedent("""
    import sys, time
    from shelf.analytics import tasks
    from shelf.storage import store
    from tests.test_compliance import add_shelf
    from tests.test_tasks import NO_BEER, DAY1
    engine = store.open_store(sys.argv[1])
    add_shelf(engine, int(sys.argv[2]), 7, "S014", "3", DAY1, NO_BEER)
    if sys.argv[3] == "evaluate":
        tasks.evaluate_pending(engine)
    print("committed", flush=True)
    time.sleep(60)  # killed here, before any delivery
""")


@pytest.mark.parametrize("killed_after", ["storing", "evaluate"])
def test_kill_9_between_the_change_and_its_delivery_loses_no_event(chain, killed_after):
    receiver = Receiver().up()
    try:
        receiver.secret = outbox.add_webhook(chain, "store chat", receiver.url)
        child = subprocess.Popen([sys.executable, "-c", CHILD, chain.db_url, str(chain.run_id), killed_after],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ})
        try:
            assert child.stdout.readline().strip() == "committed"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        assert receiver.received == []
        deliver_until(chain, lambda: len(receiver.received) == 1)  # a new worker: evaluates if need be, delivers
    finally:
        receiver.down()
    assert receiver.events() == [(stored.page(chain)[0]["id"], "task.opened")] and receiver.received[0]["signed"]


def test_twenty_uploads_of_one_aisle_at_once_open_one_task(chain):
    start, stored_all = threading.Barrier(20), threading.Barrier(20)
    problems, outcomes = [], []

    def upload(number: int) -> None:
        try:
            start.wait(timeout=30)
            add_shelf(chain, chain.run_id, 100 + number, "S014", "3", DAY1 + dt.timedelta(days=number % 2), NO_BEER)
            stored_all.wait(timeout=60)  # every evaluation then starts at once: the widest race there can be
            outcomes.append(evaluator.evaluate_pending(chain))
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            problems.append(exc)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert problems == [] and sum(outcomes, Counter()) == {"opened": 1}  # no evaluation failed on the way
    assert stored.pending_checks(chain) == 0
    (task,) = stored.page(chain)
    assert (task["store"], task["aisle"], task["product"], task["state"]) == ("S014", "3", "beer bottle (440)", "open")
    assert [e["event"] for e in outbox.events_of(chain, [task["id"]])] == ["task.opened"]


def test_the_api_server_delivers_from_its_own_thread(loaded, tmp_path, monkeypatch):
    """`shelf serve`: the worker thread starts with the app and stops with it; a photo stored meanwhile by anyone
    (here straight into the store, as a batch would) is evaluated and its event delivered without any request."""
    from fastapi.testclient import TestClient

    from shelf.serving import api
    monkeypatch.setenv(webhooks.WORKER_ENV, "on")
    url = f"sqlite:///{tmp_path / 'api.db'}"
    engine = store.open_store(url)
    planogram.import_csv(engine, PLAN, "plan.csv", access.LOCAL)
    receiver = Receiver().up()
    try:
        receiver.secret = outbox.add_webhook(engine, "store chat", receiver.url)
        with TestClient(api.create_app(api.ApiSettings(db_url=url, task_worker=True), loaded)):
            run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
            add_shelf(engine, run, 1, "S014", "3", DAY1, NO_BEER)
            deadline = time.monotonic() + 30
            while not receiver.received:
                assert time.monotonic() < deadline, "the server's worker did not deliver"
                time.sleep(0.1)
        assert not any(t.name == "shelf-task-worker" and t.is_alive() for t in threading.enumerate())
    finally:
        receiver.down()
        engine.dispose()
    assert receiver.events() == [(1, "task.opened")] and receiver.received[0]["signed"]
