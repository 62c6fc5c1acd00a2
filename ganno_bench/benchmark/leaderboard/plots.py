"""The leaderboard's PNG plots: performance profiles, learning curves, per-layer learning-rate
and batch-size schedules.

Made to be read at a glance: every legend sits outside its axes, each agent keeps one
colour and line style in every plot (20 distinct colours, light ones dashed), losses and
batch sizes are on log axes, and the per-layer rates are a grid of small multiples, one
panel per agent. Episodes are summarised by their IQM per decision, so one diverged
episode does not flatten the curves.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from ganno_bench.benchmark import stats
from ganno_bench.benchmark.leaderboard.runs import Run
from ganno_bench.benchmark.leaderboard.tables import Bootstrap, scored_ids

DPI = 80  # small multiples stay legible and the committed plots small
PANEL_COLUMNS = 5  # small multiples per row of a learning-rate plot
PROFILE_TAUS = 201
PROFILE_TOP_QUANTILE = 0.99  # profiles stop where all but 1% of the runs are below


def _slug(env_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", env_id)


def _ragged(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Ragged rows as a NaN-padded grid; non-finite entries (a diverged episode's last
    loss may be infinite) become NaN too."""
    width = max((len(r) for r in rows), default=0)
    grid = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        grid[i, : len(row)] = np.asarray(row, dtype=float)
    grid[~np.isfinite(grid)] = np.nan
    return grid


def _ragged_mean(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Column means of ragged rows, skipping missing and non-finite entries (NaN if none).

    Diverged episodes stop early and may end on an infinite loss: each decision averages
    the runs that reached it with a finite value.
    """
    grid = _ragged(rows)
    counts = np.isfinite(grid).sum(axis=0)
    sums = np.nansum(grid, axis=0)
    return np.divide(sums, counts, out=np.full(grid.shape[1], np.nan), where=counts > 0)


def _ragged_iqm(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Column IQMs (the mean of the middle half) of ragged rows, over the runs that reached
    each column with a finite value: robust to the few episodes that blow up."""
    grid = _ragged(rows)
    out = np.full(grid.shape[1], np.nan)
    for k, column in enumerate(grid.T):
        kept = column[np.isfinite(column)]
        if kept.size:
            out[k] = sps.trim_mean(kept, 0.25)
    return out


def _mean_log_lrs(episodes: Sequence[dict[str, Any]]) -> np.ndarray:
    """Mean log10 learning rate, shape (layers, decisions); ragged over layers/decisions."""
    layers = max((len(d) for e in episodes for d in e["lrs"]), default=0)
    per_layer = [
        [[np.log10(d[k]) if k < len(d) else np.nan for d in e["lrs"]] for e in episodes]
        for k in range(layers)
    ]
    return np.array([_ragged_mean(rows) for rows in per_layer])


def figure(width: float, height: float, margins: tuple[float, float, float, float]):
    """A figure made without pyplot, so PNGs render with Agg whatever the session's backend,
    with fixed ``(left, right, bottom, top)`` margins in inches around its axes.

    ``matplotlib.use("Agg")`` would also work headless but switches (and closes the
    figures of) the backend of a caller's interactive session; a bare Figure needs neither.
    Fixed margins, not constrained layout: the layout engine measured every tick label of
    every panel again and took most of a rendering's time.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    left, right, bottom, top = margins
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )
    return fig


def save_png(fig, path: Path) -> Path:
    """Write ``fig`` as a 256-colour PNG: a third of the bytes of a true-colour one, the
    same to the eye for line plots (and deterministic, so unchanged cards change no file)."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=0)
        small.save(path, format="png", optimize=True)
    return path


Style = dict[str, Any]


# 15 colours a reader tells apart on white: tab10 and five darker or more saturated ones
# (tab20's light halves fade into the background).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#000000", "#0b1f8f", "#ff00cc", "#a6761d", "#00695c",
)  # fmt: skip
LINESTYLES = ("-", "--", ":")


def styles(agents: Iterable[str]) -> dict[str, Style]:
    """One colour and line style per agent, by name order, so an agent looks the same in
    every plot of its track: 15 distinct colours as solid lines, then the same colours
    dashed (then dotted), so no two agents share both."""
    out = {}
    for i, agent in enumerate(sorted(set(agents))):
        out[agent] = {
            "color": PALETTE[i % len(PALETTE)],
            "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)],
            "linewidth": 1.6,
        }
    return out


def _label(run: Run) -> str:
    """An agent's legend entry, with its compute multiple when it is above 1."""
    return run.agent if run.compute_multiple == 1 else f"{run.agent} ({run.compute_multiple:g}x)"


def _legend_outside(ax, **kw) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False, **kw)


def _log_axis(ax, base: float = 10) -> None:
    """A log y-axis labelled with plain numbers: at 1-2-5 steps, every integer step when
    the data span less than a decade, evenly spaced round values when they span less than
    a third of one (else one or two labels would show), powers only above two decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    ax.set_yscale("log", base=base)
    if base == 10:
        low, high = ax.get_ylim()
        span = np.log10(high / low) if low > 0 else np.inf
        if span < 0.35:
            ax.yaxis.set_major_locator(MaxNLocator(8, steps=[1, 2, 5, 10]))
        else:
            subs = range(1, 10) if span < 1 else (1, 2, 5) if span < 2 else (1,)
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=tuple(subs)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _integer_decisions(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("decision")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def profile_taus(pooled: np.ndarray) -> np.ndarray:
    """The taus of a performance profile: over the scores' informative range, from the
    lowest score to the 99th percentile (above it a handful of runs is left, and the
    curves all sit at 0), as rliable plots over the range where the curves differ."""
    lo = float(np.min(pooled))
    hi = float(np.quantile(pooled, PROFILE_TOP_QUANTILE))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.02 * (hi - lo)
    return np.linspace(lo - pad, hi, PROFILE_TAUS)


def _profile_plot(
    split: str,
    runs: Sequence[Run],
    scores: Mapping[str, Mapping[str, np.ndarray]],
    metric: str,
    boot: Bootstrap,
    style: Mapping[str, Style],
    path: Path,
) -> Path:
    ranked = [run for run in runs if scores[run.agent]]
    pooled = np.concatenate([v for run in ranked for v in scores[run.agent].values()])
    taus = profile_taus(pooled)
    fig = figure(9.0, 4.6, (0.6, 2.4, 0.5, 0.35))
    ax = fig.add_subplot()
    for tau in (0.0, 1.0) if metric == "normalised_score" else ():
        ax.axvline(tau, color="0.8", linewidth=0.8, zorder=0)
    for run in ranked:
        value, low, high = stats.performance_profile(scores[run.agent], taus, **boot.kw)
        ax.plot(taus, value, label=_label(run), **style[run.agent])
        ax.fill_between(taus, low, high, color=style[run.agent]["color"], alpha=0.15, lw=0)
    ax.set(xlabel=f"{metric} τ", ylabel="fraction of runs > τ", ylim=(-0.02, 1.02))
    ax.set_xlim(taus[0], taus[-1])
    ax.set_title(f"Performance profile, split {split} (95% CIs; legend in rank order)")
    ax.grid(alpha=0.3)
    _legend_outside(ax, ncol=1 if len(ranked) <= 20 else 2)
    return save_png(fig, path)


def _curves_plot(env_id: str, runs: Sequence[Run], style: Mapping[str, Style], path: Path) -> Path:
    fig = figure(8.5, 4.4, (0.7, 2.1, 0.5, 0.35))
    ax = fig.add_subplot()
    for run in runs:
        episodes = [e for e in run.episodes if e["env_id"] == env_id]
        if episodes:
            curve = _ragged_iqm([e["curves"]["val_loss"] for e in episodes])
            ax.plot(np.arange(1, curve.size + 1), curve, label=_label(run), **style[run.agent])
    _log_axis(ax)
    ax.set_ylabel("validation loss (IQM over episodes)")
    _integer_decisions(ax)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"Learning curves, {env_id}")
    _legend_outside(ax)
    return save_png(fig, path)


def lrs_plot(env_id: str, runs: Sequence[Run], path: Path) -> Path:
    """Small multiples: one panel per agent (rank order) of its mean log10 rate per layer
    and decision, on shared axes, layers coloured from the input (dark) to the output."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in runs if any(e["env_id"] == env_id for e in r.episodes)]
    schedules = [_mean_log_lrs([e for e in r.episodes if e["env_id"] == env_id]) for r in runs]
    layers = max((len(s) for s in schedules), default=1)
    cols = min(PANEL_COLUMNS, max(1, len(runs)))
    rows = -(-len(runs) // cols)
    width = 2.1 * cols + 0.7
    legend_columns = max(1, min(layers, 8, int(width / 1.3)))  # ~1.3 in a legend entry
    legend_rows = -(-layers // legend_columns)
    bottom = 0.55 + 0.2 * legend_rows
    fig = figure(width, 1.6 * rows + 1.0 + 0.2 * legend_rows, (0.6, 0.1, bottom, 0.45))
    fig.subplots_adjust(wspace=0.08, hspace=0.3)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, layers))
    for ax, run, schedule in zip(axes, runs, schedules, strict=False):
        for k, layer in enumerate(schedule):
            ax.plot(np.arange(1, layer.size + 1), layer, color=colours[k], lw=1.3)
        ax.set_title(_label(run), fontsize="small", pad=2)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize="x-small")
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(5))
    for k, ax in enumerate(axes):  # tick labels on the outer panels only
        ax.xaxis.set_tick_params(labelbottom=k + cols >= len(runs))
        ax.set_visible(k < len(runs))
    fig.supxlabel("decision", fontsize="small", y=(bottom - 0.45) / fig.get_figheight())
    fig.supylabel("mean log10 learning rate", fontsize="small", x=0.1 / fig.get_figwidth())
    fig.suptitle(f"Per-layer learning rates, {env_id}", y=1 - 0.08 / fig.get_figheight())
    handles = [Line2D([], [], color=colours[k], lw=1.5) for k in range(layers)]
    names = ["layer 0 (input)", *(f"layer {k}" for k in range(1, layers - 1))]
    names += [f"layer {layers - 1} (output)"] if layers > 1 else []
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=legend_columns,
        fontsize="small",
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    return save_png(fig, path)


def _batch_sizes_plot(
    env_id: str, runs: Sequence[Run], style: Mapping[str, Style], path: Path
) -> Path:
    """Each agent's batch-size schedule on a batch-size id: the geometric mean over its
    episodes of the batch size chosen at each decision (``curves["batch_size"]``)."""
    fig = figure(8.0, 4.0, (0.8, 2.1, 0.5, 0.35))
    ax = fig.add_subplot()
    for run in runs:
        episodes = [e for e in run.episodes if e["env_id"] == env_id]
        if episodes:
            rows = [np.log2(e["curves"].get("batch_size", [])) for e in episodes]
            mean = 2.0 ** _ragged_mean(rows)
            ax.plot(np.arange(1, mean.size + 1), mean, label=_label(run), **style[run.agent])
    _log_axis(ax, base=2)
    ax.set_ylabel("batch size (geometric mean)")
    _integer_decisions(ax)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"Batch-size schedules, {env_id}")
    _legend_outside(ax)
    return save_png(fig, path)


def plot_jobs(
    split: str,
    runs: Sequence[Run],
    scores,
    metric: str,
    boot: Bootstrap,
    plots_dir: Path,
    track: str = "layer-lr",
    style: Mapping[str, Style] | None = None,
) -> list[tuple[str, Path, Any]]:
    """The split's plots as (caption, path, make) in document order, ``make()`` writing
    one PNG, so the caller can show progress. The LR track's files are
    ``<split>-*.png``, the batch-size track's ``batch-size-<split>-*``; ``runs`` in rank
    order (the legends' order)."""
    stem = split if track == "layer-lr" else f"{track}-{split}"
    style = style or styles(run.agent for run in runs)
    path = plots_dir / f"{stem}-profile.png"
    jobs = [
        (
            "Performance profile",
            path,
            lambda path=path: _profile_plot(split, runs, scores, metric, boot, style, path),
        )
    ]
    for env_id in scored_ids(scores):
        slug = _slug(env_id)
        path = plots_dir / f"{stem}-curves-{slug}.png"
        jobs.append(
            (
                f"Learning curves, {env_id}",
                path,
                lambda e=env_id, path=path: _curves_plot(e, runs, style, path),
            )
        )
        if track == "batch-size":
            path = plots_dir / f"{stem}-batch-sizes-{slug}.png"
            jobs.append(
                (
                    f"Batch-size schedules, {env_id}",
                    path,
                    lambda e=env_id, path=path: _batch_sizes_plot(e, runs, style, path),
                )
            )
            continue
        path = plots_dir / f"{split}-lrs-{slug}.png"
        jobs.append(
            (
                f"Learning-rate schedules, {env_id}",
                path,
                lambda e=env_id, path=path: lrs_plot(e, runs, path),
            )
        )
    return jobs


def write_plots(
    split: str,
    runs: Sequence[Run],
    scores,
    metric: str,
    boot: Bootstrap,
    plots_dir: Path,
    track: str = "layer-lr",
    style: Mapping[str, Style] | None = None,
) -> list[tuple[str, Path]]:
    """Write the split's PNGs (see :func:`plot_jobs`); return (caption, path) pairs."""
    jobs = plot_jobs(split, runs, scores, metric, boot, plots_dir, track, style)
    return [(caption, make()) for caption, _, make in jobs]
