"""The inner-training engine's interface: what an env asks of the training it controls.

Envs talk to an :class:`InnerTrainer` and read :class:`DecisionStats`;
:class:`~ganno_bench.inner.torch_trainer.TorchTrainer` is the reference engine (one
network, eager PyTorch), the definition of the benchmark's numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganno_bench.inner.instances import Instance

PROBE_SALT = 0x5EED_0F_9A  # offsets the probe stream's seed from the data order's


@dataclass(frozen=True)
class LayerInfo:
    """Static facts about one trainable layer (one agent)."""

    kind: str  # "linear" or "conv"
    fan_in: int
    depth: float  # 0 for the first layer, 1 for the last


@dataclass(frozen=True)
class DecisionStats:
    """What the engine measured over one decision's inner steps (arrays are per layer)."""

    train_loss: float
    grad_norm: np.ndarray
    weight_norm: np.ndarray
    update_ratio: np.ndarray
    grad_cosine: np.ndarray
    grad_noise: np.ndarray

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.train_loss) and np.isfinite(self.weight_norm).all())


@dataclass(frozen=True)
class GradientProbe:
    """Gradients at the current weights on ``chunks`` disjoint batches of ``small`` samples.

    ``small_sq_norm`` is the mean squared norm of the chunks' gradients (batch size
    ``small``), ``big_sq_norm`` the squared norm of their mean (batch size
    ``small * chunks``): the two measurements behind the gradient noise scale.
    """

    small: int
    chunks: int
    loss: float
    small_sq_norm: float
    big_sq_norm: float
    mean_grad: torch.Tensor

    @property
    def big(self) -> int:
        return self.small * self.chunks


class InnerTrainer(ABC):
    """Interface between an env and the inner training it controls."""

    layers: list[LayerInfo]

    @abstractmethod
    def start(self, instance: Instance) -> None:
        """Initialise weights, optimiser and data stream for ``instance``."""

    @abstractmethod
    def set_learning_rates(self, rates: np.ndarray) -> None:
        """Set each layer's learning rate (one per layer, already clipped)."""

    @abstractmethod
    def train(self, steps: int, *, update: bool = True) -> DecisionStats:
        """Run ``steps`` minibatch updates and report the decision's statistics.

        ``update=False`` measures gradients without changing the weights (used once at
        reset, so the first observation holds real gradient statistics).
        """

    @abstractmethod
    def evaluate(self, part: str) -> tuple[float, float]:
        """Mean loss and accuracy on the ``"val"`` or ``"test"`` part."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """A copy of the whole training state, so that it can be resumed bitwise."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a :meth:`state_dict` of a trainer of the same architecture."""


def engine_options(task: Any) -> dict[str, Any]:
    """The engine settings a task fixes (optimiser, weight decay, statistics window,
    evaluation batch, the init gain's nonlinearity): the same for every engine."""
    return {
        "optimizer": task.optimizer,
        "weight_decay": task.weight_decay,
        "stats_window": task.stats_window,
        "eval_batch_size": task.eval_batch_size,
        "nonlinearity": getattr(task.model, "activation", "relu"),
    }
