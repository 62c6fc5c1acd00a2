"""Scripted baselines: global schedules driven by torch's lr_scheduler, and layerwise rules.

Global schedules run a real ``torch.optim.lr_scheduler`` on a one-parameter optimiser
and read its learning rate at every decision, so they give exactly torch's values (a
scheduler step is one decision). Settings may be relative: ``<key>_fraction`` is a
fraction of the episode's decisions (rounded, at least 1) and ``<key>_factor`` a
multiple of the base rate (the instance's initial rate unless ``base_lr`` is set).

Layerwise rules read each layer's named features from the infos:

* ``hypergradient`` (SGD-HD style, multiplicative): ``log10 lr += beta * cos(g_t, g_t-1)``
  per layer, so a layer whose successive gradients agree speeds up and one that
  oscillates slows down;
* ``lars``: LARS's trust ratio: ``lr_l`` proportional to ``|w_l| / |g_l|``, scaled so
  that the layers' geometric-mean rate is ``eta * base``;
* ``random``: a rate per layer and decision, log-uniform within ``decades`` of the base.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.optim import lr_scheduler

from ganno_bench.agents.protocol import Actions, Infos, Observations
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

GLOBAL_SCHEDULERS = (
    "constant",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "CyclicLR",
    "ReduceLROnPlateau",
    "WarmupCosine",
)
LAYERWISE_RULES = ("hypergradient", "lars", "random")


BaseRate = float | dict[str, float] | None


def base_rate(base_lr: BaseRate, task: TaskSpec, instance: Instance) -> float:
    """The schedule's base rate: the instance's own, a fixed one, or one tuned per id."""
    if base_lr is None:
        return instance.learning_rate
    if isinstance(base_lr, dict):
        if task.id not in base_lr:
            raise ValueError(
                f"no tuned base rate for {task.id}; tuned ids: {sorted(base_lr)}. "
                "Run `ganno-bench tune` for it"
            )
        return float(base_lr[task.id])
    return float(base_lr)


def resolve_settings(settings: dict[str, Any], decisions: int, base_lr: float) -> dict[str, Any]:
    """Turn ``*_fraction`` keys into decision counts and ``*_factor`` keys into rates."""
    resolved = {}
    for key, value in settings.items():
        if key.endswith("_fraction"):
            resolved[key.removesuffix("_fraction")] = max(1, round(value * decisions))
        elif key.endswith("_factor") and key not in (
            "start_factor",
            "end_factor",
            "div_factor",
            "final_div_factor",
        ):
            resolved[key.removesuffix("_factor")] = value * base_lr
        else:
            resolved[key] = value
    return resolved


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, settings: dict[str, Any], decisions: int
) -> lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau:
    """The torch scheduler for ``name`` with already-resolved settings."""
    if name == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if name == "WarmupCosine":
        warmup = settings["warmup"]
        warm = lr_scheduler.LinearLR(
            optimizer, start_factor=settings.get("start_factor", 0.1), total_iters=warmup
        )
        cosine = lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, decisions - warmup), eta_min=settings.get("eta_min", 0.0)
        )
        return lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[warmup])
    if name == "OneCycleLR":
        return lr_scheduler.OneCycleLR(
            optimizer, total_steps=decisions, cycle_momentum=False, **settings
        )
    if name == "CyclicLR":
        return lr_scheduler.CyclicLR(optimizer, cycle_momentum=False, **settings)
    if name not in GLOBAL_SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {GLOBAL_SCHEDULERS}")
    return getattr(lr_scheduler, name)(optimizer, **settings)


@dataclass
class GlobalScheduleAgent:
    """One torch lr_scheduler drives every layer's rate (log_lr mode)."""

    name: str
    scheduler: str
    settings: dict[str, Any] = field(default_factory=dict)
    base_lr: BaseRate = None
    action_mode: str = field(default="log_lr", init=False)

    def config(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "base_lr": self.base_lr, **self.settings}

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        base = base_rate(self.base_lr, task, instance)
        self._parameter = torch.zeros(1, requires_grad=True)
        self._optimizer = torch.optim.SGD([self._parameter], lr=base)
        settings = resolve_settings(self.settings, task.decisions, base)
        self._scheduler = build_scheduler(self.scheduler, self._optimizer, settings, task.decisions)
        self._started = False

    def act(self, observations: Observations, infos: Infos) -> Actions:
        if self._started:  # one scheduler step per decision taken
            self._optimizer.step()  # a no-op (no gradient); keeps torch's step order
            if isinstance(self._scheduler, lr_scheduler.ReduceLROnPlateau):
                self._scheduler.step(next(iter(infos.values()))["val_loss"])
            else:
                self._scheduler.step()
        self._started = True
        # float64: a float32 log10 would perturb the rate by ~1e-7, enough to change a
        # chaotic training run; in float64 the constant schedule is the instance's rate.
        log_lr = math.log10(self._optimizer.param_groups[0]["lr"])
        return {agent: np.array([log_lr]) for agent in observations}


@dataclass
class LayerwiseRuleAgent:
    """A per-layer rule over each layer's own named features (log_lr mode)."""

    name: str
    rule: str
    settings: dict[str, Any] = field(default_factory=dict)
    base_lr: BaseRate = None
    action_mode: str = field(default="log_lr", init=False)

    def __post_init__(self) -> None:
        if self.rule not in LAYERWISE_RULES:
            raise ValueError(
                f"unknown layerwise rule {self.rule!r}; choose one of {LAYERWISE_RULES}"
            )

    def config(self) -> dict[str, Any]:
        return {"rule": self.rule, "base_lr": self.base_lr, **self.settings}

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        base = base_rate(self.base_lr, task, instance)
        self._log_base = math.log10(base)
        self._log_rates = dict.fromkeys(agents, self._log_base)
        self._rng = np.random.default_rng(seed)

    def act(self, observations: Observations, infos: Infos) -> Actions:
        agents = list(observations)
        s = self.settings
        if self.rule == "hypergradient":
            for agent in agents:
                self._log_rates[agent] += s.get("beta", 0.1) * infos[agent]["grad_cosine"]
            rates = np.array([self._log_rates[a] for a in agents])
        elif self.rule == "lars":
            trust = np.array(
                [infos[a]["log10_weight_norm"] - infos[a]["log10_grad_norm"] for a in agents]
            )
            # proportional to |w|/|g|, scaled so the rates' geometric mean is eta x base
            rates = self._log_base + math.log10(s.get("eta", 1.0)) + trust - trust.mean()
        else:
            decades = s.get("decades", 1.0)
            rates = self._log_base + self._rng.uniform(-decades, decades, size=len(agents))
        return {a: np.array([r], dtype=np.float64) for a, r in zip(agents, rates, strict=True)}


# -- a simple factor-mode agent ---------------------------------------------------
KEEP, HALVE = 2, 0  # indices into the default factors (0.5, 0.8, 1, 1.25, 2)


def halve_on_plateau(observations: Observations, infos: Infos, rng: np.random.Generator) -> Actions:
    """Halve every rate when the validation loss went up; otherwise keep it."""
    return {a: HALVE if infos[a]["delta_log_val_loss"] > 0 else KEEP for a in observations}
