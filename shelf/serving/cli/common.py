"""What the command families share: exit codes, argument types, the recognition options, loading the model.

The argument types keep their names (`_top_k`, `_regions` …): argparse puts them in its messages ("invalid _top_k
value"), and those messages are part of the CLI's output.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from shelf.files import FileTooLarge, read_bounded

EXIT_OK, EXIT_NOTHING_DONE, EXIT_USAGE, EXIT_NO_WEIGHTS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _top_k(value: str) -> int:
    k = int(value)
    if not 1 <= k <= 1000:
        raise argparse.ArgumentTypeError("top-k must be between 1 and 1000")
    return k


def _stored_top_k(value: str) -> int:
    from shelf.ingest.regions import check_stored_top_k
    k = int(value)
    try:
        check_stored_top_k(k)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return k


def _probability(value: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return p


def _regions(value: str):
    from shelf.ingest.regions import parse_region_mode
    try:
        return parse_region_mode(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _selection_arguments(p: argparse.ArgumentParser) -> None:
    """The filters Tallies offers, for the commands that report on stored regions."""
    p.add_argument("--min-confidence", type=_probability, default=0.0,
                   help="regions below this top-1 probability are not counted (unless a reviewer corrected them); "
                        "steps of 0.05")
    p.add_argument("--store", action="append", default=[], dest="stores", help="repeat for several")
    p.add_argument("--aisle", action="append", default=[], dest="aisles", help="repeat for several")
    p.add_argument("--category", action="append", default=[], dest="categories", help="repeat for several")
    p.add_argument("--from", type=dt.date.fromisoformat, default=None, dest="date_from",
                   help="first photo date, YYYY-MM-DD")
    p.add_argument("--to", type=dt.date.fromisoformat, default=None, dest="date_to", help="last photo date")
    p.add_argument("--db", default=None)


def _selection(args):
    from shelf.analytics.tally import TallyFilter
    return TallyFilter(args.stores, args.aisles, args.date_from, args.date_to, args.categories)


REGIONS_HELP = ("whole | auto | grid:RxC[@OVERLAP] | boxes:FILE (SKU-110K CSV, COCO JSON, YOLO txt) | "
                "detector[:FILE.onnx|SHA256][@conf=0.25,iou=0.6,tiles=auto|off|N]")


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _date_or_none(value: str) -> dt.date | None:
    if value.strip().lower() in {"", "none"}:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or 'none': {value!r}") from None


def _layout(value: str):
    from shelf.ingest.sources import parse_layout
    try:
        return parse_layout(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_recognition_options(p: argparse.ArgumentParser) -> None:
    """What `recognize` and `batch` share."""
    p.add_argument("--regions", type=_regions, default="whole",
                   help=REGIONS_HELP)
    p.add_argument("--crop", choices=["center", "pad"], default="center",
                   help="center: the model's own Resize+CenterCrop; pad: keep tall products whole")
    p.add_argument("--store", default="")
    p.add_argument("--aisle", default="")
    p.add_argument("--date", type=dt.date.fromisoformat, default=None, help="capture date, YYYY-MM-DD")
    p.add_argument("--top-k", type=_stored_top_k, default=3, help="predictions stored per region (at most 10)")
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: SHELF_DATABASE_URL or the data dir)")
    p.add_argument("--catalog", action="store_true", help="also name SKUs from the catalog by similarity")
    p.add_argument("--prices", action="store_true",
                   help="also read the shelf-edge price labels (OCR) and tie each to the facings it prices")


def _load_model_or_explain(db: str | None = None):
    from shelf.recognition.backends import BackendError, chosen_backend, with_backend
    from shelf.recognition.model import HOW_TO_GET_WEIGHTS, load_model
    from shelf.storage.store import open_store
    loaded, status = load_model()
    if loaded is None:
        print(f"error: ResNet-18 weights unavailable. {status.problem}", file=sys.stderr)
        for line in status.tried:
            print(f"  tried {line}", file=sys.stderr)
        print(HOW_TO_GET_WEIGHTS, file=sys.stderr)
        return None
    if not loaded.weights.verified:
        print(f"warning: the weights in {loaded.weights.path} are {loaded.weights.kind}; every result is "
              "marked so in its run's provenance.", file=sys.stderr)
    engine = open_store(db)
    try:
        loaded = with_backend(loaded, chosen_backend(engine), engine)
    except BackendError as exc:
        print(f"warning: {exc}; using the faithful backend", file=sys.stderr)
        loaded = with_backend(loaded, "onnx")
    if loaded.backend.kind == "int8":
        print("note: fast mode (int8) is on; results record it in their provenance.", file=sys.stderr)
    elif loaded.backend.kind == "bf16":
        print("note: balanced mode (bfloat16) is on; results record it in their provenance.", file=sys.stderr)
    return loaded


def _progress(total: int, description: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit="img", file=sys.stderr, disable=total < 3 or None)


def _box_file(mode):
    """The parsed box file of a boxes:FILE mode, with its problems printed; None and a message if unusable."""
    from shelf.ingest.boxfiles import MAX_BOX_FILE_BYTES, BoxFileError, parse_box_file
    path = Path(mode.source)
    try:
        imported = parse_box_file(read_bounded(path, MAX_BOX_FILE_BYTES), path.name)
    except FileTooLarge as exc:
        print(f"error: box file {exc}", file=sys.stderr)
        return None
    except (OSError, BoxFileError) as exc:
        print(f"error: box file {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return None
    for message in imported.messages:
        print(f"warning: {message}", file=sys.stderr)
    return imported


def _detector(mode):
    """The detector a detector: mode names, or None and a message if it cannot be used."""
    from shelf.recognition.detector import DetectorError, resolve_detector
    try:
        return resolve_detector(mode.source)
    except DetectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _region_inputs(mode, db: str | None = None):
    """(box file, detector) a region mode needs, or None when one of them, or auto's named region profile (in
    store `db`), cannot be used (message printed)."""
    box_file = _box_file(mode) if mode.kind == "boxes" else None
    found_detector = _detector(mode) if mode.kind == "detector" else None
    if (mode.kind == "boxes" and box_file is None) or (mode.kind == "detector" and found_detector is None):
        return None
    if mode.kind == "auto" and mode.source:
        from shelf.storage import profiles
        from shelf.storage.store import open_store
        try:
            profiles.get_profile(open_store(db), mode.source)
        except profiles.ProfileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    return box_file, found_detector


def _catalog_index(args, engine, loaded):
    """The SKU catalog's index and threshold when --catalog is given, else (None, 0.0)."""
    if not args.catalog:
        return None, 0.0
    from shelf.recognition import catalog
    index = catalog.load_index(engine, loaded, args.crop)
    if not index.size:
        print("warning: the SKU catalog is empty; no SKUs will be named", file=sys.stderr)
    return index, catalog.get_threshold(engine)


def _write_csv(data: bytes, out: Path | None) -> None:
    if out:
        out.write_bytes(data)
        print(f"written to {out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())


def read_photos(paths, unreadable: list[str]):
    """(path, bytes) of each photo given, read one at a time as they are used; the ones that cannot be read go to
    `unreadable` as messages."""
    from shelf.ingest.images import MAX_BYTES
    for path in paths:
        try:
            yield path, read_bounded(path, MAX_BYTES)
        except FileTooLarge as exc:
            unreadable.append(str(exc))
        except OSError as exc:
            unreadable.append(f"{path}: cannot read the file ({exc.strerror or exc})")
