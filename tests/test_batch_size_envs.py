"""The batch-size track: API compliance, exact sample budget, determinism, divergence,
actions, the noise-scale estimator, and registration alongside the LR suite."""

from __future__ import annotations

import dataclasses
import math

import gymnasium
import numpy as np
import pettingzoo
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from pettingzoo.test import parallel_api_test, parallel_seed_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import ganno_bench
from ganno_bench.benchmark.evaluation import resolve_ids
from ganno_bench.envs import BatchSizeEnv, CentralisedBatchSizeEnv
from ganno_bench.envs.batch_observation import BATCH_FEATURE_NAMES
from ganno_bench.inner.batch_task import BatchSizeTaskSpec, update_sizes
from ganno_bench.inner.noise_scale import NoiseScaleEMA, estimate_noise, noise_scale

from .conftest import BATCH_SIZE_IDS, SUITE_IDS, run_episode

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Few decisions of few samples: the batch-size envs' own override options.
TINY = {"decisions": 3, "samples_per_decision": 96}
EASY = "ganno/BatchSize-MLP-Easy-v0"


def test_the_track_has_mlp_and_cnn_ids_and_its_own_suite_name():
    for env_id in (EASY, "ganno/BatchSize-MLP-Hard-v0", "ganno/BatchSize-CNN-Easy-v0"):
        assert env_id in BATCH_SIZE_IDS
        task = ganno_bench.spec(env_id)
        assert isinstance(task, BatchSizeTaskSpec) and task.description
        assert task.batch_bounds == (8, 512)
    assert resolve_ids(["batch-size"]) == BATCH_SIZE_IDS
    assert resolve_ids(["all"]) == SUITE_IDS  # "all" stays the layerwise-LR suite
    assert not set(BATCH_SIZE_IDS) & set(SUITE_IDS)
    assert ganno_bench.registration_errors() == {}


def test_hard_is_deeper_noisier_and_tighter_than_easy():
    for family in ("MLP", "CNN"):
        easy, hard = (
            ganno_bench.spec(f"ganno/BatchSize-{family}-{d}-v0") for d in ("Easy", "Hard")
        )
        assert easy.model.num_layers() < hard.model.num_layers()
        assert easy.sample_budget > hard.sample_budget
        assert easy.data.label_noise < hard.data.label_noise
        assert (easy.lr_schedule, hard.lr_schedule) == ("constant", "cosine")


@pytest.mark.parametrize("env_id", BATCH_SIZE_IDS)
def test_parallel_api_and_seed_tests(env_id):
    parallel_api_test(ganno_bench.make(env_id, **TINY), num_cycles=20)
    parallel_seed_test(lambda: ganno_bench.make(env_id, **TINY), num_cycles=8)


@pytest.mark.parametrize("env_id", BATCH_SIZE_IDS)
@pytest.mark.parametrize("action_mode", ["factor", "absolute"])
def test_single_agent_view_passes_gymnasium_and_sb3_checkers(env_id, action_mode):
    env = gymnasium.make(env_id, action_mode=action_mode, **TINY)
    assert isinstance(env.unwrapped, CentralisedBatchSizeEnv)
    gymnasium_check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(gymnasium.make(env_id, action_mode=action_mode, **TINY).unwrapped)


def test_pettingzoo_make_and_the_centralised_view_mirror_the_parallel_env():
    via_pz = pettingzoo.make("parallel", EASY, split="test", **TINY)
    assert isinstance(via_pz, BatchSizeEnv) and via_pz.possible_agents == ["controller"]
    central = gymnasium.make(EASY, split="test", **TINY).unwrapped
    obs_c, info_c = central.reset(seed=3)
    obs_p, infos_p = via_pz.reset(seed=3)
    assert obs_c.tobytes() == obs_p["controller"].tobytes()
    obs_c, reward_c, *_, info_c = central.step(2)
    obs_p, rewards_p, *_, infos_p = via_pz.step({"controller": 2})
    assert obs_c.tobytes() == obs_p["controller"].tobytes()
    assert reward_c == rewards_p["controller"] and info_c == infos_p["controller"]


def test_update_sizes_cover_the_samples_exactly_and_never_fall_below_the_bounds():
    assert update_sizes(1280, 512, 8) == [512, 512, 256]
    assert update_sizes(1280, 64, 8) == [64] * 20
    assert update_sizes(96, 512, 8) == [96]  # a batch above the decision's samples is cut
    assert update_sizes(640, 9, 8) == [9] * 70 + [10]  # remainder 1 joins the last update
    assert update_sizes(700, 9, 8) == [9] * 76 + [9 + 7]
    assert update_sizes(700, 23, 8) == [23] * 30 + [10]  # remainder 10 >= 8: its own update
    lo, hi = 8, 512
    for samples in (8, 9, 15, 96, 640, 700, 1280):
        for batch in range(lo, hi + 1):
            sizes = update_sizes(samples, batch, lo)
            assert sum(sizes) == samples
            assert min(sizes) >= lo  # the real invariant: no update below the bounds
            assert max(sizes) <= max(min(batch, samples), batch + lo - 1)
            assert sizes[:-1] == [min(batch, samples)] * (len(sizes) - 1)


@pytest.mark.parametrize("action_mode", ["factor", "absolute"])
def test_the_sample_budget_is_met_exactly_whatever_the_batch_sizes(action_mode):
    env = ganno_bench.make(EASY, action_mode=action_mode, decisions=6, samples_per_decision=700)
    rng = np.random.default_rng(0)
    for episode in range(3):
        _, infos = env.reset(seed=episode)
        assert infos["controller"]["samples_processed"] == 0
        decisions = 0
        while env.agents:
            if action_mode == "factor":
                action = int(rng.integers(3))
            else:
                action = np.array([rng.uniform(1, 600)], dtype=np.float32)
            *_, infos = env.step({"controller": action})
            decisions += 1
            info = infos["controller"]
            batch = info["batch_size"]
            assert 8 <= batch <= 512
            assert info["samples_processed"] == decisions * 700
            sizes = update_sizes(700, batch, 8)
            assert info["updates"] == len(sizes) and min(sizes) >= 8
            assert info["updates"] == math.ceil(700 / batch) - (0 < 700 % batch < 8)
        assert info["samples_processed"] == env.task.sample_budget == 4200
        assert info["progress"] == pytest.approx(1.0)


def test_engine_counts_the_samples_it_trains_on():
    env = ganno_bench.make(EASY, **TINY)
    env.reset(seed=0)
    seen = []
    original = env.trainer._next_batch
    env.trainer._next_batch = lambda size=None: seen.append(size) or original(size)
    env.step({"controller": 2})  # double the initial batch size
    assert sum(seen) == 96 and seen == update_sizes(96, env.batch_size, 8)


def test_no_update_of_an_episode_has_fewer_samples_than_the_lower_bound():
    env = ganno_bench.make(EASY, action_mode="absolute", decisions=2, samples_per_decision=640)
    env.reset(seed=0)
    seen = []
    original = env.trainer._next_batch
    env.trainer._next_batch = lambda size=None: seen.append(size) or original(size)
    *_, infos = env.step({"controller": np.array([9.0])})  # 640 = 71 x 9 + 1
    assert seen == [9] * 70 + [10] and infos["controller"]["samples_processed"] == 640
    with pytest.raises(ValueError, match=r"samples_per_decision must be >= batch_bounds\[0\]"):
        ganno_bench.make(EASY, samples_per_decision=4)


def test_factor_actions_halve_keep_double_within_bounds():
    env = ganno_bench.make(EASY, decisions=12, samples_per_decision=64)
    env.reset(options={"instance": {**_instance_dict(env), "batch_size": 16}})
    sizes = []
    for action in (0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2):
        *_, infos = env.step({"controller": action})
        sizes.append(infos["controller"]["batch_size"])
    assert sizes == [8, 8, 8, 8, 16, 32, 64, 128, 256, 512, 512]


def test_absolute_actions_are_rounded_and_clipped():
    env = ganno_bench.make(EASY, action_mode="absolute", decisions=4, samples_per_decision=64)
    env.reset(seed=0)
    chosen = []
    for value in (100.4, 3.0, 9000.0):
        *_, infos = env.step({"controller": np.array([value])})
        chosen.append(infos["controller"]["batch_size"])
    assert chosen == [100, 8, 512]


@pytest.mark.parametrize(
    ("mode", "action", "message"),
    [
        ("factor", 3, "outside 0..2"),
        ("factor", -1, "outside 0..2"),
        ("factor", 1.5, "integer index"),
        ("factor", "up", "integer index"),
        ("absolute", [float("nan")], "finite batch size"),
        ("absolute", [1.0, 2.0], "finite batch size"),
        ("absolute", "big", "finite batch size"),
        ("absolute", None, "finite batch size"),
        ("absolute", "128", "finite batch size"),  # a numeric string is still a string
        ("absolute", np.array(["64"]), "finite batch size"),
        ("absolute", True, "finite batch size"),  # booleans are not batch sizes
        ("absolute", np.array([False]), "finite batch size"),
    ],
)
def test_invalid_actions_raise_clear_errors(mode, action, message):
    env = ganno_bench.make(EASY, action_mode=mode, **TINY)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step({"controller": action})
    with pytest.raises(ValueError, match="exactly one action"):
        env.step({"layer_0": 1})


def test_both_tracks_share_action_checks_reward_and_divergence():
    from ganno_bench.envs import batch_size, common, layer_lr

    for module in (batch_size, layer_lr):
        assert module.decision_outcome is common.decision_outcome
        assert module.check_env_options is common.check_env_options
    assert batch_size.factor_index is common.factor_index
    assert batch_size.is_numeric is common.is_numeric
    # the LR track's actions go through the helper the batched engine's runs use too,
    # which checks them with the same factor_index / is_numeric
    assert layer_lr.rates_from_actions is common.rates_from_actions
    for env_class in (batch_size.BatchSizeEnv, layer_lr.LayerLREnv):
        assert not hasattr(env_class, "_factor_index")
    assert not hasattr(layer_lr, "_is_numeric")
    assert [common.is_numeric(v) for v in (3, 2.5, np.float32(1), [1, 2])] == [True] * 4
    assert not any(common.is_numeric(v) for v in ("3", True, np.array([True]), None, {}))


def test_the_shared_decision_outcome_rewards_and_flags_divergence():
    from ganno_bench.envs.common import decision_outcome

    env = ganno_bench.make(EASY, **TINY)
    env.reset(seed=0)
    stats = env.trainer.train_batches([32])
    val_loss, _ = env.trainer.evaluate("val")
    outcome = decision_outcome(
        env.trainer, env.task, stats, prev_val_loss=2.0, initial_val_loss=2.0
    )
    assert outcome.val_loss == val_loss and not outcome.diverged
    assert outcome.reward == math.log(2.0) - math.log(val_loss)
    tiny_start = decision_outcome(
        env.trainer, env.task, stats, prev_val_loss=2.0, initial_val_loss=1e-6
    )
    assert tiny_start.diverged and tiny_start.reward == -env.task.divergence_penalty


def test_bad_options_name_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        ganno_bench.make(EASY, action_mode="log_lr")
    with pytest.raises(TypeError, match="samples_per_decision"):
        ganno_bench.make(EASY, inner_steps=3)  # the budget is in samples here
    with pytest.raises(ValueError, match="lower the `probe_batch` or `probe_chunks` override"):
        ganno_bench.make(EASY, probe_batch=200, probe_chunks=8)  # 1,600 > the train part
    with pytest.raises(ValueError, match="lower the `batch_bounds` override"):
        ganno_bench.make(EASY, batch_bounds=(8, 4096))
    with pytest.raises(ValueError, match=r"outside 8\.\.64"):
        ganno_bench.make(EASY, batch_bounds=(8, 64))  # initial batch sizes up to 128


def _instance_dict(env) -> dict:
    return env.task.frozen_instances("test")[0].to_dict()


def test_huge_learning_rate_diverges_cleanly():
    env = ganno_bench.make(EASY, decisions=5, samples_per_decision=256)
    _, _ = env.reset(options={"instance": {**_instance_dict(env), "log10_lr": 2.0}})
    obs, rewards, terminations, truncations, infos = env.step({"controller": 1})
    assert terminations == {"controller": True} and truncations == {"controller": False}
    assert rewards["controller"] == -env.task.divergence_penalty
    info = infos["controller"]
    assert info["diverged"] and info["noise_scale"] is None
    assert np.isfinite(obs["controller"]).all()
    assert env.observation_space("controller").contains(obs["controller"])
    assert math.isfinite(info["final_test_loss"]) and info["final_test_accuracy"] == 0.0
    assert env.agents == []
    with pytest.raises(RuntimeError, match="call reset"):
        env.step({"controller": 1})


def test_truncation_at_the_budget_and_telescoping_return():
    env = ganno_bench.make(EASY, decisions=4, samples_per_decision=128)
    _, infos = env.reset(seed=2)
    first_val = infos["controller"]["val_loss"]
    total = 0.0
    for t in range(4):
        _, rewards, terminations, truncations, infos = env.step({"controller": 1})
        total += rewards["controller"]
        assert not terminations["controller"]
        assert truncations["controller"] == (t == 3)
    expected = math.log(first_val) - math.log(infos["controller"]["val_loss"])
    assert total == pytest.approx(expected, abs=1e-5)
    assert 0 < infos["controller"]["final_test_accuracy"] <= 1


def test_cosine_schedule_is_fixed_per_id():
    env = ganno_bench.make("ganno/BatchSize-MLP-Hard-v0", decisions=4, samples_per_decision=64)
    env.reset(seed=0)
    base = env.instance.learning_rate
    rates = []
    while env.agents:
        *_, infos = env.step({"controller": 1})
        rates.append(infos["controller"]["lr"])
    final = 0.01 * base
    expected = [final + 0.5 * (base - final) * (1 + math.cos(math.pi * t / 3)) for t in range(4)]
    assert rates == pytest.approx(expected)
    assert infos["controller"]["log10_lr"] == pytest.approx(math.log10(rates[-1]), abs=1e-6)


def _random_policy(seed: int, action_mode: str = "factor"):
    rng = np.random.default_rng(seed)
    if action_mode == "absolute":
        return lambda obs, infos: {"controller": np.array([rng.uniform(1, 600)], np.float32)}
    return lambda obs, infos: {"controller": int(rng.integers(3))}


@pytest.mark.parametrize(
    ("env_id", "action_mode"),
    [(EASY, "factor"), (EASY, "absolute"), ("ganno/BatchSize-CNN-Hard-v0", "factor")],
)
def test_same_seed_same_episode_bitwise(env_id, action_mode):
    def episode():
        env = ganno_bench.make(
            env_id, action_mode=action_mode, decisions=4, samples_per_decision=200
        )
        trace = run_episode(env, _random_policy(0, action_mode), seed=11)
        return trace, env.trainer.final_weights()

    (a, weights_a), (b, weights_b) = episode(), episode()
    assert len(a["obs"]) == len(b["obs"])
    for obs_a, obs_b in zip(a["obs"], b["obs"], strict=True):
        assert obs_a["controller"].tobytes() == obs_b["controller"].tobytes()
    assert a["rewards"] == b["rewards"]
    assert torch.equal(weights_a, weights_b)


def test_observations_are_named_finite_and_scale_free():
    env = ganno_bench.make("ganno/BatchSize-CNN-Easy-v0", **TINY)
    obs, infos = env.reset(seed=0)
    while True:
        vector, info = obs["controller"], infos["controller"]
        named = [info[name] for name in env.feature_names]
        np.testing.assert_array_equal(vector, np.array(named, dtype=np.float32))
        assert np.isfinite(vector).all()
        assert info["log2_batch_size"] == pytest.approx(math.log2(info["batch_size"]))
        if info["noise_scale_valid"]:
            assert info["log10_noise_scale"] == pytest.approx(
                math.log10(info["noise_scale"]), abs=1e-5
            )
        if not env.agents:
            break
        obs, _, _, _, infos = env.step({"controller": 2})


def test_overflowing_norms_take_the_ceiling_and_zero_ones_the_floor():
    from ganno_bench.envs.batch_observation import HIGH, LOW, BatchState, build_batch_observation

    def features(**changes):
        state = BatchState(
            lr=0.1,
            batch_size=32,
            batch_bounds=(8, 512),
            noise=estimate_noise(8, 2.0, 64, 1.0),
            big_sq_norm=1.0,
            small_sq_norm=2.0,
            grad_cosine=0.0,
            update_ratio=0.01,
            train_loss=1.0,
            val_loss=1.0,
            prev_val_loss=1.0,
            val_accuracy=0.5,
            progress=0.5,
        )
        for key, value in changes.items():
            state = dataclasses.replace(state, **{key: value})
        return dict(zip(BATCH_FEATURE_NAMES, build_batch_observation(state, 10), strict=True))

    index = {name: i for i, name in enumerate(BATCH_FEATURE_NAMES)}
    grad, update = index["log10_grad_norm"], index["log10_update_ratio"]
    assert features(big_sq_norm=math.inf)["log10_grad_norm"] == HIGH[grad]
    assert features(update_ratio=math.inf)["log10_update_ratio"] == HIGH[update]
    assert features(big_sq_norm=0.0)["log10_grad_norm"] == LOW[grad]
    assert features(update_ratio=0.0)["log10_update_ratio"] == LOW[update]


def test_probing_the_gradient_noise_leaves_weights_and_data_stream_alone():
    env = ganno_bench.make(EASY, **TINY)
    env.reset(seed=0)
    trainer = env.trainer
    state = trainer.state_dict()
    trainer.probe_gradients(32, 4)
    after = trainer.state_dict()
    assert torch.equal(state["weights"], after["weights"])
    assert state["cursor"] == after["cursor"] and torch.equal(state["order"], after["order"])


# -- the noise-scale estimator ---------------------------------------------------------
def test_noise_scale_estimator_recovers_a_known_answer_from_synthetic_gradients():
    """``estimate_noise`` alone, on i.i.d. per-sample gradients ~ N(G, Sigma): known |G|^2
    and tr(Sigma) (the engine's probe is tested below)."""
    rng = np.random.default_rng(0)
    dim = 50
    mean = rng.normal(size=dim) * 0.2
    scales = rng.uniform(0.5, 2.0, size=dim)  # Sigma = diag(scales^2)
    true_grad_sq, true_trace = float(mean @ mean), float(np.sum(scales**2))
    b_small, chunks, repeats = 16, 8, 400
    small_sq, big_sq = [], []
    for _ in range(repeats):
        samples = mean + scales * rng.normal(size=(b_small * chunks, dim))
        chunk_means = samples.reshape(chunks, b_small, dim).mean(axis=1)
        small_sq.append(np.mean(np.sum(chunk_means**2, axis=1)))
        big_sq.append(np.sum(chunk_means.mean(axis=0) ** 2))
    estimate = estimate_noise(b_small, np.mean(small_sq), b_small * chunks, np.mean(big_sq))
    assert estimate.grad_sq == pytest.approx(true_grad_sq, rel=0.1)
    assert estimate.trace_sigma == pytest.approx(true_trace, rel=0.05)
    assert estimate.simple == pytest.approx(true_trace / true_grad_sq, rel=0.15)


def test_the_engine_probe_gives_unbiased_noise_estimates_on_a_finite_train_part():
    """Through the engine, on a train part small enough for exact per-sample gradients:
    the probe's mean squared norms match ``|G|^2 + tr(Sigma) / B`` of the finite part at
    both batch sizes, and ``estimate_noise`` recovers |G|^2 and tr(Sigma). A probe that
    drew without replacement (32 of 40 samples) would shrink |G_big|^2 by (N - B) / (N - 1)
    and fail by dozens of standard errors."""
    env = ganno_bench.make(EASY, **TINY)
    env.reset(seed=0)
    trainer = env.trainer
    x, y = trainer.data_part("train")
    n, small, chunks = 40, 4, 8
    trainer._data["train"] = (x[:n], y[:n])
    x, y = trainer.data_part("train")
    per_sample = []
    for i in range(n):  # the batch loss is the mean of these, so its gradient is too
        loss = torch.nn.functional.cross_entropy(trainer.network(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, trainer._params)
        per_sample.append(torch.cat([g.reshape(-1) for g in grads]).double())
    g = torch.stack(per_sample)
    mean = g.mean(dim=0)
    grad_sq = float(mean @ mean)
    trace = float((g - mean).square().sum(dim=1).mean())  # population covariance of the part
    small_sq, big_sq, grad_sq_est, trace_est = [], [], [], []
    for _ in range(400):
        probe = trainer.probe_gradients(small, chunks)
        assert (probe.small, probe.big) == (small, small * chunks)
        estimate = estimate_noise(probe.small, probe.small_sq_norm, probe.big, probe.big_sq_norm)
        small_sq.append(probe.small_sq_norm)
        big_sq.append(probe.big_sq_norm)
        grad_sq_est.append(estimate.grad_sq)
        trace_est.append(estimate.trace_sigma)

    def close(values, expected):  # within 4 standard errors of the mean
        values = np.asarray(values)
        error = values.std(ddof=1) / math.sqrt(len(values))
        return abs(values.mean() - expected) < 4 * error

    assert close(small_sq, grad_sq + trace / small)
    assert close(big_sq, grad_sq + trace / (small * chunks))
    assert close(grad_sq_est, grad_sq)
    assert close(trace_est, trace)
    averaged = estimate_noise(small, np.mean(small_sq), small * chunks, np.mean(big_sq))
    assert averaged.simple == pytest.approx(trace / grad_sq, rel=0.25)


def test_noise_scale_algebra_and_invalid_estimates():
    # E|G_B|^2 = |G|^2 + tr(Sigma)/B exactly: the estimator inverts it
    grad_sq, trace = 0.5, 40.0
    small, big = grad_sq + trace / 8, grad_sq + trace / 256
    estimate = estimate_noise(8, small, 256, big)
    assert (estimate.grad_sq, estimate.trace_sigma) == pytest.approx((grad_sq, trace))
    assert noise_scale(8, small, 256, big) == pytest.approx(80.0)
    # a big batch whose norm exceeds the small one's: negative tr(Sigma), not valid
    assert math.isnan(noise_scale(8, 1.0, 256, 2.0))
    assert not estimate_noise(8, 1.0, 256, 2.0).valid
    with pytest.raises(ValueError, match="b_small < b_big"):
        estimate_noise(64, 1.0, 64, 1.0)


def test_noise_scale_ema_smooths_components_and_skips_bad_estimates():
    ema = NoiseScaleEMA(beta=0.5)
    assert math.isnan(ema.value)
    ema.update(estimate_noise(8, 0.5 + 40 / 8, 256, 0.5 + 40 / 256))  # |G|^2 .5, tr 40
    assert ema.value == pytest.approx(80.0)
    ema.update(estimate_noise(8, 1.5 + 40 / 8, 256, 1.5 + 40 / 256))  # |G|^2 1.5, tr 40
    assert ema.value == pytest.approx(40.0 / 1.0)
    ema.update(estimate_noise(8, math.nan, 256, 1.0))
    assert ema.value == pytest.approx(40.0)
