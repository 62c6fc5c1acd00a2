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
import functools
import gzip
import json
import math
import os
import platform
from collections import defaultdict
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from ganno_bench.benchmark import curve_store
from ganno_bench.benchmark.journal import write_atomically

CARD_KIND = "ganno-bench/result-card"
SCHEMA_VERSION = 1


class CardError(ValueError):
    """A result card that is malformed, foreign, or of another schema version."""


def card_schema() -> dict[str, Any]:
    return json.loads(
        resources.files("ganno_bench.benchmark")
        .joinpath("schemas", "result_card.schema.json")
        .read_text()
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
    here = processor()
    return all(recorded.get(k) == v for k, v in here.items())


def processor() -> dict[str, Any]:
    """What decides whether float32 results repeat bitwise: this machine's processor model
    and the vector ISA torch's CPU kernels use (a part of :func:`hardware`)."""
    here = hardware()
    return {key: here[key] for key in ("cpu_model", "torch_cpu_capability")}


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
    """Check ``card`` against the schema; a CardError names the first wrong field.

    The per-decision arrays (``curves`` and ``lrs``, nearly every value of a card) are
    checked with the schema's own rules (numbers; rates above 0) in one plain pass rather
    than by jsonschema value by value, which took seconds per card; everything else goes
    through jsonschema."""
    _check_kind(card, source)
    bad = _first_non_json(card)
    if bad is not None:
        where, problem = bad
        raise CardError(
            f"{source}: field {where or '(top level)'}: {problem}; a result card is strict "
            "JSON: fix that value, or re-run the evaluation with inputs that keep it finite"
        )
    errors = sorted(_validator().iter_errors(_without_arrays(card)), key=_error_path)
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise CardError(f"{source}: field {where}: {first.message}{more}")
    problem = _array_problem(card["episodes"])
    if problem:
        raise CardError(f"{source}: field {problem}")
    return card


def _check_kind(card: Any, source: str) -> None:
    """A CardError unless ``card`` is a result card of the schema version this reads."""
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


_JSON_SCALARS = (str, int, float, bool, type(None))


def _first_non_json(value: Any, where: str = "") -> tuple[str, str] | None:
    """The path of the first value in ``value`` that strict JSON cannot hold exactly (NaN,
    infinities, numpy integers, complex numbers, non-string keys...) and what is wrong
    with it; None when there is none. The schema's ``number`` cannot say "finite", and
    free-form parts such as an agent's config have no types at all."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, f"{value} is not a finite number (strict JSON has no NaN or Infinity)"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif isinstance(value, _JSON_SCALARS):
        return None
    else:
        return where, (
            f"{value!r} ({type(value).__name__}) is not a JSON value; use a plain int, "
            "float, str, bool, list or dict"
        )
    for key, item in items:
        if isinstance(value, dict) and not isinstance(key, str):
            return where, f"key {key!r} is not a string"
        found = _first_non_json(item, f"{where}/{key}" if where else str(key))
        if found is not None:
            return found
    return None


class _NonFiniteToken(ValueError):
    """A bare NaN / Infinity / -Infinity in a card file (Python's json reads them)."""


def _refuse_constant(token: str) -> float:
    raise _NonFiniteToken(token)


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(card_schema())


def _error_path(error: jsonschema.ValidationError) -> list[str]:
    return [str(p) for p in error.absolute_path]


def _without_arrays(card: dict[str, Any]) -> dict[str, Any]:
    """``card`` with every episode's curve lists and rates emptied where they have the
    schema's shape (lists; lists of lists), for the schema check; :func:`_array_problem`
    checks their values."""
    episodes = card.get("episodes")
    if not isinstance(episodes, list):
        return card
    slim = []
    for episode in episodes:
        if isinstance(episode, dict):
            episode = dict(episode)
            curves, lrs = episode.get("curves"), episode.get("lrs")
            if isinstance(curves, dict):
                episode["curves"] = {k: [] if type(v) is list else v for k, v in curves.items()}
            if type(lrs) is list and all(type(r) is list for r in lrs):
                episode["lrs"] = []
        slim.append(episode)
    return {**card, "episodes": slim}


_NUMBERS = {int, float}  # JSON numbers as json.loads makes them (bool is not one)


def _array_problem(episodes: list[dict[str, Any]]) -> str | None:
    """The first curve value that is not a number, or rate that is not a number above 0,
    as ``path: message`` in jsonschema's words; None when all are fine."""
    for i, episode in enumerate(episodes):
        for key, values in episode["curves"].items():
            if not set(map(type, values)) <= _NUMBERS:
                k, x = next((k, x) for k, x in enumerate(values) if type(x) not in _NUMBERS)
                return f"episodes/{i}/curves/{key}/{k}: {x!r} is not of type 'number'"
        for t, rates in enumerate(episode["lrs"]):
            if set(map(type, rates)) <= _NUMBERS and not any(x <= 0 for x in rates):
                continue
            for k, x in enumerate(rates):
                if type(x) not in _NUMBERS:
                    return f"episodes/{i}/lrs/{t}/{k}: {x!r} is not of type 'number'"
                if x <= 0:
                    return (
                        f"episodes/{i}/lrs/{t}/{k}: {x!r} is less than or equal to the minimum of 0"
                    )
    return None


def load_card(path: str | os.PathLike, *, curves: bool = True) -> dict[str, Any]:
    """Read and validate a card: plain ``NAME.json``, or compact ``NAME.json.gz`` whose
    curves come back from ``NAME.curves.npz`` beside it
    (:mod:`ganno_bench.benchmark.curve_store`).

    ``curves=False`` reads what the card says of its run and of each episode but not the
    episodes' per-decision ``curves`` and ``lrs`` (left out), in a small part of the time:
    for choosing among many cards. Only its kind and version are checked then."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"no result card at {path}")
    compact = curve_store.is_compact_path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if compact else path.read_bytes()
        card = json.loads(raw, parse_constant=_refuse_constant)
    except _NonFiniteToken as exc:
        raise CardError(
            f"{path}: holds a bare {exc} token, which is not JSON: result cards hold finite "
            "numbers only (an older ganno-bench wrote NaN for invalid overrides such as "
            "divergence_factor=nan); re-run the evaluation"
        ) from exc
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        what = "gzip-compressed JSON" if compact else "valid JSON"
        raise CardError(f"{path}: not {what} ({exc})") from exc
    if not curves:
        _check_kind(card, str(path))
        if isinstance(card.get("episodes"), list):
            card["episodes"] = [
                {k: v for k, v in e.items() if k not in ("curves", "lrs")}
                for e in card["episodes"]
            ]
        return card
    if compact:
        store = curve_store.store_path(path)
        if not store.exists():
            raise CardError(
                f"{path} is a compact card but its curves file {store.name} is not beside "
                "it: copy both files together"
            )
        if not isinstance(card, dict) or not isinstance(card.get("episodes"), list):
            raise CardError(f"{path}: a result card is a JSON object with episodes")
        try:
            card = curve_store.merge_store(card, store)
        except (curve_store.CurveStoreError, KeyError, TypeError) as exc:
            raise CardError(f"{path}: {exc}") from exc
    return validate_card(card, str(path))


def write_card(card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate, then write atomically (temporary file and rename): never a half card.

    A path ending in ``.json.gz`` writes a compact card: the curves and rates go into
    ``NAME.curves.npz`` beside it (lossless, a fraction of the size; written first, so the
    JSON never names arrays that are not there), the rest as gzip-compressed JSON.
    """
    path = Path(path)
    validate_card(card, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if curve_store.is_compact_path(path):
        slim, arrays = curve_store.split_card(card)
        curve_store.write_store(arrays, curve_store.store_path(path))
        data = gzip.compress(
            json.dumps(slim, separators=(",", ":"), allow_nan=False).encode(), mtime=0
        )
    else:
        data = (json.dumps(card, indent=1, allow_nan=False) + "\n").encode()
    write_atomically(path, data)
    return path


def card_files(folder: str | os.PathLike) -> list[Path]:
    """The result cards in ``folder``, plain and compact, sorted by name; a card held in
    both forms is refused (which one would count?)."""
    folder = Path(folder)
    plain = sorted(folder.glob("*.json"))
    compact = sorted(folder.glob(f"*{curve_store.COMPACT_SUFFIX}"))
    twice = sorted({p.name for p in plain} & {p.name.removesuffix(".gz") for p in compact})
    if twice:
        raise CardError(
            f"{folder}: cards held both plain and compact: {twice}; remove one of each pair"
        )
    return sorted(plain + compact, key=lambda p: p.name)


def scores_by_env(card: dict[str, Any], metric: str = "normalised_score") -> dict[str, np.ndarray]:
    """Per id, the metric of every episode (instances x seeds), for the statistics."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for episode in card["episodes"]:
        value = episode[metric]
        if value is None:
            raise CardError(
                f"{episode['env_id']} has no {metric} in this card (no reference values "
                "for it when it was evaluated): run `ganno-bench references --env "
                f"{episode['env_id']}` (with `--import MODULE` for a task registered in "
                "Python), then `ganno-bench rescore CARD`"
            )
        grouped[episode["env_id"]].append(float(value))
    return {env_id: np.asarray(values) for env_id, values in grouped.items()}
