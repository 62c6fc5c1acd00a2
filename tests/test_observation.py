"""The observation builder: one call for many copies gives each copy's rows bitwise."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ganno_bench.envs.observation import (
    FEATURE_NAMES,
    HIGH,
    LOG_FLOOR,
    LOW,
    build_observation_batch,
    build_observations,
)
from ganno_bench.inner.engine import DecisionStats, LayerInfo
from ganno_bench.inner.models import LAYER_KINDS

# what engines hand over: any float64, zeros, signed and non-finite values included
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1e-310, 5e-324, 1e308, math.inf, -math.inf, math.nan]),
)


@st.composite
def copies_of_one_network(draw):
    count = draw(st.integers(1, 9))
    copies = draw(st.integers(1, 12))
    layers = [
        LayerInfo(
            draw(st.sampled_from(sorted(LAYER_KINDS))),
            draw(st.integers(1, 10**6)),
            i / max(count - 1, 1),
        )
        for i in range(count)
    ]

    def array(*shape: int) -> np.ndarray:
        return np.array(
            draw(st.lists(VALUES, min_size=math.prod(shape), max_size=math.prod(shape)))
        ).reshape(shape)

    stats = [
        DecisionStats(float(array(1)[0]), *(array(count) for _ in range(5))) for _ in range(copies)
    ]
    shared = {
        name: np.abs(array(copies))
        for name in ("val_loss", "prev_val_loss", "val_accuracy", "progress")
    }
    return layers, np.abs(array(copies, count)), stats, shared


@settings(max_examples=150, deadline=None)
@given(copies_of_one_network())
def test_a_batch_of_copies_gives_each_copy_its_own_rows_bitwise(case):
    """The batched vector env builds every copy's observation in one call; a policy must
    see exactly what the single env shows for the same numbers, wherever the copy sits
    in the batch (numpy's vector loops must not round by position)."""
    layers, rates, stats, shared = case
    batch = build_observation_batch(layers, rates, stats, num_classes=10, **shared)
    assert batch.shape == (len(stats), len(layers), len(FEATURE_NAMES))
    assert batch.dtype == np.float32
    assert np.isfinite(batch).all() and (batch >= LOW).all() and (batch <= HIGH).all()
    for c, one in enumerate(stats):
        alone = build_observations(
            layers,
            rates[c],
            one,
            num_classes=10,
            **{name: float(values[c]) for name, values in shared.items()},
        )
        np.testing.assert_array_equal(batch[c], alone)
        assert (np.signbit(batch[c]) == np.signbit(alone)).all()


def test_features_sit_in_their_named_columns():
    """A rate of 1e-3 is log10 -3 in ``log10_lr``, zero gradients hit the floor, the shared
    features repeat on every layer, and the second copy does not see the first's values."""
    layers = [LayerInfo("linear", 100, 0.0), LayerInfo("conv", 1000, 1.0)]
    zeros = np.zeros(2)
    stats = [
        DecisionStats(math.log(10), zeros, np.ones(2), zeros, zeros, zeros),
        DecisionStats(2 * math.log(10), np.full(2, 10.0), np.ones(2), zeros, zeros, zeros),
    ]
    obs = build_observation_batch(
        layers,
        np.array([[1e-3, 1e-2], [1e-1, 1.0]]),
        stats,
        val_loss=np.array([math.e, 1.0]),
        prev_val_loss=np.array([1.0, 1.0]),
        val_accuracy=np.array([0.5, 0.25]),
        progress=np.array([0.1, 0.2]),
        num_classes=10,
    )
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_allclose(obs[0, :, column["log10_lr"]], [-3, -2], rtol=1e-6)
    np.testing.assert_allclose(obs[1, :, column["log10_lr"]], [-1, 0], atol=1e-6)
    assert (obs[0, :, column["log10_grad_norm"]] == LOG_FLOOR).all()
    np.testing.assert_allclose(obs[1, :, column["log10_grad_norm"]], [1, 1], rtol=1e-6)
    np.testing.assert_allclose(obs[:, :, column["train_loss"]], [[1, 1], [2, 2]], rtol=1e-6)
    np.testing.assert_allclose(obs[0, :, column["delta_log_val_loss"]], [1, 1], rtol=1e-6)
    assert (obs[1, :, column["delta_log_val_loss"]] == 0).all()
    np.testing.assert_allclose(obs[:, :, column["val_accuracy"]], [[0.5, 0.5], [0.25, 0.25]])
    np.testing.assert_allclose(obs[:, :, column["log10_fan_in"]], [[2, 3], [2, 3]], rtol=1e-6)
    np.testing.assert_array_equal(obs[:, :, column["layer_kind"]], [[0, 1], [0, 1]])
