"""A parameter-shared SB3 vector env whose copies train in one batched computation.

:class:`BatchedVecEnv` has the contract of :func:`~ganno_bench.envs.vector.make_vec_env`'s
SuperSuit path (slot ``c * layers + i`` is layer ``i`` of copy ``c``; factor actions; the
observations, rewards, divergence rule and infos of
:class:`~ganno_bench.envs.layer_lr.LayerLREnv`), but the copies are
:class:`~ganno_bench.envs.batched_episodes.BatchedEpisodes` over one batched engine, so a
vector step costs one batched inner-training call instead of one training run per copy.

* **Seeding** the SB3 way: ``seed(s)`` (and ``PPO(seed=s)``) stores
  :func:`~ganno_bench.envs.common.copy_seeds` for the next ``reset()``; copy ``c`` draws
  its instances from its own generator, seeded as the SuperSuit path seeds copy ``c``'s
  env, so both paths draw the same instances for the same seed.
* **Auto-reset per copy**: a copy that diverged or reached its last decision starts a new
  instance of the split at once (its own generator continues); the others go on.
* **Episode ends** carry ``terminal_observation`` and ``TimeLimit.truncated`` (a time
  limit, not a divergence) in every slot of the copy, so PPO bootstraps at time limits;
  the info of a done step is the ending episode's (final test loss and accuracy included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from ganno_bench.envs.batched_episodes import BatchedEpisodes
from ganno_bench.envs.common import choose_instance, copy_seeds
from ganno_bench.envs.observation import observation_space
from ganno_bench.inner.instances import SPLITS
from ganno_bench.inner.task import TaskSpec

__all__ = ["BatchedVecEnv"]


class BatchedVecEnv(VecEnv):
    """``num_copies`` copies of a layerwise-LR task as one SB3 VecEnv over one batched engine."""

    def __init__(
        self,
        task: TaskSpec,
        num_copies: int = 1,
        *,
        split: str = "train",
        seed: int | None = None,
        device: str = "cpu",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        self.task = task
        self.split = split
        self.episodes = BatchedEpisodes(task, num_copies, device)
        self.num_copies = num_copies
        self.agents_per_copy = self.episodes.num_layers
        self._factors = np.asarray(task.factors, dtype=np.float64)
        super().__init__(
            num_copies * self.agents_per_copy,
            observation_space(),
            spaces.Discrete(len(task.factors)),
        )
        self._rngs = [seeding.np_random(None)[0] for _ in range(num_copies)]
        self._pending_seeds: list[int] | None = None
        self._actions: np.ndarray | None = None
        self.seed(seed)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset: copy ``c`` gets ``copy_seeds(seed, num_copies)[c]``."""
        self._pending_seeds = copy_seeds(seed, self.num_copies)
        return [s for s in self._pending_seeds for _ in range(self.agents_per_copy)]

    def reset(self) -> np.ndarray:
        if self._pending_seeds is not None:
            self._rngs = [seeding.np_random(s)[0] for s in self._pending_seeds]
            self._pending_seeds = None
        options = [self._options[c * self.agents_per_copy] or {} for c in range(self.num_copies)]
        obs, infos = self._start(range(self.num_copies), options)
        self._reset_options()
        self.reset_infos = [info for copy_infos in infos for info in copy_infos]
        return obs.reshape(self.num_envs, -1)

    def _start(
        self, copies: Sequence[int], options: Sequence[dict]
    ) -> tuple[np.ndarray, list[list[dict]]]:
        instances = {
            int(c): choose_instance(self.task, self.split, self._rngs[c], dict(opts))
            for c, opts in zip(copies, options, strict=True)
        }
        return self.episodes.start(instances)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = self._check_actions(actions)

    def _check_actions(self, actions: Any) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.size != self.num_envs or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"actions must be {self.num_envs} integer indices into factors "
                f"{tuple(self._factors)} (one per slot); got {actions!r}"
            )
        arr = arr.reshape(self.num_copies, self.agents_per_copy)
        if arr.min() < 0 or arr.max() >= len(self._factors):
            raise ValueError(
                f"action indices must be 0..{len(self._factors) - 1} (factors "
                f"{tuple(self._factors)}); got {arr.min()}..{arr.max()}"
            )
        return arr

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(): call step(actions)")
        actions, self._actions = self._actions, None
        rates = np.clip(self.episodes.rates * self._factors[actions], *self.task.lr_bounds)
        step = self.episodes.step(rates)
        obs = step.observations
        for c in np.flatnonzero(step.done):
            for i, info in enumerate(step.infos[c]):
                info["terminal_observation"] = obs[c, i].copy()
        for c, copy_infos in enumerate(step.infos):
            for info in copy_infos:
                info["TimeLimit.truncated"] = bool(step.done[c] and not step.diverged[c])
        if step.done.any():
            done = np.flatnonzero(step.done)
            restarted, _ = self._start(done, [{}] * len(done))
            obs[done] = restarted[done]
        infos = [info for copy_infos in step.infos for info in copy_infos]
        rewards = np.repeat(step.rewards, self.agents_per_copy).astype(np.float32)
        dones = np.repeat(step.done, self.agents_per_copy)
        return obs.reshape(self.num_envs, -1), rewards, dones, infos

    # -- the rest of SB3's VecEnv interface ---------------------------------------------
    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        slots = list(self._get_indices(indices))
        if attr_name == "render_mode":
            return [None for _ in slots]
        if attr_name in ("task", "split"):
            return [getattr(self, attr_name) for _ in slots]
        if attr_name == "instance":
            return [self.episodes.instances[s // self.agents_per_copy] for s in slots]
        raise AttributeError(f"BatchedVecEnv slots have no attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"BatchedVecEnv slots do not take attribute {attr_name!r}")

    def env_method(
        self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        raise AttributeError(f"BatchedVecEnv slots have no method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
