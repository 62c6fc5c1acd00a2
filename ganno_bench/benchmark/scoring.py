"""The normalised score and the frozen references it is measured against.

0 at the instance's own constant learning rate (or initial batch size), 1 at the best
constant of the reference grid, and never below -1 (see :func:`normalised_score`);
references are read from ``envs/references/`` and refused when they were computed for
other instances or with overrides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganno_bench.envs.registry import spec
from ganno_bench.envs.suite import suite_dir
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


def rescore(card: dict[str, Any]) -> int:
    """Recompute ``card``'s normalised scores in place from its final test losses and the
    shipped references (after the formula or the references change); episodes of
    overridden tasks keep a null score. Returns how many scores changed."""
    changed = 0
    for episode in card["episodes"]:
        env = card["envs"][episode["env_id"]]
        if env.get("overrides") or card["split"] == "train":
            continue
        references = load_references(episode["env_id"])
        if references is None:
            continue
        ref = references[card["split"]][episode["instance"]]
        score = normalised_score(episode["final_test_loss"], ref["default_loss"], ref["best_loss"])
        changed += score != episode["normalised_score"]
        episode["normalised_score"] = score
    return changed


def references_dir() -> Path:
    return suite_dir() / "references"


def references_path(env_id: str) -> Path:
    return references_dir() / f"{env_id.split('/')[-1]}.json"


def load_references(env_id: str) -> dict[str, list[dict[str, Any]]] | None:
    """An id's frozen references per split, or None when none are shipped."""
    path = references_path(env_id)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("overrides"):
        raise ValueError(
            f"{path} was computed with overrides {data['overrides']} (a quick look), not "
            "for the shipped task; run `ganno-bench references` for this id"
        )
    task = spec(env_id)
    for split in FROZEN_SPLITS:
        if data["instances_sha256"][split] != instances_hash(task.frozen_instances(split)):
            raise ValueError(
                f"{path} was computed for other {split} instances than {env_id} has "
                "now; run `ganno-bench references` again for this id"
            )
    return data["splits"]
