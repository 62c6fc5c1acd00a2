"""The ``ganno-bench`` command: list, describe, demo, evaluate, train, reproduce, leaderboard..."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

import ganno_bench
from ganno_bench.batch_task import BatchSizeTaskSpec
from ganno_bench.envs.batch_observation import BATCH_FEATURES
from ganno_bench.envs.observation import FEATURES
from ganno_bench.instances import FROZEN_SPLITS, SPLITS, build_frozen
from ganno_bench.registry import UnknownEnvironmentError
from ganno_bench.zoo import UnknownAgentError

DEMO_ENV = "ganno/LayerLR-MLP-Easy-v0"
DEMO_AGENTS = ("constant", "halve-on-plateau", "random", "tuned-cosine", "ppo-mlp-easy-seed0")
DEMO_TOP = 8  # rows of the committed leaderboard the demo shows


def cmd_list(args: argparse.Namespace) -> int:
    ids = ganno_bench.list_envs(args.pattern)
    if not ids:
        print(f"no registered id matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(
        f"{'id':36} {'family':9} {'difficulty':10} {'optim':5} {'layers':>6} {'budget T x K':>12}"
    )
    for env_id in ids:
        task = ganno_bench.spec(env_id)
        layers = task.model.num_layers() if hasattr(task.model, "num_layers") else "?"
        print(
            f"{env_id:36} {task.family:9} {task.difficulty:10} {task.optimizer:5} {layers!s:>6} "
            f"{task.budget:>12}"
        )
    for label, error in ganno_bench.registration_errors().items():
        print(f"NOT REGISTERED {label}: {error}", file=sys.stderr)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    task = ganno_bench.spec(args.env_id)
    env = ganno_bench.make(args.env_id)
    agent = env.possible_agents[0]
    print(
        f"{task.id}  (family {task.family}, difficulty {task.difficulty}, version {task.version})"
    )
    print(f"  {task.description}")
    print(f"  data: {task.data.describe() if hasattr(task.data, 'describe') else task.data}")
    print(f"  network: {env.trainer.network}".replace("\n", "\n  "))
    print(
        f"  inner optimiser: {task.optimizer} (momentum/beta1 from the instance), "
        f"weight decay {task.weight_decay}"
    )
    batch_track = isinstance(task, BatchSizeTaskSpec)
    if batch_track:
        print(
            f"  budget: {task.decisions} decisions x {task.samples_per_decision} training "
            f"samples ({task.sample_budget} in all; updates per decision = samples // batch "
            f"size, plus one on the remainder); learning rate: {task.lr_schedule} schedule"
        )
    else:
        print(
            f"  budget: {task.decisions} decisions x {task.inner_steps} inner steps; "
            f"learning rates clipped to {task.lr_bounds}"
        )
    print(f"  agents ({len(env.possible_agents)}): {', '.join(env.possible_agents)}")
    print(f"  observation per agent: {env.observation_space(agent)}")
    for name, (low, high, meaning) in (BATCH_FEATURES if batch_track else FEATURES).items():
        print(f"    {name:20} [{low:g}, {high:g}]  {meaning}")
    if batch_track:
        print(
            f"  action: factor mode {env.action_space(agent)} over factors {task.factors} of "
            f"the batch size; absolute mode Box(batch size) in {task.batch_bounds}"
        )
    else:
        print(
            f"  action per agent: factor mode {env.action_space(agent)} over factors "
            f"{task.factors}; log_lr mode Box(log10 rate) in [{np.log10(task.lr_bounds[0]):g}, "
            f"{np.log10(task.lr_bounds[1]):g}]"
        )
    print(
        f"  reward: decrease of log validation loss; divergence (val or train loss > "
        f"{task.divergence_factor} x initial val loss, or not finite) ends the episode with "
        f"{-task.divergence_penalty}"
    )
    for split in SPLITS:
        space = task.spaces[split]
        frozen = (
            f", {len(task.frozen_instances(split))} frozen instances"
            if split in FROZEN_SPLITS
            else ""
        )
        print(
            f"  split {split}: log10_lr {space.log10_lr}, init_scale {space.init_scale}, "
            f"momentum {space.momentum}, batch {space.batch_sizes}, init {space.init_schemes}, "
            f"seeds {space.seed_range}{frozen}"
        )
    return 0


def _budget_overrides(args: argparse.Namespace) -> dict[str, int]:
    pairs = (
        ("decisions", args.decisions),
        ("inner_steps", args.inner_steps),
        ("samples_per_decision", args.samples_per_decision),
    )
    return {key: value for key, value in pairs if value}


def cmd_demo(args: argparse.Namespace) -> int:
    """One held-out episode per simple agent, then a small comparison with CIs."""
    from ganno_bench.evaluation import run_episode
    from ganno_bench.references import load_references
    from ganno_bench.zoo import load_agent

    overrides = _budget_overrides(args)
    task = ganno_bench.spec(args.env).with_overrides(**overrides)
    print(f"{task.id}: {task.description}")
    print(f"split {args.split}; {task.decisions} decisions x {task.inner_steps} inner steps\n")
    references = load_references(task.id) if not overrides and args.split != "train" else None
    for name in DEMO_AGENTS:
        record = run_episode(
            load_agent(name), task.id, args.split, args.instance, args.seed, overrides, references
        )
        first, last = record["lrs"][0], record["lrs"][-1]
        print(
            f"[{name}] instance {args.instance}: layer rates "
            f"{' '.join(f'{r:.2g}' for r in first)} -> {' '.join(f'{r:.2g}' for r in last)}; "
            f"test loss {record['final_test_loss']:.4f}, "
            f"accuracy {record['final_test_accuracy']:.3f}"
            + (", DIVERGED" if record["diverged"] else "")
        )
    cards = {
        name: ganno_bench.evaluate(
            load_agent(name),
            [task.id],
            args.split,
            args.seeds,
            overrides=overrides,
            instances=range(args.instances),
            progress=False,
        )
        for name in DEMO_AGENTS
    }
    print()
    print(comparison_table(cards, "normalised_score" if references else "neg_test_loss"))
    print()
    print(committed_summary(args.results, task.id, args.split))
    return 0


def committed_summary(results_dir: str, env_id: str, split: str, top: int = DEMO_TOP) -> str:
    """The best agents on ``env_id`` in the committed result cards (all frozen instances)."""
    from pathlib import Path

    from ganno_bench.leaderboard import load_cards, merge_runs, scores_for
    from ganno_bench.stats import per_task

    folder = Path(results_dir)
    if not folder.is_dir():
        return (
            f"(no result cards at {folder}: run the demo from a clone of the repository, or "
            "make cards with `ganno-bench evaluate` and pass --results)"
        )
    named = [(folder / str(i), card) for i, card in enumerate(load_cards(folder))]
    rows = []
    for run in merge_runs(named).get(split, []):
        mine = [e for e in run.episodes if e["env_id"] == env_id]
        if mine and all(e["normalised_score"] is not None for e in mine):
            est = per_task(scores_for({"episodes": mine}), "iqm")[env_id]
            rows.append((est.value, run.agent, est, len(mine)))
    if not rows:
        return f"(the cards in {folder} hold no {split} episodes of {env_id})"
    rows.sort(key=lambda r: (-r[0], r[1]))
    lines = [
        f"committed leaderboard ({folder}), {env_id}, split {split}: normalised score, "
        f"top {min(top, len(rows))} of {len(rows)} agents",
        f"{'agent':22} {'IQM [95% CI]':>26} {'episodes':>9}",
    ]
    lines += [f"{name:22} {est!s:>26} {n:>9}" for _, name, est, n in rows[:top]]
    return "\n".join(lines)


def comparison_table(cards: dict[str, dict], metric: str) -> str:
    """IQM with a 95% stratified-bootstrap CI per agent, and P(agent > the first agent)."""
    from ganno_bench.leaderboard import scores_for
    from ganno_bench.stats import aggregate, probability_of_improvement

    names = list(cards)
    scores = {name: scores_for(card, metric) for name, card in cards.items()}
    runs = sum(len(v) for v in scores[names[0]].values())
    lines = [
        f"{metric} over {runs} episodes per agent (IQM and P(> {names[0]}) with 95% CIs)",
        f"{'agent':18} {'IQM':>26} {'P(> ' + names[0] + ')':>26}",
    ]
    for name in names:
        iqm = aggregate(scores[name], "iqm")
        better = (
            "-"
            if name == names[0]
            else str(probability_of_improvement(scores[name], scores[names[0]]))
        )
        lines.append(f"{name:18} {iqm!s:>26} {better:>26}")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ganno_bench.zoo import load_agent

    agent = load_agent(args.agent)
    out = args.out or f"{agent.name}-{args.split}.json"
    card = ganno_bench.evaluate(
        agent,
        args.env,
        args.split,
        args.seeds,
        out=out,
        workers=args.workers,
        overrides=_budget_overrides(args),
        instances=args.instances,
        progress=not args.quiet,
    )
    print(
        f"wrote {out}: {len(card['episodes'])} episodes of {agent.name} on "
        f"{len(card['envs'])} ids, split {args.split}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ganno_bench.cards import load_card
    from ganno_bench.leaderboard import compare

    print(compare(load_card(args.card_a), load_card(args.card_b), metric=args.metric))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ganno_bench.leaderboard import render_leaderboard

    path = render_leaderboard(Path(args.results), Path(args.out), metric=args.metric)
    print(f"wrote {path}")
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    """Write (or with --check, verify) the frozen test / test-ood instance lists."""
    from ganno_bench.suite import load_suite_specs, read_frozen, write_frozen

    specs, errors = load_suite_specs(require_frozen=False)
    status = 0
    for spec in specs:
        built = {
            split: build_frozen(spec.id, spec.spaces[split], split, args.count)
            for split in FROZEN_SPLITS
        }
        if args.check:
            try:
                stored = read_frozen(spec)
                same = all(list(stored[s]) == built[s] for s in FROZEN_SPLITS)
            except (OSError, ValueError, KeyError) as exc:
                same, reason = False, str(exc)
            else:
                reason = "differs from what the code builds"
            print(f"{'ok  ' if same else 'FAIL'} {spec.id}" + ("" if same else f": {reason}"))
            status |= not same
        else:
            print(f"wrote {write_frozen(spec, built)}")
    for label, error in errors.items():
        print(f"FAIL {label}: {error}", file=sys.stderr)
        status = 1
    return status


def cmd_bench(args: argparse.Namespace) -> int:
    from ganno_bench.bench import DEFAULT_OVERHEAD_IDS, format_overhead, measure_overhead

    ids = args.env or list(DEFAULT_OVERHEAD_IDS)
    results = []
    for env_id in ids:
        ganno_bench.spec(env_id)
        results.append(measure_overhead(env_id, decisions=args.decisions, device=args.device))
    print(format_overhead(results))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Grid-search the tuned baselines' base rates on the train split; freeze them."""
    from ganno_bench.evaluation import resolve_ids
    from ganno_bench.tuning import tune
    from ganno_bench.zoo import baselines_dir

    path = baselines_dir() / "tuned.toml"
    ids = resolve_ids(args.env or ["all"])
    names = args.baseline or ["tuned-constant", "tuned-cosine"]
    tuned = tune(
        names,
        ids,
        path,
        instances=args.instances,
        seeds=args.seeds,
        workers=args.workers,
    )
    for name in names:
        for env_id in ids:
            print(f"{name:16} {env_id:36} base lr {tuned[name]['base_lr'][env_id]:.3g}")
    print(f"wrote {path}")
    return 0


def cmd_references(args: argparse.Namespace) -> int:
    """Compute (resumably) and freeze the reference values of the normalised score."""
    from pathlib import Path

    from ganno_bench.evaluation import resolve_ids
    from ganno_bench.references import compute_references

    ids = resolve_ids(args.env or ["all"])
    written = compute_references(ids, Path(args.work_file), workers=args.workers)
    for path in written:
        print(f"wrote {path}")
    missing = len(ids) - len(written)
    if missing:
        print(f"{missing} ids are not complete yet; run the same command again to resume")
    return 0


def _add_budget_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decisions", type=int, help="override the task's number of decisions")
    parser.add_argument("--inner-steps", type=int, help="override the inner steps per decision")
    parser.add_argument(
        "--samples-per-decision",
        type=int,
        help="override the training samples per decision (batch-size ids)",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from ganno_bench.training import train_ppo

    overrides = _budget_overrides(args)
    final = train_ppo(
        args.env,
        args.timesteps,
        seed=args.seed,
        out=args.out or f"runs/ppo-{args.env.split('/')[-1]}-seed{args.seed}",
        recurrent=args.recurrent,
        num_copies=args.copies,
        num_cpus=args.cpus,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        eval_instances=args.eval_instances,
        resume_from=args.resume,
        overrides=overrides,
        device=args.device,
        progress=not args.quiet,
    )
    print(f"trained policy: {final}")
    if args.export:
        import shutil

        shutil.copyfile(final, args.export)
        print(f"copied to {args.export}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ganno_bench.generalisation import SPLITS, TRAIN_ID, reproduce_generalisation
    from ganno_bench.training import train_ppo

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
    overrides = _budget_overrides(args)
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


def cmd_boil(args: argparse.Namespace) -> int:
    from ganno_bench.evaluation import resolve_ids, single_threaded

    ids = resolve_ids(args.env or ["ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0"])
    with single_threaded():  # the same numbers as the single-threaded evaluations
        return _boil_action(args, ids)


def _boil_action(args: argparse.Namespace, ids: list[str]) -> int:
    if args.action == "tune":
        from ganno_bench.boil import tune_schedules
        from ganno_bench.zoo import baselines_dir

        path = baselines_dir() / "boil.toml"
        tuned = tune_schedules(
            ids, path, iterations=args.iterations, instances=args.instances, seed=args.seed
        )
        for env_id in ids:
            params = ", ".join(f"{k} {v:.3g}" for k, v in tuned[env_id].items())
            print(f"{env_id:36} {params}")
        print(f"wrote {path}")
        return 0
    from ganno_bench.boil_claim import run_claim

    print(
        run_claim(
            ids,
            args.out,
            seeds=args.seeds,
            iterations=args.iterations,
            instances=args.instances,
            progress=not args.quiet,
        )
    )
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from ganno_bench.cards import load_card, write_card
    from ganno_bench.references import rescore

    for path in args.cards:
        card = load_card(path)
        changed = rescore(card)
        if changed:
            write_card(card, path)
        print(f"{path}: {changed} of {len(card['episodes'])} scores changed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganno-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered environment ids")
    p.add_argument("pattern", nargs="?", help="shell glob, e.g. '*CNN*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", help="task, agents, spaces, budget and splits of one id")
    p.add_argument("env_id")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("demo", help="run a few simple schedules on an easy env and compare")
    p.add_argument("--env", default=DEMO_ENV)
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--instance", type=int, default=0, help="instance shown episode by agent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instances", type=int, default=4, help="instances in the comparison")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--results", default="leaderboards/results", help="committed result cards")
    _add_budget_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("evaluate", help="evaluate an agent on the frozen instances of a split")
    p.add_argument(
        "--agent",
        required=True,
        help="built-in agent (see baselines/README.md), a saved policy (PATH.zip) or "
        "module:attribute",
    )
    p.add_argument(
        "--env",
        action="append",
        required=True,
        help="id, glob (ganno/LayerLR-*Easy*) or suite name (all, mlp, cnn, batch-size); "
        "repeatable",
    )
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--instances", type=int, nargs="+", help="only these instance indices")
    p.add_argument("--out", help="result card path (default: AGENT-SPLIT.json); resumable")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_budget_options(p)
    p.set_defaults(func=cmd_evaluate)

    metrics = ["normalised_score", "final_test_accuracy", "neg_test_loss"]
    p = sub.add_parser("train", help="train a parameter-shared policy on an id's train split")
    p.add_argument("algorithm", choices=["ppo"])
    p.add_argument("--env", required=True, help="id to train on, e.g. ganno/LayerLR-MLP-Easy-v0")
    p.add_argument("--timesteps", type=int, default=150_000, help="layer decisions in all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default: runs/ppo-NAME-seedS); rerun to resume")
    p.add_argument("--recurrent", action="store_true", help="sb3-contrib RecurrentPPO (LSTM)")
    p.add_argument("--copies", type=int, help="env copies per rollout (default: config)")
    p.add_argument("--cpus", type=int, default=0, help="worker processes for the env copies")
    p.add_argument("--checkpoint-every", type=int, default=10_000, help="timesteps")
    p.add_argument("--eval-every", type=int, default=10_000, help="timesteps")
    p.add_argument("--eval-instances", type=int, default=8, help="train instances per evaluation")
    p.add_argument("--resume", help="checkpoint to resume from (default: the run's newest)")
    p.add_argument("--export", help="also copy the final policy to this path")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_budget_options(p)
    p.set_defaults(func=cmd_train)

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
    _add_budget_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("boil", help="BOIL: tune the schedule family, or measure BOIL's claim")
    p.add_argument("action", choices=["tune", "claim"])
    p.add_argument("--env", action="append", help="ids (default: MLP-Easy and CNN-Easy)")
    p.add_argument("--iterations", type=int, default=12, help="real training runs per tuning")
    p.add_argument("--instances", type=int, nargs="+", default=[0, 1], help="train instances")
    p.add_argument("--seed", type=int, default=0, help="tune: the tuning seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="claim: seeds")
    p.add_argument("--out", default="leaderboards/boil", help="claim: output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_boil)

    p = sub.add_parser(
        "rescore", help="recompute result cards' normalised scores from their losses"
    )
    p.add_argument("cards", nargs="+", help="result card files (rewritten atomically)")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("compare", help="side-by-side of two result cards with CIs")
    p.add_argument("card_a")
    p.add_argument("card_b")
    p.add_argument("--metric", default="normalised_score", choices=metrics)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("leaderboard", help="render the leaderboard from result cards")
    p.add_argument("--results", default="leaderboards/results")
    p.add_argument("--out", default="leaderboards")
    p.add_argument("--metric", default="normalised_score", choices=metrics)
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("freeze", help="write the frozen test/test-ood instance lists into envs/")
    p.add_argument("--check", action="store_true", help="verify instead of writing")
    p.add_argument("--count", type=int, default=32)
    p.set_defaults(func=cmd_freeze)

    p = sub.add_parser("tune", help="grid-search the tuned baselines on the train split")
    p.add_argument("--baseline", action="append", choices=["tuned-constant", "tuned-cosine"])
    p.add_argument("--env", action="append", help="id, glob or suite name (repeatable)")
    p.add_argument("--instances", type=int, default=8, help="train instances 0..N-1")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("references", help="compute and freeze the normalised-score references")
    p.add_argument("--env", action="append", help="id, glob or suite name (repeatable)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--work-file",
        default="references.partial.jsonl",
        help="resumable journal of finished instances",
    )
    p.set_defaults(func=cmd_references)

    p = sub.add_parser("bench", help="speed benchmarks that print ratios")
    p.add_argument("which", choices=["overhead"])
    p.add_argument("--env", action="append", help="id to measure (repeatable)")
    p.add_argument("--decisions", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
