"""The explicit access path of privileged (white-box) agents to the inner training run.

Most agents see only observations and infos. Methods such as Arbiter need the inner
network itself and minibatches of its data; an env that supports them returns a
:class:`PrivilegedView` from ``env.privileged_view()``. An agent that uses it declares
``privileged = True``, and the evaluator records that in its result card, so leaderboards
can tell white-box agents apart. The view reads; it never trains: minibatches come from a
generator of the view's own, so reading them does not shift the env's data stream.
"""

from __future__ import annotations

import torch
from torch import nn

from ganno_bench.inner.models import trainable_layers
from ganno_bench.inner.torch_trainer import TorchTrainer

VIEW_SALT = 0xA4B1_7E12  # offsets the view's minibatch stream from the env's own streams


class PrivilegedView:
    """The inner network (live: it changes as the env trains it) and its data."""

    def __init__(self, trainer: TorchTrainer, *, seed: int) -> None:
        self.network: nn.Module = trainer.network
        self.head: nn.Module = trainable_layers(trainer.network)[-1]  # reads penultimate features
        self.device = trainer.device
        self.num_classes = trainer.num_classes
        self._trainer = trainer
        self._generator = torch.Generator().manual_seed(seed + VIEW_SALT)

    def minibatch(self, part: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` random samples (without replacement) of ``"train"`` or ``"val"``."""
        if part not in ("train", "val"):
            raise ValueError(f"privileged agents read 'train' or 'val', not {part!r}")
        x, y = self._trainer.data_part(part)
        index = torch.randperm(len(y), generator=self._generator)[: min(size, len(y))]
        index = index.to(x.device)
        return x[index], y[index]
