"""``tune``, ``train`` and ``boil``: making the tuned and learned baselines."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ganno_bench.baselines import files
from ganno_bench.baselines.ppo import load_ppo_config, ppo_config_path, train_ppo
from ganno_bench.baselines.schedule_family import tune_schedules
from ganno_bench.baselines.tuning import tune
from ganno_bench.benchmark.evaluation import resolve_ids
from ganno_bench.benchmark.threads import single_threaded
from ganno_bench.cli.common import add_budget_options, budget_overrides
from ganno_bench.experiments.boil_claim import run_claim


def cmd_tune(args: argparse.Namespace) -> int:
    """Grid-search the tuned baselines' base rates on the train split; freeze them."""
    path = files.baselines_dir() / "tuned.toml"
    ids = resolve_ids(args.env or ["all"])
    names = args.baseline or ["tuned-constant", "tuned-cosine"]
    tuned = tune(
        names,
        ids,
        path,
        instances=args.instances,
        seeds=args.seeds,
        workers=args.workers,
    )
    for name in names:
        for env_id in ids:
            print(f"{name:16} {env_id:36} base lr {tuned[name]['base_lr'][env_id]:.3g}")
    print(f"wrote {path}")
    return 0


def _train_rllib(args: argparse.Namespace, overrides: dict, names: str) -> int:
    """``train ppo --backend rllib``: RLlib PPO, env runners on Ray workers."""
    from ganno_bench.baselines.rllib_ppo import train_rllib_ppo

    if len(args.env) > 1 or args.recurrent or args.config:
        raise ValueError(
            "--backend rllib trains on one --env with RLlib's PPO defaults (no --recurrent, "
            "no --config); use the default backend for those"
        )
    # the SB3 path's options that RLlib's loop has no counterpart for: refused, not dropped
    unused = [
        f"--{name.replace('_', '-')}"
        for name, default in _SB3_ONLY_DEFAULTS.items()
        if getattr(args, name) != default
    ]
    if unused:
        raise ValueError(
            f"--backend rllib does not take {', '.join(unused)}: RLlib checkpoints every "
            "iteration into RUN/checkpoint and resumes from it, runs --cpus env runners and "
            "keeps its policy on the CPU; drop them, or use the default backend"
        )
    out = args.out or f"runs/rllib-ppo-{names}-seed{args.seed}"
    policy = train_rllib_ppo(
        args.env[0],
        args.timesteps,
        out,
        seed=args.seed,
        overrides=overrides,
        env_runners=max(1, args.cpus),
        address=args.address,
    )
    if args.export:
        shutil.copytree(policy, args.export, dirs_exist_ok=True)
        policy = Path(args.export)
    print(f"wrote {policy}: evaluate it with `ganno-bench evaluate --agent {policy} ...`")
    return 0


# ``train ppo`` options of the SB3 path and their defaults (see add_commands)
_SB3_ONLY_DEFAULTS: dict[str, object] = {
    "engine": "batched",
    "copies": None,
    "checkpoint_every": 10_000,
    "eval_every": 10_000,
    "eval_instances": 8,
    "resume": None,
    "init_from": None,
    "device": "cpu",
}


def cmd_train(args: argparse.Namespace) -> int:
    """Train one Stable-Baselines3 PPO policy shared by every layer on the id's train split:
    each layer of each env copy is one vector-env slot, so a timestep is one layer's
    decision. Progress bar, TensorBoard logs (RUN/tb), atomic checkpoints and periodic
    evaluations on fixed train instances (RUN/evaluations.jsonl); running the same command
    again resumes from the newest checkpoint."""
    overrides = budget_overrides(args)
    names = "+".join(env_id.split("/")[-1] for env_id in args.env)
    if args.backend == "rllib":
        return _train_rllib(args, overrides, names)
    config = None
    if args.config:
        config = load_ppo_config(args.recurrent, path=args.config)
    final = train_ppo(
        args.env if len(args.env) > 1 else args.env[0],
        args.timesteps,
        seed=args.seed,
        out=args.out or f"runs/ppo-{names}-seed{args.seed}",
        recurrent=args.recurrent,
        config=config,
        engine=args.engine,
        num_copies=args.copies,
        num_cpus=args.cpus,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        eval_instances=args.eval_instances,
        resume_from=args.resume,
        init_from=args.init_from,
        overrides=overrides,
        device=args.device,
        progress=not args.quiet,
    )
    print(f"trained policy: {final}")
    if args.export:
        shutil.copyfile(final, args.export)
        print(f"copied to {args.export}")
    return 0


def cmd_boil(args: argparse.Namespace) -> int:
    """tune: run BOIL (Bayesian optimisation over the schedule family and training length)
    on the train split of each id and freeze the result in baselines/boil.toml. claim:
    measure BOIL's claim (best schedule found versus tuning time, against plain BO, random
    and grid search, over seeds) and write leaderboards/boil/README.md with its plot;
    finished runs are kept in runs.jsonl, so a rerun only re-renders."""
    ids = resolve_ids(args.env or ["ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Easy-v0"])
    with single_threaded():  # the same numbers as the single-threaded evaluations
        return _boil_action(args, ids)


def _boil_action(args: argparse.Namespace, ids: list[str]) -> int:
    if args.action == "tune":
        path = files.baselines_dir() / "boil.toml"
        tuned = tune_schedules(
            ids, path, iterations=args.iterations, instances=args.instances, seed=args.seed
        )
        for env_id in ids:
            params = ", ".join(f"{k} {v:.3g}" for k, v in tuned[env_id].items())
            print(f"{env_id:36} {params}")
        print(f"wrote {path}")
        return 0
    print(
        run_claim(
            ids,
            args.out,
            seeds=args.seeds,
            iterations=args.iterations,
            instances=args.instances,
            progress=not args.quiet,
        )
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    p = sub.add_parser("train", help="train a parameter-shared policy on an id's train split")
    algorithms = p.add_subparsers(
        dest="algorithm", metavar="ALGORITHM", required=True, help="the training algorithm:"
    )
    p = algorithms.add_parser(
        "ppo", help="Stable-Baselines3 PPO, one policy shared by every layer", epilog=_ppo_epilog()
    )
    p.add_argument(
        "--env",
        action="append",
        required=True,
        help="id to train on, e.g. ganno/LayerLR-MLP-Easy-v0; repeat it to train one policy on "
        "a mix of ids (--copies copies of each in every rollout)",
    )
    p.add_argument(
        "--engine",
        choices=["batched", "sequential"],
        default="batched",
        help="batched: each id's copies train in one batched computation (LR ids); "
        "sequential: one env per copy through SuperSuit (the batch-size track always)",
    )
    p.add_argument(
        "--config",
        help="a TOML of PPO settings like baselines/ppo/config.toml (a training recipe)",
    )
    p.add_argument(
        "--timesteps", type=int, default=150_000, help="layer decisions in all (one per slot)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the envs, torch and PPO")
    p.add_argument("--out", help="run folder (default: runs/ppo-NAME-seedS); rerun to resume")
    p.add_argument(
        "--backend",
        choices=["sb3", "rllib"],
        default="sb3",
        help="sb3: Stable-Baselines3 here; rllib: RLlib's PPO with env runners on Ray workers "
        "(--cpus of them; the [rllib] extra, README 'Scaling out')",
    )
    p.add_argument("--address", help="rllib: a Ray cluster to join (default: a local Ray)")
    p.add_argument("--recurrent", action="store_true", help="sb3-contrib RecurrentPPO (LSTM)")
    p.add_argument("--copies", type=int, help="env copies per rollout (default: the config's)")
    p.add_argument("--cpus", type=int, default=0, help="worker processes for the env copies")
    p.add_argument(
        "--checkpoint-every", type=int, default=10_000, help="timesteps between checkpoints"
    )
    p.add_argument("--eval-every", type=int, default=10_000, help="timesteps between evaluations")
    p.add_argument("--eval-instances", type=int, default=8, help="train instances per evaluation")
    p.add_argument("--resume", help="checkpoint to resume from (default: the run's newest)")
    p.add_argument(
        "--init-from",
        help="a trained policy to start a new run from (fine-tuning; its timesteps count "
        "from 0); rerunning the command resumes from the run's newest checkpoint",
    )
    p.add_argument("--export", help="also copy the final policy to this path")
    p.add_argument("--device", default="cpu", help="torch device of the policy")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_budget_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("boil", help="BOIL: tune the schedule family, or measure BOIL's claim")
    p.add_argument(
        "action", choices=["tune", "claim"], help="tune the family, or measure the claim"
    )
    p.add_argument("--env", action="append", help="ids (default: MLP-Easy and CNN-Easy)")
    p.add_argument("--iterations", type=int, default=12, help="real training runs per tuning")
    p.add_argument("--instances", type=int, nargs="+", default=[0, 1], help="train instances")
    p.add_argument("--seed", type=int, default=0, help="tune: the tuning seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="claim: seeds")
    p.add_argument("--out", default="leaderboards/boil", help="claim: output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_boil)

    p = sub.add_parser("tune", help="grid-search the tuned baselines on the train split")
    p.add_argument(
        "--baseline",
        action="append",
        choices=["tuned-constant", "tuned-cosine"],
        help="baseline to tune (repeatable; default: both)",
    )
    p.add_argument("--env", action="append", help="id, glob or suite name (repeatable)")
    p.add_argument("--instances", type=int, default=8, help="train instances 0..N-1")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of each grid run")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.set_defaults(func=cmd_tune)


def _ppo_epilog() -> str:
    """PPO's own settings, so ``train ppo --help`` shows what a run will use (or where to
    find them, when the config cannot be read: the parser never fails on it)."""
    try:
        settings = ", ".join(f"{k} {v}" for k, v in load_ppo_config().items())
        recurrent = ", ".join(f"{k} {v}" for k, v in load_ppo_config(recurrent=True).items())
    except (OSError, KeyError, ValueError):  # tomllib.TOMLDecodeError is a ValueError
        return "PPO settings: baselines/ppo/config.toml (SB3 keyword names)."
    return (
        f"PPO settings (SB3 keyword names, from {ppo_config_path().name} in the shipped "
        f"baselines/ppo/; edit there): {settings}. With --recurrent: {recurrent}. A "
        "rollout is n_steps decisions of every slot (copies x layers), so timesteps come "
        "in multiples of n_steps x slots."
    )
