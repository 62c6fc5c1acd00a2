"""ganno-bench: a benchmark suite and environment registry for learned optimisation.

Importing the package registers the suite's ids with ganno-bench, PettingZoo and
Gymnasium::

    import ganno_bench
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", split="test")
"""

from ganno_bench.agents.protocol import Agent, FunctionAgent, PrivilegedAgent, ScheduleAgent
from ganno_bench.benchmark.evaluation import evaluate
from ganno_bench.benchmark.references import compute_references
from ganno_bench.envs import (
    BatchSizeEnv,
    CentralisedBatchSizeEnv,
    CentralisedLayerLREnv,
    LayerLREnv,
)
from ganno_bench.envs.registry import UnknownEnvironmentError, list_envs, make, register, spec
from ganno_bench.envs.suite import register_suite, registration_errors
from ganno_bench.inner.batch_task import BatchSizeTaskSpec
from ganno_bench.inner.instances import Instance, InstanceSpace
from ganno_bench.inner.models import ModelConfig
from ganno_bench.inner.task import DataConfig, TaskSpec
from ganno_bench.version import __version__

register_suite()

__all__ = [
    "Agent",
    "BatchSizeEnv",
    "BatchSizeTaskSpec",
    "CentralisedBatchSizeEnv",
    "CentralisedLayerLREnv",
    "DataConfig",
    "FunctionAgent",
    "Instance",
    "InstanceSpace",
    "LayerLREnv",
    "ModelConfig",
    "PrivilegedAgent",
    "ScheduleAgent",
    "TaskSpec",
    "UnknownEnvironmentError",
    "__version__",
    "compute_references",
    "evaluate",
    "list_envs",
    "make",
    "register",
    "registration_errors",
    "spec",
]
