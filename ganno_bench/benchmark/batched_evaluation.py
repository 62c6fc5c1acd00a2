"""Batched evaluation: many episodes of one id played at once over one batched engine.

An agent that acts per decision from observations and infos (every scripted LR agent,
saved policies) gets one copy of itself per episode; an agent class with an
``act_together(players, observations)`` (a saved feed-forward policy) answers every live
episode's decision in one call, one forward pass. The episodes' inner training runs
as one :class:`~ganno_bench.envs.batched_episodes.BatchedEpisodes` computation. Each
episode's record is the one :func:`~ganno_bench.benchmark.evaluation.run_episode` makes
(same instance, same episode seed for the agent, same curves and rates), within the
batched engine's float32 tolerance of the sequential engine, which stays the definition
of the benchmark's numbers. Outer-loop agents (they run their own envs) and privileged
agents (they read one inner network) keep the sequential path: :func:`batched_unsupported`
says why.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ganno_bench.agents.protocol import Agent, OuterLoopAgent
from ganno_bench.benchmark.records import episode_record
from ganno_bench.envs.batched_episodes import BatchedEpisodes
from ganno_bench.envs.common import choose_instance, rates_from_actions
from ganno_bench.envs.registry import spec_with, track_of
from ganno_bench.inner.task import TaskSpec

__all__ = ["batched_unsupported", "play_batched"]


def batched_unsupported(agent: Any, env_id: str) -> str | None:
    """Why ``agent`` cannot be evaluated on ``env_id`` with the batched engine, or None."""
    if isinstance(agent, OuterLoopAgent):
        return f"{agent.name} is an outer-loop agent: it runs its own envs"
    if getattr(agent, "privileged", False):
        return f"{agent.name} is privileged: it reads one inner network"
    if track_of(env_id) != "layer-lr":
        return f"{env_id} is a batch-size id: the batched engine runs the LR track"
    return None


def play_batched(
    agent: Agent,
    env_id: str,
    split: str,
    jobs: Sequence[tuple[int, int, int]],
    overrides: dict[str, Any] | None = None,
    references: dict[str, Any] | None = None,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Play ``jobs`` (instance, run seed, episode seed) of ``env_id`` side by side; return
    their records in order (the card's ``episodes`` entries)."""
    start = time.perf_counter()
    task: TaskSpec = spec_with(env_id, overrides)
    episodes = BatchedEpisodes(task, len(jobs), device)
    names = [f"layer_{i}" for i in range(episodes.num_layers)]
    players = [copy.deepcopy(agent) for _ in jobs]
    instances = {
        c: choose_instance(task, split, np.random.default_rng(0), {"instance": k})
        for c, (k, _, _) in enumerate(jobs)
    }
    obs, infos = episodes.start(instances)
    for c, (_, _, episode_seed) in enumerate(jobs):
        players[c].reset(task, instances[c], list(names), episode_seed)
    curves = [{"val_loss": [], "train_loss": [], "val_accuracy": [], "reward": []} for _ in jobs]
    lrs: list[list[list[float]]] = [[] for _ in jobs]
    returns = [0.0] * len(jobs)
    finals: list[dict[str, Any]] = [{} for _ in jobs]
    together = getattr(type(agent), "act_together", None)
    while episodes.live.any():
        rates = episodes.rates.copy()
        live = np.flatnonzero(episodes.live)
        observed = [{a: obs[c, i] for i, a in enumerate(names)} for c in live]
        chosen = together([players[c] for c in live], observed) if together else None
        if chosen is None:
            chosen = [
                players[c].act(o, {a: infos[c][i] for i, a in enumerate(names)})
                for c, o in zip(live, observed, strict=True)
            ]
        for c, actions in zip(live, chosen, strict=True):
            rates[c] = rates_from_actions(task, agent.action_mode, rates[c], actions, names)
        stepped = episodes.live.copy()
        step = episodes.step(rates)
        for c in np.flatnonzero(stepped):
            first = step.infos[c][0]
            for key in ("val_loss", "train_loss", "val_accuracy"):
                curves[c][key].append(first[key])
            curves[c]["reward"].append(float(step.rewards[c]))
            returns[c] += float(step.rewards[c])
            lrs[c].append([info["lr"] for info in step.infos[c]])
            if step.done[c]:
                finals[c] = first
        obs, infos = step.observations, step.infos
    share = (time.perf_counter() - start) / len(jobs)  # each episode's part of the batch
    return [
        episode_record(
            env_id,
            split,
            k,
            seed,
            {"final": finals[c], "curves": curves[c], "lrs": lrs[c], "return": float(returns[c])},
            references,
            share,
        )
        for c, (k, seed, _) in enumerate(jobs)
    ]
