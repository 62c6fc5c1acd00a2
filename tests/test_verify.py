"""`ganno-bench verify`: committed episodes re-run here, counted bitwise / close / off."""

from __future__ import annotations

import copy

import pytest
from scipy import stats as sps

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import write_card
from ganno_bench.cli.main import main
from ganno_bench.experiments.verify import sample_episodes

EASY = "ganno/LayerLR-MLP-Easy-v0"


@pytest.fixture(scope="module")
def made_here(tmp_path_factory):
    """Two agents' cards on two instances, made on this machine (so bitwise reproducible)."""
    folder = tmp_path_factory.mktemp("results")
    cards = {}
    for name in ("constant", "halve-on-plateau"):
        cards[name] = ganno_bench.evaluate(
            load_agent(name), [EASY], "test", seeds=[0], instances=[0, 1], progress=False
        )
        write_card(cards[name], folder / f"{name}-test.json.gz")
    return folder, cards


def test_episodes_of_this_machine_match_bitwise(made_here, capsys):
    folder, _ = made_here
    assert main(["verify", "--results", str(folder), "--per-card", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "re-ran 4 committed episodes (2 per card, sample seed 0)" in out
    assert "bitwise identical: 4 of 4" in out and "further off: 0" in out
    assert "difference 0.000 (0 scores moved)" in out


def test_drift_is_counted_and_the_iqm_difference_reported(made_here, tmp_path, capsys):
    _, cards = made_here
    drifted = copy.deepcopy(cards["halve-on-plateau"])
    close, off = drifted["episodes"]
    close["final_test_loss"] *= 1 + 1e-5  # as another processor's rounding might
    close["lrs"][1][0] *= 1.002  # and a rate chosen from drifted observations
    off["final_test_loss"] *= 2
    off["normalised_score"] += 0.4
    write_card(drifted, tmp_path / "halve-on-plateau-test.json.gz")
    constant = copy.deepcopy(cards["constant"])
    constant["episodes"][0]["curves"]["val_loss"][0] *= 1 + 1e-7  # a curve, not the loss
    write_card(constant, tmp_path / "constant-test.json.gz")
    command = ["verify", "--results", str(tmp_path), "--per-card", "2", "--quiet"]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "bitwise identical: 1 of 4" in out
    assert "but some curve or rate not: 1" in out
    assert "within 0.1% of the committed final test loss: 1" in out
    assert "further off: 1 (largest: 50% on ganno/LayerLR-MLP-Easy-v0 instance 1" in out
    assert "largest relative difference of the final test loss" not in out  # said above
    assert (
        "largest relative difference of a chosen rate: 0.002 (ganno/LayerLR-MLP-Easy-v0 "
        "instance 0 seed 0, halve-on-plateau-test.json.gz)" in out
    )
    committed = [e["normalised_score"] for c in (cards["constant"], drifted) for e in c["episodes"]]
    here = [e["normalised_score"] for c in cards.values() for e in c["episodes"]]
    difference = sps.trim_mean(here, 0.25) - sps.trim_mean(committed, 0.25)
    assert f"difference {difference:.3f} (1 scores moved)" in out
    assert main([*command, "--strict"]) == 1
    assert main([*command, "--strict", "--tolerance", "1.5"]) == 0  # 50% is within 150%
    # one card by name; a card of an agent that is not shipped is named, not replayed
    user = copy.deepcopy(cards["constant"])
    user["agent"]["name"] = "my-lab-agent"
    write_card(user, tmp_path / "mine-test.json.gz")
    assert main([*command, "constant-test", "mine-test"]) == 0
    out = capsys.readouterr().out
    assert "re-ran 2 committed episodes" in out and "bitwise identical: 1 of 2" in out
    assert "not replayed: mine-test.json.gz: unknown agent 'my-lab-agent'" in out
    assert main([*command, "no-such-card"]) == 2


def test_the_sample_is_seeded_and_spread_over_the_cards(made_here):
    folder, cards = made_here
    named = [(folder / f"{name}.json.gz", card) for name, card in cards.items()]
    first = [(p, e["instance"]) for p, _, e in sample_episodes(named, 1, seed=3)]
    assert first == [(p, e["instance"]) for p, _, e in sample_episodes(named, 1, seed=3)]
    assert [p for p, _ in first] == [p for p, _ in named]  # one from each card
    picks = {tuple(e["instance"] for _, _, e in sample_episodes(named, 1, s)) for s in range(8)}
    assert len(picks) > 1
    assert len(sample_episodes(named, 5, 0)) == 4  # all a card holds, not more


def test_the_batched_engine_replays_each_cards_episodes_side_by_side(
    made_here, tmp_path, monkeypatch, capsys
):
    """--engine batched plays a card's sampled episodes of one id and seed as one batch,
    with evaluation's episode seeds, within the batched engine's tolerance of the
    reference engine's card; an agent the batched engine cannot play, and a card that
    engine made, are named, not replayed."""
    from ganno_bench.benchmark.records import episode_seed
    from ganno_bench.experiments import verify as module

    folder, cards = made_here
    random_card = ganno_bench.evaluate(
        load_agent("random"), [EASY], "test", seeds=[0, 1], instances=[0, 1], progress=False
    )
    batches = []
    real = module.play_batched

    def spy(agent, env_id, split, jobs, *args):
        batches.append(list(jobs))
        return real(agent, env_id, split, jobs, *args)

    monkeypatch.setattr(module, "play_batched", spy)
    named = [(folder / f"{n}-test.json.gz", c) for n, c in cards.items()]
    replays, skipped = module.verify(
        [*named, (tmp_path / "random-test.json", random_card)],
        per_card=4,
        progress=False,
        engine="batched",
    )
    # one batch per card and seed, the episode seeds evaluation gives them
    by_seed = [[(k, s, episode_seed(s, k)) for k in (0, 1)] for s in (0, 0, 0, 1)]
    assert batches == by_seed
    assert [(r.card, r.instance, r.seed) for r in replays] == [
        *((f"{n}-test.json.gz", k, 0) for n in cards for k in (0, 1)),
        *(("random-test.json", k, s) for k in (0, 1) for s in (0, 1)),
    ]
    assert not skipped
    for r in replays:
        assert r.loss == pytest.approx(r.committed_loss, rel=1e-4)
        assert r.rate_difference <= 1e-4
    # the random agent's rates come from its episode seed alone: a wrong seed would show
    assert all(r.rate_difference == 0 for r in replays if r.card == "random-test.json")
    outer = copy.deepcopy(cards["constant"])
    outer["agent"]["name"] = "pbt"
    write_card(outer, tmp_path / "pbt-test.json.gz")
    write_card({**cards["halve-on-plateau"], "engine": "batched"}, tmp_path / "b-test.json.gz")
    write_card(cards["constant"], tmp_path / "constant-test.json.gz")
    command = ["verify", "--results", str(tmp_path), "--engine", "batched", "--quiet"]
    assert main([*command, "--per-card", "2", "--tolerance", "1e-4", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "re-ran 2 committed episodes (2 per card, sample seed 0) on the batched engine" in out
    assert "not replayed: pbt-test.json.gz: not on the batched engine: pbt is an outer-loop" in out
    assert "not replayed: b-test.json.gz: made by the batched engine" in out
    assert "on those the differences above are the batched engine's own float32 drift" in out
    with pytest.raises(ValueError, match="engine must be one of"):
        module.verify([], engine="cuda")
