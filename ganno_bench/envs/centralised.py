"""A single-agent Gymnasium view of a layerwise env: one controller for all layers.

Observations concatenate the per-layer observations into one flat Box of
``layers * features`` values (layer-major, the layout SB3's MLP policies expect); actions are
a MultiDiscrete (factor mode) or a Box of log10 rates (log_lr mode) over all layers.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ganno_bench.envs.layer_lr import LayerLREnv


class CentralisedLayerLREnv(gym.Env):
    """Wraps a :class:`LayerLREnv`; ``info["agents"]`` keeps the per-layer infos."""

    def __init__(self, parallel_env: LayerLREnv) -> None:
        self.parallel_env = parallel_env
        self.metadata = dict(parallel_env.metadata)
        self.render_mode = parallel_env.render_mode
        agents = parallel_env.possible_agents
        per_layer_obs = parallel_env.observation_space(agents[0])
        count = len(agents)
        self.observation_space = spaces.Box(
            np.tile(per_layer_obs.low, count), np.tile(per_layer_obs.high, count), dtype=np.float32
        )
        per_layer_action = parallel_env.action_space(agents[0])
        if isinstance(per_layer_action, spaces.Discrete):
            self.action_space = spaces.MultiDiscrete([int(per_layer_action.n)] * count)
        else:
            self.action_space = spaces.Box(
                np.full(count, per_layer_action.low[0], dtype=np.float32),
                np.full(count, per_layer_action.high[0], dtype=np.float32),
                dtype=np.float32,
            )

    @property
    def task(self):
        return self.parallel_env.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, infos = self.parallel_env.reset(seed=seed, options=options)
        return self._stack(obs), self._info(infos)

    def step(self, action: Any):
        agents = self.parallel_env.agents
        action = np.asarray(action)
        if action.shape[0:1] != (len(agents),):
            raise ValueError(
                f"the action needs one entry per layer ({len(agents)}), got shape {action.shape}"
            )
        per_agent = {agent: action[i] for i, agent in enumerate(agents)}
        obs, rewards, terminations, truncations, infos = self.parallel_env.step(per_agent)
        first = agents[0]
        return (
            self._stack(obs),
            rewards[first],
            terminations[first],
            truncations[first],
            self._info(infos),
        )

    def _stack(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([obs[a] for a in self.parallel_env.possible_agents])

    def _info(self, infos: dict[str, dict]) -> dict[str, Any]:
        first = infos[self.parallel_env.possible_agents[0]]
        shared = {
            k: v
            for k, v in first.items()
            if k in ("diverged", "decision") or k.startswith("final_")
        }
        return {
            **shared,
            "lrs": [infos[a]["lr"] for a in self.parallel_env.possible_agents],
            "agents": infos,
        }

    def render(self):
        return self.parallel_env.render()

    def close(self) -> None:
        self.parallel_env.close()
