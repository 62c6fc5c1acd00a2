"""Tuned baselines: a constant and a cosine schedule whose base rate is grid-searched.

The search uses the ``train`` split only (never the held-out splits) and the final
*validation* loss, so the tuned rate carries no information from the test instances.
The chosen rates are frozen in ``baselines/tuned.toml``; ``ganno-bench tune`` writes
them again (for the ids it is given, keeping the others).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.baselines.schedules import GlobalScheduleAgent
from ganno_bench.benchmark.evaluation import evaluate
from ganno_bench.benchmark.journal import write_atomically
from ganno_bench.benchmark.references import GRIDS
from ganno_bench.envs.registry import spec

TUNABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "tuned-constant": ("constant", {}),
    "tuned-cosine": ("CosineAnnealingLR", {"T_max_fraction": 1.0, "eta_min_factor": 0.01}),
}


def grid_search(
    name: str,
    env_id: str,
    instances: Sequence[int],
    seeds: Sequence[int],
    workers: int = 1,
    overrides: dict[str, Any] | None = None,
) -> tuple[float, dict[float, float]]:
    """The grid rate with the lowest mean final validation loss on train instances."""
    scheduler, settings = TUNABLE[name]
    task = spec(env_id)
    mean_loss = {}
    for log10_lr in GRIDS[task.optimizer]:
        agent = GlobalScheduleAgent(name, scheduler, dict(settings), base_lr=10.0**log10_lr)
        card = evaluate(
            agent,
            [env_id],
            "train",
            seeds,
            instances=instances,
            workers=workers,
            overrides=overrides,
            progress=False,
        )
        mean_loss[10.0**log10_lr] = float(
            np.mean([e["curves"]["val_loss"][-1] for e in card["episodes"]])
        )
    best = min(mean_loss, key=mean_loss.__getitem__)
    return best, mean_loss


def read_tuned(path: Path) -> dict[str, dict[str, Any]]:
    return tomllib.loads(path.read_text()) if path.exists() else {}


def write_tuned(path: Path, tuned: dict[str, dict[str, Any]]) -> None:
    """Write the tuned configs as TOML (atomically); the layout is fixed and small."""
    lines = [
        "# Written by `ganno-bench tune`: base rates grid-searched on the train split",
        "# (final validation loss), one per id. Do not edit by hand; tune again.",
        "",
    ]
    for name in sorted(tuned):
        table = tuned[name]
        lines.append(f"[{name}]")
        for key, value in table.items():
            if key != "base_lr":
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append(f"\n[{name}.base_lr]")
        lines += [f'"{env_id}" = {rate!r}' for env_id, rate in sorted(table["base_lr"].items())]
        lines.append("")
    write_atomically(path, "\n".join(lines))


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def tune(
    names: Sequence[str],
    ids: Sequence[str],
    path: Path,
    instances: int = 8,
    seeds: Sequence[int] = (0,),
    workers: int = 1,
) -> dict[str, dict[str, Any]]:
    """Grid-search every (baseline, id) pair and merge the rates into ``path``."""
    tuned = read_tuned(path)
    for name in names:
        scheduler, settings = TUNABLE[name]
        table = tuned.setdefault(name, {"scheduler": scheduler, **settings, "base_lr": {}})
        table["tuned_on"] = (
            f"train split, instances 0-{instances - 1}, seeds "
            f"{list(seeds)}, mean final validation loss"
        )
        for env_id in ids:
            best, _ = grid_search(name, env_id, range(instances), seeds, workers)
            table["base_lr"][env_id] = best
            write_tuned(path, tuned)  # after every id: an interrupted run loses little
    return tuned
