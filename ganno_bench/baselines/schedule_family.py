"""The schedule family BOIL tunes, and its objective on an id's train split.

The family (:class:`FamilyScheduleAgent`) has three hyperparameters: the initial log10
rate, a depth slope (decades between the first and last layer's rate) and a decay power
``p`` (rate x (1 - t/T)^p over the ``T`` decisions). A training run of length ``t`` plays
the schedule for its first ``t`` decisions and yields the learning curve ``r(u)``, the
share of the chance-level validation loss removed after each decision
(:func:`env_objective`). :func:`tune_schedules` runs :class:`~ganno_bench.baselines.boil.BOIL`
on it and freezes the result in ``baselines/boil.toml``.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.agents.protocol import Actions, Infos, Observations, _layer_index
from ganno_bench.baselines.boil import BOIL, Objective
from ganno_bench.benchmark.journal import write_atomically
from ganno_bench.envs.registry import make, spec
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

__all__ = ["FamilyScheduleAgent", "env_objective", "family_bounds", "tune_schedules"]


# -- the schedule family -------------------------------------------------------------------
def family_bounds(task: TaskSpec) -> np.ndarray:
    """(low, high) of each hyperparameter: log10 initial rate, depth slope, decay power."""
    log_lr = (-3.0, 0.0) if task.optimizer == "sgd" else (-4.5, -1.5)
    return np.array([log_lr, (-1.0, 1.0), (0.0, 3.0)])


def to_hyperparameters(unit: np.ndarray, bounds: np.ndarray) -> dict[str, float]:
    values = bounds[:, 0] + np.asarray(unit) * (bounds[:, 1] - bounds[:, 0])
    return dict(zip(("log10_lr0", "depth_slope", "decay_power"), map(float, values), strict=True))


@dataclass
class FamilyScheduleAgent:
    """log10 rate of layer ``i`` at decision ``t`` (of ``T``): ``log10_lr0 + depth_slope *
    (depth_i - 1/2) + decay_power * log10(1 - t/T)``, with ``depth_i = i / (layers - 1)``.

    ``per_id`` maps an id to its own hyperparameters (a tuned config); otherwise the
    fields apply to every id.
    """

    name: str = "family"
    log10_lr0: float = -2.0
    depth_slope: float = 0.0
    decay_power: float = 0.0
    per_id: dict[str, dict[str, float]] = field(default_factory=dict)
    action_mode: str = field(default="log_lr", init=False)

    def config(self) -> dict[str, Any]:
        if self.per_id:
            return {"family": "depth-slope polynomial decay", "per_id": self.per_id}
        return {
            "family": "depth-slope polynomial decay",
            "log10_lr0": self.log10_lr0,
            "depth_slope": self.depth_slope,
            "decay_power": self.decay_power,
        }

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        params = self.per_id.get(task.id) if self.per_id else None
        if self.per_id and params is None:
            raise ValueError(
                f"{self.name!r} has no tuned schedule for {task.id}; tune it with "
                f"`ganno-bench boil tune --env {task.id}`"
            )
        params = params or self.config()
        self._lr0, self._slope = params["log10_lr0"], params["depth_slope"]
        self._power = params["decay_power"]
        self._horizon, self._t = task.decisions, 0
        order = sorted(agents, key=_layer_index)
        self._depth = {a: i / max(len(order) - 1, 1) for i, a in enumerate(order)}

    def act(self, observations: Observations, infos: Infos) -> Actions:
        decay = self._power * math.log10(1.0 - self._t / self._horizon)
        self._t += 1
        return {
            a: np.array([self._lr0 + self._slope * (self._depth[a] - 0.5) + decay])
            for a in observations
        }



# -- the suite's objective and the frozen tuned schedule -----------------------------------


def env_objective(
    env_id: str, instances: Sequence[int] = (0, 1), cost: str = "steps"
) -> tuple[Objective, TaskSpec]:
    """``objective(x, t)``: the family schedule ``x`` played for ``t`` decisions on each of
    the train ``instances``; the curve is the mean over instances of ``r(u) = max(0, 1 -
    val_loss / log(classes))`` after each decision: the share of the chance-level loss
    removed, 0 once diverged. BOIL's compression assumes such a non-negative, higher-is-
    better curve (down-weighting must not raise a score). Cost: the inner steps run
    (``"steps"``, deterministic) or the wall time (``"time"``)."""
    if cost not in ("steps", "time"):
        raise ValueError(f"cost must be 'steps' or 'time'; got {cost!r}")
    task = spec(env_id)
    bounds = family_bounds(task)

    def objective(x: np.ndarray, length: int) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        agent = FamilyScheduleAgent(**to_hyperparameters(x, bounds))
        curves = []
        for k in instances:
            env = make(env_id, split="train", action_mode="log_lr")
            obs, infos = env.reset(seed=int(k), options={"instance": int(k)})
            agent.reset(env.task, env.instance, env.possible_agents, int(k))
            curve = []
            while len(curve) < length and env.agents:
                obs, _, _, _, infos = env.step(agent.act(obs, infos))
                first = infos[env.possible_agents[0]]
                curve.append(0.0 if first["diverged"] else max(0.0, 1.0 - first["val_loss"]))
            curve += [curve[-1]] * (length - len(curve))
            curves.append(curve)
        spent = time.perf_counter() - start
        steps = length * task.inner_steps * len(instances)
        return np.mean(curves, axis=0), (float(steps) if cost == "steps" else spent)

    return objective, task


def tune_schedules(
    ids: Sequence[str],
    path: str | Path,
    *,
    iterations: int = 12,
    instances: Sequence[int] = (0, 1),
    seed: int = 0,
    name: str = "boil",
) -> dict[str, dict[str, float]]:
    """Run BOIL on each id's train split and freeze the recommended schedules in ``path``
    (a baselines TOML; other ids' entries are kept). Returns the per-id hyperparameters."""
    path = Path(path)
    stored = tomllib.loads(path.read_text()) if path.exists() else {}
    table = stored.get(name, {"method": "family", "per_id": {}})
    table["tuned_on"] = (
        f"BOIL on the train split, instances {list(instances)}, {iterations} runs, seed {seed}"
    )
    for env_id in ids:
        objective, task = env_objective(env_id, instances)
        optimiser = BOIL(objective, 3, task.decisions, seed=seed)
        best = optimiser.run(iterations)
        table["per_id"][env_id] = to_hyperparameters(best, family_bounds(task))
        _write_family_toml(path, name, table)  # after every id: an interrupted run loses little
    return table["per_id"]


def _write_family_toml(path: Path, name: str, table: dict[str, Any]) -> None:
    lines = [
        "# Written by `ganno-bench boil tune`: BOIL-tuned schedules of the family",
        "# log10 rate = log10_lr0 + depth_slope (depth - 1/2) + decay_power log10(1 - t/T).",
        "# Do not edit by hand; tune again.",
        "",
        f"[{name}]",
        'method = "family"',
        f"tuned_on = {json.dumps(table['tuned_on'])}",
    ]
    for env_id, params in sorted(table["per_id"].items()):
        lines.append(f'\n[{name}.per_id."{env_id}"]')
        lines += [f"{key} = {value!r}" for key, value in params.items()]
    write_atomically(path, "\n".join(lines) + "\n")
