"""Reference values behind the normalised score, frozen per held-out instance.

For every frozen ``test`` and ``test-ood`` instance of an id, two constant-rate runs
anchor the score: the instance's own initial rate (score 0) and the best constant rate
of a log grid (score 1). The normalised score of an episode with final inner-test loss
``L`` is

    score = (L_default - L) / max(L_default - L_best, eps),  eps = SCORE_FLOOR * L_default,

where ``L_best = min(L_grid, L_default)``. Above 1 beats the per-instance oracle constant.
On many ``test`` instances the default rate is already (nearly) the best constant rate, so
``L_default - L_best`` is tiny or zero; the floor (5% of the default loss) keeps such an
instance's scores on a readable scale instead of multiplying small loss differences by
hundreds. On those instances the best constant rate scores below 1.

The batch-size track (``ganno/BatchSize-*``) has references with the same meaning, in
batch sizes: score 0 at the instance's initial batch size held constant (the learning rate
follows the id's fixed schedule in every run), score 1 at the best constant batch size of
:data:`BATCH_GRID` (8, 32, 128, 512: powers of 4 spanning the track's bounds 8..512). Same
formula, floor and file format; its records name the grid ``grid_batch_size`` (and
``default_batch_size``, ``best_batch_size``) where the LR track's name log10 rates.

Computing them is resumable: each finished instance is appended to a JSONL work file,
and an id's frozen file is written atomically once all its instances are done: the
suite's ids into ``envs/references/<name>.json``, a user's task into the folder named by
``out_dir`` or registered with it (``register(..., references_dir=...)``), as
``<namespace>__<name>.json`` (see :mod:`ganno_bench.benchmark.scoring`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ganno_bench.benchmark import journal
from ganno_bench.benchmark.cards import hardware
from ganno_bench.benchmark.scoring import FORMAT, references_folder, references_path
from ganno_bench.benchmark.threads import init_worker, single_threaded, worker_context
from ganno_bench.envs.registry import UnknownEnvironmentError, make, register, spec, track_of
from ganno_bench.inner.instances import FROZEN_SPLITS, instances_hash
from ganno_bench.inner.task import TaskSpec

# Absolute log10 learning-rate grids, per inner optimiser.
GRIDS: dict[str, tuple[float, ...]] = {
    "sgd": (-3.0, -2.25, -1.5, -0.75, 0.0),
    "adam": (-4.5, -3.75, -3.0, -2.25, -1.5),
}
# Constant batch sizes of the batch-size track's grid: x4 steps over its bounds (8..512).
BATCH_GRID: tuple[int, ...] = (8, 32, 128, 512)
WORK_FILE = "references.partial.jsonl"  # the default work file's name


def _final_test_loss(env: Any, action: Any) -> float:
    infos: dict = {}
    while env.agents:
        *_, infos = env.step(dict.fromkeys(env.agents, action))
    return float(next(iter(infos.values()))["final_test_loss"])


def constant_rate_loss(
    task: TaskSpec,
    split: str,
    index: int,
    log10_lr: float | None,
    overrides: dict[str, Any] | None = None,
) -> float:
    """Final inner-test loss of a constant rate (``None``: the instance's own rate)."""
    overrides = overrides or {}
    if log10_lr is None:
        env = make(task.id, split=split, **overrides)
        env.reset(seed=0, options={"instance": index})
        action: Any = task.factors.index(1.0)  # keep the instance's rate
    else:
        env = make(task.id, split=split, action_mode="log_lr", **overrides)
        env.reset(seed=0, options={"instance": index})
        action = np.array([log10_lr], dtype=np.float32)
    return _final_test_loss(env, action)


def constant_batch_loss(
    task: TaskSpec,
    split: str,
    index: int,
    batch_size: int | None,
    overrides: dict[str, Any] | None = None,
) -> float:
    """Final inner-test loss of a batch-size id run at a constant batch size (``None``: the
    instance's initial one), the learning rate following the id's schedule."""
    overrides = overrides or {}
    if batch_size is None:
        env = make(task.id, split=split, **overrides)
        action: Any = task.factors.index(1.0)  # keep the initial batch size
    else:
        env = make(task.id, split=split, action_mode="absolute", **overrides)
        action = np.array([batch_size], dtype=np.float32)
    env.reset(seed=0, options={"instance": index})
    return _final_test_loss(env, action)


def instance_references(
    env_id: str, split: str, index: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Default and grid losses of one instance (one work item). ``overrides`` (tests and
    quick looks only) change the task; such values are not the shipped references."""
    task = spec(env_id)
    if track_of(task) == "batch-size":
        return _batch_instance_references(task, split, index, overrides)
    grid = GRIDS[task.optimizer]
    default_loss = constant_rate_loss(task, split, index, None, overrides)
    grid_losses = [constant_rate_loss(task, split, index, g, overrides) for g in grid]
    best = int(np.argmin(grid_losses))
    return {
        "env_id": env_id,
        "split": split,
        "instance": index,
        "default_log10_lr": task.frozen_instances(split)[index].log10_lr,
        "default_loss": default_loss,
        "grid_log10_lr": list(grid),
        "grid_loss": grid_losses,
        "best_log10_lr": grid[best],
        "best_loss": grid_losses[best],
    }


def _batch_instance_references(
    task: TaskSpec, split: str, index: int, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    bounded = task.with_overrides(**overrides) if overrides else task
    lo, hi = bounded.batch_bounds
    grid = [b for b in BATCH_GRID if lo <= b <= hi]
    default_loss = constant_batch_loss(task, split, index, None, overrides)
    grid_losses = [constant_batch_loss(task, split, index, b, overrides) for b in grid]
    best = int(np.argmin(grid_losses))
    return {
        "env_id": task.id,
        "split": split,
        "instance": index,
        "default_batch_size": int(np.clip(task.frozen_instances(split)[index].batch_size, lo, hi)),
        "default_loss": default_loss,
        "grid_batch_size": grid,
        "grid_loss": grid_losses,
        "best_batch_size": grid[best],
        "best_loss": grid_losses[best],
    }


def _work_items(ids: Iterable[str], done: set[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    items = []
    for env_id in ids:
        task = spec(env_id)
        for split in FROZEN_SPLITS:
            for index in range(len(task.frozen_instances(split))):
                if (env_id, split, index) not in done:
                    items.append((env_id, split, index))
    return items


def _read_work_file(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Finished items of the work file (a line damaged by a kill is redone)."""
    return {
        (record["env_id"], record["split"], record["instance"]): record
        for record in journal.read_records(path)
        if record is not None
    }


def _run_item(item: tuple[str, str, int], overrides: dict[str, Any]) -> dict[str, Any]:
    return instance_references(*item, overrides=overrides or None)


def _registered_ids(tasks: str | TaskSpec | Sequence[str | TaskSpec]) -> list[str]:
    """Ids of ``tasks``; a TaskSpec not registered yet is registered (episodes, workers
    included, look tasks up by id)."""
    if isinstance(tasks, str | TaskSpec):
        tasks = [tasks]
    ids = []
    for task in tasks:
        if isinstance(task, TaskSpec):
            try:
                known = spec(task.id)
            except UnknownEnvironmentError:
                known = register(task)
            if known != task:
                raise ValueError(
                    f"another task is registered as {task.id!r}; pass its id, or "
                    "register this one with replace=True"
                )
            task = task.id
        ids.append(spec(task).id)
    return ids


def compute_references(
    tasks: str | TaskSpec | Sequence[str | TaskSpec],
    work_file: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
) -> list[Path]:
    """Compute what is missing, appending to ``work_file``; freeze every completed id.

    ``tasks``: an id, a TaskSpec (registered if it is not) or a list of them. Each id's
    file goes to ``out_dir`` when given, else to the folder registered with the task,
    else (the suite's ids) to the shipped folder; an id of another namespace without a
    folder is refused before any work. ``work_file`` defaults to
    ``references.partial.jsonl`` in ``out_dir`` (else the current folder).
    ``overrides`` (tests and quick looks) change every task; the frozen file records them
    and :func:`load_references` refuses it, so it never scores an episode."""
    ids = _registered_ids(tasks)
    homeless = [i for i in ids if references_folder(i, out_dir) is None]
    if homeless:
        raise ValueError(
            f"no folder for the references of {homeless}: pass out_dir=FOLDER, or register "
            "the task with references_dir=FOLDER (then `ganno-bench references` writes "
            "there and evaluation finds them)"
        )
    default_work = Path(out_dir) if out_dir is not None else Path()
    work_file = Path(work_file) if work_file is not None else default_work / WORK_FILE
    overrides = dict(overrides or {})
    done = _read_work_file(work_file)
    items = _work_items(ids, set(done))
    with (
        journal.open_for_append(work_file) as sink,
        tqdm(total=len(items), disable=not progress, desc="references") as bar,
    ):

        def keep(record: dict[str, Any]) -> None:
            journal.append(sink, record)
            done[(record["env_id"], record["split"], record["instance"])] = record
            bar.update()

        if workers <= 1:
            with single_threaded():
                for item in items:
                    keep(instance_references(*item, overrides=overrides or None))
        else:
            with ProcessPoolExecutor(
                workers, mp_context=worker_context(), initializer=init_worker
            ) as pool:
                for future in as_completed([pool.submit(_run_item, i, overrides) for i in items]):
                    keep(future.result())
    frozen = (_freeze(env_id, done, overrides, out_dir) for env_id in ids)
    return [path for path in frozen if path is not None]


def _freeze(
    env_id: str,
    done: dict[tuple[str, str, int], dict[str, Any]],
    overrides: dict[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path | None:
    task = spec(env_id)
    splits = {}
    for split in FROZEN_SPLITS:
        count = len(task.frozen_instances(split))
        records = [done.get((env_id, split, k)) for k in range(count)]
        if any(r is None for r in records):
            return None
        splits[split] = [
            {k: v for k, v in r.items() if k not in ("env_id", "split")} for r in records
        ]
    payload = {
        "format": FORMAT,
        "env_id": env_id,
        "version": task.version,
        "instances_sha256": {s: instances_hash(task.frozen_instances(s)) for s in FROZEN_SPLITS},
        "splits": splits,
        "hardware": hardware(torch_threads=1),  # references are machine-specific bitwise
    }
    if overrides:  # never the case for shipped references (the LR files have no such key)
        payload["overrides"] = dict(overrides)
    path = references_path(env_id, out_dir)
    assert path is not None  # compute_references refused ids without a folder
    path.parent.mkdir(parents=True, exist_ok=True)
    journal.write_atomically(path, json.dumps(payload, indent=1) + "\n")
    return path



