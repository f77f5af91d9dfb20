"""`tallies` and `export`: what the store holds, as CSV, COCO, SKU-110K or a provenance manifest."""
from __future__ import annotations

import sys
from pathlib import Path

from shelf.serving.cli.common import EXIT_OK, _selection, _selection_arguments


def cmd_tallies(args) -> int:
    from shelf.analytics.export import to_csv_bytes
    from shelf.analytics.report import tally_table
    from shelf.storage.store import open_store

    data = to_csv_bytes(tally_table(open_store(args.db), args.by or ["label"], args.min_confidence, _selection(args)))
    if args.out:
        args.out.write_bytes(data)
        print(f"written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return EXIT_OK


def cmd_export(args) -> int:
    from shelf.analytics import export
    from shelf.analytics.report import tally_table, totals
    from shelf.storage.store import open_store

    engine, selection = open_store(args.db), _selection(args)
    if args.what == "tallies":
        args.out.write_bytes(export.to_csv_bytes(tally_table(engine, ["label"], args.min_confidence, selection)))
    elif args.what == "manifest":
        args.out.write_bytes(export.manifest_json(engine, selection, {"what": "regions", **_described(args)}))
    else:
        from tqdm import tqdm
        expected = totals(engine, 0.0, selection).regions
        partial = args.out.with_name(f".{args.out.name}.partial")
        with partial.open("wb") as out, tqdm(total=expected, unit="region", file=sys.stderr,
                                             disable=expected < 50_000 or None) as bar:
            export.write_regions(args.format, engine, out, selection, args.min_confidence,
                                 progress=lambda done: bar.update(done - bar.n))
        partial.replace(args.out)  # a reader never sees half an export
    print(f"{args.what}: {totals(engine, 0.0, selection).regions} region(s) written to {args.out}", file=sys.stderr)
    return EXIT_OK


def _described(args) -> dict:
    return {key: value for key, value in {"stores": args.stores, "aisles": args.aisles,
                                          "categories": args.categories, "from": str(args.date_from or ""),
                                          "to": str(args.date_to or ""),
                                          "min_confidence": args.min_confidence}.items() if value}


def add_tallies(sub) -> None:
    p = sub.add_parser("tallies", help="facings, share of shelf and confidence from the store, as CSV")
    p.add_argument("--by", action="append", choices=["label", "category", "sku", "brand", "store", "aisle", "date"],
                   default=None,
                   help="grouping; repeat for several (default: label)")
    _selection_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="write CSV here instead of printing it")
    p.set_defaults(run=cmd_tallies)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="detections (CSV, COCO, SKU-110K), tallies or the provenance manifest")
    p.add_argument("what", choices=["detections", "tallies", "manifest"])
    p.add_argument("--format", choices=["csv", "coco", "sku110k"], default="csv",
                   help="for detections: csv, coco (JSON) or sku110k (CSV)")
    _selection_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=cmd_export)


PARSERS = {"tallies": add_tallies, "export": add_export}
