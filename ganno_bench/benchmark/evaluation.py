"""The evaluation protocol: an agent on every frozen instance of a split, for each seed.

Episodes run with one torch thread, so a card's numbers do not depend on how many
processes produced it.

Each finished episode is appended to the run's journal (``<card>.partial.jsonl``) at
once and flushed to disk, so a killed run resumes where it stopped: episodes already in
the journal are not run again and none is written twice. When every episode is in, the
result card is written atomically and the journal removed; running the same evaluation
again then returns that finished card (:func:`finished_card`) instead of recomputing it.
A card records one processor, so the journal records the one it was begun on and a run
on another kind of processor refuses to resume it (float32 results differ across them).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ganno_bench.agents.protocol import Agent, OuterLoopAgent
from ganno_bench.benchmark import journal
from ganno_bench.benchmark.batched_evaluation import batched_unsupported, play_batched
from ganno_bench.benchmark.cards import (
    CARD_KIND,
    SCHEMA_VERSION,
    CardError,
    hardware,
    load_card,
    now,
    processor,
    same_processor,
    write_card,
)
from ganno_bench.benchmark.records import episode_record, episode_seed
from ganno_bench.benchmark.scoring import load_references
from ganno_bench.benchmark.threads import init_worker, single_threaded, worker_context
from ganno_bench.envs.batched_episodes import batching_pays
from ganno_bench.envs.registry import UnknownEnvironmentError, list_envs, make, spec, spec_with
from ganno_bench.inner.instances import instances_hash
from ganno_bench.version import __version__

# Suite names. "all" is the layerwise learning-rate suite (what the tuned baselines cover,
# and the default of `ganno-bench references`); the batch-size track is its own suite,
# "batch-size", with references of its own and its own leaderboard sections.
FAMILY_SUITES = {
    "all": "ganno/LayerLR-*",
    "mlp": "ganno/LayerLR-MLP-*",
    "cnn": "ganno/LayerLR-CNN-*",
    "transformer": "ganno/LayerLR-Transformer-*",
    "batch-size": "ganno/BatchSize-*",
}


def resolve_ids(patterns: Iterable[str]) -> list[str]:
    """Ids from exact ids, shell globs (``ganno/*Easy*``) or suite names (all, mlp, cnn,
    transformer: layerwise learning rate; batch-size: the batch-size track)."""
    ids: list[str] = []
    for pattern in patterns:
        glob = FAMILY_SUITES.get(pattern.lower(), pattern)
        matched = list_envs(glob) if any(c in glob for c in "*?[") else [spec(glob).id]
        if not matched:
            raise UnknownEnvironmentError(
                f"no registered id matches {pattern!r}; suite names: "
                f"{sorted(FAMILY_SUITES)}; `ganno-bench list` shows ids"
            )
        ids += [i for i in matched if i not in ids]
    return ids


def play_episode(agent: Agent, env: Any, instance: int, seed: int) -> dict[str, Any]:
    """One episode of a per-decision agent on ``env``: its final infos, curves, rates and
    return (:class:`~ganno_bench.baselines.best_of.BestOfAgent` plays its members through it)."""
    obs, infos = env.reset(seed=seed, options={"instance": instance})
    agent.reset(env.task, env.instance, list(env.possible_agents), seed)
    if getattr(agent, "privileged", False):  # white-box agents: the one documented path
        if not hasattr(env, "privileged_view"):
            raise ValueError(
                f"{agent.name} is a privileged agent, but {env.task.id} offers no "
                "privileged view (the batch-size track's envs do)"
            )
        agent.attach(env.privileged_view())
    curves: dict[str, list[float]] = {
        "val_loss": [],
        "train_loss": [],
        "val_accuracy": [],
        "reward": [],
    }
    lrs, total = [], 0.0
    while env.agents:
        obs, rewards, _, _, infos = env.step(agent.act(obs, infos))
        first = infos[env.possible_agents[0]]
        reward = float(rewards[env.possible_agents[0]])
        total += reward
        for key in ("val_loss", "train_loss", "val_accuracy"):
            curves[key].append(first[key])
        curves["reward"].append(reward)
        if "batch_size" in first:  # the batch-size track: the batch size of each decision
            curves.setdefault("batch_size", []).append(first["batch_size"])
        lrs.append([infos[a]["lr"] for a in env.possible_agents])
    return {"final": infos[env.possible_agents[0]], "curves": curves, "lrs": lrs, "return": total}


def run_episode(
    agent: Agent | OuterLoopAgent,
    env_id: str,
    split: str,
    instance: int,
    seed: int,
    overrides: dict[str, Any] | None = None,
    references: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Play one episode and return its record (the card's ``episodes`` entry)."""
    start = time.perf_counter()
    seed_of_episode = episode_seed(seed, instance)

    def new_env() -> Any:
        return make(env_id, split=split, action_mode=agent.action_mode, **(overrides or {}))

    if isinstance(agent, OuterLoopAgent):
        played = agent.play(new_env, instance, seed_of_episode)
    else:
        played = play_episode(agent, new_env(), instance, seed_of_episode)
    return episode_record(
        env_id, split, instance, seed, played, references, time.perf_counter() - start
    )


def _run_header(
    agent: Agent,
    ids: Sequence[str],
    split: str,
    seeds: Sequence[int],
    overrides: dict[str, Any],
    instances: Sequence[int] | None,
    engine: str = "sequential",
) -> dict[str, Any]:
    envs = {}
    for env_id in ids:
        task = spec_with(env_id, overrides)
        if split == "train":
            chosen, digest = list(instances or range(task.num_frozen)), None
        else:
            frozen = task.frozen_instances(split)
            chosen = list(instances) if instances is not None else list(range(len(frozen)))
            digest = instances_hash(frozen)
        envs[env_id] = {
            "version": task.version,
            "instances": chosen,
            "instances_sha256": digest,
            "decisions": task.decisions,
        }
        if hasattr(task, "samples_per_decision"):  # batch-size ids count samples, not steps
            envs[env_id]["overrides"] = dict(overrides)
            envs[env_id]["samples_per_decision"] = task.samples_per_decision
        else:  # the LR track's header, key order included, as before
            envs[env_id]["inner_steps"] = task.inner_steps
            envs[env_id]["overrides"] = dict(overrides)
    described = {"name": agent.name, "action_mode": agent.action_mode, "config": agent.config()}
    for key in ("compute_multiple", "privileged"):  # outer-loop and white-box agents say so
        if hasattr(agent, key):
            described[key] = getattr(agent, key)
    header = {"agent": described, "split": split, "seeds": list(seeds), "envs": envs}
    if engine != "sequential":  # cards without the key ran on the reference engine
        header["engine"] = engine
    return header


def _read_journal(path: Path, header: dict[str, Any]) -> dict[tuple[str, int, int], dict]:
    """Episodes already finished by an earlier, interrupted run of the same evaluation. An
    empty journal, or one holding a torn header only (killed before its first write was
    whole), is a run that finished nothing."""
    records = journal.read_records(path)
    if not records:
        return {}
    first = records[0]
    if not isinstance(first, dict) or not isinstance(first.get("header"), dict):
        raise ValueError(
            f"{path} is not a ganno-bench evaluation journal (its first line is not a "
            "header); move it away or choose another --out"
        )
    if json.loads(json.dumps(header)) != first["header"]:
        raise ValueError(
            f"{path} belongs to a different evaluation (agent, ids, split, seeds "
            "or overrides differ); choose another --out, or delete it to start over"
        )
    begun_on = first.get("ran_on")  # journals written before it was recorded do not say
    if begun_on is not None and not same_processor(begun_on):
        here = processor()
        raise ValueError(
            f"{path} holds episodes played on {_describe(begun_on)}, but this machine is "
            f"{_describe(here)}: float32 results differ bitwise across processors and a card "
            "records one, so finish the run on the machine that began it, or delete the "
            "journal to play every episode here"
        )
    done = {}
    for record in records[1:]:
        if record is None:  # a line damaged by an older version's kill: run it again
            continue
        done[(record["env_id"], record["instance"], record["seed"])] = record
    return done


def _describe(processor: dict[str, Any]) -> str:
    isa = processor.get("torch_cpu_capability")
    return f"{processor.get('cpu_model')} (torch CPU capability {isa})"


def finished_card(
    out: str | os.PathLike | None,
    agent: Agent | OuterLoopAgent,
    ids: Sequence[str] | str,
    split: str = "test",
    seeds: Sequence[int] = (0, 1, 2),
    *,
    overrides: dict[str, Any] | None = None,
    instances: Sequence[int] | None = None,
) -> dict[str, Any] | None:
    """The card at ``out`` if it holds exactly this evaluation, finished (same agent and
    configuration, ids with their versions and instances, split, seeds and overrides), else
    None: what :func:`evaluate` returns instead of running it again."""
    if out is None or not Path(out).exists():
        return None
    ids = resolve_ids([ids] if isinstance(ids, str) else ids)
    header = json.loads(
        json.dumps(_run_header(agent, ids, split, seeds, dict(overrides or {}), instances))
    )
    try:
        card = load_card(out)
    except CardError:
        return None
    if {key: card.get(key) for key in header} != header:
        return None
    wanted = {(i, k, s) for i in ids for k in header["envs"][i]["instances"] for s in seeds}
    have = {(e["env_id"], e["instance"], e["seed"]) for e in card["episodes"]}
    return card if have == wanted else None


def _worker_episode(args: tuple) -> dict[str, Any]:
    return run_episode(*args)


ENGINES = ("sequential", "batched")
# Where episodes run: this machine's processes (``workers`` of them), or Ray tasks on this
# machine or a cluster (``ganno_bench.benchmark.ray_backend``). The episodes are the same.
BACKENDS = ("processes", "ray")


def _check_backend(backend: str, engine: str, address: str | None) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "ray" and engine == "batched":
        raise ValueError(
            "the batched engine plays its episodes in this process: use --backend processes "
            "with --engine batched, or the sequential engine on Ray"
        )
    if address is not None and backend != "ray":
        raise ValueError(f"an address is a Ray cluster's: pass backend='ray' with {address!r}")


def _engine_for(agent: Any, ids: Sequence[str], engine: str, batch_size: int) -> str:
    """The engine the run will use: ``engine``, unless the agent or an id needs the
    sequential one (then a warning names the reason)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "sequential":
        return engine
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    reasons = [r for env_id in ids if (r := batched_unsupported(agent, env_id)) is not None]
    if reasons:
        warnings.warn(
            f"evaluating on the sequential engine: {reasons[0]}", RuntimeWarning, stacklevel=3
        )
        return "sequential"
    return engine


def _run_batches(
    agent: Agent,
    todo: Sequence[tuple[str, int, int]],
    split: str,
    overrides: dict[str, Any],
    references: dict[str, Any],
    batch_size: int,
    device: str,
    keep: Callable[[dict[str, Any]], None],
) -> None:
    """The episodes of each id in batches of ``batch_size``, each batch in one engine."""
    with single_threaded():
        for env_id in dict.fromkeys(e for e, _, _ in todo):
            mine = [(k, s, episode_seed(s, k)) for e, k, s in todo if e == env_id]
            task = spec_with(env_id, overrides)
            for start in range(0, len(mine), batch_size):
                chunk = mine[start : start + batch_size]
                if not batching_pays(task, len(chunk), device):  # one CNN episode
                    (k, s, _), ref = chunk[0], references[env_id]
                    keep(run_episode(agent, env_id, split, k, s, overrides, ref))
                    continue
                for record in play_batched(
                    agent, env_id, split, chunk, overrides, references[env_id], device
                ):
                    keep(record)


def evaluate(
    agent: Agent | OuterLoopAgent,
    ids: Sequence[str] | str,
    split: str = "test",
    seeds: Sequence[int] = (0, 1, 2),
    *,
    out: str | os.PathLike | None = None,
    workers: int | None = 1,
    overrides: dict[str, Any] | None = None,
    instances: Sequence[int] | None = None,
    progress: bool = True,
    engine: str = "sequential",
    batch_size: int = 32,
    device: str = "cpu",
    references_dir: str | os.PathLike | None = None,
    rerun: bool = False,
    backend: str = "processes",
    address: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``agent`` on every frozen instance of ``split`` for each seed; return the card.

    ``ids``: ids, globs or suite names. ``out``: the card's path; its journal makes the
    run resumable, and a finished card of the same evaluation there is returned as it is
    (see :func:`finished_card`) unless ``rerun``. ``workers`` > 1 runs episodes in that many
    processes. ``instances`` restricts the run to some instance indices (e.g. for a quick
    look).
    ``engine="batched"`` plays up to ``batch_size`` episodes of an id at once over the
    batched engine (on ``device``), for agents that act per decision; outer-loop and
    privileged agents, and batch-size ids, keep the sequential engine (a warning says so).
    The card records the engine its episodes ran on.
    ``backend="ray"`` plays each episode as a Ray task (at most ``workers`` at once; None:
    one per CPU of the cluster) on a local Ray, or on the cluster at ``address``; the
    episodes equal the process pool's, and the card says ``"backend": "ray"`` (cards without
    the key ran in local processes). Resuming works across backends.
    ``references_dir``: the folder of the references that score the episodes, for user
    tasks registered without one (the default: the registered or shipped folder).
    """
    from tqdm import tqdm

    ids = resolve_ids([ids] if isinstance(ids, str) else ids)
    overrides = dict(overrides or {})
    if not rerun:
        card = finished_card(
            out, agent, ids, split, seeds, overrides=overrides, instances=instances
        )
        if card is not None:
            return card
    _check_backend(backend, engine, address)
    engine = _engine_for(agent, ids, engine, batch_size)
    header = _run_header(agent, ids, split, seeds, overrides, instances, engine)
    journal_path = Path(str(out) + ".partial.jsonl") if out is not None else None
    done = _read_journal(journal_path, header) if journal_path is not None else {}
    # References hold for the shipped tasks on frozen instances only: an override (budget,
    # data, ...) changes the task, so its episodes get no normalised score.
    if split == "train" or overrides:
        references = dict.fromkeys(ids)
    else:
        references = {env_id: load_references(env_id, references_dir) for env_id in ids}
    todo = [
        (env_id, k, s)
        for env_id in ids
        for k in header["envs"][env_id]["instances"]
        for s in seeds
        if (env_id, k, s) not in done
    ]

    # The header is on disk before the first episode starts (a kill in that window must
    # leave a journal to resume), and a torn last line is repaired before appending.
    first_line = {"header": header, "ran_on": processor()}
    sink = journal.open_for_append(journal_path, first_line) if journal_path else None
    bar = tqdm(
        total=len(todo) + len(done),
        initial=len(done),
        disable=not progress,
        desc=f"{agent.name} on {split}",
        unit="episode",
    )

    def keep(record: dict[str, Any]) -> None:
        done[(record["env_id"], record["instance"], record["seed"])] = record
        if sink is not None:
            journal.append(sink, record)
        bar.update()

    try:
        jobs = [
            (agent, env_id, split, k, s, overrides, references[env_id]) for env_id, k, s in todo
        ]
        if engine == "batched":
            _run_batches(agent, todo, split, overrides, references, batch_size, device, keep)
        elif backend == "ray":
            from ganno_bench.benchmark import ray_backend

            specs = {env_id: spec(env_id) for env_id in ids}
            ray_backend.run_episodes(
                run_episode, jobs, specs, keep, address=address, workers=workers
            )
        elif workers is None or workers <= 1:
            with single_threaded():
                for job in jobs:
                    keep(run_episode(*job))
        else:
            with ProcessPoolExecutor(
                workers, mp_context=worker_context(), initializer=init_worker
            ) as pool:
                for future in as_completed([pool.submit(_worker_episode, j) for j in jobs]):
                    keep(future.result())
    finally:
        bar.close()
        if sink is not None:
            sink.close()

    order = {
        key: i
        for i, key in enumerate(
            (env_id, k, s)
            for env_id in ids
            for k in header["envs"][env_id]["instances"]
            for s in seeds
        )
    }
    card = {
        "kind": CARD_KIND,
        "schema_version": SCHEMA_VERSION,
        **header,
        "episodes": sorted(
            done.values(), key=lambda r: order[(r["env_id"], r["instance"], r["seed"])]
        ),
        "package_version": __version__,
        "hardware": hardware(torch_threads=1),  # every episode ran single-threaded
        "created": now(),
    }
    if backend != "processes":  # outside the header: a run may resume on another backend
        card["backend"] = backend
    if out is not None:
        write_card(card, out)
        journal_path.unlink(missing_ok=True)
    return card
