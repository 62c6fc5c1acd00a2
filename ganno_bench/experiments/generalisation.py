"""GANNO's generalisation claim, reproduced: policies trained on easy networks only, played
on harder MLPs and CNNs they never saw, on held-out initial conditions.

Each training protocol (:mod:`ganno_bench.experiments.protocols`) ships one policy per
training seed; each is evaluated on the protocol's target ids' ``test`` and ``test-ood``
splits with its training seed (from its file name) as evaluation seed, so the merged
card's seeds are the training seeds and its spread is the training runs' as well as the
instances'. The baselines' numbers come from their result cards (``leaderboards/results/``)
where those hold the same id versions and frozen instances. Per target group (each family
over its Medium and Hard ids, each target id alone, all targets) the report gives the
normalised score's IQM with 95% stratified-bootstrap CIs, and P(policy > tuned-cosine)
and P(policy > BOIL) (Mann-Whitney, averaged over the group's ids): the study's goal is
IQM >= tuned-cosine's with P >= 0.5.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.baselines.policy import PolicyAgent
from ganno_bench.baselines.policy_ensemble import PolicyEnsemble, load_ensemble
from ganno_bench.benchmark import stats
from ganno_bench.benchmark.cards import card_files, load_card, validate_card, write_card
from ganno_bench.benchmark.evaluation import evaluate
from ganno_bench.benchmark.journal import write_atomically
from ganno_bench.benchmark.leaderboard import family_of, load_cards, merge_runs, scores_for
from ganno_bench.benchmark.leaderboard.runs import families
from ganno_bench.experiments.protocols import PROTOCOLS, Protocol, protocol, shipped_policies

__all__ = [
    "GOAL_BASELINES",
    "conclusion",
    "evaluate_policies",
    "generalisation_table",
    "merge_seed_cards",
    "render_generalisation",
    "render_overview",
    "reproduce_generalisation",
    "shipped_policies",
    "target_groups",
    "unseen_family_cards",
]

TRAIN_IDS = PROTOCOLS["100k"].train_ids
SPLITS = ("test", "test-ood")
# The baselines the goal is stated against: the tuned schedule and BOIL, both single runs.
GOAL_BASELINES = ("tuned-cosine", "boil")
METRIC_MEANING = {
    "normalised_score": "the normalised score (0 = the instance's default constant rate, "
    "1 = the best constant rate of a log grid, -1 = the floor of every failed episode)",
    "neg_test_loss": "the negated final inner-test loss (overridden tasks have no references)",
}


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
    targets: Sequence[str],
    agent_name: str,
    workers: int = 1,
    engine: str = "batched",
    overrides: dict[str, Any] | None = None,
    instances: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Each policy on ``targets`` with its training seed as evaluation seed; the merged card.

    Resumable: a finished per-seed card of the same policy file and evaluation is reused,
    an interrupted one resumes from its journal. The batched engine plays a split's
    instances of an id in one batched computation (the policy's forward is batched too).
    """
    ensembles = [p for p in policies if Path(p).suffix == ".toml"]
    if ensembles and len(policies) > 1:
        raise ValueError(
            f"an ensemble ({ensembles[0]}) plays as one agent, with seed 0: give it as the "
            "only policy (list every policy it should combine in its [ensemble] members)"
        )
    cards = []
    for index, path in enumerate(policies):
        agent, seed, out = _player(Path(path), index, split, work_dir, agent_name)
        card = _finished(out, agent, split, targets, overrides, instances)
        if card is None:
            card = evaluate(
                agent,
                list(targets),
                split,
                seeds=[seed],
                out=out,
                workers=workers,
                engine=engine,
                overrides=overrides,
                instances=instances,
                progress=progress,
            )
        cards.append(card)
    return merge_seed_cards(cards, agent_name)


def _player(
    path: Path, index: int, split: str, work_dir: Path, agent_name: str
) -> tuple[PolicyAgent | PolicyEnsemble, int, Path]:
    """The agent a policy file plays, its evaluation seed and its card's path: a saved
    policy plays with its training seed; an ensemble (deterministic, and the seed changes
    nothing on a frozen instance) with seed 0, once, like the scripted baselines."""
    if path.suffix == ".toml":
        return load_ensemble(path, name=agent_name), 0, work_dir / f"{agent_name}-{split}.json.gz"
    seed = training_seed(path, index)
    agent = PolicyAgent.from_path(path, name=agent_name)
    return agent, seed, work_dir / f"{agent_name}-seed{seed}-{split}.json.gz"


def played_file(config: Mapping[str, Any]) -> str:
    """The policy file one seed's card configuration names (an ensemble: its TOML)."""
    return Path(config.get("checkpoint") or config["ensemble"]).name


def training_seed(path: Path, index: int) -> int:
    """The training seed in a policy's file name (``...-seed3.zip``), else its position."""
    match = re.search(r"seed(\d+)", Path(path).stem)
    return int(match.group(1)) if match else index


def _finished(
    out: Path,
    agent: PolicyAgent | PolicyEnsemble,
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


DIFFICULTY_ORDER = ("easy", "medium", "hard")


def target_groups(targets: Sequence[str]) -> dict[str, list[str]]:
    """The aggregates the study reports: each model family over its Medium and Hard
    targets (the same ids for every protocol, so protocols compare like for like; an
    Easy target is only ever one a protocol did not train on), each target alone (family
    x difficulty), and all targets (in that order)."""
    from ganno_bench.envs.registry import spec

    def rank(t: str) -> tuple[int, str]:
        difficulty = spec(t).difficulty
        order = DIFFICULTY_ORDER.index(difficulty) if difficulty in DIFFICULTY_ORDER else 99
        return order, t

    by_family = {
        f: sorted((t for t in targets if family_of(t) == f), key=rank) for f in families(targets)
    }
    groups: dict[str, list[str]] = {}
    for f, ids in by_family.items():
        harder = [t for t in ids if spec(t).difficulty != "easy"]
        if harder:
            groups[f] = harder
    for ids in by_family.values():
        for t in ids:
            groups[_short(t).removeprefix("LayerLR-").removesuffix("-v0")] = [t]
    groups["all"] = list(targets)
    return groups


def _short(env_id: str) -> str:
    return env_id.split("/")[-1]


def generalisation_table(
    policy_card: Mapping[str, Any],
    baseline_cards: Sequence[Mapping[str, Any]],
    *,
    train_ids: Sequence[str] = TRAIN_IDS,
    metric: str = "normalised_score",
    seed: int = 0,
    n_resamples: int = 2000,
) -> dict[str, Any]:
    """IQM [CI] per target group for the policy and every baseline, P(policy > baseline)
    over all targets, and per group P(policy > each of :data:`GOAL_BASELINES`).

    Baselines are the cards of ``policy_card``'s split that hold every target id; each
    statistic is over the target ids only. Returns plain data (see :func:`render_table`).
    """
    split = policy_card["split"]
    mine = scores_for(policy_card, metric)
    targets = sorted(mine)
    groups = target_groups(targets)
    kw = {"seed": seed, "n_resamples": n_resamples}

    def iqms(scores: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
        return {
            g: _estimate(stats.aggregate({t: scores[t] for t in ids}, "iqm", **kw))
            for g, ids in groups.items()
        }

    named = [
        (Path(f"card{i}"), c)
        for i, c in enumerate(baseline_cards)
        if c["split"] == split and _compatible(c, policy_card)
    ]
    rows = []
    for run in merge_runs(named).get(split, []):
        if run.agent == policy_card["agent"]["name"]:
            continue
        theirs = scores_for({"episodes": run.episodes}, metric)
        if not set(targets) <= set(theirs):
            continue
        theirs = {t: theirs[t] for t in targets}
        row = {
            "agent": run.agent,
            "compute_multiple": run.compute_multiple,
            "privileged": run.privileged,
            "iqm": iqms(theirs),
            "p_policy_better": _estimate(stats.probability_of_improvement(mine, theirs, **kw)),
        }
        if run.agent in GOAL_BASELINES:
            row["p_policy_better_by_group"] = {
                g: _estimate(
                    stats.probability_of_improvement(
                        {t: mine[t] for t in ids}, {t: theirs[t] for t in ids}, **kw
                    )
                )
                for g, ids in groups.items()
            }
        rows.append(row)
    rows.sort(key=lambda r: -r["iqm"]["all"]["value"])
    return {
        "split": split,
        "train_ids": list(train_ids),
        "targets": targets,
        "groups": groups,
        "policy": {
            "agent": policy_card["agent"]["name"],
            "seeds": policy_card["seeds"],
            "iqm": iqms(mine),
            # each training seed's policy alone: how far one seed is from the pooled result
            "per_seed": {
                str(s): iqms(_seed_scores(policy_card, s, metric)) for s in policy_card["seeds"]
            }
            if len(policy_card["seeds"]) > 1
            else {},
        },
        "baselines": rows,
        "metric": metric,
        "bootstrap": kw,
    }


def _seed_scores(card: Mapping[str, Any], seed: int, metric: str) -> dict[str, np.ndarray]:
    return scores_for({"episodes": [e for e in card["episodes"] if e["seed"] == seed]}, metric)


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
    """A markdown table: one row per agent, the policy first (then each of its training
    seeds alone); IQM per target group and P(policy > agent) over all targets."""
    groups = list(table["groups"])
    header = [
        "agent",
        *(f"IQM {g} [95% CI]" for g in groups),
        "P(policy > agent) [95% CI]",
        "compute multiple",
    ]
    policy = table["policy"]
    rows = [
        [
            f"**{policy['agent']}** (seeds {policy['seeds']})",
            *(_fmt(policy["iqm"][g]) for g in groups),
            "-",
            "1",
        ]
    ]
    rows += [
        [f"{policy['agent']}, seed {seed} alone", *(_fmt(iqm[g]) for g in groups), "-", "1"]
        for seed, iqm in policy.get("per_seed", {}).items()
    ]
    rows += [
        [
            r["agent"],
            *(_fmt(r["iqm"][g]) for g in groups),
            _fmt(r["p_policy_better"]),
            f"{r['compute_multiple']:g}" + (" (privileged)" if r["privileged"] else ""),
        ]
        for r in table["baselines"]
    ]
    return _markdown(header, rows)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def goal_rows(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per target group: the policy's IQM against each goal baseline's, P(policy > it),
    and whether the goal holds (IQM at least the baseline's and P at least 0.5)."""
    mine = table["policy"]["iqm"]
    rows = {r["agent"]: r for r in table["baselines"]}
    out = []
    for group, ids in table["groups"].items():
        entry: dict[str, Any] = {"group": group, "ids": ids, "iqm": mine[group], "versus": {}}
        for name in GOAL_BASELINES:
            if name in rows and "p_policy_better_by_group" in rows[name]:
                theirs, p = rows[name]["iqm"][group], rows[name]["p_policy_better_by_group"][group]
                entry["versus"][name] = {
                    "iqm": theirs,
                    "p_policy_better": p,
                    "iqm_gap": mine[group]["value"] - theirs["value"],
                    "met": mine[group]["value"] >= theirs["value"] and p["value"] >= 0.5,
                }
        out.append(entry)
    return out


def render_goal(table: Mapping[str, Any]) -> str:
    """The goal table: per target group, the policy against tuned-cosine and BOIL."""
    header = ["targets", "policy IQM [95% CI]"]
    for name in GOAL_BASELINES:
        header += [f"{name} IQM", f"P(policy > {name}) [95% CI]"]
    header.append("goal vs tuned-cosine")
    rows = []
    for entry in goal_rows(table):
        count = len(entry["ids"])
        row = [f"{entry['group']} ({count} id{'s' if count > 1 else ''})", _fmt(entry["iqm"])]
        for name in GOAL_BASELINES:
            v = entry["versus"].get(name)
            row += [_fmt(v["iqm"]), _fmt(v["p_policy_better"])] if v else ["-", "-"]
        v = entry["versus"].get("tuned-cosine")
        row.append(
            "-" if v is None else ("met" if v["met"] else f"not met (IQM {v['iqm_gap']:+.3f})")
        )
        rows.append(row)
    return _markdown(header, rows)


def render_overview(sections: Sequence[tuple[Protocol, Sequence[Mapping[str, Any]]]]) -> str:
    """The goal at a glance, one table per split: a row per protocol, a column per target
    group, each cell the policy's IQM, its gap to tuned-cosine's IQM and P(policy >
    tuned-cosine), marked where the goal holds; the last column counts the groups met."""
    lines: list[str] = []
    for split in SPLITS:
        by_protocol = [
            (p, {e["group"]: e for e in goal_rows(t)})
            for p, tables in sections
            for t in tables
            if t["split"] == split
        ]
        if not by_protocol:
            continue
        groups: list[str] = []
        for _, entries in by_protocol:
            groups += [g for g in entries if g not in groups]
        rows = []
        for p, entries in by_protocol:
            row, met, stated = [f"`{p.name}`"], 0, 0
            for group in groups:
                v = entries[group]["versus"].get("tuned-cosine") if group in entries else None
                if v is None:
                    row.append("-")
                    continue
                stated += 1
                met += v["met"]
                mark = "**met**: " if v["met"] else ""
                row.append(
                    f"{mark}{entries[group]['iqm']['value']:.3f} ({v['iqm_gap']:+.3f}, "
                    f"P {v['p_policy_better']['value']:.2f})"
                )
            rows.append([*row, f"{met} of {stated}"])
        lines += [
            f"### Split `{split}`: policy IQM (gap to tuned-cosine's IQM, P(policy > "
            "tuned-cosine)), per target group",
            "",
            _markdown(["protocol", *groups, "goal met"], rows),
            "",
        ]
    return "\n".join(lines)


def _best_single_run(table: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The baseline with the highest IQM over all targets at single-run compute (the
    study's other learned policies are not baselines)."""
    policies = {p.agent for p in PROTOCOLS.values()}
    singles = [
        r
        for r in table["baselines"]
        if r["compute_multiple"] == 1 and not r["privileged"] and r["agent"] not in policies
    ]
    return max(singles, key=lambda r: r["iqm"]["all"]["value"], default=None)


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
    the CI of P(policy > baseline) lies), and what that says about generalisation."""
    parts, beats_default, matches_best = [], [], []
    for table in tables:
        policy = table["policy"]
        rows = {r["agent"]: r for r in table["baselines"]}
        clauses = [f"IQM {_fmt(policy['iqm']['all'])} on {len(table['targets'])} unseen ids"]
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
                f"(IQM {_fmt(best['iqm']['all'])}, P = {_fmt(best['p_policy_better'])})"
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
            "the learned policy does not reliably improve on the default rate off its training ids"
        )
    trained = " + ".join(_short(t) for t in tables[0]["train_ids"]) if tables else "?"
    return f"Trained on {trained}, {'; '.join(parts)}: {verdict}."


def protocol_section(
    p: Protocol,
    tables: Sequence[Mapping[str, Any]],
    policies: Sequence[str],
    plots: Sequence[str],
    unseen: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The report's section of one protocol: conclusion, goal tables, full tables, the
    same for each model family the policy never saw (``unseen``: family -> tables per
    split), plots."""
    lines = [
        f"## Protocol `{p.name}`: {p.summary}",
        "",
        f"**Conclusion.** Protocol `{p.name}`: {conclusion(tables)}",
        "",
        f"Policies: {', '.join(f'`{n}`' for n in policies)} "
        + (
            f"(one per training seed S; train with `{p.recipe}`)."
            if p.trains
            else f"({p.recipe}; played once, with seed 0, as the agent is deterministic)."
        ),
        "",
    ]
    for table in tables:
        lines += [
            f"### `{p.name}`, split `{table['split']}`: the goal (IQM >= tuned-cosine's, "
            "P(policy > tuned-cosine) >= 0.5)",
            "",
            render_goal(table),
            "",
            f"### `{p.name}`, split `{table['split']}`: every baseline, played on "
            + ", ".join(_short(t) for t in table["targets"]),
            "",
            render_table(table),
            "",
        ]
    for family, family_tables in (unseen or {}).items():
        lines += [
            f"**{family} targets, a model family the policy never saw.** {p.name}: "
            f"{conclusion(family_tables)}",
            "",
        ]
        for table in family_tables:
            lines += [
                f"### `{p.name}` on {family} ids, split `{table['split']}`: the goal",
                "",
                render_goal(table),
                "",
                f"### `{p.name}` on {family} ids, split `{table['split']}`: every baseline "
                "that played them all",
                "",
                render_table(table),
                "",
            ]
    lines += [f"![{Path(name).stem}]({name})" for name in plots]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    sections: Sequence[tuple[Protocol, Sequence[Mapping[str, Any]], Sequence[str]]],
    out_dir: Path,
    runs_dir: str | Path = "runs",
    results: Sequence[Mapping[str, Any]] = (),
    unseen: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
) -> str:
    """Write ``README.md`` (a section per protocol: conclusion, goal tables, tables and
    plots) and ``table.json`` into ``out_dir``; return the markdown. ``results`` (the
    baselines' cards) supply tuned-cosine's schedules for the schedule plots; ``unseen``
    (protocol name -> family -> tables per split) adds the policy on families it never
    saw, in table.json as ``"NAME on FAMILY"``."""
    unseen = unseen or {}
    from ganno_bench.experiments.generalisation_plots import schedule_plots, training_curves

    out_dir.mkdir(parents=True, exist_ok=True)
    first = sections[0][1] if sections else []
    metric = first[0]["metric"] if first else "normalised_score"
    boot = first[0]["bootstrap"] if first else {"seed": 0, "n_resamples": 2000}
    curves = training_curves([p for p, _, _ in sections], runs_dir, out_dir)
    text = [
        "# Generalisation: trained on easy networks, played on harder ones",
        "",
        "Written by `ganno-bench reproduce generalisation` (re-rendered from the committed "
        "cards by `ganno-bench reproduce generalisation --from-cards`), one section per "
        "training protocol. Metric: "
        f"{METRIC_MEANING[metric]}, higher is better. IQM over instances x seeds with 95% "
        f"stratified-bootstrap CIs ({boot['n_resamples']} resamples, seed {boot['seed']}); "
        "P(policy > agent) is the Mann-Whitney probability that a policy run beats the "
        "agent's run on the same id, averaged over the ids. Target groups: each family over "
        "its Medium and Hard ids (the same for every protocol), each target id alone, and "
        "all targets.",
        "",
    ]
    if curves is not None:
        text += [f"![training curves]({curves.name})", ""]
    if sections:
        text += [
            "## Overview: the goal per protocol and target",
            "",
            "The goal on each target group is IQM >= tuned-cosine's with P(policy > "
            "tuned-cosine) >= 0.5. Each protocol's section below gives the CIs, BOIL and "
            "every other baseline.",
            "",
            render_overview([(p, tables) for p, tables, _ in sections]),
        ]
    for p, tables, policies in sections:
        plots = [q.name for q in schedule_plots(p, tables, results, out_dir)]
        text.append(protocol_section(p, tables, policies, plots, unseen.get(p.name, {})))
    markdown = "\n".join(text)
    payload = {p.name: list(tables) for p, tables, _ in sections}
    for name, by_family in unseen.items():
        payload.update({f"{name} on {family}": list(t) for family, t in by_family.items()})
    for name, content in (
        ("README.md", markdown),
        ("table.json", json.dumps(payload, indent=2) + "\n"),
    ):
        write_atomically(out_dir / name, content)
    return markdown


def unseen_family_cards(
    cards: Mapping[Path, Mapping[str, Any]], p: Protocol, split: str
) -> dict[str, dict[str, Any]]:
    """The protocol's policy on each model family it neither trained on nor targets (the
    transformers, for every protocol so far), one card per family, gathered from the
    leaderboard's cards of the policy on other ids (``AGENT-on-IDS-SPLIT``,
    ``AGENT-other-SPLIT``). Two cards holding one id and seed are refused, as the
    leaderboard refuses them: an episode counts once."""
    seen = set(families([*p.train_ids, *p.targets]))
    gathered: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    source: dict[tuple[str, int], Path] = {}
    for path in sorted(cards, key=lambda q: Path(q).name):
        card = cards[path]
        if card["agent"]["name"] != p.agent or card["split"] != split:
            continue
        for env_id in sorted(card["envs"]):
            if family_of(env_id) in seen:
                continue
            for seed in card["seeds"]:
                if (env_id, seed) in source:
                    raise ValueError(
                        f"{source[env_id, seed]} and {path} both hold {p.agent} on {env_id}, "
                        f"seed {seed}, split {split}: keep one of them"
                    )
                source[env_id, seed] = path
            gathered.setdefault(family_of(env_id), []).append((env_id, card))
    out = {}
    for family, pairs in gathered.items():
        first = pairs[0][1]
        merged = {key: first[key] for key in first if key not in ("envs", "episodes", "seeds")}
        merged["envs"] = {env_id: card["envs"][env_id] for env_id, card in pairs}
        merged["episodes"] = [
            e for env_id, card in pairs for e in card["episodes"] if e["env_id"] == env_id
        ]
        merged["seeds"] = sorted({s for _, card in pairs for s in card["seeds"]})
        out[family] = validate_card(
            copy.deepcopy(merged), f"{p.agent} on {family} ids, split {split}"
        )
    return out


def layer_lr_ids() -> list[str]:
    """Every registered layerwise-LR id of the suite."""
    from ganno_bench.envs.registry import list_envs, track_of

    return [i for i in list_envs() if i.startswith("ganno/") and track_of(i) == "layer-lr"]


def _other_ids(targets: Sequence[str], chosen: Sequence[str] | None) -> list[str]:
    """The ids to play besides the protocol's ``targets``: ``chosen`` (checked), or
    every other layerwise-LR id."""
    known = layer_lr_ids()
    if not chosen:
        return [i for i in known if i not in targets]
    unknown = [i for i in chosen if i not in known]
    if unknown:
        raise ValueError(f"{unknown} are not layerwise-LR ids; `ganno-bench list` names them")
    repeated = [i for i in chosen if i in targets]
    if repeated:
        raise ValueError(f"{repeated} are this protocol's targets: they are played already")
    return list(dict.fromkeys(chosen))


def _tag(env_id: str) -> str:
    """A short file-name part for an id: ``ganno/LayerLR-Transformer-Easy-Adam-v0`` ->
    ``transformer-easy-adam``."""
    return _short(env_id).removeprefix("LayerLR-").removesuffix("-v0").lower()


def merged_card_path(results_dir: Path, p: Protocol, split: str) -> Path:
    return Path(results_dir) / f"{p.agent}-{split}.json.gz"


def reproduce_generalisation(
    *,
    protocols: Sequence[str] = ("a",),
    policies: Sequence[Path] | None = None,
    results_dir: str | Path = "leaderboards/results",
    baseline_cards: Sequence[Mapping[str, Any]] | None = None,
    out_dir: str | Path = "leaderboards/generalisation",
    runs_dir: str | Path = "runs",
    splits: Sequence[str] = SPLITS,
    targets: Sequence[str] | None = None,
    workers: int = 1,
    engine: str = "batched",
    overrides: dict[str, Any] | None = None,
    instances: Sequence[int] | None = None,
    every_id: bool = False,
    other_ids: Sequence[str] | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    progress: bool = True,
) -> str:
    """Evaluate each protocol's policies on its targets and write the report.

    ``every_id`` also plays them on every other layerwise-LR id (the training ids, the
    Adam variants and the transformers) into ``results_dir/AGENT-other-SPLIT.json.gz``,
    so the leaderboard shows the policies on every id; ``other_ids`` plays them on just
    those ids instead, into ``results_dir/AGENT-on-IDS-SPLIT.json.gz`` (a family at a
    time, e.g. the transformers). The report uses the targets alone.

    ``policies`` replaces the shipped files of a single protocol; ``targets`` its targets.
    Baselines are ``baseline_cards``, or else the cards in ``results_dir``. The merged
    policy cards go to ``results_dir`` too (so the leaderboard lists them) and the report
    is then re-rendered from every protocol's cards there, unless ``overrides`` or
    ``instances`` make this a smaller experiment: then only ``baseline_cards`` are compared
    (run on the same instances and overrides) and the report holds this run alone; with
    ``overrides`` the comparison uses the negated final test loss, as overridden tasks have
    no reference values. Per-seed cards and their journals stay in ``out_dir/cards``, so an
    interrupted run resumes. Returns the markdown.
    """
    chosen = [protocol(name) for name in protocols]
    if (policies is not None or targets is not None) and len(chosen) != 1:
        raise ValueError("policies= and targets= apply to one protocol; name exactly one")
    out_dir, results_dir = Path(out_dir), Path(results_dir)
    partial = bool(overrides) or instances is not None
    if (every_id or other_ids) and partial:
        raise ValueError(
            "every_id and other_ids write the leaderboard's cards of the policies on other "
            "ids: they take no budget overrides or instance subsets"
        )
    if every_id and other_ids:
        raise ValueError("give every_id or other_ids, not both: every_id plays every other id")
    if baseline_cards is None:
        baseline_cards = [] if partial else load_cards(results_dir)
    metric = "neg_test_loss" if overrides else "normalised_score"
    sections, made = [], []
    for p in chosen:
        files = list(policies) if policies is not None else shipped_policies(p)
        # checked before anything is played, so a wrong id costs no evaluation
        rest = _other_ids(list(targets or p.targets), other_ids) if every_id or other_ids else []
        tag = "other" if every_id else "on-" + "+".join(_tag(i) for i in rest)
        tables = []
        for split in splits:
            card = evaluate_policies(
                files,
                split,
                out_dir / "cards",
                targets=list(targets or p.targets),
                agent_name=p.agent,
                workers=workers,
                engine=engine,
                overrides=overrides,
                instances=instances,
                progress=progress,
            )
            made.append(card)
            if not partial:
                write_card(card, merged_card_path(results_dir, p, split))
            if rest and not partial:
                other = evaluate_policies(
                    files,
                    split,
                    out_dir / "cards" / tag,
                    targets=rest,
                    agent_name=p.agent,
                    workers=workers,
                    engine=engine,
                    progress=progress,
                )
                write_card(other, results_dir / f"{p.agent}-{tag}-{split}.json.gz")
            tables.append(
                generalisation_table(
                    card,
                    baseline_cards,
                    train_ids=p.train_ids,
                    metric=metric,
                    seed=seed,
                    n_resamples=n_resamples,
                )
            )
        sections.append((p, tables, [f.name for f in files]))
    if not partial:
        return render_generalisation(
            results_dir, out_dir, runs_dir=runs_dir, splits=splits, seed=seed,
            n_resamples=n_resamples,
        )  # fmt: skip
    return write_report(sections, out_dir, runs_dir, [*baseline_cards, *made])


def _card_metric(card: Mapping[str, Any]) -> str:
    """The metric a card's policy is compared by: overridden tasks have no references, so
    their cards compare negated test losses, as reproduce does."""
    overridden = any(env.get("overrides") for env in card["envs"].values())
    return "neg_test_loss" if overridden else "normalised_score"


def render_generalisation(
    results_dir: str | Path = "leaderboards/results",
    out_dir: str | Path = "leaderboards/generalisation",
    *,
    runs_dir: str | Path = "runs",
    splits: Sequence[str] = SPLITS,
    seed: int = 0,
    n_resamples: int = 2000,
) -> str:
    """Rewrite ``out_dir/README.md`` and ``table.json`` from the committed cards alone: each
    protocol's merged policy cards ``results_dir/AGENT-SPLIT.json.gz`` (what
    :func:`reproduce_generalisation` wrote) against the other cards there, and the training
    curves from ``runs_dir``. Nothing is evaluated, so a rescoring or a new baseline card
    is reflected in seconds. Returns the markdown."""
    results_dir = Path(results_dir)
    cards = {p: load_card(p) for p in card_files(results_dir)}
    everything = list(cards.values())
    sections = []
    unseen: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for p in PROTOCOLS.values():
        paths = [merged_card_path(results_dir, p, split) for split in splits]
        if not all(path in cards for path in paths):
            continue
        tables, policies = [], []
        for path in paths:
            card = cards[path]
            per_seed = card["agent"]["config"].get("per_seed", {})
            policies += [played_file(c) for c in per_seed.values()]
            tables.append(
                generalisation_table(
                    card,
                    [c for q, c in cards.items() if q != path],
                    train_ids=p.train_ids,
                    metric=_card_metric(card),
                    seed=seed,
                    n_resamples=n_resamples,
                )
            )
        sections.append((p, tables, list(dict.fromkeys(policies))))
        unseen[p.name] = {}
        for split in splits:
            for family, card in unseen_family_cards(cards, p, split).items():
                unseen[p.name].setdefault(family, []).append(
                    generalisation_table(
                        card,
                        everything,
                        train_ids=p.train_ids,
                        metric=_card_metric(card),
                        seed=seed,
                        n_resamples=n_resamples,
                    )
                )
    if not sections:
        expected = ", ".join(
            str(merged_card_path(results_dir, p, "SPLIT")) for p in PROTOCOLS.values()
        )
        raise FileNotFoundError(
            f"no protocol's merged policy cards in {results_dir} (looked for {expected}): run "
            "`ganno-bench reproduce generalisation` (which evaluates the policies) first"
        )
    return write_report(sections, Path(out_dir), runs_dir, everything, unseen)
