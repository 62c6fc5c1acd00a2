"""Agents by name: shipped baselines (``baselines/``), saved policies, ``module:attribute``."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

from ganno_bench.agents.protocol import Agent, FunctionAgent, OuterLoopAgent
from ganno_bench.baselines.configs import load_baselines
from ganno_bench.baselines.files import baselines_dir
from ganno_bench.baselines.policy import PolicyAgent
from ganno_bench.baselines.policy_ensemble import is_ensemble_file, load_ensemble
from ganno_bench.baselines.schedules import halve_on_plateau


class UnknownAgentError(LookupError):
    """An agent name that is neither shipped nor an importable ``module:attribute``."""


@cache
def builtin_agents() -> dict[str, Callable[[], Agent]]:
    """Every shipped agent's factory, by name (a fresh agent per call)."""
    factories: dict[str, Callable[[], Agent]] = {
        "halve-on-plateau": lambda: FunctionAgent(halve_on_plateau, "halve-on-plateau"),
    }
    for path in sorted(baselines_dir().glob("*.toml")):
        for name in load_baselines(path):
            factories[name] = lambda path=path, name=name: load_baselines(path)[name]
    for path in sorted((baselines_dir() / "ppo").glob("*.zip")):
        factories[path.stem] = lambda path=path: _policy_agent(path)
    for path in sorted((baselines_dir() / "ppo").glob("*.toml")):
        if is_ensemble_file(path):
            factories[path.stem] = lambda path=path: load_ensemble(path)
    return factories


def _policy_agent(path: Path) -> Agent:
    return PolicyAgent.from_path(path)


def load_agent(spec: str) -> Agent:
    """A shipped agent by name, a saved policy (``PATH.zip``, see :class:`PolicyAgent`; or
    an RLlib run's ``RUN/policy`` folder), an ensemble of saved policies (``PATH.toml``
    with an ``[ensemble]`` table, see :class:`PolicyEnsemble`), or
    ``module:attribute`` (an Agent or a factory of one)."""
    agents = builtin_agents()
    if spec in agents:
        return agents[spec]()
    if spec.endswith(".zip"):
        return _policy_agent(Path(spec))
    if spec.endswith(".toml"):  # an ensemble; anything else there is refused clearly
        if not Path(spec).is_file():
            raise FileNotFoundError(f"no ensemble file {spec}: give the path of a TOML file")
        return load_ensemble(spec)
    if (Path(spec) / "ganno_policy.json").exists():  # a policy exported by RLlib training
        from ganno_bench.baselines.rllib_ppo import RLlibPolicyAgent

        return RLlibPolicyAgent(spec)
    if ":" not in spec:
        close = difflib.get_close_matches(spec, agents, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownAgentError(
            f"unknown agent {spec!r}.{hint} Built-in agents: {sorted(agents)}; "
            "or give your own as 'module:attribute'."
        )
    module_name, _, attribute = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UnknownAgentError(f"cannot load agent {spec!r}: {exc}") from exc
    agent = target if isinstance(target, Agent | OuterLoopAgent) else target()
    if not isinstance(agent, Agent | OuterLoopAgent):
        raise UnknownAgentError(
            f"{spec!r} is not an agent: it needs name, action_mode, config(), "
            "reset(task, instance, agents, seed) and act(observations, infos)"
        )
    return agent
