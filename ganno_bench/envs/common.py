"""What the suite's envs share: building the engine for a task, choosing the episode's
instance, and the final scores. One implementation, so every track resets and scores alike."""

from __future__ import annotations

import math

import numpy as np
import torch

from ganno_bench.engine import TorchTrainer
from ganno_bench.instances import Instance, frozen_instance
from ganno_bench.task import TaskSpec


def build_trainer(task: TaskSpec, device: str) -> tuple[TorchTrainer, int]:
    """The task's network, data and optimiser in an engine; also the number of classes."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for but CUDA is not available; use device='cpu'"
        )
    dataset = task.load_data()
    with torch.random.fork_rng(devices=[]):  # building layers draws from the global RNG
        network = task.build_network(dataset.input_shape, dataset.num_classes)
    trainer = TorchTrainer(
        network,
        dataset,
        optimizer=task.optimizer,
        weight_decay=task.weight_decay,
        stats_window=task.stats_window,
        eval_batch_size=task.eval_batch_size,
        nonlinearity=getattr(task.model, "activation", "relu"),
        device=device,
    )
    return trainer, dataset.num_classes


def choose_instance(
    task: TaskSpec, split: str, np_random: np.random.Generator, options: dict
) -> Instance:
    """``options["instance"]``: an index into the split, an Instance, or its dict; without
    it, a frozen instance of a held-out split or a fresh draw from the train split."""
    chosen = options.get("instance")
    frozen = split != "train"
    if chosen is None:
        if frozen:
            pool = task.frozen_instances(split)
            return pool[int(np_random.integers(len(pool)))]
        return task.spaces["train"].sample(np_random)
    if isinstance(chosen, Instance):
        return chosen
    if isinstance(chosen, dict):
        return Instance.from_dict(chosen)
    if not isinstance(chosen, int | np.integer) or chosen < 0:
        raise ValueError(
            f"options['instance'] must be a non-negative index, an Instance or "
            f"its dict; got {chosen!r}"
        )
    if frozen:
        pool = task.frozen_instances(split)
        if chosen >= len(pool):
            raise ValueError(
                f"split {split!r} of {task.id} has {len(pool)} frozen "
                f"instances (0..{len(pool) - 1}); got instance={chosen}"
            )
        return pool[int(chosen)]
    return frozen_instance(task.id, task.spaces["train"], "train", int(chosen))


def final_scores(
    trainer: TorchTrainer,
    task: TaskSpec,
    *,
    diverged: bool,
    val_loss: float,
    initial_val_loss: float,
) -> dict[str, float]:
    """Inner-test loss and accuracy at the episode's end (the suite's score); a diverged
    or non-finite loss is capped at ``divergence_factor`` x the initial validation loss."""
    cap = task.divergence_factor * initial_val_loss
    if diverged:
        loss, accuracy = math.inf, 0.0
    else:
        loss, accuracy = trainer.evaluate("test")
    if not math.isfinite(loss):  # a documented cap keeps the score finite
        loss = cap
    return {
        "final_test_loss": float(loss),
        "final_test_accuracy": float(accuracy),
        "final_val_loss": float(min(val_loss, cap)),
    }
