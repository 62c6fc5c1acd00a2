"""Divergence ends an episode cleanly; malformed actions meet a clear error."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ganno_bench


@pytest.mark.parametrize("env_id", ["ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0"])
def test_huge_learning_rate_diverges_cleanly(env_id):
    env = ganno_bench.make(env_id, action_mode="log_lr", decisions=5, inner_steps=5)
    env.reset(seed=0)
    huge = {a: np.array([1.0], dtype=np.float32) for a in env.agents}  # lr = 10
    obs, rewards, terminations, truncations, infos = env.step(huge)
    assert all(terminations.values()) and not any(truncations.values())
    assert set(rewards.values()) == {-env.task.divergence_penalty}
    assert all(info["diverged"] for info in infos.values())
    for agent, vector in obs.items():
        assert np.isfinite(vector).all()
        assert env.observation_space(agent).contains(vector)
    final = infos["layer_0"]
    assert math.isfinite(final["final_test_loss"]) and final["final_test_accuracy"] == 0.0
    assert env.agents == []
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(huge)


def test_penalty_is_below_any_non_diverging_return():
    task = ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0")
    worst_kept_return = -math.log(task.divergence_factor)  # val loss up to the threshold
    assert -task.divergence_penalty < worst_kept_return


def test_log_lr_actions_outside_the_box_are_clipped_to_lr_bounds():
    env = ganno_bench.make(
        "ganno/LayerLR-MLP-Easy-v0", action_mode="log_lr", decisions=2, inner_steps=1
    )
    env.reset(seed=0)
    _, _, _, _, infos = env.step({"layer_0": [-40.0], "layer_1": [-3.0], "layer_2": -2.0})
    assert infos["layer_0"]["lr"] == pytest.approx(env.task.lr_bounds[0])
    assert infos["layer_1"]["lr"] == pytest.approx(1e-3)
    assert infos["layer_2"]["lr"] == pytest.approx(1e-2)


def test_factor_actions_multiply_each_layers_rate():
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", decisions=3, inner_steps=1)
    env.reset(seed=0)
    start = env.instance.learning_rate
    _, _, _, _, infos = env.step({"layer_0": 0, "layer_1": np.int64(4), "layer_2": np.array(2)})
    assert [infos[a]["lr"] for a in env.possible_agents] == pytest.approx(
        [start * 0.5, start * 2.0, start]
    )


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ({"layer_0": 5, "layer_1": 0, "layer_2": 0}, "outside 0..4"),
        ({"layer_0": -1, "layer_1": 0, "layer_2": 0}, "outside 0..4"),
        ({"layer_0": 1.5, "layer_1": 0, "layer_2": 0}, "integer index"),
        ({"layer_0": "up", "layer_1": 0, "layer_2": 0}, "integer index"),
        ({"layer_0": 0, "layer_1": 0}, "missing \\['layer_2'\\]"),
        ({"layer_0": 0, "layer_1": 0, "layer_2": 0, "layer_9": 0}, "unknown \\['layer_9'\\]"),
    ],
)
def test_invalid_factor_actions_raise_clear_errors(actions, message):
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", decisions=2, inner_steps=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(actions)


@pytest.mark.parametrize("bad", [[float("nan")], [1.0, 2.0], "fast", None])
def test_invalid_log_lr_actions_raise_clear_errors(bad):
    env = ganno_bench.make(
        "ganno/LayerLR-MLP-Easy-v0", action_mode="log_lr", decisions=2, inner_steps=1
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action for layer_1"):
        env.step({"layer_0": [-2.0], "layer_1": bad, "layer_2": [-2.0]})


def test_bad_constructor_options_name_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", split="validation")
    with pytest.raises(ValueError, match="choose one of"):
        ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", action_mode="continuous")
    with pytest.raises(TypeError, match="decisions"):
        ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", budget=3)
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", split="test")
    with pytest.raises(ValueError, match=r"0\.\.31"):
        env.reset(options={"instance": 32})


def test_truncation_at_the_time_limit_and_telescoping_return():
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", decisions=4, inner_steps=3)
    _, infos = env.reset(seed=2)
    first_val = infos["layer_0"]["val_loss"]
    total = 0.0
    for t in range(4):
        assert env.agents
        _, rewards, terminations, truncations, infos = env.step(dict.fromkeys(env.agents, 2))
        total += rewards["layer_0"]
        assert not any(terminations.values())
        assert all(truncations.values()) == (t == 3)
    log_classes = math.log(10)
    # reward telescopes to log L_0 - log L_T (val_loss features are normalised by log C)
    expected = math.log(first_val * log_classes) - math.log(
        infos["layer_0"]["val_loss"] * log_classes
    )
    assert total == pytest.approx(expected, abs=1e-5)
    assert 0 < infos["layer_0"]["final_test_accuracy"] <= 1
