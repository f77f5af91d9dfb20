"""A chain's store, generated in bulk: `seed(url, n_photos, regions_per_photo)`.

What it looks like: 100 stores × 10 aisles; each aisle has an assortment of 12 products (an ImageNet shelf class and,
for most, a catalog SKU); a photo shows 40 cells of its aisle's shelf, the model's top-1 is the product's class
85 % of the time, its confidence spread around a per-product level; 20 photos per store a day (2 per aisle); 0.5 %
of regions corrected by a reviewer; 60 % of photos were matched against the catalog; photos were recognised in auto
mode and 2.5 % of their cells are empty gaps (regions of kind gap, never counted as facings). Rows go in through the
bulk path of each database (PostgreSQL COPY, SQLite executemany) with the same columns the product writes, then the
rollups are built once — the product's own shelf.storage.rollup.rebuild.
"""
from __future__ import annotations

import datetime as dt
import io
import time

import numpy as np
import sqlalchemy as sa

from shelf.labels import default_map
from shelf.storage import rollup, store
from shelf.storage.schema import THRESHOLD_STEPS

N_STORES, AISLES, ASSORTMENT, PHOTOS_PER_STORE_DAY = 100, 10, 12, 20
FIRST_DAY = dt.date(2026, 1, 1)
CHUNK_PHOTOS = 5_000
NULL = "\\N"  # COPY's text format


def _assortments(rng: np.random.Generator, shelf_classes: np.ndarray, n_skus: int):
    """Per (store, aisle): the class, SKU (-1 none) and confidence level of each of its products."""
    classes = rng.choice(shelf_classes, size=(N_STORES * AISLES, ASSORTMENT))
    skus = np.where(rng.random((N_STORES * AISLES, ASSORTMENT)) < 0.8,
                    rng.integers(1, n_skus + 1, (N_STORES * AISLES, ASSORTMENT)), -1)
    level = rng.beta(4, 2, (N_STORES * AISLES, ASSORTMENT))
    return classes, skus, level


def _photo_rows(start: int, count: int) -> list[dict]:
    now = store.utc_now()
    rows = []
    for n in range(start, start + count):
        place = n % (N_STORES * AISLES * 2) // 2  # two photos per aisle a day
        day = FIRST_DAY + dt.timedelta(days=n // (N_STORES * PHOTOS_PER_STORE_DAY))
        rows.append({"id": n + 1, "sha256": f"{n:064x}", "name": f"IMG_{n:07d}.jpg", "format": "JPEG",
                     "width": 4000, "height": 3000, "n_bytes": 0, "file": f"photos/{n:064x}.jpg",
                     "store": f"Store {place // AISLES:03d}", "aisle": f"Aisle {place % AISLES + 1}",
                     "captured_on": day, "day": day.toordinal(), "created_at": now})
    return rows


def _region_arrays(rng, first_photo: int, count: int, per_photo: int, assortments, shelf_classes):
    """Column arrays for `count` photos' regions (ids continue from photo ids: region id = photo_index*per+pos+1)."""
    classes, skus, level = assortments
    photo_index = np.repeat(np.arange(first_photo, first_photo + count), per_photo)
    place = photo_index % (N_STORES * AISLES * 2) // 2
    product = rng.integers(0, ASSORTMENT, photo_index.size)
    true_class = classes[place, product]
    confused = rng.random(photo_index.size) > 0.85
    predicted = np.where(confused, rng.choice(shelf_classes, photo_index.size), true_class)
    probability = np.clip(level[place, product] + rng.normal(0, 0.12, photo_index.size), 0.01, 1.0)
    probability = np.where(confused, probability * 0.5, probability)
    matched = (photo_index % 5) < 3  # 60 % of photos were matched against the catalog
    sku = np.where(matched & (skus[place, product] > 0) & ~confused, skus[place, product], -1)
    similarity = np.where(matched, rng.uniform(0.6, 0.99, photo_index.size), np.nan)
    corrected = rng.random(photo_index.size) < 0.005
    effective = np.where(corrected, true_class, predicted)
    position = np.tile(np.arange(per_photo), count)
    # the last 0, 1 or 2 cells of a photo are empty gaps (numbered after the products, as the store numbers them);
    # no draw, so the generator's stream (which benchmarks/compliance.py replays) is unchanged
    kind = np.where(position >= per_photo - photo_index % 3, "gap", "product")
    return {"id": photo_index * per_photo + position + 1, "photo_id": photo_index + 1, "position": position,
            "kind": kind,
            "predicted": predicted, "probability": probability,
            "bin": np.searchsorted(np.array(THRESHOLD_STEPS), probability, side="right") - 1,
            "class_index": effective, "corrected": corrected, "sku": sku, "similarity": similarity}


def _region_dicts(a: dict, run_id: int) -> list[dict]:
    return [{"id": int(i), "photo_id": int(p), "run_id": run_id, "position": int(pos), "x1": int(pos) * 100,
             "y1": 0, "x2": int(pos) * 100 + 100, "y2": 600, "kind": str(k), "active": True,
             "predicted_class_index": int(pc), "probability": float(pr), "bin": int(b), "class_index": int(c),
             "corrected": bool(co), "sku_id": int(s) if s > 0 else None,
             "sku_similarity": None if np.isnan(si) else float(si)}
            for i, p, pos, k, pc, pr, b, c, co, s, si in zip(a["id"], a["photo_id"], a["position"], a["kind"],
                                                              a["predicted"], a["probability"], a["bin"],
                                                              a["class_index"], a["corrected"], a["sku"],
                                                              a["similarity"])]


def _copy_text(conn, table: str, columns: list[str], lines: list[str]) -> None:
    with conn.connection.driver_connection.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write("".join(lines))


def _copy_binary(conn, table: str, columns: list[str], types: list[str], rows) -> None:
    with conn.connection.driver_connection.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _write_chunk(conn, a: dict, run_id: int, rng) -> None:
    n = a["id"].size
    embeddings = rng.standard_normal((n, 512), dtype=np.float32).astype("<f2")
    photo_ids, starts = np.unique(a["photo_id"], return_index=True)
    per_photo = np.split(embeddings, starts[1:])  # one row of N × 512 float16 per photo, as the store writes
    second, third = (a["predicted"] + 1) % 1000, (a["predicted"] + 2) % 1000
    if conn.dialect.name == "postgresql":
        text = io.StringIO()
        for i, p, pos, k, pc, pr, b, c, co, s, si in zip(a["id"], a["photo_id"], a["position"], a["kind"],
                                                          a["predicted"], a["probability"], a["bin"],
                                                          a["class_index"], a["corrected"], a["sku"],
                                                          a["similarity"]):
            sku = s if s > 0 else NULL
            sim = NULL if np.isnan(si) else repr(float(si))
            text.write(f"{i}\t{p}\t{run_id}\t{pos}\t{pos * 100}\t0\t{pos * 100 + 100}\t600\t{k}\tt\t{pc}\t"
                       f"{float(pr)!r}\t{b}\t{c}\t{'t' if co else 'f'}\t{sku}\t{sim}\n")
        _copy_text(conn, "regions", ["id", "photo_id", "run_id", "position", "x1", "y1", "x2", "y2", "kind", "active",
                                     "predicted_class_index", "probability", "bin", "class_index", "corrected",
                                     "sku_id", "sku_similarity"], [text.getvalue()])
        lines = [f"{i}\t1\t{pc}\t{pr!r}\n{i}\t2\t{b}\t{(1 - pr) * 0.6!r}\n{i}\t3\t{c}\t{(1 - pr) * 0.3!r}\n"
                 for i, pc, pr, b, c in zip(a["id"], a["predicted"], a["probability"].tolist(), second, third)]
        _copy_text(conn, "predictions", ["region_id", "rank", "class_index", "probability"], lines)
        _copy_binary(conn, "embeddings", ["photo_id", "run_id", "vectors"], ["int4", "int4", "bytea"],
                     ((int(p), run_id, e.tobytes()) for p, e in zip(photo_ids, per_photo)))
        return
    conn.execute(store.regions.insert(), _region_dicts(a, run_id))
    conn.execute(store.predictions.insert(), [
        {"region_id": int(i), "rank": rank, "class_index": int(c), "probability": float(p)}
        for i, pc, pr, b, c3 in zip(a["id"], a["predicted"], a["probability"], second, third)
        for rank, c, p in ((1, pc, pr), (2, b, (1 - pr) * 0.6), (3, c3, (1 - pr) * 0.3))])
    conn.execute(store.embeddings.insert(), [{"photo_id": int(p), "run_id": run_id, "vectors": e.tobytes()}
                                             for p, e in zip(photo_ids, per_photo)])


def _corrections(conn, a: dict) -> None:
    rows = [{"region_id": int(i), "class_index": int(c), "label": "", "reviewer": "bench",
             "created_at": store.utc_now()} for i, c, co in zip(a["id"], a["class_index"], a["corrected"]) if co]
    if rows:
        conn.execute(store.corrections.insert(), rows)


def seed(url: str, n_photos: int, per_photo: int = 40, report=print) -> float:
    """Fill the store at `url` with `n_photos` generated photos (on top of none); returns seconds taken."""
    engine = store.open_store(url)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    shelf_classes = np.array(sorted(i for i, c in default_map().items() if c != "Not a product"))
    assortments = _assortments(rng, shelf_classes, n_skus=300)
    run_id = store.create_run(engine, {"weights_sha256": "0" * 64, "weights_source": "benchmark",
                                       "weights_verified": False, "weights_untrained": True, "torch_version": "",
                                       "torchvision_version": "", "shelf_version": "", "preprocessing": {},
                                       "backend": "generated", "region_mode": "auto", "top_k": 3})
    with store.write_transaction(engine) as conn:
        conn.execute(store.skus.insert(), [{"id": k, "name": f"SKU {k:03d}", "brand": f"Brand {k % 40:02d}",
                                            "category": default_map()[int(shelf_classes[k % len(shelf_classes)])],
                                            "created_at": store.utc_now()} for k in range(1, 301)])
    with store.write_transaction(engine) as conn:  # a bulk load builds secondary indexes once, at the end
        for index in store.regions.indexes:
            index.drop(conn)
    for first in range(0, n_photos, CHUNK_PHOTOS):
        count = min(CHUNK_PHOTOS, n_photos - first)
        a = _region_arrays(rng, first, count, per_photo, assortments, shelf_classes)
        with store.write_transaction(engine) as conn:
            conn.execute(store.photos.insert(), _photo_rows(first, count))
            _write_chunk(conn, a, run_id, rng)
            _corrections(conn, a)
        done = first + count
        report(f"  seeded {done:,} photos ({done * per_photo:,} regions), {time.perf_counter() - start:.0f} s")
    with store.write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            for table in ("photos", "regions", "skus"):  # explicit ids above: move the sequences past them
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))")
        for index in store.regions.indexes:
            index.create(conn)
        rollup.rebuild(conn)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    report(f"  rollups built; {time.perf_counter() - start:.0f} s in all")
    engine.dispose()
    return time.perf_counter() - start


def stored_photos(url: str) -> int:
    engine = store.open_store(url)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(store.photos)).scalar_one()
    engine.dispose()
    return n
