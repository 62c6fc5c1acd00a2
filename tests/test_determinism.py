"""Same seed or instance: bitwise-identical episodes. Different seeds: different ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganno_bench

from .conftest import run_episode

BUDGET = {"decisions": 6, "inner_steps": 3}


def _random_policy(seed: int):
    rng = np.random.default_rng(seed)
    return lambda obs, infos: {a: int(rng.integers(5)) for a in obs}


def _episode(env_id: str, *, seed=None, options=None, split="train", policy_seed=0):
    env = ganno_bench.make(env_id, split=split, **BUDGET)
    trace = run_episode(env, _random_policy(policy_seed), seed=seed, options=options)
    return trace, env.trainer.final_weights(), env.instance


def _assert_identical(a, b):
    (trace_a, weights_a, instance_a), (trace_b, weights_b, instance_b) = a, b
    assert instance_a == instance_b
    assert len(trace_a["obs"]) == len(trace_b["obs"])
    for obs_a, obs_b in zip(trace_a["obs"], trace_b["obs"], strict=True):
        for agent in obs_a:
            assert obs_a[agent].tobytes() == obs_b[agent].tobytes()
    assert trace_a["rewards"] == trace_b["rewards"]
    assert torch.equal(weights_a, weights_b)


@pytest.mark.parametrize(
    "env_id", ["ganno/LayerLR-MLP-Medium-v0", "ganno/LayerLR-CNN-Easy-Adam-v0"]
)
def test_same_seed_same_episode_bitwise(env_id):
    _assert_identical(_episode(env_id, seed=11), _episode(env_id, seed=11))


def test_different_seeds_differ():
    (trace_a, w_a, inst_a) = _episode("ganno/LayerLR-MLP-Easy-v0", seed=1)
    (trace_b, w_b, inst_b) = _episode("ganno/LayerLR-MLP-Easy-v0", seed=2)
    assert inst_a != inst_b
    assert not torch.equal(w_a, w_b)
    assert trace_a["rewards"] != trace_b["rewards"]


@pytest.mark.parametrize("split", ["train", "test", "test-ood"])
def test_instance_option_replays_exactly_whatever_came_before(split):
    env_id = "ganno/LayerLR-CNN-Medium-v0"
    first = _episode(env_id, split=split, options={"instance": 4})
    env = ganno_bench.make(env_id, split=split, **BUDGET)
    run_episode(env, _random_policy(9), seed=123)  # an unrelated episode first
    trace = run_episode(env, _random_policy(0), options={"instance": 4})
    _assert_identical(first, (trace, env.trainer.final_weights(), env.instance))


def test_instance_option_names_the_frozen_instance():
    env = ganno_bench.make("ganno/LayerLR-MLP-Hard-v0", split="test-ood", **BUDGET)
    env.reset(options={"instance": 7})
    assert env.instance == env.task.frozen_instances("test-ood")[7]


def test_the_users_global_torch_rng_neither_matters_nor_is_touched():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = _episode("ganno/LayerLR-MLP-Easy-v0", seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)
    b = _episode("ganno/LayerLR-MLP-Easy-v0", seed=5)
    _assert_identical(a, b)


def test_seeded_reset_continues_one_stream_like_gymnasium():
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", **BUDGET)
    env.reset(seed=3)
    first = env.instance
    env.reset()
    second = env.instance
    env.reset(seed=3)
    assert env.instance == first
    env.reset()
    assert env.instance == second != first


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copies_of_an_env_behave_exactly_like_the_original(how):
    import copy
    import pickle

    env = ganno_bench.make("ganno/LayerLR-CNN-Easy-v0", **BUDGET)
    env.reset(seed=4)
    env.step({a: 4 for a in env.agents})  # mid-episode: momentum buffers, rates, data cursor
    twin = pickle.loads(pickle.dumps(env)) if how == "pickle" else copy.deepcopy(env)
    actions = {a: i % 5 for i, a in enumerate(env.possible_agents)}
    for _ in range(3):
        obs_a, rew_a, *_ = env.step(actions)
        obs_b, rew_b, *_ = twin.step(actions)
        for agent in obs_a:
            assert obs_a[agent].tobytes() == obs_b[agent].tobytes()
        assert rew_a == rew_b
    assert torch.equal(env.trainer.final_weights(), twin.trainer.final_weights())
    # the copy's statistics are live, not frozen at the floor of the log features
    assert obs_b["layer_0"][1] > -20
