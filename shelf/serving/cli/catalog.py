"""`catalog`: the SKU catalog (add, list, remove, evaluate)."""
from __future__ import annotations

import sys
from pathlib import Path

from shelf.access import LOCAL
from shelf.serving.cli.common import (
    EXIT_NO_WEIGHTS,
    EXIT_NOTHING_DONE,
    EXIT_OK,
    _load_model_or_explain,
    read_photos,
)


def cmd_catalog(args) -> int:
    from shelf.recognition import catalog
    from shelf.storage.store import open_store

    engine = open_store(args.db)
    skus = catalog.skus_frame(engine)
    by_name = {n.lower(): int(i) for i, n in zip(skus["id"], skus["name"])}
    if args.action == "list":
        if skus.empty:
            print("The catalog is empty.")
        else:
            print(skus.drop(columns="id").to_string(index=False))
        return EXIT_OK
    if args.action == "remove":
        if args.name.lower() not in by_name:
            print(f"error: no SKU named {args.name!r}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        catalog.remove_sku(engine, by_name[args.name.lower()], by=LOCAL)
        print(f"removed {args.name}")
        return EXIT_OK
    if args.action == "add":
        try:
            sku_id = by_name.get(args.name.lower()) or catalog.add_sku(engine, args.name, args.brand, args.category,
                                                                       args.gtin, by=LOCAL)
        except catalog.CatalogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        unreadable = []
        added, problems = catalog.add_references(engine, sku_id, read_photos(args.images, unreadable), by=LOCAL)
        for problem in unreadable + problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{args.name}: {added} reference photo(s) added")
        return EXIT_NOTHING_DONE if args.images and not added else EXIT_OK
    loaded = _load_model_or_explain(args.db)
    if loaded is None:
        return EXIT_NO_WEIGHTS
    threshold = catalog.get_threshold(engine) if args.threshold is None else args.threshold
    names = dict(zip(skus["id"], skus["name"])) | {catalog.UNKNOWN: "Unknown"}
    if args.labelled is None:
        embeddings, sku_ids, _ = catalog.reference_embeddings(engine, loaded)
        if len(set(sku_ids)) < 2:
            print("error: leave-one-out needs at least two SKUs with references", file=sys.stderr)
            return EXIT_NOTHING_DONE
        results = catalog.leave_one_out(embeddings, sku_ids)
        report = catalog.evaluate(results["true"], results["predicted"], results["similarity"], threshold)
        suggested, f1 = catalog.suggest_threshold(results)
        print(f"leave-one-out over {len(results)} reference photo(s) of {len(set(sku_ids))} SKU(s)")
    else:
        try:
            items, problems = _labelled_set(args.labelled)
        except (catalog.CatalogError, OSError) as exc:
            print(f"error: labelled set {args.labelled}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        report, names, more = catalog.evaluate_labelled(engine, loaded, items, threshold)
        for problem in problems + more:
            print(f"warning: {problem}", file=sys.stderr)
        suggested = f1 = None
        print(f"labelled set: {len(items)} photo(s)")
        if not report.per_sku["support"].sum():
            print(f"error: no photo of the labelled set {args.labelled} could be evaluated", file=sys.stderr)
            return EXIT_NOTHING_DONE
    print(f"accuracy {report.accuracy:.1%} at threshold {threshold:.3f}")
    if suggested is not None:
        print(f"suggested threshold {suggested:.3f} (known-vs-unknown F1 {f1:.2f}); not applied")
    print(report.per_sku.assign(sku=report.per_sku["sku"].map(names)).to_string(index=False))
    for row in report.worst.head(5).itertuples():
        print(f"  {names.get(row.true)} taken for {names.get(row.predicted)} (similarity {row.similarity:.3f})")
    return EXIT_OK


def _labelled_set(path: Path):
    """(items, problems) of a folder of SKU folders, a zip of one, or a CSV of file,sku."""
    from shelf.recognition import catalog
    if not path.exists():
        raise catalog.CatalogError("no such file or folder")
    if path.is_dir():
        return catalog.labelled_from_folder(path), []
    if path.suffix.lower() == ".zip":
        return catalog.labelled_from_zip(path, path.name)
    return catalog.labelled_from_csv(path)


def add_catalog(sub) -> None:
    p = sub.add_parser("catalog", help="the SKU catalog: add, list, remove, evaluate")
    csub = p.add_subparsers(dest="action", required=True)
    add = csub.add_parser("add", help="add a SKU with reference photos (or more photos to an existing SKU)")
    add.add_argument("name")
    add.add_argument("images", nargs="*", metavar="IMAGE")
    add.add_argument("--brand", default="")
    add.add_argument("--category", default="Snacks & packaged food")
    add.add_argument("--gtin", default=None)
    listing = csub.add_parser("list")
    rm = csub.add_parser("remove")
    rm.add_argument("name")
    ev = csub.add_parser("evaluate", help="leave-one-out over the references, or a labelled set")
    ev.add_argument("--labelled", type=Path, default=None,
                    help="a folder with one sub-folder per SKU, or a CSV of file,sku")
    ev.add_argument("--threshold", type=float, default=None, help="default: the catalog's threshold")
    for parser_ in (add, listing, rm, ev):
        parser_.add_argument("--db", default=None)
    p.set_defaults(run=cmd_catalog)


PARSERS = {"catalog": add_catalog}
