"""The Tasks page through AppTest: counts, the table and the evidence of a task opened by a photo, Acknowledge and
Done (store staff on their own store only; a head-office viewer sees the buttons off), time to fix once a photo
verified it, and for admins the rules (a bad row refused with its number) and a webhook whose secret is shown once."""
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from shelf import access
from shelf.analytics import planogram
from shelf.analytics import tasks as evaluator
from shelf.storage import outbox, store
from shelf.storage import tasks as stored
from tests.factory import TEST_RUN
from tests.test_access import AUTH, texts
from tests.test_app import APP, TIMEOUT
from tests.test_compliance import add_shelf
from tests.test_tasks import AT_PLAN, DAY1, DAY2, NO_BEER, PLAN


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def chain():
    engine = store.open_store()
    planogram.import_csv(engine, PLAN, "plan.csv", access.LOCAL)
    run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    add_shelf(engine, run, 1, "S014", "3", DAY1, NO_BEER, gaps=[30])
    add_shelf(engine, run, 2, "S015", "3", DAY1, NO_BEER)
    evaluator.evaluate_pending(engine)
    engine.run_id = run
    return engine


def open_tasks(email: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if email:
        at.secrets.update(AUTH)
        at.user = {"is_logged_in": True, "email": email}
    at.run()
    at.switch_page("pages/tasks.py").run()
    assert not at.exception, at.exception
    return at


def test_a_task_its_evidence_done_and_time_to_fix(chain):
    at = open_tasks()
    assert {m.label: m.value for m in at.metric} == {"Open": "2", "Acknowledged": "0", "Done": "0", "Reopened": "0",
                                                      "Verified": "0"}
    table = at.dataframe[0].value
    assert table[["store", "product", "finding"]].values.tolist() == [["S015", "beer bottle (440)", "missing"],
                                                                      ["S014", "beer bottle (440)", "missing"]]
    at.selectbox(key="tasks_pick").set_value(1).run()
    assert "missing (0 of 1 planned facings found)" in texts(at.markdown)
    at.button(key="task_done").click().run()
    assert not at.exception, at.exception
    assert "Task 1 marked done." in texts(at.success) and stored.get(chain, 1)["done_by"] == "local user"
    assert {m.label: m.value for m in at.metric}["Done"] == "1"

    add_shelf(chain, chain.run_id, 3, "S014", "3", DAY2, AT_PLAN)
    evaluator.evaluate_pending(chain)
    at.run()
    assert {m.label: m.value for m in at.metric}["Verified"] == "1"  # counted whatever states are shown
    assert at.dataframe[0].value["state"].tolist() == ["open"]  # verified is not among the states shown at first
    assert at.get("vega_lite_chart"), "the time-to-fix chart"
    assert "over 1 verified task(s)" in texts(at.caption)


def test_admins_edit_rules_and_add_a_webhook_whose_secret_shows_once(chain):
    at = open_tasks()
    assert [t.label for t in at.tabs] == ["Tasks", "Rules & webhooks"]
    at.session_state["task_rules_editor"] = {"edited_rows": {}, "deleted_rows": [], "added_rows": [
        {"store": "*", "aisle": "*", "product": "*", "statuses": "missing", "min_gap": 0}]}
    at.button(key="task_rules_save").click().run()
    assert "rule 1: min_gap must be at least 1 facing" in texts(at.error) and stored.rule_rows(chain) == []
    at.session_state["task_rules_editor"] = {"edited_rows": {}, "deleted_rows": [], "added_rows": [
        {"store": "*", "aisle": "*", "product": "*", "statuses": "missing", "min_gap": 1}]}
    at.button(key="task_rules_save").click().run()
    assert "1 rule(s) in force." in texts(at.success) and len(stored.rule_rows(chain)) == 1

    at.text_input(key="webhook_name").set_value("store chat").run()
    at.text_input(key="webhook_url").set_value("http://127.0.0.1:9/hook").run()
    at.button(key="webhook_add").click().run()
    assert not at.exception, at.exception
    (secret,) = [c.value for c in at.code]
    assert secret.startswith(outbox.SECRET_PREFIX) and outbox.list_webhooks(chain)[0].name == "store chat"
    at.run()
    assert not at.code  # shown once


def test_store_staff_work_on_their_own_store_and_a_head_office_viewer_only_looks(chain, tmp_path, monkeypatch):
    roles = tmp_path / "roles.toml"
    roles.write_text('[roles]\n"kim@stores.example.com" = { role = "viewer", store = "S014" }\n')
    monkeypatch.setenv("SHELF_ROLES_FILE", str(roles))
    at = open_tasks("kim@stores.example.com")
    assert at.multiselect(key="tasks_stores").value == ["S014"]  # their store, to begin with
    assert not at.button(key="task_ack").disabled and "Rules & webhooks" not in [t.label for t in at.tabs]
    at.button(key="task_ack").click().run()
    assert stored.get(chain, 1)["acknowledged_by"] == "kim@stores.example.com"
    at.multiselect(key="tasks_stores").set_value(["S015"]).run()
    assert at.button(key="task_ack").disabled and at.button(key="task_done").disabled

    viewer = open_tasks("vic@example.com")
    assert viewer.button(key="task_done").disabled
    assert "Your role may not work on this store's tasks" in texts(viewer.caption)


def test_a_price_task_reads_as_its_label_and_the_findings_filter_picks_it(chain):
    from shelf.storage.prices import save_labels
    from tests.test_price_compliance import tag
    from tests.test_price_tasks import ask_for
    planogram.import_csv(chain, PLAN.replace(b"expected_facings\n", b"expected_facings,price\n")
                         .replace(b",2\n", b",2,1.99\n"), "plan.csv", access.LOCAL)
    ask_for(chain, "missing,under,price_wrong")
    photo = add_shelf(chain, chain.run_id, 3, "S016", "3", DAY1, NO_BEER)
    save_labels(chain, photo, chain.run_id, [tag(0, "2.49", (0, 1))], seconds=0.1)
    assert evaluator.evaluate_pending(chain) == {"opened": 2}  # beer missing, pop's label wrong
    at = open_tasks()
    at.multiselect(key="tasks_findings").set_value(["price_wrong"]).run()
    assert at.dataframe[0].value[["store", "product", "finding"]].values.tolist() == \
        [["S016", "pop bottle (737)", "price_wrong"]]
    assert {m.label: m.value for m in at.metric}["Open"] == "1"
    assert "price_wrong (label reads 2.49; planned 1.99)" in texts(at.markdown)
