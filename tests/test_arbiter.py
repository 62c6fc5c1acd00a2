"""Arbiter: its gradient reaches the agent network and the mixture, its batch sizes stay
in bounds, and its white-box access is explicit and recorded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ganno_bench
from ganno_bench.arbiter import ArbiterAgent, ArbiterConfig, batch_from_logit
from ganno_bench.evaluation import run_episode
from ganno_bench.zoo import load_agent

EASY = "ganno/BatchSize-MLP-Easy-v0"
TINY = {"decisions": 4, "samples_per_decision": 256}


def test_the_reparameterisation_maps_any_logit_into_the_bounds():
    assert batch_from_logit(-1e9, 8, 512) == 8
    assert batch_from_logit(1e9, 8, 512) == 512
    assert batch_from_logit(0.0, 8, 512) == math.floor(504 * 0.5 + 8) == 260
    values = [batch_from_logit(v, 8, 512) for v in np.linspace(-30, 30, 301)]
    assert values == sorted(values) and min(values) == 8 and max(values) <= 512


def _attached_agent(config: ArbiterConfig | None = None):
    env = ganno_bench.make(EASY, action_mode="absolute", **TINY)
    obs, infos = env.reset(seed=0)
    agent = ArbiterAgent("arbiter", config or ArbiterConfig())
    agent.reset(env.task, env.instance, env.possible_agents, seed=0)
    agent.attach(env.privileged_view())
    return env, agent, obs, infos


def test_meta_gradient_reaches_the_agent_network_and_the_mixture_weights():
    env, agent, obs, infos = _attached_agent()
    env.step(agent.act(obs, infos))  # proposes s, the env trains a decision at its batch
    inner_grads = [p.grad.clone() for p in env.trainer.network.parameters()]
    assert agent._pending_s is not None and agent._pending_s.requires_grad
    loss = agent.meta_loss(agent._pending_s)
    network = list(agent.proposer.parameters())
    grads = torch.autograd.grad(loss, [*network, agent.mixture, agent.injection])
    for grad in grads:
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # and the inner network's own gradients are left alone
    for before, p in zip(inner_grads, env.trainer.network.parameters(), strict=True):
        assert torch.equal(before, p.grad)


def test_each_decision_takes_one_meta_step_on_the_agent_parameters():
    env, agent, obs, infos = _attached_agent()
    obs, _, _, _, infos = env.step(agent.act(obs, infos))
    before = [p.detach().clone() for p in agent.proposer.parameters()] + [
        agent.mixture.detach().clone()
    ]
    env.step(agent.act(obs, infos))
    after = [*agent.proposer.parameters(), agent.mixture]
    assert all(not torch.equal(b, a.detach()) for b, a in zip(before, after, strict=True))
    assert agent.history[1]["meta_loss"] > 0 and agent.history[0]["meta_loss"] is None


@pytest.mark.parametrize("meta_lr", [0.01, 50.0])
def test_chosen_batch_sizes_stay_in_bounds(meta_lr):
    agent = ArbiterAgent("arbiter", ArbiterConfig(meta_lr=meta_lr, injection_scale=1.0))
    record = run_episode(
        agent, EASY, "test", 0, seed=0, overrides={"decisions": 6, "samples_per_decision": 256}
    )
    batches = record["curves"]["batch_size"]
    assert len(batches) == 6 and all(8 <= b <= 512 for b in batches)
    for entry in agent.history:
        assert all(8 <= c <= 512 for c in entry["candidates"])
        assert entry["batch_size"] == entry["candidates"][int(np.argmax(entry["alpha"]))]
        assert sum(entry["alpha"]) == pytest.approx(1.0)


def test_interval_holds_the_batch_size_between_choices():
    agent = ArbiterAgent("arbiter", ArbiterConfig(interval=2))
    record = run_episode(agent, EASY, "test", 1, seed=0, overrides=TINY)
    batches = record["curves"]["batch_size"]
    assert batches[0] == batches[1] and batches[2] == batches[3]
    assert [h["decision"] for h in agent.history] == [0, 2]


def test_episodes_are_reproducible():
    def play():
        agent = load_agent("arbiter")
        return run_episode(agent, EASY, "test", 2, seed=3, overrides=TINY)

    a, b = play(), play()
    assert a["curves"] == b["curves"] and a["final_test_loss"] == b["final_test_loss"]


def test_privileged_access_is_explicit_and_recorded_in_the_card():
    agent = load_agent("arbiter")
    assert agent.privileged and agent.action_mode == "absolute"
    card = ganno_bench.evaluate(
        agent, [EASY], "test", seeds=[0], instances=[0], overrides=TINY, progress=False
    )
    assert card["agent"]["privileged"] is True
    with pytest.raises(RuntimeError, match="privileged"):  # no view attached
        fresh = load_agent("arbiter")
        env = ganno_bench.make(EASY, action_mode="absolute", **TINY)
        obs, infos = env.reset(seed=0)
        fresh.reset(env.task, env.instance, env.possible_agents, 0)
        fresh.act(obs, infos)
    with pytest.raises(ValueError, match="absolute"):  # LR envs have no batch size to set
        run_episode(load_agent("arbiter"), "ganno/LayerLR-MLP-Easy-v0", "test", 0, seed=0)


def test_envs_without_a_privileged_view_refuse_privileged_agents():
    class Peeker:
        name, action_mode, privileged = "peeker", "factor", True

        def config(self):
            return {}

        def reset(self, task, instance, agents, seed):
            pass

        def attach(self, view):
            raise AssertionError("an LR env has no privileged view to give")

        def act(self, observations, infos):
            return dict.fromkeys(observations, 2)

    with pytest.raises(ValueError, match="offers no privileged view"):
        run_episode(
            Peeker(),
            "ganno/LayerLR-MLP-Easy-v0",
            "test",
            0,
            seed=0,
            overrides={"decisions": 1, "inner_steps": 1},
        )
