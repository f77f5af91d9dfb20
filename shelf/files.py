"""Files Shelf reads and writes: untrusted ones with a size limit, its own ones atomically, so a crash never leaves
half a photo or half a weights file behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

MB = 1_000_000  # a megabyte as Streamlit's uploader counts it: Shelf's limits use the same unit, so both agree


class FileTooLarge(ValueError):
    """A file over its limit; `str()` names it and says the sizes, `problem` says them without the name."""

    def __init__(self, path, problem: str):
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def size_problem(n_bytes: int, limit: int) -> str:
    return f"the file is {n_bytes / MB:.1f} MB; the limit is {limit / MB:g} MB"


def read_bounded(path: Path | str, limit: int) -> bytes:
    """The bytes of a file given on the command line, never reading more than `limit` + 1 of them: a huge file (or
    an endless one such as /dev/zero) raises FileTooLarge instead of filling the memory."""
    with open(path, "rb") as handle:
        declared = os.fstat(handle.fileno()).st_size
        if declared > limit:
            raise FileTooLarge(path, size_problem(declared, limit))
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(path, f"the file is larger than the limit of {limit / MB:g} MB")
    return data


def write_atomically(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
