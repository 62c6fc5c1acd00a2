"""The agent protocol every benchmarked method implements, and its small adapters.

The baselines themselves live in :mod:`ganno_bench.baselines`.
"""

from ganno_bench.agents.protocol import (
    Actions,
    Agent,
    FunctionAgent,
    Infos,
    Observations,
    OuterLoopAgent,
    PrivilegedAgent,
    ScheduleAgent,
)

__all__ = [
    "Actions",
    "Agent",
    "FunctionAgent",
    "Infos",
    "Observations",
    "OuterLoopAgent",
    "PrivilegedAgent",
    "ScheduleAgent",
]
