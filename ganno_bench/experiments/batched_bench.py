"""Speed of the batched engine against N sequential TorchTrainers, measured side by side.

For each id and slot count N, N train-split instances (mixed batch sizes) are started in
N TorchTrainers and in one BatchedTrainer of N slots. Each repeat times one decision
(``steps`` inner steps, the task's own by default) of the N trainers one after another,
then one decision of the batched trainer, so machine noise hits both alike; the table
reports the median inner steps per second (slot-steps over elapsed time) and the ratio
of the medians, with the spread (min..max over repeats) of the batched rate.

``clock="cpu"`` times with this process's CPU time instead of wall time: on a machine
shared with other jobs it leaves out the time the scheduler gave to them (at one torch
thread on the CPU, the work itself is the same either way).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ganno_bench.benchmark.threads import torch_threads
from ganno_bench.envs.batched_episodes import batching_pays
from ganno_bench.envs.common import build_trainer
from ganno_bench.envs.registry import spec
from ganno_bench.inner.batched import build_batched_trainer

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
DEFAULT_BATCHED_IDS = (
    "ganno/LayerLR-MLP-Easy-v0",
    "ganno/LayerLR-MLP-Hard-v0",
    "ganno/LayerLR-CNN-Easy-v0",
    "ganno/LayerLR-CNN-Hard-v0",
)


@dataclass(frozen=True)
class BatchedResult:
    """One id and slot count: median inner steps per second of both engines."""

    env_id: str
    slots: int
    kernel: str
    batch_sizes: tuple[int, ...]
    sequential_steps_per_s: float
    batched_steps_per_s: float
    batched_min: float
    batched_max: float
    env_engine: str = "batched"  # what make_vec_env / batched evaluation run at this N

    @property
    def ratio(self) -> float:
        return self.batched_steps_per_s / self.sequential_steps_per_s


def _trainers(env_id: str, slots: int, device: str, seed: int, **engine: str):
    """N train-split instances, started in N TorchTrainers and in one BatchedTrainer."""
    task = spec(env_id)
    rng = np.random.default_rng(seed)
    instances = [task.spaces["train"].sample(rng) for _ in range(slots)]
    sequential = []
    for instance in instances:
        trainer = build_trainer(task, device)[0]
        trainer.start(instance)
        sequential.append(trainer)
    batched = build_batched_trainer(task, slots, device, **engine)
    for slot, instance in enumerate(instances):
        batched.start(slot, instance)
    return task, instances, sequential, batched


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_batched(
    ids: Sequence[str] = DEFAULT_BATCHED_IDS,
    sizes: Sequence[int] = (1, 8, 32, 128),
    *,
    threads: int | None = 1,
    device: str = "cpu",
    repeats: int = 5,
    steps: int | None = None,
    seed: int = 0,
    clock: str = "wall",
    **engine: str,
) -> list[BatchedResult]:
    """Inner steps per second of N sequential TorchTrainers and of one BatchedTrainer
    of N slots, for each id and N (``engine`` options go to the BatchedTrainer)."""
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; choose one of {tuple(CLOCKS)}")
    if clock == "cpu" and device.startswith("cuda"):
        raise ValueError("clock='cpu' does not see GPU time; use clock='wall' on CUDA")
    now = CLOCKS[clock]
    results = []
    with torch_threads(threads):
        for env_id in ids:
            for n in sizes:
                task, instances, sequential, batched = _trainers(env_id, n, device, seed, **engine)
                k = steps or task.inner_steps
                for trainer in sequential:  # warm-up: allocator, oneDNN primitives
                    trainer.train(1)
                batched.train(1)
                seq_rates, bat_rates = [], []
                for _ in range(repeats):
                    start = now()
                    for trainer in sequential:
                        trainer.train(k)
                    _sync(device)
                    seq_rates.append(n * k / (now() - start))
                    start = now()
                    batched.train(k)
                    _sync(device)
                    bat_rates.append(n * k / (now() - start))
                results.append(
                    BatchedResult(
                        env_id=env_id,
                        slots=n,
                        kernel=batched.kernel_name,
                        batch_sizes=tuple(i.batch_size for i in instances),
                        sequential_steps_per_s=statistics.median(seq_rates),
                        batched_steps_per_s=statistics.median(bat_rates),
                        batched_min=min(bat_rates),
                        batched_max=max(bat_rates),
                        env_engine="batched" if batching_pays(task, n, device) else "sequential",
                    )
                )
    return results


def format_batched(results: Sequence[BatchedResult]) -> str:
    """A plain-text table: steps/s of both engines and their ratio, per id and N. The
    last column is the engine the batched vector env and batched evaluation run at that
    N (``sequential`` where batching does not pay, e.g. one CNN slot on the CPU)."""
    width = max([30, *(len(r.env_id) for r in results)])
    header = (
        f"{'env id':<{width}} {'N':>4} {'kernel':<16} {'sequential/s':>12} "
        f"{'batched/s':>10} {'(min..max)':>15} {'ratio':>6}  env runs"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        spread = f"{r.batched_min:.0f}..{r.batched_max:.0f}"
        lines.append(
            f"{r.env_id:<{width}} {r.slots:>4} {r.kernel:<16} {r.sequential_steps_per_s:>12.0f} "
            f"{r.batched_steps_per_s:>10.0f} {spread:>15} {r.ratio:>5.2f}x  {r.env_engine}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class PPOThroughput:
    env_id: str
    copies: int
    sequential_timesteps_per_s: float
    batched_timesteps_per_s: float

    @property
    def ratio(self) -> float:
        return self.batched_timesteps_per_s / self.sequential_timesteps_per_s


def measure_ppo(
    env_id: str = "ganno/LayerLR-MLP-Easy-v0",
    copies: int = 32,
    *,
    rollouts: int = 2,
    repeats: int = 3,
    threads: int | None = 1,
    seed: int = 0,
) -> PPOThroughput:
    """PPO timesteps per second through today's SuperSuit vector env and through the
    batched one: the same PPO settings (the shipped config), the runs interleaved, the
    median of ``repeats`` runs of ``rollouts`` rollouts each (updates included)."""
    from stable_baselines3 import PPO

    from ganno_bench.baselines.ppo import load_ppo_config
    from ganno_bench.envs.vector import make_vec_env

    settings = load_ppo_config()
    policy = settings.pop("policy")
    settings.pop("num_copies", None)
    net_arch = list(settings.pop("net_arch", [64, 64]))
    rates: dict[str, list[float]] = {"sequential": [], "batched": []}
    with torch_threads(threads):
        for _ in range(repeats):
            for engine in ("sequential", "batched"):
                venv = make_vec_env(env_id, copies, seed=seed, engine=engine)
                total = rollouts * settings["n_steps"] * venv.num_envs
                model = PPO(
                    policy, venv, seed=seed, policy_kwargs={"net_arch": net_arch}, **settings
                )
                start = time.perf_counter()
                model.learn(total)
                rates[engine].append(total / (time.perf_counter() - start))
                venv.close()
    return PPOThroughput(
        env_id,
        copies,
        statistics.median(rates["sequential"]),
        statistics.median(rates["batched"]),
    )


def format_ppo(results: Sequence[PPOThroughput]) -> str:
    width = max([30, *(len(r.env_id) for r in results)])
    header = (
        f"{'env id':<{width}} {'copies':>6} {'sequential ts/s':>15} "
        f"{'batched ts/s':>12} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.env_id:<{width}} {r.copies:>6} {r.sequential_timesteps_per_s:>15.0f} "
            f"{r.batched_timesteps_per_s:>12.0f} {r.ratio:>5.2f}x"
        )
    return "\n".join(lines)
