"""Batched inner training: N instances of one task trained at once.

:class:`BatchedTrainer` holds N *slots*, each one :class:`~ganno_bench.inner.engine.TorchTrainer`'s
worth of state (weights, optimiser moments, data stream, gradient history), with every
per-slot tensor stacked along a leading N dimension. One inner step runs every active
slot's minibatch update with a fixed number of kernel launches, so the Python and
dispatch overhead that dominates these small networks is paid once per step instead of N
times. TorchTrainer stays the definition of the benchmark's numbers: a slot starts,
trains, measures and snapshots as a TorchTrainer would, up to float32 rounding (the
batched matmuls sum in another order), and its snapshots load into either engine.

Kernels (per layer kind; numbers measured at one torch thread on a 2-core AMD EPYC,
N=32, speed-up over 32 sequential runs of the same work):

* Linear chains (``Flatten? (Linear act?)*``, the MLP family): forward *and* backward
  written out as ``baddbmm``/``bmm`` on the stacked weights (``_LinearChainKernel``):
  no autograd graph, one fused gradient buffer. Whole-engine inner steps, against 32
  TorchTrainers: MLP-Easy {mlp_easy}, MLP-Hard {mlp_hard}; the same networks through the
  autograd kernel below (``kernel="sequential"``): {mlp_auto}.
* Conv2d on the CPU: batching does not pay. A 3x3 convolution on 8x8 digits is compute
  bound already (oneDNN reaches ~30 of the core's ~55 GFLOP/s), so the trunk runs once
  per slot, on the slot's own batch size (no padding waste), and only the rest (linear
  head, loss, optimiser, statistics) is batched. Measured forward+backward of the
  CNN-Easy trunk, 32 slots, batch 64 / 128, against the per-slot loop: grouped
  convolution (N*C channels, ``groups=N``) 1.17x / 0.73x, ``vmap`` (which lowers to the
  grouped convolution) 1.22x / 0.74x, im2col by shifted slices + ``bmm`` 0.37x / 0.26x;
  at N=8 grouped loses outright (0.83x / 0.94x). Whole engine: CNN-Easy {cnn_easy},
  CNN-Hard {cnn_hard}. ``conv="grouped"`` is the default on CUDA, where one grouped
  launch replaces N small ones (not measured here: no GPU was available).
* Anything else (a custom network that is not such an ``nn.Sequential``):
  ``torch.func.functional_call`` once per slot (``_FunctionalLoopKernel``), so every
  network TorchTrainer accepts trains here too, at about the sequential cost.

Mixed batch sizes: a group of slots shares one padded minibatch of its largest batch
size; each slot's padding rows repeat its own samples (so they are finite whenever its
real rows are) and are masked out with ``torch.where``: the loss is the sum over the real
rows divided by their count, exactly the real batch's mean. For the linear-chain kernel
padding costs less than bucketing slots by batch size (one kernel launch set per bucket):
{padding}. Convolutional trunks never see padding (they run per slot), and the grouped
convolution buckets by batch size, as it is compute bound.

Isolation: no operation reduces across slots (matmuls are batched, reductions run over
a slot's own rows and parameters, masks use ``torch.where``), so a slot whose loss turns
non-finite leaves the others bitwise unchanged. Inactive slots (``active`` False) are
gathered out: they are neither computed nor updated.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganno_bench.data import ArrayDataset
from ganno_bench.inner.engine import PROBE_SALT, DecisionStats, LayerInfo
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.models import fan_in, initialise, layer_kind, trainable_layers
from ganno_bench.inner.task import TaskSpec

KERNELS = ("auto", "linear", "sequential", "functional")
CONV_MODES = ("auto", "loop", "grouped")
GROUPINGS = ("auto", "pad", "bucket")
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8
# The grouping cost model, in multiply-accumulates: what one more padded group costs per
# inner step (the loss, optimiser and launches, and each layer's ~7 launches), against
# 3 x a layer's MACs per padded row (forward, and the two backward matmuls). Calibrated
# on the MLPs at one CPU thread: ~45 us a layer and ~150 us a group at ~30 GMAC/s.
GROUP_OVERHEAD_MACS = 4.5e6
LAYER_OVERHEAD_MACS = 1.35e6


# -- parameter layout ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """One parameter's place in a slot's flat row (TorchTrainer's parameter order)."""

    offset: int
    shape: tuple[int, ...]
    layer: int
    name: str  # "weight" or "bias"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class _Layout:
    """Where every parameter lives in a slot's row of the stacked ``(N, P)`` buffers."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.segments: list[_Segment] = []
        offset = 0
        for i, layer in enumerate(layers):
            for name, p in layer.named_parameters():
                self.segments.append(_Segment(offset, tuple(p.shape), i, name))
                offset += p.numel()
        self.size = offset
        self.num_layers = len(layers)
        self.element_layer = torch.repeat_interleave(
            torch.tensor([s.layer for s in self.segments]),
            torch.tensor([s.numel for s in self.segments]),
        )

    def layer_spans(self) -> list[tuple[int, int]]:
        """Each layer's ``[start, end)`` in a row: its parameters are contiguous."""
        spans = [(self.size, 0)] * self.num_layers
        for s in self.segments:
            start, end = spans[s.layer]
            spans[s.layer] = (min(start, s.offset), max(end, s.offset + s.numel))
        return spans

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each parameter as a ``(G, *shape)`` view into the ``(G, P)`` tensor ``flat``."""
        g = flat.shape[0]
        return [flat[:, s.offset : s.offset + s.numel].view(g, *s.shape) for s in self.segments]

    def per_layer(self, params: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, Any]]:
        """``(weight, bias or None)`` per layer, from per-parameter tensors in layout order."""
        out: list[list[Any]] = [[None, None] for _ in range(self.num_layers)]
        for s, p in zip(self.segments, params, strict=True):
            out[s.layer][0 if s.name == "weight" else 1] = p
        return [(w, b) for w, b in out]

    def flatten(self, params: Sequence[torch.Tensor], out: torch.Tensor) -> None:
        """Write per-parameter ``(G, *shape)`` tensors into the ``(G, P)`` tensor ``out``."""
        torch.cat([p.reshape(out.shape[0], -1) for p in params], dim=1, out=out)


# -- minibatches and the loss --------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    """One padded minibatch for a group of G slots: rows past ``sizes[g]`` are padding."""

    x: torch.Tensor  # (G, B, *input_shape)
    y: torch.Tensor  # (G, B)
    sizes: list[int]
    mask: torch.Tensor  # (G, B) bool, True on real rows
    counts: torch.Tensor  # (G,) float, the real rows per slot
    padded: bool  # whether any slot has padding rows


def _masked_cross_entropy(logits: torch.Tensor, batch: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slot mean cross-entropy over the real rows, and its gradient w.r.t. ``logits``.

    The gradient takes autograd's own path (nll_loss's ``-1 / count`` at the target, then
    log_softmax's backward), so it is bitwise what ``F.cross_entropy(...).backward()``
    hands a network. ``torch.where``, never a multiplied mask: padding rows never enter
    a sum, even non-finite ones."""
    logp = torch.log_softmax(logits, dim=2)
    target = batch.y.unsqueeze(2)
    nll = logp.gather(2, target).squeeze(2).neg_()
    if batch.padded:
        nll = torch.where(batch.mask, nll, 0.0)
    losses = nll.sum(1) / batch.counts
    picked = torch.arange(logits.shape[2], device=logits.device) == target
    if batch.padded:
        picked &= batch.mask.unsqueeze(2)
    grad_logp = torch.where(picked, (-1.0 / batch.counts).view(-1, 1, 1), 0.0)
    grad = torch.ops.aten._log_softmax_backward_data(grad_logp, logp, 2, logp.dtype)
    if batch.padded:
        grad = torch.where(batch.mask.unsqueeze(2), grad, 0.0)
    return losses, grad


def _summed_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slot summed cross-entropy and correct count, ``logits`` (G, B, C), ``y`` (B,)."""
    target = y.expand(logits.shape[0], -1)
    nll = torch.log_softmax(logits, dim=2).gather(2, target.unsqueeze(2)).squeeze(2)
    correct = (logits.argmax(dim=2) == target).sum(1)
    return -nll.sum(1), correct


# -- kernels -------------------------------------------------------------------------------

_ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _activate(name: str | None, z: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """The activation; ``inplace`` where ``z`` is a fresh matmul output nothing else reads."""
    if name == "relu":
        return z.relu_() if inplace else torch.relu(z)
    if name == "tanh":
        return z.tanh_() if inplace else torch.tanh(z)
    return z


def _activation_backward(name: str | None, grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """What autograd does for ReLU / Tanh, given the activation's output."""
    if name == "relu":
        return torch.ops.aten.threshold_backward(grad, out, 0)
    if name == "tanh":
        return torch.ops.aten.tanh_backward(grad, out)
    return grad


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``h @ w.T + b`` per slot: ``h`` (G, B, I), ``w`` (G, O, I), ``b`` (G, O). ``bmm``
    then ``add`` is ~25% faster than ``baddbmm``, which first copies the expanded bias."""
    z = torch.bmm(h, w.transpose(1, 2))
    return z if b is None else z.add_(b.unsqueeze(1))


class _Kernel:
    """The loss, gradients and logits of one architecture, for G slots at once."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        # the layers computed on a group's padded rows (the others run once per slot,
        # on its own batch size): what grouping slots by batch size can save on
        self.padded_layers: list[int] = list(range(layout.num_layers))

    def loss_and_grads(
        self, weights: torch.Tensor, batch: _Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-slot mean loss (G,) and every parameter's gradient (G, *shape)."""
        raise NotImplementedError

    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits (G, B, C) of every slot on the shared inputs ``x`` (B, ...)."""
        raise NotImplementedError

    @staticmethod
    def _leaves(views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Parameters as autograd leaves sharing the stacked buffer's storage."""
        return [v.detach().requires_grad_() for v in views]

    def _autograd(
        self, weights: torch.Tensor, batch: _Batch, forward: Callable[..., torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Autograd through ``forward(params, batch)``, with the loss's gradient handed in."""
        with torch.enable_grad():
            leaves = self._leaves(self.layout.views(weights))
            logits = forward(leaves, batch)
            with torch.no_grad():
                losses, grad = _masked_cross_entropy(logits.detach(), batch)
            grads = torch.autograd.grad(logits, leaves, grad)
        return losses, list(grads)


def _chain_forward(
    layers: list[tuple[Any, Any]], activations: list[str | None], h: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``(Linear act?)*`` on (G, B, I) inputs: the output, and each layer's input and
    output (what the backward pass needs)."""
    inputs, outputs = [], []
    for (w, b), act in zip(layers, activations, strict=True):
        inputs.append(h)
        h = _activate(act, _linear(h, w, b), inplace=True)
        outputs.append(h)
    return h, inputs, outputs


def _chain_backward(
    layers: list[tuple[Any, Any]],
    activations: list[str | None],
    grad: torch.Tensor,
    inputs: list[torch.Tensor],
    outputs: list[torch.Tensor],
    *,
    input_grad: bool,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Gradients of a ``(Linear act?)*`` chain from the gradient at its output, by the
    same products autograd takes for ``F.linear`` (so they agree bitwise): per-parameter
    gradients in layout order, and the input's gradient if ``input_grad``."""
    per_layer: list[list[torch.Tensor]] = []
    for i in reversed(range(len(layers))):
        grad = _activation_backward(activations[i], grad, outputs[i])
        w, b = layers[i]
        grads = [torch.bmm(grad.transpose(1, 2), inputs[i])]
        if b is not None:
            grads.append(grad.sum(1))
        per_layer.append(grads)
        if i or input_grad:
            grad = torch.bmm(grad, w)
    return [g for grads in reversed(per_layer) for g in grads], grad if input_grad else None


class _LinearChainKernel(_Kernel):
    """``Flatten? (Linear act?)*`` with forward and backward written out as batched matmuls:
    no autograd graph to build, the fastest option measured for the MLPs."""

    def __init__(self, layout: _Layout, activations: list[str | None]) -> None:
        super().__init__(layout)
        self.activations = activations

    @torch.no_grad()
    def loss_and_grads(
        self, weights: torch.Tensor, batch: _Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        layers = self.layout.per_layer(self.layout.views(weights))
        x = batch.x.reshape(*batch.y.shape, -1)
        logits, inputs, outputs = _chain_forward(layers, self.activations, x)
        losses, grad = _masked_cross_entropy(logits, batch)
        grads, _ = _chain_backward(
            layers, self.activations, grad, inputs, outputs, input_grad=False
        )
        return losses, grads

    @torch.no_grad()
    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layers = self.layout.per_layer(self.layout.views(weights))
        h = x.reshape(1, len(x), -1).expand(len(weights), -1, -1)
        return _chain_forward(layers, self.activations, h)[0]


class _SequentialKernel(_Kernel):
    """An ``nn.Sequential`` trunk of Conv2d / MaxPool2d / activations, a Flatten, then a
    ``(Linear act?)*`` head. The trunk goes through autograd, once per slot (``"loop"``,
    each on its own batch size) or as one grouped convolution over the group
    (``"grouped"``); the head is the hand-written batched chain, whose input gradient
    is handed to autograd for the trunk."""

    def __init__(
        self, layout: _Layout, modules: list[nn.Module], head: list[str | None], conv: str
    ) -> None:
        super().__init__(layout)
        flatten = next(i for i, m in enumerate(modules) if isinstance(m, nn.Flatten))
        self.trunk = modules[: flatten + 1]
        self.head_activations = head
        self.trunk_layers = sum(isinstance(m, nn.Conv2d) for m in self.trunk)
        self.trunk_segments = sum(s.layer < self.trunk_layers for s in layout.segments)
        # without convolutions the trunk is a reshape: run it batched, whatever ``conv``
        self.grouped = conv == "grouped" or not self.trunk_layers
        if not self.grouped:
            self.padded_layers = self.padded_layers[self.trunk_layers :]

    def _trunk_one(self, layers: list[tuple[Any, Any]], h: torch.Tensor) -> torch.Tensor:
        """The trunk on one slot's inputs (B, C, H, W) -> features (B, F)."""
        k = 0
        for m in self.trunk:
            if isinstance(m, nn.Conv2d):
                w, b = layers[k]
                h = F.conv2d(h, w, b, m.stride, m.padding, m.dilation)
                k += 1
            else:
                h = self._shape_free(m, h)
        return h

    def _trunk_grouped(self, layers: list[tuple[Any, Any]], x: torch.Tensor) -> torch.Tensor:
        """The trunk on all slots' inputs (G, B, C, H, W) as grouped convolutions."""
        g, b = x.shape[:2]
        h = x.transpose(0, 1).reshape(b, g * x.shape[2], *x.shape[3:])
        k = 0
        for m in self.trunk:
            if isinstance(m, nn.Conv2d):
                w, bias = layers[k]
                h = F.conv2d(
                    h,
                    w.reshape(-1, *w.shape[2:]),
                    None if bias is None else bias.reshape(-1),
                    m.stride,
                    m.padding,
                    m.dilation,
                    groups=g,
                )
                k += 1
            elif isinstance(m, nn.Flatten):
                h = h.reshape(b, g, -1).transpose(0, 1)
            else:
                h = self._shape_free(m, h)
        return h

    @staticmethod
    def _shape_free(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
        if isinstance(m, nn.MaxPool2d):
            return F.max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        if isinstance(m, nn.Flatten):
            return h.flatten(1)
        return _activate(_ACTIVATIONS[type(m)], h)

    def _features(self, trunk: list[tuple[Any, Any]], x: torch.Tensor, sizes: list[int]):
        """The trunk's output (G, B, F); per slot, rows past ``sizes[g]`` are zeros."""
        if self.grouped:
            return self._trunk_grouped(trunk, x)
        per_slot = _unbind_layers(trunk, len(sizes))
        width = x.shape[1]
        return torch.stack(
            [
                F.pad(self._trunk_one(per_slot[g], x[g, :size]), (0, 0, 0, width - size))
                for g, size in enumerate(sizes)
            ]
        )

    def loss_and_grads(
        self, weights: torch.Tensor, batch: _Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        views = self.layout.views(weights)
        leaves = self._leaves(views[: self.trunk_segments])
        layers = self.layout.per_layer([*leaves, *views[self.trunk_segments :]])
        trunk, head = layers[: self.trunk_layers], layers[self.trunk_layers :]
        with torch.enable_grad():
            features = self._features(trunk, batch.x, batch.sizes)
        with torch.no_grad():
            logits, inputs, outputs = _chain_forward(head, self.head_activations, features.detach())
            losses, grad = _masked_cross_entropy(logits, batch)
            head_grads, grad_features = _chain_backward(
                head, self.head_activations, grad, inputs, outputs, input_grad=bool(leaves)
            )
        if not leaves:
            return losses, head_grads
        trunk_grads = torch.autograd.grad(features, leaves, grad_features)
        return losses, [*trunk_grads, *head_grads]

    @torch.no_grad()
    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layers = self.layout.per_layer(self.layout.views(weights))
        trunk, head = layers[: self.trunk_layers], layers[self.trunk_layers :]
        g = weights.shape[0]
        if self.grouped:
            features = self._trunk_grouped(trunk, x.unsqueeze(0).expand(g, *x.shape))
        else:
            features = torch.stack([self._trunk_one(one, x) for one in _unbind_layers(trunk, g)])
        return _chain_forward(head, self.head_activations, features)[0]


def _unbind_layers(layers: list[tuple[Any, Any]], count: int) -> list[list[tuple[Any, Any]]]:
    """Per-slot ``(weight, bias)`` lists from stacked ones. ``unbind`` keeps autograd
    cheap: its backward is one ``stack``, where indexing would add N zero-filled grads."""
    unbound = [(w.unbind(0), [None] * count if b is None else b.unbind(0)) for w, b in layers]
    return [[(w[g], b[g]) for w, b in unbound] for g in range(count)]


class _FunctionalLoopKernel(_Kernel):
    """Any network: ``functional_call`` once per slot, each on its own batch size."""

    def __init__(self, layout: _Layout, network: nn.Module, names: list[str]) -> None:
        super().__init__(layout)
        self.padded_layers = []  # all of it runs per slot, on the slot's own batch size
        self.network = network
        self.names = names  # the parameters' names in layout order

    def _call(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(
            self.network, dict(zip(self.names, params, strict=True)), (x,)
        )

    def _forward(self, params: list[torch.Tensor], batch: _Batch) -> torch.Tensor:
        per_slot = list(zip(*(p.unbind(0) for p in params), strict=True))
        width = batch.x.shape[1]
        return torch.stack(
            [
                F.pad(self._call(per_slot[g], batch.x[g, :size]), (0, 0, 0, width - size))
                for g, size in enumerate(batch.sizes)
            ]
        )

    def loss_and_grads(
        self, weights: torch.Tensor, batch: _Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self._autograd(weights, batch, self._forward)

    @torch.no_grad()
    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        views = self.layout.views(weights)
        return torch.stack([self._call([v[g] for v in views], x) for g in range(len(weights))])


def _sequence(network: nn.Module) -> list[nn.Module] | None:
    """The network's modules in forward order, if it is a (nested) ``nn.Sequential``."""
    if not isinstance(network, nn.Sequential):
        return None
    out: list[nn.Module] = []
    for m in network:
        inner = _sequence(m) if isinstance(m, nn.Sequential) else [m]
        if inner is None:
            return None
        out += inner
    return out


def _linear_chain(modules: list[nn.Module], input_shape: tuple) -> list[str | None] | None:
    """Each Linear's activation, if ``modules`` is ``Flatten? (Linear act?)*`` (the
    Flatten is needed unless inputs are vectors: Linear acts on an image's last axis)."""
    flattens = bool(modules) and _is_plain_flatten(modules[0])
    if not flattens and len(input_shape) != 1:
        return None
    rest = modules[1:] if flattens else modules
    activations: list[str | None] = []
    for m in rest:
        if isinstance(m, nn.Linear):
            activations.append(None)
        elif type(m) in _ACTIVATIONS and activations and activations[-1] is None:
            activations[-1] = _ACTIVATIONS[type(m)]
        else:
            return None
    return activations or None


def _is_plain_flatten(m: nn.Module) -> bool:
    return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1


def _conv_sequence(modules: list[nn.Module]) -> bool:
    """Whether ``modules`` is a trunk (Conv2d, MaxPool2d, act), one Flatten, a head."""
    flat = [i for i, m in enumerate(modules) if isinstance(m, nn.Flatten)]
    if len(flat) != 1 or not _is_plain_flatten(modules[flat[0]]):
        return False
    trunk, head = modules[: flat[0]], modules[flat[0] + 1 :]
    trunk_ok = all(
        type(m) in _ACTIVATIONS
        or isinstance(m, nn.MaxPool2d)
        or (isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros")
        for m in trunk
    )
    return trunk_ok and _linear_chain(head, (1,)) is not None


# -- the trainer ---------------------------------------------------------------------------


@dataclass
class _Work:
    """A group's stacked state during one ``train`` call: the storage itself when the
    group is every slot in order, otherwise gathered copies written back afterwards."""

    slots: torch.Tensor  # slot indices on the device
    weights: torch.Tensor
    moments: list[torch.Tensor]
    prev_mean_grad: torch.Tensor
    rates: torch.Tensor
    gathered: bool


class BatchedTrainer:
    """N slots of one task (architecture, data set, optimiser) trained side by side.

    Each slot behaves like a :class:`~ganno_bench.inner.engine.TorchTrainer` started on its own
    instance: :meth:`start` a slot, set every slot's per-layer rates, then :meth:`train`
    and :meth:`evaluate` all active slots in one call. ``kernel``, ``conv`` and
    ``grouping`` choose how the batch is computed (see the module docstring); ``"auto"``
    takes the measured best.
    """

    def __init__(
        self,
        network: nn.Module,
        dataset: ArrayDataset,
        *,
        num_slots: int,
        optimizer: str = "sgd",
        weight_decay: float = 0.0,
        stats_window: int = 4,
        eval_batch_size: int = 4096,
        nonlinearity: str = "relu",
        device: str | torch.device = "cpu",
        kernel: str = "auto",
        conv: str = "auto",
        grouping: str = "auto",
    ) -> None:
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        for name, value, choices in (
            ("kernel", kernel, KERNELS),
            ("conv", conv, CONV_MODES),
            ("grouping", grouping, GROUPINGS),
        ):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")
        self.device = torch.device(device)
        self.num_slots = num_slots
        self.optimizer_name = optimizer
        self.weight_decay = weight_decay
        self.stats_window = stats_window
        self.eval_batch_size = eval_batch_size
        self.nonlinearity = nonlinearity
        network = copy.deepcopy(network).cpu()
        layers = trainable_layers(network)
        if not layers:
            raise ValueError("the network has no Linear or Conv2d layer to control")
        _check_parameters(network, layers)
        if any(True for _ in network.buffers()):
            raise ValueError("networks with buffers cannot be batched: slots would share them")
        count = len(layers)
        self.layers = [
            LayerInfo(layer_kind(m), fan_in(m), i / max(count - 1, 1)) for i, m in enumerate(layers)
        ]
        self._init_layers = layers  # initialised per start(), on the CPU, then copied in
        self._layout = _Layout(layers)
        self._element_layer = self._layout.element_layer.to(self.device)
        self._spans = self._layout.layer_spans()
        self._macs = _macs_per_sample(network, layers, dataset.input_shape)
        self.kernel_name, self._kernel = self._choose_kernel(
            network, layers, dataset.input_shape, kernel, conv
        )
        self.grouping = grouping
        self._data = {
            "train": (dataset.x_train.to(self.device), dataset.y_train.to(self.device)),
            "val": (dataset.x_val.to(self.device), dataset.y_val.to(self.device)),
            "test": (dataset.x_test.to(self.device), dataset.y_test.to(self.device)),
        }
        self.num_classes = dataset.num_classes
        self._n_train = len(dataset.y_train)
        self._optimizer_groups = _optimizer_groups(optimizer, layers)

        n = num_slots

        def rows() -> torch.Tensor:
            return torch.zeros(n, self._layout.size, device=self.device)

        self._weights = rows()
        self._moments = [rows() for _ in range(1 if optimizer == "sgd" else 2)]
        self._prev_mean_grad = rows()
        self._rates = np.zeros((n, count))
        self._rate_elements = rows()  # each element's layer rate, float32
        self._momentum = np.zeros(n)
        self._steps = np.zeros(n, dtype=np.int64)  # optimiser steps taken since start
        self._started = np.zeros(n, dtype=bool)
        self._batch_size = [0] * n
        self._order: list[torch.Tensor] = [torch.empty(0, dtype=torch.long)] * n
        self._cursor = [0] * n
        self._data_generator = [torch.Generator() for _ in range(n)]
        self._probe_generator = [torch.Generator() for _ in range(n)]

    def _choose_kernel(
        self,
        network: nn.Module,
        layers: list[nn.Module],
        input_shape: tuple[int, ...],
        kernel: str,
        conv: str,
    ) -> tuple[str, _Kernel]:
        """The named kernel, or for ``"auto"`` the fastest that fits the network."""
        modules = _sequence(network)
        chain = _linear_chain(modules, input_shape) if modules is not None else None
        sequential = modules is not None and (chain is not None or _conv_sequence(modules))
        if kernel == "auto":
            kernel = "linear" if chain is not None else "sequential" if sequential else "functional"
        if kernel == "linear":
            if chain is None:
                raise ValueError("kernel='linear' needs a Sequential of Flatten, Linear, ReLU/Tanh")
            return kernel, _LinearChainKernel(self._layout, chain)
        if kernel == "sequential":
            if not sequential or modules is None:
                raise ValueError(
                    "kernel='sequential' needs a Sequential: Conv2d/MaxPool2d/ReLU/Tanh, "
                    "one Flatten, then Linear/ReLU/Tanh"
                )
            if not any(isinstance(m, nn.Flatten) for m in modules):  # a linear chain
                modules = [nn.Flatten(), *modules]
            flatten = next(i for i, m in enumerate(modules) if isinstance(m, nn.Flatten))
            head = _linear_chain(modules[flatten + 1 :], (1,))
            assert head is not None  # _conv_sequence or _linear_chain checked it
            if conv == "auto":
                conv = "grouped" if self.device.type == "cuda" else "loop"
            return f"sequential-{conv}", _SequentialKernel(self._layout, modules, head, conv)
        names = {id(p): name for name, p in network.named_parameters()}
        order = [names[id(p)] for m in layers for p in m.parameters()]
        # a copy on the device: ``layers`` stay on the CPU, where start() initialises them
        return kernel, _FunctionalLoopKernel(
            self._layout, copy.deepcopy(network).to(self.device), order
        )

    # -- slots ------------------------------------------------------------------------------
    def start(self, slot: int, instance: Instance) -> None:
        """Initialise slot ``slot`` exactly as ``TorchTrainer.start(instance)`` would."""
        self._check_slot(slot)
        initialise(
            self._init_layers,
            instance.init_scheme,
            instance.init_scale,
            torch.Generator().manual_seed(instance.init_seed),
            self.nonlinearity,
        )
        with torch.no_grad():
            row = torch.cat([p.reshape(-1) for m in self._init_layers for p in m.parameters()])
            self._weights[slot] = row.to(self.device)
            for moment in self._moments:
                moment[slot] = 0.0
            self._prev_mean_grad[slot] = 0.0
        self.set_learning_rates(np.full(len(self.layers), instance.learning_rate), slot=slot)
        self._momentum[slot] = instance.momentum
        self._steps[slot] = 0
        self._batch_size[slot] = min(instance.batch_size, self._n_train)
        self._data_generator[slot] = torch.Generator().manual_seed(instance.data_seed)
        self._order[slot] = self._new_epoch_order(slot)
        self._cursor[slot] = 0
        self._probe_generator[slot] = torch.Generator().manual_seed(instance.data_seed + PROBE_SALT)
        self._started[slot] = True

    def set_learning_rates(self, rates: np.ndarray, slot: int | None = None) -> None:
        """Per-layer rates: shape (N, L) for every slot, or (L,) for ``slot``."""
        rates = np.asarray(rates, dtype=np.float64)
        count = len(self.layers)
        if slot is None:
            if rates.shape != (self.num_slots, count):
                raise ValueError(
                    f"rates must have shape {(self.num_slots, count)}, not {rates.shape}"
                )
            self._rates[:] = rates
            rows = slice(None)
        else:
            self._check_slot(slot)
            if rates.shape != (count,):
                raise ValueError(f"one slot's rates must have shape {(count,)}, got {rates.shape}")
            self._rates[slot] = rates
            rows = slot
        # float32 rates, as torch.optim casts its float lr inside the update kernels
        rate32 = torch.from_numpy(self._rates[rows].astype(np.float32)).to(self.device)
        self._rate_elements[rows] = rate32[..., self._element_layer]

    def learning_rates(self) -> np.ndarray:
        """Every slot's per-layer rates, shape (N, L)."""
        return self._rates.copy()

    def batch_sizes(self) -> list[int]:
        return list(self._batch_size)

    def final_weights(self, slot: int) -> torch.Tensor:
        """A copy of the slot's parameters as one vector, in TorchTrainer's order."""
        self._check_slot(slot)
        return self._weights[slot].detach().cpu().clone()

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.num_slots:
            raise IndexError(f"slot {slot} is outside 0..{self.num_slots - 1}")

    def _active_slots(self, active: Sequence[bool] | np.ndarray | None) -> np.ndarray:
        if active is None:
            mask = np.ones(self.num_slots, dtype=bool)
        else:
            mask = np.asarray(active, dtype=bool)
            if mask.shape != (self.num_slots,):
                raise ValueError(f"active must have shape {(self.num_slots,)}, got {mask.shape}")
        slots = np.flatnonzero(mask)
        idle = slots[~self._started[slots]]
        if len(idle):
            raise ValueError(f"slots {idle.tolist()} are active but were never started")
        return slots

    # -- data stream ------------------------------------------------------------------------
    def _new_epoch_order(self, slot: int) -> torch.Tensor:
        return torch.randperm(self._n_train, generator=self._data_generator[slot])

    def _draw(self, slot: int, steps: int) -> torch.Tensor:
        """The slot's next ``steps`` minibatches (steps, batch) of train indices, by
        TorchTrainer's rule: a batch that would cross the epoch's end starts a new epoch."""
        size, chunks, left = self._batch_size[slot], [], steps
        while left:
            if self._cursor[slot] + size > self._n_train:
                self._order[slot] = self._new_epoch_order(slot)
                self._cursor[slot] = 0
            take = min(left, (self._n_train - self._cursor[slot]) // size)
            start = self._cursor[slot]
            chunks.append(self._order[slot][start : start + take * size].view(take, size))
            self._cursor[slot] += take * size
            left -= take
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]

    def _indices(self, slots: np.ndarray, steps: int) -> tuple[torch.Tensor, list[int]]:
        """Padded train indices (steps, G, B) for a group; padding repeats a slot's own
        samples, so padding rows are finite whenever its real rows are."""
        sizes = [self._batch_size[s] for s in slots]
        width = max(sizes)
        rows = []
        for slot, size in zip(slots, sizes, strict=True):
            drawn = self._draw(int(slot), steps)
            if size < width:
                drawn = drawn.repeat(1, -(-width // size))[:, :width]
            rows.append(drawn)
        return torch.stack(rows, dim=1).to(self.device), sizes

    # -- training ---------------------------------------------------------------------------
    def train(
        self,
        steps: int,
        *,
        update: bool = True,
        active: Sequence[bool] | np.ndarray | None = None,
    ) -> list[DecisionStats | None]:
        """Run ``steps`` minibatch updates on every active slot (all when ``active`` is
        None); per slot, the decision's statistics as TorchTrainer reports them (None for
        inactive slots). ``update=False`` measures gradients without moving the weights."""
        if steps < 1:
            raise ValueError(f"train() needs at least one step, got {steps}")
        slots = self._active_slots(active)
        out: list[DecisionStats | None] = [None] * self.num_slots
        for group in self._groups(slots):
            for slot, stats in zip(group, self._train_group(group, steps, update), strict=True):
                out[int(slot)] = stats
        return out

    def _groups(self, slots: np.ndarray) -> list[np.ndarray]:
        """Slots that share one padded minibatch: all (``"pad"``), one group per batch
        size (``"bucket"``), or the cheapest split by the cost model (``"auto"``)."""
        if not len(slots):
            return []
        sizes = np.array([self._batch_size[s] for s in slots])
        distinct, counts = np.unique(sizes, return_counts=True)
        if self.grouping == "pad":
            runs = [(0, len(distinct))]
        elif self.grouping == "bucket":
            runs = [(i, i + 1) for i in range(len(distinct))]
        else:
            padded = len(self._kernel.padded_layers)
            group_cost = GROUP_OVERHEAD_MACS + padded * LAYER_OVERHEAD_MACS
            row_cost = 3 * sum(self._macs[i] for i in self._kernel.padded_layers)
            runs = _cheapest_runs(distinct, counts, group_cost, row_cost)
        return [slots[(sizes >= distinct[i]) & (sizes <= distinct[j - 1])] for i, j in runs]

    def _gather(self, slots: np.ndarray) -> _Work:
        index = torch.from_numpy(slots).to(self.device)
        if len(slots) == self.num_slots:  # every slot, in order: work on the storage itself
            return _Work(
                index,
                self._weights,
                self._moments,
                self._prev_mean_grad,
                self._rate_elements,
                gathered=False,
            )
        return _Work(
            index,
            self._weights[index],
            [m[index] for m in self._moments],
            self._prev_mean_grad[index],
            self._rate_elements[index],
            gathered=True,
        )

    def _scatter(self, work: _Work) -> None:
        if work.gathered:
            self._weights.index_copy_(0, work.slots, work.weights)
            for storage, moment in zip(self._moments, work.moments, strict=True):
                storage.index_copy_(0, work.slots, moment)
            self._prev_mean_grad.index_copy_(0, work.slots, work.prev_mean_grad)

    @torch.no_grad()
    def _train_group(self, slots: np.ndarray, steps: int, update: bool) -> list[DecisionStats]:
        work = self._gather(slots)
        indices, sizes = self._indices(slots, steps)
        width = indices.shape[2]
        mask = torch.arange(width, device=self.device) < torch.tensor(
            sizes, device=self.device
        ).unsqueeze(1)
        counts = torch.tensor(sizes, dtype=torch.float32, device=self.device)
        padded = min(sizes) < width
        x_train, y_train = self._data["train"]
        g = len(slots)
        window_start = max(0, steps - self.stats_window)
        start_weights = work.weights.clone()
        grad = torch.empty_like(work.weights)
        grad_sum = torch.zeros_like(work.weights)
        grad_sq_sum = torch.zeros_like(work.weights)
        loss_sum = torch.zeros(g, device=self.device)
        schedule = self._schedule(slots, steps) if update else []
        for step in range(steps):
            index = indices[step]
            batch = _Batch(x_train[index], y_train[index], sizes, mask, counts, padded)
            losses, grads = self._kernel.loss_and_grads(work.weights, batch)
            self._layout.flatten(grads, out=grad)
            if step >= window_start:
                grad_sum.add_(grad)
                grad_sq_sum.addcmul_(grad, grad)
                loss_sum.add_(losses)
            if update:
                self._optimizer_step(work, grad, [scalars[step] for scalars in schedule])
        if update:
            self._steps[slots] += steps
        window = steps - window_start
        stats = self._decision_stats(work, start_weights, grad_sum, grad_sq_sum, window)
        self._scatter(work)
        return [
            DecisionStats(float(loss), *per_slot)
            for loss, per_slot in zip((loss_sum / window).cpu().numpy(), stats, strict=True)
        ]

    def _schedule(self, slots: np.ndarray, steps: int) -> list[torch.Tensor]:
        """Each update's per-slot optimiser scalars for the next ``steps`` updates, from
        python floats as torch.optim computes them, in one transfer (none per step).
        SGD: the buffer's decay (G, 1), 0 before its first update (torch starts the
        buffer as a copy of the gradient). Adam: ``1 - beta1`` (G, 1), the step size
        ``lr / bias_correction1`` (G, L) and ``sqrt(bias_correction2)`` (G, 1)."""
        taken = self._steps[slots].astype(np.float64)[None, :, None]
        step = taken + np.arange(1, steps + 1, dtype=np.float64)[:, None, None]  # (S, G, 1)
        beta1 = self._momentum[slots][None, :, None]
        if self.optimizer_name == "sgd":
            arrays = [np.where(step > 1, beta1, 0.0)]
        else:
            correction1 = 1.0 - beta1**step
            arrays = [
                np.broadcast_to(1.0 - beta1, step.shape),
                self._rates[slots][None] / correction1,
                (1.0 - ADAM_BETA2**step) ** 0.5,
            ]
        return [torch.from_numpy(a.astype(np.float32)).to(self.device) for a in arrays]

    def _optimizer_step(
        self, work: _Work, grad: torch.Tensor, scalars: Sequence[torch.Tensor]
    ) -> None:
        """torch.optim's SGD / Adam update on flat rows, with the same float32 operations
        in the same order (bitwise equal, given equal gradients): per slot and per layer
        rate, ``scalars`` from :meth:`_schedule` for this update."""
        if self.weight_decay:
            grad = grad.add(work.weights, alpha=self.weight_decay)
        if self.optimizer_name == "sgd":
            (buffer,) = work.moments
            (momentum,) = scalars
            # mul_ then add_, as torch does: addcmul would fuse them (one rounding, not two)
            buffer.mul_(momentum).add_(grad)
            work.weights.addcmul_(work.rates, buffer, value=-1)
            return
        exp_avg, exp_avg_sq = work.moments
        one_minus_beta1, step_size, correction2_sqrt = scalars
        exp_avg.lerp_(grad, one_minus_beta1)
        exp_avg_sq.mul_(ADAM_BETA2).addcmul_(grad, grad, value=1 - ADAM_BETA2)
        denom = (exp_avg_sq.sqrt() / correction2_sqrt).add_(ADAM_EPS)
        work.weights.addcdiv_(step_size[:, self._element_layer] * exp_avg, denom, value=-1)

    def _per_layer(self, values: torch.Tensor) -> torch.Tensor:
        """Per-slot, per-layer sums (G, L) of (G, P) rows, as slices of each layer's span:
        ``index_add_`` along dim 1 is ~15x slower here, and a one-hot matmul would spread
        one layer's NaN to the slot's other layers."""
        return torch.stack([values[:, start:end].sum(1) for start, end in self._spans], dim=1)

    def _decision_stats(
        self,
        work: _Work,
        start_weights: torch.Tensor,
        grad_sum: torch.Tensor,
        grad_sq_sum: torch.Tensor,
        window: int,
    ) -> np.ndarray:
        """TorchTrainer's statistics per slot, (G, 5, L) float64 (same formulas)."""
        mean_grad = grad_sum / window
        update = work.weights - start_weights
        prev = work.prev_mean_grad
        # products by ``mul``: ``square`` dispatches to ``pow``, several times slower here
        grad_sq = self._per_layer(mean_grad * mean_grad)
        weight_sq = self._per_layer(work.weights * work.weights)
        update_sq = self._per_layer(update * update)
        dot = self._per_layer(mean_grad * prev)
        prev_sq = self._per_layer(prev * prev)
        mean_sq_norm = self._per_layer(grad_sq_sum / window)
        work.prev_mean_grad.copy_(mean_grad)
        tiny = torch.finfo(torch.float32).tiny
        noise = (1.0 - grad_sq / mean_sq_norm.clamp_min(tiny)).clamp(0.0, 1.0)
        cosine = dot / (grad_sq.sqrt() * prev_sq.sqrt()).clamp_min(tiny)
        stacked = torch.stack(
            [
                grad_sq.sqrt(),
                weight_sq.sqrt(),
                (update_sq / weight_sq.clamp_min(tiny)).sqrt(),
                cosine,
                noise,
            ],
            dim=1,
        )
        return stacked.cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def evaluate(
        self, part: str, active: Sequence[bool] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-slot mean loss and accuracy on ``"val"`` or ``"test"`` (NaN where inactive)."""
        slots = self._active_slots(active)
        losses = np.full(self.num_slots, np.nan)
        accuracies = np.full(self.num_slots, np.nan)
        if not len(slots):
            return losses, accuracies
        weights = self._weights
        if len(slots) < self.num_slots:
            weights = weights[torch.from_numpy(slots).to(self.device)]
        x, y = self._data[part]
        loss_sum = np.zeros(len(slots))
        correct = np.zeros(len(slots), dtype=np.int64)
        for start in range(0, len(y), self.eval_batch_size):
            chunk = slice(start, start + self.eval_batch_size)
            summed, right = _summed_cross_entropy(self._kernel.logits(weights, x[chunk]), y[chunk])
            loss_sum += summed.cpu().numpy().astype(np.float64)
            correct += right.cpu().numpy()
        losses[slots] = loss_sum / len(y)
        accuracies[slots] = correct / len(y)
        return losses, accuracies

    # -- snapshots --------------------------------------------------------------------------
    def state_dict(self, slot: int) -> dict[str, Any]:
        """Slot ``slot``'s state in ``TorchTrainer.state_dict()``'s format (copies), so a
        snapshot loads into either engine."""
        self._check_slot(slot)
        if not self._started[slot]:
            raise ValueError(f"slot {slot} was never started")
        return {
            "weights": self._weights[slot].clone(),
            "optimizer": self._optimizer_state(slot),
            "batch_size": self._batch_size[slot],
            "order": self._order[slot].to(self.device, copy=True),
            "cursor": self._cursor[slot],
            "data_generator": self._data_generator[slot].get_state(),
            "prev_mean_grad": self._prev_mean_grad[slot].clone(),
            "probe_generator": self._probe_generator[slot].get_state(),
        }

    @property
    def _moment_names(self) -> list[str]:
        """torch.optim's state keys for the stacked moments, in ``self._moments`` order."""
        return ["momentum_buffer"] if self.optimizer_name == "sgd" else ["exp_avg", "exp_avg_sq"]

    def _optimizer_state(self, slot: int) -> dict[str, Any]:
        """The slot's optimiser as a torch.optim ``state_dict``: one param group per layer,
        per-parameter moments (absent, as in torch, until the first update)."""
        groups = copy.deepcopy(self._optimizer_groups)
        momentum = float(self._momentum[slot])
        for group, rate in zip(groups, self._rates[slot], strict=True):
            group["lr"] = float(rate)
            group["weight_decay"] = self.weight_decay
            if self.optimizer_name == "sgd":
                group["momentum"] = momentum
            else:
                group["betas"] = (momentum, ADAM_BETA2)
        steps = int(self._steps[slot])
        state: dict[int, dict[str, Any]] = {}
        if steps and not (self.optimizer_name == "sgd" and momentum == 0):
            for i, segment in enumerate(self._layout.segments):
                span = slice(segment.offset, segment.offset + segment.numel)
                entry = {
                    name: moment[slot, span].view(segment.shape).clone()
                    for name, moment in zip(self._moment_names, self._moments, strict=True)
                }
                if self.optimizer_name == "adam":
                    entry = {"step": torch.tensor(float(steps)), **entry}
                state[i] = entry
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, slot: int, state: dict[str, Any]) -> None:
        """Continue slot ``slot`` from a snapshot of either engine (same architecture)."""
        self._check_slot(slot)
        weights = state["weights"]
        if weights.shape != (self._layout.size,):
            raise ValueError(
                f"snapshot holds {weights.numel()} weights but this network has "
                f"{self._layout.size}: restore snapshots into a trainer of the same task"
            )
        groups = state["optimizer"]["param_groups"]
        saved = state["optimizer"]["state"]
        if len(groups) != len(self.layers):
            raise ValueError(f"snapshot has {len(groups)} param groups, not {len(self.layers)}")
        with torch.no_grad():
            self._weights[slot] = weights.to(self.device)
            self._prev_mean_grad[slot] = state["prev_mean_grad"].to(self.device)
            for name, moment in zip(self._moment_names, self._moments, strict=True):
                parts = [
                    saved[i][name].reshape(-1).to(self.device)
                    if saved.get(i, {}).get(name) is not None
                    else torch.zeros(segment.numel, device=self.device)
                    for i, segment in enumerate(self._layout.segments)
                ]
                moment[slot] = torch.cat(parts)
        # torch keeps Adam's step per parameter (all equal); SGD's buffer means one step
        self._steps[slot] = max((int(entry.get("step", 1)) for entry in saved.values()), default=0)
        group = groups[0]
        self._momentum[slot] = (
            group["momentum"] if self.optimizer_name == "sgd" else group["betas"][0]
        )
        self.set_learning_rates(np.array([g["lr"] for g in groups]), slot=slot)
        self._batch_size[slot] = int(state["batch_size"])
        self._order[slot] = state["order"].detach().cpu().clone()
        self._cursor[slot] = int(state["cursor"])
        self._data_generator[slot] = torch.Generator()
        self._data_generator[slot].set_state(state["data_generator"].clone())
        self._probe_generator[slot] = torch.Generator()
        if "probe_generator" in state:  # TorchTrainer snapshots from before probes lack it
            self._probe_generator[slot].set_state(state["probe_generator"].clone())
        self._started[slot] = True


def build_batched_trainer(
    task: TaskSpec, num_slots: int, device: str = "cpu", **options: str
) -> BatchedTrainer:
    """A task's network, data and optimiser in a BatchedTrainer of ``num_slots`` slots
    (what :func:`ganno_bench.envs.common.build_trainer` builds for one TorchTrainer)."""
    dataset = task.load_data()
    with torch.random.fork_rng(devices=[]):  # building layers draws from the global RNG
        network = task.build_network(dataset.input_shape, dataset.num_classes)
    return BatchedTrainer(
        network,
        dataset,
        num_slots=num_slots,
        optimizer=task.optimizer,
        weight_decay=task.weight_decay,
        stats_window=task.stats_window,
        eval_batch_size=task.eval_batch_size,
        nonlinearity=getattr(task.model, "activation", "relu"),
        device=device,
        **options,
    )


def _cheapest_runs(
    sizes: np.ndarray, counts: np.ndarray, group_cost: float, row_cost: float
) -> list[tuple[int, int]]:
    """Split the sorted distinct batch ``sizes`` (``counts`` slots each) into runs
    ``[i, j)``, each one group padded to its largest size, minimising
    ``groups * group_cost + padded rows * row_cost`` (dynamic programming over runs)."""
    k = len(sizes)
    best = [0.0] + [math.inf] * k
    start = [0] * (k + 1)
    for j in range(1, k + 1):
        for i in range(j):
            cost = best[i] + group_cost + row_cost * float(sizes[j - 1]) * int(counts[i:j].sum())
            if cost < best[j]:
                best[j], start[j] = cost, i
    runs, j = [], k
    while j:
        runs.append((start[j], j))
        j = start[j]
    return runs[::-1]


def _macs_per_sample(network: nn.Module, layers: list[nn.Module], input_shape: tuple) -> list[int]:
    """Multiply-accumulates of each trainable layer's forward pass on one sample."""
    macs: dict[int, int] = {}

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        spatial = math.prod(output.shape[2:]) if isinstance(module, nn.Conv2d) else 1
        macs[id(module)] = module.weight.numel() * spatial

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            network(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return [macs[id(m)] for m in layers]


def _check_parameters(network: nn.Module, layers: list[nn.Module]) -> None:
    owned = {id(p) for m in layers for p in m.parameters()}
    stray = [name for name, p in network.named_parameters() if id(p) not in owned]
    if stray:
        raise ValueError(
            f"parameters {stray} are outside any Linear/Conv2d layer; each agent controls "
            "one Linear or Conv2d layer, so the network may have no other trainable parameters"
        )


def _optimizer_groups(optimizer: str, layers: list[nn.Module]) -> list[dict[str, Any]]:
    """The param groups of a torch.optim state_dict for these layers (this torch's keys)."""
    groups = [{"params": [torch.zeros(1) for _ in m.parameters()]} for m in layers]
    if optimizer == "sgd":
        template: torch.optim.Optimizer = torch.optim.SGD(groups, lr=1.0, momentum=0.5)
    else:
        template = torch.optim.Adam(groups, lr=1.0)
    return template.state_dict()["param_groups"]
