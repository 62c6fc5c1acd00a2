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
from ganno_bench.inner import fields
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
        """Check and canonicalise every field (see :mod:`ganno_bench.inner.fields`): the one
        validation path of suite entries, user tasks and ``make`` overrides alike."""
        if not isinstance(self.id, str) or not self.id:
            raise TypeError(
                f"a task id must be a non-empty string such as 'mylab/MyTask-v0', "
                f"got {self.id!r} ({type(self.id).__name__})"
            )
        owner = f"task {self.id!r}"
        canonical: dict[str, Any] = {
            "optimizer": fields.choice(owner, "optimizer", self.optimizer, OPTIMIZERS),
            "lr_bounds": fields.numbers_tuple(
                owner,
                "lr_bounds",
                self.lr_bounds,
                what="a (low, high) pair of numbers",
                length=2,
            ),
            "factors": fields.numbers_tuple(
                owner, "factors", self.factors, what="a tuple of positive numbers"
            ),
            "weight_decay": fields.real(
                owner, "weight_decay", self.weight_decay, ">= 0", lambda v: v >= 0
            ),
            "divergence_factor": fields.real(
                owner, "divergence_factor", self.divergence_factor, "> 1", lambda v: v > 1
            ),
            "divergence_penalty": fields.real(
                owner, "divergence_penalty", self.divergence_penalty, ">= 0", lambda v: v >= 0
            ),
        }
        for name in ("decisions", "inner_steps", "stats_window", "eval_batch_size", "num_frozen"):
            canonical[name] = fields.integer(owner, name, getattr(self, name), minimum=1)
        for name in ("description", "family", "difficulty"):
            canonical[name] = fields.text(owner, name, getattr(self, name))
        for name, value in canonical.items():
            object.__setattr__(self, name, value)
        lo, hi = self.lr_bounds
        if not 0 < lo < hi:
            raise ValueError(
                f"{owner}: lr_bounds must satisfy 0 < low < high, got {self.lr_bounds}"
            )
        if not self.factors or min(self.factors) <= 0:
            raise ValueError(
                f"{owner}: factors must be a non-empty tuple of positive numbers, "
                f"got {self.factors}"
            )
        if not isinstance(self.model, ModelConfig) and not callable(self.model):
            raise TypeError(
                f"{owner}: model must be a ModelConfig or a callable "
                f"(input_shape, num_classes) -> nn.Module, got {type(self.model).__name__}"
            )
        if not isinstance(self.data, DataConfig) and not callable(self.data):
            raise TypeError(
                f"{owner}: data must be a DataConfig or a callable () -> ArrayDataset, "
                f"got {type(self.data).__name__}"
            )
        if not isinstance(self.spaces, dict) or set(self.spaces) != set(SPLITS):
            got = sorted(self.spaces) if isinstance(self.spaces, dict) else self.spaces
            raise ValueError(
                f"{owner}: spaces must define exactly the splits {SPLITS}, got {got!r}"
            )
        wrong = [s for s, space in self.spaces.items() if not isinstance(space, InstanceSpace)]
        if wrong:
            raise TypeError(
                f"{owner}: spaces[{wrong[0]!r}] must be an InstanceSpace (register() builds "
                "them from dicts)"
            )

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
        """This task with some budget or reward knobs changed (checked like every field)."""
        unknown = set(overrides) - set(self.overridable)
        if unknown:
            raise TypeError(
                f"unknown override(s) {sorted(unknown)} for {self.id!r}; "
                f"tasks accept {list(self.overridable)}"
            )
        return dataclasses.replace(self, **overrides)
