"""Arbiter: its gradient reaches the agent network and the mixture, its batch sizes stay
in bounds, and its white-box access is explicit and recorded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ganno_bench
from ganno_bench.baselines.arbiter import ArbiterAgent, ArbiterConfig, batch_from_logit
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import CardError, validate_card
from ganno_bench.benchmark.evaluation import run_episode

EASY = "ganno/BatchSize-MLP-Easy-v0"
TINY = {"decisions": 4, "samples_per_decision": 256}


def test_the_reparameterisation_is_the_papers_unclamped_map_inside_the_range():
    # floor((s_max - s_min) * sigmoid(s) + s_min), by hand: sigmoid(1) = 0.7310586,
    # sigmoid(-2) = 0.1192029, sigmoid(3) = 0.9525741, sigmoid(0.5) = 0.6224593
    assert batch_from_logit(1.0, 8, 512) == 376  # floor(504 * 0.7310586 + 8) = floor(376.45)
    assert batch_from_logit(-2.0, 8, 512) == 68  # floor(60.08 + 8)
    assert batch_from_logit(3.0, 8, 512) == 488  # floor(480.10 + 8)
    assert batch_from_logit(0.5, 16, 256) == 165  # floor(240 * 0.6224593 + 16) = 165.39
    assert batch_from_logit(torch.tensor(1.0), 8, 512) == 376


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
        chosen = entry["candidate_logits"][int(np.argmax(entry["alpha"]))]
        unclamped = math.floor(504 / (1 + math.exp(-chosen)) + 8)  # no clamping in the test
        assert entry["batch_size"] == unclamped
        assert entry["batch_size"] == entry["candidates"][int(np.argmax(entry["alpha"]))]
        assert sum(entry["alpha"]) == pytest.approx(1.0)


def test_interval_holds_the_batch_size_between_choices():
    agent = ArbiterAgent("arbiter", ArbiterConfig(interval=2))
    record = run_episode(agent, EASY, "test", 1, seed=0, overrides=TINY)
    batches = record["curves"]["batch_size"]
    assert batches[0] == batches[1] and batches[2] == batches[3]
    assert [h["decision"] for h in agent.history] == [0, 2]


def test_interval_meta_step_comes_when_the_interval_is_over():
    """With interval 2 the choice made at decision 0 is trained for decisions 0 and 1; its
    meta-step runs at decision 2, at the weights after both, not one decision early."""
    env, agent, obs, infos = _attached_agent(ArbiterConfig(interval=2))
    weights_at_meta_loss = []
    meta_loss = agent.meta_loss

    def spy(s):
        weights_at_meta_loss.append(env.trainer.final_weights())
        return meta_loss(s)

    agent.meta_loss = spy
    initial = [p.detach().clone() for p in agent.optimizer.param_groups[0]["params"]]
    initial.append(agent.mixture.detach().clone())
    parameters = [*agent.optimizer.param_groups[0]["params"], agent.mixture]
    for _ in range(2):  # decisions 0 and 1: no meta-step yet
        obs, _, _, _, infos = env.step(agent.act(obs, infos))
        assert weights_at_meta_loss == []
        assert all(torch.equal(b, p.detach()) for b, p in zip(initial, parameters, strict=True))
    after_interval = env.trainer.final_weights()
    env.step(agent.act(obs, infos))  # decision 2: meta-step of the first choice, then a new one
    assert len(weights_at_meta_loss) == 1
    assert torch.equal(weights_at_meta_loss[0], after_interval)
    assert all(not torch.equal(b, p.detach()) for b, p in zip(initial, parameters, strict=True))
    assert [h["decision"] for h in agent.history] == [0, 2]
    assert agent.history[0]["meta_loss"] is None and agent.history[1]["meta_loss"] > 0


def test_the_meta_loss_is_taken_at_the_post_step_weights():
    env, agent, obs, infos = _attached_agent()
    env.step(agent.act(obs, infos))
    s = agent._pending_s
    state = agent._view._generator.get_state()  # the same validation minibatch twice
    before = float(agent.meta_loss(s).detach())
    assert before == pytest.approx(_plain_val_loss(agent, state), rel=0.05)
    env.step({"controller": np.array([64.0], dtype=np.float32)})  # the inner weights move
    agent._view._generator.set_state(state)
    after = float(agent.meta_loss(s).detach())
    assert after != before
    assert after == pytest.approx(_plain_val_loss(agent, state), rel=0.05)


def _plain_val_loss(agent, state) -> float:
    """The inner network's validation loss now, on the minibatch the state draws."""
    agent._view._generator.set_state(state)
    x, y = agent._view.minibatch("val", agent.settings.val_batch)
    agent._view._generator.set_state(state)
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(agent._view.network(x), y))


def test_the_chosen_candidate_can_change_within_an_episode():
    """The mixture logits learn fast enough (their own rate, a small initial lead) for
    argmax(alpha), hence the chosen candidate, to move within one short episode."""
    agent = load_agent("arbiter")
    run_episode(
        agent, EASY, "test", 1, seed=0, overrides={"decisions": 6, "samples_per_decision": 256}
    )
    chosen = [int(np.argmax(h["alpha"])) for h in agent.history]
    assert len(set(chosen)) > 1, chosen
    assert agent.optimizer.param_groups[1]["params"] == [agent.mixture]
    assert (
        agent.optimizer.param_groups[1]["lr"] == agent.settings.mixture_lr > agent.settings.meta_lr
    )


def test_config_errors_show_the_received_values():
    with pytest.raises(ValueError, match="candidates=1"):
        ArbiterConfig(candidates=1)
    with pytest.raises(ValueError, match="mixture_lr=0"):
        ArbiterConfig(mixture_lr=0)


def test_episodes_are_reproducible():
    def play():
        agent = load_agent("arbiter")  # absolute mode: the batch size itself
        return run_episode(agent, EASY, "test", 2, seed=3, overrides=TINY), agent.history

    (a, history_a), (b, history_b) = play(), play()
    assert a["curves"] == b["curves"] and a["final_test_loss"] == b["final_test_loss"]
    assert history_a == history_b  # candidates, mixture weights and meta-losses too


def test_privileged_access_is_explicit_and_recorded_in_the_card():
    agent = load_agent("arbiter")
    assert agent.privileged and agent.action_mode == "absolute"
    card = ganno_bench.evaluate(
        agent, [EASY], "test", seeds=[0], instances=[0], overrides=TINY, progress=False
    )
    assert card["agent"]["privileged"] is True
    validate_card(card)  # batch-size ids record their samples, not the unused inner steps
    assert "inner_steps" not in card["envs"][EASY]
    assert card["envs"][EASY]["samples_per_decision"] == TINY["samples_per_decision"]
    lr_header = dict(card["envs"][EASY])
    del lr_header["samples_per_decision"]
    with pytest.raises(CardError, match=r"inner_steps|samples_per_decision"):
        validate_card({**card, "envs": {EASY: lr_header}})
    with pytest.raises(RuntimeError, match="privileged"):  # no view attached
        fresh = load_agent("arbiter")
        env = ganno_bench.make(EASY, action_mode="absolute", **TINY)
        obs, infos = env.reset(seed=0)
        fresh.reset(env.task, env.instance, env.possible_agents, 0)
        fresh.act(obs, infos)
    with pytest.raises(ValueError, match="absolute"):  # LR envs have no batch size to set
        run_episode(load_agent("arbiter"), "ganno/LayerLR-MLP-Easy-v0", "test", 0, seed=0)
    agent, lr_task = load_agent("arbiter"), ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0")
    with pytest.raises(ValueError, match=r"use a ganno/BatchSize-\* id \(suite `batch-size`\)"):
        agent.reset(lr_task, lr_task.frozen_instances("test")[0], ["layer_0"], seed=0)


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
