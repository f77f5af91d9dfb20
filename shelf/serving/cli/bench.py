"""`bench`: the benchmarks in the repository's benchmarks/ folder (they parse their own options)."""
from __future__ import annotations

import sys

from shelf.serving.cli.common import EXIT_USAGE


def cmd_bench(bench_args: list[str]) -> int:
    """Runs benchmarks/inference.py (a development tool: it needs the repository, not only the package)."""
    try:
        from benchmarks.inference import main as bench
    except ImportError:
        print("error: the benchmark lives in the repository's benchmarks/ folder; run from the project root",
              file=sys.stderr)
        return EXIT_USAGE
    return bench(bench_args)


def add_bench(sub) -> None:
    sub.add_parser("bench", help="inference benchmark: seed pipeline vs faithful and fast modes "
                                 "(python -m shelf bench --help)", add_help=False)


PARSERS = {"bench": add_bench}
