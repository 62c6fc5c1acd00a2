"""The leaderboard's headline: its result in a few generated lines, before any table.

Per track and split, the best agents on the ids *every one of them* covers (an agent on
fewer ids is named, not ranked, since an aggregate over other ids is not comparable), each
with its IQM and CI, divergence rate and compute multiple, and one sentence that says
whether the leader is separated from the runner-up and from the best single run. Then one
sentence per experiment, taken from the experiment's own report (its ``**Conclusion.**``
line, generated there from its numbers), so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ganno_bench.benchmark import stats
from ganno_bench.benchmark.leaderboard.runs import Run, divergence_rate

HEADLINE_TOP = 5
CONCLUSION = "**Conclusion.**"  # how an experiment report marks its generated conclusion


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _compute(run: Run) -> str:
    return f"{run.compute_multiple:g}x" + (", privileged" if run.privileged else "")


def _separation(a: str, b: str, p: stats.Estimate) -> str:
    """Whether a run of ``a`` beats one of ``b`` more often than not, at 95%."""
    if p.low > 0.5:
        return f"{a} beats {b} (P({a} > {b}) = {p})"
    if p.high < 0.5:
        return f"{b} beats {a} (P({a} > {b}) = {p})"
    return f"{a} and {b} are not separated (P({a} > {b}) = {p} includes 0.5)"


def common_ids(runs: Sequence[Run], scores: Mapping[str, Mapping[str, np.ndarray]]):
    """The ids the headline ranks on and the runs that cover all of them: every scored id
    when at least two agents cover them all, else the ids every agent shares."""
    every = sorted({i for own in scores.values() for i in own})
    covering = [r for r in runs if set(every) <= set(scores[r.agent])]
    if len(covering) >= 2:
        return every, covering
    shared = sorted(set.intersection(*(set(scores[r.agent]) for r in runs))) if runs else []
    return shared, (list(runs) if shared else [])


def split_headline(
    title: str,
    runs: Sequence[Run],
    scores: Mapping[str, Mapping[str, np.ndarray]],
    boot_kw: Mapping[str, object],
    top: int = HEADLINE_TOP,
) -> list[str]:
    """One split's headline: the best ``top`` agents over the ids all of them cover."""
    ids, covering = common_ids(runs, scores)
    if not covering:
        return []
    own = {r.agent: {i: scores[r.agent][i] for i in ids} for r in covering}
    iqm = {r.agent: stats.aggregate(own[r.agent], "iqm", **boot_kw) for r in covering}
    ranked = sorted(covering, key=lambda r: (-iqm[r.agent].value, r.agent))
    episodes = sum(v.size for v in own[ranked[0].agent].values())
    lines = [
        f"**{title}**: the best {min(top, len(ranked))} of {len(ranked)} agents over the "
        f"{len(ids)} ids all of them cover ({episodes} episodes for "
        f"{ranked[0].agent}).",
        "",
        "| rank | agent | IQM [95% CI] | diverged | compute multiple |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {r.agent} | {iqm[r.agent]} | {_percent(divergence_rate(r, ids))} | "
        f"{_compute(r)} |"
        for k, r in enumerate(ranked[:top], 1)
    ]
    lines.append("")
    leader, said = ranked[0], []
    if len(ranked) > 1:
        second = ranked[1]
        p = stats.probability_of_improvement(own[leader.agent], own[second.agent], **boot_kw)
        said.append(
            f"**{leader.agent}** ({_compute(leader)}) leads: "
            + _separation(leader.agent, second.agent, p)
        )
    singles = [r for r in ranked[1:] if r.compute_multiple == 1 and not r.privileged]
    if leader.compute_multiple != 1 and singles and singles[0] is not ranked[1]:
        best = singles[0]
        p = stats.probability_of_improvement(own[leader.agent], own[best.agent], **boot_kw)
        said.append(
            f"the best single run is {best.agent} (IQM {iqm[best.agent]}): "
            + _separation(leader.agent, best.agent, p)
        )
    left_out = [r for r in runs if r not in covering and scores[r.agent]]
    if left_out:
        named = ", ".join(f"{r.agent} ({len(scores[r.agent])} ids)" for r in left_out)
        said.append(f"not ranked here, on fewer ids: {named}")
    if said:  # agent names stay as written: no capital at the start
        lines += ["; ".join(said) + ".", ""]
    return lines


def experiment_conclusions(out_dir: Path, experiments: Mapping[str, str]) -> list[str]:
    """One bullet per experiment report beside the leaderboard: its link, what it is, and
    its generated conclusions where the report states some (one per line, e.g. one per
    training protocol of the generalisation study)."""
    lines = []
    for name, what in experiments.items():
        report = out_dir / name / "README.md"
        if not report.exists():
            continue
        found = [
            line.removeprefix(CONCLUSION).strip()
            for line in report.read_text().splitlines()
            if line.startswith(CONCLUSION)
        ]
        if len(found) <= 1:
            conclusion = found[0] if found else "see the report."
            lines.append(f"* [{name}]({name}/README.md), {what}: {conclusion}")
        else:
            lines.append(f"* [{name}]({name}/README.md), {what}:")
            lines += [f"  * {c}" for c in found]
    return lines
