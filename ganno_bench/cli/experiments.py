"""``reproduce`` and ``bench``: the paper's results and the speed benches."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno_bench.baselines.files import baselines_dir
from ganno_bench.baselines.ppo import load_ppo_config, train_ppo
from ganno_bench.benchmark.journal import write_atomically
from ganno_bench.benchmark.leaderboard.runs import load_named
from ganno_bench.benchmark.threads import torch_threads
from ganno_bench.cli.common import add_budget_options, budget_overrides
from ganno_bench.envs.registry import spec
from ganno_bench.experiments.batched_bench import (
    DEFAULT_BATCHED_IDS,
    format_batched,
    format_ppo,
    measure_batched,
    measure_ppo,
)
from ganno_bench.experiments.diagnosis import diagnose
from ganno_bench.experiments.generalisation import (
    SPLITS,
    render_generalisation,
    reproduce_generalisation,
)
from ganno_bench.experiments.overhead import DEFAULT_OVERHEAD_IDS, format_overhead, measure_overhead
from ganno_bench.experiments.protocols import PROTOCOLS, protocol, shipped_policies
from ganno_bench.experiments.verify import ENGINES, TOLERANCE, format_report, verify


def _diagnosis(args: argparse.Namespace) -> int:
    policies = [Path(p) for p in args.policy] if args.policy else shipped_policies()
    with torch_threads(1):
        text = diagnose(
            policies,
            args.results,
            instances=args.instances or range(8),
            batch_size=args.batch_size,
        )
    out = Path(args.out) / "diagnosis.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, text + "\n")
    print(text)
    print(f"written to {out}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Play each training protocol's shipped PPO policies (or --policy files, or freshly
    --train-ed ones) on its harder target ids, test and test-ood, and write the
    generalisation report: per protocol, IQM with 95% CIs per target group against every
    baseline's committed card, P(policy > tuned-cosine) and P(policy > BOIL), a generated
    conclusion and plots. Resumable. --from-cards re-renders the report from the committed
    cards without evaluating. ``diagnosis``: why the first policies fail on CNNs
    (schedules, feature ablations, returns)."""
    if args.result == "diagnosis":
        return _diagnosis(args)
    if args.from_cards:
        if args.train or args.policy or args.instances or args.protocol or budget_overrides(args):
            raise ValueError(
                "--from-cards re-renders from the committed cards: it takes no --train, "
                "--policy, --protocol, --instances or budget overrides"
            )
        text = render_generalisation(
            args.results, args.out, runs_dir=args.runs, splits=args.split or SPLITS
        )
        print(text)
        print(f"written to {Path(args.out) / 'README.md'} and table.json")
        return 0
    names = args.protocol or [n for n in PROTOCOLS if _has_policies(n)] or ["a"]
    if (args.policy or args.train) and len(names) != 1:
        raise ValueError("--policy and --train apply to one protocol: add --protocol NAME")
    policies = [Path(p) for p in args.policy] if args.policy else None
    if args.train:
        p = protocol(names[0])
        if not p.trains:
            raise ValueError(
                f"protocol {p.name!r} trains nothing ({p.recipe}): drop --train, or train "
                "its members' protocol"
            )
        config = load_ppo_config(path=baselines_dir() / "ppo" / p.config) if p.config else None
        policies = [
            train_ppo(
                list(p.train_ids),
                args.timesteps or p.timesteps,
                seed=s,
                out=p.run_dir(s, args.runs),
                config=config,
                init_from=p.init_policy(s),
                checkpoint_every=p.checkpoint_every,
                eval_every=p.checkpoint_every,
                progress=not args.quiet,
            )
            for s in args.train_seeds
        ]
    text = reproduce_generalisation(
        protocols=names,
        policies=policies,
        results_dir=args.results,
        out_dir=args.out,
        runs_dir=args.runs,
        splits=args.split or SPLITS,
        workers=args.workers,
        engine=args.engine,
        overrides=budget_overrides(args),
        instances=args.instances,
        every_id=args.every_id,
        other_ids=args.other,
        progress=not args.quiet,
    )
    print(text)
    print(f"written to {Path(args.out) / 'README.md'} and table.json")
    return 0


def _has_policies(name: str) -> bool:
    try:
        return bool(shipped_policies(name))
    except FileNotFoundError:
        return False


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed benches that print ratios measured side by side in one run."""
    if args.which == "backends":  # workers always run one torch thread: --threads is moot
        from ganno_bench.experiments.backend_bench import (
            DEFAULT_BACKEND_ID,
            format_backends,
            measure_backends,
        )

        env_id = (args.env or [DEFAULT_BACKEND_ID])[0]
        spec(env_id)
        result = measure_backends(env_id, repeats=args.repeats, episodes=args.episodes)
        print(format_backends(result))
        return 0
    threads = [None if t == 0 else t for t in args.threads]
    for count in threads:
        label = "all" if count is None else count
        print(f"\n== torch threads: {label} ==")
        if args.which == "overhead":
            ids = args.env or list(DEFAULT_OVERHEAD_IDS)
            for env_id in ids:
                spec(env_id)
            with torch_threads(count):
                results = [
                    measure_overhead(env_id, decisions=args.decisions, device=args.device)
                    for env_id in ids
                ]
            print(format_overhead(results))
            continue
        ids = args.env or list(DEFAULT_BATCHED_IDS)
        print(
            format_batched(
                measure_batched(
                    ids, args.sizes, threads=count, device=args.device, repeats=args.repeats
                )
            )
        )
        if args.ppo_copies:
            print()
            print(format_ppo([measure_ppo(ids[0], args.ppo_copies, threads=count)]))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-run a seeded sample of the committed episodes here, with the agent, instance,
    seed and settings each card records, and report how many match bitwise, how many lie
    within --tolerance of the committed final test loss, and how much the sample's IQM
    normalised score moves: how far numbers made on another processor may drift on this
    one (with --engine batched, how far the batched engine's episodes lie from the
    reference engine's cards). Exit code 1 with --strict when any episode is further off
    than the tolerance."""
    named = load_named(args.results)
    if args.cards:
        wanted = set(args.cards)
        keys = {p: {p.name, p.name.removesuffix(".gz").removesuffix(".json")} for p, _ in named}
        missing = sorted(n for n in wanted if not any(n in k for k in keys.values()))
        if missing:
            raise FileNotFoundError(f"no cards {missing} in {args.results}")
        named = [(p, c) for p, c in named if keys[p] & wanted]
    replays, skipped = verify(
        named,
        per_card=args.per_card,
        seed=args.seed,
        progress=not args.quiet,
        engine=args.engine,
    )
    print(
        format_report(
            named,
            replays,
            skipped,
            tolerance=args.tolerance,
            per_card=args.per_card,
            seed=args.seed,
            engine=args.engine,
        )
    )
    off = sum(r.status(args.tolerance) == "differs" for r in replays)
    return 1 if args.strict and off else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    p = sub.add_parser("reproduce", help="reproduce a result of the GANNO paper in the suite")
    p.add_argument(
        "result",
        choices=["generalisation", "diagnosis"],
        help="generalisation: the policies on harder ids against the baselines; diagnosis: "
        "why they fail on CNNs (schedules, feature ablations, returns)",
    )
    p.add_argument("--policy", action="append", help="saved policy (default: the shipped ones)")
    p.add_argument("--train", action="store_true", help="train fresh policies first")
    p.add_argument(
        "--train-seeds", type=int, nargs="+", default=[0, 1, 2], help="with --train: seeds"
    )
    p.add_argument(
        "--protocol",
        action="append",
        choices=list(PROTOCOLS),
        help="training protocol to reproduce (repeatable; default: every protocol with "
        "shipped policies): " + "; ".join(f"{q.name}: {q.summary}" for q in PROTOCOLS.values()),
    )
    p.add_argument("--timesteps", type=int, help="with --train (default: the protocol's)")
    p.add_argument(
        "--engine",
        choices=["batched", "sequential"],
        default="batched",
        help="engine of the evaluations (batched: a split's instances of an id at once)",
    )
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
        help="re-render the report from the committed cards (RESULTS/AGENT-SPLIT.json.gz of "
        "each protocol and the baselines' cards) without evaluating anything",
    )
    p.add_argument(
        "--every-id",
        action="store_true",
        help="also play the policies on every other LR id (training ids, Adam variants) "
        "into RESULTS/AGENT-other-SPLIT.json.gz, for the leaderboard",
    )
    p.add_argument(
        "--other",
        action="append",
        metavar="ID",
        help="also play the policies on this LR id (repeatable; e.g. the transformers) into "
        "RESULTS/AGENT-on-IDS-SPLIT.json.gz, for the leaderboard",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--batch-size", type=int, default=32, help="diagnosis: episodes per batch")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_budget_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("bench", help="speed benchmarks that print ratios")
    p.add_argument(
        "which",
        choices=["overhead", "batched", "backends"],
        help="overhead: an env decision against a plain PyTorch loop; batched: N sequential "
        "envs' inner steps against one batched engine of N slots (and PPO timesteps/s); "
        "backends: an episode as a Ray task against a process-pool worker, and both "
        "backends' episodes/s with 1 and 2 workers (needs the [ray] extra)",
    )
    p.add_argument("--env", action="append", help="id to measure (repeatable)")
    p.add_argument("--decisions", type=int, default=200, help="overhead: decisions timed")
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch threads of each measurement (0: all); one thread by default, since on a "
        "busy machine more threads inflate absolute times",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 128], help="batched: N")
    p.add_argument(
        "--repeats", type=int, default=5, help="batched: timed repeats per N; backends: episodes"
    )
    p.add_argument(
        "--episodes", type=int, default=8, help="backends: episodes per throughput batch"
    )
    p.add_argument(
        "--ppo-copies",
        type=int,
        default=32,
        help="batched: also PPO timesteps/s with this many copies of the first id (0: skip)",
    )
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
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="sequential",
        help="replay on this engine (batched: its drift from the cards of the reference engine; "
        "cards the batched engine made are left out)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any episode is further off")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_verify)
