"""Append-only JSON-lines files that survive a kill at any moment.

The evaluation journal (``<card>.partial.jsonl``) and the references' work file share
this code, and :func:`write_atomically` (whole files: cards, run records, reports)
beside it. Every record is one line, written with its newline in one call, flushed and
fsynced before the work goes on, so after a kill the file holds complete lines and at
most one *torn* last line: a record cut short, without its newline. Reading ignores that
line; opening for appending first cuts it off (or ends it, if the cut fell just before
the newline and the record is whole), so the next record starts a line of its own
instead of being glued onto the torn one and lost with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _loads(line: bytes) -> Any:
    """A line's record, or None for a line that is not JSON (damaged, or torn)."""
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def read_records(path: Path) -> list[Any]:
    """The records of ``path`` in order (an empty list for a missing or empty file). A
    complete line that is not JSON comes back as None; a torn last line is left out."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: b"" when the file ends with a newline
    records = [_loads(line) for line in complete if line.strip()]
    whole_tail = _loads(tail) if tail.strip() else None
    return [*records, whole_tail] if whole_tail is not None else records


def _repair_tail(path: Path) -> None:
    """Cut a torn last line off ``path``, or end it with its newline if it is whole."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    with open(path, "r+b") as file:
        if _loads(data[start:]) is not None:
            file.seek(0, os.SEEK_END)
            file.write(b"\n")
        else:
            file.truncate(start)
        file.flush()
        os.fsync(file.fileno())


def open_for_append(path: Path, first: dict[str, Any] | None = None) -> IO[str]:
    """``path`` opened for appending records, its torn last line repaired. When the file
    is new or empty, ``first`` (a journal's header) is written and reaches the disk at
    once: a run killed before its first record still leaves a journal to resume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _repair_tail(path)
    sink = open(path, "a")  # noqa: SIM115 - the caller closes it
    if first is not None and sink.tell() == 0:
        append(sink, first)
    return sink


def append(sink: IO[str], record: dict[str, Any]) -> None:
    """Write one record as one line and make it durable before returning."""
    sink.write(json.dumps(record) + "\n")
    sink.flush()
    os.fsync(sink.fileno())


@contextlib.contextmanager
def atomic_target(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write to; renamed over ``path`` when the
    block ends, removed if it raises. Each call gets its own name (two processes writing
    the same file, say two reports merging one card, never rename each other's half-written
    file away), and a kill leaves the old file or the new one, never half of either."""
    # a name of its own (not mkstemp's file, whose 0600 mode the rename would keep)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, data: str | bytes) -> None:
    """Replace ``path``'s contents in one step (see :func:`atomic_target`)."""
    with atomic_target(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
