"""PPO training through the parameter-shared vector env, and saved policies as agents."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats as sps

import ganno_bench
from ganno_bench.baselines.policy import PolicyAgent, load_policy
from ganno_bench.baselines.ppo import latest_checkpoint, load_ppo_config, train_ppo
from ganno_bench.baselines.zoo import UnknownAgentError, load_agent
from ganno_bench.cli.main import main

EASY = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 8, "inner_steps": 5}
# One rollout = n_steps x copies x 3 layers = 8 x 2 x 3 = 48 timesteps.
SMALL = {**load_ppo_config(), "n_steps": 8, "batch_size": 24, "n_epochs": 2, "num_copies": 2}


def _parameters(path) -> list[torch.Tensor]:
    return [p.detach().clone() for p in load_policy(path).policy.parameters()]


def _returns(agent, instances, overrides=TINY) -> np.ndarray:
    card = ganno_bench.evaluate(
        agent, [EASY], "train", seeds=[0], instances=instances, overrides=overrides, progress=False
    )
    return np.array([e["return"] for e in card["episodes"]])


def test_training_writes_checkpoints_logs_evaluations_and_resumes(tmp_path):
    run = tmp_path / "run"
    kw = dict(
        seed=3,
        out=run,
        overrides=TINY,
        config=SMALL,
        checkpoint_every=48,
        eval_every=48,
        eval_instances=2,
        progress=False,
    )
    final = train_ppo(EASY, 96, **kw)
    assert final == run / "final.zip" and final.is_file()
    assert sorted(p.name for p in (run / "checkpoints").glob("*.zip")) == [
        "ppo_48.zip",
        "ppo_96.zip",
    ]
    assert latest_checkpoint(run).name == "ppo_96.zip"
    assert list((run / "tb").rglob("events.out.tfevents.*")), "no TensorBoard log"
    lines = [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [e["timesteps"] for e in lines] == [48, 96]
    assert all(np.isfinite(e["mean_return"]) and 0 <= e["diverged_fraction"] <= 1 for e in lines)

    # the same command with a larger budget resumes from ppo_96 instead of starting over
    train_ppo(EASY, 192, **kw)
    assert load_policy(run / "final.zip").num_timesteps == 192
    names = sorted(p.name for p in (run / "checkpoints").glob("*.zip"))
    assert names == ["ppo_144.zip", "ppo_192.zip", "ppo_48.zip", "ppo_96.zip"]
    lines = [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [e["timesteps"] for e in lines] == [48, 96, 144, 192]
    # wall time: a resumed run's segment clock starts again after the first run's lines
    times = [e["unix_time"] for e in lines]
    assert times == sorted(times) and all(e["segment_s"] >= 0 for e in lines)
    assert lines[2]["segment_s"] <= lines[2]["unix_time"] - lines[1]["unix_time"] + 0.2
    assert lines[1]["segment_s"] >= lines[0]["segment_s"]

    with pytest.raises(ValueError, match="seed"):
        train_ppo(EASY, 192, **{**kw, "seed": 4})  # another run's folder


def test_training_is_reproducible_from_its_seed(tmp_path):
    kw = dict(
        overrides=TINY, config=SMALL, checkpoint_every=10**9, eval_every=10**9, progress=False
    )
    a = _parameters(train_ppo(EASY, 96, seed=1, out=tmp_path / "a", **kw))
    b = _parameters(train_ppo(EASY, 96, seed=1, out=tmp_path / "b", **kw))
    c = _parameters(train_ppo(EASY, 96, seed=2, out=tmp_path / "c", **kw))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_resumed_training_is_reproducible(tmp_path):
    """Two runs resumed from one checkpoint end with the same weights."""
    kw = dict(overrides=TINY, config=SMALL, checkpoint_every=48, eval_every=10**9, progress=False)
    train_ppo(EASY, 48, seed=5, out=tmp_path / "base", **kw)
    ckpt = tmp_path / "base" / "checkpoints" / "ppo_48.zip"
    x = train_ppo(EASY, 96, seed=5, out=tmp_path / "x", resume_from=ckpt, **kw)
    y = train_ppo(EASY, 96, seed=5, out=tmp_path / "y", resume_from=ckpt, **kw)
    assert load_policy(x).num_timesteps == 96
    assert all(torch.equal(p, q) for p, q in zip(_parameters(x), _parameters(y), strict=True))


def test_a_warm_started_run_fine_tunes_a_trained_policy_on_other_ids(tmp_path, monkeypatch):
    """``init_from``: the new run starts from the policy's weights (at learning rate 0 they
    stay the policy's, not a fresh seed's), counts its own timesteps from 0, records the
    policy in run.json, refuses other settings or slot counts by name, and a rerun resumes
    from its own checkpoint rather than starting over from the policy."""
    frozen = {**SMALL, "learning_rate": 0.0}  # 2 copies x 3 MLP layers = 6 slots
    kw = dict(overrides=TINY, checkpoint_every=48, eval_every=10**9, progress=False)
    base = train_ppo(EASY, 48, seed=5, out=tmp_path / "base", config=frozen, **kw)
    mix = [EASY, "ganno/LayerLR-CNN-Easy-v0"]  # 1 copy each: 3 + 3 slots
    mixed = {**frozen, "num_copies": 1}
    tuned = train_ppo(mix, 48, seed=3, out=tmp_path / "ft", config=mixed, init_from=base, **kw)
    fresh = train_ppo(mix, 48, seed=3, out=tmp_path / "fresh", config=mixed, **kw)
    assert all(
        torch.equal(p, q) for p, q in zip(_parameters(tuned), _parameters(base), strict=True)
    )
    assert not all(
        torch.equal(p, q) for p, q in zip(_parameters(fresh), _parameters(base), strict=True)
    )
    model = load_policy(tuned)
    assert model.num_timesteps == 48 and model.ganno_env_ids == mix
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["init_from"] == str(base)

    import ganno_bench.baselines.ppo as ppo

    def no_second_warm_start(*args, **kwargs):
        raise AssertionError("a rerun must resume from the run's newest checkpoint")

    monkeypatch.setattr(ppo, "_check_warm_start", no_second_warm_start)
    resumed = train_ppo(mix, 96, seed=3, out=tmp_path / "ft", config=mixed, init_from=base, **kw)
    assert load_policy(resumed).num_timesteps == 96
    monkeypatch.undo()

    # refused starts, each leaving the folder free for the corrected command
    again = dict(out=tmp_path / "e", init_from=base, **kw)
    with pytest.raises(ValueError, match="n_epochs"):
        train_ppo(mix, 48, config={**mixed, "n_epochs": 3}, **again)
    with pytest.raises(ValueError, match="6 vector-env slots; this run has 12"):
        train_ppo(mix, 48, config=frozen, **again)
    with pytest.raises(ValueError, match="algorithm"):
        train_ppo(mix, 48, config=mixed, recurrent=True, **again)
    with pytest.raises(FileNotFoundError, match="no such policy file"):
        train_ppo(mix, 48, config=mixed, **{**again, "init_from": tmp_path / "x.zip"})
    assert not (tmp_path / "e" / "run.json").exists()
    train_ppo(mix, 48, config=mixed, **again)


def test_a_warm_start_carries_the_optimiser_state_on(tmp_path):
    """Adam's moments and step count continue from the policy's (a fresh optimiser would
    restart its bias correction), and at a non-zero rate the weights move."""
    kw = dict(
        overrides=TINY, config=SMALL, checkpoint_every=10**9, eval_every=10**9, progress=False
    )
    base = train_ppo(EASY, 48, seed=5, out=tmp_path / "base", **kw)
    tuned = train_ppo(EASY, 48, seed=6, out=tmp_path / "ft", init_from=base, **kw)

    def adam_steps(path) -> list[float]:
        state = load_policy(path).policy.optimizer.state_dict()["state"]
        return [float(s["step"]) for s in state.values()]

    before, after = adam_steps(base), adam_steps(tuned)
    assert before and all(a == 2 * b for a, b in zip(after, before, strict=True))
    moved = zip(_parameters(tuned), _parameters(base), strict=True)
    assert not all(torch.equal(p, q) for p, q in moved)


def test_ppo_learns_to_beat_the_random_policy(tmp_path):
    """Statistical: over 3 training seeds, the trained policy's returns beat random's.

    Same 12 train instances for both; one-sided Wilcoxon signed-rank test on the paired
    per-instance returns of all seeds (36 pairs) at the 1% level, and every seed's mean
    return above random's.
    """
    instances = list(range(12))
    random_returns = _returns(load_agent("random"), instances)
    trained = []
    for seed in range(3):
        path = train_ppo(
            EASY,
            10_000,
            seed=seed,
            out=tmp_path / str(seed),
            overrides=TINY,
            checkpoint_every=10**9,
            eval_every=10**9,
            progress=False,
        )
        trained.append(_returns(PolicyAgent.from_path(path), instances))
    for returns in trained:
        assert returns.mean() > random_returns.mean()
    test = sps.wilcoxon(np.concatenate(trained), np.tile(random_returns, 3), alternative="greater")
    assert test.pvalue < 0.01


def test_recurrent_policy_trains_and_drives_a_deeper_network(tmp_path):
    config = {**load_ppo_config(recurrent=True), "n_steps": 8, "batch_size": 24, "n_epochs": 1}
    path = train_ppo(
        EASY,
        48,
        seed=0,
        out=tmp_path / "lstm",
        recurrent=True,
        overrides=TINY,
        config=config,
        num_copies=2,
        checkpoint_every=10**9,
        eval_every=10**9,
        progress=False,
    )
    agent = PolicyAgent.from_path(path)
    assert agent.config()["algorithm"] == "RecurrentPPO"
    card = ganno_bench.evaluate(
        agent,
        ["ganno/LayerLR-MLP-Hard-v0"],
        "test",
        seeds=[0],
        instances=[0],
        overrides={"decisions": 3, "inner_steps": 2},
        progress=False,
    )
    assert [len(row) for row in card["episodes"][0]["lrs"]] == [8, 8, 8]


@pytest.fixture(scope="module")
def shipped() -> PolicyAgent:
    agent = load_agent("ppo-mlp-easy-seed0")
    assert isinstance(agent, PolicyAgent)
    return agent


@pytest.mark.parametrize(
    ("env_id", "layers"), [("ganno/LayerLR-MLP-Hard-v0", 8), ("ganno/LayerLR-CNN-Hard-v0", 7)]
)
def test_shipped_policy_drives_hard_and_cnn_ids(shipped, env_id, layers):
    overrides = {"decisions": 4, "inner_steps": 2}
    cards = [
        ganno_bench.evaluate(
            shipped,
            [env_id],
            "test",
            seeds=[0],
            instances=[0, 1],
            overrides=overrides,
            progress=False,
        )
        for _ in range(2)
    ]
    episodes = cards[0]["episodes"]
    assert [len(e["lrs"]) for e in episodes] == [4, 4]
    factors = np.log(ganno_bench.spec(env_id).factors)
    for e in episodes:
        lrs = np.array(e["lrs"])
        assert lrs.shape == (4, layers)
        # every per-layer change between decisions is one of the id's factors (or a bound)
        steps = np.log(lrs[1:] / lrs[:-1])
        assert np.all(np.min(np.abs(steps[..., None] - factors), axis=-1) < 1e-9)
    # deterministic: the same card values twice
    assert [e["lrs"] for e in episodes] == [e["lrs"] for e in cards[1]["episodes"]]
    assert cards[0]["agent"]["config"]["checkpoint_sha256"]


def test_policy_agent_rejects_an_id_with_another_factor_set(shipped):
    with pytest.raises(ValueError, match="factors"):
        ganno_bench.evaluate(
            shipped,
            [EASY],
            "test",
            seeds=[0],
            instances=[0],
            overrides={"decisions": 2, "inner_steps": 1, "factors": (0.5, 1.0, 2.0)},
            progress=False,
        )


def test_saved_policies_load_by_path_and_missing_ones_say_how_to_make_them(tmp_path, shipped):
    agent = load_agent(str(shipped.path))
    assert isinstance(agent, PolicyAgent) and agent.path == shipped.path
    with pytest.raises(FileNotFoundError, match="ganno-bench train ppo"):
        load_agent(str(tmp_path / "nope.zip"))
    with pytest.raises(UnknownAgentError, match="ppo-mlp-easy-seed0"):
        load_agent("ppo-mlp-easy-seed9")


def test_train_command_runs_and_unknown_ids_fail_clearly(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "train",
            "ppo",
            "--env",
            EASY,
            "--timesteps",
            "24",
            "--seed",
            "0",
            "--out",
            str(out),
            "--decisions",
            "4",
            "--inner-steps",
            "2",
            "--copies",
            "1",
            "--eval-every",
            "1000000",
            "--quiet",
            "--export",
            str(tmp_path / "p.zip"),
        ]
    )
    assert code == 0 and (out / "final.zip").is_file() and (tmp_path / "p.zip").is_file()
    assert "trained policy" in capsys.readouterr().out
    assert main(["train", "ppo", "--env", "ganno/LayerLR-MLP-Eazy-v0", "--timesteps", "8"]) == 2
    assert "ganno/LayerLR-MLP-Easy-v0" in capsys.readouterr().err


def test_periodic_evaluation_does_not_disturb_training(tmp_path):
    kw = dict(overrides=TINY, config=SMALL, checkpoint_every=10**9, progress=False, seed=7)
    quiet = train_ppo(EASY, 96, out=tmp_path / "quiet", eval_every=10**9, **kw)
    evaluated = train_ppo(EASY, 96, out=tmp_path / "eval", eval_every=24, eval_instances=2, **kw)
    assert len((tmp_path / "eval" / "evaluations.jsonl").read_text().splitlines()) == 4
    pairs = zip(_parameters(quiet), _parameters(evaluated), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)


def test_a_policy_file_changed_after_the_agent_was_made_is_refused(tmp_path, shipped):
    import pickle
    import shutil

    path = tmp_path / "p.zip"
    shutil.copyfile(shipped.path, path)
    agent = pickle.loads(pickle.dumps(PolicyAgent.from_path(path)))  # as a worker gets it
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="changed"):
        _ = agent.model


BS_EASY = "ganno/BatchSize-MLP-Easy-v0"
BS_TINY = {"decisions": 4, "samples_per_decision": 64}


def test_ppo_trains_resumes_and_plays_a_batch_size_id(tmp_path, shipped):
    """The single-agent batch-size env (factor mode, Discrete(3)) through the same
    parameter-shared path: one slot per copy. One rollout = 8 steps x 2 copies = 16."""
    run = tmp_path / "bs"
    kw = dict(
        seed=0,
        out=run,
        overrides=BS_TINY,
        config={**SMALL, "batch_size": 8},
        checkpoint_every=16,
        eval_every=16,
        eval_instances=2,
        progress=False,
    )
    final = train_ppo(BS_EASY, 16, **kw)
    model = load_policy(final)
    assert (model.ganno_env_id, model.ganno_track) == (BS_EASY, "batch-size")
    assert model.observation_space.shape == (15,) and model.action_space.n == 3
    train_ppo(BS_EASY, 32, **kw)  # resumes from ppo_16
    assert load_policy(final).num_timesteps == 32
    assert sorted(p.name for p in (run / "checkpoints").glob("*.zip")) == [
        "ppo_16.zip",
        "ppo_32.zip",
    ]
    lines = [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [e["timesteps"] for e in lines] == [16, 32]

    # the saved policy plays the batch-size id's test split, from the CLI as well
    out = tmp_path / "card.json"
    argv = ["evaluate", "--agent", str(final), "--env", "batch-size", "--split", "test"]
    argv += ["--seeds", "0", "--instances", "0", "1", "--decisions", "4"]
    assert main([*argv, "--samples-per-decision", "64", "--out", str(out), "--quiet"]) == 0
    card = json.loads(out.read_text())
    assert card["agent"]["config"]["algorithm"] == "PPO"
    assert sorted(card["envs"]) == ganno_bench.list_envs("ganno/BatchSize-*")  # every id
    assert len(card["episodes"]) == 2 * len(card["envs"])
    for episode in card["episodes"]:
        sizes = episode["curves"]["batch_size"]
        assert len(sizes) == 4 and all(8 <= b <= 512 for b in sizes)
        task = ganno_bench.spec(episode["env_id"])
        initial = task.frozen_instances("test")[episode["instance"]]
        # factor mode: each decision halves, keeps or doubles the previous size (or clips)
        for before, after in zip([initial.batch_size, *sizes], sizes, strict=False):
            assert after in (before, max(before // 2, 8), min(before * 2, 512))

    # a policy plays its own track only, and says so
    tiny_lr = {"decisions": 2, "inner_steps": 1}
    with pytest.raises(ValueError, match=rf"trained on {BS_EASY}.*layer-lr id"):
        ganno_bench.evaluate(
            PolicyAgent.from_path(final), [EASY], "test", seeds=[0], instances=[0],
            overrides=tiny_lr, progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"layer-lr track.*batch-size id"):
        ganno_bench.evaluate(
            shipped, [BS_EASY], "test", seeds=[0], instances=[0], overrides=BS_TINY,
            progress=False,
        )  # fmt: skip


def test_train_command_takes_a_batch_size_budget(tmp_path):
    out = tmp_path / "cli"
    argv = ["train", "ppo", "--env", BS_EASY, "--timesteps", "8", "--out", str(out)]
    argv += ["--decisions", "2", "--samples-per-decision", "32", "--copies", "1"]
    assert main([*argv, "--eval-every", "1000000", "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["env_id"] == BS_EASY
    assert run["overrides"] == {"decisions": 2, "samples_per_decision": 32}


def test_a_policy_of_unknown_observation_shape_is_refused_clearly():
    from types import SimpleNamespace

    from gymnasium import spaces

    fake = SimpleNamespace(
        observation_space=spaces.Box(-1, 1, (7,)), action_space=spaces.Discrete(3)
    )
    task = ganno_bench.spec(BS_EASY)
    with pytest.raises(ValueError, match=r"shape \(7,\).*15 features.*another suite version"):
        PolicyAgent(fake).reset(task, task.frozen_instances("test")[0], ["controller"], 0)
