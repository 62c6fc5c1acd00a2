"""Aggregate statistics with bootstrap confidence intervals, in the style of rliable.

Results are normalised scores, one per run, grouped by task (environment id): every
function here takes ``scores: Mapping[str, np.ndarray]`` mapping a task id to that task's
run scores (runs = instances x seeds; an array of any shape is flattened). A normalised
score of 1 means "as good as the tuned reference".

Confidence intervals come from the *stratified* percentile bootstrap (Agarwal et al.,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021):
each task's runs are resampled with replacement independently of the other tasks', so
every resample keeps each task's run count, and the statistic is recomputed on the
resampled data; the interval is the percentile interval of the resampled statistics, as
:func:`scipy.stats.bootstrap` with ``method="percentile"`` and every task a sample of its
own gives. The resampling is vectorised here rather than left to scipy: a resample is
*how often each run was drawn*, and every statistic the leaderboard needs is a function of
those counts (sums for the mean and optimality gap, cumulative counts over the runs sorted
once for the IQM and median, count-weighted pair counts for the Mann-Whitney U, and a
count-weighted share of runs above each tau for performance profiles), so no resample is
sorted or ranked. Point estimates are scipy's (``trim_mean``) or count what scipy's
``mannwhitneyu`` counts; the ``rliable`` package itself is not used. A task with a single
run has nothing to resample and is held fixed; when nothing varies across resamples (e.g.
all-equal scores) the interval collapses to the point estimate.

Results are reproducible: the same inputs and ``seed`` give identical estimates. Tasks are
processed in sorted order of their ids, so the order of the mapping does not matter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

__all__ = [
    "AGGREGATES",
    "Estimate",
    "aggregate",
    "aggregate_all",
    "fmt",
    "iqm",
    "optimality_gap",
    "per_task",
    "performance_profile",
    "probability_matrix",
    "probability_of_improvement",
    "train_test_gap",
]

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


def _statistic(name: str) -> Callable[[np.ndarray], float]:
    """The aggregate called ``name``, or a ValueError listing the known ones."""
    if name not in AGGREGATES:
        known = ", ".join(sorted(AGGREGATES))
        raise ValueError(f"unknown statistic {name!r}; known statistics: {known}")
    return AGGREGATES[name]


# --- results


@dataclass(frozen=True)
class Estimate:
    """A point estimate ``value`` with the confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}]"


def fmt(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` decimals, without the sign of a value that rounds to zero
    (``0.000``, never ``-0.000``)."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


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


def _draws(sizes: Sequence[int], n_resamples: int, seed: int | Sequence[int]) -> list[np.ndarray]:
    """The stratified resamples: per stratum, the run indices each resample drew, shape
    ``(n_resamples, n_i)``; strata are drawn in order from one generator seeded ``seed``,
    so the same sizes and seed give the same resamples."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=(int(n_resamples), n)) for n in sizes]


def _counts(index: np.ndarray, n: int, dtype: type = np.float64) -> np.ndarray:
    """How many times each of ``n`` runs is in each resample: ``(resamples, n)``."""
    b = index.shape[0]
    flat = (index + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(dtype)


def _is_default(name: str) -> bool:
    return AGGREGATES[name] is _DEFAULT_AGGREGATES.get(name)


def _pooled_distributions(
    names: Sequence[str], groups: Sequence[np.ndarray], index: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    """Each statistic of ``names`` over every resample of the pooled runs, shape
    ``(resamples,)`` each.

    The four default aggregates come from how often each run was drawn, as sums and order
    statistics over the runs sorted once, with no resample materialised: a resample of
    ``N`` pooled runs costs ``O(N)``, not a sort. Other statistics are applied to each
    materialised resample.
    """
    x = np.concatenate(groups)
    n = x.size
    out: dict[str, np.ndarray] = {}
    for name in names:
        if not _is_default(name):
            pooled = np.concatenate([g[i] for g, i in zip(groups, index, strict=True)], axis=1)
            out[name] = np.apply_along_axis(AGGREGATES[name], 1, pooled)
    wanted = [name for name in names if _is_default(name)]
    if not wanted:
        return out
    counts = np.concatenate([_counts(i, g.size) for g, i in zip(groups, index, strict=True)], 1)
    if "mean" in wanted:
        out["mean"] = counts @ x / n
    if "optimality_gap" in wanted:
        out["optimality_gap"] = counts @ np.maximum(1.0 - x, 0.0) / n
    if "iqm" not in wanted and "median" not in wanted:
        return out
    order = np.argsort(x, kind="stable")
    values, counts = x[order], counts[:, order]
    upto = np.cumsum(counts, axis=1)  # runs at or below each sorted value, per resample
    if "iqm" in wanted:  # trim_mean(x, 0.25): drop int(n / 4) runs at each end
        cut = int(0.25 * n)
        kept = np.minimum(upto, n - cut) - np.maximum(upto - counts, cut)
        out["iqm"] = np.clip(kept, 0.0, None) @ values / (n - 2 * cut)
    if "median" in wanted:  # the mean of the values at sorted positions (n-1)//2 and n//2
        low, high = ((upto <= p).sum(axis=1) for p in ((n - 1) // 2, n // 2))
        out["median"] = (values[low] + values[high]) / 2
    return out


def _pooled_distribution(
    name: str, groups: Sequence[np.ndarray], index: Sequence[np.ndarray]
) -> np.ndarray:
    """The statistic ``name`` over every resample of the pooled runs."""
    return _pooled_distributions([name], groups, index)[name]


def _interval(
    value: np.ndarray, distribution: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(value, low, high)``: the percentile interval of ``distribution`` (resamples on
    axis 0), collapsed onto the value where the resamples do not vary beyond the rounding
    of recomputing the statistic (single runs, all-equal runs)."""
    value = np.asarray(value, dtype=float)
    alpha = 100 * (1.0 - confidence) / 2
    low, high = np.percentile(distribution, [alpha, 100 - alpha], axis=0)
    spread = np.ptp(distribution, axis=0)
    degenerate = spread <= 1e-12 * np.maximum(1.0, np.abs(value))
    return value, np.where(degenerate, value, low), np.where(degenerate, value, high)


def _estimate(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> Estimate:
    return Estimate(float(value), float(low), float(high))


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
    return aggregate_all(
        scores, (statistic,), confidence=confidence, n_resamples=n_resamples, seed=seed
    )[statistic]


def aggregate_all(
    scores: Mapping[str, np.ndarray],
    statistics: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """:func:`aggregate` for each of ``statistics`` (default: all of :data:`AGGREGATES`),
    keyed by name; all share one set of resamples, so each equals its own
    :func:`aggregate` call with the same seed."""
    names = list(AGGREGATES if statistics is None else statistics)
    for name in names:
        _statistic(name)
    _check_bootstrap_args(confidence, n_resamples)
    data = _validate(scores)
    groups = list(data.values())
    index = _draws([g.size for g in groups], n_resamples, seed)
    pooled = np.concatenate(groups)
    distributions = _pooled_distributions(list(dict.fromkeys(names)), groups, index)
    return {
        name: _estimate(*_interval(AGGREGATES[name](pooled), distributions[name], confidence))
        for name in names
    }


def _side_counts(
    arrays: Sequence[np.ndarray], n_resamples: int, seed: int, side: int
) -> list[np.ndarray]:
    """Resample counts of one side of a comparison (0: x, 1: y), each side drawn from its
    own generator, so a side's resamples depend only on its own runs and the seed."""
    index = _draws([a.size for a in arrays], n_resamples, [seed, side])
    # float32 is exact here: counts, and the U sums below, are multiples of 1/2 under 2^23
    return [_counts(i, a.size, np.float32) for i, a in zip(index, arrays, strict=True)]


def _improvement(
    xs: Mapping[str, np.ndarray],
    ys: Mapping[str, np.ndarray],
    common: Sequence[str],
    cx: Sequence[np.ndarray],
    cy: Sequence[np.ndarray],
    confidence: float,
) -> Estimate:
    """P(X > Y) over ``common`` tasks from both sides' resample counts: per task the
    Mann-Whitney fraction ``U / (n m)``, ``U`` the number of pairs with x > y (ties one
    half); a resample's U is ``sum_ij cx_i cy_j [x_i > y_j]``, a matrix product instead of
    a ranking per resample."""
    values, distribution = [], 0.0
    for task, ca, cb in zip(common, cx, cy, strict=True):
        a, b = xs[task], ys[task]
        wins = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
        values.append(wins.mean())
        u = ((ca @ wins.astype(np.float32)) * cb).sum(axis=1, dtype=np.float64)
        distribution = distribution + u / (a.size * b.size)
    return _estimate(*_interval(np.mean(values), distribution / len(common), confidence))


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
    ``x > y``, ties counting one half, as :func:`scipy.stats.mannwhitneyu` counts) and
    ``n_t, m_t`` their run counts; each common task weighs equally, tasks in only one of
    ``x``, ``y`` are ignored. The CI resamples the runs of ``x`` and of ``y`` within each
    task independently (stratified bootstrap).
    """
    _check_bootstrap_args(confidence, n_resamples)
    xs, ys = _validate(x, "x"), _validate(y, "y")
    common = _common_tasks(xs, ys, ("x", "y"))
    cx = _side_counts([xs[t] for t in common], n_resamples, seed, 0)
    cy = _side_counts([ys[t] for t in common], n_resamples, seed, 1)
    return _improvement(xs, ys, common, cx, cy, confidence)


def probability_matrix(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[tuple[str, str], Estimate | None]:
    """P(a > b) for every ordered pair of distinct agents (``scores``: agent -> task ->
    runs), over the tasks both share; None where a pair shares none.

    Each unordered pair is bootstrapped once, the earlier agent of ``scores`` as ``x``,
    and its mirror is ``1 - P`` with the interval mirrored, so the matrix is exactly
    antisymmetric; every entry equals :func:`probability_of_improvement` of that pair. An
    agent's resamples are drawn once and reused in all its pairs.
    """
    _check_bootstrap_args(confidence, n_resamples)
    agents = list(scores)
    data = {a: _validate(scores[a], f"scores[{a!r}]") for a in agents}
    as_y: dict[tuple[str, tuple[str, ...]], list[np.ndarray]] = {}
    out: dict[tuple[str, str], Estimate | None] = {}
    for i, a in enumerate(agents):
        as_x: dict[tuple[str, ...], list[np.ndarray]] = {}
        for b in agents[i + 1 :]:
            common = tuple(sorted(set(data[a]) & set(data[b]), key=str))
            if not common:
                out[a, b] = out[b, a] = None
                continue
            if common not in as_x:
                as_x[common] = _side_counts([data[a][t] for t in common], n_resamples, seed, 0)
            if (b, common) not in as_y:
                as_y[b, common] = _side_counts([data[b][t] for t in common], n_resamples, seed, 1)
            est = _improvement(data[a], data[b], common, as_x[common], as_y[b, common], confidence)
            out[a, b] = est
            out[b, a] = Estimate(1.0 - est.value, 1.0 - est.high, 1.0 - est.low)
    return out


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
    _check_bootstrap_args(confidence, n_resamples)
    data = _validate(scores)
    t = np.asarray(taus, dtype=float).ravel()
    if t.size == 0:
        raise ValueError("taus is empty")
    if np.isnan(t).any():
        raise ValueError("taus contains NaN")
    groups = list(data.values())
    index = _draws([g.size for g in groups], n_resamples, seed)
    above = [(g[:, None] > t[None, :]).astype(float) for g in groups]  # (runs, taus)
    value = np.mean([a.mean(axis=0) for a in above], axis=0)
    distribution = sum(
        _counts(i, g.size) @ a / g.size for g, i, a in zip(groups, index, above, strict=True)
    ) / len(groups)
    return _interval(value, distribution, confidence)


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
    f = _statistic(statistic)
    _check_bootstrap_args(confidence, n_resamples)
    tr, te = _validate(train, "train"), _validate(test, "test")
    common = _common_tasks(tr, te, ("train", "test"))
    k = len(common)
    groups = [tr[task] for task in common] + [te[task] for task in common]
    index = _draws([g.size for g in groups], n_resamples, seed)
    value = f(np.concatenate(groups[:k])) - f(np.concatenate(groups[k:]))
    distribution = _pooled_distribution(statistic, groups[:k], index[:k]) - (
        _pooled_distribution(statistic, groups[k:], index[k:])
    )
    return _estimate(*_interval(value, distribution, confidence))


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
    _statistic(statistic)
    data = _validate(scores)
    kw = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    return {task: aggregate({task: arr}, statistic, **kw) for task, arr in data.items()}
