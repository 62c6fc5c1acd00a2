"""Aggregate statistics: hand-worked values, bootstrap behaviour, validation, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from ganno_bench.benchmark.stats import (
    AGGREGATES,
    Estimate,
    aggregate,
    aggregate_all,
    iqm,
    optimality_gap,
    per_task,
    performance_profile,
    probability_of_improvement,
    train_test_gap,
)

FAST = {"n_resamples": 500}


# --- point statistics


def test_iqm_hand_worked():
    # Sorted: 1 2 | 3 4 5 6 | 7 8 -> a quarter (2 values) cut from each end.
    x = np.array([7.0, 1.0, 4.0, 8.0, 2.0, 6.0, 3.0, 5.0])
    assert iqm(x) == pytest.approx((3 + 4 + 5 + 6) / 4)


def test_iqm_is_robust_to_an_outlier():
    x = np.array([7.0, 1.0, 4.0, 8.0, 2.0, 6.0, 3.0, 5.0])
    spoiled = x.copy()
    spoiled[spoiled.argmax()] = 1e9
    assert iqm(spoiled) == pytest.approx(4.5)
    assert np.mean(spoiled) > 1e8  # while the mean is dragged off


def test_optimality_gap_hand_worked():
    x = np.array([0.5, 1.2, 0.9, 1.0])
    # Shortfalls below 1: 0.5, 0 (above), 0.1, 0 (exactly at the threshold).
    assert optimality_gap(x) == pytest.approx((0.5 + 0.0 + 0.1 + 0.0) / 4)
    # Below 2: 1.5, 0.8, 1.1, 1.0.
    assert optimality_gap(x, threshold=2.0) == pytest.approx((1.5 + 0.8 + 1.1 + 1.0) / 4)
    assert optimality_gap(np.array([1.0, 3.0])) == 0.0


def test_mean_and_median():
    x = np.array([3.0, 1.0, 10.0, 2.0])
    assert AGGREGATES["mean"](x) == pytest.approx(16 / 4)
    assert AGGREGATES["median"](x) == pytest.approx((2 + 3) / 2)
    assert set(AGGREGATES) == {"iqm", "mean", "median", "optimality_gap"}


def test_aggregate_pools_runs_of_all_tasks():
    scores = {"a": np.array([0.0, 0.0, 1.0]), "b": np.array([2.0, 10.0])}
    # Pooled runs: 0 0 1 2 10.
    assert aggregate(scores, "mean", **FAST).value == pytest.approx(13 / 5)
    assert aggregate(scores, "median", **FAST).value == pytest.approx(1.0)
    # floor(5 / 4) = 1 cut from each end: 0 1 2.
    assert aggregate(scores, "iqm", **FAST).value == pytest.approx((0 + 1 + 2) / 3)
    # Shortfalls below 1: 1 1 0 0 0.
    assert aggregate(scores, "optimality_gap", **FAST).value == pytest.approx(2 / 5)
    everything = aggregate_all(scores, **FAST)
    assert set(everything) == set(AGGREGATES)
    assert everything["mean"] == aggregate(scores, "mean", **FAST)
    for est in everything.values():
        assert est.low <= est.high


def test_estimate_str():
    assert str(Estimate(0.8123, 0.7512, 0.8661)) == "0.812 [0.751, 0.866]"


# --- probability of improvement


def test_probability_of_improvement_separated_and_tied():
    lo, hi = {"t": np.array([0.1, 0.2, 0.3])}, {"t": np.array([0.5, 0.6])}
    assert probability_of_improvement(hi, lo, **FAST) == Estimate(1.0, 1.0, 1.0)
    assert probability_of_improvement(lo, hi, **FAST) == Estimate(0.0, 0.0, 0.0)
    same = {"t": np.full(4, 0.7)}
    # Every one of the 4 x 4 pairs is a tie and counts one half.
    assert probability_of_improvement(same, same, **FAST) == Estimate(0.5, 0.5, 0.5)


def test_probability_of_improvement_with_ties_counted_by_hand():
    x, y = {"t": np.array([1.0, 2.0, 3.0])}, {"t": np.array([2.0, 2.0, 4.0])}
    # Pairs (x, y): x=1 beats nothing (0); x=2 ties 2 and 2 (1/2 + 1/2), loses to 4 (1);
    # x=3 beats 2 and 2 (2), loses to 4. Total 3 of 3 * 3 = 9 pairs.
    est = probability_of_improvement(x, y, **FAST)
    assert est.value == pytest.approx(3 / 9)
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    # The complement: P(Y > X) = 1 - P(X > Y) with ties split.
    assert probability_of_improvement(y, x, **FAST).value == pytest.approx(6 / 9)


def test_probability_of_improvement_averages_over_common_tasks():
    x = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([5.0, 6.0]), "only_x": np.array([9.0])}
    y = {"a": np.array([2.0, 2.0, 4.0]), "b": np.array([0.0, 1.0, 2.0, 3.0])}
    # Task a: 3/9 (above); task b: all 2 * 4 pairs won -> 1. Tasks weigh equally.
    est = probability_of_improvement(x, y, **FAST)
    assert est.value == pytest.approx((3 / 9 + 1.0) / 2)


def test_probability_of_improvement_matches_pair_counting():
    rng = np.random.default_rng(5)
    # Small integers: plenty of ties within and across the two arrays.
    x = {"a": rng.integers(0, 4, 7).astype(float), "b": rng.integers(0, 3, 5).astype(float)}
    y = {"a": rng.integers(0, 4, 6).astype(float), "b": rng.integers(0, 3, 9).astype(float)}

    def counted(xt: np.ndarray, yt: np.ndarray) -> float:
        wins = sum(1.0 if u > v else 0.5 if u == v else 0.0 for u in xt for v in yt)
        return wins / (len(xt) * len(yt))

    expected = (counted(x["a"], y["a"]) + counted(x["b"], y["b"])) / 2
    assert probability_of_improvement(x, y, **FAST).value == pytest.approx(expected)


# --- bootstrap intervals


def _normal_scores(rng: np.random.Generator, mu: float, n_tasks: int, n_runs: int) -> dict:
    return {f"t{i}": rng.normal(mu, 0.2, n_runs) for i in range(n_tasks)}


def test_iqm_ci_covers_true_normal_iqm():
    # For N(mu, s) the IQM is mu by symmetry.
    mu, hits = 0.7, 0
    for rep in range(100):
        scores = _normal_scores(np.random.default_rng(rep), mu, n_tasks=3, n_runs=10)
        est = aggregate(scores, "iqm", n_resamples=500, seed=rep)
        assert est.low <= est.value <= est.high
        hits += est.low <= mu <= est.high
    assert hits >= 85, hits


def test_iqm_ci_covers_true_exponential_iqm():
    # IQM of Exp(1): the mean over the middle half, 2 * integral_{q1}^{q3} x e^-x dx.
    dist = sps.expon()
    q1, q3 = dist.ppf([0.25, 0.75])
    true_iqm = integrate.quad(lambda v: v * dist.pdf(v), q1, q3)[0] / 0.5
    # Closed form as a cross-check: q = -ln(1 - p), integral of x e^-x is -(x + 1) e^-x.
    closed = 2 * ((q1 + 1) * np.exp(-q1) - (q3 + 1) * np.exp(-q3))
    assert true_iqm == pytest.approx(closed)
    hits = 0
    for rep in range(100):
        rng = np.random.default_rng(10_000 + rep)
        scores = {f"t{i}": rng.exponential(1.0, 10) for i in range(4)}
        est = aggregate(scores, "iqm", n_resamples=500, seed=rep)
        hits += est.low <= true_iqm <= est.high
    assert hits >= 85, hits


def _two_strata() -> dict:
    # Very different means and sizes, little spread inside each task.
    return {"small": np.linspace(0.0, 0.02, 5), "large": np.linspace(10.0, 10.02, 50)}


def test_bootstrap_is_stratified():
    scores = _two_strata()
    est = aggregate(scores, "mean", n_resamples=1000)
    small, large = scores["small"], scores["large"]
    # Every stratified resample keeps 5 "small" and 50 "large" runs, so its pooled mean lies
    # between these bounds. A resample of the 55 pooled runs mostly does not (it rarely
    # draws exactly 5 small runs), and its 95% interval spans about +-1.5.
    bound_low = (5 * small.min() + 50 * large.min()) / 55
    bound_high = (5 * small.max() + 50 * large.max()) / 55
    assert bound_low <= est.low <= est.value <= est.high <= bound_high
    pooled = sps.bootstrap(
        (np.concatenate([small, large]),),
        np.mean,
        n_resamples=1000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert (est.high - est.low) < 0.01 * (pooled.high - pooled.low)


def test_bootstrap_agrees_with_a_direct_stratified_resampling():
    rng = np.random.default_rng(7)
    scores = {"a": rng.normal(0.5, 0.3, 12), "b": rng.normal(1.5, 0.1, 30)}
    est = aggregate(scores, "mean", n_resamples=4000, seed=1)
    # Independent re-implementation: resample each task's runs by index, pool, average.
    draw = np.random.default_rng(123)
    means = np.array(
        [
            np.mean(np.concatenate([v[draw.integers(0, v.size, v.size)] for v in scores.values()]))
            for _ in range(4000)
        ]
    )
    low, high = np.quantile(means, [0.025, 0.975])
    half = (high - low) / 2
    assert est.value == pytest.approx(np.mean(np.concatenate(list(scores.values()))))
    assert est.low == pytest.approx(low, abs=0.1 * half)
    assert est.high == pytest.approx(high, abs=0.1 * half)


def test_single_run_and_degenerate_tasks_collapse_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert aggregate({"a": np.array([0.5])}, **FAST) == Estimate(0.5, 0.5, 0.5)
        # All runs of each task equal: every stratified resample is the same data.
        const = {"a": np.full(3, 0.1), "b": np.full(5, 0.2), "c": np.array([0.7])}
        for name, est in aggregate_all(const, **FAST).items():
            assert est.low == est.value == est.high, name
        # Only one task varies; the single-run task is held fixed and does not crash.
        mixed = {"a": np.array([0.2, 0.4, 0.6]), "b": np.array([1.0])}
        est = aggregate(mixed, "mean", **FAST)
        assert est.value == pytest.approx((0.2 + 0.4 + 0.6 + 1.0) / 4)
        # The single run of b is in every resample: the mean is at least (3 * 0.2 + 1) / 4.
        assert (3 * 0.2 + 1.0) / 4 - 1e-12 <= est.low < est.high <= (3 * 0.6 + 1.0) / 4 + 1e-12


def test_per_task_estimates():
    scores = {"b": np.array([1.0, 2.0, 3.0, 4.0]), "a": np.array([2.0, 2.0])}
    out = per_task(scores, "mean", **FAST)
    assert list(out) == ["a", "b"]
    assert out["a"] == Estimate(2.0, 2.0, 2.0)
    assert out["b"].value == pytest.approx(2.5)
    assert 1.0 <= out["b"].low < 2.5 < out["b"].high <= 4.0
    # A task's estimate does not depend on the other tasks present.
    assert per_task({"b": scores["b"]}, "mean", **FAST)["b"] == out["b"]


# --- performance profile


def test_performance_profile_hand_worked():
    scores = {"a": np.array([0.1, 0.5, 0.9, 1.3]), "b": np.array([0.2, 1.0])}
    taus = np.array([0.0, 0.5, 1.0, 2.0])
    values, lows, highs = performance_profile(scores, taus, **FAST)
    # Fraction strictly above tau, per task, then averaged over the two tasks:
    # tau=0: a 4/4, b 2/2; tau=0.5: a 2/4 (0.9, 1.3), b 1/2 (1.0);
    # tau=1: a 1/4 (1.3), b 0/2 (1.0 is not above 1); tau=2: none.
    expected = [(1 + 1) / 2, (2 / 4 + 1 / 2) / 2, (1 / 4 + 0) / 2, 0.0]
    np.testing.assert_allclose(values, expected)
    assert values.shape == lows.shape == highs.shape == taus.shape
    assert np.all(lows <= values + 1e-12) and np.all(values <= highs + 1e-12)
    assert lows[0] == highs[0] == 1.0 and lows[-1] == highs[-1] == 0.0


def test_performance_profile_is_non_increasing():
    rng = np.random.default_rng(3)
    scores = {f"t{i}": rng.normal(0.8, 0.4, 6 + 3 * i) for i in range(4)}
    pooled = np.concatenate(list(scores.values()))
    # From below every score (all runs above) to the largest score (none strictly above).
    taus = np.linspace(pooled.min() - 0.1, pooled.max(), 41)
    values, lows, highs = performance_profile(scores, taus, **FAST)
    for curve in (values, lows, highs):
        assert np.all(np.diff(curve) <= 1e-12)
    assert values[0] == 1.0 and values[-1] == 0.0


# --- train-test gap


def test_train_test_gap_hand_worked():
    train = {"a": np.array([1.0, 0.8]), "b": np.array([0.6])}
    test = {"a": np.array([0.5, 0.7]), "b": np.array([0.3]), "only_test": np.array([9.0])}
    # Common tasks a, b: train mean (1.0 + 0.8 + 0.6) / 3 = 0.8, test (0.5 + 0.7 + 0.3) / 3 = 0.5.
    gap = train_test_gap(train, test, **FAST)
    assert gap.value == pytest.approx(0.8 - 0.5)
    assert 0.0 < gap.low <= gap.value <= gap.high
    # Resampled train means of a lie in [0.8, 1.0], test in [0.5, 0.7]; b is fixed.
    assert gap.low >= (0.8 + 0.8 + 0.6) / 3 - (0.7 + 0.7 + 0.3) / 3 - 1e-12
    assert gap.high <= (1.0 + 1.0 + 0.6) / 3 - (0.5 + 0.5 + 0.3) / 3 + 1e-12
    reverse = train_test_gap(test, train, **FAST)
    assert reverse.value == pytest.approx(-0.3)
    assert reverse.high < 0.0
    # Median: train runs 0.6 0.8 1.0 -> 0.8; test 0.3 0.5 0.7 -> 0.5.
    assert train_test_gap(train, test, "median", **FAST).value == pytest.approx(0.3)


# --- validation


def test_non_finite_scores_are_rejected_with_task_and_count():
    bad = {"ok": np.array([0.5, 0.6]), "env/Broken-v0": np.array([1.0, np.nan, np.inf, 0.2])}
    with pytest.raises(ValueError, match=r"'env/Broken-v0'.*2 of 4 .*not finite"):
        aggregate(bad)
    with pytest.raises(ValueError, match="env/Broken-v0"):
        probability_of_improvement(bad, bad)


@pytest.mark.parametrize("statistic", sorted(AGGREGATES))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_point_statistics_refuse_non_finite_scores_like_the_aggregates(statistic, bad):
    scores = np.array([0.5, bad, 0.7, 0.9])
    with pytest.raises(ValueError, match=r"1 of 4 .*not finite"):
        AGGREGATES[statistic](scores)
    with pytest.raises(ValueError, match=r"1 of 4 .*not finite"):
        aggregate({"t": scores}, statistic)


def test_empty_inputs_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        aggregate({})
    with pytest.raises(ValueError, match=r"'t'.*empty|empty.*'t'"):
        aggregate({"t": np.array([])})
    with pytest.raises(ValueError, match="empty"):
        iqm(np.array([]))
    with pytest.raises(ValueError, match="taus"):
        performance_profile({"t": np.array([1.0])}, np.array([]))


def test_unknown_statistic_lists_the_known_ones():
    scores = {"t": np.array([0.1, 0.2])}
    for call in (
        lambda: aggregate(scores, "iqr"),
        lambda: per_task(scores, "iqr"),
        lambda: train_test_gap(scores, scores, "iqr"),
    ):
        with pytest.raises(ValueError, match="iqr") as info:
            call()
        for name in AGGREGATES:
            assert name in str(info.value)


def test_disjoint_tasks_are_rejected():
    x, y = {"task_x": np.array([0.1, 0.2])}, {"task_y": np.array([0.3, 0.4])}
    with pytest.raises(ValueError, match=r"share no task.*task_x.*task_y"):
        probability_of_improvement(x, y)
    with pytest.raises(ValueError, match=r"share no task.*task_x.*task_y"):
        train_test_gap(x, y)


def test_bad_bootstrap_arguments():
    scores = {"t": np.array([0.1, 0.2, 0.4])}
    with pytest.raises(ValueError, match="confidence"):
        aggregate(scores, confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        aggregate(scores, n_resamples=0)
    with pytest.raises(TypeError, match="mapping"):
        aggregate(np.array([0.1, 0.2]))  # type: ignore[arg-type]


# --- determinism


def test_same_seed_same_interval_different_seed_different_bounds():
    rng = np.random.default_rng(11)
    scores = {f"t{i}": rng.normal(0.8, 0.3, 15) for i in range(3)}
    other = {f"t{i}": rng.normal(0.6, 0.3, 15) for i in range(3)}
    taus = np.linspace(0.0, 1.5, 7)
    calls = {
        "aggregate": lambda seed: aggregate(scores, seed=seed, **FAST),
        "poi": lambda seed: probability_of_improvement(scores, other, seed=seed, **FAST),
        "gap": lambda seed: train_test_gap(scores, other, seed=seed, **FAST),
        "per_task": lambda seed: per_task(scores, seed=seed, **FAST)["t0"],
    }
    for name, call in calls.items():
        first, again, moved = call(0), call(0), call(1)
        assert first == again, name
        assert first.value == moved.value, name
        assert (first.low, first.high) != (moved.low, moved.high), name
    # Mapping order does not matter.
    assert aggregate(dict(reversed(scores.items())), **FAST) == aggregate(scores, **FAST)
    profile0 = performance_profile(scores, taus, seed=0, **FAST)
    np.testing.assert_array_equal(profile0[1], performance_profile(scores, taus, **FAST)[1])
    profile1 = performance_profile(scores, taus, seed=1, **FAST)
    assert not np.array_equal(np.stack(profile0[1:]), np.stack(profile1[1:]))


# --- the vectorised resampling


def test_count_based_resample_statistics_equal_the_materialised_resamples():
    """Each resample's IQM, median, mean, optimality gap and Mann-Whitney fraction computed
    from how often each run was drawn equals the statistic of the resample itself."""
    from ganno_bench.benchmark.stats import _counts, _draws, _pooled_distribution

    rng = np.random.default_rng(5)
    # ties, a single-run task and odd and even pooled sizes
    groups = [np.round(rng.normal(0.5, 0.5, 13), 1), rng.normal(1.0, 0.2, 8), np.array([0.3])]
    for sizes in (groups, groups[:2]):
        index = _draws([g.size for g in sizes], 300, seed=4)
        pooled = np.concatenate([g[i] for g, i in zip(sizes, index, strict=True)], axis=1)
        expected = {
            "iqm": sps.trim_mean(pooled, 0.25, axis=1),
            "median": np.median(pooled, axis=1),
            "mean": pooled.mean(axis=1),
            "optimality_gap": np.maximum(1 - pooled, 0).mean(axis=1),
        }
        for name, values in expected.items():
            np.testing.assert_allclose(_pooled_distribution(name, sizes, index), values, atol=1e-12)
    x, y = groups[0], groups[1]
    ix, iy = _draws([x.size, y.size], 200, seed=9)
    wins = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    fast = ((_counts(ix, x.size) @ wins) * _counts(iy, y.size)).sum(axis=1) / (x.size * y.size)
    slow = sps.mannwhitneyu(x[ix], y[iy], axis=1).statistic / (x.size * y.size)
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_intervals_agree_with_scipy_bootstrap_per_task():
    """On one task the stratified bootstrap is scipy's percentile bootstrap: the same
    interval up to Monte-Carlo error."""
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, 0.5, 60)
    for name, f in (
        ("iqm", lambda a, axis: sps.trim_mean(a, 0.25, axis=axis)),
        ("median", np.median),
    ):
        est = aggregate({"t": x}, name, n_resamples=4000, seed=3)
        ref = sps.bootstrap(
            (x,), f, n_resamples=4000, method="percentile", rng=np.random.default_rng(0)
        ).confidence_interval
        width = ref.high - ref.low
        assert est.low == pytest.approx(ref.low, abs=0.1 * width), name
        assert est.high == pytest.approx(ref.high, abs=0.1 * width), name


def test_probability_matrix_reuses_draws_and_equals_each_pair_on_its_own():
    from ganno_bench.benchmark.stats import probability_matrix

    rng = np.random.default_rng(8)
    scores = {
        "a": {"t1": rng.normal(0.0, 1, 9), "t2": rng.normal(0.2, 1, 7)},
        "b": {"t1": rng.normal(0.5, 1, 9), "t2": rng.normal(0.1, 1, 7)},
        "c": {"t2": np.round(rng.normal(0.0, 1, 5))},  # shares t2 only, with ties
        "d": {"t3": rng.normal(0.0, 1, 4)},  # shares nothing
    }
    matrix = probability_matrix(scores, **FAST)
    for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
        alone = probability_of_improvement(scores[x], scores[y], **FAST)
        assert matrix[x, y] == alone
        assert matrix[y, x] == Estimate(1 - alone.value, 1 - alone.high, 1 - alone.low)
    assert matrix["a", "d"] is None and matrix["d", "c"] is None
