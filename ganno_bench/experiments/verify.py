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

With ``engine="batched"`` the sample is replayed on the batched engine instead (each
card's episodes of one id and seed side by side, as ``evaluate(engine="batched")`` plays
them): on cards the reference engine made on this processor, what remains is the
batched engine's own drift over whole episodes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.baselines.policy import recorded_path
from ganno_bench.baselines.zoo import UnknownAgentError, load_agent
from ganno_bench.benchmark import stats
from ganno_bench.benchmark.batched_evaluation import batched_unsupported, play_batched
from ganno_bench.benchmark.cards import hardware, same_processor
from ganno_bench.benchmark.evaluation import run_episode, single_threaded
from ganno_bench.benchmark.leaderboard.tables import text_table
from ganno_bench.benchmark.records import episode_seed
from ganno_bench.benchmark.scoring import load_references
from ganno_bench.envs.batched_episodes import batching_pays
from ganno_bench.envs.registry import spec_with

__all__ = ["ENGINES", "Replay", "agent_of", "format_report", "sample_episodes", "verify"]

TOLERANCE = 1e-3  # relative difference of the final test loss counted as "close"
ENGINES = ("sequential", "batched")
BATCH_SIZE = 32  # episodes per batch on the batched engine, evaluate()'s default


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
    rate_difference: float = 0.0  # the largest relative difference of a chosen rate

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


def _settings(card: Mapping[str, Any], env_id: str) -> tuple[dict | None, dict | None]:
    """The overrides an id was played with and the references that score it (none for
    a card of overridden budgets or of the train split, as when it was made)."""
    overrides = card["envs"][env_id].get("overrides") or None
    references = None if overrides or card["split"] == "train" else load_references(env_id)
    return overrides, references


def _replayed(path: Path, episode: Mapping[str, Any], again: Mapping[str, Any]) -> Replay:
    bitwise = (
        again["final_test_loss"] == episode["final_test_loss"]
        and _same(again["lrs"], episode["lrs"])
        and all(_same(again["curves"][k], v) for k, v in episode["curves"].items())
    )
    return Replay(
        path.name,
        episode["env_id"],
        episode["instance"],
        episode["seed"],
        float(episode["final_test_loss"]),
        float(again["final_test_loss"]),
        episode["normalised_score"],
        again["normalised_score"],
        bitwise,
        _relative_gap(again["lrs"], episode["lrs"]),
    )


def _relative_gap(here: Any, committed: Any) -> float:
    """The largest relative difference between two equally shaped nested lists of
    positive rates (infinite where the shapes differ: an episode that ended elsewhere)."""
    a, b = np.asarray(here, dtype=float), np.asarray(committed, dtype=float)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b) / np.abs(b), initial=0.0))


def replay(path: Path, card: Mapping[str, Any], episode: Mapping[str, Any]) -> Replay:
    """Run ``episode`` again as its card says it was run, on the reference engine."""
    env_id = episode["env_id"]
    overrides, references = _settings(card, env_id)
    with single_threaded():
        again = run_episode(
            agent_of(card, episode),
            env_id,
            card["split"],
            episode["instance"],
            episode["seed"],
            overrides,
            references,
        )
    return _replayed(path, episode, again)


def replay_batched(
    path: Path, card: Mapping[str, Any], episodes: Sequence[Mapping[str, Any]]
) -> list[Replay]:
    """Run ``episodes`` (one id and one seed, so one agent: a merged card holds one policy
    per seed) again side by side on the batched engine, with the instances, episode seeds
    and settings ``evaluate(engine="batched")`` gives them; a lone CNN episode, which
    evaluation plays on the reference engine (:func:`batching_pays`), is replayed there."""
    first = episodes[0]
    overrides, references = _settings(card, first["env_id"])
    if not batching_pays(spec_with(first["env_id"], overrides), len(episodes), "cpu"):
        return [replay(path, card, e) for e in episodes]
    jobs = [(e["instance"], e["seed"], episode_seed(e["seed"], e["instance"])) for e in episodes]
    with single_threaded():
        records = play_batched(
            agent_of(card, first), first["env_id"], card["split"], jobs, overrides, references
        )
    return [_replayed(path, e, again) for e, again in zip(episodes, records, strict=True)]


def _not_batchable(card: Mapping[str, Any]) -> str | None:
    """Why the batched engine cannot replay ``card`` (or has nothing to measure on it), or
    None: one agent per seed, checked on every id of the card."""
    if card.get("engine") == "batched":
        return "made by the batched engine (replay it with --engine sequential)"
    agents = {e["seed"]: agent_of(card, e) for e in card["episodes"]}
    for env_id in card["envs"]:
        for agent in agents.values():
            if (reason := batched_unsupported(agent, env_id)) is not None:
                return f"not on the batched engine: {reason}"
    return None


def verify(
    named: Sequence[tuple[Path, Mapping[str, Any]]],
    *,
    per_card: int = 1,
    seed: int = 0,
    progress: bool = True,
    engine: str = "sequential",
) -> tuple[list[Replay], list[str]]:
    """Replay a sample of the cards' episodes here on ``engine``; return the replays and,
    per card that could not be replayed (an agent that is not shipped) or not on the
    batched engine (an outer-loop or privileged agent, or a card that engine made), why.

    The batched engine plays a card's sampled episodes of one id and seed in batches of
    up to :data:`BATCH_SIZE`, as evaluation does (which also batches an id's seeds
    together when they share an agent; batch make-up does not move a slot's numbers)."""
    from tqdm import tqdm

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")

    skipped, playable = [], []
    for path, card in named:
        if not card["episodes"]:
            continue
        try:
            agent_of(card, card["episodes"][0])
        except (UnknownAgentError, FileNotFoundError) as exc:  # a user's agent or file
            skipped.append(f"{path.name}: {exc}".split(" Built-in agents:")[0])
            continue
        if engine == "batched" and (reason := _not_batchable(card)) is not None:
            skipped.append(f"{path.name}: {reason}")
            continue
        playable.append((path, card))
    sample = sample_episodes(playable, per_card, seed)
    if engine == "sequential":
        bar = tqdm(sample, desc="verify", unit="episode", disable=not progress)
        return [replay(path, card, episode) for path, card, episode in bar], skipped
    bar = tqdm(total=len(sample), desc="verify", unit="episode", disable=not progress)
    groups: dict[tuple[Path, str, int], list[int]] = defaultdict(list)
    for index, (path, _, episode) in enumerate(sample):
        groups[path, episode["env_id"], episode["seed"]].append(index)
    played: dict[int, Replay] = {}
    for members in groups.values():
        for start in range(0, len(members), BATCH_SIZE):
            chunk = members[start : start + BATCH_SIZE]
            path, card, _ = sample[chunk[0]]
            again = replay_batched(path, card, [sample[i][2] for i in chunk])
            played.update(zip(chunk, again, strict=True))
            bar.update(len(chunk))
    bar.close()
    return [played[i] for i in range(len(sample))], skipped


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
    engine: str = "sequential",
) -> str:
    """The per-episode table, then the counts and the IQM difference."""
    here = hardware()
    same = sum(same_processor(card.get("hardware")) for _, card in named)
    lines = [
        f"re-ran {len(replays)} committed episodes ({per_card} per card, sample seed {seed}) "
        + ("on the batched engine " if engine == "batched" else "")
        + f"on {here['cpu_model']} ({here['torch_cpu_capability']}); the cards were made on "
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
    if worst is not None and worst.relative_difference > 0 and not counts["differs"]:
        lines.append(
            f"largest relative difference of the final test loss: "
            f"{worst.relative_difference:.2g} ({worst.env_id} instance {worst.instance} "
            f"seed {worst.seed}, {worst.card})"
        )
    rates = max(replays, key=lambda r: r.rate_difference, default=None)
    if rates is not None and rates.rate_difference > 0:
        lines.append(
            f"largest relative difference of a chosen rate: {rates.rate_difference:.2g} "
            f"({rates.env_id} instance {rates.instance} seed {rates.seed}, {rates.card})"
        )
    elif rates is not None:
        lines.append("every chosen rate bitwise the committed one")
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
    if engine == "batched" and replays:
        lines.append(
            f"{same} of {len(named)} cards were made on this kind of processor: on those the "
            "differences above are the batched engine's own float32 drift over whole "
            "episodes; on the others the processor's drift adds to it."
        )
    elif replays and counts["bitwise"] < len(replays) and same < len(named):
        lines.append(
            "Cards made on another processor drift here by the amounts above: compare "
            "single episodes only within one machine, aggregates with this spread in mind."
        )
    return "\n".join(lines)
