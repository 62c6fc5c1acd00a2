"""What every command group shares: budget overrides and their options."""

from __future__ import annotations

import argparse


def budget_overrides(args: argparse.Namespace) -> dict[str, int]:
    pairs = (
        ("decisions", args.decisions),
        ("inner_steps", args.inner_steps),
        ("samples_per_decision", args.samples_per_decision),
    )
    return {key: value for key, value in pairs if value}


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decisions", type=int, help="override the task's number of decisions")
    parser.add_argument("--inner-steps", type=int, help="override the inner steps per decision")
    parser.add_argument(
        "--samples-per-decision",
        type=int,
        help="override the training samples per decision (batch-size ids)",
    )
