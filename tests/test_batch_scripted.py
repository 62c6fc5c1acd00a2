"""The batch-size heuristics: each rule on hand-made infos, loading by name, an episode."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ganno_bench
from ganno_bench.baselines.batch_rules import BatchRuleAgent
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.evaluation import run_episode
from ganno_bench.inner.instances import Instance

T = 20
TASK = ganno_bench.spec("ganno/BatchSize-MLP-Easy-v0").with_overrides(decisions=T)
AGENT = "controller"


def instance(batch_size: int) -> Instance:
    return Instance(1, 2, "kaiming_uniform", 1.0, -1.0, batch_size, 0.9)


def info(**values) -> dict:
    base = {"delta_log_val_loss": 0.0, "grad_sq_estimate": None, "trace_sigma_estimate": None}
    return {AGENT: {**base, **values}}


def sizes(agent, infos_per_decision, initial=32) -> list[int]:
    """The batch size the agent asks for at each decision."""
    agent.reset(TASK, instance(initial), [AGENT], seed=0)
    obs = {AGENT: np.zeros(15, np.float32)}
    chosen = []
    for infos in infos_per_decision:
        action = agent.act(obs, infos)[AGENT]
        assert action.shape == (1,) and float(action[0]).is_integer()
        chosen.append(int(action[0]))
    return chosen


def test_constant_keeps_the_initial_batch_size_clipped_to_bounds():
    assert sizes(BatchRuleAgent("c", "constant"), [info()] * 5) == [32] * 5
    assert sizes(BatchRuleAgent("c", "constant"), [info()] * 2, initial=4) == [8, 8]


def test_step_rule_multiplies_the_batch_where_step_lr_would_divide_the_rate():
    agent = BatchRuleAgent("s", "step", {"step_size_fraction": 0.25, "increase": 2.0})
    chosen = sizes(agent, [info()] * T, initial=32)
    # StepLR(step_size=5, gamma=0.5) halves the rate at decisions 5, 10, 15
    assert chosen == [32] * 5 + [64] * 5 + [128] * 5 + [256] * 5
    # and the bounds hold
    big = sizes(BatchRuleAgent("s", "step", {"step_size": 2, "increase": 4.0}), [info()] * 8, 64)
    assert big == [64, 64, 256, 256, 512, 512, 512, 512]


def _noise_info(grad_sq: float, trace: float) -> dict:
    return info(grad_sq_estimate=grad_sq, trace_sigma_estimate=trace)


def test_noise_scale_controller_follows_a_given_noise_scale():
    agent = BatchRuleAgent("n", "noise-scale", {"beta": 0.0, "max_change": 100.0})
    # B_simple = tr / |G|^2 = 100, then 300
    chosen = sizes(agent, [_noise_info(1.0, 100.0)] * 3 + [_noise_info(1.0, 300.0)] * 2)
    assert chosen == [100, 100, 100, 300, 300]


def test_noise_scale_controller_smooths_limits_and_waits_for_a_valid_estimate():
    agent = BatchRuleAgent("n", "noise-scale", {"beta": 0.5, "max_change": 2.0, "fraction": 1.0})
    steps = [info(), _noise_info(-1.0, 50.0), _noise_info(1.0, 400.0), _noise_info(1.0, 400.0)]
    chosen = sizes(agent, steps, initial=32)
    assert chosen[0] == 32  # no estimate yet: keep
    assert chosen[1] == 32  # the smoothed |G|^2 is negative: not valid, keep
    # smoothed |G|^2 = 0, tr = 225 -> still not valid; then |G|^2 = 0.5, tr = 312.5 -> 625,
    # limited to 2 x 32 per decision
    assert chosen[2] == 32 and chosen[3] == 64
    # the smoothed target is tr/|G|^2 of the averages, not the average of ratios
    agent = BatchRuleAgent("n", "noise-scale", {"beta": 0.5, "max_change": 100.0})
    chosen = sizes(agent, [_noise_info(1.0, 100.0), _noise_info(3.0, 100.0)])
    assert chosen == [100, 50]


def test_plateau_doubling_triggers_on_a_plateau_and_respects_the_bounds():
    agent = BatchRuleAgent("p", "plateau", {"patience": 2, "threshold": 0.01})
    improving, flat = info(delta_log_val_loss=-0.1), info(delta_log_val_loss=-0.001)
    chosen = sizes(agent, [improving, improving, flat, flat, improving, flat, flat], initial=128)
    assert chosen == [128, 128, 128, 256, 256, 256, 512]
    assert sizes(agent, [flat] * 6, initial=256) == [256, 256, 512, 512, 512, 512]


def test_rules_refuse_unknown_rules_settings_and_lr_tasks():
    with pytest.raises(ValueError, match="choose one of"):
        BatchRuleAgent("x", "linear")
    with pytest.raises(ValueError, match="unknown settings"):
        BatchRuleAgent("x", "step", {"gamma": 0.5})
    lr_task = ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0")
    with pytest.raises(ValueError, match=r"not a batch-size id: use a ganno/BatchSize-\* id"):
        BatchRuleAgent("x", "constant").reset(lr_task, instance(32), ["layer_0"], 0)


@pytest.mark.parametrize("name", ["bs-constant", "bs-step", "bs-noise-scale", "bs-plateau-double"])
def test_shipped_heuristics_load_by_name_and_play_an_episode_in_bounds(name):
    agent = load_agent(name)
    assert agent.action_mode == "absolute" and agent.config()["batch_rule"]
    record = run_episode(
        agent,
        "ganno/BatchSize-MLP-Easy-v0",
        "test",
        0,
        seed=0,
        overrides={"decisions": 4, "samples_per_decision": 128},
    )
    batches = record["curves"]["batch_size"]
    assert len(batches) == 4 and all(8 <= b <= 512 for b in batches)
    assert math.isfinite(record["final_test_loss"])
