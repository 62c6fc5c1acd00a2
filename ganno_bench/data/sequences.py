"""Token sequences from a seeded hidden-Markov source, with a known best achievable loss.

The source (``HMMSource``) hides a *regime* ``z_t`` among ``states`` that persists from one
token to the next with probability ``stay`` (else it jumps to one of the others uniformly).
Each token mixes a shared bigram with the regime's own unigram:

    p(x_t | z_t, x_{t-1}) = mix * B[x_{t-1}, x_t] + (1 - mix) * E[z_t, x_t]

(the first token of a sequence has no predecessor and comes from ``E[z_0]`` alone). The
rows of ``B`` and ``E`` are Dirichlet(``concentration``) draws: small concentrations make
peaked, learnable distributions. A next-token model has to learn

* the bigram table ``B`` (a local dependency: the previous token),
* the regime unigrams ``E`` and, above all, to infer the current regime from the whole
  context so far (a long-range dependency: evidence about ``z`` accumulates over the
  ``1 / (1 - stay)`` tokens a regime lasts on average, and only attention over the past
  can pool it).

**The floor.** Because the source is known, the Bayes-optimal predictor
``q_t = p(x_t | x_<t)`` is computed exactly by the forward algorithm over the regimes. Its
mean loss on the inner-test part, ``-mean log q_t(x_t)`` in nats per predicted token, is
the best any model can do on that part in expectation (no predictor has a lower expected
log loss than the true conditional): ``ArrayDataset.loss_floor``. Two plug-in references
show what the long-range part is worth: the loss on the test part of the unigram and of
the bigram frequencies counted on the inner-train part (add-half smoothing).

A sample is ``length + 1`` tokens; the model reads the first ``length`` (inputs) and
predicts each next one (targets, the same sequence shifted by one), so every one of the
``length`` predictions has at least one token of context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganno_bench.data.dataset import ArrayDataset, Corruption

SALT = 0x70CE5  # separates this source's streams from other users of the same seed


@dataclass(frozen=True)
class HMMSource:
    """The source's parameters, drawn once from ``seed`` (the sampling stream is separate)."""

    vocab: int
    states: int
    stay: float
    mix: float
    concentration: float
    seed: int

    def __post_init__(self) -> None:
        checks = [
            (self.vocab >= 2, f"vocab must be >= 2, got {self.vocab}"),
            (self.states >= 1, f"states must be >= 1, got {self.states}"),
            (0.0 <= self.stay <= 1.0, f"stay must lie in [0, 1], got {self.stay}"),
            (0.0 <= self.mix <= 1.0, f"mix must lie in [0, 1], got {self.mix}"),
            (self.concentration > 0, f"concentration must be > 0, got {self.concentration}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"hmm source: {message}")

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Transition matrix A (states x states), regime unigrams E, bigram B."""
        rng = np.random.default_rng([self.seed, SALT, 0])
        emission = rng.dirichlet(np.full(self.vocab, self.concentration), size=self.states)
        bigram = rng.dirichlet(np.full(self.vocab, self.concentration), size=self.vocab)
        if self.states == 1:
            transition = np.ones((1, 1))
        else:
            jump = (1.0 - self.stay) / (self.states - 1)
            transition = np.full((self.states, self.states), jump)
            np.fill_diagonal(transition, self.stay)
        return transition, emission, bigram

    def sample(self, count: int, tokens: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` sequences of ``tokens`` tokens (int64), drawn position by position."""
        transition, emission, bigram = self.tables()
        out = np.empty((count, tokens), dtype=np.int64)
        state = _categorical(np.full((count, self.states), 1.0 / self.states), rng)
        out[:, 0] = _categorical(emission[state], rng)
        for t in range(1, tokens):
            state = _categorical(transition[state], rng)
            probs = self.mix * bigram[out[:, t - 1]] + (1.0 - self.mix) * emission[state]
            out[:, t] = _categorical(probs, rng)
        return out

    def predictive(self, sequences: np.ndarray) -> np.ndarray:
        """The Bayes-optimal next-token distributions ``p(x_t | x_<t)`` for t = 1 .. n-1
        (shape ``(count, n - 1, vocab)``), by the forward algorithm over the regimes."""
        transition, emission, bigram = self.tables()
        count, n = sequences.shape
        out = np.empty((count, n - 1, self.vocab))
        belief = np.full((count, self.states), 1.0 / self.states)  # p(z_0)
        likelihood = emission[:, sequences[:, 0]].T  # p(x_0 | z_0)
        for t in range(1, n):
            posterior = belief * likelihood
            posterior /= posterior.sum(axis=1, keepdims=True)  # p(z_{t-1} | x_<t)
            belief = posterior @ transition  # p(z_t | x_<t)
            previous = sequences[:, t - 1]
            out[:, t - 1] = self.mix * bigram[previous] + (1.0 - self.mix) * belief @ emission
            likelihood = (
                self.mix * bigram[previous, sequences[:, t]][:, None]
                + (1.0 - self.mix) * emission[:, sequences[:, t]].T
            )
        return out


def _categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of ``probs`` (inverse CDF on one uniform per row)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), probs.shape[1] - 1)


def bayes_loss(source: HMMSource, sequences: np.ndarray) -> float:
    """Mean ``-log p(x_t | x_<t)`` over every predicted token of ``sequences`` (nats)."""
    q = source.predictive(sequences)
    picked = np.take_along_axis(q, sequences[:, 1:, None], axis=2)[..., 0]
    return float(-np.log(picked).mean())


def count_losses(train: np.ndarray, test: np.ndarray, vocab: int) -> dict[str, float]:
    """Test loss of the unigram and bigram frequencies counted on ``train`` (add-half)."""
    targets = train[:, 1:].ravel()
    unigram = np.bincount(targets, minlength=vocab) + 0.5
    unigram /= unigram.sum()
    pairs = np.zeros((vocab, vocab)) + 0.5
    np.add.at(pairs, (train[:, :-1].ravel(), targets), 1.0)
    pairs /= pairs.sum(axis=1, keepdims=True)
    test_prev, test_next = test[:, :-1].ravel(), test[:, 1:].ravel()
    return {
        "unigram": float(-np.log(unigram[test_next]).mean()),
        "bigram": float(-np.log(pairs[test_prev, test_next]).mean()),
    }


def hmm_sequences(
    split_seed: int,
    corruption: Corruption,
    *,
    seed: int = 0,
    sequences: int = 2000,
    length: int = 16,
    vocab: int = 16,
    states: int = 4,
    stay: float = 0.95,
    mix: float = 0.5,
    concentration: float = 0.3,
    fractions: tuple[float, float, float] | list[float] = (0.6, 0.2, 0.2),
    **unknown: Any,
) -> ArrayDataset:
    """The ``hmm`` data source: ``sequences`` samples of ``length`` next-token predictions.

    ``seed`` fixes the source and the samples; ``split_seed`` only which samples go to
    inner-train, validation and test. Inputs and targets are int64 tensors of shape
    ``(samples, length)``; ``num_classes`` is ``vocab``.
    """
    if unknown:
        raise ValueError(
            f"hmm source: unknown option(s) {sorted(unknown)}; it takes seed, sequences, "
            "length, vocab, states, stay, mix, concentration, fractions"
        )
    if corruption.label_noise or corruption.input_noise:
        raise ValueError(
            "hmm source: label_noise and input_noise do not apply to token sequences; "
            "make the source harder instead (lower stay, higher mix or concentration)"
        )
    if length < 1 or sequences < 5:
        raise ValueError(
            f"hmm source: needs length >= 1 and sequences >= 5, got {length} and {sequences}"
        )
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(
            f"hmm source: fractions must be 3 positive numbers summing to 1, got {fractions}"
        )
    source = HMMSource(vocab, states, float(stay), float(mix), float(concentration), seed)
    tokens = source.sample(sequences, length + 1, np.random.default_rng([seed, SALT, 1]))
    order = np.random.default_rng([split_seed, SALT, 2]).permutation(sequences)
    n_train, n_val = round(fractions[0] * sequences), round(fractions[1] * sequences)
    train, val, test = (tokens[p] for p in np.split(order, [n_train, n_train + n_val]))
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"hmm source: {sequences} sequences are too few to split {fractions}")

    def part(block: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(block[:, :-1].copy()), torch.from_numpy(block[:, 1:].copy())

    counts = count_losses(train, test, vocab)
    return ArrayDataset(
        f"hmm-{seed}",
        *part(train),
        *part(val),
        *part(test),
        num_classes=vocab,
        loss_floor=bayes_loss(source, test),
        reference_losses=(("unigram", counts["unigram"]), ("bigram", counts["bigram"])),
    )
