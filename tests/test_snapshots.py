"""Env snapshots: restoring one and stepping replays the original trajectory bitwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganno_bench

TINY = {"decisions": 6, "inner_steps": 3}


def _actions(env, count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    n = env.action_space(env.possible_agents[0]).n
    return [{a: int(rng.integers(n)) for a in env.possible_agents} for _ in range(count)]


def _play(env, actions) -> list:
    out = []
    for a in actions:
        obs, rewards, terms, truncs, infos = env.step(a)
        out.append((obs, rewards, terms, truncs, infos))
    return out


def _same(traj_a, traj_b) -> bool:
    for (oa, ra, ta, ua, ia), (ob, rb, tb, ub, ib) in zip(traj_a, traj_b, strict=True):
        if (ra, ta, ua, ia) != (rb, tb, ub, ib):
            return False
        if any(oa[k].tobytes() != ob[k].tobytes() for k in oa):
            return False
    return True


@pytest.mark.parametrize("env_id", ["ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-Adam-v0"])
def test_restoring_a_snapshot_replays_the_trajectory_bitwise(env_id):
    env = ganno_bench.make(env_id, split="test", **TINY)
    env.reset(options={"instance": 3})
    actions = _actions(env, TINY["decisions"])
    _play(env, actions[:2])
    snap = env.snapshot()
    original = _play(env, actions[2:])
    weights = env.trainer.final_weights()

    fresh = ganno_bench.make(env_id, split="test", **TINY)  # never reset
    fresh.restore(snap)
    assert _same(original, _play(fresh, actions[2:]))
    assert torch.equal(weights, fresh.trainer.final_weights())

    env.restore(snap)  # the same env, rewound; the snapshot was not consumed
    assert _same(original, _play(env, actions[2:]))
    env.restore(snap)
    assert _same(original, _play(env, actions[2:]))


def test_a_snapshot_is_a_copy_and_other_episodes_do_not_leak_into_it():
    env_id = "ganno/LayerLR-MLP-Easy-Adam-v0"
    env = ganno_bench.make(env_id, split="test", **TINY)
    env.reset(options={"instance": 0})
    actions = _actions(env, TINY["decisions"], seed=1)
    _play(env, actions[:3])
    snap = env.snapshot()
    kept = snap["trainer"]["weights"].clone()
    reference = _play(env, actions[3:])

    other = ganno_bench.make(env_id, split="test", **TINY)
    other.reset(options={"instance": 5})  # another instance, with its own optimiser state
    _play(other, actions[:1])
    other.restore(snap)
    assert torch.equal(snap["trainer"]["weights"], kept)
    assert _same(reference, _play(other, actions[3:]))
    assert torch.equal(snap["trainer"]["weights"], kept)  # stepping did not write into it
    # the restored env continues the snapshot's episode, not its own
    assert other.instance == env.instance


def test_different_actions_after_a_restore_give_different_weights():
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", split="test", **TINY)
    env.reset(options={"instance": 0})
    snap = env.snapshot()
    _play(env, [dict.fromkeys(env.possible_agents, 2)])
    keep = env.trainer.final_weights()
    env.restore(snap)
    _play(env, [dict.fromkeys(env.possible_agents, 4)])
    assert not torch.equal(keep, env.trainer.final_weights())


def test_snapshot_errors_name_the_problem():
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", **TINY)
    with pytest.raises(RuntimeError, match="reset"):
        env.snapshot()
    env.reset(seed=0)
    snap = env.snapshot()
    other = ganno_bench.make("ganno/LayerLR-CNN-Easy-v0", **TINY)
    with pytest.raises(ValueError, match="LayerLR-MLP-Easy-v0"):
        other.restore(snap)
    longer = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", decisions=9, inner_steps=3)
    with pytest.raises(ValueError, match="same overrides"):
        longer.restore(snap)
