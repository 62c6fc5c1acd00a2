"""The in-memory data set every engine trains on, and the split that carves it up.

Every task trains on an inner-train part, is rewarded on an inner-validation part and
is scored on an inner-test part. Splitting and corruption happen here, once, so that
every data source (bundled, generated or read from local files) gets the same treatment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ArrayDataset:
    """Three labelled parts of one data set, as CPU tensors (inputs float32, labels int64).

    Token sequences (the ``hmm`` source) hold int64 token ids as inputs and the next token
    at every position as labels, both ``(samples, length)``; accuracy and loss are then
    per predicted token. ``loss_floor`` is the best achievable mean inner-test loss (nats
    per prediction) where the source knows it, ``reference_losses`` named plug-in
    predictors' test losses beside it, so that a model's loss has a scale.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    loss_floor: float | None = None
    reference_losses: tuple[tuple[str, float], ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: (features,) for tables, (channels, height, width) for images."""
        return tuple(self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    @property
    def is_sequence(self) -> bool:
        """Whether labels are per position (next-token prediction) rather than per sample."""
        return self.y_train.dim() == 2


@dataclass(frozen=True)
class Corruption:
    """How a task makes its data noisier than the source (difficulty, not instance).

    ``label_noise`` is the fraction of inner-train labels replaced by a uniformly drawn
    *other* class; validation and test labels stay clean so that the reward and the
    score measure generalisation. ``input_noise`` is the standard deviation of fixed
    Gaussian noise added to every input after standardisation.
    """

    label_noise: float = 0.0
    input_noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise must lie in [0, 1), got {self.label_noise}")
        if self.input_noise < 0.0:
            raise ValueError(f"input_noise must be >= 0, got {self.input_noise}")


def split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    split_seed: int = 0,
    corruption: Corruption = Corruption(),
    max_samples: int | None = None,
) -> ArrayDataset:
    """Shuffle once with ``split_seed``, cut into train/val/test, standardise and corrupt.

    Standardisation uses inner-train statistics only (per feature for tables, per channel
    for images), so nothing about validation or test leaks into training.
    """
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} inputs but {len(y)} labels")
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    rng = np.random.default_rng([split_seed, 0x5D17])
    order = rng.permutation(len(x))
    if max_samples is not None:
        order = order[:max_samples]
    n = len(order)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    parts = np.split(order, [n_train, n_train + n_val])
    if min(len(p) for p in parts) == 0:
        raise ValueError(f"{name}: {n} samples are too few to split into {fractions}")
    return _assemble(name, [(x[p], y[p]) for p in parts], num_classes, split_seed, corruption)


def assemble_given_test(
    name: str,
    x_trainval: np.ndarray,
    y_trainval: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    corruption: Corruption = Corruption(),
    max_samples: int | None = None,
) -> ArrayDataset:
    """For sources with an official test set: keep it, carve validation from train."""
    rng = np.random.default_rng([split_seed, 0x7E57])
    order = rng.permutation(len(x_trainval))
    test_order = rng.permutation(len(x_test))
    if max_samples is not None:
        order = order[:max_samples]
        test_order = test_order[: max(1, int(max_samples * len(x_test) / len(x_trainval)))]
    n_val = max(1, round(val_fraction * len(order)))
    train, val = order[n_val:], order[:n_val]
    parts = [
        (x_trainval[train], y_trainval[train]),
        (x_trainval[val], y_trainval[val]),
        (x_test[test_order], y_test[test_order]),
    ]
    return _assemble(name, parts, num_classes, split_seed, corruption)


def _assemble(
    name: str,
    parts: list[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    split_seed: int,
    corruption: Corruption,
) -> ArrayDataset:
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = [
        (np.asarray(xp, dtype=np.float64), np.asarray(yp, dtype=np.int64)) for xp, yp in parts
    ]
    axes = (0,) if x_tr.ndim == 2 else (0, 2, 3)
    mean = x_tr.mean(axis=axes, keepdims=True)
    std = x_tr.std(axis=axes, keepdims=True)
    std[std < 1e-8] = 1.0
    x_tr, x_va, x_te = ((xp - mean) / std for xp in (x_tr, x_va, x_te))

    # Separate streams: the same label_noise flips the same labels whatever input_noise is.
    input_rng = np.random.default_rng([split_seed, 0xC0DE, 1])
    label_rng = np.random.default_rng([split_seed, 0xC0DE, 2])
    if corruption.input_noise > 0:
        x_tr, x_va, x_te = (
            xp + corruption.input_noise * input_rng.standard_normal(xp.shape)
            for xp in (x_tr, x_va, x_te)
        )
    if corruption.label_noise > 0:
        y_tr = y_tr.copy()
        flip = label_rng.random(len(y_tr)) < corruption.label_noise
        shift = label_rng.integers(1, num_classes, size=len(y_tr))
        y_tr[flip] = (y_tr[flip] + shift[flip]) % num_classes

    def as_tensors(xp: np.ndarray, yp: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(xp.astype(np.float32)), torch.from_numpy(yp)

    (xt, yt), (xv, yv), (xs, ys) = (
        as_tensors(x_tr, y_tr),
        as_tensors(x_va, y_va),
        as_tensors(x_te, y_te),
    )
    return ArrayDataset(name, xt, yt, xv, yv, xs, ys, num_classes)
