"""Bad overrides, actions and reset options meet an error that names the field (issue 15).

Every override goes through the task's one validation path, on both tracks and for
tasks users register, so each case below is checked on an LR id and a batch-size id.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ganno_bench

LR = "ganno/LayerLR-MLP-Easy-v0"
BS = "ganno/BatchSize-MLP-Easy-v0"
NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def envs():
    return {
        LR: ganno_bench.make(LR, decisions=2, inner_steps=2),
        BS: ganno_bench.make(BS, decisions=2, samples_per_decision=64),
    }


# (override, value, what the message must name)
NON_FINITE = [
    ("divergence_factor", NAN, "divergence_factor"),
    ("divergence_factor", INF, "divergence_factor"),
    ("divergence_penalty", NAN, "divergence_penalty"),
    ("factors", (0.5, NAN, 2.0), "factors"),
    ("lr_bounds", (1e-5, INF), "lr_bounds"),
]


@pytest.mark.parametrize("env_id", [LR, BS])
@pytest.mark.parametrize(("key", "value", "field"), NON_FINITE)
def test_non_finite_overrides_are_refused(env_id, key, value, field):
    with pytest.raises(ValueError, match=f"{field} must"):
        ganno_bench.make(env_id, **{key: value})


@pytest.mark.parametrize("env_id", [LR, BS])
@pytest.mark.parametrize("value", [0, -1])
def test_eval_batch_size_must_be_positive(env_id, value):
    with pytest.raises(ValueError, match="eval_batch_size must be >= 1"):
        ganno_bench.make(env_id, eval_batch_size=value)


WRONG_TYPES = [
    ("decisions", 2.5),
    ("decisions", True),
    ("decisions", "3"),
    ("decisions", np.float64(3.0)),
    ("eval_batch_size", 2.5),
    ("stats_window", None),
    ("divergence_factor", "10"),
    ("lr_bounds", 1.0),
    ("lr_bounds", "ab"),
    ("factors", {0.5: 1}),
]


@pytest.mark.parametrize("env_id", [LR, BS])
@pytest.mark.parametrize(("key", "value"), WRONG_TYPES)
def test_overrides_of_the_wrong_type_are_type_errors_naming_the_field(env_id, key, value):
    with pytest.raises(TypeError, match=f"{key} must be"):
        ganno_bench.make(env_id, **{key: value})


def test_wrong_shapes_and_types_of_track_specific_overrides():
    with pytest.raises(TypeError, match="inner_steps must be an integer"):
        ganno_bench.make(LR, inner_steps=2.5)
    with pytest.raises(ValueError, match=r"lr_bounds must be a \(low, high\) pair"):
        ganno_bench.make(LR, lr_bounds=(1.0,))
    with pytest.raises(TypeError, match=r"batch_bounds must be a .* pair of integers"):
        ganno_bench.make(BS, batch_bounds=(8.5, 512))  # never silently rounded
    with pytest.raises(TypeError, match="samples_per_decision must be an integer"):
        ganno_bench.make(BS, samples_per_decision=64.0)
    with pytest.raises(ValueError, match="lr_final_factor must be a finite number"):
        ganno_bench.make(BS, lr_final_factor=NAN)


def test_integer_overrides_take_numpy_integers_as_plain_ints():
    env = ganno_bench.make(LR, decisions=np.int64(2), inner_steps=np.int32(1))
    assert (env.task.decisions, env.task.inner_steps) == (2, 1)
    assert type(env.task.decisions) is int


def test_ids_must_be_strings():
    with pytest.raises(TypeError, match="environment id is a string"):
        ganno_bench.make(None)
    with pytest.raises(TypeError, match="environment id is a string"):
        ganno_bench.spec(3)


@pytest.mark.parametrize("env_id", [LR, BS])
@pytest.mark.parametrize("actions", [None, [0, 1, 2], 2, "keep"])
def test_step_takes_a_dict_of_actions(envs, env_id, actions):
    env = envs[env_id]
    env.reset(seed=0)
    with pytest.raises(TypeError, match=r"step\(\) takes a dict"):
        env.step(actions)


@pytest.mark.parametrize("env_id", [LR, BS])
def test_a_misspelt_reset_option_is_an_error_not_a_random_instance(envs, env_id):
    with pytest.raises(ValueError, match=r"'instnace' .*did you mean 'instance'"):
        envs[env_id].reset(seed=0, options={"instnace": 3})


@pytest.mark.parametrize("env_id", [LR, BS])
@pytest.mark.parametrize("chosen", [True, False, np.bool_(True)])
def test_a_bool_is_no_instance_index(envs, env_id, chosen):
    with pytest.raises(TypeError, match=r"options\['instance'\] must be .* got .*\(bool\)"):
        envs[env_id].reset(seed=0, options={"instance": chosen})


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ("instance", TypeError, r"reset\(options=...\) takes a dict"),
        ({"instance": {"init_seed": 1}}, TypeError, "an instance dict has exactly the keys"),
    ],
)
def test_bad_reset_options_name_the_option(envs, options, error, message):
    with pytest.raises(error, match=message):
        envs[LR].reset(seed=0, options=options)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("momentum", NAN, ValueError), ("log10_lr", INF, ValueError), ("batch_size", 0, ValueError),
     ("batch_size", True, TypeError), ("init_scheme", "zeros", ValueError)],
)  # fmt: skip
def test_an_instance_dict_is_checked_field_by_field(envs, field, value, error):
    base = ganno_bench.spec(LR).frozen_instances("test")[0].to_dict()
    with pytest.raises(error, match=rf"options\['instance'\].*{field} must"):
        envs[LR].reset(seed=0, options={"instance": {**base, field: value}})


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_reset_seeds_are_non_negative_integers(envs, seed):
    with pytest.raises((TypeError, ValueError), match=r"reset\(seed=...\)"):
        envs[LR].reset(seed=seed)


def test_registering_a_task_uses_the_same_checks(tmp_path):
    task = ganno_bench.spec(LR)
    with pytest.raises(TypeError, match="decisions must be an integer"):
        ganno_bench.TaskSpec(
            id="mylab/Checked-v0", model=task.model, data=task.data, spaces=task.spaces,
            decisions=2.5,
        )  # fmt: skip
    with pytest.raises(ValueError, match="divergence_factor must be a finite number"):
        ganno_bench.register(
            id="mylab/Checked-v0", model=task.model, data=task.data, spaces=task.spaces,
            divergence_factor=NAN,
        )  # fmt: skip
    with pytest.raises(TypeError, match="task id must be a non-empty string"):
        ganno_bench.TaskSpec(id=None, model=task.model, data=task.data, spaces=task.spaces)
    assert "mylab/Checked-v0" not in ganno_bench.list_envs()


@pytest.mark.parametrize("env_id", [LR, BS])
def test_an_instance_whose_network_starts_non_finite_is_refused(envs, env_id):
    """Found by the fuzz test: a huge init_scale gives a NaN loss before training, and
    divergence and the score's cap, measured against it, NaN final scores."""
    env = envs[env_id]
    base = ganno_bench.spec(env_id).frozen_instances("test")[0].to_dict()
    with pytest.raises(ValueError, match=r"options\['instance'\].*init_scale=1e\+30 is too large"):
        env.reset(seed=0, options={"instance": {**base, "init_scale": 1e30}})
    assert env.agents == []  # no half-started episode to step
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(dict.fromkeys(env.possible_agents, 1))


def test_the_batched_engine_refuses_a_copy_whose_network_starts_non_finite():
    """The batched episodes (vector env and batched evaluation) apply the same refusal."""
    from ganno_bench.envs.batched_episodes import BatchedEpisodes
    from ganno_bench.inner.instances import Instance

    task = ganno_bench.spec(LR).with_overrides(decisions=2, inner_steps=2)
    good = ganno_bench.spec(LR).frozen_instances("test")[0]
    bad = Instance.from_dict({**good.to_dict(), "init_scale": 1e30})
    episodes = BatchedEpisodes(task, 2)
    with pytest.raises(ValueError, match=r"options\['instance'\].*init_scale=1e\+30 is too large"):
        episodes.start({0: good, 1: bad})
    observations, _ = episodes.start({0: good})  # a good copy alone still starts
    assert np.isfinite(observations[0]).all()
