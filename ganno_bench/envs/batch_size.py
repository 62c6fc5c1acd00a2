"""The batch-size environment: one controller picks the batch size while a network trains.

A PettingZoo ``ParallelEnv`` with a single agent, ``controller`` (the batch size is one
number for the whole network). Each step (one *decision*) sets the batch size ``B`` from
the action, runs the decision's updates on exactly ``task.samples_per_decision`` training
samples (``samples_per_decision // B`` updates of ``B``, then one of the remainder, or the
remainder merged into the last update when it is below ``batch_bounds[0]``: see
:func:`ganno_bench.inner.batch_task.update_sizes`), with
the learning rate of the id's fixed schedule, then probes the gradient noise, observes and
rewards. The budget is therefore counted in samples: a larger batch means fewer updates,
and ``info["samples_processed"]`` ends at ``decisions * samples_per_decision`` exactly.

Reward, divergence and splits are those of the layerwise env: the decrease of log
validation loss; divergence terminates with ``-divergence_penalty`` and
``info["diverged"] = True``.

Action modes: ``"factor"`` (Discrete: multiply ``B`` by ``task.factors[a]``, by default
halve / keep / double) and ``"absolute"`` (Box: the batch size itself, rounded to an
integer). Batch sizes are clipped to ``task.batch_bounds`` (8..512 in the suite); a
malformed action (wrong type or shape, NaN, an index out of range) raises ``ValueError``.

Privileged agents (white-box methods such as Arbiter) read the inner network and data
through :meth:`BatchSizeEnv.privileged_view`; ordinary agents never need it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from ganno_bench.envs.batch_observation import (
    BATCH_FEATURE_NAMES,
    BatchState,
    batch_observation_space,
    build_batch_observation,
    named_batch,
)
from ganno_bench.envs.common import (
    build_trainer,
    check_action_dict,
    check_env_options,
    check_reset_args,
    choose_instance,
    decision_outcome,
    factor_index,
    final_scores,
    initial_evaluation,
    is_numeric,
)
from ganno_bench.envs.privileged import PrivilegedView
from ganno_bench.inner.batch_task import BatchSizeTaskSpec, update_sizes
from ganno_bench.inner.engine import GradientProbe
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.noise_scale import NoiseEstimate, estimate_noise

BATCH_ACTION_MODES = ("factor", "absolute")
CONTROLLER = "controller"
_NO_NOISE = NoiseEstimate(math.nan, math.nan)


class BatchSizeEnv(ParallelEnv):
    """One agent, ``controller``, sets the batch size of every update of the decision."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "ganno_batch_size_v0",
        "render_modes": ["ansi"],
        "render_fps": 1,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        task: BatchSizeTaskSpec,
        split: str = "train",
        action_mode: str = "factor",
        device: str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        check_env_options(
            split, action_mode, BATCH_ACTION_MODES, render_mode, self.metadata["render_modes"]
        )
        self.task = task
        self.split = split
        self.action_mode = action_mode
        self.render_mode = render_mode
        self.trainer, self.num_classes = build_trainer(task, device)
        _check_fits_the_train_part(task, len(self.trainer.data_part("train")[1]))
        self.possible_agents = [CONTROLLER]
        self.agents: list[str] = []

        lo, hi = task.batch_bounds
        if action_mode == "factor":
            self._factors = np.asarray(task.factors, dtype=np.float64)
            action_space: spaces.Space = spaces.Discrete(len(task.factors))
        else:
            action_space = spaces.Box(np.float32(lo), np.float32(hi), shape=(1,), dtype=np.float32)
        self._action_spaces = {CONTROLLER: action_space}
        self._observation_spaces = {CONTROLLER: batch_observation_space()}
        self.np_random, self.np_random_seed = seeding.np_random(None)
        self.instance: Instance | None = None
        self.batch_size = lo
        self.lr = 0.0
        self._t = 0
        self._samples = 0
        self._updates = 0

    # Same object on every call (PettingZoo's API test checks it).
    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._action_spaces[agent]

    # -- episode ----------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        seed, options = check_reset_args(seed, options)
        if seed is not None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        self.instance = choose_instance(self.task, self.split, self.np_random, options)
        self.trainer.start(self.instance)
        self.batch_size = int(np.clip(self.instance.batch_size, *self.task.batch_bounds))
        self.lr = self._scheduled_lr(0)
        self._t = 0
        self._samples = 0
        self._updates = 0
        self._prev_grad: torch.Tensor | None = None
        self.agents = []  # until the episode has started (a refused instance starts none)

        probe = self._probe()
        self._val_loss, self._val_accuracy = initial_evaluation(self.trainer, self.instance)
        self.agents = [CONTROLLER]
        self._initial_val_loss = self._val_loss
        obs, noise = self._observe(
            probe, train_loss=probe.loss, update_ratio=0.0, prev_val_loss=self._val_loss
        )
        return {CONTROLLER: obs}, self._infos(obs, probe, noise, diverged=False)

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("the episode is over (or reset() was never called): call reset()")
        self.batch_size = self._new_batch_size(actions)
        self.lr = self._scheduled_lr(self._t)
        self.trainer.set_learning_rates(np.full(len(self.trainer.layers), self.lr))
        sizes = update_sizes(
            self.task.samples_per_decision, self.batch_size, self.task.batch_bounds[0]
        )
        stats = self.trainer.train_batches(sizes)
        self._samples += sum(sizes)
        self._updates = len(sizes)
        self._t += 1

        prev_val_loss = self._val_loss
        outcome = decision_outcome(
            self.trainer,
            self.task,
            stats,
            prev_val_loss=prev_val_loss,
            initial_val_loss=self._initial_val_loss,
        )
        self._val_loss, self._val_accuracy = outcome.val_loss, outcome.val_accuracy
        diverged, reward = outcome.diverged, outcome.reward
        done = diverged or self._t >= self.task.decisions

        probe = None if diverged else self._probe()
        weight_sq = np.square(stats.weight_norm)
        update_ratio = math.sqrt(
            float(np.sum(np.square(stats.update_ratio) * weight_sq))
            / max(float(np.sum(weight_sq)), np.finfo(np.float64).tiny)
        )
        obs, noise = self._observe(
            probe,
            train_loss=stats.train_loss,
            update_ratio=update_ratio,
            prev_val_loss=prev_val_loss,
        )
        infos = self._infos(obs, probe, noise, diverged=diverged)
        if done:
            infos[CONTROLLER].update(
                final_scores(
                    self.trainer,
                    self.task,
                    diverged=diverged,
                    val_loss=self._val_loss,
                    initial_val_loss=self._initial_val_loss,
                )
            )
            self.agents = []
        return (
            {CONTROLLER: obs},
            {CONTROLLER: float(reward)},
            {CONTROLLER: diverged},
            {CONTROLLER: done and not diverged},
            infos,
        )

    def _scheduled_lr(self, decision: int) -> float:
        assert self.instance is not None
        rate = self.task.learning_rate(self.instance.learning_rate, decision)
        return float(np.clip(rate, *self.task.lr_bounds))

    def _probe(self) -> GradientProbe:
        return self.trainer.probe_gradients(self.task.probe_batch, self.task.probe_chunks)

    def _observe(
        self,
        probe: GradientProbe | None,
        *,
        train_loss: float,
        update_ratio: float,
        prev_val_loss: float,
    ) -> tuple[np.ndarray, NoiseEstimate]:
        if probe is None:  # diverged: nothing to measure
            noise, big, small, cosine = _NO_NOISE, math.nan, math.nan, 0.0
        else:
            noise = estimate_noise(probe.small, probe.small_sq_norm, probe.big, probe.big_sq_norm)
            big, small = probe.big_sq_norm, probe.small_sq_norm
            cosine = self._grad_cosine(probe.mean_grad)
        state = BatchState(
            lr=self.lr,
            batch_size=self.batch_size,
            batch_bounds=self.task.batch_bounds,
            noise=noise,
            big_sq_norm=big,
            small_sq_norm=small,
            grad_cosine=cosine,
            update_ratio=update_ratio,
            train_loss=train_loss,
            val_loss=self._val_loss,
            prev_val_loss=prev_val_loss,
            val_accuracy=self._val_accuracy,
            progress=self._samples / self.task.sample_budget,
        )
        return build_batch_observation(state, self.num_classes), noise

    def _grad_cosine(self, grad: torch.Tensor) -> float:
        """Cosine with the previous decision's probe gradient (0 at the first)."""
        prev, self._prev_grad = self._prev_grad, grad
        if prev is None:
            return 0.0
        denominator = float(grad.norm() * prev.norm())
        return float(grad @ prev) / denominator if denominator > 0 else 0.0

    def _new_batch_size(self, actions: dict[str, Any]) -> int:
        actions = check_action_dict(actions)
        unknown = [a for a in actions if a != CONTROLLER]
        if CONTROLLER not in actions or unknown:
            raise ValueError(
                f"step() needs exactly one action, for {CONTROLLER!r}; got agents {list(actions)}"
            )
        value = actions[CONTROLLER]
        lo, hi = self.task.batch_bounds
        if self.action_mode == "factor":
            size = self.batch_size * self._factors[factor_index(CONTROLLER, value, self._factors)]
        else:
            size = self._absolute_value(value)
        return int(np.clip(round(size), lo, hi))

    def _absolute_value(self, value: Any) -> float:
        arr = np.asarray(value, dtype=np.float64) if is_numeric(value) else None
        if arr is None or arr.size != 1 or not math.isfinite(float(arr.reshape(()))):
            raise ValueError(
                f"invalid action for {CONTROLLER}: {value!r}; absolute mode takes one finite "
                f"batch size, an int or float (clipped to {self.task.batch_bounds}); strings "
                "and booleans are refused"
            )
        return float(arr.reshape(()))

    def _infos(
        self,
        obs: np.ndarray,
        probe: GradientProbe | None,
        noise: NoiseEstimate,
        *,
        diverged: bool,
    ) -> dict[str, dict[str, Any]]:
        return {
            CONTROLLER: {
                **named_batch(obs),
                "lr": self.lr,
                "batch_size": self.batch_size,
                "samples_processed": self._samples,
                "updates": self._updates,
                "noise_scale": noise.simple if noise.valid else None,
                "grad_sq_estimate": noise.grad_sq if math.isfinite(noise.grad_sq) else None,
                "trace_sigma_estimate": (
                    noise.trace_sigma if math.isfinite(noise.trace_sigma) else None
                ),
                "probe_batches": (probe.small, probe.big) if probe is not None else None,
                "diverged": diverged,
                "decision": self._t,
            }
        }

    # -- privileged access --------------------------------------------------------
    def privileged_view(self) -> PrivilegedView:
        """White-box access for privileged agents (e.g. Arbiter): the live inner network and
        minibatches of its data, for the current episode (ask again after each reset).
        Agents that use it declare ``privileged = True``, so that their result cards say
        so (see :class:`ganno_bench.agents.protocol.PrivilegedAgent`)."""
        if self.instance is None:
            raise RuntimeError("privileged_view() needs an episode: call reset() first")
        return PrivilegedView(self.trainer, seed=self.instance.data_seed)

    def render(self) -> str | None:
        return self.status_line() if self.render_mode == "ansi" else None

    def status_line(self) -> str:
        """One line: decision, validation loss and accuracy, batch size, rate, samples."""
        return (
            f"decision {self._t}/{self.task.decisions}  val_loss {self._val_loss:.4f}  "
            f"val_acc {self._val_accuracy:.3f}  batch {self.batch_size}  lr {self.lr:.2e}  "
            f"samples {self._samples}/{self.task.sample_budget}"
        )

    def close(self) -> None:
        pass

    @property
    def feature_names(self) -> tuple[str, ...]:
        return BATCH_FEATURE_NAMES


def _check_fits_the_train_part(task: BatchSizeTaskSpec, n_train: int) -> None:
    """The probe and the largest update must fit in the train part (``n_train`` samples)."""
    lo, hi = task.batch_bounds
    problems = []
    if task.probe_batch * task.probe_chunks > n_train:
        problems.append(
            f"probe_batch x probe_chunks = {task.probe_batch} x {task.probe_chunks} exceeds "
            f"the {n_train} train samples: lower the `probe_batch` or `probe_chunks` override"
        )
    if hi + lo - 1 > n_train:  # an update may hold B + a remainder below lo
        problems.append(
            f"batch_bounds {task.batch_bounds} allow updates of up to {hi + lo - 1} samples "
            f"(batch_bounds[1] + batch_bounds[0] - 1) but the train part has {n_train}: "
            "lower the `batch_bounds` override"
        )
    if problems:
        raise ValueError(f"task {task.id!r}: " + "; ".join(problems))
