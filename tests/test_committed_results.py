"""The committed result cards are reproducible: re-running an episode gives its values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ganno_bench.benchmark.cards import card_files, load_card, same_processor
from ganno_bench.benchmark.evaluation import run_episode, single_threaded
from ganno_bench.benchmark.scoring import load_references
from ganno_bench.experiments.verify import agent_of

RESULTS = Path(__file__).resolve().parent.parent / "leaderboards" / "results"
CARDS = card_files(RESULTS)
# a sample of the cards, and every card made on this kind of processor (float32 results,
# and so episodes, are bitwise per processor: the README's "Same machine, same numbers")
MADE_HERE = [p for p in CARDS if same_processor(load_card(p).get("hardware"))]
RERUN = sorted(set(CARDS[::4]) | set(MADE_HERE))
BATCHED_RTOL = 1e-4


def test_results_are_committed_with_the_rendered_leaderboard():
    assert CARDS, f"no result cards in {RESULTS}"
    readme = (RESULTS.parent / "README.md").read_text()
    for path in CARDS:
        assert path.name in readme  # every card is listed in the rendered leaderboard


@pytest.mark.parametrize("card_path", RERUN, ids=lambda p: p.stem)
def test_rerunning_an_episode_reproduces_the_card(card_path):
    card = load_card(card_path)
    if card_path not in MADE_HERE:
        made = card["hardware"].get("cpu_model", "an unrecorded processor")
        pytest.skip(
            f"{card_path.name} was made on {made}, not on this processor: `ganno-bench "
            "verify` measures how far this processor's numbers drift from it"
        )
    # the quickest recorded episode among the card's MLP ones (the cheapest family to
    # rerun) where it has some, else among all: CI reruns one episode of every card
    mlp = [e for e in card["episodes"] if "MLP" in e["env_id"]] or card["episodes"]
    episode = min(mlp, key=lambda e: e["wall_time_s"])
    overrides = card["envs"][episode["env_id"]].get("overrides") or None
    with single_threaded():
        again = run_episode(
            agent_of(card, episode),
            episode["env_id"],
            card["split"],
            episode["instance"],
            episode["seed"],
            overrides,
            load_references(episode["env_id"]),
        )
    # The reference engine reruns every episode; a card the batched engine made matches
    # it within that engine's float32 tolerance (tests/test_batched_evaluation.py).
    rtol = BATCHED_RTOL if card.get("engine") == "batched" else 1e-6
    assert again["final_test_loss"] == pytest.approx(episode["final_test_loss"], rel=rtol)
    assert again["normalised_score"] == pytest.approx(
        episode["normalised_score"], rel=rtol, abs=rtol * 1e-3
    )
    np.testing.assert_allclose(again["lrs"], episode["lrs"], rtol=rtol)
