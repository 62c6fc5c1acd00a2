"""Why a policy trained on MLP layers fails on CNNs: measured, feature by feature.

Three measurements, written to ``leaderboards/generalisation/diagnosis.md``:

1. **Schedules.** On each CNN id's ``test`` instances, the policy's per-layer log10 rate
   at the first, middle and last decision beside tuned-cosine's (from the committed
   cards), with each agent's return, divergence rate and IQM score.
2. **Ablations.** The policy replays the same CNN instances with one group of
   observation features *neutralised*: each CNN layer's value replaced by what the policy
   saw in training for a layer at the same relative depth (the mean over MLP-Easy
   ``train`` episodes of the MLP layer nearest in depth). If a feature the policy never
   saw on MLP layers (layer kind, conv fan-in) drives the failure, neutralising it
   recovers the score; if not, the score stays where it is. Groups: ``kind``,
   ``fan_in``, ``depth``, the gradient statistics (``grad``: gradient and weight norms,
   update ratio, gradient cosine and noise share), and every layer-local feature.
3. **Reward.** The same episodes' returns (the telescoped reward) and divergence rates.

Every ablation runs through batched evaluation (one batched engine per id and batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.agents.protocol import Actions, Infos, Observations, _layer_index
from ganno_bench.baselines.policy import PolicyAgent
from ganno_bench.benchmark import stats
from ganno_bench.benchmark.evaluation import evaluate
from ganno_bench.benchmark.leaderboard import load_cards, merge_runs, scores_for
from ganno_bench.envs.observation import FEATURE_NAMES
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

__all__ = ["ABLATIONS", "NeutralisedPolicy", "diagnose", "training_profile"]

CNN_TARGETS = (
    "ganno/LayerLR-CNN-Easy-v0",
    "ganno/LayerLR-CNN-Medium-v0",
    "ganno/LayerLR-CNN-Hard-v0",
)
TRAIN_ID = "ganno/LayerLR-MLP-Easy-v0"
GRADIENT_FEATURES = (
    "log10_grad_norm",
    "log10_weight_norm",
    "log10_update_ratio",
    "grad_cosine",
    "grad_noise",
)
ABLATIONS: dict[str, tuple[str, ...]] = {
    "none": (),
    "kind": ("layer_kind",),
    "fan_in": ("log10_fan_in",),
    "depth": ("relative_depth",),
    "grad": GRADIENT_FEATURES,
    "layer-local": ("log10_lr", *GRADIENT_FEATURES, "relative_depth", "layer_kind", "log10_fan_in"),
}


def _check_features() -> None:
    unknown = {f for group in ABLATIONS.values() for f in group} - set(FEATURE_NAMES)
    if unknown:  # a renamed feature must not silently neutralise nothing
        raise ValueError(f"diagnosis names features the suite does not have: {sorted(unknown)}")


def training_profile(policy: PolicyAgent, instances: Sequence[int] = range(8)) -> np.ndarray:
    """Mean observation of each MLP-Easy layer (layers x features) over the policy's own
    ``train`` episodes: what it saw in training, layer by layer."""
    recorder = _Recorder(policy)
    evaluate(recorder, [TRAIN_ID], "train", seeds=[0], instances=list(instances), progress=False)
    return np.mean(recorder.rows, axis=0)


class _Recorder:
    """Plays a policy and keeps every decision's observation rows (layers x features)."""

    def __init__(self, policy: PolicyAgent) -> None:
        self.policy, self.rows = policy, []
        self.name, self.action_mode = policy.name, policy.action_mode

    def config(self) -> dict[str, Any]:
        return self.policy.config()

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        self.policy.reset(task, instance, agents, seed)

    def act(self, observations: Observations, infos: Infos) -> Actions:
        order = sorted(observations, key=_layer_index)
        self.rows.append(np.stack([observations[a] for a in order]))
        return self.policy.act(observations, infos)


class NeutralisedPolicy:
    """A policy whose view of some features is replaced by the training profile's value
    for the layer nearest in relative depth (see the module docstring)."""

    def __init__(self, policy: PolicyAgent, features: Sequence[str], profile: np.ndarray):
        self.policy, self.features, self.profile = policy, tuple(features), profile
        self.columns = [FEATURE_NAMES.index(f) for f in self.features]
        self.name = f"{policy.name}-neutral-{'+'.join(self.features) or 'none'}"
        self.action_mode = policy.action_mode
        self._depth_column = FEATURE_NAMES.index("relative_depth")

    def config(self) -> dict[str, Any]:
        return {**self.policy.config(), "neutralised": list(self.features)}

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        self.policy.reset(task, instance, agents, seed)

    def act(self, observations: Observations, infos: Infos) -> Actions:
        if not self.columns:
            return self.policy.act(observations, infos)
        trained_depths = self.profile[:, self._depth_column]
        changed = {}
        for agent, row in observations.items():
            row = np.array(row, copy=True)
            nearest = int(np.argmin(np.abs(trained_depths - row[self._depth_column])))
            row[self.columns] = self.profile[nearest, self.columns]
            changed[agent] = row
        return self.policy.act(changed, infos)


def _schedule_rows(episodes: Sequence[Mapping[str, Any]]) -> list[float]:
    """Mean log10 rate per layer at the first, middle and last decision."""
    def at(t_of: Any) -> np.ndarray:
        return np.mean([np.log10(e["lrs"][t_of(len(e["lrs"]))]) for e in episodes], axis=0)

    return [at(lambda n: 0), at(lambda n: n // 2), at(lambda n: n - 1)]


def _summary(episodes: Sequence[Mapping[str, Any]], env_id: str) -> dict[str, Any]:
    scores = {env_id: np.array([e["normalised_score"] for e in episodes], dtype=float)}
    return {
        "iqm": stats.aggregate(scores, "iqm", n_resamples=1000, seed=0),
        "return": float(np.mean([e["return"] for e in episodes])),
        "diverged": float(np.mean([e["diverged"] for e in episodes])),
    }


def diagnose(
    policies: Sequence[Path],
    results_dir: str | Path = "leaderboards/results",
    *,
    instances: Sequence[int] = range(8),
    targets: Sequence[str] = CNN_TARGETS,
    batch_size: int = 32,
) -> str:
    """Run the three measurements; return the markdown report."""
    _check_features()
    loaded = [PolicyAgent.from_path(p, name="ppo-mlp-easy") for p in policies]
    profiles = [training_profile(p) for p in loaded]
    lines = ["# Diagnosis: why the MLP-trained policies fail on CNNs", ""]
    lines += [
        f"Shipped policies: {', '.join(p.name for p in policies)}; CNN `test` instances "
        f"{list(instances)} of each target; scores: IQM of the normalised score [95% CI] "
        "over policies x instances.",
        "",
    ]
    cosine = {
        r.agent: r for r in merge_runs(
            [(Path(str(i)), c) for i, c in enumerate(load_cards(results_dir))]
        ).get("test", [])
    }.get("tuned-cosine")
    lines += ["## 1. Per-layer schedules (log10 rate at first / middle / last decision)", ""]
    ablated: dict[str, dict[str, list[dict]]] = {name: {} for name in ABLATIONS}
    for name, features in ABLATIONS.items():
        for policy, profile in zip(loaded, profiles, strict=True):
            agent = NeutralisedPolicy(policy, features, profile)
            card = evaluate(
                agent,
                list(targets),
                "test",
                seeds=[0],
                instances=list(instances),
                engine="batched",
                batch_size=batch_size,
                progress=False,
            )
            for episode in card["episodes"]:
                ablated[name].setdefault(episode["env_id"], []).append(episode)
    for env_id in targets:
        lines += [f"### {env_id}", "", "| agent | decision | " + " | ".join(
            f"layer {i}" for i in range(len(ablated["none"][env_id][0]["lrs"][0]))
        ) + " |"]
        lines.append("|---|---|" + "---|" * len(ablated["none"][env_id][0]["lrs"][0]))
        rows = [("ppo (policies)", ablated["none"][env_id])]
        if cosine is not None:
            mine = [
                e for e in cosine.episodes if e["env_id"] == env_id and e["instance"] in instances
            ]
            rows.append(("tuned-cosine", mine))
        for label, episodes in rows:
            moments = zip(("first", "middle", "last"), _schedule_rows(episodes), strict=True)
            for when, values in moments:
                cells = " | ".join(f"{v:.2f}" for v in values)
                lines.append(f"| {label} | {when} | {cells} |")
        lines.append("")
        for label, episodes in rows:
            s = _summary(episodes, env_id)
            lines.append(
                f"* {label}: IQM {s['iqm']}, mean return {s['return']:.3f}, "
                f"diverged {s['diverged']:.0%}"
            )
        lines.append("")
    lines += ["## 2. Ablations: neutralised features (all CNN targets pooled)", ""]
    lines += [
        "| neutralised | features | IQM [95% CI] | mean return | diverged |",
        "|---|---|---|---|---|",
    ]
    for name, features in ABLATIONS.items():
        episodes = [e for env_id in targets for e in ablated[name][env_id]]
        scores = scores_for({"episodes": episodes})
        iqm = stats.aggregate(scores, "iqm", n_resamples=1000, seed=0)
        lines.append(
            f"| {name} | {', '.join(features) or '-'} | {iqm} | "
            f"{np.mean([e['return'] for e in episodes]):.3f} | "
            f"{np.mean([e['diverged'] for e in episodes]):.0%} |"
        )
    lines.append("")
    return "\n".join(lines)

