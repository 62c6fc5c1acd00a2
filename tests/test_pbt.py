"""PBT: quantile edges, who copies whom, the explore factors, and exploit through snapshots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

import ganno_bench
from ganno_bench.baselines.pbt import (
    PBTAgent,
    PBTConfig,
    exploit_plan,
    explore,
    quantiles,
    ready_members,
)
from ganno_bench.baselines.zoo import load_agent

EASY = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 6, "inner_steps": 3}


@pytest.mark.parametrize(
    ("n", "fraction", "size"),
    [(8, 0.25, 2), (5, 0.25, 2), (4, 0.25, 1), (3, 0.5, 1), (10, 0.5, 5), (2, 0.25, 1)],
)
def test_quantile_sizes_follow_ceil_capped_at_half(n, fraction, size):
    losses = list(range(n))  # member i has loss i: 0 is best
    bottom, top = quantiles(losses, fraction)
    assert top == list(range(size))
    assert bottom == list(range(n - size, n))


def test_quantiles_rank_by_loss_with_ties_in_member_order_and_inf_last():
    losses = [0.3, math.inf, 0.1, 0.3, 0.2, 0.3, 0.9, 0.3]
    bottom, top = quantiles(losses, 0.25)
    assert top == [2, 4]
    assert bottom == [1, 6]
    assert quantiles([0.5], 0.25) == ([], [])


def test_exploit_plan_copies_only_ready_bottom_members_from_the_top():
    losses = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # top: 0, 1; bottom: 6, 7
    rng = np.random.default_rng(0)
    plans = [exploit_plan(losses, range(8), 0.25, rng) for _ in range(400)]
    assert all(sorted(p) == [6, 7] for p in plans)
    donors = np.array([p[m] for p in plans for m in (6, 7)])
    assert set(donors) == {0, 1}
    assert sps.binomtest(int((donors == 0).sum()), donors.size, 0.5).pvalue > 0.01
    # member 7 is not ready: only 6 copies; a ready top/middle member copies no one
    assert list(exploit_plan(losses, [0, 3, 6], 0.25, rng)) == [6]


def test_ready_members_sync_and_async():
    assert ready_members(4, [0, 0, 0], 4) == [0, 1, 2]
    assert ready_members(3, [0, 0, 0], 4) == []
    assert ready_members(5, [0, 1, 2, 3], 4) == [1]
    assert ready_members(1, [1, 0], 1) == [1]  # t == phase: not ready yet


def test_explore_perturbs_each_layer_by_a_factor_or_resamples_from_the_prior():
    log_rates = np.array([-2.0, -1.5, -3.0])
    rng = np.random.default_rng(1)
    perturb = PBTConfig(resample_probability=0.0)
    ratios = np.concatenate(
        [10 ** (explore(log_rates, rng, perturb, (-4, 0)) - log_rates) for _ in range(500)]
    )
    assert np.all(np.isclose(ratios, 1.2) | np.isclose(ratios, 0.8))
    assert sps.binomtest(int(np.isclose(ratios, 1.2).sum()), ratios.size, 0.5).pvalue > 0.01

    resample = PBTConfig(resample_probability=1.0)
    draws = np.concatenate([explore(log_rates, rng, resample, (-4, -1)) for _ in range(500)])
    assert draws.min() >= -4 and draws.max() <= -1
    assert sps.kstest(draws, sps.uniform(loc=-4, scale=3).cdf).pvalue > 0.01

    mixed = PBTConfig(resample_probability=0.25)
    out = np.concatenate([explore(log_rates, rng, mixed, (10, 11)) for _ in range(800)])
    share = np.mean(out >= 10)  # the prior lies far from any perturbed rate
    assert sps.binomtest(int(share * out.size), out.size, 0.25).pvalue > 0.01


def test_invalid_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match="population"):
        PBTConfig(population=1)
    with pytest.raises(ValueError, match="quantile_fraction"):
        PBTConfig(quantile_fraction=0.7)


def _constant_run(rates: list[float], instance: int) -> float:
    env = ganno_bench.make(EASY, split="test", action_mode="log_lr", **TINY)
    env.reset(options={"instance": instance})
    action = {a: np.log10([r]) for a, r in zip(env.possible_agents, rates, strict=True)}
    while env.agents:
        _, _, _, _, infos = env.step(action)
    return infos["layer_0"]["final_test_loss"]


def test_exploit_copies_the_donors_whole_state_exactly():
    """Two members, factors (1,), no resampling, ready every decision: after the first
    decision the worse member becomes an exact copy of the better one, so PBT's result is
    bitwise a constant-rate run at the better member's initial rates."""
    config = PBTConfig(
        population=2,
        ready=1,
        quantile_fraction=0.5,
        resample_probability=0.0,
        perturbation_factors=(1.0,),
    )
    agent = PBTAgent("pbt-test", config)
    card = ganno_bench.evaluate(
        agent, [EASY], "test", seeds=[0], instances=[2], overrides=TINY, progress=False
    )
    (episode,) = card["episodes"]
    lrs = episode["lrs"]
    assert len(lrs) == TINY["decisions"]
    assert all(row == lrs[0] for row in lrs)  # the survivor kept its rates
    assert episode["final_test_loss"] == _constant_run(lrs[0], 2)
    assert card["agent"]["compute_multiple"] == 2


def test_pbt_episode_is_reproducible_and_recorded_as_p_runs_of_compute():
    agent = load_agent("pbt")
    assert agent.compute_multiple == 8
    cards = [
        ganno_bench.evaluate(
            agent, [EASY], "test", seeds=[3], instances=[0, 1], overrides=TINY, progress=False
        )
        for _ in range(2)
    ]
    assert cards[0]["episodes"][0]["lrs"] == cards[1]["episodes"][0]["lrs"]
    assert [e["final_test_loss"] for e in cards[0]["episodes"]] == [
        e["final_test_loss"] for e in cards[1]["episodes"]
    ]
    assert cards[0]["agent"]["config"]["population"] == 8
    # the lineage's rates stay within the prior (+- 1 decade, times at most 1.2 per ready)
    initial = ganno_bench.make(EASY, split="test").task.frozen_instances("test")[0].learning_rate
    ratio = np.log10(np.array(cards[0]["episodes"][0]["lrs"]) / initial)
    assert np.all(np.abs(ratio) <= 1.0 + 2 * np.log10(1.25))
    async_agent = load_agent("pbt-async")
    assert async_agent.settings.synchronous is False


def _play(config: PBTConfig, overrides: dict, instance: int = 0, seed: int = 0) -> dict:
    def new_env():
        return ganno_bench.make(EASY, split="test", action_mode="log_lr", **overrides)

    return PBTAgent("pbt-test", config).play(new_env, instance, seed)


@pytest.mark.parametrize("synchronous", [True, False])
def test_exploits_happen_only_when_the_receiver_is_ready(synchronous):
    config = PBTConfig(population=6, ready=2, quantile_fraction=0.34, synchronous=synchronous)
    details = _play(config, {"decisions": 7, "inner_steps": 2})["details"]
    phases = details["phases"]
    assert details["exploits"], "no exploit happened"
    for t, member, donor, _ in details["exploits"]:
        assert t > phases[member] and (t - phases[member]) % 2 == 0
        assert member != donor
    if synchronous:
        assert set(phases) == {0}
        assert {t for t, *_ in details["exploits"]} <= {2, 4, 6}
        # each ready point: ceil(0.34 * 6) = 3 members copy someone
        assert len(details["exploits"]) == 3 * 3


def test_a_diverged_member_is_revived_by_copying_a_top_member():
    # a tight divergence limit and a wide prior: some members diverge at once
    config = PBTConfig(population=4, ready=1, quantile_fraction=0.5, prior_decades=2.0)
    result = _play(config, {"decisions": 4, "inner_steps": 3, "divergence_factor": 1.05})
    assert any(revived for *_, revived in result["details"]["exploits"])
    assert not result["final"]["diverged"]
    assert len(result["lrs"]) == 4  # the winner's lineage covers the whole episode
