"""The generalisation report's plots: each protocol's training curves (evaluation return on
fixed train instances against timesteps, one line per seed) and the per-layer schedules
its policies chose on the hard targets beside tuned-cosine's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ganno_bench.benchmark.leaderboard import merge_runs
from ganno_bench.benchmark.leaderboard.plots import figure, lrs_plot, save_png
from ganno_bench.envs.registry import spec
from ganno_bench.experiments.protocols import Protocol, training_runs

__all__ = ["read_evaluations", "schedule_plots", "training_curves"]

SCHEDULE_BASELINE = "tuned-cosine"


def read_evaluations(run_dir: Path) -> list[dict[str, Any]]:
    """A training run's ``evaluations.jsonl`` entries in timestep order."""
    lines = (run_dir / "evaluations.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    return sorted(entries, key=lambda e: e["timesteps"])


def training_curves(
    protocols: Sequence[Protocol], runs_dir: str | Path, out_dir: Path
) -> Path | None:
    """One panel per protocol with training runs in ``runs_dir``: mean evaluation return
    against timesteps, a line per seed. None when no protocol has runs there."""
    found = [(p, training_runs(p, runs_dir)) for p in protocols]
    found = [(p, runs) for p, runs in found if runs]
    if not found:
        return None
    fig = figure(4.2 * len(found) + 0.8, 3.6, (0.8, 0.2, 0.55, 0.4))
    fig.subplots_adjust(wspace=0.25)
    axes = fig.subplots(1, len(found), squeeze=False, sharey=True).ravel()
    for ax, (p, runs) in zip(axes, found, strict=True):
        for run in runs:
            entries = read_evaluations(run)
            ax.plot(
                [e["timesteps"] for e in entries],
                [e["mean_return"] for e in entries],
                marker="o",
                ms=3,
                label=run.name.rsplit("-", 1)[1],
            )
        ax.set_title(f"protocol {p.name}: {' + '.join(t.split('/')[-1] for t in p.train_ids)}",
                     fontsize="small")  # fmt: skip
        ax.set_xlabel("timesteps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    axes[0].set_ylabel("mean return on 8 train instances")
    return save_png(fig, out_dir / "training-curves.png")


def schedule_plots(
    p: Protocol,
    tables: Sequence[Mapping[str, Any]],
    cards: Sequence[Mapping[str, Any]],
    out_dir: Path,
) -> list[Path]:
    """Per hard target of ``p``, on the first split of ``tables``: the per-layer rates
    of the protocol's policies beside tuned-cosine's (small multiples), from ``cards``
    (the policy's merged card and tuned-cosine's among them)."""
    if not tables:
        return []
    split = tables[0]["split"]
    hard = [t for t in tables[0]["targets"] if spec(t).difficulty == "hard"]
    policy = [c for c in cards if c["agent"]["name"] == p.agent and c["split"] == split]
    theirs = [c for c in cards if c["agent"]["name"] == SCHEDULE_BASELINE and c["split"] == split]
    named = [(Path(f"card{i}"), c) for i, c in enumerate([*policy, *theirs])]
    runs = merge_runs(named).get(split, [])
    out = []
    for env_id in hard:
        playing = [r for r in runs if any(e["env_id"] == env_id for e in r.episodes)]
        if not playing:
            continue
        slug = env_id.split("/")[-1].removeprefix("LayerLR-").removesuffix("-v0").lower()
        out.append(lrs_plot(env_id, playing, out_dir / f"schedules-{p.name}-{slug}-{split}.png"))
    return out
