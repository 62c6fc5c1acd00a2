"""The per-agent observation: fixed-length, scale-free, named.

Every agent sees the same features whatever the network's depth or width: logs,
ratios and cosines of its own layer, plus the shared training state. The names below
are the contract with scripted agents, which read ``info[agent][name]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from ganno_bench.inner.engine import DecisionStats, LayerInfo
from ganno_bench.inner.models import LAYER_KINDS

LOG_FLOOR = -20.0

# name: (low, high, meaning)
FEATURES: dict[str, tuple[float, float, str]] = {
    "log10_lr": (-10.0, 2.0, "log10 of this layer's learning rate"),
    "log10_grad_norm": (
        LOG_FLOOR,
        10.0,
        "log10 norm of the mean gradient over the stats window (last inner steps)",
    ),
    "log10_weight_norm": (LOG_FLOOR, 10.0, "log10 norm of the layer's weights and bias"),
    "log10_update_ratio": (
        LOG_FLOOR,
        10.0,
        "log10 |change of weights over the decision| / |weights|",
    ),
    "grad_cosine": (-1.0, 1.0, "cosine between the mean gradients of successive decisions"),
    "grad_noise": (0.0, 1.0, "1 - |mean gradient|^2 / mean |minibatch gradient|^2 (noise share)"),
    "relative_depth": (0.0, 1.0, "layer index / (layers - 1)"),
    "layer_kind": (
        0.0,
        1.0,
        "0 for Linear, 1 for Conv2d; transformers: 0.25 attention q/k/v, 0.5 embedding",
    ),
    "log10_fan_in": (0.0, 10.0, "log10 of the layer's fan-in"),
    "train_loss": (0.0, 100.0, "mean inner-train loss over the stats window / log(num_classes)"),
    "val_loss": (0.0, 100.0, "inner-validation loss / log(num_classes)"),
    "delta_log_val_loss": (-20.0, 20.0, "log val loss now - log val loss one decision ago"),
    "val_accuracy": (0.0, 1.0, "inner-validation accuracy"),
    "progress": (0.0, 1.0, "decisions taken / decisions in the episode"),
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
LOW = np.array([v[0] for v in FEATURES.values()], dtype=np.float32)
HIGH = np.array([v[1] for v in FEATURES.values()], dtype=np.float32)


def observation_space() -> spaces.Box:
    return spaces.Box(LOW, HIGH, dtype=np.float32)


def _log10(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.asarray(values, dtype=np.float64))


def build_observations(
    layers: Sequence[LayerInfo],
    rates: np.ndarray,
    stats: DecisionStats,
    *,
    val_loss: float,
    prev_val_loss: float,
    val_accuracy: float,
    progress: float,
    num_classes: int,
) -> np.ndarray:
    """An array of shape (layers, features), finite and inside the declared bounds."""
    count = len(layers)
    log_classes = np.log(num_classes)
    per_layer = np.stack(
        [
            _log10(rates),
            _log10(stats.grad_norm),
            _log10(stats.weight_norm),
            _log10(stats.update_ratio),
            stats.grad_cosine,
            stats.grad_noise,
            [layer.depth for layer in layers],
            [LAYER_KINDS[layer.kind] for layer in layers],
            _log10([layer.fan_in for layer in layers]),
        ],
        axis=1,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.log(val_loss) - np.log(prev_val_loss)
    shared = np.array(
        [
            stats.train_loss / log_classes,
            val_loss / log_classes,
            delta,
            val_accuracy,
            progress,
        ]
    )
    obs = np.concatenate([per_layer, np.broadcast_to(shared, (count, len(shared)))], axis=1)
    # Zeros give -inf logs (floor), overflow gives +inf/NaN (ceiling): never NaN out.
    obs = np.nan_to_num(obs, nan=HIGH.max(), posinf=HIGH.max(), neginf=LOG_FLOOR)
    return np.clip(obs, LOW, HIGH).astype(np.float32)


def named(row: Sequence[float]) -> dict[str, float]:
    """One agent's observation as a {feature name: value} dict (for infos)."""
    return dict(zip(FEATURE_NAMES, row, strict=True))
