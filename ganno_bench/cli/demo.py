"""``demo``: a few simple agents on an easy id, compared with CIs, and the committed
leaderboard's best."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.evaluation import evaluate, run_episode
from ganno_bench.benchmark.leaderboard import load_cards, merge_runs, scores_for
from ganno_bench.benchmark.scoring import load_references
from ganno_bench.benchmark.stats import aggregate, per_task, probability_of_improvement
from ganno_bench.cli.common import add_budget_options, budget_overrides
from ganno_bench.envs.registry import spec
from ganno_bench.inner.instances import SPLITS

DEMO_ENV = "ganno/LayerLR-MLP-Easy-v0"
# the learned agent: protocol (a)'s policy with the best final train-split evaluation
# (runs/protocol-a-seed*/evaluations.jsonl), chosen without looking at held-out instances
DEMO_AGENTS = ("constant", "halve-on-plateau", "random", "tuned-cosine", "ppo-a-mlp-easy-seed2")
DEMO_TOP = 8  # rows of the committed leaderboard the demo shows


def cmd_demo(args: argparse.Namespace) -> int:
    """One held-out episode per simple agent, then a small comparison with CIs."""
    overrides = budget_overrides(args)
    task = spec(args.env).with_overrides(**overrides)
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
        name: evaluate(
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
    folder = Path(results_dir)
    if not folder.is_dir():
        return (
            f"(no result cards at {folder}: run the demo from a clone of the repository, or "
            "make cards with `ganno-bench evaluate` and pass --results)"
        )
    cards = load_cards(folder, curves=False)  # scores only: the curves are most of the time
    named = [(folder / str(i), card) for i, card in enumerate(cards)]
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    p = sub.add_parser("demo", help="run a few simple schedules on an easy env and compare")
    p.add_argument("--env", default=DEMO_ENV, help="the id the demo runs on")
    p.add_argument("--split", default="test", choices=SPLITS, help="instance split")
    p.add_argument(
        "--instance", type=int, default=0, help="the instance of the episode shown per agent"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the episode shown per agent")
    p.add_argument("--instances", type=int, default=4, help="instances in the comparison")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the comparison's episodes"
    )
    p.add_argument("--results", default="leaderboards/results", help="committed result cards")
    add_budget_options(p)
    p.set_defaults(func=cmd_demo)
