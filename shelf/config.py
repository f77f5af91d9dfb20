"""Settings read from the environment, in one place.

SHELF_DATA_DIR      where Shelf keeps its database, photos and imported weights (default ./shelf-data)
SHELF_DATABASE_URL  SQLAlchemy URL of the store (default: SQLite file in the data dir)
SHELF_DATABASE_PASSWORD_FILE
                    a file holding the database password, put into SHELF_DATABASE_URL (container secrets: the
                    password never sits in the environment)
SHELF_WEIGHTS       a ResNet-18 weights file to use before anything else
SHELF_OFFLINE=1     never try to download weights
SHELF_ALLOW_UNVERIFIED_WEIGHTS=1
                    allow weights that are not the verified ImageNet file (untrained/demo/test weights);
                    every prediction made with them is marked in its run's provenance
SHELF_MAX_FILES_PER_REQUEST
                    files one HTTP API request may carry (default 20); each file has the dashboard's size and
                    pixel limits (shelf.ingest.images)
"""
from __future__ import annotations

import os
from pathlib import Path

TRUE_WORDS = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


def data_dir() -> Path:
    return Path(os.environ.get("SHELF_DATA_DIR") or "shelf-data").expanduser().resolve()


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and the problem."""


def database_url() -> str:
    url = os.environ.get("SHELF_DATABASE_URL") or f"sqlite:///{data_dir() / 'shelf.db'}"
    password_file = os.environ.get("SHELF_DATABASE_PASSWORD_FILE")
    return with_password_from(url, Path(password_file)) if password_file else url


def with_password_from(url: str, path: Path) -> str:
    """`url` with the password kept in the file `path` (its first line)."""
    import sqlalchemy as sa
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"SHELF_DATABASE_PASSWORD_FILE={path}: cannot be read "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    if not lines or not lines[0]:
        raise ConfigError(f"SHELF_DATABASE_PASSWORD_FILE={path}: the file is empty; put the password on its first line")
    return sa.engine.make_url(url).set(password=lines[0]).render_as_string(hide_password=False)


def weights_file_from_env() -> Path | None:
    value = os.environ.get("SHELF_WEIGHTS")
    return Path(value).expanduser() if value else None


def offline() -> bool:
    return env_flag("SHELF_OFFLINE")


def allow_unverified_weights() -> bool:
    return env_flag("SHELF_ALLOW_UNVERIFIED_WEIGHTS")


DEFAULT_MAX_FILES_PER_REQUEST = 20


def max_files_per_request() -> int:
    value = os.environ.get("SHELF_MAX_FILES_PER_REQUEST", "").strip()
    return max(1, int(value)) if value.isdigit() else DEFAULT_MAX_FILES_PER_REQUEST
