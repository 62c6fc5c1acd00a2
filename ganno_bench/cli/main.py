"""The ``ganno-bench`` command: list, describe, demo, evaluate, train, reproduce, leaderboard...

Each command group lives in a module of its own (suite, demo, benchmark, baselines,
experiments) that registers its sub-commands; this module only assembles the parser
and turns the library's errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, so the tasks it registers are known to the command "
        "(repeatable; also accepted after the command), e.g. --import mylab.tasks",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def hoist_imports(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--import MODULE`` moved before the command, where the
    top-level parser reads it: ``ganno-bench evaluate --import m ...`` works as well."""
    front: list[str] = []
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            rest += [word, *words]
        elif word == "--import":
            front += [word, next(words, "")]
        elif word.startswith("--import="):
            front.append(word)
        else:
            rest.append(word)
    return front + rest


def import_modules(names: Sequence[str]) -> None:
    """Import the user's modules (their ``register(...)`` calls run), the current folder
    first on the path as with ``python -m``; a module that cannot load is a ValueError."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        if not name:
            raise ValueError("--import needs a module name, e.g. --import mylab.tasks")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(
                f"--import {name}: {exc}; the module must be importable: installed, in the "
                "current folder or on PYTHONPATH"
            ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(hoist_imports(sys.argv[1:] if argv is None else argv))
    if args.command is None:  # a bare `ganno-bench` explains itself
        parser.print_help()
        return 0
    try:
        import_modules(args.imports)
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
