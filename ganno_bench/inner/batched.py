"""Batched inner training: N instances of one task trained at once.

:class:`BatchedTrainer` holds N *slots*, each one :class:`~ganno_bench.inner.engine.TorchTrainer`'s
worth of state (weights, optimiser moments, data stream, gradient history), every per-slot
tensor stacked along a leading N dimension. One inner step updates every active slot
with a fixed number of kernel launches, so the Python and dispatch overhead that
dominates these small networks is paid once per step instead of N times.

TorchTrainer stays the definition of the benchmark's numbers. A slot starts, trains,
measures and snapshots as a TorchTrainer would: the same initial weights and data order,
autograd's own loss gradient (nll_loss then log_softmax backward), torch.optim's own
float32 operations in its order for SGD and Adam, and snapshots in TorchTrainer's format,
so they move between the engines. With the default kernels this machine's results are
bitwise TorchTrainer's in most slots (the batched MKL matmuls compute each slot's
product as the single ones do); where they are not, they differ by float32 rounding
(the tests state the measured bounds). The per-layer statistics differ by up to ~1e-5:
they reduce each layer's slice at once (``vector_norm``, a multiply-and-sum), where
TorchTrainer's ``index_add_`` sums element by element.

Kernels, chosen by layer kind (measured at one torch thread on a 2-core AMD EPYC shared
with other jobs, so ratios vary by ~10% between runs):

* Linear chains (``Flatten? (Linear act?)*``, the MLP family): forward and backward
  written out as ``bmm`` on the stacked weights (``_LinearChainKernel``), no autograd
  graph. A prototype step (forward, backward, SGD) of 32 MLP-Easy slots at batch 64,
  against 32 sequential torch.optim loops: ``vmap(grad(functional_call))`` 3.7-5.1x,
  ``bmm`` through autograd 6.2-8.1x, the hand-written backward 8.7-12.7x. Whole engine
  at N=32 (train-split instances): MLP-Easy 4.6-5.9x, MLP-Hard 3.1-3.6x; MLP-Hard is
  matmul bound (its batched matmuls run at ~35 GFLOP/s and take ~60% of a step).
* Conv2d on the CPU: one oneDNN call per slot (the trunk runs through autograd once per
  slot, on the slot's own batch size, so it never sees padding), with the linear head,
  loss, optimiser and statistics batched (``_SequentialKernel``, ``conv="loop"``).
  Batching the convolutions barely pays on a CPU: a 3x3 convolution of 8x8 digits is
  compute bound already. Whole engine, two runs each, loop against grouped convolution
  (N*C channels, ``groups=N``, bucketed by batch size): CNN-Easy N=8 1.16-1.26x against
  1.29-1.47x, N=32 1.33-1.54x against 1.38-1.69x; CNN-Hard N=8 1.07-1.29x against
  1.23-1.33x, N=32 1.24-1.26x against 1.21-1.41x. Per layer, grouped ranged from 0.74x
  (the 1-channel first layer at N=32) to 1.84x (16->32 channels at 4x4). Grouped may be
  ~10% faster, inside this machine's noise; the loop makes TorchTrainer's own oneDNN
  calls (weights mostly bitwise equal) and never pads, so it is the CPU default.
  ``vmap`` over ``conv2d`` lowers to the grouped convolution (1.22x / 0.74x against the
  loop on the CNN-Easy trunk at batch 64 / 128), and im2col by shifted slices + ``bmm``
  was 3-4x slower than the loop. ``conv="grouped"`` is the default on CUDA, where one
  launch replaces N small ones (not measured: no GPU was available).
* The transformers' :class:`~ganno_bench.inner.transformer.Decoder`: one batched forward
  pass through autograd (:mod:`ganno_bench.inner.batched_decoder`). Unlike the MLPs,
  their steps are compute-bound on a CPU already: at one thread and N = 8-32 it ran
  Transformer-Easy 1.17-1.39x, Medium 1.03-1.07x and Hard 0.95x the sequential engine,
  where one ``functional_call`` per slot gave 1.09-1.26x, 1.03-1.08x and 1.02-1.06x: the
  ``bmm`` projections run at the rate of the per-slot ``mm`` (measured on Hard's shapes),
  so batching saves launches, which matter only for small decoders
  (``DECODER_BATCHED_MACS``). On a GPU the batched kernel is always taken.
* Anything else (a network that is not such an ``nn.Sequential``): a
  ``torch.func.functional_call`` per slot (``_FunctionalLoopKernel``), so every network
  TorchTrainer accepts trains here too, at about the sequential cost; it runs the
  network's own modules, so its weights are bitwise TorchTrainer's.

Mixed batch sizes (the train split mixes 32/64/128, test-ood 16/256): slots are split
into groups, and a group shares one minibatch padded to its largest batch size. A slot's
padding rows repeat its own samples (so they are finite whenever its real rows are) and
are masked with ``torch.where``: the loss is the sum over the real rows over their
count, the real batch's mean exactly. Padding the train split to 128 computes 1.71x the
real rows; bucketing by batch size instead costs one more set of launches per bucket
(~150 us + ~45 us a layer per step here). Measured, padding / bucketing, N=8 and N=32:
MLP-Easy 3.76x / 3.12x and 5.36x / 5.25x, MLP-Hard 2.72x / 2.38x and 2.60x / 3.61x. So
``grouping="auto"`` picks the cheapest split of the sorted batch sizes under a cost
model (launch overhead per group against multiply-accumulates per padded row, see
``GROUP_OVERHEAD_MACS``): 4.34x and 5.89x, 2.57x and 3.20x on the same four cases.

Isolation: no operation reduces across slots (matmuls are batched, sums run over a
slot's own rows and parameters, masks use ``torch.where``), so a slot whose loss turns
non-finite leaves the others bitwise unchanged. Inactive slots (``active`` False) are
gathered out: neither computed nor updated.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ganno_bench.data import ArrayDataset
from ganno_bench.inner.batched_decoder import DecoderKernel
from ganno_bench.inner.batched_kernels import (
    Batch,
    FunctionalLoopKernel,
    Kernel,
    Layout,
    LinearChainKernel,
    SequentialKernel,
    conv_sequence,
    linear_chain,
    sequence,
    summed_cross_entropy,
)
from ganno_bench.inner.engine import PROBE_SALT, DecisionStats, LayerInfo, engine_options
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.models import agent_layers, fan_in, initialise, layer_kind
from ganno_bench.inner.task import TaskSpec
from ganno_bench.inner.transformer import Decoder

KERNELS = ("auto", "linear", "sequential", "decoder", "functional")
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
# The CPU's bound for the batched decoder kernel, in multiply-accumulates of a decoder's
# projections per sequence (measured at one thread: Transformer-Easy, 0.2M, 1.17-1.39x
# against the sequential engine at N = 8-32 and 1.09-1.26x with a functional_call per
# slot; Medium, 0.8M, 1.03-1.07x both ways; Hard, 4.1M, 0.95x against 1.02-1.06x).
DECODER_BATCHED_MACS = 2e6
# Evaluation chunks hold at most this many (slot, sample, position) targets at once.
EVAL_TARGET_BUDGET = 1 << 20


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
        layers = agent_layers(network)
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
        self._layout = Layout(layers)
        self._element_layer = self._layout.element_layer.to(self.device)
        self._spans = self._layout.layer_spans()
        self._macs = _macs_per_sample(network, layers, dataset.x_train[:1])
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
        self._scratch: dict[str, torch.Tensor] = {}  # see _scratch_rows

    def _choose_kernel(
        self,
        network: nn.Module,
        layers: list[nn.Module],
        input_shape: tuple[int, ...],
        kernel: str,
        conv: str,
    ) -> tuple[str, Kernel]:
        """The named kernel, or for ``"auto"`` the fastest that fits the network."""
        modules = sequence(network)
        chain = linear_chain(modules, input_shape) if modules is not None else None
        sequential = modules is not None and (chain is not None or conv_sequence(modules))
        if kernel == "auto":
            kernel = (
                "linear" if chain is not None
                else "sequential" if sequential
                else "decoder" if isinstance(network, Decoder) and self._decoder_pays()
                else "functional"
            )
        if kernel == "decoder":
            if not isinstance(network, Decoder):
                raise ValueError("kernel='decoder' needs a ganno_bench.inner.transformer.Decoder")
            return kernel, DecoderKernel(self._layout, network)
        if kernel == "linear":
            if chain is None:
                raise ValueError("kernel='linear' needs a Sequential of Flatten, Linear, ReLU/Tanh")
            return kernel, LinearChainKernel(self._layout, chain)
        if kernel == "sequential":
            if not sequential or modules is None:
                raise ValueError(
                    "kernel='sequential' needs a Sequential: Conv2d/MaxPool2d/ReLU/Tanh, "
                    "one Flatten, then Linear/ReLU/Tanh"
                )
            if not any(isinstance(m, nn.Flatten) for m in modules):  # a linear chain
                modules = [nn.Flatten(), *modules]
            flatten = next(i for i, m in enumerate(modules) if isinstance(m, nn.Flatten))
            head = linear_chain(modules[flatten + 1 :], (1,))
            assert head is not None  # conv_sequence or linear_chain checked it
            if conv == "auto":
                conv = "grouped" if self.device.type == "cuda" else "loop"
            return f"sequential-{conv}", SequentialKernel(self._layout, modules, head, conv)
        names = {id(p): name for name, p in network.named_parameters()}
        order = [names[id(p)] for m in layers for p in m.parameters()]
        # a copy on the device: ``layers`` stay on the CPU, where start() initialises them
        return kernel, FunctionalLoopKernel(
            self._layout, copy.deepcopy(network).to(self.device), order
        )

    def _decoder_pays(self) -> bool:
        """Whether the batched decoder kernel beats one ``functional_call`` per slot: on a
        GPU always (one launch for N); on the CPU only for decoders of at most
        ``DECODER_BATCHED_MACS`` per sequence, whose per-slot matmuls are small enough
        for launches to matter (see the module docstring). The GPU choice is by design,
        not yet measured: no GPU was lent while the decoder kernel was written, so its
        CUDA tolerance (embedding and attention backward sum in a nondeterministic
        order there) is untested."""
        return self.device.type != "cpu" or sum(self._macs) <= DECODER_BATCHED_MACS

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
        if slot is None:  # every decision: into the (N, P) buffer, no temporary (~5x faster)
            torch.index_select(rate32, 1, self._element_layer, out=self._rate_elements)
        else:
            self._rate_elements[slot] = rate32[self._element_layer]

    def learning_rates(self) -> np.ndarray:
        """Every slot's per-layer rates, shape (N, L)."""
        return self._rates.copy()

    def batch_sizes(self) -> list[int]:
        """Every slot's batch size (its instance's, clamped to the train part)."""
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
        g = len(slots)

        def rows(storage: torch.Tensor, name: str) -> torch.Tensor:
            # index_select, not advanced indexing: ~3x faster on these (G, P) rows
            return torch.index_select(storage, 0, index, out=self._scratch_rows(name, g))

        return _Work(
            index,
            rows(self._weights, "weights"),
            [rows(m, f"moment{i}") for i, m in enumerate(self._moments)],
            rows(self._prev_mean_grad, "prev_mean_grad"),
            rows(self._rate_elements, "rates"),
            gathered=True,
        )

    def _scratch_rows(self, name: str, count: int) -> torch.Tensor:
        """The first ``count`` rows of a persistent (N, P) work buffer. Fresh (G, P)
        tensors each decision cost ~8,000 page faults a decision on MLP-Hard at N=32
        (the allocator hands large blocks back to the system); groups train one after
        another, so one buffer per role serves them all."""
        if name not in self._scratch:
            self._scratch[name] = torch.empty_like(self._weights)
        return self._scratch[name][:count]

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
        start_weights = self._scratch_rows("start_weights", g).copy_(work.weights)
        grad = self._scratch_rows("grad", g)
        grad_sum = self._scratch_rows("grad_sum", g).zero_()
        grad_sq_sum = self._scratch_rows("grad_sq_sum", g).zero_()
        loss_sum = torch.zeros(g, device=self.device)
        schedule = self._schedule(slots, steps) if update else []
        minibatches = _gathered(x_train, y_train, indices)
        for step in range(steps):
            x, y = next(minibatches)
            batch = Batch(x, y, sizes, mask, counts, padded)
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

    def _per_layer_norm(self, values: torch.Tensor) -> torch.Tensor:
        """Per-slot, per-layer Euclidean norms (G, L): ``vector_norm`` on each layer's
        slice reads it once and writes no (G, P) temporary (a squared copy of the rows
        cost more than the norm itself: 54 against 77 us for 14 x 16,384 here)."""
        return torch.stack(
            [torch.linalg.vector_norm(values[:, start:end], dim=1) for start, end in self._spans],
            dim=1,
        )

    def _per_layer_dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-slot, per-layer dot products (G, L), slice by slice (a batched 1 x n by
        n x 1 matmul was 4x slower than multiply-and-sum on these shapes)."""
        return torch.stack(
            [(a[:, start:end] * b[:, start:end]).sum(1) for start, end in self._spans], dim=1
        )

    def _decision_stats(
        self,
        work: _Work,
        start_weights: torch.Tensor,
        grad_sum: torch.Tensor,
        grad_sq_sum: torch.Tensor,
        window: int,
    ) -> np.ndarray:
        """TorchTrainer's statistics per slot, (G, 5, L) float64 (same formulas). The
        arguments are scratch rows: ``grad_sum`` becomes the mean gradient and
        ``start_weights`` the decision's update, in place."""
        mean_grad = grad_sum.div_(window)
        update = torch.sub(work.weights, start_weights, out=start_weights)
        prev = work.prev_mean_grad
        grad_norm = self._per_layer_norm(mean_grad)
        weight_norm = self._per_layer_norm(work.weights)
        update_norm = self._per_layer_norm(update)
        dot = self._per_layer_dot(mean_grad, prev)
        prev_norm = self._per_layer_norm(prev)
        mean_sq_norm = self._per_layer(grad_sq_sum) / window
        prev.copy_(mean_grad)
        tiny = torch.finfo(torch.float32).tiny
        noise = (1.0 - grad_norm.square() / mean_sq_norm.clamp_min(tiny)).clamp(0.0, 1.0)
        cosine = dot / (grad_norm * prev_norm).clamp_min(tiny)
        ratio = (update_norm.square() / weight_norm.square().clamp_min(tiny)).sqrt()
        stacked = torch.stack([grad_norm, weight_norm, ratio, cosine, noise], dim=1)
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
        x, y = self._data[part]  # y: (samples,) labels or (samples, length) next tokens
        loss_sum = np.zeros(len(slots))
        correct = np.zeros(len(slots), dtype=np.int64)
        rows = self._eval_rows(len(slots), y[0].numel())
        for start in range(0, len(y), rows):
            chunk = slice(start, start + rows)
            summed, right = summed_cross_entropy(self._kernel.logits(weights, x[chunk]), y[chunk])
            loss_sum += summed.cpu().numpy().astype(np.float64)
            correct += right.cpu().numpy()
        losses[slots] = loss_sum / y.numel()
        accuracies[slots] = correct / y.numel()
        return losses, accuracies

    def _eval_rows(self, slots: int, targets_per_row: int) -> int:
        """Samples per evaluation chunk: ``eval_batch_size`` (TorchTrainer's chunks, so
        the sums round alike) unless the G slots' activations would pass
        ``EVAL_TARGET_BUDGET`` targets (a transformer's 4,096 sequences of 48 tokens at
        G=32 would hold gigabytes of activations)."""
        fitting = EVAL_TARGET_BUDGET // max(slots * targets_per_row, 1)
        return max(1, min(self.eval_batch_size, fitting))

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


def _gathered(x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, budget: int = 1 << 24):
    """The minibatches ``x[indices[step]], y[indices[step]]`` step by step, gathered
    several steps at a time (up to ``budget`` bytes of inputs) with ``index_select``:
    per-step advanced indexing cost ~2 ms a step on MLP-Hard at N=32 and one thread."""
    per_step = indices[0].numel() * x[0].numel() * x.element_size()
    chunk = max(1, budget // max(per_step, 1))
    for start in range(0, len(indices), chunk):
        part = indices[start : start + chunk]
        flat = part.reshape(-1)
        xs = x.index_select(0, flat).view(*part.shape, *x.shape[1:])
        ys = y.index_select(0, flat).view(*part.shape, *y.shape[1:])
        yield from zip(xs, ys, strict=True)


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
        device=device,
        **engine_options(task),
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


def _macs_per_sample(
    network: nn.Module, layers: list[nn.Module], sample: torch.Tensor
) -> list[int]:
    """Multiply-accumulates of each agent's forward pass on one ``sample`` (a batch of
    one, of the data's dtype): every Linear and Conv2d inside the agent's layer, once per
    output position (a convolution's pixels, a sequence's tokens)."""
    macs = [0] * len(layers)

    def hook(index: int) -> Any:
        def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            positions = output.shape[2:] if isinstance(module, nn.Conv2d) else output.shape[1:-1]
            macs[index] += module.weight.numel() * math.prod(positions)

        return count

    handles = [
        module.register_forward_hook(hook(i))
        for i, layer in enumerate(layers)
        for module in layer.modules()
        if isinstance(module, nn.Linear | nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            network(sample)
    finally:
        for handle in handles:
            handle.remove()
    return macs


def _check_parameters(network: nn.Module, layers: list[nn.Module]) -> None:
    owned = {id(p) for m in layers for p in m.parameters()}
    stray = [name for name, p in network.named_parameters() if id(p) not in owned]
    if stray:
        raise ValueError(
            f"parameters {stray} are outside any agent's layer (a Linear, a Conv2d or a "
            "transformer ParameterGroup); every trainable parameter needs one agent"
        )


def _optimizer_groups(optimizer: str, layers: list[nn.Module]) -> list[dict[str, Any]]:
    """The param groups of a torch.optim state_dict for these layers (this torch's keys)."""
    groups = [{"params": [torch.zeros(1) for _ in m.parameters()]} for m in layers]
    if optimizer == "sgd":
        template: torch.optim.Optimizer = torch.optim.SGD(groups, lr=1.0, momentum=0.5)
    else:
        template = torch.optim.Adam(groups, lr=1.0)
    return template.state_dict()["param_groups"]
