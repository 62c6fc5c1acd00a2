"""Native PBT against PBT on Ray Tune: the same method, two implementations.

Both cards are of the same episodes (ids, split, instances, seeds); the report gives each
id's and the pooled IQM of the normalised score with 95% stratified-bootstrap CIs, the
probability that a Tune episode beats a native one (P(improvement), Mann-Whitney, with
its CI), and how many paired episodes ended with bitwise the same test loss. The two draw
their exploit and explore choices from different random streams (numpy's generator in
the native loop, Python's ``random`` in Tune's scheduler) from the same initial
population, so they should agree within noise, not bitwise.

``python -m ganno_bench.experiments.pbt_backends NATIVE TUNE OUT.md`` (each side: cards or
journals, comma-separated)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ganno_bench.benchmark import journal
from ganno_bench.benchmark.cards import load_card
from ganno_bench.benchmark.leaderboard.runs import scores_for
from ganno_bench.benchmark.stats import aggregate, fmt, probability_of_improvement

MIN_EPISODES = 6  # below this, a bootstrap CI says little


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
    pairs = list(zip(native["episodes"], tune["episodes"], strict=True))
    same = sum(a["final_test_loss"] == b["final_test_loss"] for a, b in pairs)
    tune_lower = sum(b["final_test_loss"] < a["final_test_loss"] for a, b in pairs)
    native_lower = sum(a["final_test_loss"] < b["final_test_loss"] for a, b in pairs)
    if len(native["episodes"]) < MIN_EPISODES:
        verdict = (
            f"too few paired episodes (under {MIN_EPISODES}) to tell a difference from noise"
        )
    elif overlap and noise:
        verdict = "they do not differ beyond noise (the CIs overlap and P's CI holds 0.5)"
    else:
        verdict = "they differ beyond noise"
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
        "lineage, or both chose alike). Lower final test loss, episode by episode: Tune "
        f"in {tune_lower}, native in {native_lower} (the normalised score magnifies small "
        "loss differences on instances whose default rate is already near the best one).",
        "",
        "Same config (`baselines/pbt.toml`: population 8, ready every 4 decisions, quantile "
        "0.25, resample probability 0.25, factors 1.2/0.8, prior +-1 decade, synchronous), "
        "same initial population per episode seed; the two differ only in the random "
        "streams of their exploit and explore steps, and in what they cost: Tune pauses "
        "every member at each perturbation point and restarts it from a checkpoint.",
        "",
        f"Cards: native `{native['agent']['name']}` and `{tune['agent']['name']}` "
        f"(config backend `{tune['agent']['config'].get('backend')}`). The commands that "
        "made them, what they cost and how far Tune's runs repeat: `how-it-was-run.md` "
        "beside this report.",
    ]
    return "\n".join(lines) + "\n"


def load_runs(paths: list[str]) -> dict[str, Any]:
    """One card of the episodes of several cards of the same agent and split, or of their
    journals (``.partial.jsonl``: the episodes an unfinished run has so far)."""
    merged: dict[str, Any] | None = None
    for path in paths:
        if path.endswith(".partial.jsonl"):
            records = journal.read_records(Path(path))
            card = {**records[0]["header"], "episodes": [r for r in records[1:] if r]}
        else:
            card = load_card(path)
        if merged is None:
            merged = {**card, "episodes": list(card["episodes"])}
        elif (card["agent"], card["split"]) != (merged["agent"], merged["split"]):
            raise ValueError(f"{path} is another agent's or split's run")
        else:
            merged["episodes"] += card["episodes"]
    if merged is None:
        raise ValueError("no card given")
    return merged


def main(argv: list[str] | None = None) -> int:
    """``NATIVE[,NATIVE...] TUNE[,TUNE...] OUT.md``: cards or journals, comma-separated."""
    native, tune, out = argv if argv is not None else sys.argv[1:]
    report = compare(load_runs(native.split(",")), load_runs(tune.split(",")))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
