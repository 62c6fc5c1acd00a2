"""Episodes of N copies of one layerwise-LR task, stepped together over one batched engine.

:class:`BatchedEpisodes` is :class:`~ganno_bench.envs.layer_lr.LayerLREnv`'s episode logic
for many copies at once: the same first observation (a gradient probe at reset), the same
per-decision reward and divergence rule (:func:`~ganno_bench.envs.common.judge_decision`),
the same observations and infos, and the same final scores; only the inner training runs
as one :class:`~ganno_bench.inner.batched.BatchedTrainer` call for every live copy. Copies
start, step and end independently: a copy that is not live is neither trained nor
evaluated. The SB3 vector env (:mod:`ganno_bench.envs.batched_vector`) and batched
evaluation (:mod:`ganno_bench.benchmark.batched_evaluation`) are built on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganno_bench.envs.common import check_initial_loss, judge_decision, scores_at_end
from ganno_bench.envs.observation import build_observation_batch, named, observation_space
from ganno_bench.inner.batch_task import BatchSizeTaskSpec
from ganno_bench.inner.batched import BatchedTrainer, build_batched_trainer
from ganno_bench.inner.engine import DecisionStats
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

__all__ = [
    "BatchedEpisodes",
    "BatchedStep",
    "batched_trainer_for",
    "batching_pays",
]


def batching_pays(task: TaskSpec, num_slots: int, device: str) -> bool:
    """Whether the batched engine is expected to be at least as fast as the sequential
    one. Not for a convolutional network on the CPU at one slot: its convolutions run one
    slot at a time either way (see :mod:`ganno_bench.inner.batched`), so only the
    bookkeeping is left to batch (measured at one thread: 0.82x on CNN-Hard, 1.01x on
    CNN-Easy). Callers run such a single episode on the sequential engine."""
    convolutional = getattr(task.model, "kind", None) == "cnn"
    return num_slots > 1 or not device.startswith("cpu") or not convolutional


def batched_trainer_for(task: TaskSpec, num_slots: int, device: str) -> BatchedTrainer:
    """The task's batched engine, refusing what it cannot run with a reason."""
    if isinstance(task, BatchSizeTaskSpec):
        raise ValueError(
            f"{task.id} is a batch-size id: the batched engine runs one update of the "
            "instance's batch size per inner step, so the batch-size track needs "
            "engine='sequential'"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for but CUDA is not available; use device='cpu'"
        )
    return build_batched_trainer(task, num_slots, device)


@dataclass
class BatchedStep:
    """What one decision gave each stepped copy (arrays over all copies; rows of copies
    that were not stepped are zeros / False)."""

    observations: np.ndarray  # (copies, layers, features) float32
    rewards: np.ndarray  # (copies,)
    diverged: np.ndarray  # (copies,) bool
    done: np.ndarray  # (copies,) bool: diverged or at the last decision
    infos: list[list[dict[str, Any]]]  # per copy, per layer (the ending episode's on done)


class BatchedEpisodes:
    """``num_copies`` independent episodes of ``task`` over one batched engine."""

    def __init__(self, task: TaskSpec, num_copies: int, device: str = "cpu") -> None:
        if num_copies < 1:
            raise ValueError(f"num_copies must be at least 1; got {num_copies}")
        self.task = task
        self.num_copies = num_copies
        self.trainer = batched_trainer_for(task, num_copies, device)
        self.layers = self.trainer.layers
        self.num_layers = len(self.layers)
        self.num_classes = self.trainer.num_classes
        self.num_features = observation_space().shape[0]
        n = num_copies
        self.instances: list[Instance | None] = [None] * n
        self.rates = np.zeros((n, self.num_layers))
        self.live = np.zeros(n, dtype=bool)
        self.decision = np.zeros(n, dtype=np.int64)
        self._val_loss = np.zeros(n)
        self._val_accuracy = np.zeros(n)
        self._initial_val_loss = np.zeros(n)

    def mask(self, copies: Sequence[int] | np.ndarray) -> np.ndarray:
        active = np.zeros(self.num_copies, dtype=bool)
        active[np.asarray(copies, dtype=np.int64)] = True
        return active

    def start(self, instances: dict[int, Instance]) -> tuple[np.ndarray, list[list[dict]]]:
        """Start an episode of ``instances[c]`` on each copy ``c`` given; return every
        copy's first observation rows and infos (rows of other copies are zeros)."""
        for c, instance in instances.items():
            self.instances[c] = instance
            self.trainer.start(int(c), instance)
            self.rates[c] = np.clip(instance.learning_rate, *self.task.lr_bounds)
            self.decision[c] = 0
            self.live[c] = True
        self.trainer.set_learning_rates(self.rates)
        active = self.mask(list(instances))
        probes = self.trainer.train(1, update=False, active=active)
        val_loss, val_accuracy = self.trainer.evaluate("val", active=active)
        infos: list[list[dict]] = [[] for _ in range(self.num_copies)]
        for c, instance in instances.items():
            check_initial_loss(float(val_loss[c]), instance)
        started = np.array(list(instances), dtype=np.int64)
        self._val_loss[started] = self._initial_val_loss[started] = val_loss[started]
        self._val_accuracy[started] = val_accuracy[started]
        obs = self._observe(started, probes, prev_val_loss=self._val_loss)
        for c in started:
            infos[c] = self._infos(c, obs[c], diverged=False)
        return obs, infos

    def step(self, rates: np.ndarray) -> BatchedStep:
        """One decision for every live copy at the new (already clipped) ``rates``
        (copies, layers); copies that end are no longer live."""
        stepped = self.live.copy()
        self.rates[stepped] = rates[stepped]
        self.trainer.set_learning_rates(self.rates)
        stats = self.trainer.train(self.task.inner_steps, active=stepped)
        val_loss, val_accuracy = self.trainer.evaluate("val", active=stepped)
        rewards = np.zeros(self.num_copies)
        diverged = np.zeros(self.num_copies, dtype=bool)
        infos: list[list[dict]] = [[] for _ in range(self.num_copies)]
        copies = np.flatnonzero(stepped)
        prev_val_loss = self._val_loss.copy()
        self.decision[copies] += 1
        for c in copies:
            outcome = judge_decision(
                self.task,
                stats[c],
                float(val_loss[c]),
                float(val_accuracy[c]),
                prev_val_loss=prev_val_loss[c],
                initial_val_loss=self._initial_val_loss[c],
            )
            self._val_loss[c], self._val_accuracy[c] = outcome.val_loss, outcome.val_accuracy
            rewards[c], diverged[c] = outcome.reward, outcome.diverged
        obs = self._observe(copies, stats, prev_val_loss=prev_val_loss)
        for c in copies:
            infos[c] = self._infos(c, obs[c], diverged=bool(diverged[c]))
        done = stepped & (diverged | (self.decision >= self.task.decisions))
        if done.any():
            self._finish(done, diverged, infos)
        return BatchedStep(obs, rewards, diverged, done, infos)

    def _finish(self, done: np.ndarray, diverged: np.ndarray, infos: list[list[dict]]) -> None:
        test_loss, test_accuracy = self.trainer.evaluate("test", active=done & ~diverged)
        for c in np.flatnonzero(done):
            final = scores_at_end(
                self.task,
                diverged=bool(diverged[c]),
                test_loss=float(test_loss[c]),
                test_accuracy=float(test_accuracy[c]),
                val_loss=self._val_loss[c],
                initial_val_loss=self._initial_val_loss[c],
            )
            for info in infos[c]:
                info.update(final)
            self.live[c] = False

    def _observe(
        self,
        copies: np.ndarray,
        stats: Sequence[DecisionStats | None],
        *,
        prev_val_loss: np.ndarray,
    ) -> np.ndarray:
        """Observation rows (copies, layers, features) of every copy: ``copies``' built
        in one call from their ``stats[c]``, the others' zeros."""
        obs = np.zeros((self.num_copies, self.num_layers, self.num_features), dtype=np.float32)
        if len(copies):
            obs[copies] = build_observation_batch(
                self.layers,
                self.rates[copies],
                [stats[c] for c in copies],
                val_loss=self._val_loss[copies],
                prev_val_loss=prev_val_loss[copies],
                val_accuracy=self._val_accuracy[copies],
                progress=self.decision[copies] / self.task.decisions,
                num_classes=self.num_classes,
            )
        return obs

    def _infos(self, c: int, rows: np.ndarray, *, diverged: bool) -> list[dict[str, Any]]:
        """LayerLREnv's infos: every feature by name, the layer's rate, divergence, decision."""
        return [
            {
                **named(row),
                "lr": float(rate),
                "diverged": diverged,
                "decision": int(self.decision[c]),
            }
            for row, rate in zip(rows.tolist(), self.rates[c].tolist(), strict=True)
        ]
