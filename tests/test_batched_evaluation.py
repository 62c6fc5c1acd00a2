"""Batched evaluation: the same card as the sequential engine's, within float32 tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import load_card

IDS = ["ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-Adam-v0"]
TINY = {"decisions": 4, "inner_steps": 3}
RUN = {"split": "test", "seeds": [0, 1], "instances": [0, 1, 2], "progress": False}
RTOL = 1e-4  # measured: ~2e-7 on final losses of smooth schedules and policies


@pytest.mark.parametrize("name", ["cosine", "ppo-mlp-easy-seed0", "random"])
def test_a_batched_card_equals_the_sequential_card(name, tmp_path):
    agent = load_agent(name)
    seq = ganno_bench.evaluate(agent, IDS, overrides=TINY, **RUN)
    out = tmp_path / "card.json"
    bat = ganno_bench.evaluate(
        agent, IDS, overrides=TINY, engine="batched", batch_size=4, out=out, **RUN
    )
    assert bat["engine"] == "batched" and "engine" not in seq
    assert load_card(out)["engine"] == "batched"
    assert not (tmp_path / "card.json.partial.jsonl").exists()
    assert len(bat["episodes"]) == len(seq["episodes"]) == 2 * 3 * 2
    for a, b in zip(seq["episodes"], bat["episodes"], strict=True):
        assert (a["env_id"], a["instance"], a["seed"]) == (b["env_id"], b["instance"], b["seed"])
        assert a["diverged"] == b["diverged"]
        np.testing.assert_allclose(b["final_test_loss"], a["final_test_loss"], rtol=RTOL)
        np.testing.assert_allclose(b["final_test_accuracy"], a["final_test_accuracy"], atol=1e-3)
        np.testing.assert_allclose(b["return"], a["return"], rtol=RTOL, atol=1e-5)
        for key in a["curves"]:
            np.testing.assert_allclose(b["curves"][key], a["curves"][key], rtol=RTOL, atol=1e-5)
        np.testing.assert_allclose(b["lrs"], a["lrs"], rtol=RTOL)
    # everything but the engine and the timings is the same card
    strip = {"engine", "episodes", "created", "hardware"}
    assert {k: v for k, v in seq.items() if k not in strip} == {
        k: v for k, v in bat.items() if k not in strip
    }


@pytest.mark.parametrize(
    "env_id", ["ganno/LayerLR-Transformer-Easy-Adam-v0", "ganno/LayerLR-Transformer-Hard-Adam-v0"]
)
def test_a_batched_transformer_card_equals_the_sequential_card(env_id):
    """Both decoder kernels (the batched one on Easy, one call per slot on Hard, see
    tests/test_batched_engine.py): the card's numbers within the same tolerance."""
    agent, run = load_agent("cosine"), {**RUN, "seeds": [0]}
    tiny = {"decisions": 3, "inner_steps": 2}
    seq = ganno_bench.evaluate(agent, [env_id], overrides=tiny, **run)
    bat = ganno_bench.evaluate(agent, [env_id], overrides=tiny, engine="batched", **run)
    assert bat["engine"] == "batched" and len(bat["episodes"]) == 3
    for a, b in zip(seq["episodes"], bat["episodes"], strict=True):
        assert a["instance"] == b["instance"] and a["lrs"] == b["lrs"]
        np.testing.assert_allclose(b["final_test_loss"], a["final_test_loss"], rtol=RTOL)
        np.testing.assert_allclose(b["return"], a["return"], rtol=RTOL, atol=1e-5)
        for key in a["curves"]:
            # one flipped token of the 14,400 in Hard's validation set moves accuracy by 7e-5
            # (tests/test_batched_engine.py bounds the flips), as the MLP test allows for final
            # accuracies
            atol = 1e-3 if key == "val_accuracy" else 1e-5
            np.testing.assert_allclose(b["curves"][key], a["curves"][key], rtol=RTOL, atol=atol)


def test_the_random_agent_keeps_its_per_episode_stream():
    """Each batched episode's agent copy is reset with the episode's own seed."""
    agent = load_agent("random")
    one = ganno_bench.evaluate(
        agent, IDS[:1], overrides=TINY, engine="batched", batch_size=1, **RUN
    )
    many = ganno_bench.evaluate(
        agent, IDS[:1], overrides=TINY, engine="batched", batch_size=6, **RUN
    )
    assert [e["lrs"] for e in one["episodes"]] == [e["lrs"] for e in many["episodes"]]
    assert len({json.dumps(e["lrs"]) for e in many["episodes"]}) == len(many["episodes"])


def _batched_request(agent: str, env_id: str, overrides: dict) -> dict:
    """One instance of ``env_id`` evaluated with ``engine="batched"`` asked for."""
    return ganno_bench.evaluate(
        load_agent(agent),
        [env_id],
        overrides=overrides,
        engine="batched",
        split="test",
        seeds=[0],
        instances=[0],
        progress=False,
    )


@pytest.mark.parametrize(
    "agent, env_id, overrides, reason",
    [
        ("pbt", IDS[0], {"decisions": 2, "inner_steps": 2}, "outer-loop"),
        (
            "bs-constant",
            "ganno/BatchSize-MLP-Easy-v0",
            {"decisions": 2, "samples_per_decision": 64},
            "batch-size id",
        ),
    ],
)
def test_runs_the_batched_engine_cannot_take_keep_the_sequential_one_and_say_so(
    agent, env_id, overrides, reason
):
    with pytest.warns(RuntimeWarning, match=reason):
        card = _batched_request(agent, env_id, overrides)
    assert "engine" not in card and len(card["episodes"]) == 1


def test_bad_engine_options_are_refused():
    agent = load_agent("constant")
    with pytest.raises(ValueError, match="unknown engine"):
        ganno_bench.evaluate(agent, IDS[:1], engine="gpu", **RUN)
    with pytest.raises(ValueError, match="batch_size"):
        ganno_bench.evaluate(agent, IDS[:1], engine="batched", batch_size=0, **RUN)


def test_a_single_cnn_episode_runs_on_the_sequential_engine():
    """A batch of one CNN episode has nothing to batch on the CPU: it is played by the
    sequential engine, so its record is the sequential card's exactly."""
    agent = load_agent("cosine")
    run = {**RUN, "instances": [0, 1]}
    seq = ganno_bench.evaluate(agent, IDS[1:], overrides=TINY, **run)
    ones = ganno_bench.evaluate(
        agent, IDS[1:], overrides=TINY, engine="batched", batch_size=1, **run
    )
    pairs = ganno_bench.evaluate(
        agent, IDS[1:], overrides=TINY, engine="batched", batch_size=2, **run
    )

    def numbers(card):
        return [{k: v for k, v in e.items() if k != "wall_time_s"} for e in card["episodes"]]

    assert numbers(ones) == numbers(seq)  # bitwise: the same engine
    for a, b in zip(seq["episodes"], pairs["episodes"], strict=True):  # batched: tolerance
        np.testing.assert_allclose(b["final_test_loss"], a["final_test_loss"], rtol=RTOL)


def test_a_saved_policy_answers_a_whole_batch_in_one_forward_pass(monkeypatch):
    """Batched evaluation asks a feed-forward policy once per decision for every live
    episode (one ``predict`` over all their layers), not once per episode."""
    from stable_baselines3 import PPO

    calls = []
    predict = PPO.predict

    def counting(self, observation, *args, **kwargs):
        calls.append(len(observation))
        return predict(self, observation, *args, **kwargs)

    monkeypatch.setattr(PPO, "predict", counting)
    card = ganno_bench.evaluate(
        load_agent("ppo-mlp-easy-seed0"),
        IDS[:1],
        overrides=TINY,
        engine="batched",
        batch_size=6,
        **RUN,
    )
    layers = len(card["episodes"][0]["lrs"][0])
    assert len(card["episodes"]) == 6
    assert calls == [6 * layers] * TINY["decisions"]
