"""The batch-size controller's observation: one fixed-length, scale-free, named vector.

Whole-network statistics (the batch size is one number for the whole network), the
gradient-noise measurements that batch-size rules need, and the same shared training
state as the layerwise env. Every value is finite and inside its declared bounds, also
when the noise estimate is negative or the run diverged: logs of non-positive numbers
take the floor, and ``noise_scale_valid`` says whether the noise scale was measured.
Scripted agents read ``info["controller"][name]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from ganno_bench.envs.observation import LOG_FLOOR
from ganno_bench.inner.noise_scale import NoiseEstimate

NOISE_SCALE_RANGE = (1.0, 1e7)  # B_simple is clipped to this range before its log

# name: (low, high, meaning)
BATCH_FEATURES: dict[str, tuple[float, float, str]] = {
    "log10_lr": (-10.0, 2.0, "log10 of the learning rate (the id's fixed schedule)"),
    "log2_batch_size": (0.0, 16.0, "log2 of the current batch size"),
    "batch_position": (0.0, 1.0, "log(B / B_min) / log(B_max / B_min): where B sits in its bounds"),
    "log10_noise_scale": (
        0.0,
        7.0,
        "log10 of the simple noise scale tr(Sigma)/|G|^2 from the gradient probe "
        "(clipped to [1, 1e7]; 0 when not valid)",
    ),
    "log2_noise_to_batch": (
        -16.0,
        16.0,
        "log2(B_simple / B): positive when the batch is below the noise scale (0 when not valid)",
    ),
    "noise_scale_valid": (0.0, 1.0, "1 when both |G|^2 and tr(Sigma) estimates were positive"),
    "grad_noise": (
        0.0,
        1.0,
        "1 - |G_big|^2 / |G_small|^2 from the probe (noise share of a small-batch gradient)",
    ),
    "log10_grad_norm": (LOG_FLOOR, 10.0, "log10 norm of the probe's mean gradient"),
    "grad_cosine": (-1.0, 1.0, "cosine between successive decisions' probe gradients"),
    "log10_update_ratio": (
        LOG_FLOOR,
        10.0,
        "log10 |change of all weights over the decision| / |weights|",
    ),
    "train_loss": (0.0, 100.0, "mean inner-train loss over the stats window / log(num_classes)"),
    "val_loss": (0.0, 100.0, "inner-validation loss / log(num_classes)"),
    "delta_log_val_loss": (-20.0, 20.0, "log val loss now - log val loss one decision ago"),
    "val_accuracy": (0.0, 1.0, "inner-validation accuracy"),
    "progress": (0.0, 1.0, "training samples processed / the episode's sample budget"),
}
BATCH_FEATURE_NAMES: tuple[str, ...] = tuple(BATCH_FEATURES)
LOW = np.array([v[0] for v in BATCH_FEATURES.values()], dtype=np.float32)
HIGH = np.array([v[1] for v in BATCH_FEATURES.values()], dtype=np.float32)


def batch_observation_space() -> spaces.Box:
    return spaces.Box(LOW, HIGH, dtype=np.float32)


@dataclass(frozen=True)
class BatchState:
    """What one observation is built from (raw numbers; the builder makes them safe)."""

    lr: float
    batch_size: int
    batch_bounds: tuple[int, int]
    noise: NoiseEstimate
    big_sq_norm: float
    small_sq_norm: float
    grad_cosine: float
    update_ratio: float
    train_loss: float
    val_loss: float
    prev_val_loss: float
    val_accuracy: float
    progress: float


def _log(value: float, base: float) -> float:
    """The log; +inf for +inf (overflow: the builder puts it at the ceiling), -inf for zero,
    negatives and NaN (the floor)."""
    if value == math.inf:
        return math.inf
    return math.log(value, base) if math.isfinite(value) and value > 0 else -math.inf


def build_batch_observation(state: BatchState, num_classes: int) -> np.ndarray:
    """A float32 vector, finite and inside the declared bounds."""
    lo, hi = state.batch_bounds
    log_classes = math.log(num_classes)
    valid = state.noise.valid
    simple = float(np.clip(state.noise.simple, *NOISE_SCALE_RANGE)) if valid else math.nan
    noise_share = (
        1.0 - state.big_sq_norm / state.small_sq_norm if state.small_sq_norm > 0 else math.nan
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.log(state.val_loss) - np.log(state.prev_val_loss)
    values = np.array(
        [
            _log(state.lr, 10),
            math.log2(state.batch_size),
            math.log(state.batch_size / lo) / math.log(hi / lo),
            math.log10(simple) if valid else 0.0,
            math.log2(simple / state.batch_size) if valid else 0.0,
            float(valid),
            noise_share,
            0.5 * _log(state.big_sq_norm, 10),
            state.grad_cosine,
            _log(state.update_ratio, 10),
            state.train_loss / log_classes,
            state.val_loss / log_classes,
            delta,
            state.val_accuracy,
            state.progress,
        ],
        dtype=np.float64,
    )
    # -inf logs take the floor; overflow and NaN take the ceiling (never NaN out).
    values = np.nan_to_num(values, nan=HIGH.max(), posinf=HIGH.max(), neginf=LOG_FLOOR)
    return np.clip(values, LOW, HIGH).astype(np.float32)


def named_batch(row: np.ndarray) -> dict[str, float]:
    return dict(zip(BATCH_FEATURE_NAMES, row.tolist(), strict=True))
