"""Exports: tallies CSV, detections CSV, COCO JSON, SKU-110K CSV and a provenance manifest.

Region exports stream from the database a chunk at a time (report.region_chunks) into any binary file, so a
million regions cost the memory of one chunk. Every CSV cell a spreadsheet would run as a formula is made inert.
COCO and SKU-110K exports re-import through shelf.ingest.boxfiles with the same boxes; photos that share a file name get
the photo's hash in theirs, so boxes from two different IMG_0001.jpg never merge.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable
from typing import BinaryIO

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import shelf
from shelf.analytics import report
from shelf.analytics.tally import TallyFilter
from shelf.ingest.images import renamed_for_export
from shelf.storage.prices import region_prices
from shelf.storage.schema import THRESHOLD_STEPS, photos, threshold_step
from shelf.text import FORMULA_PREFIXES, inert, inert_frame  # noqa: F401  (FORMULA_PREFIXES: tests check with it)

DETECTION_EXPORT_COLUMNS = [
    "photo_id", "photo", "sha256", "store", "aisle", "captured_on", "region_id", "position", "x1", "y1", "x2", "y2",
    "class_index", "label", "category", "probability", "counted", "top_k", "predicted_class_index",
    "predicted_label", "predicted_probability", "corrected", "reviewer", "corrected_at", "sku", "brand",
    "sku_similarity", "run_id", "weights_verified", "weights_untrained", "price", "price_text", "price_confidence"]
FORMATS = ("csv", "coco", "sku110k")
Progress = Callable[[int], None] | None  # called with the number of regions written so far


def _csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    # CRLF as RFC 4180 says; it also makes the writer quote any cell holding a bare CR or LF.
    return inert_frame(frame).to_csv(index=False, header=header, float_format="%.6g", lineterminator="\r\n")


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return _csv_text(frame).encode("utf-8")


def _counted(chunk: pd.DataFrame, threshold: float) -> pd.Series:
    return (chunk["probability"] >= THRESHOLD_STEPS[threshold_step(threshold)]) | chunk["corrected"]


def _chunks(engine: Engine, f: TallyFilter, progress: Progress):
    done = 0
    for chunk in report.region_chunks(engine, f):
        yield chunk
        done += len(chunk)
        if progress:
            progress(done)


def write_detections_csv(engine: Engine, out: BinaryIO, f: TallyFilter = TallyFilter(), threshold: float = 0.0,
                         progress: Progress = None) -> int:
    """One row per selected region; `counted` says whether the tallies count it at `threshold`. `probability` is
    the confidence of `label`: blank where a reviewer corrected the label (the model gave none for it), as in
    the tallies; the model's own top-1 and its probability stay in `predicted_label`/`predicted_probability`.
    `price`, `price_text` and `price_confidence` are those of the shelf-edge label that prices it (read with
    `--prices`; `price` is the price each, a multi-buy shared out), blank where there is none."""
    n = 0
    out.write(_csv_text(pd.DataFrame(columns=DETECTION_EXPORT_COLUMNS)).encode("utf-8"))
    for chunk in _chunks(engine, f, progress):
        priced = chunk.merge(region_prices(engine, chunk["region_id"].tolist()), on="region_id", how="left")
        rows = priced.assign(counted=_counted(priced, threshold), predicted_probability=priced["probability"],
                             probability=priced["probability"].where(~priced["corrected"]))[DETECTION_EXPORT_COLUMNS]
        out.write(_csv_text(rows, header=False).encode("utf-8"))
        n += len(chunk)
    return n


def export_names(engine: Engine, f: TallyFilter = TallyFilter()) -> Callable[[int, str, str], str]:
    """(photo id, name, sha256) → the file name exports use: the photo's own name, made unique with its hash where
    two photos in the selection share it."""
    selected = report.selection_photos(f).subquery()
    lowered = sa.func.lower(photos.c.name)
    query = sa.select(lowered).where(photos.c.id.in_(sa.select(selected.c.id))).group_by(lowered) \
        .having(sa.func.count() > 1)
    with engine.connect() as conn:
        clashes = set(conn.execute(query).scalars())

    def name(_photo_id: int, photo: str, sha256: str) -> str:
        if photo.lower() not in clashes:
            return photo
        return renamed_for_export(photo, sha256)
    return name


def write_sku110k_csv(engine: Engine, out: BinaryIO, f: TallyFilter = TallyFilter(),
                      progress: Progress = None) -> int:
    """SKU-110K's layout: image_name,x1,y1,x2,y2,class,image_width,image_height (no header); class = the label."""
    name, n = export_names(engine, f), 0
    for chunk in _chunks(engine, f, progress):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for r in chunk.itertuples():
            writer.writerow([inert(name(r.photo_id, r.photo, r.sha256)), int(r.x1), int(r.y1), int(r.x2), int(r.y2),
                             inert(r.label), int(r.width), int(r.height)])
        out.write(buffer.getvalue().encode("utf-8"))
        n += len(chunk)
    return n


def write_coco_json(engine: Engine, out: BinaryIO, f: TallyFilter = TallyFilter(), progress: Progress = None) -> int:
    """COCO detection format; category ids are ImageNet class indices, supercategories the retail categories.
    `score` is the confidence of `category_id`: null for a corrected region, which also carries the model's own
    `predicted_category_id` and `predicted_score`. Written as it streams: images and categories are collected (one
    entry per photo / class), annotations are not."""
    name, n = export_names(engine, f), 0
    images: dict[int, dict] = {}
    categories: dict[int, dict] = {}
    info = {"description": "Shelf regions", "version": shelf.__version__,
            "date_created": dt.datetime.now(dt.timezone.utc).isoformat()}
    out.write(b'{"info": ' + json.dumps(info).encode() + b', "annotations": [')
    for chunk in _chunks(engine, f, progress):
        for r in chunk.itertuples():
            images.setdefault(int(r.photo_id), {"id": int(r.photo_id), "file_name": name(r.photo_id, r.photo, r.sha256),
                                                "width": int(r.width), "height": int(r.height), "sha256": r.sha256})
            categories.setdefault(int(r.class_index), {"id": int(r.class_index), "name": r.label,
                                                       "supercategory": r.category})
            annotation = {"id": int(r.region_id), "image_id": int(r.photo_id),
                          "bbox": [int(r.x1), int(r.y1), int(r.x2 - r.x1), int(r.y2 - r.y1)],
                          "area": int((r.x2 - r.x1) * (r.y2 - r.y1)), "iscrowd": 0, "category_id": int(r.class_index),
                          "score": None if r.corrected else round(float(r.probability), 6),
                          "corrected": bool(r.corrected)}
            if r.corrected:
                annotation.update(predicted_category_id=int(r.predicted_class_index),
                                  predicted_score=round(float(r.probability), 6))
            out.write((b",\n" if n else b"\n") + json.dumps(annotation).encode())
            n += 1
    out.write(b'\n], "images": ' + json.dumps(list(images.values())).encode()
              + b', "categories": ' + json.dumps(sorted(categories.values(), key=lambda c: c["id"])).encode() + b"}\n")
    return n


WRITERS = {"csv": write_detections_csv, "coco": write_coco_json, "sku110k": write_sku110k_csv}


def write_regions(fmt: str, engine: Engine, out: BinaryIO, f: TallyFilter = TallyFilter(), threshold: float = 0.0,
                  progress: Progress = None) -> int:
    """Write the selected regions in `fmt` (csv | coco | sku110k); returns how many."""
    if fmt == "csv":
        return write_detections_csv(engine, out, f, threshold, progress)
    return WRITERS[fmt](engine, out, f, progress=progress)


def regions_bytes(fmt: str, engine: Engine, f: TallyFilter = TallyFilter(), threshold: float = 0.0) -> bytes:
    buffer = io.BytesIO()
    write_regions(fmt, engine, buffer, f, threshold)
    return buffer.getvalue()


def manifest_json(engine: Engine, f: TallyFilter = TallyFilter(), description: dict | None = None) -> bytes:
    """What produced an export: every run behind its regions (weights, versions, preprocessing, backend, regions)."""
    from shelf.storage.store import runs_frame
    with engine.connect() as conn:
        run_ids = conn.execute(report.selection_runs(f)).scalars().all()
    used = runs_frame(engine, run_ids)
    total = report.totals(engine, 0.0, f)
    document = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "shelf_version": shelf.__version__,
        "export": description or {},
        "photos": report.selection_size(engine, f)[1],
        "regions": total.regions,
        "corrected_regions": total.corrected,
        "runs": json.loads(used.to_json(orient="records", date_format="iso")),
        "unverified_weights_used": bool((~used["weights_verified"].astype(bool)).any()) if len(used) else False,
    }
    return json.dumps(document, indent=1, default=str).encode("utf-8")

