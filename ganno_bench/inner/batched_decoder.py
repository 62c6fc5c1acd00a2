"""The batched engine's kernel for the transformer family's decoders.

:class:`DecoderKernel` runs G copies of one :class:`~ganno_bench.inner.transformer.Decoder`
as one computation on the stacked ``(G, P)`` parameter rows: the token lookup reads a
table of all G slots' embeddings at slot-offset ids, every projection is one ``bmm``
over the G slots, layer norms normalise without an affine part and then apply each
slot's own gain and bias, and attention folds the slots into the batch dimension of
``scaled_dot_product_attention``. Autograd differentiates that forward pass (the loss's
own gradient is handed in, see :class:`~ganno_bench.inner.batched_kernels.Kernel`), so
the layers' order of operations is the module's, rounded differently: the tests state
the measured distance from TorchTrainer.

Why not ``torch.func.vmap`` over ``functional_call``: it lowers to the same batched
kernels, and for the MLPs it was measured at 3.7-5.1x against 6.2-8.1x for ``bmm``
through autograd (see :mod:`ganno_bench.inner.batched`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ganno_bench.inner.batched_kernels import (
    ACTIVATIONS,
    Batch,
    Kernel,
    Layout,
    activate,
    batched_linear,
)
from ganno_bench.inner.transformer import Decoder


def _expected_segments(blocks: int) -> list[str]:
    """The parameter names of a Decoder's agents, in the layout's (forward) order."""
    normed_linear = ["norm.weight", "norm.bias", "linear.weight", "linear.bias"]
    block = [*normed_linear, "weight", "bias", *normed_linear, "weight", "bias"]
    return ["position", "token.weight", *block * blocks, *normed_linear]


class DecoderKernel(Kernel):
    """G slots of one pre-norm decoder: inputs (G, B, T) token ids, logits (G, B, T, V)."""

    def __init__(self, layout: Layout, network: Decoder) -> None:
        super().__init__(layout)
        self.blocks = len(network.blocks)
        expected = _expected_segments(self.blocks)
        found = [segment.name for segment in layout.segments]
        if found != expected:
            raise ValueError(
                "the batched decoder kernel expects ganno_bench.inner.transformer.Decoder's "
                f"parameters in the order {expected}; this network has {found}"
            )
        first = network.blocks[0] if self.blocks else None
        self.heads = first.heads if first is not None else 1
        self.activation = ACTIVATIONS[type(first.activation)] if first is not None else None
        self.eps = network.head.norm.eps

    def _normed_linear(self, h: torch.Tensor, params: Iterator[torch.Tensor]) -> torch.Tensor:
        """LayerNorm (each slot's gain and bias) then Linear, on (G, rows, width)."""
        gain, shift, weight, bias = (next(params) for _ in range(4))
        normed = F.layer_norm(h, h.shape[-1:], eps=self.eps)
        affine = torch.addcmul(shift.unsqueeze(1), normed, gain.unsqueeze(1))
        return batched_linear(affine, weight, bias)

    def _forward(self, params: list[torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """Logits (G, B, T, V) of every slot on its own tokens (G, B, T)."""
        remaining = iter(params)
        position, table = next(remaining), next(remaining)
        g, b, t = tokens.shape
        vocab, width = table.shape[1:]
        offsets = torch.arange(g, device=tokens.device).view(g, 1, 1) * vocab
        h = F.embedding((tokens + offsets).view(g, b * t), table.reshape(g * vocab, width))
        h = (h.view(g, b, t, width) + position[:, None, :t]).view(g, b * t, width)
        head_width = width // self.heads
        for _ in range(self.blocks):
            qkv = self._normed_linear(h, remaining).view(g * b, t, 3, self.heads, head_width)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (G * B, heads, T, head width)
            mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            mixed = mixed.transpose(1, 2).reshape(g, b * t, width)
            h = h + batched_linear(mixed, next(remaining), next(remaining))
            hidden = activate(self.activation, self._normed_linear(h, remaining))
            h = h + batched_linear(hidden, next(remaining), next(remaining))
        return self._normed_linear(h, remaining).view(g, b, t, -1)

    def loss_and_grads(
        self, weights: torch.Tensor, batch: Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self._autograd(weights, batch, lambda params, b: self._forward(params, b.x))

    @torch.no_grad()
    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(0).expand(len(weights), *x.shape)
        return self._forward(self.layout.views(weights), tokens)
