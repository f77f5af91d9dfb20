"""Sign-in in Chromium against a local OpenID Connect provider (oidc-provider-mock, started by this module): an
admin, a reviewer and a viewer each see and can do exactly what their role allows (the README's role table), the
reviewer and admin actions land in the audit log, and signing out ends the session."""
import datetime as dt
import json
import secrets

import pandas as pd
import pytest
import sqlalchemy as sa

from shelf.recognition import backends
from shelf.storage import store
from shelf.storage.schema import audit_log
from tests.e2e.conftest import Server, correct_one_region, free_port, settled
from tests.factory import TEST_RUN, add_photo

ADMIN, REVIEWER, VIEWER = "ana@example.com", "rui@example.com", "vera@stores.example.com"
ROLES = f'''default = "viewer"
[roles]
"{ADMIN}" = "admin"
"@example.com" = "reviewer"
'''


@pytest.fixture(scope="module")
def provider():
    oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights_file, provider):
    folder = tmp_path_factory.mktemp("signin")
    port = free_port()
    (folder / "secrets.toml").write_text(f'''[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "shelf-e2e"
client_secret = "{secrets.token_hex(16)}"
server_metadata_url = "{provider}/.well-known/openid-configuration"
''')
    (folder / "roles.toml").write_text(ROLES)
    instance = Server(folder / "data", weights_file, {"SHELF_ROLES_FILE": str(folder / "roles.toml")}, port=port,
                      extra_args=("--secrets.files", str(folder / "secrets.toml")))
    engine = engine_of(instance)
    add_photo(engine, store.create_run(engine, TEST_RUN), 1, [(737, 0.2), (737, 0.4), (737, 0.6)], "North", "A",
              dt.date(2026, 11, 2), name="three.jpg")
    engine.dispose()
    yield instance
    instance.stop()


def engine_of(server):
    return store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")


def audit_rows(server) -> pd.DataFrame:
    engine = engine_of(server)
    with engine.connect() as conn:
        rows = pd.DataFrame(conn.execute(sa.select(audit_log).order_by("id")).mappings().all())
    engine.dispose()
    return rows


def sign_in(page, server, email: str, role: str) -> None:
    page.goto(server.url)
    page.get_by_role("button", name="Sign in").click()
    page.locator("input[name=sub]").fill(email)  # the provider's login form: the subject, here the e-mail
    page.get_by_role("button", name="Authorize").click()
    page.get_by_text(f"· {role}").wait_for()
    assert page.get_by_text(f"Signed in as {email}").is_visible()
    assert page.get_by_text("Single-user mode").count() == 0


def go(page, server, path: str, ready_text: str) -> None:
    page.goto(f"{server.url}/{path}")
    page.get_by_text(ready_text).first.wait_for()
    settled(page)
    page.wait_for_timeout(1000)  # the browser has drawn the whole run: what is absent now is absent


def shown(page, role: str, name: str) -> bool:
    page.get_by_role(role, name=name).first.wait_for()
    return True


def sign_out(page, server) -> None:
    page.get_by_role("button", name="Sign out").click()
    # Streamlit ends the provider's session too where it has an end-session endpoint (this one asks first)
    provider_page, sign_in_screen = page.get_by_role("button", name="End session"), page.get_by_role("button",
                                                                                                     name="Sign in")
    provider_page.or_(sign_in_screen).wait_for()
    if provider_page.is_visible():
        provider_page.click()
    sign_in_screen.wait_for()
    page.goto(f"{server.url}/review")  # the session is gone everywhere, not just on this page
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.get_by_text("region(s) to review").count() == 0


def sees(page, text: str) -> bool:
    return page.get_by_text(text).count() > 0


def button(page, name: str) -> bool:
    return page.get_by_role("button", name=name).count() > 0


def check_admin_only_is_hidden(page, server) -> None:
    """Home: no imports and no backend switch; Categories: no saving; catalog: no SKU form; no Audit page."""
    go(page, server, "", "Inference backend")
    assert not sees(page, "Import a weights file") and not sees(page, "Import a detector (.onnx)")
    assert page.get_by_role("radiogroup").locator("input").first.is_disabled()
    assert page.get_by_role("link", name="Audit log").count() == 0
    go(page, server, "categories", "class(es) shown")
    assert not button(page, "Save 0 change(s)")
    go(page, server, "catalog", "The catalog is empty")
    assert not button(page, "Add SKU")
    go(page, server, "tallies", "Download this table (CSV)")  # every role may export


def test_a_viewer_sees_and_exports_but_changes_nothing(server, page):
    sign_in(page, server, VIEWER, "viewer")
    check_admin_only_is_hidden(page, server)
    go(page, server, "recognize", "this page needs the reviewer role")
    assert not sees(page, "Shelf photos or product crops")
    go(page, server, "review", "region(s) to review")
    assert not sees(page, "Correct one region") and not button(page, "Save 0 correction(s)")
    assert not sees(page, "Your name")
    sign_out(page, server)
    rows = audit_rows(server)
    assert rows.empty or VIEWER not in set(rows["who"])


def test_a_reviewer_corrects_as_the_signed_in_identity(server, page):
    sign_in(page, server, REVIEWER, "reviewer")
    check_admin_only_is_hidden(page, server)
    go(page, server, "recognize", "Shelf photos or product crops")
    go(page, server, "review", "region(s) to review")
    assert sees(page, f"Saved as {REVIEWER}") and not sees(page, "Your name")
    correct_one_region(page, "bagel (931)")
    engine = engine_of(server)
    assert store.latest_corrections(engine)["reviewer"].tolist() == [REVIEWER]
    engine.dispose()
    (row,) = audit_rows(server).query("action == 'correct'").itertuples()
    assert (row.who, row.role, row.via, list(json.loads(row.after).values())) == \
        (REVIEWER, "reviewer", "oidc", ["bagel"])
    sign_out(page, server)


def test_an_admin_switches_the_backend_and_reads_the_audit_log(server, page):
    sign_in(page, server, ADMIN, "admin")
    go(page, server, "", "Inference backend")
    assert sees(page, "Import a weights file") and sees(page, "Import a detector (.onnx)")
    page.get_by_text(backends.CHOICE_NAMES["eager"]).click()
    page.get_by_role("button", name=f"Switch to {backends.CHOICE_NAMES['eager']}").click()
    page.get_by_text(f"Running: **{backends.CHOICE_NAMES['eager']}**".replace("**", "")).wait_for()
    engine = engine_of(server)
    assert store.get_setting(engine, backends.BACKEND_SETTING) == "eager"
    engine.dispose()
    go(page, server, "recognize", "Shelf photos or product crops")  # an admin may do what a reviewer may
    go(page, server, "review", "region(s) to review")
    assert shown(page, "button", "Save 0 correction(s)") and sees(page, "Correct one region")
    go(page, server, "categories", "class(es) shown")
    assert shown(page, "button", "Save 0 change(s)")
    go(page, server, "catalog", "The catalog is empty")
    assert shown(page, "button", "Add SKU")
    page.get_by_role("link", name="Audit log").click()
    page.get_by_text("change(s): every admin action").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the audit log (CSV)").click()
    log = pd.read_csv(download.value.path())
    switch = log[log["action"] == "switch_backend"].iloc[0]
    assert (switch.who, switch.role, switch.via, switch.after) == (ADMIN, "admin", "oidc", '"eager"')
    assert set(log["who"]) <= {ADMIN, REVIEWER}  # the viewer changed nothing
    sign_out(page, server)
