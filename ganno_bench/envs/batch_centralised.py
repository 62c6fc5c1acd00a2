"""The Gymnasium view of a batch-size env: its single controller as a plain ``gym.Env``.

Observation and action spaces are the controller's own (Box; Discrete in factor mode,
Box of batch sizes in absolute mode); ``info`` is the controller's info.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from ganno_bench.envs.batch_size import CONTROLLER, BatchSizeEnv


class CentralisedBatchSizeEnv(gym.Env):
    """Wraps a :class:`BatchSizeEnv` for single-agent libraries (SB3, Gymnasium tools)."""

    def __init__(self, parallel_env: BatchSizeEnv) -> None:
        self.parallel_env = parallel_env
        self.metadata = dict(parallel_env.metadata)
        self.render_mode = parallel_env.render_mode
        self.observation_space = parallel_env.observation_space(CONTROLLER)
        self.action_space = parallel_env.action_space(CONTROLLER)

    @property
    def task(self):
        return self.parallel_env.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, infos = self.parallel_env.reset(seed=seed, options=options)
        return obs[CONTROLLER], infos[CONTROLLER]

    def step(self, action: Any):
        obs, rewards, terminations, truncations, infos = self.parallel_env.step(
            {CONTROLLER: action}
        )
        return (
            obs[CONTROLLER],
            rewards[CONTROLLER],
            terminations[CONTROLLER],
            truncations[CONTROLLER],
            infos[CONTROLLER],
        )

    def render(self):
        return self.parallel_env.render()

    def close(self) -> None:
        self.parallel_env.close()
