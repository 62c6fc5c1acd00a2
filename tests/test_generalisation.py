"""The generalisation reproduction: per-seed policy cards merged, table checked with scipy."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from scipy import stats as sps

import ganno_bench
from ganno_bench.baselines.files import baselines_dir
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import load_card
from ganno_bench.benchmark.leaderboard import scores_for
from ganno_bench.cli.main import main
from ganno_bench.experiments.generalisation import (
    conclusion,
    generalisation_table,
    goal_rows,
    merge_seed_cards,
    render_generalisation,
    render_overview,
    reproduce_generalisation,
    target_groups,
)
from ganno_bench.experiments.protocols import PROTOCOLS, protocol, shipped_policies

TARGETS = ("ganno/LayerLR-MLP-Hard-v0", "ganno/LayerLR-CNN-Easy-v0")
TINY = {"decisions": 3, "inner_steps": 2}
INSTANCES = [0, 1, 2]


@pytest.fixture(scope="module")
def baseline_cards() -> list[dict]:
    return [
        ganno_bench.evaluate(
            load_agent(name),
            list(TARGETS),
            "test",
            seeds=[0],
            instances=INSTANCES,
            overrides=TINY,
            progress=False,
        )
        for name in ("constant", "random")
    ]


def _reduced_run(out, baseline_cards, protocol_name: str, **kwargs) -> str:
    """A protocol on the TARGETS' first instances at a tiny budget, into ``out``."""
    return reproduce_generalisation(
        protocols=[protocol_name],
        runs_dir=out / "runs",
        results_dir=out / "results",
        out_dir=out,
        baseline_cards=baseline_cards,
        splits=["test"],
        targets=TARGETS,
        overrides=TINY,
        instances=INSTANCES,
        n_resamples=200,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, baseline_cards) -> tuple:
    out = tmp_path_factory.mktemp("gen")
    return out, _reduced_run(out, baseline_cards, "100k", policies=shipped_policies()[:2])


def test_policy_cards_of_each_seed_are_merged_with_seeds_as_training_seeds(reproduced):
    out, _ = reproduced
    cards = [load_card(out / "cards" / f"ppo-mlp-easy-seed{s}-test.json.gz") for s in (0, 1)]
    assert [c["seeds"] for c in cards] == [[0], [1]]
    merged = merge_seed_cards(cards, "ppo-mlp-easy")
    assert merged["seeds"] == [0, 1]
    assert len(merged["episodes"]) == 2 * len(TARGETS) * len(INSTANCES)
    digests = {c["checkpoint_sha256"] for c in merged["agent"]["config"]["per_seed"].values()}
    assert len(digests) == 2  # two different policies, each recorded
    with pytest.raises(ValueError, match="share seeds"):
        merge_seed_cards([cards[0], copy.deepcopy(cards[0])], "x")
    other = copy.deepcopy(cards[1])
    other["split"] = "test-ood"
    with pytest.raises(ValueError, match="split"):
        merge_seed_cards([cards[0], other], "x")
    assert not (out / "results").exists()  # a reduced run leaves the leaderboard alone


def test_table_matches_independent_scipy_computations(reproduced, baseline_cards):
    out, text = reproduced
    (table,) = json.loads((out / "table.json").read_text())["100k"]
    assert table["metric"] == "neg_test_loss"  # overridden tasks have no reference values
    assert {r["agent"] for r in table["baselines"]} == {"constant", "random"}
    cards = [load_card(out / "cards" / f"ppo-mlp-easy-seed{s}-test.json.gz") for s in (0, 1)]
    mine = scores_for(merge_seed_cards(cards, "ppo-mlp-easy"), "neg_test_loss")
    pooled = np.concatenate([mine[t] for t in sorted(mine)])
    assert table["policy"]["iqm"]["all"]["value"] == pytest.approx(sps.trim_mean(pooled, 0.25))
    assert table["policy"]["iqm"]["CNN-Easy"]["value"] == pytest.approx(
        sps.trim_mean(mine["ganno/LayerLR-CNN-Easy-v0"], 0.25)
    )
    for seed, card in zip((0, 1), cards, strict=True):  # each seed's policy alone
        alone = scores_for(card, "neg_test_loss")
        per_seed = table["policy"]["per_seed"][str(seed)]
        assert per_seed["all"]["value"] == pytest.approx(
            sps.trim_mean(np.concatenate([alone[t] for t in sorted(alone)]), 0.25)
        )
        assert per_seed["MLP-Hard"]["value"] == pytest.approx(
            sps.trim_mean(alone["ganno/LayerLR-MLP-Hard-v0"], 0.25)
        )
        assert f"ppo-mlp-easy, seed {seed} alone" in text
    for row in table["baselines"]:
        card = next(c for c in baseline_cards if c["agent"]["name"] == row["agent"])
        theirs = scores_for(card, "neg_test_loss")
        expected = np.mean(
            [
                sps.mannwhitneyu(mine[t], theirs[t]).statistic / (mine[t].size * theirs[t].size)
                for t in TARGETS
            ]
        )
        p = row["p_policy_better"]
        assert p["value"] == pytest.approx(expected)
        assert p["low"] <= p["value"] <= p["high"]
        assert row["agent"] in text
    values = [r["iqm"]["all"]["value"] for r in table["baselines"]]
    assert values == sorted(values, reverse=True)  # best baseline first
    assert (out / "README.md").read_text() == text


def test_baselines_missing_a_target_are_left_out(reproduced, baseline_cards):
    out, _ = reproduced
    cards = [load_card(out / "cards" / f"ppo-mlp-easy-seed{s}-test.json.gz") for s in (0, 1)]
    partial = copy.deepcopy(baseline_cards[0])
    partial["episodes"] = [e for e in partial["episodes"] if e["env_id"] == TARGETS[0]]
    partial["envs"] = {TARGETS[0]: partial["envs"][TARGETS[0]]}
    table = generalisation_table(
        merge_seed_cards(cards, "ppo-mlp-easy"),
        [partial, baseline_cards[1]],
        metric="neg_test_loss",
        n_resamples=50,
    )
    assert [r["agent"] for r in table["baselines"]] == ["random"]


def test_reproduce_command_with_a_missing_policy_names_the_file(tmp_path, capsys):
    code = main(
        ["reproduce", "generalisation", "--protocol", "100k", "--policy",
         str(tmp_path / "absent.zip"), "--quiet"]
    )  # fmt: skip
    assert code == 2
    assert "absent.zip" in capsys.readouterr().err


def test_a_rerun_reuses_the_finished_per_seed_cards(reproduced, monkeypatch):
    import ganno_bench.experiments.generalisation as gen

    out, _ = reproduced
    before = load_card(out / "cards" / "ppo-mlp-easy-seed1-test.json.gz")

    def refuse(*args, **kwargs):
        raise AssertionError("a finished per-seed card was evaluated again")

    monkeypatch.setattr(gen, "evaluate", refuse)
    merged = gen.evaluate_policies(
        shipped_policies()[:2],
        "test",
        out / "cards",
        targets=TARGETS,
        agent_name="ppo-mlp-easy",
        overrides=TINY,
        instances=INSTANCES,
        progress=False,
    )
    assert merged["episodes"][-1] == before["episodes"][-1]
    assert (
        gen.training_seed(out / "x-seed7.zip", 0) == 7 and gen.training_seed(out / "x.zip", 2) == 2
    )


def _committed_results(out, baseline_cards, results):
    """A results folder as the repository holds one: the baselines' cards and the reduced
    run's policy cards merged into ``ppo-mlp-easy-test.json.gz``."""
    from ganno_bench.benchmark.cards import write_card

    for card in baseline_cards:
        write_card(card, results / f"{card['agent']['name']}-test.json.gz")
    cards = [load_card(out / "cards" / f"ppo-mlp-easy-seed{s}-test.json.gz") for s in (0, 1)]
    write_card(merge_seed_cards(cards, "ppo-mlp-easy"), results / "ppo-mlp-easy-test.json.gz")
    return results


def test_the_report_re_renders_from_the_committed_cards_alone(
    reproduced, baseline_cards, tmp_path, monkeypatch, capsys
):
    import ganno_bench.experiments.generalisation as gen

    out, text = reproduced
    results = _committed_results(out, baseline_cards, tmp_path / "results")

    def refuse(*args, **kwargs):
        raise AssertionError("re-rendering evaluated something")

    monkeypatch.setattr(gen, "evaluate", refuse)
    again = render_generalisation(
        results, tmp_path / "report", runs_dir=out / "runs", splits=["test"], n_resamples=200
    )
    assert json.loads((tmp_path / "report" / "table.json").read_text()) == json.loads(
        (out / "table.json").read_text()
    )
    assert again == text  # the same report, conclusion first
    conclusions = [line for line in text.splitlines() if line.startswith("**Conclusion.**")]
    assert conclusions == [conclusions[0]]  # one protocol, one conclusion
    assert conclusions[0].startswith(
        "**Conclusion.** Protocol `100k`: Trained on LayerLR-MLP-Easy-v0, on `test` the policy"
    )
    command = ["reproduce", "generalisation", "--from-cards", "--split", "test", "--runs", "x"]
    assert main([*command, "--results", str(results), "--out", str(tmp_path / "cli")]) == 0
    assert "**Conclusion.**" in capsys.readouterr().out
    assert main([*command, "--results", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "reproduce generalisation" in capsys.readouterr().err  # no merged card there


def test_the_report_adds_the_model_families_a_policy_never_saw(
    reproduced, baseline_cards, tmp_path
):
    """The policy's cards on other ids (AGENT-on-IDS-SPLIT, AGENT-other-SPLIT) give it a
    table per family it neither trained on nor targets, against the baselines that played
    those ids; the MLP/CNN tables stay as they were."""
    from ganno_bench.benchmark.cards import write_card
    from ganno_bench.experiments.generalisation import unseen_family_cards

    out, _ = reproduced
    results = _committed_results(out, baseline_cards, tmp_path / "results")
    transformer = "ganno/LayerLR-Transformer-Easy-Adam-v0"

    def played(name):
        return ganno_bench.evaluate(
            load_agent(name), [transformer], "test", seeds=[0], instances=INSTANCES,
            overrides=TINY, progress=False,
        )  # fmt: skip

    constant, mine = played("constant"), played("random")
    write_card(constant, results / "constant-transformer-test.json.gz")
    mine["agent"]["name"] = "ppo-mlp-easy"  # as if the policy had played the transformer
    write_card(mine, results / "ppo-mlp-easy-on-transformer-test.json.gz")
    elsewhere = copy.deepcopy(mine)  # another split's card of the policy: not this table's
    elsewhere["split"] = "test-ood"
    write_card(elsewhere, results / "ppo-mlp-easy-other-test-ood.json.gz")

    by_path = {path: load_card(path) for path in sorted(results.glob("*.json.gz"))}
    (family,) = unseen_family_cards(by_path, PROTOCOLS["100k"], "test").items()
    assert family[0] == "Transformer"
    assert (
        family[1]["episodes"]
        == load_card(results / "ppo-mlp-easy-on-transformer-test.json.gz")["episodes"]
    )

    twice = dict(by_path)
    twice[results / "ppo-mlp-easy-other-test.json.gz"] = mine  # the same id and seed again
    with pytest.raises(ValueError, match=r"both hold ppo-mlp-easy on .*keep one of them"):
        unseen_family_cards(twice, PROTOCOLS["100k"], "test")

    text = render_generalisation(
        results, tmp_path / "report", runs_dir=out / "runs", splits=["test"], n_resamples=200
    )
    tables = json.loads((tmp_path / "report" / "table.json").read_text())
    assert tables["100k"] == json.loads((out / "table.json").read_text())["100k"]
    (table,) = tables["100k on Transformer"]
    assert table["targets"] == [transformer] and table["metric"] == "neg_test_loss"
    (row,) = [r for r in table["baselines"] if r["agent"] == "constant"]
    x = -np.array([e["final_test_loss"] for e in mine["episodes"]])
    y = -np.array([e["final_test_loss"] for e in constant["episodes"]])
    u = sps.mannwhitneyu(x, y).statistic / (len(x) * len(y))
    assert row["p_policy_better"]["value"] == pytest.approx(u)
    assert "**Transformer targets, a model family the policy never saw.** 100k:" in text
    assert "### `100k` on Transformer ids, split `test`: the goal" in text


def _row(agent, iqm, p, compute=1.0):
    est = {"value": iqm, "low": iqm - 0.1, "high": iqm + 0.1}
    return {
        "agent": agent,
        "compute_multiple": compute,
        "privileged": False,
        "iqm": {"all": est},
        "p_policy_better": {"value": p[0], "low": p[1], "high": p[2]},
    }


def _table(split, rows):
    policy = {"value": 0.3, "low": 0.1, "high": 0.4}
    return {
        "split": split,
        "targets": list(TARGETS),
        "train_ids": ["ganno/LayerLR-MLP-Easy-v0"],
        "policy": {"iqm": {"all": policy}},
        "baselines": rows,
    }


def test_the_conclusion_follows_the_intervals():
    ahead_of_default = _row("constant", 0.0, (0.61, 0.58, 0.65))
    behind_best = _row("tuned-cosine", 0.9, (0.36, 0.32, 0.41))
    tied_with_best = _row("tuned-cosine", 0.4, (0.52, 0.47, 0.57))
    outer = _row("grid-cosine", 1.0, (0.2, 0.1, 0.3), compute=8.0)  # not a single run
    text = conclusion([_table("test", [outer, behind_best, ahead_of_default])])
    assert "beats the default constant rate (P = 0.610 [0.580, 0.650])" in text
    assert "loses to the best single-run baseline, tuned-cosine" in text
    assert text.endswith(
        "generalises beyond the default rate but not to the level of the tuned schedules."
    )
    text = conclusion([_table("test", [tied_with_best, ahead_of_default])])
    assert "is not separated from the best single-run baseline" in text
    assert text.endswith("it matches the best tuned schedule.")
    other_policy = _row("ppo-c-ensemble-a", 1.2, (0.3, 0.2, 0.4))  # learned: not a baseline
    text = conclusion([_table("test", [other_policy, tied_with_best, ahead_of_default])])
    assert "the best single-run baseline, tuned-cosine" in text
    behind_default = _row("constant", 0.0, (0.45, 0.40, 0.49))
    text = conclusion([_table("test", [ahead_of_default]), _table("test-ood", [behind_default])])
    assert "on `test-ood` the policy has IQM 0.300 [0.100, 0.400] on 2 unseen ids" in text
    assert text.endswith("does not reliably improve on the default rate off its training ids.")


def test_target_groups_are_each_family_each_id_and_all():
    targets = PROTOCOLS["a"].targets
    groups = target_groups(targets)
    assert list(groups) == [
        "MLP",
        "CNN",
        "MLP-Medium",
        "MLP-Hard",
        "CNN-Easy",
        "CNN-Medium",
        "CNN-Hard",
        "all",
    ]
    assert groups["MLP"] == ["ganno/LayerLR-MLP-Medium-v0", "ganno/LayerLR-MLP-Hard-v0"]
    # a family's group is its Medium and Hard ids for every protocol: like for like
    assert groups["CNN"] == ["ganno/LayerLR-CNN-Medium-v0", "ganno/LayerLR-CNN-Hard-v0"]
    assert target_groups(PROTOCOLS["b"].targets)["CNN"] == groups["CNN"]
    assert groups["CNN-Easy"] == ["ganno/LayerLR-CNN-Easy-v0"]  # protocol a never saw a CNN
    assert "CNN-Easy" not in target_groups(PROTOCOLS["b"].targets)
    assert groups["CNN-Hard"] == ["ganno/LayerLR-CNN-Hard-v0"]
    assert groups["all"] == list(targets)


def test_protocols_target_only_ids_harder_than_what_they_trained_on():
    for p in PROTOCOLS.values():
        assert not set(p.train_ids) & set(p.targets)
        assert all(ganno_bench.spec(t).optimizer == "sgd" for t in (*p.train_ids, *p.targets))
        assert p.config is None or (baselines_dir() / "ppo" / p.config).exists()
        if p.trains:
            assert f"--timesteps {p.timesteps}" in p.recipe
        else:  # an ensemble of shipped policies: its file exists and names its members
            assert shipped_policies(p) == [baselines_dir() / "ppo" / p.ensemble]
            assert f"--agent {p.agent}" in p.recipe
        if p.init_from is not None:  # a warm start from another protocol's shipped policies
            assert f"--init-from baselines/ppo/{p.init_from}" in p.recipe
            assert p.init_policy(2) == baselines_dir() / "ppo" / p.init_from.replace("S", "2")
            assert all(p.init_policy(s).is_file() for s in range(3))
    known = "a, b, c, d, e, f, 100k"
    with pytest.raises(ValueError, match=f"unknown protocol 'z'; known protocols: {known}"):
        protocol("z")


def test_the_ensemble_protocol_plays_once_with_seed_0_and_is_listed_by_its_file(
    tmp_path, baseline_cards
):
    text = _reduced_run(tmp_path, baseline_cards, "c")
    card = load_card(tmp_path / "cards" / "ppo-c-ensemble-a-test.json.gz")
    assert card["seeds"] == [0]  # deterministic: one run per instance, not three copies
    assert len(card["episodes"]) == len(TARGETS) * len(INSTANCES)
    config = card["agent"]["config"]
    assert config["algorithm"] == "ensemble"
    assert [m["checkpoint"] for m in config["members"]] == [
        f"baselines/ppo/ppo-a-mlp-easy-seed{s}.zip" for s in range(3)
    ]
    assert "Policies: `ppo-c-ensemble-a.toml` (no training" in text
    assert not list(tmp_path.glob("cards/*seed*"))


def test_the_ensemble_protocol_cannot_be_trained(capsys):
    code = main(["reproduce", "generalisation", "--protocol", "c", "--train", "--quiet"])
    assert code == 2
    assert "protocol 'c' trains nothing" in capsys.readouterr().err


def test_goal_rows_follow_the_group_statistics(reproduced, baseline_cards):
    out, _ = reproduced
    cards = [load_card(out / "cards" / f"ppo-mlp-easy-seed{s}-test.json.gz") for s in (0, 1)]
    policy = merge_seed_cards(cards, "ppo-mlp-easy")
    renamed = copy.deepcopy(baseline_cards[1])  # "random", playing the goal baseline
    renamed["agent"]["name"] = "tuned-cosine"
    table = generalisation_table(policy, [renamed], metric="neg_test_loss", n_resamples=100)
    mine, theirs = scores_for(policy, "neg_test_loss"), scores_for(renamed, "neg_test_loss")
    for entry in goal_rows(table):
        versus = entry["versus"]["tuned-cosine"]
        ids = entry["ids"]
        p = np.mean(
            [
                sps.mannwhitneyu(mine[t], theirs[t]).statistic / (mine[t].size * theirs[t].size)
                for t in ids
            ]
        )
        assert versus["p_policy_better"]["value"] == pytest.approx(p)
        iqm_mine = sps.trim_mean(np.concatenate([mine[t] for t in ids]), 0.25)
        iqm_theirs = sps.trim_mean(np.concatenate([theirs[t] for t in ids]), 0.25)
        assert entry["iqm"]["value"] == pytest.approx(iqm_mine)
        assert versus["iqm_gap"] == pytest.approx(iqm_mine - iqm_theirs)
        assert versus["met"] == (iqm_mine >= iqm_theirs and p >= 0.5)
        assert "boil" not in entry["versus"]  # no BOIL card given: no column to fake


def test_the_overview_gives_each_protocols_goal_cells_and_counts_the_met_ones(
    reproduced, baseline_cards
):
    out, _ = reproduced
    cards = [load_card(out / "cards" / f"ppo-mlp-easy-seed{s}-test.json.gz") for s in (0, 1)]
    policy = merge_seed_cards(cards, "ppo-mlp-easy")
    renamed = copy.deepcopy(baseline_cards[1])
    renamed["agent"]["name"] = "tuned-cosine"
    table = generalisation_table(policy, [renamed], metric="neg_test_loss", n_resamples=100)
    entries = goal_rows(table)
    # Make the first group met and every other group not, whatever the tiny run gave.
    first = next(iter(table["groups"]))
    mine = copy.deepcopy(table)
    tuned = next(r for r in mine["baselines"] if r["agent"] == "tuned-cosine")
    for entry in entries:
        group = entry["group"]
        value = entry["iqm"]["value"] + (-1.0 if group == first else 1.0)
        tuned["iqm"][group]["value"] = value
        tuned["p_policy_better_by_group"][group]["value"] = 0.75 if group == first else 0.25
    text = render_overview([(PROTOCOLS["a"], [mine])])
    header, _, row = [line for line in text.splitlines() if line.startswith("|")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert header.split("|")[2].strip() == first
    assert cells[0] == "`a`" and cells[-1] == f"1 of {len(entries)}"
    assert cells[1] == f"**met**: {entries[0]['iqm']['value']:.3f} (+1.000, P 0.75)"
    assert all(c.endswith("(-1.000, P 0.25)") and "met" not in c for c in cells[2:-1])
    assert "`test-ood`" not in text  # no table for a split the protocol was not played on


def test_the_report_plots_training_curves_and_schedules(tmp_path, reproduced, baseline_cards):
    from ganno_bench.experiments.generalisation_plots import schedule_plots, training_curves

    runs = tmp_path / "runs"
    for seed, returns in ((0, [1.0, 2.0]), (1, [0.5, 2.5])):
        folder = PROTOCOLS["a"].run_dir(seed, runs)
        folder.mkdir(parents=True)
        lines = [json.dumps({"timesteps": 1000 * (k + 1), "mean_return": r}) for k, r in
                 enumerate(returns)]  # fmt: skip
        (folder / "evaluations.jsonl").write_text("\n".join(lines) + "\n")
    path = training_curves([PROTOCOLS["a"], PROTOCOLS["b"]], runs, tmp_path)
    assert path == tmp_path / "training-curves.png" and path.stat().st_size > 0
    assert training_curves([PROTOCOLS["b"]], runs, tmp_path) is None  # no runs of b there
    out, _ = reproduced
    cards = [load_card(out / "cards" / f"ppo-mlp-easy-seed{s}-test.json.gz") for s in (0, 1)]
    policy = merge_seed_cards(cards, "ppo-mlp-easy")
    table = generalisation_table(policy, baseline_cards, metric="neg_test_loss", n_resamples=50)
    plots = schedule_plots(PROTOCOLS["100k"], [table], [policy, *baseline_cards], tmp_path)
    assert [p.name for p in plots] == ["schedules-100k-mlp-hard-test.png"]  # the hard target


def test_policy_and_train_need_exactly_one_protocol(capsys):
    code = main(["reproduce", "generalisation", "--policy", "x.zip", "--protocol", "a",
                 "--protocol", "b", "--quiet"])  # fmt: skip
    assert code == 2
    assert "--policy and --train apply to one protocol" in capsys.readouterr().err


def test_every_id_means_the_lr_track_and_not_a_reduced_run(tmp_path):
    from ganno_bench.experiments.generalisation import layer_lr_ids

    ids = layer_lr_ids()
    assert all("/LayerLR-" in i for i in ids) and len(ids) == len(set(ids))
    assert {f"ganno/LayerLR-{f}-{d}{o}-v0" for f in ("MLP", "CNN") for d in
            ("Easy", "Medium", "Hard") for o in ("", "-Adam")} <= set(ids)  # fmt: skip
    assert set(PROTOCOLS["a"].targets) < set(ids)
    with pytest.raises(ValueError, match=r"every_id .* no budget overrides"):
        reproduce_generalisation(
            protocols=["100k"], every_id=True, overrides=TINY, out_dir=tmp_path, progress=False
        )


def test_other_ids_are_checked_and_named_for_their_cards(tmp_path):
    from ganno_bench.experiments.generalisation import _other_ids, _tag

    targets = PROTOCOLS["a"].targets
    easy = "ganno/LayerLR-Transformer-Easy-Adam-v0"
    assert _other_ids(targets, [easy, easy]) == [easy]
    assert _tag(easy) == "transformer-easy-adam"
    everything = _other_ids(targets, None)
    assert easy in everything and not set(targets) & set(everything)
    with pytest.raises(ValueError, match="not layerwise-LR ids"):
        _other_ids(targets, ["ganno/BatchSize-MLP-Easy-v0"])
    with pytest.raises(ValueError, match="this protocol's targets"):
        _other_ids(targets, [targets[0]])
    with pytest.raises(ValueError, match="not both"):
        reproduce_generalisation(
            protocols=["100k"], every_id=True, other_ids=[easy], out_dir=tmp_path,
            progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="no budget overrides"):
        reproduce_generalisation(
            protocols=["100k"], other_ids=[easy], overrides=TINY, out_dir=tmp_path,
            progress=False,
        )  # fmt: skip


def test_a_wrong_other_id_is_refused_before_anything_is_played(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(ValueError, match="not layerwise-LR ids"):
        reproduce_generalisation(
            protocols=["100k"], other_ids=["ganno/BatchSize-MLP-Easy-v0"],
            results_dir=tmp_path / "results", out_dir=tmp_path / "out", progress=False,
        )  # fmt: skip
    assert not (tmp_path / "out" / "cards").exists()
