import datetime as dt
import json
import multiprocessing
import os

import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from shelf.ingest.images import decode_image
from shelf.ingest.regions import Box
from shelf.recognition.classify import Classification, Prediction
from shelf.recognition.pipeline import Upload, recognize, run_provenance
from shelf.storage import store
from tests.conftest import image_bytes, solid

CONTEXT = store.Context("Store 1", "Aisle 7", dt.date(2026, 11, 2))
TEST_RUN = {"weights_sha256": "x" * 64, "weights_source": "test", "weights_verified": False,
            "weights_untrained": True, "torch_version": "t", "torchvision_version": "tv", "shelf_version": "s",
            "preprocessing": {}, "backend": "b", "region_mode": "whole", "top_k": 1}


def fake_classification(class_index=1, probability=0.9, label="goldfish"):
    return Classification([Prediction(1, class_index, label, probability)], torch.zeros(1000), torch.ones(512))


def test_recognize_stores_photo_regions_predictions_and_provenance(loaded, any_engine, photo_bytes, shelf_env):
    engine = any_engine
    uploads = [Upload(n, d) for n, d in list(photo_bytes.items())[:2]]
    results = recognize(loaded, engine, uploads, CONTEXT, top_k=3)
    assert all(r.ok and not r.already_stored for r in results)
    assert store.counts(engine) == {"photos": 2, "regions": 2, "predictions": 6, "runs": 1, "corrections": 0,
                                    "skus": 0}
    frame = store.predictions_frame(engine)
    assert set(frame["store"]) == {"Store 1"} and set(frame["captured_on"]) == {dt.date(2026, 11, 2)}
    for result in results:
        rows = frame[frame.photo_id == result.photo_id].sort_values("rank")
        assert rows["class_index"].tolist() == [p.class_index for p in result.regions[0].predictions]
        assert rows["probability"].tolist() == pytest.approx([p.probability for p in result.regions[0].predictions])
    with engine.connect() as conn:
        run = conn.execute(sa.select(store.runs)).mappings().one()
        files = conn.execute(sa.select(store.photos.c.file)).scalars().all()
    assert run["weights_sha256"] == loaded.weights.sha256
    assert run["weights_untrained"] and not run["weights_verified"]
    assert run["backend"] == "torch eager fp32" and run["region_mode"] == "whole"
    assert json.loads(run["preprocessing"])["crop"] == [224]
    for relative in files:  # kept by content hash inside the data dir, never under the uploaded name
        path = shelf_env / "data" / relative
        assert path.is_file() and path.stem in {r.sha256 for r in results}
    assert store.region_embeddings_of(engine, results[0].photo_id).shape == (1, 512)


def test_an_id_no_row_can_have_is_no_photo(any_engine):
    """Ids come from URLs and the command line: one past the database's integers finds nothing, never an error."""
    for photo_id in (0, -1, 2**31, 2**63, 10**30):
        assert store.photo_record(any_engine, photo_id) is None
        with pytest.raises(ValueError, match=f"no such photo: {photo_id}"):
            store.photo_context(any_engine, photo_id)


def test_reuploading_the_same_photo_does_not_duplicate_it(loaded, any_engine, photo_bytes):
    engine = any_engine
    data = photo_bytes["chelsea.png"]
    first = recognize(loaded, engine, [Upload("chelsea.png", data)], CONTEXT)
    again = recognize(loaded, engine, [Upload("renamed copy.png", data), Upload("chelsea.png", data)], CONTEXT)
    assert [r.already_stored for r in again] == [True, True]
    assert {r.photo_id for r in again} == {first[0].photo_id}
    assert again[0].regions[0].predictions == first[0].regions[0].predictions  # shown from the store
    assert store.counts(engine)["photos"] == 1 and store.counts(engine)["predictions"] == 3


def test_bad_files_are_reported_and_the_batch_goes_on(loaded, any_engine, photo_bytes):
    engine = any_engine
    uploads = [Upload("good1.png", photo_bytes["coffee.png"]), Upload("notes.jpg", b"just text"),
               Upload("empty.png", b""), Upload("good2.jpg", photo_bytes["rocket.jpg"])]
    results = recognize(loaded, engine, uploads, CONTEXT)
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error.startswith("notes.jpg: ") and results[2].error.startswith("empty.png: ")
    assert store.counts(engine)["photos"] == 2


def test_a_failing_photo_is_rolled_back_whole_and_the_others_stay(any_engine, monkeypatch):
    engine = any_engine
    run_id = store.create_run(engine, TEST_RUN)
    photos = [decode_image(image_bytes(solid((i * 40, 0, 0)), "PNG"), f"p{i}.png") for i in range(3)]
    box = [Box(0, 0, 64, 48)]
    store.save_photo(engine, run_id, photos[0], b"a", CONTEXT, box, [fake_classification()])
    with pytest.raises(sa.exc.IntegrityError):  # a prediction that violates the schema, mid-transaction
        store.save_photo(engine, run_id, photos[1], b"b", CONTEXT, box, [fake_classification(class_index=None)])
    store.save_photo(engine, run_id, photos[2], b"c", CONTEXT, box, [fake_classification()])
    assert store.counts(engine) == {"photos": 2, "regions": 2, "predictions": 2, "runs": 1, "corrections": 0,
                                    "skus": 0}
    assert store.find_photo(engine, photos[1].sha256) is None


def test_context_text_is_cleaned_but_kept(any_engine, loaded, photo_bytes):
    engine = any_engine
    context = store.Context("  =HYPERLINK(\"http://x\",\"y\")\x00\n ", "<b>7</b>", None)
    recognize(loaded, engine, [Upload("a.png", photo_bytes["coffee.png"])], context)
    row = store.predictions_frame(engine).iloc[0]
    assert row.store == '=HYPERLINK("http://x","y")'  # stored verbatim; exports make it inert
    assert row.aisle == "<b>7</b>"
    assert pd.isna(row.captured_on)


def test_database_url_from_environment(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'other.db'}"
    monkeypatch.setenv("SHELF_DATABASE_URL", url)
    engine = store.open_store()
    assert str(engine.url) == url and (tmp_path / "elsewhere" / "other.db").exists()
    store.open_store()  # schema creation is idempotent


def _writer(args):
    url, data_dir, worker, n_photos, shared = args
    os.environ["SHELF_DATA_DIR"] = data_dir
    engine = store.open_store(url)
    run_id = store.create_run(engine, TEST_RUN)
    created = 0
    for i in range(n_photos):
        color = (7, 7, 7) if shared and i == 0 else (worker * 10 % 256, i * 5 % 256, 99)
        decoded = decode_image(image_bytes(solid(color, (16, 16)), "PNG"), f"w{worker}-{i}.png")
        _, new = store.save_photo(engine, run_id, decoded, b"x", store.Context(f"S{worker}"), [Box(0, 0, 16, 16)],
                                  [fake_classification(class_index=worker)])
        created += new
    return created


def test_concurrent_writers_lose_nothing_and_store_shared_photos_once(tmp_path, db_url):
    url = db_url
    store.open_store(url).dispose()
    jobs = [(url, str(tmp_path / "data"), w, 15, True) for w in range(6)]
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        created = pool.map(_writer, jobs)
    engine = store.open_store(url)
    counts = store.counts(engine)
    # Every worker stores 14 photos of its own plus one photo all six share: 6*14 + 1.
    assert sum(created) == counts["photos"] == 85
    assert counts["regions"] == counts["predictions"] == 85
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_run_provenance_names_the_weights(loaded):
    provenance = run_provenance(loaded, "whole", 3)
    assert provenance["weights_sha256"] == loaded.weights.sha256
    assert provenance["weights_untrained"] is True and provenance["weights_verified"] is False
    assert provenance["torch_version"] == torch.__version__


def test_schema_is_versioned_and_creation_is_idempotent(db_url):
    first = store.open_store(db_url)
    store.open_store(db_url)  # again: nothing to do, nothing duplicated
    with first.connect() as conn:
        assert conn.execute(sa.select(store.schema_version.c.version)).scalars().all() == [store.SCHEMA_VERSION]
    with first.begin() as conn:
        conn.execute(store.schema_version.insert().values(version=store.SCHEMA_VERSION + 1,
                                                          applied_at=store.utc_now()))
    with pytest.raises(store.SchemaError, match="newer|knows up to"):
        store.open_store(db_url)


def test_recognizing_a_stored_photo_again_replaces_its_regions_and_keeps_history(loaded, any_engine, photo_bytes):
    from shelf.analytics.report import tally_table
    engine = any_engine
    data = photo_bytes["coffee.png"]
    first = recognize(loaded, engine, [Upload("coffee.png", data)], CONTEXT, region_mode="whole")
    elsewhere = store.Context("Store 2", "Aisle 1", dt.date(2026, 11, 3))
    again = recognize(loaded, engine, [Upload("coffee.png", data)], elsewhere, region_mode="grid:2x2", again=True)
    assert again[0].ok and again[0].recognized_again and not again[0].already_stored
    assert again[0].photo_id == first[0].photo_id and len(again[0].regions) == 4
    assert store.counts(engine)["photos"] == 1
    tallies = tally_table(engine, by=("store",))
    assert tallies["store"].tolist() == ["Store 2"] and tallies["facings"].sum() == 4  # only the new regions count
    with engine.connect() as conn:
        active = conn.execute(sa.select(store.regions.c.active, sa.func.count()).group_by(store.regions.c.active))
        assert dict(active.all()) == {True: 4, False: 1}  # the first run's region stays as history
        runs = conn.execute(sa.select(store.runs.c.region_mode, store.runs.c.preprocessing)
                            .order_by(store.runs.c.id)).all()
    assert [r.region_mode for r in runs] == ["whole", "grid:2x2"]
    assert json.loads(runs[1].preprocessing)["recognized_again"] is True
    assert "recognized_again" not in json.loads(runs[0].preprocessing)
    shown = recognize(loaded, engine, [Upload("coffee.png", data)], CONTEXT)  # without `again`: the stored result
    assert shown[0].already_stored and len(shown[0].regions) == 4


def test_a_photo_can_be_moved_and_deleted(loaded, any_engine, photo_bytes, shelf_env):
    from shelf.analytics.report import tally_table
    engine = any_engine
    kept, gone = recognize(loaded, engine, [Upload("a.png", photo_bytes["coffee.png"]),
                                            Upload("b.jpg", photo_bytes["rocket.jpg"])], CONTEXT)
    store.set_photo_context(engine, kept.photo_id, store.Context(" Store 9 ", "", None))
    assert store.photo_context(engine, kept.photo_id) == store.Context("Store 9", "", None)
    assert sorted(tally_table(engine, by=("store",))["store"]) == ["Store 1", "Store 9"]
    with engine.connect() as conn:
        file = conn.execute(sa.select(store.photos.c.file).where(store.photos.c.id == gone.photo_id)).scalar_one()
    assert store.delete_photo(engine, gone.photo_id) == "b.jpg"
    assert not (shelf_env / "data" / file).exists()
    assert tally_table(engine, by=("store",))["store"].tolist() == ["Store 9"]
    assert store.photos_page(engine)["id"].tolist() == [kept.photo_id]
    with pytest.raises(ValueError, match="no such photo"):
        store.photo_context(engine, gone.photo_id)
