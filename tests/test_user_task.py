"""A user's own task (data set and network the suite does not ship) works end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import gymnasium
import numpy as np
import pettingzoo
import pytest
import torch
from pettingzoo.test import parallel_api_test
from torch import nn

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import load_card
from ganno_bench.benchmark.scoring import (
    load_references,
    references_file_name,
    references_path,
    rescore,
)
from ganno_bench.data.dataset import split_arrays

from .conftest import run_episode

USER_ID = "mylab/Spirals-ResMLP-v0"


def spirals():
    """Three interleaved 2-D spirals: a data set the suite does not ship."""
    rng = np.random.default_rng(0)
    n, classes = 600, 3
    t = rng.uniform(0.2, 1.0, n)
    label = rng.integers(classes, size=n)
    angle = 4.0 * t + 2 * np.pi * label / classes
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + 0.03 * rng.normal(size=(n, 2))
    return split_arrays("spirals", x, label, classes, split_seed=1)


class ResidualMLP(nn.Module):
    """A residual network the suite does not ship: in -> (block + skip) x 2 -> out."""

    def __init__(self, input_shape, num_classes, width=32):
        super().__init__()
        self.inp = nn.Linear(input_shape[0], width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        self.out = nn.Linear(width, num_classes)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.out(h)


@pytest.fixture(scope="module")
def user_task():
    return ganno_bench.register(
        id=USER_ID,
        model=ResidualMLP,
        data=spirals,
        optimizer="sgd",
        decisions=4,
        inner_steps=10,
        description="Residual MLP on three spirals",
        spaces={
            "train": {
                "log10_lr": [-1.5, -0.5],
                "init_scale": [0.9, 1.1],
                "momentum": [0.8, 0.9],
                "batch_sizes": [32, 64],
                "init_schemes": ["kaiming_uniform"],
            },
            "test-ood": {
                "log10_lr": [[-3.0, -1.5]],
                "init_scale": [[0.5, 0.9]],
                "momentum": [[0.5, 0.8]],
                "batch_sizes": [16],
                "init_schemes": ["orthogonal"],
            },
        },
        replace=True,
    )


def test_user_task_is_listed_and_passes_the_api_test(user_task):
    assert USER_ID in ganno_bench.list_envs("mylab/*")
    env = ganno_bench.make(USER_ID, decisions=2, inner_steps=2)
    assert env.possible_agents == ["layer_0", "layer_1", "layer_2", "layer_3"]
    parallel_api_test(env, num_cycles=10)


def test_user_task_trains_and_scores_end_to_end(user_task):
    env = ganno_bench.make(USER_ID, split="test")
    trace = run_episode(env, lambda obs, infos: dict.fromkeys(obs, 2), options={"instance": 0})
    final = trace["infos"][-1]["layer_0"]
    assert len(trace["rewards"]) == 4 and all(trace["truncations"][-1].values())
    # training actually happened: the return is positive and test accuracy beats chance (1/3)
    assert sum(r["layer_0"] for r in trace["rewards"]) > 0
    assert final["final_test_accuracy"] > 0.45
    assert len(env.task.frozen_instances("test-ood")) == 32


def test_user_task_through_gymnasium_and_pettingzoo(user_task):
    single = gymnasium.make(USER_ID, decisions=2, inner_steps=1)
    obs, _ = single.reset(seed=0)
    assert obs.shape == (4 * len(ganno_bench.envs.FEATURE_NAMES),)
    parallel = pettingzoo.make("parallel", USER_ID, decisions=2, inner_steps=1)
    assert len(parallel.possible_agents) == 4


def test_networks_with_parameters_outside_layers_are_refused():
    class WithNorm(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.lin = nn.Linear(input_shape[0], num_classes)
            self.norm = nn.LayerNorm(num_classes)

        def forward(self, x):
            return self.norm(self.lin(x))

    spaces = ganno_bench.envs.registry.make_spaces(
        {
            "train": {
                "log10_lr": [-2, -1],
                "init_scale": [1, 1],
                "momentum": [0.9, 0.9],
                "batch_sizes": [32],
                "init_schemes": ["kaiming_uniform"],
            },
            "test-ood": {
                "log10_lr": [-3, -2.5],
                "init_scale": [2, 2],
                "momentum": [0.5, 0.5],
                "batch_sizes": [8],
                "init_schemes": ["orthogonal"],
            },
        }
    )
    bad = ganno_bench.TaskSpec(id="mylab/Norm-v0", model=WithNorm, data=spirals, spaces=spaces)
    with pytest.raises(ValueError, match="outside any Linear/Conv2d layer"):
        ganno_bench.LayerLREnv(bad)


# --- references, scores, cards, compare and leaderboard for a user's task (issue 15, item 7)

TWIN = "mylab/LayerLR-MLP-Easy-v0"  # the suite's name in another namespace
TINY_TASK = {"decisions": 2, "inner_steps": 2, "num_frozen": 2}


@pytest.fixture(scope="module")
def twin():
    """The suite's MLP-Easy task under another namespace, with a tiny budget and frozen
    instances of its own (built from its id)."""
    shipped = ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0")
    task = dataclasses.replace(shipped, id=TWIN, frozen=None, **TINY_TASK)
    return ganno_bench.register(task, replace=True)


def test_references_are_keyed_by_the_full_id(twin, tmp_path):
    assert references_file_name("ganno/LayerLR-MLP-Easy-v0") == "LayerLR-MLP-Easy-v0.json"
    assert references_file_name(TWIN) == "mylab__LayerLR-MLP-Easy-v0.json"
    assert references_path(TWIN) is None  # no folder named: no file, never the suite's
    assert load_references(TWIN) is None
    with pytest.raises(ValueError, match="pass out_dir=FOLDER, or register the task"):
        ganno_bench.compute_references(TWIN, progress=False)
    # a file of another id is refused even when it is where this id's file would be
    shipped = references_path("ganno/LayerLR-MLP-Easy-v0")
    (tmp_path / references_file_name(TWIN)).write_bytes(shipped.read_bytes())
    with pytest.raises(ValueError, match="holds the references of 'ganno/LayerLR-MLP-Easy-v0'"):
        load_references(TWIN, tmp_path)


def test_a_user_task_gets_references_and_scores_from_python(twin, tmp_path):
    refs = tmp_path / "refs"
    written = ganno_bench.compute_references(twin, out_dir=refs, progress=False)
    assert written == [refs / "mylab__LayerLR-MLP-Easy-v0.json"]
    assert (refs / "references.partial.jsonl").exists()  # the default work file
    card = ganno_bench.evaluate(
        load_agent("constant"), [TWIN], "test", [0], references_dir=refs, progress=False
    )
    scores = [e["normalised_score"] for e in card["episodes"]]
    assert len(scores) == 2 and scores == pytest.approx([0.0, 0.0], abs=1e-9)
    for episode in card["episodes"]:
        episode["normalised_score"] = None
    assert rescore(card, references_dir=refs) == 2
    # registered with the folder, every reader finds them without the argument
    ganno_bench.register(twin, replace=True, references_dir=refs)
    try:
        assert load_references(TWIN) == load_references(TWIN, refs)
    finally:
        ganno_bench.register(twin, replace=True)


USER_MODULE = '''
"""A user's tasks: two noisy rings, a data set the suite does not ship."""
from pathlib import Path

import numpy as np
from torch import nn

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import load_card
from ganno_bench.benchmark.scoring import (
    load_references,
    references_file_name,
    references_path,
    rescore,
)
from ganno_bench.data.dataset import split_arrays


def rings():
    rng = np.random.default_rng(0)
    label = rng.integers(2, size=400)
    angle = rng.uniform(0, 2 * np.pi, 400)
    radius = 0.5 + 0.5 * label + 0.1 * rng.normal(size=400)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return split_arrays("rings", x, label, 2, split_seed=0)


def network(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))


ganno_bench.register(
    id="mylab/Rings-MLP-v0", model=network, data=rings, decisions=2, inner_steps=2,
    num_frozen=2, references_dir=Path(__file__).parent / "refs",
    spaces={
        "train": {"log10_lr": [-1.5, -0.5], "init_scale": [0.9, 1.1], "momentum": [0.8, 0.9],
                  "batch_sizes": [32], "init_schemes": ["kaiming_uniform"]},
        "test-ood": {"log10_lr": [-2.5, -2.0], "init_scale": [1.2, 1.4],
                     "momentum": [0.5, 0.7], "batch_sizes": [16],
                     "init_schemes": ["orthogonal"]},
    },
)
'''


def test_a_user_task_through_the_cli_with_import(tmp_path):
    """references, evaluate, compare and leaderboard for a task the CLI knows only through
    ``--import`` (before or after the command), each in a fresh process."""
    (tmp_path / "mylab_rings.py").write_text(USER_MODULE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "ganno_bench.cli.main", *args]
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert not check or done.returncode == 0, done.stderr
        return done

    user_id = "mylab/Rings-MLP-v0"
    unknown = cli("references", "--env", user_id, check=False)
    assert unknown.returncode == 2 and "--import MODULE" in unknown.stderr
    cli("--import", "mylab_rings", "references", "--env", user_id, "--work-file", "w.jsonl")
    reference = json.loads((tmp_path / "refs" / "mylab__Rings-MLP-v0.json").read_text())
    assert reference["env_id"] == user_id
    for agent, imports in (("constant", ("--import", "mylab_rings")), ("random", ())):
        tail = ("--import", "mylab_rings") if not imports else ()
        cli(
            *imports, "evaluate", "--agent", agent, "--env", user_id, "--seeds", "0", "1",
            "--out", f"results/{agent}.json", "--quiet", *tail,
        )  # fmt: skip
    constant = load_card(tmp_path / "results" / "constant.json")
    random_card = load_card(tmp_path / "results" / "random.json")
    assert [e["normalised_score"] for e in constant["episodes"]] == pytest.approx([0.0] * 4)
    assert all(math.isfinite(e["normalised_score"]) for e in random_card["episodes"])
    compared = cli("--import", "mylab_rings", "compare", "results/random.json",
                   "results/constant.json").stdout  # fmt: skip
    assert user_id in compared and "P(A > B)" in compared
    cli("--import=mylab_rings", "leaderboard", "--results", "results", "--out", "board")
    board = (tmp_path / "board" / "README.md").read_text()
    assert user_id in board and "constant" in board and "random" in board
