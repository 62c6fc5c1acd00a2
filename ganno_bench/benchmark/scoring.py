"""The normalised score and the frozen references it is measured against.

0 at the instance's own constant learning rate (or initial batch size), 1 at the best
constant of the reference grid, and never below -1 (see :func:`normalised_score`).
References are keyed by the full id: the suite's own
(``ganno/...``) are shipped in ``envs/references/<name>.json``; any other namespace's live
in a folder the user names, as ``<namespace>__<name>.json`` (see :func:`references_folder`).
They are refused when they were computed for another id, other instances or with
overrides.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ganno_bench.envs.registry import registered_references_dir, spec
from ganno_bench.envs.suite import NAMESPACE, suite_dir
from ganno_bench.inner.instances import FROZEN_SPLITS, instances_hash

FORMAT = 1
SCORE_FLOOR = 0.05  # the score's denominator is at least this share of the default loss
# The lowest score: an episode that ends further above the default's loss than the default
# is above the best constant's has failed, and every failure counts the same.
SCORE_BOUND = -1.0


def normalised_score(loss: float, default_loss: float, best_loss: float) -> float:
    """0 at the instance's default constant rate, 1 at the best constant rate of the grid.

    Bounded below at -1: ``L > L_default + gap`` (gap = the denominator) scores -1 however
    large ``L`` is, so one diverged episode (a final loss of 1,000 against a gap of 0.1
    would be -10,000) cannot dominate a mean or an optimality gap; the raw loss stays in
    the card, and the divergence rate is reported beside the score. A loss that is not
    finite scores -1 too. Above, the score is at most ``1 / SCORE_FLOOR`` (a loss of 0).
    """
    best = min(best_loss, default_loss)
    raw = (default_loss - loss) / max(default_loss - best, SCORE_FLOOR * default_loss)
    return raw if raw > SCORE_BOUND else SCORE_BOUND  # NaN fails the test: the bound


def rescore(card: dict[str, Any], references_dir: str | os.PathLike | None = None) -> int:
    """Recompute ``card``'s normalised scores in place from its final test losses and the
    references (after the formula or the references change); episodes of overridden
    tasks keep a null score. ``references_dir``: see :func:`references_path`. Returns how
    many scores changed."""
    changed = 0
    for episode in card["episodes"]:
        env = card["envs"][episode["env_id"]]
        if env.get("overrides") or card["split"] == "train":
            continue
        references = load_references(episode["env_id"], references_dir)
        if references is None:
            continue
        ref = references[card["split"]][episode["instance"]]
        score = normalised_score(episode["final_test_loss"], ref["default_loss"], ref["best_loss"])
        changed += score != episode["normalised_score"]
        episode["normalised_score"] = score
    return changed


def shipped_references_dir() -> Path:
    """The suite's own references (``envs/references``), for ids of its namespace."""
    return suite_dir() / "references"


def references_file_name(env_id: str) -> str:
    """The file of an id's references, named by the full id: ``<name>.json`` for the
    suite's namespace (the shipped files), ``<namespace>__<name>.json`` for any other, so
    ``mylab/LayerLR-MLP-Easy-v0`` never reads the suite's file of the same name."""
    namespace, _, name = env_id.rpartition("/")
    if namespace in ("", NAMESPACE):
        return f"{name}.json"
    return f"{namespace.replace('/', '__')}__{name}.json"


def references_folder(
    env_id: str, references_dir: str | os.PathLike | None = None
) -> Path | None:
    """Where an id's references live: ``references_dir`` when given, else the folder
    registered with the id (``register(..., references_dir=...)``), else the shipped folder
    for the suite's namespace; None for another namespace's id without a folder."""
    if references_dir is not None:
        return Path(references_dir)
    registered = registered_references_dir(env_id)
    if registered is not None:
        return registered
    return shipped_references_dir() if env_id.startswith(f"{NAMESPACE}/") else None


def references_path(env_id: str, references_dir: str | os.PathLike | None = None) -> Path | None:
    """The references file of ``env_id`` (see :func:`references_folder`), or None."""
    folder = references_folder(env_id, references_dir)
    return None if folder is None else folder / references_file_name(env_id)


def load_references(
    env_id: str, references_dir: str | os.PathLike | None = None
) -> dict[str, list[dict[str, Any]]] | None:
    """An id's frozen references per split, or None when there are none (its episodes
    then get no normalised score)."""
    path = references_path(env_id, references_dir)
    if path is None or not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("env_id", env_id) != env_id:
        raise ValueError(
            f"{path} holds the references of {data['env_id']!r}, not {env_id!r}; move it "
            f"away and compute {env_id}'s own (`ganno-bench references --env {env_id}`)"
        )
    if data.get("overrides"):
        raise ValueError(
            f"{path} was computed with overrides {data['overrides']} (a quick look), not "
            f"for the registered task; run `ganno-bench references --env {env_id}`"
        )
    task = spec(env_id)
    for split in FROZEN_SPLITS:
        if data["instances_sha256"][split] != instances_hash(task.frozen_instances(split)):
            raise ValueError(
                f"{path} was computed for other {split} instances than {env_id} has "
                f"now; run `ganno-bench references --env {env_id}` again"
            )
    return data["splits"]
