"""``list``, ``describe`` and ``freeze``: what the suite holds."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ganno_bench.envs.batch_observation import BATCH_FEATURES
from ganno_bench.envs.observation import FEATURES
from ganno_bench.envs.registry import list_envs, make, spec
from ganno_bench.envs.suite import load_suite_specs, read_frozen, registration_errors, write_frozen
from ganno_bench.inner.batch_task import BatchSizeTaskSpec
from ganno_bench.inner.instances import FROZEN_SPLITS, SPLITS, build_frozen
from ganno_bench.inner.models import agent_names


def cmd_list(args: argparse.Namespace) -> int:
    """Every registered id (or those matching PATTERN) with its family, difficulty,
    inner optimiser, number of layers (one agent each on the learning-rate track) and
    budget: decisions x inner steps (learning-rate track) or decisions x training samples
    (batch-size track)."""
    ids = list_envs(args.pattern)
    if not ids:
        print(f"no registered id matches {args.pattern!r}", file=sys.stderr)
        return 1
    rows = []
    for env_id in ids:
        task = spec(env_id)
        layers = task.model.num_layers() if hasattr(task.model, "num_layers") else "?"
        budget = task.budget if isinstance(task, BatchSizeTaskSpec) else f"{task.budget} steps"
        rows.append([env_id, task.family, task.difficulty, task.optimizer, layers, budget])
    header = ["id", "family", "difficulty", "optimiser", "layers", "budget"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    right = {4, 5}  # numbers and budgets line up on their right
    for row in [header, *rows]:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))
    for label, error in registration_errors().items():
        print(f"NOT REGISTERED {label}: {error}", file=sys.stderr)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    """Everything about one id: data, network, inner optimiser, budget, agents, the
    observation features with their ranges, actions, reward and the splits' ranges."""
    task = spec(args.env_id)
    env = make(args.env_id)
    agent = env.possible_agents[0]
    print(
        f"{task.id}  (family {task.family}, difficulty {task.difficulty}, version {task.version})"
    )
    print(f"  {task.description}")
    print(f"  data: {task.data.describe() if hasattr(task.data, 'describe') else task.data}")
    dataset = task.load_data()
    if dataset.loss_floor is not None:
        references = ", ".join(f"{name} {loss:.4f}" for name, loss in dataset.reference_losses)
        print(
            f"  loss floor: {dataset.loss_floor:.4f} nats per prediction (the Bayes-optimal "
            f"predictor on the inner-test part; "
            f"{dataset.loss_floor / np.log(dataset.num_classes):.4f} x log(classes)); "
            f"plug-in test losses: {references}"
        )
    print(f"  network: {env.trainer.network}".replace("\n", "\n  "))
    print(
        f"  inner optimiser: {task.optimizer} (momentum/beta1 from the instance), "
        f"weight decay {task.weight_decay}"
    )
    batch_track = isinstance(task, BatchSizeTaskSpec)
    if batch_track:
        print(
            f"  budget: {task.decisions} decisions x {task.samples_per_decision} training "
            f"samples ({task.sample_budget} in all; updates per decision = samples // batch "
            f"size, plus one on the remainder); learning rate: {task.lr_schedule} schedule"
        )
    else:
        print(
            f"  budget: {task.decisions} decisions x {task.inner_steps} inner steps; "
            f"learning rates clipped to {task.lr_bounds}"
        )
    print(f"  agents ({len(env.possible_agents)}): {', '.join(env.possible_agents)}")
    if not isinstance(task, BatchSizeTaskSpec):  # one agent per layer: say which is which
        modules = agent_names(env.trainer.network)
        for agent_id, module, info in zip(
            env.possible_agents, modules, env.trainer.layers, strict=True
        ):
            print(f"    {agent_id:9} {module} ({info.kind}, fan-in {info.fan_in})")
    print(f"  observation per agent: {env.observation_space(agent)}")
    for name, (low, high, meaning) in (BATCH_FEATURES if batch_track else FEATURES).items():
        print(f"    {name:20} [{low:g}, {high:g}]  {meaning}")
    if batch_track:
        print(
            f"  action: factor mode {env.action_space(agent)} over factors {task.factors} of "
            f"the batch size; absolute mode Box(batch size) in {task.batch_bounds}"
        )
    else:
        print(
            f"  action per agent: factor mode {env.action_space(agent)} over factors "
            f"{task.factors}; log_lr mode Box(log10 rate) in [{np.log10(task.lr_bounds[0]):g}, "
            f"{np.log10(task.lr_bounds[1]):g}]"
        )
    print(
        f"  reward: decrease of log validation loss; divergence (val or train loss > "
        f"{task.divergence_factor} x initial val loss, or not finite) ends the episode with "
        f"{-task.divergence_penalty}"
    )
    for split in SPLITS:
        space = task.spaces[split]
        frozen = (
            f", {len(task.frozen_instances(split))} frozen instances"
            if split in FROZEN_SPLITS
            else ""
        )
        print(
            f"  split {split}: log10_lr {space.log10_lr}, init_scale {space.init_scale}, "
            f"momentum {space.momentum}, batch {space.batch_sizes}, init {space.init_schemes}, "
            f"seeds {space.seed_range}{frozen}"
        )
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    """Write (or with --check, verify) the frozen test / test-ood instance lists."""
    specs, errors = load_suite_specs(require_frozen=False)
    status = 0
    for task in specs:
        built = {
            split: build_frozen(task.id, task.spaces[split], split, args.count)
            for split in FROZEN_SPLITS
        }
        if args.check:
            try:
                stored = read_frozen(task)
                same = all(list(stored[s]) == built[s] for s in FROZEN_SPLITS)
            except (OSError, ValueError, KeyError) as exc:
                same, reason = False, str(exc)
            else:
                reason = "differs from what the code builds"
            print(f"{'ok  ' if same else 'FAIL'} {task.id}" + ("" if same else f": {reason}"))
            status |= not same
        else:
            print(f"wrote {write_frozen(task, built)}")
    for label, error in errors.items():
        print(f"FAIL {label}: {error}", file=sys.stderr)
        status = 1
    return status


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    p = sub.add_parser("list", help="list registered environment ids")
    p.add_argument("pattern", nargs="?", help="shell glob, e.g. '*CNN*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", help="task, agents, spaces, budget and splits of one id")
    p.add_argument("env_id", help="a registered id, e.g. ganno/LayerLR-MLP-Easy-v0 (see `list`)")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("freeze", help="write the frozen test/test-ood instance lists into envs/")
    p.add_argument("--check", action="store_true", help="verify instead of writing")
    p.add_argument("--count", type=int, default=32, help="frozen instances per split")
    p.set_defaults(func=cmd_freeze)
