"""The batched vector env: the SuperSuit path's contract over one batched engine.

Seeding (``seed()``, ``PPO(seed=...)``), per-copy auto-reset with a new instance,
``TimeLimit.truncated`` and ``terminal_observation``, divergence isolated to its copy,
numbers within float32 tolerance of the sequential path, and PPO learning through it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from ganno_bench.envs.vector import make_vec_env

ENV_ID = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 3, "inner_steps": 2}
# Float32 rounding differs (batched matmuls sum in another order); after a few short
# decisions the observations agree to this relative tolerance (measured max ~1e-5).
RTOL, ATOL = 1e-3, 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def batched(num_copies: int, seed: int | None = 0, **overrides):
    return make_vec_env(ENV_ID, num_copies, seed=seed, engine="batched", **{**TINY, **overrides})


def rollout(venv, steps: int, actions_rng: int = 0):
    rng = np.random.default_rng(actions_rng)
    out = [venv.reset()]
    rewards, dones, infos = [], [], []
    for _ in range(steps):
        actions = rng.integers(venv.action_space.n, size=venv.num_envs)
        obs, reward, done, info = venv.step(actions)
        out.append(obs)
        rewards.append(reward)
        dones.append(done)
        infos.append(info)
    return np.stack(out), np.stack(rewards), np.stack(dones), infos


def test_slots_spaces_and_the_seed_make_the_run_reproducible():
    a, b = batched(3, seed=7), batched(3, seed=7)
    assert a.num_envs == 3 * 3 and a.observation_space.shape == (14,)
    assert a.action_space.n == 5
    obs_a, rew_a, _, _ = rollout(a, 5)
    obs_b, rew_b, _, _ = rollout(b, 5)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    c = batched(3, seed=8)
    assert not np.array_equal(rollout(c, 1)[0][0], obs_a[0])
    a.seed(7)  # seed() applies to the next reset, as in SB3's vec envs
    np.testing.assert_array_equal(a.reset(), obs_a[0])


def test_copies_draw_the_instances_the_sequential_path_draws_and_match_its_numbers():
    seq = make_vec_env(ENV_ID, 3, seed=11, **TINY)
    bat = batched(3, seed=11)
    seq.reset()
    bat.reset()
    assert bat.get_attr("instance") == seq.get_attr("instance")
    assert len({i.init_seed for i in bat.get_attr("instance")[::3]}) == 3  # distinct copies
    obs_s, rew_s, done_s, _ = rollout(seq, 2 * TINY["decisions"])
    obs_b, rew_b, done_b, _ = rollout(bat, 2 * TINY["decisions"])
    np.testing.assert_array_equal(done_s, done_b)
    np.testing.assert_allclose(obs_b, obs_s, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(rew_b, rew_s, rtol=RTOL, atol=ATOL)
    seq.close()


def test_time_limits_truncate_with_terminal_observations_and_a_new_instance():
    venv = batched(2, seed=0)
    venv.reset()
    first = venv.get_attr("instance")
    for step in range(TINY["decisions"]):
        obs, _, dones, infos = venv.step(np.full(venv.num_envs, 2))
        last = step == TINY["decisions"] - 1
        assert dones.dtype == bool and (dones == last).all()
        assert all(info["TimeLimit.truncated"] is last for info in infos)
    assert all(info["terminal_observation"].shape == (14,) for info in infos)
    assert all(info["decision"] == TINY["decisions"] for info in infos)  # the ending episode's
    assert all(np.isfinite(info["final_test_loss"]) for info in infos)
    assert not np.array_equal(infos[0]["terminal_observation"], obs[0])  # obs: the new episode
    assert venv.get_attr("instance") != first
    assert obs[0][-1] == 0.0  # progress of the new episode


def test_a_diverging_copy_ends_alone_and_the_others_go_on_unchanged():
    wild = {"lr_bounds": (1e-4, 1e3), "decisions": 12}
    venv = batched(2, seed=3, **wild)
    alone = batched(2, seed=3, **wild)
    venv.reset()
    alone.reset()
    per_copy = venv.agents_per_copy
    diverged_at = None
    for step in range(12):
        actions = np.array([4] * per_copy + [2] * per_copy)  # copy 0 doubles, copy 1 keeps
        obs, _, dones, infos = venv.step(actions)
        calm_obs, *_ = alone.step(np.array([2] * per_copy + [2] * per_copy))
        # copy 1 sees exactly what it sees when copy 0 is calm too
        np.testing.assert_array_equal(obs[per_copy:], calm_obs[per_copy:])
        assert np.isfinite(obs).all()
        if dones[0]:
            diverged_at = step
            assert dones[:per_copy].all() and not dones[per_copy:].any()
            assert all(info["diverged"] for info in infos[:per_copy])
            assert all(info["TimeLimit.truncated"] is False for info in infos[:per_copy])
            assert "terminal_observation" in infos[0]
            break
    assert diverged_at is not None, "doubling the rate every decision never diverged"


def test_bad_actions_and_options_are_refused_clearly():
    venv = batched(1)
    venv.reset()
    with pytest.raises(ValueError, match="integer indices"):
        venv.step(np.zeros(venv.num_envs) + 0.5)
    with pytest.raises(ValueError, match=r"0\.\.4"):
        venv.step(np.full(venv.num_envs, 9))
    with pytest.raises(ValueError, match="batch-size"):
        make_vec_env("ganno/BatchSize-MLP-Easy-v0", 1, engine="batched")
    with pytest.raises(ValueError, match="num_cpus"):
        make_vec_env(ENV_ID, 2, engine="batched", num_cpus=2)
    with pytest.raises(ValueError, match="unknown engine"):
        make_vec_env(ENV_ID, 2, engine="fast")


def test_ppo_seeds_and_learns_through_the_batched_env():
    def train(seed: int) -> list[np.ndarray]:
        venv = batched(4, seed=None, decisions=5, inner_steps=4)
        model = PPO("MlpPolicy", venv, n_steps=10, batch_size=60, n_epochs=2, seed=seed)
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(total_timesteps=3 * 10 * venv.num_envs)  # three rollouts, 360 timesteps
        assert model.num_timesteps == 360
        after = [p.detach().clone() for p in model.policy.parameters()]
        assert any(not torch.equal(x, y) for x, y in zip(before, after, strict=True))
        return after

    first, again, other = train(0), train(0), train(1)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))  # PPO(seed=...)
    assert any(not torch.equal(x, y) for x, y in zip(first, other, strict=True))


def test_one_cnn_copy_on_the_cpu_runs_the_sequential_engine():
    """Nothing is batched at one CNN copy (its convolutions run one slot at a time either
    way), so the batched engine falls back to the sequential one, which it never loses to."""
    from ganno_bench.envs.batched_vector import BatchedVecEnv

    cnn = "ganno/LayerLR-CNN-Easy-v0"
    one = make_vec_env(cnn, 1, seed=3, engine="batched", **TINY)
    assert not isinstance(one, BatchedVecEnv)
    reference = make_vec_env(cnn, 1, seed=3, **TINY)
    np.testing.assert_array_equal(rollout(one, 4)[0], rollout(reference, 4)[0])
    assert isinstance(make_vec_env(cnn, 2, engine="batched", **TINY), BatchedVecEnv)
    assert isinstance(batched(1), BatchedVecEnv)  # an MLP gains even at one copy
