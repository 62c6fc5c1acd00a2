"""Population Based Training (Jaderberg et al. 2017) of per-layer learning rates, as an agent.

For one instance, ``population`` copies of the env start from the instance's initial
condition; member 0 keeps the initial rate, the others draw each layer's log10 rate from
the prior (uniform within ``prior_decades`` of the initial rate, inside the task's rate
bounds). Members train in lockstep, one decision at a time. Whenever members are *ready*
(every ``ready`` decisions; with ``synchronous = false`` each member has its own phase),
the ready members in the bottom quantile of the validation loss copy the state (weights,
optimiser, data stream: an env snapshot) and rates of a random member of the top quantile
(*exploit*), then each layer's rate is multiplied by a random one of
``perturbation_factors`` or, with ``resample_probability``, drawn from the prior again
(*explore*). Quantiles follow Ray Tune's ``PopulationBasedTraining``:
``ceil(quantile_fraction * n)`` members each, at most ``n // 2``. Only validation losses
are used; the episode's result is the member with the lowest final validation loss,
reported by its inner-test loss, with the rates and curves of its lineage (inherited
through every exploit). PBT spends ``population`` times one run's compute: cards record
it as ``compute_multiple``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "PBTAgent",
    "PBTConfig",
    "exploit_plan",
    "explore",
    "log_prior",
    "quantiles",
    "ready_members",
]


@dataclass(frozen=True)
class PBTConfig:
    """PBT's options, named after Ray Tune's where they mean the same."""

    population: int = 8
    ready: int = 4  # decisions between exploit/explore steps (perturbation_interval)
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    perturbation_factors: tuple[float, ...] = (1.2, 0.8)
    prior_decades: float = 1.0  # prior: log10 rate uniform in initial +- this
    synchronous: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.population < 2:
            problems.append(f"population must be at least 2 (got {self.population})")
        if self.ready < 1:
            problems.append(f"ready must be at least 1 decision (got {self.ready})")
        if not 0 < self.quantile_fraction <= 0.5:
            problems.append(f"quantile_fraction must be in (0, 0.5] (got {self.quantile_fraction})")
        if not 0 <= self.resample_probability <= 1:
            problems.append(
                f"resample_probability must be in [0, 1] (got {self.resample_probability})"
            )
        if not self.perturbation_factors or min(self.perturbation_factors) <= 0:
            problems.append("perturbation_factors must be positive numbers")
        if self.prior_decades < 0:
            problems.append(f"prior_decades must be non-negative (got {self.prior_decades})")
        if problems:
            raise ValueError("invalid PBT config: " + "; ".join(problems))


def log_prior(
    log_initial: float, lr_bounds: tuple[float, float], decades: float
) -> tuple[float, float]:
    """The log10-rate interval ``log_initial`` +- ``decades``, clipped to the task's rate
    bounds (PBT's prior; the grid of :mod:`ganno_bench.baselines.best_of` spans it too)."""
    low, high = (math.log10(b) for b in lr_bounds)
    return max(log_initial - decades, low), min(log_initial + decades, high)


def quantiles(losses: Sequence[float], fraction: float) -> tuple[list[int], list[int]]:
    """(bottom, top) member indices by validation loss (top = lowest losses).

    Each holds ``ceil(fraction * n)`` members, at most ``n // 2``; ties keep member order.
    """
    n = len(losses)
    if n <= 1:
        return [], []
    size = min(math.ceil(n * fraction), n // 2)
    order = sorted(range(n), key=lambda i: (losses[i], i))  # best first
    return sorted(order[n - size :]), sorted(order[:size])


def ready_members(t: int, phases: Sequence[int], ready: int) -> list[int]:
    """Members ready after decision ``t``: those whose ``t - phase`` is a positive multiple
    of ``ready`` (synchronous PBT: every phase 0, so all members at once)."""
    return [i for i, phase in enumerate(phases) if t > phase and (t - phase) % ready == 0]


def exploit_plan(
    losses: Sequence[float], ready: Sequence[int], fraction: float, rng: np.random.Generator
) -> dict[int, int]:
    """``{member: donor}`` for each ready member in the bottom quantile; donors are drawn
    uniformly from the top quantile (ranked over the whole population)."""
    bottom, top = quantiles(losses, fraction)
    return {m: int(top[rng.integers(len(top))]) for m in sorted(ready) if m in bottom}


def explore(
    log_rates: np.ndarray,
    rng: np.random.Generator,
    config: PBTConfig,
    prior: tuple[float, float],
) -> np.ndarray:
    """Each layer's rate times a random perturbation factor, or resampled from the prior."""
    out = np.array(log_rates, dtype=np.float64)
    for i in range(out.size):
        if rng.random() < config.resample_probability:
            out[i] = rng.uniform(*prior)
        else:
            factor = config.perturbation_factors[rng.integers(len(config.perturbation_factors))]
            out[i] += math.log10(factor)
    return out


@dataclass
class _Member:
    env: Any
    log_rates: np.ndarray
    phase: int
    lineage: dict[str, list] = field(
        default_factory=lambda: {
            "val_loss": [],
            "train_loss": [],
            "val_accuracy": [],
            "reward": [],
            "lrs": [],
        }
    )
    val_loss: float = math.inf
    final: dict[str, Any] | None = None


class PBTAgent:
    """PBT over per-layer log10 rates for one instance (an *outer-loop* agent).

    Instead of ``act``, the evaluator calls :meth:`play` with a factory of fresh envs,
    because PBT runs a population. ``play`` returns the best member's final infos and its
    lineage's curves, rates and return.
    """

    action_mode = "log_lr"

    def __init__(self, name: str = "pbt", config: PBTConfig | None = None) -> None:
        self.name = name
        self.settings = config or PBTConfig()
        self.compute_multiple = float(self.settings.population)

    def config(self) -> dict[str, Any]:
        return {"method": "pbt", **asdict(self.settings)}

    def play(self, make_env: Callable[[], Any], instance: int, seed: int) -> dict[str, Any]:
        cfg = self.settings
        rng = np.random.default_rng(seed)
        envs = [make_env() for _ in range(cfg.population)]
        for env in envs:
            env.reset(seed=seed, options={"instance": instance})
        initial = math.log10(float(envs[0].rates[0]))
        low, high = (math.log10(b) for b in envs[0].task.lr_bounds)
        prior = log_prior(initial, envs[0].task.lr_bounds, cfg.prior_decades)
        n_layers = len(envs[0].possible_agents)
        members = [
            _Member(
                env,
                np.full(n_layers, initial) if m == 0 else rng.uniform(*prior, n_layers),
                0 if cfg.synchronous else int(rng.integers(cfg.ready)),
            )
            for m, env in enumerate(envs)
        ]
        decisions = members[0].env.task.decisions
        events = []  # (decision, receiver, donor, whether the receiver had diverged)
        for t in range(1, decisions + 1):
            for member in members:
                if member.env.agents:
                    member.log_rates = np.clip(member.log_rates, low, high)
                    self._step(member)
            if t == decisions:
                break
            ready = ready_members(t, [m.phase for m in members], cfg.ready)
            if not ready:
                continue
            losses = [m.val_loss for m in members]
            plan = exploit_plan(losses, ready, cfg.quantile_fraction, rng)
            for m, d in plan.items():  # donors are top, receivers bottom: never both
                donor, member = members[d], members[m]
                events.append((t, m, d, not member.env.agents))
                member.env.restore(donor.env.snapshot())
                member.log_rates = explore(donor.log_rates, rng, cfg, prior)
                member.lineage = copy.deepcopy(donor.lineage)
                member.val_loss = donor.val_loss
                member.final = copy.deepcopy(donor.final)
        best = min(range(len(members)), key=lambda i: (members[i].val_loss, i))
        winner = members[best]
        return {
            "final": winner.final,
            "curves": {k: v for k, v in winner.lineage.items() if k != "lrs"},
            "lrs": winner.lineage["lrs"],
            "return": float(sum(winner.lineage["reward"])),
            "details": {
                "best_member": best,
                "phases": [m.phase for m in members],
                "exploits": events,
            },
        }

    @staticmethod
    def _step(member: _Member) -> None:
        env = member.env
        actions = {a: member.log_rates[i : i + 1] for i, a in enumerate(env.possible_agents)}
        _, rewards, _, _, infos = env.step(actions)
        first = infos[env.possible_agents[0]]
        for key in ("val_loss", "train_loss", "val_accuracy"):
            member.lineage[key].append(first[key])
        member.lineage["reward"].append(float(rewards[env.possible_agents[0]]))
        member.lineage["lrs"].append([infos[a]["lr"] for a in env.possible_agents])
        member.val_loss = math.inf if first["diverged"] else float(first["val_loss"])
        if not env.agents:
            member.final = first
