import io
import json

import pandas as pd
import pytest
import sqlalchemy as sa

from shelf.serving.cli import main as cli
from shelf.storage import store
from tests.conftest import skimage_photo


@pytest.fixture
def photos(tmp_path):
    paths = [skimage_photo("chelsea.png"), skimage_photo("rocket.jpg")]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    return paths, bad


def test_classify_json_contract(photos, capsys):
    (good1, good2), bad = photos
    assert cli(["classify", str(good1), str(bad), str(good2), "--top-k", "2", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in records] == [str(good1), str(bad), str(good2)]
    assert "error" in records[1] and "not an image" in records[1]["error"]
    for record in (records[0], records[2]):
        assert [p["rank"] for p in record["predictions"]] == [1, 2]
        for p in record["predictions"]:
            assert set(p) == {"rank", "class_index", "label", "probability"}
            assert 0 <= p["probability"] <= 1 and isinstance(p["class_index"], int)


def test_classify_stores_nothing(photos, capsys):
    (good1, _), _ = photos
    assert cli(["classify", str(good1), "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert frame.columns.tolist() == ["image", "rank", "class_index", "label", "probability"] and len(frame) == 3
    assert store.counts(store.open_store())["photos"] == 0


def test_classify_exit_codes(photos, tmp_path, monkeypatch, capsys):
    _, bad = photos
    assert cli(["classify", str(bad), str(tmp_path / "missing.jpg")]) == 1
    assert "missing.jpg" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli(["classify", "--top-k", "0", str(bad)])
    assert usage.value.code == 2
    monkeypatch.delenv("SHELF_WEIGHTS")
    assert cli(["classify", str(bad)]) == 3
    assert "resnet18-f37072fd.pth" in capsys.readouterr().err


def test_recognize_and_batch_store_at_most_the_capped_top_k(photos, capsys):
    (good1, _), _ = photos
    for command in (["recognize", str(good1)], ["batch", str(good1)]):
        with pytest.raises(SystemExit) as usage:
            cli([*command, "--top-k", "11"])
        assert usage.value.code == 2
        assert "top-k 11 cannot be stored: Shelf stores at most 1000 regions per photo" in capsys.readouterr().err
    assert cli(["classify", str(good1), "--top-k", "1000", "--format", "csv"]) == 0  # nothing stored: no cap
    assert store.counts(store.open_store())["photos"] == 0


def test_recognize_then_tallies(photos, tmp_path, capsys):
    (good1, good2), bad = photos
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(["recognize", str(good1), str(good2), str(bad), "--store", "=cmd()", "--aisle", "7",
                "--date", "2026-11-02", "--db", db]) == 0
    output = capsys.readouterr()
    assert "2 of 3 photo(s) recognized and stored." in output.out and "notes.jpg" in output.err
    with store.open_store(db).connect() as conn:  # one command, one run (its provenance), however many photos
        assert conn.execute(sa.select(sa.func.count()).select_from(store.runs)).scalar_one() == 1
    assert cli(["recognize", str(good1), "--db", db]) == 0
    assert "(already stored)" in capsys.readouterr().out
    out_file = tmp_path / "tallies.csv"
    assert cli(["tallies", "--db", db, "--out", str(out_file)]) == 0
    tallies = pd.read_csv(out_file)
    top1 = store.predictions_frame(store.open_store(db), top1_only=True)
    assert tallies["facings"].sum() == len(top1) == 2
    assert dict(zip(tallies.class_index, tallies["facings"])) == top1.class_index.value_counts().to_dict()
    assert cli(["tallies", "--db", db, "--min-confidence", "1.0"]) == 0
    strict = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert strict["facings"].sum() == 0 and strict["below_threshold"].sum() == 2
    assert cli(["tallies", "--db", db, "--by", "store", "--by", "category"]) == 0
    by_store = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert by_store["store"].tolist() == ["'=cmd()"]  # formula made inert


def test_recognize_with_regions_and_box_files(tmp_path, capsys):
    from tests.synthetic import shelf_jpeg
    data, _ = shelf_jpeg(3, 1200, 900)
    photo = tmp_path / "aisle3.jpg"
    photo.write_bytes(data)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(["recognize", str(photo), "--regions", "grid:2x4", "--crop", "pad", "--db", db]) == 0
    assert "8 region(s)" in capsys.readouterr().out
    boxes = tmp_path / "aisle3.txt"  # YOLO: named after the photo
    boxes.write_text("0 0.25 0.5 0.5 1.0\n0 0.75 0.5 0.5 1.0\nbroken line\n")
    copy = tmp_path / "sub" / "aisle3.jpg"
    copy.parent.mkdir()
    copy.write_bytes(data + b"\0")  # different bytes, same name: a new photo
    assert cli(["recognize", str(copy), "--regions", f"boxes:{boxes}", "--db", db]) == 0
    output = capsys.readouterr()
    assert "2 region(s)" in output.out and "aisle3.txt, line 3" in output.err
    assert cli(["recognize", str(copy), "--regions", f"boxes:{tmp_path / 'missing.csv'}", "--db", db]) == 2
    with pytest.raises(SystemExit) as usage:
        cli(["recognize", str(photo), "--regions", "tiles"])
    assert usage.value.code == 2


def test_photo_list_edit_delete_and_recognize_again(photos, tmp_path, capsys, monkeypatch):
    (good1, good2), _ = photos
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(["recognize", str(good1), str(good2), "--store", "A", "--date", "2026-11-02", "--db", db]) == 0
    engine = store.open_store(db)
    first, second = store.photos_page(engine).sort_values("id")["id"].tolist()
    assert cli(["recognize", str(good1), "--regions", "grid:2x2", "--again", "--store", "B", "--db", db]) == 0
    assert "4 region(s) (recognized again)" in capsys.readouterr().out
    assert store.photo_context(engine, first) == store.Context("B", "", None)
    assert cli(["photo", "edit", str(second), "--aisle", "7", "--date", "none", "--db", db]) == 0
    assert store.photo_context(engine, second) == store.Context("A", "7", None)  # the store was not given: kept
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert cli(["photo", "delete", str(second), "--db", db]) == 1
    assert cli(["photo", "delete", str(second), "--yes", "--db", db]) == 0
    assert cli(["photo", "delete", str(second), "--yes", "--db", db]) == 1
    assert "no such photo" in capsys.readouterr().err
    capsys.readouterr()
    assert cli(["photo", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "chelsea.png" in listing and "rocket.jpg" not in listing
