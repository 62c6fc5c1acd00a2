"""GANNO's generalisation claim, reproduced: a policy trained on an easy MLP's layers drives
deeper MLPs and CNNs it never saw, on held-out initial conditions.

The shipped policies (``baselines/ppo/ppo-mlp-easy-seed*.zip``, one per training seed) are
evaluated on the target ids' ``test`` and ``test-ood`` splits; each plays with its training
seed (from its file name) as evaluation seed, so the merged card's seeds are the training
seeds and its spread is the training runs' as well as the instances'. The baselines'
numbers come from their result cards (``leaderboards/results/``) where those hold the same
id versions and frozen instances. The table gives the normalised score's IQM with 95%
stratified-bootstrap CIs per target family and the probability that a PPO run beats a
baseline's run on the same id (Mann-Whitney), with each baseline's compute multiple.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.baselines.policy import PolicyAgent
from ganno_bench.benchmark import stats
from ganno_bench.benchmark.cards import card_files, load_card, validate_card, write_card
from ganno_bench.benchmark.evaluation import evaluate
from ganno_bench.benchmark.leaderboard import family_of, load_cards, merge_runs, scores_for

__all__ = [
    "TARGETS",
    "TRAIN_ID",
    "generalisation_table",
    "merge_seed_cards",
    "render_generalisation",
    "reproduce_generalisation",
    "shipped_policies",
]

TRAIN_ID = "ganno/LayerLR-MLP-Easy-v0"
# Harder networks than the training id, same optimiser (SGD with momentum) and factor set.
TARGETS = (
    "ganno/LayerLR-MLP-Medium-v0",
    "ganno/LayerLR-MLP-Hard-v0",
    "ganno/LayerLR-CNN-Easy-v0",
    "ganno/LayerLR-CNN-Medium-v0",
    "ganno/LayerLR-CNN-Hard-v0",
)
SPLITS = ("test", "test-ood")
AGENT_NAME = "ppo-mlp-easy"
REGENERATE = (
    "ganno-bench train ppo --env ganno/LayerLR-MLP-Easy-v0 --timesteps 100000 --seed S "
    "--export baselines/ppo/ppo-mlp-easy-seedS.zip"
)
METRIC_MEANING = {
    "normalised_score": "the normalised score (0 = the instance's default constant rate, "
    "1 = the best constant rate of a log grid, -1 = the floor of every failed episode)",
    "neg_test_loss": "the negated final inner-test loss (overridden tasks have no references)",
}


def shipped_policies() -> list[Path]:
    """The shipped MLP-Easy policies, one per training seed, in seed order."""
    from ganno_bench.baselines.files import baselines_dir

    found = sorted(
        (baselines_dir() / "ppo").glob(f"{AGENT_NAME}-seed*.zip"),
        key=lambda p: int(p.stem.rsplit("seed", 1)[1]),
    )
    if not found:
        raise FileNotFoundError(
            f"no shipped policies {AGENT_NAME}-seed*.zip in {baselines_dir() / 'ppo'}; "
            f"regenerate them with: {REGENERATE}"
        )
    return found


def merge_seed_cards(cards: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    """One card from per-seed cards of one method (same ids, split and instances).

    Episodes are concatenated, seeds unioned, and the agent's configuration lists each
    seed's configuration, so the merged card still says exactly what was run.
    """
    if not cards:
        raise ValueError("nothing to merge")
    first = cards[0]
    for card in cards[1:]:
        for key in ("split", "envs"):
            if card[key] != first[key]:
                raise ValueError(f"per-seed cards differ in {key!r}; they cannot be merged")
    seeds = [s for card in cards for s in card["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"per-seed cards share seeds {sorted(seeds)}: give each its own seed")
    merged = copy.deepcopy(dict(first))
    merged["agent"] = {
        "name": name,
        "action_mode": first["agent"]["action_mode"],
        "config": {"per_seed": {str(c["seeds"][0]): c["agent"]["config"] for c in cards}},
    }
    merged["seeds"] = seeds
    merged["episodes"] = [e for card in cards for e in card["episodes"]]
    return validate_card(merged, f"merged {name} card")


def evaluate_policies(
    policies: Sequence[Path],
    split: str,
    work_dir: Path,
    *,
    targets: Sequence[str] = TARGETS,
    workers: int = 1,
    overrides: dict[str, Any] | None = None,
    instances: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Each policy on ``targets`` with its training seed as evaluation seed; the merged card.

    Resumable: a finished per-seed card of the same policy file and evaluation is reused,
    an interrupted one resumes from its journal.
    """
    cards = []
    for index, path in enumerate(policies):
        seed = training_seed(path, index)
        agent = PolicyAgent.from_path(path, name=AGENT_NAME)
        out = work_dir / f"{AGENT_NAME}-seed{seed}-{split}.json.gz"
        card = _finished(out, agent, split, targets, overrides, instances)
        if card is None:
            card = evaluate(
                agent,
                list(targets),
                split,
                seeds=[seed],
                out=out,
                workers=workers,
                overrides=overrides,
                instances=instances,
                progress=progress,
            )
        cards.append(card)
    return merge_seed_cards(cards, AGENT_NAME)


def training_seed(path: Path, index: int) -> int:
    """The training seed in a policy's file name (``...-seed3.zip``), else its position."""
    match = re.search(r"seed(\d+)", Path(path).stem)
    return int(match.group(1)) if match else index


def _finished(
    out: Path,
    agent: PolicyAgent,
    split: str,
    targets: Sequence[str],
    overrides: dict[str, Any] | None,
    instances: Sequence[int] | None,
) -> dict[str, Any] | None:
    """The card at ``out`` if it is this very evaluation (same file, ids, instances)."""
    if not out.exists():
        return None
    card = load_card(out)
    same = (
        card["agent"]["config"].get("checkpoint_sha256") == agent.config()["checkpoint_sha256"]
        and card["split"] == split
        and sorted(card["envs"]) == sorted(targets)
        and all(
            card["envs"][t]["overrides"] == dict(overrides or {})
            and (instances is None or card["envs"][t]["instances"] == list(instances))
            for t in targets
        )
    )
    return card if same else None


def _family_scores(scores: Mapping[str, np.ndarray], family: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in scores.items() if family_of(k) == family}


def generalisation_table(
    policy_card: Mapping[str, Any],
    baseline_cards: Sequence[Mapping[str, Any]],
    *,
    metric: str = "normalised_score",
    seed: int = 0,
    n_resamples: int = 2000,
) -> dict[str, Any]:
    """IQM [CI] per family for the policy and every baseline, and P(policy > baseline).

    Baselines are the cards of ``policy_card``'s split that hold every target id; each
    statistic is over the target ids only. Returns plain data (see :func:`render_table`).
    """
    split = policy_card["split"]
    mine = scores_for(policy_card, metric)
    targets = sorted(mine)
    families = sorted({family_of(t) for t in targets})
    kw = {"seed": seed, "n_resamples": n_resamples}
    named = [
        (Path(f"card{i}"), c)
        for i, c in enumerate(baseline_cards)
        if c["split"] == split and _compatible(c, policy_card)
    ]
    runs = merge_runs(named).get(split, [])
    rows = []
    for run in runs:
        if run.agent == policy_card["agent"]["name"]:
            continue
        theirs = scores_for({"episodes": run.episodes}, metric)
        if not set(targets) <= set(theirs):
            continue
        theirs = {t: theirs[t] for t in targets}
        rows.append(
            {
                "agent": run.agent,
                "compute_multiple": run.compute_multiple,
                "privileged": run.privileged,
                "iqm": {
                    f: _estimate(stats.aggregate(_family_scores(theirs, f), "iqm", **kw))
                    for f in families
                },
                "iqm_all": _estimate(stats.aggregate(theirs, "iqm", **kw)),
                "p_policy_better": _estimate(stats.probability_of_improvement(mine, theirs, **kw)),
            }
        )
    rows.sort(key=lambda r: -r["iqm_all"]["value"])
    return {
        "split": split,
        "train_id": TRAIN_ID,
        "targets": targets,
        "families": families,
        "policy": {
            "agent": policy_card["agent"]["name"],
            "seeds": policy_card["seeds"],
            "iqm": {
                f: _estimate(stats.aggregate(_family_scores(mine, f), "iqm", **kw))
                for f in families
            },
            "iqm_all": _estimate(stats.aggregate(mine, "iqm", **kw)),
        },
        "baselines": rows,
        "metric": metric,
        "bootstrap": kw,
    }


def _compatible(card: Mapping[str, Any], policy_card: Mapping[str, Any]) -> bool:
    """Whether ``card`` played the policy card's id versions, instances and overrides on
    every id they share (scores of other instance sets are not comparable)."""
    shared = set(card["envs"]) & set(policy_card["envs"])
    keys = ("version", "instances", "instances_sha256", "overrides")
    return all(card["envs"][t][k] == policy_card["envs"][t][k] for t in shared for k in keys)


def _estimate(est: stats.Estimate) -> dict[str, float]:
    return {"value": float(est.value), "low": float(est.low), "high": float(est.high)}


def _fmt(e: Mapping[str, float]) -> str:
    return str(stats.Estimate(e["value"], e["low"], e["high"]))


def render_table(table: Mapping[str, Any]) -> str:
    """A markdown table: one row per agent, policy first."""
    fam = table["families"]
    header = [
        "agent",
        *(f"IQM {f} [95% CI]" for f in fam),
        "IQM all [95% CI]",
        "P(PPO > agent) [95% CI]",
        "compute multiple",
    ]
    policy = table["policy"]
    rows = [
        [
            f"**{policy['agent']}** (seeds {policy['seeds']})",
            *(_fmt(policy["iqm"][f]) for f in fam),
            _fmt(policy["iqm_all"]),
            "-",
            "1",
        ]
    ]
    rows += [
        [
            r["agent"],
            *(_fmt(r["iqm"][f]) for f in fam),
            _fmt(r["iqm_all"]),
            _fmt(r["p_policy_better"]),
            f"{r['compute_multiple']:g}" + (" (privileged)" if r["privileged"] else ""),
        ]
        for r in table["baselines"]
    ]
    lines = [
        f"### split `{table['split']}`: trained on {table['train_id']}, played on "
        + ", ".join(t.split("/")[-1] for t in table["targets"]),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def reproduce_generalisation(
    *,
    policies: Sequence[Path] | None = None,
    results_dir: str | Path = "leaderboards/results",
    baseline_cards: Sequence[Mapping[str, Any]] | None = None,
    out_dir: str | Path = "leaderboards/generalisation",
    splits: Sequence[str] = SPLITS,
    targets: Sequence[str] = TARGETS,
    workers: int = 1,
    overrides: dict[str, Any] | None = None,
    instances: Sequence[int] | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    progress: bool = True,
) -> str:
    """Evaluate the policies on ``targets`` and write ``out_dir/README.md`` and ``table.json``.

    Baselines are ``baseline_cards``, or else the cards in ``results_dir``. The merged policy
    cards go to ``results_dir`` too (so the leaderboard lists PPO), unless ``overrides`` or
    ``instances`` make this a smaller experiment: then only ``baseline_cards`` are compared
    (run on the same instances and overrides); with ``overrides`` the comparison uses the
    negated final test loss, as overridden tasks have no reference values. Per-seed cards
    and their journals stay in ``out_dir/cards``, so an interrupted run resumes. Returns
    the markdown.
    """
    policies = list(policies) if policies is not None else shipped_policies()
    out_dir, results_dir = Path(out_dir), Path(results_dir)
    partial = bool(overrides) or instances is not None
    if baseline_cards is None:
        baseline_cards = [] if partial else load_cards(results_dir)
    metric = "neg_test_loss" if overrides else "normalised_score"
    tables = []
    for split in splits:
        card = evaluate_policies(
            policies,
            split,
            out_dir / "cards",
            targets=targets,
            workers=workers,
            overrides=overrides,
            instances=instances,
            progress=progress,
        )
        if not partial:
            write_card(card, results_dir / f"{AGENT_NAME}-{split}.json.gz")
        tables.append(
            generalisation_table(
                card, baseline_cards, metric=metric, seed=seed, n_resamples=n_resamples
            )
        )
    return write_report(tables, [p.name for p in policies], out_dir)


def render_generalisation(
    results_dir: str | Path = "leaderboards/results",
    out_dir: str | Path = "leaderboards/generalisation",
    *,
    splits: Sequence[str] = SPLITS,
    seed: int = 0,
    n_resamples: int = 2000,
) -> str:
    """Rewrite ``out_dir/README.md`` and ``table.json`` from the committed cards alone: the
    merged policy cards ``results_dir/ppo-mlp-easy-<split>.json.gz`` (what
    :func:`reproduce_generalisation` wrote) against the other cards there. Nothing is
    evaluated, so a rescoring or a new baseline card is reflected in seconds. Returns the
    markdown."""
    results_dir = Path(results_dir)
    cards = {p: load_card(p) for p in card_files(results_dir)}
    tables, policies = [], []
    for split in splits:
        path = results_dir / f"{AGENT_NAME}-{split}.json.gz"
        if path not in cards:
            raise FileNotFoundError(
                f"no merged policy card {path}: run `ganno-bench reproduce generalisation` "
                "(which evaluates the policies) first"
            )
        card = cards[path]
        per_seed = card["agent"]["config"].get("per_seed", {})
        policies += [Path(c["checkpoint"]).name for c in per_seed.values()]
        baselines = [c for p, c in cards.items() if p != path]
        # overridden tasks have no references: compare losses, as reproduce does
        overridden = any(env.get("overrides") for env in card["envs"].values())
        metric = "neg_test_loss" if overridden else "normalised_score"
        tables.append(
            generalisation_table(card, baselines, metric=metric, seed=seed, n_resamples=n_resamples)
        )
    return write_report(tables, list(dict.fromkeys(policies)), Path(out_dir))


def _best_single_run(table: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The baseline with the highest IQM over all targets at single-run compute."""
    singles = [r for r in table["baselines"] if r["compute_multiple"] == 1 and not r["privileged"]]
    return max(singles, key=lambda r: r["iqm_all"]["value"], default=None)


def _versus(p: Mapping[str, float]) -> str:
    """Which side a probability of improvement's CI lies on."""
    if p["low"] > 0.5:
        return "beats"
    if p["high"] < 0.5:
        return "loses to"
    return "is not separated from"


def conclusion(tables: Sequence[Mapping[str, Any]]) -> str:
    """One sentence from the numbers: per split, how the policy fares against the
    default constant rate and against the best single-run baseline (by which side of 0.5
    the CI of P(PPO > baseline) lies), and what that says about generalisation."""
    parts, beats_default, matches_best = [], [], []
    for table in tables:
        policy = table["policy"]
        rows = {r["agent"]: r for r in table["baselines"]}
        clauses = [f"IQM {_fmt(policy['iqm_all'])} on {len(table['targets'])} unseen ids"]
        if "constant" in rows:
            p = rows["constant"]["p_policy_better"]
            beats_default.append(_versus(p) == "beats")
            clauses.append(f"{_versus(p)} the default constant rate (P = {_fmt(p)})")
        best = _best_single_run(table)
        if best is not None:
            verdict = _versus(best["p_policy_better"])
            matches_best.append(verdict != "loses to")
            clauses.append(
                f"{verdict} the best single-run baseline, {best['agent']} "
                f"(IQM {_fmt(best['iqm_all'])}, P = {_fmt(best['p_policy_better'])})"
            )
        listed = ", ".join(clauses[:-1]) + (", and " if len(clauses) > 1 else "") + clauses[-1]
        parts.append(f"on `{table['split']}` the policy has {listed}")
    if beats_default and all(beats_default) and matches_best and all(matches_best):
        verdict = "the learned policy generalises: it matches the best tuned schedule"
    elif beats_default and all(beats_default):
        verdict = (
            "the learned policy generalises beyond the default rate but not to the level "
            "of the tuned schedules"
        )
    else:
        verdict = (
            "the learned policy does not reliably improve on the default rate off its training id"
        )
    return f"Trained on {TRAIN_ID.split('/')[-1]}, {'; '.join(parts)}: {verdict}."


def write_report(
    tables: Sequence[Mapping[str, Any]], policies: Sequence[str], out_dir: Path
) -> str:
    """Write ``README.md`` (a generated conclusion, then a table per split) and
    ``table.json`` into ``out_dir``; return the markdown."""
    metric = tables[0]["metric"] if tables else "normalised_score"
    boot = tables[0]["bootstrap"] if tables else {"seed": 0, "n_resamples": 2000}
    text = "\n".join(
        [
            "# Generalisation: trained on an easy MLP, played on harder networks",
            "",
            f"**Conclusion.** {conclusion(tables)}",
            "",
            "Written by `ganno-bench reproduce generalisation` (re-rendered from the committed "
            "cards by `ganno-bench reproduce generalisation --from-cards`). Policies: "
            + ", ".join(f"`{name}`" for name in policies)
            + f" (one per training seed S; regenerate with `{REGENERATE}`).",
            f"Metric: {METRIC_MEANING[metric]}, higher is better. IQM over instances x seeds "
            f"with 95% stratified-bootstrap CIs ({boot['n_resamples']} resamples, seed "
            f"{boot['seed']}); P(PPO > agent) is the Mann-Whitney probability that a PPO run "
            "beats the agent's run on the same id, averaged over the ids.",
            "",
            *(render_table(t) + "\n" for t in tables),
        ]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("README.md", text), ("table.json", json.dumps(tables, indent=2) + "\n")):
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(content)
        os.replace(tmp, out_dir / name)
    return text
