"""One torch thread per episode: the thread count changes float32 reductions' rounding,
so every evaluation, reference and tuning run pins it to make numbers bitwise
reproducible on one machine."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.context import BaseContext

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch on ``count`` intra-op threads (None: leave the setting), then restore."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the caller's setting.

    Reductions over different thread counts round differently; pinning one thread makes
    an episode's numbers bitwise the same in this process, in workers and from the CLI.
    """
    with torch_threads(1):
        yield


def init_worker() -> None:
    """Initialiser of worker processes: one torch thread each."""
    torch.set_num_threads(1)


def worker_context() -> BaseContext:
    """How worker processes start: fork keeps the tasks a user registered in this
    process (spawned workers would know only the suite); spawn where there is no fork."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
