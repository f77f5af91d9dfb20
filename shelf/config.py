"""Settings read from the environment, in one place.

SHELF_DATA_DIR      where Shelf keeps its database, photos and imported weights (default ./shelf-data)
SHELF_DATABASE_URL  SQLAlchemy URL of the store (default: SQLite file in the data dir)
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


def database_url() -> str:
    return os.environ.get("SHELF_DATABASE_URL") or f"sqlite:///{data_dir() / 'shelf.db'}"


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
