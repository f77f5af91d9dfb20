"""What the container deployment (Dockerfile, compose.yaml, deploy/) relies on, checked without Docker: the images'
package lists follow requirements.txt, secrets come from files (the database password, the API token), and the
compose file wires the services as the README says. deploy/test-image.sh builds and runs the real thing."""
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from shelf import config
from shelf.serving import tokens
from shelf.serving.cli import main
from shelf.storage import store

ROOT = Path(__file__).resolve().parents[1]


def requirement_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_images_install_what_requirements_txt_pins():
    """The serving image: requirements.txt's runtime packages but torch, torchvision and onnxscript (export only);
    the convert image adds exactly those, with the same pins."""
    text = (ROOT / "requirements.txt").read_text()
    runtime = requirement_lines(text[:text.index("# Tests.")])
    torch_only = [line for line in runtime if re.match(r"(torch|torchvision|onnxscript)\W", line)]
    assert len(torch_only) == 3
    assert requirement_lines((ROOT / "deploy" / "requirements-serve.txt").read_text()) == \
        [line for line in runtime if line not in torch_only]
    assert requirement_lines((ROOT / "deploy" / "requirements-convert.txt").read_text()) == torch_only


def test_the_compose_file_takes_its_secrets_from_files_and_starts_after_the_migration():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"db", "init", "api", "dashboard", "convert", "ray-head", "ray-worker"} <= set(services)
    assert all("file" in secret for secret in compose["secrets"].values())
    for name in ("init", "api", "dashboard", "db"):
        environment = services[name]["environment"]
        assert not any("PASSWORD" in key and not key.endswith("_FILE") for key in environment), name
        assert "db_password" in services[name]["secrets"]
    assert ":" not in services["api"]["environment"]["SHELF_DATABASE_URL"].split("@")[0].split("//")[1]  # no password
    for name in ("api", "dashboard"):
        assert services[name]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert services["init"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "healthcheck" in services["db"]
    assert "--secret-file" in services["init"]["command"]
    assert services["convert"]["profiles"] == ["convert"] and services["ray-worker"]["profiles"] == ["ray"]
    assert services["db"]["image"].startswith("${SHELF_POSTGRES_IMAGE:-postgres:15")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=python:3.11-slim-bookworm" in dockerfile and "--mount=type=secret,id=extra_ca" in dockerfile
    assert "HEALTHCHECK" in dockerfile and dockerfile.rstrip().splitlines()[-2] == "USER shelf"


def test_the_database_password_comes_from_a_file(tmp_path, monkeypatch):
    secret = tmp_path / "db_password"
    secret.write_text("p@ss:w/rd#1\n")
    monkeypatch.setenv("SHELF_DATABASE_URL", "postgresql+psycopg://shelf@db:5432/shelf")
    monkeypatch.setenv("SHELF_DATABASE_PASSWORD_FILE", str(secret))
    url = sa.engine.make_url(config.database_url())
    assert (url.username, url.password, url.host, url.database) == ("shelf", "p@ss:w/rd#1", "db", "shelf")


@pytest.mark.parametrize("content, problem", [(None, "cannot be read (No such file or directory)"),
                                              ("", "the file is empty")])
def test_an_unusable_password_file_is_named_and_the_cli_stops(tmp_path, monkeypatch, capsys, content, problem):
    secret = tmp_path / "db_password"
    if content is not None:
        secret.write_text(content)
    monkeypatch.setenv("SHELF_DATABASE_PASSWORD_FILE", str(secret))
    assert main(["tallies"]) == 2
    assert capsys.readouterr().err == f"error: SHELF_DATABASE_PASSWORD_FILE={secret}: {problem}" + (
        "; put the password on its first line\n" if content == "" else "\n")


def test_an_api_token_kept_in_a_secret_file_is_registered_once(tmp_path, capsys):
    engine = store.open_store()
    secret_file = tmp_path / "api_token"
    secret = "shelf_" + "k" * 43
    secret_file.write_text(secret + "\n")
    command = ["token", "create", "compose", "--role", "reviewer", "--secret-file", str(secret_file)]
    assert main(command) == 0 and main(command) == 0  # a restarted stack registers it again: nothing changes
    assert secret not in capsys.readouterr().out
    assert tokens.identity_for(engine, secret).role == "reviewer"
    assert [t.name for t in tokens.list_tokens(engine)] == ["compose"]
    secret_file.write_text("shelf_" + "o" * 43)  # another secret under the same name: revoke the old one first
    assert main(command) == 1
    assert "an active token named 'compose' exists" in capsys.readouterr().err
    secret_file.write_text("hunter2")
    assert main(command) == 1
    assert capsys.readouterr().err.startswith(f"error: {secret_file}: a token is 'shelf_' and at least 32 random")
    assert main([*command[:-1], str(tmp_path / "missing")]) == 1
    assert "missing: No such file or directory" in capsys.readouterr().err
