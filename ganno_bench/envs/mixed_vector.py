"""Several ids in one parameter-shared SB3 vector env: a training mix of task families.

:class:`ConcatVecEnv` puts vector envs of different ids side by side (slots of the first
env first), so one PPO rollout holds episodes of every id, e.g. MLP-Easy and CNN-Easy
for a policy that must drive both. Every id's layers share one observation space (the
suite's 14 scale-free features) and one factor action space, so one policy acts in all
slots; ids whose spaces differ are refused. ``seed(s)`` seeds the parts with independent
children of ``numpy.random.SeedSequence(s)``, so no two parts share a stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from ganno_bench.envs.common import copy_seeds
from ganno_bench.envs.vector import make_vec_env

__all__ = ["ConcatVecEnv", "make_mixed_vec_env"]


class ConcatVecEnv(VecEnv):
    """The slots of ``venvs`` as one VecEnv (same observation and action spaces)."""

    def __init__(self, venvs: Sequence[VecEnv], seed: int | None = None) -> None:
        if not venvs:
            raise ValueError("ConcatVecEnv needs at least one vector env")
        first = venvs[0]
        for venv in venvs[1:]:
            if venv.observation_space != first.observation_space:
                raise ValueError(
                    f"vector envs with different observation spaces cannot share a policy: "
                    f"{first.observation_space} and {venv.observation_space}"
                )
            if venv.action_space != first.action_space:
                raise ValueError(
                    f"vector envs with different action spaces cannot share a policy: "
                    f"{first.action_space} and {venv.action_space} (use one factor set)"
                )
        self.venvs = list(venvs)
        self._bounds = np.cumsum([0, *(v.num_envs for v in self.venvs)])
        super().__init__(int(self._bounds[-1]), first.observation_space, first.action_space)
        self.seed(seed)

    def _parts(self) -> list[tuple[VecEnv, slice]]:
        return [
            (venv, slice(int(a), int(b)))
            for venv, a, b in zip(self.venvs, self._bounds[:-1], self._bounds[1:], strict=True)
        ]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        seeds = []
        for venv, part_seed in zip(self.venvs, copy_seeds(seed, len(self.venvs)), strict=True):
            seeds += list(venv.seed(part_seed))
        return seeds

    def reset(self) -> np.ndarray:
        for venv, part in self._parts():
            venv.set_options(self._options[part])
        observations = [venv.reset() for venv in self.venvs]
        self.reset_infos = [info for venv in self.venvs for info in venv.reset_infos]
        self._reset_options()
        return np.concatenate(observations)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        for venv, part in self._parts():
            venv.step_async(actions[part])

    def step_wait(self) -> VecEnvStepReturn:
        results = [venv.step_wait() for venv in self.venvs]
        obs = np.concatenate([r[0] for r in results])
        rewards = np.concatenate([r[1] for r in results])
        dones = np.concatenate([r[2] for r in results])
        infos = [info for r in results for info in r[3]]
        return obs, rewards, dones, infos

    def close(self) -> None:
        for venv in self.venvs:
            venv.close()

    def _dispatch(self, indices: VecEnvIndices) -> list[tuple[VecEnv, list[int]]]:
        wanted = list(self._get_indices(indices))
        out = []
        for venv, part in self._parts():
            local = [i - part.start for i in wanted if part.start <= i < part.stop]
            if local:
                out.append((venv, local))
        return out

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [
            v for venv, local in self._dispatch(indices) for v in venv.get_attr(attr_name, local)
        ]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for venv, local in self._dispatch(indices):
            venv.set_attr(attr_name, value, local)

    def env_method(
        self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return [
            v
            for venv, local in self._dispatch(indices)
            for v in venv.env_method(method_name, *args, indices=local, **kwargs)
        ]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [
            v for venv, local in self._dispatch(indices)
            for v in venv.env_is_wrapped(wrapper_class, local)
        ]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [image for venv in self.venvs for image in venv.get_images()]


def make_mixed_vec_env(
    env_ids: Sequence[str],
    num_copies: int = 1,
    *,
    seed: int | None = None,
    engine: str = "sequential",
    **make_kwargs: Any,
) -> VecEnv:
    """``num_copies`` copies of each of ``env_ids`` in one VecEnv (one id: the plain
    :func:`~ganno_bench.envs.vector.make_vec_env`)."""
    if len(env_ids) == 1:
        return make_vec_env(env_ids[0], num_copies, seed=seed, engine=engine, **make_kwargs)
    if len(set(env_ids)) != len(env_ids):
        raise ValueError(f"each id may appear once in a training mix; got {list(env_ids)}")
    parts = [make_vec_env(i, num_copies, engine=engine, **make_kwargs) for i in env_ids]
    return ConcatVecEnv(parts, seed=seed)
