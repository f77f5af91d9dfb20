"""Store tasks: a planned product missing from a photo opens a task for its store, the next photo at plan verifies
it, a done task that a later photo does not bear out is reopened; rules choose what opens tasks; every change is an
event in the outbox and (for people) an audit row; store staff work on their own store only. On SQLite and
PostgreSQL."""
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from shelf import access
from shelf.analytics import planogram
from shelf.analytics import tasks as evaluator
from shelf.storage import store
from shelf.storage import tasks as stored
from shelf.storage.schema import audit_log, task_checks, task_events
from tests.factory import TEST_RUN
from tests.test_compliance import BEER, POP, WINE, add_shelf

DAY1, DAY2, DAY3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
PLAN = b"store,aisle,product,expected_facings\n*,3,imagenet:737,2\n*,3,imagenet:440,1\n"
AT_PLAN = [(POP, 0.9)] * 2 + [(BEER, 0.9)]
NO_BEER = [(POP, 0.9)] * 2 + [(WINE, 0.9)]
STAFF = access.Identity("kim@stores.example.com", "viewer", via="oidc", store="S014")


@pytest.fixture
def chain(db_url):
    engine = store.open_store(db_url)
    planogram.import_csv(engine, PLAN, "plan.csv", access.LOCAL)
    engine.run_id = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    yield engine
    engine.dispose()


def events(engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(task_events.c.task_id, task_events.c.event)
                                               .order_by(task_events.c.id))]


def test_a_missing_product_opens_one_task_and_the_next_photo_at_plan_verifies_it(chain):
    photo = add_shelf(chain, chain.run_id, 1, "S014", "3", DAY1, NO_BEER, gaps=[30])
    assert evaluator.evaluate_pending(chain) == {"opened": 1}
    (task,) = stored.page(chain)
    assert (task["state"], task["store"], task["aisle"], task["product"], task["finding"]) == \
        ("open", "S014", "3", "beer bottle (440)", "missing")
    assert (task["expected_facings"], task["found_facings"], task["photo_id"], task["date"]) == (1, 0, photo, DAY1)
    evidence = stored.get(chain, task["id"])["evidence"]
    assert evidence["gaps"] == [[30, 0, 60, 100]] and evidence["found"] == [] and evidence["photo_id"] == photo

    add_shelf(chain, chain.run_id, 2, "S014", "3", DAY2, NO_BEER)  # still missing: the same task, no new one
    assert evaluator.evaluate_pending(chain) == {}
    assert [t["id"] for t in stored.page(chain)] == [task["id"]] and stored.get(chain, task["id"])["date"] == DAY2

    add_shelf(chain, chain.run_id, 3, "S014", "3", DAY3, AT_PLAN)
    assert evaluator.evaluate_pending(chain) == {"verified": 1}
    verified = stored.get(chain, task["id"])
    assert verified["state"] == "verified" and verified["found_facings"] == 1 and verified["finding"] == "missing"
    assert events(chain) == [(task["id"], "task.opened"), (task["id"], "task.verified")]
    assert stored.pending_checks(chain) == 0


def test_done_then_a_photo_without_the_product_reopens_and_acknowledge_done_are_audited(chain):
    add_shelf(chain, chain.run_id, 1, "S014", "3", DAY1, NO_BEER)
    evaluator.evaluate_pending(chain)
    (task,) = stored.page(chain)
    with pytest.raises(access.Forbidden, match="x works for store S015 and may not work task for store S014"):
        stored.move(chain, task["id"], "acknowledge", by=access.Identity("x", "viewer", store="S015"))
    assert stored.move(chain, task["id"], "acknowledge", by=STAFF)["state"] == "acknowledged"
    assert stored.move(chain, task["id"], "done", by=STAFF)["done_by"] == "kim@stores.example.com"
    with pytest.raises(stored.TaskError, match="is done; only a task that is open or reopened can be marked"):
        stored.move(chain, task["id"], "acknowledge", by=STAFF)

    add_shelf(chain, chain.run_id, 2, "S014", "3", DAY2, [(POP, 0.9)] * 2)
    assert evaluator.evaluate_pending(chain) == {"reopened": 1}
    assert stored.get(chain, task["id"])["state"] == "reopened" and stored.get(chain, task["id"])["reopened"] == 1
    add_shelf(chain, chain.run_id, 3, "S014", "3", DAY2, [(BEER, 0.9)])  # the same day: its facings count together
    assert evaluator.evaluate_pending(chain) == {"verified": 1}
    assert [e for _, e in events(chain)] == ["task.opened", "task.acknowledged", "task.done", "task.reopened",
                                            "task.verified"]
    with chain.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.who, audit_log.c.action, audit_log.c.after)
                            .where(audit_log.c.action == "work_task").order_by(audit_log.c.id)).all()
    assert [(who, json.loads(after)) for who, _, after in rows] == [
        ("Shelf tasks (photo 1)", {"opened": 1}), ("kim@stores.example.com", {"state": "acknowledged"}),
        ("kim@stores.example.com", {"state": "done"}), ("Shelf tasks (photo 2)", {"reopened": 1}),
        ("Shelf tasks (photo 3)", {"verified": 1})]


def test_an_older_photo_changes_nothing_and_an_undated_one_opens_no_task(chain):
    add_shelf(chain, chain.run_id, 1, "S014", "3", DAY2, NO_BEER)
    evaluator.evaluate_pending(chain)
    add_shelf(chain, chain.run_id, 2, "S014", "3", DAY1, AT_PLAN)  # taken the day before: proves nothing
    add_shelf(chain, chain.run_id, 3, "S015", "3", None, NO_BEER)
    assert evaluator.evaluate_pending(chain) == {}
    assert [(t["store"], t["state"]) for t in stored.page(chain)] == [("S014", "open")]


def test_rules_choose_statuses_minimum_gap_quiet_hours_and_the_empty_shelf_limit(chain):
    rules, errors = evaluator.parse_rules([
        {"store": "*", "aisle": "*", "product": "*", "statuses": "missing", "min_gap": 1},
        {"store": "S014", "aisle": "3", "product": "imagenet:737", "statuses": "missing,under", "min_gap": 2},
        {"store": "S016", "aisle": "*", "product": "*", "quiet_hours": "21:00-07:00", "timezone": "Europe/Lisbon"},
        {"store": "S017", "aisle": "3", "product": "*", "statuses": "", "empty_share_limit": "20%"},
        {"store": "S017", "aisle": "3", "product": "*"},
        {"store": "S018", "statuses": "gone"}, {"min_gap": 0}, {"quiet_hours": "25:00-01:00"},
        {"timezone": "Mars/Olympus"}, {"empty_share_limit": "1.5"}])
    assert errors == ["rule 5: a rule for store S017, aisle 3, product * is given twice",
                      "rule 6: statuses must name some of missing, under, price_wrong, label_missing "
                      "(comma-separated) or be empty, not 'gone'",
                      "rule 7: min_gap must be at least 1 facing",
                      "rule 8: quiet_hours must look like 22:00-06:00, not '25:00-01:00'",
                      "rule 9: timezone 'Mars/Olympus' is not a time zone name (like Europe/Lisbon or UTC)",
                      "rule 10: empty_share_limit must be from 0 up to (not including) 1, not '1.5'"]
    stored.replace_rules(chain, [evaluator.rule_row(r) for r in rules])
    under_by_one = [(POP, 0.9), (BEER, 0.9)]  # pop 1 of 2: under by 1
    add_shelf(chain, chain.run_id, 1, "S014", "3", DAY1, under_by_one)  # its own rule: under, but a gap of 2
    add_shelf(chain, chain.run_id, 2, "S015", "3", DAY1, under_by_one)  # the '*' rule: missing only
    add_shelf(chain, chain.run_id, 3, "S014", "3", DAY2, [(BEER, 0.9)])  # pop missing: a gap of 2
    add_shelf(chain, chain.run_id, 4, "S016", "3", DAY1, [(BEER, 0.9)])  # quiet at 23:30 in Lisbon
    add_shelf(chain, chain.run_id, 5, "S017", "3", DAY1, AT_PLAN, gaps=[20])  # 20/50 empty: over 20 %
    night = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone.utc)
    assert evaluator.evaluate_pending(chain, now=night) == {"opened": 2}
    assert sorted((t["store"], t["product"], t["finding"]) for t in stored.page(chain)) == [
        ("S014", "pop bottle (737)", "missing"), ("S017", "empty shelf", "empty")]
    assert stored.page(chain, stored.TaskFilter(stores=["S017"]))[0]["empty_share"] == pytest.approx(0.4)
    with pytest.raises(access.Forbidden):
        stored.replace_rules(chain, [], by=STAFF)


def test_store_staff_filters_and_time_to_fix(chain):
    add_shelf(chain, chain.run_id, 1, "S014", "3", DAY1, NO_BEER)
    add_shelf(chain, chain.run_id, 2, "S015", "3", DAY1, NO_BEER)
    opened = dt.datetime(2026, 3, 1, 8, tzinfo=dt.timezone.utc)
    evaluator.evaluate_pending(chain, now=opened)
    add_shelf(chain, chain.run_id, 3, "S014", "3", DAY2, AT_PLAN)
    evaluator.evaluate_pending(chain, now=opened + dt.timedelta(hours=6))
    assert stored.count_by_state(chain) == {"open": 1, "acknowledged": 0, "done": 0, "reopened": 0, "verified": 1}
    assert [t["store"] for t in stored.page(chain, stored.TaskFilter(states=["open"]))] == ["S015"]
    fix = evaluator.time_to_fix(chain)
    assert fix.to_dict("records") == [{"store": "S014", "verified": 1, "median_hours": 6.0, "p90_hours": 6.0}]
    recent, old = stored.TaskFilter(newer_than_hours=1), stored.TaskFilter(older_than_hours=1)  # by age: opened 2026
    assert evaluator.time_to_fix(chain, old).equals(fix) and evaluator.time_to_fix(chain, recent).empty
    assert stored.count_by_state(chain, old)["verified"] == 1
    assert sum(stored.count_by_state(chain, recent).values()) == 0
    with pytest.raises(ValueError, match="unknown task state"):
        stored.page(chain, stored.TaskFilter(states=["closed"]))


def test_a_photo_stored_leaves_a_check_in_its_own_transaction(chain):
    add_shelf(chain, chain.run_id, 1, "S014", "3", DAY1, NO_BEER)
    with chain.connect() as conn:
        assert conn.execute(sa.select(task_checks.c.photo_id)).scalars().all() == [1]


@pytest.mark.parametrize("fetch_all", [0, 20_000])
def test_time_to_fix_is_pandas_median_and_p90_read_either_way(chain, monkeypatch, fetch_all):
    import numpy as np
    import pandas as pd

    from shelf.storage.schema import tasks
    monkeypatch.setattr(stored, "FETCH_ALL", fetch_all)  # 0: an index walk per store and quantile
    rng = np.random.default_rng(5)
    opened = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    rows = [{"store": f"S{i % 3}", "aisle": "3", "product_kind": "imagenet", "product_id": i, "product": "p",
             "state": "verified", "finding": "missing", "day": 1, "evidence": "{}", "opened_at": opened,
             "updated_at": opened, "hours_to_fix": float(h)} for i, h in enumerate(rng.gamma(2, 5, 47))]
    with store.write_transaction(chain) as conn:
        conn.execute(tasks.insert(), rows)
    frame = pd.DataFrame(rows).groupby("store")["hours_to_fix"]
    found = evaluator.time_to_fix(chain).set_index("store")
    assert found["verified"].tolist() == frame.size().tolist() == [16, 16, 15]
    assert found["median_hours"].tolist() == pytest.approx(frame.median().tolist())
    assert found["p90_hours"].tolist() == pytest.approx(frame.quantile(0.9).tolist())


def test_an_event_when_the_finding_changes_not_when_a_count_moves(chain):
    add_shelf(chain, chain.run_id, 1, "S014", "3", DAY1, [(POP, 0.9), (BEER, 0.9)])  # pop 1 of 2: under
    assert evaluator.evaluate_pending(chain) == {"opened": 1}
    add_shelf(chain, chain.run_id, 2, "S014", "3", DAY2, [(BEER, 0.9)])  # pop gone: missing
    assert evaluator.evaluate_pending(chain) == {"updated": 1}
    rules, _ = evaluator.parse_rules([{"product": "imagenet:737", "min_gap": 1}])
    stored.replace_rules(chain, [evaluator.rule_row(r) for r in rules])
    add_shelf(chain, chain.run_id, 3, "S014", "3", DAY3, [(BEER, 0.9)] * 2)  # still missing, other facings moved
    assert evaluator.evaluate_pending(chain) == {}
    (task,) = stored.page(chain)
    assert (task["finding"], task["found_facings"], task["photo_id"], task["date"]) == ("missing", 0, 3, DAY3)
    assert [e for _, e in events(chain)] == ["task.opened", "task.updated"]
