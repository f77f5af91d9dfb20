"""`python -m shelf batch`: the driver. Lists the photos, records the run and the batch, runs an engine
(`engines`), and keeps count: a progress bar, the batch's row in the store (the Home page reads it), and the
batch's error list (CSV). Interrupted (Ctrl-C), it records how far it got; running it again resumes, since photos
already stored are skipped by content hash.
"""
from __future__ import annotations

import csv
import getpass
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from shelf import config
from shelf.ingest.sources import Problem
from shelf.recognition import stages
from shelf.storage import batches
from shelf.text import inert

ERROR_COLUMNS = ["source", "line", "problem"]
HEARTBEAT_S = 1.0


@dataclass
class Tally:
    total: int
    counts: Counter = field(default_factory=Counter)  # by status: stored, already stored, error
    regions: int = 0
    store_seconds: float = 0.0
    nodes: set = field(default_factory=set)  # where photos were classified
    started: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def progress(self) -> dict:
        return {"done": self.done, "stored": self.counts[stages.STORED], "errors": self.counts[stages.FAILED]}

    def summary(self) -> str:
        rate = self.done / self.elapsed if self.elapsed else 0.0
        return (f"{self.total} photo(s): {self.counts[stages.STORED]} stored, {self.counts[stages.ALREADY_STORED]} "
                f"already stored, {self.counts[stages.FAILED]} error(s) in {self.elapsed:.1f} s "
                f"({rate:.2f} photos/s, {self.regions / self.elapsed if self.elapsed else 0:.1f} crops/s)")


def who_and_where() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def errors_path(batch_id: int) -> Path:
    return config.data_dir() / "batches" / f"batch-{batch_id}-errors.csv"


class ErrorList:
    """The batch's error list, written as problems arrive (a crash keeps what was found so far)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.handle = path.open("w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(ERROR_COLUMNS)

    def add(self, source: str, line: int, problem: str) -> None:
        self.writer.writerow([inert(source), line or "", inert(problem)])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def run(results: Iterable[dict], tally: Tally, engine: Engine, batch_id: int, errors: ErrorList,
        bar=None, each: Callable[[dict], object] = lambda result: None) -> None:
    """Count each photo's result as it arrives, keep the batch row current (about once a second), list the
    errors and hand each result to `each`. A KeyboardInterrupt marks the batch interrupted before it propagates.

    Not a generator: a Ctrl-C that lands in the caller's work on a result would close a generator with
    GeneratorExit, and the batch would be marked failed instead of interrupted."""
    last = 0.0
    try:
        for result in results:
            status = str(result["status"])
            tally.counts[status] += 1
            if status == stages.FAILED:
                errors.add(str(result["source"]), int(result["line"]), str(result["error"]))
            elif status == stages.STORED:
                tally.regions += int(result["regions"])
                tally.store_seconds += float(result["store_seconds"])
            if result["classified_on"]:
                tally.nodes.add(str(result["classified_on"]))
            if bar is not None:
                bar.update()
                bar.set_postfix(stored=tally.counts[stages.STORED], errors=tally.counts[stages.FAILED], refresh=False)
            if time.monotonic() - last >= HEARTBEAT_S:
                batches.update_batch(engine, batch_id, **tally.progress())
                last = time.monotonic()
            each(result)
    except KeyboardInterrupt:
        batches.update_batch(engine, batch_id, status=batches.INTERRUPTED, **tally.progress())
        raise
    except BaseException:
        batches.update_batch(engine, batch_id, status=batches.FAILED, **tally.progress())
        raise
    batches.update_batch(engine, batch_id, status=batches.FINISHED, **tally.progress())


def report_listing(problems: list[Problem], errors: ErrorList, tally: Tally) -> None:
    """Inputs that could not even be listed (missing folders, bad manifest rows) count as errors of the batch."""
    for problem in problems:
        errors.add(problem.source, problem.line, problem.problem)
        print(f"error: {problem}", file=sys.stderr)
    tally.counts[stages.FAILED] += len(problems)


def describe_sources(sources: list[str]) -> str:
    return " ".join(sources) if len(" ".join(sources)) <= 500 else f"{sources[0]} and {len(sources) - 1} more"
