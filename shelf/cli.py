"""`python -m shelf`: batch work without a browser.

Exit codes: 0 success; 1 nothing could be processed (every input failed); 2 usage error (argparse);
3 no usable weights (the message says how to get them).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

from shelf import config
from shelf.access import LOCAL  # the CLI is run by whoever has the machine: everything allowed, audited
from shelf.files import FileTooLarge, read_bounded

EXIT_OK, EXIT_NOTHING_DONE, EXIT_USAGE, EXIT_NO_WEIGHTS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _top_k(value: str) -> int:
    k = int(value)
    if not 1 <= k <= 1000:
        raise argparse.ArgumentTypeError("top-k must be between 1 and 1000")
    return k


def _probability(value: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return p


def _regions(value: str):
    from shelf.regions import parse_region_mode
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
    from shelf.tally import TallyFilter
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
    from shelf.sources import parse_layout
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
    p.add_argument("--top-k", type=_top_k, default=3)
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: SHELF_DATABASE_URL or the data dir)")
    p.add_argument("--catalog", action="store_true", help="also name SKUs from the catalog by similarity")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shelf", description="Shelf: retail shelf recognition.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify whole images; nothing is stored")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=_top_k, default=3)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")

    p = sub.add_parser("recognize", help="recognize photos and store the results")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_recognition_options(p)
    p.add_argument("--again", action="store_true",
                   help="recognize photos that are already stored again with these options (and this store, aisle "
                        "and date): their new regions count from now on, the old ones stay as history")

    p = sub.add_parser("photo", help="list stored photos, correct a photo's store/aisle/date, or delete a photo")
    psub = p.add_subparsers(dest="action", required=True)
    listing = psub.add_parser("list", help="the newest stored photos")
    listing.add_argument("--store", default=None, help="only this store's photos")
    listing.add_argument("--limit", type=_positive, default=50)
    edit = psub.add_parser("edit", help="set the store, aisle or date of a stored photo (what is not given stays)")
    edit.add_argument("photo_id", type=int, metavar="PHOTO_ID")
    edit.add_argument("--store", default=None)
    edit.add_argument("--aisle", default=None)
    edit.add_argument("--date", type=_date_or_none, default=argparse.SUPPRESS,
                      help="capture date YYYY-MM-DD, or 'none' to clear it")
    delete = psub.add_parser("delete", help="delete a photo with its regions, predictions and corrections")
    delete.add_argument("photo_id", type=int, metavar="PHOTO_ID")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for q in (listing, edit, delete):
        q.add_argument("--db", default=None, help="SQLAlchemy URL (default: SHELF_DATABASE_URL or the data dir)")

    p = sub.add_parser("batch", help="recognize a photo archive (folders, globs, manifest CSVs, URIs), in this "
                                     "process or on a Ray cluster; exactly once, resumable")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a folder (walked recursively), a glob, a manifest CSV (path,store,aisle,date) or a file; "
                        "any may be a pyarrow filesystem URI such as s3://bucket/prefix")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: a Ray cluster")
    p.add_argument("--address", default=None,
                   help="the Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: start Ray on this machine)")
    p.add_argument("--workers", type=_positive, default=None,
                   help="classifier actors, one model each (default: as many as the cluster's CPUs allow)")
    p.add_argument("--db-pool", type=_positive, default=1,
                   help="database connections each worker process may hold (default 1)")
    p.add_argument("--layout", type=_layout, default=None,
                   help="context from folder names below each SOURCE folder, e.g. '{store}/{aisle}/{date}/'")
    add_recognition_options(p)

    p = sub.add_parser("tallies", help="facings, share of shelf and confidence from the store, as CSV")
    p.add_argument("--by", action="append", choices=["label", "category", "sku", "brand", "store", "aisle", "date"],
                   default=None,
                   help="grouping; repeat for several (default: label)")
    _selection_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="write CSV here instead of printing it")

    p = sub.add_parser("planogram", help="planograms: import a CSV, list or export them, or write the template")
    psub = p.add_subparsers(dest="action", required=True)
    imp = psub.add_parser("import", help="store,aisle,product,expected_facings[,shelf_row]; replaces the "
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

    p = sub.add_parser("compliance", help="planogram compliance and on-shelf availability per store, aisle and "
                                          "date, as CSV")
    p.add_argument("--store", action="append", default=[], dest="stores", help="repeat for several")
    p.add_argument("--aisle", action="append", default=[], dest="aisles", help="repeat for several")
    p.add_argument("--date", type=dt.date.fromisoformat, default=None, help="photo date, YYYY-MM-DD (default: all)")
    p.add_argument("--min-confidence", type=_probability, default=0.0,
                   help="regions below this top-1 probability are not counted as found (unless a reviewer "
                        "corrected them); steps of 0.05")
    p.add_argument("--level", choices=["products", "aisles"], default="products",
                   help="products: one line per planned or extra product with its status (default); aisles: "
                        "OSA, compliance and empty shelf share per store, aisle and date")
    p.add_argument("--db", default=None)
    p.add_argument("--out", type=Path, default=None, help="write CSV here instead of printing it")

    p = sub.add_parser("export", help="detections (CSV, COCO, SKU-110K), tallies or the provenance manifest")
    p.add_argument("what", choices=["detections", "tallies", "manifest"])
    p.add_argument("--format", choices=["csv", "coco", "sku110k"], default="csv",
                   help="for detections: csv, coco (JSON) or sku110k (CSV)")
    _selection_arguments(p)
    p.add_argument("--out", type=Path, required=True)

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

    p = sub.add_parser("regions", help="measure a region mode against labelled boxes")
    rsub = p.add_subparsers(dest="action", required=True)
    ev = rsub.add_parser("evaluate", help="precision, recall, F1, AP and counting error per photo and overall")
    ev.add_argument("images", nargs="+", metavar="PHOTO")
    ev.add_argument("--truth", type=Path, required=True, help="the true boxes: SKU-110K CSV, COCO JSON or YOLO txt")
    ev.add_argument("--regions", type=_regions, default="auto", help=REGIONS_HELP)
    ev.add_argument("--format", choices=["table", "csv", "json"], default="table")

    p = sub.add_parser("detector", help="import a YOLO product detector (ONNX) or list the imported ones")
    dsub = p.add_subparsers(dest="action", required=True)
    dsub.add_parser("import").add_argument("path", type=Path)
    dsub.add_parser("status")

    sub.add_parser("bench", help="inference benchmark: seed pipeline vs faithful and fast modes "
                                 "(python -m shelf bench --help)", add_help=False)

    p = sub.add_parser("serve", help="the HTTP API (FastAPI on uvicorn); OpenAPI docs at /docs")
    p.add_argument("--host", default="127.0.0.1",
                   help="where to listen (default 127.0.0.1); without any API token always 127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=_positive, default=1, help="worker processes, one model each (default 1)")
    p.add_argument("--db", default=None)

    p = sub.add_parser("token", help="API tokens: create (shown once), list, revoke")
    tsub = p.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create")
    create.add_argument("name", help="who or what uses the token")
    create.add_argument("--role", choices=["viewer", "reviewer", "admin"], required=True)
    revoke = tsub.add_parser("revoke")
    revoke.add_argument("name")
    for parser_ in (create, revoke, tsub.add_parser("list")):
        parser_.add_argument("--db", default=None)

    p = sub.add_parser("weights", help="weights status, import or download")
    wsub = p.add_subparsers(dest="action", required=True)
    wsub.add_parser("status")
    imp = wsub.add_parser("import")
    imp.add_argument("path", type=Path)
    wsub.add_parser("download")
    recalibrate = wsub.add_parser("recalibrate", help="fast mode: re-take its calibration crops from the store now "
                                                      "and rebuild the int8 model (otherwise taken once, then kept)")
    recalibrate.add_argument("--db", default=None)
    return parser


def _load_model_or_explain(db: str | None = None):
    from shelf.backends import BackendError, chosen_backend, with_backend
    from shelf.model import HOW_TO_GET_WEIGHTS, load_model
    from shelf.store import open_store
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
    return loaded


def _progress(total: int, description: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit="img", file=sys.stderr, disable=total < 3 or None)


def cmd_classify(args) -> int:
    from shelf.classify import classification_record
    from shelf.images import MAX_BYTES

    loaded = _load_model_or_explain()
    if loaded is None:
        return EXIT_NO_WEIGHTS
    records = []
    with _progress(len(args.images), "classify") as bar:
        for path in args.images:
            try:
                records.append(classification_record(loaded, path, read_bounded(path, MAX_BYTES), args.top_k))
            except FileTooLarge as exc:
                records.append({"image": path, "error": exc.problem})
            except OSError as exc:
                records.append({"image": path, "error": f"cannot read the file ({exc.strerror or exc})"})
            bar.update()
    _print_classifications(records, args.format)
    return EXIT_OK if any("predictions" in r for r in records) else EXIT_NOTHING_DONE


def _print_classifications(records: list[dict], fmt: str) -> None:
    if fmt == "json":
        json.dump(records, sys.stdout, indent=2)
        print()
        return
    columns = ["image", "rank", "class_index", "label", "probability"]
    rows = [{"image": r["image"], "rank": p["rank"], "class_index": p["class_index"], "label": p["label"],
             "probability": p["probability"]} for r in records for p in r.get("predictions", [])]
    if fmt == "csv":
        import pandas as pd

        from shelf.export import to_csv_bytes
        sys.stdout.write(to_csv_bytes(pd.DataFrame(rows, columns=columns)).decode())
    elif rows:  # a plain text table: pandas would add most of a second to a one-image command's start-up
        cells = [columns] + [[str(r["image"]), str(r["rank"]), str(r["class_index"]), r["label"],
                              f"{r['probability']:.2%}"] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        print("\n".join(" ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells))
    for r in records:
        if "error" in r:
            print(f"error: {r['image']}: {r['error']}", file=sys.stderr)


def _box_file(mode):
    """The parsed box file of a boxes:FILE mode, with its problems printed; None and a message if unusable."""
    from shelf.boxfiles import MAX_BOX_FILE_BYTES, BoxFileError, parse_box_file
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
    from shelf.detector import DetectorError, resolve_detector
    try:
        return resolve_detector(mode.source)
    except DetectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _region_inputs(mode):
    """(box file, detector) a region mode needs, or None when one of them cannot be used (message printed)."""
    box_file = _box_file(mode) if mode.kind == "boxes" else None
    found_detector = _detector(mode) if mode.kind == "detector" else None
    if (mode.kind == "boxes" and box_file is None) or (mode.kind == "detector" and found_detector is None):
        return None
    return box_file, found_detector


def _catalog_index(args, engine, loaded):
    """The SKU catalog's index and threshold when --catalog is given, else (None, 0.0)."""
    if not args.catalog:
        return None, 0.0
    from shelf import catalog
    index = catalog.load_index(engine, loaded, args.crop)
    if not index.size:
        print("warning: the SKU catalog is empty; no SKUs will be named", file=sys.stderr)
    return index, catalog.get_threshold(engine)


def cmd_recognize(args) -> int:
    inputs = _region_inputs(args.regions)  # before loading torch: a bad box file or detector is told at once
    if inputs is None:
        return EXIT_USAGE
    box_file, detector = inputs
    from shelf.images import MAX_BYTES
    from shelf.pipeline import Upload, recognize
    from shelf.store import Context, open_store

    loaded = _load_model_or_explain(args.db)
    if loaded is None:
        return EXIT_NO_WEIGHTS
    engine = open_store(args.db)
    context = Context(args.store, args.aisle, args.date)
    index, threshold = _catalog_index(args, engine, loaded)
    results, unreadable, runs = [], [], {}  # one run for the whole command, though photos go one at a time
    with _progress(len(args.images), "recognize") as bar:
        for path in args.images:  # one at a time: a folder of photos never sits in memory at once
            try:
                upload = Upload(path, read_bounded(path, MAX_BYTES))
            except FileTooLarge as exc:
                unreadable.append(str(exc))
                bar.update()
                continue
            except OSError as exc:
                unreadable.append(f"{path}: cannot read the file ({exc.strerror or exc})")
                bar.update()
                continue
            results.extend(recognize(loaded, engine, [upload], context, args.regions, args.top_k, args.crop,
                                     box_file=box_file, catalog=index, catalog_threshold=threshold,
                                     detector=detector, previews=0, again=args.again, runs=runs, by=LOCAL))
            bar.update()
    for r in results:
        if r.ok:
            note = " (already stored)" if r.already_stored else " (recognized again)" if r.recognized_again else ""
            print(f"{r.name}: photo {r.photo_id}, {len(r.regions)} region(s){note}; {_facings_summary(r)}")
            for message in r.notes:
                print(f"  note: {message}", file=sys.stderr)
    for r in results:
        if r.skipped:
            print(f"note: {r.error}", file=sys.stderr)
    for message in unreadable + [r.error for r in results if not r.ok and not r.skipped]:
        print(f"error: {message}", file=sys.stderr)
    stored = sum(r.ok for r in results)
    print(f"{stored} of {len(args.images)} photo(s) recognized and stored.")
    return EXIT_OK if stored else EXIT_NOTHING_DONE


def cmd_batch(args) -> int:
    from shelf import engines, sources
    from shelf.store import Context

    inputs = _region_inputs(args.regions)
    if inputs is None:
        return EXIT_USAGE
    db_url = engines.absolute_url(args.db or config.database_url())
    context = Context(args.store, args.aisle, args.date).cleaned()
    jobs, problems = sources.list_jobs(args.sources, sources.Job("", context.store, context.aisle, args.date.isoformat()
                                                                 if args.date else ""), args.layout)
    cluster = None
    if args.engine == "ray":
        try:
            cluster = engines.connect(args.address)
            engines.check_store_for(cluster, db_url)
        except Exception as exc:  # ray.init raises ConnectionError, ValueError, RuntimeError … for a bad address
            print(f"error: {exc}" if isinstance(exc, engines.ClusterError) else
                  f"error: cannot use the Ray cluster at {args.address or 'this machine'}: {exc}", file=sys.stderr)
            if cluster is not None:
                engines.disconnect(cluster)
            return EXIT_USAGE
    elif args.workers or args.address:
        print("note: --workers and --address apply to --engine ray; running in this process", file=sys.stderr)
    try:
        return _run_batch(args, db_url, jobs, problems, inputs, cluster)
    finally:
        if cluster is not None:
            engines.disconnect(cluster)


def _run_batch(args, db_url: str, jobs: list, problems: list, region_inputs, cluster) -> int:
    from tqdm import tqdm

    from shelf import batch, batches, engines, stages
    from shelf.pipeline import catalog_provenance, mode_provenance, run_provenance
    from shelf.store import create_run, open_store

    loaded = _load_model_or_explain(db_url)
    if loaded is None:
        return EXIT_NO_WEIGHTS
    engine = open_store(db_url)
    index, threshold = _catalog_index(args, engine, loaded)
    box_file, detector = region_inputs
    settings = stages.Settings(db_url, args.regions.text, args.crop, args.top_k, box_file, index, threshold,
                               backend=getattr(loaded.backend, "kind", "eager"), weights_sha256=loaded.weights.sha256,
                               db_pool=args.db_pool, environment=engines.worker_environment(), detector=detector)
    mode_text, detector_info = mode_provenance(args.regions, detector)
    settings = dataclasses.replace(settings, run_id=create_run(engine, run_provenance(
        loaded, mode_text, args.top_k, args.crop, catalog_provenance(settings), detector_info)))
    workers = (args.workers or engines.default_workers(cluster)) if cluster else 1
    place = batch.who_and_where() + (f" · {cluster.description}, {workers} classifier(s)" if cluster
                                     else " · in-process")
    tally = batch.Tally(total=len(jobs) + len(problems))
    batch_id = batches.start_batch(engine, batch.describe_sources(args.sources), args.engine, place, tally.total,
                                   settings.run_id)
    errors = batch.ErrorList(batch.errors_path(batch_id))
    batches.update_batch(engine, batch_id, errors_file=str(errors.path))
    batch.report_listing(problems, errors, tally)
    results = engines.run_ray(jobs, settings, cluster, workers) if cluster else \
        engines.run_local(jobs, settings, loaded)
    try:
        with tqdm(total=tally.total, initial=len(problems), desc=f"batch {batch_id}", unit="photo",
                  file=sys.stderr, disable=None) as bar:
            for result in batch.run(results, tally, engine, batch_id, errors, bar):
                if result["status"] == stages.FAILED:
                    line = f" (manifest line {result['line']})" if result["line"] else ""
                    bar.write(f"error: {result['source']}{line}: {result['error']}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\ninterrupted: batch {batch_id} did {tally.done} of {tally.total}. Run the same command again to "
              "resume; photos already stored are skipped.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        errors.close()
    where = f" on {len(tally.nodes)} node(s)" if cluster else ""
    print(f"batch {batch_id} ({args.engine}{where}): {tally.summary()}")
    print(f"errors listed in {errors.path}" if tally.counts[stages.FAILED] else "no errors")
    return EXIT_OK if tally.total == 0 or tally.done > tally.counts[stages.FAILED] else EXIT_NOTHING_DONE


def _facings_summary(result, most: int = 3) -> str:
    from collections import Counter
    counts = Counter((r.top1.class_index, r.top1.label) for r in result.regions)
    if len(result.regions) == 1:
        top = result.regions[0].top1
        return f"top-1 {top.label} [{top.class_index}] {top.probability:.1%}"
    return "facings " + ", ".join(f"{label} [{index}] ×{n}" for (index, label), n in counts.most_common(most))


def cmd_photo(args) -> int:
    from shelf import store

    engine = store.open_store(args.db)
    if args.action == "list":
        page = store.photos_page(engine, args.store, args.limit)
        print(page.drop(columns="created_at").to_string(index=False) if len(page) else "No photos stored.")
        return EXIT_OK
    try:
        context = store.photo_context(engine, args.photo_id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    if args.action == "edit":
        changes = {field: value for field, value in (("store", args.store), ("aisle", args.aisle))
                   if value is not None}
        if "date" in args:
            changes["captured_on"] = args.date
        new = dataclasses.replace(context, **changes).cleaned()
        store.set_photo_context(engine, args.photo_id, new)
        print(f"photo {args.photo_id}: store {new.store or '—'}, aisle {new.aisle or '—'}, "
              f"date {new.captured_on or '—'}")
        return EXIT_OK
    if not args.yes:
        answer = input(f"Delete photo {args.photo_id} with its regions, predictions and corrections? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("kept")
            return EXIT_NOTHING_DONE
    print(f"deleted photo {args.photo_id} ({store.delete_photo(engine, args.photo_id)})")
    return EXIT_OK


def cmd_tallies(args) -> int:
    from shelf.export import to_csv_bytes
    from shelf.report import tally_table
    from shelf.store import open_store

    data = to_csv_bytes(tally_table(open_store(args.db), args.by or ["label"], args.min_confidence, _selection(args)))
    if args.out:
        args.out.write_bytes(data)
        print(f"written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return EXIT_OK


def cmd_export(args) -> int:
    from shelf import export
    from shelf.report import tally_table, totals
    from shelf.store import open_store

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


def _write_csv(data: bytes, out: Path | None) -> None:
    if out:
        out.write_bytes(data)
        print(f"written to {out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())


def cmd_planogram(args) -> int:
    from shelf import access, planogram
    from shelf.store import open_store

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
    from shelf import compliance
    from shelf.export import to_csv_bytes
    from shelf.store import open_store
    from shelf.tally import TallyFilter

    engine = open_store(args.db)
    selection = TallyFilter(args.stores, args.aisles, args.date, args.date)
    table = compliance.summary(engine, selection, args.min_confidence) if args.level == "aisles" else \
        compliance.lines(engine, selection, args.min_confidence)
    if table.empty:
        print("note: no store/aisle/date in the selection has both photos and a planogram", file=sys.stderr)
    _write_csv(to_csv_bytes(table), args.out)
    return EXIT_OK


def _described(args) -> dict:
    return {key: value for key, value in {"stores": args.stores, "aisles": args.aisles,
                                          "categories": args.categories, "from": str(args.date_from or ""),
                                          "to": str(args.date_to or ""),
                                          "min_confidence": args.min_confidence}.items() if value}


def cmd_catalog(args) -> int:
    from shelf import catalog
    from shelf.store import open_store

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
        added, problems = catalog.add_references(engine, sku_id, _readable(args.images, unreadable), by=LOCAL)
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


def _readable(paths, unreadable: list[str]):
    """(path, bytes) of each photo given, read one at a time as they are used; the ones that cannot be read go to
    `unreadable` as messages."""
    from shelf.images import MAX_BYTES
    for path in paths:
        try:
            yield path, read_bounded(path, MAX_BYTES)
        except FileTooLarge as exc:
            unreadable.append(str(exc))
        except OSError as exc:
            unreadable.append(f"{path}: cannot read the file ({exc.strerror or exc})")


def _labelled_set(path: Path):
    """(items, problems) of a folder of SKU folders, a zip of one, or a CSV of file,sku."""
    from shelf import catalog
    if not path.exists():
        raise catalog.CatalogError("no such file or folder")
    if path.is_dir():
        return catalog.labelled_from_folder(path), []
    if path.suffix.lower() == ".zip":
        return catalog.labelled_from_zip(path, path.name)
    return catalog.labelled_from_csv(path)


def cmd_weights(args) -> int:
    from shelf import model

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
        return EXIT_OK
    print(f"weights: unavailable\n  {status.problem}")
    for line in status.tried:
        print(f"  tried {line}")
    print(model.HOW_TO_GET_WEIGHTS)
    return EXIT_NO_WEIGHTS


def _recalibrate(db: str | None) -> int:
    from shelf import backends, model
    from shelf.store import open_store
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


def cmd_regions(args) -> int:
    from shelf.boxfiles import BoxFileError, parse_box_file
    from shelf.evaluation import summarise
    from shelf.pipeline import Upload, compare_regions

    try:
        truth = parse_box_file(args.truth.read_bytes(), args.truth.name)
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
                upload = Upload(path, Path(path).read_bytes())
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
        from shelf.export import to_csv_bytes
        sys.stdout.write(to_csv_bytes(frame).decode())
    else:
        print(f"regions {mode}: matched at IoU ≥ 0.5" + (" (AP: COCO-style, 101-point)" if "ap50" in frame else ""))
        ratio = "{:.3f}".format
        print(frame.to_string(index=False, formatters={c: ratio for c in ("precision", "recall", "f1", "ap50",
                                                                          "ap50_95")}))


def cmd_detector(args) -> int:
    from shelf import detector

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


def cmd_bench(bench_args: list[str]) -> int:
    """Runs benchmarks/inference.py (a development tool: it needs the repository, not only the package)."""
    try:
        from benchmarks.inference import main as bench
    except ImportError:
        print("error: the benchmark lives in the repository's benchmarks/ folder; run from the project root",
              file=sys.stderr)
        return EXIT_USAGE
    return bench(bench_args)


def cmd_serve(args) -> int:
    import os

    import uvicorn

    from shelf import api, tokens
    from shelf.store import open_store
    engine = open_store(args.db)
    host, note = api.bind_address(args.host, tokens.any_active(engine))
    engine.dispose()
    if args.db:
        os.environ["SHELF_DATABASE_URL"] = args.db  # the workers open the same store
    os.environ[api.LOCAL_ENV] = "1" if note else ""
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(f"Shelf API on http://{host}:{args.port} (docs at /docs), {args.workers} worker(s)", file=sys.stderr)
    uvicorn.run("shelf.api:app_from_env", factory=True, host=host, port=args.port, workers=args.workers,
                log_level="info")
    return EXIT_OK


def cmd_token(args) -> int:
    from shelf import access, tokens
    from shelf.store import open_store
    access.require(access.LOCAL, "manage_tokens")  # the operator at the shell; one rule table for every door
    engine = open_store(args.db)
    if args.action == "create":
        try:
            secret = tokens.create_token(engine, args.name, args.role)
        except tokens.TokenError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(secret)
        print(f"token {args.name!r} ({args.role}) created; it is shown only this once: keep it now. Send it as "
              "'Authorization: Bearer <token>'.", file=sys.stderr)
        return EXIT_OK
    if args.action == "revoke":
        if not tokens.revoke_token(engine, args.name):
            print(f"error: no active token named {args.name!r}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(f"revoked {args.name}")
        return EXIT_OK
    found = tokens.list_tokens(engine)
    if not found:
        print("no API tokens (the API serves 127.0.0.1 only, without tokens)")
    for t in found:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        print(f"{t.name}\t{t.role}\tcreated {t.created_at:%Y-%m-%d %H:%M}\t{state}")
    return EXIT_OK


COMMANDS = {"classify": cmd_classify, "recognize": cmd_recognize, "photo": cmd_photo, "batch": cmd_batch,
            "tallies": cmd_tallies, "export": cmd_export, "catalog": cmd_catalog, "weights": cmd_weights,
            "regions": cmd_regions, "detector": cmd_detector, "planogram": cmd_planogram,
            "compliance": cmd_compliance, "serve": cmd_serve, "token": cmd_token}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        return cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
