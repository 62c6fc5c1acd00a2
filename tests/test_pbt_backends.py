"""The native-vs-Tune PBT report: pairing, statistics against scipy, the verdict rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats as sps

from ganno_bench.experiments.pbt_backends import MIN_EPISODES, compare, load_runs, main

IDS = ("ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0")


def _card(agent: str, scores: dict[str, list[float]], *, losses=None, split="test") -> dict:
    episodes = []
    for env_id, values in scores.items():
        for instance, value in enumerate(values):
            loss = losses[env_id][instance] if losses else 1.0 - value / 10
            episodes.append(
                {
                    "env_id": env_id,
                    "instance": instance,
                    "seed": 0,
                    "normalised_score": value,
                    "final_test_loss": loss,
                }
            )
    config = {"backend": "ray-tune"} if agent == "pbt-tune" else {}
    return {"agent": {"name": agent, "config": config}, "split": split, "episodes": episodes}


def _conclusion(report: str) -> str:
    return next(line for line in report.splitlines() if line.startswith("**Conclusion.**"))


def test_report_statistics_match_scipy_on_the_paired_episodes():
    rng = np.random.default_rng(0)
    native = {i: list(rng.normal(0.5, 0.3, 6)) for i in IDS}
    tune = {i: list(rng.normal(0.5, 0.3, 5)) for i in IDS}  # one instance fewer per id
    report = compare(_card("pbt", native), _card("pbt-tune", tune))
    # only the shared (id, instance, seed) episodes count: 5 per id
    assert "(10 paired episodes)" in report
    pooled_native = np.concatenate([native[i][:5] for i in sorted(IDS)])
    assert f"native loop's {sps.trim_mean(pooled_native, 0.25):.3f}" in report
    pooled_tune = np.concatenate([tune[i] for i in sorted(IDS)])
    assert f"an IQM of {sps.trim_mean(pooled_tune, 0.25):.3f}" in report
    p = np.mean(
        [
            sps.mannwhitneyu(tune[i], native[i][:5]).statistic / 25
            for i in IDS
        ]
    )
    assert f"P(Tune > native) = {p:.3f}" in report


def test_verdicts_follow_the_episode_count_and_the_intervals():
    rng = np.random.default_rng(1)
    few = {IDS[0]: list(rng.normal(0, 1, MIN_EPISODES - 1))}
    assert "too few paired episodes" in _conclusion(
        compare(_card("pbt", few), _card("pbt-tune", few))
    )
    alike = {i: list(rng.normal(0, 1, 8)) for i in IDS}
    alike_too = {i: list(rng.normal(0, 1, 8)) for i in IDS}
    assert "do not differ beyond noise" in _conclusion(
        compare(_card("pbt", alike), _card("pbt-tune", alike_too))
    )
    shifted = {i: [v + 5.0 for v in alike[i]] for i in IDS}
    assert "they differ beyond noise" in _conclusion(
        compare(_card("pbt", alike), _card("pbt-tune", shifted))
    )


def test_bitwise_equal_and_lower_losses_are_counted_per_pair():
    scores = {IDS[0]: [0.1, 0.2, 0.3]}
    native = _card("pbt", scores, losses={IDS[0]: [0.30, 0.20, 0.10]})
    tune = _card("pbt-tune", scores, losses={IDS[0]: [0.30, 0.25, 0.05]})
    report = compare(native, tune)
    assert "bitwise the same test loss: 1 of 3" in report
    assert "Tune in 1, native in 1" in report


def test_cards_without_shared_episodes_are_refused():
    a = _card("pbt", {IDS[0]: [0.1]})
    b = _card("pbt-tune", {IDS[1]: [0.1]})
    with pytest.raises(ValueError, match="share no episode"):
        compare(a, b)


def _journal(path, card: dict) -> str:
    """A run's journal as the evaluation writes it: a header, then one episode a line."""
    header = {k: v for k, v in card.items() if k != "episodes"}
    lines = [{"header": header}, *card["episodes"]]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return str(path)


def test_load_runs_merges_runs_of_one_agent_and_refuses_others(tmp_path):
    first = _journal(tmp_path / "a.partial.jsonl", _card("pbt-tune", {IDS[0]: [0.1, 0.2]}))
    second = _journal(tmp_path / "b.partial.jsonl", _card("pbt-tune", {IDS[1]: [0.3]}))
    merged = load_runs([first, second])
    assert [(e["env_id"], e["instance"]) for e in merged["episodes"]] == [
        (IDS[0], 0),
        (IDS[0], 1),
        (IDS[1], 0),
    ]
    other = _journal(tmp_path / "c.partial.jsonl", _card("pbt", {IDS[0]: [0.1]}))
    with pytest.raises(ValueError, match="another agent's or split's run"):
        load_runs([first, other])
    test_ood = _journal(
        tmp_path / "d.partial.jsonl", _card("pbt-tune", {IDS[0]: [0.1]}, split="test-ood")
    )
    with pytest.raises(ValueError, match="another agent's or split's run"):
        load_runs([first, test_ood])


def test_main_writes_the_report(tmp_path):
    scores = {i: [0.1, 0.5, 0.9] for i in IDS}
    native = _journal(tmp_path / "n.partial.jsonl", _card("pbt", scores))
    tune = _journal(tmp_path / "t.partial.jsonl", _card("pbt-tune", scores))
    out = tmp_path / "sub" / "README.md"
    assert main([native, tune, str(out)]) == 0
    assert out.read_text().startswith("# PBT: native loop against Ray Tune")
    assert "(6 paired episodes)" in out.read_text()
