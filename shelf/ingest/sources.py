"""What a batch reads: photo archives given as folders, globs, manifest CSVs, or `pyarrow` filesystem URIs.

SOURCE is one of
  a folder          walked recursively for image files (by extension)
  a glob            `archive/2026-*/**/*.jpg` (local paths; `**` crosses folders)
  a manifest CSV    `path,store,aisle,date` with a header; relative paths are relative to the manifest's folder;
                    a bad row is reported by its line number and the rest go on
  a file            one photo
and any of them may be a URI that `pyarrow.fs.FileSystem.from_uri` understands (`s3://bucket/prefix`, `gs://…`,
`hdfs://…`, with options in the query string: `s3://bucket/prefix?endpoint_override=host:9000&scheme=http`).

A folder can carry context in its path: with the layout `{store}/{aisle}/{date}/`, the file
`ROOT/S014/A03/2026-11-02/IMG_1.jpg` gets store S014, aisle A03, date 2026-11-02. The folder levels that match fill
their field; the rest keep the defaults (`--store/--aisle/--date`).
"""
from __future__ import annotations

import csv
import datetime as dt
import glob
import io
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from shelf.ingest.images import MAX_BYTES, UPLOAD_EXTENSIONS
from shelf.text import clean_text

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MANIFEST_COLUMNS = ("path", "store", "aisle", "date")
LAYOUT_FIELDS = {"store": r"[^/]+", "aisle": r"[^/]+", "date": r"\d{4}-\d{2}-\d{2}"}
GLOB_CHARACTERS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Job:
    """One photo to recognize: where to read it and the context to store it with. Plain data."""

    source: str  # a local path or a filesystem URI, as listed
    store: str = ""
    aisle: str = ""
    captured_on: str = ""  # ISO date, or "" when unknown
    line: int = 0  # the manifest line it came from (0: not from a manifest)


@dataclass(frozen=True)
class Problem:
    """An input that could not be used, for the batch's error list."""

    source: str
    problem: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.source}, line {self.line}: {self.problem}" if self.line else f"{self.source}: {self.problem}"


class SourceError(ValueError):
    """A file that cannot be read; the message says why."""


def is_uri(source: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", source) is not None


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS


# ---------------------------------------------------------------------------------------------------------------
# Reading one file, locally or through a pyarrow filesystem


@lru_cache(maxsize=16)
def _filesystem(root: str):
    """A pyarrow filesystem for `scheme://authority?options`, built once per worker process."""
    from pyarrow import fs
    return fs.FileSystem.from_uri(root)[0]


def _split_uri(uri: str) -> tuple[object, str]:
    """URI → (filesystem, path inside it). The options in the query string configure the filesystem."""
    parts = urlsplit(uri)
    root = f"{parts.scheme}://{parts.netloc}" + (f"?{parts.query}" if parts.query else "")
    return _filesystem(root), f"{parts.netloc}{parts.path}" if parts.scheme != "file" else parts.path


def _uri_with_path(uri: str, path: str) -> str:
    """The URI of `path` (a path inside the filesystem of `uri`), keeping `uri`'s options."""
    parts = urlsplit(uri)
    inside = path[len(parts.netloc):] if parts.scheme != "file" and path.startswith(parts.netloc) else path
    return f"{parts.scheme}://{parts.netloc}{inside}" + (f"?{parts.query}" if parts.query else "")


def read_source(source: str, limit: int = MAX_BYTES) -> bytes:
    """The bytes of one file, refusing files over `limit` before reading them. Raises SourceError."""
    try:
        if is_uri(source):
            filesystem, path = _split_uri(source)
            size = filesystem.get_file_info(path).size
            if size is not None and size > limit:
                raise SourceError(f"{size / 2**20:.1f} MB is over the limit of {limit / 2**20:.0f} MB")
            with filesystem.open_input_stream(path) as stream:
                data = stream.read(limit + 1)
        else:
            with open(source, "rb") as handle:
                data = handle.read(limit + 1)
    except SourceError:
        raise
    except OSError as exc:
        raise SourceError(f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # pyarrow raises its own errors for bad URIs and unreachable stores
        raise SourceError(f"cannot read the file ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if len(data) > limit:
        raise SourceError(f"the file is over the limit of {limit / 2**20:.0f} MB")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Layout: context from folder names


@dataclass(frozen=True)
class Layout:
    levels: tuple[re.Pattern, ...]

    def context(self, folders: tuple[str, ...], job: Job) -> Job:
        """`job` with the fields that the folder levels (from the source's root down) match filled in."""
        found: dict[str, str] = {}
        for pattern, folder in zip(self.levels, folders):
            match = pattern.fullmatch(folder)
            if match:
                found.update({k: v for k, v in match.groupdict().items() if v})
        if "date" in found and _iso_date(found["date"]) is None:
            del found["date"]  # 2026-02-30 is no date: the level does not match
        return replace(job, store=clean_text(found.get("store", job.store)),
                       aisle=clean_text(found.get("aisle", job.aisle)), captured_on=found.get("date", job.captured_on))


def parse_layout(text: str) -> Layout:
    """'{store}/{aisle}/{date}/' → Layout; ValueError naming the problem. Literal text around the fields is kept
    ('store-{store}/{date}')."""
    levels, seen = [], set()
    for level in [part for part in text.strip().strip("/").split("/") if part]:
        pattern, position = "", 0
        for field in re.finditer(r"\{([^{}]*)\}", level):
            name = field[1]
            if name not in LAYOUT_FIELDS:
                raise ValueError(f"unknown field {{{name}}} in the layout; use {{store}}, {{aisle}}, {{date}}")
            if name in seen:
                raise ValueError(f"{{{name}}} appears twice in the layout")
            seen.add(name)
            pattern += re.escape(level[position:field.start()]) + f"(?P<{name}>{LAYOUT_FIELDS[name]})"
            position = field.end()
        if "{" in level[position:] or "}" in level[position:]:
            raise ValueError(f"unbalanced braces in the layout level {level!r}")
        levels.append(re.compile(pattern + re.escape(level[position:])))
    if not seen:
        raise ValueError("the layout names no field; use {store}, {aisle} and/or {date}, "
                         "e.g. '{store}/{aisle}/{date}/'")
    return Layout(tuple(levels))


def _iso_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# Listing sources


def list_jobs(sources: list[str], defaults: Job = Job(""), layout: Layout | None = None
              ) -> tuple[list[Job], list[Problem]]:
    """Every photo the sources name, in a stable order, once each (by source), and the inputs that could not be
    used. `defaults` holds the context for photos whose source gives none."""
    jobs: list[Job] = []
    problems: list[Problem] = []
    for source in sources:
        try:
            found, bad = _list_one(source, defaults, layout)
        except SourceError as exc:
            found, bad = [], [Problem(source, str(exc))]
        jobs += found
        problems += bad
    seen: set[str] = set()
    unique = [job for job in jobs if not (job.source in seen or seen.add(job.source))]
    return unique, problems


def _list_one(source: str, defaults: Job, layout: Layout | None) -> tuple[list[Job], list[Problem]]:
    if is_uri(source):
        return _list_uri(source, defaults, layout)
    if GLOB_CHARACTERS.search(source):
        base = _glob_base(source)
        matches = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file() and is_image_name(p))
        if not matches:
            raise SourceError("the pattern matches no image files")
        return [_with_layout(Job(p, defaults.store, defaults.aisle, defaults.captured_on), base, p, layout)
                for p in matches], []
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
        return [_with_layout(Job(f, defaults.store, defaults.aisle, defaults.captured_on), str(path), f, layout)
                for f in files], []
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return parse_manifest(read_source(source, MAX_MANIFEST_BYTES), source, str(path.parent), defaults)
        return [replace(defaults, source=source)], []
    raise SourceError("no such file or folder")


def _list_uri(source: str, defaults: Job, layout: Layout | None) -> tuple[list[Job], list[Problem]]:
    from pyarrow import fs
    try:
        filesystem, path = _split_uri(source)
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.Directory:
            listed = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
            files = sorted(i.path for i in listed if i.type == fs.FileType.File and is_image_name(i.path))
            return [_with_layout(Job(_uri_with_path(source, f), defaults.store, defaults.aisle,
                                     defaults.captured_on), path, f, layout) for f in files], []
    except Exception as exc:
        raise SourceError(f"cannot list it ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if info.type != fs.FileType.File:
        raise SourceError("no such file or folder")
    if path.lower().endswith(".csv"):
        folder = _uri_with_path(source, path.rsplit("/", 1)[0])
        return parse_manifest(read_source(source, MAX_MANIFEST_BYTES), source, folder, defaults)
    return [replace(defaults, source=source)], []


def _glob_base(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next(i for i, p in enumerate(parts) if GLOB_CHARACTERS.search(p))]]
    return str(Path(*fixed)) if fixed else "."


def _with_layout(job: Job, root: str, file: str, layout: Layout | None) -> Job:
    if layout is None:
        return job
    relative = PurePosixPath(file.replace("\\", "/")).relative_to(PurePosixPath(root.replace("\\", "/")))
    return layout.context(relative.parts[:-1], job)


def parse_manifest(data: bytes, name: str, folder: str, defaults: Job = Job("")) -> tuple[list[Job], list[Problem]]:
    """A manifest CSV (`path,store,aisle,date`, header required) → jobs, and one problem per bad row (by line
    number). Relative paths are relative to `folder` (the manifest's own). Empty store/aisle/date cells take the
    defaults."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [Problem(name, "the manifest is not UTF-8 text")]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], [Problem(name, "the manifest is empty")]
    except csv.Error as exc:
        return [], [Problem(name, f"the header cannot be read ({exc})", 1)]
    if "path" not in header or not set(header) <= set(MANIFEST_COLUMNS) or len(set(header)) != len(header):
        return [], [Problem(name, f"the header must name the columns {','.join(MANIFEST_COLUMNS)} (path required, "
                                  f"each once); found {','.join(header)[:200]!r}", 1)]
    jobs, problems = [], []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(name, f"cannot be read ({exc})", reader.line_num))
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(Problem(name, f"{len(row)} cells where the header has {len(header)}", line))
            continue
        cells = dict(zip(header, (cell.strip() for cell in row)))
        if not cells["path"]:
            problems.append(Problem(name, "the path is empty", line))
            continue
        date = cells.get("date", "")
        if date and _iso_date(date) is None:
            problems.append(Problem(name, f"{date[:40]!r} is not a date (YYYY-MM-DD)", line))
            continue
        path = cells["path"]
        if not is_uri(path) and not Path(path).is_absolute():
            path = _uri_with_path(folder, f"{urlsplit(folder).path}/{path}") if is_uri(folder) \
                else str(Path(folder) / path)
        jobs.append(Job(path, clean_text(cells.get("store")) or defaults.store,
                        clean_text(cells.get("aisle")) or defaults.aisle, date or defaults.captured_on, line))
    return jobs, problems
