"""The batched engine against N TorchTrainers (the definition of the benchmark's numbers).

Tolerances are float32 rounding, measured. Over every LR id, four frozen test / test-ood
instances with four batch sizes (16 to 256) in one batch, a probe and two decisions of
three steps with random per-layer rates, the default kernels deviated from TorchTrainer
by at most 2.5e-7 relative on train, val and test losses, 1.1e-5 on update ratios, 7.5e-6
on grad and weight norms, 7.6e-6 absolute on cosines and noise shares (TorchTrainer's
element-by-element ``index_add_`` is the less accurate side there), 3.3e-8 on the
weights (norm of the difference over the norm; most slots are bitwise equal) and never
in accuracy. ``TIGHT`` leaves a margin of 10x or more.

Kernels that round differently from TorchTrainer (grouped convolutions, padded groups)
get ``LOOSE``: a float32-sized difference can flip a ReLU or max-pool decision, after
which TorchTrainer itself, against a copy started from its initial weights times
1 - 1e-7, differs by 8e-4 in a layer's grad norm and 2.2e-4 in the weights within seven
steps (measured on CNN-Medium-v0). On an AVX-512 machine, whose oneDNN convolutions round
otherwise, the grouped kernel's val loss on one CNN-Medium-v0 instance (batch 128) was
7.0e-4 from TorchTrainer's, and TorchTrainer's own run from weights times 1 - 1e-7 was
7.0e-4 from it too: the same chaos, so ``LOOSE`` allows 2e-3 on losses. A bug (wrong
data order, momentum, rate or mask) moves the numbers by percents, and fails both.

The transformers (``DECODER``) run Adam, which divides each update by the root of its
second moment: a parameter whose gradient is float32 noise (the embedding rows of tokens
a minibatch lacks) moves by the full rate whichever way the noise points. Measured on
four mixed instances per id (two decisions of three steps), the batched decoder kernel
was at most 2.0e-5 relative from TorchTrainer on losses, 1.1e-3 on grad norms, 2.7e-4 on
cosines and noise shares and 2.3e-3 on the weights; TorchTrainer from its own weights
times 1 - 1e-7 was 1.9e-5, 1.1e-3 and 2.8e-3 from itself on the same instance.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from torch import nn

import ganno_bench
from ganno_bench.envs.common import build_trainer
from ganno_bench.envs.registry import spec
from ganno_bench.experiments.batched_bench import format_batched, measure_batched
from ganno_bench.inner.batched import BatchedTrainer, _cheapest_runs, build_batched_trainer
from ganno_bench.inner.batched_decoder import DecoderKernel
from ganno_bench.inner.batched_kernels import Batch, Layout, _masked_cross_entropy
from ganno_bench.inner.engine import DecisionStats
from ganno_bench.inner.models import agent_layers
from ganno_bench.inner.torch_trainer import TorchTrainer
from ganno_bench.inner.transformer import Decoder

# Every LR id: the MLPs and CNNs against TIGHT, the transformers against DECODER.
TRANSFORMER_IDS = ganno_bench.list_envs("ganno/LayerLR-Transformer-*")
LR_IDS = [i for i in ganno_bench.list_envs("ganno/LayerLR-*") if i not in TRANSFORMER_IDS]
MLP_EASY = "ganno/LayerLR-MLP-Easy-v0"
CNN_EASY_ADAM = "ganno/LayerLR-CNN-Easy-Adam-v0"
TRANSFORMER_EASY = "ganno/LayerLR-Transformer-Easy-Adam-v0"
TRANSFORMER_HARD = "ganno/LayerLR-Transformer-Hard-Adam-v0"


@dataclasses.dataclass(frozen=True)
class Tolerance:
    loss: float  # relative, on train / val / test losses
    norm: float  # relative, on grad and weight norms and update ratios
    share: float  # absolute, on cosines and noise shares
    weights: float  # |w_batched - w_torch| / |w_torch|
    flips: int = 1  # predictions (samples, or tokens) whose argmax may differ: ties
    moved: float | None = None  # |w_batched - w_torch| / |w_torch - w_start|, if checked


TIGHT = Tolerance(loss=1e-5, norm=1e-4, share=1e-4, weights=1e-6)
LOOSE = Tolerance(loss=2e-3, norm=5e-3, share=5e-3, weights=1e-3)
# a slot that moves little (a low rate, few steps) has tiny weight differences whatever
# the engine does, so the decoder's weights are also checked against how far they moved
# (measured at most 0.006 of it; an engine that never updated would be 1)
DECODER = Tolerance(loss=1e-4, norm=5e-3, share=2e-3, weights=1e-2, flips=8, moved=0.02)
FIELDS = ("grad_norm", "weight_norm", "update_ratio", "grad_cosine", "grad_noise")


@functools.cache
def _reference(env_id: str) -> TorchTrainer:
    return build_trainer(spec(env_id), "cpu")[0]


def _instances(env_id: str, count: int = 4) -> list:
    """Frozen test and test-ood instances, as many batch sizes (16 to 256) as fit."""
    task = spec(env_id)
    test, ood = task.frozen_instances("test"), task.frozen_instances("test-ood")
    pool = [x for pair in zip(test, ood, strict=True) for x in pair]
    firsts = {}
    for instance in pool:
        firsts.setdefault(instance.batch_size, instance)
    chosen = list(firsts.values())[:count]
    return chosen + [x for x in pool if x not in chosen][: count - len(chosen)]


def _rates(env_id: str, instances: list, decisions: int, seed: int = 0) -> np.ndarray:
    """Per-slot, per-layer rates around each instance's own: shape (decisions, N, L)."""
    task = spec(env_id)
    layers = len(_reference(env_id).layers)
    rng = np.random.default_rng(seed)
    base = np.array([i.learning_rate for i in instances])[None, :, None]
    factors = rng.uniform(0.5, 2.0, size=(decisions, len(instances), layers))
    return np.clip(base * factors, *task.lr_bounds)


def _run_torch(env_id: str, instance, rates: np.ndarray, steps: int = 3) -> dict:
    """One TorchTrainer run: a probe, then one decision per row of ``rates`` (L,)."""
    trainer = _reference(env_id)
    trainer.start(instance)
    start = trainer.final_weights()
    stats = [trainer.train(1, update=False)]
    for row in rates:
        trainer.set_learning_rates(row)
        stats.append(trainer.train(steps))
    return {
        "start": start,
        "stats": stats,
        "val": trainer.evaluate("val"),
        "test": trainer.evaluate("test"),
        "weights": trainer.final_weights(),
    }


def _run_batched(trainer: BatchedTrainer, instances, rates: np.ndarray, steps: int = 3) -> dict:
    """The same protocol for every slot at once; ``rates`` is (decisions, N, L)."""
    for slot, instance in enumerate(instances):
        trainer.start(slot, instance)
    start = [trainer.final_weights(s) for s in range(len(instances))]
    stats = [trainer.train(1, update=False)]
    for row in rates:
        trainer.set_learning_rates(row)
        stats.append(trainer.train(steps))
    val, test = trainer.evaluate("val"), trainer.evaluate("test")
    return {
        "start": start,
        "stats": [[s[slot] for s in stats] for slot in range(len(instances))],
        "val": [(val[0][s], val[1][s]) for s in range(len(instances))],
        "test": [(test[0][s], test[1][s]) for s in range(len(instances))],
        "weights": [trainer.final_weights(s) for s in range(len(instances))],
    }


def _assert_stats_close(got: DecisionStats, expected: DecisionStats, tol=TIGHT) -> None:
    assert got.train_loss == pytest.approx(expected.train_loss, rel=tol.loss)
    for field in ("grad_norm", "weight_norm", "update_ratio"):
        np.testing.assert_allclose(getattr(got, field), getattr(expected, field), rtol=tol.norm)
    for field in ("grad_cosine", "grad_noise"):
        np.testing.assert_allclose(getattr(got, field), getattr(expected, field), atol=tol.share)


def _assert_weights_close(
    got: torch.Tensor, expected: torch.Tensor, tol=TIGHT, start: torch.Tensor | None = None
) -> None:
    error = float((got - expected).norm())
    assert error / float(expected.norm()) < tol.weights
    if tol.moved is not None and start is not None:
        assert error <= tol.moved * float((expected - start).norm())


def _assert_matches_torch(
    env_id: str, trainer: BatchedTrainer, instances, rates, tol=TIGHT
) -> None:
    batched = _run_batched(trainer, instances, rates)
    predictions = {part: trainer._data[part][1].numel() for part in ("val", "test")}
    for slot, instance in enumerate(instances):
        expected = _run_torch(env_id, instance, rates[:, slot])
        assert torch.equal(batched["start"][slot], expected["start"])  # start() is exact
        for got, want in zip(batched["stats"][slot], expected["stats"], strict=True):
            _assert_stats_close(got, want, tol)
        for part in ("val", "test"):
            (loss, accuracy), (want_loss, want_accuracy) = batched[part][slot], expected[part]
            assert loss == pytest.approx(want_loss, rel=tol.loss)
            # measured: the decoders flipped at most 3 of 4,800 tokens (Easy, batch 8)
            assert abs(accuracy - want_accuracy) * predictions[part] <= tol.flips + 1e-6
        _assert_weights_close(batched["weights"][slot], expected["weights"], tol, expected["start"])


# -- equivalence with TorchTrainer ---------------------------------------------------------


@pytest.mark.parametrize("env_id", LR_IDS)
def test_mixed_instances_match_sequential_torch_trainers(env_id):
    instances = _instances(env_id)
    assert len({i.batch_size for i in instances}) == 4  # e.g. 16, 64, 128, 256 together
    trainer = build_batched_trainer(spec(env_id), len(instances))
    _assert_matches_torch(env_id, trainer, instances, _rates(env_id, instances, 2))


@pytest.mark.parametrize("env_id", TRANSFORMER_IDS)
def test_transformers_match_sequential_torch_trainers(env_id):
    instances = _instances(env_id)
    assert len({i.batch_size for i in instances}) == 4  # 8 to 128 sequences together
    trainer = build_batched_trainer(spec(env_id), len(instances))
    _assert_matches_torch(env_id, trainer, instances, _rates(env_id, instances, 2), DECODER)


@pytest.mark.parametrize("env_id", [MLP_EASY, CNN_EASY_ADAM])
def test_a_single_slot_matches_torch_trainer(env_id):
    instances = _instances(env_id, 2)[1:]  # a test-ood instance
    trainer = build_batched_trainer(spec(env_id), 1)
    _assert_matches_torch(env_id, trainer, instances, _rates(env_id, instances, 2))


@pytest.mark.parametrize(
    ("env_id", "options"),
    [
        (MLP_EASY, {"kernel": "sequential"}),  # batched matmuls through autograd
        (MLP_EASY, {"grouping": "pad"}),
        ("ganno/LayerLR-MLP-Medium-Adam-v0", {"grouping": "bucket"}),
        (CNN_EASY_ADAM, {"conv": "grouped"}),
        ("ganno/LayerLR-CNN-Medium-v0", {"conv": "grouped", "grouping": "pad"}),
        (TRANSFORMER_EASY, {"kernel": "functional", "grouping": "pad"}),
        (TRANSFORMER_HARD, {"kernel": "decoder", "grouping": "pad"}),
    ],
)
def test_every_kernel_and_grouping_matches_torch_trainer(env_id, options):
    instances = _instances(env_id)
    trainer = build_batched_trainer(spec(env_id), len(instances), **options)
    rates = _rates(env_id, instances, 2)
    tol = DECODER if env_id in TRANSFORMER_IDS else LOOSE
    _assert_matches_torch(env_id, trainer, instances, rates, tol=tol)


@pytest.mark.parametrize("env_id", [MLP_EASY, CNN_EASY_ADAM])
def test_functional_kernel_reproduces_torch_trainer_weights_bitwise(env_id):
    """The per-slot kernel runs the network's own modules, so what the engine adds (data
    order, loss gradient, SGD / Adam arithmetic, per-slot rates) must be exact."""
    instances = _instances(env_id)
    rates = _rates(env_id, instances, 2)
    trainer = build_batched_trainer(spec(env_id), len(instances), kernel="functional")
    assert trainer.kernel_name == "functional"
    batched = _run_batched(trainer, instances, rates)
    for slot, instance in enumerate(instances):
        expected = _run_torch(env_id, instance, rates[:, slot])
        assert torch.equal(batched["weights"][slot], expected["weights"])


def test_the_chosen_kernels():
    assert build_batched_trainer(spec(MLP_EASY), 2).kernel_name == "linear"
    assert build_batched_trainer(spec(CNN_EASY_ADAM), 2).kernel_name == "sequential-loop"
    # on the CPU the batched decoder pays only for small decoders (module docstring)
    assert build_batched_trainer(spec(TRANSFORMER_EASY), 2).kernel_name == "decoder"
    assert build_batched_trainer(spec(TRANSFORMER_HARD), 2).kernel_name == "functional"
    with pytest.raises(ValueError, match=r"needs a ganno_bench\.inner\.transformer\.Decoder"):
        build_batched_trainer(spec(MLP_EASY), 2, kernel="decoder")


def test_the_decoder_kernel_refuses_a_decoder_laid_out_otherwise():
    network = Decoder(16, 8, width=16, heads=2, blocks=1)
    network.head.linear = nn.Linear(16, 16, bias=False)  # the head without its bias
    with pytest.raises(ValueError, match=r"expects .*Decoder's parameters in the order"):
        DecoderKernel(Layout(agent_layers(network)), network)


def test_evaluation_in_chunks_equals_one_pass(monkeypatch):
    """Evaluation chunks its samples so the slots' activations stay bounded; a cap that
    splits the val part into chunks of 7 sequences (the last one short) changes nothing
    beyond the sums' rounding."""
    import ganno_bench.inner.batched as batched_module

    instances = _instances(TRANSFORMER_EASY, 2)
    trainer = build_batched_trainer(spec(TRANSFORMER_EASY), len(instances))
    for slot, instance in enumerate(instances):
        trainer.start(slot, instance)
    trainer.set_learning_rates(_rates(TRANSFORMER_EASY, instances, 1)[0])
    trainer.train(2)
    whole = trainer.evaluate("val")
    length = trainer._data["val"][1].shape[1]
    assert trainer._eval_rows(len(instances), length) >= len(trainer._data["val"][1])
    monkeypatch.setattr(batched_module, "EVAL_TARGET_BUDGET", 7 * len(instances) * length)
    assert trainer._eval_rows(len(instances), length) == 7
    chunked = trainer.evaluate("val")
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-6)
    np.testing.assert_array_equal(chunked[1], whole[1])


class _Residual(nn.Module):
    """Not a Sequential: the engine falls back to one functional call per slot."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(64, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + torch.relu(self.inner(x)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize(
    ("build", "kernel"),
    [
        (
            lambda: nn.Sequential(nn.Linear(64, 32, bias=False), nn.Tanh(), nn.Linear(32, 10)),
            "linear",
        ),
        (_Residual, "functional"),
    ],
)
def test_custom_networks_weight_decay_and_tanh_match_torch_trainer(build, kernel, optimizer):
    data = spec(MLP_EASY).load_data()
    options = {"optimizer": optimizer, "weight_decay": 0.01, "nonlinearity": "tanh"}
    instances = _instances(MLP_EASY, 3)
    if optimizer == "adam":
        instances = [dataclasses.replace(i, log10_lr=-2.5) for i in instances]
    torch.manual_seed(0)
    trainer = BatchedTrainer(build(), data, num_slots=3, **options)
    assert trainer.kernel_name == kernel
    rates = np.stack([np.full((3, 2), i.learning_rate) for i in instances], axis=1)
    rates[1] *= np.array([0.5, 2.0])
    batched = _run_batched(trainer, instances, rates)
    reference = TorchTrainer(build(), data, **options)
    for slot, instance in enumerate(instances):
        reference.start(instance)
        assert torch.equal(reference.final_weights(), batched["start"][slot])
        reference.train(1, update=False)
        for row in rates[:, slot]:
            reference.set_learning_rates(row)
            stats = reference.train(3)
        _assert_stats_close(batched["stats"][slot][-1], stats)
        _assert_weights_close(batched["weights"][slot], reference.final_weights())


# -- slots are independent -----------------------------------------------------------------


def _play(trainer: BatchedTrainer, instances, rates, active=None) -> list:
    for slot, instance in enumerate(instances):
        trainer.start(slot, instance)
    out = []
    for row in rates:
        trainer.set_learning_rates(row)
        stats = trainer.train(3, active=active)
        out.append((stats, trainer.evaluate("val", active=active)))
    return out


def _stats_equal(a: DecisionStats, b: DecisionStats) -> bool:
    return a.train_loss == b.train_loss and all(
        getattr(a, f).tobytes() == getattr(b, f).tobytes() for f in FIELDS
    )


@pytest.mark.parametrize("env_id", [MLP_EASY, "ganno/LayerLR-CNN-Easy-v0", TRANSFORMER_EASY])
def test_a_diverging_slot_leaves_the_others_bitwise_unchanged(env_id):
    instances = _instances(env_id)
    rates = _rates(env_id, instances, 3)
    calm = build_batched_trainer(spec(env_id), len(instances))
    baseline = _play(calm, instances, rates)
    wild = rates.copy()
    wild[:, 1] = 1e6  # slot 1 explodes
    diverging = build_batched_trainer(spec(env_id), len(instances))
    exploded = _play(diverging, instances, wild)
    assert not exploded[-1][0][1].finite
    for (stats, (loss, acc)), (base_stats, (base_loss, base_acc)) in zip(
        exploded, baseline, strict=True
    ):
        for slot in (0, 2, 3):
            assert stats[slot].finite
            assert _stats_equal(stats[slot], base_stats[slot])
            assert loss[slot] == base_loss[slot] and acc[slot] == base_acc[slot]
    for slot in (0, 2, 3):
        assert torch.equal(diverging.final_weights(slot), calm.final_weights(slot))
        assert torch.isfinite(diverging.final_weights(slot)).all()

    # ... and equal, within rounding, to a batch that leaves slot 1 out altogether
    active = np.array([True, False, True, True])
    without = _play(build_batched_trainer(spec(env_id), len(instances)), instances, rates, active)
    for (stats, _), (base_stats, _) in zip(without, baseline, strict=True):
        assert stats[1] is None
        for slot in (0, 2, 3):
            _assert_stats_close(stats[slot], base_stats[slot])


def test_padding_rows_repeat_the_slots_own_samples():
    """So a padding row is finite whenever the slot's real rows are (and then masked)."""
    instances = _instances(MLP_EASY)
    trainer = build_batched_trainer(spec(MLP_EASY), len(instances))
    for slot, instance in enumerate(instances):
        trainer.start(slot, instance)
    indices, sizes = trainer._indices(np.arange(4), steps=2)
    assert indices.shape == (2, 4, max(sizes))
    for slot, size in enumerate(sizes):
        for step in range(2):
            real, padding = indices[step, slot, :size], indices[step, slot, size:]
            assert len(set(real.tolist())) == size
            assert set(padding.tolist()) <= set(real.tolist())


def test_inactive_slots_are_neither_computed_nor_updated():
    instances = _instances(MLP_EASY)
    trainer = build_batched_trainer(spec(MLP_EASY), len(instances))
    for slot, instance in enumerate(instances):
        trainer.start(slot, instance)
    before = [trainer.state_dict(s) for s in range(4)]
    active = np.array([False, True, False, True])
    stats = trainer.train(4, active=active)
    assert [s is None for s in stats] == [True, False, True, False]
    losses, accuracies = trainer.evaluate("test", active=active)
    assert np.isnan(losses[[0, 2]]).all() and np.isfinite(losses[[1, 3]]).all()
    assert np.isnan(accuracies[[0, 2]]).all()
    for slot in (0, 2):
        _assert_states_equal(trainer.state_dict(slot), before[slot])
    assert not torch.equal(trainer.final_weights(1), before[1]["weights"])
    assert trainer.train(1, active=np.zeros(4, dtype=bool)) == [None] * 4


def test_momentum_batch_size_and_rates_are_per_slot():
    instances = _instances(MLP_EASY)
    trainer = build_batched_trainer(spec(MLP_EASY), len(instances))
    for slot, instance in enumerate(instances):
        trainer.start(slot, instance)
    assert trainer.batch_sizes() == [i.batch_size for i in instances]
    np.testing.assert_array_equal(
        trainer.learning_rates(), np.repeat([[i.learning_rate] for i in instances], 3, axis=1)
    )
    trainer.set_learning_rates(np.array([0.1, 0.0, 0.2]), slot=2)
    assert trainer.learning_rates()[2].tolist() == [0.1, 0.0, 0.2]
    assert trainer.learning_rates()[1].tolist() == [instances[1].learning_rate] * 3
    state = trainer.state_dict(3)["optimizer"]["param_groups"]
    assert [g["momentum"] for g in state] == [instances[3].momentum] * 3


# -- snapshots -----------------------------------------------------------------------------


def _assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in ("weights", "order", "data_generator", "prev_mean_grad", "probe_generator"):
        assert torch.equal(a[key], b[key]), key
    assert (a["batch_size"], a["cursor"]) == (b["batch_size"], b["cursor"])
    opt_a, opt_b = a["optimizer"], b["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for index, entry in opt_a["state"].items():
        assert entry.keys() == opt_b["state"][index].keys()
        for name, value in entry.items():
            assert torch.equal(value, opt_b["state"][index][name]), name


@pytest.mark.parametrize("env_id", [MLP_EASY, CNN_EASY_ADAM, TRANSFORMER_EASY])
def test_a_slot_snapshot_round_trips_bitwise(env_id):
    instances = _instances(env_id)
    trainer = build_batched_trainer(spec(env_id), len(instances))
    for slot, instance in enumerate(instances):
        trainer.start(slot, instance)
    trainer.train(5)
    snapshot = trainer.state_dict(2)
    first = trainer.train(6)
    after = trainer.state_dict(2)
    trainer.load_state_dict(2, snapshot)
    _assert_states_equal(trainer.state_dict(2), snapshot)
    trainer.load_state_dict(0, after)  # other slots' rows take it too
    assert torch.equal(trainer.final_weights(0), after["weights"])
    for slot, instance in enumerate(instances):
        if slot != 2:
            trainer.start(slot, instance)  # the replay must not depend on the other slots
    second = trainer.train(6)
    assert _stats_equal(first[2], second[2])
    _assert_states_equal(trainer.state_dict(2), after)


@pytest.mark.parametrize(
    ("env_id", "kernel"),
    [(MLP_EASY, "functional"), (CNN_EASY_ADAM, "functional"), (MLP_EASY, "auto")],
)
@pytest.mark.parametrize("warm", [False, True])  # before any update: empty optimiser state
def test_snapshots_move_between_the_engines(env_id, kernel, warm):
    instance = _instances(env_id)[1]
    rates = _rates(env_id, [instance], 2)[:, 0]
    torch_trainer = _reference(env_id)
    torch_trainer.start(instance)
    torch_trainer.set_learning_rates(rates[0])
    if warm:
        torch_trainer.train(4)
    snapshot = torch_trainer.state_dict()

    batched = build_batched_trainer(spec(env_id), 3, kernel=kernel)
    for slot, other in enumerate(_instances(env_id, 3)):
        batched.start(slot, other)
    batched.load_state_dict(1, snapshot)
    _assert_states_equal(batched.state_dict(1), snapshot)

    torch_trainer.set_learning_rates(rates[1])
    expected = torch_trainer.train(5)
    batched.set_learning_rates(rates[1], slot=1)
    got = batched.train(5)[1]
    _assert_stats_close(got, expected)
    exact = kernel == "functional"
    if exact:
        assert torch.equal(batched.final_weights(1), torch_trainer.final_weights())
    else:
        _assert_weights_close(batched.final_weights(1), torch_trainer.final_weights())

    # and back: the batched slot's snapshot continues in a TorchTrainer
    torch_trainer.load_state_dict(batched.state_dict(1))
    expected, got = torch_trainer.train(4), batched.train(4)[1]
    _assert_stats_close(got, expected)
    if exact:
        assert torch.equal(batched.final_weights(1), torch_trainer.final_weights())
    else:
        _assert_weights_close(batched.final_weights(1), torch_trainer.final_weights())


# -- grouping and validation ---------------------------------------------------------------


def test_cheapest_runs_trade_padding_against_groups():
    sizes, counts = np.array([32, 64, 128]), np.array([10, 10, 10])
    assert _cheapest_runs(sizes, counts, group_cost=1.0, row_cost=0.0) == [(0, 3)]
    assert _cheapest_runs(sizes, counts, group_cost=0.0, row_cost=1.0) == [(0, 1), (1, 2), (2, 3)]
    # padding 10 slots from 32 to 64 rows costs 320; a second group 1000: pad them
    assert _cheapest_runs(sizes, counts, group_cost=1000.0, row_cost=1.0) == [(0, 2), (2, 3)]


def test_groups_cover_every_active_slot_once():
    task = spec(MLP_EASY)
    trainer = build_batched_trainer(task, 32)
    rng = np.random.default_rng(3)
    for slot in range(32):
        trainer.start(slot, task.spaces["train"].sample(rng))
    for grouping in ("auto", "pad", "bucket"):
        trainer.grouping = grouping
        groups = trainer._groups(np.arange(32))
        assert sorted(np.concatenate(groups).tolist()) == list(range(32))
    assert len(trainer._groups(np.arange(32))) == 3  # "bucket": one per batch size


def test_invalid_calls_are_refused():
    instance = _instances(MLP_EASY)[0]
    trainer = build_batched_trainer(spec(MLP_EASY), 2)
    trainer.start(0, instance)
    with pytest.raises(ValueError, match="never started"):
        trainer.train(1)
    trainer.start(1, instance)
    with pytest.raises(ValueError, match="at least one step"):
        trainer.train(0)
    with pytest.raises(ValueError, match="shape"):
        trainer.set_learning_rates(np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        trainer.train(1, active=[True])
    with pytest.raises(IndexError):
        trainer.start(2, instance)
    with pytest.raises(ValueError, match="weights"):
        trainer.load_state_dict(0, {**trainer.state_dict(0), "weights": torch.zeros(5)})
    with pytest.raises(ValueError, match="kernel"):
        build_batched_trainer(spec(MLP_EASY), 2, kernel="vmap")
    with pytest.raises(ValueError, match="kernel='linear'"):
        build_batched_trainer(spec(CNN_EASY_ADAM), 2, kernel="linear")


def test_a_start_does_not_leak_into_other_slots_or_restarts():
    instances = _instances(MLP_EASY)
    trainer = build_batched_trainer(spec(MLP_EASY), 2)
    trainer.start(0, instances[0])
    trainer.start(1, instances[1])
    trainer.train(3)
    trainer.start(1, dataclasses.replace(instances[1], init_seed=7))
    trainer.start(0, instances[0])
    replay = build_batched_trainer(spec(MLP_EASY), 2)
    replay.start(0, instances[0])
    replay.start(1, dataclasses.replace(instances[1], init_seed=7))
    assert _stats_equal(trainer.train(3)[0], replay.train(3)[0])


# -- CUDA and the bench --------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("env_id", [MLP_EASY, CNN_EASY_ADAM])
def test_cuda_matches_torch_trainer_on_cuda(env_id):
    instances = _instances(env_id)
    rates = _rates(env_id, instances, 2)
    trainer = build_batched_trainer(spec(env_id), len(instances), device="cuda")
    batched = _run_batched(trainer, instances, rates)
    reference = build_trainer(spec(env_id), "cuda")[0]
    for slot, instance in enumerate(instances):
        reference.start(instance)
        assert torch.equal(reference.final_weights(), batched["start"][slot])
        reference.train(1, update=False)
        for row in rates[:, slot]:
            reference.set_learning_rates(row)
            reference.train(3)
        assert reference.evaluate("val")[0] == pytest.approx(batched["val"][slot][0], rel=1e-4)
        got = batched["weights"][slot]
        assert float((got - reference.final_weights()).norm() / got.norm()) < 1e-4


def test_bench_measures_both_engines_and_formats_a_table():
    results = measure_batched([MLP_EASY], sizes=(2,), repeats=1, steps=1, clock="cpu")
    (result,) = results
    assert result.slots == 2 and result.kernel == "linear"
    assert result.sequential_steps_per_s > 0 and result.batched_steps_per_s > 0
    assert result.ratio == pytest.approx(result.batched_steps_per_s / result.sequential_steps_per_s)
    table = format_batched(results)
    assert MLP_EASY in table and table.splitlines()[-1].endswith("x  batched")
    # a longer id widens the id column instead of shifting its row's numbers
    longer = dataclasses.replace(result, env_id="ganno/LayerLR-Transformer-Medium-Adam-v0")
    header, _, *rows = format_batched([result, longer]).splitlines()
    assert {row.index("x  ") + 1 for row in rows} == {header.index("ratio") + len("ratio")}


def test_bench_says_where_the_env_falls_back_to_the_sequential_engine():
    """One CNN slot on the CPU: the vector env and batched evaluation run TorchTrainer."""
    cnn = "ganno/LayerLR-CNN-Easy-v0"
    (one,) = measure_batched([cnn], sizes=(1,), repeats=1, steps=1, clock="cpu")
    assert one.env_engine == "sequential"
    assert format_batched([one]).splitlines()[-1].endswith("x  sequential")


@pytest.mark.parametrize(
    ("rows", "classes"), [((4, 128), 10), ((3, 37), 10), ((2, 16, 12), 16), ((5, 8), 3)]
)
@pytest.mark.parametrize("padded", [False, True])
def test_the_classes_outer_loss_is_the_loss(rows, classes, padded):
    """The MLP kernel's loss on (G, C, B) logits, the classes before the rows: per-slot
    losses and the logits' gradient as the classes-last path gives them, within float32
    rounding, padding rows kept out of both, non-finite logits included."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(*rows, classes, generator=generator) * 4
    y = torch.randint(classes, rows, generator=generator)
    groups, width = rows[:2]
    sizes = [width - g for g in range(groups)] if padded else [width] * groups
    mask = torch.arange(width) < torch.tensor(sizes).unsqueeze(1)
    if padded:  # a non-finite padding row (slot 1's last) must not reach a sum
        logits[1, -1] = float("nan")
    batch = Batch(None, y, sizes, mask, mask.sum(1).float(), padded)
    losses, grad = _masked_cross_entropy(logits, batch)
    classes_first = logits.transpose(-1, -2).contiguous()
    outer_losses, outer_grad = _masked_cross_entropy(classes_first, batch, class_dim=-2)
    assert outer_grad.shape == classes_first.shape
    outer_grad = outer_grad.transpose(-1, -2)
    assert torch.isfinite(outer_losses).all() and torch.isfinite(outer_grad).all()
    torch.testing.assert_close(outer_losses, losses, rtol=1e-6, atol=0)
    torch.testing.assert_close(outer_grad, grad, rtol=1e-5, atol=1e-8)
    if padded:
        assert (outer_grad[~mask] == 0).all()
