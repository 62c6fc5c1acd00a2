"""The vector env: the SuperSuit parameter-shared SB3 path with seeding and truncation fixed.

Each test also checks, where it is cheap, that the plain SuperSuit path has the problem.
"""

from __future__ import annotations

import numpy as np
import pytest
import supersuit as ss
import torch
from stable_baselines3 import PPO

import ganno_bench
from ganno_bench.envs.vector import copy_seeds, make_vec_env

ENV_ID = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 3, "inner_steps": 2}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def plain_vec_env(num_copies: int, num_cpus: int = 0, **kwargs):
    env = ganno_bench.make(ENV_ID, **{**TINY, **kwargs})
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    return ss.concat_vec_envs_v1(
        venv, num_copies, num_cpus=num_cpus, base_class="stable_baselines3"
    )


def per_copy(obs: np.ndarray, agents: int) -> list[np.ndarray]:
    return [obs[i : i + agents] for i in range(0, len(obs), agents)]


def assert_all_distinct(blocks: list[np.ndarray]) -> None:
    for i in range(len(blocks)):
        for j in range(i):
            assert not np.array_equal(blocks[i], blocks[j]), f"copies {j} and {i} are equal"


def ppo_run(seed: int, global_seed: int) -> tuple[PPO, np.ndarray]:
    torch.manual_seed(global_seed)  # the user's global RNG must not matter
    venv = make_vec_env(ENV_ID, 2, **TINY)
    model = PPO("MlpPolicy", venv, seed=seed, n_steps=3, batch_size=18, n_epochs=2, device="cpu")
    model.learn(total_timesteps=2 * 3 * venv.num_envs)  # two rollouts, a few dozen steps
    observations = model.rollout_buffer.observations.copy()
    venv.close()
    return model, observations


def test_copy_seeds_follow_seed_sequence_spawn():
    seeds = copy_seeds(7, 4)
    children = np.random.SeedSequence(7).spawn(4)
    assert seeds == [int(c.generate_state(1, dtype=np.uint64)[0]) for c in children]
    assert len(set(seeds)) == 4
    assert copy_seeds(None, 3) != copy_seeds(None, 3)  # fresh entropy


def test_ppo_seed_constructs_learns_and_is_reproducible():
    plain = plain_vec_env(1)
    with pytest.raises(AttributeError):  # the library bug: SB3's seed() reaches a gym venv
        PPO("MlpPolicy", plain, seed=3, device="cpu")
    plain.close()

    model_a, obs_a = ppo_run(3, global_seed=0)
    model_b, obs_b = ppo_run(3, global_seed=99)
    assert model_a.num_timesteps == model_b.num_timesteps >= 36
    np.testing.assert_array_equal(obs_a, obs_b)
    for a, b in zip(model_a.policy.parameters(), model_b.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_seed_makes_the_next_reset_deterministic():
    with pytest.raises(AttributeError):
        plain_vec_env(1).seed(0)

    venv = make_vec_env(ENV_ID, 2, seed=5, **TINY)
    first = venv.reset()
    seeds = venv.seed(5)
    assert len(seeds) == venv.num_envs
    np.testing.assert_array_equal(venv.reset(), first)
    venv.seed(5)
    np.testing.assert_array_equal(venv.reset(), first)
    venv.seed(6)
    assert not np.array_equal(venv.reset(), first)
    venv.close()


def test_unseeded_copies_start_from_distinct_instances_in_process():
    plain = plain_vec_env(3)
    agents = plain.num_envs // 3
    blocks = per_copy(plain.reset(), agents)
    assert all(np.array_equal(b, blocks[0]) for b in blocks)  # the library bug: clones
    plain.close()

    venv = make_vec_env(ENV_ID, 3, **TINY)
    assert venv.num_envs == 3 * agents
    assert_all_distinct(per_copy(venv.reset(), agents))
    instances = venv.get_attr("instance", list(range(0, venv.num_envs, agents)))
    assert len({repr(i) for i in instances}) == 3
    venv.close()


def test_copies_in_worker_processes_get_distinct_seeds():
    plain = plain_vec_env(4, num_cpus=2)
    agents = plain.num_envs // 4
    obs, _ = plain.venv.reset(seed=0)  # worker p's copy j gets seed + p + j
    blocks = per_copy(obs, agents)
    np.testing.assert_array_equal(blocks[1], blocks[2])  # the library bug: a collision
    plain.close()

    venv = make_vec_env(ENV_ID, 4, num_cpus=2, seed=0, **TINY)
    first = venv.reset()
    assert_all_distinct(per_copy(first, agents))
    venv.seed(0)
    np.testing.assert_array_equal(venv.reset(), first)
    venv.seed(None)  # entropy-derived seeds are distinct too
    assert_all_distinct(per_copy(venv.reset(), agents))
    assert len(venv.reset_infos) == venv.num_envs and all("lr" in i for i in venv.reset_infos)
    venv.close()


def test_time_limit_is_reported_as_truncation():
    plain = plain_vec_env(1)
    plain.reset()
    for _ in range(TINY["decisions"]):
        *_, dones, infos = plain.step(np.zeros(plain.num_envs, dtype=np.int64))
    assert dones.all() and not any("TimeLimit.truncated" in info for info in infos)  # the bug
    plain.close()

    venv = make_vec_env(ENV_ID, 2, seed=0, **TINY)
    venv.reset()
    for step in range(TINY["decisions"]):
        _, _, dones, infos = venv.step(np.zeros(venv.num_envs, dtype=np.int64))
        last = step == TINY["decisions"] - 1
        assert dones.dtype == bool and (dones == last).all()
        assert all(info["TimeLimit.truncated"] is last for info in infos)
    assert all(info["terminal_observation"].shape == (14,) for info in infos)
    venv.close()


def test_divergence_is_termination_not_truncation():
    diverging = {"action_mode": "log_lr", "decisions": 3, "inner_steps": 5}
    plain = plain_vec_env(1, **diverging)
    plain.reset()
    *_, dones, infos = plain.step(np.ones((plain.num_envs, 1), dtype=np.float32))
    assert dones.all() and not any(info["diverged"] for info in infos)  # reset infos win
    plain.close()

    venv = make_vec_env(ENV_ID, 1, seed=0, **diverging)
    venv.reset()
    _, _, dones, infos = venv.step(np.ones((venv.num_envs, 1), dtype=np.float32))
    assert dones.all()
    assert all(info["diverged"] and info["decision"] == 1 for info in infos)  # final infos
    assert all(info["TimeLimit.truncated"] is False for info in infos)
    assert all("terminal_observation" in info for info in infos)
    venv.close()


def test_ppo_bootstraps_the_value_at_time_limits(monkeypatch):
    def count_value_calls(venv) -> int:
        model = PPO("MlpPolicy", venv, n_steps=TINY["decisions"], batch_size=9, device="cpu")
        calls = []
        original = model.policy.predict_values

        def spy(obs):
            calls.append(obs.shape[0])
            return original(obs)

        monkeypatch.setattr(model.policy, "predict_values", spy)
        model.learn(total_timesteps=TINY["decisions"] * venv.num_envs)
        venv.close()
        return len(calls)

    # One rollout ends every episode at its time limit: the fixed env adds one value call per
    # slot (the terminal observation's value) to the rollout's final bootstrap call.
    plain = plain_vec_env(1)
    assert count_value_calls(plain) == 1
    venv = make_vec_env(ENV_ID, 1, seed=0, **TINY)
    assert count_value_calls(venv) == 1 + venv.num_envs
