"""Price compliance: labels against the planogram's prices (each status, from stored labels and end to end from a
rendered shelf through the OCR), price corrections, the detections export's price columns, CLI and API."""
from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pandas as pd
import pytest

from shelf import access
from shelf.analytics import export, planogram
from shelf.analytics.prices import (
    LABEL_MISSING,
    PRICE_OK,
    PRICE_WRONG,
    UNREADABLE,
    labels_to_review,
    price_lines,
    price_summary,
)
from shelf.analytics.tally import TallyFilter
from shelf.ingest.boxfiles import parse_box_file
from shelf.ingest.prices import Price, ShelfLabel
from shelf.ingest.regions import Box
from shelf.recognition.pipeline import Upload, recognize
from shelf.serving.cli import main as cli
from shelf.storage import store
from shelf.storage.prices import correct_prices, labels_frame, save_labels
from tests.factory import TEST_RUN, add_photo
from tests.labelled_shelves import fonts_available, make_labelled_shelf

DAY = dt.date(2026, 3, 2)
POP, WINE, BEER, WATER, MILK = 737, 907, 440, 898, 653
PLAN = """store,aisle,product,expected_facings,shelf_row,price
*,7,imagenet:737,2,1,1.99
*,7,imagenet:907,1,1,"6,49"
*,7,imagenet:440,1,1,€2.29
*,7,imagenet:898,1,1,0.89
*,7,imagenet:653,1,1,
"""


def tag(x: int, price: str | None, facings: tuple[int, ...], confidence: float = 0.9) -> ShelfLabel:
    from shelf.ingest.prices import parse_price
    return ShelfLabel(Box(x, 110, x + 10, 120), parse_price(price) if price else None, price or "Apples",
                      confidence, facings)


@pytest.fixture
def priced(db_url, tmp_path):
    """Aisle 7 on one date: pop ×2 labelled right, wine labelled wrong, beer's label unreadable, water with no
    label, milk (no planned price) and an aisle-9 photo read without --prices."""
    engine = store.open_store(db_url)
    run = store.create_run(engine, TEST_RUN)
    photo = add_photo(engine, run, 1, [(POP, 0.9), (POP, 0.9), (WINE, 0.9), (BEER, 0.9), (WATER, 0.9), (MILK, 0.9)],
                      "North", "7", DAY)
    save_labels(engine, photo, run, [tag(0, "1.99", (0, 1)), tag(20, "6.99", (2,)), tag(30, None, (3,)),
                                     tag(50, "0.95", (5,))], seconds=0.1)
    add_photo(engine, run, 2, [(POP, 0.9)], "North", "9", DAY)
    source = tmp_path / "plan.csv"
    source.write_text(PLAN + "*,9,imagenet:737,1,1,1.99\n")
    assert cli(["planogram", "import", str(source), "--db", db_url]) == 0
    return db_url, engine, photo


def test_each_product_gets_its_price_status(priced):
    _, engine, _ = priced
    lines = price_lines(engine, TallyFilter(), 0.5)
    status = dict(zip(lines["product"], lines["price_status"]))
    assert status == {"imagenet:737": PRICE_OK, "imagenet:907": PRICE_WRONG, "imagenet:440": UNREADABLE,
                      "imagenet:898": LABEL_MISSING}  # milk: no planned price; aisle 9: not read
    wine = lines.set_index("product").loc["imagenet:907"]
    assert (wine["planned_price"], wine["price_read"], wine["label"]) == (6.49, 6.99, "found")
    assert lines.set_index("product").loc["imagenet:898", "label"] == "missing"
    assert lines["price_status"].tolist()[0] == PRICE_WRONG  # worst first
    assert price_summary(lines) == {PRICE_WRONG: 1, LABEL_MISSING: 1, UNREADABLE: 1, PRICE_OK: 1, "checked": 4,
                                    "price_compliance": 0.25}


def test_a_reviewer_corrects_a_read_price(priced):
    _, engine, photo = priced
    queue = labels_to_review(engine)
    assert queue["price"].isna().tolist()[0]  # unreadable first
    wine = labels_frame(engine, [photo]).set_index("text").loc["6.99", "label_id"]
    with pytest.raises(ValueError, match="not a price"):
        correct_prices(engine, {int(wine): "six"}, "Ana")
    with pytest.raises(access.Forbidden):
        correct_prices(engine, {int(wine): "6.49"}, access.Identity("v", "viewer", "local"))
    assert correct_prices(engine, {int(wine): "6,49"}, "Ana") == 1
    status = dict(zip(*price_lines(engine, TallyFilter(), 0.5)[["product", "price_status"]].values.T))
    assert status["imagenet:907"] == PRICE_OK
    stored = labels_frame(engine, [photo]).set_index("label_id").loc[int(wine)]
    assert stored["corrected"] and stored["read_price"] == 6.99 and stored["price"] == 6.49


def test_the_detections_export_carries_each_facings_price(priced):
    _, engine, _ = priced
    frame = pd.read_csv(io.BytesIO(export.regions_bytes("csv", engine)))
    assert frame.columns.tolist()[-3:] == ["price", "price_text", "price_confidence"]
    by_position = frame[frame["aisle"] == 7].set_index("position")
    assert by_position.loc[0, "price"] == by_position.loc[1, "price"] == 1.99
    assert by_position.loc[2, "price_text"] == "6.99" and by_position.loc[2, "price_confidence"] == 0.9
    assert pd.isna(by_position.loc[4, "price"]) and pd.isna(by_position.loc[3, "price"])  # no label / unreadable
    assert by_position.loc[3, "price_text"] == "Apples"


def test_cli_and_api_report_price_compliance(priced, capsys, loaded):
    from fastapi.testclient import TestClient

    from shelf.serving import api
    db, engine, _ = priced
    capsys.readouterr()
    assert cli(["compliance", "--db", db, "--level", "prices", "--min-confidence", "0.5"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert sorted(table["price_status"]) == sorted([PRICE_OK, PRICE_WRONG, UNREADABLE, LABEL_MISSING])
    with TestClient(api.create_app(api.ApiSettings(db_url=db, local=True), loaded)) as client:
        answer = client.get("/v1/compliance", params={"level": "prices", "min_confidence": "0.5"})
    assert answer.status_code == 200, answer.text
    assert sorted(r["price_status"] for r in answer.json()["rows"]) == sorted(table["price_status"])


@pytest.mark.skipif(not fonts_available(), reason="no DejaVu fonts (fonts-dejavu-core)")
def test_a_rendered_shelf_breaks_its_price_plan_in_known_ways(loaded, engine):
    """Labels rendered on a generated shelf: one with another price than planned, one left out → price_wrong and
    label_missing; the others price_ok. Products are the reviewer's (the test model's labels mean nothing)."""
    designs = {1: POP, 2: WINE, 3: BEER, 4: WATER}
    planned = {1: Price(Decimal("1.99")), 2: Price(Decimal("6.49")), 3: Price(Decimal("2.29")),
               4: Price(Decimal("0.89"))}
    rendered = {**planned, 2: Price(Decimal("7.49"))}  # the wine label shows another price
    shelf = make_labelled_shelf(3, 2400, 1800, rows=[[1, 1, 2, 2], [3, 3, 4, 4]], prices=rendered,
                                without_label={4}, hidden_share=0.0, glare_spots=0, tilt_degrees=0.5)
    lines = "".join(f"s.jpg,{b.x1},{b.y1},{b.x2},{b.y2},object,2400,1800\n" for _, b in shelf.facings)
    (result,) = recognize(loaded, engine, [Upload("s.jpg", shelf.jpeg())], store.Context("North", "7", DAY),
                          "boxes:b.csv", box_file=parse_box_file(lines.encode(), "b.csv"), prices=True)
    assert result.ok and len(result.labels) == 3
    regions = store.predictions_frame(engine, top1_only=True)
    fixes = {int(r): (designs[d], "") for r, (d, _) in zip(regions["region_id"], shelf.facings)}
    store.add_corrections(engine, {r: (c, store.IMAGENET_CLASSES[c]) for r, (c, _) in fixes.items()}, "Ana")
    plan = "store,aisle,product,expected_facings,price\n" + "".join(
        f"*,7,imagenet:{designs[d]},2,{p.amount}\n" for d, p in planned.items())
    planogram.import_csv(engine, plan.encode(), "plan.csv", access.LOCAL)
    status = dict(zip(*price_lines(engine)[["product", "price_status"]].values.T))
    assert status == {f"imagenet:{POP}": PRICE_OK, f"imagenet:{WINE}": PRICE_WRONG, f"imagenet:{BEER}": PRICE_OK,
                      f"imagenet:{WATER}": LABEL_MISSING}
