"""Review corrections, the category map, and exports (round trips and formula safety)."""
import csv
import io
import json

import pandas as pd
import pytest

from shelf import categories, export, store
from shelf.boxfiles import boxes_for_photo, parse_box_file
from shelf.detections import load_detections
from shelf.pipeline import Upload, recognize
from shelf.review import ReviewFilter, corrections_from_edits, label_choice, parse_label_choice, review_queue
from shelf.tally import tally
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


def test_review_queue_is_least_confident_first_and_hides_reviewed(stored):
    detections = load_detections(stored)
    queue = review_queue(detections, ReviewFilter())
    assert queue["probability"].is_monotonic_increasing and len(queue) == 18
    first = int(queue.iloc[0].region_id)
    store.add_corrections(stored, {first: (931, "bagel")}, "Ana")
    after = review_queue(load_detections(stored), ReviewFilter())
    assert first not in set(after.region_id) and len(after) == 17
    assert first in set(review_queue(load_detections(stored), ReviewFilter(include_reviewed=True)).region_id)
    band = review_queue(detections, ReviewFilter(confidence=(0.0, float(queue.probability.iloc[2]))))
    assert len(band) >= 3 and band["probability"].max() <= queue.probability.iloc[2]


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
    detections = load_detections(stored)
    for data in (export.detections_csv(detections), export.to_csv_bytes(tally(detections, ["store", "aisle"])),
                 export.sku110k_csv(detections.assign(label=HOSTILE))):
        cells = [cell for row in _rows(data) for cell in row]
        assert not any(cell.startswith(export.FORMULA_PREFIXES) for cell in cells)
        assert "'" + HOSTILE in cells


def test_detections_csv_matches_the_store(stored):
    detections = load_detections(stored)
    frame = pd.read_csv(io.BytesIO(export.detections_csv(detections)), keep_default_na=False)
    assert len(frame) == 18 and frame.columns.tolist() == export.DETECTION_EXPORT_COLUMNS
    assert frame["region_id"].tolist() == detections["region_id"].tolist()
    assert frame["class_index"].tolist() == detections["class_index"].tolist()
    assert frame["probability"].tolist() == pytest.approx(detections["probability"].tolist(), rel=1e-5)
    assert set(frame["aisle"]) == {"'+7"}


@pytest.mark.parametrize("fmt", ["coco", "sku110k"])
def test_exports_reimport_with_the_same_boxes(stored, fmt):
    detections = load_detections(stored)
    data = export.coco_json(detections) if fmt == "coco" else export.sku110k_csv(detections)
    imported = parse_box_file(data, "export.json" if fmt == "coco" else "export.csv")
    assert imported.n_problems == 0 and imported.n_boxes == 18
    names = export.export_names(detections)
    assert len(set(names.values())) == 3  # the two aisle.jpg photos do not merge
    for photo_id, group in detections.groupby("photo_id"):
        boxes, messages = boxes_for_photo(imported, names[photo_id], int(group.width.iloc[0]),
                                          int(group.height.iloc[0]))
        assert messages == []
        assert sorted(b.as_tuple for b in boxes) == sorted(zip(group.x1, group.y1, group.x2, group.y2))


def test_coco_carries_classes_scores_and_categories(stored):
    detections = load_detections(stored)
    document = json.loads(export.coco_json(detections))
    assert {a["category_id"] for a in document["annotations"]} == set(detections.class_index)
    assert {c["id"] for c in document["categories"]} == set(detections.class_index)
    assert all(0 <= a["score"] <= 1 for a in document["annotations"])


def test_manifest_lists_the_runs_behind_the_export(stored, loaded):
    detections = load_detections(stored)
    manifest = json.loads(export.manifest_json(detections, store.runs_frame(stored), {"threshold": 0.5}))
    (run,) = manifest["runs"]
    assert run["weights_sha256"] == loaded.weights.sha256 and run["region_mode"] == "grid:2x3"
    assert run["preprocessing"]["crop_mode"] == "center" and manifest["unverified_weights_used"] is True
    assert manifest["regions"] == 18 and manifest["export"] == {"threshold": 0.5}


def test_exports_cover_exactly_the_rows_given(stored):
    detections = load_detections(stored)
    one = detections[detections.photo == "other.jpg"]
    assert len(_rows(export.sku110k_csv(one))) == 6
    assert len(json.loads(export.coco_json(one))["images"]) == 1


def test_cli_export_round_trip(stored, tmp_path, capsys):
    from shelf.cli import main as cli
    url = str(stored.url)
    for what, fmt, name in [("detections", "csv", "d.csv"), ("detections", "coco", "d.json"),
                            ("detections", "sku110k", "s.csv"), ("tallies", "csv", "t.csv"),
                            ("manifest", "csv", "m.json")]:
        assert cli(["export", what, "--format", fmt, "--db", url, "--out", str(tmp_path / name)]) == 0
    assert parse_box_file((tmp_path / "s.csv").read_bytes(), "s.csv").n_boxes == 18
    assert json.loads((tmp_path / "m.json").read_text())["regions"] == 18
    assert pd.read_csv(tmp_path / "t.csv")["facings"].sum() == 18
