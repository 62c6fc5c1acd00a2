"""The leaderboard: result cards rendered into markdown tables and PNG plots, and compare.

Every number is an estimate with a 95% stratified-bootstrap percentile CI from
:mod:`ganno_bench.stats`, so readers see how sure a ranking is, not only who is ahead.
Each split (test, test-ood, train) gets its own section, because scores on different
instance sets are not comparable: a ranking by aggregate IQM, the same per model family,
a per-id table, a probability-of-improvement matrix and plots (performance profiles,
learning curves and per-layer learning-rate schedules).

The suite's two tracks are never aggregated together either: the layerwise learning-rate
track's sections come first (as ``## Split ...``), then, when cards hold batch-size ids,
the batch-size track's (``## Batch-size track, split ...``: the same tables over the
batch-size ids only, its plots named ``batch-size-<split>-*`` and showing the chosen
batch size per decision instead of per-layer learning rates). An agent whose cards cover
both tracks appears in each track's tables with that track's episodes only.

Metrics are oriented so that higher is better: ``normalised_score`` (1 = the tuned
constant-rate reference), ``final_test_accuracy`` and ``neg_test_loss`` (the negated final
inner-test loss, for cards made before reference values exist). The output depends only on
the cards and the bootstrap seed, so re-rendering unchanged cards changes no file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench import stats
from ganno_bench.cards import CardError, load_card, scores_by_env
from ganno_bench.registry import UnknownEnvironmentError, spec, track_of

__all__ = [
    "METRICS",
    "Run",
    "compare",
    "family_of",
    "load_cards",
    "merge_runs",
    "probability_matrix",
    "render_leaderboard",
    "scores_for",
    "split_by_track",
    "track_of_id",
]

METRICS = ("normalised_score", "final_test_accuracy", "neg_test_loss")
SPLITS = ("test", "test-ood", "train")
TRACKS = ("layer-lr", "batch-size")  # rendering order; see track_of_id
FAMILIES = ("MLP", "CNN")
CONFIDENCE = 0.95
# Aggregates shown per agent; the optimality gap (shortfall below 1) means nothing for a
# negated loss, which is never above 0.
_STATISTICS = ("iqm", "mean", "median", "optimality_gap")
_DASH = "—"


# --- metrics


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")


def scores_for(card: Mapping[str, Any], metric: str = "normalised_score") -> dict[str, np.ndarray]:
    """Per id, every episode's ``metric`` (higher is better), for :mod:`ganno_bench.stats`.

    ``neg_test_loss`` is derived (``-final_test_loss``); the other metrics come from
    :func:`ganno_bench.cards.scores_by_env`, which raises CardError where a card has no
    value (``normalised_score`` before reference values are shipped).
    """
    _check_metric(metric)
    if metric == "neg_test_loss":
        return {k: -v for k, v in scores_by_env(card, "final_test_loss").items()}
    return scores_by_env(card, metric)


def _statistics(metric: str) -> tuple[str, ...]:
    return tuple(s for s in _STATISTICS if metric != "neg_test_loss" or s != "optimality_gap")


# --- cards and runs


def _load_named(results_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.json`` card in ``results_dir`` in sorted order, with its path."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise CardError(f"no results folder at {folder}")
    named = []
    for path in sorted(folder.glob("*.json")):
        try:
            named.append((path, load_card(path)))
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError(f"{path}: cannot be read ({exc})") from exc
    return named


def load_cards(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``*.json`` in ``results_dir`` (sorted), validated; CardError names a bad file."""
    return [card for _, card in _load_named(results_dir)]


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


def _card_ids(card: Mapping[str, Any]) -> set[str]:
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
    for env_id in sorted(_card_ids(card)):
        mine = (card["envs"].get(env_id), agent.get("config"))
        if run.settings.setdefault(env_id, mine) != mine:
            first = next(p for (k, _), p in run.sources.items() if k == env_id)
            raise ValueError(
                f"{first} and {path} both hold agent {run.agent!r} on split {run.split!r} "
                f"for {env_id}, but with different task settings (version, instances, budget, "
                "overrides) or agent config: their seeds cannot be pooled; keep one of them"
            )
    for key in sorted((env_id, seed) for env_id in _card_ids(card) for seed in card["seeds"]):
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


def _run_scores(run: Run, metric: str) -> dict[str, np.ndarray]:
    try:
        return scores_for({"episodes": run.episodes}, metric)
    except CardError as exc:
        files = ", ".join(sorted({str(p) for p in run.sources.values()}))
        raise CardError(f"{files} (agent {run.agent!r}, split {run.split!r}): {exc}") from exc


def family_of(env_id: str) -> str:
    """The model family of an id (MLP, CNN), from its registration or else its name."""
    try:
        family = spec(env_id).family
    except UnknownEnvironmentError:
        family = "custom"
    if family not in FAMILIES:  # custom tasks, and the batch-size track ("BatchSize")
        match = re.search(r"-(MLP|CNN)-", env_id)
        family = match.group(1) if match else family
    return family


def _families(ids: Iterable[str]) -> list[str]:
    present = {family_of(i) for i in ids}
    return [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))


# --- formatting


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _slug(env_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", env_id)


# --- tables


@dataclass(frozen=True)
class _Boot:
    """The bootstrap settings shared by every estimate of one rendering."""

    seed: int
    n_resamples: int

    @property
    def kw(self) -> dict[str, Any]:
        return {"confidence": CONFIDENCE, "n_resamples": self.n_resamples, "seed": self.seed}


def _aggregates(
    scores: Mapping[str, np.ndarray], metric: str, boot: _Boot
) -> dict[str, stats.Estimate]:
    return {s: stats.aggregate(scores, s, **boot.kw) for s in _statistics(metric)}


def _ranking_rows(
    runs: Sequence[Run], scores: Mapping[str, Mapping[str, np.ndarray]], metric: str, boot: _Boot
) -> list[list[str]]:
    """Agents with any of the given ids, best aggregate IQM first."""
    entries = []
    for run in runs:
        own = scores[run.agent]
        if not own:
            continue
        est = _aggregates(own, metric, boot)
        entries.append((-est["iqm"].value, run.agent, run, own, est))
    rows = []
    for rank, (_, name, run, own, est) in enumerate(sorted(entries, key=lambda e: e[:2]), 1):
        rows.append(
            [
                str(rank),
                name,
                *(str(est[s]) if s in est else "n/a" for s in _STATISTICS),
                str(len(own)),
                str(sum(v.size for v in own.values())),
                f"{run.compute_multiple:g}",
                "yes" if run.privileged else "no",
            ]
        )
    return rows


_RANKING_HEADER = [
    "rank",
    "agent",
    "IQM",
    "mean",
    "median",
    "optimality gap",
    "ids",
    "episodes",
    "compute multiple",
    "privileged",
]


def _ranking(runs: Sequence[Run], scores, metric: str, boot: _Boot) -> list[str]:
    return _md_table(_RANKING_HEADER, _ranking_rows(runs, scores, metric, boot))


def _ids(scores: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    """The ids any agent has scores for, sorted."""
    return sorted({i for own in scores.values() for i in own})


def _family_tables(runs: Sequence[Run], scores, metric: str, boot: _Boot) -> list[str]:
    ids = _ids(scores)
    lines = []
    for family in _families(ids):
        sub = {
            run.agent: {k: v for k, v in scores[run.agent].items() if family_of(k) == family}
            for run in runs
        }
        n_ids = len([i for i in ids if family_of(i) == family])
        lines += [f"#### {family} ({n_ids} ids)", ""]
        lines += _ranking(runs, sub, metric, boot)
    return lines


def _divergence(run: Run, env_id: str) -> str:
    flags = [e["diverged"] for e in run.episodes if e["env_id"] == env_id]
    return f"div {100 * sum(flags) / len(flags):.0f}%"


def _per_id_table(runs: Sequence[Run], scores, boot: _Boot) -> list[str]:
    tasks = {run.agent: stats.per_task(scores[run.agent], "iqm", **boot.kw) for run in runs}
    rows = [
        [env_id]
        + [
            f"{tasks[run.agent][env_id]} · {_divergence(run, env_id)}"
            if env_id in tasks[run.agent]
            else _DASH
            for run in runs
        ]
        for env_id in _ids(scores)
    ]
    return _md_table(["id", *(run.agent for run in runs)], rows)


def probability_matrix(
    scores: Mapping[str, Mapping[str, np.ndarray]], *, seed: int = 0, n_resamples: int = 2000
) -> dict[tuple[str, str], stats.Estimate | None]:
    """P(a > b) for every ordered pair of distinct agents, over the ids both share.

    ``scores``: agent -> (id -> runs); None where a pair shares no id. Each unordered pair
    is bootstrapped once (the earlier agent of ``scores`` as ``a``) and its mirror is
    ``1 - P`` with the interval mirrored, so the matrix is exactly antisymmetric, CIs too.
    """
    boot = _Boot(int(seed), int(n_resamples))
    agents = list(scores)
    out: dict[tuple[str, str], stats.Estimate | None] = {}
    for i, a in enumerate(agents):
        for b in agents[i + 1 :]:
            if not set(scores[a]) & set(scores[b]):
                out[a, b] = out[b, a] = None
                continue
            est = stats.probability_of_improvement(scores[a], scores[b], **boot.kw)
            out[a, b] = est
            out[b, a] = stats.Estimate(1.0 - est.value, 1.0 - est.high, 1.0 - est.low)
    return out


def _compute_rows(runs: Sequence[Run], scores, boot: _Boot) -> list[list[str]]:
    """Each outer-loop agent (compute multiple above 1) against, over its own ids, the best
    single-run agent (it spends that many times the compute) and every other agent of the
    same compute multiple (equal compute)."""
    rows = []
    for outer in (run for run in runs if run.compute_multiple > 1):
        ids = set(scores[outer.agent])
        covering = [r for r in runs if r is not outer and ids <= set(scores[r.agent])]
        own = {k: scores[outer.agent][k] for k in ids}
        theirs = {r.agent: {k: scores[r.agent][k] for k in ids} for r in covering}
        iqm = {name: stats.aggregate(s, "iqm", **boot.kw) for name, s in theirs.items()}
        singles = [r for r in covering if r.compute_multiple == 1 and not r.privileged]
        comparators: list[tuple[Run, str]] = []
        if singles:
            comparators.append((max(singles, key=lambda r: iqm[r.agent].value), "best single run"))
        comparators += [
            (r, "equal compute") for r in covering if r.compute_multiple == outer.compute_multiple
        ]
        own_iqm = stats.aggregate(own, "iqm", **boot.kw)
        for other, relation in comparators:
            rows.append(
                [
                    outer.agent,
                    f"{outer.compute_multiple:g}",
                    str(len(ids)),
                    str(own_iqm),
                    f"{other.agent} ({relation}, {other.compute_multiple:g})",
                    str(iqm[other.agent]),
                    str(stats.probability_of_improvement(own, theirs[other.agent], **boot.kw)),
                ]
            )
    return rows


def _compute_table(runs: Sequence[Run], scores, boot: _Boot) -> list[str]:
    rows = _compute_rows(runs, scores, boot)
    if not rows:
        return []
    header = ["agent", "compute", "ids", "IQM", "versus", "their IQM", "P(agent > versus)"]
    return [
        "### Compute",
        "",
        "Outer-loop agents spend several training runs per episode. Over each one's ids: "
        "the best single-run agent (the outer loop has that many times its compute) and "
        "agents of the same compute multiple (equal compute).",
        "",
        *_md_table(header, rows),
    ]


def _poi_table(agents: Sequence[str], scores, boot: _Boot) -> list[str]:
    matrix = probability_matrix(
        {a: scores[a] for a in agents}, seed=boot.seed, n_resamples=boot.n_resamples
    )
    rows = [
        [a] + [_DASH if a == b or matrix[a, b] is None else str(matrix[a, b]) for b in agents]
        for a in agents
    ]
    return _md_table(["P(row > column)", *agents], rows)


# --- plots


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


def _profile_plot(split: str, scores, metric: str, boot: _Boot, path: Path) -> Path:
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


def _plots(
    split: str,
    runs: Sequence[Run],
    scores,
    metric: str,
    boot: _Boot,
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
    for env_id in _ids(scores):
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


# --- rendering


def _split_section(
    split: str,
    runs: Sequence[Run],
    metric: str,
    boot: _Boot,
    out_dir: Path | None,
    track: str = "layer-lr",
) -> tuple[list[str], list[Path]]:
    """The split's markdown for one track's runs, and the PNGs it links (none when
    ``out_dir`` is None)."""
    runs = [run for run in runs if run.episodes]  # a card may hold no episode yet
    scores = {run.agent: _run_scores(run, metric) for run in runs}
    ranked = [row[1] for row in _ranking_rows(runs, scores, metric, boot)]
    by_rank = sorted(runs, key=lambda r: ranked.index(r.agent))
    title = f"Split `{split}`" if track == "layer-lr" else f"Batch-size track, split `{split}`"
    lines = [f"## {title}", ""]
    if not runs:
        return [*lines, "No episodes yet.", ""], []
    if len({tuple(sorted(own)) for own in scores.values()}) > 1:
        lines += ["Agents cover different ids here: compare aggregates with care.", ""]
    lines += ["### Ranking", "", *_ranking(runs, scores, metric, boot)]
    lines += ["### By model family", "", *_family_tables(runs, scores, metric, boot)]
    lines += ["### Per id", "", "Per-id IQM [95% CI] and the rate of diverged episodes.", ""]
    lines += _per_id_table(by_rank, scores, boot)
    lines += ["### Probability of improvement", ""]
    lines += ["P(a run of the row agent beats one of the column agent) over shared ids.", ""]
    lines += _poi_table(ranked, scores, boot)
    lines += _compute_table(by_rank, scores, boot)
    if out_dir is None:
        return lines, []
    lines += ["### Plots", ""]
    plots = _plots(split, by_rank, scores, metric, boot, out_dir / "plots", track)
    for caption, path in plots:
        lines += [f"![{caption}]({path.relative_to(out_dir).as_posix()})", ""]
    return lines, [p for _, p in plots]


def _cards_table(named: Sequence[tuple[Path, Mapping[str, Any]]]) -> list[str]:
    rows = [
        [
            path.name,
            card["agent"]["name"],
            card["split"],
            str(len(_card_ids(card))),
            str(len(card["episodes"])),
            card["package_version"],
        ]
        for path, card in named
    ]
    return _md_table(["card", "agent", "split", "ids", "episodes", "package"], rows)


def _header(metric: str, boot: _Boot) -> list[str]:
    return [
        "# ganno-bench leaderboard",
        "",
        "Rendered by `ganno-bench leaderboard` from the result cards below; do not edit.",
        "",
        f"Metric: `{metric}` (higher is better). Every value is a point estimate with its "
        f"{CONFIDENCE:.0%} stratified-bootstrap percentile interval [low, high] "
        f"({boot.n_resamples} resamples, seed {boot.seed}). IQM: interquartile mean of all "
        "episodes; optimality gap: mean shortfall below 1 (lower is better; n/a for "
        "`neg_test_loss`). Splits are never mixed.",
        "",
    ]


EXPERIMENTS = {
    "generalisation": "trained on an easy MLP, played on harder networks "
    "(`ganno-bench reproduce generalisation`)",
    "boil": "BOIL's claim: schedule found versus tuning time (`ganno-bench boil claim`)",
}


def _experiments(out_dir: Path) -> list[str]:
    """Links to the experiment reports that live beside the leaderboard."""
    found = [(n, d) for n, d in EXPERIMENTS.items() if (out_dir / n / "README.md").exists()]
    if not found:
        return []
    return [
        "## Experiments",
        "",
        *(f"* [{name}]({name}/README.md): {what}" for name, what in found),
        "",
    ]


def render_leaderboard(
    results_dir: Path,
    out_dir: Path,
    *,
    metric: str = "normalised_score",
    seed: int = 0,
    n_resamples: int = 2000,
    plots: bool = True,
) -> Path:
    """Write ``out_dir/README.md`` and its PNGs in ``out_dir/plots``; return the README.

    The same cards and ``seed`` give the same markdown (and PNGs). PNGs in ``plots/`` that
    this rendering did not write (plots of ids or splits no longer present) are removed.
    ``plots=False`` writes the tables only (plotting takes most of the time) and leaves
    ``plots/`` alone.
    """
    _check_metric(metric)
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    named = _load_named(results_dir)
    if not named:
        raise CardError(f"no result cards (*.json) in {results_dir}")
    splits = merge_runs(named)
    boot = _Boot(int(seed), int(n_resamples))
    (out_dir / "plots" if plots else out_dir).mkdir(parents=True, exist_ok=True)
    lines = [*_header(metric, boot), *_experiments(out_dir)]
    lines += ["## Result cards", "", *_cards_table(named)]
    by_track = {split: split_by_track(runs) for split, runs in splits.items()}
    if any("batch-size" in tracks for tracks in by_track.values()):
        lines += [
            "The layerwise learning-rate track (`ganno/LayerLR-*`) and the batch-size track "
            "(`ganno/BatchSize-*`) have sections of their own: their scores are never "
            "aggregated together.",
            "",
        ]
    written: set[Path] = set()
    for track in TRACKS:
        for split, tracks in by_track.items():
            if track not in tracks:
                continue
            section, pngs = _split_section(
                split, tracks[track], metric, boot, out_dir if plots else None, track
            )
            lines += section
            written.update(pngs)
    if plots:
        for stale in sorted((out_dir / "plots").glob("*.png")):
            if stale not in written:
                stale.unlink()
    readme = out_dir / "README.md"
    tmp = readme.with_name(readme.name + ".tmp")  # never a half-written leaderboard
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    tmp.replace(readme)
    return readme


# --- compare


def compare(
    card_a: Mapping[str, Any],
    card_b: Mapping[str, Any],
    *,
    metric: str = "normalised_score",
    seed: int = 0,
    n_resamples: int = 2000,
) -> str:
    """Side-by-side plain-text table of two cards over the ids they share.

    Per shared id: each card's IQM [95% CI] and P(A > B) [CI]; then the aggregate IQM of
    each over the shared ids and the probability of improvement over them.
    """
    _check_metric(metric)
    if card_a["split"] != card_b["split"]:
        raise ValueError(
            f"the cards are of different splits ({card_a['split']!r} and "
            f"{card_b['split']!r}): their scores are not comparable"
        )
    a_all, b_all = scores_for(card_a, metric), scores_for(card_b, metric)
    shared = sorted(set(a_all) & set(b_all))
    if not shared:
        raise ValueError(f"the cards share no id: A has {sorted(a_all)}, B has {sorted(b_all)}")
    a = {k: a_all[k] for k in shared}
    b = {k: b_all[k] for k in shared}
    boot = _Boot(int(seed), int(n_resamples))
    a_task = stats.per_task(a, "iqm", **boot.kw)
    b_task = stats.per_task(b, "iqm", **boot.kw)
    rows = [
        [
            env_id,
            str(a_task[env_id]),
            str(b_task[env_id]),
            str(
                stats.probability_of_improvement(
                    {env_id: a[env_id]}, {env_id: b[env_id]}, **boot.kw
                )
            ),
        ]
        for env_id in shared
    ]
    rows.append(
        [
            f"aggregate ({len(shared)} ids)",
            str(stats.aggregate(a, "iqm", **boot.kw)),
            str(stats.aggregate(b, "iqm", **boot.kw)),
            str(stats.probability_of_improvement(a, b, **boot.kw)),
        ]
    )
    ci = f"{CONFIDENCE:.0%} CI"
    lines = [
        f"A: {card_a['agent']['name']}   B: {card_b['agent']['name']}   split: "
        f"{card_a['split']}   metric: {metric} (higher is better)",
        f"IQM and P(A > B) with {ci}s ({boot.n_resamples} stratified-bootstrap resamples, "
        f"seed {boot.seed})",
        "",
        *_text_table(["id", f"A IQM [{ci}]", f"B IQM [{ci}]", f"P(A > B) [{ci}]"], rows),
    ]
    only = [(n, sorted(set(s) - set(shared))) for n, s in (("A", a_all), ("B", b_all))]
    lines += [f"ids only in {n} (ignored): {', '.join(ids)}" for n, ids in only if ids]
    return "\n".join(lines)
