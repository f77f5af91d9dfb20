"""Concurrency benchmark: N browser sessions upload M photos each to one server while the CLI writes to the same
SQLite file. Prints throughput and the server's peak RSS. Run:  python -m benchmarks.concurrency [--sessions 10]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models import resnet18

from tests.e2e.conftest import ROOT, Server
from tests.e2e.test_concurrency import run_sessions, write_photos


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--photos", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "random-resnet18.pth"
        torch.manual_seed(0)
        torch.save(resnet18().state_dict(), weights)
        server = Server(tmp / "data", weights)
        try:
            batches = [write_photos(tmp / f"s{s}", 1000 * (s + 1), args.photos) for s in range(args.sessions)]
            cli_photos = write_photos(tmp / "cli", 90_000, args.photos)
            start = time.perf_counter()
            cli = subprocess.Popen([sys.executable, "-m", "shelf", "recognize", *map(str, cli_photos)], cwd=ROOT,
                                   env={**os.environ, "SHELF_DATA_DIR": str(server.data_dir),
                                        "SHELF_WEIGHTS": str(weights), "SHELF_ALLOW_UNVERIFIED_WEIGHTS": "1",
                                        "SHELF_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results = asyncio.run(run_sessions(server.url, batches))
            cli.wait()
            elapsed = time.perf_counter() - start
            total = args.sessions * args.photos + args.photos
            print(f"{args.sessions} browser sessions × {args.photos} photos + the CLI × {args.photos}: {total} photos "
                  f"in {elapsed:.1f} s = {total / elapsed:.1f} photos/s; sessions took "
                  f"{min(s for s, _ in results):.1f}–{max(s for s, _ in results):.1f} s; "
                  f"errors shown: {sum(len(e) for _, e in results)}; server peak RSS "
                  f"{peak_rss_mb(server.process.pid):.0f} MB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
