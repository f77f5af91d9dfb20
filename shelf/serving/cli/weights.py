"""`weights` and `detector`: the ResNet-18 weights in use, and imported product detectors."""
from __future__ import annotations

import sys
from pathlib import Path

from shelf import config
from shelf.access import LOCAL
from shelf.files import FileTooLarge, read_bounded
from shelf.serving.cli.common import EXIT_NO_WEIGHTS, EXIT_NOTHING_DONE, EXIT_OK


def cmd_weights(args) -> int:
    from shelf.recognition import model

    if args.action == "import":
        try:
            info = model.import_weights(read_bounded(args.path, model.MAX_WEIGHTS_BYTES), str(args.path), by=LOCAL)
        except (OSError, FileTooLarge, model.WeightsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(f"imported {args.path} → {info.path}\n  sha256 {info.sha256}\n  {info.kind}")
        if config.weights_file_from_env():
            print("note: SHELF_WEIGHTS is set and takes precedence over the imported file.")
        return EXIT_OK
    if args.action == "recalibrate":
        return _recalibrate(args.db)
    if args.action == "convert":
        return _convert()
    if args.action == "download":
        try:
            path = model.download_weights(by=LOCAL)
        except (OSError, model.WeightsError) as exc:
            print(f"error: download failed: {exc}\n{model.HOW_TO_GET_WEIGHTS}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(f"downloaded and hash-checked: {path}")
        return EXIT_OK
    _, status = model.resolve_weights(download=False)
    if status.available:
        w = status.info
        print(f"weights: available\n  source   {w.source}\n  file     {w.path}\n  sha256   {w.sha256}\n"
              f"  kind     {w.kind}\n  classes  {len(model.CATEGORIES)}")
        for line in status.skipped:
            print(f"  not used {line}")
        if not model.torch_installed() and not model.converted(w.sha256):
            print(f"  not converted for ONNX Runtime yet. {model.RUN_THE_CONVERT_JOB}")
            return EXIT_NO_WEIGHTS
        return EXIT_OK
    print(f"weights: unavailable\n  {status.problem}")
    for line in status.tried:
        print(f"  tried {line}")
    print(model.HOW_TO_GET_WEIGHTS)
    return EXIT_NO_WEIGHTS


def _recalibrate(db: str | None) -> int:
    from shelf.recognition import backends, model
    from shelf.storage.store import open_store
    loaded, status = model.load_model()
    if loaded is None:
        print(f"error: ResNet-18 weights unavailable. {status.problem}\n{model.HOW_TO_GET_WEIGHTS}", file=sys.stderr)
        return EXIT_NO_WEIGHTS
    try:
        backends.with_backend(loaded, "int8", open_store(db), recalibrate=True)
    except backends.BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    print(f"fast mode recalibrated: {backends.describe_calibration(backends.frozen_calibration(loaded.weights.sha256))}"
          "; the int8 model is rebuilt, and kept until the next recalibration")
    return EXIT_OK


def _convert() -> int:
    """The convert job: check the weights in use (with PyTorch) and convert them for ONNX Runtime into the data dir,
    where an installation without PyTorch (the serving image) finds and runs them."""
    from shelf.recognition import backends, model
    if not model.torch_installed():
        print("error: converting needs PyTorch, which this installation does not have: run it in the convert image "
              "(`docker compose run --rm convert`) or where requirements.txt is installed", file=sys.stderr)
        return EXIT_NOTHING_DONE
    loaded, status = model.load_model()
    if loaded is None:
        print(f"error: ResNet-18 weights unavailable. {status.problem}\n{model.HOW_TO_GET_WEIGHTS}", file=sys.stderr)
        return EXIT_NO_WEIGHTS
    w = loaded.weights  # checked by now, and remembered as checked (by sha256) for the serving image
    backend = backends.build_backend("onnx", lambda: loaded.model, w.sha256)
    print(f"converted {w.path} ({w.kind})\n  sha256 {w.sha256}\n  → {backend.path}")
    return EXIT_OK


def cmd_detector(args) -> int:
    from shelf.recognition import detector

    if args.action == "import":
        try:
            info = detector.import_detector(args.path.read_bytes(), str(args.path), by=LOCAL)
        except (OSError, detector.DetectorError) as exc:
            print(f"error: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(f"imported {args.path} → {info.path}\n  sha256 {info.sha256}\n  format {info.format}, "
              f"{info.classes} class(es)\n  use it with --regions detector (the newest import) or "
              f"--regions detector:{info.sha256[:12]}")
        return EXIT_OK
    found = detector.imported_detectors()
    if not found:
        print(f"no detector imported (they are kept in {detector.detectors_dir()}); "
              "import one with: python -m shelf detector import FILE.onnx")
        return EXIT_NOTHING_DONE
    for number, info in enumerate(found):
        mark = "  ← --regions detector" if number == 0 else ""
        print(f"{info.sha256[:12]}  {info.name}  {info.format}, {info.classes} class(es){mark}")
    return EXIT_OK


def add_weights(sub) -> None:
    p = sub.add_parser("weights", help="weights status, import, download or convert")
    wsub = p.add_subparsers(dest="action", required=True)
    wsub.add_parser("status")
    imp = wsub.add_parser("import")
    imp.add_argument("path", type=Path)
    wsub.add_parser("download")
    recalibrate = wsub.add_parser("recalibrate", help="fast mode: re-take its calibration crops from the store now "
                                                      "and rebuild the int8 model (otherwise taken once, then kept)")
    recalibrate.add_argument("--db", default=None)
    wsub.add_parser("convert", help="check the weights in use and convert them for ONNX Runtime into the data dir "
                                    "(the convert job: an installation without PyTorch then runs them)")
    p.set_defaults(run=cmd_weights)


def add_detector(sub) -> None:
    p = sub.add_parser("detector", help="import a YOLO product detector (ONNX) or list the imported ones")
    dsub = p.add_subparsers(dest="action", required=True)
    dsub.add_parser("import").add_argument("path", type=Path)
    dsub.add_parser("status")
    p.set_defaults(run=cmd_detector)


PARSERS = {"weights": add_weights, "detector": add_detector}
