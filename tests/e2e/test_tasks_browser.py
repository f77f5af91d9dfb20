"""Store tasks in Chromium, end to end: a planogram imported on the Compliance page, a webhook added on the Tasks page
(its secret read off the page), a photo without the planned product recognised on the Recognize page → a task on
the Tasks page and one signed event at a local receiver; a later photo with the product → the task is verified and
the receiver gets that event too. The receiver is down when each event is first due and still gets every event,
once, in order, each signed with the secret.

The tests' ResNet-18 is random: it calls every photo class 238, with a confidence that depends on the photo. With
the tasks' minimum confidence at 0.05 a red photo's facing (p ≈ 0.02) is not counted (the product is missing) and a
black photo's (p ≈ 0.15) is (the product is there): what a trained model's confident and unsure answers would do."""
import time

import pytest
from PIL import Image

from shelf.storage import outbox, store
from shelf.storage import tasks as stored
from tests.e2e.conftest import Server, free_port, open_page, settled
from tests.webhook_receiver import Receiver

PRODUCT = 238  # what the random model calls everything


@pytest.fixture
def delivering_server(tmp_path_factory, weights_file):
    """The app with its task worker on (the tests' default is off), retrying at most a second apart."""
    instance = Server(tmp_path_factory.mktemp("e2e-tasks"), weights_file,
                      extra_env={"SHELF_TASK_WORKER": "on", "SHELF_WEBHOOK_MAX_BACKOFF": "1"})
    yield instance
    instance.stop()


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def recognize(page, server, photo, store_name: str, aisle: str) -> None:
    open_page(page, server, "recognize", "Recognize")
    for label, value in (("Store", store_name), ("Aisle", aisle)):  # Enter commits each (Tab would open the
        page.get_by_label(label).fill(value)                        # photo date's calendar over the page)
        page.keyboard.press("Enter")
        settled(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(photo))
    settled(page)
    button = page.get_by_role("button", name="Recognize 1 photo")
    button.click()
    page.get_by_text("new photo(s) stored").first.wait_for()


def failed_once(engine) -> bool:
    return any(row["attempts"] >= 1 and row["delivered_at"] is None for row in outbox.outbox_rows(engine))


def test_a_missing_product_becomes_a_signed_task_event_and_the_next_photo_verifies_it(delivering_server, page,
                                                                                       tmp_path):
    server = delivering_server
    receiver = Receiver(port=free_port())
    plan = tmp_path / "plan.csv"
    plan.write_text(f"store,aisle,product,expected_facings\n*,3,imagenet:{PRODUCT},1\n")
    without, with_product = tmp_path / "without.png", tmp_path / "with.png"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(without)
    Image.new("RGB", (96, 64), (0, 0, 0)).save(with_product)

    open_page(page, server, "compliance", "Planograms")
    page.get_by_role("tab", name="Planograms").click()
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(plan))
    page.get_by_role("button", name="Import this planogram").click()
    page.get_by_text("1 line(s) imported for 1 store/aisle(s).").wait_for()

    open_page(page, server, "tasks", "Tasks")
    page.get_by_role("tab", name="Rules & webhooks").click()
    page.get_by_role("spinbutton", name="Minimum confidence for a facing to count").fill("0.05")
    page.keyboard.press("Enter")
    settled(page)
    page.get_by_role("button", name="Save", exact=True).click()
    settled(page)
    page.get_by_label("Name").fill("store chat")
    page.get_by_label("URL").fill(receiver.url)
    page.keyboard.press("Tab")
    settled(page)
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text("Its signing secret, shown only now").wait_for()
    receiver.secret = page.get_by_test_id("stCode").inner_text().strip()
    assert receiver.secret.startswith(outbox.SECRET_PREFIX)

    engine = store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")
    try:
        assert store.get_setting(engine, "tasks_min_confidence") == "0.05"
        recognize(page, server, without, "S014", "3")  # the receiver is down
        open_page(page, server, "tasks", "Look closer")
        assert page.get_by_test_id("stMetric").first.inner_text().endswith("1")
        page.get_by_text("in store S014, aisle 3: missing (0 of 1 planned facings found)").wait_for()
        wait_for(lambda: failed_once(engine), "a first delivery that fails")
        assert receiver.received == []
        receiver.up()
        wait_for(lambda: len(receiver.received) == 1, "the task.opened event")

        receiver.down()
        recognize(page, server, with_product, "S014", "3")
        (task,) = stored.page(engine)
        assert task["state"] == "verified"
        open_page(page, server, "tasks", "Tasks")
        assert page.get_by_test_id("stMetric").filter(has_text="Verified").inner_text().endswith("1")
        wait_for(lambda: failed_once(engine), "a delivery that fails while the receiver is down")
        receiver.up()
        wait_for(lambda: len(receiver.received) == 2, "the task.verified event")
        time.sleep(2)  # a round or two more: nothing comes twice
    finally:
        receiver.down()
        engine.dispose()
    assert receiver.events() == [(task["id"], "task.opened"), (task["id"], "task.verified")]
    assert all(r["signed"] for r in receiver.received) and len(set(receiver.keys())) == 2
    assert receiver.received[1]["task"]["state"] == "verified" and receiver.received[1]["task"]["store"] == "S014"
