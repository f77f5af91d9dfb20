"""`regions`: measure a region mode against labelled boxes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from shelf.serving.cli.common import (
    EXIT_NOTHING_DONE,
    EXIT_OK,
    EXIT_USAGE,
    REGIONS_HELP,
    _progress,
    _region_inputs,
    _regions,
)


def cmd_regions(args) -> int:
    from shelf.files import FileTooLarge, read_bounded
    from shelf.ingest.boxfiles import MAX_BOX_FILE_BYTES, BoxFileError, parse_box_file
    from shelf.ingest.evaluation import summarise
    from shelf.ingest.images import MAX_BYTES
    from shelf.recognition.pipeline import Upload, compare_regions

    try:
        truth = parse_box_file(read_bounded(args.truth, MAX_BOX_FILE_BYTES), args.truth.name)
    except FileTooLarge as exc:
        print(f"error: truth file {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, BoxFileError) as exc:
        print(f"error: truth file {args.truth}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EXIT_USAGE
    for message in truth.messages:
        print(f"warning: {message}", file=sys.stderr)
    inputs = _region_inputs(args.regions)
    if inputs is None:
        return EXIT_USAGE
    compared, unreadable = [], []
    with _progress(len(args.images), "evaluate") as bar:
        for path in args.images:
            try:
                upload = Upload(path, read_bounded(path, MAX_BYTES))
            except FileTooLarge as exc:
                unreadable.append(str(exc))
            except OSError as exc:
                unreadable.append(f"{path}: cannot read the file ({exc.strerror or exc})")
            else:
                compared.extend(compare_regions([upload], args.regions, truth, *inputs))
            bar.update()
    for message in unreadable + [c.error for c in compared if not c.ok]:
        print(f"error: {message}", file=sys.stderr)
    done = [c for c in compared if c.ok]
    if not done:
        print("nothing evaluated", file=sys.stderr)
        return EXIT_NOTHING_DONE
    per_photo, overall = summarise([(c.name, c.found, c.scores, c.truth) for c in done])
    _print_evaluation(per_photo + [overall], args.format, args.regions.text)
    return EXIT_OK


def _print_evaluation(evaluations, fmt: str, mode: str) -> None:
    import pandas as pd
    frame = pd.DataFrame([e.as_row() for e in evaluations])
    if frame["ap50"].isna().all():
        frame = frame.drop(columns=["ap50", "ap50_95"])
    if fmt == "json":
        print(json.dumps({"regions": mode, "iou_threshold": 0.5, "photos": frame.iloc[:-1].to_dict("records"),
                          "overall": frame.iloc[-1].to_dict()}, indent=2, default=float))
    elif fmt == "csv":
        from shelf.analytics.export import to_csv_bytes
        sys.stdout.write(to_csv_bytes(frame).decode())
    else:
        print(f"regions {mode}: matched at IoU ≥ 0.5" + (" (AP: COCO-style, 101-point)" if "ap50" in frame else ""))
        ratio = "{:.3f}".format
        print(frame.to_string(index=False, formatters={c: ratio for c in ("precision", "recall", "f1", "ap50",
                                                                          "ap50_95")}))


def add_regions(sub) -> None:
    p = sub.add_parser("regions", help="measure a region mode against labelled boxes")
    rsub = p.add_subparsers(dest="action", required=True)
    ev = rsub.add_parser("evaluate", help="precision, recall, F1, AP and counting error per photo and overall")
    ev.add_argument("images", nargs="+", metavar="PHOTO")
    ev.add_argument("--truth", type=Path, required=True, help="the true boxes: SKU-110K CSV, COCO JSON or YOLO txt")
    ev.add_argument("--regions", type=_regions, default="auto", help=REGIONS_HELP)
    ev.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(run=cmd_regions)


PARSERS = {"regions": add_regions}
