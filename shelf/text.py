"""Text users typed, made safe: cleaned when it comes in, made inert when it goes out to a spreadsheet; and
probabilities as text, the same everywhere (`percent`).

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



def percents(probabilities) -> list[str]:
    """Probabilities as people read them beside the tables' percent columns: 62.3%, 2.5%, 0.25%, 0.031% — one
    decimal from 1 % up, two significant digits below, so an untrained model's 0.25 % never reads "0%";
    "<0.01%" below that and "0%" only for 0. Vectorised: an export formats millions."""
    import numpy as np
    values = 100 * np.asarray(probabilities, dtype=float).ravel()
    small = (values > 0) & (values < 1)
    decimals = np.clip(np.where(small, 1 - np.floor(np.log10(np.where(small, values, 1))), 1), 1, 4)
    rounded = np.round(values * 10 ** decimals) / 10 ** decimals
    rounded = np.where((values > 0) & (rounded < 0.01), 0.001, rounded)  # any such value reads "<0.01%"
    distinct, where = np.unique(rounded, return_inverse=True)
    return list(np.array([_percent_text(v) for v in distinct], dtype=object)[where.ravel()])


def _percent_text(value: float) -> str:
    if value >= 1 or value == 0:
        return f"{value:.1f}".removesuffix(".0") + "%"
    return f"{value:.2g}%" if value >= 0.01 else "<0.01%"


def percent(probability: float) -> str:
    """One probability as `percents` writes it."""
    return percents([probability])[0]
