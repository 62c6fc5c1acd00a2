"""The training mix of protocol (b): MLP and CNN copies in one parameter-shared vector env.

One rollout holds episodes of both families, one policy acts in every slot, and the mix is
the two ids' own vector envs side by side, each seeded with its own child of the seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from ganno_bench.envs.common import copy_seeds
from ganno_bench.envs.mixed_vector import ConcatVecEnv, make_mixed_vec_env
from ganno_bench.envs.vector import make_vec_env

MLP, CNN = "ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0"
TINY = {"decisions": 3, "inner_steps": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def play(venv, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out, rewards, dones = [venv.reset()], [], []
    for _ in range(steps):
        obs, reward, done, _ = venv.step(rng.integers(venv.action_space.n, size=venv.num_envs))
        out.append(obs)
        rewards.append(reward)
        dones.append(done)
    return np.stack(out), np.stack(rewards), np.stack(dones)


@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_the_mix_is_both_ids_side_by_side_each_with_its_own_seed(engine):
    mixed = make_mixed_vec_env([MLP, CNN], 2, seed=5, engine=engine, split="train", **TINY)
    mlp_seed, cnn_seed = copy_seeds(5, 2)
    alone = [
        make_vec_env(i, 2, seed=s, engine=engine, split="train", **TINY)
        for i, s in ((MLP, mlp_seed), (CNN, cnn_seed))
    ]
    assert mixed.num_envs == sum(v.num_envs for v in alone) == 2 * 3 + 2 * 3
    obs_mixed, rew_mixed, done_mixed = play(mixed, 2 * TINY["decisions"])
    # The same actions, split at the boundary, played on each id's own vector env.
    rng = np.random.default_rng(0)
    actions = [rng.integers(mixed.action_space.n, size=mixed.num_envs) for _ in range(6)]
    parts = []
    for venv, part in zip(alone, (slice(0, 6), slice(6, 12)), strict=True):
        obs = [venv.reset()]
        rew, done = [], []
        for a in actions:
            o, r, d, _ = venv.step(a[part])
            obs.append(o)
            rew.append(r)
            done.append(d)
        parts.append((np.stack(obs), np.stack(rew), np.stack(done)))
    np.testing.assert_array_equal(obs_mixed, np.concatenate([p[0] for p in parts], axis=1))
    np.testing.assert_array_equal(rew_mixed, np.concatenate([p[1] for p in parts], axis=1))
    np.testing.assert_array_equal(done_mixed, np.concatenate([p[2] for p in parts], axis=1))
    # Both families are in the rollout: the slots' tasks are the MLP's, then the CNN's.
    tasks = mixed.get_attr("task")
    assert [t.id for t in tasks] == [MLP] * 6 + [CNN] * 6
    assert {t.model.kind for t in tasks} == {"mlp", "cnn"}
    mixed.close()
    for venv in alone:
        venv.close()


def test_the_seed_reproduces_the_mix_and_another_seed_changes_both_parts():
    a = make_mixed_vec_env([MLP, CNN], 2, seed=3, engine="batched", split="train", **TINY)
    b = make_mixed_vec_env([MLP, CNN], 2, seed=3, engine="batched", split="train", **TINY)
    c = make_mixed_vec_env([MLP, CNN], 2, seed=4, engine="batched", split="train", **TINY)
    played = play(b, 4)[0]
    np.testing.assert_array_equal(play(a, 4)[0], played)
    a.reset()
    c.reset()
    first, other = a.get_attr("instance"), c.get_attr("instance")
    assert first[0] != other[0] and first[6] != other[6]  # each part draws anew
    assert first[0].init_seed != first[6].init_seed  # the parts do not share a stream
    a.seed(3)  # seed() applies to the next reset, as in SB3's vec envs
    np.testing.assert_array_equal(a.reset(), played[0])


def test_one_ppo_policy_learns_across_both_families():
    venv = make_mixed_vec_env([MLP, CNN], 1, seed=0, engine="batched", split="train", **TINY)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=24, n_epochs=1, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=2 * 8 * venv.num_envs)
    assert model.num_timesteps == 2 * 8 * venv.num_envs
    observations = model.rollout_buffer.observations.reshape(-1, venv.num_envs, 14)
    mlp_rows, cnn_rows = observations[:, :3], observations[:, 3:]
    assert np.isfinite(observations).all()
    assert not np.allclose(mlp_rows, cnn_rows)  # both families' layers were observed
    after = list(model.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    actions, _ = model.predict(venv.reset(), deterministic=True)
    assert actions.shape == (venv.num_envs,)  # one shared policy acts in every slot
    venv.close()


def test_mixes_that_cannot_share_a_policy_are_refused():
    with pytest.raises(ValueError, match="each id may appear once"):
        make_mixed_vec_env([MLP, MLP], 1, **TINY)
    lr = make_vec_env(MLP, 1, **TINY)
    other_actions = make_vec_env(MLP, 1, factors=(0.5, 1.0, 2.0), **TINY)
    with pytest.raises(ValueError, match=r"different action spaces.*one factor set"):
        ConcatVecEnv([lr, other_actions])
    with pytest.raises(ValueError, match="at least one vector env"):
        ConcatVecEnv([])
