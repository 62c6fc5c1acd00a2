"""The ``ganno-bench`` command: list, describe, demo, evaluate, train, reproduce, leaderboard...

Each command group lives in a module of its own (suite, demo, benchmark, baselines,
experiments) that registers its sub-commands; this module only assembles the parser
and turns the library's errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ganno_bench.baselines.zoo import UnknownAgentError
from ganno_bench.cli import baselines, benchmark, demo, experiments, suite
from ganno_bench.envs.registry import UnknownEnvironmentError
from ganno_bench.version import __version__

GROUPS = (suite, demo, benchmark, baselines, experiments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganno-bench",
        description="A benchmark suite and environment registry for learned optimisation: "
        "one agent per layer sets that layer's learning rate while a network trains.",
    )
    parser.add_argument("--version", action="version", version=f"ganno-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `ganno-bench` explains itself
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (
        UnknownEnvironmentError,
        UnknownAgentError,
        FileNotFoundError,
        ValueError,
        TypeError,
    ) as exc:
        print(f"ganno-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
