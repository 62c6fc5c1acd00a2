"""An episode's record in a result card, made the same way by every evaluation path."""

from __future__ import annotations

from typing import Any

import numpy as np

from ganno_bench.benchmark.scoring import normalised_score


def episode_seed(seed: int, instance: int) -> int:
    """The seed an episode's env and agent get: distinct per (run seed, instance)."""
    return int(np.random.SeedSequence([seed, instance]).generate_state(1)[0])


def episode_record(
    env_id: str,
    split: str,
    instance: int,
    seed: int,
    played: dict[str, Any],
    references: dict[str, Any] | None,
    wall_time_s: float,
) -> dict[str, Any]:
    """The card's ``episodes`` entry for a played episode (``final`` infos, ``curves``,
    ``lrs``, ``return``), scored against the id's references when there are any."""
    final = played["final"]
    score = None
    if references is not None:
        ref = references[split][instance]
        score = normalised_score(final["final_test_loss"], ref["default_loss"], ref["best_loss"])
    return {
        "env_id": env_id,
        "instance": instance,
        "seed": seed,
        "final_test_loss": final["final_test_loss"],
        "final_test_accuracy": final["final_test_accuracy"],
        "normalised_score": score,
        "diverged": bool(final["diverged"]),
        "return": played["return"],
        "curves": played["curves"],
        "lrs": played["lrs"],
        "wall_time_s": wall_time_s,
    }
