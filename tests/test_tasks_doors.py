"""Store tasks through the doors: `POST /v1/photos` opens a task at once, `GET/POST /v1/tasks…` list, show and work
on it with a store's token (its own store only), and `python -m shelf tasks` does the same from the shell, rules
and webhooks included."""
import json

import pytest
from fastapi.testclient import TestClient

from shelf import access
from shelf.analytics import planogram
from shelf.recognition.classify import classification_record
from shelf.serving import api, tokens
from shelf.serving.cli import main as cli
from shelf.storage import outbox, store
from shelf.storage import tasks as stored
from tests.conftest import image_bytes, solid
from tests.factory import TEST_RUN
from tests.test_compliance import add_shelf
from tests.test_tasks import AT_PLAN, DAY1, DAY2, NO_BEER, PLAN


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'doors.db'}"
    engine = store.open_store(url)
    planogram.import_csv(engine, PLAN, "plan.csv", access.LOCAL)
    engine.dispose()
    return url


def test_a_posted_photo_opens_a_task_and_a_store_token_works_on_its_own_store_only(loaded, db):
    photo = image_bytes(solid((30, 160, 40), (96, 64)), "PNG")
    top1 = classification_record(loaded, "p.png", photo, 1)["predictions"][0]["class_index"]
    engine = store.open_store(db)
    planogram.import_csv(engine, f"store,aisle,product,expected_facings\n*,4,imagenet:{(top1 + 1) % 1000},1\n"
                         .encode(), "plan.csv", access.LOCAL)
    staff = {"Authorization": f"Bearer {tokens.create_token(engine, 'S014 app', 'viewer', store='S014')}"}
    other = {"Authorization": f"Bearer {tokens.create_token(engine, 'S015 app', 'viewer', store='S015')}"}
    office = {"Authorization": f"Bearer {tokens.create_token(engine, 'office', 'reviewer')}"}
    with TestClient(api.create_app(api.ApiSettings(db_url=db), loaded)) as client:
        answer = client.post("/v1/photos", headers=office, files={"photo": ("p.png", photo)},
                             data={"store": "S014", "aisle": "4", "date": "2026-03-01"})
        assert answer.status_code == 201
        listing = client.get("/v1/tasks", headers=staff, params={"store": "S014", "state": "open"}).json()
        assert listing["counts"]["open"] == 1
        (task,) = listing["tasks"]
        assert (task["store"], task["aisle"], task["finding"], task["photo_id"]) == \
            ("S014", "4", "missing", answer.json()["photo_id"])
        assert client.post(f"/v1/tasks/{task['id']}/acknowledge", headers=other).status_code == 403
        moved = client.post(f"/v1/tasks/{task['id']}/acknowledge", headers=staff)
        assert moved.status_code == 200 and moved.json()["acknowledged_by"] == "S014 app"
        again = client.post(f"/v1/tasks/{task['id']}/acknowledge", headers=staff)
        assert again.status_code == 409 and "is acknowledged" in again.json()["detail"]
        assert client.post("/v1/tasks/999/done", headers=staff).status_code == 404
        done = client.post(f"/v1/tasks/{task['id']}/done", headers=staff).json()
        assert done["state"] == "done" and [e["event"] for e in done["events"]] == \
            ["task.opened", "task.acknowledged", "task.done"]
        assert done["evidence"]["photo_id"] == task["photo_id"]
        assert client.get("/v1/tasks/time-to-fix", headers=staff).json() == []
        assert client.get("/v1/tasks", params={"state": "closed"}, headers=staff).status_code == 422
        for age in ("older_than_hours", "newer_than_hours"):  # 17 758 919 hours overflowed the date: a 500
            assert client.get("/v1/tasks", params={age: 17758919.0}, headers=staff).status_code == 422
        assert client.get("/v1/tasks", headers={}).status_code == 401
    engine.dispose()


def test_tasks_commands(db, tmp_path, capsys):
    engine = store.open_store(db)
    run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    add_shelf(engine, run, 1, "S014", "3", DAY1, NO_BEER)
    assert cli(["tasks", "evaluate", "--db", db]) == 0
    assert capsys.readouterr().out.strip() == "1 opened"
    assert cli(["tasks", "list", "--db", db, "--format", "json"]) == 0
    (task,) = json.loads(capsys.readouterr().out)
    assert (task["state"], task["product"], task["date"]) == ("open", "beer bottle (440)", "2026-03-01")
    assert cli(["tasks", "ack", str(task["id"]), "--by", "Kim", "--db", db]) == 0
    assert cli(["tasks", "done", str(task["id"]), "--db", db]) == 0
    assert cli(["tasks", "done", str(task["id"]), "--db", db]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f"task {task['id']} (S014 / 3, beer bottle (440)) is done"
    assert f"error: task {task['id']} is done" in err
    assert cli(["tasks", "list", "--db", db, "--state", "nope"]) == 2
    assert "unknown task state(s): nope" in capsys.readouterr().err

    rules = tmp_path / "rules.csv"
    rules.write_text("store,aisle,product,statuses,min_gap\n*,*,*,missing,1\nS014,3,*,under,0\n")
    assert cli(["tasks", "rules", str(rules), "--db", db]) == 1
    assert "error: rules.csv, rule 2: min_gap must be at least 1 facing" in capsys.readouterr().err
    rules.write_text("store,aisle,product,statuses,min_gap,quiet_hours,timezone\n*,*,*,missing,1,22:00-06:00,"
                     "Europe/Lisbon\n")
    assert cli(["tasks", "rules", str(rules), "--db", db]) == 0
    assert cli(["tasks", "rules", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "store,aisle,product,statuses,min_gap,empty_share_limit,quiet_hours,timezone",
        "*,*,*,missing,1,,22:00-06:00,Europe/Lisbon"]

    assert cli(["tasks", "webhook", "add", "chat", "ftp://example.com", "--db", db]) == 1
    assert "is not an http(s) URL" in capsys.readouterr().err
    assert cli(["tasks", "webhook", "add", "chat", "http://127.0.0.1:9/hook", "--db", db]) == 0
    assert capsys.readouterr().out.startswith(outbox.SECRET_PREFIX)
    add_shelf(engine, run, 2, "S014", "3", DAY2, AT_PLAN)
    assert cli(["tasks", "deliver", "--db", db]) == 0  # nobody listens on port 9: verified, but not delivered
    assert capsys.readouterr().out.strip() == "1 failed, 1 verified"
    assert cli(["tasks", "outbox", "--pending", "--db", db]) == 0
    assert "task.verified\ttask 1\t→ chat\twaiting, 1 attempt(s): cannot reach the receiver" in capsys.readouterr().out
    assert cli(["tasks", "webhook", "list", "--db", db]) == 0
    assert "\tchat\thttp://127.0.0.1:9/hook\tactive\t1 to deliver, 1 failing" in capsys.readouterr().out
    assert cli(["tasks", "webhook", "remove", "1", "--db", db]) == 0
    assert outbox.outbox_rows(engine, undelivered_only=True) == [] and stored.get(engine, 1)["state"] == "verified"
    engine.dispose()


def test_recognize_and_batch_open_tasks_as_they_store(db, tmp_path, capsys):
    """Every door runs the evaluation right after storing: `recognize` (told on stderr) and `batch`."""
    engine = store.open_store(db)
    planogram.import_csv(engine, b"store,aisle,product,expected_facings\n*,9,imagenet:1,1\n", "plan.csv", access.LOCAL)
    photos = tmp_path / "photos"
    photos.mkdir()
    for number, colour in enumerate([(200, 30, 30), (30, 160, 40), (20, 20, 200)]):
        (photos / f"p{number}.png").write_bytes(image_bytes(solid(colour, (96, 64)), "PNG"))
    assert cli(["recognize", str(photos / "p0.png"), "--store", "S014", "--aisle", "9", "--date", "2026-03-01",
                "--db", db]) == 0
    assert "note: store tasks opened 1" in capsys.readouterr().err
    (photos / "p0.png").unlink()
    assert cli(["batch", str(photos), "--store", "S015", "--aisle", "9", "--date", "2026-03-01", "--db", db]) == 0
    assert sorted((t["store"], t["product"]) for t in stored.page(engine)) == [("S014", "goldfish (1)"),
                                                                               ("S015", "goldfish (1)")]
    assert stored.pending_checks(engine) == 0
    engine.dispose()
