"""The audit log: the right person on every row (recognising a stored photo again, downloading weights), a change
and its row in one transaction, filters by person, action and date in the database, and the log in words on the
Audit log page. (Append-only in the database, fresh and migrated: tests/test_migrations.py.)"""
import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

from shelf.access import Identity
from shelf.recognition import model
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import audit, store
from shelf.storage.schema import audit_log
from tests.synthetic import shelf_jpeg

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
REVIEWER = Identity("rui@example.com", "reviewer", "rui@example.com", "oidc")
ADMIN = Identity("ana@example.com", "admin", "ana@example.com", "oidc")
NORTH = store.Context("North", "7", dt.date(2026, 11, 2))


def rows(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).mappings().all())


def active_regions(engine, photo_id: int) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return conn.execute(sa.select(store.regions.c.id, store.regions.c.run_id).where(
            store.regions.c.photo_id == photo_id, store.regions.c.active).order_by(store.regions.c.id)).all()


@pytest.fixture
def shelf_photo():
    return Upload("shelf.jpg", shelf_jpeg(3, 600, 450)[0])


# ---------------------------------------------------------------------------------------------------------------
# The right person, one transaction


def test_recognizing_a_stored_photo_again_is_audited_as_who_did_it(loaded, any_engine, shelf_photo):
    (first,) = recognize(loaded, any_engine, [shelf_photo], NORTH, region_mode="grid:1x2", by=REVIEWER)
    elsewhere = store.Context("North", "8", dt.date(2026, 11, 3))
    (again,) = recognize(loaded, any_engine, [shelf_photo], elsewhere, region_mode="grid:2x3", again=True,
                         by=REVIEWER)
    assert again.ok and again.recognized_again and store.photo_context(any_engine, first.photo_id) == elsewhere
    (row,) = rows(any_engine).itertuples()  # one row for the whole change: regions and place together
    assert (row.who, row.role, row.via, row.action) == (REVIEWER.name, "reviewer", "oidc", "recognize_again")
    assert row.target == f"photo {first.photo_id} shelf.jpg"
    before, after = json.loads(row.before), json.loads(row.after)
    assert (before["aisle"], before["captured_on"], after["aisle"], after["captured_on"]) == \
        ("7", "2026-11-02", "8", "2026-11-03")
    assert after["run"] != before["run"] and after["regions"] == 6
    assert audit.describe(row.action, row.before, row.after) == \
        f"aisle: 7 → 8 · date: 2026-11-02 → 2026-11-03 · regions: 2 → 6 · run: {before['run']} → {after['run']}"


def test_recognizing_again_replaces_regions_and_place_in_one_transaction(loaded, any_engine, shelf_photo,
                                                                          monkeypatch):
    """If any part of the change fails (here its audit row), the photo keeps its regions and its place."""
    (first,) = recognize(loaded, any_engine, [shelf_photo], NORTH, region_mode="grid:1x2", by=REVIEWER)
    regions_before = active_regions(any_engine, first.photo_id)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(audit, "record", fail)
    (again,) = recognize(loaded, any_engine, [shelf_photo], store.Context("South", "1"), region_mode="grid:2x3",
                         again=True, by=REVIEWER)
    assert not again.ok and "disk full" in again.error
    assert active_regions(any_engine, first.photo_id) == regions_before
    assert store.photo_context(any_engine, first.photo_id) == NORTH


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_downloading_the_weights_is_audited_as_who_asked(monkeypatch, weights_file, engine):
    data = weights_file.read_bytes()
    monkeypatch.setattr(model.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(data))
    with pytest.raises(model.WeightsError, match="expected f37072fd"):
        model.download_weights(by=ADMIN, engine=engine)
    assert rows(engine).empty  # nothing kept, nothing recorded
    monkeypatch.setattr(model, "OFFICIAL_HASH_PREFIX", hashlib.sha256(data).hexdigest()[:8])
    assert model.download_weights(by=ADMIN, engine=engine) == model.hub_cache_path()
    (row,) = rows(engine).itertuples()
    assert (row.who, row.action, row.target) == (ADMIN.name, "manage_weights", "download weights resnet18-f37072fd.pth")
    assert row.before is None and json.loads(row.after)["sha256"] == hashlib.sha256(data).hexdigest()
    model.resolve_weights(download=True)  # loading the model finds the file: no download, nobody to record
    assert len(rows(engine)) == 1


# ---------------------------------------------------------------------------------------------------------------
# Filters in the database


def add_row(engine, who: str, action: str, at: dt.datetime, target: str = "t", before=None, after=None) -> None:
    """An audit row at a chosen time (the log takes inserts; `record` always writes the current time)."""
    with engine.begin() as conn:
        conn.execute(audit_log.insert().values(at=at, who=who, role="admin", via="oidc", action=action, target=target,
                                               before=before, after=after))


@pytest.fixture
def logged(any_engine):
    """Twelve rows over three days, three people and three actions, oldest first."""
    for i in range(12):
        add_row(any_engine, ["ana", "rui", "vera"][i % 3], ["correct", "edit_catalog", "edit_photo", "correct"][i % 4],
                dt.datetime(2026, 11, 1 + i // 4, 10, i, tzinfo=dt.timezone.utc), target=f"row {i}")
    return any_engine


def test_the_filters_select_in_the_database_and_page_the_selection(logged):
    rui = audit.AuditFilter(people=["rui"])
    assert audit.count(logged, rui) == 4
    # A page of the selection, not a filtered page of everything: LIMIT applies after WHERE.
    assert audit.page(logged, 1, 3, rui)["target"].tolist() == ["row 10", "row 7", "row 4"]
    assert audit.page(logged, 2, 3, rui)["target"].tolist() == ["row 1"]
    corrections = audit.AuditFilter(actions=["correct"])
    assert audit.page(logged, 1, 50, corrections)["target"].tolist() == ["row 11", "row 8", "row 7", "row 4",
                                                                        "row 3", "row 0"]
    second_day = audit.AuditFilter(date_from=dt.date(2026, 11, 2), date_to=dt.date(2026, 11, 2))
    assert audit.page(logged, 1, 50, second_day)["target"].tolist() == ["row 7", "row 6", "row 5", "row 4"]
    assert audit.count(logged, audit.AuditFilter(date_from=dt.date(2026, 11, 3))) == 4
    assert audit.count(logged, audit.AuditFilter(date_to=dt.date(2026, 10, 31))) == 0
    everything = audit.AuditFilter(["ana", "vera"], ["correct", "edit_photo"], dt.date(2026, 11, 1),
                                   dt.date(2026, 11, 2))
    assert audit.page(logged, 1, 50, everything)["target"].tolist() == ["row 6", "row 3", "row 2", "row 0"]
    csv = pd.read_csv(io.BytesIO(audit.csv_bytes(logged, chunk=2, f=rui)))
    assert csv["target"].tolist() == ["row 10", "row 7", "row 4", "row 1"] and set(csv["action"]) <= {
        "correct", "edit_catalog", "edit_photo"}  # the CSV keeps the keys


def test_the_people_and_actions_to_filter_by_come_from_the_log(logged):
    assert audit.people(logged) == ["ana", "rui", "vera"]
    assert audit.actions(logged) == ["correct", "edit_catalog", "edit_photo"]


# ---------------------------------------------------------------------------------------------------------------
# In words


@pytest.mark.parametrize("action, before, after, text", [
    ("correct", {"276": "pop bottle", "31": "carton"}, {"276": "carton", "31": "tray"},
     "region 31: carton → tray · region 276: pop bottle → carton"),
    ("edit_photo", {"store": "North", "aisle": "7", "captured_on": "2026-11-02"},
     {"store": "North", "aisle": "8", "captured_on": None}, "aisle: 7 → 8 · date: 2026-11-02 → —"),
    ("edit_categories", {"737": "Beverages"}, {"737": "Household"}, "pop bottle (737): Beverages → Household"),
    ("edit_catalog", None, {"name": "Cola 1.5 L", "brand": "Fizzy", "gtin": None},
     "name: Cola 1.5 L · brand: Fizzy · gtin: —"),
    ("delete_photo", {"sha256": "ab" * 32, "store": "North", "aisle": ""}, None,
     "store: North · aisle: — · sha256: abababababab…"),
    ("switch_backend", None, "eager", "— → eager"),
    ("manage_tokens", {"active": True}, {"active": False}, "active: yes → no"),
    ("edit_photo", {"store": "North"}, {"store": "North"}, "no change"),
    ("correct", {str(i): "a" for i in range(12)}, {str(i): "b" for i in range(12)},
     " · ".join(f"region {i}: a → b" for i in range(8)) + " · … and 4 more"),
])
def test_before_and_after_read_as_what_changed(action, before, after, text):
    assert audit.describe(action, audit._json(before), audit._json(after)) == text


def test_actions_read_as_words_and_unknown_ones_still_read():
    assert audit.action_name("edit_catalog") == "Changed the SKU catalog"
    assert audit.action_name("recognize_again") == "Recognized a photo again"
    assert audit.action_name("rotate_keys") == "Rotate keys"


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def audit_page(engine) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/audit.py").run()
    assert not at.exception, at.exception
    return at


def test_the_audit_log_page_reads_in_words_and_filters_by_person_action_and_date(engine):
    add_row(engine, "ana@example.com", "edit_catalog", dt.datetime(2026, 11, 1, 9, tzinfo=dt.timezone.utc),
            "add SKU 1 Cola", None, audit._json({"name": "Cola", "brand": "Fizzy"}))
    add_row(engine, "rui@example.com", "correct", dt.datetime(2026, 11, 2, 9, tzinfo=dt.timezone.utc),
            "1 region(s)", audit._json({"276": "pop bottle"}), audit._json({"276": "carton"}))
    add_row(engine, "ana@example.com", "switch_backend", dt.datetime(2026, 11, 3, 9, tzinfo=dt.timezone.utc),
            "setting backend", audit._json("onnx"), audit._json("int8"))
    at = audit_page(engine)
    shown = at.dataframe[0].value
    assert shown[["who", "action", "change"]].values.tolist() == [
        ["ana@example.com", "Switched the inference backend", "onnx → int8"],
        ["rui@example.com", "Corrected labels", "region 276: pop bottle → carton"],
        ["ana@example.com", "Changed the SKU catalog", "name: Cola · brand: Fizzy"]]
    assert "edit_catalog" not in shown.to_string() and '{"276"' not in shown.to_string()
    assert at.multiselect(key="audit_people").options == ["ana@example.com", "rui@example.com"]
    assert at.multiselect(key="audit_actions").options == ["Corrected labels", "Changed the SKU catalog",
                                                           "Switched the inference backend"]

    at.multiselect(key="audit_people").set_value(["ana@example.com"]).run()
    assert at.dataframe[0].value["target"].tolist() == ["setting backend", "add SKU 1 Cola"]
    at.multiselect(key="audit_actions").set_value(["edit_catalog"]).run()
    assert at.dataframe[0].value["target"].tolist() == ["add SKU 1 Cola"]
    assert "1 change(s) with these filters" in at.caption[0].value
    assert [b.label for b in at.get("download_button")] == ["Download these changes (CSV)"]
    at.multiselect(key="audit_people").set_value([]).run()
    at.multiselect(key="audit_actions").set_value([]).run()
    at.date_input(key="audit_dates").set_value((dt.date(2026, 11, 2), dt.date(2026, 11, 3))).run()
    assert at.dataframe[0].value["target"].tolist() == ["setting backend", "1 region(s)"]
    at.date_input(key="audit_dates").set_value((dt.date(2026, 10, 1), dt.date(2026, 10, 31))).run()
    assert not at.dataframe and "No change matches these filters." in at.info[0].value
