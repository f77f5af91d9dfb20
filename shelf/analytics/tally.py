"""What a tally *is*, as pure pandas over a detections frame (see shelf.detections). No I/O here.

The dashboard and the CLI compute the same tallies in the database (report) and share `finish()` with this
module; the functions here define the numbers for small frames (one photo's regions) and are the oracle the SQL
tallies are tested against.

A region is *counted* (a facing) when its top-1 probability reaches the threshold, or when a reviewer corrected
it — a person has looked at it. Thresholds and confidence ranges move in steps of 0.05
(shelf.storage.schema.THRESHOLD_STEPS). A group's mean and min confidence are over the regions the model labelled:
a corrected region counts under the reviewer's label, and the model's probability was for another label, so it
has no confidence to give (a group of corrected regions only has none: NaN).
Share of shelf is a group's facings over all facings in the same scope: the store/aisle/date values of the group
when the grouping has them and something else besides (label, category, SKU, brand), else everything selected — so
grouped by store alone, each row is that store's share of the selection.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from shelf.storage.schema import THRESHOLD_STEPS, threshold_step

GROUPINGS = {"label": ["class_index", "label"], "category": ["category"], "sku": ["sku"], "brand": ["brand"],
             "store": ["store"], "aisle": ["aisle"], "date": ["captured_on"]}
SCOPE_GROUPINGS = ("store", "aisle", "date")
MEASURES = ["facings", "share", "mean_confidence", "min_confidence", "below_threshold", "corrected"]


@dataclass(frozen=True)
class TallyFilter:
    stores: Sequence[str] = ()  # empty = all
    aisles: Sequence[str] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None  # inclusive
    categories: Sequence[str] = ()
    class_indices: Sequence[int] = ()
    confidence: tuple[float, float] | None = None  # top-1 probability range, in steps of 0.05: low ≤ p < high
    dated_only: bool = False  # photos with a date, any date (what a date range covering every photo means)

    @property
    def dated(self) -> bool:
        return self.date_from is not None or self.date_to is not None or self.dated_only


def confidence_steps(low: float, high: float) -> tuple[int, int]:
    """A confidence range as threshold steps (0.2, 0.45) → (4, 9); a range ending at 1 includes 1."""
    return threshold_step(min(low, high)), threshold_step(max(low, high))


def in_confidence_range(probability: pd.Series, low: float, high: float) -> pd.Series:
    first, last = confidence_steps(low, high)
    keep = probability >= THRESHOLD_STEPS[first]
    return keep if last == 20 else keep & (probability < THRESHOLD_STEPS[last])


def filter_detections(detections: pd.DataFrame, f: TallyFilter) -> pd.DataFrame:
    """Keep the rows that pass the filter. Photos without a date drop out once a date bound is set."""
    keep = pd.Series(True, index=detections.index)
    for column, allowed in (("store", f.stores), ("aisle", f.aisles), ("category", f.categories),
                            ("class_index", f.class_indices)):
        if allowed:
            keep &= detections[column].isin(list(allowed))
    if f.dated:
        dates = pd.to_datetime(detections["captured_on"])  # undated photos become NaT and compare False
        keep &= dates.notna()
        if f.date_from is not None:
            keep &= dates >= pd.Timestamp(f.date_from)
        if f.date_to is not None:
            keep &= dates <= pd.Timestamp(f.date_to)
    if f.confidence is not None:
        keep &= in_confidence_range(detections["probability"], *f.confidence)
    return detections[keep]


def counted(detections: pd.DataFrame, threshold: float) -> pd.Series:
    return (detections["probability"] >= THRESHOLD_STEPS[threshold_step(threshold)]) \
        | detections["corrected"].astype(bool)


def group_columns(by: Sequence[str]) -> list[str]:
    unknown = [g for g in by if g not in GROUPINGS]
    if unknown or not by:
        raise ValueError(f"group by one or more of: {', '.join(GROUPINGS)}")
    return [column for g in dict.fromkeys(by) for column in GROUPINGS[g]]


def scope_columns(by: Sequence[str]) -> list[str]:
    """The columns share of shelf is computed within: the grouping's store/aisle/date, unless that is all it has."""
    if all(g in SCOPE_GROUPINGS for g in by):
        return []
    return [column for g in dict.fromkeys(by) if g in SCOPE_GROUPINGS for column in GROUPINGS[g]]


def empty_table(by: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in group_columns(by) + MEASURES})


def finish(table: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per-group sums → the tally: share of shelf within each scope, integer counts, largest first per scope.
    `table` has the group columns and facings, regions, sum_confidence and min_confidence (of the regions the model
    labelled, not corrected ones), corrected."""
    keys, scope = group_columns(by), scope_columns(by)
    if table.empty:
        return empty_table(by)
    labelled_by_model = (table["regions"] - table["corrected"]).astype(float)
    table = table.assign(mean_confidence=(table["sum_confidence"] / labelled_by_model).where(labelled_by_model > 0),
                         min_confidence=pd.to_numeric(table["min_confidence"]).astype(float),
                         below_threshold=table["regions"] - table["facings"])
    totals = table.groupby(scope, dropna=False)["facings"].transform("sum") if scope else table["facings"].sum()
    table["share"] = (table["facings"] / totals).where(totals > 0, 0.0) if scope else \
        (table["facings"] / totals if totals else 0.0)
    table[["facings", "below_threshold", "corrected"]] = table[["facings", "below_threshold", "corrected"]].astype(int)
    table = table.sort_values(scope + ["facings"] + [k for k in keys if k not in scope],
                              ascending=[True] * len(scope) + [False] + [True] * (len(keys) - len(scope)),
                              ignore_index=True)
    return table[keys + MEASURES]


def tally(detections: pd.DataFrame, by: Sequence[str] = ("label",), threshold: float = 0.0) -> pd.DataFrame:
    """Facings, share of shelf, confidence, regions below the threshold and corrected regions per group."""
    keys = group_columns(by)
    if detections.empty:
        return empty_table(by)
    corrected = detections["corrected"].astype(bool)
    frame = detections.assign(_counted=counted(detections, threshold), _corrected=corrected,
                              _model=detections["probability"].where(~corrected))  # NaN: not the model's label
    sums = (frame.groupby(keys, as_index=False, dropna=False)
            .agg(facings=("_counted", "sum"), regions=("probability", "size"),
                 sum_confidence=("_model", "sum"), min_confidence=("_model", "min"),
                 corrected=("_corrected", "sum")))
    return finish(sums, by)


def facings_per_photo(detections: pd.DataFrame, threshold: float = 0.0) -> pd.DataFrame:
    """Facings per label per photo."""
    columns = ["photo_id", "photo", "class_index", "label", "facings", "mean_confidence"]
    if detections.empty:
        return pd.DataFrame(columns=columns)
    frame = detections.assign(_counted=counted(detections, threshold))
    grouped = (frame.groupby(["photo_id", "class_index"], as_index=False)
               .agg(photo=("photo", "first"), label=("label", "first"), facings=("_counted", "sum"),
                    mean_confidence=("probability", "mean")))
    grouped["facings"] = grouped["facings"].astype(int)
    return grouped.sort_values(["photo_id", "facings", "class_index"], ascending=[True, False, True],
                               ignore_index=True)[columns]
