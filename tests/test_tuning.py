"""Tuned baselines: grid search on the train split only, frozen configs that load back."""

from __future__ import annotations

import ganno_bench.baselines.tuning as tuning
from ganno_bench.baselines.configs import load_baselines
from ganno_bench.baselines.schedules import GlobalScheduleAgent
from ganno_bench.benchmark.references import GRIDS

EASY = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 3, "inner_steps": 3}


def test_grid_search_uses_only_the_train_split_and_picks_the_lowest_val_loss(monkeypatch):
    splits = []
    real_evaluate = tuning.evaluate

    def spy(agent, ids, split, *args, **kwargs):
        splits.append(split)
        return real_evaluate(agent, ids, split, *args, **kwargs)

    monkeypatch.setattr(tuning, "evaluate", spy)
    best, losses = tuning.grid_search("tuned-constant", EASY, [0, 1], [0], overrides=TINY)
    assert set(splits) == {"train"} and len(splits) == len(GRIDS["sgd"])
    assert sorted(losses) == sorted(10.0**g for g in GRIDS["sgd"])
    assert losses[best] == min(losses.values())
    assert len(set(losses.values())) > 1  # the rate matters, so the choice is informative


def test_tuned_configs_round_trip_into_agents(tmp_path):
    path = tmp_path / "tuned.toml"
    tuned = {
        "tuned-cosine": {
            "scheduler": "CosineAnnealingLR",
            "T_max_fraction": 1.0,
            "eta_min_factor": 0.01,
            "tuned_on": "train split",
            "base_lr": {EASY: 0.0316, "ganno/LayerLR-CNN-Easy-v0": 0.1},
        }
    }
    tuning.write_tuned(path, tuned)
    assert tuning.read_tuned(path) == tuned
    agent = load_baselines(path)["tuned-cosine"]
    assert isinstance(agent, GlobalScheduleAgent)
    assert agent.base_lr == {EASY: 0.0316, "ganno/LayerLR-CNN-Easy-v0": 0.1}
    assert agent.settings == {"T_max_fraction": 1.0, "eta_min_factor": 0.01}


def test_tune_command_updates_only_the_asked_baseline_and_keeps_the_rest(
    tmp_path, monkeypatch, capsys
):
    import ganno_bench.baselines.files as files
    from ganno_bench.cli.main import main

    other = "ganno/LayerLR-CNN-Easy-v0"
    tuning.write_tuned(
        tmp_path / "tuned.toml",
        {"tuned-cosine": {"scheduler": "CosineAnnealingLR", "base_lr": {other: 0.5}}},
    )
    calls = []

    def fake_grid_search(name, env_id, instances, seeds, workers=1, overrides=None):
        calls.append((name, env_id, list(instances), list(seeds)))
        return 0.01, {0.01: 1.0}

    monkeypatch.setattr(files, "baselines_dir", lambda: tmp_path)
    monkeypatch.setattr(tuning, "grid_search", fake_grid_search)
    assert main(["tune", "--baseline", "tuned-constant", "--env", EASY, "--instances", "2"]) == 0
    assert calls == [("tuned-constant", EASY, [0, 1], [0])]
    out = capsys.readouterr().out
    assert "tuned-constant" in out and "tuned-cosine" not in out
    stored = tuning.read_tuned(tmp_path / "tuned.toml")
    assert stored["tuned-constant"]["base_lr"] == {EASY: 0.01}
    assert stored["tuned-cosine"]["base_lr"] == {other: 0.5}  # untouched
