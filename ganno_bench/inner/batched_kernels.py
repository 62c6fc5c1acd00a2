"""The batched engine's kernels: how N stacked copies of one network compute a step.

A :class:`Layout` maps every trainable layer's weight and bias into one flat row per
slot; a kernel computes the loss and the flat gradient of every slot of a group from
those rows, in one of three ways (see :mod:`ganno_bench.inner.batched` for the measured
choice): hand-written ``bmm`` forward and backward for chains of Linear layers, a
per-slot trunk (convolutions) with the rest batched, or ``functional_call`` per slot for
any other network. Minibatches of slots with different batch sizes share one padded
:class:`Batch` whose mask keeps the padding out of every loss and gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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


class Layout:
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
class Batch:
    """One padded minibatch for a group of G slots: rows past ``sizes[g]`` are padding."""

    x: torch.Tensor  # (G, B, *input_shape)
    y: torch.Tensor  # (G, B) labels, or (G, B, T) next tokens
    sizes: list[int]
    mask: torch.Tensor  # (G, B) bool, True on real rows
    counts: torch.Tensor  # (G,) float, the real rows per slot
    padded: bool  # whether any slot has padding rows


def _masked_cross_entropy(
    logits: torch.Tensor, batch: Batch, *, class_dim: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slot mean cross-entropy over the real rows, and its gradient w.r.t. ``logits``
    (in the layout ``logits`` came in).

    ``logits`` is (G, B, C), or (G, B, T, C) with ``batch.y`` (G, B, T) for per-position
    targets (sequences: the mean then runs over the real rows' positions, as
    ``F.cross_entropy`` averages over every target). The gradient takes autograd's own
    path (nll_loss's ``-1 / count`` at the target, then log_softmax's backward), so for
    (G, B, C) it is bitwise what ``F.cross_entropy(...).backward()`` hands a network.
    ``torch.where``, never a multiplied mask: padding rows never enter a sum, even
    non-finite ones.

    ``class_dim=-2`` takes (G, C, B) logits, the classes before the rows. On a CPU
    torch's log_softmax along a short last dimension goes row by row: for 32 slots of 128
    rows and 10 classes it took a quarter of a batched MLP-Easy step, and ~30x less laid
    out so. The values agree with the classes-last path to float32 rounding (bitwise on
    an AVX-512 EPYC where the rows fill the vector lanes), so only kernels that promise
    closeness, not bitwise equality, ask for it."""
    if class_dim not in (-1, -2):
        raise ValueError(f"class_dim must be -1 or -2, got {class_dim}")
    logp = torch.log_softmax(logits, dim=class_dim)
    target = batch.y.unsqueeze(class_dim)
    nll = logp.gather(class_dim, target).squeeze(class_dim).neg_()
    row_mask = batch.mask.view(*batch.mask.shape, *[1] * (nll.dim() - 2))
    if batch.padded:
        nll = torch.where(row_mask, nll, 0.0)
    positions = nll[0, 0].numel()  # targets per row: 1, or a sequence's length
    counts = batch.counts if positions == 1 else batch.counts * positions
    losses = nll.flatten(1).sum(1) / counts
    # nll_loss's gradient: -1 / count at each real row's target, +0.0 elsewhere (a
    # scatter into zeros: the values of a where over a one-hot, at a third of its cost)
    at_target = (-1.0 / counts).view(-1, *[1] * (target.dim() - 1)).expand(target.shape)
    if batch.padded:
        at_target = torch.where(row_mask.unsqueeze(class_dim), at_target, 0.0)
    grad_logp = torch.zeros_like(logp).scatter_(class_dim, target, at_target)
    grad = torch.ops.aten._log_softmax_backward_data(
        grad_logp, logp, logp.dim() + class_dim, logp.dtype
    )
    if batch.padded:
        grad = torch.where(row_mask.unsqueeze(class_dim), grad, 0.0)
    return losses, grad


def summed_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slot summed cross-entropy and correct count over every target: ``logits``
    (G, B, C) with ``y`` (B,), or (G, B, T, C) with per-position targets ``y`` (B, T).
    (G, B, C) logits take log_softmax with the classes first, as the training loss does
    (30x faster for 10 classes; 1.2 of a 4.2 ms evaluation of 32 MLP-Easy slots)."""
    target = y.expand(logits.shape[0], *y.shape)
    correct = (logits.argmax(dim=-1) == target).flatten(1).sum(1)
    if logits.dim() == 3:
        logp = torch.log_softmax(logits.transpose(1, 2).contiguous(), dim=1)
        nll = logp.gather(1, target.unsqueeze(1))
    else:
        nll = torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1))
    return -nll.flatten(1).sum(1), correct


# -- kernels -------------------------------------------------------------------------------

ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def activate(name: str | None, z: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
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


def batched_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``h @ w.T + b`` per slot: ``h`` (G, B, I), ``w`` (G, O, I), ``b`` (G, O). ``bmm``
    then ``add`` is ~25% faster than ``baddbmm``, which first copies the expanded bias."""
    z = torch.bmm(h, w.transpose(1, 2))
    return z if b is None else z.add_(b.unsqueeze(1))


class Kernel:
    """The loss, gradients and logits of one architecture, for G slots at once."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        # the layers computed on a group's padded rows (the others run once per slot,
        # on its own batch size): what grouping slots by batch size can save on
        self.padded_layers: list[int] = list(range(layout.num_layers))

    def loss_and_grads(
        self, weights: torch.Tensor, batch: Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-slot mean loss (G,) and every parameter's gradient (G, *shape)."""
        raise NotImplementedError

    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits (G, B, C), or (G, B, T, V) for sequences, of every slot on the shared
        inputs ``x`` (B, ...)."""
        raise NotImplementedError

    @staticmethod
    def _leaves(views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Parameters as autograd leaves sharing the stacked buffer's storage."""
        return [v.detach().requires_grad_() for v in views]

    def _autograd(
        self, weights: torch.Tensor, batch: Batch, forward: Callable[..., torch.Tensor]
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
        h = activate(act, batched_linear(h, w, b), inplace=True)
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


class LinearChainKernel(Kernel):
    """``Flatten? (Linear act?)*`` with forward and backward written out as batched matmuls:
    no autograd graph to build, the fastest option measured for the MLPs."""

    def __init__(self, layout: Layout, activations: list[str | None]) -> None:
        super().__init__(layout)
        self.activations = activations
        self._viewed: tuple[torch.Tensor, list[tuple[Any, Any]]] | None = None

    def _layers(self, weights: torch.Tensor) -> list[tuple[Any, Any]]:
        """Each layer's ``(weight, bias)`` views into ``weights``, made once per tensor: a
        decision's steps all update one tensor in place (12 views cost ~15 us a step)."""
        if self._viewed is None or self._viewed[0] is not weights:
            self._viewed = (weights, self.layout.per_layer(self.layout.views(weights)))
        return self._viewed[1]

    @torch.no_grad()
    def loss_and_grads(
        self, weights: torch.Tensor, batch: Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        layers = self._layers(weights)
        x = batch.x.reshape(*batch.y.shape, -1)
        logits, inputs, outputs = _chain_forward(layers, self.activations, x)
        # the classes-first loss on a transposed copy (log_softmax along 10 classes last
        # runs row by row); the last layer computed transposed would save the two copies
        # and its slow ``h @ w.T`` (~4% of a step) but round differently from
        # TorchTrainer's ``addmm``, where this path is bitwise equal to it
        losses, grad = _masked_cross_entropy(
            logits.transpose(1, 2).contiguous(), batch, class_dim=-2
        )
        grads, _ = _chain_backward(
            layers,
            self.activations,
            grad.transpose(1, 2).contiguous(),
            inputs,
            outputs,
            input_grad=False,
        )
        return losses, grads

    @torch.no_grad()
    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layers = self._layers(weights)
        h = x.reshape(1, len(x), -1).expand(len(weights), -1, -1)
        return _chain_forward(layers, self.activations, h)[0]


class SequentialKernel(Kernel):
    """An ``nn.Sequential`` trunk of Conv2d / MaxPool2d / activations, a Flatten, then a
    ``(Linear act?)*`` head. The trunk goes through autograd, once per slot (``"loop"``,
    each on its own batch size) or as one grouped convolution over the group
    (``"grouped"``); the head is the hand-written batched chain, whose input gradient
    is handed to autograd for the trunk."""

    def __init__(
        self, layout: Layout, modules: list[nn.Module], head: list[str | None], conv: str
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
        return activate(ACTIVATIONS[type(m)], h)

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
        self, weights: torch.Tensor, batch: Batch
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


class FunctionalLoopKernel(Kernel):
    """Any network: ``functional_call`` once per slot, each on its own batch size."""

    def __init__(self, layout: Layout, network: nn.Module, names: list[str]) -> None:
        super().__init__(layout)
        self.padded_layers = []  # all of it runs per slot, on the slot's own batch size
        self.network = network
        self.names = names  # the parameters' names in layout order

    def _call(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The network on one slot's inputs, logits with the classes last: a sequence
        model's (B, V, T) (``F.cross_entropy``'s layout) becomes (B, T, V)."""
        logits = torch.func.functional_call(
            self.network, dict(zip(self.names, params, strict=True)), (x,)
        )
        return logits.movedim(1, -1) if logits.dim() > 2 else logits

    def _forward(self, params: list[torch.Tensor], batch: Batch) -> torch.Tensor:
        per_slot = list(zip(*(p.unbind(0) for p in params), strict=True))
        width = batch.x.shape[1]
        padded = []
        for g, size in enumerate(batch.sizes):
            logits = self._call(per_slot[g], batch.x[g, :size])
            padded.append(torch.cat([logits, logits.new_zeros(width - size, *logits.shape[1:])]))
        return torch.stack(padded)

    def loss_and_grads(
        self, weights: torch.Tensor, batch: Batch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self._autograd(weights, batch, self._forward)

    @torch.no_grad()
    def logits(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        views = self.layout.views(weights)
        return torch.stack([self._call([v[g] for v in views], x) for g in range(len(weights))])


def sequence(network: nn.Module) -> list[nn.Module] | None:
    """The network's modules in forward order, if it is a (nested) ``nn.Sequential``."""
    if not isinstance(network, nn.Sequential):
        return None
    out: list[nn.Module] = []
    for m in network:
        inner = sequence(m) if isinstance(m, nn.Sequential) else [m]
        if inner is None:
            return None
        out += inner
    return out


def linear_chain(modules: list[nn.Module], input_shape: tuple) -> list[str | None] | None:
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
        elif type(m) in ACTIVATIONS and activations and activations[-1] is None:
            activations[-1] = ACTIVATIONS[type(m)]
        else:
            return None
    return activations or None


def _is_plain_flatten(m: nn.Module) -> bool:
    return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1


def conv_sequence(modules: list[nn.Module]) -> bool:
    """Whether ``modules`` is a trunk (Conv2d, MaxPool2d, act), one Flatten, a head."""
    flat = [i for i, m in enumerate(modules) if isinstance(m, nn.Flatten)]
    if len(flat) != 1 or not _is_plain_flatten(modules[flat[0]]):
        return False
    trunk, head = modules[: flat[0]], modules[flat[0] + 1 :]
    trunk_ok = all(
        type(m) in ACTIVATIONS
        or (isinstance(m, nn.MaxPool2d) and not m.return_indices)
        or (isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros")
        for m in trunk
    )
    return trunk_ok and linear_chain(head, (1,)) is not None
