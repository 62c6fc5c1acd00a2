"""The inner networks: MLPs and CNNs built from a task's model config.

Every Linear and Conv2d (weight and bias together) is one *trainable layer*, and so
one agent. Initialisation takes an explicit ``torch.Generator`` so that an instance's
init seed alone fixes the weights, whatever else the process has drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

INIT_SCHEMES = (
    "kaiming_uniform",
    "kaiming_normal",
    "xavier_uniform",
    "xavier_normal",
    "orthogonal",
)
LAYER_KINDS = {"linear": 0, "conv": 1}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the inner network.

    ``mlp``: hidden widths ``hidden``. ``cnn``: 3x3 convolutions with ``channels``
    (2x2 max-pooling after every ``pool_every`` convolutions), then the ``hidden``
    linear widths, then the classifier.
    """

    kind: Literal["mlp", "cnn"] = "mlp"
    hidden: tuple[int, ...] = (64,)
    channels: tuple[int, ...] = ()
    kernel_size: int = 3
    pool_every: int = 2
    activation: Literal["relu", "tanh"] = "relu"

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "cnn"):
            raise ValueError(f"model kind must be 'mlp' or 'cnn', got {self.kind!r}")
        if self.kind == "cnn" and not self.channels:
            raise ValueError("a 'cnn' model needs at least one entry in 'channels'")
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {self.activation!r}")
        if any(w <= 0 for w in (*self.hidden, *self.channels)):
            raise ValueError("layer widths must be positive")

    def num_layers(self) -> int:
        return len(self.channels) + len(self.hidden) + 1


def build_network(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int
) -> nn.Sequential:
    """Build the network for inputs of ``input_shape`` (features,) or (C, H, W)."""
    act = nn.ReLU if config.activation == "relu" else nn.Tanh
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


def layer_kind(layer: nn.Module) -> str:
    return "conv" if isinstance(layer, nn.Conv2d) else "linear"


def fan_in(layer: nn.Module) -> int:
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
    """Re-initialise every layer's weight with ``scheme`` times ``scale``; biases start at 0."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {INIT_SCHEMES}")
    gain = nn.init.calculate_gain(nonlinearity)
    for layer in layers:
        w = layer.weight
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
        if layer.bias is not None:
            layer.bias.zero_()
