"""Agents by name: shipped baselines (``baselines/``), saved policies, ``module:attribute``."""

from __future__ import annotations

import difflib
import importlib
import importlib.resources
from collections.abc import Callable
from functools import cache
from pathlib import Path

from ganno_bench.agents import Agent, FunctionAgent, OuterLoopAgent, halve_on_plateau
from ganno_bench.scripted import load_baselines


class UnknownAgentError(LookupError):
    """An agent name that is neither shipped nor an importable ``module:attribute``."""


def baselines_dir() -> Path:
    """Folder of the baseline configs (package data when installed, ``baselines/`` here)."""
    try:
        return Path(str(importlib.resources.files("ganno_bench.baseline_files")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "baselines"


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
    return factories


def _policy_agent(path: Path) -> Agent:
    from ganno_bench.policy_agent import PolicyAgent

    return PolicyAgent.from_path(path)


def load_agent(spec: str) -> Agent:
    """A shipped agent by name, a saved policy (``PATH.zip``, see :class:`PolicyAgent`), or
    ``module:attribute`` (an Agent or a factory of one)."""
    agents = builtin_agents()
    if spec in agents:
        return agents[spec]()
    if spec.endswith(".zip"):
        return _policy_agent(Path(spec))
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
