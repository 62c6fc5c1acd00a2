"""The ganno-bench command: list, describe, demo, freeze, bench, and its errors."""

from __future__ import annotations

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
        main(["bench", "overhead", "--env", "ganno/LayerLR-MLP-Easy-v0", "--decisions", "3"]) == 0
    )
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("ganno/LayerLR-MLP-Easy-v0"))
    env_ms, plain_ms, ratio = (float(v) for v in row.split()[1:4])
    assert ratio == pytest.approx(env_ms / plain_ms, rel=0.01)
