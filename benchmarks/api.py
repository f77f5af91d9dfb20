"""HTTP API benchmark: photos/s of `POST /v1/photos` (12 MP shelf photos, grid 5x8, fast mode) against
`python -m shelf serve` on this machine, beside the same work through `pipeline.recognize` in this process, so the
API's own cost shows as a ratio within one run. Run from the project root:

    python -m benchmarks.api [--rounds 8] [--size 4000x3000] [--grid 5x8] [--clients 1,2] [--backend int8]

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
                                files={"file": (path.name, handle, "image/jpeg")}, timeout=600)
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
    parser.add_argument("--rounds", type=int, default=8,
                        help="rounds; each recognizes one photo in-process and posts N photos with N clients")
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
        from shelf.recognition import pipeline
        from shelf.recognition.backends import with_backend
        from shelf.recognition.model import load_model
        from shelf.storage import store

        started = time.perf_counter()
        needed = 3 + args.rounds * (1 + sum(client_counts))
        paths = iter(sorted(archive(needed, width, height).glob("IMG_*.jpg"))[:needed])
        print(f"{needed} generated {width}×{height} JPEG shelf photos (made or found in "
              f"{time.perf_counter() - started:.0f} s), grid {args.grid}, backend {args.backend}, "
              f"{os.cpu_count()} CPUs, {args.rounds} rounds")
        engine = store.open_store()
        context, regions = store.Context("bench"), f"grid:{args.grid}"

        def recognize(model, path: Path) -> None:
            (result,) = pipeline.recognize(model, engine, [pipeline.Upload(path.name, path.read_bytes())], context,
                                           regions, previews=0)
            assert result.ok and not result.already_stored, result.error

        base = load_model()[0]
        recognize(base, next(paths))  # stored crops: what fast mode is calibrated on
        loaded = with_backend(base, args.backend, engine)
        port, log = free_port(), Path(tmp) / "serve.log"
        url = f"http://127.0.0.1:{port}"
        server = start_server(port, {**os.environ, "SHELF_BACKEND": args.backend}, log)  # the same calibration
        seconds = {0: 0.0, **{clients: 0.0 for clients in client_counts}}  # 0: in-process
        try:
            health = httpx.get(f"{url}/v1/health").json()
            recognize(loaded, next(paths))  # warm-up of both: first runs are slower
            post_photos(url, [next(paths)], args.grid, 1)
            for _ in range(args.rounds):  # interleaved, so the machine's other work falls on every path alike
                started = time.perf_counter()
                recognize(loaded, next(paths))
                seconds[0] += time.perf_counter() - started
                for clients in client_counts:
                    seconds[clients] += post_photos(url, [next(paths) for _ in range(clients)], args.grid, clients)
        finally:
            server.terminate()
            server.wait(timeout=30)
            engine.dispose()
        rows = [("in-process pipeline.recognize", 1, args.rounds / seconds[0])]
        rows += [("POST /v1/photos", clients, args.rounds * clients / seconds[clients]) for clients in client_counts]
    print(f"server backend: {health['model']['backend']}\n")
    print(f"{'path':32}{'clients':>8}{'photos/s':>10}{'vs in-process':>15}")
    for name, clients, rate in rows:
        print(f"{name:32}{clients:>8}{rate:>10.2f}{rate / rows[0][2]:>15.2f}")


if __name__ == "__main__":
    main()
