"""RLlib PPO with one policy shared by every layer: a few iterations on Ray workers, and
the exported policy played by ``evaluate`` like the SB3 ones. Needs ray[rllib], which pins
gymnasium 1.2.2: CI runs this in a venv of its own (``.ci/run``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import validate_card

pytest.importorskip(
    "ray.rllib",
    reason='ray[rllib] is not installed (it pins gymnasium 1.2.2): in a venv of its own, '
    'pip install -c constraints.txt "gymnasium==1.2.2" -e ".[rllib,test]"',
)

EASY = "ganno/LayerLR-MLP-Easy-v0"
BUDGET = {"decisions": 3, "inner_steps": 2}


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """A few iterations, trained as if another Ray session had come first in this process:
    Tune's registry then keys its entries by that session's job id (it keeps the first
    one it saw), so an env registered there by name is lost to this session's env runners
    (``NameNotFound``, seen when the whole suite runs in one worker)."""
    import ray
    from ray.tune.registry import _global_registry

    from ganno_bench.baselines.rllib_ppo import train_rllib_ppo

    out = tmp_path_factory.mktemp("rllib") / "run"
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_global_registry, "_prefix", "0000ff00")  # another session's job
            trained = train_rllib_ppo(
                EASY, 48, out, seed=0, overrides=BUDGET, env_runners=1, batch_size=24
            )
        yield trained
    finally:
        ray.shutdown()


def test_a_few_rllib_iterations_export_a_shared_policy_evaluate_plays(policy):
    run = json.loads((policy.parent / "run.json").read_text())
    assert run["backend"] == "rllib" and run["env_id"] == EASY
    assert (policy.parent / "checkpoint" / "rllib_checkpoint.json").exists()
    agent = load_agent(str(policy))
    kwargs = {"overrides": BUDGET, "instances": [0, 1], "progress": False}
    card = ganno_bench.evaluate(agent, [EASY], "test", [0], **kwargs)
    validate_card(card)
    assert card["agent"]["config"]["backend"] == "rllib"
    lrs = np.array([e["lrs"] for e in card["episodes"]])
    assert lrs.shape == (2, 3, 3) and np.isfinite(lrs).all()
    # workers load the module from its folder and play it the same way
    again = ganno_bench.evaluate(load_agent(str(policy)), [EASY], "test", [0], workers=2, **kwargs)
    assert [e["lrs"] for e in again["episodes"]] == [e["lrs"] for e in card["episodes"]]


def test_rerunning_a_finished_run_trains_no_further(policy):
    """The run folder records its sampled timesteps: the same call returns the exported
    policy without building the algorithm or touching the checkpoint."""
    from ganno_bench.baselines.rllib_ppo import train_rllib_ppo

    run = policy.parent
    progress = json.loads((run / "progress.json").read_text())
    assert progress["timesteps"] >= 48
    stamp = (run / "checkpoint" / "rllib_checkpoint.json").stat().st_mtime_ns
    again = train_rllib_ppo(EASY, 48, run, seed=0, overrides=BUDGET, env_runners=1, batch_size=24)
    assert again == policy
    assert (run / "checkpoint" / "rllib_checkpoint.json").stat().st_mtime_ns == stamp
    assert json.loads((run / "progress.json").read_text()) == progress
