"""The agent protocol: what any learning-rate controller implements to be benchmarked.

An agent is reset once per episode with the task and the instance, then asked for one
action per live layer at every decision. It declares the action mode it needs, so the
evaluator builds the env to match. Adapters turn a plain function or a fixed per-layer
schedule into an agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

Observations = dict[str, np.ndarray]
Infos = dict[str, dict[str, Any]]
Actions = dict[str, Any]


@runtime_checkable
class Agent(Protocol):
    """A controller of per-layer learning rates.

    ``name``: how result cards and leaderboards call it. ``action_mode``: ``"factor"``
    (an index into the task's factors) or ``"log_lr"`` (an absolute log10 rate).
    ``config()``: the settings that reproduce it (recorded in result cards).
    ``reset(task, instance, agents, seed)``: a new episode; ``seed`` seeds any randomness.
    ``act(observations, infos)``: one action per agent in ``observations``.
    """

    name: str
    action_mode: str

    def config(self) -> dict[str, Any]: ...

    def reset(
        self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int
    ) -> None: ...

    def act(self, observations: Observations, infos: Infos) -> Actions: ...


@runtime_checkable
class OuterLoopAgent(Protocol):
    """An agent that runs its own envs for an episode (population or search methods).

    ``play(make_env, instance, seed)`` gets a factory of fresh envs (same id, split, action
    mode and overrides), the instance index and the episode seed, and returns a dict with
    ``final`` (the final infos of the run it reports), ``curves`` (``val_loss``,
    ``train_loss``, ``val_accuracy``, ``reward`` per decision), ``lrs`` (per decision, per
    layer) and ``return``. ``compute_multiple``: how many single runs' compute it spends.
    """

    name: str
    action_mode: str
    compute_multiple: float

    def config(self) -> dict[str, Any]: ...

    def play(self, make_env: Callable[[], Any], instance: int, seed: int) -> dict[str, Any]: ...


@runtime_checkable
class PrivilegedAgent(Protocol):
    """A per-decision agent with white-box access to the inner training run (e.g. Arbiter).

    Besides the :class:`Agent` members it declares ``privileged = True`` (the evaluator
    copies it into the result card, so leaderboards mark white-box agents) and has
    ``attach(view)``: after every ``reset`` and before the first ``act``, the evaluator
    passes it ``env.privileged_view()`` (a
    :class:`~ganno_bench.envs.privileged.PrivilegedView`: the live inner network and
    minibatches of its data). That is the only path to the inner run; envs without a
    privileged view refuse such agents.
    """

    name: str
    action_mode: str
    privileged: bool

    def config(self) -> dict[str, Any]: ...

    def reset(
        self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int
    ) -> None: ...

    def attach(self, view: Any) -> None: ...

    def act(self, observations: Observations, infos: Infos) -> Actions: ...


@dataclass
class FunctionAgent:
    """Adapter for a plain function ``policy(observations, infos, rng) -> actions``.

    ``rng`` is a NumPy generator seeded from the episode seed, so stochastic policies are
    reproducible.
    """

    policy: Callable[[Observations, Infos, np.random.Generator], Actions]
    name: str
    action_mode: str = "factor"
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {"function": _qualified_name(self.policy), **self.settings}

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, observations: Observations, infos: Infos) -> Actions:
        return self.policy(observations, infos, self._rng)


@dataclass
class ScheduleAgent:
    """Adapter for a fixed schedule: ``schedule(t, num_layers) -> log10 rate per layer``.

    ``t`` counts decisions from 0; the same schedule runs on networks of any depth.
    """

    schedule: Callable[[int, int], Sequence[float]]
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    action_mode: str = field(default="log_lr", init=False)

    def config(self) -> dict[str, Any]:
        return {"schedule": _qualified_name(self.schedule), **self.settings}

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        self._t = 0

    def act(self, observations: Observations, infos: Infos) -> Actions:
        agents = sorted(observations, key=_layer_index)
        rates = np.asarray(self.schedule(self._t, len(agents)), dtype=np.float64).reshape(-1)
        if rates.shape != (len(agents),):
            raise ValueError(
                f"schedule {self.name!r} gave {rates.shape[0]} rates for "
                f"{len(agents)} layers at decision {self._t}"
            )
        self._t += 1
        return {agent: rates[i : i + 1] for i, agent in enumerate(agents)}


def _layer_index(agent: str) -> int:
    return int(agent.rsplit("_", 1)[1])


def _qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
