"""The reference the database queries are checked against: the whole store as one pandas frame (one row per
region with its top-1 prediction, top-k, the newest correction, category and SKU match), built only from the
predictions and the corrections history — not from the denormalised columns and rollups the queries read — and the
review queue as pandas over it. Tests only: the product never loads the whole store into pandas."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from shelf.analytics.categories import NOT_A_PRODUCT, category_map
from shelf.analytics.report import ReviewFilter
from shelf.analytics.tally import filter_detections, in_confidence_range
from shelf.storage import sku_matches, store
from shelf.text import percent

DETECTION_COLUMNS = [
    "photo_id", "photo", "sha256", "file", "width", "height", "store", "aisle", "captured_on", "region_id",
    "position", "x1", "y1", "x2", "y2", "predicted_class_index", "predicted_label", "probability", "top_k",
    "class_index", "label", "category", "corrected", "reviewer", "corrected_at", "sku_id", "sku", "brand",
    "sku_similarity", "run_id", "weights_verified", "weights_untrained"]
UNKNOWN_SKU = "Unknown"
NOT_MATCHED = "Not matched"


def top_k_text(predictions: pd.DataFrame) -> pd.Series:
    """'pop bottle 62.3% · beer bottle 20% · …' per region_id, vectorised (a store holds tens of thousands)."""
    ordered = predictions.sort_values(["region_id", "rank"])
    text = ordered["label"] + " " + [percent(p) for p in ordered["probability"]]
    return text.groupby(ordered["region_id"]).agg(" · ".join).rename("top_k")


def build_detections(predictions: pd.DataFrame, corrections: pd.DataFrame, categories: dict[int, str],
                     sku_matches: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pure: predictions (all ranks) + latest corrections + category map (+ SKU matches) → one row per region.

    `class_index`/`label` are what counts: the correction where a reviewer made one, else the model's top-1,
    which stays in `predicted_class_index`/`predicted_label`. A region matched to a catalog SKU takes the SKU's
    category unless a reviewer corrected it; `sku` is "Unknown" when the catalog had nothing close enough and
    "Not matched" when the region was never matched."""
    if predictions.empty:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    top_k = top_k_text(predictions)
    top1 = predictions[predictions["rank"] == 1].rename(
        columns={"class_index": "predicted_class_index", "label": "predicted_label"})
    frame = top1.merge(top_k, left_on="region_id", right_index=True, how="left")
    fixes = corrections.rename(columns={"class_index": "corrected_class_index", "label": "corrected_label",
                                        "created_at": "corrected_at"})
    frame = frame.merge(fixes, on="region_id", how="left")
    frame["corrected"] = frame["corrected_class_index"].notna()
    frame["class_index"] = frame["corrected_class_index"].fillna(frame["predicted_class_index"]).astype(int)
    frame["label"] = frame["corrected_label"].where(frame["corrected"], frame["predicted_label"])
    frame["category"] = frame["class_index"].map(lambda index: categories.get(index, NOT_A_PRODUCT))
    if sku_matches is None:
        sku_matches = pd.DataFrame(columns=["region_id", "sku_id", "sku", "brand", "sku_category", "sku_similarity"])
    frame = frame.merge(sku_matches, on="region_id", how="left")
    matched = frame["sku_id"].notna()
    was_matched = frame["region_id"].isin(sku_matches["region_id"])
    frame["sku"] = frame["sku"].where(matched, np.where(was_matched, UNKNOWN_SKU, NOT_MATCHED))
    frame["brand"] = frame["brand"].where(matched, "")
    frame["category"] = frame["sku_category"].where(matched & ~frame["corrected"], frame["category"])
    return frame[DETECTION_COLUMNS].reset_index(drop=True)


def load_detections(engine: Engine) -> pd.DataFrame:
    return build_detections(store.predictions_frame(engine), store.latest_corrections(engine), category_map(engine),
                            sku_matches.sku_match_frame(engine))


def review_queue(detections: pd.DataFrame, f: ReviewFilter) -> pd.DataFrame:
    """Regions to review, least confident first (then by photo and position, so the order is stable)."""
    rows = filter_detections(detections, f.scope)
    rows = rows[in_confidence_range(rows["probability"], *f.confidence)]
    if not f.include_reviewed:
        rows = rows[~rows["corrected"].astype(bool)]
    return rows.sort_values(["probability", "photo_id", "position"], ignore_index=True)


def empty_shelf_reference(engine: Engine, f, by) -> pd.DataFrame:
    """report.empty_shelf from the regions themselves (not the width rollup): per group, gap width over the width
    of gaps and facings, of current regions in photos recognised in auto mode; the filter's stores, aisles and
    dates apply (a gap has no category or confidence)."""
    import dataclasses

    import sqlalchemy as sa

    from shelf.analytics.tally import TallyFilter
    query = (sa.select(store.regions.c.x1, store.regions.c.x2, store.regions.c.kind, store.photos.c.store,
                       store.photos.c.aisle, store.photos.c.captured_on)
             .select_from(store.regions.join(store.photos).join(store.runs))
             .where(store.regions.c.active, store.runs.c.region_mode == "auto"))
    with engine.connect() as conn:
        rows = pd.DataFrame(conn.execute(query).mappings().all(),
                            columns=["x1", "x2", "kind", "store", "aisle", "captured_on"])
    context = TallyFilter(**{k: v for k, v in dataclasses.asdict(f).items()
                             if k in ("stores", "aisles", "date_from", "date_to", "dated_only")})
    rows = filter_detections(rows, context)
    width = rows["x2"] - rows["x1"]
    rows = rows.assign(gap_width=width.where(rows["kind"] == store.GAP, 0), shelf_width=width)
    columns = ["captured_on" if g == "date" else g for g in by]
    if columns:
        frame = rows.groupby(columns, dropna=False)[["gap_width", "shelf_width"]].sum().reset_index()
    else:
        frame = rows[["gap_width", "shelf_width"]].sum().to_frame().T
    frame = frame[frame["shelf_width"] > 0]
    return frame.assign(empty_share=frame["gap_width"] / frame["shelf_width"]).reset_index(drop=True)
