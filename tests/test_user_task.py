"""A user's own task (data set and network the suite does not ship) works end to end."""

from __future__ import annotations

import gymnasium
import numpy as np
import pettingzoo
import pytest
import torch
from pettingzoo.test import parallel_api_test
from torch import nn

import ganno_bench
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
