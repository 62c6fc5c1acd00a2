"""The generalisation study's training protocols: what each policy was trained on, where its
recipe and files are, and which harder ids it is judged on.

A protocol is a named recipe in ``baselines/ppo/`` (a TOML of PPO settings and the command
in its header), trained once per seed into ``runs/protocol-NAME-seedS`` and shipped as
``baselines/ppo/AGENT-seedS.zip``. Its targets are the SGD ids harder than everything it
trained on, in the same factor action space; a policy that never saw a CNN is also judged
on CNN-Easy. A protocol may instead combine another protocol's shipped policies without
training (``ensemble``: a ``baselines/ppo/AGENT.toml`` listing them, played as one
deterministic agent with seed 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROTOCOLS", "Protocol", "protocol", "shipped_policies", "training_runs"]

MLP_TARGETS = ("ganno/LayerLR-MLP-Medium-v0", "ganno/LayerLR-MLP-Hard-v0")
CNN_TARGETS = ("ganno/LayerLR-CNN-Medium-v0", "ganno/LayerLR-CNN-Hard-v0")


@dataclass(frozen=True)
class Protocol:
    """One way of training a shared policy on easy networks only."""

    name: str
    agent: str  # the policy files' and result cards' agent name
    train_ids: tuple[str, ...]
    targets: tuple[str, ...]
    recipe: str  # the training command, with S for the seed
    summary: str
    config: str | None  # the recipe's TOML in baselines/ppo/ (None: the shipped config.toml)
    timesteps: int  # per training seed (an ensemble: its longest-trained member's)
    checkpoint_every: int = 50_000
    ensemble: str | None = None  # no training: this TOML in baselines/ppo/ combines policies
    init_from: str | None = None  # a warm start: this policy in baselines/ppo/, S the seed

    def init_policy(self, seed: int) -> Path | None:
        """The policy a warm-started protocol's seed-``seed`` run starts from."""
        from ganno_bench.baselines.files import baselines_dir

        if self.init_from is None:
            return None
        return baselines_dir() / "ppo" / self.init_from.replace("S", str(seed))

    @property
    def trains(self) -> bool:
        return self.ensemble is None

    def run_dir(self, seed: int, runs_dir: str | Path = "runs") -> Path:
        return Path(runs_dir) / f"protocol-{self.name}-seed{seed}"

    def policy_path(self, seed: int) -> Path:
        from ganno_bench.baselines.files import baselines_dir

        return baselines_dir() / "ppo" / f"{self.agent}-seed{seed}.zip"


def _recipe(
    envs: tuple[str, ...],
    config: str,
    timesteps: int,
    name: str,
    agent: str,
    init_from: str | None = None,
) -> str:
    flags = " ".join(f"--env {e}" for e in envs)
    start = f"--init-from baselines/ppo/{init_from} " if init_from else ""
    return (
        f"ganno-bench train ppo {flags} --config baselines/ppo/{config} --timesteps {timesteps} "
        f"{start}--seed S --checkpoint-every 50000 --eval-every 50000 "
        f"--out runs/protocol-{name}-seedS --export baselines/ppo/{agent}-seedS.zip"
    )


def _ensemble(
    name: str, agent: str, train_ids: tuple[str, ...], targets: tuple[str, ...], *,
    members: str, summary: str, timesteps: int,
) -> Protocol:
    """A protocol that trains nothing: ``baselines/ppo/AGENT.toml`` lists ``members``'
    shipped policies, played as one agent."""
    return Protocol(
        name=name,
        agent=agent,
        train_ids=train_ids,
        targets=targets,
        recipe=(
            f"no training: `ganno-bench evaluate --agent {agent} --seeds 0` plays {members} "
            f"(listed in baselines/ppo/{agent}.toml) as one agent"
        ),
        summary=summary,
        config=None,
        timesteps=timesteps,
        ensemble=f"{agent}.toml",
    )


_MLP_EASY, _CNN_EASY = "ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0"

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="a",
            agent="ppo-a-mlp-easy",
            train_ids=(_MLP_EASY,),
            targets=(*MLP_TARGETS, _CNN_EASY, *CNN_TARGETS),
            recipe=_recipe((_MLP_EASY,), "protocol-a.toml", 1_000_000, "a", "ppo-a-mlp-easy"),
            summary="MLP-Easy only, 1M timesteps, 32 batched copies",
            config="protocol-a.toml",
            timesteps=1_000_000,
        ),
        Protocol(
            name="b",
            agent="ppo-b-mlp-cnn-easy",
            train_ids=(_MLP_EASY, _CNN_EASY),
            targets=(*MLP_TARGETS, *CNN_TARGETS),
            recipe=_recipe(
                (_MLP_EASY, _CNN_EASY), "protocol-b.toml", 500_000, "b", "ppo-b-mlp-cnn-easy"
            ),
            summary="MLP-Easy + CNN-Easy mixed in one vector env, 500k timesteps, "
            "16 batched copies of each",
            config="protocol-b.toml",
            timesteps=500_000,
        ),
        _ensemble(
            "c",
            "ppo-c-ensemble-a",
            (_MLP_EASY,),
            (*MLP_TARGETS, _CNN_EASY, *CNN_TARGETS),
            members="protocol a's three policies",
            summary="protocol a's three seeds as one agent (mean action probability), "
            "no new training",
            timesteps=1_000_000,
        ),
        _ensemble(
            "d",
            "ppo-d-ensemble-ab",
            (_MLP_EASY, _CNN_EASY),
            (*MLP_TARGETS, *CNN_TARGETS),
            members="protocol a's and protocol b's three policies each",
            summary="protocols a's and b's six policies as one agent (mean action "
            "probability), no new training",
            timesteps=1_000_000,
        ),
        Protocol(
            name="e",
            agent="ppo-e-a-then-mix",
            train_ids=(_MLP_EASY, _CNN_EASY),
            targets=(*MLP_TARGETS, *CNN_TARGETS),
            recipe=_recipe(
                (_MLP_EASY, _CNN_EASY),
                "protocol-e.toml",
                200_000,
                "e",
                "ppo-e-a-then-mix",
                init_from="ppo-a-mlp-easy-seedS.zip",
            ),
            summary="protocol a's policies fine-tuned on protocol b's MLP-Easy + CNN-Easy mix, "
            "200k timesteps, 16 batched copies of each",
            config="protocol-e.toml",
            timesteps=200_000,
            init_from="ppo-a-mlp-easy-seedS.zip",
        ),
        _ensemble(
            "f",
            "ppo-f-ensemble-e",
            (_MLP_EASY, _CNN_EASY),
            (*MLP_TARGETS, *CNN_TARGETS),
            members="protocol e's three policies",
            summary="protocol e's three seeds as one agent (mean action probability), "
            "no new training",
            timesteps=200_000,
        ),
        Protocol(
            name="100k",
            agent="ppo-mlp-easy",
            train_ids=(_MLP_EASY,),
            targets=(*MLP_TARGETS, _CNN_EASY, *CNN_TARGETS),
            recipe=(
                f"ganno-bench train ppo --env {_MLP_EASY} --timesteps 100000 --seed S "
                "--export baselines/ppo/ppo-mlp-easy-seedS.zip"
            ),
            summary="MLP-Easy only, 100k timesteps, 4 sequential copies (the first policies)",
            config=None,
            timesteps=100_000,
            checkpoint_every=10_000,
        ),
    )
}


def protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name lists the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown protocol {name!r}; known protocols: {', '.join(PROTOCOLS)}"
        ) from None


def _seed_of(path: Path) -> int:
    return int(re.search(r"seed(\d+)$", path.stem).group(1))


def shipped_policies(p: Protocol | str = "100k") -> list[Path]:
    """The protocol's shipped policies, one per training seed, in seed order (an ensemble
    protocol: its one TOML file)."""
    from ganno_bench.baselines.files import baselines_dir

    p = protocol(p) if isinstance(p, str) else p
    folder = baselines_dir() / "ppo"
    if p.ensemble is not None:
        if not (folder / p.ensemble).is_file():
            raise FileNotFoundError(
                f"protocol {p.name!r} plays the ensemble {folder / p.ensemble}, which is "
                "missing: restore it from the repository (git checkout baselines/ppo)"
            )
        return [folder / p.ensemble]
    found = sorted(
        (f for f in folder.glob(f"{p.agent}-seed*.zip") if re.search(r"seed\d+$", f.stem)),
        key=_seed_of,
    )
    if not found:
        raise FileNotFoundError(
            f"no shipped policies {p.agent}-seed*.zip of protocol {p.name!r} in {folder}; "
            f"train them with: {p.recipe}"
        )
    return found


def training_runs(p: Protocol, runs_dir: str | Path = "runs") -> list[Path]:
    """The protocol's training-run folders that hold evaluations, in seed order."""
    folders = Path(runs_dir).glob(p.run_dir("*").name)
    kept = [f for f in folders if (f / "evaluations.jsonl").exists()]
    return sorted(kept, key=lambda f: int(f.name.rsplit("seed", 1)[1]))
