"""kill -9 in the middle of a batch: the store opens cleanly, finished photos are all there, the interrupted one
is whole or absent, and running the batch again completes it without duplicates."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from shelf.storage import store
from tests.conftest import image_bytes
from tests.synthetic import make_product

ROOT = Path(__file__).resolve().parents[1]


def test_kill_9_mid_batch_loses_nothing_and_rerun_completes(tmp_path, weights_file):
    photos = []
    for i in range(40):
        path = tmp_path / "batch" / f"IMG_{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(image_bytes(make_product(i, 7, size=320), "PNG"))
        photos.append(str(path))
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    env = {**os.environ, "SHELF_DATA_DIR": str(tmp_path / "data"), "SHELF_WEIGHTS": str(weights_file),
           "SHELF_ALLOW_UNVERIFIED_WEIGHTS": "1", "SHELF_OFFLINE": "1", "SHELF_BACKEND": "eager"}
    command = [sys.executable, "-m", "shelf", "recognize", *photos, "--regions", "grid:3x3", "--db", db]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = store.open_store(db)
    deadline = time.monotonic() + 120
    while store.counts(engine)["photos"] < 5:  # wait on the condition: a few photos stored, more to come
        assert process.poll() is None, "the batch ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    engine.dispose()

    engine = store.open_store(db)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        per_photo = conn.execute(sa.select(store.photos.c.id, sa.func.count(store.regions.c.id))
                                 .select_from(store.photos.outerjoin(store.regions))
                                 .group_by(store.photos.c.id)).all()
        predictions_per_region = set(conn.execute(
            sa.select(sa.func.count()).select_from(store.predictions).group_by(store.predictions.c.region_id)
        ).scalars())
    interrupted_at = len(per_photo)
    assert 5 <= interrupted_at < 40
    assert {regions for _, regions in per_photo} == {9}  # never half a photo
    assert predictions_per_region == {3}

    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("(already stored)") == interrupted_at
    counts = store.counts(engine)
    assert counts["photos"] == 40 and counts["regions"] == 40 * 9 and counts["predictions"] == 40 * 9 * 3
