"""Several saved feed-forward policies as one agent: each layer takes the factor with the
highest action probability averaged over the members.

Why: the generalisation study's policies reach the same training return from every seed
but disagree on networks they never saw (one seed's MLP-Hard IQM is below the default rate,
another's above the per-instance oracle). Averaging the members' action distributions is
the plain way to spend the seeds on lower variance instead of picking one. An ensemble is
a TOML file (``baselines/ppo/NAME.toml``)::

    [ensemble]
    members = ["ppo-a-mlp-easy-seed0.zip", "ppo-a-mlp-easy-seed1.zip"]  # beside the TOML

Every member must be a feed-forward (not recurrent) policy, and all must read the same
observations and choose among the same factors, on the same track (checked when the
ensemble is made); each member's ``reset`` then checks the id it plays. Deterministic: the
argmax of the mean probability, ties to the smaller factor index. It plays a frozen
instance the same way under every seed, so evaluate it with one seed (``--seeds 0``).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganno_bench.agents.protocol import Actions, Infos, Observations
from ganno_bench.baselines.policy import (
    PolicyAgent,
    _agent_order,
    live_batch,
    per_episode,
    policy_track,
    portable_path,
)
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

__all__ = ["PolicyEnsemble", "is_ensemble_file", "load_ensemble"]


def is_ensemble_file(path: str | Path) -> bool:
    """Whether ``path`` names a TOML file with an ``[ensemble]`` table."""
    path = Path(path)
    if path.suffix != ".toml" or not path.is_file():
        return False
    with path.open("rb") as f:
        return "ensemble" in tomllib.load(f)


def load_ensemble(path: str | Path, name: str | None = None) -> PolicyEnsemble:
    """The ensemble a TOML file describes; members are paths relative to the file."""
    path = Path(path)
    with path.open("rb") as f:
        table = tomllib.load(f).get("ensemble")
    if not isinstance(table, dict):
        raise ValueError(f"{path} has no [ensemble] table: add one with members = [...]")
    unknown = set(table) - {"members"}
    if unknown:
        raise ValueError(f"{path}: unknown [ensemble] keys {sorted(unknown)}; known: members")
    members = table.get("members")
    if (
        not isinstance(members, list)
        or len(members) < 2
        or not all(isinstance(m, str) for m in members)
    ):
        raise ValueError(
            f"{path}: [ensemble] members must be a list of at least two policy files "
            f"(.zip, relative to the TOML), got {members!r}"
        )
    agents = [PolicyAgent.from_path(path.parent / m) for m in members]
    return PolicyEnsemble(agents, name=name or path.stem, path=path)


class PolicyEnsemble:
    """Drive every layer with the members' mean action distribution (factor mode)."""

    action_mode = "factor"

    def __init__(
        self, members: Sequence[PolicyAgent], name: str = "ensemble", path: Path | None = None
    ):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two member policies")
        for member in members:
            if member.recurrent:
                raise ValueError(
                    f"{member.path or 'a member'} is a recurrent policy: an ensemble averages "
                    "feed-forward policies only (it would need a hidden state per member and "
                    "layer); list feed-forward (PPO) policies"
                )
        kinds = {_kind(m): m for m in members}
        if len(kinds) > 1:
            described = "; ".join(
                f"{m.path or 'a member'}: {k[0]} track, {k[1]} features, {k[2]} actions"
                for k, m in kinds.items()
            )
            raise ValueError(
                "an ensemble's members must read the same observations and choose among the "
                f"same factors, on one track; these differ ({described}): list policies "
                "trained on ids of one track and factor set"
            )
        self.members = list(members)
        self.name = name
        self.path = path

    def config(self) -> dict[str, Any]:
        members = [m.config() for m in self.members]
        digest = hashlib.sha256(
            "".join(str(m["checkpoint_sha256"]) for m in members).encode()
        ).hexdigest()
        return {
            "algorithm": "ensemble",
            "combine": "mean action probability, argmax",
            "ensemble": portable_path(self.path) if self.path is not None else None,
            "members": members,
            "checkpoint_sha256": digest,  # what played: the members' files, in order
            "deterministic": True,
        }

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        for member in self.members:
            member.reset(task, instance, agents, seed)  # checks track, factors, shape
        self._agents = sorted(agents, key=_agent_order)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """The members' mean action probabilities, one row per observation."""
        total = None
        with torch.no_grad():
            for member in self.members:
                policy = member.model.policy
                policy.set_training_mode(False)  # as SB3's predict does
                tensor, _ = policy.obs_to_tensor(batch)
                probs = policy.get_distribution(tensor).distribution.probs.cpu().numpy()
                total = probs if total is None else total + probs
        return total / len(self.members)

    @staticmethod
    def act_together(
        players: Sequence[PolicyEnsemble], observations: Sequence[Observations]
    ) -> list[Actions]:
        """One forward pass per member for several episodes' decisions (batched
        evaluation); ``players`` are copies of one ensemble."""
        lives, batch = live_batch(players, observations)
        return per_episode(lives, players[0].probabilities(batch).argmax(axis=1))

    def act(self, observations: Observations, infos: Infos) -> Actions:
        return self.act_together([self], [observations])[0]


def _kind(member: PolicyAgent) -> tuple[str | None, Any, Any]:
    """What a member reads and chooses: (track, observation shape, number of actions)."""
    model = member.model
    return (
        policy_track(model)[0],
        model.observation_space.shape,
        getattr(model.action_space, "n", model.action_space),
    )
