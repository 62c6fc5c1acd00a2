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
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
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
    return build_observation_batch(
        layers,
        np.asarray(rates)[None],
        [stats],
        val_loss=np.array([val_loss]),
        prev_val_loss=np.array([prev_val_loss]),
        val_accuracy=np.array([val_accuracy]),
        progress=np.array([progress]),
        num_classes=num_classes,
    )[0]


def build_observation_batch(
    layers: Sequence[LayerInfo],
    rates: np.ndarray,
    stats: Sequence[DecisionStats],
    *,
    val_loss: np.ndarray,
    prev_val_loss: np.ndarray,
    val_accuracy: np.ndarray,
    progress: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """Observations of C copies of one network at once, shape (C, layers, features):
    ``rates`` (C, layers), one DecisionStats and one value of each shared feature per
    copy. Every feature is elementwise, so each copy's rows are bitwise what a call for
    that copy alone gives; one call for 32 copies costs about what one copy did."""
    copies, count = len(stats), len(layers)
    obs = np.empty((copies, count, len(FEATURE_NAMES)))
    norms = np.array([(s.grad_norm, s.weight_norm, s.update_ratio) for s in stats], np.float64)
    directions = np.array([(s.grad_cosine, s.grad_noise) for s in stats], np.float64)
    obs[..., _COLUMN["log10_lr"]] = _log10(rates)
    obs[..., _COLUMN["log10_grad_norm"] : _COLUMN["grad_cosine"]] = _log10(norms).swapaxes(1, 2)
    obs[..., _COLUMN["grad_cosine"] : _COLUMN["relative_depth"]] = directions.swapaxes(1, 2)
    obs[..., _COLUMN["relative_depth"]] = [layer.depth for layer in layers]
    obs[..., _COLUMN["layer_kind"]] = [LAYER_KINDS[layer.kind] for layer in layers]
    obs[..., _COLUMN["log10_fan_in"]] = _log10([layer.fan_in for layer in layers])
    log_classes = np.log(num_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.log(val_loss) - np.log(prev_val_loss)
    for name, per_copy in (
        ("train_loss", np.array([s.train_loss for s in stats]) / log_classes),
        ("val_loss", np.asarray(val_loss) / log_classes),
        ("delta_log_val_loss", delta),
        ("val_accuracy", val_accuracy),
        ("progress", progress),
    ):
        obs[..., _COLUMN[name]] = np.asarray(per_copy)[:, None]
    # Zeros give -inf logs (floor), overflow gives +inf/NaN (ceiling): never NaN out.
    np.nan_to_num(obs, copy=False, nan=HIGH.max(), posinf=HIGH.max(), neginf=LOG_FLOOR)
    return np.clip(obs, LOW, HIGH, out=obs).astype(np.float32)


def named(row: Sequence[float]) -> dict[str, float]:
    """One agent's observation as a {feature name: value} dict (for infos)."""
    return dict(zip(FEATURE_NAMES, row, strict=True))
