"""Exports: tallies CSV, detections CSV, COCO JSON, SKU-110K CSV and a provenance manifest.

Every CSV cell a spreadsheet would run as a formula is made inert. COCO and SKU-110K exports re-import through
shelf.boxfiles with the same boxes; photos that share a file name get the photo's hash in theirs, so boxes from
two different IMG_0001.jpg never merge.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import PurePosixPath

import pandas as pd

import shelf

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
DETECTION_EXPORT_COLUMNS = [
    "photo_id", "photo", "sha256", "store", "aisle", "captured_on", "region_id", "position", "x1", "y1", "x2", "y2",
    "class_index", "label", "category", "probability", "top_k", "predicted_class_index", "predicted_label",
    "corrected", "reviewer", "corrected_at", "sku", "brand", "sku_similarity", "run_id", "weights_verified",
    "weights_untrained"]


def inert(value):
    """Prefix text that starts like a formula with an apostrophe (OWASP's CSV-injection advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def inert_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells are inert: for CSV files, and for tables shown in the browser, whose toolbar can
    download them as CSV."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(inert)
    return safe


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    safe = inert_frame(frame)
    safe.columns = [inert(str(c)) for c in safe.columns]
    # CRLF as RFC 4180 says; it also makes the writer quote any cell holding a bare CR or LF.
    return safe.to_csv(index=False, float_format="%.6g", lineterminator="\r\n").encode("utf-8")


def detections_csv(detections: pd.DataFrame) -> bytes:
    return to_csv_bytes(detections[DETECTION_EXPORT_COLUMNS])


def export_names(detections: pd.DataFrame) -> dict[int, str]:
    """photo_id → the file name exports use: the photo's own name, made unique with its hash where needed."""
    photos = detections.drop_duplicates("photo_id")[["photo_id", "photo", "sha256"]]
    clashes = photos["photo"].str.lower().duplicated(keep=False)
    names = {}
    for row, clash in zip(photos.itertuples(), clashes):
        path = PurePosixPath(row.photo)
        names[int(row.photo_id)] = f"{path.stem}-{row.sha256[:8]}{path.suffix}" if clash else row.photo
    return names


def coco_json(detections: pd.DataFrame) -> bytes:
    """COCO detection format; category ids are ImageNet class indices, supercategories the retail categories."""
    names = export_names(detections)
    photos = detections.drop_duplicates("photo_id")
    images = [{"id": int(r.photo_id), "file_name": names[int(r.photo_id)], "width": int(r.width),
               "height": int(r.height), "sha256": r.sha256} for r in photos.itertuples()]
    annotations = [{"id": int(r.region_id), "image_id": int(r.photo_id),
                    "bbox": [int(r.x1), int(r.y1), int(r.x2 - r.x1), int(r.y2 - r.y1)],
                    "area": int((r.x2 - r.x1) * (r.y2 - r.y1)), "iscrowd": 0, "category_id": int(r.class_index),
                    "score": round(float(r.probability), 6), "corrected": bool(r.corrected)}
                   for r in detections.itertuples()]
    categories = [{"id": int(r.class_index), "name": r.label, "supercategory": r.category}
                  for r in detections.drop_duplicates("class_index").sort_values("class_index").itertuples()]
    document = {"info": {"description": "Shelf regions", "version": shelf.__version__,
                         "date_created": dt.datetime.now(dt.timezone.utc).isoformat()},
                "images": images, "annotations": annotations, "categories": categories}
    return json.dumps(document, indent=1).encode("utf-8")


def sku110k_csv(detections: pd.DataFrame) -> bytes:
    """SKU-110K's layout: image_name,x1,y1,x2,y2,class,image_width,image_height (no header); class = the label."""
    names = export_names(detections)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for r in detections.itertuples():
        writer.writerow([inert(names[int(r.photo_id)]), int(r.x1), int(r.y1), int(r.x2), int(r.y2), inert(r.label),
                         int(r.width), int(r.height)])
    return buffer.getvalue().encode("utf-8")


def manifest_json(detections: pd.DataFrame, runs: pd.DataFrame, description: dict | None = None) -> bytes:
    """What produced an export: every run behind its rows (weights, versions, preprocessing, backend, regions)."""
    used = runs[runs["id"].isin(detections["run_id"].unique())]
    document = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "shelf_version": shelf.__version__,
        "export": description or {},
        "photos": int(detections["photo_id"].nunique()),
        "regions": int(len(detections)),
        "corrected_regions": int(detections["corrected"].sum()) if len(detections) else 0,
        "runs": json.loads(used.to_json(orient="records", date_format="iso")),
        "unverified_weights_used": bool((~used["weights_verified"].astype(bool)).any()) if len(used) else False,
    }
    return json.dumps(document, indent=1, default=str).encode("utf-8")
