"""Best-of-P grid search: the grid, the choice by validation loss, and bitwise equality of
its winner with a plain run of the same schedule at the winning base rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ganno_bench
from ganno_bench.baselines.best_of import BestOfAgent, BestOfConfig, best_member, log_rate_grid
from ganno_bench.baselines.configs import load_baselines
from ganno_bench.baselines.schedules import GlobalScheduleAgent, LayerwiseRuleAgent
from ganno_bench.baselines.zoo import load_agent

EASY = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 4, "inner_steps": 3}


def test_grid_spans_the_initial_rate_plus_minus_decades_evenly_in_log():
    grid = log_rate_grid(0.01, (1e-5, 10.0), BestOfConfig(population=5, decades=1.0))
    np.testing.assert_allclose(grid, [-3.0, -2.5, -2.0, -1.5, -1.0])


def test_grid_is_clipped_to_the_task_rate_bounds():
    grid = log_rate_grid(1.0, (1e-5, 2.0), BestOfConfig(population=3, decades=1.0))
    np.testing.assert_allclose(grid, [-1.0, (-1.0 + math.log10(2.0)) / 2, math.log10(2.0)])


def test_best_member_ranks_by_validation_loss_with_diverged_and_nan_last():
    assert best_member([0.5, 0.2, 0.3], [False, False, False]) == 1
    assert best_member([0.5, 0.2, 0.3], [False, True, False]) == 2
    assert best_member([math.nan, 0.9, 0.9], [False, False, False]) == 1  # tie: lower index
    assert best_member([0.1, 0.2], [True, True]) == 0  # all diverged: still one winner


def _stub_members(monkeypatch, val_losses, test_losses, diverged=None):
    """Members that report made-up losses by grid position; returns the base rates seen."""
    import ganno_bench.benchmark.evaluation

    seen: list[float] = []

    def fake_play(member, env, instance, seed):
        i = len(seen)
        seen.append(member.base_lr)
        final = {
            "val_loss": val_losses[i],
            "final_test_loss": test_losses[i],
            "diverged": bool(diverged and diverged[i]),
        }
        return {"final": final, "curves": {}, "lrs": [[member.base_lr]], "return": 0.0}

    monkeypatch.setattr(ganno_bench.benchmark.evaluation, "play_episode", fake_play)
    return seen


def _new_env():
    return ganno_bench.make(EASY, split="test", action_mode="log_lr", **TINY)


def test_the_choice_reads_validation_losses_only(monkeypatch):
    seen = _stub_members(monkeypatch, [0.5, 0.3, 0.1, 0.4], [0.1, 0.2, 0.9, 0.3])
    agent = BestOfAgent("g", GlobalScheduleAgent("c", "constant"), BestOfConfig(population=4))
    played = agent.play(_new_env, 0, 0)
    assert played["final"]["final_test_loss"] == 0.9  # the best validation loss, worst test
    assert played["lrs"] == [[seen[2]]]
    assert played["details"]["best_member"] == 2
    initial = ganno_bench.spec(EASY).frozen_instances("test")[0].learning_rate
    np.testing.assert_allclose(np.log10(seen), np.log10(initial) + np.linspace(-1, 1, 4))


def test_a_diverged_member_never_wins_over_a_finite_one(monkeypatch):
    _stub_members(monkeypatch, [0.1, 0.3, 0.2], [0.1, 0.3, 0.2], diverged=[True, False, False])
    agent = BestOfAgent("g", GlobalScheduleAgent("c", "constant"), BestOfConfig(population=3))
    assert agent.play(_new_env, 0, 0)["details"]["best_member"] == 2


def test_a_member_with_its_own_base_rate_centres_the_grid_on_it(monkeypatch):
    seen = _stub_members(monkeypatch, [0.3, 0.2, 0.1], [0.0] * 3)
    tuned = {EASY: 0.05}
    for member in (
        GlobalScheduleAgent("c", "CosineAnnealingLR", {"T_max_fraction": 1.0}, tuned),
        LayerwiseRuleAgent("l", "lars", {"eta": 1.0}, tuned),
    ):
        seen.clear()
        BestOfAgent("g", member, BestOfConfig(population=3, decades=0.5)).play(_new_env, 1, 0)
        np.testing.assert_allclose(np.log10(seen), np.log10(0.05) + np.array([-0.5, 0, 0.5]))


def test_invalid_configs_and_members_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="population must be at least 2"):
        BestOfConfig(population=1)
    with pytest.raises(ValueError, match="decades must be positive"):
        BestOfConfig(decades=0.0)
    with pytest.raises(ValueError, match="schedule with a base rate"):
        BestOfAgent("bad", load_agent("pbt"))
    with pytest.raises(ValueError, match="population must be a whole number"):
        BestOfConfig(population=8.5)
    path = tmp_path / "bad.toml"
    member = '\n[grid.member]\nscheduler = "constant"\n'
    for text, message in [
        ('[grid]\nmethod = "best-of"\npopulation = 4\n', r"needs a \[grid.member\] table"),
        ('[grid]\nmethod = "best-of"\ndecade = 1\n' + member, r"bad.toml: baseline 'grid'.*decade"),
        ('[grid]\nmethod = "best-of"\nbase_lr = 0.1\n' + member, "goes in its member table"),
        ('[grid]\nmethod = "best-of"\n[grid.member]\nbatch_rule = "constant"\n', "base rate"),
        ('[grid]\nmethod = "bestof"\n', "got method 'bestof'"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_baselines(path)


def test_winner_is_the_lowest_validation_loss_member_and_equals_a_plain_run_bitwise():
    agent = BestOfAgent(
        "grid-test",
        GlobalScheduleAgent("cosine", "CosineAnnealingLR", {"T_max_fraction": 1.0}),
        BestOfConfig(population=3, decades=1.0),
    )
    card = ganno_bench.evaluate(
        agent, [EASY], "test", seeds=[0], instances=[4], overrides=TINY, progress=False
    )
    (episode,) = card["episodes"]
    assert card["agent"]["compute_multiple"] == 3
    assert card["agent"]["config"]["member"]["scheduler"] == "CosineAnnealingLR"

    initial = ganno_bench.spec(EASY).frozen_instances("test")[4].learning_rate
    grid = log_rate_grid(initial, ganno_bench.spec(EASY).lr_bounds, agent.settings)
    plain = [
        ganno_bench.evaluate(
            GlobalScheduleAgent("cosine", "CosineAnnealingLR", {"T_max_fraction": 1.0}, 10**g),
            [EASY],
            "test",
            seeds=[0],
            instances=[4],
            overrides=TINY,
            progress=False,
        )["episodes"][0]
        for g in grid
    ]
    val_losses = [p["curves"]["val_loss"][-1] for p in plain]
    assert len(set(val_losses)) == 3, "the grid's members should differ"
    winner = plain[int(np.argmin(val_losses))]
    assert episode["final_test_loss"] == winner["final_test_loss"]
    assert episode["lrs"] == winner["lrs"]
    assert episode["curves"] == winner["curves"]


def test_the_shipped_grid_cosine_spends_eight_runs_of_the_cosine_family():
    agent = load_agent("grid-cosine")
    assert agent.compute_multiple == 8
    assert agent.member.scheduler == load_agent("tuned-cosine").scheduler
    assert agent.member.settings == load_agent("tuned-cosine").settings
