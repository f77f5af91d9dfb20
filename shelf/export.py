"""Exports. Every CSV cell a spreadsheet would run as a formula is made inert."""
from __future__ import annotations

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def inert(value):
    """Prefix text that starts like a formula with an apostrophe (OWASP's CSV-injection advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(inert)
    safe.columns = [inert(str(c)) for c in safe.columns]
    # CRLF as RFC 4180 says; it also makes the writer quote any cell holding a bare CR or LF.
    return safe.to_csv(index=False, float_format="%.6g", lineterminator="\r\n").encode("utf-8")
