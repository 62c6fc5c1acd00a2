"""The parameter-shared path: SuperSuit vector env + SB3 PPO on an Easy id."""

from __future__ import annotations

import numpy as np
import pytest
import supersuit as ss
import torch
from stable_baselines3 import PPO

import ganno_bench


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_supersuit_vector_env_and_ppo_learn_without_error():
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", decisions=4, inner_steps=2)
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    venv = ss.concat_vec_envs_v1(venv, 2, num_cpus=0, base_class="stable_baselines3")
    assert venv.num_envs == 2 * len(env.possible_agents)  # one slot per layer per copy
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=48,
        n_epochs=2,
        learning_rate=1e-3,
        verbose=0,
        device="cpu",
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=300)
    assert model.num_timesteps >= 300
    changed = [
        not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True)
    ]
    assert any(changed)
    obs = venv.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (venv.num_envs,)
    assert np.all((actions >= 0) & (actions < 5))
    venv.close()
