"""`classify`, `recognize` and `photo`: photos in, predictions out (stored, except by classify)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from shelf.access import LOCAL
from shelf.files import FileTooLarge, read_bounded
from shelf.serving.cli.common import (
    EXIT_NO_WEIGHTS,
    EXIT_NOTHING_DONE,
    EXIT_OK,
    EXIT_USAGE,
    _catalog_index,
    _date_or_none,
    _load_model_or_explain,
    _positive,
    _progress,
    _region_inputs,
    _top_k,
    add_recognition_options,
)


def cmd_classify(args) -> int:
    from shelf.ingest.images import MAX_BYTES
    from shelf.recognition.classify import classification_record

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

        from shelf.analytics.export import to_csv_bytes
        sys.stdout.write(to_csv_bytes(pd.DataFrame(rows, columns=columns)).decode())
    elif rows:  # a plain text table: pandas would add most of a second to a one-image command's start-up
        cells = [columns] + [[str(r["image"]), str(r["rank"]), str(r["class_index"]), r["label"],
                              f"{r['probability']:.2%}"] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        print("\n".join(" ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells))
    for r in records:
        if "error" in r:
            print(f"error: {r['image']}: {r['error']}", file=sys.stderr)


def cmd_recognize(args) -> int:
    inputs = _region_inputs(args.regions, args.db)  # before loading torch: a bad box file, detector or profile
    if inputs is None:
        return EXIT_USAGE
    box_file, detector = inputs
    from shelf.ingest.images import MAX_BYTES
    from shelf.recognition.pipeline import Upload, recognize
    from shelf.storage.store import Context, open_store

    loaded = _load_model_or_explain(args.db)
    if loaded is None:
        return EXIT_NO_WEIGHTS
    engine = open_store(args.db)
    context = Context(args.store, args.aisle, args.date)
    index, threshold = _catalog_index(args, engine, loaded)
    unreadable = []

    def readable():  # one at a time, as recognize asks for them: a folder of photos never sits in memory at once
        for path in args.images:
            try:
                yield Upload(path, read_bounded(path, MAX_BYTES))
            except FileTooLarge as exc:
                unreadable.append(str(exc))
            except OSError as exc:
                unreadable.append(f"{path}: cannot read the file ({exc.strerror or exc})")

    with _progress(len(args.images), "recognize") as bar:
        results = recognize(loaded, engine, readable(), context, args.regions, args.top_k, args.crop,
                            box_file=box_file, catalog=index, catalog_threshold=threshold, detector=detector,
                            previews=0, again=args.again, by=LOCAL, prices=args.prices, total=len(args.images),
                            on_progress=lambda done, total, name: bar.update(done + len(unreadable) - bar.n))
    _note_task_changes(engine)
    for r in results:
        if r.ok:
            note = " (already stored)" if r.already_stored else " (recognized again)" if r.recognized_again else ""
            labels = f"; {len(r.labels)} price label(s), {sum(lb.price is not None for lb in r.labels)} read" \
                if r.prices_read else ""
            print(f"{r.name}: photo {r.photo_id}, {len(r.regions)} region(s){note}; {_facings_summary(r)}{labels}")
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


def _note_task_changes(engine) -> None:
    """Store tasks from the photos just stored (shelf.analytics.tasks), told on stderr when any changed."""
    from shelf.storage.tasks import drop_checks_when_idle
    if drop_checks_when_idle(engine):
        return
    from shelf.analytics.tasks import evaluate_pending
    changes = evaluate_pending(engine)
    if changes:
        print("note: store tasks " + ", ".join(f"{what} {n}" for what, n in sorted(changes.items())),
              file=sys.stderr)


def _facings_summary(result, most: int = 3) -> str:
    from collections import Counter
    counts = Counter((r.top1.class_index, r.top1.label) for r in result.regions)
    if len(result.regions) == 1:
        top = result.regions[0].top1
        return f"top-1 {top.label} [{top.class_index}] {top.probability:.1%}"
    return "facings " + ", ".join(f"{label} [{index}] ×{n}" for (index, label), n in counts.most_common(most))


def cmd_photo(args) -> int:
    from shelf.storage import store

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


def add_classify(sub) -> None:
    p = sub.add_parser("classify", help="classify whole images; nothing is stored")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=_top_k, default=3)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(run=cmd_classify)


def add_recognize(sub) -> None:
    p = sub.add_parser("recognize", help="recognize photos and store the results")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_recognition_options(p)
    p.add_argument("--again", action="store_true",
                   help="recognize photos that are already stored again with these options (and this store, aisle "
                        "and date): their new regions count from now on, the old ones stay as history")
    p.set_defaults(run=cmd_recognize)


def add_photo(sub) -> None:
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
    p.set_defaults(run=cmd_photo)


PARSERS = {"classify": add_classify, "recognize": add_recognize, "photo": add_photo}
