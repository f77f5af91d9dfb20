"""`python -m shelf`: batch work without a browser. One module per command family; each adds its commands'
parsers (`PARSERS`: name → function adding the subparser, whose `run` default is the command).

Exit codes: 0 success; 1 nothing could be processed (every input failed); 2 usage error (argparse);
3 no usable weights (the message says how to get them).
"""
from __future__ import annotations

import argparse
import sys

from shelf.config import ConfigError
from shelf.serving.cli import (
    backup,
    batch,
    bench,
    catalog,
    planogram,
    recognize,
    regions,
    serve,
    tallies,
    tasks,
    weights,
)
from shelf.serving.cli.common import (  # noqa: F401
    EXIT_INTERRUPTED,
    EXIT_NO_WEIGHTS,
    EXIT_NOTHING_DONE,
    EXIT_OK,
    EXIT_USAGE,
)

# ORDER: as `--help` lists them
FAMILIES = (recognize, batch, tallies, planogram, catalog, regions, weights, bench, serve, tasks, backup)
ORDER = ("classify", "recognize", "photo", "batch", "tallies", "planogram", "compliance", "export", "catalog",
         "regions", "detector", "bench", "serve", "token", "weights", "tasks", "backup", "restore")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shelf", description="Shelf: retail shelf recognition.")
    sub = parser.add_subparsers(dest="command", required=True)
    adders = {name: add for family in FAMILIES for name, add in family.PARSERS.items()}
    assert set(adders) == set(ORDER), "every command is listed once in ORDER"
    for name in ORDER:
        adders[name](sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        return bench.cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:  # a setting in the environment that cannot be used
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
