"""Rendering the leaderboard (``README.md`` and ``plots/``) from a folder of result cards,
and the side-by-side comparison of two cards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ganno_bench.benchmark import stats
from ganno_bench.benchmark.cards import CardError
from ganno_bench.benchmark.journal import write_atomically
from ganno_bench.benchmark.leaderboard.plots import plot_jobs, styles
from ganno_bench.benchmark.leaderboard.runs import (
    TRACKS,
    Run,
    check_metric,
    load_named,
    merge_runs,
    run_scores,
    scores_for,
    split_by_track,
)
from ganno_bench.benchmark.leaderboard.summary import experiment_conclusions, split_headline
from ganno_bench.benchmark.leaderboard.tables import (
    CONFIDENCE,
    RANKING_HEADER,
    Bootstrap,
    cards_table,
    compute_table,
    family_tables,
    header,
    md_table,
    per_id_table,
    perplexity_table,
    poi_table,
    ranking_rows,
    text_table,
)


def _split_section(
    split: str,
    runs: Sequence[Run],
    metric: str,
    boot: Bootstrap,
    out_dir: Path | None,
    track: str = "layer-lr",
    style: Mapping[str, Any] | None = None,
    bar: Any = None,
) -> tuple[list[str], list[Path]]:
    """The split's markdown for one track's runs, and the PNGs it links (none when
    ``out_dir`` is None); ``bar`` (a tqdm bar) advances by one per table and plot."""
    runs = [run for run in runs if run.episodes]  # a card may hold no episode yet
    scores = {run.agent: run_scores(run, metric) for run in runs}
    title = _title(split, track)
    lines = [f"## {title}", ""]
    if not runs:
        return [*lines, "No episodes yet.", ""], []
    step = bar.update if bar is not None else (lambda n=1: None)
    rows = ranking_rows(runs, scores, metric, boot)
    ranked = [row[1] for row in rows]
    by_rank = sorted(runs, key=lambda r: ranked.index(r.agent))
    if len({tuple(sorted(own)) for own in scores.values()}) > 1:
        lines += ["Agents cover different ids here: compare aggregates with care.", ""]
    lines += ["### Ranking", "", *md_table(RANKING_HEADER, rows)]
    step()
    lines += ["### By model family", "", *family_tables(runs, scores, metric, boot)]
    perplexity = perplexity_table(by_rank, boot) if track == "layer-lr" else []
    if perplexity:
        lines += ["### Transformer perplexity", "", "Inner-test perplexity, exp(loss).", ""]
        lines += perplexity
    step()
    lines += ["### Per id", "", "Per-id IQM [95% CI] and the rate of diverged episodes.", ""]
    lines += per_id_table(by_rank, scores, boot)
    step()
    lines += ["### Probability of improvement", ""]
    lines += ["P(a run of the row agent beats one of the column agent) over shared ids.", ""]
    lines += poi_table(ranked, scores, boot)
    step()
    lines += compute_table(by_rank, scores, boot)
    step()
    if out_dir is None:
        return lines, []
    lines += ["### Plots", ""]
    jobs = plot_jobs(split, by_rank, scores, metric, boot, out_dir / "plots", track, style)
    for caption, path, make in jobs:
        make()
        step()
        lines += [f"![{caption}]({path.relative_to(out_dir).as_posix()})", ""]
    return lines, [path for _, path, _ in jobs]


def _title(split: str, track: str) -> str:
    return f"Split `{split}`" if track == "layer-lr" else f"Batch-size track, split `{split}`"


TABLES_PER_SECTION = 5  # ranking, families, per id, probability of improvement, compute

EXPERIMENTS = {
    "generalisation": "trained on easy networks, played on harder ones "
    "(`ganno-bench reproduce generalisation`)",
    "boil": "BOIL's claim: schedule found versus tuning time (`ganno-bench boil claim`)",
}


def _headline(
    by_track: Mapping[str, Mapping[str, Sequence[Run]]],
    metric: str,
    boot: Bootstrap,
    out_dir: Path,
) -> list[str]:
    """The leaderboard's first screen: per track and split its best agents, then each
    experiment's conclusion (see :mod:`ganno_bench.benchmark.leaderboard.summary`)."""
    lines = ["## Headline", ""]
    for track in TRACKS:
        for split, tracks in by_track.items():
            runs = [run for run in tracks.get(track, []) if run.episodes]
            if runs:
                scores = {run.agent: run_scores(run, metric) for run in runs}
                lines += split_headline(_title(split, track), runs, scores, boot.kw)
    conclusions = experiment_conclusions(out_dir, EXPERIMENTS)
    if conclusions:
        lines += ["Experiments:", "", *conclusions, ""]
    return lines


def render_leaderboard(
    results_dir: Path,
    out_dir: Path,
    *,
    metric: str = "normalised_score",
    seed: int = 0,
    n_resamples: int = 2000,
    plots: bool = True,
    progress: bool = False,
) -> Path:
    """Write ``out_dir/README.md`` and its PNGs in ``out_dir/plots``; return the README.

    The README opens with a generated headline (the best agents per split on the ids they
    all cover, and each experiment's conclusion), then one section per track and split,
    and ends with the list of result cards. The same cards and ``seed`` give the same
    markdown (and PNGs). PNGs in ``plots/`` that this rendering did not write (plots of ids
    or splits no longer present) are removed. ``plots=False`` writes the tables only and
    leaves ``plots/`` alone. ``progress`` shows a progress bar per stage (loading the
    cards, then each section's tables and plots).
    """
    from tqdm import tqdm

    check_metric(metric)
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    named = load_named(results_dir, progress=progress)
    if not named:
        raise CardError(f"no result cards (*.json) in {results_dir}")
    splits = merge_runs(named)
    boot = Bootstrap(int(seed), int(n_resamples))
    (out_dir / "plots" if plots else out_dir).mkdir(parents=True, exist_ok=True)
    by_track = {split: split_by_track(runs) for split, runs in splits.items()}
    lines = [*header(metric, boot), *_headline(by_track, metric, boot, out_dir)]
    if any("batch-size" in tracks for tracks in by_track.values()):
        lines += [
            "The layerwise learning-rate track (`ganno/LayerLR-*`) and the batch-size track "
            "(`ganno/BatchSize-*`) have sections of their own: their scores are never "
            "aggregated together.",
            "",
        ]
    written: set[Path] = set()
    for track in TRACKS:
        # one style per agent of the track, whatever the split
        style = styles(r.agent for tracks in by_track.values() for r in tracks.get(track, []))
        for split, tracks in by_track.items():
            if track not in tracks:
                continue
            runs = tracks[track]
            ids = {e["env_id"] for run in runs for e in run.episodes}
            # the tables, then a profile and two plots per id
            total = TABLES_PER_SECTION + (1 + 2 * len(ids) if plots else 0)
            desc = _title(split, track).replace("`", "")
            with tqdm(total=total, desc=desc, unit="step", disable=not progress) as bar:
                section, pngs = _split_section(
                    split, runs, metric, boot, out_dir if plots else None, track, style, bar
                )
            lines += section
            written.update(pngs)
    lines += ["## Result cards", "", *cards_table(named)]
    if plots:
        for stale in sorted((out_dir / "plots").glob("*.png")):
            if stale not in written:
                stale.unlink()
    readme = out_dir / "README.md"
    write_atomically(readme, "\n".join(lines).rstrip() + "\n")  # never a half-written board
    return readme


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
    check_metric(metric)
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
    boot = Bootstrap(int(seed), int(n_resamples))
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
        *text_table(["id", f"A IQM [{ci}]", f"B IQM [{ci}]", f"P(A > B) [{ci}]"], rows),
    ]
    only = [(n, sorted(set(s) - set(shared))) for n, s in (("A", a_all), ("B", b_all))]
    lines += [f"ids only in {n} (ignored): {', '.join(ids)}" for n, ids in only if ids]
    return "\n".join(lines)
