"""BOIL's claim, measured in the suite: the schedule found versus the tuning time spent, for
BOIL, plain BO on full-length runs, random search and grid search, over several seeds.

Every method tunes the same schedule family on the same train instances of an id
(:func:`ganno_bench.baselines.schedule_family.env_objective`) for the same number of real
training runs. After each run its incumbent is scored by full-length runs on *other* train instances
(``score_instances``; ``r(T)``, the share of the chance-level validation loss removed;
cached, not charged to the method), so a method that picks its incumbent by the observed
final value has no edge from scoring on the instances it tuned on. Reported per id
and method: the final incumbent's score (mean over seeds with a 95% t-interval), the mean
tuning cost (inner steps) and wall time, the score each method held when the fastest
method finished (equal wall time) and when the cheapest had spent its inner steps (equal
compute: the view in which the optimiser's own overhead, large against these cheap runs,
does not count); the plot shows the mean incumbent score over wall time and over inner
steps.
Finished (id, method, seed) runs are appended to ``runs.jsonl`` at once, so a killed
experiment resumes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from ganno_bench.baselines.boil import BOIL, METHODS
from ganno_bench.baselines.schedule_family import env_objective
from ganno_bench.benchmark.journal import atomic_target, write_atomically

__all__ = ["claim_rows", "claim_table", "conclusion", "run_claim"]


def _incumbent_at(
    trace: Sequence[dict[str, Any]], budget: float, spent: str = "wall_time_s"
) -> float:
    """The score held once ``budget`` of ``spent`` (``wall_time_s`` or ``cost``, the inner
    steps) was used; NaN before the first run ended (nothing held yet)."""
    held = [t["score"] for t in trace if t[spent] <= budget]
    return held[-1] if held else math.nan


def _mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean with a 95% t-interval; NaN if any value is (a seed that held nothing yet)."""
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        return math.nan, math.nan, math.nan
    if x.size < 2 or np.all(x == x[0]):
        return float(x.mean()), float(x.mean()), float(x.mean())
    low, high = sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    return float(x.mean()), float(low), float(high)


def run_claim(
    ids: Sequence[str],
    out_dir: str | Path = "leaderboards/boil",
    *,
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    iterations: int = 12,
    instances: Sequence[int] = (0, 1),
    score_instances: Sequence[int] = (8, 9),
    progress: bool = True,
) -> str:
    """Run (or resume) the experiment; write ``runs.jsonl``, ``README.md`` and the plot."""
    if set(instances) & set(score_instances):
        raise ValueError("score_instances must differ from the tuning instances")
    settings = {
        "iterations": iterations,
        "instances": list(instances),
        "score_instances": list(score_instances),
    }
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "runs.jsonl"
    done = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a killed run's last line
                continue
            if record["settings"] != settings:
                raise ValueError(
                    f"{journal} holds runs with other settings ({record['settings']}); "
                    "choose another --out, or delete it to start over"
                )
            done[(record["env_id"], record["method"], record["seed"])] = record
    todo = [(i, m, s) for i in ids for m in methods for s in seeds if (i, m, s) not in done]
    cache: dict[tuple, float] = {}
    with open(journal, "a") as sink, tqdm(todo, disable=not progress, desc="BOIL claim") as bar:
        for env_id, method, seed in bar:
            objective, task = env_objective(env_id, instances)
            scorer, _ = env_objective(env_id, score_instances)

            def full_score(x: Sequence[float], scorer=scorer, task=task, env_id=env_id):
                key = (env_id, tuple(np.round(x, 12)))
                if key not in cache:
                    cache[key] = float(scorer(np.asarray(x), task.decisions)[0][-1])
                return cache[key]

            optimiser = BOIL(objective, 3, task.decisions, method=method, seed=seed)
            optimiser.run(iterations)
            trace = [{**t, "score": full_score(t["incumbent"])} for t in optimiser.trace]
            record = {
                "env_id": env_id,
                "method": method,
                "seed": seed,
                "settings": settings,
                "trace": trace,
            }
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            done[(env_id, method, seed)] = record
    records = [done[(i, m, s)] for i in ids for m in methods for s in seeds]
    table = claim_table(records)
    _plot(records, out / "boil-claim.png")
    text = "\n".join(
        [
            "# BOIL's claim: schedule found versus tuning time",
            "",
            f"**Conclusion.** {conclusion(records)}",
            "",
            f"Written by `ganno-bench boil claim`. Each method tunes the schedule family "
            f"(initial log10 rate, depth slope, decay power) on train instances "
            f"{list(instances)} for {iterations} training runs, seeds {list(seeds)}. Score: "
            "the incumbent's full-length `1 - val_loss / log(classes)` on train instances "
            f"{list(score_instances)} (not tuned on; higher is better), "
            "mean over seeds [95% t-interval]; cost in inner steps; 'at equal time' is the "
            "score each method held when the fastest method (by mean wall time) had finished "
            "('none yet' where a seed had not finished a run by then), "
            "'at equal steps' the score it held when it had spent as many inner steps as the "
            "cheapest method (by mean cost) spent in all (compute alone, the optimiser's own "
            "overhead not counted).",
            "",
            table,
            "",
            "![score versus wall time and inner steps](boil-claim.png)",
            "",
        ]
    )
    write_atomically(out / "README.md", text)
    return text


Interval = tuple[float, float, float]  # mean, low, high (NaN: a seed held nothing yet)


def claim_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per id and method: the final score, the score at equal wall time and at equal
    inner steps (each a mean with its 95% t-interval), mean cost and wall time."""
    rows = []
    for env_id in dict.fromkeys(r["env_id"] for r in records):
        mine = [r for r in records if r["env_id"] == env_id]
        methods = list(dict.fromkeys(r["method"] for r in mine))
        walls, costs = (
            {m: np.mean([r["trace"][-1][key] for r in mine if r["method"] == m]) for m in methods}
            for key in ("wall_time_s", "cost")
        )
        for m in methods:
            runs = [r for r in mine if r["method"] == m]
            rows.append(
                {
                    "env_id": env_id,
                    "method": m,
                    "final": _mean_ci([r["trace"][-1]["score"] for r in runs]),
                    "equal_time": _mean_ci(
                        [_incumbent_at(r["trace"], min(walls.values())) for r in runs]
                    ),
                    "equal_steps": _mean_ci(
                        [_incumbent_at(r["trace"], min(costs.values()), "cost") for r in runs]
                    ),
                    "cost": float(costs[m]),
                    "wall_time_s": float(walls[m]),
                }
            )
    return rows


def _cell(c: Interval) -> str:
    return "none yet" if math.isnan(c[0]) else f"{c[0]:.4f} [{c[1]:.4f}, {c[2]:.4f}]"


def claim_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table per id and method (see the module doc)."""
    lines = [
        "| id | method | final score [95% CI] | at equal time [95% CI] | "
        "at equal steps [95% CI] | cost (steps) | wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in claim_rows(records):
        scores = " | ".join(_cell(row[k]) for k in ("final", "equal_time", "equal_steps"))
        lines.append(
            f"| {row['env_id']} | {row['method']} | {scores} | {row['cost']:.0f} | "
            f"{row['wall_time_s']:.1f} |"
        )
    return "\n".join(lines)


def _standing(mine: Interval, others: Sequence[Interval]) -> str:
    """``better`` when ``mine``'s interval lies above every other's, ``worse`` when some
    other's lies above it (or ``mine`` held nothing yet), else ``tied``."""
    if math.isnan(mine[0]):
        return "worse"
    held = [o for o in others if not math.isnan(o[0])]
    if all(mine[1] > o[2] for o in held):
        return "better"
    if any(o[1] > mine[2] for o in held):
        return "worse"
    return "tied"


def conclusion(records: Sequence[dict[str, Any]], method: str = "boil") -> str:
    """One sentence from the numbers: per id, ``method``'s score at the fastest method's
    wall time against the others' (separated when the 95% intervals do not overlap), its
    final score and the wall time it took, and whether that bears out BOIL's claim (a
    better schedule for the tuning time spent)."""
    rows = claim_rows(records)
    words = {"better": "ahead", "worse": "behind", "tied": "not separated"}
    parts, standings, cheaper_but_slower = [], [], []
    for env_id in dict.fromkeys(r["env_id"] for r in rows):
        mine = [r for r in rows if r["env_id"] == env_id]
        own = next((r for r in mine if r["method"] == method), None)
        others = [r for r in mine if r["method"] != method]
        if own is None or not others:
            continue
        rival = max(others, key=lambda r: np.nan_to_num(r["equal_time"][0], nan=-np.inf))
        standing = _standing(own["equal_time"], [r["equal_time"] for r in others])
        standings.append(standing)
        fastest = min(r["wall_time_s"] for r in mine)  # where "equal time" is taken
        cheaper_but_slower.append(
            own["cost"] < min(r["cost"] for r in others) and own["wall_time_s"] > fastest
        )
        parts.append(
            f"on {env_id.split('/')[-1]} {method} held {_cell(own['equal_time'])} at the "
            f"fastest method's {fastest:.0f} s against {rival['method']}'s "
            f"{_cell(rival['equal_time'])} ({words[standing]}), and ended on "
            f"{_cell(own['final'])} after {own['wall_time_s']:.0f} s "
            f"({own['wall_time_s'] / fastest:.0f}x that time)"
        )
    if not standings:
        return f"No runs of {method} to judge."
    if all(s == "better" for s in standings):
        verdict = "BOIL's claim holds here: it finds better schedules for the time spent"
    elif "better" in standings and "worse" not in standings:
        verdict = "BOIL's claim holds on some ids and is not contradicted on the others"
    else:
        verdict = (
            "BOIL's claim does not hold here: at equal tuning time it finds no better "
            "schedule than the simpler methods"
        )
        if all(cheaper_but_slower):
            verdict += (
                "; it spends fewer inner steps than they do but more wall time, so on "
                "training runs this cheap its model's overhead outweighs what it saves"
            )
    sentence = "; ".join(parts)
    return f"{sentence[:1].upper()}{sentence[1:]}. {verdict}."


def _plot(records: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = list(dict.fromkeys(r["env_id"] for r in records))
    axes_by = (("wall_time_s", "tuning wall time (s)"), ("cost", "tuning cost (inner steps)"))
    fig, axes = plt.subplots(2, len(ids), figsize=(5 * len(ids), 7.2), squeeze=False)
    for row, (spent, label) in zip(axes, axes_by, strict=True):
        for ax, env_id in zip(row, ids, strict=True):
            mine = [r for r in records if r["env_id"] == env_id]
            end = max(r["trace"][-1][spent] for r in mine)
            grid = np.linspace(0.0, end, 200)
            if spent == "wall_time_s":  # seconds on a log axis: the fast methods' first
                start = min(r["trace"][0][spent] for r in mine)  # seconds are visible
                grid = np.geomspace(start, end, 200)
                ax.set_xscale("log")
            for method in dict.fromkeys(r["method"] for r in mine):
                runs = [r for r in mine if r["method"] == method]
                held = [[_incumbent_at(r["trace"], b, spent) for b in grid] for r in runs]
                ax.step(grid, np.mean(held, axis=0), where="post", label=method)
            ax.set_title(env_id.split("/")[-1])
            ax.set_xlabel(label)
            ax.set_ylabel("incumbent score (mean over seeds)")
            ax.legend()
    fig.tight_layout()
    with atomic_target(path, suffix=".tmp.png") as tmp:  # matplotlib reads the format from it
        fig.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(fig)
