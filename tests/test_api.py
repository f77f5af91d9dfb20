"""The HTTP API through FastAPI's TestClient: every endpoint, its errors, tokens and roles, and the checked-in
OpenAPI schema. The model is the session's random-init ResNet-18 (given to the app, as a worker would load it)."""
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shelf.analytics import report
from shelf.files import MB
from shelf.ingest import regions as region_modes
from shelf.serving import api, tokens
from shelf.serving.cli import main as cli
from shelf.storage import store
from tests.conftest import image_bytes, skimage_photo, solid
from tests.hostile_files import one_colour_png

ROOT = Path(__file__).resolve().parents[1]
OPENAPI_FILE = ROOT / "docs" / "openapi.json"
REGENERATE = "python -m shelf.serving.api > docs/openapi.json"


@pytest.fixture
def api_db(tmp_path):
    return f"sqlite:///{tmp_path / 'api.db'}"


@pytest.fixture
def make_client(loaded, api_db):
    clients = []

    def make(local: bool = False, model=loaded, **limits) -> TestClient:
        client = TestClient(api.create_app(api.ApiSettings(db_url=api_db, local=local, **limits), model))
        clients.append(client.__enter__())  # runs the lifespan: opens the store
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def token(api_db):
    engine = store.open_store(api_db)

    def create(role: str, name: str | None = None) -> dict:
        return {"Authorization": f"Bearer {tokens.create_token(engine, name or role, role)}"}
    yield create
    engine.dispose()


def png(colour=(200, 30, 30), size=(64, 48)) -> bytes:
    return image_bytes(solid(colour, size), "PNG")


big = image_bytes(Image.effect_noise((1000, 1000), 60).convert("RGB"), "PNG")  # noise: ~3 MB, over a 2 MB limit


def test_classify_returns_what_the_cli_prints(make_client, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHELF_BACKEND", "eager")  # the CLI's backend = the fixture model's (no ONNX export here)
    good, bad = skimage_photo("chelsea.png"), tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    assert cli(["classify", str(good), str(bad), "--top-k", "5", "--format", "json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    client = make_client(local=True)
    answer = client.post("/v1/classify", data={"top_k": "5"},
                         files=[("file", (good.name, good.read_bytes())), ("file", ("notes.jpg", b"not a photo"))])
    assert answer.status_code == 200
    got = answer.json()
    assert [r["image"] for r in got] == ["chelsea.png", "notes.jpg"]
    assert got[1] == {"image": "notes.jpg", "error": expected[1]["error"]} and "not an image" in got[1]["error"]
    assert [(p["rank"], p["class_index"], p["label"]) for p in got[0]["predictions"]] == \
        [(p["rank"], p["class_index"], p["label"]) for p in expected[0]["predictions"]]
    assert [p["probability"] for p in got[0]["predictions"]] == \
        pytest.approx([p["probability"] for p in expected[0]["predictions"]], abs=1e-6)
    assert store.counts(client.app.state.worker.engine)["photos"] == 0  # nothing stored


def test_classify_errors_name_the_file(make_client):
    client = make_client(local=True, max_bytes=2 * MB, max_files=3)
    bomb = one_colour_png(20_000, 20_000)  # 1.2 MB on the wire, 400 megapixels decoded
    answer = client.post("/v1/classify", files=[("file", ("notes.jpg", b"nope")), ("file", ("bomb.png", bomb))])
    assert answer.status_code == 422
    errors = {r["image"]: r["error"] for r in answer.json()}
    assert "not an image" in errors["notes.jpg"] and "decompression bomb" in errors["bomb.png"]
    answer = client.post("/v1/classify", files=[("file", ("big.png", big))])
    assert answer.status_code == 413 and "limit is 2 MB" in answer.json()[0]["error"]
    answer = client.post("/v1/classify", files=[("file", ("big.png", big)), ("file", ("ok.png", png()))])
    assert answer.status_code == 200 and "error" in answer.json()[0] and "predictions" in answer.json()[1]
    answer = client.post("/v1/classify", files=[("file", (f"{i}.png", png())) for i in range(4)])
    assert answer.status_code == 413 and "limit is 3 per request" in answer.json()["detail"]
    answer = client.post("/v1/classify", files=[("file", ("ok.png", png()))], data={"top_k": "0"})
    assert answer.status_code == 422  # validation, before any work
    # a body over every file's limit together is refused while it streams in, before it is parsed
    answer = client.post("/v1/classify", files=[("file", ("huge.bin", bytes(8 * MB)))])
    assert answer.status_code == 413 and "over the limit of 7 MB" in answer.json()["detail"]


def test_photos_stored_once_with_regions_boxes_and_overlay(make_client, shelf_env):
    client = make_client(local=True)
    data = image_bytes(solid((40, 90, 200), (300, 200)), "JPEG")
    fields = {"store": "Store 7", "aisle": "Snacks", "date": "2026-03-01", "regions": "grid:2x3", "top_k": "2"}
    first = client.post("/v1/photos", data=fields, files={"photo": ("../../../tmp/evil.jpg", data, "image/jpeg")})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["already_stored"] is False and body["name"] == "evil.jpg"
    assert (body["store"], body["aisle"], body["captured_on"]) == ("Store 7", "Snacks", "2026-03-01")
    assert len(body["regions"]) == 6 and all(len(r["predictions"]) == 2 for r in body["regions"])
    assert body["regions"][-1]["box"] == {"x1": 200, "y1": 100, "x2": 300, "y2": 200}
    assert not list(shelf_env.rglob("evil.jpg")) and not Path("/tmp/evil.jpg").exists()  # named by hash only
    again = client.post("/v1/photos", data=fields, files={"photo": ("other-name.jpg", data)})
    assert again.status_code == 200 and again.json()["already_stored"] is True
    assert again.json()["photo_id"] == body["photo_id"] and again.json()["regions"] == body["regions"]
    got = client.get(f"/v1/photos/{body['photo_id']}")
    assert got.status_code == 200 and got.json()["regions"] == body["regions"]
    overlay = client.get(body["overlay"], params={"colour_by": "confidence"})
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(overlay.content)).size == (300, 200)
    assert client.get("/v1/photos/999").status_code == 404
    assert client.get("/v1/photos/999/overlay").json()["detail"] == "no photo with id 999"
    counts = store.counts(client.app.state.worker.engine)
    assert counts["photos"] == 1 and counts["runs"] == 1


def test_photos_refuse_bad_input_with_a_message(make_client):
    client = make_client(local=True, max_bytes=2 * MB)
    post = client.post
    bomb = post("/v1/photos", files={"photo": ("bomb.png", one_colour_png(20_000, 20_000))})
    assert bomb.status_code == 422 and bomb.json()["detail"].startswith("bomb.png: refused")
    bad = post("/v1/photos", files={"photo": ("notes.jpg", b"not a photo")})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("notes.jpg: not an image")
    too_big = post("/v1/photos", files={"photo": ("big.png", big)})
    assert too_big.status_code == 413 and too_big.json()["detail"].startswith("big.png: the file is")
    body = b'--xx\r\nContent-Disposition: form-data; name="photo"; filename="a.bin"\r\n\r\n' + bytes(4 * MB)
    chunked = post("/v1/photos", content=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                   headers={"content-type": "multipart/form-data; boundary=xx"})  # no Content-Length: counted
    assert chunked.status_code == 413 and "over the limit of 3 MB" in chunked.json()["detail"]
    for regions, words in [("grid:0x2", "between 1 and"), ("boxes:/etc/passwd", "offers whole"),
                           ("detector:/etc/passwd", "never by a path")]:
        answer = post("/v1/photos", data={"regions": regions}, files={"photo": ("a.png", png())})
        assert answer.status_code == 422 and words in answer.json()["detail"]
    assert post("/v1/photos", data={"date": "yesterday"}, files={"photo": ("a.png", png())}).status_code == 422
    assert store.counts(client.app.state.worker.engine)["photos"] == 0


def test_huge_photo_ids_are_no_photo(make_client):
    client = make_client(local=True)
    for photo_id in (2**31, 2**63, 10**30):  # past PostgreSQL's integer, past SQLite's, past both
        assert client.get(f"/v1/photos/{photo_id}").json() == {"detail": f"no photo with id {photo_id}"}
        assert client.get(f"/v1/photos/{photo_id}/overlay").status_code == 404


def test_a_photo_stores_capped_top_k_and_is_read_a_page_at_a_time(make_client, monkeypatch):
    client = make_client(local=True)
    shelf = {"file": ("shelf.png", png((40, 90, 200), (300, 200)))}
    refused = client.post("/v1/photos", data={"regions": "grid:30x30", "top_k": "1000"}, files=shelf)
    assert refused.status_code == 422
    assert refused.json()["detail"] == f"top_k: top-k 1000 cannot be stored: {region_modes.STORED_LIMITS}"
    with monkeypatch.context() as patched:  # a photo stored before the cap, with more predictions than it keeps
        patched.setattr(region_modes, "MAX_STORED_TOP_K", 12)
        posted = client.post("/v1/photos", data={"regions": "grid:5x6", "top_k": "12"}, files=shelf).json()
    assert posted["regions_total"] == len(posted["regions"]) == 30
    page = client.get(f"/v1/photos/{posted['photo_id']}", params={"offset": 10, "limit": 5}).json()
    assert [r["position"] for r in page["regions"]] == [10, 11, 12, 13, 14] and page["regions_total"] == 30
    assert page["regions"][0]["predictions"] == posted["regions"][10]["predictions"][:region_modes.MAX_STORED_TOP_K]
    assert len(client.get(f"/v1/photos/{posted['photo_id']}").json()["regions"]) == 30  # one default page
    assert client.get(f"/v1/photos/{posted['photo_id']}", params={"offset": 30}).json()["regions"] == []
    assert client.get(f"/v1/photos/{posted['photo_id']}", params={"limit": 0}).status_code == 422
    overlay = client.get(f"/v1/photos/{posted['photo_id']}/overlay")
    assert overlay.status_code == 200


def test_errors_have_one_shape_and_the_upload_field_two_names(make_client):
    client = make_client(local=True)
    missing = client.post("/v1/photos", data={"store": "North"})
    assert missing.status_code == 422 and missing.json() == {"detail": "file: Field required"}
    bad = client.post("/v1/photos", data={"crop": "sideways", "top_k": "0"}, files={"file": ("a.png", png())})
    assert bad.json() == {"detail": "crop: Input should be 'center' or 'pad'; top_k: Input should be greater "
                                    "than or equal to 1"}
    assert client.post("/v1/classify", data={"top_k": "3"}).json() == {"detail": "file: Field required"}
    for name in ("file", "photo"):  # `photo`, the field's first name, still works
        answer = client.post("/v1/photos", files={name: (f"{name}.png", png((9, 9, 9)))})
        assert answer.status_code in (200, 201) and answer.json()["name"] == "file.png"
    garbled = client.post("/v1/photos", content=b"--xx\r\nnot multipart",
                          headers={"content-type": "multipart/form-data; boundary=xx"})
    assert garbled.status_code == 400 and isinstance(garbled.json()["detail"], str)


def test_tokens_and_roles(make_client, token, api_db):
    client = make_client(local=False)
    photo = {"photo": ("a.png", png())}
    missing = client.get("/v1/tallies")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/tallies", headers={"Authorization": "Bearer shelf_wrong"}).status_code == 401
    assert client.get("/v1/tallies", headers={"Authorization": "Basic dTpw"}).status_code == 401
    early = client.post("/v1/photos", files={"photo": ("big.png", big)})  # refused before the body is read
    assert early.status_code == 401 and early.json()["detail"].startswith("an API token is required")
    made_up = client.post("/v1/classify", files={"file": ("big.png", big)}, headers={"Authorization": "Bearer x"})
    assert made_up.status_code == 401 and made_up.json()["detail"] == "unknown or revoked API token"
    viewer, reviewer = token("viewer", "bi-dashboard"), token("reviewer", "store-app")
    assert client.get("/v1/tallies", headers=viewer).status_code == 200
    assert client.post("/v1/classify", headers=viewer, files={"file": ("a.png", png())}).status_code == 200
    refused = client.post("/v1/photos", headers=viewer, files=photo)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "bi-dashboard (viewer) may not recognize; that needs the reviewer role"
    stored = client.post("/v1/photos", headers=reviewer, files=photo)
    assert stored.status_code == 201
    assert client.get(f"/v1/photos/{stored.json()['photo_id']}", headers=viewer).status_code == 200
    tokens.revoke_token(client.app.state.worker.engine, "store-app")
    assert client.post("/v1/photos", headers=reviewer, files=photo).status_code == 401
    assert client.get("/v1/health").status_code == 200  # health needs no token


def test_local_mode_until_a_token_exists(make_client, token):
    client = make_client(local=True)
    assert client.get("/v1/tallies").status_code == 200  # the local user, as the dashboard without sign-in
    assert client.get("/v1/health").json()["access"] == "local"
    headers = token("viewer")
    assert client.get("/v1/tallies").status_code == 401  # from the first token on, tokens are required
    assert client.get("/v1/tallies", headers=headers).status_code == 200


def test_bind_address_without_tokens_is_loopback():
    assert api.bind_address("0.0.0.0", tokens_exist=True) == ("0.0.0.0", None)
    host, note = api.bind_address("0.0.0.0", tokens_exist=False)
    assert host == "127.0.0.1" and "127.0.0.1 only" in note and "asked for 0.0.0.0" in note


def test_tallies_json_and_csv_with_inert_cells(make_client):
    client = make_client(local=True)
    for i, shop in enumerate(["=HYPERLINK(\"http://x\")", "North", "North"]):
        answer = client.post("/v1/photos", data={"store": shop, "regions": "grid:1x2"},
                             files={"photo": (f"{i}.png", png((10 * i, 80, 120)))})
        assert answer.status_code == 201
    engine = client.app.state.worker.engine
    answer = client.get("/v1/tallies", params=[("by", "store"), ("by", "label"), ("min_confidence", "0")])
    assert answer.status_code == 200
    body = answer.json()
    expected = report.tally_table(engine, ["store", "label"], 0.0)
    assert body["by"] == ["store", "label"] and len(body["rows"]) == len(expected)
    assert sum(r["facings"] for r in body["rows"]) == expected["facings"].sum() == 6
    north = client.get("/v1/tallies", params={"by": "store", "store": "North"}).json()["rows"]
    assert [(r["store"], r["facings"]) for r in north] == [("North", 4)]
    csv = client.get("/v1/tallies", params={"by": "store"}, headers={"Accept": "text/csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert sorted(frame["store"]) == ["'=HYPERLINK(\"http://x\")", "North"]  # inert, as the dashboard's CSV
    assert client.get("/v1/tallies", params={"by": "nonsense"}).status_code == 422
    assert client.get("/v1/tallies", params={"min_confidence": "2"}).status_code == 422


def test_health_says_what_is_wrong(make_client, monkeypatch, tmp_path):
    ok = make_client(local=True).get("/v1/health")
    assert ok.status_code == 200 and ok.json()["status"] == "ok" and ok.json()["model"]["loaded"]
    assert ok.json()["database"] == {"ok": True, "dialect": "sqlite", "photos": 0, "problem": None}
    monkeypatch.setenv("SHELF_WEIGHTS", str(tmp_path / "missing.pth"))
    client = make_client(local=True, model=None)  # the lifespan loads the model, and finds no weights
    down = client.get("/v1/health")
    assert down.status_code == 503 and down.json()["status"] == "unavailable"
    assert "weights unavailable" in down.json()["model"]["problem"]
    refused = client.post("/v1/classify", files={"file": ("a.png", png())})
    assert refused.status_code == 503 and "weights unavailable" in refused.json()["detail"]


def test_openapi_schema_is_checked_in():
    """Clients generate code from docs/openapi.json: a change to the API must come with the file."""
    current = api.openapi_text()
    assert OPENAPI_FILE.exists(), f"docs/openapi.json is missing; write it with: {REGENERATE}"
    assert json.loads(OPENAPI_FILE.read_text()) == json.loads(current), \
        f"the API changed but docs/openapi.json did not; review the change and regenerate it with: {REGENERATE}"
    paths = json.loads(current)["paths"]
    assert {"/v1/classify", "/v1/photos", "/v1/photos/{photo_id}", "/v1/photos/{photo_id}/overlay", "/v1/tallies",
            "/v1/health"} <= set(paths)


def test_token_commands_show_the_secret_once(api_db, capsys):
    assert cli(["token", "create", "--role", "reviewer", "store-app", "--db", api_db]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("shelf_") and len(secret) > 40
    engine = store.open_store(api_db)
    assert tokens.identity_for(engine, secret).role == "reviewer"
    assert cli(["token", "create", "--role", "viewer", "store-app", "--db", api_db]) == 1
    assert cli(["token", "list", "--db", api_db]) == 0
    listing = capsys.readouterr().out
    assert "store-app\treviewer" in listing and "active" in listing and secret not in listing
    import sqlalchemy as sa
    with engine.connect() as conn:  # only the hash is kept
        assert secret not in str(conn.execute(sa.select(store.metadata.tables["api_tokens"])).all())
    assert cli(["token", "revoke", "store-app", "--db", api_db]) == 0
    assert tokens.identity_for(engine, secret) is None
    assert cli(["token", "revoke", "store-app", "--db", api_db]) == 1
    with pytest.raises(SystemExit):
        cli(["token", "create", "--role", "owner", "x", "--db", api_db])


def test_home_page_creates_a_token_shows_it_once_and_revokes_it():
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    st.cache_resource.clear()  # the model and engine are cached per process; this test has its own env
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.text_input(key="token_name").input("store-app")
    at.selectbox(key="token_role").select("reviewer")
    at.button(key="create_token").click().run()
    assert not at.exception, at.exception
    (secret,) = [c.value for c in at.code if c.value.startswith("shelf_")]
    engine = store.open_store()
    assert tokens.identity_for(engine, secret).role == "reviewer"
    at.run()
    assert not [c for c in at.code if c.value == secret]  # shown once
    at.selectbox(key="token_to_revoke").select("store-app").run()
    at.button(key="revoke_token").click().run()
    assert not at.exception, at.exception
    assert tokens.identity_for(engine, secret) is None
    st.cache_resource.clear()


def test_tokens_on_sqlite_and_postgresql(any_engine):
    secret = tokens.create_token(any_engine, "  store-app\n", "reviewer")
    assert tokens.identity_for(any_engine, secret) == tokens.Identity("store-app", "reviewer", via="token")
    assert tokens.identity_for(any_engine, secret + "x") is None and tokens.any_active(any_engine)
    with pytest.raises(tokens.TokenError, match="exists"):
        tokens.create_token(any_engine, "store-app", "viewer")
    with pytest.raises(tokens.TokenError, match="not one of"):
        tokens.create_token(any_engine, "x", "owner")
    assert tokens.revoke_token(any_engine, "store-app") == 1 and not tokens.any_active(any_engine)
    again = tokens.create_token(any_engine, "store-app", "viewer")  # a name is free again once revoked
    assert [(t.name, t.role, t.active) for t in tokens.list_tokens(any_engine)] == \
        [("store-app", "viewer", True), ("store-app", "reviewer", False)]
    assert tokens.identity_for(any_engine, again).role == "viewer"


def test_photos_name_skus_from_the_catalog(make_client):
    from shelf.recognition import catalog
    client = make_client(local=True)
    engine = client.app.state.worker.engine
    cola = image_bytes(solid((180, 20, 20), (120, 200)), "PNG")
    sku_id = catalog.add_sku(engine, "Cola 0.5 l", "Acme", "Snacks & packaged food")
    assert catalog.add_references(engine, sku_id, [("cola.png", cola)])[0] == 1
    answer = client.post("/v1/photos", data={"catalog": "true", "crop": "pad"}, files={"photo": ("c.png", cola)})
    assert answer.status_code == 201, answer.text
    (region,) = answer.json()["regions"]
    assert region["sku"]["id"] == sku_id and region["sku"]["name"] == "Cola 0.5 l"
    assert region["sku"]["similarity"] == pytest.approx(1.0, abs=1e-2)
    assert client.get(f"/v1/photos/{answer.json()['photo_id']}").json()["regions"][0]["sku"] == region["sku"]
    plain = client.post("/v1/photos", files={"photo": ("p.png", png())}).json()
    assert plain["regions"][0]["sku"] is None  # not matched against the catalog
