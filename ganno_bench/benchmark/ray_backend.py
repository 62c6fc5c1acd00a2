"""Episodes as Ray tasks: ``evaluate(..., backend="ray")``.

Each episode is one Ray task that pins torch to one thread, as the process pool's workers
do, so an episode's numbers are the same whichever backend or node played it. The driver
takes results as they finish (``ray.wait``) and hands each to the caller at once, which
appends it to the journal: a killed driver resumes from the journal, and a worker that
dies mid-episode has its task run again by Ray (``max_retries``) while nothing it did
reached the journal. With no address, Ray starts on this machine; with one, the driver
joins that cluster.

Ray is an optional dependency (the ``[ray]`` extra): importing this module does not need it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# a worker that dies mid-episode (killed, out of memory, node lost) gets its episode again
EPISODE_RETRIES = 3
REACH_TIMEOUT_S = 10.0
INSTALL_HINT = 'pip install -c constraints.txt -e ".[ray]"'


class RayUnavailableError(ImportError):
    """Ray is needed for this and is not installed."""


def require_ray() -> Any:
    """The ``ray`` module, or an error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"the Ray backend needs ray, which is not installed here: {INSTALL_HINT}"
        ) from exc
    return ray


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Ray, initialised: the running session if there is one, else a cluster joined at
    ``address`` (or ``RAY_ADDRESS``), else a local Ray with ``num_cpus`` CPUs (None: all of
    this machine's).

    An address that does not answer is a ConnectionError naming it and the fix."""
    ray = require_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        if address is None or address == ray.get_runtime_context().gcs_address:
            return ray
        ray.shutdown()  # a session of another cluster (or a local one): join the one asked for
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address is None:  # "local": never the last cluster `ray start` left on this machine
        options.update(address="local", num_cpus=num_cpus)
        # Ray runs its workers at niceness 15 by default: on a shared machine that starves
        # episodes against every other process (the process pool's workers run at 0)
        os.environ.setdefault("RAY_worker_niceness", "0")
    else:
        _check_reachable(address)
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address is None:
            raise
        raise ConnectionError(
            f"cannot join the Ray cluster at {address!r} ({exc}); start one there with "
            "`ray start --head`, or drop --address to run Ray on this machine"
        ) from exc
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` nobody answers at (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", "ray://..." and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(
            f"cannot join the Ray cluster at {address!r}: nothing answers there ({exc}); "
            "start one with `ray start --head`, or drop --address to run Ray on this machine"
        ) from exc


def _episode_task(play: Callable[..., dict], env_spec: Any, job: tuple) -> dict[str, Any]:
    """Run one episode (``play(*job)``, the evaluation's ``run_episode``) in a Ray worker,
    on one torch thread. The id's spec travels with the job, so tasks a user registered in
    the driver are known to every worker."""
    import torch

    from ganno_bench.envs import registry

    torch.set_num_threads(1)
    try:
        known = registry.spec(env_spec.id) == env_spec
    except registry.UnknownEnvironmentError:
        known = False
    if not known:
        registry.register(env_spec, replace=True)
    return play(*job)


def run_episodes(
    play: Callable[..., dict[str, Any]],
    jobs: Sequence[tuple],
    specs: dict[str, Any],
    keep: Callable[[dict[str, Any]], None],
    *,
    address: str | None = None,
    workers: int | None = None,
) -> None:
    """Play ``jobs`` (``play``'s arguments) as Ray tasks and ``keep`` each record as
    soon as it is back. ``workers``: the most episodes in flight (None: one per CPU of the
    cluster); with no address, the local Ray gets that many CPUs."""
    ray = connect(address, num_cpus=workers)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(num_cpus=1, max_retries=EPISODE_RETRIES)(_episode_task)
    for record in _as_completed(ray, remote, play, jobs, specs, workers):
        keep(record)


def _as_completed(
    ray: Any,
    remote: Any,
    play: Callable[..., dict[str, Any]],
    jobs: Sequence[tuple],
    specs: dict[str, Any],
    workers: int,
) -> Iterator[dict[str, Any]]:
    """Records in the order they finish, with at most ``workers`` tasks submitted at once
    (the rest wait in the driver, so a killed driver leaves little queued work behind)."""
    spec_refs = {env_id: ray.put(s) for env_id, s in specs.items()}
    play_ref = ray.put(play)
    pending = iter(jobs)
    in_flight = []
    try:
        for job in pending:
            in_flight.append(remote.remote(play_ref, spec_refs[job[1]], job))
            if len(in_flight) >= workers:
                break
        while in_flight:
            finished, in_flight = ray.wait(in_flight, num_returns=1)
            for ref in finished:
                yield ray.get(ref)
                nxt = next(pending, None)
                if nxt is not None:
                    in_flight.append(remote.remote(play_ref, spec_refs[nxt[1]], nxt))
    finally:
        for ref in in_flight:  # an interrupted driver stops its queued episodes
            ray.cancel(ref, force=True)
