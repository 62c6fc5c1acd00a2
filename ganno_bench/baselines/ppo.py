"""Train one parameter-shared PPO policy on an id's layers (SB3 through SuperSuit).

Every layer of every env copy is one slot of the vector env (:func:`make_vec_env`), so the
policy learns from all layers at once and maps one layer's observation to its factor, which
lets it drive networks of any depth afterwards (:class:`PolicyAgent`). Training uses the
``train`` split only. A run folder holds::

    run.json            what was asked (id, seed, policy, overrides); a resume must match it
    checkpoints/        ppo_<timesteps>.zip, written atomically every ``checkpoint_every``
    evaluations.jsonl   periodic evaluation on train instances, one line per evaluation
    tb/                 TensorBoard logs (``tensorboard --logdir DIR/tb``)
    final.zip           the trained policy

Running the same command again resumes from the newest checkpoint; the resumed run reseeds
its envs and torch from ``seed`` and the checkpoint's step count, so it is reproducible too.
Hyperparameters come from ``baselines/ppo/config.toml``. A run may start from a trained
policy instead of a fresh one (``init_from``, a warm start: fine-tuning on other ids);
its timesteps then count from zero, and a resume still takes the run's newest checkpoint.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from ganno_bench.baselines.policy import PolicyAgent, load_policy, portable_path
from ganno_bench.benchmark.evaluation import evaluate, single_threaded
from ganno_bench.benchmark.journal import atomic_target, write_atomically
from ganno_bench.envs.mixed_vector import make_mixed_vec_env
from ganno_bench.envs.registry import spec, track_of
from ganno_bench.envs.vector import make_vec_env

__all__ = ["latest_checkpoint", "load_ppo_config", "train_ppo"]

_CHECKPOINT = re.compile(r"ppo_(\d+)\.zip$")


def ppo_config_path() -> Path:
    from ganno_bench.baselines.files import baselines_dir

    return baselines_dir() / "ppo" / "config.toml"


def load_ppo_config(recurrent: bool = False, path: str | Path | None = None) -> dict[str, Any]:
    """The ``[ppo]`` (or ``[recurrent]``) table of the PPO config, as SB3 keyword arguments."""
    path = Path(path) if path is not None else ppo_config_path()
    table = tomllib.loads(path.read_text())["recurrent" if recurrent else "ppo"]
    return dict(table)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the most timesteps in ``run_dir/checkpoints``, if any."""
    found = [
        (int(m.group(1)), p)
        for p in (Path(run_dir) / "checkpoints").glob("ppo_*.zip")
        if (m := _CHECKPOINT.search(p.name))
    ]
    return max(found)[1] if found else None


def _save_atomically(model: Any, path: Path) -> None:
    """Save to a temporary file and rename it, so a killed run leaves no broken zip."""
    with atomic_target(path, suffix=".tmp.zip") as tmp:  # SB3 would add .zip to another name
        model.save(tmp)


class _Checkpoints(BaseCallback):
    """Save ``checkpoints/ppo_<timesteps>.zip`` once ``every`` more timesteps are done, and
    at the end. Saves happen between rollouts (after an update), so a checkpoint's step
    count is a whole number of rollouts and resuming loses no collected experience."""

    def __init__(self, folder: Path, every: int) -> None:
        super().__init__()
        self.folder, self.every = folder, every
        self._next = every

    def _on_training_start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _save(self) -> None:
        _save_atomically(self.model, self.folder / f"ppo_{self.num_timesteps}.zip")
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self._next:
            self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._save()


class _TrainSplitEvaluation(BaseCallback):
    """Every ``every`` timesteps, play the current policy on train instances and log it.

    Logs the mean episode return and final validation loss (``eval/*`` in TensorBoard) and
    appends them to ``evaluations.jsonl``. The instances are fixed, so the curve compares
    the policy with itself over training.
    """

    def __init__(
        self,
        env_ids: Sequence[str],
        every: int,
        instances: Sequence[int],
        seed: int,
        out: Path,
        overrides: dict[str, Any],
    ) -> None:
        super().__init__()
        self.env_ids, self.every, self.instances = list(env_ids), every, list(instances)
        self.seed, self.out, self.overrides = seed, out, overrides
        self._next = every
        self._started = time.time()  # set again when (resumed) training starts

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every
        self._started = time.time()

    def _on_step(self) -> bool:
        if self.instances and self.num_timesteps >= self._next:
            self.record()
            self._next = (self.num_timesteps // self.every + 1) * self.every
        return True

    def record(self) -> dict[str, Any]:
        card = evaluate(
            PolicyAgent(self.model, name="ppo"),
            self.env_ids,
            "train",
            seeds=[self.seed],
            instances=self.instances,
            overrides=self.overrides,
            progress=False,
        )
        episodes = card["episodes"]
        entry = {
            "timesteps": int(self.num_timesteps),
            "mean_return": float(np.mean([e["return"] for e in episodes])),
            "mean_final_val_loss": float(np.mean([e["curves"]["val_loss"][-1] for e in episodes])),
            "diverged_fraction": float(np.mean([e["diverged"] for e in episodes])),
            # when, and how long this process has trained: a run's wall time across
            # resumed segments (the evaluations' own time included)
            "unix_time": round(time.time(), 1),
            "segment_s": round(time.time() - self._started, 1),
        }
        for key in ("mean_return", "mean_final_val_loss", "diverged_fraction"):
            self.logger.record(f"eval/{key}", entry[key])
        with open(self.out, "a") as sink:
            sink.write(json.dumps(entry) + "\n")
        return entry


class _Progress(BaseCallback):
    """A tqdm bar over the run's timesteps (starting from a resumed run's count)."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", desc="PPO")

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def _resume_seed(seed: int, timesteps: int) -> int:
    """``seed`` for a fresh run; for a resumed one a seed derived from (seed, timesteps)."""
    if timesteps == 0:
        return seed
    return int(np.random.SeedSequence([seed, timesteps]).generate_state(1)[0])


def _forget_evaluations_after(path: Path, timesteps: int) -> None:
    """Drop evaluations made after the checkpoint a run resumes from (they are redone)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line and json.loads(line)["timesteps"] <= timesteps]
    if len(kept) != len(lines):
        write_atomically(path, "".join(line + "\n" for line in kept))


def _check_run_file(run_dir: Path, request: dict[str, Any]) -> None:
    """Check that a resumed run asks for the same training as its ``run.json`` says (a new
    run's file is written by :func:`_write_run_file` once its model exists, so a refused
    start leaves nothing behind)."""
    path = run_dir / "run.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != request:
            differ = sorted(
                k for k in request.keys() | stored.keys() if stored.get(k) != request.get(k)
            )
            raise ValueError(
                f"{run_dir} holds another training run ({', '.join(differ)} differ); "
                "choose another --out, or delete the folder to start over"
            )


def _write_run_file(run_dir: Path, request: dict[str, Any]) -> None:
    """Write a new run's ``run.json`` (a resumed run's is already there and checked)."""
    path = run_dir / "run.json"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(request, indent=2) + "\n")


def _check_warm_start(
    path: str | Path,
    model: Any,
    venv: Any,
    algorithm: type,
    policy: str,
    settings: dict[str, Any],
    policy_kwargs: dict[str, Any],
) -> None:
    """Refuse to fine-tune the policy ``model`` (loaded from ``path``) with another recipe:
    its hyperparameters and network must be the run's (a fine-tune that silently trained
    with another recipe's settings would be recorded wrongly in run.json), and its rollout
    buffer must fit the vector env's slots."""
    if model.n_envs != venv.num_envs:
        raise ValueError(
            f"--init-from {path} was trained with {model.n_envs} vector-env slots; this run has "
            f"{venv.num_envs}: choose --copies so that the slots match"
        )

    def value(name: str) -> Any:  # SB3 keeps some settings as schedules or private fields
        stored = getattr(model, name, getattr(model, f"_{name}", None))
        return stored(1.0) if callable(stored) else stored

    differ = sorted(name for name, wanted in settings.items() if value(name) != wanted)
    if type(model) is not algorithm:
        differ.append(f"algorithm ({type(model).__name__})")
    if type(model.policy) is not model.policy_aliases.get(policy):
        differ.append("policy")
    if model.policy_kwargs != policy_kwargs:
        differ.append(f"policy_kwargs {model.policy_kwargs}")
    if differ:
        raise ValueError(
            f"--init-from {path} was trained with other PPO settings ({', '.join(differ)}): "
            "use the recipe (--config, --recurrent) it was trained with"
        )


def train_ppo(
    env_id: str | Sequence[str],
    timesteps: int,
    seed: int = 0,
    out: str | Path = "runs/ppo",
    *,
    recurrent: bool = False,
    num_copies: int | None = None,
    num_cpus: int = 0,
    checkpoint_every: int = 10_000,
    eval_every: int = 10_000,
    eval_instances: int = 8,
    resume_from: str | Path | None = None,
    init_from: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = True,
    engine: str = "batched",
) -> Path:
    """Train PPO on ``env_id``'s train split for ``timesteps`` slot-steps; return final.zip.

    A timestep is one layer's decision (SB3 counts vector-env slots); SB3 finishes the
    rollout it is in, so a run may end up to one rollout past ``timesteps``. Resumes from
    ``resume_from`` or the run folder's newest checkpoint; a run with neither starts from
    the policy ``init_from`` (its weights and optimiser state, its hyperparameters equal to
    the config's) with its timestep count at zero. ``config`` replaces the shipped
    hyperparameters (see :func:`load_ppo_config`); ``overrides`` go to the env (budget).
    Several ids train one policy on a mix (``num_copies`` copies of each, one rollout).
    ``engine="batched"`` trains each id's copies in one batched computation (layerwise-LR
    ids; the batch-size track always runs the sequential engine); ``"sequential"`` steps
    one env per copy through SuperSuit.
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be positive; got {timesteps}")
    env_ids = [env_id] if isinstance(env_id, str) else list(env_id)
    if not env_ids:
        raise ValueError("train_ppo needs at least one id")
    tracks = {track_of(spec(i)) for i in env_ids}  # an unknown id fails here, with close ids
    if len(tracks) > 1:
        raise ValueError(f"a training mix must hold ids of one track; got {env_ids}")
    if "batch-size" in tracks:
        engine = "sequential"  # the batched engine runs the layerwise-LR track
    run_dir = Path(out)
    overrides = dict(overrides or {})
    settings = dict(config if config is not None else load_ppo_config(recurrent))
    copies = int(num_copies or settings.pop("num_copies", 4))
    settings.pop("num_copies", None)
    policy = settings.pop("policy")
    policy_kwargs = {"net_arch": list(settings.pop("net_arch", [64, 64]))}
    if "lstm_hidden_size" in settings:
        policy_kwargs["lstm_hidden_size"] = int(settings.pop("lstm_hidden_size"))
    request = {
        "env_id": env_ids[0] if len(env_ids) == 1 else env_ids,
        "seed": seed,
        "recurrent": recurrent,
        "num_copies": copies,
        "policy": policy,
        "policy_kwargs": policy_kwargs,
        "hyperparameters": settings,
        "overrides": overrides,
        "engine": engine,
        **({"init_from": portable_path(Path(init_from))} if init_from is not None else {}),
    }
    _check_run_file(run_dir, request)
    if recurrent:
        from sb3_contrib import RecurrentPPO as Algorithm
    else:
        from stable_baselines3 import PPO as Algorithm

    checkpoint = Path(resume_from) if resume_from is not None else latest_checkpoint(run_dir)
    if engine == "batched" and num_cpus > 1:
        raise ValueError("--cpus runs SuperSuit worker processes: use it with --engine sequential")
    if len(env_ids) == 1:
        venv = make_vec_env(
            env_ids[0],
            copies,
            num_cpus=num_cpus,
            split="train",
            action_mode="factor",
            engine=engine,
            **overrides,
        )
    else:
        venv = make_mixed_vec_env(
            env_ids, copies, split="train", action_mode="factor", engine=engine, **overrides
        )
    try:
        if checkpoint is not None or init_from is not None:  # a resume, or a warm start
            if checkpoint is None and not Path(init_from).is_file():
                raise FileNotFoundError(f"--init-from {init_from}: no such policy file")
            model = load_policy(checkpoint or init_from, device=device)
            if checkpoint is None:
                _check_warm_start(
                    init_from, model, venv, Algorithm, policy, settings, policy_kwargs
                )
                model.num_timesteps = 0  # the fine-tune counts its own timesteps
            model.set_env(venv)
            model.tensorboard_log = str(run_dir / "tb")
            model._last_obs = None  # the saved observation belongs to the old envs: reset
        else:
            model = Algorithm(
                policy,
                venv,
                seed=seed,
                device=device,
                tensorboard_log=str(run_dir / "tb"),
                policy_kwargs=policy_kwargs,
                verbose=0,
                **settings,
            )
        _write_run_file(run_dir, request)
        # what the policy was trained on travels in its zip (PolicyAgent checks the track)
        model.ganno_env_id, model.ganno_track = env_ids[0], track_of(env_ids[0])
        model.ganno_env_ids = env_ids
        # reseed from (seed, steps done): a resumed run is as reproducible as a fresh one,
        # and its streams are not another seed's
        model.set_random_seed(_resume_seed(seed, model.num_timesteps))
        _forget_evaluations_after(run_dir / "evaluations.jsonl", model.num_timesteps)
        callbacks = [
            _Checkpoints(run_dir / "checkpoints", checkpoint_every),
            _TrainSplitEvaluation(
                env_ids,
                eval_every,
                range(eval_instances),
                seed,
                run_dir / "evaluations.jsonl",
                overrides,
            ),
        ]
        if progress:
            callbacks.append(_Progress(timesteps))
        remaining = timesteps - model.num_timesteps
        if remaining > 0:
            with single_threaded():
                model.learn(
                    remaining,
                    callback=CallbackList(callbacks),
                    reset_num_timesteps=checkpoint is None,
                    tb_log_name="ppo",
                )
        final = run_dir / "final.zip"
        _save_atomically(model, final)
        return final
    finally:
        venv.close()
