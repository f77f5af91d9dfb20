"""Roles: the roles file, the server-side checks in the functional core, the audit log, and the dashboard as each
role sees it (AppTest with a signed-in st.user), including a viewer's forged admin action."""
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

from shelf import access
from shelf.access import Forbidden, Identity, RolesFileError, load_roles
from shelf.analytics import categories
from shelf.recognition import backends, catalog
from shelf.recognition.pipeline import Upload, recognize
from shelf.serving import proxies, tokens
from shelf.storage import audit, store
from shelf.storage.schema import audit_log
from tests.synthetic import shelf_jpeg

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
VIEWER = Identity("vera@stores.example.com", "viewer", "vera@stores.example.com", "oidc")
REVIEWER = Identity("rui@example.com", "reviewer", "rui@example.com", "oidc")
ADMIN = Identity("ana@example.com", "admin", "ana@example.com", "oidc")
AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-only",
                 "client_id": "shelf", "client_secret": "test-only",
                 "server_metadata_url": "http://localhost:9400/.well-known/openid-configuration"}}
ROLES = '''default = "viewer"
[roles]
"ana@example.com" = "admin"
"@example.com" = "reviewer"
'''


# ---------------------------------------------------------------------------------------------------------------
# The roles file

def test_roles_file_maps_addresses_then_domains_then_the_default(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES)
    roles = load_roles(path)
    assert roles.role_for("Ana@Example.com ") == "admin"         # an address wins over its domain, any case
    assert roles.role_for("rui@example.com") == "reviewer"        # the domain
    assert roles.role_for("eve@example.com.evil.test") == "viewer"  # a domain is matched whole, not as a prefix
    assert roles.role_for("vera@stores.example.com") == "viewer"  # a subdomain is another domain
    assert roles.role_for(None) == "viewer"


def test_roles_file_from_the_environment_and_its_default(tmp_path, monkeypatch):
    assert load_roles().role_for("anyone@example.com") == "viewer"  # no file: every signed-in user views
    path = tmp_path / "roles.toml"
    path.write_text('default = "reviewer"\n')
    monkeypatch.setenv("SHELF_ROLES_FILE", str(path))
    assert load_roles().role_for("anyone@example.com") == "reviewer"


@pytest.mark.parametrize("text, problem", [
    ('default = "owner"', "default role 'owner' is not one of viewer, reviewer, admin"),
    ('[roles]\n"a@b.c" = "root"', "role 'root' for a@b.c is not one of"),
    ('roles = "admin"', "[roles] must be a table"),
    ("default = ", "cannot read the roles file"),
])
def test_a_bad_roles_file_is_refused_with_its_name_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "team-roles.toml"
    path.write_text(text)
    with pytest.raises(RolesFileError, match="team-roles.toml") as error:
        load_roles(path)
    assert problem in str(error.value)


def test_each_role_may_do_what_the_table_says():
    assert [a for a in access.ACTIONS if VIEWER.may(a)] == ["view", "export"]
    assert [a for a in access.ACTIONS if REVIEWER.may(a)] == ["view", "export", "recognize", "correct", "edit_photo"]
    assert all(ADMIN.may(a) for a in access.ACTIONS) and all(access.LOCAL.may(a) for a in access.ACTIONS)
    assert not Identity("x", "superuser").may("view")  # an unknown role may do nothing
    with pytest.raises(KeyError):
        ADMIN.may("launch_rockets")
    with pytest.raises(Forbidden, match="rui@example.com \\(reviewer\\) may not switch backend; that needs the admin"):
        access.require(REVIEWER, "switch_backend")


# ---------------------------------------------------------------------------------------------------------------
# Server-side checks and the audit log

@pytest.fixture
def stored(loaded, engine):
    """A store with one shelf photo of six regions."""
    recognize(loaded, engine, [Upload("shelf.jpg", shelf_jpeg(5, 600, 450)[0])], store.Context("North"),
              region_mode="grid:2x3")
    return engine


def audit_rows(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(audit_log).order_by("id")).mappings().all())


def loads(value):
    return None if pd.isna(value) else json.loads(value)


def corrections_count(engine) -> int:
    return store.counts(engine)["corrections"]


def test_a_correction_batch_is_saved_as_the_identity_and_audited_with_before_and_after(stored):
    ids = store.predictions_frame(stored, top1_only=True)[["region_id", "class_index", "label"]].head(2)
    changes = {int(r): (931, "bagel") for r in ids["region_id"]}
    assert store.add_corrections(stored, changes, REVIEWER) == 2
    assert set(store.latest_corrections(stored)["reviewer"]) == {"rui@example.com"}
    (row,) = audit_rows(stored).itertuples()
    assert (row.who, row.role, row.via, row.action, row.target) == ("rui@example.com", "reviewer", "oidc", "correct",
                                                                     "2 region(s)")
    assert json.loads(row.before) == {str(r): label for r, label in zip(ids["region_id"], ids["label"])}
    assert json.loads(row.after) == {str(r): "bagel" for r in ids["region_id"]}


@pytest.mark.parametrize("who, action", [
    (VIEWER, lambda e, region: store.add_corrections(e, {region: (931, "bagel")}, VIEWER)),
    (REVIEWER, lambda e, region: categories.save_category_edits(e, {737: "Household"}, REVIEWER)),
    (REVIEWER, lambda e, region: store.set_category_overrides(e, {737: "Household"}, REVIEWER)),
    (REVIEWER, lambda e, region: catalog.set_threshold(e, 0.5, by=REVIEWER)),
    (REVIEWER, lambda e, region: catalog.add_sku(e, "Cola", "", "Beverages", by=REVIEWER)),
    (REVIEWER, lambda e, region: backends.switch_backend(e, "eager", by=REVIEWER)),
    (REVIEWER, lambda e, region: store.delete_photo(e, 1, by=REVIEWER)),
    (VIEWER, lambda e, region: store.set_photo_context(e, 1, store.Context("South"), by=VIEWER)),
])
def test_the_core_refuses_what_the_role_may_not_do_and_changes_nothing(stored, who, action):
    region = int(store.predictions_frame(stored, top1_only=True)["region_id"].iloc[0])
    before = store.counts(stored), store.category_overrides_map(stored), store.get_setting(stored, "backend")
    with pytest.raises(Forbidden, match=f"{who.name} \\({who.role}\\) may not"):
        action(stored, region)
    assert (store.counts(stored), store.category_overrides_map(stored), store.get_setting(stored, "backend")) == before
    assert catalog.skus_frame(stored).empty and audit_rows(stored).empty


def test_recognizing_needs_the_reviewer_role(loaded, engine):
    with pytest.raises(Forbidden):
        recognize(loaded, engine, [Upload("a.jpg", shelf_jpeg(1, 200, 150)[0])], store.Context(), by=VIEWER)
    assert store.counts(engine)["photos"] == 0


def test_admin_changes_are_audited_and_the_log_pages_newest_first(stored):
    catalog.set_threshold(stored, 0.5, by=ADMIN)
    backends.switch_backend(stored, "eager", by=ADMIN)
    categories.save_category_edits(stored, {737: "Household"}, ADMIN)
    store.set_photo_context(stored, 1, store.Context("South", "7"), by=REVIEWER)
    store.delete_photo(stored, 1, by=ADMIN)
    rows = audit_rows(stored)
    assert rows["action"].tolist() == ["edit_catalog", "switch_backend", "edit_categories", "edit_photo",
                                       "delete_photo"]
    threshold, backend, category, context, deleted = rows.itertuples()
    assert (loads(threshold.before), loads(threshold.after)) == (None, "0.5")
    assert (loads(backend.before), loads(backend.after)) == (None, "eager")
    assert (loads(category.before), loads(category.after)) == ({"737": "Beverages"}, {"737": "Household"})
    assert loads(context.before)["store"] == "North" and loads(context.after)["store"] == "South"
    assert deleted.target == "photo 1 shelf.jpg" and loads(deleted.after) is None
    assert audit.count(stored) == 5
    newest = audit.page(stored, 1, 2)
    assert newest["action"].tolist() == ["delete_photo", "edit_photo"]  # LIMIT 2, newest first
    assert audit.page(stored, 3, 2)["action"].tolist() == ["edit_catalog"]
    csv = pd.read_csv(__import__("io").BytesIO(audit.csv_bytes(stored, chunk=2)))
    assert csv["action"].tolist() == rows["action"].tolist()[::-1] and set(csv["who"]) == {ADMIN.name, REVIEWER.name}


def test_a_refused_change_leaves_no_audit_row_and_a_failed_one_neither(stored):
    with pytest.raises(ValueError, match="no such region"):
        store.add_corrections(stored, {10_000: (1, "goldfish")}, ADMIN)
    assert audit_rows(stored).empty  # the row is written in the change's transaction: no change, no row


def test_without_sign_in_a_typed_name_is_the_local_user():
    assert access.acting("  Ana  Lima ") == Identity("Ana Lima", "admin", None, "local")
    with pytest.raises(ValueError, match="reviewer name"):
        access.acting("   ")


# ---------------------------------------------------------------------------------------------------------------
# The dashboard per role (AppTest: st.user as a signed-in session would have it)

@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def roles_file(tmp_path, monkeypatch):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES)
    monkeypatch.setenv("SHELF_ROLES_FILE", str(path))
    return path


def signed_in(email: str | None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets.update(AUTH)
    at.user = {"is_logged_in": email is not None, **({"email": email} if email else {})}
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements).replace("\\", "")  # Markdown escapes off: plain text


def test_without_sign_in_the_home_page_says_it_is_single_user(loaded):
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert "Single-user mode" in texts(at.caption) and not at.sidebar.button


def test_not_signed_in_only_the_sign_in_screen_shows(roles_file):
    at = signed_in(None)
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric and "Sign in with your company account" in texts(at.markdown)


def test_a_viewer_sees_and_cannot_change(loaded, roles_file, stored):
    at = signed_in("vera@stores.example.com")
    assert "Signed in as **vera@stores.example.com** · viewer" in texts(at.sidebar.caption)
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    assert "Single-user mode" not in texts(at.caption)
    assert at.radio(key="backend_choice").disabled and not at.file_uploader  # no imports, no backend switch
    at.switch_page("pages/recognize.py").run()
    assert "this page needs the reviewer role" in texts(at.info) and not at.file_uploader
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.label.startswith("Save")] and "reviewer" not in [t.key for t in at.text_input]
    at.switch_page("pages/categories.py").run()
    assert not [b for b in at.button if b.key == "save_categories"]
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in a viewer's navigation
        at.switch_page("pages/audit.py")


def test_a_viewers_forged_admin_action_is_refused_by_the_server_side_check(loaded, roles_file, stored, monkeypatch):
    """The page hides the backend switch from a viewer; a forged widget event (here: the page made to offer it,
    as a tampered client or a page bug would) reaches backends.switch_backend, which refuses."""
    from shelf.serving import ui
    monkeypatch.setattr(ui, "shows", lambda action: True)
    at = signed_in("vera@stores.example.com")
    at.radio(key="backend_choice").set_value("eager").run()
    at.button(key="switch_backend").click().run()
    assert not at.exception, at.exception
    assert "vera@stores.example.com (viewer) may not switch backend; that needs the admin role" in texts(at.error)
    assert store.get_setting(stored, backends.BACKEND_SETTING) is None and audit.count(stored) == 0

    at.switch_page("pages/review.py").run()  # and a forged correction
    at.session_state[at.session_state["review_pending_editor"]] = {
        "edited_rows": {0: {"correct_to": "bagel (931)"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="save_corrections").click().run()
    assert "may not correct" in texts(at.error)
    assert corrections_count(stored) == 0 and audit.count(stored) == 0


def test_a_reviewer_corrects_as_themself_and_an_admin_reads_the_audit_log(loaded, roles_file, stored):
    at = signed_in("rui@example.com", "pages/review.py")
    assert "Saved as **rui@example.com**" in texts(at.caption)
    assert "reviewer" not in [t.key for t in at.text_input]  # no free-text name once signed in
    at.session_state[at.session_state["review_pending_editor"]] = {
        "edited_rows": {0: {"correct_to": "bagel (931)"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="save_corrections").click().run()
    assert "Saved 1 correction(s)" in texts(at.success)
    assert store.latest_corrections(stored)["reviewer"].tolist() == ["rui@example.com"]

    admin = signed_in("ana@example.com", "pages/audit.py")
    assert "1 change(s)" in texts(admin.caption)
    log = admin.dataframe[0].value
    assert log[["who", "role", "action", "target"]].values.tolist() == [["rui@example.com", "reviewer", "correct",
                                                                        "1 region(s)"]]
    assert [b.label for b in admin.get("download_button")] == ["Download the audit log (CSV)"]


def test_behind_a_proxy_the_user_comes_from_the_trusted_header(loaded, roles_file, monkeypatch):
    from types import SimpleNamespace
    monkeypatch.setenv("SHELF_TRUSTED_USER_HEADER", "X-Forwarded-Email")
    monkeypatch.setenv("SHELF_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/24")

    def visit(peer: str | None, **headers) -> AppTest:
        monkeypatch.setattr(st, "context", SimpleNamespace(headers=headers, ip_address=peer))
        return AppTest.from_file(APP, default_timeout=120).run()

    for proxy in (None, "10.0.0.7"):  # None: Streamlit's address of a loopback connection
        at = visit(proxy, **{"X-Forwarded-Email": "Rui@Example.com"})
        assert not at.exception, at.exception
        assert "Signed in as **rui@example.com** · reviewer" in texts(at.sidebar.caption)
        assert not at.sidebar.button  # the proxy owns the session: no sign-out here
    at = visit(None)  # straight to the port, around the proxy
    assert "No X-Forwarded-Email header came with this request" in texts(at.error) and not at.metric
    at = visit("192.0.2.9", **{"X-Forwarded-Email": "ana@example.com"})  # a direct connection, the header forged
    assert "This session comes from 192.0.2.9, not from a trusted proxy" in texts(at.error)
    assert not at.metric and not at.sidebar.caption
    monkeypatch.delenv("SHELF_TRUSTED_PROXIES")  # and Streamlit listens on every address (server.address unset)
    at = visit(None, **{"X-Forwarded-Email": "ana@example.com"})
    assert "this server listens on every address" in texts(at.error) and not at.metric


def test_the_proxy_header_counts_only_from_the_listed_proxies():
    header = "X-Forwarded-Email"
    assert "listens on every address" in proxies.setup_problem({}, None, header)
    assert "listens on 0.0.0.0" in proxies.setup_problem({}, "0.0.0.0", header)
    for loopback in ("127.0.0.1", "localhost", "::1"):
        assert proxies.setup_problem({}, loopback, header) is None
    listed = {"SHELF_TRUSTED_PROXIES": "10.0.0.5, 2001:db8::/32"}
    assert proxies.setup_problem(listed, None, header) is None
    assert "'10.0.0.x' is neither" in proxies.setup_problem({"SHELF_TRUSTED_PROXIES": "10.0.0.x"}, None, header)
    for forwarders in ("*", "10.0.0.0/8", "192.0.2.1"):  # uvicorn would let these claim a proxy's address
        problem = proxies.setup_problem({**listed, "FORWARDED_ALLOW_IPS": forwarders}, None, header)
        assert f"FORWARDED_ALLOW_IPS is {forwarders!r}" in problem
    for forwarders in ("", "10.0.0.5", "127.0.0.1,::1", "2001:db8::1"):
        assert proxies.setup_problem({**listed, "FORWARDED_ALLOW_IPS": forwarders}, None, header) is None
    assert proxies.session_problem(listed, "10.0.0.5", None) is None
    assert proxies.session_problem(listed, "::ffff:10.0.0.5", None) is None  # IPv4 over a dual-stack socket
    assert proxies.session_problem(listed, "2001:db8::7", None) is None
    assert "comes from 10.0.0.6," in proxies.session_problem(listed, "::ffff:10.0.0.6", None)
    assert "comes from 127.0.0.1" in proxies.session_problem(listed, None, None)  # loopback is not listed
    assert proxies.session_problem({}, None, None) is None  # the default list: loopback
    forwarded = proxies.session_problem({}, "203.0.113.7", "203.0.113.7")
    assert "took this address from it" in forwarded and "FORWARDED_ALLOW_IPS= (empty)" in forwarded


def test_photo_planogram_and_token_controls_follow_the_role(loaded, roles_file, stored):
    """Recognize: a reviewer may recognise a stored photo again and correct where it was taken, not delete it;
    an admin may. Compliance: only an admin imports planograms. Home: only an admin sees API tokens."""
    from tests.conftest import image_bytes
    from tests.synthetic import make_product
    photo = ("p.png", image_bytes(make_product(0, 0), "PNG"), "image/png")
    recognize(loaded, stored, [Upload("p.png", photo[1])], store.Context("North"))
    for email, may_delete in [("rui@example.com", False), ("ana@example.com", True)]:
        at = signed_in(email, "pages/recognize.py")
        at.file_uploader(key="uploads").set_value([photo]).run()
        at.button(key="recognize").click().run()
        keys = {b.key for b in at.button}
        assert "recognize_again" in keys and any(k.startswith("FormSubmitter:photo-context-") for k in keys)
        assert any(k.startswith("photo-delete-") for k in keys) is may_delete
        at.switch_page("pages/home.py").run()
        assert ("API tokens" in [h.value for h in at.header]) is may_delete
        at.switch_page("pages/compliance.py").run()
        assert not at.exception, at.exception
        assert at.button(key="planogram_save").disabled is not may_delete  # planograms: admins only
    with pytest.raises(Forbidden):
        store.delete_photo(stored, 1, by=REVIEWER)
    with pytest.raises(Forbidden):
        tokens.create_token(stored, "app", "viewer", by=REVIEWER)
    tokens.create_token(stored, "app", "viewer", by=ADMIN)
    tokens.revoke_token(stored, "app", by=ADMIN)
    rows = audit_rows(stored).query("action == 'manage_tokens'")
    assert rows["who"].tolist() == [ADMIN.name] * 2 and rows["target"].tolist() == ["token app"] * 2
