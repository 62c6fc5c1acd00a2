"""The layerwise learning-rate environment: one agent per layer of a network in training.

A PettingZoo ``ParallelEnv``. Each step (one *decision*) applies every agent's action to
its layer's learning rate, runs the task's ``inner_steps`` minibatch updates, then
observes and rewards. All agents share the reward, the decrease of log validation loss,
so an episode's return telescopes to ``log L_0 - log L_T``. The episode is truncated
after ``decisions`` steps; it terminates early only on divergence (validation or recent
train loss not finite or above ``divergence_factor`` x the initial validation loss), with reward
``-divergence_penalty`` and ``info[agent]["diverged"] = True``.

Action modes: ``"factor"`` (Discrete: multiply the layer's rate by ``task.factors[a]``)
and ``"log_lr"`` (Box: the absolute log10 learning rate). Rates are always clipped to
``task.lr_bounds``; a ``log_lr`` action outside the box is clipped too, but a malformed
action (wrong type or shape, NaN, an index out of range) raises ``ValueError``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from ganno_bench.envs.common import (
    build_trainer,
    check_env_options,
    check_reset_args,
    choose_instance,
    decision_outcome,
    final_scores,
    initial_evaluation,
    rates_from_actions,
)
from ganno_bench.envs.observation import FEATURE_NAMES, build_observations, named, observation_space
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

ACTION_MODES = ("factor", "log_lr")


class LayerLREnv(ParallelEnv):
    """Agents ``layer_0 … layer_{L-1}`` set their layers' learning rates while it trains."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "ganno_layer_lr_v0",
        "render_modes": ["ansi"],
        "render_fps": 1,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        task: TaskSpec,
        split: str = "train",
        action_mode: str = "factor",
        device: str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        check_env_options(
            split, action_mode, ACTION_MODES, render_mode, self.metadata["render_modes"]
        )
        self.task = task
        self.split = split
        self.action_mode = action_mode
        self.render_mode = render_mode
        self.trainer, self.num_classes = build_trainer(task, device)
        self.possible_agents = [f"layer_{i}" for i in range(len(self.trainer.layers))]
        self.agents: list[str] = []

        self._log_lr_bounds = (math.log10(task.lr_bounds[0]), math.log10(task.lr_bounds[1]))
        shared_obs_space = observation_space()
        if action_mode == "factor":
            self._factors = np.asarray(task.factors, dtype=np.float64)
            self._action_spaces = {
                a: spaces.Discrete(len(task.factors)) for a in self.possible_agents
            }
        else:
            lo, hi = self._log_lr_bounds
            self._action_spaces = {
                a: spaces.Box(np.float32(lo), np.float32(hi), shape=(1,), dtype=np.float32)
                for a in self.possible_agents
            }
        self._observation_spaces = {a: shared_obs_space for a in self.possible_agents}
        self.np_random, self.np_random_seed = seeding.np_random(None)
        self.instance: Instance | None = None
        self.rates = np.zeros(len(self.possible_agents))
        self._t = 0

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
        self.instance = self._choose_instance(options)
        self.trainer.start(self.instance)
        self.rates = np.clip(
            np.full(len(self.possible_agents), self.instance.learning_rate), *self.task.lr_bounds
        )
        self.trainer.set_learning_rates(self.rates)
        self._t = 0
        self.agents = []  # until the episode has started (a refused instance starts none)

        probe = self.trainer.train(1, update=False)
        self._val_loss, self._val_accuracy = initial_evaluation(self.trainer, self.instance)
        self.agents = list(self.possible_agents)
        self._initial_val_loss = self._val_loss
        obs = build_observations(
            self.trainer.layers,
            self.rates,
            probe,
            val_loss=self._val_loss,
            prev_val_loss=self._val_loss,
            val_accuracy=self._val_accuracy,
            progress=0.0,
            num_classes=self.num_classes,
        )
        return self._per_agent(obs), self._infos(obs, diverged=False)

    def _choose_instance(self, options: dict) -> Instance:
        """``options["instance"]``: an index into the split, an Instance, or its dict."""
        return choose_instance(self.task, self.split, self.np_random, options)

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("the episode is over (or reset() was never called): call reset()")
        self.rates = self._new_rates(actions)
        self.trainer.set_learning_rates(self.rates)
        stats = self.trainer.train(self.task.inner_steps)
        self._t += 1

        prev_val_loss = self._val_loss
        # Exploding: the validation loss or the window's train loss is not finite or
        # exceeds divergence_factor x the initial validation loss.
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

        obs = build_observations(
            self.trainer.layers,
            self.rates,
            stats,
            val_loss=self._val_loss,
            prev_val_loss=prev_val_loss,
            val_accuracy=self._val_accuracy,
            progress=self._t / self.task.decisions,
            num_classes=self.num_classes,
        )
        infos = self._infos(obs, diverged=diverged)
        if done:
            final = self._final_scores(diverged)
            for info in infos.values():
                info.update(final)
        agents = self.agents
        observations = self._per_agent(obs)
        rewards = dict.fromkeys(agents, float(reward))
        terminations = dict.fromkeys(agents, diverged)
        truncations = dict.fromkeys(agents, done and not diverged)
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _new_rates(self, actions: dict[str, Any]) -> np.ndarray:
        return rates_from_actions(self.task, self.action_mode, self.rates, actions, self.agents)

    def _final_scores(self, diverged: bool) -> dict[str, float]:
        """Inner-test loss and accuracy at the episode's end (the suite's score)."""
        return final_scores(
            self.trainer,
            self.task,
            diverged=diverged,
            val_loss=self._val_loss,
            initial_val_loss=self._initial_val_loss,
        )

    def _per_agent(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {agent: obs[i] for i, agent in enumerate(self.agents)}

    def _infos(self, obs: np.ndarray, *, diverged: bool) -> dict[str, dict[str, Any]]:
        rows, rates = obs.tolist(), self.rates.tolist()
        return {
            agent: {**named(rows[i]), "lr": rates[i], "diverged": diverged, "decision": self._t}
            for i, agent in enumerate(self.agents)
        }

    # -- snapshots --------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The episode's whole state, copied: restoring it and stepping with the same
        actions gives bitwise the same trajectory (PBT's exploit, checkpoints)."""
        if self.instance is None:
            raise RuntimeError("snapshot() needs an episode: call reset() first")
        return copy.deepcopy(
            {
                "id": self.task.id,
                "budget": (self.task.decisions, self.task.inner_steps),
                "trainer": self.trainer.state_dict(),
                "env": {key: getattr(self, key) for key in _EPISODE_STATE},
            }
        )

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot`` (taken from an env of the same id, any instance)."""
        if snapshot.get("id") != self.task.id:
            raise ValueError(
                f"snapshot of {snapshot.get('id')!r} cannot be restored into {self.task.id!r}"
            )
        budget = (self.task.decisions, self.task.inner_steps)
        if tuple(snapshot["budget"]) != budget:
            raise ValueError(
                f"snapshot of a run with (decisions, inner_steps) = {tuple(snapshot['budget'])}"
                f" cannot continue in an env with {budget}: make the env with the same overrides"
            )
        if self.instance is None:  # build optimiser and data stream before loading into them
            self.trainer.start(copy.deepcopy(snapshot["env"]["instance"]))
        self.trainer.load_state_dict(snapshot["trainer"])
        for key, value in copy.deepcopy(snapshot["env"]).items():
            setattr(self, key, value)

    def render(self) -> str | None:
        return self.status_line() if self.render_mode == "ansi" else None

    def status_line(self) -> str:
        """One line: decision, validation loss and accuracy, and every layer's rate."""
        rates = " ".join(f"{r:.2e}" for r in self.rates)
        return (
            f"decision {self._t}/{self.task.decisions}  val_loss {self._val_loss:.4f}  "
            f"val_acc {self._val_accuracy:.3f}  lrs [{rates}]"
        )

    def close(self) -> None:
        pass

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES


# What reset() and step() change, besides the trainer: a snapshot's env part.
_EPISODE_STATE = (
    "instance",
    "rates",
    "agents",
    "np_random",
    "np_random_seed",
    "_t",
    "_val_loss",
    "_val_accuracy",
    "_initial_val_loss",
)
