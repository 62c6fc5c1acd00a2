"""Native PBT against PBT on Ray Tune: the same method, two implementations.

Both cards are of the same episodes (ids, split, instances, seeds); the report gives each
id's and the pooled IQM of the normalised score with 95% stratified-bootstrap CIs, the
probability that a Tune episode beats a native one (P(improvement), Mann-Whitney, with
its CI), and how many paired episodes ended with bitwise the same test loss. The two draw
their exploit and explore choices from different random streams (numpy's generator in
the native loop, Python's ``random`` in Tune's scheduler) from the same initial
population, so they should agree within noise, not bitwise.

``python -m ganno_bench.experiments.pbt_backends NATIVE TUNE OUT.md``
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ganno_bench.benchmark.cards import load_card
from ganno_bench.benchmark.leaderboard.runs import scores_for
from ganno_bench.benchmark.stats import aggregate, fmt, probability_of_improvement


def _paired(native: dict[str, Any], tune: dict[str, Any]) -> tuple[dict, dict]:
    """Both cards cut to the episodes they share, keyed by (id, instance, seed)."""
    key = lambda e: (e["env_id"], e["instance"], e["seed"])  # noqa: E731
    a = {key(e): e for e in native["episodes"]}
    b = {key(e): e for e in tune["episodes"]}
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two cards share no episode (id, instance, seed)")
    cut = lambda card, by: {**card, "episodes": [by[k] for k in common]}  # noqa: E731
    return cut(native, a), cut(tune, b)


def _ci(estimate: Any) -> str:
    return f"{fmt(estimate.value)} [{fmt(estimate.low)}, {fmt(estimate.high)}]"


def compare(native: dict[str, Any], tune: dict[str, Any]) -> str:
    """The report (markdown), opening with its conclusion."""
    native, tune = _paired(native, tune)
    xs, ys = scores_for(tune), scores_for(native)
    pooled_t, pooled_n = aggregate(xs), aggregate(ys)
    poi = probability_of_improvement(xs, ys)
    overlap = pooled_t.low <= pooled_n.high and pooled_n.low <= pooled_t.high
    noise = poi.low <= 0.5 <= poi.high
    same = sum(
        a["final_test_loss"] == b["final_test_loss"]
        for a, b in zip(native["episodes"], tune["episodes"], strict=True)
    )
    verdict = (
        "they do not differ beyond noise"
        if overlap and noise
        else "they differ beyond noise"
    )
    lines = [
        "# PBT: native loop against Ray Tune's PopulationBasedTraining",
        "",
        f"**Conclusion.** On {len(xs)} ids' `{native['split']}` split "
        f"({len(native['episodes'])} paired episodes), PBT on Ray Tune scores an IQM of "
        f"{_ci(pooled_t)} against the native loop's {_ci(pooled_n)}, "
        f"P(Tune > native) = {_ci(poi)}: {verdict}.",
        "",
        "Normalised score (1 = the tuned reference), IQM with 95% stratified-bootstrap CIs.",
        "",
        "| id | episodes | native `pbt` | `pbt-tune` |",
        "|---|---|---|---|",
    ]
    for env_id in sorted(xs):
        lines.append(
            f"| {env_id} | {len(xs[env_id])} | {_ci(aggregate({env_id: ys[env_id]}))} | "
            f"{_ci(aggregate({env_id: xs[env_id]}))} |"
        )
    lines += [
        f"| pooled | {len(native['episodes'])} | {_ci(pooled_n)} | {_ci(pooled_t)} |",
        "",
        f"P(a `pbt-tune` episode beats a native one) = {_ci(poi)} (0.5: no difference).",
        f"Paired episodes ending with bitwise the same test loss: {same} of "
        f"{len(native['episodes'])} (where neither loop's exploits changed the winner's "
        "lineage, or both chose alike).",
        "",
        "Same config (`baselines/pbt.toml`: population 8, ready every 4 decisions, quantile "
        "0.25, resample probability 0.25, factors 1.2/0.8, prior +-1 decade, synchronous), "
        "same initial population per episode seed; the two differ only in the random "
        "streams of their exploit and explore steps, and in what they cost: Tune pauses "
        "every member at each perturbation point and restarts it from a checkpoint.",
        "",
        f"Cards: native `{native['agent']['name']}` and `{tune['agent']['name']}` "
        f"(config backend `{tune['agent']['config'].get('backend')}`).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    native, tune, out = argv if argv is not None else sys.argv[1:]
    report = compare(load_card(native), load_card(tune))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
