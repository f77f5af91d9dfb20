"""The API as deployed: `python -m shelf serve` (uvicorn) on a free port, hit by concurrent httpx clients."""
import asyncio
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from PIL import Image

from shelf.serving import tokens
from shelf.storage import store
from tests.conftest import image_bytes
from tests.e2e.conftest import LocalServer, free_port

CLIENTS, PER_CLIENT, DISTINCT = 20, 10, 100  # every photo is posted by two clients at about the same time


class ApiServer(LocalServer):
    what = "the API"

    def __init__(self, data_dir: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key != "SHELF_DATABASE_URL"}
        env["SHELF_BACKEND"] = "eager"  # no ONNX export at start-up: the test is about the server, not the backend
        self.start([sys.executable, "-m", "shelf", "serve", "--port", str(self.port), *args], env,
                   data_dir / "serve.log")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def photos() -> list[bytes]:
    """Small distinct photos (each its own colour and pattern, so its own content hash)."""
    found = []
    for i in range(DISTINCT):
        image = Image.new("RGB", (96, 64), (i * 2, 255 - i * 2, (i * 37) % 256))
        image.putpixel((i % 96, i // 96), (255, 255, 255))
        found.append(image_bytes(image, "PNG"))
    return found


async def post_all(url: str, headers: dict, photos: list[bytes]) -> list[tuple[int, int, dict]]:
    async def client(number: int):
        answers = []
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
            for j in range(PER_CLIENT):
                index = (number * DISTINCT // CLIENTS + j) % DISTINCT
                answer = await http.post("/v1/photos", data={"store": f"S{number}"},
                                         files={"photo": (f"IMG_{index}.png", photos[index], "image/png")})
                answers.append((index, answer.status_code, answer.json()))
        return answers
    results = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return [answer for answers in results for answer in answers]


def test_twenty_concurrent_clients_store_every_photo_exactly_once(shelf_env, photos):
    engine = store.open_store()
    secret = tokens.create_token(engine, "load-test", "reviewer")
    server = ApiServer(shelf_env / "data")
    try:
        started = time.perf_counter()
        answers = asyncio.run(post_all(server.url, {"Authorization": f"Bearer {secret}"}, photos))
        seconds = time.perf_counter() - started
    finally:
        server.stop()
    assert len(answers) == CLIENTS * PER_CLIENT
    assert all(status in (200, 201) for _, status, _ in answers), [a for a in answers if a[1] not in (200, 201)][:3]
    by_photo = defaultdict(list)
    for index, status, body in answers:
        by_photo[index].append((status, body["photo_id"], body["already_stored"]))
    assert len(by_photo) == DISTINCT and all(len(posts) == 2 for posts in by_photo.values())
    for index, posts in by_photo.items():
        assert len({photo_id for _, photo_id, _ in posts}) == 1, (index, posts)  # both posters got the one photo
        assert sorted(already for _, _, already in posts) == [False, True], (index, posts)
        assert sorted(status for status, _, _ in posts) == [200, 201], (index, posts)
    counts = store.counts(engine)
    assert counts["photos"] == DISTINCT and counts["regions"] == DISTINCT  # stored once, none lost
    assert counts["runs"] == 1  # one run for the worker's settings, not one per request
    log = server.log.read_text()
    assert "no API token is configured" not in log and f"127.0.0.1:{server.port}" in log
    print(f"{len(answers)} posts by {CLIENTS} clients in {seconds:.1f} s")


def test_without_tokens_the_server_listens_on_loopback_only(shelf_env):
    server = ApiServer(shelf_env / "data", "--host", "0.0.0.0")
    try:
        answer = httpx.post(f"{server.url}/v1/classify", timeout=60,
                            files={"file": ("a.png", image_bytes(Image.new("RGB", (32, 32)), "PNG"))})
        health = httpx.get(f"{server.url}/v1/health").json()
    finally:
        server.stop()
    assert answer.status_code == 200 and health["access"] == "local"
    log = server.log.read_text()
    assert "listens on 127.0.0.1 only" in log and "(asked for 0.0.0.0)" in log
    assert f"Uvicorn running on http://127.0.0.1:{server.port}" in log


def multipart_stream(total: int, chunk: int = 1_000_000):
    """(Content-Length, a generator of a multipart body of `total` bytes: one file of zeros), never holding more than
    one chunk: the test must not hold what it sends."""
    head = b'--xx\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
    tail = b"\r\n--xx--\r\n"
    zeros = bytes(chunk)

    def body():
        yield head
        left = total - len(head) - len(tail)
        while left > 0:
            yield zeros[:min(chunk, left)]
            left -= chunk
        yield tail
    return total, body()


def written_by(pid: int) -> int:
    """Bytes the process has written so far, to files, pipes and sockets alike (/proc/PID/io wchar)."""
    return int(dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())["wchar"])


def test_an_unknown_token_is_refused_before_the_body_is_read(shelf_env):
    engine = store.open_store()
    tokens.create_token(engine, "store-app", "reviewer")  # tokens are required from now on
    server = ApiServer(shelf_env / "data")
    try:
        before = written_by(server.process.pid)
        length, body = multipart_stream(900_000_000)
        answer = httpx.post(f"{server.url}/v1/classify", content=body, timeout=120,
                            headers={"Authorization": "Bearer shelf_made-up", "Content-Length": str(length),
                                     "Content-Type": "multipart/form-data; boundary=xx"})
        written = written_by(server.process.pid) - before
    finally:
        server.stop()
    assert answer.status_code == 401 and answer.json()["detail"] == "unknown or revoked API token"
    assert written < 10_000_000, f"the server wrote {written / 1e6:.0f} MB before refusing the token"
    print(f"401 after the server wrote {written / 1e3:.0f} kB")
