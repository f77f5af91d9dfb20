"""`regions`: measure a region mode against labelled boxes, tune `auto` from labelled photos, manage profiles."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from shelf.access import LOCAL
from shelf.files import FileTooLarge, read_bounded
from shelf.serving.cli.common import (
    EXIT_NOTHING_DONE,
    EXIT_OK,
    EXIT_USAGE,
    REGIONS_HELP,
    _progress,
    _region_inputs,
    _regions,
    read_photos,
)


def _truth(path: Path):
    """The parsed truth file with its problems printed (bad lines by number), or None and an error."""
    from shelf.ingest.boxfiles import MAX_BOX_FILE_BYTES, BoxFileError, parse_box_file
    try:
        truth = parse_box_file(read_bounded(path, MAX_BOX_FILE_BYTES), path.name)
    except FileTooLarge as exc:
        print(f"error: truth file {exc}", file=sys.stderr)
        return None
    except (OSError, BoxFileError) as exc:
        print(f"error: truth file {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return None
    for message in truth.messages:
        print(f"warning: {message}", file=sys.stderr)
    return truth


def _auto_params(mode, db: str | None):
    """The region profile's params for an auto:PROFILE mode (the default's otherwise), or None and an error."""
    from shelf.ingest.auto import AutoParams
    if mode.kind != "auto" or not mode.source:
        return AutoParams()
    from shelf.storage import profiles
    from shelf.storage.store import open_store
    try:
        return profiles.get_profile(open_store(db), mode.source).params
    except profiles.ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_regions(args) -> int:
    return {"evaluate": _evaluate, "tune": _tune, "profile": _profile}[args.action](args)


def _evaluate(args) -> int:
    from shelf.ingest.evaluation import summarise
    from shelf.recognition.pipeline import Upload, compare_regions

    truth = _truth(args.truth)
    inputs = _region_inputs(args.regions, args.db)
    params = _auto_params(args.regions, args.db)
    if truth is None or inputs is None or params is None:
        return EXIT_USAGE
    compared, unreadable = [], []
    with _progress(len(args.images), "evaluate") as bar:
        for path, data in read_photos(args.images, unreadable):
            compared.extend(compare_regions([Upload(path, data)], args.regions, truth, *inputs, auto_params=params))
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


def _tune(args) -> int:
    from shelf.ingest import tuning

    if args.name:
        from shelf.storage import profiles
        try:
            profiles.check_name(args.name)
        except profiles.ProfileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    truth = _truth(args.truth)
    if truth is None:
        return EXIT_USAGE
    unreadable: list[str] = []
    items, problems = tuning.labelled_photos(read_photos(args.images, unreadable), truth)
    for message in unreadable + problems:
        print(f"warning: {message}", file=sys.stderr)
    if not items:
        print("error: no photo has true boxes to tune on", file=sys.stderr)
        return EXIT_NOTHING_DONE
    if len(items) < 2:
        print("note: one photo cannot be cross-validated; the figure below is how well it fits that photo only",
              file=sys.stderr)
    with _progress(tuning.evaluations(len(items), args.passes), "tune") as bar:
        tuned = tuning.tune(items, passes=args.passes, progress=lambda: bar.update())
    print(tuning.report(tuned))
    if args.name:
        from shelf.storage import profiles
        from shelf.storage.store import open_store
        saved = profiles.save_profile(open_store(args.db), args.name, tuned.params, tuned.figures(), by=LOCAL)
        print(f"saved region profile {saved.label}: use it with --regions auto:{saved.name}, or for a store with "
              f"`python -m shelf regions profile store STORE {saved.name}`")
    else:
        print("not saved (give --name PROFILE to keep it)")
    return EXIT_OK


def _profile(args) -> int:
    from shelf.storage import profiles
    from shelf.storage.store import open_store

    engine = open_store(args.db)
    try:
        if args.profile_action == "remove":
            versions = profiles.remove_profile(engine, args.name, by=LOCAL)
            print(f"removed region profile {args.name} ({versions} version(s); runs that used it keep saying so)")
        elif args.profile_action == "store":
            if args.name is not None:
                profiles.set_store_profile(engine, args.store, args.name, by=LOCAL)
            name = profiles.store_profile_names(engine).get(args.store, profiles.DEFAULT)
            print(f"store {args.store or '(none)'}: auto uses the {name} profile")
        else:
            found = profiles.list_profiles(engine)
            stores = profiles.store_profile_names(engine)
            print("default (built in)" + _stores_using(stores, profiles.DEFAULT))
            for profile in found:
                cv = (profile.figures.get("cross_validated") or {}).get("f1")
                measured = f"cross-validated F1 {cv:.3f}" if cv is not None else "not cross-validated"
                print(f"{profile.label}  {profile.created_at:%Y-%m-%d} by {profile.created_by}  {measured} on "
                      f"{profile.figures.get('photos', '?')} photo(s)  {json.dumps(profile.provenance()['params'])}"
                      + _stores_using(stores, profile.name))
    except profiles.ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    return EXIT_OK


def _stores_using(stores: dict[str, str], name: str) -> str:
    from shelf.storage.profiles import DEFAULT
    using = sorted(store for store, profile in stores.items() if profile == name)
    if name == DEFAULT:
        return "  (every store without its own)" if stores else "  (every store)"
    return f"  stores: {', '.join(using)}" if using else ""


def add_regions(sub) -> None:
    p = sub.add_parser("regions", help="measure a region mode against labelled boxes, tune auto from them, and "
                                       "manage the region profiles")
    rsub = p.add_subparsers(dest="action", required=True)
    ev = rsub.add_parser("evaluate", help="precision, recall, F1, AP and counting error per photo and overall")
    ev.add_argument("images", nargs="+", metavar="PHOTO")
    ev.add_argument("--truth", type=Path, required=True, help="the true boxes: SKU-110K CSV, COCO JSON or YOLO txt")
    ev.add_argument("--regions", type=_regions, default="auto", help=REGIONS_HELP)
    ev.add_argument("--format", choices=["table", "csv", "json"], default="table")
    ev.add_argument("--db", default=None, help="where auto:PROFILE's profile is stored (default: the data dir)")
    tune = rsub.add_parser("tune", help="tune auto on labelled photos (leave-one-out cross-validated F1 @ IoU "
                                        "0.5) and save it as a region profile")
    tune.add_argument("images", nargs="+", metavar="PHOTO")
    tune.add_argument("--truth", type=Path, required=True, help="the true boxes: SKU-110K CSV, COCO JSON or YOLO txt")
    tune.add_argument("--name", default=None, help="save the result as this region profile (a new version if it "
                                                   "exists)")
    tune.add_argument("--passes", type=int, choices=[1, 2, 3], default=2, help="rounds of the search (default 2)")
    tune.add_argument("--db", default=None)
    profile = rsub.add_parser("profile", help="region profiles: list, remove, or the one a store uses")
    psub = profile.add_subparsers(dest="profile_action", required=True)
    psub.add_parser("list")
    remove = psub.add_parser("remove")
    remove.add_argument("name")
    store = psub.add_parser("store", help="show, or set with NAME ('default' for the built-in one), the profile "
                                          "auto uses for a store's photos")
    store.add_argument("store")
    store.add_argument("name", nargs="?", default=None)
    for parser_ in psub.choices.values():
        parser_.add_argument("--db", default=None)
    p.set_defaults(run=cmd_regions)


PARSERS = {"regions": add_regions}
