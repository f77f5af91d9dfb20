"""Backups of a whole Shelf, and putting one back: the database as it was at one moment, and the files beside it.

A backup is one tar file (`.tar`, or `.tar.gz` when its name says so):

    shelf-backup.json   what it holds: Shelf and schema version, database kind, when, how many files
    database.sqlite     SQLite: a copy made with SQLite's online backup API, consistent while others write
    database.pgdump     PostgreSQL: pg_dump's custom format, one snapshot transaction
    files/...           everything under the data dir but the live SQLite files: photos, SKU reference photos,
                        imported weights and detectors, converted models and fast mode's frozen calibration

The database is copied first, then the files: a photo stored meanwhile may come along without its row (a harmless
extra file), never a row without its photo. Taking a backup never migrates the store, so an old Shelf's backup
can be taken before a new one upgrades it. Restoring puts the database back whole (SQLite's backup API into the
target; on PostgreSQL the old tables are dropped and the dump loaded in one psql transaction, so a failure leaves
the target as it was), then the files, and migrates the store to this Shelf's schema.

pg_dump, pg_restore and psql get the server, port, user and database from the URL as a libpq connection string;
the password goes in their environment (PGPASSWORD), never on a command line other users can read.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import sqlalchemy as sa

import shelf
from shelf import config

MANIFEST = "shelf-backup.json"
FORMAT = 1
DATABASE_MEMBERS = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}
FILES = "files"
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
HALF_WRITTEN = (".partial-", ".pre-")  # what write_atomically and the model conversions write before renaming
PG_TIMEOUT_S = 3600


class BackupError(RuntimeError):
    """A backup that cannot be made or restored; the message names the file or database and the problem."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    database: str  # "sqlite" or "postgresql"
    schema_version: int
    files: int
    n_bytes: int  # of the files


def default_name(now: dt.datetime | None = None) -> str:
    return f"shelf-backup-{(now or dt.datetime.now(dt.timezone.utc)):%Y%m%d-%H%M%S}.tar"


def create_backup(target: Path, url: str | None = None) -> BackupSummary:
    """Write a backup of the store at `url` (default: the configured one) and the data dir to `target` (a file, or
    a folder to put a dated file in). Written under a temporary name first: a backup file is whole or absent."""
    url = url or config.database_url()
    kind = _kind(url)
    target = target / default_name() if target.is_dir() else target
    root = config.data_dir()
    partial = target.with_name(f".partial-{target.name}")
    with tempfile.TemporaryDirectory(prefix="shelf-backup-") as scratch:
        dump = Path(scratch) / DATABASE_MEMBERS[kind]
        version = _dump(url, kind, dump)
        files = list(_data_files(root, skip={target.resolve(), partial.resolve(), *_sqlite_files(url)}))
        manifest = {"format": FORMAT, "shelf_version": shelf.__version__, "schema_version": version,
                    "database": kind, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        kept, n_bytes = 0, 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(partial, "w:gz" if target.name.endswith("gz") else "w") as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
                tar.add(dump, arcname=dump.name)
                for path in files:
                    try:
                        info = tar.gettarinfo(path, arcname=f"{FILES}/{path.relative_to(root).as_posix()}")
                        with open(path, "rb") as handle:
                            tar.addfile(info, handle)
                    except FileNotFoundError:
                        continue  # deleted since it was listed (a photo someone deleted): nothing to keep
                    kept, n_bytes = kept + 1, n_bytes + info.size
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise BackupError(f"{exc.filename or target}: {exc.strerror or exc}") from None
    return BackupSummary(target, kind, version, kept, n_bytes)


def restore_backup(source: Path, url: str | None = None, *, replace: bool = False) -> tuple[BackupSummary, int]:
    """Put the backup `source` back into the store at `url` and the data dir; returns (what it held, the schema
    version the store is at now). A store that holds photos is replaced only with `replace`."""
    from shelf.storage.store import SCHEMA_VERSION, open_store
    url = url or config.database_url()
    kind = _kind(url)
    try:
        tar = tarfile.open(source, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{source}: not a Shelf backup ({getattr(exc, 'strerror', None) or exc})") from None
    with tar, tempfile.TemporaryDirectory(prefix="shelf-restore-") as scratch:
        manifest, members = _read_members(tar, source)
        if manifest["database"] != kind:
            raise BackupError(f"{source} holds a {manifest['database']} database and the target is {kind}; restore "
                              f"it into {manifest['database']} (--db or SHELF_DATABASE_URL)")
        if manifest["schema_version"] > SCHEMA_VERSION:
            raise BackupError(f"{source} was made by a newer Shelf (schema {manifest['schema_version']}; this one "
                              f"knows up to {SCHEMA_VERSION}): restore it with that version")
        photos = _photo_count(url)
        if photos and not replace:
            raise BackupError(f"the target store holds {photos} photo(s); restoring replaces them all. Run again "
                              "with --replace to do that")
        dump = Path(scratch) / DATABASE_MEMBERS[kind]
        root = config.data_dir()
        n_bytes = 0
        try:
            _extract(tar, members[DATABASE_MEMBERS[kind]], dump)
            _load(url, kind, dump)
            for name, member in members.items():
                if name.startswith(f"{FILES}/"):
                    _extract(tar, member, root / name.removeprefix(f"{FILES}/"))
                    n_bytes += member.size
        except (OSError, tarfile.TarError) as exc:  # a full disk, a folder not writable, a truncated backup
            raise BackupError(f"{getattr(exc, 'filename', None) or source}: {getattr(exc, 'strerror', None) or exc}"
                              ) from None
        open_store(url).dispose()  # migrates a backup from an older Shelf to this one's schema
    summary = BackupSummary(source, kind, manifest["schema_version"], len(members) - 2, n_bytes)
    return summary, SCHEMA_VERSION


# --- the database --------------------------------------------------------------------------------------------------

def _kind(url: str) -> str:
    backend = sa.engine.make_url(url).get_backend_name()
    if backend not in DATABASE_MEMBERS:
        raise BackupError(f"backups cover SQLite and PostgreSQL stores, not {backend}")
    return backend


def _sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite store cannot be backed up or restored")
    return Path(database).expanduser().resolve()


def _sqlite_files(url: str) -> set[Path]:
    if _kind(url) != "sqlite":
        return set()
    path = _sqlite_path(url)
    return {path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES}


@contextmanager
def _connected(url: str) -> Iterator[sa.Connection]:
    """A plain connection (no migration: a backup copies the store as it is), its errors as BackupError."""
    if _kind(url) == "sqlite":
        _sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(f"the store cannot be read: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


def _schema_version(url: str) -> int:
    from shelf.storage.migrations import existing_version
    with _connected(url) as conn:
        return existing_version(conn)


def _photo_count(url: str) -> int:
    from shelf.storage.schema import photos
    with _connected(url) as conn:
        if not sa.inspect(conn).has_table(photos.name):
            return 0
        return conn.execute(sa.select(sa.func.count()).select_from(photos)).scalar()


def _dump(url: str, kind: str, target: Path) -> int:
    """The database into `target`, consistent at one moment; returns its schema version (0: not a Shelf store)."""
    if kind == "postgresql":
        pg_tool("pg_dump")  # missing: say so before anything else
    version = _schema_version(url)
    if not version:
        raise BackupError("the store holds no Shelf schema: nothing to back up")
    if kind == "sqlite":
        path = _sqlite_path(url)
        if not path.is_file():
            raise BackupError(f"{path}: no such SQLite database")
        _sqlite_copy(path, target)
    else:
        _pg("pg_dump", url, "--format=custom", "--no-owner", "--no-privileges", f"--file={target}")
    return version


def _load(url: str, kind: str, dump: Path) -> None:
    if kind == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(dump, target)
        return
    script = dump.with_suffix(".sql")
    _pg("pg_restore", None, "--no-owner", "--no-privileges", f"--file={script}", str(dump))
    drop = dump.with_name("drop.sql")
    drop.write_text(_drop_tables_sql(url))
    _pg("psql", url, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction",
        f"--file={drop}", f"--file={script}")


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup API: a consistent copy while other connections read and write."""
    try:
        src, dst = sqlite3.connect(source), sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{source} → {target}: {exc}") from None


def _drop_tables_sql(url: str) -> str:
    """SQL dropping every table and function of the target's schema (not an extension's), so the dump lands in an
    empty one (a newer Shelf's extra tables and trigger functions included)."""
    with _connected(url) as conn:
        names = sa.inspect(conn).get_table_names()
        functions = conn.execute(sa.text(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema() "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')")).all()
        quote = conn.dialect.identifier_preparer.quote
    tables = "".join(f"DROP TABLE IF EXISTS {quote(name)} CASCADE;\n" for name in names)
    return tables + "".join(f"DROP FUNCTION IF EXISTS {quote(name)}({args}) CASCADE;\n" for name, args in functions)


def pg_tool(name: str) -> str:
    """The PostgreSQL client program `name`: in SHELF_PG_BIN if set, else on the PATH."""
    folder = os.environ.get("SHELF_PG_BIN")
    found = str(Path(folder) / name) if folder else shutil.which(name)
    if not found or not Path(found).is_file():
        raise BackupError(f"{name} not found: install the PostgreSQL client (apt-get install postgresql-client) "
                          "or set SHELF_PG_BIN to the folder holding it")
    return found


def libpq_connection(url: str) -> tuple[str, dict[str, str]]:
    """(libpq connection string without the password, environment with PGPASSWORD if the URL has one)."""
    parsed = sa.engine.make_url(url)
    parts = {"host": parsed.host, "port": parsed.port, "user": parsed.username, "dbname": parsed.database,
             **{key: value for key, value in parsed.query.items() if isinstance(value, str)}}
    conninfo = " ".join(f"{key}={_libpq_quote(str(value))}" for key, value in parts.items() if value is not None)
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10")}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return conninfo, env


def _libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pg(program: str, url: str | None, *args: str) -> None:
    command = [pg_tool(program)]
    env = dict(os.environ)
    if url is not None:
        conninfo, env = libpq_connection(url)
        command.append(f"--dbname={conninfo}")
    try:
        done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=PG_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{program} failed: {exc}") from None
    if done.returncode != 0:
        raise BackupError(f"{program} failed: {(done.stderr or done.stdout).strip()[-2000:]}")


# --- the files -----------------------------------------------------------------------------------------------------

def _data_files(root: Path, skip: set[Path]) -> Iterator[Path]:
    """The files under the data dir a backup keeps: all but the live database and half-written files."""
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder) / name
            if path.resolve() in skip or any(mark in name for mark in HALF_WRITTEN) or not path.is_file():
                continue
            yield path


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(dt.datetime.now().timestamp()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _read_members(tar: tarfile.TarFile, source: Path) -> tuple[dict, dict[str, tarfile.TarInfo]]:
    """The manifest and the members by name, each checked: regular files under known names only, no absolute
    paths, no `..`, no links, so a crafted archive cannot write outside the data dir."""
    members: dict[str, tarfile.TarInfo] = {}
    try:
        for member in tar:
            if member.isdir():
                continue
            name = _safe_name(member, source)
            members[name] = member
        manifest = json.loads(tar.extractfile(members[MANIFEST]).read())
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{source}: cannot be read whole ({getattr(exc, 'strerror', None) or exc})") from None
    except (KeyError, ValueError, AttributeError):
        raise BackupError(f"{source}: not a Shelf backup (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            manifest.get("database") not in DATABASE_MEMBERS or not isinstance(manifest.get("schema_version"), int):
        raise BackupError(f"{source}: {MANIFEST} is not one this Shelf reads (format {FORMAT})")
    if DATABASE_MEMBERS[manifest["database"]] not in members:
        raise BackupError(f"{source}: the database ({DATABASE_MEMBERS[manifest['database']]}) is missing")
    return manifest, members


def _safe_name(member: tarfile.TarInfo, source: Path) -> str:
    path = PurePosixPath(member.name)
    known = member.name in (MANIFEST, *DATABASE_MEMBERS.values()) or \
        (len(path.parts) > 1 and path.parts[0] == FILES)
    if not member.isfile() or path.is_absolute() or ".." in path.parts or not known:
        raise BackupError(f"{source}: refused member {member.name[:100]!r} (a backup holds regular files under "
                          f"{FILES}/ and its database only)")
    return path.as_posix()


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """One member to `target`, through a temporary file beside it: whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(tar.extractfile(member), handle, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
