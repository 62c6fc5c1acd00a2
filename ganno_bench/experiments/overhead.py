"""Speed benchmarks that print ratios measured side by side in one run.

``overhead``: one env decision (apply rates, K inner steps, observe, reward) against a
plain PyTorch loop doing the same K steps on the same network, data, batch size and
optimiser. They are timed alternately, decision by decision, so machine noise hits
both alike; the ratio of medians is reported, once against the bare training loop and
once against the loop plus the validation pass that a reward on validation loss needs.
Each of the three has its own network, so none finds its weights warm in the cache
because it ran just before (an env step in training follows the policy's forward).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganno_bench.envs.registry import make
from ganno_bench.inner.models import agent_layers

DEFAULT_OVERHEAD_IDS = (
    "ganno/LayerLR-MLP-Easy-v0",
    "ganno/LayerLR-MLP-Hard-v0",
    "ganno/LayerLR-CNN-Easy-v0",
    "ganno/LayerLR-CNN-Hard-v0",
    "ganno/LayerLR-Transformer-Easy-Adam-v0",
)


@dataclass(frozen=True)
class OverheadResult:
    env_id: str
    env_ms: float
    plain_ms: float
    plain_with_val_ms: float
    threads: int  # torch threads during the measurement

    @property
    def ratio(self) -> float:
        return self.env_ms / self.plain_ms

    @property
    def ratio_with_val(self) -> float:
        return self.env_ms / self.plain_with_val_ms


class _PlainLoop:
    """What a practitioner would write: the same network, data and optimiser, no env."""

    def __init__(self, env) -> None:
        trainer = env.trainer
        instance = env.instance
        self.network = copy.deepcopy(trainer.network)
        self.x, self.y = trainer._data["train"]
        self.x_val, self.y_val = trainer._data["val"]
        self.batch_size = min(instance.batch_size, len(self.y))
        layers = agent_layers(self.network)  # one param group per layer, as the env has
        groups = [{"params": list(m.parameters())} for m in layers]
        if env.task.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                groups, lr=instance.learning_rate, momentum=instance.momentum
            )
        else:
            self.optimizer = torch.optim.Adam(
                groups, lr=instance.learning_rate, betas=(instance.momentum, 0.999)
            )
        self.generator = torch.Generator().manual_seed(instance.data_seed)
        self.order = torch.randperm(len(self.y), generator=self.generator)
        self.cursor = 0

    def train(self, steps: int) -> None:
        for _ in range(steps):
            if self.cursor + self.batch_size > len(self.order):
                self.order = torch.randperm(len(self.y), generator=self.generator)
                self.cursor = 0
            index = self.order[self.cursor : self.cursor + self.batch_size]
            self.cursor += self.batch_size
            loss = F.cross_entropy(self.network(self.x[index]), self.y[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    @torch.no_grad()
    def validate(self) -> float:
        return float(F.cross_entropy(self.network(self.x_val), self.y_val))


def measure_overhead(
    env_id: str, decisions: int = 200, warmup: int = 10, device: str = "cpu"
) -> OverheadResult:
    """Median time per decision of the env and of the plain loop, interleaved."""
    env = make(env_id, split="test", device=device)
    keep = {agent: 2 for agent in env.possible_agents}  # factor 1.0: a constant schedule
    env.reset(options={"instance": 0})
    # two plain loops with their own networks: each contestant then always runs after
    # another network, as an env step runs after the policy (one plain loop timed twice in
    # a row would find its weights warm in the cache half the time, and the env never)
    plain, plain_for_val = _PlainLoop(env), _PlainLoop(env)
    steps = env.task.inner_steps
    times: dict[str, list[float]] = {"env": [], "plain": [], "plain_val": []}

    def timed(fn) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    contestants = {
        "env": lambda: env.step(keep),
        "plain": lambda: plain.train(steps),
        "plain_val": lambda: (plain_for_val.train(steps), plain_for_val.validate()),
    }
    order = list(contestants)
    for i in range(warmup + decisions):
        if not env.agents:
            env.reset(options={"instance": 0})
        # each round rotates the order: every contestant runs first, second and third
        # equally often, and none ever runs twice in a row
        for name in order[i % 3 :] + order[: i % 3]:
            elapsed = timed(contestants[name])
            if i >= warmup:
                times[name].append(elapsed)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return OverheadResult(
        env_id, med["env"], med["plain"], med["plain_val"], torch.get_num_threads()
    )


def format_overhead(results: list[OverheadResult]) -> str:
    width = max([34, *(len(r.env_id) for r in results)])
    header = (
        f"{'env id':{width}} {'env ms':>8} {'plain ms':>9} {'ratio':>6} "
        f"{'plain+val ms':>13} {'ratio':>6}"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        rows.append(
            f"{r.env_id:{width}} {r.env_ms:8.3f} {r.plain_ms:9.3f} {r.ratio:6.3f} "
            f"{r.plain_with_val_ms:13.3f} {r.ratio_with_val:6.3f}"
        )
    threads = sorted({r.threads for r in results})
    rows.append(
        "ratio = env decision / plain loop of the same inner steps "
        f"(median of interleaved runs, torch threads = {', '.join(map(str, threads))})"
    )
    return "\n".join(rows)


__all__ = ["DEFAULT_OVERHEAD_IDS", "OverheadResult", "format_overhead", "measure_overhead"]
