"""The suite's layerwise-LR env as an RLlib multi-agent env class.

RLlib gets the class itself, not a name registered with Tune: Tune's registry keys its
entries by the job id of the first Ray session the process used, so after a second
session (a cluster joined, then a local Ray) a registered name is stored where that
session's env runners never look, and they fail with ``NameNotFound``. Imported only
where ray[rllib] is installed.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

from ganno_bench.envs.registry import make


class LayerLRMultiAgentEnv(ParallelPettingZooEnv):
    """``env_config["env_id"]``'s ParallelEnv on its train split (factor actions, every
    layer an agent, ``env_config["overrides"]`` as budget), on one torch thread."""

    def __init__(self, env_config: dict[str, Any]) -> None:
        torch.set_num_threads(1)
        env = make(
            env_config["env_id"], split="train", action_mode="factor", **env_config["overrides"]
        )
        super().__init__(env)
