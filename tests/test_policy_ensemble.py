"""Several saved policies as one agent: mean action probabilities, argmax; loaded from TOML."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

import ganno_bench
from ganno_bench.baselines.files import baselines_dir
from ganno_bench.baselines.policy import PolicyAgent
from ganno_bench.baselines.policy_ensemble import PolicyEnsemble, load_ensemble
from ganno_bench.baselines.ppo import load_ppo_config, train_ppo
from ganno_bench.baselines.zoo import builtin_agents, load_agent

PPO_DIR = baselines_dir() / "ppo"
HARD = "ganno/LayerLR-MLP-Hard-v0"
TINY = {"decisions": 4, "inner_steps": 3}
RUN = {"split": "test", "seeds": [0], "instances": [0, 1, 2], "overrides": TINY}


def _ensemble_file(tmp_path, members, name="ens"):
    for m in members:
        if not (tmp_path / m).exists():
            shutil.copy(PPO_DIR / m, tmp_path / m)
    path = tmp_path / f"{name}.toml"
    path.write_text("[ensemble]\nmembers = [" + ", ".join(f'"{m}"' for m in members) + "]\n")
    return path


def _observations(n: int, seed: int = 0) -> np.ndarray:
    """Observations as the suite's layer agents see them: sampled along real episodes."""
    env = ganno_bench.make(HARD, decisions=6, inner_steps=3)
    rng = np.random.default_rng(seed)
    rows, instance = [], 0
    while len(rows) < n:
        obs, _ = env.reset(seed=seed, options={"instance": instance})
        while env.agents and len(rows) < n:
            rows += [obs[a] for a in env.agents]
            factors = {a: int(rng.integers(len(env.task.factors))) for a in env.agents}
            obs, *_ = env.step(factors)
        instance += 1
    return np.stack(rows[:n]).astype(np.float32)


def _probabilities_by_log_prob(agent: PolicyAgent, batch: np.ndarray) -> np.ndarray:
    """Each action's probability from the policy's own ``evaluate_actions`` (another route
    than the ensemble's ``get_distribution``)."""
    policy = agent.model.policy
    obs = torch.as_tensor(batch)
    columns = []
    with torch.no_grad():
        for a in range(agent.model.action_space.n):
            _, log_prob, _ = policy.evaluate_actions(obs, torch.full((len(batch),), a))
            columns.append(log_prob.exp().numpy())
    return np.stack(columns, axis=1)


def test_the_ensemble_takes_the_argmax_of_its_members_mean_probabilities(tmp_path):
    members = ["ppo-a-mlp-easy-seed0.zip", "ppo-a-mlp-easy-seed1.zip", "ppo-a-mlp-easy-seed2.zip"]
    ensemble = load_ensemble(_ensemble_file(tmp_path, members))
    batch = _observations(200)
    each = [_probabilities_by_log_prob(m, batch) for m in ensemble.members]
    mean = np.mean(each, axis=0)
    np.testing.assert_allclose(ensemble.probabilities(batch), mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-5)
    # the members disagree on some of these layers, so the combination rule is exercised
    argmaxes = np.stack([p.argmax(axis=1) for p in each])
    assert (argmaxes != argmaxes[0]).any()
    # and the ensemble's actions are the mean's argmax on a real episode's layers
    env = ganno_bench.make(HARD, **TINY)
    obs, infos = env.reset(seed=0, options={"instance": 0})
    ensemble.reset(env.task, env.instance, list(env.possible_agents), 0)
    actions = ensemble.act(obs, infos)
    layers = sorted(obs, key=lambda a: int(a.split("_")[1]))
    rows = np.stack([obs[a] for a in layers]).astype(np.float32)
    expected = np.mean([_probabilities_by_log_prob(m, rows) for m in ensemble.members], axis=0)
    assert actions == {a: int(k) for a, k in zip(layers, expected.argmax(axis=1), strict=True)}


def test_an_ensemble_of_one_policy_twice_plays_as_that_policy(tmp_path):
    shutil.copy(PPO_DIR / "ppo-mlp-easy-seed0.zip", tmp_path / "copy.zip")
    path = _ensemble_file(tmp_path, ["ppo-mlp-easy-seed0.zip", "copy.zip"])
    single = ganno_bench.evaluate(load_agent("ppo-mlp-easy-seed0"), [HARD], progress=False, **RUN)
    for engine in ("sequential", "batched"):
        twice = ganno_bench.evaluate(
            load_agent(str(path)), [HARD], engine=engine, progress=False, **RUN
        )
        for a, b in zip(single["episodes"], twice["episodes"], strict=True):
            np.testing.assert_allclose(b["lrs"], a["lrs"], rtol=1e-4)
            np.testing.assert_allclose(b["final_test_loss"], a["final_test_loss"], rtol=1e-4)


def test_the_card_names_every_member_and_a_digest_of_what_played(tmp_path):
    members = ["ppo-a-mlp-easy-seed0.zip", "ppo-a-mlp-easy-seed1.zip"]
    config = load_ensemble(_ensemble_file(tmp_path, members)).config()
    assert config["algorithm"] == "ensemble"
    assert [m["checkpoint_sha256"] for m in config["members"]] == [
        PolicyAgent.from_path(PPO_DIR / m).config()["checkpoint_sha256"] for m in members
    ]
    swapped = load_ensemble(_ensemble_file(tmp_path, members[::-1], name="swapped")).config()
    other = load_ensemble(
        _ensemble_file(tmp_path, ["ppo-a-mlp-easy-seed0.zip", "ppo-a-mlp-easy-seed2.zip"], "o")
    ).config()
    assert len({config["checkpoint_sha256"], other["checkpoint_sha256"]}) == 2
    assert swapped["checkpoint_sha256"] != config["checkpoint_sha256"]  # order is recorded


def test_the_shipped_ensemble_plays_by_name_and_lists_protocol_a():
    assert "ppo-c-ensemble-a" in builtin_agents()
    agent = load_agent("ppo-c-ensemble-a")
    assert isinstance(agent, PolicyEnsemble) and agent.name == "ppo-c-ensemble-a"
    assert [m.path.name for m in agent.members] == [f"ppo-a-mlp-easy-seed{s}.zip" for s in range(3)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[other]\nx = 1\n", "has no \\[ensemble\\] table"),
        ('[ensemble]\nmembers = ["a.zip"]\n', "at least two policy files"),
        ("[ensemble]\nmembers = 3\n", "at least two policy files"),
        (
            '[ensemble]\nmembers = ["a.zip", "b.zip"]\nweights = [1, 2]\n',
            r"unknown \[ensemble\] keys \['weights'\]",
        ),
    ],
)
def test_bad_ensemble_files_are_refused_clearly(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_ensemble(path)


def test_a_missing_member_names_the_file(tmp_path):
    path = tmp_path / "ens.toml"
    path.write_text('[ensemble]\nmembers = ["nowhere-seed0.zip", "nowhere-seed1.zip"]\n')
    with pytest.raises(FileNotFoundError, match=r"nowhere-seed0\.zip"):
        load_agent(str(path))


def test_a_recurrent_member_is_refused(tmp_path):
    config = {**load_ppo_config(recurrent=True), "n_steps": 8, "batch_size": 24, "n_epochs": 1}
    lstm = train_ppo(
        "ganno/LayerLR-MLP-Easy-v0",
        48,
        seed=0,
        out=tmp_path / "lstm",
        recurrent=True,
        overrides={"decisions": 8, "inner_steps": 5},
        config=config,
        num_copies=2,
        checkpoint_every=10**9,
        eval_every=10**9,
        progress=False,
    )
    shutil.copy(lstm, tmp_path / "lstm.zip")
    path = _ensemble_file(tmp_path, ["ppo-mlp-easy-seed0.zip", "lstm.zip"])
    with pytest.raises(ValueError, match=r"lstm\.zip is a recurrent policy"):
        load_ensemble(path)


def test_members_of_another_track_are_refused_when_the_ensemble_is_made(tmp_path):
    path = _ensemble_file(tmp_path, ["ppo-mlp-easy-seed0.zip", "ppo-bs-mlp-easy-seed0.zip"])
    with pytest.raises(ValueError, match=r"ppo-bs-mlp-easy-seed0\.zip: batch-size track"):
        load_ensemble(path)


def test_a_toml_that_is_not_an_ensemble_or_is_missing_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"protocol-a\.toml has no \[ensemble\] table"):
        load_agent(str(PPO_DIR / "protocol-a.toml"))
    with pytest.raises(FileNotFoundError, match=r"no ensemble file .*absent\.toml"):
        load_agent(str(tmp_path / "absent.toml"))


def test_a_pickled_ensemble_reloads_its_members_and_acts_the_same(tmp_path):
    members = ["ppo-a-mlp-easy-seed0.zip", "ppo-a-mlp-easy-seed1.zip"]
    ensemble = load_ensemble(_ensemble_file(tmp_path, members))
    batch = _observations(50)
    before = ensemble.probabilities(batch)
    copy = pickle.loads(pickle.dumps(ensemble))  # what a worker process receives
    assert all(m._model is None for m in copy.members)  # paths travel, not the models
    np.testing.assert_array_equal(copy.probabilities(batch), before)
    assert copy.config() == ensemble.config()


def test_an_ensemble_is_played_alone_in_the_generalisation_study(tmp_path):
    from ganno_bench.experiments.generalisation import evaluate_policies

    with pytest.raises(ValueError, match="give it as the only policy"):
        evaluate_policies(
            [PPO_DIR / "ppo-c-ensemble-a.toml", PPO_DIR / "ppo-a-mlp-easy-seed0.zip"],
            "test",
            tmp_path,
            targets=[HARD],
            agent_name="x",
            progress=False,
        )
