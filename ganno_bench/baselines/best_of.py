"""Best of P runs of one single-run schedule: the equal-compute control for outer loops.

An outer-loop agent such as PBT spends ``population`` training runs on one instance. The
fair single-run competitor at that compute is a single-run schedule given the same P runs:
a per-instance grid search over its base rate. Member ``i`` plays the schedule with base
log10 rate ``grid[i]``, P points evenly spaced over the member's own base rate (the
instance's initial rate unless the member sets ``base_lr``) +- ``decades`` (PBT's prior,
clipped to the task's rate bounds); the member with the lowest
final *validation* loss is reported by its inner-test loss (a diverged member never wins
unless all diverged). The test loss never takes part in the choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganno_bench.agents.protocol import Agent
from ganno_bench.baselines.pbt import log_prior
from ganno_bench.baselines.schedules import base_rate

__all__ = ["BestOfAgent", "BestOfConfig", "best_member", "log_rate_grid"]


@dataclass(frozen=True)
class BestOfConfig:
    population: int = 8
    decades: float = 1.0  # the grid spans the initial log10 rate +- this

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.population, int) or isinstance(self.population, bool):
            problems.append(f"population must be a whole number (got {self.population!r})")
        elif self.population < 2:
            problems.append(f"population must be at least 2 (got {self.population})")
        if not self.decades > 0:
            problems.append(f"decades must be positive (got {self.decades})")
        if problems:
            raise ValueError("invalid best-of config: " + "; ".join(problems))


def log_rate_grid(centre: float, bounds: tuple[float, float], config: BestOfConfig) -> np.ndarray:
    """``population`` log10 base rates, evenly spaced over ``centre`` +- ``decades`` (both
    ends included; PBT's prior, clipped to the task's rate ``bounds``). An even population
    straddles the centre rather than containing it."""
    lo, hi = log_prior(math.log10(centre), bounds, config.decades)
    return np.linspace(lo, hi, config.population)


def best_member(val_losses: Sequence[float], diverged: Sequence[bool]) -> int:
    """The member with the lowest final validation loss; diverged members rank last and
    ties go to the lower index."""
    ranked = [
        math.inf if d or not math.isfinite(v) else v
        for v, d in zip(val_losses, diverged, strict=True)
    ]
    return min(range(len(ranked)), key=lambda i: (ranked[i], i))


class BestOfAgent:
    """Grid search of one schedule's base rate per instance (an *outer-loop* agent).

    ``member`` is the schedule as a single-run agent with a ``base_lr`` field
    (:class:`~ganno_bench.baselines.schedules.GlobalScheduleAgent` or
    :class:`~ganno_bench.baselines.schedules.LayerwiseRuleAgent`); each member is a copy of it
    with a fixed base rate.
    """

    action_mode = "log_lr"

    def __init__(self, name: str, member: Agent, config: BestOfConfig | None = None) -> None:
        if not dataclasses.is_dataclass(member) or "base_lr" not in {
            f.name for f in dataclasses.fields(member)
        }:
            raise ValueError(
                f"best-of agent {name!r}: its member must be a schedule with a base rate "
                "(a table with 'scheduler' or 'rule'), got "
                f"{type(member).__name__}"
            )
        if member.action_mode != "log_lr":
            raise ValueError(f"best-of agent {name!r}: its member must act in log_lr mode")
        self.name = name
        self.member = member
        self.settings = config or BestOfConfig()
        self.compute_multiple = float(self.settings.population)

    def config(self) -> dict[str, Any]:
        return {
            "method": "best-of",
            **dataclasses.asdict(self.settings),
            "member": self.member.config(),
        }

    def play(self, make_env: Callable[[], Any], instance: int, seed: int) -> dict[str, Any]:
        from ganno_bench.benchmark.evaluation import play_episode

        envs = [make_env() for _ in range(self.settings.population)]
        envs[0].reset(seed=seed, options={"instance": instance})  # to read the instance
        task = envs[0].task
        centre = base_rate(self.member.base_lr, task, envs[0].instance)
        grid = log_rate_grid(centre, task.lr_bounds, self.settings)
        played = [
            play_episode(
                dataclasses.replace(self.member, base_lr=float(10.0**g)), env, instance, seed
            )
            for g, env in zip(grid, envs, strict=True)
        ]
        val_losses = [p["final"]["val_loss"] for p in played]
        best = best_member(val_losses, [p["final"]["diverged"] for p in played])
        return {
            **played[best],
            "details": {
                "best_member": best,
                "log10_base_rates": [float(g) for g in grid],
                "val_losses": [float(v) for v in val_losses],
            },
        }
