"""The gradient noise scale from gradient norms at two batch sizes (McCandlish et al. 2018).

With per-sample gradients of mean ``G`` and covariance ``Sigma``, a batch of ``B`` samples
has ``E|G_B|^2 = |G|^2 + tr(Sigma) / B``. Two batch sizes give two equations, hence the
unbiased estimates

    |G|^2      ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma)  ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

and the *simple noise scale* ``B_simple = tr(Sigma) / |G|^2``: the batch size above which
a larger batch stops buying proportionally faster progress. Either estimate can come out
negative on a noisy measurement; :func:`noise_scale` then says the ratio is not valid
instead of returning a meaningless number, and :class:`NoiseScaleEMA` smooths the two
estimates separately before taking their ratio, as the paper recommends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NoiseEstimate:
    """The two unbiased estimates and their ratio (``nan`` unless both are positive)."""

    grad_sq: float  # |G|^2
    trace_sigma: float  # tr(Sigma)

    @property
    def valid(self) -> bool:
        return (
            math.isfinite(self.grad_sq)
            and math.isfinite(self.trace_sigma)
            and self.grad_sq > 0
            and self.trace_sigma > 0
        )

    @property
    def simple(self) -> float:
        """``B_simple = tr(Sigma) / |G|^2``, or ``nan`` when an estimate is not positive."""
        return self.trace_sigma / self.grad_sq if self.valid else math.nan


def estimate_noise(
    b_small: float, small_sq_norm: float, b_big: float, big_sq_norm: float
) -> NoiseEstimate:
    """Unbiased |G|^2 and tr(Sigma) from mean squared gradient norms at two batch sizes."""
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small} and {b_big}")
    grad_sq = (b_big * big_sq_norm - b_small * small_sq_norm) / (b_big - b_small)
    trace_sigma = (small_sq_norm - big_sq_norm) / (1.0 / b_small - 1.0 / b_big)
    return NoiseEstimate(float(grad_sq), float(trace_sigma))


def noise_scale(b_small: float, small_sq_norm: float, b_big: float, big_sq_norm: float) -> float:
    """``B_simple`` from two measurements (``nan`` when the estimate is not valid)."""
    return estimate_noise(b_small, small_sq_norm, b_big, big_sq_norm).simple


@dataclass
class NoiseScaleEMA:
    """Exponential moving averages of |G|^2 and tr(Sigma); their ratio is the smoothed
    ``B_simple``. ``beta`` is the weight of the past (0: no smoothing)."""

    beta: float = 0.7
    grad_sq: float = math.nan
    trace_sigma: float = math.nan

    def update(self, estimate: NoiseEstimate) -> float:
        """Fold in one estimate (non-finite ones are skipped); return the smoothed scale."""
        if math.isfinite(estimate.grad_sq) and math.isfinite(estimate.trace_sigma):
            if math.isnan(self.grad_sq):
                self.grad_sq, self.trace_sigma = estimate.grad_sq, estimate.trace_sigma
            else:
                b = self.beta
                self.grad_sq = b * self.grad_sq + (1 - b) * estimate.grad_sq
                self.trace_sigma = b * self.trace_sigma + (1 - b) * estimate.trace_sigma
        return self.value

    @property
    def value(self) -> float:
        return NoiseEstimate(self.grad_sq, self.trace_sigma).simple
