"""Hostile input, round two (issue 16): memory bombs measured in a child process, box files that used to escape as
tracebacks, formula cells in the tables' own CSV download, Markdown from untrusted names, and the smaller leaks.
Every bad file gets a message; no traceback reaches the CLI or the browser."""
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from torchvision.models import resnet18

from shelf.analytics import export
from shelf.ingest.boxfiles import (
    MAX_BOXES_PER_PHOTO,
    BoxFileError,
    boxes_for_photo,
    parse_box_file,
)
from shelf.ingest.images import MAX_BYTES, MAX_UPLOAD_MB, ImageError, decode_image
from shelf.ingest.regions import Box
from shelf.recognition import catalog, model
from shelf.recognition.pipeline import Upload, recognize
from shelf.serving.ui import md_escape
from shelf.storage import store
from tests.hostile_files import (
    HOSTILE_NAME,
    ROOT,
    Entry,
    corpus,
    deflated_zeros,
    inflating_weights,
    one_colour_png,
    peak_rss_mb,
    png_bytes,
    zip_bytes,
)
from tests.test_app import fresh_caches, start, texts, upload  # noqa: F401 (fresh_caches: an autouse fixture)

MEMORY_BOUND_MB = 1536  # the acceptance bound for the zip and weights bombs


@pytest.fixture
def eager(monkeypatch):
    """AppTests here do not need the ONNX conversion; eager fp32 spares its time."""
    monkeypatch.setenv("SHELF_BACKEND", "eager")


# -- 1. catalog zip evaluation ----------------------------------------------------------------------------------


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_of_huge_one_colour_photos_is_evaluated_one_at_a_time(tmp_path, weights_file):
    big = one_colour_png(9400, 9400)  # 88 MP: 350 MB decoded, 280 kB in the zip
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(_zip({f"Cola/{i}.png": big for i in range(6)}))
    peak, out = peak_rss_mb(f"""
from pathlib import Path
from shelf.recognition import catalog, model
from shelf.storage.store import open_store
state, info = model.read_weights_file(Path({str(weights_file)!r}), "SHELF_WEIGHTS")
loaded = model.build_model(state, info)
items, problems = catalog.labelled_from_zip(Path({str(bomb)!r}).read_bytes(), "bomb.zip")
evaluation, names, more = catalog.evaluate_labelled(open_store(), loaded, items, 0.5)
print("EVALUATED", int(evaluation.per_sku["support"].sum()), problems + more)
""")
    assert "EVALUATED 6 []" in out
    assert peak <= MEMORY_BOUND_MB, f"peak {peak:.0f} MB"


def test_an_evaluation_stops_at_its_pixel_budget(engine, loaded, monkeypatch):
    monkeypatch.setattr(catalog, "MAX_LABELLED_PIXELS", 3000)  # two 48×36 photos
    items, _ = catalog.labelled_from_zip(_zip({f"Cola/{i}.png": png_bytes(colour=(i, 9, 9)) for i in range(4)}))
    evaluation, _, problems = catalog.evaluate_labelled(engine, loaded, items, 0.5)
    assert evaluation.per_sku["support"].sum() == 2
    assert problems == [("only the first 2 photo(s) were evaluated: together they decode to more than 0 megapixels, "
                         "the limit of one evaluation")]


def test_unreadable_zip_entries_are_messages_and_the_rest_is_evaluated(engine, loaded):
    good, png = png_bytes(), png_bytes(colour=(1, 2, 3))
    archive = zip_bytes([Entry("Cola/encrypted.png", png, flags=1), Entry("Cola/method.png", png, method=99),
                         Entry("Cola/crc.png", png, crc=1234), Entry("Cola/huge.png", png, size=960 * 2**20),
                         Entry("Cola/good.png", good)])
    items, problems = catalog.labelled_from_zip(archive, "set.zip")
    assert problems == ["huge.png: the file is 1006.6 MB; the limit is 50 MB"]  # by its declared size: never read
    evaluation, _, more = catalog.evaluate_labelled(engine, loaded, items, 0.5)
    assert evaluation.per_sku["support"].sum() == 1
    assert more == ["encrypted.png: is encrypted in the zip; Shelf reads unencrypted zips only",
                    "method.png: is packed with a compression method Shelf cannot read (use deflate or none)",
                    "crc.png: is damaged in the zip (Bad CRC-32 for file 'Cola/crc.png')"]


def test_a_zip_entry_inflating_past_its_declared_size_is_stopped_there():
    zeros, crc = deflated_zeros(960 * 2**20)
    items, _ = catalog.labelled_from_zip(zip_bytes([Entry("Cola/a.png", zeros, method=8, size=1000, crc=crc)]))
    with pytest.raises(ImageError, match="a.png: is damaged in the zip"):
        items[0].read()


# -- 2. weights files that inflate ------------------------------------------------------------------------------


def test_inflating_weights_are_refused_before_torch_allocates_them(tmp_path, weights_file):
    bomb = tmp_path / "resnet18.pth"
    bomb.write_bytes(inflating_weights(weights_file.read_bytes()))  # 3 GiB of zeros deflated into data/0
    assert bomb.stat().st_size < 60 * 10**6
    peak, out = peak_rss_mb(f"""
from pathlib import Path
from shelf.recognition import model
try:
    model.import_weights(Path({str(bomb)!r}).read_bytes(), "resnet18.pth")
except model.WeightsError as exc:
    print("REFUSED", exc)
""")
    assert re.search(r"REFUSED resnet18.pth: record '[\w-]+/data/0' is compressed", out), out
    assert peak <= MEMORY_BOUND_MB, f"peak {peak:.0f} MB"
    assert not model.imported_weights_path().exists()


def test_checkpoint_records_must_be_stored_within_the_limit(weights_file):
    data = weights_file.read_bytes()
    model.check_checkpoint_container(data, "ok.pth", model.MAX_WEIGHTS_BYTES)  # what torch.save writes passes
    with pytest.raises(model.WeightsError, match=r"records add up to 47 MB; the limit is 10 MB"):
        model.check_checkpoint_container(data, "big.pth", 10 * 10**6)
    lying = zip_bytes([Entry("archive/data/0", b"x" * 10, size=10**9)])
    with pytest.raises(model.WeightsError, match="is compressed"):  # a stored record whose sizes disagree
        model.check_checkpoint_container(lying, "lying.pth", model.MAX_WEIGHTS_BYTES)


def test_a_safetensors_file_gets_a_whole_sentence():
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    data = len(header).to_bytes(8, "little") + header + bytes(4)
    with pytest.raises(model.WeightsError) as refused:
        model.parse_weights(data, "resnet18.safetensors")
    message = str(refused.value)
    assert "safetensors file" in message and message.endswith("and import that file.")


# -- 3. an unverified file never displaces the verified one ------------------------------------------------------


@pytest.fixture
def verified_in_hub_cache(monkeypatch, weights_file):
    """The test checkpoint plays the verified file (its hash prefix is made the official one), in the hub cache;
    a second, different checkpoint is the unverified one."""
    target = model.hub_cache_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(weights_file.read_bytes())
    monkeypatch.setattr(model, "OFFICIAL_HASH_PREFIX", hashlib.sha256(target.read_bytes()).hexdigest()[:8])
    torch.manual_seed(1)
    other = io.BytesIO()
    torch.save(resnet18().state_dict(), other)
    monkeypatch.delenv("SHELF_WEIGHTS")
    monkeypatch.delenv("SHELF_ALLOW_UNVERIFIED_WEIGHTS")
    return other.getvalue()


def test_an_unverified_import_does_not_take_the_verified_model_away(verified_in_hub_cache, monkeypatch):
    info = model.import_weights(verified_in_hub_cache, "fine-tune.pth")
    assert not info.verified
    loaded, status = model.load_model()
    assert loaded.weights.source == "torch hub cache" and loaded.weights.verified
    assert status.skipped == ("imported (not the verified ImageNet file)",)
    monkeypatch.setenv("SHELF_ALLOW_UNVERIFIED_WEIGHTS", "1")  # the server allows it: used, and marked
    loaded, _ = model.load_model()
    assert loaded.weights.source == "imported" and not loaded.weights.verified


def test_unverified_or_broken_shelf_weights_fall_back_to_the_verified_file(verified_in_hub_cache, monkeypatch,
                                                                           tmp_path):
    unverified, broken = tmp_path / "mine.pth", tmp_path / "broken.pth"
    unverified.write_bytes(verified_in_hub_cache)
    broken.write_bytes(b"junk")
    for path in (unverified, broken):
        monkeypatch.setenv("SHELF_WEIGHTS", str(path))
        loaded, status = model.load_model()
        assert loaded.weights.verified and status.skipped[0].startswith("SHELF_WEIGHTS (")
    model.hub_cache_path().unlink()
    loaded, status = model.load_model()  # nothing usable left: the first file's own problem is what is reported
    assert loaded is None and status.problem.startswith(f"{broken}: not a PyTorch checkpoint")


# -- 4. box files -------------------------------------------------------------------------------------------------


COCO_IMAGE = {"id": 1, "file_name": "p.png", "width": 100, "height": 80}


def _coco(annotations, images=(COCO_IMAGE,)) -> bytes:
    return json.dumps({"images": list(images), "annotations": annotations}).encode()


def test_deeply_nested_json_is_a_message():
    with pytest.raises(BoxFileError, match="deep.json: a COCO file needs 'images' and 'annotations' lists"):
        parse_box_file(b"[" * 100_000 + b"]" * 100_000, "deep.json")  # never decoded: it is no COCO object
    deep = _coco([{"id": 1, "image_id": 1, "bbox": [1, 1, 5, 5]}]).replace(b'"annotations": [',
                                                                          b'"annotations": [' + b"[" * 100_000
                                                                          + b"]" * 100_000 + b", ")
    imported = parse_box_file(deep, "deep.json")  # deep inside one annotation: that one is told, the rest loads
    assert imported.messages == ["deep.json, annotation 0: nested too deeply to be part of a COCO file"]
    assert imported.n_boxes == 1


@pytest.mark.parametrize("bad", ["9" * 5000, str(10**400), "1e309", "-1e309"],
                         ids=["5000-digits", "10**400", "1e309", "-1e309"])
def test_numbers_beyond_any_float_reject_their_annotation_only(bad):
    text = _coco([{"id": 1, "image_id": 1, "bbox": [1, 1, 5, 5]}]).decode().replace(
        '"annotations": [', f'"annotations": [{{"id": 2, "image_id": 1, "bbox": [{bad}, 1, 5, 5]}}, ')
    imported = parse_box_file(text.encode(), "coco.json")
    assert imported.n_boxes == 1 and imported.n_problems == 1
    assert imported.messages[0].startswith("coco.json, annotation 0 (id 2): bbox must be four numbers")


def test_a_box_overflowing_to_infinity_is_rejected_by_entry():
    imported = parse_box_file(_coco([{"id": 7, "image_id": 1, "bbox": [1e308, 0, 1e308, 5]},
                                     {"id": 8, "image_id": 1, "bbox": [10, 10, 20, 20]}]), "coco.json")
    assert imported.messages == [("coco.json, annotation 0 (id 7): the box reaches beyond any number "
                                  "(x + width or y + height overflows)")]
    assert boxes_for_photo(imported, "p.png", 100, 80)[0][0].as_tuple == (10, 10, 30, 30)


def test_an_impossible_declared_size_rejects_its_rows_and_never_fails_the_photo():
    csv_rows = b"p.png,1,1,5,5,object,1e-310,80\np.png,10,10,20,20,object,100,80\np.png,2,2,9,9,object,1e300,80\n"
    imported = parse_box_file(csv_rows, "b.csv")
    assert [m.split(": ")[0] for m in imported.messages] == ["b.csv, line 1", "b.csv, line 3"]
    assert "declared image size" in imported.messages[0]
    assert boxes_for_photo(imported, "p.png", 100, 80) == ([Box(10, 10, 20, 20)], [])
    coco = parse_box_file(_coco([{"id": 1, "image_id": 1, "bbox": [1, 1, 5, 5]},
                                 {"id": 2, "image_id": 2, "bbox": [1, 1, 5, 5]}],
                                images=[{**COCO_IMAGE, "width": 1e-310}, {**COCO_IMAGE, "id": 2,
                                                                           "file_name": "q.png"}]), "c.json")
    assert coco.messages == [("c.json, image 0: declared image size 1e-310×80 is not a photo's (1 to 1,000,000 "
                              "pixels a side); its annotations are skipped")]
    assert boxes_for_photo(coco, "q.png", 100, 80)[0] == [Box(1, 1, 6, 6)]


def test_far_out_boxes_scaled_by_a_declared_size_are_clipped_not_overflowed():
    imported = parse_box_file(b"p.png,1e307,1,1.5e308,5,object,1,80\np.png,0,0,5,5,object,1,80\n", "b.csv")
    boxes, messages = boxes_for_photo(imported, "p.png", 100, 80)  # ×100 would overflow to infinity
    assert boxes == [Box(0, 0, 100, 5)] and messages == ["b.csv, line 1: box lies outside the 100×80 photo"]


def test_the_boxes_per_photo_cap_applies_while_parsing():
    imported = parse_box_file(b"0 0.5 0.5 0.1 0.1\n" * 1_000_000, "p.txt")
    assert imported.n_boxes == MAX_BOXES_PER_PHOTO
    boxes, messages = boxes_for_photo(imported, "p.jpg", 100, 100)
    assert len(boxes) == MAX_BOXES_PER_PHOTO
    assert messages == [f"p.txt: 1000000 boxes for p.jpg; only the first {MAX_BOXES_PER_PHOTO} are used"]


def test_the_cli_streams_a_huge_box_file_and_stops_at_the_limit(tmp_path):
    huge = tmp_path / "boxes.csv"
    with open(huge, "wb") as handle:
        handle.truncate(3 * 10**9)  # sparse: 3 GB to whoever reads it whole
    peak, out = peak_rss_mb(f"""
from shelf.serving.cli import main
print("EXIT", main(["recognize", "p.png", "--regions", "boxes:{huge}"]))
""")
    assert "EXIT 2" in out and peak < 400, f"peak {peak:.0f} MB"


def test_the_recognize_page_parses_a_box_file_once_per_content(loaded, eager, monkeypatch):
    import shelf.ingest.boxfiles
    calls = []
    real = shelf.ingest.boxfiles.parse_box_file
    monkeypatch.setattr(shelf.ingest.boxfiles, "parse_box_file", lambda *a: calls.append(a[1]) or real(*a))
    at = start("pages/recognize.py")
    at.selectbox(key="region_kind").set_value("boxes").run()
    upload(at, "box_file", [("boxes.csv", b"p.png,0,0,30,30\n", "text/csv")])
    at.number_input(key="top_k").set_value(5).run()  # an unrelated click
    at.text_input(key="store").input("North").run()
    assert not at.exception and "SKU-110K CSV: 1 boxes for 1 image(s)" in texts(at.caption)
    assert calls == ["boxes.csv"]
    upload(at, "box_file", [("boxes.csv", b"p.png,0,0,40,40\n", "text/csv")])  # new content: parsed again
    assert calls == ["boxes.csv", "boxes.csv"]


# -- 5. Pillow's pixel limit is Shelf's ---------------------------------------------------------------------------


def test_a_108_megapixel_photo_decodes():
    decoded = decode_image(one_colour_png(12000, 9000), "phone-108mp.png")
    assert decoded.image.size == (12000, 9000)


# -- 6. formula cells in the tables' own CSV download -------------------------------------------------------------


FORMULAS = ['=HYPERLINK("http://x","click")', "+SUM(1,2)", "=1+2", "@cmd", "-2+3"]


def _formula_cells(frame: pd.DataFrame) -> list[str]:
    return [v for column in frame.columns for v in frame[column] if isinstance(v, str)
            and v.startswith(export.FORMULA_PREFIXES)]


def test_catalog_tables_show_user_text_inert(loaded, eager):
    engine = store.open_store()
    catalog.add_sku(engine, FORMULAS[0], FORMULAS[1], "Beverages")
    catalog.add_sku(engine, FORMULAS[3], FORMULAS[4], "Beverages")
    at = start("pages/catalog.py")
    table = at.dataframe[0].value
    assert not _formula_cells(table)
    assert set(table["name"]) == {"'" + FORMULAS[0], "'" + FORMULAS[3]} and "'" + FORMULAS[1] in set(table["brand"])


def test_review_and_grouped_tallies_show_user_text_inert(loaded, eager):
    engine = store.open_store()
    recognize(loaded, engine, [Upload("=cmd.png", png_bytes())], store.Context(FORMULAS[1], FORMULAS[2]))
    at = start("pages/tallies.py")
    at.multiselect(key="group_by").set_value(["label", "store", "aisle"]).run()
    table = at.dataframe[0].value
    assert not _formula_cells(table) and table["aisle"].tolist() == ["'=1+2"]
    at.switch_page("pages/review.py").run()
    assert not at.exception
    shown = next(d for d in at.dataframe if (d.key or "").startswith("review_pending_editor")).value
    assert not _formula_cells(shown) and shown["where"].str.contains("=cmd.png", regex=False).all()


def test_the_sku110k_export_reimports_names_that_start_like_formulas(loaded, engine):
    uploads = [Upload(name, png_bytes((90, 60), (i * 40, 80, 120))) for i, name in
               enumerate(["=cmd.png", "+1.png", "-x.png", "@y.png", "plain.png"])]
    recognize(loaded, engine, uploads, store.Context(), region_mode="grid:1x2")
    data = export.regions_bytes("sku110k", engine)
    assert b"'=cmd.png" in data  # the export stays inert …
    imported = parse_box_file(data, "export.csv")
    for upload_ in uploads:  # … and its own file still finds every photo's boxes
        boxes, messages = boxes_for_photo(imported, upload_.name, 90, 60)
        assert messages == [] and sorted(b.as_tuple for b in boxes) == [(0, 0, 45, 60), (45, 0, 90, 60)]


# -- 7. Markdown from untrusted names -----------------------------------------------------------------------------


def live_markup(source: str) -> list[str]:
    """What a Markdown renderer would act on in `source`: image and link syntax, character references, HTML —
    after taking out the backslash-escaped characters, which it shows as typed."""
    bare = re.sub(r"\\.", "", source)
    return re.findall(r"!\[|\]\(|&#?\w+;|<[A-Za-z/!]", bare)


def markdown_sources(at) -> list[str]:
    """Every string on the page that Streamlit renders as Markdown: texts, captions, alerts, image captions."""
    sources = [str(e.value) for kind in (at.markdown, at.caption, at.error, at.warning, at.success, at.info)
               for e in kind]
    return sources + [img.caption for e in at.get("imgs") for img in e.proto.imgs]


def test_md_escape_keeps_character_references_as_typed():
    escaped = md_escape(HOSTILE_NAME)
    assert live_markup(escaped) == [] and "\\&\\#47;" in escaped and "\\&\\#x202E;" in escaped
    assert live_markup(HOSTILE_NAME)  # the checker sees the raw name's markup


def test_hostile_names_reach_no_markdown_live(loaded, eager, weights_file):
    hostile = HOSTILE_NAME.replace(".jpg", "")
    at = start("pages/recognize.py")
    upload(at, "uploads", [(hostile + ".png", png_bytes(), "image/png"),
                           (hostile + ".jpg", b"not a photo", "image/jpeg")])
    at.button(key="recognize").click().run()
    sources = markdown_sources(at)
    at.selectbox(key="region_kind").set_value("boxes").run()
    upload(at, "box_file", [(hostile + ".csv", b"x.png,5,5,1,1\n", "text/csv")])
    sources += markdown_sources(at)
    upload(at, "box_file", [(hostile + ".json", b"{broken", "application/json")])
    sources += markdown_sources(at)

    at.switch_page("pages/home.py").run()
    upload(at, "weights_upload", (hostile + ".pth", b"junk", "application/octet-stream"))
    next(b for b in at.button if b.label == "Import weights").click().run()
    sources += markdown_sources(at)

    at.switch_page("pages/catalog.py").run()
    at.text_input[0].input(hostile)
    at.file_uploader(key="sku_photos_0").set_value([(hostile + ".gif", b"GIF89a broken", "image/gif")])
    next(b for b in at.button if b.label == "Add SKU").click().run()
    sources += markdown_sources(at)
    at.text_input[0].input(hostile)  # the same name again: refused, with the name quoted
    next(b for b in at.button if b.label == "Add SKU").click().run()
    sources += markdown_sources(at)
    engine = store.open_store()
    for sku in ("Cola", "Crisps"):
        catalog.add_references(engine, catalog.add_sku(engine, sku, "", "Beverages"),
                               [(f"{sku}{v}.png", png_bytes(colour=(v, len(sku), 9))) for v in range(2)])
    at.run()
    labelled = zip_bytes([Entry(f"Cola/{hostile}.png", png_bytes(), flags=1), Entry("Cola/ok.png", png_bytes())])
    upload(at, "labelled_zip", (hostile + ".zip", labelled, "application/zip"))
    sources += markdown_sources(at)

    quoting = [s for s in sources if "HOST" in s]
    assert len(quoting) >= 8, quoting  # each message above carries the name …
    assert [(s, live_markup(s)) for s in quoting if live_markup(s)] == []  # … and none renders it as markup


# -- 8. the smaller ones ------------------------------------------------------------------------------------------


def test_upload_limits_are_one_number_each_for_streamlit_and_shelf(loaded, eager):
    from shelf.ingest.boxfiles import MAX_BOX_FILE_BYTES, MAX_BOX_FILE_MB
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    expected = {"uploads": MAX_UPLOAD_MB, "box_file": MAX_BOX_FILE_MB, "weights_upload": model.MAX_WEIGHTS_MB,
                "sku_photos_0": MAX_UPLOAD_MB, "labelled_zip": MAX_UPLOAD_MB, "sku_more": MAX_UPLOAD_MB,
                "detector_upload": model.MAX_WEIGHTS_MB, "truth_file": MAX_BOX_FILE_MB}
    at = start()
    found = {u.key: u.proto.max_upload_size_mb for u in at.file_uploader}
    at.switch_page("pages/recognize.py").run()
    at.selectbox(key="region_kind").set_value("boxes").run()
    found |= {u.key: u.proto.max_upload_size_mb for u in at.file_uploader}
    engine = store.open_store()
    for sku in ("Cola", "Crisps"):
        catalog.add_references(engine, catalog.add_sku(engine, sku, "", "Beverages"),
                               [(f"{sku}{v}.png", png_bytes(colour=(v, len(sku), 9))) for v in range(2)])
    at.switch_page("pages/catalog.py").run()
    found |= {u.key: u.proto.max_upload_size_mb for u in at.file_uploader}
    assert found == expected
    # Streamlit's browser counts a megabyte as 10^6 bytes; Shelf's byte limits are the same numbers in that unit,
    # and the server's own cap (MiB) lets every widget's limit through.
    assert (MAX_BYTES, MAX_BOX_FILE_BYTES, model.MAX_WEIGHTS_BYTES) == (
        MAX_UPLOAD_MB * 10**6, MAX_BOX_FILE_MB * 10**6, model.MAX_WEIGHTS_MB * 10**6)
    assert server * 2**20 >= max(expected.values()) * 10**6


def test_visitors_get_no_traceback_with_server_paths(monkeypatch):
    import streamlit.config
    from streamlit.testing.v1 import AppTest
    monkeypatch.chdir(ROOT)
    streamlit.config.get_config_options(force_reparse=True)  # the project's .streamlit/config.toml

    def app():
        raise ValueError("cannot open /srv/shelf-data/secret.db")

    at = AppTest.from_function(app).run()
    (shown,) = at.exception
    assert "/srv/shelf-data" not in shown.message and not shown.stack_trace


def test_home_shows_a_short_form_of_where_data_lives(loaded, eager, weights_file):
    at = start()
    shown = "\n".join(str(e.value) for kind in (at.markdown, at.caption) for e in kind)
    assert "Database: SQLite" in shown and at.metric[0].label == "Photos" and at.metric[0].value == "0"
    for secret in (os.environ["SHELF_DATA_DIR"], str(weights_file), f"process {os.getpid()}", "sqlite:///"):
        assert secret not in shown


def test_stale_partial_onnx_files_are_removed_at_start(loaded, monkeypatch):
    from shelf.recognition import backends
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = int(gone.stdout)
    folder = backends.models_dir(loaded.weights.sha256)
    folder.mkdir(parents=True)
    stale = [folder / f"resnet18-fp32.partial-{dead}", folder / f"resnet18-int8-abc.pre-{dead}.onnx"]
    running = folder / f"resnet18-fp32.partial-{os.getpid()}"  # a conversion still under way elsewhere
    for path in stale + [running]:
        path.write_bytes(b"half a model")
    monkeypatch.setattr(backends, "export_onnx", lambda m, target: target.write_bytes(b"model") or target)
    monkeypatch.setattr(backends, "OnnxBackend", lambda kind, path: (kind, path))
    backends.build_backend("onnx", loaded.model, loaded.weights.sha256)
    assert not any(p.exists() for p in stale) and running.exists()


def test_removing_a_sku_removes_its_reference_files_unless_shared(engine, loaded, shelf_env):
    shared, own = png_bytes(colour=(1, 1, 1)), png_bytes(colour=(2, 2, 2))
    first = catalog.add_sku(engine, "First", "", "Beverages")
    second = catalog.add_sku(engine, "Second", "", "Beverages")
    catalog.add_references(engine, first, [("own.png", own), ("shared.png", shared)])
    catalog.add_references(engine, second, [("shared.png", shared)])
    photo = png_bytes(colour=(3, 3, 3))
    catalog.add_references(engine, first, [("also-a-photo.png", photo)])
    recognize(loaded, engine, [Upload("photo.png", photo)], store.Context())
    files = {name: shelf_env / "data" / store.photo_file(hashlib.sha256(data).hexdigest(), "PNG")
             for name, data in [("own", own), ("shared", shared), ("photo", photo)]}
    assert all(f.exists() for f in files.values())
    catalog.remove_sku(engine, first)
    assert not files["own"].exists() and files["shared"].exists() and files["photo"].exists()
    catalog.remove_sku(engine, second)
    assert not files["shared"].exists() and files["photo"].exists()


def test_recognize_keeps_a_bounded_number_of_previews(loaded, engine, eager):
    uploads = [Upload(f"p{i}.png", png_bytes(colour=(i, 7, 7))) for i in range(5)]
    results = recognize(loaded, engine, uploads, store.Context(), previews=2)
    assert [r.preview is not None for r in results] == [False, False, False, True, True]
    from shelf.serving.ui import RECENT_PREVIEWS
    at = start("pages/recognize.py")
    upload(at, "uploads", [(f"q{i}.png", png_bytes(colour=(i, 99, 9)), "image/png")
                           for i in range(RECENT_PREVIEWS + 2)])
    at.button(key="recognize").click().run()
    assert not at.exception
    kept = [r.preview is not None for r in at.session_state["results"]]
    assert kept == [False] * 2 + [True] * RECENT_PREVIEWS
    assert texts(at.caption).count("No preview") == 2


# -- No traceback from any file of the corpus: the CLI ---------------------------------------------------------

DRIVER = """
import contextlib, io, json, sys, traceback
from shelf.serving.cli import main
for argv in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            traceback.print_exc()  # what `python -m shelf` would show
            code = "traceback"
    print(json.dumps({"argv": argv, "code": code, "stderr": err.getvalue(), "stdout": out.getvalue()}))
"""


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory, weights_file) -> dict[str, list[Path]]:
    return corpus(tmp_path_factory.mktemp("hostile") / "corpus", weights_file.read_bytes())


def test_the_cli_answers_every_hostile_file_with_a_message(tmp_path, hostile_files, monkeypatch):
    monkeypatch.setenv("SHELF_BACKEND", "eager")
    files = hostile_files
    photo = tmp_path / "p.png"
    photo.write_bytes(png_bytes())
    runs = [["classify", *map(str, files["images"])], ["recognize", *map(str, files["images"])],
            ["catalog", "add", "Cola", *map(str, files["images"])]]
    runs += [["recognize", str(photo), "--regions", f"boxes:{box}"] for box in files["boxes"]]
    runs += [["weights", "import", str(weights)] for weights in files["weights"]]
    runs += [["catalog", "evaluate", "--labelled", str(labelled)] for labelled in files["labelled"]]
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(runs)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"argv"')]
    assert len(results) == len(runs)
    for result in results:
        assert "Traceback" not in result["stderr"] and result["code"] in (1, 2), result
        named = [Path(a).name for a in result["argv"] if "/corpus/" in a]
        assert all(name in result["stderr"] for name in named), result
    assert "pickled code ran" not in done.stdout + done.stderr


# -- … and the browser --------------------------------------------------------------------------------------------


def test_the_pages_answer_every_hostile_file_with_a_message(loaded, eager, hostile_files):
    def uploadable(kind):  # what a browser can send: files that exist, within the server's upload cap
        return [(p.name, p.read_bytes(), "application/octet-stream") for p in hostile_files[kind]
                if p.exists() and p.stat().st_size < 200 * 2**20]

    def answered(at, names):
        assert not at.exception, at.exception
        shown = "\n".join(markdown_sources(at))
        assert [n for n in names if md_escape(Path(n).stem) not in shown] == []

    at = start("pages/recognize.py")
    images = uploadable("images")
    upload(at, "uploads", images)
    at.button(key="recognize").click().run()
    answered(at, [name for name, _, _ in images])
    at.selectbox(key="region_kind").set_value("boxes").run()
    for box_file in uploadable("boxes"):
        upload(at, "box_file", [box_file])
        answered(at, [box_file[0]] if box_file[0] != "million-boxes.txt" else [])  # that one is well-formed
    at.switch_page("pages/home.py").run()
    for weights in uploadable("weights"):
        upload(at, "weights_upload", weights)
        next(b for b in at.button if b.label == "Import weights").click().run()
        answered(at, [weights[0]])
    engine = store.open_store()
    for sku in ("Cola", "Crisps"):
        catalog.add_references(engine, catalog.add_sku(engine, sku, "", "Beverages"),
                               [(f"{sku}{v}.png", png_bytes(colour=(v, len(sku), 9))) for v in range(2)])
    at.switch_page("pages/catalog.py").run()
    for labelled in uploadable("labelled"):
        if labelled[0].endswith(".zip"):
            upload(at, "labelled_zip", labelled)
            answered(at, [labelled[0] if labelled[0] == "not-a-zip.zip" else "a.png"])  # the zip, or its entry
