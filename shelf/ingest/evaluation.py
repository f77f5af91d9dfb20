"""How good a region mode is on labelled photos: pure functions from found and true boxes to figures.

- Precision, recall and F1 at IoU ≥ 0.5, from a greedy one-to-one matching (best-overlapping pairs first).
- Counting error: found facings − true facings (positive: too many), per photo and summed.
- For modes that score their boxes (a detector): average precision COCO-style — detections of all photos ranked by
  score, each matched to the unmatched true box it overlaps most (IoU ≥ the threshold), precision made monotone and
  read at the 101 recall points 0, 0.01, …, 1 (COCO's interpolation, not VOC 2007's 11 points), averaged.
  AP@0.5 uses one IoU threshold; AP@0.5:0.95 averages the ten thresholds 0.50, 0.55, …, 0.95. There is no cap
  on detections per photo (COCO's is 100, SKU-110K's protocol 300): a dense shelf has more facings than that.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shelf.ingest.regions import Box

IOU_THRESHOLD = 0.5
COCO_IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def iou_matrix(found: Sequence[Box], truth: Sequence[Box]) -> np.ndarray:
    """IoU of every found box (rows) with every true box (columns)."""
    if not found or not truth:
        return np.zeros((len(found), len(truth)))
    a = np.array([b.as_tuple for b in found], dtype=np.float64)[:, None, :]
    b = np.array([b.as_tuple for b in truth], dtype=np.float64)[None, :, :]
    inter = (np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
             * np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None))
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
             - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou(a: Box, b: Box) -> float:
    return float(iou_matrix([a], [b])[0, 0])


def greedy_matches(found: Sequence[Box], truth: Sequence[Box], threshold: float = IOU_THRESHOLD
                   ) -> list[tuple[int, int]]:
    """One-to-one (found index, true index) pairs with IoU ≥ threshold, the best-overlapping pairs first."""
    overlaps = iou_matrix(found, truth)
    rows, cols = np.nonzero(overlaps >= threshold)
    order = np.argsort(-overlaps[rows, cols], kind="stable")
    used_found, used_truth, pairs = set(), set(), []
    for i, j in zip(rows[order].tolist(), cols[order].tolist()):
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
            pairs.append((i, j))
    return pairs


def precision_recall(found: Sequence[Box], truth: Sequence[Box], threshold: float = IOU_THRESHOLD
                     ) -> tuple[float, float, int]:
    """(precision, recall, matches). No found boxes: precision 0; no true boxes: recall 1."""
    matches = len(greedy_matches(found, truth, threshold))
    return (matches / len(found) if found else 0.0), (matches / len(truth) if truth else 1.0), matches


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _ranked_hits(photos: Sequence[tuple[Sequence[Box], Sequence[float], Sequence[Box]]], threshold: float
                 ) -> tuple[np.ndarray, int]:
    """COCO matching: (hit flags of all detections ranked by score, number of true boxes)."""
    ranked = []  # (score, photo, detection index)
    for p, (found, scores, _) in enumerate(photos):
        if len(scores) != len(found):
            raise ValueError("every found box needs a score for average precision")
        ranked += [(float(s), p, i) for i, s in enumerate(scores)]
    ranked.sort(key=lambda r: -r[0])  # stable: equal scores keep their order
    overlaps = [iou_matrix(found, truth) for found, _, truth in photos]
    taken = [np.zeros(len(truth), dtype=bool) for _, _, truth in photos]
    hits = np.zeros(len(ranked), dtype=bool)
    for k, (_, p, i) in enumerate(ranked):
        if not taken[p].size:
            continue
        candidates = np.where(taken[p], -1.0, overlaps[p][i])
        j = int(np.argmax(candidates))
        if candidates[j] >= threshold:
            taken[p][j] = hits[k] = True
    return hits, sum(len(truth) for _, _, truth in photos)


def average_precision(photos: Sequence[tuple[Sequence[Box], Sequence[float], Sequence[Box]]],
                      threshold: float = IOU_THRESHOLD) -> float:
    """COCO-style AP (101-point interpolation) at one IoU threshold over (found, scores, truth) per photo.
    No true boxes anywhere: nan (undefined), as in COCO."""
    hits, n_truth = _ranked_hits(photos, threshold)
    if n_truth == 0:
        return float("nan")
    if not len(hits):
        return 0.0
    true_positives = np.cumsum(hits)
    recall = true_positives / n_truth
    precision = true_positives / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0).mean())


def average_precision_coco(photos: Sequence[tuple[Sequence[Box], Sequence[float], Sequence[Box]]]) -> float:
    """AP@0.5:0.95: the mean of AP at IoU 0.50, 0.55, …, 0.95."""
    return float(np.mean([average_precision(photos, t) for t in COCO_IOU_THRESHOLDS]))


class MatchRates:
    """Precision, recall and F1, for a dataclass with `matched`, `found` and `truth` counts."""

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    @property
    def f1(self) -> float:
        return f1(self.precision, self.recall)


@dataclass(frozen=True)
class Evaluation(MatchRates):
    """Figures for one photo, or (from `summarise`) for a set of photos."""

    name: str
    found: int
    truth: int
    matched: int
    ap50: float | None = None  # None: the mode gives no scores
    ap50_95: float | None = None

    @property
    def count_error(self) -> int:
        """Found facings − true facings."""
        return self.found - self.truth

    def as_row(self) -> dict:
        return {"photo": self.name, "found": self.found, "true": self.truth, "matched": self.matched,
                "precision": self.precision, "recall": self.recall, "f1": self.f1, "count_error": self.count_error,
                "ap50": self.ap50, "ap50_95": self.ap50_95}


def evaluate_photo(name: str, found: Sequence[Box], truth: Sequence[Box], scores: Sequence[float] | None = None
                   ) -> Evaluation:
    ap = {}
    if scores is not None:
        photo = [(found, scores, truth)]
        ap = {"ap50": average_precision(photo), "ap50_95": average_precision_coco(photo)}
    return Evaluation(name, len(found), len(truth), len(greedy_matches(found, truth)), **ap)


def summarise(photos: Sequence[tuple[str, Sequence[Box], Sequence[float] | None, Sequence[Box]]],
              name: str = "all photos") -> tuple[list[Evaluation], Evaluation]:
    """Per-photo evaluations of (name, found, scores or None, truth), and the overall one: P/R/F1 over all boxes
    pooled, AP over all detections ranked together (only when every photo has scores)."""
    per_photo = [evaluate_photo(n, found, truth, scores) for n, found, scores, truth in photos]
    scored = [(found, scores, truth) for _, found, scores, truth in photos if scores is not None]
    ap = {}
    if photos and len(scored) == len(photos):
        ap = {"ap50": average_precision(scored), "ap50_95": average_precision_coco(scored)}
    overall = Evaluation(name, sum(e.found for e in per_photo), sum(e.truth for e in per_photo),
                         sum(e.matched for e in per_photo), **ap)
    return per_photo, overall
