"""The region evaluator against figures computed by hand."""
import math

import pytest

from shelf.ingest.evaluation import (
    average_precision,
    average_precision_coco,
    evaluate_photo,
    greedy_matches,
    iou,
    precision_recall,
    summarise,
)
from shelf.ingest.regions import Box

TRUTH = [Box(0, 0, 10, 10), Box(20, 0, 30, 10), Box(40, 0, 50, 10)]


def test_iou_by_hand():
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou(Box(0, 0, 10, 10), Box(10, 0, 20, 10)) == 0.0
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0


def test_matching_is_one_to_one_best_pairs_first():
    found = [Box(0, 0, 10, 9),  # IoU 0.9 with truth 0
             Box(0, 0, 10, 8)]  # IoU 0.8 with truth 0 too, but truth 0 is taken
    assert greedy_matches(found, TRUTH) == [(0, 0)]
    p, r, m = precision_recall(found, TRUTH)
    assert (p, r, m) == (0.5, pytest.approx(1 / 3), 1)


def test_a_pair_below_the_threshold_is_no_match():
    assert precision_recall([Box(5, 0, 15, 10)], [Box(0, 0, 10, 10)]) == (0.0, 0.0, 0)  # IoU 1/3
    assert precision_recall([Box(5, 0, 15, 10)], [Box(0, 0, 10, 10)], threshold=0.3)[2] == 1


def test_precision_recall_f1_and_counting_error_of_a_photo():
    found = [Box(0, 0, 10, 10), Box(21, 0, 31, 10), Box(60, 0, 70, 10), Box(80, 0, 90, 10)]
    e = evaluate_photo("a.jpg", found, TRUTH)
    # 21..31 vs 20..30: IoU 9/11 ≥ 0.5; 60.. and 80.. match nothing
    assert (e.found, e.truth, e.matched) == (4, 3, 2)
    assert e.precision == 0.5 and e.recall == pytest.approx(2 / 3)
    assert e.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert e.count_error == 1
    assert e.ap50 is None and e.ap50_95 is None  # no scores, no AP


def test_average_precision_by_hand():
    # ranked: TP, FP, TP, FP over 3 true boxes → recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2
    # monotone envelope 1, 2/3, 2/3, 1/2. Of the 101 recall points, 0.00–0.33 (34) read 1, 0.34–0.66 (33) read
    # 2/3, 0.67–1.00 (34) read 0.
    found = [Box(0, 0, 10, 10), Box(100, 0, 110, 10), Box(20, 0, 30, 10), Box(200, 0, 210, 10)]
    scores = [0.9, 0.8, 0.7, 0.6]
    assert average_precision([(found, scores, TRUTH)]) == pytest.approx((34 * 1 + 33 * 2 / 3) / 101)


def test_ranking_by_score_not_by_order():
    found = [Box(100, 0, 110, 10), Box(0, 0, 10, 10)]  # the false one first in the list, but scored lower
    assert average_precision([(found, [0.1, 0.9], TRUTH[:1])]) == pytest.approx(1.0)
    assert average_precision([(found, [0.9, 0.1], TRUTH[:1])]) == pytest.approx(0.5)  # precision 1/2 at recall 1


def test_a_duplicate_detection_is_a_false_positive():
    found = [Box(0, 0, 10, 10), Box(0, 0, 10, 10)]
    assert average_precision([(found, [0.9, 0.8], TRUTH[:1])]) == pytest.approx(1.0)  # the duplicate comes after
    assert precision_recall(found, TRUTH[:1])[:2] == (0.5, 1.0)


def test_ap_over_iou_thresholds_by_hand():
    # IoU 72/100 = 0.72: a hit at 0.50, 0.55, 0.60, 0.65, 0.70; a miss at 0.75 … 0.95 → (5 × 1 + 5 × 0) / 10
    found, truth = [Box(0, 0, 10, 72)], [Box(0, 0, 10, 100)]
    assert iou(found[0], truth[0]) == pytest.approx(0.72)
    assert average_precision_coco([(found, [0.5], truth)]) == pytest.approx(0.5)


def test_detections_of_all_photos_are_ranked_together():
    # photo a: one hit scored 0.5; photo b: one false box scored 0.9 and no hits; 2 true boxes in all
    a = ([Box(0, 0, 10, 10)], [0.5], [Box(0, 0, 10, 10)])
    b = ([Box(50, 50, 60, 60)], [0.9], [Box(0, 0, 10, 10)])
    # ranked: FP (b), TP (a) → recall 0, 1/2; precision 0, 1/2 → envelope 1/2 up to recall 0.5 (51 points)
    assert average_precision([a, b]) == pytest.approx(51 * 0.5 / 101)


def test_no_true_boxes_leaves_ap_undefined_and_no_detections_scores_zero():
    assert math.isnan(average_precision([([Box(0, 0, 5, 5)], [0.9], [])]))
    assert average_precision([([], [], TRUTH)]) == 0.0


def test_summary_pools_boxes_and_gives_ap_only_when_every_photo_is_scored():
    photos = [("a", TRUTH, [0.9, 0.8, 0.7], TRUTH), ("b", [Box(0, 0, 10, 10)], [0.9], TRUTH[:2])]
    per_photo, overall = summarise(photos)
    assert [e.matched for e in per_photo] == [3, 1]
    assert (overall.found, overall.truth, overall.matched, overall.count_error) == (4, 5, 4, -1)
    assert overall.recall == pytest.approx(0.8) and overall.precision == 1.0
    assert overall.ap50 == pytest.approx(sum(1.0 for r in range(101) if r / 100 <= 0.8) / 101)
    _, unscored = summarise([photos[0], ("b", [Box(0, 0, 10, 10)], None, TRUTH[:2])])
    assert unscored.ap50 is None and unscored.recall == pytest.approx(0.8)


def test_scores_must_match_boxes():
    with pytest.raises(ValueError, match="score"):
        average_precision([(TRUTH, [0.5], TRUTH)])
