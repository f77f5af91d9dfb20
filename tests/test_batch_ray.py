"""`python -m shelf batch --engine ray` into PostgreSQL: 40 generated photos stored exactly once, again none, a
manifest with bad rows, an actor killed mid-batch, and a two-node cluster started with `ray start`.

One local Ray instance (2 CPUs) serves the module; the two-node cluster is its own, stopped by its temp dir."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from shelf.serving.cli import main as cli
from shelf.storage import batches, store
from tests.conftest import POSTGRES_URL, require_service
from tests.raycluster import SUBREAPER, LocalCluster
from tests.test_batch import write_photos

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = 40
CLASSIFIER = "MapWorker(MapBatches(ClassifyAndStore))"


@pytest.fixture(scope="module")
def ray_instance():
    import ray
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing leaves this machine
    ray.init(num_cpus=2, include_dashboard=True, dashboard_port=free_port(), logging_level="warning")
    yield ray
    ray.shutdown()


def free_port() -> int:
    from tests.raycluster import free_ports
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """40 generated 800×600 shelf photos and one file that is no photo."""
    folder = tmp_path_factory.mktemp("archive")
    write_photos(folder / "store-1", PHOTOS // 2)
    write_photos(folder / "store-2", PHOTOS // 2, first_seed=PHOTOS // 2)
    (folder / "store-2" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    return folder


@pytest.fixture(params=["postgresql"])
def db_url(request):
    """PostgreSQL only (the store many workers write to), emptied first."""
    require_service(bool(POSTGRES_URL), "PostgreSQL (SHELF_TEST_POSTGRES_URL)")
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        store.metadata.drop_all(conn)
    engine.dispose()
    return POSTGRES_URL


def stored_exactly_once(url: str, photos: int, regions_each: int = 6, top_k: int = 3) -> None:
    engine = store.open_store(url)
    with engine.connect() as conn:
        per_photo = conn.execute(sa.select(store.photos.c.sha256, sa.func.count(store.regions.c.id))
                                 .select_from(store.photos.outerjoin(store.regions))
                                 .group_by(store.photos.c.sha256)).all()
    counts = store.counts(engine)
    engine.dispose()
    assert len(per_photo) == photos  # one row per content hash (the column is unique, so this counts photos)
    assert {n for _, n in per_photo} == {regions_each}, "a photo is half-written"
    assert counts["regions"] == photos * regions_each and counts["predictions"] == photos * regions_each * top_k


def test_ray_batch_stores_40_once_and_a_rerun_stores_none(ray_instance, archive, db_url, capsys):
    args = ["batch", str(archive), "--engine", "ray", "--regions", "grid:2x3", "--db", db_url]
    assert cli(args) == 0
    out = capsys.readouterr()
    assert f"{PHOTOS + 1} photo(s): {PHOTOS} stored, 0 already stored, 1 error(s)" in out.out, out.err
    assert "truncated.jpg" in out.err
    stored_exactly_once(db_url, PHOTOS)

    assert cli(args) == 0
    assert f"0 stored, {PHOTOS} already stored, 1 error(s)" in capsys.readouterr().out
    stored_exactly_once(db_url, PHOTOS)
    engine = store.open_store(db_url)
    recent = batches.recent_batches(engine)
    assert recent["engine"].tolist() == ["ray", "ray"] and recent["state"].tolist() == ["finished", "finished"]
    assert recent["stored"].tolist() == [0, PHOTOS] and recent["errors"].tolist() == [1, 1]
    assert "1 node(s), 2 CPU(s)" in recent["place"].iloc[0]
    engine.dispose()


def test_ray_batch_from_a_manifest_with_bad_rows(ray_instance, archive, db_url, tmp_path, capsys):
    photos = sorted((archive / "store-1").glob("*.jpg"))[:6]
    manifest = tmp_path / "night.csv"
    manifest.write_text("path,store,aisle,date\n"
                        + "".join(f"{p},S1,A{i},2026-11-02\n" for i, p in enumerate(photos[:4]))
                        + f"{photos[4]},S1,A9,02/11/2026\n"  # line 6: not an ISO date
                        + "only-a-path\n"                   # line 7: too few cells
                        + f"{archive / 'gone.jpg'},S1,A1,\n"  # line 8: no such file
                        + f"{photos[5]},S2,,\n")
    assert cli(["batch", str(manifest), "--engine", "ray", "--workers", "1", "--db", db_url]) == 0
    out = capsys.readouterr()
    assert "8 photo(s): 5 stored, 0 already stored, 3 error(s)" in out.out
    assert "night.csv, line 6" in out.err and "night.csv, line 7" in out.err and "(manifest line 8)" in out.err
    frame = store.predictions_frame(store.open_store(db_url), top1_only=True)
    assert sorted(zip(frame["store"], frame["aisle"])) == [("S1", "A0"), ("S1", "A1"), ("S1", "A2"), ("S1", "A3"),
                                                          ("S2", "")]


def test_a_classifier_killed_mid_batch_is_retried_and_every_photo_stored_once(ray_instance, archive, db_url):
    from ray.util.state import get_actor, list_actors
    outcome = {}
    batch = threading.Thread(target=lambda: outcome.setdefault("exit", cli(
        ["batch", str(archive), "--engine", "ray", "--regions", "grid:2x3", "--db", db_url])))
    batch.start()
    engine = store.open_store(db_url)
    deadline = time.monotonic() + 240
    while store.counts(engine)["photos"] < 5:  # wait until the batch is well under way
        assert batch.is_alive() and time.monotonic() < deadline, "the batch ended before it could be interrupted"
        time.sleep(0.05)
    alive = list_actors(filters=[("class_name", "=", CLASSIFIER), ("state", "=", "ALIVE")])
    victim = alive[0]
    os.kill(victim.pid, signal.SIGKILL)
    stored_at_kill = store.counts(engine)["photos"]
    batch.join(timeout=300)
    assert not batch.is_alive() and outcome["exit"] == 0
    assert stored_at_kill < PHOTOS, "the kill came too late to test anything"
    assert get_actor(victim.actor_id).num_restarts >= 1  # Ray restarted it and ran its calls again
    stored_exactly_once(db_url, PHOTOS)
    latest = batches.recent_batches(engine).iloc[0]
    assert (latest.done, latest.errors, latest.state) == (PHOTOS + 1, 1, "finished")
    engine.dispose()


@pytest.fixture(scope="module")
def two_nodes():
    cluster = LocalCluster(nodes=2, cpus_per_node=1).start()
    yield cluster
    cluster.stop()


def test_two_node_cluster_shares_the_batch_and_refuses_sqlite(two_nodes, archive, db_url, tmp_path, weights_file):
    env = {**os.environ, **two_nodes.environment, "SHELF_DATA_DIR": str(tmp_path / "data"),
           "SHELF_WEIGHTS": str(weights_file), "SHELF_ALLOW_UNVERIFIED_WEIGHTS": "1", "SHELF_OFFLINE": "1"}

    def batch(*extra):
        return subprocess.run([sys.executable, "-m", "shelf", "batch", str(archive), "--engine", "ray",
                               "--regions", "grid:2x3", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)

    refused = batch("--address", two_nodes.address, "--db", f"sqlite:///{tmp_path / 'shared.db'}")
    assert refused.returncode == 2 and "2 nodes, and an SQLite file cannot be shared" in refused.stderr

    done = batch("--address", two_nodes.address, "--workers", "2", "--db", db_url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"(ray on 2 node(s)): {PHOTOS + 1} photo(s): {PHOTOS} stored" in done.stdout
    stored_exactly_once(db_url, PHOTOS)

    again = batch("--address", f"ray://127.0.0.1:{two_nodes.client_port}", "--db", db_url)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"0 stored, {PHOTOS} already stored" in again.stdout
    stored_exactly_once(db_url, PHOTOS)


ZOMBIE = ("Initialization failure from server:\nTraceback (most recent call last):\n  File \"proxier.py\", line 396, "
          "in start_specific_server\npsutil.ZombieProcess: PID still exists but it's a zombie (pid=4242)")


class FlakyJoin:
    """A Ray Client connect that fails `failures` times as the proxier does when the client's server dies at birth."""

    def __init__(self, failures: int, message: str = ZOMBIE):
        self.failures, self.message, self.calls = failures, message, 0

    def __call__(self, **_options):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionAbortedError(self.message)
        return "connected"


def test_ray_client_is_tried_again_while_its_server_fails_to_start(caplog):
    from shelf.recognition import engines
    join, pauses = FlakyJoin(failures=2), []
    assert engines.with_client_retries(join, "ray://head:10001", sleep=pauses.append) == "connected"
    assert join.calls == 3 and pauses == [1.0, 2.0]
    retries = [r.getMessage() for r in caplog.records if r.name == engines.log.name]
    assert retries == [f"Ray Client at ray://head:10001 could not start a server for this driver "
                       f"(psutil.ZombieProcess); trying again in {pause:g} s (try {n} of 4)"
                       for pause, n in ((1, 2), (2, 3))]


def test_ray_client_gives_up_after_its_tries_and_at_once_on_other_errors():
    from shelf.recognition import engines
    for join, calls in ((FlakyJoin(failures=99), engines.CLIENT_TRIES),
                        (FlakyJoin(failures=99, message="Initialization failure from server: bad runtime_env"), 1)):
        with pytest.raises(ConnectionAbortedError, match=join.message[:30]):
            engines.with_client_retries(join, "ray://head:10001", sleep=lambda _: None)
        assert join.calls == calls


def test_the_cli_notes_each_ray_client_retry_on_stderr(monkeypatch, tmp_path, capsys):
    """Through `connect` as the CLI calls it: a cluster of two nodes, reached on the third try, then refused for
    its SQLite store (nothing runs)."""
    import ray

    from shelf.recognition import engines
    join = FlakyJoin(failures=2, message="Initialization failure from server: RuntimeError: Starting Ray client "
                                         "server failed. See ray_client_server_23000.err for detailed logs.")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", join)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(engines, "CLIENT_BACKOFF_S", 0.0)
    (tmp_path / "photos").mkdir()
    args = ["batch", str(tmp_path / "photos"), "--engine", "ray", "--address", "ray://127.0.0.1:1",
            "--db", f"sqlite:///{tmp_path / 'shelf.db'}"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert join.calls == 3
    assert err.count("note: Ray Client at ray://127.0.0.1:1 could not start a server for this driver "
                     "(Starting Ray client server failed); trying again") == 2, err
    assert "2 nodes, and an SQLite file cannot be shared" in err


def test_the_cluster_launcher_adopts_and_reaps_what_its_command_leaves_behind():
    """`ray start` exits and leaves its daemons behind: the launcher, not PID 1, must become their parent and reap
    them when they exit (this sandbox's PID 1 reaps late)."""
    command = ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"]
    launcher = subprocess.Popen([sys.executable, str(SUBREAPER), *command], stdout=subprocess.PIPE, text=True)
    with launcher.stdout:
        report = json.loads(launcher.stdout.readline())
    orphan = int(report["stdout"])
    try:
        assert report["returncode"] == 0
        parent = int(Path(f"/proc/{orphan}/status").read_text().split("PPid:")[1].split()[0])
        assert parent == launcher.pid, "the launcher did not adopt the orphan"
    finally:
        os.kill(orphan, signal.SIGTERM)
    assert launcher.wait(timeout=30) == 0  # it leaves once its last child is reaped
    assert not Path(f"/proc/{orphan}").exists(), "the orphan was left a zombie"
