"""Leaderboard and compare: numbers checked against independent scipy computations."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark import stats
from ganno_bench.benchmark.cards import CardError, write_card
from ganno_bench.benchmark.leaderboard import (
    compare,
    family_of,
    load_cards,
    probability_matrix,
    render_leaderboard,
    scores_for,
)
from ganno_bench.benchmark.leaderboard.plots import _ragged_mean

IDS = ["ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0"]
AGENTS = ["constant", "halve-on-plateau", "random"]
TINY = {"decisions": 3, "inner_steps": 2}
FAST = {"n_resamples": 200, "seed": 0}
TABLES = {**FAST, "plots": False}  # plotting is most of a rendering's time
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _with_scores(card: dict) -> dict:
    """A copy with made-up normalised scores (monotone in the test loss), as if shipped."""
    card = copy.deepcopy(card)
    for episode in card["episodes"]:
        episode["normalised_score"] = 2.0 - episode["final_test_loss"]
    return card


@pytest.fixture(scope="module")
def raw_cards() -> dict[str, dict]:
    """Real cards (null normalised scores): 3 agents x 2 ids x 3 instances x 2 seeds."""
    return {
        name: ganno_bench.evaluate(
            load_agent(name),
            IDS,
            "test",
            seeds=[0, 1],
            overrides=TINY,
            instances=[0, 1, 2],
            progress=False,
        )
        for name in AGENTS
    }


@pytest.fixture(scope="module")
def cards(raw_cards) -> dict[str, dict]:
    return {name: _with_scores(card) for name, card in raw_cards.items()}


def _write_all(folder: Path, cards: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, card in cards.items():
        write_card(card, folder / f"{name}.json")
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory, cards) -> Path:
    return _write_all(tmp_path_factory.mktemp("results"), cards)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, results) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("board")
    readme = render_leaderboard(results, out, **FAST)
    return out, readme.read_text()


# --- helpers that read the markdown back


def _section(md: str, split: str) -> str:
    """The markdown of one split's section."""
    start = md.index(f"## Split `{split}`")
    end = md.find("\n## ", start + 1)
    return md[start : end if end >= 0 else len(md)]


def _table(md: str, heading: str) -> list[list[str]]:
    """Rows (without the header) of the first table after ``heading``."""
    lines = md[md.index(heading) :].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def _header_of(md: str, heading: str) -> list[str]:
    lines = md[md.index(heading) :].splitlines()
    line = next(line for line in lines if line.startswith("|"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def _estimate(text: str) -> tuple[float, float, float]:
    value, low, high = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", text.strip()).groups()
    return float(value), float(low), float(high)


def _pooled_iqm(scores: dict[str, np.ndarray]) -> float:
    return float(sps.trim_mean(np.concatenate(list(scores.values())), 0.25))


def _mann_whitney(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> float:
    shared = sorted(set(x) & set(y))
    return float(
        np.mean([sps.mannwhitneyu(x[t], y[t]).statistic / (x[t].size * y[t].size) for t in shared])
    )


# --- metrics and loading


def test_scores_for_metrics(raw_cards, cards):
    card = cards["random"]
    loss = {
        t: np.array([e["final_test_loss"] for e in card["episodes"] if e["env_id"] == t])
        for t in IDS
    }
    neg = scores_for(card, "neg_test_loss")
    assert sorted(neg) == sorted(IDS)
    for t in IDS:
        np.testing.assert_array_equal(neg[t], -loss[t])
        np.testing.assert_array_equal(scores_for(card)[t], 2.0 - loss[t])
        assert np.all(scores_for(card, "final_test_accuracy")[t] >= 0)
    with pytest.raises(CardError, match="normalised_score"):
        scores_for(raw_cards["random"])
    with pytest.raises(ValueError, match="unknown metric"):
        scores_for(card, "test_loss")


def test_family_of():
    assert [family_of(i) for i in IDS] == ["MLP", "CNN"]
    assert family_of("ganno/LayerLR-CNN-Hard-Adam-v0") == "CNN"
    assert family_of("ganno/BatchSize-CNN-Hard-v0") == "CNN"
    assert family_of("someone/Unregistered-v0") == "custom"


def test_load_cards_sorted_and_validated(tmp_path, cards):
    _write_all(tmp_path, {"b": cards["random"], "a": cards["constant"]})
    loaded = load_cards(tmp_path)
    assert [c["agent"]["name"] for c in loaded] == ["constant", "random"]


@pytest.mark.parametrize("kind", ["not json", "schema"])
def test_malformed_card_names_its_file(tmp_path, cards, kind):
    _write_all(tmp_path, {"good": cards["constant"]})
    bad = tmp_path / "broken-card.json"
    if kind == "not json":
        bad.write_text("{ not json")
    else:
        card = copy.deepcopy(cards["constant"])
        del card["episodes"][0]["final_test_loss"]
        bad.write_text(json.dumps(card))
    with pytest.raises(CardError, match=r"broken-card\.json"):
        load_cards(tmp_path)
    with pytest.raises(CardError, match=r"broken-card\.json"):
        render_leaderboard(tmp_path, tmp_path / "out", **TABLES)


def test_null_normalised_scores_fail_for_that_metric_only(tmp_path, raw_cards):
    folder = _write_all(tmp_path / "res", raw_cards)
    with pytest.raises(CardError, match="normalised_score"):
        render_leaderboard(folder, tmp_path / "out", **TABLES)
    readme = render_leaderboard(folder, tmp_path / "out", metric="neg_test_loss", **TABLES)
    assert "Metric: `neg_test_loss`" in readme.read_text()


# --- the rendered leaderboard


def test_ranking_matches_independent_iqm(rendered, cards):
    _, md = rendered
    rows = _table(_section(md, "test"), "### Ranking")
    iqms = {name: _pooled_iqm(scores_for(card)) for name, card in cards.items()}
    expected = sorted(iqms, key=lambda a: (-iqms[a], a))
    assert [r[1] for r in rows] == expected
    assert [r[0] for r in rows] == ["1", "2", "3"]
    for row in rows:
        value, low, high = _estimate(row[2])
        assert value == pytest.approx(iqms[row[1]], abs=5e-4)
        assert low <= value <= high
        mean = np.mean(np.concatenate(list(scores_for(cards[row[1]]).values())))
        assert _estimate(row[3])[0] == pytest.approx(mean, abs=5e-4)
        assert row[7:] == ["2", "12", "1", "no"]


def test_family_tables_restrict_to_the_family(rendered, cards):
    _, md = rendered
    section = _section(md, "test")
    for family, env_id in (("MLP", IDS[0]), ("CNN", IDS[1])):
        rows = _table(section, f"#### {family}")
        iqms = {a: float(sps.trim_mean(scores_for(c)[env_id], 0.25)) for a, c in cards.items()}
        assert sorted(r[1] for r in rows) == sorted(AGENTS)
        for row in rows:
            assert _estimate(row[2])[0] == pytest.approx(iqms[row[1]], abs=5e-4)
            assert row[7:9] == ["1", "6"]


def test_markdown_names_every_agent_and_id(rendered, cards):
    _, md = rendered
    section = _section(md, "test")
    for name in AGENTS:
        assert name in section
    per_id = _table(section, "### Per id")
    assert sorted(r[0] for r in per_id) == sorted(IDS)
    header = _header_of(section, "### Per id")
    for row in per_id:
        for agent, cell in zip(header[1:], row[1:], strict=True):
            value, _, _ = _estimate(cell.split(" · ")[0])
            runs = scores_for(cards[agent])[row[0]]
            assert value == pytest.approx(sps.trim_mean(runs, 0.25), abs=5e-4)
            assert cell.endswith("div 0%")


def test_each_split_has_its_own_section(tmp_path, cards):
    ood = copy.deepcopy(cards["random"])
    ood["split"] = "test-ood"
    folder = _write_all(tmp_path / "res", {**cards, "random-ood": ood})
    md = render_leaderboard(folder, tmp_path / "out", **TABLES).read_text()
    assert md.index("## Split `test`") < md.index("## Split `test-ood`")
    assert len(_table(_section(md, "test"), "### Ranking")) == 3
    (row,) = _table(_section(md, "test-ood"), "### Ranking")
    assert row[1] == "random" and row[7:9] == ["2", "12"]


def test_plots_exist_are_png_and_linked(rendered):
    out, md = rendered
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    # a performance profile, and per id a learning-curve and a learning-rate figure
    assert len(links) == 1 + 2 * len(IDS)
    for link in links:
        assert link.startswith("plots/") and link.endswith(".png")
        assert (out / link).read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.relative_to(out).as_posix() for p in (out / "plots").glob("*")) == sorted(links)
    for env_id in IDS:
        assert any(env_id.split("/")[1] in link and "lrs" in link for link in links)


def test_probability_matrix_is_antisymmetric_and_mann_whitney(rendered, cards):
    scores = {name: scores_for(card) for name, card in cards.items()}
    matrix = probability_matrix(scores, **FAST)
    for a in AGENTS:
        for b in AGENTS:
            if a == b:
                continue
            ab, ba = matrix[a, b], matrix[b, a]
            assert ab.value + ba.value == pytest.approx(1.0, abs=1e-12)
            assert ab.low == pytest.approx(1.0 - ba.high, abs=1e-12)
            assert ab.value == pytest.approx(_mann_whitney(scores[a], scores[b]), abs=1e-12)
    # the markdown shows the same matrix
    _, md = rendered
    section = _section(md, "test")
    header = _header_of(section, "### Probability of improvement")[1:]
    rows = {
        r[0]: dict(zip(header, r[1:], strict=True))
        for r in _table(section, "### Probability of improvement")
    }
    for a in AGENTS:
        assert rows[a][a] == "—"
        for b in AGENTS:
            if a != b:
                assert _estimate(rows[a][b])[0] == pytest.approx(matrix[a, b].value, abs=5e-4)
                assert _estimate(rows[a][b])[0] + _estimate(rows[b][a])[0] == pytest.approx(
                    1.0, abs=1.5e-3
                )


def test_rendering_twice_is_identical_and_drops_stale_plots(tmp_path, results, rendered):
    out, md = rendered
    stale = tmp_path / "plots" / "test-curves-ganno_Gone-v0.png"
    stale.parent.mkdir()
    stale.write_bytes(PNG_MAGIC)
    again = render_leaderboard(results, tmp_path, **FAST)
    assert again.read_text() == md
    assert not stale.exists()
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == pngs
    for name in pngs:
        assert (tmp_path / "plots" / name).read_bytes() == (out / "plots" / name).read_bytes()
    seed0 = render_leaderboard(results, tmp_path / "seed0", **TABLES).read_text()
    seed1 = render_leaderboard(results, tmp_path / "seed1", **{**TABLES, "seed": 1}).read_text()
    assert seed0 != seed1  # the intervals move with the seed; the point estimates do not
    assert [r[:2] for r in _table(seed0, "### Ranking")] == [
        r[:2] for r in _table(seed1, "### Ranking")
    ]


def test_flags_and_divergence_rate_are_shown(tmp_path, cards):
    card = copy.deepcopy(cards["random"])
    card["agent"].update(compute_multiple=4, privileged=True)
    mlp = [e for e in card["episodes"] if e["env_id"] == IDS[0]]
    for episode in mlp[:3]:
        episode["diverged"] = True
    folder = _write_all(tmp_path / "res", {"random": card, "constant": cards["constant"]})
    md = render_leaderboard(folder, tmp_path / "out", **TABLES).read_text()
    rows = {r[1]: r for r in _table(md, "### Ranking")}
    assert rows["random"][9:] == ["4", "yes"]
    assert rows["constant"][9:] == ["1", "no"]
    # the divergence rate has a column of its own: 3 of random's 12 episodes
    assert _header_of(md, "### Ranking")[6] == "diverged"
    assert rows["random"][6] == "25.0%" and rows["constant"][6] == "0.0%"
    header = _header_of(md, "### Per id")
    per_id = {r[0]: dict(zip(header, r, strict=True)) for r in _table(md, "### Per id")}
    assert per_id[IDS[0]]["random"].endswith("div 50%")
    assert per_id[IDS[1]]["random"].endswith("div 0%")


# --- merging cards


def _split_by_id(card: dict) -> list[dict]:
    parts = []
    for env_id in IDS:
        part = copy.deepcopy(card)
        part["envs"] = {env_id: card["envs"][env_id]}
        part["episodes"] = [e for e in card["episodes"] if e["env_id"] == env_id]
        parts.append(part)
    return parts


def test_cards_covering_different_ids_are_merged(tmp_path, cards):
    mlp, cnn = _split_by_id(cards["random"])
    folder = _write_all(tmp_path / "res", {"random-mlp": mlp, "random-cnn": cnn})
    md = render_leaderboard(folder, tmp_path / "out", **TABLES).read_text()
    (row,) = _table(md, "### Ranking")
    assert row[1] == "random" and row[7:9] == ["2", "12"]
    assert _estimate(row[2])[0] == pytest.approx(_pooled_iqm(scores_for(cards["random"])), abs=5e-4)


def _split_by_seed(card: dict) -> list[dict]:
    parts = []
    for seed in card["seeds"]:
        part = copy.deepcopy(card)
        part["seeds"] = [seed]
        part["episodes"] = [e for e in card["episodes"] if e["seed"] == seed]
        parts.append(part)
    return parts


def test_cards_covering_different_seeds_are_merged(tmp_path, cards):
    seed0, seed1 = _split_by_seed(cards["random"])
    folder = _write_all(tmp_path / "res", {"random-s0": seed0, "random-s1": seed1})
    md = render_leaderboard(folder, tmp_path / "out", **TABLES).read_text()
    (row,) = _table(md, "### Ranking")
    assert row[1] == "random" and row[7:9] == ["2", "12"]
    assert _estimate(row[2])[0] == pytest.approx(_pooled_iqm(scores_for(cards["random"])), abs=5e-4)
    # another seed of another task version or agent config is refused, naming both files
    for edit in (
        lambda c: c["envs"][IDS[0]].update(version=9),
        lambda c: c["envs"][IDS[1]].update(overrides={"decisions": 2}),
        lambda c: c["agent"]["config"].update(decades=2.0),
    ):
        changed = copy.deepcopy(seed1)
        edit(changed)
        folder = _write_all(tmp_path / "res-bad", {"random-s0": seed0, "random-s1": changed})
        with pytest.raises(ValueError, match=r"random-s0\.json and .*random-s1\.json.*pooled"):
            render_leaderboard(folder, tmp_path / "out-bad", **TABLES)
    # the same seed twice is still an overlap, named with the seed
    folder = _write_all(tmp_path / "res2", {"random-s0": seed0, "random-all": cards["random"]})
    with pytest.raises(ValueError, match=r"random-all\.json.*random-s0\.json.*seed 0"):
        render_leaderboard(folder, tmp_path / "out2", **TABLES)


def test_overlapping_cards_raise_naming_both_files(tmp_path, cards):
    mlp, _ = _split_by_id(cards["random"])
    folder = _write_all(tmp_path / "res", {"random-all": cards["random"], "random-mlp": mlp})
    with pytest.raises(ValueError, match=r"random-all\.json.*random-mlp\.json"):
        render_leaderboard(folder, tmp_path / "out", **TABLES)


# --- compare


def _compare_rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("---"))
    return {
        re.split(r"\s{2,}", line)[0]: re.findall(r"\S+ \[\S+, \S+\]", line)
        for line in lines[first + 1 :]
        if line and not line.startswith("ids only")
    }


def test_compare_matches_independent_computations(cards):
    a, b = cards["random"], cards["constant"]
    text = compare(a, b, **FAST)
    assert "A: random" in text and "B: constant" in text
    rows = _compare_rows(text)
    sa, sb = scores_for(a), scores_for(b)
    for env_id in IDS:
        iqm_a, iqm_b, poi = (_estimate(c) for c in rows[env_id])
        assert iqm_a[0] == pytest.approx(sps.trim_mean(sa[env_id], 0.25), abs=5e-4)
        assert iqm_b[0] == pytest.approx(sps.trim_mean(sb[env_id], 0.25), abs=5e-4)
        mw = _mann_whitney({env_id: sa[env_id]}, {env_id: sb[env_id]})
        assert poi[0] == pytest.approx(mw, abs=5e-4)
        ci = stats.per_task({env_id: sa[env_id]}, **FAST)[env_id]
        assert iqm_a[1:] == pytest.approx((ci.low, ci.high), abs=5e-4)
    agg_a, agg_b, agg_poi = (_estimate(c) for c in rows["aggregate (2 ids)"])
    assert agg_a[0] == pytest.approx(_pooled_iqm(sa), abs=5e-4)
    assert agg_b[0] == pytest.approx(_pooled_iqm(sb), abs=5e-4)
    assert agg_poi[0] == pytest.approx(_mann_whitney(sa, sb), abs=5e-4)
    assert compare(a, b, **FAST) == text


def test_compare_only_over_shared_ids(cards):
    mlp, _ = _split_by_id(cards["random"])
    text = compare(mlp, cards["constant"], metric="neg_test_loss", **FAST)
    rows = _compare_rows(text)
    assert set(rows) == {IDS[0], "aggregate (1 ids)"}
    assert f"ids only in B (ignored): {IDS[1]}" in text
    neg = scores_for(mlp, "neg_test_loss")[IDS[0]]
    assert _estimate(rows[IDS[0]][0])[0] == pytest.approx(sps.trim_mean(neg, 0.25), abs=5e-4)


def test_compare_refuses_other_splits_and_disjoint_ids(cards):
    ood = copy.deepcopy(cards["constant"])
    ood["split"] = "test-ood"
    with pytest.raises(ValueError, match="different splits"):
        compare(cards["random"], ood, **FAST)
    mlp, _ = _split_by_id(cards["random"])
    _, cnn = _split_by_id(cards["constant"])
    with pytest.raises(ValueError, match="share no id"):
        compare(mlp, cnn, **FAST)


# --- plot helpers


def test_ragged_mean_skips_missing_and_non_finite():
    rows = [[1.0, 2.0, 3.0], [3.0, np.inf], [5.0]]
    np.testing.assert_array_equal(_ragged_mean(rows), [3.0, 2.0, 3.0])
    assert np.isnan(_ragged_mean([[np.nan, 1.0]])[0])


def test_experiment_reports_beside_the_leaderboard_are_linked(tmp_path, results, rendered):
    _, md = rendered
    assert "## Experiments" not in md  # none beside it
    (tmp_path / "generalisation").mkdir()
    (tmp_path / "generalisation" / "README.md").write_text("# report\n")
    linked = render_leaderboard(results, tmp_path, **TABLES).read_text()
    assert "[generalisation](generalisation/README.md)" in linked
    assert "boil/README.md" not in linked


def test_compute_table_compares_outer_loops_with_the_best_single_run_and_equal_compute():
    from ganno_bench.benchmark.leaderboard import Run
    from ganno_bench.benchmark.leaderboard.tables import Bootstrap, _compute_rows

    rng = np.random.default_rng(3)
    ids = ["ganno/a-v0", "ganno/b-v0"]

    def draws(centre: float, only: list[str] = ids) -> dict[str, np.ndarray]:
        return {k: centre + rng.normal(0, 0.1, 16) for k in only}

    scores = {
        "pbt": draws(1.0),
        "strong": draws(0.9),
        "weak": draws(0.2),
        "search": draws(0.95),
        "one-id": draws(5.0, ids[:1]),  # does not cover pbt's ids
        "oracle": draws(5.0),  # privileged: never "the best single run"
    }
    compute = {"pbt": 8.0, "search": 8.0}
    runs = [
        Run(name, "test", compute.get(name, 1.0), name == "oracle")
        for name in ["pbt", "strong", "weak", "search", "one-id", "oracle"]
    ]
    boot = Bootstrap(0, 200)
    rows = _compute_rows(runs, scores, boot)
    pbt_rows = [r for r in rows if r[0] == "pbt"]
    assert [r[4] for r in pbt_rows] == [
        "strong (best single run, 1)",
        "search (equal compute, 8)",
    ]
    expected = stats.probability_of_improvement(scores["pbt"], scores["strong"], **boot.kw)
    assert pbt_rows[0][6] == str(expected)
    assert pbt_rows[0][1:3] == ["8", "2"]
    # the other outer loop gets its own rows, and single-run agents get none
    assert {r[0] for r in rows} == {"pbt", "search"}
    # with no single-run agent covering its ids, only the equal-compute rows remain
    alone = _compute_rows([runs[0], runs[3]], scores, boot)
    assert [r[4] for r in alone if r[0] == "pbt"] == ["search (equal compute, 8)"]


# --- the batch-size track: its own sections, never aggregated with the LR track

BS_IDS = ["ganno/BatchSize-MLP-Easy-v0", "ganno/BatchSize-CNN-Easy-v0"]
BS_AGENTS = ["bs-constant", "bs-step"]
BS_TINY = {"decisions": 3, "samples_per_decision": 64}


@pytest.fixture(scope="module")
def bs_cards() -> dict[str, dict]:
    """Batch-size cards (made-up scores): 2 agents x 2 ids x 2 instances x 1 seed, and a
    card of `random` on the batch-size ids too (a name with cards on both tracks)."""
    made = {
        name: _with_scores(
            ganno_bench.evaluate(
                load_agent(name),
                BS_IDS,
                "test",
                seeds=[0],
                overrides=BS_TINY,
                instances=[0, 1],
                progress=False,
            )
        )
        for name in BS_AGENTS
    }
    both = copy.deepcopy(made["bs-step"])
    both["agent"]["name"] = "random"
    for episode in both["episodes"]:
        episode["normalised_score"] += 0.25
    return {**made, "random-bs": both}


def _bs_section(md: str, split: str) -> str:
    start = md.index(f"## Batch-size track, split `{split}`")
    end = md.find("\n## ", start + 1)
    return md[start : end if end >= 0 else len(md)]


def test_tracks_have_separate_tables_and_plots(tmp_path, cards, bs_cards):
    from ganno_bench.benchmark.leaderboard import track_of_id

    assert [track_of_id(i) for i in IDS + BS_IDS] == ["layer-lr"] * 2 + ["batch-size"] * 2
    assert track_of_id("someone/BatchSize-Mine-v0") == "batch-size"
    folder = _write_all(tmp_path / "res", {**cards, **bs_cards})
    out = tmp_path / "out"
    md = render_leaderboard(folder, out, **FAST).read_text()
    assert "never aggregated together" in md
    lr, bs = _section(md, "test"), _bs_section(md, "test")
    assert md.index("## Split `test`") < md.index("## Batch-size track, split `test`")

    # the LR section: exactly the LR-only numbers (random's batch-size episodes left out)
    rows = _table(lr, "### Ranking")
    assert sorted(r[1] for r in rows) == sorted(AGENTS)
    for row in rows:
        iqm = _pooled_iqm(scores_for(cards[row[1]]))
        assert _estimate(row[2])[0] == pytest.approx(iqm, abs=5e-4)
        assert row[7:9] == ["2", "12"]
    assert sorted(r[0] for r in _table(lr, "### Per id")) == sorted(IDS)
    assert not any(b in lr for b in BS_IDS)

    # the batch-size section: its agents over the batch-size ids only
    expected = {
        "bs-constant": scores_for(bs_cards["bs-constant"]),
        "bs-step": scores_for(bs_cards["bs-step"]),
        "random": scores_for(bs_cards["random-bs"]),
    }
    rows = _table(bs, "### Ranking")
    order = sorted(expected, key=lambda a: (-_pooled_iqm(expected[a]), a))
    assert [r[1] for r in rows] == order
    for row in rows:
        assert _estimate(row[2])[0] == pytest.approx(_pooled_iqm(expected[row[1]]), abs=5e-4)
        assert row[7:] == ["2", "4", "1", "no"]
    for family, env_id in (("MLP", BS_IDS[0]), ("CNN", BS_IDS[1])):
        for row in _table(bs, f"#### {family}"):
            iqm = float(sps.trim_mean(expected[row[1]][env_id], 0.25))
            assert _estimate(row[2])[0] == pytest.approx(iqm, abs=5e-4)
            assert row[7:9] == ["1", "2"]
    assert sorted(r[0] for r in _table(bs, "### Per id")) == sorted(BS_IDS)
    assert not any(i in bs for i in IDS)
    poi = _table(bs, "### Probability of improvement")
    assert sorted(r[0] for r in poi) == sorted(expected)

    # plots: batch-size schedules for batch-size ids, per-layer rates for LR ids
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", bs)
    assert len(links) == 1 + 2 * len(BS_IDS)
    assert all(link.startswith("plots/batch-size-test-") for link in links)
    for env_id in BS_IDS:
        slug = env_id.replace("/", "_")
        assert f"plots/batch-size-test-batch-sizes-{slug}.png" in links
        assert not (out / "plots" / f"test-lrs-{slug}.png").exists()
    for link in links:
        assert (out / link).read_bytes()[:8] == PNG_MAGIC
    lr_links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", lr)
    assert not any("batch-size" in link or "BatchSize" in link for link in lr_links)


def test_lr_only_results_render_as_before(rendered):
    _, md = rendered  # no batch-size card: no batch-size section, no note about tracks
    assert "Batch-size track" not in md and "never aggregated together" not in md


def test_the_headline_ranks_on_the_ids_every_listed_agent_covers(tmp_path, cards):
    partial = copy.deepcopy(cards["random"])  # an agent on one id only
    partial["agent"]["name"] = "one-id-agent"
    partial["episodes"] = [e for e in partial["episodes"] if e["env_id"] == IDS[0]]
    partial["envs"] = {IDS[0]: partial["envs"][IDS[0]]}
    for episode in partial["episodes"]:
        episode["normalised_score"] = 99.0  # would lead any ranking it were in
    outer = copy.deepcopy(cards["halve-on-plateau"])
    outer["agent"].update(name="outer-loop", compute_multiple=8)
    folder = _write_all(tmp_path / "res", {**cards, "one-id-agent": partial, "outer": outer})
    (tmp_path / "out" / "boil").mkdir(parents=True)
    (tmp_path / "out" / "boil" / "README.md").write_text(
        "# BOIL\n\n**Conclusion.** BOIL's claim does not hold here.\n"
    )
    md = render_leaderboard(folder, tmp_path / "out", **TABLES).read_text()
    # headline first, the card list last
    assert md.index("## Headline") < md.index("## Split `test`") < md.index("## Result cards")
    assert "\n## " not in md[md.index("## Result cards") + 1 :]
    headline = md[md.index("## Headline") : md.index("## Split `test`")]
    assert "the best 4 of 4 agents over the 2 ids all of them cover" in headline
    rows = _table(headline, "**Split `test`**")
    scores = {name: scores_for(card) for name, card in cards.items()}
    scores["outer-loop"] = scores["halve-on-plateau"]
    expected = sorted(scores, key=lambda a: (-_pooled_iqm(scores[a]), a))
    assert [r[1] for r in rows] == expected
    for row in rows:
        assert _estimate(row[2])[0] == pytest.approx(_pooled_iqm(scores[row[1]]), abs=5e-4)
        assert row[4] == ("8x" if row[1] == "outer-loop" else "1x")
    assert "one-id-agent" not in {r[1] for r in rows}
    assert "not ranked here, on fewer ids: one-id-agent (1 ids)" in headline
    assert f"**{expected[0]}** (1x) leads: {expected[0]} and {expected[1]} are" in headline
    assert "* [boil](boil/README.md), BOIL's claim" in headline
    assert headline.rstrip().endswith(": BOIL's claim does not hold here.")


def test_transformer_perplexity_is_the_iqm_of_exp_loss_beside_the_floor():
    """The perplexity table: IQM of exp(final test loss) over an agent's finished episodes
    (scipy's 25%-trimmed mean), diverged episodes counted beside it, and the floor row
    exp(the data source's Bayes-optimal loss)."""
    from ganno_bench.benchmark.leaderboard.runs import Run
    from ganno_bench.benchmark.leaderboard.tables import Bootstrap, perplexity_table
    from ganno_bench.envs.registry import spec

    lm = "ganno/LayerLR-Transformer-Easy-Adam-v0"
    losses = np.random.default_rng(3).uniform(2.0, 2.6, size=12)

    def episode(env_id, loss, diverged=False):
        return {"env_id": env_id, "final_test_loss": loss, "diverged": diverged}

    runs = [
        Run("a", "test", 1.0, False, [episode(lm, x) for x in losses] + [episode(lm, 9.0, True)]),
        Run("mlp-only", "test", 1.0, False, [episode(IDS[0], 0.5)]),
    ]
    lines = perplexity_table(runs, Bootstrap(0, 200))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in lines[2:-1]}
    assert set(rows) == {"floor (Bayes-optimal)", "a"}  # an agent without LM episodes: no row
    floor = np.exp(spec(lm).load_data().loss_floor)
    assert float(rows["floor (Bayes-optimal)"]) == pytest.approx(floor, abs=1e-3)
    value = float(rows["a"].split()[0])
    assert value == pytest.approx(sps.trim_mean(np.exp(losses), 0.25), abs=1e-3)
    assert rows["a"].endswith("div 1/13")
    assert perplexity_table(runs[1:], Bootstrap(0, 200)) == []  # no LM id: no table
