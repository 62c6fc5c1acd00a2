"""Arbiter: gradient-based batch-size adaptation (MacLellan & Dong, arXiv 2205.08231).

A privileged agent for the batch-size track. It learns online, within each episode:

1. **Propose.** A small agent network reads a validation minibatch (the inner network's
   penultimate features, their mean and spread over the batch) and proposes ``N``
   candidate logits ``c_i`` (offset so that, untrained, they cover the batch range). A
   softmax mixture ``alpha = softmax(m)`` over them gives ``s = sum_i alpha_i c_i``. The
   mixture logits ``m`` start with a small lead (``mixture_gap``) on the candidate nearest
   the instance's initial batch size and learn at their own rate ``mixture_lr``, so the
   chosen candidate can change within an episode.
2. **Reparameterise.** A logit maps to a batch size in ``[s_min, s_max]`` (the task's
   ``batch_bounds``) as ``B = floor((s_max - s_min) * sigmoid(logit) + s_min)``. Every
   scheduling ``interval`` decisions the candidate with the largest ``alpha`` becomes
   the next batch size (the env then trains a decision at that size).
3. **Meta-objective, no unrolling.** When the interval is over (at the next choice, after
   the env has trained all ``interval`` decisions at that size), the validation loss is taken
   at the inner network's weights *after* its step, with ``s`` injected into the inner
   network's penultimate features, ``f' = f + f.detach() * (W s)``: the value changes
   little, but the loss now depends on ``s`` and its gradient reaches the agent network,
   the mixture logits ``m`` and ``W``, without differentiating through the optimiser
   and without a hypernetwork. One Adam step on those parameters follows.

White-box access is explicit: the evaluator calls :meth:`ArbiterAgent.attach` with the
env's :meth:`~ganno_bench.envs.batch_size.BatchSizeEnv.privileged_view`, and the agent
declares ``privileged = True``, which result cards record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganno_bench.agents.protocol import Actions, Infos, Observations
from ganno_bench.envs.privileged import PrivilegedView
from ganno_bench.inner.batch_task import require_batch_task
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec


def batch_from_logit(logit: torch.Tensor | float, s_min: int, s_max: int) -> int:
    """``floor((s_max - s_min) * sigmoid(logit) + s_min)``, kept within ``[s_min, s_max]``."""
    value = torch.sigmoid(torch.as_tensor(logit, dtype=torch.float64).detach())
    return int(min(max(math.floor((s_max - s_min) * float(value) + s_min), s_min), s_max))


def logit_of_batch(batch: float, s_min: int, s_max: int) -> float:
    """The inverse map (for initialising candidates), clamped away from 0 and 1."""
    p = min(max((batch - s_min) / (s_max - s_min), 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


@dataclass
class ArbiterConfig:
    """Arbiter's settings (``baselines/arbiter.toml``)."""

    candidates: int = 8
    hidden: int = 32
    meta_lr: float = 0.01  # Adam step size of the agent network and W
    mixture_lr: float = 0.1  # Adam step size of the mixture logits m
    mixture_gap: float = 0.1  # initial lead of m on the candidate nearest the initial size
    val_batch: int = 128
    interval: int = 1  # decisions between batch-size choices
    injection_scale: float = 0.01  # initial scale of W (0 would block the gradient to s)

    def __post_init__(self) -> None:
        if self.candidates < 2 or self.hidden < 1 or self.interval < 1 or self.val_batch < 2:
            raise ValueError(
                "need candidates >= 2, hidden >= 1, interval >= 1, val_batch >= 2; got "
                f"candidates={self.candidates}, hidden={self.hidden}, "
                f"interval={self.interval}, val_batch={self.val_batch}"
            )
        if self.meta_lr <= 0 or self.mixture_lr <= 0:
            raise ValueError(
                f"meta_lr and mixture_lr must be positive; got meta_lr={self.meta_lr}, "
                f"mixture_lr={self.mixture_lr}"
            )
        if self.mixture_gap < 0:
            raise ValueError(f"mixture_gap must be >= 0; got {self.mixture_gap}")


class ProposalNetwork(nn.Module):
    """Penultimate-feature summary of a validation minibatch -> ``N`` candidate logits."""

    def __init__(self, features: int, config: ArbiterConfig, offsets: torch.Tensor) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(2 * features, config.hidden),
            nn.Tanh(),
            nn.Linear(config.hidden, len(offsets)),
        )
        self.register_buffer("offsets", offsets)
        with torch.no_grad():  # start at the offsets: candidates spread over the range
            self.body[-1].weight.mul_(0.1)
            self.body[-1].bias.zero_()

    def forward(self, penultimate: torch.Tensor) -> torch.Tensor:
        summary = torch.cat([penultimate.mean(dim=0), penultimate.std(dim=0)])
        return self.offsets + self.body(summary)


@dataclass
class ArbiterAgent:
    """The Arbiter batch-size controller (absolute mode, privileged)."""

    name: str = "arbiter"
    settings: ArbiterConfig = field(default_factory=ArbiterConfig)
    action_mode: str = field(default="absolute", init=False)
    privileged: bool = field(default=True, init=False)
    compute_multiple: float = field(default=1.0, init=False)  # one run; meta-steps are small

    def config(self) -> dict[str, Any]:
        return {"method": "arbiter", **vars(self.settings)}

    # -- episode ----------------------------------------------------------------
    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        require_batch_task(self.name, task)
        self._bounds = tuple(int(b) for b in task.batch_bounds)
        self._initial = int(np.clip(instance.batch_size, *self._bounds))
        self._seed = seed
        self._view: PrivilegedView | None = None
        self._t = 0
        self._batch = self._initial
        self._pending_s: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []

    def attach(self, view: PrivilegedView) -> None:
        """Receive white-box access for this episode and build the agent's parameters."""
        self._view = view
        generator = torch.Generator().manual_seed(self._seed)
        features = view.head.in_features
        c = self.settings
        s_min, s_max = self._bounds
        quantiles = torch.linspace(0.5 / c.candidates, 1 - 0.5 / c.candidates, c.candidates)
        offsets = torch.logit(quantiles).to(torch.float32)
        with torch.random.fork_rng(devices=[]):  # keep the user's global RNG untouched
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
            self.proposer = ProposalNetwork(features, c, offsets).to(view.device)
        # a small lead (mixture_gap) for the candidate nearest the initial batch size
        nearest = int(torch.argmin((offsets - logit_of_batch(self._initial, s_min, s_max)).abs()))
        self.mixture = torch.zeros(c.candidates, device=view.device)
        self.mixture[nearest] = c.mixture_gap
        self.mixture.requires_grad_(True)
        self.injection = (torch.randn(features, generator=generator) * c.injection_scale).to(
            view.device
        )
        self.injection.requires_grad_(True)
        self.optimizer = torch.optim.Adam(
            [
                {"params": [*self.proposer.parameters(), self.injection]},
                {"params": [self.mixture], "lr": c.mixture_lr},
            ],
            lr=c.meta_lr,
        )

    def act(self, observations: Observations, infos: Infos) -> Actions:
        if self._view is None:
            raise RuntimeError(
                f"{self.name} is privileged: call attach(env.privileged_view()) after reset "
                "(ganno_bench.evaluate does)"
            )
        choosing = self._t % self.settings.interval == 0
        # the meta-step of the previous choice, once its whole interval has been trained
        meta_loss = self._meta_step() if choosing and self._pending_s is not None else None
        if choosing:
            candidates, alpha, s = self._propose()
            self._pending_s = s
            self._batch = batch_from_logit(candidates[int(torch.argmax(alpha))], *self._bounds)
            self.history.append(
                {
                    "decision": self._t,
                    "batch_size": self._batch,
                    "alpha": alpha.detach().cpu().tolist(),
                    "candidates": [batch_from_logit(v, *self._bounds) for v in candidates.detach()],
                    "candidate_logits": candidates.detach().cpu().tolist(),
                    "meta_loss": meta_loss,
                }
            )
        self._t += 1
        return {agent: np.array([self._batch], dtype=np.float32) for agent in observations}

    # -- the method -----------------------------------------------------------------
    def _penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The inputs of the inner network's last layer, read without gradients."""
        captured: list[torch.Tensor] = []
        hook = self._view.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            with torch.no_grad():
                self._view.network(x)
        finally:
            hook.remove()
        return captured[0].detach()

    def _propose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidate logits, mixture weights and the mixed logit ``s`` (with its graph)."""
        x, _ = self._view.minibatch("val", self.settings.val_batch)
        candidates = self.proposer(self._penultimate(x))
        alpha = torch.softmax(self.mixture, dim=0)
        return candidates, alpha, (alpha * candidates).sum()

    def meta_loss(self, s: torch.Tensor) -> torch.Tensor:
        """Validation loss at the current (post-step) weights with ``s`` injected into the
        penultimate features: ``f' = f + f.detach() * (W s)``."""
        x, y = self._view.minibatch("val", self.settings.val_batch)

        def inject(_module: nn.Module, args: tuple) -> tuple:
            f = args[0]
            return (f + f.detach() * (self.injection * s),)

        hook = self._view.head.register_forward_pre_hook(inject)
        try:
            return F.cross_entropy(self._view.network(x), y)
        finally:
            hook.remove()

    def _meta_step(self) -> float:
        """One Adam step of the agent's parameters on the meta-objective of the pending
        ``s`` (chosen ``interval`` decisions ago; the inner network has since trained
        them all at its batch size)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.meta_loss(self._pending_s)
        parameters = [*self.proposer.parameters(), self.mixture, self.injection]
        grads = torch.autograd.grad(loss, parameters, allow_unused=False)
        if all(torch.isfinite(g).all() for g in grads):  # a diverged run teaches nothing
            for parameter, grad in zip(parameters, grads, strict=True):
                parameter.grad = grad
            self.optimizer.step()
        self._pending_s = None
        return float(loss.detach())
