"""Compliance in Chromium: import a planogram through the file input, see the heat map and the figures, download
the store/aisle table and find the known violations in it."""
import pandas as pd
import pytest

from shelf.storage import store
from tests.e2e.conftest import open_page, settled
from tests.factory import TEST_RUN
from tests.test_compliance import (
    BEER,
    DAY1,
    DAY2,
    PLANOGRAM,
    POP,
    WATER,
    WINE,
    add_shelf,
)


def test_import_a_planogram_and_download_the_compliance_table(server, page, tmp_path):
    engine = store.open_store(f"sqlite:///{server.data_dir / 'shelf.db'}")
    run = store.create_run(engine, {**TEST_RUN, "region_mode": "auto"})
    add_shelf(engine, run, 901, "North", "7", DAY1, [(POP, 0.9)] * 4 + [(WINE, 0.9)] * 3 + [(BEER, 0.9)] * 2)
    add_shelf(engine, run, 902, "North", "7", DAY2, [(POP, 0.9)] * 4 + [(WINE, 0.9), (WATER, 0.9)], gaps=[40])
    engine.dispose()
    plan = tmp_path / "plan.csv"
    plan.write_text(PLANOGRAM.replace("South,7,Cola,2,1\n", "") + "*,7,imagenet:5000,1\n")

    open_page(page, server, "compliance", "Planograms")
    page.get_by_role("tab", name="Planograms").click()
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(plan))
    page.get_by_role("button", name="Import this planogram").click()
    page.get_by_text("3 line(s) imported for 1 store/aisle(s).").wait_for()
    assert page.get_by_text("plan.csv, line 5").is_visible()  # the bad line, by number
    settled(page)

    page.get_by_role("tab", name="Compliance").click()
    page.get_by_test_id("stVegaLiteChart").first.wait_for()  # the heat map
    metrics = page.get_by_test_id("stMetric")
    assert "66.7%" in metrics.filter(has_text="On-shelf availability").inner_text()
    assert f"{5 / 9:.1%}" in metrics.filter(has_text="Compliance").inner_text()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the store/aisle table (CSV)").click()
    table = pd.read_csv(download.value.path(), dtype={"aisle": str})
    row = table.iloc[0]
    assert (row["store"], row["aisle"], row["captured_on"]) == ("North", "7", DAY2.isoformat())
    assert (row["missing"], row["under"], row["extra"]) == (1, 1, 1)
    assert (row["osa"], row["compliance"], row["empty_share"]) == pytest.approx((2 / 3, 5 / 9, 0.4), abs=1e-6)
