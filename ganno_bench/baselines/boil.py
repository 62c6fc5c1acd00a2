"""BOIL (Nguyen, Schulze, Osborne, NeurIPS 2020): Bayesian optimisation over a schedule's
hyperparameters *and* the training length, tuned on the ``train`` split.

This module is the optimiser; what it tunes in the suite (the schedule family and its
objective on an id's train split) is :mod:`ganno_bench.baselines.schedule_family`.

What BOIL adds, written here (the GP itself is scikit-learn's):

* **Curve compression.** ``x_u = linspace(-6, 6, T)[:L]``, ``l(u) = 1 / (1 + exp(-g0 (x_u -
  m0)))``, ``score = mean_{u >= tau} r(u) l(u)`` with ``tau = int((m0 + 4) L / 12)``; the
  midpoint ``m0`` in [-2, 3] and growth ``g0`` in [0.5, 2] are fitted with the GP's
  hyperparameters by maximising the marginal likelihood.
* **GP over (x, t)** with a product of squared-exponential kernels (an anisotropic RBF over
  the normalised hyperparameters and length), a signal variance and a noise term.
* **Cost-aware acquisition** ``log EI(x, t) - log cost(x, t)``, the cost from a linear model
  fitted to the observed costs. The default cost is the run's inner steps (deterministic, so
  a tuning run is reproducible from its seed); ``cost="time"`` uses measured wall time.
* **Selective augmentation.** After a run of length ``t*``, up to ``max_augment`` virtual
  observations of the same curve at ``t < t*`` are added where the GP's variance is largest,
  stopping as soon as the kernel matrix's condition number exceeds ``max_condition``.

The same class runs the comparison methods of BOIL's claim: plain BO on full-length runs
(the final curve value as the objective), random search and grid search.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps
from scipy.stats import qmc
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import Ridge

__all__ = ["BOIL", "compress_curve", "log_expected_improvement", "logistic_weights"]

MIDPOINT_BOUNDS = (-2.0, 3.0)
GROWTH_BOUNDS = (0.5, 2.0)
METHODS = ("boil", "bo", "random", "grid")


# -- curve compression ----------------------------------------------------------------------
def logistic_weights(length: int, max_length: int, midpoint: float, growth: float) -> np.ndarray:
    """``l(u) = 1 / (1 + exp(-growth (x_u - midpoint)))``, ``x_u = linspace(-6, 6, max)[:L]``."""
    x = np.linspace(-6.0, 6.0, max_length)[:length]
    return 1.0 / (1.0 + np.exp(-growth * (x - midpoint)))


def compress_curve(
    curve: Sequence[float], max_length: int, midpoint: float, growth: float
) -> float:
    """BOIL's score of a learning curve: ``mean_{u >= tau} r(u) l(u)``, ``tau = int((midpoint
    + 4) L / 12)``: late, logistic-weighted progress counts most."""
    r = np.asarray(curve, dtype=np.float64)
    weights = logistic_weights(r.size, max_length, midpoint, growth)
    tau = int((midpoint + 4.0) * r.size / 12.0)
    return float(np.mean(r[tau:] * weights[tau:]))


# -- the optimiser -------------------------------------------------------------------------
@dataclass
class Run:
    """One (x, t) training run, or a virtual point cut from a longer run's curve."""

    x: np.ndarray
    length: int
    curve: np.ndarray
    cost: float
    virtual: bool = False


Objective = Callable[[np.ndarray, int], tuple[np.ndarray, float]]


class BOIL:
    """Maximise a learning-curve objective over ``x`` in the unit cube (see module doc).

    ``objective(x, t) -> (curve of length t, cost)``. ``method``: ``"boil"`` (the full
    method), ``"bo"`` (GP-EI on full-length runs, the final curve value as objective),
    ``"random"`` or ``"grid"`` (full-length runs). ``trace`` records, after each real run,
    the cumulative cost and wall time and the incumbent.
    """

    def __init__(
        self,
        objective: Objective,
        dim: int,
        max_length: int,
        *,
        method: str = "boil",
        seed: int = 0,
        n_init: int = 4,
        min_length: int | None = None,
        max_augment: int = 3,
        max_condition: float = 1e8,
        n_candidates: int = 1024,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
        self.objective, self.dim, self.max_length = objective, dim, max_length
        self.method, self.seed, self.n_init = method, seed, n_init
        self.min_length = min_length or max(2, max_length // 4)
        self.max_augment, self.max_condition = max_augment, max_condition
        self.n_candidates = n_candidates
        self.rng = np.random.default_rng(seed)
        self.runs: list[Run] = []
        self.trace: list[dict[str, Any]] = []
        self.midpoint, self.growth = 0.0, 1.0
        self._gp: GaussianProcessRegressor | None = None
        self._grid = self._grid_points() if method == "grid" else None
        self._started = time.perf_counter()
        self._spent = 0.0

    # -- the loop ------------------------------------------------------------------------
    def run(self, iterations: int) -> np.ndarray:
        """``iterations`` real runs (initial design included); returns the recommended x."""
        for _ in range(iterations):
            x, length = self.suggest()
            curve, cost = self.objective(x, length)
            self.observe(x, length, curve, cost)
        return self.recommend()

    def suggest(self) -> tuple[np.ndarray, int]:
        real = [r for r in self.runs if not r.virtual]
        if self.method == "grid":
            return self._grid[len(real) % len(self._grid)], self.max_length
        if self.method == "random" or len(real) < self.n_init:
            x = self.rng.random(self.dim)
            if self.method != "boil":
                return x, self.max_length
            return x, int(self.rng.integers(self.min_length, self.max_length + 1))
        return self._maximise_acquisition()

    def observe(self, x: np.ndarray, length: int, curve: np.ndarray, cost: float) -> None:
        curve = np.asarray(curve, dtype=np.float64)
        if curve.shape != (length,):
            raise ValueError(f"objective returned a curve of shape {curve.shape}, not ({length},)")
        self.runs.append(Run(np.asarray(x, dtype=np.float64), length, curve, float(cost)))
        self._spent += float(cost)
        if self.method in ("boil", "bo") and len(self.runs) >= 2:
            self._fit()
            if self.method == "boil":
                self._augment(self.runs[-1])
        best = self.recommend()
        self.trace.append(
            {
                "runs": sum(not r.virtual for r in self.runs),
                "virtual": sum(r.virtual for r in self.runs),
                "cost": self._spent,
                "wall_time_s": time.perf_counter() - self._started,
                "incumbent": best.tolist(),
            }
        )

    def recommend(self) -> np.ndarray:
        """The evaluated x with the best predicted full-length outcome (GP methods) or the
        best observed full-length final value (random, grid).

        The GP methods pass over runs whose curve ended at the floor, 0 (diverged, or no
        better than chance), unless every run did: such a run was seen to fail, while the
        GP, fitted on short runs, can extrapolate its x's trend to a high full-length
        value (seen: a run diverged at its first decision recommended over one at 0.94)."""
        real = [r for r in self.runs if not r.virtual]
        if self._gp is None or self.method in ("random", "grid"):
            full = [r for r in real if r.length == self.max_length] or real
            return max(full, key=lambda r: r.curve[-1]).x
        live = [r for r in real if r.curve[-1] > 0.0] or real
        X = np.array([self._features(r.x, self.max_length) for r in live])
        return live[int(np.argmax(self._gp.predict(X)))].x

    # -- GP ------------------------------------------------------------------------------
    def _features(self, x: np.ndarray, length: int) -> np.ndarray:
        if self.method == "bo":
            return np.asarray(x, dtype=np.float64)
        return np.append(x, length / self.max_length)

    def _targets(self, midpoint: float, growth: float) -> np.ndarray:
        if self.method == "bo":
            return np.array([r.curve[-1] for r in self.runs])
        return np.array(
            [compress_curve(r.curve, self.max_length, midpoint, growth) for r in self.runs]
        )

    def _kernel(self):
        n = self.dim + (0 if self.method == "bo" else 1)
        return ConstantKernel(1.0, (1e-2, 1e2)) * RBF(np.full(n, 0.5), (1e-2, 1e2)) + WhiteKernel(
            1e-3, (1e-6, 1e-1)
        )

    def _gp_for(
        self, midpoint: float, growth: float, kernel: Any = None
    ) -> GaussianProcessRegressor:
        """The GP on all runs for this compression; ``kernel`` given: its hyperparameters
        are kept (no optimisation), else they maximise the marginal likelihood."""
        X = np.array([self._features(r.x, r.length) for r in self.runs])
        gp = GaussianProcessRegressor(
            kernel if kernel is not None else self._kernel(),
            normalize_y=True,
            optimizer=None if kernel is not None else "fmin_l_bfgs_b",
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return gp.fit(X, self._targets(midpoint, growth))

    def _fit(self) -> None:
        """GP hyperparameters by marginal likelihood, jointly with the curve compression's
        (m0, g0) for BOIL: a coarse grid over (m0, g0), then L-BFGS-B from its best point."""
        if self.method == "bo":
            self._gp = self._gp_for(0.0, 1.0)
            return

        def neg_lml(params: np.ndarray) -> float:
            return -self._gp_for(*params).log_marginal_likelihood_value_

        grid = [
            (m, g) for m in np.linspace(*MIDPOINT_BOUNDS, 4) for g in np.linspace(*GROWTH_BOUNDS, 3)
        ]
        start = min(grid, key=lambda p: neg_lml(np.array(p)))
        result = optimize.minimize(
            neg_lml,
            np.array(start),
            method="L-BFGS-B",
            bounds=[MIDPOINT_BOUNDS, GROWTH_BOUNDS],
            options={"maxiter": 5},
        )
        self.midpoint, self.growth = (float(v) for v in result.x)
        self._gp = self._gp_for(self.midpoint, self.growth)

    # -- acquisition -----------------------------------------------------------------------
    def _cost_model(self) -> Callable[[np.ndarray], np.ndarray]:
        real = [r for r in self.runs if not r.virtual]
        X = np.array([np.append(r.x, r.length) for r in real])
        y = np.array([r.cost for r in real])
        model = Ridge(alpha=1e-3).fit(X, y)  # few runs early on: keep it determined
        floor = 0.1 * y.min()
        return lambda Z: np.maximum(model.predict(Z), floor)

    def _maximise_acquisition(self) -> tuple[np.ndarray, int]:
        sobol = qmc.Sobol(self.dim + 1, seed=self.rng)
        points = sobol.random(self.n_candidates)
        x = points[:, : self.dim]
        if self.method == "boil":
            span = self.max_length - self.min_length
            lengths = self.min_length + np.rint(points[:, -1] * span).astype(int)
        else:
            lengths = np.full(len(points), self.max_length)
        features = np.array([self._features(xi, t) for xi, t in zip(x, lengths, strict=True)])
        mean, std = self._gp.predict(features, return_std=True)
        best = float(np.max(self._targets(self.midpoint, self.growth)))
        score = log_expected_improvement(mean, std, best)
        if self.method == "boil":
            score = score - np.log(self._cost_model()(np.column_stack([x, lengths])))
        i = int(np.argmax(score))
        return x[i], int(lengths[i])

    # -- selective augmentation ------------------------------------------------------------
    def _augment(self, run: Run) -> None:
        """Add virtual points from ``run``'s curve at the lengths of largest GP variance,
        while the kernel matrix stays well conditioned."""
        lengths = list(range(self.min_length, run.length))
        for _ in range(self.max_augment):
            if not lengths:
                return
            features = np.array([self._features(run.x, t) for t in lengths])
            _, std = self._gp.predict(features, return_std=True)
            t = lengths.pop(int(np.argmax(std)))
            self.runs.append(Run(run.x, t, run.curve[:t], 0.0, virtual=True))
            X = np.array([self._features(r.x, r.length) for r in self.runs])
            if np.linalg.cond(self._gp.kernel_(X)) > self.max_condition:
                self.runs.pop()
                return
            self._gp = self._gp_for(self.midpoint, self.growth, kernel=self._gp.kernel_)

    def _grid_points(self, side: int = 3) -> list[np.ndarray]:
        """``side``^dim grid points of the unit cube, in a seeded random order (so that a
        grid search stopped early has covered the cube evenly, not one corner)."""
        axes = [np.linspace(0.0, 1.0, side)] * self.dim
        points = np.array(np.meshgrid(*axes, indexing="ij")).reshape(self.dim, -1).T
        return list(points[self.rng.permutation(len(points))])


def log_expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """``log E[max(f - best, 0)]`` for ``f ~ N(mean, std^2)``, stable far below ``best``."""
    std = np.maximum(std, 1e-12)
    z = (mean - best) / std
    # EI = std * (z Phi(z) + phi(z)); for very negative z use the Mills-ratio expansion
    direct = z * sps.norm.cdf(z) + sps.norm.pdf(z)
    with np.errstate(divide="ignore"):
        log_direct = np.log(np.maximum(direct, 1e-300))
    tail = sps.norm.logpdf(z) - 2.0 * np.log(np.abs(z) + 1e-300)
    return np.log(std) + np.where(z > -10, log_direct, tail)
