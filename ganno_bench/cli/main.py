"""The ``ganno-bench`` command: list, describe, demo, evaluate, train, reproduce, leaderboard...

Each command group lives in a module of its own (suite, demo, benchmark, baselines,
experiments) that registers its sub-commands; this module only assembles the parser
and turns the library's errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys
import textwrap
from collections.abc import Sequence

from ganno_bench.baselines.zoo import UnknownAgentError
from ganno_bench.benchmark.ray_backend import RayUnavailableError
from ganno_bench.cli import baselines, benchmark, demo, experiments, suite
from ganno_bench.envs.registry import UnknownEnvironmentError
from ganno_bench.version import __version__

GROUPS = (suite, demo, benchmark, baselines, experiments)

# reST roles (:func:`~a.b.name` -> name) and inline literals (``x`` -> x) in docstrings
_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(docstring: str) -> str:
    """A docstring as help text: dedented, reST markup removed, paragraphs kept."""
    text = inspect.cleandoc(docstring)
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text)).replace("::\n", ":\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default (unless it has none or is a plain flag) and keeps the
    paragraphs of a description instead of running them together."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        unset = action.default is None or action.default is False or action.default == []
        if unset or action.help is None or isinstance(action, argparse._VersionAction):
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
        return "\n\n".join(
            textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent)
            for p in paragraphs
        )


class CommandParser(argparse.ArgumentParser):
    """Every (sub-)command's parser: defaults shown (:class:`HelpFormatter`), and
    sub-commands described by their one-line help (:class:`_CommandsAction`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _CommandsAction)


def _describe(parser: argparse.ArgumentParser) -> None:
    """Add each command's function docstring, as plain text, to its ``--help``
    description, all the way down the sub-commands."""
    func = parser._defaults.get("func")
    if func is not None and func.__doc__:
        parser.description = "\n\n".join(
            filter(None, [parser.description, plain_text(func.__doc__)])
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _describe(child)


class _CommandsAction(argparse._SubParsersAction):
    """Sub-commands whose one-line ``help`` is also the first paragraph of their own
    ``--help``."""

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        if "help" in kwargs:
            kwargs.setdefault("description", kwargs["help"][:1].upper() + kwargs["help"][1:] + ".")
        return super().add_parser(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="ganno-bench",
        description="A benchmark suite and environment registry for learned optimisation: "
        "one agent per layer sets that layer's learning rate while a network trains.",
        epilog="`ganno-bench COMMAND --help` explains a command and its options.",
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
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=CommandParser, help="one of:"
    )
    for group in GROUPS:
        group.add_commands(sub)
    _describe(parser)
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
        RayUnavailableError,  # how to install it
        ConnectionError,  # a Ray cluster that does not answer
    ) as exc:
        print(f"ganno-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
