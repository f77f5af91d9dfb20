"""Store tasks from shelf-edge prices: a rule that asks for `price_wrong` or `label_missing` opens a task for a
product whose label shows another price or is missing, in a photo read with prices only; a later priced photo at
the planned price verifies it; a price task and a facings task of one product are two tasks. On SQLite and
PostgreSQL."""
import datetime as dt

import pytest

from shelf import access
from shelf.analytics import planogram
from shelf.analytics import tasks as evaluator
from shelf.storage import store
from shelf.storage import tasks as stored
from shelf.storage.prices import save_labels
from tests.factory import TEST_RUN, add_photo
from tests.labelled_shelves import fonts_available
from tests.test_price_compliance import BEER, POP, WATER, WINE, tag

DAY1, DAY2, DAY3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
PLAN = b"""store,aisle,product,expected_facings,shelf_row,price
*,7,imagenet:737,2,1,1.99
*,7,imagenet:907,1,1,6.49
*,7,imagenet:898,1,1,0.89
"""
AT_PLAN = [(POP, 0.9), (POP, 0.9), (WINE, 0.9), (WATER, 0.9)]  # positions 0-1 pop, 2 wine, 3 water
RIGHT = [tag(0, "1.99", (0, 1)), tag(20, "6.49", (2,)), tag(30, "0.89", (3,))]
WRONG_WINE_NO_WATER = [tag(0, "1.99", (0, 1)), tag(20, "6.99", (2,))]


@pytest.fixture
def aisle(db_url):
    engine = store.open_store(db_url)
    planogram.import_csv(engine, PLAN, "plan.csv", access.LOCAL)
    engine.run_id = store.create_run(engine, TEST_RUN)
    yield engine
    engine.dispose()


def ask_for(engine, statuses: str) -> None:
    rules, errors = evaluator.parse_rules([{"statuses": statuses}])
    assert not errors
    stored.replace_rules(engine, [evaluator.rule_row(r) for r in rules])


def shelf(engine, number: int, day: dt.date, facings=AT_PLAN, labels=None) -> int:
    """A photo of aisle 7 in store S014; its labels read (prices) unless `labels` is None."""
    photo = add_photo(engine, engine.run_id, number, facings, "S014", "7", day)
    if labels is not None:
        save_labels(engine, photo, engine.run_id, labels, seconds=0.1)
    return photo


def findings(engine) -> dict[str, str]:
    """'product finding' → state of every task."""
    return {f"{t['product']} {t['finding']}": t["state"] for t in stored.page(engine, limit=100)}


def test_a_wrong_label_opens_a_price_task_only_under_a_rule_that_asks_for_it(aisle):
    shelf(aisle, 1, DAY1, labels=WRONG_WINE_NO_WATER)
    assert evaluator.evaluate_pending(aisle) == {}  # the default rule: missing and under only
    ask_for(aisle, "missing,under,price_wrong")
    photo = shelf(aisle, 2, DAY2, labels=WRONG_WINE_NO_WATER)
    assert evaluator.evaluate_pending(aisle) == {"opened": 1}  # water's missing label: not asked for
    (task,) = stored.page(aisle)
    assert (task["product"], task["finding"], task["state"], task["photo_id"]) == \
        ("wine bottle (907)", "price_wrong", "open", photo)
    evidence = stored.get(aisle, task["id"])["evidence"]
    assert (evidence["photo_id"], evidence["labels"], evidence["label_text"]) == (photo, [[20, 110, 30, 120]], "6.99")
    assert (evidence["planned_price"], evidence["price_read"], evidence["found"]) == (6.49, 6.99, [[20, 0, 30, 100]])


def test_a_label_left_out_opens_label_missing_and_a_later_priced_photo_verifies_it(aisle):
    ask_for(aisle, "missing,under,price_wrong,label_missing")
    shelf(aisle, 1, DAY1, labels=WRONG_WINE_NO_WATER)
    assert evaluator.evaluate_pending(aisle) == {"opened": 2}
    assert findings(aisle) == {"wine bottle (907) price_wrong": "open", "water bottle (898) label_missing": "open"}
    water = next(t for t in stored.page(aisle) if t["finding"] == "label_missing")
    evidence = stored.get(aisle, water["id"])["evidence"]
    assert (evidence["labels"], evidence["label_text"], evidence["planned_price"], evidence["price_read"]) == \
        ([], None, 0.89, None)

    shelf(aisle, 2, DAY2, labels=RIGHT)
    assert evaluator.evaluate_pending(aisle) == {"verified": 2}
    assert findings(aisle) == {"wine bottle (907) price_wrong": "verified",
                               "water bottle (898) label_missing": "verified"}


def test_a_photo_read_without_prices_neither_opens_nor_verifies_price_tasks(aisle):
    ask_for(aisle, "missing,under,price_wrong,label_missing")
    shelf(aisle, 1, DAY1)  # no prices read: no label found is not a label missing
    assert evaluator.evaluate_pending(aisle) == {} and stored.page(aisle) == []
    shelf(aisle, 2, DAY2, labels=WRONG_WINE_NO_WATER)
    assert evaluator.evaluate_pending(aisle) == {"opened": 2}
    shelf(aisle, 3, DAY3)  # at plan, but nobody read its labels
    assert evaluator.evaluate_pending(aisle) == {}
    assert set(findings(aisle).values()) == {"open"}


def test_a_price_task_and_a_facings_task_of_one_product_coexist(aisle):
    ask_for(aisle, "missing,under,price_wrong")
    one_pop = [(POP, 0.9), (WINE, 0.9), (WATER, 0.9)]
    shelf(aisle, 1, DAY1, one_pop, [tag(0, "2.49", (0,)), tag(20, "6.49", (1,)), tag(30, "0.89", (2,))])
    assert evaluator.evaluate_pending(aisle) == {"opened": 2}
    assert findings(aisle) == {"pop bottle (737) under": "open", "pop bottle (737) price_wrong": "open"}
    shelf(aisle, 2, DAY2, labels=RIGHT)
    assert evaluator.evaluate_pending(aisle) == {"verified": 2}
    assert set(findings(aisle).values()) == {"verified"}


def test_labels_stored_after_an_evaluation_are_evaluated_again(aisle):
    """The task worker may evaluate a photo between its regions and its labels (two transactions): the labels
    bring the photo back for evaluation, so its price findings are not lost."""
    ask_for(aisle, "price_wrong")
    photo = shelf(aisle, 1, DAY1)
    assert evaluator.evaluate_pending(aisle) == {}
    save_labels(aisle, photo, aisle.run_id, WRONG_WINE_NO_WATER, seconds=0.1)
    assert evaluator.evaluate_pending(aisle) == {"opened": 1}


def test_the_api_lists_price_tasks_by_finding_with_their_label(aisle, loaded):
    from fastapi.testclient import TestClient

    from shelf.serving import api, tokens
    ask_for(aisle, "missing,under,price_wrong,label_missing")
    shelf(aisle, 1, DAY1, labels=WRONG_WINE_NO_WATER)
    evaluator.evaluate_pending(aisle)
    office = {"Authorization": f"Bearer {tokens.create_token(aisle, 'office', 'viewer')}"}
    url = aisle.url.render_as_string(hide_password=False)
    with TestClient(api.create_app(api.ApiSettings(db_url=url), loaded)) as client:
        listing = client.get("/v1/tasks", headers=office, params={"finding": "price_wrong"}).json()
        assert [(t["product"], t["finding"]) for t in listing["tasks"]] == [("wine bottle (907)", "price_wrong")]
        detail = client.get(f"/v1/tasks/{listing['tasks'][0]['id']}", headers=office).json()
        assert (detail["evidence"]["label_text"], detail["evidence"]["planned_price"]) == ("6.99", 6.49)
        assert client.get("/v1/tasks", headers=office, params={"finding": "gone"}).status_code == 422


@pytest.mark.skipif(not fonts_available(), reason="no DejaVu fonts (fonts-dejavu-core)")
def test_a_rendered_shelf_read_by_the_ocr_opens_its_price_tasks(loaded, engine):
    """End to end: a generated shelf whose wine label shows 7.49 (planned 6.49) and whose water has no label,
    recognised with prices → a price_wrong and a label_missing task, the label the OCR read as evidence."""
    from decimal import Decimal

    from shelf.ingest.boxfiles import parse_box_file
    from shelf.ingest.prices import Price
    from shelf.recognition.pipeline import Upload, recognize
    from tests.labelled_shelves import make_labelled_shelf
    designs = {1: POP, 2: WINE, 3: BEER, 4: WATER}
    planned = {1: Decimal("1.99"), 2: Decimal("6.49"), 3: Decimal("2.29"), 4: Decimal("0.89")}
    rendered = {d: Price(p) for d, p in {**planned, 2: Decimal("7.49")}.items()}
    shelf_ = make_labelled_shelf(3, 2400, 1800, rows=[[1, 1, 2, 2], [3, 3, 4, 4]], prices=rendered,
                                 without_label={4}, hidden_share=0.0, glare_spots=0, tilt_degrees=0.5)
    plan = "store,aisle,product,expected_facings,price\n" + "".join(
        f"*,7,imagenet:{designs[d]},2,{p}\n" for d, p in planned.items())
    planogram.import_csv(engine, plan.encode(), "plan.csv", access.LOCAL)
    ask_for(engine, "missing,under,price_wrong,label_missing")
    lines = "".join(f"s.jpg,{b.x1},{b.y1},{b.x2},{b.y2},object,2400,1800\n" for _, b in shelf_.facings)
    (result,) = recognize(loaded, engine, [Upload("s.jpg", shelf_.jpeg())], store.Context("North", "7", DAY1),
                          "boxes:b.csv", box_file=parse_box_file(lines.encode(), "b.csv"), prices=True)
    assert result.ok and len(result.labels) == 3
    regions = store.predictions_frame(engine, top1_only=True)  # the products are the reviewer's: the test model's
    store.add_corrections(engine, {int(r): (designs[d], store.IMAGENET_CLASSES[designs[d]])  # labels mean nothing
                                   for r, (d, _) in zip(regions["region_id"], shelf_.facings)}, "Ana")
    assert evaluator.evaluate_pending(engine) == {"opened": 2}
    assert findings(engine) == {"wine bottle (907) price_wrong": "open", "water bottle (898) label_missing": "open"}
    wine = next(t for t in stored.page(engine) if t["finding"] == "price_wrong")
    evidence = stored.get(engine, wine["id"])["evidence"]
    assert (evidence["planned_price"], evidence["price_read"], len(evidence["labels"])) == (6.49, 7.49, 1)
    assert "7" in evidence["label_text"] and len(evidence["found"]) == 2
