"""Result cards: the schema-versioned JSON record of one evaluation run.

A card holds who was evaluated (agent name and configuration), on what (ids with their
versions and instance hashes, split, seeds), every episode's outcome (final inner-test
loss and accuracy, normalised score, divergence, per-decision curves and per-layer
rates), and where (package version, hardware). ``schemas/result_card.schema.json`` is
the contract; :func:`load_card` refuses anything that does not follow it and says which
field is wrong.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections import defaultdict
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

CARD_KIND = "ganno-bench/result-card"
SCHEMA_VERSION = 1


class CardError(ValueError):
    """A result card that is malformed, foreign, or of another schema version."""


def card_schema() -> dict[str, Any]:
    return json.loads(
        resources.files("ganno_bench.schemas").joinpath("result_card.schema.json").read_text()
    )


def hardware(torch_threads: int | None = None) -> dict[str, Any]:
    """Where a run happened: for reading its wall times, and because float32 results (so
    chaotic training runs) can differ bitwise across processors and thread counts.

    ``torch_threads``: the intra-op threads the run's work used, when that is not this
    process's current setting (evaluations pin one thread per episode)."""
    import torch

    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "torch": torch.__version__,
        # the vector ISA torch's CPU kernels use: float32 results differ bitwise across ISAs
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch_threads or torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def same_processor(recorded: Mapping[str, Any] | None) -> bool:
    """Whether numbers made on the ``recorded`` hardware can be expected bitwise here: the
    same processor model and torch CPU capability (float32 kernels round per ISA). False
    when the record does not say (files made before cards recorded the processor)."""
    if not recorded or "cpu_model" not in recorded:
        return False
    here = hardware()
    return all(recorded.get(k) == here[k] for k in ("cpu_model", "torch_cpu_capability"))


def _cpu_model() -> str:
    """The processor's model name (``platform.processor()`` is empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def validate_card(card: Any, source: str = "card") -> dict[str, Any]:
    """Check ``card`` against the schema; a CardError names the first wrong field."""
    if not isinstance(card, dict):
        raise CardError(f"{source}: a result card is a JSON object, got {type(card).__name__}")
    if card.get("kind") != CARD_KIND:
        raise CardError(
            f"{source}: not a ganno-bench result card (kind is {card.get('kind')!r}, "
            f"expected {CARD_KIND!r})"
        )
    if card.get("schema_version") != SCHEMA_VERSION:
        raise CardError(
            f"{source}: schema_version {card.get('schema_version')!r} is not "
            f"supported (this ganno-bench reads version {SCHEMA_VERSION})"
        )
    validator = jsonschema.Draft202012Validator(card_schema())
    errors = sorted(validator.iter_errors(card), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise CardError(f"{source}: field {where}: {first.message}{more}")
    return card


def load_card(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CardError(f"no result card at {path}")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CardError(f"{path}: not valid JSON ({exc})") from exc
    return validate_card(card, str(path))


def write_card(card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate, then write atomically (temporary file and rename): never a half card."""
    path = Path(path)
    validate_card(card, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=1) + "\n")
    tmp.replace(path)
    return path


def scores_by_env(card: dict[str, Any], metric: str = "normalised_score") -> dict[str, np.ndarray]:
    """Per id, the metric of every episode (instances x seeds), for the statistics."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for episode in card["episodes"]:
        value = episode[metric]
        if value is None:
            raise CardError(
                f"{episode['env_id']} has no {metric} in this card (no shipped "
                "reference values for it); run `ganno-bench references` first"
            )
        grouped[episode["env_id"]].append(float(value))
    return {env_id: np.asarray(values) for env_id, values in grouped.items()}
