"""Initial conditions: what an env samples at reset, and the held-out splits.

An :class:`Instance` fixes everything random about one inner training run. Each task
has three :class:`InstanceSpace` s:

* ``train``: the distribution agents learn on;
* ``test``: the same ranges, but seeds from a disjoint range, so no test instance can
  equal a reachable train instance;
* ``test-ood``: every factor drawn from ranges *outside* the train ranges
  (extrapolation).

The ``test`` and ``test-ood`` splits are frozen lists, shipped as hashed JSON in the
suite's ``envs/instances`` folder; instance ``k`` of a split is a pure function of the
task id, the split name and ``k``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import fields as fields_of
from functools import lru_cache

import numpy as np

from ganno_bench.inner import fields
from ganno_bench.inner.models import INIT_SCHEMES

SPLITS = ("train", "test", "test-ood")
FROZEN_SPLITS = ("test", "test-ood")

# Seeds of each split come from disjoint ranges: disjointness holds by construction.
SEED_RANGES: dict[str, tuple[int, int]] = {
    "train": (0, 2**30),
    "test": (2**30, 2**30 + 2**29),
    "test-ood": (2**30 + 2**29, 2**31),
}

Intervals = tuple[tuple[float, float], ...]
MAX_SEED = 2**63  # torch generators take seeds below 2**64; the probe stream adds a salt


@dataclass(frozen=True)
class Instance:
    """One initial condition of an inner training run."""

    init_seed: int
    data_seed: int
    init_scheme: str
    init_scale: float
    log10_lr: float
    batch_size: int
    momentum: float

    def __post_init__(self) -> None:
        """Refuse what no inner run can start from (a NaN rate, a bool batch size, an
        unknown init scheme), naming the field: instances also come from users' dicts."""
        owner = "instance"
        canonical = {
            "init_seed": fields.integer(owner, "init_seed", self.init_seed, minimum=0),
            "data_seed": fields.integer(owner, "data_seed", self.data_seed, minimum=0),
            "init_scheme": fields.choice(owner, "init_scheme", self.init_scheme, INIT_SCHEMES),
            "init_scale": fields.real(owner, "init_scale", self.init_scale, "> 0", lambda v: v > 0),
            "log10_lr": fields.real(
                owner, "log10_lr", self.log10_lr, "(a log10 learning rate)", lambda v: True
            ),
            "batch_size": fields.integer(owner, "batch_size", self.batch_size, minimum=1),
            "momentum": fields.real(
                owner, "momentum", self.momentum, "in [0, 1)", lambda v: 0 <= v < 1
            ),
        }
        for name in ("init_seed", "data_seed"):
            if canonical[name] >= MAX_SEED:
                raise ValueError(f"{owner}: {name} must be below 2**63, got {canonical[name]}")
        for name, value in canonical.items():
            object.__setattr__(self, name, value)

    @property
    def learning_rate(self) -> float:
        return float(10.0**self.log10_lr)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Instance:
        """An instance from its :meth:`to_dict` form; a missing or unknown key is a
        TypeError naming the keys an instance has."""
        keys = [f.name for f in fields_of(cls)]
        if not isinstance(data, dict) or set(data) != set(keys):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise TypeError(f"an instance dict has exactly the keys {keys}, got {got}")
        return cls(**data)


@dataclass(frozen=True)
class InstanceSpace:
    """Ranges of each factor; continuous factors are unions of closed intervals."""

    log10_lr: Intervals
    init_scale: Intervals
    momentum: Intervals
    batch_sizes: tuple[int, ...]
    init_schemes: tuple[str, ...]
    seed_range: tuple[int, int] = field(default=SEED_RANGES["train"])

    def __post_init__(self) -> None:
        for name in ("log10_lr", "init_scale", "momentum"):
            for lo, hi in getattr(self, name):
                if not lo <= hi:
                    raise ValueError(f"{name}: interval [{lo}, {hi}] is empty")
        unknown = set(self.init_schemes) - set(INIT_SCHEMES)
        if unknown:
            raise ValueError(f"unknown init schemes {sorted(unknown)}; known: {INIT_SCHEMES}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError("batch_sizes must be a non-empty list of positive integers")
        if not self.init_schemes:
            raise ValueError("init_schemes must not be empty")

    @classmethod
    def from_config(cls, config: dict, split: str) -> InstanceSpace:
        """Build from a TOML table; intervals may be written [lo, hi] or [[lo, hi], ...]."""

        def intervals(value: Sequence) -> Intervals:
            if len(value) == 2 and all(isinstance(v, int | float) for v in value):
                value = [value]
            return tuple((float(lo), float(hi)) for lo, hi in value)

        known = {"log10_lr", "init_scale", "momentum", "batch_sizes", "init_schemes"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(
                f"{split}: unknown instance factors {sorted(unknown)}; known: {sorted(known)}"
            )
        missing = known - set(config)
        if missing:
            raise ValueError(f"{split}: missing instance factors {sorted(missing)}")
        return cls(
            log10_lr=intervals(config["log10_lr"]),
            init_scale=intervals(config["init_scale"]),
            momentum=intervals(config["momentum"]),
            batch_sizes=tuple(int(b) for b in config["batch_sizes"]),
            init_schemes=tuple(config["init_schemes"]),
            seed_range=SEED_RANGES[split],
        )

    def sample(self, rng: np.random.Generator) -> Instance:
        """Draw one instance; values are rounded so frozen JSON round-trips exactly."""
        lo, hi = self.seed_range
        return Instance(
            init_seed=int(rng.integers(lo, hi)),
            data_seed=int(rng.integers(lo, hi)),
            init_scheme=str(self.init_schemes[rng.integers(len(self.init_schemes))]),
            init_scale=_round(_uniform_over(self.init_scale, rng)),
            log10_lr=_round(_uniform_over(self.log10_lr, rng)),
            batch_size=int(self.batch_sizes[rng.integers(len(self.batch_sizes))]),
            momentum=_round(_uniform_over(self.momentum, rng)),
        )

    def contains(self, instance: Instance) -> bool:
        """Whether this space can produce ``instance``."""
        lo, hi = self.seed_range
        return (
            lo <= instance.init_seed < hi
            and lo <= instance.data_seed < hi
            and instance.init_scheme in self.init_schemes
            and instance.batch_size in self.batch_sizes
            and _inside(instance.init_scale, self.init_scale)
            and _inside(instance.log10_lr, self.log10_lr)
            and _inside(instance.momentum, self.momentum)
        )


def _round(value: float) -> float:
    return float(np.round(value, 6))


def _uniform_over(intervals: Intervals, rng: np.random.Generator) -> float:
    """Uniform over a union of intervals (each picked in proportion to its length)."""
    lengths = np.array([hi - lo for lo, hi in intervals], dtype=float)
    if lengths.sum() == 0:
        k = int(rng.integers(len(intervals)))
    else:
        k = int(rng.choice(len(intervals), p=lengths / lengths.sum()))
    lo, hi = intervals[k]
    return float(rng.uniform(lo, hi))


def _inside(value: float, intervals: Intervals) -> bool:
    return any(lo <= value <= hi for lo, hi in intervals)


def task_salt(task_id: str) -> int:
    """A stable integer from the task id, so each task's frozen lists differ."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "little")


def frozen_instance(task_id: str, space: InstanceSpace, split: str, index: int) -> Instance:
    """Instance ``index`` of a frozen split: a pure function of (id, split, index)."""
    rng = np.random.default_rng([task_salt(task_id), SPLITS.index(split), index])
    return space.sample(rng)


def build_frozen(task_id: str, space: InstanceSpace, split: str, count: int) -> list[Instance]:
    """Instances ``0..count-1`` of a split (cached: resets of unshipped tasks reuse them)."""
    return list(_build_frozen(task_id, space, split, count))


@lru_cache(maxsize=256)
def _build_frozen(task_id: str, space: InstanceSpace, split: str, count: int) -> tuple:
    return tuple(frozen_instance(task_id, space, split, k) for k in range(count))


def instances_hash(instances: Sequence[Instance]) -> str:
    """SHA-256 of the canonical JSON of a list of instances."""
    payload = json.dumps([i.to_dict() for i in instances], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()
