"""``reproduce`` and ``bench``: the paper's results and the speed benches."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno_bench.baselines.ppo import train_ppo
from ganno_bench.benchmark.leaderboard.runs import load_named
from ganno_bench.cli.common import add_budget_options, budget_overrides
from ganno_bench.envs.registry import spec
from ganno_bench.experiments.generalisation import (
    SPLITS,
    TRAIN_ID,
    render_generalisation,
    reproduce_generalisation,
)
from ganno_bench.experiments.overhead import DEFAULT_OVERHEAD_IDS, format_overhead, measure_overhead
from ganno_bench.experiments.verify import TOLERANCE, format_report, verify


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Play the shipped MLP-Easy PPO policies (or --policy files, or freshly --train-ed
    ones) on MLP-Medium, MLP-Hard and the three SGD CNN ids, test and test-ood, and write
    the generalisation report: IQM with 95% CIs per family against every baseline's
    committed card, P(PPO > baseline), and a generated conclusion. Resumable.
    --from-cards re-renders the report from the committed cards without evaluating."""
    if args.from_cards:
        if args.train or args.policy or args.instances or budget_overrides(args):
            raise ValueError(
                "--from-cards re-renders from the committed cards: it takes no --train, "
                "--policy, --instances or budget overrides"
            )
        text = render_generalisation(args.results, args.out, splits=args.split or SPLITS)
        print(text)
        print(f"written to {Path(args.out) / 'README.md'} and table.json")
        return 0
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
    """Time one env decision against a plain PyTorch loop doing the same inner steps on
    the same network, data and optimiser, interleaved in one run; print the ratio per id."""
    ids = args.env or list(DEFAULT_OVERHEAD_IDS)
    results = []
    for env_id in ids:
        spec(env_id)
        results.append(measure_overhead(env_id, decisions=args.decisions, device=args.device))
    print(format_overhead(results))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-run a seeded sample of the committed episodes here, with the agent, instance,
    seed and settings each card records, and report how many match bitwise, how many lie
    within --tolerance of the committed final test loss, and how much the sample's IQM
    normalised score moves: how far numbers made on another processor may drift on this
    one. Exit code 1 with --strict when any episode is further off than the tolerance."""
    named = load_named(args.results)
    if args.cards:
        wanted = set(args.cards)
        keys = {p: {p.name, p.name.removesuffix(".gz").removesuffix(".json")} for p, _ in named}
        missing = sorted(n for n in wanted if not any(n in k for k in keys.values()))
        if missing:
            raise FileNotFoundError(f"no cards {missing} in {args.results}")
        named = [(p, c) for p, c in named if keys[p] & wanted]
    replays, skipped = verify(
        named, per_card=args.per_card, seed=args.seed, progress=not args.quiet
    )
    print(
        format_report(
            named,
            replays,
            skipped,
            tolerance=args.tolerance,
            per_card=args.per_card,
            seed=args.seed,
        )
    )
    off = sum(r.status(args.tolerance) == "differs" for r in replays)
    return 1 if args.strict and off else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    p = sub.add_parser("reproduce", help="reproduce a result of the GANNO paper in the suite")
    p.add_argument("result", choices=["generalisation"], help="the result to reproduce")
    p.add_argument("--policy", action="append", help="saved policy (default: the shipped ones)")
    p.add_argument("--train", action="store_true", help="train fresh policies first")
    p.add_argument(
        "--train-seeds", type=int, nargs="+", default=[0, 1, 2], help="with --train: seeds"
    )
    p.add_argument("--timesteps", type=int, default=100_000, help="with --train")
    p.add_argument("--runs", default="runs", help="with --train: folder of the training runs")
    p.add_argument(
        "--split",
        action="append",
        choices=["test", "test-ood"],
        help="split to play (repeatable; default: test and test-ood)",
    )
    p.add_argument("--instances", type=int, nargs="+", help="only these instance indices")
    p.add_argument("--results", default="leaderboards/results", help="baselines' result cards")
    p.add_argument("--out", default="leaderboards/generalisation", help="report folder")
    p.add_argument(
        "--from-cards",
        action="store_true",
        help="re-render the report from the committed cards (RESULTS/ppo-mlp-easy-SPLIT"
        ".json.gz and the baselines' cards) without evaluating anything",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_budget_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("bench", help="speed benchmarks that print ratios")
    p.add_argument("which", choices=["overhead"], help="the bench to run")
    p.add_argument("--env", action="append", help="id to measure (repeatable)")
    p.add_argument("--decisions", type=int, default=200, help="decisions timed per id")
    p.add_argument("--device", default="cpu", help="torch device of the inner training")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("verify", help="re-run committed episodes here and report the drift")
    p.add_argument("cards", nargs="*", help="card names to sample (default: every card)")
    p.add_argument("--results", default="leaderboards/results", help="folder of result cards")
    p.add_argument("--per-card", type=int, default=1, help="episodes re-run from each card")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode sample")
    p.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help="relative difference of the final test loss still counted as close",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any episode is further off")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_verify)
