"""The inner networks: MLPs, CNNs and small transformers built from a task's model config.

In MLPs and CNNs every Linear and Conv2d (weight and bias together) is one *trainable
layer*, and so one agent; a transformer's agents are its parameter groups (see
:mod:`ganno_bench.inner.transformer`), found by :func:`agent_layers`. Initialisation
takes an explicit ``torch.Generator`` so that an instance's init seed alone fixes the
weights, whatever else the process has drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ganno_bench.inner.transformer import Decoder, ParameterGroup, agent_modules

INIT_SCHEMES = (
    "kaiming_uniform",
    "kaiming_normal",
    "xavier_uniform",
    "xavier_normal",
    "orthogonal",
)
# The observation's layer-kind feature. Linear and Conv2d keep 0 and 1 (shipped policies
# read them); a transformer's fused q/k/v projection (the only input to a softmax over
# positions) and its embedding lookup (sparse gradients: only the rows of seen tokens)
# get values between; its other projections are plain Linear layers.
LAYER_KINDS = {"linear": 0, "conv": 1, "attention": 0.25, "embedding": 0.5}
MODEL_KINDS = ("mlp", "cnn", "transformer")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the inner network.

    ``mlp``: hidden widths ``hidden``. ``cnn``: 3x3 convolutions with ``channels``
    (2x2 max-pooling after every ``pool_every`` convolutions), then the ``hidden``
    linear widths, then the classifier. ``transformer``: a pre-norm decoder of ``blocks``
    blocks of ``width`` channels, ``heads`` attention heads and an MLP of
    ``mlp_ratio * width`` (``activation`` between its two layers).
    """

    kind: Literal["mlp", "cnn", "transformer"] = "mlp"
    hidden: tuple[int, ...] = (64,)
    channels: tuple[int, ...] = ()
    kernel_size: int = 3
    pool_every: int = 2
    activation: Literal["relu", "tanh"] = "relu"
    width: int = 32
    heads: int = 2
    blocks: int = 1
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if self.kind == "cnn" and not self.channels:
            raise ValueError("a 'cnn' model needs at least one entry in 'channels'")
        if self.kind == "transformer":
            sizes = {"width": self.width, "heads": self.heads, "blocks": self.blocks,
                     "mlp_ratio": self.mlp_ratio}
            bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
            if bad:
                raise ValueError(f"a 'transformer' model needs positive integers, got {bad}")
            if self.width % self.heads:
                raise ValueError(
                    f"a 'transformer' model's width ({self.width}) must be a multiple of "
                    f"heads ({self.heads})"
                )
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {self.activation!r}")
        if any(w <= 0 for w in (*self.hidden, *self.channels)):
            raise ValueError("layer widths must be positive")

    def num_layers(self) -> int:
        if self.kind == "transformer":
            return 2 + 4 * self.blocks
        return len(self.channels) + len(self.hidden) + 1


def build_network(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """Build the network for inputs of ``input_shape`` (features,), (C, H, W) or, for a
    transformer, (length,) token ids with ``num_classes`` the vocabulary."""
    act = nn.ReLU if config.activation == "relu" else nn.Tanh
    if config.kind == "transformer":
        if len(input_shape) != 1:
            raise ValueError(
                f"a transformer needs token sequences (length,); the data has shape "
                f"{input_shape}: use a sequence source such as 'hmm'"
            )
        return Decoder(
            num_classes,
            input_shape[0],
            width=config.width,
            heads=config.heads,
            blocks=config.blocks,
            mlp_ratio=config.mlp_ratio,
            activation=act,
        )
    modules: list[nn.Module] = []
    if config.kind == "cnn":
        if len(input_shape) != 3:
            raise ValueError(
                f"a CNN needs image inputs (C, H, W); the data has shape {input_shape}"
            )
        channels, side_h, side_w = input_shape
        for i, out_channels in enumerate(config.channels):
            modules += [
                nn.Conv2d(
                    channels, out_channels, config.kernel_size, padding=config.kernel_size // 2
                ),
                act(),
            ]
            channels = out_channels
            if (i + 1) % config.pool_every == 0 and min(side_h, side_w) >= 2:
                modules.append(nn.MaxPool2d(2))
                side_h, side_w = side_h // 2, side_w // 2
        modules.append(nn.Flatten())
        width = channels * side_h * side_w
    else:
        modules.append(nn.Flatten())
        width = math.prod(input_shape)
    for hidden in config.hidden:
        modules += [nn.Linear(width, hidden), act()]
        width = hidden
    modules.append(nn.Linear(width, num_classes))
    return nn.Sequential(*modules)


def trainable_layers(network: nn.Module) -> list[nn.Module]:
    """The Linear and Conv2d modules in forward order: one agent each."""
    return [m for m in network.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def agent_layers(network: nn.Module) -> list[nn.Module]:
    """One module per agent: a transformer's parameter groups, else :func:`trainable_layers`."""
    if any(isinstance(m, ParameterGroup) for m in network.modules()):
        return agent_modules(network)
    return trainable_layers(network)


def agent_names(network: nn.Module) -> list[str]:
    """The module path of each agent's layer (``blocks.0.attention_in``), in agent order."""
    names = {id(m): name for name, m in network.named_modules()}
    return [names[id(m)] or type(m).__name__ for m in agent_layers(network)]


def layer_kind(layer: nn.Module) -> str:
    if isinstance(layer, ParameterGroup):
        return layer.kind
    return "conv" if isinstance(layer, nn.Conv2d) else "linear"


def fan_in(layer: nn.Module) -> int:
    if isinstance(layer, ParameterGroup):
        return layer.fan_in
    weight = layer.weight
    return int(weight[0].numel())


@torch.no_grad()
def initialise(
    layers: list[nn.Module],
    scheme: str,
    scale: float,
    generator: torch.Generator,
    nonlinearity: str = "relu",
) -> None:
    """Re-initialise every layer's weight with ``scheme`` times ``scale``; biases start at 0.

    A parameter group draws each of its matrices in turn, then resets its layer norms."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {INIT_SCHEMES}")
    for layer in layers:
        if isinstance(layer, ParameterGroup):
            for matrix in layer.matrices():
                _draw(matrix, scheme, scale, generator, nonlinearity)
            layer.reset_companions()
            continue
        _draw(layer.weight, scheme, scale, generator, nonlinearity)
        if layer.bias is not None:
            layer.bias.zero_()


def _draw(
    w: torch.Tensor, scheme: str, scale: float, generator: torch.Generator, nonlinearity: str
) -> None:
    """One weight matrix drawn by ``scheme`` (the nonlinearity's gain), times ``scale``."""
    gain = nn.init.calculate_gain(nonlinearity)
    if scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity, generator=generator)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(w, nonlinearity=nonlinearity, generator=generator)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w, gain=gain, generator=generator)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(w, gain=gain, generator=generator)
    else:
        nn.init.orthogonal_(w, gain=gain, generator=generator)
    w.mul_(scale)
