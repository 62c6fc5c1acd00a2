"""Environment classes: the PettingZoo parallel envs and their single-agent views."""

from ganno_bench.envs.batch_centralised import CentralisedBatchSizeEnv
from ganno_bench.envs.batch_observation import BATCH_FEATURE_NAMES, BATCH_FEATURES
from ganno_bench.envs.batch_size import BATCH_ACTION_MODES, CONTROLLER, BatchSizeEnv
from ganno_bench.envs.centralised import CentralisedLayerLREnv
from ganno_bench.envs.layer_lr import ACTION_MODES, LayerLREnv
from ganno_bench.envs.observation import FEATURE_NAMES, FEATURES

__all__ = [
    "ACTION_MODES",
    "BATCH_ACTION_MODES",
    "BATCH_FEATURES",
    "BATCH_FEATURE_NAMES",
    "CONTROLLER",
    "FEATURES",
    "FEATURE_NAMES",
    "BatchSizeEnv",
    "CentralisedBatchSizeEnv",
    "CentralisedLayerLREnv",
    "LayerLREnv",
]
