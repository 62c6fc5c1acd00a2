"""The hidden-Markov token source: its parts, its reproducibility and its stated floor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ganno_bench.data import DATA_SOURCES, Corruption, load_dataset
from ganno_bench.data.sequences import HMMSource, bayes_loss, count_losses

SMALL = {"sequences": 300, "length": 12, "vocab": 8, "states": 3}


def _source(**changes) -> HMMSource:
    base = HMMSource(vocab=12, states=4, stay=0.9, mix=0.3, concentration=0.3, seed=5)
    return dataclasses.replace(base, **changes)


def _gibbs_gap(sampler: HMMSource, model: HMMSource, count: int = 3000, length: int = 24):
    """Mean of ``-log q(x) - H(q)`` over every prediction, and its standard error.

    ``q`` is ``model``'s Bayes predictive, ``x`` drawn by ``sampler``. When the two are the
    same source, ``E[-log q(x) | past] = H(q)`` at every position, so the mean is 0 up to
    sampling noise; a sampler that draws from anything but ``q`` moves it."""
    tokens = sampler.sample(count, length + 1, np.random.default_rng(123))
    q = model.predictive(tokens)
    picked = np.take_along_axis(q, tokens[:, 1:, None], axis=2)[..., 0]
    gap = -np.log(picked) + (q * np.log(q)).sum(axis=2)
    per_sequence = gap.mean(axis=1)  # sequences are independent, positions within are not
    return per_sequence.mean(), per_sequence.std(ddof=1) / np.sqrt(count)


def test_sampler_and_forward_algorithm_describe_the_same_source():
    source = _source()
    mean, se = _gibbs_gap(source, source)
    assert abs(mean) < 4 * se  # a 4-sigma two-sided bound: fails by chance 6e-5 of the time


@pytest.mark.parametrize("change", [{"seed": 6}, {"stay": 0.5}, {"mix": 0.8}])
def test_the_gap_statistic_detects_a_predictor_of_another_source(change):
    mean, se = _gibbs_gap(_source(), _source(**change))
    assert abs(mean) > 4 * se


def test_floor_of_an_iid_source_is_its_unigram_entropy():
    """One regime and no bigram: tokens are i.i.d. from E[0], whose entropy is exact."""
    data = load_dataset("hmm", seed=3, sequences=2000, length=20, vocab=10, states=1, mix=0.0)
    source = HMMSource(vocab=10, states=1, stay=0.95, mix=0.0, concentration=0.3, seed=3)
    unigram = source.tables()[1][0]
    entropy = -(unigram * np.log(unigram)).sum()
    targets = data.y_test.numpy().ravel()
    surprisal = -np.log(unigram[targets])
    se = surprisal.std(ddof=1) / np.sqrt(len(targets))  # i.i.d. tokens
    assert abs(data.loss_floor - entropy) < 4 * se
    frequencies = np.bincount(targets, minlength=10) / len(targets)
    seen = frequencies > 0
    plug_in = -(frequencies[seen] * np.log(frequencies[seen])).sum()
    # the plug-in entropy is biased low by about (V - 1) / (2 n): allow that plus 4 se
    assert abs(plug_in - entropy) < 4 * se + 9 / (2 * len(targets))


def test_floor_sits_below_what_counting_learns_and_below_uniform():
    options = {"seed": 1, "sequences": 2000, "length": 16, "vocab": 16, "states": 4, "mix": 0.3}
    data = load_dataset("hmm", **options)
    references = dict(data.reference_losses)
    assert data.loss_floor < references["bigram"] < references["unigram"] < np.log(16)
    # The bigram counts miss the regimes: their excess over the Bayes predictor, paired
    # sequence by sequence, is many standard errors above zero.
    train = torch.cat([data.x_train, data.y_train[:, -1:]], dim=1).numpy()
    test = torch.cat([data.x_test, data.y_test[:, -1:]], dim=1).numpy()
    pairs = np.full((16, 16), 0.5)
    np.add.at(pairs, (train[:, :-1].ravel(), train[:, 1:].ravel()), 1.0)
    pairs /= pairs.sum(axis=1, keepdims=True)
    bigram = -np.log(pairs[test[:, :-1], test[:, 1:]])
    assert bigram.mean() == pytest.approx(references["bigram"])
    source = HMMSource(16, 4, 0.95, 0.3, 0.3, seed=1)
    q = source.predictive(test)
    bayes = -np.log(np.take_along_axis(q, test[:, 1:, None], axis=2)[..., 0])
    assert bayes.mean() == pytest.approx(data.loss_floor)
    excess = (bigram - bayes).mean(axis=1)
    assert excess.mean() > 4 * excess.std(ddof=1) / np.sqrt(len(excess))


def test_parts_are_shifted_sequences_with_the_documented_shapes():
    data = load_dataset("hmm", seed=0, **SMALL)
    assert data.sizes() == {"train": 180, "val": 60, "test": 60}
    assert data.input_shape == (12,) and data.num_classes == 8 and data.is_sequence
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape
        assert torch.equal(x[:, 1:], y[:, :-1])  # the target at t is the input at t + 1
        assert int(x.min()) >= 0 and int(x.max()) < 8


def test_same_seed_same_tokens_and_split_seed_moves_only_the_split():
    a = DATA_SOURCES["hmm"](0, Corruption(), seed=4, **SMALL)
    b = DATA_SOURCES["hmm"](0, Corruption(), seed=4, **SMALL)
    c = DATA_SOURCES["hmm"](1, Corruption(), seed=4, **SMALL)
    d = DATA_SOURCES["hmm"](0, Corruption(), seed=5, **SMALL)
    assert torch.equal(a.x_train, b.x_train) and a.loss_floor == b.loss_floor
    assert not torch.equal(a.x_train, c.x_train)

    def rows(data):
        parts = (data.x_train, data.x_val, data.x_test)
        return sorted(map(tuple, torch.cat(parts).tolist()))

    assert rows(a) == rows(c)  # the same sequences, split differently
    assert rows(a) != rows(d)


def test_count_losses_match_a_direct_computation():
    train = np.array([[0, 1, 0, 1], [1, 1, 0, 0]])
    test = np.array([[0, 1, 1]])
    losses = count_losses(train, test, vocab=2)
    # train targets: 1,0,1, 1,0,0 -> three 0s, three 1s; pairs (0->1) x2, (1->0) x2, (1->1), (0->0)
    assert losses["unigram"] == pytest.approx(np.log(2))
    p01, p11 = 2.5 / 4, 1.5 / 4  # add-half: (count + 0.5) / (3 + 1)
    assert losses["bigram"] == pytest.approx(-(np.log(p01) + np.log(p11)) / 2)
    source = _source(vocab=2, states=1, mix=1.0)
    assert bayes_loss(source, test) == pytest.approx(
        -np.log(source.tables()[2][[0, 1], [1, 1]]).mean()
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"stay": 1.5}, "stay must lie in"),
        ({"vocab": 1}, "vocab must be"),
        ({"sequences": 3}, "sequences >= 5"),
        ({"fractions": [0.5, 0.5]}, "fractions must be 3"),
        ({"colour": 1}, "unknown option"),
    ],
)
def test_bad_options_are_refused_by_name(options, match):
    with pytest.raises(ValueError, match=match):
        DATA_SOURCES["hmm"](0, Corruption(), **{**SMALL, **options})


def test_label_noise_is_refused_with_the_alternative():
    with pytest.raises(ValueError, match="make the source harder"):
        DATA_SOURCES["hmm"](0, Corruption(label_noise=0.1), **SMALL)
