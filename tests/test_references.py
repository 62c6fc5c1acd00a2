"""Reference values of the normalised score: the formula and the shipped, frozen values."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ganno_bench
from ganno_bench.evaluation import resolve_ids, run_episode, single_threaded
from ganno_bench.references import (
    GRIDS,
    instance_references,
    load_references,
    normalised_score,
    references_path,
)
from ganno_bench.zoo import load_agent

# References anchor the layerwise-LR suite ("all"); the batch-size track has none yet.
LR_IDS = resolve_ids(["all"])
SHIPPED = [i for i in LR_IDS if references_path(i).exists()]


def test_score_is_zero_at_the_default_and_one_at_the_best_constant_rate():
    assert normalised_score(2.0, default_loss=2.0, best_loss=1.0) == 0.0
    assert normalised_score(1.0, default_loss=2.0, best_loss=1.0) == 1.0
    assert normalised_score(0.5, default_loss=2.0, best_loss=1.0) == 1.5  # beats the oracle
    assert normalised_score(3.0, default_loss=2.0, best_loss=1.0) == -1.0
    # the default already beats the grid: the best constant rate is the default itself,
    # and the denominator floor (5% of the default loss) keeps the score on a sane scale
    assert normalised_score(1.9, default_loss=2.0, best_loss=2.5) == pytest.approx(0.1 / 0.1)
    assert normalised_score(2.2, default_loss=2.0, best_loss=1.99) == pytest.approx(-0.2 / 0.1)
    # above the floor the scale is the default-to-best gap itself
    assert normalised_score(1.5, default_loss=2.0, best_loss=1.8) == pytest.approx(0.5 / 0.2)


def test_rescore_recomputes_scores_from_losses_and_leaves_overridden_ones_null():
    import copy

    import ganno_bench
    from ganno_bench.references import rescore
    from ganno_bench.zoo import load_agent

    env_id = "ganno/LayerLR-MLP-Easy-v0"
    card = ganno_bench.evaluate(
        load_agent("random"), [env_id], "test", seeds=[0], instances=[0, 1], progress=False
    )
    spoiled = copy.deepcopy(card)
    for episode in spoiled["episodes"]:
        episode["normalised_score"] = 123.0
    assert rescore(spoiled) == 2
    assert spoiled == card
    assert rescore(spoiled) == 0
    tiny = ganno_bench.evaluate(
        load_agent("random"),
        [env_id],
        "test",
        seeds=[0],
        instances=[0],
        overrides={"decisions": 2, "inner_steps": 1},
        progress=False,
    )
    assert rescore(tiny) == 0 and tiny["episodes"][0]["normalised_score"] is None


def test_grids_are_log_spaced_and_inside_the_learning_rate_bounds():
    for env_id in ("ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-MLP-Easy-Adam-v0"):
        task = ganno_bench.spec(env_id)
        grid = np.array(GRIDS[task.optimizer])
        assert np.allclose(np.diff(grid), grid[1] - grid[0])
        assert 10 ** grid.min() >= task.lr_bounds[0] and 10 ** grid.max() <= task.lr_bounds[1]


def test_every_suite_id_has_shipped_references():
    missing = sorted(set(LR_IDS) - set(SHIPPED))
    assert not missing, f"no reference values for {missing}: run `ganno-bench references`"


@pytest.mark.parametrize("env_id", SHIPPED[:: max(1, len(SHIPPED) // 2)] or ["none"])
def test_shipped_references_match_a_recomputation(env_id):
    if env_id == "none":
        pytest.fail("no reference files are shipped")
    shipped = load_references(env_id)
    split, index = "test-ood", 1
    with single_threaded():
        again = instance_references(env_id, split, index)
    stored = shipped[split][index]
    assert stored["instance"] == index
    for key in ("default_loss", "best_loss"):
        assert again[key] == pytest.approx(stored[key], rel=1e-6)
    assert again["grid_loss"] == pytest.approx(stored["grid_loss"], rel=1e-6)
    assert stored["best_loss"] == min(stored["grid_loss"])


def test_the_constant_agent_scores_zero_against_shipped_references():
    if not SHIPPED:
        pytest.fail("no reference files are shipped")
    env_id = SHIPPED[0]
    references = load_references(env_id)
    with single_threaded():
        record = run_episode(
            load_agent("constant"), env_id, "test", 2, seed=5, references=references
        )
    assert record["normalised_score"] == pytest.approx(0.0, abs=1e-9)


def test_references_for_other_instances_are_refused(tmp_path, monkeypatch):
    if not SHIPPED:
        pytest.fail("no reference files are shipped")
    env_id = SHIPPED[0]
    data = json.loads(references_path(env_id).read_text())
    data["instances_sha256"]["test"] = "0" * 64
    path = tmp_path / references_path(env_id).name
    path.write_text(json.dumps(data))
    monkeypatch.setattr("ganno_bench.references.references_path", lambda _: path)
    with pytest.raises(ValueError, match="other test instances"):
        load_references(env_id)
