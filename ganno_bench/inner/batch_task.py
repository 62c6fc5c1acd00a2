"""A batch-size task: the agent picks the batch size, the learning-rate schedule is fixed.

The budget is counted in training samples, as in the batch-size literature: every decision
processes exactly ``samples_per_decision`` samples, so a larger batch means fewer updates.

How a decision's samples become updates (:func:`update_sizes`), at batch size ``B`` with
``batch_bounds = (lo, hi)``: ``samples // B`` updates of ``B``; a remainder ``r`` of at
least ``lo`` samples is one more update of ``r``, a smaller remainder joins the last
update (``B + r`` samples, under ``B + lo``); a ``B`` above the decision's samples is cut
to them. So the samples processed are exactly the budget, and every update, all at the
schedule's learning rate, has between ``lo`` and ``max(hi, B + lo - 1)`` samples: none
falls below the batch bounds (``samples_per_decision >= lo`` is required).
The instance's ``batch_size`` is the initial batch size and its ``log10_lr`` the base rate
of the id's fixed schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ganno_bench.inner import fields
from ganno_bench.inner.task import OVERRIDABLE, TaskSpec

LR_SCHEDULES = ("constant", "cosine")

# Keys of a batch-size task beyond the common ones (its budget is in samples, not steps).
BATCH_KEYS = (
    "samples_per_decision",
    "batch_bounds",
    "lr_schedule",
    "lr_final_factor",
    "probe_batch",
    "probe_chunks",
)
BATCH_OVERRIDABLE = (*(key for key in OVERRIDABLE if key != "inner_steps"), *BATCH_KEYS)


@dataclass(frozen=True)
class BatchSizeTaskSpec(TaskSpec):
    """A task of the batch-size track (one agent, ``controller``, for the whole network).

    ``decisions`` x ``samples_per_decision`` is the sample budget. A decision at batch size
    ``B`` runs ``samples_per_decision // B`` updates of ``B`` samples and, if that leaves a
    remainder, one more update on it, or, when the remainder is below ``batch_bounds[0]``,
    it joins the last update (see :func:`update_sizes`), so the budget is met exactly
    whatever the agent chooses and no update has fewer than ``batch_bounds[0]`` samples.
    Batch sizes are clipped to ``batch_bounds``; factor mode multiplies the current size by
    one of ``factors`` (halve, keep, double). The learning rate follows ``lr_schedule`` over
    the decisions: ``constant`` (the instance's rate) or ``cosine`` (from it down to
    ``lr_final_factor`` times it). ``probe_batch`` x ``probe_chunks`` samples per decision,
    drawn with replacement, measure the gradient noise (not counted in the budget: they
    never update the weights). ``inner_steps`` is unused here (result cards omit it).
    """

    inner_steps: int = 1
    factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    samples_per_decision: int = 1280
    batch_bounds: tuple[int, int] = (8, 512)
    lr_schedule: str = "constant"
    lr_final_factor: float = 0.01
    probe_batch: int = 32
    probe_chunks: int = 8
    overridable: ClassVar[tuple[str, ...]] = BATCH_OVERRIDABLE

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"task {self.id!r}"
        canonical = {
            "batch_bounds": fields.numbers_tuple(
                owner,
                "batch_bounds",
                self.batch_bounds,
                what="a (low, high) pair of integers",
                integers=True,
                length=2,
            ),
            "samples_per_decision": fields.integer(
                owner, "samples_per_decision", self.samples_per_decision
            ),
            "lr_schedule": fields.choice(owner, "lr_schedule", self.lr_schedule, LR_SCHEDULES),
            "lr_final_factor": fields.real(
                owner,
                "lr_final_factor",
                self.lr_final_factor,
                "in (0, 1]",
                lambda v: 0 < v <= 1,
            ),
            "probe_batch": fields.integer(owner, "probe_batch", self.probe_batch, minimum=1),
            "probe_chunks": fields.integer(owner, "probe_chunks", self.probe_chunks, minimum=2),
        }
        for name, value in canonical.items():
            object.__setattr__(self, name, value)
        problems = []
        lo, hi = self.batch_bounds
        if not 1 <= lo < hi:
            problems.append(f"batch_bounds must satisfy 1 <= low < high, got {self.batch_bounds}")
        if self.samples_per_decision < max(lo, 1):
            problems.append(
                f"samples_per_decision must be >= batch_bounds[0] = {lo} (no update may have "
                f"fewer samples), got {self.samples_per_decision}"
            )
        for split, space in self.spaces.items():
            outside = [b for b in space.batch_sizes if not lo <= b <= hi]
            if outside:
                problems.append(
                    f"{split}: initial batch sizes {outside} are outside {lo}..{hi}, the "
                    "batch_bounds (widen them to hold these)"
                )
        if problems:
            raise ValueError(f"{owner}: " + "; ".join(problems))

    @property
    def budget(self) -> str:
        return f"{self.decisions} x {self.samples_per_decision} samples"

    @property
    def sample_budget(self) -> int:
        return self.decisions * self.samples_per_decision

    def learning_rate(self, base: float, decision: int) -> float:
        """The fixed schedule's rate for ``decision`` (0-based), from the base rate."""
        if self.lr_schedule == "constant":
            return base
        final = base * self.lr_final_factor
        progress = decision / max(self.decisions - 1, 1)
        return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * progress))


def require_batch_task(agent_name: str, task: TaskSpec) -> None:
    """Refuse a task without a batch size to set (an LR-track id), naming the fix."""
    if not hasattr(task, "batch_bounds"):
        raise ValueError(
            f"{agent_name} controls a batch size; {task.id} is not a batch-size id: use a "
            "ganno/BatchSize-* id (suite `batch-size`)"
        )


def update_sizes(samples: int, batch_size: int, smallest: int = 1) -> list[int]:
    """The updates one decision makes: ``samples // batch_size`` full batches, then the
    remainder, as an update of its own if it has at least ``smallest`` samples, else merged
    into the last full batch. They sum to ``samples`` exactly; a batch above ``samples``
    is cut to it. With ``smallest <= samples`` no update has fewer than ``smallest``."""
    batch_size = min(batch_size, samples)
    full, remainder = divmod(samples, batch_size)
    sizes = [batch_size] * full
    if remainder >= smallest:
        sizes.append(remainder)
    elif remainder:
        sizes[-1] += remainder
    return sizes
