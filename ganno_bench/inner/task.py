"""A task: network + data set + inner optimiser + budget + instance splits.

:class:`TaskSpec` is what the registry stores under an id. Suite entries are built from
``envs/*.toml``; users build their own with the same class (and may pass callables for a
network or data set the suite does not ship).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ganno_bench.data import ArrayDataset, load_dataset
from ganno_bench.inner.instances import SPLITS, Instance, InstanceSpace, build_frozen
from ganno_bench.inner.models import ModelConfig, build_network

OPTIMIZERS = ("sgd", "adam")
NetworkFactory = Callable[[tuple[int, ...], int], nn.Module]
DataFactory = Callable[[], ArrayDataset]

# Budget and reward knobs that ``make(id, **overrides)`` may change.
OVERRIDABLE = (
    "decisions",
    "inner_steps",
    "lr_bounds",
    "factors",
    "divergence_factor",
    "divergence_penalty",
    "stats_window",
    "eval_batch_size",
)


@dataclass(frozen=True)
class DataConfig:
    """A named data source, its options and the task's corruption of it."""

    source: str
    options: dict[str, Any] = field(default_factory=dict)
    label_noise: float = 0.0
    input_noise: float = 0.0
    split_seed: int = 0

    def load(self) -> ArrayDataset:
        return load_dataset(
            self.source,
            split_seed=self.split_seed,
            label_noise=self.label_noise,
            input_noise=self.input_noise,
            **self.options,
        )

    def describe(self) -> str:
        noise = []
        if self.label_noise:
            noise.append(f"{self.label_noise:.0%} label noise")
        if self.input_noise:
            noise.append(f"input noise sd {self.input_noise}")
        options = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.source}({options})" + (f" with {', '.join(noise)}" if noise else "")


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines one registered environment id.

    ``decisions`` x ``inner_steps`` is the budget: each decision applies the agents'
    learning rates, runs ``inner_steps`` minibatch updates and then observes and rewards.
    Learning rates are clipped to ``lr_bounds``. A step whose validation loss, or mean
    train loss over the stats window, is not finite or exceeds ``divergence_factor`` times
    the initial validation loss ends the episode with reward ``-divergence_penalty``.
    """

    id: str
    model: ModelConfig | NetworkFactory
    data: DataConfig | DataFactory
    spaces: dict[str, InstanceSpace]
    optimizer: str = "sgd"
    decisions: int = 20
    inner_steps: int = 20
    description: str = ""
    family: str = "custom"
    difficulty: str = "custom"
    lr_bounds: tuple[float, float] = (1e-5, 10.0)
    factors: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0)
    weight_decay: float = 0.0
    divergence_factor: float = 10.0
    divergence_penalty: float = 5.0
    stats_window: int = 4
    eval_batch_size: int = 4096
    num_frozen: int = 32
    frozen: dict[str, tuple[Instance, ...]] | None = field(default=None, compare=False)
    # What ``make(id, **overrides)`` may change (a subclass with other knobs widens it).
    overridable: ClassVar[tuple[str, ...]] = OVERRIDABLE

    def __post_init__(self) -> None:
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.decisions < 1 or self.inner_steps < 1:
            problems.append("decisions and inner_steps must be >= 1")
        lo, hi = self.lr_bounds
        if not 0 < lo < hi:
            problems.append(f"lr_bounds must satisfy 0 < low < high, got {self.lr_bounds}")
        if not self.factors or min(self.factors) <= 0:
            problems.append("factors must be a non-empty tuple of positive numbers")
        if set(self.spaces) != set(SPLITS):
            problems.append(
                f"spaces must define exactly the splits {SPLITS}, got {sorted(self.spaces)}"
            )
        if self.divergence_factor <= 1 or self.divergence_penalty < 0:
            problems.append("divergence_factor must be > 1 and divergence_penalty >= 0")
        if self.stats_window < 1 or self.num_frozen < 1:
            problems.append("stats_window and num_frozen must be >= 1")
        if problems:
            raise ValueError(f"task {self.id!r}: " + "; ".join(problems))

    @property
    def name(self) -> str:
        """The id without namespace and version, e.g. ``LayerLR-MLP-Easy``."""
        return self.id.split("/")[-1].rsplit("-v", 1)[0]

    @property
    def budget(self) -> str:
        """The budget in words, ``decisions x inner steps`` (for listings)."""
        return f"{self.decisions} x {self.inner_steps}"

    @property
    def version(self) -> int:
        return int(self.id.rsplit("-v", 1)[1]) if "-v" in self.id else 0

    def load_data(self) -> ArrayDataset:
        return self.data.load() if isinstance(self.data, DataConfig) else self.data()

    def build_network(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if isinstance(self.model, ModelConfig):
            return build_network(self.model, input_shape, num_classes)
        return self.model(input_shape, num_classes)

    def frozen_instances(self, split: str) -> tuple[Instance, ...]:
        """The frozen list of a held-out split (shipped file, else built from the id)."""
        if split not in ("test", "test-ood"):
            raise ValueError(f"only 'test' and 'test-ood' are frozen, not {split!r}")
        if self.frozen is not None and split in self.frozen:
            return self.frozen[split]
        return tuple(build_frozen(self.id, self.spaces[split], split, self.num_frozen))

    def with_overrides(self, **overrides: Any) -> TaskSpec:
        unknown = set(overrides) - set(self.overridable)
        if unknown:
            raise TypeError(
                f"unknown override(s) {sorted(unknown)} for {self.id!r}; "
                f"tasks accept {list(self.overridable)}"
            )
        if "lr_bounds" in overrides:
            overrides["lr_bounds"] = tuple(overrides["lr_bounds"])
        if "factors" in overrides:
            overrides["factors"] = tuple(overrides["factors"])
        return dataclasses.replace(self, **overrides)
