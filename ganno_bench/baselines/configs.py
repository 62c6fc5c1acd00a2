"""Baseline agents from their TOML configs: one table per agent, named by its key.

The table's keys say which method builds the agent: ``scheduler`` (a global schedule),
``rule`` (a layerwise rule), ``batch_rule`` (the batch-size track), or ``method`` =
``"pbt"``, ``"pbt-tune"`` (the same on Ray Tune), ``"best-of"``, ``"family"`` (BOIL's
tuned schedule) or ``"arbiter"``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ganno_bench.baselines.arbiter import ArbiterAgent, ArbiterConfig
from ganno_bench.baselines.batch_rules import BatchRuleAgent
from ganno_bench.baselines.best_of import BestOfAgent, BestOfConfig
from ganno_bench.baselines.pbt import PBTAgent, PBTConfig
from ganno_bench.baselines.schedule_family import FamilyScheduleAgent
from ganno_bench.baselines.schedules import GlobalScheduleAgent, LayerwiseRuleAgent


def load_baselines(path: Path) -> dict[str, Any]:
    """Agents from a baselines TOML file: one table per agent, named by its key
    (schedules, layerwise rules, ``method = "pbt"``, ``method = "best-of"``, BOIL's
    ``method = "family"``, and the batch-size track's ``batch_rule`` and
    ``method = "arbiter"``)."""
    agents: dict[str, Any] = {}
    for name, table in tomllib.loads(path.read_text()).items():
        try:
            agents[name] = _agent_from_table(path, name, dict(table))
        except TypeError as exc:  # an unknown or missing setting of a config dataclass
            raise ValueError(f"{path}: baseline {name!r}: {exc}") from exc
    return agents


def _agent_from_table(path: Path, name: str, table: dict[str, Any]) -> Any:
    method = table.pop("method", None)
    if method is not None and "base_lr" in table:
        raise ValueError(
            f"{path}: baseline {name!r} (method {method!r}) takes no base_lr; a best-of "
            "method's base rate goes in its member table"
        )
    base_lr = table.pop("base_lr", None)
    table.pop("tuned_on", None)  # provenance, not a setting
    if method == "family":

        return FamilyScheduleAgent(name, per_id=dict(table["per_id"]))
    if method == "pbt":

        if "perturbation_factors" in table:
            table["perturbation_factors"] = tuple(table["perturbation_factors"])
        return PBTAgent(name, PBTConfig(**table))
    if method == "pbt-tune":  # the same options, run by Ray Tune's PopulationBasedTraining
        from ganno_bench.baselines.tune_pbt import TunePBTAgent

        if "perturbation_factors" in table:
            table["perturbation_factors"] = tuple(table["perturbation_factors"])
        return TunePBTAgent(name, PBTConfig(**table))
    if method == "best-of":

        member = table.pop("member", None)
        if not isinstance(member, dict):
            raise ValueError(
                f"{path}: best-of baseline {name!r} needs a [{name}.member] table "
                "(the schedule it grid-searches, with 'scheduler' or 'rule')"
            )
        template = _agent_from_table(path, f"{name}.member", dict(member))
        return BestOfAgent(name, template, BestOfConfig(**table))
    if method == "arbiter":

        return ArbiterAgent(name, ArbiterConfig(**table))
    if method is None and "scheduler" in table:
        return GlobalScheduleAgent(name, table.pop("scheduler"), table, base_lr)
    if method is None and "rule" in table:
        return LayerwiseRuleAgent(name, table.pop("rule"), table, base_lr)
    if method is None and "batch_rule" in table:  # the batch-size track's heuristics

        return BatchRuleAgent(name, table.pop("batch_rule"), table)
    got = f"method {method!r}" if method is not None else f"keys {sorted(table)}"
    raise ValueError(
        f"{path}: baseline {name!r} needs 'scheduler', 'rule', 'batch_rule' or a method "
        f'("pbt", "pbt-tune", "best-of", "family", "arbiter"); got {got}'
    )
