"""Rendering the leaderboard (``README.md`` and ``plots/``) from a folder of result cards,
and the side-by-side comparison of two cards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ganno_bench.benchmark import stats
from ganno_bench.benchmark.cards import CardError
from ganno_bench.benchmark.leaderboard.plots import write_plots
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
from ganno_bench.benchmark.leaderboard.tables import (
    CONFIDENCE,
    Bootstrap,
    cards_table,
    compute_table,
    family_tables,
    header,
    per_id_table,
    poi_table,
    ranking,
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
) -> tuple[list[str], list[Path]]:
    """The split's markdown for one track's runs, and the PNGs it links (none when
    ``out_dir`` is None)."""
    runs = [run for run in runs if run.episodes]  # a card may hold no episode yet
    scores = {run.agent: run_scores(run, metric) for run in runs}
    ranked = [row[1] for row in ranking_rows(runs, scores, metric, boot)]
    by_rank = sorted(runs, key=lambda r: ranked.index(r.agent))
    title = f"Split `{split}`" if track == "layer-lr" else f"Batch-size track, split `{split}`"
    lines = [f"## {title}", ""]
    if not runs:
        return [*lines, "No episodes yet.", ""], []
    if len({tuple(sorted(own)) for own in scores.values()}) > 1:
        lines += ["Agents cover different ids here: compare aggregates with care.", ""]
    lines += ["### Ranking", "", *ranking(runs, scores, metric, boot)]
    lines += ["### By model family", "", *family_tables(runs, scores, metric, boot)]
    lines += ["### Per id", "", "Per-id IQM [95% CI] and the rate of diverged episodes.", ""]
    lines += per_id_table(by_rank, scores, boot)
    lines += ["### Probability of improvement", ""]
    lines += ["P(a run of the row agent beats one of the column agent) over shared ids.", ""]
    lines += poi_table(ranked, scores, boot)
    lines += compute_table(by_rank, scores, boot)
    if out_dir is None:
        return lines, []
    lines += ["### Plots", ""]
    made = write_plots(split, by_rank, scores, metric, boot, out_dir / "plots", track)
    for caption, path in made:
        lines += [f"![{caption}]({path.relative_to(out_dir).as_posix()})", ""]
    return lines, [p for _, p in made]


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
    check_metric(metric)
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    named = load_named(results_dir)
    if not named:
        raise CardError(f"no result cards (*.json) in {results_dir}")
    splits = merge_runs(named)
    boot = Bootstrap(int(seed), int(n_resamples))
    (out_dir / "plots" if plots else out_dir).mkdir(parents=True, exist_ok=True)
    lines = [*header(metric, boot), *_experiments(out_dir)]
    lines += ["## Result cards", "", *cards_table(named)]
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
