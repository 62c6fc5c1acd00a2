"""Result cards as runs: loading the cards of a folder, merging one agent's cards (seeds
in cards of their own), splitting by track and model family, and each run's scores."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.benchmark.cards import CardError, card_files, load_card, scores_by_env
from ganno_bench.envs.registry import UnknownEnvironmentError, spec, track_of

METRICS = ("normalised_score", "final_test_accuracy", "neg_test_loss")


SPLITS = ("test", "test-ood", "train")


TRACKS = ("layer-lr", "batch-size")  # rendering order; see track_of_id


FAMILIES = ("MLP", "CNN", "Transformer")


# Aggregates shown per agent; the optimality gap (shortfall below 1) means nothing for a
# negated loss, which is never above 0.
STATISTICS = ("iqm", "mean", "median", "optimality_gap")


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")


def scores_for(card: Mapping[str, Any], metric: str = "normalised_score") -> dict[str, np.ndarray]:
    """Per id, every episode's ``metric`` (higher is better), for
    :mod:`ganno_bench.benchmark.stats`.

    ``neg_test_loss`` is derived (``-final_test_loss``); the other metrics come from
    :func:`ganno_bench.benchmark.cards.scores_by_env`, which raises CardError where a card has no
    value (``normalised_score`` before reference values are shipped).
    """
    check_metric(metric)
    if metric == "neg_test_loss":
        return {k: -v for k, v in scores_by_env(card, "final_test_loss").items()}
    return scores_by_env(card, metric)


def statistics(metric: str) -> tuple[str, ...]:
    return tuple(s for s in STATISTICS if metric != "neg_test_loss" or s != "optimality_gap")


def load_named(
    results_dir: str | Path, *, progress: bool = False, curves: bool = True
) -> list[tuple[Path, dict[str, Any]]]:
    """Every card in ``results_dir`` (``*.json`` and compact ``*.json.gz``) in sorted
    order, with its path; ``progress`` shows a bar; ``curves=False`` leaves out the
    episodes' per-decision arrays (:func:`~ganno_bench.benchmark.cards.load_card`)."""
    from tqdm import tqdm

    folder = Path(results_dir)
    if not folder.is_dir():
        raise CardError(f"no results folder at {folder}")
    named = []
    for path in tqdm(card_files(folder), desc="result cards", unit="card", disable=not progress):
        try:
            named.append((path, load_card(path, curves=curves)))
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError(f"{path}: cannot be read ({exc})") from exc
    return named


def load_cards(results_dir: str | Path, *, curves: bool = True) -> list[dict[str, Any]]:
    """Every card in ``results_dir`` (sorted), validated; CardError names a bad file."""
    return [card for _, card in load_named(results_dir, curves=curves)]


@dataclass
class Run:
    """One agent's episodes on one split, possibly merged from several cards."""

    agent: str
    split: str
    compute_multiple: float
    privileged: bool
    episodes: list[dict[str, Any]] = field(default_factory=list)
    # (env id, seed) -> the card file holding those episodes
    sources: dict[tuple[str, int], Path] = field(default_factory=dict)
    # env id -> (the card's task header for it, the agent's config): what another seed's
    # card of the same id must repeat to be pooled with it
    settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return sorted({env_id for env_id, _ in self.sources})


def divergence_rate(run: Run, ids: Iterable[str] | None = None) -> float:
    """The share of ``run``'s episodes (on ``ids``, default all) that diverged: reported
    beside every score, which counts a diverged episode as the floor -1 whatever its loss."""
    wanted = None if ids is None else set(ids)
    flags = [e["diverged"] for e in run.episodes if wanted is None or e["env_id"] in wanted]
    return float(np.mean(flags)) if flags else 0.0


def card_ids(card: Mapping[str, Any]) -> set[str]:
    return set(card["envs"]) | {e["env_id"] for e in card["episodes"]}


def _add_card(run: Run, path: Path, card: Mapping[str, Any]) -> None:
    """Merge ``card`` into ``run``; cards of one agent and split must cover different ids or
    different seeds (more seeds of an agent may come in a card of their own)."""
    agent = card["agent"]
    extra = (float(agent.get("compute_multiple", 1.0)), bool(agent.get("privileged", False)))
    other = next(iter(run.sources.values()), None)
    if other is not None and extra != (run.compute_multiple, run.privileged):
        raise ValueError(
            f"{other} and {path} both hold agent {run.agent!r} on split {run.split!r} but "
            "disagree on its compute_multiple or privileged flag"
        )
    for env_id in sorted(card_ids(card)):
        mine = (card["envs"].get(env_id), agent.get("config"))
        if run.settings.setdefault(env_id, mine) != mine:
            first = next(p for (k, _), p in run.sources.items() if k == env_id)
            raise ValueError(
                f"{first} and {path} both hold agent {run.agent!r} on split {run.split!r} "
                f"for {env_id}, but with different task settings (version, instances, budget, "
                "overrides) or agent config: their seeds cannot be pooled; keep one of them"
            )
    for key in sorted((env_id, seed) for env_id in card_ids(card) for seed in card["seeds"]):
        if key in run.sources:
            raise ValueError(
                f"{run.sources[key]} and {path} both hold agent {run.agent!r} on split "
                f"{run.split!r} for {key[0]}, seed {key[1]}: keep one of them (cards of one "
                "agent and split are merged only when they cover different ids or seeds)"
            )
        run.sources[key] = path
    run.compute_multiple, run.privileged = extra
    run.episodes.extend(card["episodes"])


def merge_runs(named: Iterable[tuple[Path, Mapping[str, Any]]]) -> dict[str, list[Run]]:
    """Cards grouped into runs: per split (in SPLITS order), agents in name order."""
    runs: dict[tuple[str, str], Run] = {}
    for path, card in named:
        key = (card["split"], card["agent"]["name"])
        run = runs.setdefault(key, Run(key[1], key[0], 1.0, False))
        _add_card(run, Path(path), card)
    return {
        split: [runs[k] for k in sorted(runs) if k[0] == split]
        for split in SPLITS
        if any(k[0] == split for k in runs)
    }


def track_of_id(env_id: str) -> str:
    """An id's track (``layer-lr`` or ``batch-size``) from its registration; an id not
    registered here is placed by its name (``.../BatchSize-...``), else on the LR track."""
    try:
        return track_of(env_id)
    except UnknownEnvironmentError:
        return "batch-size" if "/BatchSize-" in f"/{env_id}" else "layer-lr"


def split_by_track(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Each run cut into one run per track it has episodes or ids of (in TRACKS order), so
    no table, aggregate or plot mixes the tracks."""
    out: dict[str, list[Run]] = {}
    for track in TRACKS:
        kept = []
        for run in runs:
            sources = {k: p for k, p in run.sources.items() if track_of_id(k[0]) == track}
            episodes = [e for e in run.episodes if track_of_id(e["env_id"]) == track]
            if sources or episodes:
                kept.append(
                    Run(
                        run.agent,
                        run.split,
                        run.compute_multiple,
                        run.privileged,
                        episodes,
                        sources,
                    )
                )
        if kept:
            out[track] = kept
    return out or {"layer-lr": list(runs)}  # runs without ids or episodes: as before


def run_scores(run: Run, metric: str) -> dict[str, np.ndarray]:
    try:
        return scores_for({"episodes": run.episodes}, metric)
    except CardError as exc:
        files = ", ".join(sorted({str(p) for p in run.sources.values()}))
        raise CardError(f"{files} (agent {run.agent!r}, split {run.split!r}): {exc}") from exc


def family_of(env_id: str) -> str:
    """The model family of an id (MLP, CNN, Transformer), from its registration or its name."""
    try:
        family = spec(env_id).family
    except UnknownEnvironmentError:
        family = "custom"
    if family not in FAMILIES:  # custom tasks, and the batch-size track ("BatchSize")
        match = re.search(r"-(MLP|CNN|Transformer)-", env_id)
        family = match.group(1) if match else family
    return family


def families(ids: Iterable[str]) -> list[str]:
    present = {family_of(i) for i in ids}
    return [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))
