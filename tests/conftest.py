"""Shared fixtures: tiny budgets so every env check takes a second or two."""

from __future__ import annotations

import os

import pytest
import torch
from threadpoolctl import threadpool_limits

import ganno_bench

# Tiny networks gain nothing from intra-op threads, and oversubscribed OpenMP threads make
# a shared machine's timings erratic: one thread keeps the suite's runtime predictable.
torch.set_num_threads(1)
# The same for numpy's and scipy's BLAS (BOIL's and PBT's GP fits, sklearn): with a test
# worker per core (pytest-xdist), a BLAS that starts a thread per core spins against the
# other workers; BOIL's four-iteration test ran 7x slower so on a busy 2-core machine.
# Subprocesses (CLI tests, Ray workers) inherit the variables.
threadpool_limits(1)
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# Few decisions of few inner steps: the envs' own override options.
TINY = {"decisions": 3, "inner_steps": 2}
# The layerwise learning-rate ids (what the LR-track tests exercise), the batch-size
# track's ids, and every registered id.
SUITE_IDS = ganno_bench.list_envs("ganno/LayerLR-*")
BATCH_SIZE_IDS = ganno_bench.list_envs("ganno/BatchSize-*")
ALL_IDS = ganno_bench.list_envs()


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (batched and sequential numbers compared at one
    thread), the caller's count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


def run_episode(env, policy, *, seed=None, options=None):
    """Play one episode; return observations, rewards and the last infos (lists per step)."""
    obs, infos = env.reset(seed=seed, options=options)
    trace = {"obs": [obs], "rewards": [], "infos": [infos], "terminations": [], "truncations": []}
    while env.agents:
        obs, rewards, terminations, truncations, infos = env.step(policy(obs, infos))
        trace["obs"].append(obs)
        trace["rewards"].append(rewards)
        trace["infos"].append(infos)
        trace["terminations"].append(terminations)
        trace["truncations"].append(truncations)
    return trace
