"""What the suite's envs share: checking the constructor's options, building the engine
for a task, choosing the episode's instance, validating factor actions, the per-decision
reward and divergence test, and the final scores. One implementation, so every track
resets, rewards and scores alike."""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganno_bench.inner.engine import DecisionStats, engine_options
from ganno_bench.inner.fields import is_integer
from ganno_bench.inner.instances import SPLITS, Instance, frozen_instance
from ganno_bench.inner.task import TaskSpec
from ganno_bench.inner.torch_trainer import TorchTrainer


def check_env_options(
    split: str,
    action_mode: str,
    action_modes: Sequence[str],
    render_mode: str | None,
    render_modes: Sequence[str],
) -> None:
    """Refuse an unknown split, action mode or render mode, naming the choices."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if action_mode not in action_modes:
        raise ValueError(f"unknown action_mode {action_mode!r}; choose one of {action_modes}")
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"unknown render_mode {render_mode!r}; supported: {render_modes} or None")


# The keys reset(options=...) understands. A key close to one of them is a typo and an
# error (a misspelt "instance" would otherwise draw a random instance without a word);
# other keys are ignored with a warning, as PettingZoo's API test passes options of its own.
RESET_OPTIONS = ("instance",)


def check_reset_args(seed: Any, options: Any) -> tuple[int | None, dict[str, Any]]:
    """``reset``'s seed and options checked (a TypeError or ValueError naming the field):
    the seed as a Python int (numpy integers too) or None, the options as a dict."""
    if seed is not None and not is_integer(seed):
        raise TypeError(
            f"reset(seed=...) takes a non-negative integer or None, got {seed!r} "
            f"({type(seed).__name__})"
        )
    if seed is not None and seed < 0:
        raise ValueError(f"reset(seed=...) takes a non-negative integer or None, got {seed}")
    seed = None if seed is None else int(seed)
    if options is None:
        return seed, {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"reset(options=...) takes a dict such as {{'instance': 0}} or None, got "
            f"{options!r} ({type(options).__name__})"
        )
    unknown = [key for key in options if key not in RESET_OPTIONS]
    for key in unknown:
        close = difflib.get_close_matches(str(key), RESET_OPTIONS, n=1)
        if close:
            raise ValueError(
                f"unknown reset option {key!r} (did you mean {close[0]!r}?); "
                f"reset(options=...) understands {list(RESET_OPTIONS)}"
            )
    if unknown:
        warnings.warn(
            f"reset() ignores the option(s) {unknown}: it understands only "
            f"{list(RESET_OPTIONS)}",
            stacklevel=3,
        )
    return seed, dict(options)


def check_action_dict(actions: Any) -> Mapping[str, Any]:
    """``step``'s argument must be a dict ``{agent: action}`` (PettingZoo's parallel API)."""
    if not isinstance(actions, Mapping):
        raise TypeError(
            f"step() takes a dict {{agent: action}} with one action per live agent, got "
            f"{actions!r} ({type(actions).__name__})"
        )
    return actions


def is_numeric(value: Any) -> bool:
    """Whether ``value`` is an integer or float number or array (not bool, str, None...)."""
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False


def factor_index(agent: str, value: Any, factors: np.ndarray) -> int:
    """A factor-mode action: one integer index into ``factors`` (else ``ValueError``)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists and other non-arrays
        arr = np.asarray(None)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"invalid action for {agent}: {value!r}; factor mode takes an integer "
            f"index 0..{len(factors) - 1} into factors {tuple(factors)}"
        )
    index = int(arr.reshape(()))
    if not 0 <= index < len(factors):
        raise ValueError(
            f"invalid action for {agent}: index {index} is outside "
            f"0..{len(factors) - 1} (factors {tuple(factors)})"
        )
    return index


def initial_evaluation(trainer: TorchTrainer, instance: Instance) -> tuple[float, float]:
    """Validation loss and accuracy before any training, refused if not finite (see
    :func:`check_initial_loss`)."""
    loss, accuracy = trainer.evaluate("val")
    check_initial_loss(loss, instance)
    return loss, accuracy


def check_initial_loss(loss: float, instance: Instance) -> None:
    """Refuse an instance whose validation loss before training is not finite: divergence
    and the final score's cap are measured against it, so the episode could only end in
    NaN scores."""
    if not math.isfinite(loss):
        raise ValueError(
            f"options['instance']: the network's validation loss before training is {loss}, "
            f"so no episode can be scored; its init_scale={instance.init_scale} is too large "
            "for this network (choose a smaller init_scale)"
        )


@dataclass(frozen=True)
class DecisionOutcome:
    """The validation loss and accuracy after a decision, whether it diverged, and its
    reward."""

    val_loss: float
    val_accuracy: float
    diverged: bool
    reward: float


def decision_outcome(
    trainer: TorchTrainer,
    task: TaskSpec,
    stats: DecisionStats,
    *,
    prev_val_loss: float,
    initial_val_loss: float,
) -> DecisionOutcome:
    """Evaluate on the validation part after a decision (only when the decision's
    statistics are finite), then :func:`judge_decision`."""
    val_loss, val_accuracy = trainer.evaluate("val") if stats.finite else (math.inf, 0.0)
    return judge_decision(
        task,
        stats,
        val_loss,
        val_accuracy,
        prev_val_loss=prev_val_loss,
        initial_val_loss=initial_val_loss,
    )


def judge_decision(
    task: TaskSpec,
    stats: DecisionStats,
    val_loss: float,
    val_accuracy: float,
    *,
    prev_val_loss: float,
    initial_val_loss: float,
) -> DecisionOutcome:
    """Reward the decrease of log validation loss, or ``-divergence_penalty`` on
    divergence: the validation loss or the window's train loss not finite or above
    ``divergence_factor`` x the initial validation loss. Every engine judges so."""
    if not stats.finite:
        val_loss, val_accuracy = math.inf, 0.0
    limit = task.divergence_factor * initial_val_loss
    diverged = not (val_loss <= limit and stats.train_loss <= limit)
    reward = -task.divergence_penalty if diverged else math.log(prev_val_loss) - math.log(val_loss)
    return DecisionOutcome(val_loss, val_accuracy, diverged, reward)


def build_trainer(task: TaskSpec, device: str) -> tuple[TorchTrainer, int]:
    """The task's network, data and optimiser in an engine; also the number of classes."""
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a string such as 'cpu' or 'cuda', got {device!r} "
            f"({type(device).__name__})"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for but CUDA is not available; use device='cpu'"
        )
    dataset = task.load_data()
    with torch.random.fork_rng(devices=[]):  # building layers draws from the global RNG
        network = task.build_network(dataset.input_shape, dataset.num_classes)
    trainer = TorchTrainer(network, dataset, device=device, **engine_options(task))
    return trainer, dataset.num_classes


def choose_instance(
    task: TaskSpec, split: str, np_random: np.random.Generator, options: dict
) -> Instance:
    """``options["instance"]``: an index into the split, an Instance, or its dict; without
    it, a frozen instance of a held-out split or a fresh draw from the train split."""
    chosen = options.get("instance")
    frozen = split != "train"
    if isinstance(chosen, bool | np.bool_):  # True is an int to Python, never an index here
        raise TypeError(
            f"options['instance'] must be a non-negative index, an Instance or its dict; "
            f"got {chosen!r} (bool)"
        )
    if chosen is None:
        if frozen:
            pool = task.frozen_instances(split)
            return pool[int(np_random.integers(len(pool)))]
        return task.spaces["train"].sample(np_random)
    if isinstance(chosen, Instance):
        return chosen
    if isinstance(chosen, dict):
        try:
            return Instance.from_dict(chosen)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"options['instance'] is not a valid instance dict: {exc}") from exc
    if not is_integer(chosen) or chosen < 0:
        raise ValueError(
            f"options['instance'] must be a non-negative index, an Instance or "
            f"its dict; got {chosen!r}"
        )
    if frozen:
        pool = task.frozen_instances(split)
        if chosen >= len(pool):
            raise ValueError(
                f"split {split!r} of {task.id} has {len(pool)} frozen "
                f"instances (0..{len(pool) - 1}); got instance={chosen}"
            )
        return pool[int(chosen)]
    return frozen_instance(task.id, task.spaces["train"], "train", int(chosen))


def final_scores(
    trainer: TorchTrainer,
    task: TaskSpec,
    *,
    diverged: bool,
    val_loss: float,
    initial_val_loss: float,
) -> dict[str, float]:
    """Inner-test loss and accuracy at the episode's end (the suite's score), evaluated
    unless the run diverged; see :func:`scores_at_end`."""
    test_loss, test_accuracy = (math.inf, 0.0) if diverged else trainer.evaluate("test")
    return scores_at_end(
        task,
        diverged=diverged,
        test_loss=test_loss,
        test_accuracy=test_accuracy,
        val_loss=val_loss,
        initial_val_loss=initial_val_loss,
    )


def scores_at_end(
    task: TaskSpec,
    *,
    diverged: bool,
    test_loss: float,
    test_accuracy: float,
    val_loss: float,
    initial_val_loss: float,
) -> dict[str, float]:
    """The episode's final scores; a diverged or non-finite loss is capped at
    ``divergence_factor`` x the initial validation loss (a diverged run scores accuracy 0)."""
    cap = task.divergence_factor * initial_val_loss
    loss, accuracy = (math.inf, 0.0) if diverged else (test_loss, test_accuracy)
    if not math.isfinite(loss):  # a documented cap keeps the score finite
        loss = cap
    return {
        "final_test_loss": float(loss),
        "final_test_accuracy": float(accuracy),
        "final_val_loss": float(min(val_loss, cap)),
    }


def copy_seeds(seed: int | None, num_copies: int) -> list[int]:
    """The seed of each copy: ``SeedSequence(seed).spawn(num_copies)[c]``'s first uint64 word.

    ``seed=None`` draws fresh OS entropy. Distinct children give independent streams, so no
    two copies share one, whatever their number or their split across processes.
    """
    children = np.random.SeedSequence(seed).spawn(num_copies)
    return [int(child.generate_state(1, dtype=np.uint64)[0]) for child in children]


def rates_from_actions(
    task: TaskSpec,
    action_mode: str,
    rates: np.ndarray,
    actions: dict[str, Any],
    agents: Sequence[str],
) -> np.ndarray:
    """The layers' new rates (clipped to ``task.lr_bounds``) after one action per agent:
    a factor index (``"factor"``) or an absolute log10 rate (``"log_lr"``, clipped to the
    bounds); a missing, unknown or malformed action raises ``ValueError``."""
    actions = check_action_dict(actions)
    missing = [a for a in agents if a not in actions]
    unknown = [a for a in actions if a not in agents]
    if missing or unknown:
        raise ValueError(
            f"step() needs one action per live agent {list(agents)}; "
            f"missing {missing}, unknown {unknown}"
        )
    factors = np.asarray(task.factors, dtype=np.float64)
    log_bounds = (math.log10(task.lr_bounds[0]), math.log10(task.lr_bounds[1]))
    new = np.array(rates, dtype=np.float64)
    for i, agent in enumerate(agents):
        value = actions[agent]
        if action_mode == "factor":
            new[i] = new[i] * factors[factor_index(agent, value, factors)]
        else:
            new[i] = 10.0 ** log_lr_value(agent, value, log_bounds)
    return np.clip(new, *task.lr_bounds)


def log_lr_value(agent: str, value: Any, bounds: tuple[float, float]) -> float:
    """A log_lr-mode action: one finite log10 rate, clipped to ``bounds``."""
    arr = np.asarray(value, dtype=np.float64) if is_numeric(value) else None
    if arr is None or arr.size != 1:
        raise ValueError(
            f"invalid action for {agent}: {value!r}; log_lr mode takes one "
            f"log10 learning rate in {bounds}"
        )
    log_lr = float(arr.reshape(()))
    if not math.isfinite(log_lr):
        raise ValueError(f"invalid action for {agent}: log10 learning rate {log_lr} is not finite")
    return float(np.clip(log_lr, *bounds))
