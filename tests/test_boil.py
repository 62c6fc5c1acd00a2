"""BOIL: curve compression against hand-computed values, the schedule family, the
acquisition's pieces and selective augmentation (a real tuning run on a cheap id is in
test_boil_env.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

import ganno_bench
from ganno_bench.baselines.boil import (
    BOIL,
    Run,
    compress_curve,
    log_expected_improvement,
    logistic_weights,
)
from ganno_bench.baselines.configs import load_baselines
from ganno_bench.baselines.schedule_family import (
    FamilyScheduleAgent,
    tune_schedules,
)
from ganno_bench.experiments.boil_claim import _incumbent_at, claim_table

EASY = "ganno/LayerLR-MLP-Easy-v0"


def test_compression_matches_hand_computed_values():
    # x = linspace(-6, 6, 4) = -6, -2, 2, 6; l = 1/(1+e^-x); tau = int(4 * 4 / 12) = 1
    # score = (2 l(-2) + 3 l(2) + 4 l(6)) / 3
    #       = (0.2384058440 + 2.6423912340 + 3.9901095072) / 3 = 2.2903021951
    assert compress_curve([1, 2, 3, 4], 4, 0.0, 1.0) == pytest.approx(2.2903021951, abs=1e-9)
    # L = 2 of max 6: x = -6, -3.6; m0 = -2, g0 = 2: l = 1/(1+e^8), 1/(1+e^3.2); tau = 0
    assert compress_curve([1, 1], 6, -2.0, 2.0) == pytest.approx(
        (0.000335350130 + 0.039165722796) / 2, abs=1e-9
    )
    # the midpoint moves the cut: m0 = 3, L = 12 -> tau = int(7 * 12 / 12) = 7
    curve = np.arange(12.0)
    weights = logistic_weights(12, 12, 3.0, 0.5)
    assert compress_curve(curve, 12, 3.0, 0.5) == pytest.approx(np.mean(curve[7:] * weights[7:]))


def test_logistic_weights_rise_through_the_midpoint():
    w = logistic_weights(50, 50, 1.0, 1.5)
    assert np.all(np.diff(w) > 0)
    x = np.linspace(-6, 6, 50)
    assert w[np.argmin(np.abs(x - 1.0))] == pytest.approx(0.5, abs=0.1)
    assert logistic_weights(10, 50, 1.0, 1.5).tolist() == w[:10].tolist()  # a prefix


def test_family_schedule_follows_its_formula():
    env = ganno_bench.make(EASY, split="test", action_mode="log_lr", decisions=4, inner_steps=1)
    obs, infos = env.reset(options={"instance": 0})
    agent = FamilyScheduleAgent(log10_lr0=-2.0, depth_slope=0.6, decay_power=2.0)
    agent.reset(env.task, env.instance, env.possible_agents, 0)
    seen = []
    while env.agents:
        obs, _, _, _, infos = env.step(agent.act(obs, infos))
        seen.append([math.log10(infos[a]["lr"]) for a in env.possible_agents])
    for t, row in enumerate(seen):
        expected = [-2.0 + 0.6 * (d - 0.5) + 2.0 * math.log10(1 - t / 4) for d in (0, 0.5, 1)]
        assert row == pytest.approx(expected, abs=1e-9)


def test_log_expected_improvement_is_exact_and_stable_in_the_tail():
    mean, std, best = np.array([0.0, 0.5, -1.0]), np.array([1.0, 0.2, 0.5]), 0.3
    z = (mean - best) / std
    direct = std * (z * sps.norm.cdf(z) + sps.norm.pdf(z))
    np.testing.assert_allclose(log_expected_improvement(mean, std, best), np.log(direct))
    far = log_expected_improvement(np.array([-50.0, -60.0]), np.array([1.0, 1.0]), 0.0)
    assert np.all(np.isfinite(far)) and far[0] > far[1]  # still ordered far below best


def _bowl(x: np.ndarray, length: int) -> tuple[np.ndarray, float]:
    """A learning curve that rises towards 1 - |x - 0.7|^2, faster for a larger x[1]."""
    top = 1.0 - float(np.sum((np.asarray(x) - 0.7) ** 2))
    u = np.arange(1, length + 1)
    return top * (1 - np.exp(-u * (0.2 + 0.3 * x[1]))), float(length)


def test_augmentation_adds_virtual_points_of_the_same_curve_until_ill_conditioned():
    opt = BOIL(_bowl, 3, 20, seed=0, n_init=3, max_augment=3)
    opt.run(4)
    virtual = [r for r in opt.runs if r.virtual]
    real = [r for r in opt.runs if not r.virtual]
    assert 0 < len(virtual) <= 3 * len(real)
    for v in virtual:
        parent = next(r for r in real if np.array_equal(r.x, v.x) and r.length > v.length)
        assert np.array_equal(v.curve, parent.curve[: v.length])  # cut from its own curve
    strict = BOIL(_bowl, 3, 20, seed=0, n_init=3, max_condition=1.0)
    strict.run(3)
    assert not any(r.virtual for r in strict.runs)  # every virtual point was refused


def test_methods_run_the_lengths_they_should():
    bo = BOIL(_bowl, 3, 20, method="bo", seed=1, n_init=2)
    bo.run(5)
    assert {r.length for r in bo.runs} == {20} and not any(r.virtual for r in bo.runs)
    grid = BOIL(_bowl, 3, 20, method="grid", seed=1)
    grid.run(27)
    assert len({tuple(r.x) for r in grid.runs}) == 27  # the whole 3^3 grid, once each
    boil = BOIL(_bowl, 3, 20, seed=1, n_init=3)
    boil.run(4)
    assert min(r.length for r in boil.runs if not r.virtual) < 20  # it uses short runs
    assert boil.trace[-1]["cost"] == sum(r.length for r in boil.runs if not r.virtual)


class _FixedPrediction:
    """A stand-in GP whose predicted full-length outcomes are given, one per run."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)

    def predict(self, X):
        assert len(X) == len(self.values)
        return self.values


def test_recommendation_passes_over_runs_seen_to_fail():
    opt = BOIL(_bowl, 1, 10, seed=0)
    trains, fails = (
        Run(np.array([0.2]), 10, np.full(10, 0.6), 10.0),
        Run(np.array([0.9]), 4, np.zeros(4), 4.0),
    )
    virtual = Run(np.array([0.2]), 5, np.full(5, 0.5), 0.0, virtual=True)
    opt.runs = [trains, fails, virtual]
    opt._gp = _FixedPrediction([0.7])  # asked about the live run only
    assert opt.recommend().tolist() == [0.2]
    # the GP would pick the failed run: it is passed over all the same
    opt.runs, opt._gp = [fails, trains], _FixedPrediction([0.7])
    assert opt.recommend().tolist() == [0.2]
    # when every run failed, the GP's choice among them stands
    also_fails = Run(np.array([0.5]), 6, np.zeros(6), 6.0)
    opt.runs, opt._gp = [fails, also_fails], _FixedPrediction([0.1, 0.3])
    assert opt.recommend().tolist() == [0.5]


def test_tuned_schedules_are_frozen_and_load_as_an_agent(tmp_path):
    path = tmp_path / "boil.toml"
    tuned = tune_schedules([EASY], path, iterations=3, instances=(0,), seed=0)
    agent = load_baselines(path)["boil"]
    assert isinstance(agent, FamilyScheduleAgent)
    assert agent.per_id[EASY] == pytest.approx(tuned[EASY])
    env = ganno_bench.make("ganno/LayerLR-CNN-Easy-v0", action_mode="log_lr")
    with pytest.raises(ValueError, match="boil tune"):
        agent.reset(env.task, None, env.possible_agents, 0)


def test_claim_table_scores_at_equal_wall_time_and_equal_steps():
    def record(method, seed, points):
        trace = [{"wall_time_s": w, "score": s, "cost": c} for w, s, c in points]
        return {"env_id": "x", "method": method, "seed": seed, "trace": trace}

    records = [
        record("fast", 0, [(1.0, 0.5, 10), (2.0, 0.6, 20)]),
        record("fast", 1, [(1.0, 0.7, 10), (2.0, 0.8, 20)]),
        record("slow", 0, [(1.5, 0.1, 10), (4.0, 0.9, 20)]),
        record("slow", 1, [(3.0, 0.2, 10), (6.0, 1.0, 20)]),
    ]
    assert _incumbent_at(records[2]["trace"], 2.0) == 0.1
    assert math.isnan(_incumbent_at(records[3]["trace"], 2.0))  # no run had ended yet
    rows = {line.split("|")[2].strip(): line for line in claim_table(records).splitlines()[2:]}
    assert rows["fast"].split("|")[3].strip().startswith("0.7000")  # final mean of .6, .8
    assert rows["slow"].split("|")[4].strip() == "none yet"  # seed 1 had held nothing at 2 s
    assert rows["fast"].split("|")[4].strip().startswith("0.7000")  # at its own end
    # equal steps: both spent 20 in all, so each holds its final score
    assert rows["slow"].split("|")[5].strip().startswith("0.9500")
    assert _incumbent_at(records[2]["trace"], 15, "cost") == 0.1
    cheap = record("cheap", 0, [(9.0, 0.3, 5), (9.5, 0.4, 8)])
    rows = {
        line.split("|")[2].strip(): line for line in claim_table([*records, cheap]).splitlines()[2:]
    }
    assert rows["fast"].split("|")[5].strip() == "none yet"  # 8 steps: before its first run
    assert rows["cheap"].split("|")[5].strip().startswith("0.4000")  # its own 8 steps
    assert rows["cheap"].split("|")[4].strip() == "none yet"  # at fast's 2.0 s


def test_the_claim_conclusion_follows_the_intervals():
    from ganno_bench.experiments.boil_claim import conclusion

    def record(method, seed, points, env_id="ganno/LayerLR-MLP-Easy-v0"):
        trace = [{"wall_time_s": w, "score": s, "cost": c} for w, s, c in points]
        return {"env_id": env_id, "method": method, "seed": seed, "trace": trace}

    # BOIL: cheaper in inner steps but slower; at the others' 2 s it holds less, not
    # separated from them (wide seeds)
    slow = [
        record("boil", 0, [(1.0, 0.5, 5), (9.0, 0.9, 15)]),
        record("boil", 1, [(1.5, 0.8, 5), (9.0, 0.9, 15)]),
        record("random", 0, [(1.0, 0.6, 10), (2.0, 0.7, 20)]),
        record("random", 1, [(1.0, 0.7, 10), (2.0, 0.8, 20)]),
    ]
    text = conclusion(slow)
    assert text.startswith("On LayerLR-MLP-Easy-v0 boil held 0.6500 [")
    assert "against random's 0.7500 [" in text and "(not separated)" in text
    assert "after 9 s (4x that time)" in text
    assert "BOIL's claim does not hold here" in text and "fewer inner steps" in text
    # BOIL ahead at equal time on every id, by intervals that do not overlap
    fast = [
        record("boil", 0, [(1.0, 0.90, 5)]),
        record("boil", 1, [(1.0, 0.91, 5)]),
        record("random", 0, [(1.0, 0.50, 10), (2.0, 0.60, 20)]),
        record("random", 1, [(1.0, 0.52, 10), (2.0, 0.62, 20)]),
    ]
    text = conclusion(fast)
    assert "(ahead)" in text
    assert text.endswith("BOIL's claim holds here: it finds better schedules for the time spent.")
    # ahead on one id, not separated on another: holds on some ids
    other = [{**r, "env_id": "ganno/LayerLR-CNN-Easy-v0"} for r in slow]
    assert "BOIL's claim holds on some ids" in conclusion([*fast, *other])
