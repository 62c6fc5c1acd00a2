"""The ganno-bench command: list, describe, demo, freeze, bench, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganno_bench.cli.demo import DEMO_AGENTS, DEMO_TOP
from ganno_bench.cli.main import main

from .conftest import ALL_IDS


def test_list_prints_every_id(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(env_id in out for env_id in ALL_IDS)
    assert main(["list", "*LayerLR-CNN-Hard*"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ganno/")]
    assert [line.split()[0] for line in lines] == [
        "ganno/LayerLR-CNN-Hard-Adam-v0",
        "ganno/LayerLR-CNN-Hard-v0",
    ]


def test_describe_shows_agents_spaces_budget_and_splits(capsys):
    assert main(["describe", "ganno/LayerLR-CNN-Medium-v0"]) == 0
    out = capsys.readouterr().out
    assert "agents (5): layer_0, layer_1, layer_2, layer_3, layer_4" in out
    assert "20 decisions x 15 inner steps" in out
    assert "log10_grad_norm" in out and "Discrete(5)" in out
    for split in ("split train", "split test:", "split test-ood"):
        assert split in out
    assert "32 frozen instances" in out


def test_demo_shows_the_agents_and_ends_with_a_table_with_cis(capsys):
    assert main(["demo", "--decisions", "3", "--inner-steps", "2", "--instances", "2"]) == 0
    out = capsys.readouterr().out
    for agent in DEMO_AGENTS:
        assert f"[{agent}] instance 0: layer rates" in out
    table = out[out.index("episodes per agent") : out.index("committed leaderboard")]
    rows = {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}
    assert set(rows) == set(DEMO_AGENTS)
    # each IQM and probability of improvement comes with a [low, high] interval
    assert rows["random"].count("[") == 2 and rows["constant"].count("[") == 1
    assert out[: out.index("episodes per agent")].endswith("over 4 ")  # 2 instances x 2 seeds
    # then the committed cards' ranking on all frozen instances, best IQM first
    committed = out[out.index("committed leaderboard") :].splitlines()[2:]
    assert len(committed) == DEMO_TOP
    iqms = [float(line.split()[1]) for line in committed]
    assert iqms == sorted(iqms, reverse=True)
    # every one of the 32 test instances, for each of an agent's seeds
    assert all(int(line.split()[-1]) % 32 == 0 for line in committed)
    assert "-0.000" not in out  # a value that rounds to zero has no sign


def test_estimates_that_round_to_zero_print_without_a_sign():
    from ganno_bench.benchmark.stats import Estimate

    assert str(Estimate(-1e-5, -4e-4, 0.0)) == "0.000 [0.000, 0.000]"
    assert str(Estimate(-0.0006, -0.002, 0.001)) == "-0.001 [-0.002, 0.001]"


def test_unknown_id_exits_2_and_names_the_closest(capsys):
    assert main(["describe", "ganno/LayerLR-CNN-Medum-v0"]) == 2
    err = capsys.readouterr().err
    assert "unknown environment id" in err and "ganno/LayerLR-CNN-Medium-v0" in err


def test_freeze_check_agrees_with_the_shipped_files(capsys):
    assert main(["freeze", "--check"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == len(ALL_IDS) and "FAIL" not in out


def test_bench_overhead_prints_a_ratio_per_env(capsys):
    assert (
        main(
            [
                "bench",
                "overhead",
                "--env",
                "ganno/LayerLR-MLP-Easy-v0",
                "--decisions",
                "3",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("ganno/LayerLR-MLP-Easy-v0"))
    env_ms, plain_ms, ratio = (float(v) for v in row.split()[1:4])
    assert ratio == pytest.approx(env_ms / plain_ms, rel=0.01)
    assert "torch threads = 2)" in out  # the count it measured at, not the caller's


# --- the command explains itself


def _parsers(parser=None, prefix=("ganno-bench",)):
    """Every (sub-)command parser of the CLI with its command words."""
    import argparse

    from ganno_bench.cli.main import build_parser

    parser = parser or build_parser()
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*prefix, name))


def test_version_prints_the_package_version(capsys):
    from ganno_bench.version import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"ganno-bench {__version__}"


def test_bare_command_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ganno-bench")
    for command in ("list", "describe", "evaluate", "leaderboard", "verify", "train"):
        assert f"\n    {command}" in out


def test_every_option_is_described_and_help_shows_defaults(capsys):
    import argparse

    for words, parser in _parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            assert action.help, f"{' '.join(words)}: {action.dest} has no help text"
    for words in (["evaluate"], ["demo"], ["train", "ppo"], ["leaderboard"]):
        with pytest.raises(SystemExit):
            main([*words, "--help"])
        out = " ".join(capsys.readouterr().out.split())  # undo the wrapping
        assert "(default:" in out
        assert "default: None" not in out and "default: False" not in out
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "every instance runs once per seed (default: [0, 1, 2])" in out
    assert "--workers WORKERS parallel processes (default: 1)" in out


def test_help_texts_carry_no_rest_markup(capsys):
    for words, _ in _parsers():
        with pytest.raises(SystemExit):
            main([*words[1:], "--help"])
        out = capsys.readouterr().out
        for markup in ("``", ":func:", ":class:", ":mod:", ":meth:"):
            assert markup not in out, f"{' '.join(words)} --help shows {markup}"


def test_train_ppo_help_shows_ppo_and_its_settings(capsys):
    with pytest.raises(SystemExit):
        main(["train", "ppo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: ganno-bench train ppo")
    for option in ("--timesteps TIMESTEPS", "--copies", "--recurrent", "--checkpoint-every"):
        assert option in out
    assert "n_steps 40" in out and "ent_coef 0.01" in out  # baselines/ppo/config.toml
    with pytest.raises(SystemExit) as exit_:
        main(["train"])
    assert exit_.value.code == 2


def test_list_columns_line_up_for_both_tracks(capsys):
    assert main(["list"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    header, rows = lines[0], [line for line in lines if line.startswith("ganno/")]
    assert any("BatchSize" in r for r in rows) and any("LayerLR" in r for r in rows)
    for word in ("family", "difficulty", "optimiser"):  # left-aligned: start under the header
        start = header.index(word)
        assert all(row[start - 1] == " " != row[start] for row in rows), word
    for word in ("layers", "budget"):  # right-aligned: end under the header
        end = header.index(word) + len(word) if word == "layers" else len(header)
        assert all(row[end - 1] != " " and row[end : end + 1] in (" ", "") for row in rows)
    assert {len(row) for row in rows} == {len(header)}


def test_evaluate_ends_with_the_iqm_and_says_when_it_reuses_a_card(tmp_path, capsys, monkeypatch):
    import re

    import ganno_bench.benchmark.evaluation as evaluation

    out = tmp_path / "constant.json"
    command = ["evaluate", "--agent", "constant", "--env", "ganno/LayerLR-MLP-Easy-v0"]
    command += ["--seeds", "0", "--instances", "0", "1", "--decisions", "2", "--inner-steps", "2"]
    command += ["--out", str(out), "--quiet"]
    assert main(command) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: 2 episodes of constant on 1 ids" in text
    iqm = r"IQM neg_test_loss \[95% CI\] over 2 episodes on 1 ids: \S+ \[\S+, \S+\]"
    assert re.search(iqm, text)

    def no_episodes(*args, **kwargs):
        raise AssertionError("a finished card was recomputed")

    monkeypatch.setattr(evaluation, "run_episode", no_episodes)
    assert main(command) == 0
    again = capsys.readouterr().out
    assert f"reused the finished card {out}" in again and "--rerun" in again
    assert again.splitlines()[-1] == text.splitlines()[-1]  # the same IQM line
    with pytest.raises(AssertionError, match="recomputed"):
        main([*command, "--rerun"])
    Path(f"{out}.partial.jsonl").unlink()  # the journal the interrupted rerun left
    with pytest.raises(AssertionError, match="recomputed"):  # another evaluation: it runs
        main([*command[:-3], "--seeds", "1", "--out", str(out), "--quiet"])


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--copies", "4"], "--copies"),
        (["--checkpoint-every", "500", "--device", "cuda"], "--checkpoint-every, --device"),
        (["--engine", "sequential"], "--engine"),
    ],
)
def test_rllib_backend_refuses_the_sb3_paths_options_instead_of_dropping_them(
    extra, named, capsys
):
    code = main(["train", "ppo", "--backend", "rllib", "--env", "ganno/LayerLR-MLP-Easy-v0",
                 "--timesteps", "10", *extra])  # fmt: skip
    assert code == 2
    assert f"--backend rllib does not take {named}" in capsys.readouterr().err


def test_rllib_refusal_knows_the_parsers_defaults():
    """The refusal compares options with their defaults: they must be the parser's."""
    import argparse

    from ganno_bench.cli.baselines import _SB3_ONLY_DEFAULTS, add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["train", "ppo", "--env", "x"])
    assert {k: getattr(args, k) for k in _SB3_ONLY_DEFAULTS} == _SB3_ONLY_DEFAULTS
