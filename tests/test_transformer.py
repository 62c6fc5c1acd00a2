"""The transformer family: agents as parameter groups, causality, per-token scores,
determinism on every id, one shared policy across families, the batched engine's refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stable_baselines3 import PPO

import ganno_bench
from ganno_bench.envs.vector import make_vec_env
from ganno_bench.inner.models import ModelConfig, agent_layers, agent_names, build_network
from ganno_bench.inner.transformer import ParameterGroup

from .conftest import TINY, run_episode

TRANSFORMER_IDS = ganno_bench.list_envs("ganno/LayerLR-Transformer-*")
EASY = "ganno/LayerLR-Transformer-Easy-Adam-v0"
BUDGET = {"decisions": 4, "inner_steps": 2}


def _decoder(blocks: int = 2) -> torch.nn.Module:
    config = ModelConfig(kind="transformer", width=8, heads=2, blocks=blocks, mlp_ratio=2)
    return build_network(config, (6,), 5)


def test_the_family_has_three_difficulties():
    levels = ("Easy", "Hard", "Medium")
    assert sorted(f"ganno/LayerLR-Transformer-{level}-Adam-v0" for level in levels) == (
        TRANSFORMER_IDS
    )
    agents = [len(ganno_bench.make(i, **TINY).possible_agents) for i in TRANSFORMER_IDS]
    assert agents == [6, 14, 10]  # Easy, Hard, Medium: 2 + 4 x blocks


@pytest.mark.parametrize("blocks", [1, 3])
def test_every_parameter_has_exactly_one_agent_in_forward_order(blocks):
    network = _decoder(blocks)
    layers = agent_layers(network)
    owned = [id(p) for m in layers for p in m.parameters()]
    assert sorted(owned) == sorted(id(p) for p in network.parameters())  # each exactly once
    per_block = ["attention_in", "attention_out", "mlp_in", "mlp_out"]
    assert agent_names(network) == [
        "embedding",
        *[f"blocks.{b}.{name}" for b in range(blocks) for name in per_block],
        "head",
    ]
    norms = [m for m in layers if any(isinstance(c, torch.nn.LayerNorm) for c in m.modules())]
    assert [agent_names(network)[layers.index(m)] for m in norms][-1] == "head"
    assert len(norms) == 2 * blocks + 1  # each layer norm rides with the projection it feeds


def test_changing_a_later_token_never_changes_an_earlier_prediction():
    network = _decoder()
    tokens = torch.randint(5, (4, 6), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 5
    with torch.no_grad():
        a, b = network(tokens), network(changed)
    assert a.shape == (4, 5, 6)  # (batch, vocab, length): cross_entropy's layout
    torch.testing.assert_close(a[..., :3], b[..., :3], rtol=0, atol=0)
    assert not torch.allclose(a[..., 3:], b[..., 3:])


def test_each_agents_rate_moves_exactly_its_own_parameters():
    env = ganno_bench.make(EASY, split="test", **BUDGET)
    env.reset(options={"instance": 0})
    trainer = env.trainer
    groups = agent_layers(trainer.network)
    for frozen in range(len(groups)):
        before = [[p.detach().clone() for p in m.parameters()] for m in groups]
        rates = np.full(len(groups), 1e-2)
        rates[frozen] = 0.0
        trainer.set_learning_rates(rates)
        trainer.train(2)
        for k, module in enumerate(groups):
            same = [torch.equal(a, b) for a, b in zip(before[k], module.parameters(), strict=True)]
            assert all(same) if k == frozen else not any(same), (k, frozen)


def test_start_resets_layer_norms_and_biases_whatever_was_trained():
    env = ganno_bench.make(EASY, split="test", **BUDGET)
    trace_a = run_episode(env, lambda obs, infos: dict.fromkeys(obs, 4))  # doubling rates
    env.reset(options={"instance": 0})
    norms = [m for m in env.trainer.network.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in norms)
    assert all(torch.equal(n.bias, torch.zeros_like(n.bias)) for n in norms)
    assert len(trace_a["rewards"]) == BUDGET["decisions"]


def test_scores_are_per_token_loss_and_accuracy():
    env = ganno_bench.make(EASY, split="test", **BUDGET)
    env.reset(options={"instance": 1})
    x, y = env.trainer.data_part("val")
    with torch.no_grad():
        logits = env.trainer.network(x)
    want_loss = F.cross_entropy(logits.transpose(1, 2).reshape(-1, 16), y.reshape(-1))
    loss, accuracy = env.trainer.evaluate("val")
    assert loss == pytest.approx(float(want_loss), rel=1e-5)
    assert accuracy == pytest.approx(float((logits.argmax(1) == y).float().mean()), abs=1e-9)


def _trace(env_id, **kwargs):
    env = ganno_bench.make(env_id, split=kwargs.pop("split", "train"), **BUDGET)
    rng = np.random.default_rng(0)
    trace = run_episode(env, lambda obs, infos: {a: int(rng.integers(5)) for a in obs}, **kwargs)
    rows = [b"".join(o[a].tobytes() for a in sorted(o)) for o in trace["obs"]]
    return rows, trace["rewards"], env.trainer.final_weights(), env.instance


@pytest.mark.parametrize("env_id", TRANSFORMER_IDS)
def test_same_seed_same_episode_bitwise(env_id):
    a, b = _trace(env_id, seed=11), _trace(env_id, seed=11)
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2]) and a[3] == b[3]
    c = _trace(env_id, seed=12)
    assert c[3] != a[3] and not torch.equal(c[2], a[2])


def test_instance_replays_exactly_after_an_unrelated_episode():
    first = _trace(EASY, split="test-ood", options={"instance": 3})
    env = ganno_bench.make(EASY, split="test-ood", **BUDGET)
    run_episode(env, lambda obs, infos: dict.fromkeys(obs, 0), seed=99)
    rng = np.random.default_rng(0)
    trace = run_episode(
        env, lambda obs, infos: {a: int(rng.integers(5)) for a in obs}, options={"instance": 3}
    )
    assert [b"".join(o[a].tobytes() for a in sorted(o)) for o in trace["obs"]] == first[0]
    assert torch.equal(env.trainer.final_weights(), first[2])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_shared_ppo_policy_acts_on_mlp_cnn_and_transformer_ids():
    ids = ["ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0", EASY]
    copies = [2, 2, 1]  # 6 slots each (3, 3 and 6 agents): SB3's set_env keeps n_envs
    venvs = [
        make_vec_env(i, num_copies=n, seed=0, decisions=2, inner_steps=1)
        for i, n in zip(ids, copies, strict=True)
    ]
    model = PPO("MlpPolicy", venvs[0], n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
    policy = model.policy
    for venv in venvs:
        model.set_env(venv)  # SB3 refuses an env whose spaces differ from the policy's
        model.learn(total_timesteps=4 * venv.num_envs)
        assert model.policy is policy
        obs = venv.reset()
        actions, _ = model.predict(obs, deterministic=True)
        assert obs.shape == (venv.num_envs, 14) and actions.shape == (venv.num_envs,)
        venv.close()
    assert [len(ganno_bench.make(i, **TINY).possible_agents) for i in ids] == [3, 3, 6]


def test_the_batched_vector_env_trains_transformers_like_the_sequential_one():
    """One copy per slot of one engine, the sequential path's instances and numbers."""
    batched = make_vec_env(EASY, num_copies=2, seed=3, engine="batched", **TINY)
    sequential = make_vec_env(EASY, num_copies=2, seed=3, **TINY)
    assert type(batched).__name__ == "BatchedVecEnv" and batched.num_envs == 2 * 6
    actions = np.full(batched.num_envs, 2)  # factor 1: keep each rate
    first = [venv.reset() for venv in (batched, sequential)]
    np.testing.assert_allclose(first[0], first[1], rtol=1e-4, atol=1e-5)
    steps = [venv.step(actions) for venv in (batched, sequential)]
    np.testing.assert_allclose(steps[0][0], steps[1][0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(steps[0][1], steps[1][1], rtol=1e-3, atol=1e-5)
    for venv in (batched, sequential):
        venv.close()


def test_groups_report_kind_and_fan_in_to_the_observation():
    env = ganno_bench.make("ganno/LayerLR-Transformer-Medium-Adam-v0", **TINY)
    _, infos = env.reset(seed=0)
    kinds = [infos[a]["layer_kind"] for a in env.agents]
    assert kinds == [0.5, *([0.25, 0.0, 0.0, 0.0] * 2), 0.0]
    fan_ins = [round(10 ** infos[a]["log10_fan_in"]) for a in env.agents]
    assert fan_ins == [32, *([32, 32, 32, 128] * 2), 32]  # vocab, width, 4 x width
    layers = agent_layers(env.trainer.network)
    assert all(isinstance(m, ParameterGroup | torch.nn.Linear) for m in layers)


def test_a_transformer_on_image_data_is_refused_by_name():
    config = ModelConfig(kind="transformer", width=8, heads=2)
    with pytest.raises(ValueError, match="use a sequence source such as 'hmm'"):
        build_network(config, (1, 8, 8), 10)
    with pytest.raises(ValueError, match="multiple of heads"):
        ModelConfig(kind="transformer", width=10, heads=4)
