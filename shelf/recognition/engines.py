"""Engines for a batch: the same three stages (`shelf.recognition.stages`) in this process, or on a Ray cluster.

Ray: jobs → `map(prepare)` tasks (read, decode, regions) → `map_batches(ClassifyAndStore)` on a pool of actors,
one model each, which classify and then store each photo in its own transaction, from the workers. A task whose
worker dies is run again (Ray retries tasks on system failures), and an actor that dies is restarted with its calls
retried (Ray Data's default for actor pools). Exactly once lives in the store (unique content hash, one transaction
per photo), not here: a stage may run again for a photo that was already stored.

On a small machine the actors must leave CPU to the reading tasks, or nothing feeds them: each classifier asks for
`CLASSIFIER_CPUS` of a core, each reading task for `TASK_CPUS`.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shelf import config
from shelf.ingest.sources import Job
from shelf.recognition import stages
from shelf.recognition.model import LoadedModel

CLASSIFIER_CPUS = 0.75
TASK_CPUS = 0.25
PHOTOS_PER_CALL = 4  # photos per classifier call: enough crops for a full batch, small enough to retry cheaply
PHOTOS_PER_BLOCK = 2  # photos per reading task
CLIENT_POLL_S = 0.5
# Ray Client's proxier starts a server process for each client, which now and then dies at birth (a gRPC fork race
# in the proxier: ray-project/ray#63202, unfixed up to Ray 2.60 at least); the proxier then reports one of these.
# Trying again starts a fresh server.
CLIENT_START_FAILURES = ("Starting Ray client server failed", "psutil.ZombieProcess",
                         "Proxy failed to Connect to backend")
CLIENT_TRIES = 4
CLIENT_BACKOFF_S = 1.0  # doubled after each failed try: 1 + 2 + 4 s at most

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """A Ray cluster that cannot run this batch as asked; the message says why and what to do."""


class ClassifyAndStore:
    """Stages 2 and 3 in one worker: classify a batch of prepared photos, then store each in its own transaction
    from right there. Storing beside the model saves shipping every photo's bytes and results to yet another
    worker, and on a small machine the storing never waits for a CPU slot behind the reading tasks."""

    def __init__(self, settings: stages.Settings, loaded: LoadedModel | None = None):
        self.settings = settings
        self.classifier = stages.Classifier(settings, loaded)

    def __call__(self, batch: dict) -> dict:
        stages.adopt_environment(self.settings)
        engine = stages.worker_store(self.settings.db_url, self.settings.db_pool)
        results = [stages.store_row(row, engine, self.settings) for row in stages.rows(self.classifier(batch))]
        return {key: np.asarray([r[key] for r in results]) for key in results[0]}


def run_local(jobs: Sequence[Job], settings: stages.Settings, loaded: LoadedModel) -> Iterator[dict]:
    """The stages in this process, one photo at a time (a folder never sits in memory at once)."""
    engine = stages.worker_store(settings.db_url, settings.db_pool)
    recognizer = ClassifyAndStore(settings, loaded)
    for job in jobs:
        yield from stages.rows(recognizer(stages.batch([stages.prepare(asdict(job), engine, settings)])))


# ---------------------------------------------------------------------------------------------------------------
# Ray


@dataclass(frozen=True)
class Cluster:
    address: str  # as given, or "local" for an instance started here
    nodes: int
    cpus: float
    initialized_here: bool  # this process joined or started it, and leaves it again in `disconnect`

    @property
    def client(self) -> bool:
        """Connected through Ray Client (ray://HOST:10001)."""
        return self.address.startswith("ray://")

    @property
    def description(self) -> str:
        return f"Ray {self.address}: {self.nodes} node(s), {self.cpus:g} CPU(s)"


def connect(address: str | None) -> Cluster:
    """Join the Ray cluster at `address` (auto, host:port, ray://host:10001; Ray Client is tried again while it
    fails to start its server); without one, use the Ray instance this process already runs, or start one sized to
    this machine (stopped again by `disconnect`)."""
    import ray
    initialized_here = not ray.is_initialized()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Shelf does not report usage anywhere unless asked
    if not ray.is_initialized():
        options = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": True}
        if address:  # the workers run the driver's own Shelf code, whatever the nodes have installed
            import shelf
            join = functools.partial(ray.init, address=address,
                                     runtime_env={"py_modules": [str(Path(shelf.__file__).parent)]}, **options)
            if address.startswith("ray://"):
                with_client_retries(join, address)
            else:
                join()
        else:
            ray.init(num_cpus=os.cpu_count(), **options)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return Cluster(address or "local", len(nodes), float(ray.cluster_resources().get("CPU", 0)), initialized_here)


def with_client_retries(join: Callable[[], object], address: str, sleep: Callable[[float], None] = time.sleep):
    """`join()`, tried again with a growing pause while Ray Client fails to start this client's server; any other
    error, or the last try's, is raised as it is."""
    for attempt in range(1, CLIENT_TRIES + 1):
        try:
            return join()
        except ConnectionAbortedError as exc:  # Ray Client's "Initialization failure from server"
            reason = next((failure for failure in CLIENT_START_FAILURES if failure in str(exc)), None)
            if reason is None or attempt == CLIENT_TRIES:
                raise
            pause = CLIENT_BACKOFF_S * 2 ** (attempt - 1)
            log.warning("Ray Client at %s could not start a server for this driver (%s); trying again in %g s "
                        "(try %d of %d)", address, reason, pause, attempt + 1, CLIENT_TRIES)
            sleep(pause)


def disconnect(cluster: Cluster) -> None:
    import ray
    if cluster.initialized_here:
        ray.shutdown()


def absolute_url(url: str) -> str:
    """A database URL every worker reads the same way, whatever its working directory."""
    import sqlalchemy as sa
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        parsed = parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
    return parsed.render_as_string(hide_password=False)


def check_store_for(cluster: Cluster, db_url: str) -> None:
    """One SQLite file cannot be shared by the machines of a cluster: refuse it before any work is done."""
    import sqlalchemy as sa
    if cluster.nodes > 1 and sa.engine.make_url(db_url).get_backend_name() == "sqlite":
        raise ClusterError(
            f"the Ray cluster has {cluster.nodes} nodes, and an SQLite file cannot be shared between machines. "
            "Point --db (or SHELF_DATABASE_URL) at PostgreSQL that every node can reach, e.g. "
            "postgresql+psycopg://shelf:PASSWORD@db-host/shelf")


def worker_environment() -> tuple[tuple[str, str], ...]:
    """Shelf's settings for the workers, as this process sees them (paths made absolute). On a cluster of many
    machines, SHELF_DATA_DIR and SHELF_WEIGHTS must name a shared location that exists on every node."""
    env = {k: v for k, v in os.environ.items() if k.startswith("SHELF_")}
    env["SHELF_DATA_DIR"] = str(config.data_dir())
    if config.weights_file_from_env() is not None:
        env["SHELF_WEIGHTS"] = str(config.weights_file_from_env().resolve())
    return tuple(sorted(env.items()))


def default_workers(cluster: Cluster) -> int:
    """As many classifiers as the CPUs allow at their share, leaving room for a reading task."""
    return max(1, math.floor((cluster.cpus - TASK_CPUS) / CLASSIFIER_CPUS))


def _prepare(job: dict, settings: stages.Settings) -> dict:
    stages.adopt_environment(settings)
    return stages.prepare(job, stages.worker_store(settings.db_url, settings.db_pool), settings)


def run_ray(jobs: Sequence[Job], settings: stages.Settings, cluster: Cluster, workers: int) -> Iterator[dict]:
    """The stages on the cluster; yields each photo's result as it is stored."""
    if cluster.client:
        yield from _run_through_client(jobs, settings, workers)
    else:
        yield from _pipeline(jobs, settings, workers)


def _pipeline(jobs: Sequence[Job], settings: stages.Settings, workers: int) -> Iterator[dict]:
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own
    blocks = max(1, min(len(jobs), math.ceil(len(jobs) / PHOTOS_PER_BLOCK)))
    dataset = (
        ray.data.from_items([asdict(job) for job in jobs], override_num_blocks=blocks)
        .map(_prepare, fn_kwargs={"settings": settings}, num_cpus=TASK_CPUS)
        .map_batches(ClassifyAndStore, fn_constructor_kwargs={"settings": settings}, batch_size=PHOTOS_PER_CALL,
                     batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                     num_cpus=CLASSIFIER_CPUS)
    )
    yield from dataset.iter_rows()


class RemoteDriver:
    """Runs the pipeline inside the cluster for a driver connected through Ray Client (ray://), which cannot run
    Ray Data itself; the client collects the results by polling `take`."""

    def __init__(self, jobs: Sequence[Job], settings: stages.Settings, workers: int):
        self.lock = threading.Lock()
        self.results: list[dict] = []
        self.finished, self.error = False, ""
        threading.Thread(target=self._run, args=(jobs, settings, workers), daemon=True).start()

    def _run(self, jobs, settings, workers) -> None:
        try:
            for row in _pipeline(jobs, settings, workers):
                with self.lock:
                    self.results.append(dict(row))
        except BaseException as exc:  # reported to the client, which raises it there
            self.error = f"{exc.__class__.__name__}: {str(exc)[:2000]}"
        finally:
            self.finished = True

    def take(self) -> tuple[list[dict], bool, str]:
        with self.lock:
            taken, self.results = self.results, []
            return taken, self.finished, self.error


def _run_through_client(jobs: Sequence[Job], settings: stages.Settings, workers: int) -> Iterator[dict]:
    import ray
    driver = ray.remote(num_cpus=0, max_concurrency=2)(RemoteDriver).remote(jobs, settings, workers)
    try:
        while True:
            rows, finished, error = ray.get(driver.take.remote())
            yield from rows
            if error:
                raise ClusterError(f"the batch failed on the cluster: {error}")
            if finished:
                return
            time.sleep(CLIENT_POLL_S)
    finally:
        ray.kill(driver)
