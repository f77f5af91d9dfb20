"""`planogram` and `compliance`: the plan per store and aisle, and how the shelves measure up to it."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from shelf.files import FileTooLarge, read_bounded
from shelf.serving.cli.common import (
    EXIT_NOTHING_DONE,
    EXIT_OK,
    _probability,
    _write_csv,
)


def cmd_planogram(args) -> int:
    from shelf import access
    from shelf.analytics import planogram
    from shelf.storage.store import open_store

    if args.action == "template":
        _write_csv(planogram.template_bytes(), args.out)
        return EXIT_OK
    engine = open_store(args.db)
    if args.action == "list":
        lines = planogram.frame(engine, args.stores, args.aisles)
        if lines.empty:
            print("No planogram stored" + (" for that selection." if args.stores or args.aisles else "."))
        else:
            print(lines.drop(columns=["product"]).to_string(index=False))
        return EXIT_OK
    if args.action == "export":
        _write_csv(planogram.export_csv_bytes(engine), args.out)
        return EXIT_OK
    try:
        data = read_bounded(args.file, planogram.MAX_BYTES)
        parsed = planogram.import_csv(engine, data, args.file.name, access.LOCAL, args.by)
    except FileTooLarge as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    except OSError as exc:
        print(f"error: {args.file}: cannot read the file ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_NOTHING_DONE
    except (planogram.PlanogramError, access.Forbidden) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    for error in parsed.errors:
        print(f"error: {error}", file=sys.stderr)
    pairs = {(line.store, line.aisle) for line in parsed.lines}
    print(f"{args.file.name}: {len(parsed.lines)} line(s) imported for {len(pairs)} store/aisle(s)"
          + (f"; {len(parsed.errors)} line(s) refused" if parsed.errors else ""))
    return EXIT_OK if parsed.lines else EXIT_NOTHING_DONE


def cmd_compliance(args) -> int:
    from shelf.analytics import compliance
    from shelf.analytics.export import to_csv_bytes
    from shelf.analytics.prices import price_lines
    from shelf.analytics.tally import TallyFilter
    from shelf.storage.store import open_store

    engine = open_store(args.db)
    selection = TallyFilter(args.stores, args.aisles, args.date, args.date)
    table = compliance.summary(engine, selection, args.min_confidence) if args.level == "aisles" else \
        price_lines(engine, selection, args.min_confidence) if args.level == "prices" else \
        compliance.lines(engine, selection, args.min_confidence)
    if table.empty:
        print("note: no store/aisle/date in the selection has both photos and a planogram", file=sys.stderr)
    _write_csv(to_csv_bytes(table), args.out)
    return EXIT_OK


def add_planogram(sub) -> None:
    p = sub.add_parser("planogram", help="planograms: import a CSV, list or export them, or write the template")
    psub = p.add_subparsers(dest="action", required=True)
    imp = psub.add_parser("import", help="store,aisle,product,expected_facings[,shelf_row][,price]; replaces the "
                                         "planogram of each store/aisle the file names")
    imp.add_argument("file", type=Path)
    imp.add_argument("--by", default=None, help="who made the change (default: the local user)")
    listing = psub.add_parser("list")
    listing.add_argument("--store", action="append", default=[], dest="stores", help="repeat for several")
    listing.add_argument("--aisle", action="append", default=[], dest="aisles", help="repeat for several")
    for action in ("export", "template"):
        psub.add_parser(action).add_argument("--out", type=Path, default=None,
                                             help="write CSV here instead of printing it")
    for parser_ in psub.choices.values():
        parser_.add_argument("--db", default=None)
    p.set_defaults(run=cmd_planogram)


def add_compliance(sub) -> None:
    p = sub.add_parser("compliance", help="planogram compliance and on-shelf availability per store, aisle and "
                                          "date, as CSV")
    p.add_argument("--store", action="append", default=[], dest="stores", help="repeat for several")
    p.add_argument("--aisle", action="append", default=[], dest="aisles", help="repeat for several")
    p.add_argument("--date", type=dt.date.fromisoformat, default=None, help="photo date, YYYY-MM-DD (default: all)")
    p.add_argument("--min-confidence", type=_probability, default=0.0,
                   help="regions below this top-1 probability are not counted as found (unless a reviewer "
                        "corrected them); steps of 0.05")
    p.add_argument("--level", choices=["products", "aisles", "prices"], default="products",
                   help="products: one line per planned or extra product with its status (default); aisles: "
                        "OSA, compliance and empty shelf share per store, aisle and date; prices: per product "
                        "with a planned price, the shelf-edge label read (--prices) and its price status")
    p.add_argument("--db", default=None)
    p.add_argument("--out", type=Path, default=None, help="write CSV here instead of printing it")
    p.set_defaults(run=cmd_compliance)


PARSERS = {"planogram": add_planogram, "compliance": add_compliance}
