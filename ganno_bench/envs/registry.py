"""The environment registry: ids -> task specs, and the public make/register/spec API.

Every id is registered three ways: here (``ganno_bench.make`` gives the PettingZoo
ParallelEnv), in PettingZoo's parallel registry (``pettingzoo.make("parallel", id)``) and
in Gymnasium's (``gymnasium.make(id)`` gives the centralised single-agent view). The
suite registers its TOML entries through :func:`register`, the same path users take.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import pettingzoo

from ganno_bench.envs.batch_centralised import CentralisedBatchSizeEnv
from ganno_bench.envs.batch_size import BatchSizeEnv
from ganno_bench.envs.centralised import CentralisedLayerLREnv
from ganno_bench.envs.layer_lr import LayerLREnv
from ganno_bench.inner.batch_task import BatchSizeTaskSpec
from ganno_bench.inner.instances import InstanceSpace
from ganno_bench.inner.task import OVERRIDABLE, TaskSpec

_REGISTRY: dict[str, TaskSpec] = {}
_REFERENCE_DIRS: dict[str, Path] = {}  # id -> folder of its references, set by register()
_ENV_KWARGS = ("split", "action_mode", "device", "render_mode")


class UnknownEnvironmentError(LookupError):
    """An id that is not registered; the message names the closest registered ids."""


def register(
    spec: TaskSpec | None = None,
    /,
    *,
    replace: bool = False,
    references_dir: str | os.PathLike | None = None,
    **fields: Any,
) -> TaskSpec:
    """Register a task under ``spec.id`` (or build the spec from keyword ``fields``).

    ``spaces`` may be given as TOML-style dicts ``{"train": {...}, "test-ood": {...}}``;
    ``test`` defaults to the train ranges (with the disjoint test seeds).
    ``references_dir``: the folder of this task's normalised-score references, where
    ``ganno-bench references`` (and ``compute_references``) write them and evaluation and
    ``rescore`` read them; the suite's own ids use the shipped folder.
    """
    if spec is None:
        if "spaces" in fields:
            fields["spaces"] = make_spaces(fields["spaces"])
        spec = TaskSpec(**fields)
    elif fields:
        raise TypeError("pass either a TaskSpec or keyword fields, not both")
    if spec.id in _REGISTRY and not replace:
        raise ValueError(
            f"{spec.id!r} is already registered; pass replace=True to overwrite it, "
            "or bump the id's version"
        )
    _REGISTRY[spec.id] = spec
    if references_dir is not None:
        _REFERENCE_DIRS[spec.id] = Path(references_dir)
    else:  # a replaced task's old folder would hold references of another task
        _REFERENCE_DIRS.pop(spec.id, None)
    with warnings.catch_warnings():  # both libraries warn on re-registration; replace=True means it
        warnings.filterwarnings("ignore", message=".*[Oo]verriding environment")
        gymnasium.register(id=spec.id, entry_point=_make_centralised, kwargs={"env_id": spec.id})
        pettingzoo.register(
            "parallel", spec.id, entry_point=_make_parallel, kwargs={"env_id": spec.id}
        )
    return spec


def registered_references_dir(env_id: str) -> Path | None:
    """The references folder registered with ``env_id`` (None: none was given)."""
    return _REFERENCE_DIRS.get(env_id)


def make_spaces(config: dict[str, Any]) -> dict[str, InstanceSpace]:
    """Instance spaces from dicts; ``test`` copies ``train`` unless given."""
    if isinstance(next(iter(config.values()), None), InstanceSpace):
        return dict(config)
    if "train" not in config or "test-ood" not in config:
        raise ValueError("spaces need at least 'train' and 'test-ood' tables")
    tables = {
        "train": config["train"],
        "test": config.get("test", config["train"]),
        "test-ood": config["test-ood"],
    }
    return {split: InstanceSpace.from_config(dict(table), split) for split, table in tables.items()}


def spec(env_id: str) -> TaskSpec:
    """The registered task behind ``env_id``."""
    if not isinstance(env_id, str):
        raise TypeError(
            f"an environment id is a string such as 'ganno/LayerLR-MLP-Easy-v0', got "
            f"{env_id!r} ({type(env_id).__name__}); `ganno-bench list` shows every id"
        )
    try:
        return _REGISTRY[env_id]
    except KeyError:
        raise UnknownEnvironmentError(_unknown_message(env_id)) from None


def spec_with(env_id: str, overrides: dict[str, Any] | None = None) -> TaskSpec:
    """The task behind ``env_id`` with ``overrides`` (smaller budgets, as tests use) applied."""
    task = spec(env_id)
    return task.with_overrides(**overrides) if overrides else task


def track_of(env_id: str | TaskSpec) -> str:
    """The track of a registered id (or task): ``"batch-size"`` for the batch-size track,
    ``"layer-lr"`` for the layerwise learning-rate track. Results of different tracks are
    never aggregated together (their tasks, agents and scores differ)."""
    task = spec(env_id) if isinstance(env_id, str) else env_id
    return "batch-size" if isinstance(task, BatchSizeTaskSpec) else "layer-lr"


def list_envs(pattern: str | None = None) -> list[str]:
    """Registered ids, sorted; ``pattern`` is a shell glob such as ``"*MLP*"``."""
    ids = sorted(_REGISTRY)
    return [i for i in ids if fnmatch.fnmatchcase(i, pattern)] if pattern else ids


def make(
    env_id: str,
    split: str = "train",
    *,
    action_mode: str = "factor",
    device: str = "cpu",
    render_mode: str | None = None,
    **overrides: Any,
) -> LayerLREnv | BatchSizeEnv:
    """The PettingZoo ParallelEnv for ``env_id`` on ``split``.

    ``overrides`` change the task's budget or reward knobs (e.g. ``decisions=4,
    inner_steps=2`` for a quick test); see :data:`ganno_bench.inner.task.OVERRIDABLE` (and
    :data:`ganno_bench.inner.batch_task.BATCH_OVERRIDABLE` for the batch-size track, whose ids
    make a :class:`BatchSizeEnv`).
    """
    task = spec(env_id)
    if overrides:
        task = task.with_overrides(**overrides)
    env_class = BatchSizeEnv if isinstance(task, BatchSizeTaskSpec) else LayerLREnv
    return env_class(
        task, split=split, action_mode=action_mode, device=device, render_mode=render_mode
    )


def _make_parallel(env_id: str, **kwargs: Any) -> LayerLREnv | BatchSizeEnv:
    kwargs.pop("max_cycles", None)  # the task's own budget decides the episode length
    return make(env_id, **kwargs)


def _make_centralised(
    env_id: str, **kwargs: Any
) -> CentralisedLayerLREnv | CentralisedBatchSizeEnv:
    env = make(env_id, **kwargs)
    if isinstance(env, BatchSizeEnv):
        return CentralisedBatchSizeEnv(env)
    return CentralisedLayerLREnv(env)


def _unknown_message(env_id: str) -> str:
    close = difflib.get_close_matches(env_id, _REGISTRY, n=3, cutoff=0.5)
    hint = f" Closest ids: {', '.join(close)}." if close else ""
    return (
        f"unknown environment id {env_id!r}.{hint} "
        "`ganno-bench list` (or ganno_bench.list_envs()) shows every registered id; a task "
        "registered in Python reaches the command line with `ganno-bench --import MODULE`."
    )


__all__ = [
    "OVERRIDABLE",
    "UnknownEnvironmentError",
    "list_envs",
    "make",
    "make_spaces",
    "register",
    "registered_references_dir",
    "spec",
    "track_of",
]
