"""Planogram compliance: a generated chain whose shelves break their planograms in known ways (a product removed,
one with fewer facings, one that should not be there, an empty gap) → `python -m shelf compliance` reports each
with the right status and the right percentages."""
import datetime as dt
import io

import pandas as pd
import pytest
import sqlalchemy as sa

from shelf import access
from shelf.analytics import compliance, planogram, report
from shelf.analytics.tally import TallyFilter
from shelf.ingest.images import DecodedImage
from shelf.ingest.regions import Box
from shelf.recognition import catalog
from shelf.serving.cli import main as cli
from shelf.storage import store
from tests.factory import PHOTO, TEST_RUN, result

DAY1, DAY2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
POP, WINE, BEER, WATER = 737, 907, 440, 898  # pop bottle, wine bottle, beer bottle, water bottle

PLANOGRAM = """store,aisle,product,expected_facings,shelf_row
*,7,imagenet:737,4,1
*,7,imagenet:907,3,1
*,7,imagenet:440,2,2
South,7,Cola,2,1
"""


def add_shelf(engine, run_id: int, number: int, store_name: str, aisle: str, date, facings, gaps=(), matches=None):
    """A photo whose regions are `facings` (class, probability) side by side, 10 px wide each, then `gaps` (widths
    in px) after them on the same row."""
    boxes = [Box(10 * i, 0, 10 * i + 10, 100) for i in range(len(facings))]
    x = 10 * len(facings)
    gap_boxes = []
    for width in gaps:
        gap_boxes.append(Box(x, 0, x + width, 100))
        x += width
    decoded = DecodedImage(name=f"shelf-{number}.jpg", sha256=f"{number:064x}", image=PHOTO, format="JPEG",
                           n_bytes=0)
    photo_id, created = store.save_photo(
        engine, run_id, decoded, b"", store.Context(store_name, aisle, date), boxes,
        [result(c, p, seed=number * 100 + i) for i, (c, p) in enumerate(facings)], matches, gaps=gap_boxes)
    assert created
    return photo_id


@pytest.fixture
def chain(tmp_path, db_url):
    """North (the '*' planogram of aisle 7) on two dates, South (its own planogram of aisle 7), and an aisle
    without a planogram; on SQLite and on PostgreSQL."""
    db = db_url
    engine = store.open_store(db)
    cola = catalog.add_sku(engine, "Cola", "Fizz", "Beverages")
    run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    # day 1: as planned
    add_shelf(engine, run, 1, "North", "7", DAY1, [(POP, 0.9)] * 4 + [(WINE, 0.9)] * 3 + [(BEER, 0.9)] * 2)
    # day 2: beer removed (missing), wine 1 of 3 (under), water not planned (extra), a 20 px gap; one pop bottle
    # below the threshold does not count; two photos of the aisle add up
    add_shelf(engine, run, 2, "North", "7", DAY2, [(POP, 0.9)] * 3 + [(POP, 0.2), (WINE, 0.9)], gaps=[20])
    add_shelf(engine, run, 3, "North", "7", DAY2, [(POP, 0.6), (WATER, 0.9), (WATER, 0.8)])
    # South has its own planogram (Cola ×2): the '*' one does not apply; the catalog match counts, its class not
    add_shelf(engine, run, 4, "South", "7", DAY2, [(POP, 0.9), (POP, 0.9)], matches=[(cola, 0.95), (cola, 0.93)])
    add_shelf(engine, run, 5, "North", "9", DAY2, [(POP, 0.9)])  # no planogram for aisle 9
    source = tmp_path / "planogram.csv"
    source.write_text(PLANOGRAM)
    assert cli(["planogram", "import", str(source), "--db", db, "--by", "Ana"]) == 0
    return db, engine


def csv_of(capsys) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"store": str, "aisle": str})


def test_each_violation_gets_its_status(chain, capsys):
    db, _ = chain
    assert cli(["compliance", "--db", db, "--date", "2026-03-02", "--min-confidence", "0.5"]) == 0
    lines = csv_of(capsys)
    got = {(r.store, r.aisle, r.product): (None if pd.isna(r.expected_facings) else r.expected_facings,
                                           r.found_facings, r.status) for r in lines.itertuples()}
    assert got == {("North", "7", "imagenet:737"): (4, 4, "ok"),
                   ("North", "7", "imagenet:907"): (3, 1, "under"),
                   ("North", "7", "imagenet:440"): (2, 0, "missing"),
                   ("North", "7", "imagenet:898"): (None, 2, "extra"),
                   ("South", "7", "Cola"): (2, 2, "ok")}
    assert lines["status"].tolist()[:4] == ["missing", "under", "extra", "ok"]  # worst first within the aisle
    assert set(lines["captured_on"]) == {"2026-03-02"}


def test_aisle_percentages_are_exact(chain, capsys):
    db, _ = chain
    assert cli(["compliance", "--db", db, "--date", "2026-03-02", "--min-confidence", "0.5", "--level",
                "aisles"]) == 0
    aisles = csv_of(capsys).set_index("store")
    north, south = aisles.loc["North"], aisles.loc["South"]
    assert (north["planned_products"], north["found_products"], north["missing"], north["under"],
            north["extra"]) == (3, 2, 1, 1, 1)
    assert north["osa"] == pytest.approx(2 / 3) and north["compliance"] == pytest.approx((4 + 1 + 0) / 9)
    # widths: 5 + 3 facings of 10 px and a 20 px gap → 20 / 100
    assert north["empty_share"] == pytest.approx(0.2)
    assert (south["osa"], south["compliance"], south["empty_share"]) == (1.0, 1.0, 0.0)
    assert aisles.index.tolist() == ["North", "South"]  # least compliant first


def test_threshold_store_filter_and_out_file(chain, tmp_path, capsys):
    db, _ = chain
    out = tmp_path / "north.csv"
    assert cli(["compliance", "--db", db, "--store", "North", "--out", str(out)]) == 0  # every date, threshold 0
    lines = pd.read_csv(out, dtype={"aisle": str})
    assert set(lines["store"]) == {"North"} and set(lines["captured_on"]) == {"2026-03-01", "2026-03-02"}
    day1 = lines[lines["captured_on"] == "2026-03-01"]
    assert set(day1["status"]) == {"ok"} and sorted(day1["found_facings"]) == [2, 3, 4]
    pop = lines[(lines["captured_on"] == "2026-03-02") & (lines["product"] == "imagenet:737")]
    assert pop["found_facings"].tolist() == [5]  # at threshold 0 the doubtful one counts too


def test_corrections_and_over_facing(chain):
    _, engine = chain
    with engine.connect() as conn:  # the extra water bottles were beer: a reviewer says so
        ids = conn.execute(sa.select(store.regions.c.id).where(store.regions.c.class_index == WATER)).scalars().all()
    store.add_corrections(engine, {int(i): (BEER, "beer bottle") for i in ids}, "Ana")
    summary = compliance.summary(engine, TallyFilter(["North"], ["7"], DAY2, DAY2), 0.5).iloc[0]
    assert (summary["missing"], summary["extra"]) == (0, 0)
    assert summary["compliance"] == pytest.approx((4 + 1 + 2) / 9) and summary["osa"] == 1.0
    day1 = compliance.summary(engine, TallyFilter(["North"], ["7"], DAY1, DAY1)).iloc[0]
    assert (day1["compliance"], day1["empty_share"]) == (1.0, 0.0)


def test_gaps_are_never_facings(chain):
    _, engine = chain
    with engine.connect() as conn:
        kinds = dict(conn.execute(sa.select(store.regions.c.kind, sa.func.count()).group_by(store.regions.c.kind))
                     .all())
    assert kinds == {"product": 9 + 5 + 3 + 2 + 1, "gap": 1}
    assert report.totals(engine).regions == 20  # tallies count products only
    assert report.review_count(engine, report.ReviewFilter()) == 20
    assert len(report.region_labels(engine, range(1, 100))) == 21  # by id: both kinds exist …
    with pytest.raises(ValueError, match="no such region"):  # … but a gap is never labelled
        with engine.connect() as conn:
            gap = conn.execute(sa.select(store.regions.c.id).where(store.regions.c.kind == "gap")).scalar_one()
        store.add_corrections(engine, {gap: (POP, "pop bottle")}, "Ana")
    shares = report.empty_shelf(engine, TallyFilter(), ["store", "aisle", "date"])
    north = shares[(shares["store"] == "North") & (shares["aisle"] == "7")].set_index("captured_on")["empty_share"]
    assert north.to_dict() == {DAY1: 0.0, DAY2: pytest.approx(0.2)}


def test_trend_over_dates(chain):
    _, engine = chain
    trend = compliance.trend(engine, TallyFilter(["North"]), 0.5)
    assert trend["date"].dt.date.tolist() == [DAY1, DAY2]
    assert trend["compliance"].tolist() == pytest.approx([1.0, 5 / 9])
    assert trend["osa"].tolist() == pytest.approx([1.0, 2 / 3])
    every = compliance.trend(engine, TallyFilter(), 0.5)  # South (its own planogram, on day 2) is a line of its own
    assert list(zip(every["date"].dt.date, every["store"])) == [(DAY1, "North"), (DAY2, "North"), (DAY2, "South")]
    assert every["compliance"].tolist() == pytest.approx([1.0, 5 / 9, 1.0])


# ---------------------------------------------------------------------------------------------------------------
# Planogram files


def test_import_reports_bad_lines_by_number_and_keeps_the_rest(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    engine = store.open_store(db)
    catalog.add_sku(engine, "Cola", "Fizz", "Beverages")
    source = tmp_path / "plan.csv"
    source.write_text("aisle,store,product,expected_facings\n"  # any column order; shelf_row optional
                      "7,*,imagenet:737,4\n"
                      "7,*,imagenet:1000,2\n"
                      "7,,imagenet:1,2\n"
                      "7,North,Fanta,2\n"
                      "7,North,cola,two\n"
                      "\n"
                      "7,North,COLA,3\n"
                      "7,*,imagenet:737,5\n"
                      "8,North,imagenet:2,0\n")
    assert cli(["planogram", "import", str(source), "--db", db]) == 0
    output = capsys.readouterr()
    errors = [line for line in output.err.splitlines() if line.startswith("error:")]
    assert [e.split(": ", 2)[1] for e in errors] == [f"plan.csv, line {n}" for n in (3, 4, 5, 6, 9, 10)]
    assert "not an ImageNet class" in errors[0] and "store is empty" in errors[1]
    assert "no SKU named 'Fanta'" in errors[2] and "whole number from 1 to 1000, not 'two'" in errors[3]
    assert "already planned" in errors[4] and "line 2" in errors[4] and "not '0'" in errors[5]
    assert "2 line(s) imported for 2 store/aisle(s); 6 line(s) refused" in output.out
    stored = planogram.frame(engine)
    assert stored[["store", "aisle", "product", "expected_facings"]].values.tolist() == [
        ["*", "7", "imagenet:737", 4], ["North", "7", "Cola", 3]]
    assert set(stored["changed_by"]) == {access.LOCAL.name}


def test_unusable_files_are_refused_whole(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    for name, data, message in [("none.csv", b"", "the file is empty"),
                                ("cols.csv", b"store,aisle,sku\n*,7,x\n", "missing: product, expected_facings"),
                                ("bin.csv", b"\xff\xfe\x00\x01", "not UTF-8"),
                                ("nul.csv", b"store,aisle,product,expected_facings\n\x00", "binary data")]:
        path = tmp_path / name
        path.write_bytes(data)
        assert cli(["planogram", "import", str(path), "--db", db]) == 1
        err = capsys.readouterr().err
        assert name in err and message in err, err
    assert cli(["planogram", "import", str(tmp_path / "gone.csv"), "--db", db]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_import_replaces_an_aisle_and_keeps_who_changed_unchanged_lines(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    engine = store.open_store(db)
    first = planogram.parse_csv(b"store,aisle,product,expected_facings\n*,7,imagenet:1,2\n*,7,imagenet:2,2\n"
                                b"*,8,imagenet:3,1\n", "a.csv", {})
    planogram.replace(engine, first.lines, access.LOCAL, "Ana")
    second = planogram.parse_csv(b"store,aisle,product,expected_facings\n*,7,imagenet:1,2\n*,7,imagenet:2,5\n",
                                 "b.csv", {})
    planogram.replace(engine, second.lines, access.LOCAL, "Ben")
    stored = planogram.frame(engine).set_index("product")
    assert stored["expected_facings"].to_dict() == {"imagenet:1": 2, "imagenet:2": 5, "imagenet:3": 1}
    assert stored["changed_by"].to_dict() == {"imagenet:1": "Ana", "imagenet:2": "Ben", "imagenet:3": "Ana"}
    viewer = access.Identity("Vic", "viewer")
    with pytest.raises(access.Forbidden):
        planogram.replace(engine, second.lines, viewer)
    # export → import round trip
    out = tmp_path / "export.csv"
    assert cli(["planogram", "export", "--db", db, "--out", str(out)]) == 0
    other = f"sqlite:///{tmp_path / 'q.db'}"
    assert cli(["planogram", "import", str(out), "--db", other]) == 0
    again = planogram.frame(store.open_store(other))
    assert again[["store", "aisle", "product", "expected_facings"]].values.tolist() == \
        planogram.frame(engine)[["store", "aisle", "product", "expected_facings"]].values.tolist()
    capsys.readouterr()
    assert cli(["planogram", "template"]) == 0
    template = capsys.readouterr().out
    assert template.splitlines()[0] == "store,aisle,product,expected_facings,shelf_row,price"
    assert planogram.parse_csv(template.encode(), "template.csv", {}).errors == []


def test_the_http_api_gives_the_same_compliance(chain, loaded, capsys):
    from fastapi.testclient import TestClient

    from shelf.serving import api
    db, engine = chain
    selection = {"from": "2026-03-02", "to": "2026-03-02", "min_confidence": "0.5"}
    with TestClient(api.create_app(api.ApiSettings(db_url=db, local=True), loaded)) as client:
        products = client.get("/v1/compliance", params=selection)
        aisles = client.get("/v1/compliance", params={**selection, "level": "aisles", "store": "North"})
        csv = client.get("/v1/compliance", params=selection, headers={"Accept": "text/csv"})
    assert products.status_code == aisles.status_code == csv.status_code == 200
    expected = compliance.lines(engine, TallyFilter(date_from=DAY2, date_to=DAY2), 0.5)
    got = products.json()["rows"]
    assert [(r["store"], r["product"], r["status"]) for r in got] == \
        list(zip(expected["store"], expected["product"], expected["status"]))
    north = aisles.json()["rows"]
    assert [r["store"] for r in north] == ["North"] and north[0]["osa"] == pytest.approx(2 / 3)
    assert pd.read_csv(io.StringIO(csv.text))["status"].tolist() == expected["status"].tolist()
