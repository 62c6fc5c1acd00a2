"""Every registered id passes the PettingZoo, Gymnasium and SB3 checkers."""

from __future__ import annotations

import gymnasium
import numpy as np
import pettingzoo
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from pettingzoo.test import parallel_api_test, parallel_seed_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import ganno_bench
from ganno_bench.envs import CentralisedLayerLREnv, LayerLREnv

from .conftest import SUITE_IDS, TINY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_suite_has_mlp_and_cnn_at_three_difficulties_with_both_optimisers():
    assert len(SUITE_IDS) >= 12
    for family in ("MLP", "CNN"):
        for level in ("Easy", "Medium", "Hard"):
            assert f"ganno/LayerLR-{family}-{level}-v0" in SUITE_IDS
            assert f"ganno/LayerLR-{family}-{level}-Adam-v0" in SUITE_IDS
    assert ganno_bench.registration_errors() == {}


@pytest.mark.parametrize("env_id", SUITE_IDS)
def test_parallel_api_and_seed_tests(env_id):
    parallel_api_test(ganno_bench.make(env_id, **TINY), num_cycles=20)
    parallel_seed_test(lambda: ganno_bench.make(env_id, **TINY), num_cycles=8)


@pytest.mark.parametrize("env_id", SUITE_IDS)
@pytest.mark.parametrize("action_mode", ["factor", "log_lr"])
def test_single_agent_view_passes_gymnasium_and_sb3_checkers(env_id, action_mode):
    env = gymnasium.make(env_id, action_mode=action_mode, **TINY)
    assert isinstance(env.unwrapped, CentralisedLayerLREnv)
    gymnasium_check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(gymnasium.make(env_id, action_mode=action_mode, **TINY).unwrapped)


def test_pettingzoo_make_gives_the_same_env_as_ganno_bench_make():
    env_id = "ganno/LayerLR-CNN-Medium-v0"
    via_pz = pettingzoo.make("parallel", env_id, split="test", **TINY)
    via_us = ganno_bench.make(env_id, split="test", **TINY)
    assert isinstance(via_pz, LayerLREnv)
    assert via_pz.possible_agents == via_us.possible_agents
    a, _ = via_pz.reset(seed=3)
    b, _ = via_us.reset(seed=3)
    for agent in a:
        np.testing.assert_array_equal(a[agent], b[agent])


def test_centralised_view_mirrors_the_parallel_env():
    env_id = "ganno/LayerLR-MLP-Medium-v0"
    central = gymnasium.make(env_id, **TINY).unwrapped
    parallel = ganno_bench.make(env_id, **TINY)
    obs_c, info_c = central.reset(seed=5)
    obs_p, _ = parallel.reset(seed=5)
    layers = parallel.possible_agents
    np.testing.assert_array_equal(obs_c, np.concatenate([obs_p[a] for a in layers]))
    assert central.action_space == gymnasium.spaces.MultiDiscrete([5] * len(layers))
    action = np.array([0, 4, 1, 3, 2])
    obs_c, reward_c, _term_c, _trunc_c, info_c = central.step(action)
    obs_p, rewards_p, *_ = parallel.step({a: int(action[i]) for i, a in enumerate(layers)})
    np.testing.assert_array_equal(obs_c, np.concatenate([obs_p[a] for a in layers]))
    assert reward_c == rewards_p[layers[0]]
    assert info_c["lrs"] == pytest.approx(
        [parallel.instance.learning_rate * f for f in (0.5, 2.0, 0.8, 1.25, 1.0)]
    )


def test_spaces_are_shared_so_one_policy_drives_any_depth():
    shallow = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", **TINY)
    deep = ganno_bench.make("ganno/LayerLR-CNN-Hard-v0", **TINY)
    assert len(deep.possible_agents) > len(shallow.possible_agents)
    spaces = [shallow.observation_space(a) for a in shallow.possible_agents]
    spaces += [deep.observation_space(a) for a in deep.possible_agents]
    assert all(s == spaces[0] for s in spaces)
    assert shallow.action_space("layer_0") == deep.action_space("layer_6")


def test_infos_carry_the_observation_by_name():
    env = ganno_bench.make("ganno/LayerLR-CNN-Easy-v0", **TINY)
    obs, infos = env.reset(seed=0)
    obs, _, _, _, infos = env.step(dict.fromkeys(env.agents, 2))
    for agent, vector in obs.items():
        named = [infos[agent][name] for name in env.feature_names]
        np.testing.assert_array_equal(vector, np.array(named, dtype=np.float32))
        assert infos[agent]["lr"] == pytest.approx(10 ** infos[agent]["log10_lr"], rel=1e-5)
    kinds = [infos[a]["layer_kind"] for a in env.agents]
    assert kinds == [1.0, 1.0, 0.0]  # conv, conv, linear
