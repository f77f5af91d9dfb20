"""`python -m shelf backup` / `restore`: the database (SQLite's online backup API, or pg_dump) and the data dir's files
in one tar file, put back into an empty Shelf elsewhere, with everything the reports say unchanged; on SQLite and
PostgreSQL. Crafted and mismatched backups are refused with a message naming the file and the problem."""
import datetime as dt
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from shelf import config
from shelf.analytics.report import tally_table
from shelf.recognition.pipeline import Upload, recognize
from shelf.serving.cli import main
from shelf.storage import backup, store
from tests.conftest import image_bytes, solid
from tests.test_migrations import write_v1

CONTEXT = store.Context("Store 1", "Aisle 7", dt.date(2026, 11, 2))


def data_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("shelf.db")}


def fill(loaded, url: str, photo_bytes) -> sa.Engine:
    engine = store.open_store(url)
    uploads = [Upload(name, data) for name, data in list(photo_bytes.items())[:3]]
    assert all(r.ok for r in recognize(loaded, engine, uploads, CONTEXT, region_mode="grid:2x2"))
    return engine


def test_a_backup_restored_into_an_empty_shelf_reports_the_same(loaded, db_url, photo_bytes, tmp_path, monkeypatch,
                                                                capsys):
    engine = fill(loaded, db_url, photo_bytes)
    (config.data_dir() / "weights").mkdir(parents=True, exist_ok=True)
    (config.data_dir() / "weights" / "imported-resnet18.pth").write_bytes(b"weights bytes")
    before_tallies, before_counts = tally_table(engine, ["label", "store"]), store.counts(engine)
    before_files = data_files(config.data_dir())
    engine.dispose()

    assert main(["backup", str(tmp_path / "shelf.tar.gz"), "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert f"schema version {store.SCHEMA_VERSION}" in out and f"files     {len(before_files)} " in out

    # Elsewhere: an empty data dir and an empty database (PostgreSQL: the same server, emptied).
    monkeypatch.setenv("SHELF_DATA_DIR", str(tmp_path / "elsewhere"))
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'elsewhere' / 'shelf.db'}"
    else:
        with sa.create_engine(db_url).begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        store.open_store(db_url).dispose()  # a fresh Shelf started first: its empty tables are replaced
    assert main(["restore", str(tmp_path / "shelf.tar.gz"), "--db", db_url]) == 0
    assert "restored" in capsys.readouterr().out
    restored = store.open_store(db_url)
    assert store.counts(restored) == before_counts
    assert tally_table(restored, ["label", "store"]).equals(before_tallies)
    assert data_files(config.data_dir()) == before_files


def test_restore_replaces_a_store_with_photos_only_when_asked(loaded, db_url, photo_bytes, tmp_path, capsys):
    engine = fill(loaded, db_url, photo_bytes)
    target = backup.create_backup(tmp_path / "b.tar", db_url).path
    recognize(loaded, engine, [Upload("extra.png", image_bytes(solid((1, 2, 3)), "PNG"))], CONTEXT)
    assert store.counts(engine)["photos"] == 4
    assert main(["restore", str(target), "--db", db_url]) == 1
    assert "holds 4 photo(s)" in capsys.readouterr().err and store.counts(engine)["photos"] == 4
    assert main(["restore", str(target), "--db", db_url, "--replace"]) == 0
    assert store.counts(engine)["photos"] == 3


def test_a_backup_of_an_older_shelf_is_migrated_when_restored(db_url, tmp_path):
    write_v1(db_url)
    summary = backup.create_backup(tmp_path, db_url)  # taken without migrating: still version 1 inside
    assert summary.schema_version == 1 and summary.path.name.startswith("shelf-backup-")
    with sa.create_engine(db_url).connect() as conn:
        assert not sa.inspect(conn).has_table("embeddings")  # the backup did not upgrade the store it copied
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}" if db_url.startswith("sqlite") else db_url
    restored, version = backup.restore_backup(summary.path, fresh, replace=True)
    assert (restored.schema_version, version) == (1, store.SCHEMA_VERSION)
    engine = store.open_store(fresh)
    assert store.counts(engine)["photos"] == 3 and len(tally_table(engine, ["label"]))


def test_a_sqlite_backup_taken_while_photos_are_stored_is_consistent(loaded, tmp_path):
    """The database is copied first, then the files: every photo row in the backup has its file."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    engine = store.open_store(url)
    stop = threading.Event()

    def keep_storing():
        n = 0
        while not stop.is_set():
            n += 1
            recognize(loaded, engine, [Upload(f"p{n}.png", image_bytes(solid((n % 256, n // 256, 9)), "PNG"))],
                      CONTEXT)

    writer = threading.Thread(target=keep_storing)
    writer.start()
    try:
        backups = [backup.create_backup(tmp_path / f"b{i}.tar", url) for i in range(3)]
    finally:
        stop.set()
        writer.join()
    for summary in backups:
        with tarfile.open(summary.path) as tar:
            names = set(tar.getnames())
            tar.extract("database.sqlite", tmp_path / summary.path.stem, filter="data")
        copy = sa.create_engine(f"sqlite:///{tmp_path / summary.path.stem / 'database.sqlite'}")
        with copy.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            files = conn.execute(sa.select(store.photos.c.file)).scalars().all()
        assert {f"files/{f}" for f in files} <= names


def crafted(tmp_path: Path, members: dict[str, bytes], manifest: dict | None = None) -> Path:
    path = tmp_path / "crafted.tar"
    manifest = manifest or {"format": 1, "database": "sqlite", "schema_version": 3}
    with tarfile.open(path, "w") as tar:
        for name, data in {"shelf-backup.json": json.dumps(manifest).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("members, manifest, problem", [
    ({"database.sqlite": b"", "files/../../escape.txt": b"x"}, None, "refused member 'files/../../escape.txt'"),
    ({"database.sqlite": b"", "/etc/cron.d/x": b"x"}, None, "refused member '/etc/cron.d/x'"),
    ({"database.sqlite": b"", "notes.txt": b"x"}, None, "refused member 'notes.txt'"),
    ({}, None, "the database (database.sqlite) is missing"),
    ({"database.pgdump": b""}, {"format": 1, "database": "postgresql", "schema_version": 3},
     "holds a postgresql database and the target is sqlite"),
    ({"database.sqlite": b""}, {"format": 1, "database": "sqlite", "schema_version": 99}, "made by a newer Shelf"),
    ({"database.sqlite": b""}, {"format": 7}, "is not one this Shelf reads"),
])
def test_a_crafted_or_mismatched_backup_is_refused_and_nothing_is_written(tmp_path, capsys, members, manifest,
                                                                          problem):
    path = crafted(tmp_path, members, manifest)
    assert main(["restore", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and problem in err
    assert not (tmp_path.parent / "escape.txt").exists() and not config.data_dir().exists()


def test_a_truncated_backup_is_refused_and_a_file_deleted_meanwhile_is_left_out(tmp_path, capsys, monkeypatch):
    store.open_store().dispose()
    photo = config.data_dir() / "photos" / "ab" / "ab.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"png")
    listed = backup._data_files
    monkeypatch.setattr(backup, "_data_files", lambda root, skip: [*listed(root, skip), root / "photos" / "gone.png"])
    summary = backup.create_backup(tmp_path / "b.tar")
    assert summary.files == 1 and summary.n_bytes == 3
    data = summary.path.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:len(data) // 2])
    assert main(["restore", str(tmp_path / "cut.tar"), "--replace"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'cut.tar'}: cannot be read whole (")


def test_a_file_that_is_not_a_backup_is_named_in_the_message(tmp_path, capsys):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(image_bytes(solid(), "JPEG"))
    assert main(["restore", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {path}: not a Shelf backup")


def test_pg_dump_gets_the_password_in_its_environment_never_on_its_command_line(tmp_path, monkeypatch):
    """The URL's parts go to pg_dump as a libpq connection string; the password only as PGPASSWORD."""
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/argv\"\n"
                    "printf '%s' \"$PGPASSWORD\" > \"$(dirname \"$0\")/password\"\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SHELF_PG_BIN", str(fake.parent))
    url = "postgresql+psycopg://shelf:s3cr%27et@db.example:6543/shelf?sslmode=require"
    with pytest.raises(backup.BackupError, match="pg_dump failed"):
        backup._pg("pg_dump", url, "--format=custom")
    argv = (fake.parent / "argv").read_text()
    assert "s3cr" not in argv
    assert "--dbname=host='db.example' port='6543' user='shelf' dbname='shelf' sslmode='require'" in argv
    assert (fake.parent / "password").read_text() == "s3cr'et"


def test_a_missing_pg_dump_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("SHELF_PG_BIN", str(tmp_path))
    with pytest.raises(backup.BackupError, match="pg_dump not found: install the PostgreSQL client"):
        backup.create_backup(tmp_path / "x.tar", "postgresql+psycopg://u@127.0.0.1:1/none")
