"""Tallies: pure pandas over the stored top-1 predictions. No I/O here."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

TALLY_COLUMNS = ["class_index", "label", "count", "share", "mean_confidence", "min_confidence"]


@dataclass(frozen=True)
class TallyFilter:
    min_confidence: float = 0.0  # top-1 probability at or above this counts
    stores: Sequence[str] = ()  # empty = all
    aisles: Sequence[str] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None  # inclusive


def filter_detections(top1: pd.DataFrame, f: TallyFilter) -> pd.DataFrame:
    """Keep the top-1 rows that pass the filter. Photos without a date drop out once a date bound is set."""
    keep = top1["probability"] >= f.min_confidence
    if f.stores:
        keep &= top1["store"].isin(list(f.stores))
    if f.aisles:
        keep &= top1["aisle"].isin(list(f.aisles))
    if f.date_from is not None or f.date_to is not None:
        dates = pd.to_datetime(top1["captured_on"])  # undated photos become NaT and compare False
        keep &= dates.notna()
        if f.date_from is not None:
            keep &= dates >= pd.Timestamp(f.date_from)
        if f.date_to is not None:
            keep &= dates <= pd.Timestamp(f.date_to)
    return top1[keep]


def tally_by_label(top1: pd.DataFrame) -> pd.DataFrame:
    """Counts per ImageNet class (keyed by index, named for reading), share of all counted regions, confidence."""
    if top1.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            TALLY_COLUMNS, ["int64", "object", "int64", "float64", "float64", "float64"])})
    grouped = (top1.groupby("class_index", as_index=False)
               .agg(label=("label", "first"), count=("probability", "size"),
                    mean_confidence=("probability", "mean"), min_confidence=("probability", "min")))
    grouped["share"] = grouped["count"] / grouped["count"].sum()
    grouped = grouped.sort_values(["count", "class_index"], ascending=[False, True], ignore_index=True)
    return grouped[TALLY_COLUMNS]


def facings_per_photo(top1: pd.DataFrame) -> pd.DataFrame:
    """Facings (regions whose top-1 is the class) per label per photo, most facings first within a photo."""
    columns = ["photo_id", "photo", "class_index", "label", "facings", "mean_confidence"]
    if top1.empty:
        return pd.DataFrame(columns=columns)
    grouped = (top1.groupby(["photo_id", "class_index"], as_index=False)
               .agg(photo=("photo", "first"), label=("label", "first"), facings=("probability", "size"),
                    mean_confidence=("probability", "mean")))
    return grouped.sort_values(["photo_id", "facings", "class_index"], ascending=[True, False, True],
                               ignore_index=True)[columns]
