"""Shared fixtures. Every test runs offline, in its own data dir, with a generated random-init ResNet-18
checkpoint (fixed seed) loaded through the product's own SHELF_WEIGHTS path."""
from __future__ import annotations

import importlib.resources
import io
import os
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

from shelf.recognition import model

REAL_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"]


def skimage_photo(name: str) -> Path:
    """Real photographs shipped inside the scikit-image wheel (no download)."""
    return Path(str(importlib.resources.files("skimage") / "data" / name))


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random-resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing in the tests may reach beyond this machine."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and self.family != socket.AF_UNIX:
            raise OSError(f"network access blocked in tests: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def shelf_env(monkeypatch, tmp_path, weights_file):
    monkeypatch.setenv("SHELF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SHELF_DATABASE_URL", raising=False)
    monkeypatch.setenv("SHELF_OFFLINE", "1")
    monkeypatch.setenv("SHELF_WEIGHTS", str(weights_file))
    monkeypatch.setenv("SHELF_ALLOW_UNVERIFIED_WEIGHTS", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    monkeypatch.setenv("SHELF_BENCH_CACHE", str(tmp_path / "bench-cache"))  # no figures from a benchmark run here
    monkeypatch.setenv("SHELF_TASK_WORKER", "off")  # no delivery thread polling each test's store (tests/test_webhooks)
    return tmp_path


@pytest.fixture(scope="session")
def loaded(weights_file):
    state, info = model.read_weights_file(weights_file, "SHELF_WEIGHTS")
    return model.build_model(state, info)


@pytest.fixture
def engine():
    from shelf.storage.store import open_store
    return open_store()


def image_bytes(image: Image.Image, fmt: str, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def solid(color=(200, 30, 30), size=(64, 48), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


@pytest.fixture
def photo_bytes() -> dict[str, bytes]:
    return {name: skimage_photo(name).read_bytes() for name in REAL_PHOTOS}


POSTGRES_URL = os.environ.get("SHELF_TEST_POSTGRES_URL")  # set by .ci/run, which starts a throwaway server
REQUIRE_SERVICES = os.environ.get("SHELF_REQUIRE_SERVICES") == "1"  # CI: a missing service fails, never skips


def require_service(available: bool, what: str) -> None:
    if not available:
        if REQUIRE_SERVICES:
            pytest.fail(f"{what} is required here (SHELF_REQUIRE_SERVICES=1) but not available")
        pytest.skip(f"{what} not available (.ci/run provides it)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same test against SQLite and against a real PostgreSQL server (emptied first)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    require_service(bool(POSTGRES_URL), "PostgreSQL (SHELF_TEST_POSTGRES_URL)")
    import sqlalchemy as sa
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:  # everything, also tables an older (or newer) schema had
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def any_engine(db_url):
    from shelf.storage.store import open_store
    engine = open_store(db_url)
    yield engine
    engine.dispose()
