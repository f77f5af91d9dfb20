"""HTTP API benchmark: photos/s of `POST /v1/photos` (12 MP shelf photos, grid 5x8, fast mode) against
`python -m shelf serve` on this machine, beside the same work through `pipeline.recognize` in this process, so the
API's own cost shows as a ratio within one run. Run from the project root:

    python -m benchmarks.api [--photos 12] [--size 4000x3000] [--grid 5x8] [--clients 1,2] [--backend int8]

Photos are generated once and cached with the batch benchmark's (~/.cache/shelf-bench/batch-*): distinct shelves
saved as many photos that differ in trailing bytes, so each POST is a new photo that decodes to the same work. The
weights are a random-init ResNet-18 (inference cost does not depend on the weight values). Fast mode is calibrated
on one stored photo first, as the Model page requires. Timings on a shared machine vary; compare the ratios.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
from torchvision.models import resnet18

from benchmarks.batch import archive
from tests.e2e.conftest import ROOT, free_port


def start_server(port: int, env: dict, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "shelf", "serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300  # fast mode is quantised at first start (then cached)
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the API did not start:\n{log.read_text()[-3000:]}")


def post_photos(url: str, paths: list[Path], grid: str, clients: int) -> float:
    """Seconds to POST every photo with `clients` concurrent clients (each photo once)."""
    def post(path: Path) -> None:
        with path.open("rb") as handle:
            answer = httpx.post(f"{url}/v1/photos", data={"regions": f"grid:{grid}", "store": "bench"},
                                files={"photo": (path.name, handle, "image/jpeg")}, timeout=600)
        assert answer.status_code == 201, answer.text
        assert len(answer.json()["regions"]) == regions_of(grid)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, paths))
    return time.perf_counter() - started


def regions_of(grid: str) -> int:
    rows, cols = map(int, grid.split("x"))
    return rows * cols


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12, help="photos per measurement")
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--grid", default="5x8")
    parser.add_argument("--clients", default="1,2", help="concurrent clients, one measurement each")
    parser.add_argument("--backend", default="int8", choices=["int8", "onnx", "eager"],
                        help="int8 = fast mode (default)")
    args = parser.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    client_counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "random-resnet18.pth"
        torch.manual_seed(0)
        torch.save(resnet18().state_dict(), weights)
        os.environ.update(SHELF_DATA_DIR=tmp, SHELF_WEIGHTS=str(weights), SHELF_ALLOW_UNVERIFIED_WEIGHTS="1",
                          SHELF_OFFLINE="1")
        os.environ.pop("SHELF_DATABASE_URL", None)
        from shelf import pipeline, store
        from shelf.backends import with_backend
        from shelf.model import load_model

        started = time.perf_counter()
        needed = 1 + args.photos * (1 + len(client_counts))
        paths = sorted(archive(needed, width, height).glob("IMG_*.jpg"))[:needed]
        print(f"{len(paths)} generated {width}×{height} JPEG shelf photos (made or found in "
              f"{time.perf_counter() - started:.0f} s), grid {args.grid}, backend {args.backend}, "
              f"{os.cpu_count()} CPUs")
        engine = store.open_store()
        loaded = load_model()[0]
        context = store.Context("bench")
        pipeline.recognize(loaded, engine, [pipeline.Upload(paths[0].name, paths[0].read_bytes())], context,
                           f"grid:{args.grid}")  # stored crops: what fast mode is calibrated on
        loaded = with_backend(loaded, args.backend, engine)
        batches = [paths[1 + i * args.photos: 1 + (i + 1) * args.photos] for i in range(1 + len(client_counts))]

        started = time.perf_counter()
        for path in batches[0]:
            (result,) = pipeline.recognize(loaded, engine, [pipeline.Upload(path.name, path.read_bytes())], context,
                                           f"grid:{args.grid}", previews=0)
            assert result.ok and not result.already_stored, result.error
        rows = [("in-process pipeline.recognize", 1, args.photos / (time.perf_counter() - started))]
        del loaded
        engine.dispose()

        port, log = free_port(), Path(tmp) / "serve.log"
        server = start_server(port, {**os.environ, "SHELF_BACKEND": args.backend}, log)
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/v1/health").json()
            for clients, batch in zip(client_counts, batches[1:]):
                seconds = post_photos(f"http://127.0.0.1:{port}", batch, args.grid, clients)
                rows.append(("POST /v1/photos", clients, len(batch) / seconds))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"server backend: {health['model']['backend']}\n")
    print(f"{'path':32}{'clients':>8}{'photos/s':>10}{'vs in-process':>15}")
    for name, clients, rate in rows:
        print(f"{name:32}{clients:>8}{rate:>10.2f}{rate / rows[0][2]:>15.2f}")


if __name__ == "__main__":
    main()
