"""Property-based fuzzing of what users hand the benchmark: overrides, actions, reset
options and result-card fields, on both tracks (issue 15).

Every generated input must either work, with finite observations, rewards and infos (a
card: written and read back unchanged), or raise ``TypeError``/``ValueError`` (a card:
``CardError``) whose message names the offending field: the override, the agent whose
action it was, the reset option, the card's field path.

Two hypothesis profiles: ``ci`` (the default: a few hundred examples per property,
derandomised so CI runs are reproducible) and ``thorough`` (thousands, a fresh random
draw each run), for a run by hand::

    GANNO_FUZZ_PROFILE=thorough .venv/bin/python -m pytest -q -p no:cacheprovider \\
        tests/test_fuzz.py --hypothesis-show-statistics

Envs are built once per module and reused through ``reset``; budgets are tiny.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import CardError, load_card, validate_card, write_card

LR = "ganno/LayerLR-MLP-Easy-v0"
BS = "ganno/BatchSize-MLP-Easy-v0"
LR_TINY = {"decisions": 2, "inner_steps": 2}
BS_TINY = {"decisions": 2, "samples_per_decision": 64}

_COMMON = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
settings.register_profile("ci", max_examples=250, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=3000, **_COMMON)
PROFILE = settings.get_profile(os.environ.get("GANNO_FUZZ_PROFILE", "ci"))


def fuzzed(scale: float = 1.0) -> settings:
    """The profile's settings, ``scale`` times its examples (for the slower properties)."""
    return settings(PROFILE, max_examples=max(10, int(PROFILE.max_examples * scale)))


# --- values of every kind a user might pass

SPECIAL = st.sampled_from([math.nan, math.inf, -math.inf])


def odd(low: float, high: float) -> st.SearchStrategy:
    """Floats in ``[low, high]``, or NaN or an infinity."""
    return st.one_of(st.floats(low, high), SPECIAL)


NUMPY = st.sampled_from(
    [np.int64(2), np.int32(-1), np.uint8(3), np.float32(0.5), np.float64(np.nan), np.bool_(True)]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 8),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-4.0, 4.0),
    st.text(max_size=4),
    NUMPY,
    st.complex_numbers(max_magnitude=10),
)
MESSY = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.tuples(SCALARS, SCALARS),
    st.dictionaries(st.text(max_size=3), SCALARS, max_size=2),
    st.lists(st.lists(st.integers(-1, 3), max_size=2), max_size=2),  # ragged nesting
)


def finite_numbers(value: Any) -> bool:
    """Every number inside ``value`` (dicts, lists, arrays) is finite."""
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite_numbers(v) for v in value)
    if isinstance(value, np.ndarray):
        return bool(np.isfinite(value).all())
    if isinstance(value, float | np.floating):
        return math.isfinite(value)
    return True


def assert_finite_step(env: Any, out: tuple) -> None:
    obs, *rest, infos = out
    for agent, vector in obs.items():
        assert np.isfinite(vector).all() and env.observation_space(agent).contains(vector)
    for table in rest:  # rewards (and the flags)
        assert finite_numbers(table)
    assert finite_numbers(infos), infos


def names_one_of(exc: Exception, names: Any) -> bool:
    return any(str(name) in str(exc) for name in names)


# --- overrides


def _pair(low: int, high: int) -> st.SearchStrategy:
    return st.tuples(st.integers(low, high), st.integers(low, high))


def knob(valid: st.SearchStrategy, edge: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value (so that working inputs are played out too), else a value at
    or past the edge of the valid range, else anything at all."""
    return st.integers(0, 9).flatmap(lambda r: valid if r < 6 else edge if r < 8 else MESSY)


COMMON_OVERRIDES = {
    "decisions": knob(st.integers(1, 3), st.integers(-1, 0) | st.floats(0.5, 3.5)),
    "lr_bounds": knob(
        st.tuples(st.floats(1e-6, 1e-2), st.floats(0.1, 1e3)),
        st.tuples(odd(-1e-3, 1.0), odd(1e-6, 1e3)) | st.lists(st.floats(1e-3, 1.0), max_size=3),
    ),
    "factors": knob(
        st.lists(st.floats(0.1, 10.0), min_size=1, max_size=5),
        st.lists(odd(-1.0, 1e6), min_size=0, max_size=5),
    ),
    "divergence_factor": knob(st.floats(1.01, 1e6), odd(0.0, 1.0)),
    "divergence_penalty": knob(st.floats(0.0, 1e6), odd(-1.0, 0.0)),
    "stats_window": knob(st.integers(1, 6), st.integers(-1, 0)),
    "eval_batch_size": knob(st.integers(1, 5000), st.integers(-2, 0)),
}
LR_OVERRIDES = {
    **COMMON_OVERRIDES,
    "inner_steps": knob(st.integers(1, 3), st.integers(-1, 0) | st.floats(0.5, 3.5)),
}
BS_OVERRIDES = {
    **COMMON_OVERRIDES,
    "samples_per_decision": knob(st.integers(8, 256), st.integers(-4, 7)),
    "batch_bounds": knob(
        st.tuples(st.integers(1, 8), st.integers(256, 600)),
        _pair(-2, 200) | st.lists(st.integers(1, 64), max_size=3),
    ),
    "lr_schedule": knob(st.sampled_from(["constant", "cosine"]), st.sampled_from(["Cosine", ""])),
    "lr_final_factor": knob(st.floats(1e-6, 1.0), odd(-0.5, 1.5)),
    "probe_batch": knob(st.integers(1, 64), st.integers(-1, 0)),
    "probe_chunks": knob(st.integers(2, 10), st.integers(-1, 1)),
}


def overrides_for(strategies: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A few of the overridable keys, each with a value from its strategy."""
    keys = st.lists(st.sampled_from(sorted(strategies)), min_size=1, max_size=3, unique=True)
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: strategies[k] for k in ks}))


def check_overrides(env_id: str, tiny: dict[str, Any], overrides: dict[str, Any]) -> None:
    try:
        env = ganno_bench.make(env_id, **{**tiny, **overrides})
        env.reset(seed=0, options={"instance": 0})
    except (TypeError, ValueError) as exc:
        assert names_one_of(exc, overrides), f"{overrides}: {exc}"
        event(f"refused ({type(exc).__name__})")
        return
    task = env.task
    work = task.decisions * max(task.inner_steps, getattr(task, "samples_per_decision", 0) // 8)
    if work > 200:  # a valid but long budget (decisions=10**6): started, not played out
        event("works (budget too long to play)")
        return
    event("works")
    keep = int(np.argmin(np.abs(np.log(np.asarray(task.factors)))))  # the factor nearest 1
    while env.agents:
        assert_finite_step(env, env.step(dict.fromkeys(env.agents, keep)))


@fuzzed(0.8)
@given(overrides=overrides_for(LR_OVERRIDES))
def test_fuzz_lr_overrides(overrides):
    check_overrides(LR, LR_TINY, overrides)


@fuzzed(0.8)
@given(overrides=overrides_for(BS_OVERRIDES))
def test_fuzz_batch_size_overrides(overrides):
    check_overrides(BS, BS_TINY, overrides)


# --- actions


@pytest.fixture(scope="module")
def action_envs():
    return {
        (LR, "factor"): ganno_bench.make(LR, **LR_TINY),
        (LR, "log_lr"): ganno_bench.make(LR, action_mode="log_lr", **LR_TINY),
        (BS, "factor"): ganno_bench.make(BS, **BS_TINY),
        (BS, "absolute"): ganno_bench.make(BS, action_mode="absolute", **BS_TINY),
    }


def action_values(mode: str) -> st.SearchStrategy:
    """An agent's action: mostly valid for ``mode`` (numpy or plain, in or past the box),
    else an index, rate or size out of range, else anything."""
    valid = {
        "factor": st.integers(0, 2) | st.sampled_from([np.int64(1), np.array(0), [2]]),
        "log_lr": st.floats(-12.0, 4.0) | st.lists(st.floats(-6.0, 1.0), min_size=1, max_size=1),
        "absolute": st.floats(-10.0, 1e4) | st.lists(st.integers(1, 600), min_size=1, max_size=1),
    }[mode]
    edge = st.integers(-2, 6) | st.floats(-12.0, 600.0) | st.lists(st.floats(-6, 300), max_size=2)
    return knob(valid, edge)


@st.composite
def action_dicts(draw: Any, agents: list[str], mode: str) -> Any:
    """Mostly one value per live agent; sometimes agents missing, extra, or no dict."""
    kind = draw(st.sampled_from(["per-agent"] * 6 + ["missing", "extra", "not-a-dict"]))
    if kind == "not-a-dict":
        return draw(MESSY)
    actions = {agent: draw(action_values(mode)) for agent in agents}
    if kind == "missing":
        actions.pop(draw(st.sampled_from(agents)))
    elif kind == "extra":
        actions[draw(st.sampled_from(["layer_9", "controller_2", "", "agent"]))] = 0
    return actions


@fuzzed()
@given(data=st.data())
def test_fuzz_actions_on_both_tracks(action_envs, data):
    key = data.draw(st.sampled_from(sorted(action_envs)))
    env = action_envs[key]
    env.reset(seed=data.draw(st.integers(0, 3)), options={"instance": data.draw(st.integers(0, 3))})
    while env.agents:
        actions = data.draw(action_dicts(list(env.agents), key[1]))
        try:
            out = env.step(actions)
        except (TypeError, ValueError) as exc:
            assert names_one_of(exc, [*env.possible_agents, "step()"]), f"{actions!r}: {exc}"
            event(f"a step refused ({type(exc).__name__})")
            if data.draw(st.booleans()):
                break  # a user may give up after an error, or go on
            continue
        event("a step works")
        assert_finite_step(env, out)


# --- reset options


@pytest.fixture(scope="module")
def reset_envs():
    return {
        (LR, "train"): ganno_bench.make(LR, **LR_TINY),
        (LR, "test"): ganno_bench.make(LR, split="test", **LR_TINY),
        (BS, "train"): ganno_bench.make(BS, **BS_TINY),
        (BS, "test-ood"): ganno_bench.make(BS, split="test-ood", **BS_TINY),
    }


BASE_INSTANCE = ganno_bench.spec(LR).frozen_instances("test")[0].to_dict()
INSTANCE_FIELDS = {
    "init_seed": st.integers(-1, 2**64),
    "data_seed": st.integers(-1, 2**64),
    "init_scheme": st.sampled_from(["kaiming_uniform", "orthogonal", "zeros", ""]),
    "init_scale": st.one_of(odd(-1.0, 4.0), st.floats(1.0, 1e40)),
    "log10_lr": odd(-30.0, 30.0),
    "batch_size": st.integers(-1, 10**6),
    "momentum": odd(-0.5, 1.5),
}


@st.composite
def instance_dicts(draw: Any) -> dict[str, Any]:
    """The dict of a valid instance with one field changed, dropped, or one key added."""
    chosen = dict(BASE_INSTANCE)
    name = draw(st.sampled_from(sorted(INSTANCE_FIELDS)))
    how = draw(st.sampled_from(["plausible", "messy", "drop", "add"]))
    if how == "plausible":
        chosen[name] = draw(INSTANCE_FIELDS[name])
    elif how == "messy":
        chosen[name] = draw(MESSY)
    elif how == "drop":
        del chosen[name]
    else:
        chosen[draw(st.sampled_from(["seed", "lr", "x"]))] = 1
    return chosen


OPTION_KEYS = st.sampled_from(["instance"] * 4 + ["instnace", "Instance", "inst", "seed", "mode"])
OPTION_VALUES = st.one_of(
    st.integers(-2, 40), st.sampled_from([np.int64(1), np.uint16(2)]), instance_dicts(), MESSY
)
OPTIONS = knob(
    st.none() | st.builds(lambda k: {"instance": k}, st.integers(0, 40) | instance_dicts()),
    st.dictionaries(OPTION_KEYS, OPTION_VALUES, max_size=2),
)
SEEDS = knob(st.none() | st.integers(0, 2**40), st.integers(-3, -1) | NUMPY)
RESET_NAMES = ("options", "instance", "seed", "reset(")


@fuzzed()
@given(data=st.data(), seed=SEEDS, options=OPTIONS)
def test_fuzz_reset_options_on_both_tracks(reset_envs, data, seed, options):
    env = reset_envs[data.draw(st.sampled_from(sorted(reset_envs)))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # options unlike any known are ignored
        try:
            obs, infos = env.reset(seed=seed, options=copy.deepcopy(options))
        except (TypeError, ValueError) as exc:
            assert names_one_of(exc, RESET_NAMES), f"seed={seed!r} options={options!r}: {exc}"
            event(f"refused ({type(exc).__name__})")
            return
    event("works")
    for agent, vector in obs.items():
        assert np.isfinite(vector).all() and env.observation_space(agent).contains(vector)
    assert finite_numbers(infos)
    while env.agents:  # the chosen instance trains (or diverges) to finite numbers
        assert_finite_step(env, env.step(dict.fromkeys(env.agents, 1)))


# --- card fields


@pytest.fixture(scope="module")
def base_cards():
    lr = ganno_bench.evaluate(
        load_agent("random"), [LR], "test", [0], overrides=LR_TINY, instances=[0, 1],
        progress=False,
    )  # fmt: skip
    bs = ganno_bench.evaluate(
        load_agent("bs-step"), [BS], "test", [0], overrides=BS_TINY, instances=[0],
        progress=False,
    )  # fmt: skip
    return [json.loads(json.dumps(card)) for card in (lr, bs)]


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a node of a card (keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def names_card_field(exc: CardError, path: tuple) -> bool:
    """The error's ``field X`` is the changed field, its parent (a missing or unexpected
    key, a rule over siblings) or inside the new value; or, for a key, the message names
    it (``kind``, ``schema_version``)."""
    match = re.search(r": field (.+?): ", str(exc))
    if match:
        where = match.group(1)
        changed, parent = "/".join(map(str, path)), "/".join(map(str, path[:-1]))
        if where in (changed, parent or "(top level)") or where.startswith(changed + "/"):
            return True
    return isinstance(path[-1], str) and path[-1] in str(exc)


CARD_VALUES = st.one_of(MESSY, st.floats(-1e3, 1e3), st.integers(-2, 10**20), st.just([]))


@fuzzed()
@given(data=st.data())
def test_fuzz_card_fields(base_cards, tmp_path_factory, data):
    card = copy.deepcopy(data.draw(st.sampled_from(base_cards)))
    path = data.draw(st.sampled_from(paths(card)))
    parent = card
    for key in path[:-1]:
        parent = parent[key]
    how = data.draw(st.sampled_from(["replace", "replace", "drop", "add"]))
    if how == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif how == "add" and isinstance(parent, dict):
        parent["unexpected_field"] = 1
        path = (*path[:-1], "unexpected_field")
    else:
        parent[path[-1]] = data.draw(CARD_VALUES)
    try:
        validate_card(card)
    except CardError as exc:
        assert names_card_field(exc, path), f"{path}: {exc}"
        event("refused (CardError)")
        return
    event("works")
    folder = tmp_path_factory.mktemp("card")
    name = data.draw(st.sampled_from(["card.json", "card.json.gz"]))
    write_card(card, folder / name)
    assert load_card(folder / name) == json.loads(json.dumps(card))
