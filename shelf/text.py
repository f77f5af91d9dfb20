"""Text users typed, made safe: cleaned when it comes in, made inert when it goes out to a spreadsheet.

Names, stores and aisles are stored verbatim (after `clean_text`); every CSV or table that shows them passes its
cells through `inert`/`inert_frame`, so a cell a spreadsheet would run as a formula is shown as text instead. Here,
below every part of the data path, because ingest (box files), storage (the audit log) and analytics (exports)
all need it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas only for inert_frame: the recognize path never loads it
    import pandas as pd

MAX_CONTEXT_LENGTH = 100
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def clean_text(value: str | None) -> str:
    """User-typed text: control characters out, whitespace trimmed, length bounded. Kept verbatim otherwise;
    exports make formula-looking cells inert."""
    text = "".join(ch if ch.isprintable() else " " for ch in (value or "")).strip()
    return text[:MAX_CONTEXT_LENGTH]


def inert(value):
    """Prefix text that starts like a formula with an apostrophe (OWASP's CSV-injection advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def inert_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and headers are inert (vectorised per column): for CSV files, and for tables shown
    in the browser, whose toolbar can download them as CSV."""
    import pandas as pd
    safe = frame.copy()
    for column in safe.columns:
        values = safe[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            text = values.map(lambda v: v if isinstance(v, str) else "") if values.dtype == object else values
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
            if risky.any():
                safe[column] = values.where(~risky, "'" + text)
    safe.columns = [inert(str(c)) for c in safe.columns]
    return safe
