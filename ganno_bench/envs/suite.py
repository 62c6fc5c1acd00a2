"""Load the suite's declarative definitions (``envs/*.toml``) and register every entry.

Each TOML file describes one family. An entry expands into one id per inner optimiser
(``ganno/<name>-v<version>`` for SGD with momentum, ``ganno/<name>-Adam-v<version>``
for Adam). A file with ``track = "batch_size"`` declares batch-size tasks
(:class:`~ganno_bench.inner.batch_task.BatchSizeTaskSpec`); the default track is the layerwise
learning rate. Entries register independently: a broken entry is reported (a warning, and
:func:`registration_errors`) and never takes the others down with it.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import json
import tomllib
import warnings
from pathlib import Path
from typing import Any

from ganno_bench.envs.registry import make_spaces, register
from ganno_bench.inner.batch_task import BATCH_KEYS, BatchSizeTaskSpec
from ganno_bench.inner.instances import FROZEN_SPLITS, Instance, instances_hash
from ganno_bench.inner.models import ModelConfig
from ganno_bench.inner.task import DataConfig, TaskSpec

NAMESPACE = "ganno"
TRACKS = ("layer_lr", "batch_size")
TRANSFORMER_KEYS = ("width", "heads", "blocks", "mlp_ratio")
_ERRORS: dict[str, str] = {}


def suite_dir() -> Path:
    """Folder of the suite's TOML files (package data when installed, ``envs/`` in a checkout)."""
    try:
        return Path(str(importlib.resources.files("ganno_bench.suite_files")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "envs"


def frozen_path(task_id: str) -> Path:
    return suite_dir() / "instances" / f"{task_id.split('/')[-1]}.json"


def task_id(name: str, optimizer: str, version: int) -> str:
    suffix = "" if optimizer == "sgd" else f"-{optimizer.capitalize()}"
    return f"{NAMESPACE}/{name}{suffix}-v{version}"


def load_suite_specs(require_frozen: bool = True) -> tuple[list[TaskSpec], dict[str, str]]:
    """Build every entry's specs; return them with the errors of entries that failed."""
    specs: list[TaskSpec] = []
    errors: dict[str, str] = {}
    for path in sorted(suite_dir().glob("*.toml")):
        try:
            family = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            errors[path.name] = f"cannot read {path}: {exc}"
            continue
        for position, entry in enumerate(family.get("task", [])):
            label = f"{path.name}: {entry.get('name', f'task #{position}')}"
            try:
                specs += _entry_specs(family, entry, require_frozen)
            except Exception as exc:  # one broken entry must not drop the rest
                errors[label] = f"{type(exc).__name__}: {exc}"
    return specs, errors


def register_suite() -> None:
    """Register the shipped suite; failures are warned about, never silent."""
    specs, errors = load_suite_specs()
    for spec in specs:
        try:
            register(spec, replace=True)
        except Exception as exc:
            errors[spec.id] = f"{type(exc).__name__}: {exc}"
    _ERRORS.clear()
    _ERRORS.update(errors)
    if errors:
        lines = "\n".join(f"  {k}: {v}" for k, v in errors.items())
        warnings.warn(f"ganno-bench could not register some suite entries:\n{lines}", stacklevel=2)


def registration_errors() -> dict[str, str]:
    """Entries of the shipped suite that failed to register, with the reason."""
    return dict(_ERRORS)


def _entry_specs(family: dict, entry: dict, require_frozen: bool) -> list[TaskSpec]:
    track = family.get("track", "layer_lr")
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; choose one of {TRACKS}")
    known = {
        "name",
        "version",
        "difficulty",
        "description",
        "optimizers",
        "decisions",
        "model",
        "data",
        "instances",
        "lr_bounds",
        "weight_decay",
        "factors",
        "divergence_factor",
        "divergence_penalty",
        *(BATCH_KEYS if track == "batch_size" else ("inner_steps",)),
    }
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    model = entry["model"]
    model_config = ModelConfig(
        kind=model["kind"],
        hidden=tuple(model.get("hidden", ())),
        channels=tuple(model.get("channels", ())),
        kernel_size=model.get("kernel_size", 3),
        pool_every=model.get("pool_every", 2),
        activation=model.get("activation", "relu"),
        **{key: model[key] for key in TRANSFORMER_KEYS if key in model},
    )
    data = entry["data"]
    data_config = DataConfig(
        source=data["source"],
        options=dict(data.get("options", {})),
        label_noise=data.get("label_noise", 0.0),
        input_noise=data.get("input_noise", 0.0),
        split_seed=data.get("split_seed", 0),
    )
    specs = []
    for optimizer in entry.get("optimizers", ["sgd"]):
        tables = _merged_instances(family, entry, optimizer)
        lr_bounds = entry.get("lr_bounds", family.get("lr_bounds", {}))
        common = {
            "id": task_id(entry["name"], optimizer, entry.get("version", 0)),
            "model": model_config,
            "data": data_config,
            "spaces": make_spaces(tables),
            "optimizer": optimizer,
            "decisions": entry["decisions"],
            "description": entry.get("description", ""),
            "family": family.get("family", "custom"),
            "difficulty": entry.get("difficulty", "custom"),
            "lr_bounds": tuple(lr_bounds.get(optimizer, TaskSpec.lr_bounds)),
            "weight_decay": entry.get("weight_decay", 0.0),
            "divergence_factor": entry.get("divergence_factor", TaskSpec.divergence_factor),
            "divergence_penalty": entry.get("divergence_penalty", TaskSpec.divergence_penalty),
        }
        if "factors" in entry:
            common["factors"] = tuple(entry["factors"])
        if track == "batch_size":
            extra = {key: entry[key] for key in BATCH_KEYS if key in entry}
            if "batch_bounds" in extra:
                extra["batch_bounds"] = tuple(extra["batch_bounds"])
            spec: TaskSpec = BatchSizeTaskSpec(**common, **extra)
        else:
            spec = TaskSpec(**common, inner_steps=entry["inner_steps"])
        frozen = read_frozen(spec) if require_frozen else None
        specs.append(spec if frozen is None else _with_frozen(spec, frozen))
    return specs


def _merged_instances(family: dict, entry: dict, optimizer: str) -> dict[str, dict]:
    """Family defaults for this optimiser, overridden key by key by the entry's tables."""
    tables = copy.deepcopy(family.get("instances", {}).get(optimizer, {}))
    for split, overrides in entry.get("instances", {}).get(optimizer, {}).items():
        tables.setdefault(split, {}).update(overrides)
    return tables


def _with_frozen(spec: TaskSpec, frozen: dict[str, tuple[Instance, ...]]) -> TaskSpec:

    return dataclasses.replace(spec, frozen=frozen, num_frozen=len(frozen["test"]))


def read_frozen(spec: TaskSpec) -> dict[str, tuple[Instance, ...]]:
    """Read and verify a task's frozen instance lists (their stored hashes must match)."""
    path = frozen_path(spec.id)
    if not path.exists():
        raise FileNotFoundError(
            f"frozen instances for {spec.id} are missing at {path}; "
            "run `ganno-bench freeze` to write them"
        )
    data = json.loads(path.read_text())
    if data.get("id") != spec.id:
        raise ValueError(f"{path} holds instances of {data.get('id')!r}, not {spec.id!r}")
    frozen = {}
    for split in FROZEN_SPLITS:
        block = data["splits"][split]
        instances = tuple(Instance.from_dict(d) for d in block["instances"])
        if instances_hash(instances) != block["sha256"]:
            raise ValueError(
                f"{path}: the {split} instances do not match their stored sha256; "
                "the file was edited by hand. Restore it, or bump the id's version "
                "and run `ganno-bench freeze`"
            )
        frozen[split] = instances
    return frozen


def write_frozen(spec: TaskSpec, instances: dict[str, list[Instance]]) -> Path:
    """Write a task's frozen lists atomically (temp file, then rename)."""
    path = frozen_path(spec.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "id": spec.id,
        "format": 1,
        "splits": {
            split: {
                "count": len(items),
                "sha256": instances_hash(items),
                "instances": [i.to_dict() for i in items],
            }
            for split, items in instances.items()
        },
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)
    return path
