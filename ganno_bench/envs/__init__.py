"""Environment classes: the PettingZoo parallel env and its single-agent view."""

from ganno_bench.envs.centralised import CentralisedLayerLREnv
from ganno_bench.envs.layer_lr import ACTION_MODES, LayerLREnv
from ganno_bench.envs.observation import FEATURE_NAMES, FEATURES

__all__ = ["ACTION_MODES", "FEATURES", "FEATURE_NAMES", "CentralisedLayerLREnv", "LayerLREnv"]
