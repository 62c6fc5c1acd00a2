"""Scripted baselines: global schedules equal torch's lr_scheduler; layerwise rules by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler

import ganno_bench
from ganno_bench.baselines.schedules import GlobalScheduleAgent, LayerwiseRuleAgent
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.evaluation import run_episode
from ganno_bench.inner.instances import Instance

T = 20
BASE = 0.05
INSTANCE = Instance(1, 2, "kaiming_uniform", 1.0, math.log10(BASE), 32, 0.9)
TASK = ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0").with_overrides(decisions=T)
AGENTS = ["layer_0", "layer_1", "layer_2"]


def agent_rates(agent, val_losses=None) -> list[float]:
    """The rate the agent sets at each decision (the same for every layer)."""
    agent.reset(TASK, INSTANCE, AGENTS, seed=0)
    rates, obs = [], dict.fromkeys(AGENTS, np.zeros(14, np.float32))
    for t in range(T):
        loss = 1.0 if val_losses is None or t == 0 else val_losses[t - 1]
        infos = {a: {"val_loss": loss} for a in AGENTS}
        actions = agent.act(obs, infos)
        values = {float(actions[a][0]) for a in AGENTS}
        assert len(values) == 1
        rates.append(10 ** values.pop())
    return rates


def torch_rates(make_scheduler, val_losses=None) -> list[float]:
    """The reference: torch's own scheduler, one step per decision."""
    parameter = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([parameter], lr=BASE)
    scheduler = make_scheduler(optimizer)
    rates = []
    for t in range(T):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if val_losses is None:
            scheduler.step()
        else:
            scheduler.step(val_losses[t])
    return rates


REFERENCES = {
    "constant": lambda o: lr_scheduler.ConstantLR(o, factor=1.0, total_iters=0),
    "step": lambda o: lr_scheduler.StepLR(o, step_size=6, gamma=0.3),
    "exponential": lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9),
    "cosine": lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=T, eta_min=0.01 * BASE),
    "cosine-restarts": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(
        o, T_0=5, T_mult=2, eta_min=0.01 * BASE
    ),
    "warmup-cosine": lambda o: lr_scheduler.SequentialLR(
        o,
        [
            lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=2),
            lr_scheduler.CosineAnnealingLR(o, T_max=T - 2, eta_min=0.01 * BASE),
        ],
        milestones=[2],
    ),
    "one-cycle": lambda o: lr_scheduler.OneCycleLR(
        o,
        max_lr=3 * BASE,
        total_steps=T,
        pct_start=0.3,
        div_factor=10.0,
        final_div_factor=100.0,
        cycle_momentum=False,
    ),
    "cyclical": lambda o: lr_scheduler.CyclicLR(
        o,
        base_lr=0.3 * BASE,
        max_lr=3 * BASE,
        step_size_up=5,
        mode="triangular",
        cycle_momentum=False,
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_global_schedules_match_torch_lr_scheduler(name):
    ours = agent_rates(load_agent(name))
    reference = torch_rates(REFERENCES[name])
    np.testing.assert_allclose(ours, reference, rtol=2e-6)  # float32 log10 round trip
    if name not in ("constant",):
        assert len({round(r, 12) for r in reference}) > 1  # the schedule really moves


def test_reduce_on_plateau_matches_torch_on_the_same_losses():
    losses = [1.0, 0.8, 0.79, 0.795, 0.8, 0.6, 0.61, 0.62, 0.63, 0.5] * 2
    ours = agent_rates(load_agent("reduce-on-plateau"), losses)
    reference = torch_rates(
        lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=1, threshold=0.01), losses
    )
    np.testing.assert_allclose(ours, reference, rtol=2e-6)
    assert min(reference) < BASE


def test_fixed_base_rate_replaces_the_instance_rate():
    agent = GlobalScheduleAgent("tuned", "constant", base_lr=0.2)
    assert agent_rates(agent) == pytest.approx([0.2] * T, rel=2e-6)


def test_schedules_reach_the_env_as_the_layers_rates():
    record = run_episode(
        load_agent("cosine"),
        "ganno/LayerLR-MLP-Easy-v0",
        "test",
        0,
        0,
        {"decisions": 6, "inner_steps": 1},
    )
    base = ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0").frozen_instances("test")[0]
    eta_min = 0.01 * base.learning_rate
    expected = [
        eta_min + (base.learning_rate - eta_min) * (1 + math.cos(math.pi * t / 6)) / 2
        for t in range(6)
    ]
    np.testing.assert_allclose(
        np.array(record["lrs"]), np.repeat([expected], 3, axis=0).T, rtol=2e-6
    )


def _layer_infos(weight_logs, grad_logs, cosines):
    return {
        f"layer_{i}": {"log10_weight_norm": w, "log10_grad_norm": g, "grad_cosine": c}
        for i, (w, g, c) in enumerate(zip(weight_logs, grad_logs, cosines, strict=True))
    }


def test_lars_rates_follow_the_trust_ratio_per_layer():
    agent = LayerwiseRuleAgent("lars", "lars", {"eta": 2.0})
    agent.reset(TASK, INSTANCE, AGENTS, seed=0)
    infos = _layer_infos([1.0, 0.5, 0.0], [-1.0, 0.5, -0.5], [0, 0, 0])
    actions = agent.act(dict.fromkeys(AGENTS), infos)
    logs = np.array([float(actions[a][0]) for a in AGENTS])
    trust = np.array([2.0, 0.0, 0.5])  # log10 |w|/|g| per layer
    np.testing.assert_allclose(logs - logs[0], trust - trust[0], atol=1e-6)  # proportional
    assert logs.mean() == pytest.approx(math.log10(2.0 * BASE), abs=1e-6)  # geometric mean


def test_hypergradient_moves_each_layer_with_its_gradient_alignment():
    agent = LayerwiseRuleAgent("hd", "hypergradient", {"beta": 0.2})
    agent.reset(TASK, INSTANCE, AGENTS, seed=0)
    infos = _layer_infos([0, 0, 0], [0, 0, 0], [1.0, -0.5, 0.0])
    first = agent.act(dict.fromkeys(AGENTS), infos)
    second = agent.act(dict.fromkeys(AGENTS), infos)
    base = math.log10(BASE)
    for actions, steps in ((first, 1), (second, 2)):
        got = [float(actions[a][0]) for a in AGENTS]
        assert got == pytest.approx([base + 0.2 * steps, base - 0.1 * steps, base], abs=1e-6)


def test_random_rule_stays_within_its_decades_and_is_seeded():
    agent = LayerwiseRuleAgent("r", "random", {"decades": 0.5})

    def draws(seed):
        agent.reset(TASK, INSTANCE, AGENTS, seed=seed)
        return np.array(
            [
                [float(v[0]) for v in agent.act(dict.fromkeys(AGENTS), {}).values()]
                for _ in range(50)
            ]
        )

    a, b, c = draws(1), draws(1), draws(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    base = math.log10(BASE)
    assert a.min() >= base - 0.5 - 1e-6 and a.max() <= base + 0.5 + 1e-6
    assert a.std() > 0.2  # spread over the range, not stuck


def test_unknown_scheduler_or_rule_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        LayerwiseRuleAgent("x", "adagrad")
    agent = GlobalScheduleAgent("x", "PolynomialDecay")
    with pytest.raises(ValueError, match="unknown scheduler"):
        agent.reset(TASK, INSTANCE, AGENTS, seed=0)
