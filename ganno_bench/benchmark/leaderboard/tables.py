"""The leaderboard's markdown tables: rankings, families, per-id tables, probability of
improvement and the compute table, every number with its bootstrap CI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.benchmark import stats
from ganno_bench.benchmark.leaderboard.runs import (
    STATISTICS,
    Run,
    card_ids,
    divergence_rate,
    families,
    family_of,
    statistics,
)
from ganno_bench.envs.registry import UnknownEnvironmentError, spec

CONFIDENCE = 0.95


_DASH = "—"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap settings shared by every estimate of one rendering."""

    seed: int
    n_resamples: int

    @property
    def kw(self) -> dict[str, Any]:
        return {"confidence": CONFIDENCE, "n_resamples": self.n_resamples, "seed": self.seed}


def _aggregates(
    scores: Mapping[str, np.ndarray], metric: str, boot: Bootstrap
) -> dict[str, stats.Estimate]:
    return stats.aggregate_all(scores, statistics(metric), **boot.kw)


def percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def ranking_rows(
    runs: Sequence[Run],
    scores: Mapping[str, Mapping[str, np.ndarray]],
    metric: str,
    boot: Bootstrap,
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
                *(str(est[s]) if s in est else "n/a" for s in STATISTICS),
                percent(divergence_rate(run, own)),
                str(len(own)),
                str(sum(v.size for v in own.values())),
                f"{run.compute_multiple:g}",
                "yes" if run.privileged else "no",
            ]
        )
    return rows


RANKING_HEADER = [
    "rank",
    "agent",
    "IQM",
    "mean",
    "median",
    "optimality gap",
    "diverged",
    "ids",
    "episodes",
    "compute multiple",
    "privileged",
]


def ranking(runs: Sequence[Run], scores, metric: str, boot: Bootstrap) -> list[str]:
    return md_table(RANKING_HEADER, ranking_rows(runs, scores, metric, boot))


def scored_ids(scores: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    """The ids any agent has scores for, sorted."""
    return sorted({i for own in scores.values() for i in own})


def family_tables(runs: Sequence[Run], scores, metric: str, boot: Bootstrap) -> list[str]:
    ids = scored_ids(scores)
    lines = []
    for family in families(ids):
        sub = {
            run.agent: {k: v for k, v in scores[run.agent].items() if family_of(k) == family}
            for run in runs
        }
        n_ids = len([i for i in ids if family_of(i) == family])
        lines += [f"#### {family} ({n_ids} ids)", ""]
        lines += ranking(runs, sub, metric, boot)
    return lines


@cache
def perplexity_floor(env_id: str) -> float | None:
    """exp of the id's Bayes-optimal inner-test loss (the data source's floor), if it has one."""
    try:
        floor = spec(env_id).load_data().loss_floor
    except UnknownEnvironmentError:
        return None
    return None if floor is None else float(np.exp(floor))


def perplexity_table(runs: Sequence[Run], boot: Bootstrap) -> list[str]:
    """The language-model ids' inner-test perplexity, ``exp(final test loss)`` per episode:
    each agent's IQM [95% CI] over its finished episodes (diverged ones are counted beside
    it: their loss has no perplexity), under the floor row, the best any agent can reach.
    Where losses are nats per token a perplexity reads as an effective vocabulary size."""
    ids = sorted(
        {e["env_id"] for r in runs for e in r.episodes if family_of(e["env_id"]) == "Transformer"}
    )
    if not ids:
        return []
    floors = [perplexity_floor(env_id) for env_id in ids]
    rows = [["floor (Bayes-optimal)", *(_DASH if f is None else f"{f:.3f}" for f in floors)]]
    for run in runs:
        cells = []
        for env_id in ids:
            mine = [e for e in run.episodes if e["env_id"] == env_id]
            kept = [e["final_test_loss"] for e in mine if not e["diverged"]]
            if not mine:
                cells.append(_DASH)
            elif not kept:
                cells.append(f"all diverged ({len(mine)})")
            else:
                iqm = stats.aggregate({env_id: np.exp(np.asarray(kept))}, "iqm", **boot.kw)
                cells.append(f"{iqm} · div {len(mine) - len(kept)}/{len(mine)}")
        if any(c != _DASH for c in cells):
            rows.append([run.agent, *cells])
    return md_table(["agent", *ids], rows)


def _divergence(run: Run, env_id: str) -> str:
    flags = [e["diverged"] for e in run.episodes if e["env_id"] == env_id]
    return f"div {100 * sum(flags) / len(flags):.0f}%"


def per_id_table(runs: Sequence[Run], scores, boot: Bootstrap) -> list[str]:
    tasks = {run.agent: stats.per_task(scores[run.agent], "iqm", **boot.kw) for run in runs}
    rows = [
        [env_id]
        + [
            f"{tasks[run.agent][env_id]} · {_divergence(run, env_id)}"
            if env_id in tasks[run.agent]
            else _DASH
            for run in runs
        ]
        for env_id in scored_ids(scores)
    ]
    return md_table(["id", *(run.agent for run in runs)], rows)


def probability_matrix(
    scores: Mapping[str, Mapping[str, np.ndarray]], *, seed: int = 0, n_resamples: int = 2000
) -> dict[tuple[str, str], stats.Estimate | None]:
    """P(a > b) for every ordered pair of distinct agents, over the ids both share.

    ``scores``: agent -> (id -> runs); None where a pair shares no id. Each unordered pair
    is bootstrapped once (the earlier agent of ``scores`` as ``a``) and its mirror is
    ``1 - P`` with the interval mirrored, so the matrix is exactly antisymmetric, CIs too
    (:func:`ganno_bench.benchmark.stats.probability_matrix`).
    """
    boot = Bootstrap(int(seed), int(n_resamples))
    return stats.probability_matrix(scores, **boot.kw)


def _compute_rows(runs: Sequence[Run], scores, boot: Bootstrap) -> list[list[str]]:
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


def compute_table(runs: Sequence[Run], scores, boot: Bootstrap) -> list[str]:
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
        *md_table(header, rows),
    ]


def poi_table(agents: Sequence[str], scores, boot: Bootstrap) -> list[str]:
    matrix = probability_matrix(
        {a: scores[a] for a in agents}, seed=boot.seed, n_resamples=boot.n_resamples
    )
    rows = [
        [a] + [_DASH if a == b or matrix[a, b] is None else str(matrix[a, b]) for b in agents]
        for a in agents
    ]
    return md_table(["P(row > column)", *agents], rows)


def cards_table(named: Sequence[tuple[Path, Mapping[str, Any]]]) -> list[str]:
    rows = [
        [
            path.name,
            card["agent"]["name"],
            card["split"],
            str(len(card_ids(card))),
            str(len(card["episodes"])),
            card["package_version"],
        ]
        for path, card in named
    ]
    return md_table(["card", "agent", "split", "ids", "episodes", "package"], rows)


def header(metric: str, boot: Bootstrap) -> list[str]:
    meaning = {
        "normalised_score": " 0 is the instance's own constant learning rate (or batch size), "
        "1 the best constant of a log grid; an episode worse than the default by more than "
        "the default's gap to that best (a diverged one, say) scores the floor, -1, so "
        "means and optimality gaps stay bounded (the raw losses are in the cards, and the "
        "*diverged* column gives the share of diverged episodes).",
    }.get(metric, "")
    return [
        "# ganno-bench leaderboard",
        "",
        "Rendered by `ganno-bench leaderboard` from the result cards listed at the end; do "
        "not edit.",
        "",
        f"Metric: `{metric}` (higher is better).{meaning} Every value is a point estimate "
        f"with its {CONFIDENCE:.0%} stratified-bootstrap percentile interval [low, high] "
        f"({boot.n_resamples} resamples, seed {boot.seed}). IQM: interquartile mean of all "
        "episodes; optimality gap: mean shortfall below 1 (lower is better; n/a for "
        "`neg_test_loss`). Splits are never mixed.",
        "",
    ]
