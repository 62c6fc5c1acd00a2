"""PBT of per-layer learning rates on Ray Tune: the reference ``PopulationBasedTraining``.

The same method as the native :mod:`ganno_bench.baselines.pbt`, run by Tune instead of by
a loop here: for one instance, each population member is a Tune trial that plays the
episode one decision at a time and reports its validation loss; every ``ready`` decisions
it saves its env snapshot (weights, optimiser, data stream) and lineage as a Tune
checkpoint. Tune's scheduler exploits (a bottom-quantile trial restarts from a
top-quantile trial's checkpoint) and explores (each layer's rate times a perturbation
factor, or resampled from the prior with ``resample_probability``) with the native
config's quantile, factors and prior; the initial population is the native one (member 0
the instance's initial rate, the others drawn from the prior with the episode's seed).
Members report to Tune at PBT's perturbation points only (every ``ready`` decisions and
at the end): what PBT reads, and a quarter of Tune's per-result cost.
The episode's result is the member with the lowest final validation loss, as natively.

Tune's perturbations draw from Python's ``random`` and numpy's global generator, seeded
with the episode's seed for the run (and restored after). That is not enough for bitwise
repeats: Tune's scheduler acts on results in the order they arrive from the trials'
processes, so two runs of one seed can exploit differently (measured on MLP-Easy test
instance 0: test loss 0.2640 and 0.2623). The native ``pbt`` is the reproducible one.
Ray is optional: this module imports it only when an episode is played.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.baselines.pbt import PBTConfig, log_prior

DIVERGED = 1e30  # a diverged member's reported loss (Tune sorts by it; inf is not JSON)
_CURVES = ("val_loss", "train_loss", "val_accuracy", "reward")


def _checkpoint(state: dict[str, Any]) -> Any:
    """A Tune checkpoint of a member's state (in a fresh folder Tune then owns)."""
    from ray import tune

    folder = Path(tempfile.mkdtemp(prefix="ganno-pbt-"))
    (folder / "member.pkl").write_bytes(pickle.dumps(state))
    return tune.Checkpoint.from_directory(str(folder))


def _load(checkpoint: Any) -> dict[str, Any]:
    with checkpoint.as_directory() as folder:
        return pickle.loads((Path(folder) / "member.pkl").read_bytes())


def _member(
    config: dict[str, Any],
    make_env: Callable[[], Any],
    instance: int,
    seed: int,
    ready: int,
) -> None:
    """One population member as a Tune function trainable: the episode from its start, or
    from the checkpoint Tune hands it after an exploit, one decision per report."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    env = make_env()
    env.reset(seed=seed, options={"instance": instance})
    decisions = env.task.decisions
    low, high = env.task.lr_bounds
    state: dict[str, Any] = {
        "t": 0,
        "lineage": {key: [] for key in (*_CURVES, "lrs")},
        "final": None,
        "val_loss": DIVERGED,
        "ended": False,  # finished or diverged: it idles at its last loss until exploited
    }
    restored = tune.get_checkpoint()
    if restored is not None:
        state = _load(restored)
        snapshot = state.pop("snapshot")
        if snapshot is not None:
            env.restore(snapshot)
    agents = env.possible_agents
    while state["t"] < decisions:
        if not state["ended"]:
            rates = [min(max(float(config[f"lr_{i}"]), low), high) for i in range(len(agents))]
            actions = {a: np.array([math.log10(r)]) for a, r in zip(agents, rates, strict=True)}
            _, rewards, _, _, infos = env.step(actions)
            first = infos[agents[0]]
            for key in ("val_loss", "train_loss", "val_accuracy"):
                state["lineage"][key].append(first[key])
            state["lineage"]["reward"].append(float(rewards[agents[0]]))
            state["lineage"]["lrs"].append([infos[a]["lr"] for a in agents])
            state["val_loss"] = DIVERGED if first["diverged"] else float(first["val_loss"])
            if not env.agents:
                state["final"], state["ended"] = first, True
        state["t"] += 1
        # PBT acts only at its perturbation points: reporting there alone (and at the end)
        # spares Tune's driver three results in four, which on small tasks are its cost
        if state["t"] % ready == 0 or state["t"] == decisions:
            metrics = {"decision": state["t"], "val_loss": state["val_loss"]}
            snapshot = None if state["ended"] else env.snapshot()
            tune.report(metrics, checkpoint=_checkpoint({**state, "snapshot": snapshot}))


class TunePBTAgent:
    """PBT over per-layer rates for one instance, run by Ray Tune (an *outer-loop* agent
    whose card matches the native ``pbt``'s, its config saying ``backend = "ray-tune"``).

    ``address``: a Ray cluster to run the trials on (None: ``RAY_ADDRESS`` if set, else a
    local Ray)."""

    action_mode = "log_lr"

    def __init__(
        self, name: str = "pbt-tune", config: PBTConfig | None = None, address: str | None = None
    ) -> None:
        self.name = name
        self.settings = config or PBTConfig()
        self.address = address
        self.compute_multiple = float(self.settings.population)

    def config(self) -> dict[str, Any]:
        return {"method": "pbt", **asdict(self.settings), "backend": "ray-tune"}

    def initial_population(self, make_env: Callable[[], Any], instance: int, seed: int) -> tuple:
        """The native PBT's first population as Tune configs, the prior and the task's
        bounds as rates, and the episode's decisions."""
        cfg = self.settings
        rng = np.random.default_rng(seed)
        env = make_env()
        env.reset(seed=seed, options={"instance": instance})
        initial = math.log10(float(env.rates[0]))
        prior = log_prior(initial, env.task.lr_bounds, cfg.prior_decades)
        n_layers = len(env.possible_agents)
        members = [
            np.full(n_layers, initial) if m == 0 else rng.uniform(*prior, n_layers)
            for m in range(cfg.population)
        ]
        configs = [{f"lr_{i}": float(10**v) for i, v in enumerate(m)} for m in members]
        return configs, (10 ** prior[0], 10 ** prior[1]), env.task.lr_bounds, env.task.decisions

    def play(self, make_env: Callable[[], Any], instance: int, seed: int) -> dict[str, Any]:
        from ganno_bench.benchmark.ray_backend import connect

        cfg = self.settings
        if not cfg.synchronous:
            raise ValueError("pbt-tune runs synchronous PBT (synchronous = true)")
        ray = connect(self.address)  # or an error saying how to install Ray
        from ray import tune
        from ray.tune.schedulers import PopulationBasedTraining
        from ray.tune.search import BasicVariantGenerator

        configs, (low, high), bounds, decisions = self.initial_population(
            make_env, instance, seed
        )
        layers = len(configs[0])
        mutations = {f"lr_{i}": tune.loguniform(low, high) for i in range(layers)}

        def clip(config: dict[str, Any]) -> dict[str, Any]:  # native clips to the task bounds
            for key in mutations:
                config[key] = min(max(config[key], bounds[0]), bounds[1])
            return config

        scheduler = PopulationBasedTraining(
            time_attr="decision",
            perturbation_interval=cfg.ready,
            hyperparam_mutations=mutations,
            quantile_fraction=cfg.quantile_fraction,
            resample_probability=cfg.resample_probability,
            perturbation_factors=tuple(cfg.perturbation_factors),
            custom_explore_fn=clip,
            synch=True,
        )
        cpus = float(ray.cluster_resources().get("CPU", 1))
        share = min(1.0, cpus / cfg.population)  # every member runs at once: no pausing
        trainable = tune.with_resources(
            tune.with_parameters(
                _member, make_env=make_env, instance=instance, seed=seed, ready=cfg.ready
            ),
            {"cpu": share},
        )
        storage = Path(tempfile.mkdtemp(prefix="ganno-tune-"))
        # the card is the record: no CSV, JSON and TensorBoard logs per trial result
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        saved_random, saved_numpy = random.getstate(), np.random.get_state()
        random.seed(seed)  # Tune's exploit draws from `random`, its resampling from numpy's
        np.random.seed(seed % 2**32)
        try:
            tuner = tune.Tuner(
                trainable,
                param_space=dict(mutations),
                tune_config=tune.TuneConfig(
                    metric="val_loss",
                    mode="min",
                    scheduler=scheduler,
                    num_samples=cfg.population,
                    search_alg=BasicVariantGenerator(points_to_evaluate=configs),
                    # an exploited member continues in its process: no new worker per exploit
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    storage_path=str(storage),
                    name="pbt",
                    verbose=0,
                    # the last decision ends a member before PBT could exploit it again
                    stop={"decision": decisions},
                ),
            )
            results = tuner.fit()
            played = self._best(results)
        finally:
            random.setstate(saved_random)
            np.random.set_state(saved_numpy)
            shutil.rmtree(storage, ignore_errors=True)
        return played

    @staticmethod
    def _best(results: Any) -> dict[str, Any]:
        """The member with the lowest final validation loss (ties: the earliest trial)."""
        rows = []
        for index, result in enumerate(results):
            if result.error is not None:
                raise RuntimeError(f"a PBT member failed: {result.error}")
            rows.append((float(result.metrics["val_loss"]), index, result))
        _, best, result = min(rows, key=lambda r: (r[0], r[1]))
        state = _load(result.checkpoint)
        lineage = state["lineage"]
        final = state["final"]
        if final is None:
            raise RuntimeError("the best PBT member's last checkpoint holds no finished episode")
        return {
            "final": final,
            "curves": {k: lineage[k] for k in _CURVES},
            "lrs": lineage["lrs"],
            "return": float(sum(lineage["reward"])),
            "details": {"best_member": best, "backend": "ray-tune"},
        }
