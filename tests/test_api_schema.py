"""Schemathesis: requests generated from the API's own OpenAPI schema (valid ones, and ones that break it), sent
with an admin token, and every answer checked against the schema: status codes, bodies, content types, and that
valid requests are accepted and invalid ones refused. A few examples per operation, with a fixed seed."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from shelf.serving import api, tokens
from shelf.storage import store

CONFIG = schemathesis.Config.from_dict({"operations": [{
    "include-path-regex": "^/v1/(classify|photos)$",
    # a multipart body that fits the schema may still hold bytes that are no photo: 422, naming the file
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]}},
}]})


@pytest.fixture
def api_db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'api.db'}"


@pytest.fixture
def admin(api_db) -> dict:
    engine = store.open_store(api_db)
    yield {"Authorization": f"Bearer {tokens.create_token(engine, 'schemathesis', 'admin')}"}
    engine.dispose()


@pytest.fixture
def api_schema(loaded, api_db):
    return schemathesis.openapi.from_asgi("/openapi.json", api.create_app(api.ApiSettings(db_url=api_db), loaded),
                                          config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=5, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_schema(case, admin):
    case.call_and_validate(headers=admin)
