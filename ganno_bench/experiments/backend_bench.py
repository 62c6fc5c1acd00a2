"""The Ray backend's cost against the process pool, measured side by side in one run.

``per-episode``: the same episode (an MLP-Easy instance, the ``cosine`` baseline, the id's
full budget) is played alternately by one warm process-pool worker and by one Ray task on
a warm local Ray, each timed from submission to the record being back in the driver, so
machine noise hits both alike; the ratio of the medians is Ray's per-episode overhead.
``throughput``: a batch of different episodes through each backend with 1 and 2 workers
(episodes in flight), in episodes per second, the two backends again alternating. Every
worker runs one torch thread, as evaluations do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark import ray_backend
from ganno_bench.benchmark.evaluation import run_episode
from ganno_bench.benchmark.scoring import load_references
from ganno_bench.benchmark.threads import init_worker, worker_context
from ganno_bench.envs.registry import spec

DEFAULT_BACKEND_ID = "ganno/LayerLR-MLP-Easy-v0"


@dataclass(frozen=True)
class BackendResult:
    env_id: str
    pool_ms: float  # median submission-to-record time of one episode
    ray_ms: float
    repeats: int
    throughput: dict[str, dict[int, float]]  # backend -> workers -> episodes/s

    @property
    def ratio(self) -> float:
        return self.ray_ms / self.pool_ms


def _job(env_id: str, instance: int, agent: object, overrides: dict[str, Any]) -> tuple:
    return (agent, env_id, "test", instance, 0, overrides, load_references(env_id))


def _pool_episode(job: tuple) -> dict:
    return run_episode(*job)


def measure_backends(
    env_id: str = DEFAULT_BACKEND_ID,
    repeats: int = 10,
    episodes: int = 8,
    workers: Sequence[int] = (1, 2),
    overrides: dict[str, Any] | None = None,
) -> BackendResult:
    """Per-episode overhead and throughput of Ray against the process pool (see the module);
    ``overrides`` shrink the episodes' budget (tests), the bench itself plays full ones."""
    overrides = dict(overrides or {})
    ray = ray_backend.connect(None, num_cpus=max(workers))
    agent = load_agent("cosine")
    remote = ray.remote(num_cpus=1, max_retries=ray_backend.EPISODE_RETRIES)(
        ray_backend._episode_task
    )
    spec_ref, play_ref = ray.put(spec(env_id)), ray.put(run_episode)
    job = _job(env_id, 0, agent, overrides)
    pool_times, ray_times = [], []
    with ProcessPoolExecutor(1, mp_context=worker_context(), initializer=init_worker) as pool:
        pool.submit(_pool_episode, job).result()  # warm both: imports, data, first episode
        ray.get(remote.remote(play_ref, spec_ref, job))
        for _ in range(repeats):
            start = time.perf_counter()
            pool.submit(_pool_episode, job).result()
            pool_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            ray.get(remote.remote(play_ref, spec_ref, job))
            ray_times.append(time.perf_counter() - start)
    jobs = [_job(env_id, k, agent, overrides) for k in range(episodes)]
    throughput: dict[str, dict[int, float]] = {"processes": {}, "ray": {}}
    for count in workers:
        with ProcessPoolExecutor(
            count, mp_context=worker_context(), initializer=init_worker
        ) as pool:
            list(pool.map(_pool_episode, jobs[:count]))  # every worker warm
            start = time.perf_counter()
            for future in as_completed([pool.submit(_pool_episode, j) for j in jobs]):
                future.result()
            throughput["processes"][count] = episodes / (time.perf_counter() - start)
        ray.get([remote.remote(play_ref, spec_ref, j) for j in jobs[:count]])
        start = time.perf_counter()
        ray_backend.run_episodes(
            run_episode, jobs, {env_id: spec(env_id)}, lambda _: None, workers=count
        )
        throughput["ray"][count] = episodes / (time.perf_counter() - start)
    return BackendResult(
        env_id,
        1000 * statistics.median(pool_times),
        1000 * statistics.median(ray_times),
        repeats,
        throughput,
    )


def format_backends(result: BackendResult) -> str:
    """The bench's table: per-episode medians and their ratio, then episodes per second."""
    lines = [
        f"{result.env_id}, cosine, full budget; median of {result.repeats} alternating episodes",
        f"  process pool : {result.pool_ms:9.1f} ms per episode",
        f"  Ray task     : {result.ray_ms:9.1f} ms per episode",
        f"  ratio Ray / pool: {result.ratio:.3f} (goal <= 1.05)",
        "",
        "throughput (episodes/s)  " + "  ".join(f"{w} worker(s)" for w in result.throughput["ray"]),
    ]
    for backend, by_workers in result.throughput.items():
        cells = "  ".join(f"{v:11.2f}" for v in by_workers.values())
        lines.append(f"  {backend:<22} {cells}")
    return "\n".join(lines)
