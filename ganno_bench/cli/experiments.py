"""``reproduce`` and ``bench``: the paper's results and the speed benches."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno_bench.baselines.ppo import train_ppo
from ganno_bench.cli.common import add_budget_options, budget_overrides
from ganno_bench.envs.registry import spec
from ganno_bench.experiments.generalisation import SPLITS, TRAIN_ID, reproduce_generalisation
from ganno_bench.experiments.overhead import DEFAULT_OVERHEAD_IDS, format_overhead, measure_overhead


def cmd_reproduce(args: argparse.Namespace) -> int:
    policies = [Path(p) for p in args.policy] if args.policy else None
    if args.train:
        policies = [
            train_ppo(
                TRAIN_ID,
                args.timesteps,
                seed=s,
                out=Path(args.runs) / f"ppo-mlp-easy-seed{s}",
                progress=not args.quiet,
            )
            for s in args.train_seeds
        ]
    overrides = budget_overrides(args)
    text = reproduce_generalisation(
        policies=policies,
        results_dir=args.results,
        out_dir=args.out,
        splits=args.split or SPLITS,
        workers=args.workers,
        overrides=overrides,
        instances=args.instances,
        progress=not args.quiet,
    )
    print(text)
    print(f"written to {Path(args.out) / 'README.md'} and table.json")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    ids = args.env or list(DEFAULT_OVERHEAD_IDS)
    results = []
    for env_id in ids:
        spec(env_id)
        results.append(measure_overhead(env_id, decisions=args.decisions, device=args.device))
    print(format_overhead(results))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    p = sub.add_parser("reproduce", help="reproduce a result of the GANNO paper in the suite")
    p.add_argument("result", choices=["generalisation"])
    p.add_argument("--policy", action="append", help="saved policy (default: the shipped ones)")
    p.add_argument("--train", action="store_true", help="train fresh policies first")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=100_000, help="with --train")
    p.add_argument("--runs", default="runs", help="with --train: folder of the training runs")
    p.add_argument("--split", action="append", choices=["test", "test-ood"])
    p.add_argument("--instances", type=int, nargs="+", help="only these instance indices")
    p.add_argument("--results", default="leaderboards/results", help="baselines' result cards")
    p.add_argument("--out", default="leaderboards/generalisation")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_budget_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("bench", help="speed benchmarks that print ratios")
    p.add_argument("which", choices=["overhead"])
    p.add_argument("--env", action="append", help="id to measure (repeatable)")
    p.add_argument("--decisions", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_bench)
