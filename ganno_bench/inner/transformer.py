"""Small decoder-only transformers whose parameter groups are the agents.

A pre-norm decoder: token + position embedding, ``blocks`` x (causal self-attention,
MLP), a final layer norm and the output head. Each agent controls one *group* of
parameters (a :class:`ParameterGroup`), in forward order:

* ``embedding`` (kind ``"embedding"``): token embedding and the learned position
  embedding together (both are lookups that write into the residual stream at its start);
* per block: the attention input (kind ``"attention"``): the block's first layer norm and
  the fused q/k/v projection (one ``Linear(d, 3d)``, so q, k and v are *one* agent: they
  are one matrix multiply and are only ever useful together); the attention output
  projection (``Linear(d, d)``, kind ``"linear"``); the MLP input (the block's second
  layer norm and ``Linear(d, mlp_ratio d)``); the MLP output (``Linear(mlp_ratio d, d)``);
* ``head``: the final layer norm and ``Linear(d, vocab)``.

A layer norm belongs to the agent of the projection it feeds (the layer it precedes),
so every parameter has exactly one agent. Logits come out as ``(batch, vocab, length)``,
the layout ``torch.nn.functional.cross_entropy`` takes for per-position targets, so the
engine's loss and accuracy code is the same for classifiers and for sequences.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

InitFn = Callable[[torch.Tensor], None]


class ParameterGroup(nn.Module):
    """The parameters one agent controls: main matrices (re-initialised by the instance's
    scheme and scale) plus companions (layer-norm gains 1, biases 0 at every start)."""

    kind: str = "linear"

    @property
    def fan_in(self) -> int:
        raise NotImplementedError

    def matrices(self) -> list[torch.Tensor]:
        """The weights the init scheme draws (2-D, ``(fan_out, fan_in)`` like Linear)."""
        raise NotImplementedError

    @torch.no_grad()
    def reset_companions(self) -> None:
        """Layer norms to identity, biases to zero."""
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()
            elif isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()


class Embedding(ParameterGroup):
    """Token and position embeddings (the fan-in of a lookup is the vocabulary: it is a
    Linear layer applied to one-hot tokens)."""

    kind = "embedding"

    def __init__(self, vocab: int, length: int, width: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(length, width))

    @property
    def fan_in(self) -> int:
        return self.token.num_embeddings

    def matrices(self) -> list[torch.Tensor]:
        return [self.token.weight, self.position]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token(tokens) + self.position[: tokens.shape[1]]


class NormedLinear(ParameterGroup):
    """A layer norm and the projection it feeds (pre-norm), one agent."""

    def __init__(self, width: int, out: int, kind: str = "linear") -> None:
        super().__init__()
        self.kind = kind
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, out)

    @property
    def fan_in(self) -> int:
        return self.linear.in_features

    def matrices(self) -> list[torch.Tensor]:
        return [self.linear.weight]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class Block(nn.Module):
    """Pre-norm residual block: causal self-attention, then the MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, activation: type[nn.Module]):
        super().__init__()
        self.heads = heads
        self.attention_in = NormedLinear(width, 3 * width, kind="attention")
        self.attention_out = nn.Linear(width, width)
        self.mlp_in = NormedLinear(width, mlp_ratio * width)
        self.activation = activation()
        self.mlp_out = nn.Linear(mlp_ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.attention_in(x).view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, length, head width)
        mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attention_out(mixed.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp_out(self.activation(self.mlp_in(x)))


class Decoder(nn.Module):
    """The whole model: ``(batch, length)`` token ids to ``(batch, vocab, length)`` logits."""

    def __init__(
        self,
        vocab: int,
        length: int,
        *,
        width: int,
        heads: int,
        blocks: int,
        mlp_ratio: int = 4,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(
                f"a transformer's width ({width}) must be a multiple of heads ({heads})"
            )
        self.embedding = Embedding(vocab, length, width)
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, activation) for _ in range(blocks)
        )
        self.head = NormedLinear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(x).transpose(1, 2)


def agent_modules(network: nn.Module) -> list[nn.Module]:
    """Parameter groups, Linear and Conv2d modules in forward (registration) order, not
    descending into a group: one agent each."""
    found: list[nn.Module] = []

    def walk(module: nn.Module) -> None:
        if isinstance(module, ParameterGroup | nn.Linear | nn.Conv2d):
            found.append(module)
            return
        for child in module.children():
            walk(child)

    walk(network)
    return found
