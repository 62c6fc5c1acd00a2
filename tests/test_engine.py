"""The inner-training engine against plain-PyTorch references.

Every expected value here is recomputed independently: a twin network trained by a
hand-written loop with ``torch.optim`` on the same minibatches, per-minibatch gradients
gathered by hand, and losses computed directly with ``F.cross_entropy``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganno_bench.data.dataset import ArrayDataset, split_arrays
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.models import ModelConfig, build_network, trainable_layers
from ganno_bench.inner.torch_trainer import TorchTrainer

CLASSES = 3
MLP = ModelConfig(kind="mlp", hidden=(16, 8))
CNN = ModelConfig(kind="cnn", channels=(3, 4), hidden=(8,), pool_every=2)
INSTANCE = Instance(
    init_seed=3,
    data_seed=5,
    init_scheme="kaiming_uniform",
    init_scale=1.0,
    log10_lr=-1.0,
    batch_size=16,
    momentum=0.9,
)

_DATASETS: dict[bool, ArrayDataset] = {}


def _dataset(image: bool = False) -> ArrayDataset:
    """120 seeded samples of three Gaussian blobs: 72 train (not a multiple of 16), 24 val."""
    if image not in _DATASETS:
        rng = np.random.default_rng(1234)
        y = rng.integers(CLASSES, size=120)
        centres = rng.normal(size=(CLASSES, 36))
        x = centres[y] + rng.normal(size=(120, 36))
        if image:
            x = x.reshape(-1, 1, 6, 6)
        _DATASETS[image] = split_arrays("toy", x, y, CLASSES, split_seed=7)
    return _DATASETS[image]


def _config(kind: str) -> ModelConfig:
    return CNN if kind == "cnn" else MLP


def _trainer(kind: str = "mlp", **kwargs) -> TorchTrainer:
    data = _dataset(image=kind == "cnn")
    torch.manual_seed(0)
    network = build_network(_config(kind), data.input_shape, data.num_classes)
    return TorchTrainer(network, data, **kwargs)


def _twin(trainer: TorchTrainer, kind: str) -> nn.Module:
    """An independent network (ordinary, separately allocated parameters) with equal weights."""
    data = _dataset(image=kind == "cnn")
    twin = build_network(_config(kind), data.input_shape, data.num_classes)
    twin.load_state_dict(trainer.network.state_dict())
    for p, q in zip(twin.parameters(), trainer.network.parameters(), strict=True):
        assert p.data_ptr() != q.data_ptr()
    return twin


def _flat(network: nn.Module) -> torch.Tensor:
    return torch.cat(
        [p.detach().reshape(-1) for m in trainable_layers(network) for p in m.parameters()]
    )


def _layer_slices(network: nn.Module) -> list[slice]:
    slices, start = [], 0
    for m in trainable_layers(network):
        size = sum(p.numel() for p in m.parameters())
        slices.append(slice(start, start + size))
        start += size
    return slices


class ReferenceStream:
    """The engine's documented data order, reproduced from the instance's data seed."""

    def __init__(self, instance: Instance, n_train: int) -> None:
        self.generator = torch.Generator().manual_seed(instance.data_seed)
        self.n = n_train
        self.batch = min(instance.batch_size, n_train)
        self.order = torch.randperm(n_train, generator=self.generator)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch > self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.cursor = 0
        index = self.order[self.cursor : self.cursor + self.batch]
        self.cursor += self.batch
        return index


def _layer_grads(network: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Loss and each layer's gradient (weight and bias flattened together) on one batch."""
    network.zero_grad(set_to_none=True)
    loss = F.cross_entropy(network(x), y)
    loss.backward()
    grads = [
        torch.cat([p.grad.reshape(-1) for p in m.parameters()]).double()
        for m in trainable_layers(network)
    ]
    return loss.item(), grads


def _reference_optimizer(network: nn.Module, name: str, instance: Instance, weight_decay: float):
    groups = [
        {"params": list(m.parameters()), "lr": instance.learning_rate}
        for m in trainable_layers(network)
    ]
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=instance.learning_rate,
            momentum=instance.momentum,
            weight_decay=weight_decay,
        )
    return torch.optim.Adam(
        groups,
        lr=instance.learning_rate,
        betas=(instance.momentum, 0.999),
        weight_decay=weight_decay,
    )


def _reference_train(network, optimizer, stream, data, steps, *, update=True):
    """Hand-written inner loop; returns each step's loss and per-layer gradients."""
    x, y = data.x_train, data.y_train
    losses, grads = [], []
    for _ in range(steps):
        index = stream.next()
        loss, layer_grads = _layer_grads(network, x[index], y[index])
        losses.append(loss)
        grads.append(layer_grads)
        if update:
            optimizer.step()
    return losses, grads


def _expected_stats(grads: list[list[torch.Tensor]], window: int):
    """grad_norm and grad_noise per layer from the last ``window`` steps' gradients."""
    recent = grads[-window:]
    norms, noise, means = [], [], []
    for layer in range(len(recent[0])):
        g = torch.stack([step[layer] for step in recent])
        mean = g.mean(dim=0)
        mean_sq = g.square().sum(dim=1).mean()
        norms.append(mean.norm().item())
        noise.append((1.0 - mean.square().sum() / mean_sq).item())
        means.append(mean)
    return np.array(norms), np.array(noise), means


def _weight_norms(network: nn.Module) -> np.ndarray:
    flat = _flat(network).double()
    return np.array([flat[s].norm().item() for s in _layer_slices(network)])


def _cosines(a: list[torch.Tensor], b: list[torch.Tensor]) -> np.ndarray:
    return np.array(
        [float(torch.dot(u, v) / (u.norm() * v.norm())) for u, v in zip(a, b, strict=True)]
    )


# -- optimiser equivalence ---------------------------------------------------------------


ADAM = {"log10_lr": -2.0, "momentum": 0.8}  # a beta1 other than torch's default 0.9


@pytest.mark.parametrize(
    ("kind", "optimizer", "weight_decay", "changes"),
    [
        ("mlp", "sgd", 0.0, {}),
        ("mlp", "sgd", 0.01, {"batch_size": 18}),  # 72 = 4 x 18: an epoch ends exactly
        ("mlp", "sgd", 0.0, {"batch_size": 100, "momentum": 0.5}),  # clamped to all 72
        ("mlp", "adam", 0.0, ADAM),
        ("cnn", "sgd", 0.0, {}),
        ("cnn", "adam", 0.01, ADAM),
    ],
)
def test_training_matches_torch_optim_reference_loop(kind, optimizer, weight_decay, changes):
    instance = dataclasses.replace(INSTANCE, **changes)
    trainer = _trainer(kind, optimizer=optimizer, weight_decay=weight_decay)
    trainer.start(instance)
    twin = _twin(trainer, kind)
    assert torch.equal(_flat(twin), trainer.final_weights())
    reference = _reference_optimizer(twin, optimizer, instance, weight_decay)
    data = _dataset(image=kind == "cnn")
    stream = ReferenceStream(instance, len(data.y_train))
    layers = len(trainer.layers)
    base = instance.learning_rate
    # Distinct rates per layer, changed between decisions; 4 + 7 steps cross two epochs.
    for steps, factors in ((4, np.linspace(0.5, 1.5, layers)), (7, np.linspace(2.0, 0.25, layers))):
        rates = base * factors
        trainer.set_learning_rates(rates)
        for group, rate in zip(reference.param_groups, rates, strict=True):
            group["lr"] = float(rate)
        losses, _ = _reference_train(twin, reference, stream, data, steps)
        stats = trainer.train(steps)
        assert stats.train_loss == pytest.approx(np.mean(losses[-4:]), rel=1e-5)
        np.testing.assert_allclose(trainer.learning_rates(), rates)
    expected = _flat(twin)
    got = trainer.final_weights()
    assert not torch.equal(got, _flat(_twin_at_start(instance, kind)))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def _twin_at_start(instance: Instance, kind: str) -> nn.Module:
    trainer = _trainer(kind)
    trainer.start(instance)
    return _twin(trainer, kind)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_zero_rate_freezes_exactly_that_layer(optimizer):
    trainer = _trainer("mlp", optimizer=optimizer, weight_decay=0.01)
    trainer.start(INSTANCE)
    before = trainer.final_weights()
    trainer.set_learning_rates(np.array([0.05, 0.0, 0.05]))
    trainer.train(6)
    after = trainer.final_weights()
    first, frozen, last = _layer_slices(trainer.network)
    assert torch.equal(after[frozen], before[frozen])
    assert not torch.equal(after[first], before[first])
    assert not torch.equal(after[last], before[last])
    # The parameters seen by the network are the ones reported: a forward pass agrees.
    assert torch.equal(_flat(trainer.network), after)


# -- statistics --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_probe_statistics_match_hand_computed_gradients(kind):
    trainer = _trainer(kind, stats_window=8)
    trainer.start(INSTANCE)
    twin = _twin(trainer, kind)
    data = _dataset(image=kind == "cnn")
    stream = ReferenceStream(INSTANCE, len(data.y_train))
    before = trainer.final_weights()

    first = trainer.train(5, update=False)
    losses, grads = _reference_train(twin, None, stream, data, 5, update=False)
    assert torch.equal(trainer.final_weights(), before)  # a probe never moves the weights
    norms, noise, means_first = _expected_stats(grads, 5)
    assert first.train_loss == pytest.approx(np.mean(losses), rel=1e-5)
    np.testing.assert_allclose(first.grad_norm, norms, rtol=1e-4)
    np.testing.assert_allclose(first.grad_noise, noise, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(first.weight_norm, _weight_norms(twin), rtol=1e-5)
    np.testing.assert_array_equal(first.update_ratio, np.zeros(len(trainer.layers)))
    assert ((first.grad_noise > 0) & (first.grad_noise < 1)).all()
    # No previous decision since start(): the cosine has nothing to compare with.
    np.testing.assert_array_equal(first.grad_cosine, np.zeros(len(trainer.layers)))

    second = trainer.train(3, update=False)  # the stream continues where it stopped
    losses, grads = _reference_train(twin, None, stream, data, 3, update=False)
    norms, noise, means_second = _expected_stats(grads, 3)
    assert second.train_loss == pytest.approx(np.mean(losses), rel=1e-5)
    np.testing.assert_allclose(second.grad_norm, norms, rtol=1e-4)
    np.testing.assert_allclose(second.grad_noise, noise, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        second.grad_cosine, _cosines(means_second, means_first), rtol=1e-4, atol=1e-6
    )


def test_update_ratio_is_step_norm_over_new_weight_norm_per_layer():
    trainer = _trainer("mlp")
    trainer.start(INSTANCE)
    trainer.set_learning_rates(np.array([0.2, 0.05, 0.01]))
    before = trainer.final_weights().double()
    stats = trainer.train(5)
    after = trainer.final_weights().double()
    slices = _layer_slices(trainer.network)
    expected = [((after[s] - before[s]).norm() / after[s].norm()).item() for s in slices]
    np.testing.assert_allclose(stats.update_ratio, expected, rtol=1e-5)
    np.testing.assert_allclose(stats.weight_norm, [after[s].norm().item() for s in slices], 1e-5)


def test_grad_cosine_follows_consecutive_decisions_and_resets_on_start():
    trainer = _trainer("mlp", stats_window=2)
    trainer.start(INSTANCE)
    twin = _twin(trainer, "mlp")
    data = _dataset()
    reference = _reference_optimizer(twin, "sgd", INSTANCE, 0.0)
    stream = ReferenceStream(INSTANCE, len(data.y_train))
    previous = None
    for steps in (3, 4, 2):
        stats = trainer.train(steps)
        _, grads = _reference_train(twin, reference, stream, data, steps)
        _, _, means = _expected_stats(grads, 2)
        if previous is None:
            np.testing.assert_array_equal(stats.grad_cosine, np.zeros(3))
        else:
            np.testing.assert_allclose(
                stats.grad_cosine, _cosines(means, previous), rtol=1e-3, atol=1e-5
            )
        previous = means
    assert (np.abs(stats.grad_cosine) > 1e-3).all()
    trainer.start(INSTANCE)
    np.testing.assert_array_equal(trainer.train(2).grad_cosine, np.zeros(3))


@pytest.mark.parametrize("stats_window", [1, 3, 10])
def test_only_the_last_stats_window_steps_enter_the_statistics(stats_window):
    steps = 6
    trainer = _trainer("mlp", stats_window=stats_window)
    trainer.start(INSTANCE)
    twin = _twin(trainer, "mlp")
    data = _dataset()
    reference = _reference_optimizer(twin, "sgd", INSTANCE, 0.0)
    stream = ReferenceStream(INSTANCE, len(data.y_train))
    losses, grads = _reference_train(twin, reference, stream, data, steps)
    stats = trainer.train(steps)
    window = min(stats_window, steps)
    norms, noise, _ = _expected_stats(grads, window)
    assert stats.train_loss == pytest.approx(np.mean(losses[-window:]), rel=1e-5)
    if window < steps:  # the earlier, higher losses really are left out
        assert stats.train_loss != pytest.approx(np.mean(losses), rel=1e-3)
    np.testing.assert_allclose(stats.grad_norm, norms, rtol=1e-4)
    if window == 1:  # one gradient: no spread to measure
        np.testing.assert_allclose(stats.grad_noise, 0.0, atol=1e-5)
    else:
        np.testing.assert_allclose(stats.grad_noise, noise, rtol=1e-4, atol=1e-6)


# -- start / initialisation ---------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_start_twice_replays_training_bitwise(optimizer):
    trainer = _trainer("mlp", optimizer=optimizer)
    runs = []
    for _ in range(2):
        trainer.start(INSTANCE)
        np.testing.assert_array_equal(trainer.learning_rates(), [INSTANCE.learning_rate] * 3)
        weights = trainer.final_weights()
        stats = [trainer.train(5), trainer.train(6)]  # crosses an epoch boundary
        runs.append((weights, stats, trainer.final_weights()))
        trainer.set_learning_rates(np.array([1.0, 0.0, 0.3]))  # must not leak into a restart
    (w0, stats_a, final_a), (w1, stats_b, final_b) = runs
    assert torch.equal(w0, w1)
    assert torch.equal(final_a, final_b)
    assert not torch.equal(w0, final_a)
    for a, b in zip(stats_a, stats_b, strict=True):
        assert a.train_loss == b.train_loss
        for field in ("grad_norm", "weight_norm", "update_ratio", "grad_cosine", "grad_noise"):
            assert getattr(a, field).tobytes() == getattr(b, field).tobytes()


def test_seeds_and_scale_control_the_initial_weights():
    trainer = _trainer("mlp")
    slices = _layer_slices(trainer.network)

    def initial(**changes) -> torch.Tensor:
        trainer.start(dataclasses.replace(INSTANCE, **changes))
        return trainer.final_weights()

    base = initial()
    assert torch.equal(initial(), base)
    assert not torch.equal(initial(init_seed=4), base)
    assert torch.equal(initial(data_seed=99), base)  # the data seed is not an init seed
    assert torch.equal(initial(init_scale=2.0), 2 * base)
    assert torch.equal(initial(init_scale=0.5), 0.5 * base)
    for m, s in zip(trainable_layers(trainer.network), slices, strict=True):
        bias = base[s][m.weight.numel() :]
        assert bias.numel() == m.out_features and torch.equal(bias, torch.zeros_like(bias))
        assert base[s][: m.weight.numel()].abs().sum() > 0


def test_the_data_seed_alone_changes_the_minibatch_order():
    trainer = _trainer("mlp")
    trainer.start(INSTANCE)
    a = trainer.train(3)
    trainer.start(dataclasses.replace(INSTANCE, data_seed=6))
    b = trainer.train(3)
    assert a.train_loss != b.train_loss


def test_global_rng_does_not_affect_start():
    trainer = _trainer("mlp")
    torch.manual_seed(1)
    trainer.start(INSTANCE)
    a = trainer.final_weights(), trainer.train(3).train_loss
    torch.manual_seed(2)
    torch.rand(10)
    trainer.start(INSTANCE)
    b = trainer.final_weights(), trainer.train(3).train_loss
    assert torch.equal(a[0], b[0]) and a[1] == b[1]


def test_layer_info_describes_each_controlled_layer():
    mlp, cnn = _trainer("mlp"), _trainer("cnn")
    assert [(i.kind, i.fan_in, i.depth) for i in mlp.layers] == [
        ("linear", 36, 0.0),
        ("linear", 16, 0.5),
        ("linear", 8, 1.0),
    ]
    # conv fan-in: in_channels * kernel area; after one 2x2 pool: 4 channels of 3x3.
    assert [(i.kind, i.fan_in) for i in cnn.layers] == [
        ("conv", 1 * 9),
        ("conv", 3 * 9),
        ("linear", 4 * 3 * 3),
        ("linear", 8),
    ]
    np.testing.assert_allclose([i.depth for i in cnn.layers], [0, 1 / 3, 2 / 3, 1])


# -- construction errors -----------------------------------------------------------------


def test_parameters_outside_linear_or_conv_are_rejected():
    network = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="outside any Linear/Conv2d") as info:
        TorchTrainer(network, _dataset())
    assert "2.weight" in str(info.value) and "2.bias" in str(info.value)


def test_a_network_without_controllable_layers_is_rejected():
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        TorchTrainer(nn.Sequential(nn.Flatten()), _dataset())


# -- evaluation --------------------------------------------------------------------------


@pytest.mark.parametrize("eval_batch_size", [4096, 7, 1])
@pytest.mark.parametrize("part", ["val", "test"])
def test_evaluate_matches_direct_cross_entropy(part, eval_batch_size):
    trainer = _trainer("mlp", eval_batch_size=eval_batch_size)
    trainer.start(INSTANCE)
    trainer.train(4)  # evaluate trained weights, not just the initial ones
    data = _dataset()
    x, y = (data.x_val, data.y_val) if part == "val" else (data.x_test, data.y_test)
    assert len(y) % 7 != 0  # the chunked case has a ragged last chunk
    twin = _twin(trainer, "mlp")
    with torch.no_grad():
        logits = twin(x)
    loss, accuracy = trainer.evaluate(part)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert accuracy == int((logits.argmax(dim=1) == y).sum()) / len(y)
    # Evaluation neither moves the weights nor consumes training minibatches.
    weights = trainer.final_weights()
    follow_on = trainer.train(2, update=False).train_loss
    trainer.start(INSTANCE)
    trainer.train(4)
    assert torch.equal(trainer.final_weights(), weights)
    assert trainer.train(2, update=False).train_loss == follow_on


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_initial_weights_do_not_depend_on_the_device():
    cpu, cuda = _trainer("cnn"), _trainer("cnn", device="cuda")
    cpu.start(INSTANCE)
    cuda.start(INSTANCE)
    assert torch.equal(cpu.final_weights(), cuda.final_weights())


def test_train_needs_at_least_one_step():
    trainer = _trainer()
    trainer.start(INSTANCE)
    with pytest.raises(ValueError, match="at least one step"):
        trainer.train(0)


def test_the_init_gain_follows_the_networks_nonlinearity():
    data = _dataset()
    gains = {}
    for nonlinearity in ("relu", "tanh"):
        network = build_network(MLP, data.input_shape, data.num_classes)
        trainer = TorchTrainer(network, data, nonlinearity=nonlinearity)
        trainer.start(INSTANCE)
        gains[nonlinearity] = trainer.final_weights()
    # kaiming_uniform draws the same numbers and scales them by the gain: sqrt(2) vs 5/3
    ratio = gains["tanh"][gains["relu"] != 0] / gains["relu"][gains["relu"] != 0]
    assert torch.allclose(ratio, torch.tensor((5 / 3) / np.sqrt(2), dtype=ratio.dtype))
