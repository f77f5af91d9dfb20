"""Tuning `auto` from labelled photos: a search over the fields that matter, scored by F1 at IoU 0.5, and its
honest figure from leave-one-photo-out cross-validation.

The search is coordinate descent over `TUNABLE` (each field tried at each of its candidate values while the others
hold, the best kept, for `passes` rounds), starting from the default profile; F1 is micro-averaged (all photos'
matches over all their boxes), so a photo with many products weighs more. Cross-validation tunes once per held-out
photo on the others and scores the held-out photo with what that tuning found: the figure says how the profile
will do on the next photo of the same shelves, not how well it fits these. Pure functions of images and boxes;
storing the result is shelf.storage.profiles'.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from PIL import Image

from shelf.ingest.auto import ROW_FIELDS, AutoParams, Prepared, ShelfRow, layout, prepare, shelf_rows
from shelf.ingest.boxfiles import BoxImport, boxes_for_photo
from shelf.ingest.evaluation import MatchRates, greedy_matches
from shelf.ingest.images import ImageError, clean_filename, decode_image
from shelf.ingest.regions import Box

# field → candidate values (a tuple field: the values of its first item, the rest as in the default)
TUNABLE: dict[str, tuple] = {
    "cut_cost": (0.05, 0.1, 0.2, 0.25, 0.3, 0.45),  # how much edge a cut needs: weak edges inside wide products
    "rhythm_weight": (0.0, 0.25, 0.5, 1.0, 2.0),  # how hard a rhythmic row pulls cuts to its spacing
    "edge_percentile": (60.0, 70.0, 75.0, 80.0, 88.0),  # edge strength
    "facing_width": (0.01, 0.015, 0.02, 0.03, 0.045),  # the narrowest facing, of the photo's width
    "min_facing_aspect": (0.15, 0.25, 0.35, 0.5),  # ... and of the products' height
    "edge_power": (1.0, 1.5, 2.0, 3.0),
    "shelf_pitch": (0.05, 0.08, 0.12, 0.16),  # shelf band spacing: the closest shelves searched
    "shelf_extent": (0.0, 0.3, 0.5, 0.7),  # how much shelf edge a facing needs beneath it
    "partial_width": (0.0, 0.5, 0.7, 0.9),  # products cut by the photo's side
    "min_fill": (0.3, 0.5, 0.7),  # how full a cell must be to be a product, not a gap
    "split_run": (0.8, 0.9, 1.1),  # how tall an edge inside a facing splits it (narrow twins; 1.1: never)
    "half_facing": (0.0, 0.6, 0.7),  # joining a rhythmic row's packs cut in two (0: never)
    "fixture_colour": (0.0, 0.3, 0.45, 0.6),  # dropping grey fixture at the rows' ends (0: never; white products)
}


@dataclass(frozen=True)
class Labelled:
    """A photo made ready for tuning, with its true boxes (in the photo's pixels)."""

    name: str
    prepared: Prepared
    truth: tuple[Box, ...]


@dataclass(frozen=True)
class Score(MatchRates):
    matched: int = 0
    found: int = 0
    truth: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(self.matched + other.matched, self.found + other.found, self.truth + other.truth)

    def as_dict(self) -> dict:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "found": self.found, "truth": self.truth}


@dataclass(frozen=True)
class Tuned:
    params: AutoParams
    default: Score  # the default profile on all the photos
    fitted: Score  # the tuned profile on the photos it was tuned on (optimistic)
    cross_validated: Score | None  # each photo scored by a tuning on the others (None: fewer than 2 photos)
    default_per_photo: dict[str, Score]
    cross_validated_per_photo: dict[str, Score]
    searched: AutoParams | None = None  # what the search found, when cross-validation sent `params` back to default

    def figures(self) -> dict:
        """What a stored profile keeps about how it measured."""
        return {"photos": len(self.default_per_photo), "default": self.default.as_dict(),
                "fitted": self.fitted.as_dict(),
                "cross_validated": self.cross_validated.as_dict() if self.cross_validated else None}


def labelled(name: str, image: Image.Image, truth: Sequence[Box]) -> Labelled:
    return Labelled(name, prepare(image), tuple(truth))


class _Scorer:
    """Scores params on photos, keeping each photo's shelf rows per ROW_FIELDS values (the slow part)."""

    def __init__(self):
        self.rows: dict[tuple, list[ShelfRow]] = {}

    def photo(self, item: Labelled, params: AutoParams) -> Score:
        key = (item.name, id(item.prepared), *(getattr(params, f) for f in ROW_FIELDS))
        if key not in self.rows:
            self.rows[key] = shelf_rows(item.prepared, params)
        found = layout(item.prepared, params, self.rows[key]).facings
        return Score(len(greedy_matches(found, item.truth)), len(found), len(item.truth))

    def total(self, items: Sequence[Labelled], params: AutoParams) -> Score:
        return sum((self.photo(item, params) for item in items), Score())


def _with(params: AutoParams, field: str, value) -> AutoParams:
    current = getattr(params, field)
    return params.replaced(**{field: (value, *current[1:]) if isinstance(current, tuple) else value})


def search(items: Sequence[Labelled], start: AutoParams = AutoParams(), passes: int = 2,
           tunable: dict[str, tuple] = TUNABLE, scorer: _Scorer | None = None,
           progress: Callable[[], None] | None = None) -> tuple[AutoParams, Score]:
    """The params with the best F1 on `items` that coordinate descent finds from `start`; ties keep the
    current value (the default, unless the photos say otherwise)."""
    scorer = scorer or _Scorer()
    best, best_score = start, scorer.total(items, start)
    for _ in range(passes):
        improved = False
        for field, values in tunable.items():
            for value in values:
                candidate = _with(best, field, value)
                if candidate == best:
                    continue
                score = scorer.total(items, candidate)
                if progress:
                    progress()
                if score.f1 > best_score.f1 + 1e-9:
                    best, best_score, improved = candidate, score, True
        if not improved:
            break
    return best, best_score


def evaluations(n_photos: int, passes: int = 2, tunable: dict[str, tuple] = TUNABLE) -> int:
    """How many evaluations `tune` makes at most (for a progress bar)."""
    per_search = passes * sum(len(values) for values in tunable.values())
    return per_search * (n_photos + 1 if n_photos > 1 else 1)


def tune(items: Sequence[Labelled], passes: int = 2, tunable: dict[str, tuple] = TUNABLE,
         progress: Callable[[], None] | None = None) -> Tuned:
    """Tune on all `items`, and cross-validate leaving one photo out at a time. When the cross-validated F1 is no
    better than the default profile's on the same photos, the result is the default profile: what the search found
    fits these photos, not the next ones."""
    if not items:
        raise ValueError("tuning needs at least one labelled photo")
    scorer = _Scorer()
    default_per_photo = {item.name: scorer.photo(item, AutoParams()) for item in items}
    held_out = {}
    if len(items) > 1:
        for i, item in enumerate(items):
            params, _ = search([other for j, other in enumerate(items) if j != i], passes=passes, tunable=tunable,
                               scorer=scorer, progress=progress)
            held_out[item.name] = scorer.photo(item, params)
    params, fitted = search(items, passes=passes, tunable=tunable, scorer=scorer, progress=progress)
    default = sum(default_per_photo.values(), Score())
    cross_validated = sum(held_out.values(), Score()) if held_out else None
    if cross_validated is not None and cross_validated.f1 <= default.f1 and params != AutoParams():
        # tuning fitted these photos but did no better on the ones it had not seen: the profile is the default, and
        # so is its fit (a saved profile's figures describe its own settings)
        return Tuned(AutoParams(), default, default, cross_validated, default_per_photo, held_out, searched=params)
    return Tuned(params, default, fitted, cross_validated, default_per_photo, held_out)


MAX_TUNING_PHOTOS = 60  # each prepared photo holds ~8 MB; more photos than this add time, not much honesty


def labelled_photos(photos: Iterable[tuple[str, bytes]], truth: BoxImport
                    ) -> tuple[list[Labelled], list[str]]:
    """Photos (name, bytes) decoded and matched by name to their true boxes in `truth`; a photo that cannot be
    read or has no true boxes is left out with a message naming it, and the rest go on."""
    items, problems = [], []
    for name, data in photos:
        if len(items) == MAX_TUNING_PHOTOS:
            problems.append(f"{clean_filename(name)}: left out: tuning takes at most {MAX_TUNING_PHOTOS} photos")
            continue
        try:
            decoded = decode_image(data, name)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        boxes, notes = boxes_for_photo(truth, decoded.name, decoded.width, decoded.height, decoded.sha256)
        problems += notes
        if not boxes:
            problems.append(f"{decoded.name}: left out: the truth file {truth.source} has no boxes for it")
            continue
        items.append(labelled(decoded.name, decoded.image, boxes))
    return items, problems


def report(tuned: Tuned) -> str:
    """The tuning as a person reads it: per photo and overall, the default profile beside the tuned one scored on
    photos it was not tuned on (the honest figure), then what changed."""
    lines = [f"{'photo':30s} {'true':>5s}  {'default F1':>10s}  {'tuned F1 (held out)':>19s}"]
    for name, default in tuned.default_per_photo.items():
        held = tuned.cross_validated_per_photo.get(name)
        lines.append(f"{name[:30]:30s} {default.truth:5d}  {default.f1:10.3f}  "
                     f"{held.f1 if held else float('nan'):19.3f}")

    def row(label: str, score: Score | None) -> str:
        if score is None:
            return f"{label:42s} —"
        return f"{label:42s} precision {score.precision:.3f}  recall {score.recall:.3f}  F1 {score.f1:.3f}"
    lines += ["", row("default profile", tuned.default),
              row("tuned, each photo held out (cross-validated)", tuned.cross_validated),
              row("tuned, on the photos it was tuned on", tuned.fitted)]
    changes = tuned.params.changes()
    lines.append("changes from the default: " + (", ".join(f"{k}={v}" for k, v in changes.items()) or "none"))
    if tuned.searched is not None:
        lines.append("kept the default settings: on photos it had not seen, tuning did no better than the default "
                     f"(F1 {tuned.cross_validated.f1:.3f} against {tuned.default.f1:.3f}); the search had found "
                     + ", ".join(f"{k}={v}" for k, v in tuned.searched.changes().items()))
    return "\n".join(lines)
