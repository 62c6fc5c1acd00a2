"""Checks of single fields: the one validation path of task specs and instances.

A task's fields are set by the suite's TOML files, by ``register(...)``, by a user's own
``TaskSpec(...)`` and by ``make(id, **overrides)``; all of them end in the spec's
``__post_init__``, which checks every field with these helpers. Each returns the value in
its canonical form (a Python ``int``, ``float`` or tuple, so specs and cards never hold
numpy scalars) or raises: ``TypeError`` for a value of the wrong kind, ``ValueError`` for a
value out of range (NaN and infinities included). Messages name the owner (e.g. ``task
'mylab/MyTask-v0'``), the field, the rule and the value received.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def is_integer(value: Any) -> bool:
    """A Python or numpy integer, not a bool (``True`` is no count of anything)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def is_real(value: Any) -> bool:
    """A Python or numpy int or float, not a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _got(value: Any) -> str:
    return f"got {value!r} ({type(value).__name__})"


def integer(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum``; floats such as 2.5 are refused,
    never rounded (a budget of 2.5 decisions is a mistake to report, not to guess at)."""
    if not is_integer(value):
        raise TypeError(
            f"{owner}: {name} must be an integer >= {minimum}, {_got(value)}; "
            "pass an int (floats are not rounded, bools are not counts)"
        )
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def real(owner: str, name: str, value: Any, rule: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a finite ``float`` for which ``ok`` holds (``rule`` says it in words,
    e.g. ``"> 1"``). NaN and infinities are refused: every comparison with NaN is false,
    so a plain ``<=`` check would let it through."""
    if not is_real(value):
        raise TypeError(f"{owner}: {name} must be a number {rule}, {_got(value)}")
    number = float(value)
    if not math.isfinite(number) or not ok(number):
        raise ValueError(f"{owner}: {name} must be a finite number {rule}, got {value!r}")
    return number


def numbers_tuple(
    owner: str,
    name: str,
    value: Any,
    *,
    what: str,
    integers: bool = False,
    length: int | None = None,
) -> tuple[Any, ...]:
    """``value`` (a list, tuple or 1-D array) as a tuple of finite numbers (``int`` with
    ``integers``, else ``float``); ``what`` describes the expected shape in messages, e.g.
    ``"a (low, high) pair of numbers"``."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{owner}: {name} must be {what}, {_got(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{owner}: {name} must be {what}, got {value!r} ({len(value)} given)")
    kind, check = ("an integer", is_integer) if integers else ("a number", is_real)
    wrong = [v for v in value if not check(v)]
    if wrong:
        raise TypeError(
            f"{owner}: {name} must be {what}, got {value!r}: {wrong[0]!r} is not {kind}"
        )
    if integers:
        return tuple(int(v) for v in value)
    values = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{owner}: {name} must hold finite numbers, got {value!r}")
    return values


def choice(owner: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of the string ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {tuple(choices)}, got {value!r}")
    return value


def text(owner: str, name: str, value: Any) -> str:
    """``value`` if it is a string (descriptions, labels)."""
    if not isinstance(value, str):
        raise TypeError(f"{owner}: {name} must be a string, {_got(value)}")
    return value
