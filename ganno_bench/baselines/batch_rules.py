"""Scripted batch-size heuristics for the batch-size track (absolute mode: B itself).

Each rule reads the controller's named features from ``infos["controller"]``:

* ``constant``: the instance's initial batch size throughout;
* ``step`` ("don't decay the learning rate, increase the batch size", Smith et al. 2018):
  B is multiplied by ``increase`` every ``step_size`` decisions, exactly where a
  ``StepLR(step_size, gamma=1/increase)`` schedule would divide the learning rate;
* ``noise-scale``: B follows the gradient noise scale ``B_simple = tr(Sigma)/|G|^2``
  (McCandlish et al. 2018), estimated by the env from two batch sizes and smoothed here
  (moving averages of both estimates, then their ratio): ``B = fraction * B_simple``,
  changed by at most ``max_change`` x per decision; B is kept until an estimate is valid;
* ``plateau``: B is multiplied by ``factor`` (doubled) once the validation loss has not
  improved by ``threshold`` (in log) for ``patience`` decisions, like ReduceLROnPlateau.

Every size is rounded and clipped to the task's ``batch_bounds``. Settings may be relative
like the LR baselines': ``<key>_fraction`` is a fraction of the episode's decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ganno_bench.agents.protocol import Actions, Infos, Observations
from ganno_bench.baselines.schedules import resolve_settings
from ganno_bench.inner.batch_task import require_batch_task
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.noise_scale import NoiseEstimate, NoiseScaleEMA
from ganno_bench.inner.task import TaskSpec

BATCH_RULES = ("constant", "step", "noise-scale", "plateau")
DEFAULTS: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": 5, "increase": 2.0},
    "noise-scale": {"fraction": 1.0, "beta": 0.7, "max_change": 4.0},
    "plateau": {"patience": 1, "threshold": 0.01, "factor": 2.0},
}


@dataclass
class BatchRuleAgent:
    """One batch-size rule for the single ``controller`` (absolute mode)."""

    name: str
    rule: str
    settings: dict[str, Any] = field(default_factory=dict)
    action_mode: str = field(default="absolute", init=False)

    def __post_init__(self) -> None:
        if self.rule not in BATCH_RULES:
            raise ValueError(f"unknown batch-size rule {self.rule!r}; choose one of {BATCH_RULES}")
        unknown = {k.removesuffix("_fraction") for k in self.settings} - set(DEFAULTS[self.rule])
        if unknown:
            raise ValueError(
                f"{self.name}: unknown settings {sorted(unknown)} for rule {self.rule!r}; "
                f"known: {sorted(DEFAULTS[self.rule])}"
            )

    def config(self) -> dict[str, Any]:
        return {"batch_rule": self.rule, **self.settings}

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        require_batch_task(self.name, task)
        self._bounds = tuple(task.batch_bounds)
        self._s = {**DEFAULTS[self.rule], **resolve_settings(self.settings, task.decisions, 1.0)}
        self._initial = self._clip(instance.batch_size)
        self._batch = self._initial
        self._t = 0
        self._ema = NoiseScaleEMA(beta=self._s.get("beta", 0.7))
        self._stale = 0

    def act(self, observations: Observations, infos: Infos) -> Actions:
        info = next(iter(infos.values()))
        s = self._s
        if self.rule == "step":
            self._batch = self._initial * s["increase"] ** (self._t // s["step_size"])
        elif self.rule == "noise-scale":
            self._batch = self._follow_noise(info)
        elif self.rule == "plateau":
            self._batch = self._on_plateau(info)
        self._batch = self._clip(self._batch)
        self._t += 1
        return {agent: np.array([self._batch], dtype=np.float32) for agent in observations}

    def _follow_noise(self, info: dict[str, Any]) -> float:
        grad_sq, trace = info.get("grad_sq_estimate"), info.get("trace_sigma_estimate")
        if grad_sq is not None and trace is not None:
            self._ema.update(NoiseEstimate(float(grad_sq), float(trace)))
        target = self._ema.value
        if not math.isfinite(target):  # no valid estimate yet: keep the batch size
            return self._batch
        limit = self._s["max_change"]
        return float(
            np.clip(self._s["fraction"] * target, self._batch / limit, self._batch * limit)
        )

    def _on_plateau(self, info: dict[str, Any]) -> float:
        if self._t == 0:  # the first decision has no change of validation loss to judge
            return self._batch
        improved = info["delta_log_val_loss"] < -self._s["threshold"]
        self._stale = 0 if improved else self._stale + 1
        if self._stale >= self._s["patience"]:
            self._stale = 0
            return self._batch * self._s["factor"]
        return self._batch

    def _clip(self, batch: float) -> int:
        return int(np.clip(round(batch), *self._bounds))
