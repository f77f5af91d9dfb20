"""SKU catalog: matching math on hand-built embeddings, then real (untrained) embeddings of generated products."""
import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from shelf.analytics.tally import tally
from shelf.recognition import catalog
from shelf.recognition.catalog import (
    UNKNOWN,
    build_index,
    evaluate,
    known_unknown_f1,
    leave_one_out,
    match,
    suggest_threshold,
)
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from tests.conftest import image_bytes
from tests.reference import load_detections
from tests.synthetic import make_product


def unit(*values):
    v = np.zeros(512, np.float32)
    v[: len(values)] = values
    return v


@pytest.fixture
def hand_built():
    # SKU 10 points along x, SKU 20 along y; each has two slightly different references.
    embeddings = np.stack([unit(1, 0.1), unit(1, -0.1), unit(0.1, 1), unit(-0.1, 1)])
    return embeddings, [10, 10, 20, 20]


def test_nearest_sku_wins_and_far_queries_are_unknown(hand_built):
    index = build_index(*hand_built)
    queries = np.stack([unit(2, 0.3), unit(0, 5), unit(0, 0, 1)])  # scale does not matter; z is neither SKU
    for method in catalog.METHODS:
        found = match(index, queries, threshold=0.9, method=method)
        assert found.sku_ids == [10, 20, None]
        assert found.best_sku_ids[:2] == [10, 20]
        assert found.similarity[2] == pytest.approx(0.0, abs=1e-6)


def test_similarities_are_one_matrix_product_of_the_right_shape(hand_built):
    index = build_index(*hand_built)
    queries = np.random.default_rng(0).normal(size=(7, 512)).astype(np.float32)
    sims = catalog.similarities(index, queries)
    assert sims.shape == (7, 2)
    expected = catalog.l2_normalise(queries) @ catalog.l2_normalise(hand_built[0]).T
    assert np.allclose(sims[:, 0], expected[:, :2].max(axis=1)) and np.allclose(sims[:, 1], expected[:, 2:].max(1))


def test_an_empty_catalog_matches_nothing():
    index = build_index(np.zeros((0, 512), np.float32), [])
    assert match(index, np.ones((2, 512), np.float32), 0.5).sku_ids == [None, None]


def test_leave_one_out_and_the_suggested_threshold(hand_built):
    results = leave_one_out(*hand_built)
    assert results["predicted"].tolist() == results["true"].tolist() == [10, 10, 20, 20]
    # With its own SKU present a reference finds its twin (cos ≈ 0.98); without, the other SKU (cos ≈ 0.2).
    assert (results["similarity"] > 0.95).all() and (results["unknown_similarity"] < 0.25).all()
    threshold, f1 = suggest_threshold(results)
    assert 0.2 < threshold <= results["similarity"].min() and f1 == 1.0
    assert known_unknown_f1(results, 0.0) < 1.0  # accepting everything lets the unknowns in


def test_known_unknown_f1_by_hand():
    results = pd.DataFrame({"true": [1, 1, 2], "predicted": [1, 2, 2], "similarity": [0.9, 0.8, 0.5],
                            "unknown_similarity": [0.3, 0.85, 0.2]})
    # threshold 0.6: TP = row 0; FP = row 1 (wrong) + row 1's unknown case (0.85); FN = row 2 (correct, too low)
    assert known_unknown_f1(results, 0.6) == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))


def test_evaluation_math_by_hand():
    report = evaluate(true=[1, 1, 2, 2, None], predicted=[1, 2, 2, 2, 1], similarity=[0.9, 0.95, 0.8, 0.4, 0.7],
                      threshold=0.5)
    # After the threshold: [1, 2, 2, UNKNOWN, 1] against truth [1, 1, 2, 2, UNKNOWN]
    assert report.accuracy == pytest.approx(2 / 5)
    per_sku = report.per_sku.set_index("sku")
    assert per_sku.loc[1, "precision"] == pytest.approx(1 / 2) and per_sku.loc[1, "recall"] == pytest.approx(1 / 2)
    assert per_sku.loc[2, "precision"] == pytest.approx(1 / 2) and per_sku.loc[2, "recall"] == pytest.approx(1 / 2)
    confusion = {(t, p): c for t, p, c in report.confusion.itertuples(index=False)}
    assert confusion == {(1, 1): 1, (1, 2): 1, (2, 2): 1, (2, UNKNOWN): 1, (UNKNOWN, 1): 1}
    assert report.worst.iloc[0].tolist() == [1, 2, 0.95]  # the most confident mistake first
    assert report.worst.index[0] == 1  # its position in the input, to find its photo


# --- generated products, real embeddings (untrained weights) ------------------------------------------------

SKUS, REFERENCE_VIEWS, QUERY_VIEWS = 12, 3, 3


@pytest.fixture(scope="module")
def product_embeddings(loaded):
    from shelf.recognition.classify import classify_images
    images = [make_product(s, v) for s in range(SKUS + 4) for v in range(REFERENCE_VIEWS + QUERY_VIEWS)]
    vectors = np.stack([r.embedding for r in classify_images(loaded, images, batch_size=32)])
    return vectors.reshape(SKUS + 4, REFERENCE_VIEWS + QUERY_VIEWS, 512)


def test_matching_beats_chance_by_far_on_new_views(product_embeddings):
    refs = product_embeddings[:SKUS, :REFERENCE_VIEWS].reshape(-1, 512)
    index = build_index(refs, np.repeat(np.arange(SKUS), REFERENCE_VIEWS))
    queries = product_embeddings[:SKUS, REFERENCE_VIEWS:].reshape(-1, 512)
    found = match(index, queries, threshold=-1.0)
    accuracy = np.mean(np.array(found.best_sku_ids) == np.repeat(np.arange(SKUS), QUERY_VIEWS))
    assert accuracy >= 0.6, accuracy  # chance is 1/12 ≈ 0.08


def test_products_outside_the_catalog_come_out_unknown(product_embeddings):
    refs = product_embeddings[:SKUS, :REFERENCE_VIEWS].reshape(-1, 512)
    sku_ids = np.repeat(np.arange(SKUS), REFERENCE_VIEWS)
    threshold, _ = suggest_threshold(leave_one_out(refs, sku_ids))
    index = build_index(refs, sku_ids)
    strangers = product_embeddings[SKUS:].reshape(-1, 512)
    known = product_embeddings[:SKUS, REFERENCE_VIEWS:].reshape(-1, 512)
    unknown_rate = np.mean([s is None for s in match(index, strangers, threshold).sku_ids])
    false_unknown_rate = np.mean([s is None for s in match(index, known, threshold).sku_ids])
    assert unknown_rate >= 0.5 and unknown_rate > false_unknown_rate, (unknown_rate, false_unknown_rate)


def test_float16_embeddings_match_as_float32_ones_do(product_embeddings):
    """Region embeddings are stored as float16 (half the bytes): the matches they give are the same."""
    refs = product_embeddings[:SKUS, :REFERENCE_VIEWS].reshape(-1, 512)
    index = build_index(refs, np.repeat(np.arange(SKUS), REFERENCE_VIEWS))
    queries = product_embeddings[:, REFERENCE_VIEWS:].reshape(-1, 512)
    stored = store.embedding_array(store.embedding_bytes(queries))
    full, half = match(index, queries, threshold=-1.0), match(index, stored, threshold=-1.0)
    assert half.best_sku_ids == full.best_sku_ids
    assert np.abs(half.similarity - full.similarity).max() < 1e-3


# --- the catalog in the store ---------------------------------------------------------------------------------


def png(sku, view):
    return image_bytes(make_product(sku, view), "PNG")


def test_sku_validation(engine):
    catalog.add_sku(engine, "Cola 1.5 L", "Fizzy", "Beverages", "5449000000996")
    with pytest.raises(catalog.CatalogError, match="already exists"):
        catalog.add_sku(engine, "Cola 1.5 L", "Fizzy", "Beverages")
    for args, problem in [(("", "b", "Beverages"), "name"), (("x", "b", "Weapons"), "category"),
                          (("y", "b", "Beverages", "12ab"), "GTIN")]:
        with pytest.raises(catalog.CatalogError, match=problem):
            catalog.add_sku(engine, *args)


def test_references_are_decoded_safely_and_embedded_once_per_weights(engine, loaded, monkeypatch):
    sku = catalog.add_sku(engine, "Crisps", "Crunch", "Snacks & packaged food")
    added, problems = catalog.add_references(engine, sku, [("a.png", png(0, 0)), ("b.png", png(0, 1)),
                                                           ("bad.jpg", b"not an image"), ("a-again.png", png(0, 0))])
    assert added == 2 and len(problems) == 2 and problems[0].startswith("bad.jpg: ")
    first, ids, _ = catalog.reference_embeddings(engine, loaded)
    assert first.shape == (2, 512) and ids.tolist() == [sku, sku]
    import shelf.recognition.classify
    real = shelf.recognition.classify.classify_inputs
    monkeypatch.setattr(shelf.recognition.classify, "classify_inputs", lambda *a, **k: pytest.fail("recomputed"))
    again, _, _ = catalog.reference_embeddings(engine, loaded)  # cached in the store
    assert np.array_equal(first, again)
    import dataclasses
    other = dataclasses.replace(loaded, weights=dataclasses.replace(loaded.weights, sha256="f" * 64))
    computed = []
    monkeypatch.setattr(shelf.recognition.classify, "classify_inputs",
                        lambda *a, **k: computed.append(1) or real(*a, **k))
    catalog.reference_embeddings(engine, other)  # other weights: embeddings are computed afresh
    assert computed


def test_recognize_with_the_catalog_names_skus_and_tallies_by_brand(engine, loaded):
    for sku in range(3):
        sku_id = catalog.add_sku(engine, f"SKU {sku}", f"Brand {'AB'[sku % 2]}", "Beverages")
        catalog.add_references(engine, sku_id, [(f"{sku}-{v}.png", png(sku, v)) for v in range(3)])
    index = catalog.load_index(engine, loaded)
    uploads = [Upload(f"shelf-{sku}.png", png(sku, 7)) for sku in range(3)] + [Upload("stranger.png", png(77, 1))]
    results = recognize(loaded, engine, uploads, store.Context("North"), catalog=index, catalog_threshold=0.0)
    assert all(r.regions[0].sku_id is not None for r in results)  # threshold 0: everything gets its nearest SKU
    detections = load_detections(engine)
    assert set(detections["brand"]) <= {"Brand A", "Brand B"} and set(detections["category"]) == {"Beverages"}
    by_brand = tally(detections, ["store", "brand"])
    assert by_brand["share"].sum() == pytest.approx(1.0) and by_brand["facings"].sum() == 4
    fresh = detections.set_index("region_id")["sku"]  # matched from float32 embeddings at recognition
    assert catalog.match_stored_regions(engine, index, loaded.weights.sha256, 0.0) == 4  # from stored float16
    assert load_detections(engine).set_index("region_id")["sku"].equals(fresh)
    strict = 1.01  # nothing is that similar: every region becomes Unknown on a re-match
    assert catalog.match_stored_regions(engine, index, loaded.weights.sha256, strict) == 4
    assert set(load_detections(engine)["sku"]) == {"Unknown"}
    with engine.connect() as conn:
        import json

        import sqlalchemy as sa
        provenance = json.loads(conn.execute(sa.select(store.runs.c.preprocessing)).scalar_one())
    assert provenance["catalog"]["skus"] == 3 and provenance["catalog"]["references"] == 9


def test_removing_a_sku_turns_its_matches_unknown(engine, loaded):
    sku_id = catalog.add_sku(engine, "Only", "", "Produce")
    catalog.add_references(engine, sku_id, [("r.png", png(3, 0))])
    recognize(loaded, engine, [Upload("q.png", png(3, 4))], store.Context(),
              catalog=catalog.load_index(engine, loaded), catalog_threshold=0.0)
    assert load_detections(engine)["sku"].tolist() == ["Only"]
    catalog.remove_sku(engine, sku_id)
    assert load_detections(engine)["sku"].tolist() == ["Unknown"]


def test_threshold_setting_round_trips(engine):
    assert catalog.get_threshold(engine) == catalog.DEFAULT_THRESHOLD
    catalog.set_threshold(engine, 0.93)
    assert catalog.get_threshold(engine) == 0.93
    with pytest.raises(catalog.CatalogError):
        catalog.set_threshold(engine, 3)


def _zip(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_labelled_zip_reads_sku_folders_and_refuses_bombs(monkeypatch):
    items, _ = catalog.labelled_from_zip(_zip([("set/Cola/1.png", b"a"), ("set/Crisps/2.png", b"b"),
                                               ("__MACOSX/set/._1.png", b"x"), ("loose.png", b"c")]))
    assert [(n, s) for n, _, s in items] == [("1.png", "Cola"), ("2.png", "Crisps")]
    monkeypatch.setattr(catalog, "MAX_LABELLED_BYTES", 10)
    with pytest.raises(catalog.CatalogError, match="unpacks to more than"):
        catalog.labelled_from_zip(_zip([("Cola/1.png", b"x" * 11)]))
    with pytest.raises(catalog.CatalogError, match="not a zip"):
        catalog.labelled_from_zip(b"PK but not really")


def test_labelled_csv_never_reads_outside_its_folder(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "a.png").write_bytes(b"a")
    (tmp_path / "secret.png").write_bytes(b"s")
    listing = tmp_path / "set" / "labels.csv"
    listing.write_text("file,sku\na.png,Cola\n../secret.png,Cola\n/etc/passwd,Cola\n")
    items, problems = catalog.labelled_from_csv(listing)
    assert [(n, s) for n, _, s in items] == [("a.png", "Cola")]
    assert len(problems) == 2 and "line 3" in problems[0]


def test_cli_catalog(tmp_path, capsys):
    from shelf.serving.cli import main as cli
    db = f"sqlite:///{tmp_path / 'c.db'}"
    for sku in range(2):
        folder = tmp_path / "refs" / f"SKU{sku}"
        folder.mkdir(parents=True)
        for v in range(3):
            (folder / f"{v}.png").write_bytes(png(sku, v))
        assert cli(["catalog", "add", f"SKU{sku}", *map(str, folder.glob("*.png")), "--brand", "B",
                    "--category", "Beverages", "--db", db]) == 0
    assert cli(["catalog", "list", "--db", db]) == 0
    assert "SKU1" in capsys.readouterr().out
    assert cli(["catalog", "evaluate", "--db", db]) == 0
    output = capsys.readouterr().out
    assert "leave-one-out over 6 reference photo(s) of 2 SKU(s)" in output and "suggested threshold" in output
    assert cli(["catalog", "evaluate", "--labelled", str(tmp_path / "refs"), "--db", db]) == 0
    assert "labelled set: 6 photo(s)" in capsys.readouterr().out
    assert cli(["catalog", "remove", "SKU0", "--db", db]) == 0
    assert cli(["catalog", "remove", "SKU0", "--db", db]) == 1


def test_reviewed_regions_can_become_references(engine, loaded):
    photo = png(4, 0)
    (result,) = recognize(loaded, engine, [Upload("shelf.png", photo)], store.Context(), region_mode="grid:1x2")
    region_ids = [int(i) for i in load_detections(engine)["region_id"]]
    store.add_corrections(engine, {region_ids[0]: (737, "pop bottle")}, "Ana")
    sku = catalog.add_sku(engine, "Promoted", "", "Beverages")
    added, problems = catalog.promote_regions(engine, sku, [region_ids[0], 999])
    assert added == 1 and problems == ["region 999: not in the store"]
    embeddings, ids, _ = catalog.reference_embeddings(engine, loaded)
    assert ids.tolist() == [sku]
    box = result.regions[0].box
    import io as io_

    from PIL import Image
    crop = Image.open(io_.BytesIO(photo)).convert("RGB").crop(box.as_tuple)
    from shelf.recognition.classify import classify_images
    (direct,) = classify_images(loaded, [crop])
    assert np.allclose(embeddings[0], direct.embedding, atol=1e-5)  # the crop, exactly
