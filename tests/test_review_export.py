"""Review corrections, the category map, and exports (round trips and formula safety)."""
import csv
import io
import json

import pandas as pd
import pytest

from shelf.analytics import categories, export, report
from shelf.analytics.report import ReviewFilter
from shelf.analytics.review import (
    corrections_from_edits,
    label_choice,
    merge_page_edits,
    parse_label_choice,
)
from shelf.analytics.tally import TallyFilter, tally
from shelf.ingest.boxfiles import boxes_for_photo, parse_box_file
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from tests.reference import load_detections
from tests.synthetic import shelf_jpeg

HOSTILE = '=HYPERLINK("http://x","y")'


@pytest.fixture
def stored(loaded, engine):
    """Two shelf photos in grid mode, from a store whose name is a formula, plus one photo sharing a file name."""
    photos = [Upload("aisle.jpg", shelf_jpeg(11, 900, 600)[0]), Upload("other.jpg", shelf_jpeg(12, 900, 600)[0]),
              Upload("sub/aisle.jpg", shelf_jpeg(13, 900, 600)[0])]
    results = recognize(loaded, engine, photos, store.Context(HOSTILE, "+7", None), region_mode="grid:2x3")
    assert all(r.ok for r in results)
    return engine


def queue(engine, f=ReviewFilter()) -> pd.DataFrame:
    return report.review_rows(engine, f, 1, 1000)


def test_review_queue_is_least_confident_first_and_hides_reviewed(stored):
    first_page = queue(stored)
    assert first_page["probability"].is_monotonic_increasing and len(first_page) == 18
    assert report.review_count(stored, ReviewFilter()) == 18
    first = int(first_page.iloc[0].region_id)
    store.add_corrections(stored, {first: (931, "bagel")}, "Ana")
    after = queue(stored)
    assert first not in set(after.region_id) and len(after) == 17 == report.review_count(stored, ReviewFilter())
    assert first in set(queue(stored, ReviewFilter(include_reviewed=True)).region_id)
    low = queue(stored, ReviewFilter(confidence=(0.0, 0.05)))
    assert (low["probability"] < 0.05).all()
    assert len(low) == report.review_count(stored, ReviewFilter(confidence=(0.0, 0.05)))


def test_review_pages_cover_the_queue_once_in_order(stored):
    pages = [report.review_rows(stored, ReviewFilter(), page, 5) for page in (1, 2, 3, 4, 5)]
    assert [len(p) for p in pages] == [5, 5, 5, 3, 0]
    ids = [i for p in pages for i in p["region_id"]]
    assert ids == queue(stored)["region_id"].tolist() and len(set(ids)) == 18


def test_picks_are_kept_per_region_not_per_row():
    page1, page2 = [5, 6, 7], [8, 9, 10]
    nothing = [None, None, None]
    pending = merge_page_edits({}, page1, nothing, ["pop bottle (737)", None, None])
    assert pending == {5: "pop bottle (737)"}
    pending = merge_page_edits(pending, page2, nothing, nothing)  # another page: row 1 there is region 8
    assert pending == {5: "pop bottle (737)"}
    pending = merge_page_edits(pending, page2, nothing, ["bagel (931)", None, None])
    assert pending == {5: "pop bottle (737)", 8: "bagel (931)"}
    assert merge_page_edits(pending, page1, nothing, nothing) == {8: "bagel (931)"}  # emptied on its own page
    categories = merge_page_edits({}, [737, 440], ["Beverages", "Beverages"], ["Produce", "Beverages"])
    assert categories == {737: "Produce"}  # a value equal to the row's own is no edit
    assert merge_page_edits(categories, [737], ["Beverages"], ["Beverages"]) == {}  # set back: no longer pending


def test_corrections_record_who_and_when_and_the_newest_wins(stored):
    region = int(load_detections(stored).iloc[0].region_id)
    store.add_corrections(stored, {region: (931, "bagel")}, "Ana")
    store.add_corrections(stored, {region: (737, "pop bottle")}, "Ben")
    row = load_detections(stored).set_index("region_id").loc[region]
    assert (row.class_index, row.label, row.reviewer, bool(row.corrected)) == (737, "pop bottle", "Ben", True)
    assert row.category == "Beverages" and row.corrected_at is not None
    assert store.counts(stored)["corrections"] == 2  # history is kept beside the prediction
    with pytest.raises(ValueError, match="reviewer"):
        store.add_corrections(stored, {region: (1, "goldfish")}, "   ")
    with pytest.raises(ValueError, match="no such region"):
        store.add_corrections(stored, {10_000: (1, "goldfish")}, "Ana")


def test_label_choices_are_unique_and_parse_back():
    assert label_choice(134) == "crane bird (134)" and label_choice(517) == "crane (517)"
    assert parse_label_choice("crane (517)") == (517, "crane")
    for bad in ["crane", "crane (517", "crane (9999)", "goldfish (134)", None]:
        with pytest.raises(ValueError):
            parse_label_choice(bad)


def test_edits_become_corrections_only_where_they_change_something():
    queue = pd.DataFrame({"region_id": [5, 6, 7], "class_index": [440, 737, 1]})
    chosen = ["pop bottle (737)", "pop bottle (737)", None]
    assert corrections_from_edits(queue, chosen) == {5: (737, "pop bottle")}


def test_category_map_is_keyed_by_index_and_edits_persist(engine):
    shipped = categories.default_map()
    assert len(shipped) == 1000 and shipped[737] == "Beverages" and shipped[0] == "Not a product"
    categories.save_category_edits(engine, {517: "Store fixtures", 737: "Snacks & packaged food"}, "Ana")
    current = categories.category_map(store.open_store())
    assert current[517] == "Store fixtures" and current[134] == "Not a product"  # the crane bird is untouched
    categories.save_category_edits(engine, {737: "Beverages"}, "Ana")  # back to the shipped category
    assert store.category_overrides_map(engine) == {517: "Store fixtures"}
    with pytest.raises(ValueError, match="unknown categories"):
        categories.save_category_edits(engine, {1: "Weapons"}, "Ana")


def test_category_edits_change_tallies(stored):
    before = tally(load_detections(stored), ["category"])
    classes = set(load_detections(stored).class_index)
    categories.save_category_edits(stored, dict.fromkeys(classes, "Produce"), "Ana")
    after = tally(load_detections(stored), ["category"])
    assert after["category"].tolist() == ["Produce"] and after["facings"].sum() == before["facings"].sum() == 18


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


def test_formula_cells_are_inert_in_every_csv(stored):
    with store.write_transaction(stored) as conn:  # a photo name a spreadsheet would run
        conn.execute(store.photos.update().where(store.photos.c.name == "other.jpg").values(name="=SUM(1).jpg"))
    for data, hostile in ((export.regions_bytes("csv", stored), HOSTILE),
                          (export.regions_bytes("sku110k", stored), "=SUM(1).jpg"),
                          (export.to_csv_bytes(report.tally_table(stored, ["store", "aisle"])), HOSTILE)):
        cells = [cell for row in _rows(data) for cell in row]
        assert not any(cell.startswith(export.FORMULA_PREFIXES) for cell in cells)
        assert "'" + hostile in cells


def test_detections_csv_matches_the_store(stored):
    detections = load_detections(stored)
    frame = pd.read_csv(io.BytesIO(export.regions_bytes("csv", stored, threshold=0.5)), keep_default_na=False)
    assert len(frame) == 18 and frame.columns.tolist() == export.DETECTION_EXPORT_COLUMNS
    assert frame["region_id"].tolist() == detections["region_id"].tolist()
    assert frame["class_index"].tolist() == detections["class_index"].tolist()
    assert frame["probability"].tolist() == pytest.approx(detections["probability"].tolist(), rel=1e-5)
    assert frame["top_k"].tolist() == detections["top_k"].tolist()
    assert frame["counted"].tolist() == (detections["probability"] >= 0.5).tolist()
    assert set(frame["aisle"]) == {"'+7"}


def test_exports_stream_in_chunks_with_the_same_content(stored, monkeypatch):
    whole = {fmt: export.regions_bytes(fmt, stored) for fmt in export.FORMATS}
    chunks = report.region_chunks
    monkeypatch.setattr(report, "region_chunks", lambda engine, f, chunk=0: chunks(engine, f, chunk=4))
    for fmt in export.FORMATS:
        if fmt == "coco":  # the same document, apart from its creation time
            a, b = json.loads(whole[fmt]), json.loads(export.regions_bytes(fmt, stored))
            assert {k: v for k, v in a.items() if k != "info"} == {k: v for k, v in b.items() if k != "info"}
        else:
            assert export.regions_bytes(fmt, stored) == whole[fmt]


@pytest.mark.parametrize("fmt", ["coco", "sku110k"])
def test_exports_reimport_with_the_same_boxes(stored, fmt):
    detections = load_detections(stored)
    data = export.regions_bytes(fmt, stored)
    imported = parse_box_file(data, "export.json" if fmt == "coco" else "export.csv")
    assert imported.n_problems == 0 and imported.n_boxes == 18
    name = export.export_names(stored)
    names = {int(p): name(p, g.photo.iloc[0], g.sha256.iloc[0]) for p, g in detections.groupby("photo_id")}
    assert len(set(names.values())) == 3  # the two aisle.jpg photos do not merge
    assert "other.jpg" in names.values()  # a name no other photo has is kept as it is
    for photo_id, group in detections.groupby("photo_id"):
        boxes, messages = boxes_for_photo(imported, names[photo_id], int(group.width.iloc[0]),
                                          int(group.height.iloc[0]))
        assert messages == []
        assert sorted(b.as_tuple for b in boxes) == sorted(zip(group.x1, group.y1, group.x2, group.y2))


def test_coco_carries_classes_scores_and_categories(stored):
    detections = load_detections(stored)
    document = json.loads(export.regions_bytes("coco", stored))
    assert {a["category_id"] for a in document["annotations"]} == set(detections.class_index)
    assert {c["id"] for c in document["categories"]} == set(detections.class_index)
    assert all(0 <= a["score"] <= 1 for a in document["annotations"])


def test_manifest_lists_the_runs_behind_the_export(stored, loaded):
    manifest = json.loads(export.manifest_json(stored, TallyFilter(), {"threshold": 0.5}))
    (run,) = manifest["runs"]
    assert run["weights_sha256"] == loaded.weights.sha256 and run["region_mode"] == "grid:2x3"
    assert run["preprocessing"]["crop_mode"] == "center" and manifest["unverified_weights_used"] is True
    assert manifest["regions"] == 18 and manifest["photos"] == 3 and manifest["export"] == {"threshold": 0.5}


def test_exports_cover_exactly_the_selection(stored):
    detections = load_detections(stored)
    one = TallyFilter(class_indices=[int(detections.class_index.iloc[0])])
    expected = detections[detections.class_index == detections.class_index.iloc[0]]
    assert len(_rows(export.regions_bytes("sku110k", stored, one))) == len(expected)
    assert len(json.loads(export.regions_bytes("coco", stored, one))["images"]) == expected.photo_id.nunique()


def test_cli_export_round_trip(stored, tmp_path, capsys):
    from shelf.serving.cli import main as cli
    url = str(stored.url)
    for what, fmt, name in [("detections", "csv", "d.csv"), ("detections", "coco", "d.json"),
                            ("detections", "sku110k", "s.csv"), ("tallies", "csv", "t.csv"),
                            ("manifest", "csv", "m.json")]:
        assert cli(["export", what, "--format", fmt, "--db", url, "--out", str(tmp_path / name)]) == 0
    assert parse_box_file((tmp_path / "s.csv").read_bytes(), "s.csv").n_boxes == 18
    assert json.loads((tmp_path / "m.json").read_text())["regions"] == 18
    assert pd.read_csv(tmp_path / "t.csv")["facings"].sum() == 18
    assert not list(tmp_path.glob(".*partial"))
