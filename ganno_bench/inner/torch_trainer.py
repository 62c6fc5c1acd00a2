"""The reference inner-training engine: one network, eager PyTorch, torch.optim.

It is the definition of the benchmark's numbers (references and result cards come from
it). Per-layer statistics are cheap by construction: all parameters live in one flat
buffer (each parameter is a view into it), so per-layer norms, update ratios and cosines
are a handful of ``index_add_`` calls per *decision*, and only the last ``stats_window``
inner steps of a decision pay for gradient bookkeeping (two fused ``_foreach`` calls
each).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganno_bench.data import ArrayDataset
from ganno_bench.inner.engine import (
    PROBE_SALT,
    DecisionStats,
    GradientProbe,
    InnerTrainer,
    LayerInfo,
)
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.models import agent_layers, fan_in, initialise, layer_kind


class TorchTrainer(InnerTrainer):
    """Eager PyTorch engine: one network, one optimiser with a param group per layer."""

    def __init__(
        self,
        network: nn.Module,
        dataset: ArrayDataset,
        *,
        optimizer: str = "sgd",
        weight_decay: float = 0.0,
        stats_window: int = 4,
        eval_batch_size: int = 4096,
        nonlinearity: str = "relu",
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.optimizer_name = optimizer
        self.weight_decay = weight_decay
        self.stats_window = stats_window
        self.eval_batch_size = eval_batch_size
        self.nonlinearity = nonlinearity  # sets the init gain of the scheme
        self.network = network.to(self.device)
        self._layers = agent_layers(self.network)
        if not self._layers:
            raise ValueError("the network has no Linear or Conv2d layer to control")
        self._check_all_parameters_belong_to_layers()
        count = len(self._layers)
        self.layers = [
            LayerInfo(layer_kind(m), fan_in(m), i / max(count - 1, 1))
            for i, m in enumerate(self._layers)
        ]
        self._flatten_parameters()
        self._data = {
            "train": (dataset.x_train.to(self.device), dataset.y_train.to(self.device)),
            "val": (dataset.x_val.to(self.device), dataset.y_val.to(self.device)),
            "test": (dataset.x_test.to(self.device), dataset.y_test.to(self.device)),
        }
        self.num_classes = dataset.num_classes
        self.optimizer: torch.optim.Optimizer | None = None
        self._prev_mean_grad = torch.zeros_like(self._flat)
        # per-layer squared norms of _prev_mean_grad: the last decision's grad_sq, kept so
        # that each decision folds its gradient once (None: fold _prev_mean_grad again)
        self._prev_grad_sq: torch.Tensor | None = None

    # -- set-up ---------------------------------------------------------------
    def _check_all_parameters_belong_to_layers(self) -> None:
        owned = {id(p) for m in self._layers for p in m.parameters()}
        stray = [name for name, p in self.network.named_parameters() if id(p) not in owned]
        if stray:
            raise ValueError(
                f"parameters {stray} are outside any Linear/Conv2d layer; each agent controls "
                "one Linear or Conv2d layer, so the network may have no other trainable parameters"
            )

    def _flatten_parameters(self) -> None:
        """Make every parameter a view into one buffer, and map elements to layers."""
        self._params = [p for m in self._layers for p in m.parameters()]
        sizes = [p.numel() for p in self._params]
        self._flat = torch.zeros(sum(sizes), device=self.device)
        # each layer's parameters are one contiguous run of the buffer, in layer order
        self._layer_lengths = torch.tensor(
            [sum(p.numel() for p in m.parameters()) for m in self._layers], device=self.device
        )
        self._grad_sum = torch.zeros_like(self._flat)
        self._grad_sq_sum = torch.zeros_like(self._flat)
        self._link_views()

    def _link_views(self) -> None:
        """Point every parameter (and the gradient accumulators) into the flat buffers."""
        sizes = [p.numel() for p in self._params]
        for p, view in zip(self._params, self._views_like_params(self._flat, sizes), strict=True):
            view.copy_(p.data)
            p.data = view
        self._grad_sum_views = self._views_like_params(self._grad_sum, sizes)
        self._grad_sq_sum_views = self._views_like_params(self._grad_sq_sum, sizes)

    def __setstate__(self, state: dict) -> None:
        """After unpickling or deepcopy (SuperSuit copies envs so), views may be copies:
        link the parameters to the flat buffer again, keeping their current values."""
        self.__dict__.update(state)
        self.__dict__.setdefault("_prev_grad_sq", None)  # pickled before it existed
        self._link_views()

    def _views_like_params(self, flat: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        offsets = np.cumsum([0, *sizes[:-1]])
        return [
            flat[o : o + n].view_as(p) for p, o, n in zip(self._params, offsets, sizes, strict=True)
        ]

    def start(self, instance: Instance) -> None:
        init_generator = torch.Generator().manual_seed(instance.init_seed)
        if self.device.type == "cpu":
            initialise(
                self._layers,
                instance.init_scheme,
                instance.init_scale,
                init_generator,
                self.nonlinearity,
            )
        else:  # initialise on the CPU so the weights do not depend on the device
            self._init_via_cpu(instance, init_generator)
        groups = [
            {"params": list(m.parameters()), "lr": instance.learning_rate} for m in self._layers
        ]
        if self.optimizer_name == "sgd":
            self.optimizer = torch.optim.SGD(
                groups,
                lr=instance.learning_rate,
                momentum=instance.momentum,
                weight_decay=self.weight_decay,
            )
        else:
            self.optimizer = torch.optim.Adam(
                groups,
                lr=instance.learning_rate,
                betas=(instance.momentum, 0.999),
                weight_decay=self.weight_decay,
            )
        n_train = len(self._data["train"][1])
        self._batch_size = min(instance.batch_size, n_train)
        self._data_generator = torch.Generator().manual_seed(instance.data_seed)
        self._order = self._new_epoch_order()
        self._cursor = 0
        self._prev_mean_grad.zero_()
        self._prev_grad_sq = None
        # Gradient probes draw from their own stream: measuring never shifts the training data.
        self._probe_generator = torch.Generator().manual_seed(instance.data_seed + PROBE_SALT)

    def _init_via_cpu(self, instance: Instance, generator: torch.Generator) -> None:
        with torch.random.fork_rng(devices=[]):  # layer constructors draw from the global RNG
            shadow = [_cpu_shadow(m) for m in self._layers]
        initialise(shadow, instance.init_scheme, instance.init_scale, generator, self.nonlinearity)
        with torch.no_grad():
            for target, source in zip(self._layers, shadow, strict=True):
                for p, q in zip(target.parameters(), source.parameters(), strict=True):
                    p.copy_(q)

    def _new_epoch_order(self) -> torch.Tensor:
        n = len(self._data["train"][1])
        return torch.randperm(n, generator=self._data_generator).to(self.device)

    def _next_batch(self, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``size`` samples of the epoch order (the instance's batch size unless
        given); a batch that would cross the epoch's end starts a new epoch instead."""
        size = self._batch_size if size is None else size
        if self._cursor + size > len(self._order):
            self._order = self._new_epoch_order()
            self._cursor = 0
        index = self._order[self._cursor : self._cursor + size]
        self._cursor += size
        x, y = self._data["train"]
        return x.index_select(0, index), y.index_select(0, index)  # faster than x[index]

    # -- control --------------------------------------------------------------
    def set_learning_rates(self, rates: np.ndarray) -> None:
        assert self.optimizer is not None, "start() must be called first"
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = float(rate)

    def train(self, steps: int, *, update: bool = True) -> DecisionStats:
        """Run ``steps`` minibatches; with ``update=False`` only measure gradients (a probe)."""
        if steps < 1:
            raise ValueError(f"train() needs at least one step, got {steps}")
        return self._run([None] * steps, update=update)

    def train_batches(self, batch_sizes: Sequence[int]) -> DecisionStats:
        """One update per entry of ``batch_sizes``, each on that many next samples of the
        data stream (the batch-size track: the agent sets the size of every update)."""
        sizes = [int(b) for b in batch_sizes]
        if not sizes or min(sizes) < 1 or max(sizes) > len(self._data["train"][1]):
            raise ValueError(
                f"batch sizes must be 1..{len(self._data['train'][1])} (the train part), "
                f"and at least one is needed; got {sizes}"
            )
        return self._run(sizes, update=True)

    def _run(self, sizes: Sequence[int | None], *, update: bool) -> DecisionStats:
        """Minibatch steps of the given sizes (None: the instance's batch size)."""
        assert self.optimizer is not None, "start() must be called first"
        steps = len(sizes)
        window_start = max(0, steps - self.stats_window)
        start_weights = self._flat.clone()
        self._grad_sum.zero_()
        self._grad_sq_sum.zero_()
        loss_sum = torch.zeros((), device=self.device)
        for step, size in enumerate(sizes):
            x, y = self._next_batch(size)
            loss = F.cross_entropy(self.network(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if step >= window_start:  # two fused calls; the window bounds their cost
                grads = [p.grad for p in self._params]
                torch._foreach_add_(self._grad_sum_views, grads)
                torch._foreach_addcmul_(self._grad_sq_sum_views, grads, grads)
                loss_sum.add_(loss.detach())
            if update:
                self.optimizer.step()
        window = steps - window_start
        return self._decision_stats(start_weights, loss_sum / window, window)

    @torch.no_grad()
    def _decision_stats(
        self, start_weights: torch.Tensor, train_loss: torch.Tensor, window: int
    ) -> DecisionStats:
        def per_layer(values: torch.Tensor) -> torch.Tensor:
            # a float32 left fold over each layer's run, element by element: bitwise what
            # ``zeros(L).index_add_(0, element_layer, values)`` gives (checked on random,
            # NaN, inf and signed-zero rows), in about half its time
            return torch.segment_reduce(values, "sum", lengths=self._layer_lengths)

        mean_grad = self._grad_sum / window
        grad_sq = per_layer(mean_grad.square())
        weight_sq = per_layer(self._flat.square())
        update_sq = per_layer((self._flat - start_weights).square())
        dot = per_layer(mean_grad * self._prev_mean_grad)
        prev_sq = self._prev_grad_sq
        if prev_sq is None:
            prev_sq = per_layer(self._prev_mean_grad.square())
        mean_sq_norm = per_layer(self._grad_sq_sum / window)
        self._prev_mean_grad.copy_(mean_grad)
        self._prev_grad_sq = grad_sq  # bitwise what folding the copy next time would give
        tiny = torch.finfo(torch.float32).tiny
        noise = (1.0 - grad_sq / mean_sq_norm.clamp_min(tiny)).clamp(0.0, 1.0)
        cosine = dot / (grad_sq.sqrt() * prev_sq.sqrt()).clamp_min(tiny)
        stacked = (
            torch.stack(
                [
                    grad_sq.sqrt(),
                    weight_sq.sqrt(),
                    (update_sq / weight_sq.clamp_min(tiny)).sqrt(),
                    cosine,
                    noise,
                ]
            )
            .cpu()
            .numpy()
            .astype(np.float64)
        )
        return DecisionStats(float(train_loss), *stacked)

    def probe_gradients(self, small: int, chunks: int) -> GradientProbe:
        """Measure gradients at the current weights without changing them (or the data
        stream): ``chunks`` train batches of ``small`` samples, drawn *with replacement*
        from a separate probe generator. With replacement every sample is an independent
        draw from the train part, so ``E|G_B|^2 = |G|^2 + tr(Sigma) / B`` holds exactly
        for the train part's mean gradient ``G`` and per-sample covariance ``Sigma`` and
        :func:`~ganno_bench.inner.noise_scale.estimate_noise` is unbiased; drawing without
        replacement from the finite part would shrink ``|G_big|^2`` by the finite-population
        factor and bias ``B_simple`` upwards."""
        assert self.optimizer is not None, "start() must be called first"
        n = len(self._data["train"][1])
        if small < 1 or chunks < 2 or small * chunks > n:
            raise ValueError(
                f"a probe needs small >= 1, chunks >= 2 and small * chunks <= {n}; "
                f"got small={small}, chunks={chunks}"
            )
        index = torch.randint(n, (small * chunks,), generator=self._probe_generator)
        x, y = self._data["train"]
        grad_sum = torch.zeros_like(self._flat)
        sq_norm_sum = torch.zeros((), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        for chunk in index.to(self.device).view(chunks, small):
            loss = F.cross_entropy(self.network(x[chunk]), y[chunk])
            grads = torch.autograd.grad(loss, self._params)
            flat = torch.cat([g.reshape(-1) for g in grads])
            grad_sum.add_(flat)
            sq_norm_sum.add_(flat.square().sum())
            loss_sum.add_(loss.detach())
        mean_grad = grad_sum / chunks
        return GradientProbe(
            small=small,
            chunks=chunks,
            loss=float(loss_sum / chunks),
            small_sq_norm=float(sq_norm_sum / chunks),
            big_sq_norm=float(mean_grad.square().sum()),
            mean_grad=mean_grad.detach(),
        )

    @torch.no_grad()
    def evaluate(self, part: str) -> tuple[float, float]:
        x, y = self._data[part]  # y: (samples,) labels or (samples, length) next tokens
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), self.eval_batch_size):
            logits = self.network(x[start : start + self.eval_batch_size])
            target = y[start : start + self.eval_batch_size]
            loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=1) == target).sum())
        return loss_sum / y.numel(), correct / y.numel()

    def data_part(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of the ``"train"``, ``"val"`` or ``"test"`` part (not copies:
        for white-box agents that read the data, never to be written to)."""
        return self._data[part]

    def learning_rates(self) -> np.ndarray:
        assert self.optimizer is not None, "start() must be called first"
        return np.array([g["lr"] for g in self.optimizer.param_groups])

    def final_weights(self) -> torch.Tensor:
        """A copy of all parameters as one vector (for determinism checks and snapshots)."""
        return self._flat.detach().cpu().clone()

    # -- snapshots ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the next steps depend on, as copies: weights, optimiser state (rates,
        momentum / Adam moments, step counts), the data stream (batch size, epoch order,
        cursor, generator state) and the gradient history behind the cosine feature."""
        assert self.optimizer is not None, "start() must be called first"
        return {
            "weights": self._flat.detach().clone(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "batch_size": self._batch_size,
            "order": self._order.clone(),
            "cursor": self._cursor,
            "data_generator": self._data_generator.get_state(),
            "prev_mean_grad": self._prev_mean_grad.clone(),
            "probe_generator": self._probe_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the trainer that made ``state`` was (same architecture)."""
        assert self.optimizer is not None, "start() must be called first"
        if state["weights"].shape != self._flat.shape:
            raise ValueError(
                f"snapshot holds {state['weights'].numel()} weights but this network has "
                f"{self._flat.numel()}: restore snapshots into an env of the same id"
            )
        with torch.no_grad():
            self._flat.copy_(state["weights"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self._batch_size = int(state["batch_size"])
        self._order = state["order"].clone().to(self.device)
        self._cursor = int(state["cursor"])
        self._data_generator.set_state(state["data_generator"].clone())
        self._prev_mean_grad.copy_(state["prev_mean_grad"])
        self._prev_grad_sq = None
        if "probe_generator" in state:  # snapshots written before probes existed lack it
            self._probe_generator.set_state(state["probe_generator"].clone())


def _cpu_shadow(layer: nn.Module) -> nn.Module:
    """A CPU module of the layer's architecture (its values are drawn over at once)."""
    if isinstance(layer, nn.Linear | nn.Conv2d):
        return type(layer)(*_constructor_args(layer))
    return copy.deepcopy(layer).cpu()


def _constructor_args(layer: nn.Module) -> tuple:
    if isinstance(layer, nn.Conv2d):
        return (
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            layer.bias is not None,
        )
    return (layer.in_features, layer.out_features, layer.bias is not None)
