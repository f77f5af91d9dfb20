"""`batch`: a photo archive through the same stages, in this process or on a Ray cluster."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys

from shelf import config
from shelf.serving.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_NO_WEIGHTS,
    EXIT_NOTHING_DONE,
    EXIT_OK,
    EXIT_USAGE,
    _catalog_index,
    _layout,
    _load_model_or_explain,
    _positive,
    _region_inputs,
    add_recognition_options,
)


def cmd_batch(args) -> int:
    from shelf.ingest import sources
    from shelf.recognition import engines
    from shelf.storage.store import Context

    inputs = _region_inputs(args.regions, args.db)
    if inputs is None:
        return EXIT_USAGE
    db_url = engines.absolute_url(args.db or config.database_url())
    context = Context(args.store, args.aisle, args.date).cleaned()
    jobs, problems = sources.list_jobs(args.sources, sources.Job("", context.store, context.aisle, args.date.isoformat()
                                                                 if args.date else ""), args.layout)
    cluster = None
    if args.engine == "ray":
        try:
            with _notes_to_stderr(engines.log):  # Ray Client's retries, as they happen
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


@contextlib.contextmanager
def _notes_to_stderr(logger: logging.Logger):
    """`logger`'s warnings printed as notes for the user while the block runs (the CLI sets up no logging)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _run_batch(args, db_url: str, jobs: list, problems: list, region_inputs, cluster) -> int:
    from tqdm import tqdm

    from shelf.analytics.tasks import evaluate_pending
    from shelf.recognition import batch, engines, stages
    from shelf.recognition.pipeline import (
        catalog_provenance,
        mode_provenance,
        run_provenance,
    )
    from shelf.recognition.prices import provenance as price_provenance
    from shelf.storage import batches, profiles
    from shelf.storage.store import create_run, open_store

    loaded = _load_model_or_explain(db_url)
    if loaded is None:
        return EXIT_NO_WEIGHTS
    engine = open_store(db_url)
    index, threshold = _catalog_index(args, engine, loaded)
    box_file, detector = region_inputs
    auto_profile, store_profiles = profiles.profiles_for(engine, args.regions.source) \
        if args.regions.kind == "auto" else (None, {})  # each photo's store picks its profile (--layout)
    settings = stages.Settings(db_url, args.regions.text, args.crop, args.top_k, box_file, index, threshold,
                               backend=getattr(loaded.backend, "kind", "eager"), weights_sha256=loaded.weights.sha256,
                               db_pool=args.db_pool, environment=engines.worker_environment(), detector=detector,
                               auto_profile=auto_profile, store_profiles=store_profiles, prices=args.prices)
    mode_text, detector_info = mode_provenance(args.regions, detector)
    settings = dataclasses.replace(settings, run_id=create_run(engine, run_provenance(
        loaded, mode_text, args.top_k, args.crop, catalog_provenance(settings), detector_info,
        region_profile=settings.profile_provenance(), prices=price_provenance() if args.prices else None)))
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
            def each(result: dict) -> None:
                if result["status"] == stages.STORED:
                    evaluate_pending(engine)  # store tasks from it, as each photo comes in
                if result["status"] == stages.FAILED:
                    line = f" (manifest line {result['line']})" if result["line"] else ""
                    bar.write(f"error: {result['source']}{line}: {result['error']}", file=sys.stderr)
            batch.run(results, tally, engine, batch_id, errors, bar, each)
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


def add_batch(sub) -> None:
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
    p.set_defaults(run=cmd_batch)


PARSERS = {"batch": add_batch}
