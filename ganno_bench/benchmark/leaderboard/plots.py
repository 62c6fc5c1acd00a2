"""The leaderboard's PNG plots: performance profiles, learning curves, per-layer learning-rate
and batch-size schedules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.benchmark import stats
from ganno_bench.benchmark.leaderboard.runs import Run
from ganno_bench.benchmark.leaderboard.tables import Bootstrap, scored_ids


def _slug(env_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", env_id)


def _ragged_mean(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Column means of ragged rows, skipping missing and non-finite entries (NaN if none).

    Diverged episodes stop early and may end on an infinite loss: each decision averages
    the runs that reached it with a finite value.
    """
    width = max((len(r) for r in rows), default=0)
    grid = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        grid[i, : len(row)] = np.asarray(row, dtype=float)
    finite = np.isfinite(grid)
    counts = finite.sum(axis=0)
    sums = np.where(finite, grid, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.full(width, np.nan), where=counts > 0)


def _mean_log_lrs(episodes: Sequence[dict[str, Any]]) -> np.ndarray:
    """Mean log10 learning rate, shape (layers, decisions); ragged over layers/decisions."""
    layers = max((len(d) for e in episodes for d in e["lrs"]), default=0)
    per_layer = [
        [[np.log10(d[k]) if k < len(d) else np.nan for d in e["lrs"]] for e in episodes]
        for k in range(layers)
    ]
    return np.array([_ragged_mean(rows) for rows in per_layer])


def _figure(width: float, height: float):
    """A figure made without pyplot, so PNGs render with Agg whatever the session's backend.

    ``matplotlib.use("Agg")`` would also work headless but switches (and closes the
    figures of) the backend of a caller's interactive session; a bare Figure needs neither.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _colours(agents: Iterable[str]) -> dict[str, Any]:
    """One colour per agent, by name order, so an agent looks the same in every plot."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {a: cmap(i % 10) for i, a in enumerate(sorted(agents))}


def _integer_decisions(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("decision")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _profile_plot(split: str, scores, metric: str, boot: Bootstrap, path: Path) -> Path:
    agents = sorted(a for a in scores if scores[a])
    pooled = np.concatenate([v for a in agents for v in scores[a].values()])
    lo, hi = float(pooled.min()), float(pooled.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    taus = np.linspace(lo - pad, hi + pad, 101)
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    for agent, colour in _colours(agents).items():
        value, low, high = stats.performance_profile(scores[agent], taus, **boot.kw)
        ax.plot(taus, value, color=colour, label=agent)
        ax.fill_between(taus, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.set(xlabel=f"{metric} τ", ylabel="fraction of runs > τ", ylim=(-0.02, 1.02))
    ax.set_title(f"Performance profile, split {split}")
    ax.legend(fontsize="small")
    return _save(fig, path)


def _curves_plot(env_id: str, runs: Sequence[Run], colours, path: Path) -> Path:
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    for run in runs:
        episodes = [e for e in run.episodes if e["env_id"] == env_id]
        if episodes:
            mean = _ragged_mean([e["curves"]["val_loss"] for e in episodes])
            ax.plot(np.arange(1, mean.size + 1), mean, color=colours[run.agent], label=run.agent)
    ax.set_ylabel("mean validation loss")
    _integer_decisions(ax)
    ax.set_title(env_id)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _lrs_plot(env_id: str, runs: Sequence[Run], path: Path) -> Path:
    runs = [r for r in runs if any(e["env_id"] == env_id for e in r.episodes)]
    fig = _figure(3.5 * len(runs) + 0.5, 3.5)
    axes = fig.subplots(1, len(runs), sharey=True, squeeze=False)[0]
    for ax, run in zip(axes, runs, strict=True):
        schedule = _mean_log_lrs([e for e in run.episodes if e["env_id"] == env_id])
        for k, layer in enumerate(schedule):
            ax.plot(np.arange(1, layer.size + 1), layer, label=f"layer {k}")
        ax.set_title(run.agent)
        _integer_decisions(ax)
        if len(schedule):
            ax.legend(fontsize="x-small", ncol=2)
    axes[0].set_ylabel("mean log10 learning rate")
    fig.suptitle(env_id)
    return _save(fig, path)


def _batch_sizes_plot(env_id: str, runs: Sequence[Run], colours, path: Path) -> Path:
    """Each agent's batch-size schedule on a batch-size id: the geometric mean over its
    episodes of the batch size chosen at each decision (``curves["batch_size"]``)."""
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    for run in runs:
        episodes = [e for e in run.episodes if e["env_id"] == env_id]
        if episodes:
            rows = [np.log2(e["curves"].get("batch_size", [])) for e in episodes]
            mean = 2.0 ** _ragged_mean(rows)
            ax.plot(np.arange(1, mean.size + 1), mean, color=colours[run.agent], label=run.agent)
    ax.set_yscale("log", base=2)
    ax.set_ylabel("batch size (geometric mean)")
    _integer_decisions(ax)
    ax.set_title(env_id)
    ax.legend(fontsize="small")
    return _save(fig, path)


def write_plots(
    split: str,
    runs: Sequence[Run],
    scores,
    metric: str,
    boot: Bootstrap,
    plots_dir: Path,
    track: str = "layer-lr",
) -> list[tuple[str, Path]]:
    """Write the split's PNGs; return (caption, path) pairs in document order. The LR
    track's files are ``<split>-*.png``, the batch-size track's ``batch-size-<split>-*``."""
    stem = split if track == "layer-lr" else f"{track}-{split}"
    made = [
        (
            "Performance profile",
            _profile_plot(split, scores, metric, boot, plots_dir / f"{stem}-profile.png"),
        )
    ]
    colours = _colours([run.agent for run in runs])
    for env_id in scored_ids(scores):
        slug = _slug(env_id)
        made.append(
            (
                f"Learning curves, {env_id}",
                _curves_plot(env_id, runs, colours, plots_dir / f"{stem}-curves-{slug}.png"),
            )
        )
        if track == "batch-size":
            path = plots_dir / f"{stem}-batch-sizes-{slug}.png"
            made.append(
                (f"Batch-size schedules, {env_id}", _batch_sizes_plot(env_id, runs, colours, path))
            )
            continue
        made.append(
            (
                f"Learning-rate schedules, {env_id}",
                _lrs_plot(env_id, runs, plots_dir / f"{split}-lrs-{slug}.png"),
            )
        )
    return made
