"""Committed numbers, checked on this machine: re-run a sample of the committed episodes and
say how far this processor's numbers are from theirs.

An episode is bitwise reproducible on the processor that made it, but float32 kernels
round differently on another one, and short, chaotic training runs amplify that (the
README's "Same machine, same numbers"). The tests can only skip there; ``ganno-bench
verify`` measures instead: for a seeded sample of episodes (``per_card`` from every card)
it replays each with the agent, instance, seed and settings its card records, one torch
thread as in every evaluation, and counts how many match bitwise (final loss, curves and
rates), how many lie within a relative tolerance of the committed final test loss, and
how much the sample's IQM normalised score moves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.baselines.policy import recorded_path
from ganno_bench.baselines.zoo import UnknownAgentError, load_agent
from ganno_bench.benchmark import stats
from ganno_bench.benchmark.cards import hardware, same_processor
from ganno_bench.benchmark.evaluation import run_episode, single_threaded
from ganno_bench.benchmark.leaderboard.tables import text_table
from ganno_bench.benchmark.scoring import load_references

__all__ = ["Replay", "agent_of", "format_report", "sample_episodes", "verify"]

TOLERANCE = 1e-3  # relative difference of the final test loss counted as "close"


@dataclass(frozen=True)
class Replay:
    """One committed episode and what it gave here."""

    card: str
    env_id: str
    instance: int
    seed: int
    committed_loss: float
    loss: float
    committed_score: float | None
    score: float | None
    bitwise: bool

    @property
    def relative_difference(self) -> float:
        if self.loss == self.committed_loss:
            return 0.0
        return abs(self.loss - self.committed_loss) / max(abs(self.committed_loss), 1e-12)

    def status(self, tolerance: float) -> str:
        """``bitwise`` (every number), ``same loss`` (the final test loss bitwise, some
        curve or rate not), ``close`` (within ``tolerance``) or ``differs``."""
        if self.bitwise:
            return "bitwise"
        if self.loss == self.committed_loss:
            return "same loss"
        return "close" if self.relative_difference <= tolerance else "differs"


def agent_of(card: Mapping[str, Any], episode: Mapping[str, Any]):
    """The agent that played ``episode``: the policy file (or ensemble) a policy card
    records (for a merged per-seed card, the episode's seed's own), else the shipped agent
    of that name."""
    config = card["agent"].get("config") or {}
    per_seed = config.get("per_seed")
    if per_seed is not None:
        config = per_seed[str(episode["seed"])]
    recorded = config.get("checkpoint") or config.get("ensemble")
    if recorded:
        return load_agent(str(recorded_path(recorded)))
    return load_agent(card["agent"]["name"])


def sample_episodes(
    named: Sequence[tuple[Path, Mapping[str, Any]]], per_card: int, seed: int = 0
) -> list[tuple[Path, Mapping[str, Any], Mapping[str, Any]]]:
    """``per_card`` episodes of every card (all if it holds fewer), drawn with one
    generator seeded ``seed``, so the same cards and seed give the same sample."""
    rng = np.random.default_rng(seed)
    picked = []
    for path, card in named:
        episodes = card["episodes"]
        chosen = rng.choice(len(episodes), size=min(per_card, len(episodes)), replace=False)
        picked += [(path, card, episodes[int(i)]) for i in sorted(chosen)]
    return picked


def _same(a: Any, b: Any) -> bool:
    """Bitwise equality of nested lists of numbers (NaN equal to NaN)."""
    return bool(np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), True))


def replay(path: Path, card: Mapping[str, Any], episode: Mapping[str, Any]) -> Replay:
    """Run ``episode`` again as its card says it was run."""
    env_id, split = episode["env_id"], card["split"]
    overrides = card["envs"][env_id].get("overrides") or None
    references = None if overrides or split == "train" else load_references(env_id)
    with single_threaded():
        again = run_episode(
            agent_of(card, episode),
            env_id,
            split,
            episode["instance"],
            episode["seed"],
            overrides,
            references,
        )
    bitwise = (
        again["final_test_loss"] == episode["final_test_loss"]
        and _same(again["lrs"], episode["lrs"])
        and all(_same(again["curves"][k], v) for k, v in episode["curves"].items())
    )
    return Replay(
        path.name,
        env_id,
        episode["instance"],
        episode["seed"],
        float(episode["final_test_loss"]),
        float(again["final_test_loss"]),
        episode["normalised_score"],
        again["normalised_score"],
        bitwise,
    )


def verify(
    named: Sequence[tuple[Path, Mapping[str, Any]]],
    *,
    per_card: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[Replay], list[str]]:
    """Replay a sample of the cards' episodes here; return the replays and, per card
    that could not be replayed (an agent that is not shipped), why."""
    from tqdm import tqdm

    skipped, playable = [], []
    for path, card in named:
        if not card["episodes"]:
            continue
        try:
            agent_of(card, card["episodes"][0])
        except (UnknownAgentError, FileNotFoundError) as exc:  # a user's agent or file
            skipped.append(f"{path.name}: {exc}".split(" Built-in agents:")[0])
            continue
        playable.append((path, card))
    sample = sample_episodes(playable, per_card, seed)
    replays = [
        replay(path, card, episode)
        for path, card, episode in tqdm(sample, desc="verify", unit="episode", disable=not progress)
    ]
    return replays, skipped


def _processors(named: Iterable[tuple[Path, Mapping[str, Any]]]) -> str:
    made = Counter(
        (card.get("hardware") or {}).get("cpu_model", "an unrecorded processor")
        for _, card in named
    )
    return "; ".join(f"{cpu} ({n} cards)" for cpu, n in made.most_common())


def format_report(
    named: Sequence[tuple[Path, Mapping[str, Any]]],
    replays: Sequence[Replay],
    skipped: Sequence[str],
    *,
    tolerance: float = TOLERANCE,
    per_card: int = 1,
    seed: int = 0,
) -> str:
    """The per-episode table, then the counts and the IQM difference."""
    here = hardware()
    same = sum(same_processor(card.get("hardware")) for _, card in named)
    lines = [
        f"re-ran {len(replays)} committed episodes ({per_card} per card, sample seed {seed}) "
        f"on {here['cpu_model']} ({here['torch_cpu_capability']}); the cards were made on "
        f"{_processors(named)}: {same} of {len(named)} on this kind of processor",
        "",
    ]
    rows = [
        [
            r.card,
            r.env_id.split("/")[-1],
            str(r.instance),
            str(r.seed),
            f"{r.committed_loss:.6g}",
            f"{r.loss:.6g}",
            f"{100 * r.relative_difference:.3g}%",
            r.status(tolerance),
        ]
        for r in replays
    ]
    header = ["card", "id", "instance", "seed", "committed loss", "loss here", "diff", "match"]
    lines += [*text_table(header, rows), ""] if rows else []
    counts = Counter(r.status(tolerance) for r in replays)
    worst = max(replays, key=lambda r: r.relative_difference, default=None)
    lines += [
        f"bitwise identical: {counts['bitwise']} of {len(replays)}",
        f"the same final test loss, bitwise, but some curve or rate not: {counts['same loss']}",
        f"within {100 * tolerance:g}% of the committed final test loss: {counts['close']}",
        f"further off: {counts['differs']}"
        + (
            f" (largest: {100 * worst.relative_difference:.3g}% on {worst.env_id} instance "
            f"{worst.instance} seed {worst.seed}, {worst.card})"
            if worst is not None and counts["differs"]
            else ""
        ),
    ]
    scored = [r for r in replays if r.committed_score is not None and r.score is not None]
    if scored:
        before = stats.iqm(np.array([r.committed_score for r in scored]))
        after = stats.iqm(np.array([r.score for r in scored]))
        moved = sum(r.score != r.committed_score for r in scored)
        lines.append(
            f"IQM normalised score of the {len(scored)} scored episodes: committed "
            f"{stats.fmt(before)}, here {stats.fmt(after)}, difference "
            f"{stats.fmt(after - before)} ({moved} scores moved)"
        )
    lines += [f"not replayed: {reason}" for reason in skipped]
    if replays and counts["bitwise"] < len(replays) and same < len(named):
        lines.append(
            "Cards made on another processor drift here by the amounts above: compare "
            "single episodes only within one machine, aggregates with this spread in mind."
        )
    return "\n".join(lines)
