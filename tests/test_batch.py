"""`python -m shelf batch` in this process (--engine local), and what the Ray engine shares with it: listing
folders, globs and manifests, context from folder layouts, the batch's row and error list, bounded pools."""
import csv
import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from shelf.ingest.sources import Job, list_jobs, parse_layout, parse_manifest
from shelf.serving.cli import main as cli
from shelf.storage import batches, store
from tests.synthetic import shelf_jpeg


def write_photos(folder, count, first_seed=0, size=(800, 600)):
    """`count` generated shelf photos (distinct bytes) under `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(first_seed, first_seed + count):
        path = folder / f"IMG_{seed:04d}.jpg"
        path.write_bytes(shelf_jpeg(seed, *size)[0])
        paths.append(path)
    return paths


def read_errors(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_manifest_bad_rows_are_reported_by_line_and_the_rest_kept(tmp_path):
    text = ("path,store,aisle,date\n"
            "a.jpg,S1,A1,2026-11-02\n"
            "b.jpg,,,\n"                      # empty cells take the defaults
            ",S1,A1,2026-11-02\n"             # line 4: no path
            "c.jpg,S1,A1,2026-13-40\n"        # line 5: no such date
            "d.jpg,S1\n"                      # line 6: too few cells
            "\n"
            f"{tmp_path / 'e.jpg'},S2,A9,\n")
    jobs, problems = parse_manifest(text.encode(), "m.csv", str(tmp_path), Job("", "S0", "A0", "2026-01-01"))
    assert [(p.line, p.problem.split(" ")[0]) for p in problems] == [(4, "the"), (5, "'2026-13-40'"), (6, "2")]
    assert [j.source for j in jobs] == [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "e.jpg")]
    assert (jobs[0].store, jobs[0].aisle, jobs[0].captured_on, jobs[0].line) == ("S1", "A1", "2026-11-02", 2)
    assert (jobs[1].store, jobs[1].aisle, jobs[1].captured_on) == ("S0", "A0", "2026-01-01")
    assert (jobs[2].store, jobs[2].aisle, jobs[2].captured_on, jobs[2].line) == ("S2", "A9", "2026-01-01", 8)


@pytest.mark.parametrize("text, problem", [
    (b"", "empty"), (b"file,store\nx.jpg,S\n", "header"), (b"path,path\n", "header"), (b"\xff\xfe\x00", "UTF-8")])
def test_unusable_manifests_say_why(text, problem):
    jobs, problems = parse_manifest(text, "m.csv", ".")
    assert jobs == [] and len(problems) == 1 and problem in problems[0].problem


def test_layout_fills_the_fields_its_folder_levels_match(tmp_path):
    for relative in ("S014/A03/2026-11-02/x.jpg", "S014/A03/not-a-date/y.jpg", "S015/z.jpg", "top.jpg",
                     "S016/A01/2026-02-30/w.png", "S016/A01/2026-11-03/notes.txt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    jobs, problems = list_jobs([str(tmp_path)], Job("", "default", "", ""), parse_layout("{store}/{aisle}/{date}/"))
    found = {j.source.removeprefix(str(tmp_path) + "/"): (j.store, j.aisle, j.captured_on) for j in jobs}
    assert problems == [] and found == {
        "S014/A03/2026-11-02/x.jpg": ("S014", "A03", "2026-11-02"),
        "S014/A03/not-a-date/y.jpg": ("S014", "A03", ""),
        "S015/z.jpg": ("S015", "", ""),
        "top.jpg": ("default", "", ""),
        "S016/A01/2026-02-30/w.png": ("S016", "A01", ""),  # no such day: that level does not match
    }
    layout = parse_layout("store-{store}/{date}")
    assert layout.context(("store-7", "2026-01-05"), Job("x")).store == "7"
    assert layout.context(("shop-7", "2026-01-05"), Job("x")) == Job("x", captured_on="2026-01-05")


@pytest.mark.parametrize("text", ["{shop}/", "plain/folders", "{store}/{store}/", "{store/"])
def test_bad_layouts_are_refused(text):
    with pytest.raises(ValueError):
        parse_layout(text)


def test_sources_globs_files_and_missing_are_listed_once(tmp_path):
    paths = write_photos(tmp_path / "day1", 2) + write_photos(tmp_path / "day2", 1, first_seed=5)
    jobs, problems = list_jobs([str(tmp_path / "day*" / "*.jpg"), str(paths[0]), str(tmp_path / "missing"),
                                str(tmp_path / "day*" / "*.png")])
    assert [j.source for j in jobs] == [str(p) for p in paths]
    assert [(p.source.rsplit("/", 1)[-1], p.problem) for p in problems] == [
        ("missing", "no such file or folder"), ("*.png", "the pattern matches no image files")]


def test_local_batch_stores_each_photo_once_with_context_errors_and_a_batch_row(tmp_path, capsys):
    root = tmp_path / "archive"
    write_photos(root / "S1" / "A1" / "2026-11-02", 3)
    write_photos(root / "S2" / "A7" / "2026-11-03", 2, first_seed=10)
    (root / "S2" / "A7" / "2026-11-03" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    db = f"sqlite:///{tmp_path / 'batch.db'}"
    args = ["batch", str(root), "--layout", "{store}/{aisle}/{date}/", "--regions", "grid:2x3", "--db", db]
    assert cli(args) == 0
    out = capsys.readouterr()
    assert "6 photo(s): 5 stored, 0 already stored, 1 error(s)" in out.out and "broken.jpg" in out.err
    engine = store.open_store(db)
    frame = store.predictions_frame(engine, top1_only=True)
    per_photo = frame.groupby("photo").agg(store=("store", "first"), aisle=("aisle", "first"),
                                            date=("captured_on", "first"), regions=("region_id", "nunique"))
    assert per_photo["regions"].tolist() == [6] * 5
    assert dict(zip(per_photo.index, per_photo["store"])) == {
        "IMG_0000.jpg": "S1", "IMG_0001.jpg": "S1", "IMG_0002.jpg": "S1", "IMG_0010.jpg": "S2", "IMG_0011.jpg": "S2"}
    assert set(per_photo["date"]) == {dt.date(2026, 11, 2), dt.date(2026, 11, 3)}

    recent = batches.recent_batches(engine)
    row = recent.iloc[0]
    assert (row.engine, row.state, row.total, row.done, row.stored, row.errors) == ("local", "finished", 6, 6, 5, 1)
    assert "in-process" in row.place and row.progress == 1.0
    errors = read_errors(row.errors_file)
    assert len(errors) == 1 and errors[0]["source"].endswith("broken.jpg")
    assert errors[0]["problem"].startswith("not an image Shelf can read")

    assert cli(args) == 0  # again: nothing new, nothing classified twice
    assert "6 photo(s): 0 stored, 5 already stored, 1 error(s)" in capsys.readouterr().out
    assert store.counts(engine)["photos"] == 5 and store.counts(engine)["regions"] == 30
    assert batches.recent_batches(engine)["id"].tolist() == [2, 1]


def test_local_batch_from_a_manifest_with_bad_rows(tmp_path, capsys):
    paths = write_photos(tmp_path / "photos", 3)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,store,aisle,date\n"
                        f"photos/{paths[0].name},S1,A1,2026-11-02\n"
                        "photos/missing.jpg,S1,A1,2026-11-02\n"
                        f"photos/{paths[1].name},S1,A1,yesterday\n"
                        f"{paths[2]},=HYPERLINK(1),A2,\n")
    db = f"sqlite:///{tmp_path / 'batch.db'}"
    assert cli(["batch", str(manifest), "--db", db]) == 0
    out = capsys.readouterr()
    assert "4 photo(s): 2 stored, 0 already stored, 2 error(s)" in out.out
    assert "manifest.csv, line 4: 'yesterday' is not a date" in out.err
    assert "missing.jpg (manifest line 3): cannot read" in out.err
    engine = store.open_store(db)
    errors = read_errors(batches.recent_batches(engine).iloc[0].errors_file)
    assert sorted((e["line"], e["source"].rsplit("/", 1)[-1]) for e in errors) == [
        ("3", "missing.jpg"), ("4", "manifest.csv")]
    stored = store.predictions_frame(engine, top1_only=True).set_index("photo")
    assert stored.loc[paths[0].name, "store"] == "S1" and stored.loc[paths[2].name, "store"] == "=HYPERLINK(1)"
    assert stored.loc[paths[0].name, "captured_on"] == dt.date(2026, 11, 2)


def test_a_batch_where_nothing_can_be_read_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert cli(["batch", str(bad), str(tmp_path / "absent"), "--db", f"sqlite:///{tmp_path / 'b.db'}"]) == 1
    assert "2 error(s)" in capsys.readouterr().out


def test_recent_batches_shows_progress_and_stalled_runs(engine):
    first = batches.start_batch(engine, "archive/", "ray", "me@here", 200, None)
    batches.update_batch(engine, first, done=50, stored=48, errors=2)
    second = batches.start_batch(engine, "other/", "local", "me@here", 0, None)
    batches.update_batch(engine, second, status=batches.FINISHED)
    now = store.utc_now()
    frame = batches.recent_batches(engine, now=now).set_index("id")
    assert frame.loc[first, "state"] == "running" and frame.loc[first, "progress"] == 0.25
    assert frame.loc[second, "state"] == "finished" and frame.loc[second, "progress"] == 1.0
    assert batches.any_running(frame.reset_index())
    later = batches.recent_batches(engine, now=now + dt.timedelta(minutes=10)).set_index("id")
    assert later.loc[first, "state"] == "stalled" and not batches.any_running(later.reset_index())


@pytest.mark.parametrize("raised, state", [(KeyboardInterrupt, "interrupted"), (RuntimeError, "failed")])
def test_ctrl_c_in_the_work_on_a_result_marks_the_batch_interrupted(engine, tmp_path, raised, state):
    """Ctrl-C lands wherever the main thread is, often in the CLI's own work on a stored photo (tasks from it); that
    must read as interrupted (resumable), and only a real error as failed. CI once saw "failed" after a Ctrl-C."""
    from shelf.recognition import batch

    results = [{"status": "stored", "regions": 6, "store_seconds": 0.01, "classified_on": "", "source": f"{n}.jpg",
                "line": 0, "error": ""} for n in range(4)]
    batch_id = batches.start_batch(engine, "photos/", "local", "me@here", len(results), None)
    tally = batch.Tally(total=len(results))

    def each(result):
        if result["source"] == "1.jpg":
            raise raised

    with pytest.raises(raised):
        batch.run(results, tally, engine, batch_id, batch.ErrorList(tmp_path / "errors.csv"), each=each)
    row = batches.recent_batches(engine).set_index("id").loc[batch_id]
    assert row["state"] == state and row["done"] == 2 and row["stored"] == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_worker_pools_are_bounded(db_url):
    """--db-pool N: a worker process never holds more than N connections to PostgreSQL; the next one waits."""
    from shelf.recognition.stages import worker_store
    worker_store.cache_clear()  # a fresh engine for the emptied database
    engine = worker_store(db_url, 1)
    held = engine.connect()
    got = threading.Event()

    def second():
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            got.set()
    waiter = threading.Thread(target=second)
    waiter.start()
    assert not got.wait(1.0), "a second connection was opened beyond the pool's bound"
    held.close()
    assert got.wait(30)
    waiter.join()


def test_home_lists_running_and_recent_batches_and_refreshes_while_one_runs(engine):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, TIMEOUT
    st.cache_resource.clear()
    done = batches.start_batch(engine, "archive/2026-10", "local", "me@box · in-process", 40, None)
    batches.update_batch(engine, done, status=batches.FINISHED, done=40, stored=38, errors=2)
    running = batches.start_batch(engine, "s3://photos/night", "ray", "me@box · Ray local: 1 node(s)", 200, None)
    batches.update_batch(engine, running, done=50, stored=50)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    bar = [e for e in at.get("progress")]
    assert len(bar) == 1 and bar[0].value == 25
    assert "Batch 2 (ray) — 50 of 200 photos" in bar[0].proto.text.replace("\\", "")  # Markdown-escaped
    table = at.dataframe[-1].value
    assert table["Batch"].tolist() == [running, done] and table["State"].tolist() == ["running", "finished"]
    assert table["Photos"].tolist() == ["50 / 200", "40 / 40"] and table["Errors"].tolist() == [0, 2]

    batches.update_batch(engine, running, status=batches.FINISHED, done=200, stored=198, errors=2)
    at.run()
    assert not at.exception and len(at.get("progress")) == 0
    assert at.dataframe[-1].value["State"].tolist() == ["finished", "finished"]
    st.cache_resource.clear()


@pytest.fixture
def s3_server(monkeypatch):
    """A local S3-compatible server (moto in server mode) on loopback, with throwaway credentials."""
    from moto.server import ThreadedMotoServer

    from tests.raycluster import free_ports
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)  # never look for credentials anywhere else
    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


def test_batch_reads_an_s3_prefix_and_an_s3_manifest_through_pyarrow(s3_server, tmp_path, capsys):
    import boto3
    s3 = boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1")
    s3.create_bucket(Bucket="chain-photos")
    photos = write_photos(tmp_path / "local", 3)
    for folder, photo in zip(["S1/A1/2026-11-02", "S1/A2/2026-11-02", "S2/A1/2026-11-03"], photos):
        s3.put_object(Bucket="chain-photos", Key=f"night/{folder}/{photo.name}", Body=photo.read_bytes())
    s3.put_object(Bucket="chain-photos", Key="night/S2/A1/2026-11-03/empty.jpg", Body=b"")
    options = f"?endpoint_override={s3_server}&scheme=http&region=us-east-1"  # credentials: the environment
    db = f"sqlite:///{tmp_path / 'batch.db'}"
    assert cli(["batch", f"s3://chain-photos/night{options}", "--layout", "{store}/{aisle}/{date}", "--db", db]) == 0
    out = capsys.readouterr()
    assert "4 photo(s): 3 stored, 0 already stored, 1 error(s)" in out.out
    assert "empty.jpg" in out.err and "the file is empty" in out.err
    frame = store.predictions_frame(store.open_store(db), top1_only=True)
    assert sorted(zip(frame["store"], frame["aisle"], frame["captured_on"].astype(str))) == [
        ("S1", "A1", "2026-11-02"), ("S1", "A2", "2026-11-02"), ("S2", "A1", "2026-11-03")]

    s3.put_object(Bucket="chain-photos", Key="lists/again.csv",
                  Body=f"path,store\n../night/S1/A1/2026-11-02/{photos[0].name},S9\nnope.jpg,S9\n".encode())
    assert cli(["batch", f"s3://chain-photos/lists/again.csv{options}", "--db", db]) == 0
    out = capsys.readouterr()
    assert "2 photo(s): 0 stored, 1 already stored, 1 error(s)" in out.out and "(manifest line 3)" in out.err


def test_ctrl_c_interrupts_a_batch_and_running_it_again_resumes(tmp_path, weights_file):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    write_photos(tmp_path / "photos", 16, size=(640, 480))
    db = f"sqlite:///{tmp_path / 'batch.db'}"
    env = {**os.environ, "SHELF_DATA_DIR": str(tmp_path / "data"), "SHELF_WEIGHTS": str(weights_file),
           "SHELF_ALLOW_UNVERIFIED_WEIGHTS": "1", "SHELF_OFFLINE": "1", "SHELF_BACKEND": "eager"}
    command = [sys.executable, "-m", "shelf", "batch", str(tmp_path / "photos"), "--regions", "grid:2x3", "--db", db]
    # Ctrl-C as a terminal sends it: SIGINT not ignored in the batch, even when this test runs where it is (a job
    # started in the background by a non-interactive shell inherits SIG_IGN, and Python then never raises on it).
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    engine = store.open_store(db)
    deadline = time.monotonic() + 240
    while store.counts(engine)["photos"] < 3:
        assert process.poll() is None and time.monotonic() < deadline, "the batch ended before Ctrl-C"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Run the same command again to resume" in err
    first = batches.recent_batches(engine).iloc[0]
    stored_before = store.counts(engine)["photos"]
    assert first.state == "interrupted" and 3 <= first.stored <= stored_before < 16

    again = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"16 photo(s): {16 - stored_before} stored, {stored_before} already stored, 0 error(s)" in again.stdout
    assert store.counts(engine)["photos"] == 16 and store.counts(engine)["regions"] == 16 * 6


def test_a_batch_the_model_cannot_classify_fails_its_photos_not_the_run(loaded, tmp_path):
    import dataclasses

    from shelf.ingest.images import decode_image
    from shelf.recognition import stages

    class Broken:
        kind, name = "eager", "broken"

        @staticmethod
        def prepare(inputs):
            return inputs

        def run(self, batch):
            raise RuntimeError("out of memory")

    settings = stages.Settings("", "grid:1x2")
    (photo,) = write_photos(tmp_path, 1)
    good = stages.cut(stages.new_row({"source": str(photo)}), decode_image(photo.read_bytes(), photo.name),
                      photo.read_bytes(), settings)
    unreadable = stages.failed(stages.new_row({"source": "x.jpg"}), "the file is empty (0 bytes)")
    working = stages.rows(stages.Classifier(settings, loaded)(stages.batch([good, unreadable])))
    assert [len(r["indices"]) for r in working] == [2, 0] and working[0]["status"] == stages.PENDING
    broken = stages.rows(stages.Classifier(settings, dataclasses.replace(loaded, backend=Broken()))(
        stages.batch([good, unreadable])))
    assert [r["status"] for r in broken] == [stages.FAILED, stages.FAILED]
    assert broken[0]["error"] == "could not be classified (RuntimeError: out of memory)"
    assert broken[1]["error"] == "the file is empty (0 bytes)" and len(broken[0]["indices"]) == 0
