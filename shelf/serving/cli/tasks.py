"""`tasks`: store tasks from the shell — list, acknowledge, mark done; deliver webhooks; rules, webhooks, outbox.

The shell acts as the local user (admin), or as `--by NAME`; every change is audited like the dashboard's.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from shelf.files import FileTooLarge, read_bounded
from shelf.serving.cli.common import EXIT_NOTHING_DONE, EXIT_OK, EXIT_USAGE, _positive

LIST_FIELDS = ["id", "state", "store", "aisle", "product", "finding", "expected_facings", "found_facings",
               "empty_share", "date", "photo_id", "opened_at", "acknowledged_by", "done_by", "verified_at"]
MAX_RULES_BYTES = 1024 * 1024


def _hours(value: str) -> float:
    from shelf.storage.tasks import MAX_AGE_HOURS
    hours = float(value)
    if not 0 <= hours <= MAX_AGE_HOURS:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_AGE_HOURS} hours")
    return hours


def cmd_tasks(args) -> int:
    from shelf.storage.store import open_store
    engine = open_store(args.db)
    return {"list": _list, "ack": _move, "done": _move, "deliver": _deliver, "evaluate": _evaluate,
            "rules": _rules, "webhook": _webhook, "outbox": _outbox}[args.action](engine, args)


def _list(engine, args) -> int:
    from shelf.storage import tasks as stored
    from shelf.text import inert
    try:
        f = stored.TaskFilter(args.stores, args.aisles, args.states, args.older_than)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = stored.page(engine, f, args.limit)
    if args.format == "json":
        print(json.dumps([{k: row[k] for k in LIST_FIELDS} for row in rows], default=str, indent=1))
    elif args.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(LIST_FIELDS)
        writer.writerows([[inert(row[k]) for k in LIST_FIELDS]
                          for row in rows])
        sys.stdout.write(out.getvalue())
    elif not rows:
        print("No tasks" + (" in that selection." if args.stores or args.aisles or args.states else "."))
    else:
        for row in rows:
            facings = f" {row['found_facings']}/{row['expected_facings']} facings" \
                if row["expected_facings"] is not None else ""
            print(f"#{row['id']}\t{row['state']}\t{row['store']} / {row['aisle']}\t{row['product']}: "
                  f"{row['finding']}{facings}\t{row['date'] or ''}\topened {row['opened_at']:%Y-%m-%d %H:%M}")
    return EXIT_OK


def _move(engine, args) -> int:
    from shelf.access import LOCAL, Forbidden, acting
    from shelf.storage import tasks as stored
    try:
        task = stored.move(engine, args.task_id, "acknowledge" if args.action == "ack" else "done",
                           by=acting(args.by) if args.by else LOCAL)
    except (stored.TaskError, Forbidden, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    print(f"task {task['id']} ({task['store']} / {task['aisle']}, {task['product']}) is {task['state']}")
    return EXIT_OK


def _evaluate(engine, args) -> int:
    from shelf.analytics.tasks import evaluate_pending
    changes = evaluate_pending(engine)
    print(", ".join(f"{n} {what}" for what, n in sorted(changes.items())) or "nothing to change")
    return EXIT_OK


def _deliver(engine, args) -> int:
    from shelf.serving import webhooks
    if not args.forever:
        done = webhooks.work_round(engine)
        print(", ".join(f"{n} {what}" for what, n in sorted(done.items())) or "nothing was due")
        return EXIT_OK
    print(f"delivering store task events every {args.interval:g} s; Ctrl-C stops", file=sys.stderr)
    worker = webhooks.Worker(engine, args.interval)
    try:
        worker.run()  # in this thread: Ctrl-C ends it
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _rules(engine, args) -> int:
    from shelf.access import LOCAL, Forbidden
    from shelf.analytics import tasks as evaluator
    from shelf.storage import tasks as stored
    if args.file is None:
        out = io.StringIO()
        writer = csv.DictWriter(out, stored.RULE_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(evaluator.rule_row(rule) for rule in evaluator.rules(engine))
        sys.stdout.write(out.getvalue())
        return EXIT_OK
    try:
        text = read_bounded(args.file, MAX_RULES_BYTES).decode("utf-8-sig")
    except (FileTooLarge, OSError, UnicodeDecodeError) as exc:
        print(f"error: {args.file}: cannot read the rules ({exc})", file=sys.stderr)
        return EXIT_NOTHING_DONE
    rules, errors = evaluator.parse_rules(list(csv.DictReader(io.StringIO(text))))
    for error in errors:
        print(f"error: {args.file.name}, {error}", file=sys.stderr)
    if errors:
        print("the rules in force are unchanged: fix the file and import it again", file=sys.stderr)
        return EXIT_NOTHING_DONE
    try:
        stored.replace_rules(engine, [evaluator.rule_row(r) for r in rules], by=LOCAL)
    except Forbidden as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    print(f"{args.file.name}: {len(rules)} rule(s) in force")
    return EXIT_OK


def _webhook(engine, args) -> int:
    from shelf.storage import outbox
    if args.webhook_action == "add":
        try:
            secret = outbox.add_webhook(engine, args.name, args.url)
        except outbox.WebhookError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(secret)
        print(f"webhook {args.name!r} added; its signing secret is printed above: give it to the receiver, which "
              "checks X-Shelf-Signature with it (README: Store tasks).", file=sys.stderr)
        return EXIT_OK
    if args.webhook_action == "remove":
        try:
            outbox.remove_webhook(engine, args.webhook_id)
        except outbox.WebhookError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(f"webhook {args.webhook_id} removed")
        return EXIT_OK
    hooks = outbox.list_webhooks(engine)
    if not hooks:
        print("no webhooks")
    for hook in hooks:
        print(f"{hook.id}\t{hook.name}\t{hook.url}\t{'active' if hook.active else 'removed'}\t"
              f"{hook.pending} to deliver, {hook.failing} failing")
    return EXIT_OK


def _outbox(engine, args) -> int:
    from shelf.storage import outbox
    rows = outbox.outbox_rows(engine, args.pending, args.limit)
    if not rows:
        print("nothing in the outbox" + (" to deliver" if args.pending else ""))
    for row in rows:
        state = f"delivered {row['delivered_at']:%Y-%m-%d %H:%M:%S}" if row["delivered_at"] else \
            f"waiting, {row['attempts']} attempt(s)" + (f": {row['last_error']}" if row["last_error"] else "")
        print(f"event {row['event_id']}\t{row['event']}\ttask {row['task_id']}\t→ {row['webhook']}\t{state}")
    return EXIT_OK


def add_tasks(sub) -> None:
    p = sub.add_parser("tasks", help="store tasks: list, ack, done; deliver their webhooks; rules, webhooks, outbox")
    tsub = p.add_subparsers(dest="action", required=True)
    listing = tsub.add_parser("list", help="tasks, newest first")
    listing.add_argument("--store", action="append", default=[], dest="stores", help="repeat for several")
    listing.add_argument("--aisle", action="append", default=[], dest="aisles", help="repeat for several")
    listing.add_argument("--state", action="append", default=[], dest="states",
                         help="open, acknowledged, done, reopened or verified; repeat for several")
    listing.add_argument("--older-than", type=_hours, default=None, metavar="HOURS", help="opened at least HOURS ago")
    listing.add_argument("--limit", type=_positive, default=100)
    listing.add_argument("--format", choices=["table", "csv", "json"], default="table")
    for action, text in (("ack", "acknowledge a task (open or reopened)"),
                         ("done", "mark a task done: the next photo of its aisle verifies or reopens it")):
        move = tsub.add_parser(action, help=text)
        move.add_argument("task_id", type=_positive)
        move.add_argument("--by", default=None, help="who did it (default: the local user)")
    deliver = tsub.add_parser("deliver", help="evaluate waiting photos and POST due events to the webhooks")
    deliver.add_argument("--forever", action="store_true", help="keep going (a service of its own)")
    deliver.add_argument("--interval", type=float, default=1.0, help="seconds between rounds with --forever")
    tsub.add_parser("evaluate", help="turn the photos waiting for evaluation into task changes")
    rules = tsub.add_parser("rules", help="print the rules as CSV, or replace them with a CSV file's")
    rules.add_argument("file", type=Path, nargs="?", default=None,
                       help="store,aisle,product,statuses,min_gap,empty_share_limit,quiet_hours,timezone")
    hook = tsub.add_parser("webhook", help="add (prints its signing secret), list or remove webhooks")
    hsub = hook.add_subparsers(dest="webhook_action", required=True)
    add = hsub.add_parser("add")
    add.add_argument("name", help="where it goes: 'store chat', 'ticketing'")
    add.add_argument("url")
    hsub.add_parser("list")
    hsub.add_parser("remove").add_argument("webhook_id", type=_positive)
    box = tsub.add_parser("outbox", help="the newest deliveries: sent, waiting, failing and why")
    box.add_argument("--pending", action="store_true", help="only what is still to be delivered")
    box.add_argument("--limit", type=_positive, default=50)
    for parser_ in [*tsub.choices.values(), *hsub.choices.values()]:
        parser_.add_argument("--db", default=None)
    p.set_defaults(run=cmd_tasks)


PARSERS = {"tasks": add_tasks}
