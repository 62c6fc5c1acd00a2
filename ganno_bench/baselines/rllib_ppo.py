"""PPO with one policy shared by every layer, trained by RLlib over Ray workers.

The same learned baseline as :mod:`ganno_bench.baselines.ppo` (SB3), on the RLlib stack:
the id's PettingZoo ParallelEnv (factor actions, train split) is wrapped in RLlib's
``ParallelPettingZooEnv``, every layer agent maps to the one policy ``shared`` (parameter
sharing, as in RLlib's ``pettingzoo_parameter_sharing`` example), and env runners sample
on Ray workers (a local Ray, or the cluster at ``address``). The run folder holds RLlib's
checkpoint (``checkpoint/``, resumed from when the command runs again) and the shared
RLModule (``policy/``), which :class:`RLlibPolicyAgent` plays like the SB3 policies
(deterministic: the most likely factor).

RLlib pins gymnasium 1.2.2, which the ``[rllib]`` extra admits (a venv of its own; the
README's "Scaling out" says how); nothing here is imported without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.benchmark.journal import write_atomically
from ganno_bench.benchmark.ray_backend import RayUnavailableError

POLICY_ID = "shared"
INSTALL_HINT = (
    'pip install -c constraints.txt "gymnasium==1.2.2" -e ".[rllib]" (in a venv of its own: '
    "RLlib pins gymnasium 1.2.2)"
)


def _rllib() -> Any:
    try:
        from ray import rllib
    except ImportError as exc:
        raise RayUnavailableError(
            f"RLlib needs ray[rllib], which is not installed here: {INSTALL_HINT}"
        ) from exc
    return rllib


def rllib_config(
    env_id: str,
    seed: int,
    overrides: dict[str, Any],
    env_runners: int,
    batch_size: int,
) -> Any:
    """RLlib's PPOConfig: the id's env, every agent on the one shared policy."""
    from ray.rllib.algorithms.ppo import PPOConfig

    from ganno_bench.baselines.rllib_env import LayerLRMultiAgentEnv

    return (
        PPOConfig()
        .environment(LayerLRMultiAgentEnv, env_config={"env_id": env_id, "overrides": overrides})
        .multi_agent(
            policies={POLICY_ID}, policy_mapping_fn=lambda agent_id, *args, **kw: POLICY_ID
        )
        .env_runners(num_env_runners=env_runners, num_cpus_per_env_runner=1)
        .training(
            train_batch_size_per_learner=batch_size,
            minibatch_size=max(1, batch_size // 4),
            num_epochs=4,
        )
        .learners(num_learners=0)
        .debugging(seed=seed)
    )


def train_rllib_ppo(
    env_id: str,
    timesteps: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    env_runners: int = 1,
    batch_size: int = 512,
    address: str | None = None,
) -> Path:
    """Train until ``timesteps`` agent steps (layer decisions) are sampled; return the
    exported policy folder. A run folder with a checkpoint resumes from it."""
    _rllib()
    from ganno_bench.benchmark.ray_backend import connect

    overrides = dict(overrides or {})
    out = Path(out)
    run = {"env_id": env_id, "seed": seed, "overrides": overrides, "backend": "rllib"}
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    if run_file.exists() and json.loads(run_file.read_text()) != run:
        raise ValueError(f"{out} holds another RLlib run; choose another --out")
    run_file.write_text(json.dumps(run, indent=2))
    checkpoint, policy, progress = out / "checkpoint", out / "policy", out / "progress.json"
    resumable = (checkpoint / "rllib_checkpoint.json").exists()
    # a run checkpointed before progress.json existed counts again from its checkpoint
    counted = resumable and progress.exists()
    done = int(json.loads(progress.read_text())["timesteps"]) if counted else 0
    if done >= timesteps and (policy / "ganno_policy.json").exists():
        return policy  # a finished run: nothing to train, no Ray to start
    connect(address)
    algo = rllib_config(env_id, seed, overrides, env_runners, batch_size).build_algo()
    if resumable:
        algo.restore_from_path(str(checkpoint.resolve()))
    try:
        while done < timesteps:
            result = algo.train()
            done = int(result.get("num_agent_steps_sampled_lifetime", {}).get("__all__", 0)
                       or result.get("num_env_steps_sampled_lifetime", 0))  # fmt: skip
            algo.save_to_path(str(checkpoint.resolve()))
            write_atomically(progress, json.dumps({"timesteps": done}))
        algo.get_module(POLICY_ID).save_to_path(str(policy.resolve()))
        (policy / "ganno_policy.json").write_text(json.dumps({**run, "policy": POLICY_ID}))
    finally:
        algo.stop()
    return policy


class RLlibPolicyAgent:
    """Every layer driven by an exported RLlib module (factor mode, its most likely action).
    Pickling keeps the path; evaluation workers load the module themselves."""

    action_mode = "factor"

    def __init__(self, path: str | os.PathLike, name: str = "rllib-ppo") -> None:
        self.path = Path(path)
        self.name = name
        if not (self.path / "ganno_policy.json").exists():
            raise FileNotFoundError(f"{self.path} is not an exported RLlib policy folder")
        self._module = None

    def config(self) -> dict[str, Any]:
        return {"policy": str(self.path), "backend": "rllib", "deterministic": True}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_module": None}

    @property
    def module(self) -> Any:
        if self._module is None:
            _rllib()
            from ray.rllib.core.rl_module.rl_module import RLModule

            self._module = RLModule.from_checkpoint(str(self.path.resolve()))
        return self._module

    def reset(self, task: Any, instance: Any, agents: Any, seed: int) -> None:
        self._agents = list(agents)

    def act(self, observations: dict[str, Any], infos: dict[str, Any]) -> dict[str, int]:
        import torch

        live = [a for a in self._agents if a in observations]
        batch = torch.as_tensor(np.stack([observations[a] for a in live]).astype(np.float32))
        with torch.no_grad():
            logits = self.module.forward_inference({"obs": batch})["action_dist_inputs"]
        actions = torch.argmax(logits, dim=-1).tolist()
        return {agent: int(action) for agent, action in zip(live, actions, strict=True)}
