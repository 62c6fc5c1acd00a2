"""Aggregate statistics with bootstrap confidence intervals, in the style of rliable.

Results are normalised scores, one per run, grouped by task (environment id): every
function here takes ``scores: Mapping[str, np.ndarray]`` mapping a task id to that task's
run scores (runs = instances x seeds; an array of any shape is flattened). A normalised
score of 1 means "as good as the tuned reference".

Confidence intervals come from the *stratified* percentile bootstrap (Agarwal et al.,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021):
each task's runs are resampled with replacement independently of the other tasks', so
every resample keeps each task's run count, and the statistic is recomputed on the
resampled data. It is built on :func:`scipy.stats.bootstrap` with every task as a separate
sample (scipy resamples each sample independently); the ``rliable`` package itself is
not used. A task with a single run has nothing to resample and is held fixed; when
nothing varies across resamples (e.g. all-equal scores) the interval collapses to the
point estimate.

Results are reproducible: the same inputs and ``seed`` give identical estimates. Tasks are
processed in sorted order of their ids, so the order of the mapping does not matter.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

__all__ = [
    "AGGREGATES",
    "Estimate",
    "aggregate",
    "aggregate_all",
    "iqm",
    "optimality_gap",
    "per_task",
    "performance_profile",
    "probability_of_improvement",
    "train_test_gap",
]

# Elements (resamples x runs x rows) materialised per vectorised call of a statistic.
_BATCH_ELEMENTS = 2**21
# scipy >= 1.15 names the generator argument `rng`; older releases call it `random_state`.
_RNG_KWARG = "rng" if "rng" in inspect.signature(_sps.bootstrap).parameters else "random_state"


# --- statistics


def _as_runs(x: np.ndarray) -> np.ndarray:
    """Scores as a flat float array; empty or non-finite input is refused, as the
    aggregate functions refuse it (a NaN would otherwise pass silently into a table)."""
    arr = np.asarray(x, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("cannot compute a statistic of an empty array of scores")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ValueError(
            f"{bad} of {arr.size} scores are not finite (NaN or infinite): a statistic of "
            "them means nothing; drop or fix those runs first"
        )
    return arr


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of ``x``.

    ``scipy.stats.trim_mean(x, 0.25)``: drop ``floor(n / 4)`` of the lowest and of the
    highest values, average the rest.
    """
    return float(_sps.trim_mean(_as_runs(x), 0.25))


def optimality_gap(x: np.ndarray, threshold: float = 1.0) -> float:
    """Optimality gap: ``mean(max(threshold - x, 0))``.

    How far, on average, runs fall short of ``threshold`` (by default 1, "as good as the
    tuned reference"); runs above the threshold count as 0. Lower is better.
    """
    return float(np.mean(np.maximum(threshold - _as_runs(x), 0.0)))


def _mean(x: np.ndarray) -> float:
    """Arithmetic mean: ``sum(x) / n``."""
    return float(np.mean(_as_runs(x)))


def _median(x: np.ndarray) -> float:
    """Median: the middle value (the mean of the two middle values for even ``n``)."""
    return float(np.median(_as_runs(x)))


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "iqm": iqm,
    "mean": _mean,
    "median": _median,
    "optimality_gap": optimality_gap,
}
_DEFAULT_AGGREGATES = dict(AGGREGATES)

# The same statistics computed along an axis, so that a whole batch of bootstrap
# resamples is evaluated in one call.
_AXIS_AGGREGATES: dict[str, Callable[..., np.ndarray]] = {
    "iqm": lambda x, axis=-1: _sps.trim_mean(x, 0.25, axis=axis),
    "mean": lambda x, axis=-1: np.mean(x, axis=axis),
    "median": lambda x, axis=-1: np.median(x, axis=axis),
    "optimality_gap": lambda x, axis=-1: np.mean(np.maximum(1.0 - x, 0.0), axis=axis),
}


def _statistic(name: str) -> Callable[..., np.ndarray]:
    """The axis-wise implementation of the aggregate called ``name``."""
    if name not in AGGREGATES:
        known = ", ".join(sorted(AGGREGATES))
        raise ValueError(f"unknown statistic {name!r}; known statistics: {known}")
    if AGGREGATES[name] is _DEFAULT_AGGREGATES.get(name):
        return _AXIS_AGGREGATES[name]
    scalar = AGGREGATES[name]  # a user-registered (or replaced) statistic: apply row by row
    return lambda x, axis=-1: np.apply_along_axis(scalar, axis, x)


# --- results


@dataclass(frozen=True)
class Estimate:
    """A point estimate ``value`` with the confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


# --- validation


def _validate(scores: Mapping[str, np.ndarray], name: str = "scores") -> dict[str, np.ndarray]:
    """Scores as ``{task: 1-D float array}`` in sorted task order, or a clear error."""
    if not isinstance(scores, Mapping):
        raise TypeError(
            f"{name} must be a mapping task id -> array of run scores, got {type(scores).__name__}"
        )
    if len(scores) == 0:
        raise ValueError(f"{name} is empty: no tasks given")
    out: dict[str, np.ndarray] = {}
    for task in sorted(scores, key=str):
        try:
            arr = np.asarray(scores[task], dtype=float).ravel()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}[{task!r}] is not an array of numbers: {err}") from err
        if arr.size == 0:
            raise ValueError(f"{name}[{task!r}] is empty: task {task!r} has no runs")
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ValueError(
                f"{name}[{task!r}]: {bad} of {arr.size} scores of task {task!r} "
                "are not finite (NaN or infinite)"
            )
        out[task] = arr
    return out


def _common_tasks(
    x: dict[str, np.ndarray], y: dict[str, np.ndarray], names: tuple[str, str]
) -> list[str]:
    common = sorted(set(x) & set(y), key=str)
    if not common:
        raise ValueError(
            f"{names[0]} and {names[1]} share no task: {names[0]} has {sorted(x)}, "
            f"{names[1]} has {sorted(y)}"
        )
    return common


def _check_bootstrap_args(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")


# --- bootstrap


def _stratified_bootstrap(
    groups: Sequence[np.ndarray],
    stat: Callable[[list[np.ndarray]], np.ndarray],
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and percentile CI of ``stat`` under the stratified bootstrap.

    ``groups`` are the strata: arrays of shape ``(*rows, n_i)`` whose last axis holds runs;
    each is resampled along that axis independently of the others (leading ``rows`` share
    the resampled indices). ``stat(list_of_groups)`` reduces the last axis of every group
    and returns an array of the leading shape, so it accepts batches of resamples of shape
    ``(*rows, batch, n_i)`` as well. Returns ``(value, low, high)`` of the ``rows`` shape.
    """
    _check_bootstrap_args(confidence, n_resamples)
    groups = [np.asarray(g, dtype=float) for g in groups]
    value = np.asarray(stat(groups), dtype=float)

    # Strata with a single run (or all-equal runs) look the same in every resample.
    free = [i for i, g in enumerate(groups) if g.shape[-1] > 1 and np.ptp(g, axis=-1).any()]
    if not free:
        return value, value.copy(), value.copy()

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis  # scipy always moves the resampled axis last
        lead = resampled[0].shape[:-1]  # (*rows, batch)
        full = [np.broadcast_to(g[..., None, :], (*lead, g.shape[-1])) for g in groups]
        for i, r in zip(free, resampled, strict=True):
            full[i] = r
        return stat(full)

    rows = math.prod(groups[0].shape[:-1])
    runs = sum(g.shape[-1] for g in groups)
    batch = int(min(n_resamples, max(1, _BATCH_ELEMENTS // max(1, rows * runs))))
    with warnings.catch_warnings():
        # Degenerate bootstrap distributions are handled below.
        warnings.simplefilter("ignore", _sps.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _sps.bootstrap(
            [groups[i] for i in free],
            statistic,
            n_resamples=int(n_resamples),
            batch=batch,
            vectorized=True,
            paired=False,
            axis=-1,
            confidence_level=confidence,
            method="percentile",
            **{_RNG_KWARG: np.random.default_rng(seed)},
        )
    low = np.asarray(res.confidence_interval.low, dtype=float)
    high = np.asarray(res.confidence_interval.high, dtype=float)
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    # Collapse the interval where the bootstrap distribution does not vary (beyond the
    # rounding of recomputing the statistic) or where scipy could not compute it.
    spread = np.ptp(dist, axis=-1)
    scale = np.maximum(1.0, np.abs(value))
    degenerate = (spread <= 1e-12 * scale) | ~np.isfinite(low) | ~np.isfinite(high)
    low = np.where(degenerate, value, low)
    high = np.where(degenerate, value, high)
    return value, low, high


def _estimate(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> Estimate:
    return Estimate(float(value), float(low), float(high))


def _pooled(f: Callable[..., np.ndarray]) -> Callable[[list[np.ndarray]], np.ndarray]:
    """``f`` over the runs of all groups concatenated along the last axis."""
    return lambda groups: f(np.concatenate(groups, axis=-1), axis=-1)


# --- public API


def aggregate(
    scores: Mapping[str, np.ndarray],
    statistic: str = "iqm",
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``statistic`` of all runs of all tasks pooled, with a stratified bootstrap CI.

    ``value = AGGREGATES[statistic](concatenate(scores.values()))``; the interval is the
    ``confidence`` percentile interval of the same pooled statistic over ``n_resamples``
    resamples, each resampling every task's runs with replacement within that task.
    """
    data = _validate(scores)
    f = _statistic(statistic)
    value, low, high = _stratified_bootstrap(
        list(data.values()),
        _pooled(f),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
    return _estimate(value, low, high)


def aggregate_all(
    scores: Mapping[str, np.ndarray],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """:func:`aggregate` for every statistic in :data:`AGGREGATES`, keyed by name."""
    return {
        name: aggregate(scores, name, confidence=confidence, n_resamples=n_resamples, seed=seed)
        for name in AGGREGATES
    }


def _mann_whitney_fraction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``U / (n * m)`` along the last axis: P(X > Y) + P(X = Y) / 2 for one task."""
    u = _sps.mannwhitneyu(x, y, axis=-1, method="asymptotic").statistic
    return np.asarray(u, dtype=float) / (x.shape[-1] * y.shape[-1])


def probability_of_improvement(
    x: Mapping[str, np.ndarray],
    y: Mapping[str, np.ndarray],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """P(X > Y): how likely a run of ``x`` beats a run of ``y`` on the same task.

    ``value = mean over tasks t in both of U_t / (n_t * m_t)`` where ``U_t`` is the
    Mann-Whitney U statistic of ``x[t]`` against ``y[t]`` (the number of pairs with
    ``x > y``, ties counting one half) and ``n_t, m_t`` their run counts; each common task
    weighs equally, tasks in only one of ``x``, ``y`` are ignored. The CI resamples the runs
    of ``x`` and of ``y`` within each task independently (stratified bootstrap).
    """
    xs, ys = _validate(x, "x"), _validate(y, "y")
    common = _common_tasks(xs, ys, ("x", "y"))
    groups = [arr for task in common for arr in (xs[task], ys[task])]

    def stat(gs: list[np.ndarray]) -> np.ndarray:
        fractions = [_mann_whitney_fraction(gs[i], gs[i + 1]) for i in range(0, len(gs), 2)]
        return np.mean(fractions, axis=0)

    value, low, high = _stratified_bootstrap(
        groups, stat, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    return _estimate(value, low, high)


def performance_profile(
    scores: Mapping[str, np.ndarray],
    taus: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score distribution: the fraction of runs with score ``> tau``, for each ``tau``.

    ``value(tau) = mean over tasks t of mean(scores[t] > tau)``: each task weighs equally,
    whatever its run count. Returns ``(values, lows, highs)``, arrays shaped like the
    flattened ``taus``; the CIs come from one stratified bootstrap shared by all taus, so
    values and both bounds are non-increasing in ``tau``.
    """
    data = _validate(scores)
    t = np.asarray(taus, dtype=float).ravel()
    if t.size == 0:
        raise ValueError("taus is empty")
    if np.isnan(t).any():
        raise ValueError("taus contains NaN")
    # One row per tau: indicator[t_idx, run] = score > tau. Resampling runs resamples every
    # row with the same indices, so all taus share each bootstrap resample.
    groups = [(arr[None, :] > t[:, None]).astype(float) for arr in data.values()]

    def stat(gs: list[np.ndarray]) -> np.ndarray:
        return np.mean([g.mean(axis=-1) for g in gs], axis=0)

    value, low, high = _stratified_bootstrap(
        groups, stat, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    return value, low, high


def train_test_gap(
    train: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    statistic: str = "mean",
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Generalisation gap: ``statistic(train) - statistic(test)``.

    Each side is the statistic of the runs of that split pooled over the tasks common to
    both splits (tasks in only one split are ignored). Positive means the test split
    scores lower. The CI resamples each split's runs within each task independently.
    """
    tr, te = _validate(train, "train"), _validate(test, "test")
    common = _common_tasks(tr, te, ("train", "test"))
    f = _statistic(statistic)
    k = len(common)
    groups = [tr[task] for task in common] + [te[task] for task in common]

    def stat(gs: list[np.ndarray]) -> np.ndarray:
        return f(np.concatenate(gs[:k], axis=-1), axis=-1) - f(
            np.concatenate(gs[k:], axis=-1), axis=-1
        )

    value, low, high = _stratified_bootstrap(
        groups, stat, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    return _estimate(value, low, high)


def per_task(
    scores: Mapping[str, np.ndarray],
    statistic: str = "iqm",
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """``statistic`` of each task's runs, with a plain bootstrap CI of that task's runs.

    Every task is bootstrapped with the same ``seed``, so a task's estimate does not
    depend on which other tasks are present. Keys are in sorted task order.
    """
    data = _validate(scores)
    f = _statistic(statistic)
    out: dict[str, Estimate] = {}
    for task, arr in data.items():
        value, low, high = _stratified_bootstrap(
            [arr], _pooled(f), confidence=confidence, n_resamples=n_resamples, seed=seed
        )
        out[task] = _estimate(value, low, high)
    return out
