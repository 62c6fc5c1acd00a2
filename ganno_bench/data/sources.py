"""Named data sources: bundled, generated from a seed, or read from local files.

A task names its source and options in the suite's TOML; ``load_dataset`` turns that
into an :class:`ArrayDataset`. Loading is cached per process because every reset of
every env on the same task shares one immutable copy.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import numpy as np

from ganno_bench.data.dataset import ArrayDataset, Corruption, assemble_given_test, split_arrays
from ganno_bench.data.local_files import load_cifar10, load_mnist_like
from ganno_bench.data.sequences import hmm_sequences

DATA_ENV_VAR = "GANNO_DATA"


def _digits(
    split_seed: int, corruption: Corruption, *, image: bool = True, **_: Any
) -> ArrayDataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, no download)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images[:, None, :, :] if image else bunch.data
    return split_arrays(
        "digits", x / 16.0, bunch.target, 10, split_seed=split_seed, corruption=corruption
    )


def _synthetic(
    split_seed: int,
    corruption: Corruption,
    *,
    seed: int = 0,
    samples: int = 2000,
    features: int = 32,
    informative: int = 16,
    classes: int = 8,
    class_sep: float = 1.0,
    clusters_per_class: int = 2,
    image_side: int | None = None,
    **_: Any,
) -> ArrayDataset:
    """A procedurally generated classification set (scikit-learn's ``make_classification``).

    With ``image_side`` the features are laid out as a one-channel square image, so the
    same generator feeds CNN tasks.
    """
    from sklearn.datasets import make_classification

    if image_side is not None:
        features = image_side * image_side
    x, y = make_classification(
        n_samples=samples,
        n_features=features,
        n_informative=min(informative, features),
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=clusters_per_class,
        class_sep=class_sep,
        flip_y=0.0,
        random_state=seed,
    )
    if image_side is not None:
        x = x.reshape(-1, 1, image_side, image_side)
    return split_arrays(
        f"synthetic-{seed}", x, y, classes, split_seed=split_seed, corruption=corruption
    )


def _resolve_root(root: str | None) -> str:
    if root is not None:
        return root
    env_root = os.environ.get(DATA_ENV_VAR)
    if env_root:
        return env_root
    return os.path.join(os.path.expanduser("~"), ".ganno_bench", "data")


LocalReader = Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _local_source(name: str, reader: LocalReader) -> Callable[..., ArrayDataset]:
    """A source read from local files that come with an official test set."""

    def load(
        split_seed: int,
        corruption: Corruption,
        *,
        root: str | None = None,
        max_samples: int | None = None,
        **_: Any,
    ) -> ArrayDataset:
        x_tr, y_tr, x_te, y_te = reader(_resolve_root(root))
        return assemble_given_test(
            name,
            x_tr,
            y_tr,
            x_te,
            y_te,
            10,
            split_seed=split_seed,
            corruption=corruption,
            max_samples=max_samples,
        )

    load.__doc__ = f"{name} from local files (root option, or ${DATA_ENV_VAR})."
    return load


DATA_SOURCES: dict[str, Callable[..., ArrayDataset]] = {
    "digits": _digits,
    "synthetic": _synthetic,
    "hmm": hmm_sequences,
    "mnist": _local_source("mnist", partial(load_mnist_like, kind="mnist")),
    "fashion-mnist": _local_source("fashion-mnist", partial(load_mnist_like, kind="fashion-mnist")),
    "cifar10": _local_source("cifar10", load_cifar10),
}


def load_dataset(
    source: str,
    *,
    split_seed: int = 0,
    label_noise: float = 0.0,
    input_noise: float = 0.0,
    **options: Any,
) -> ArrayDataset:
    """Load a named source, split it with ``split_seed`` and apply the task's corruption."""
    if source not in DATA_SOURCES:
        close = difflib.get_close_matches(source, DATA_SOURCES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown data source {source!r}.{hint} Known sources: {sorted(DATA_SOURCES)}."
        )
    key = tuple(sorted((k, _hashable(v)) for k, v in options.items()))
    return _load_cached(source, split_seed, label_noise, input_noise, key)


def _hashable(value: Any) -> Any:
    """Options as a cache key: lists and dicts become (nested) tuples."""
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


@lru_cache(maxsize=16)
def _load_cached(
    source: str,
    split_seed: int,
    label_noise: float,
    input_noise: float,
    options: tuple[tuple[str, Any], ...],
) -> ArrayDataset:
    corruption = Corruption(label_noise=label_noise, input_noise=input_noise)
    dataset = DATA_SOURCES[source](split_seed, corruption, **dict(options))
    for part in (dataset.x_train, dataset.x_val, dataset.x_test):
        if not np.isfinite(part.numpy()).all():
            raise ValueError(f"data source {source!r} produced non-finite inputs")
    return dataset
