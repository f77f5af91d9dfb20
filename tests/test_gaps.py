"""Empty gaps: auto mode finds them on generated shelves with known gaps, stores them as regions of kind gap (never
classified, never counted), and overlays hatch them."""
import pytest
import sqlalchemy as sa

from shelf.analytics import report
from shelf.analytics.tally import TallyFilter
from shelf.ingest.auto import auto_layout
from shelf.ingest.evaluation import greedy_matches
from shelf.ingest.overlay import GAP_COLOUR, draw_overlay
from shelf.ingest.regions import Box
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from tests.conftest import image_bytes
from tests.synthetic import make_planned_shelf

ROWS = [[1, 1, 2, 2, None, 3, 3, 4, 4, 5], [6, 6, None, None, 7, 7, 8, 8, 9, 9],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 1], [2, 2, 2, None, 3, 3, 3, 4, 4, 4]]


@pytest.fixture(scope="module")
def planned():
    return make_planned_shelf(ROWS)


def test_auto_finds_the_gaps_of_a_planned_shelf(planned):
    image, facings, gaps = planned
    layout = auto_layout(image)
    matched = greedy_matches(layout.gaps, gaps)
    assert len(matched) == len(layout.gaps) == len(gaps) == 4  # every gap found, nothing else taken for one
    assert len(greedy_matches(layout.facings, [box for _, box in facings])) >= 0.95 * len(facings)


def test_recognize_stores_gaps_apart_from_facings(planned, loaded, engine):
    image, facings, gaps = planned
    (result,) = recognize(loaded, engine, [Upload("planned.png", image_bytes(image, "PNG"))],
                          store.Context("North", "7"), region_mode="auto")
    assert result.ok and len(result.gaps) == 4 and len(result.regions) == pytest.approx(len(facings), abs=2)
    with engine.connect() as conn:
        kinds = dict(conn.execute(sa.select(store.regions.c.kind, sa.func.count())
                                  .group_by(store.regions.c.kind)).all())
        gap_predictions = conn.execute(sa.select(sa.func.count()).select_from(
            store.predictions.join(store.regions)).where(store.regions.c.kind == store.GAP)).scalar_one()
    assert kinds == {"product": len(result.regions), "gap": 4} and gap_predictions == 0
    assert report.totals(engine).regions == len(result.regions)
    assert len(store.predictions_frame(engine, top1_only=True)) == len(result.regions)
    assert len(store.region_embeddings_of(engine, result.photo_id)) == len(result.regions)
    share = report.empty_shelf(engine, TallyFilter()).iloc[0]["empty_share"]
    true_share = len(gaps) / sum(map(len, ROWS))  # equal slots: 4 of 40
    assert share == pytest.approx(true_share, abs=0.02)


def test_grid_photos_are_not_measured_for_gaps(loaded, engine, planned):
    image, _, _ = planned
    recognize(loaded, engine, [Upload("grid.png", image_bytes(image, "PNG"))], store.Context("North", "7"),
              region_mode="grid:2x2")
    assert report.empty_shelf(engine, TallyFilter()).empty  # "not measured", never "0 % empty"


def test_overlay_hatches_gaps(planned):
    image, _, gaps = planned
    plain = draw_overlay(image, image.size, [])
    hatched = draw_overlay(image, image.size, [], gaps=gaps)
    box = gaps[0]
    changed = sum(1 for x in range(box.x1, box.x2, 3) for y in range(box.y1, box.y2, 3)
                  if hatched.getpixel((x, y)) != plain.getpixel((x, y)))
    assert changed > 0.3 * ((box.x2 - box.x1) // 3) * ((box.y2 - box.y1) // 3)
    assert hatched.getpixel((box.x1, box.y1)) == GAP_COLOUR  # the outline
    outside = Box(0, 0, 3, 3)
    assert hatched.getpixel((outside.x1, outside.y1)) == plain.getpixel((outside.x1, outside.y1))
