"""ganno-bench: a benchmark suite and environment registry for learned optimisation.

Importing the package registers the suite's ids with ganno-bench, PettingZoo and
Gymnasium::

    import ganno_bench
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", split="test")
"""

__version__ = "0.1.0"

from ganno_bench.agents import Agent, FunctionAgent, PrivilegedAgent, ScheduleAgent
from ganno_bench.batch_task import BatchSizeTaskSpec
from ganno_bench.envs import (
    BatchSizeEnv,
    CentralisedBatchSizeEnv,
    CentralisedLayerLREnv,
    LayerLREnv,
)
from ganno_bench.evaluation import evaluate
from ganno_bench.instances import Instance, InstanceSpace
from ganno_bench.models import ModelConfig
from ganno_bench.registry import UnknownEnvironmentError, list_envs, make, register, spec
from ganno_bench.suite import register_suite, registration_errors
from ganno_bench.task import DataConfig, TaskSpec

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
    "evaluate",
    "list_envs",
    "make",
    "register",
    "registration_errors",
    "spec",
]
