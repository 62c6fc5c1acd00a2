"""The evaluation protocol: agents, episodes, resumable runs and result cards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import ganno_bench
from ganno_bench.agents.protocol import FunctionAgent, ScheduleAgent
from ganno_bench.baselines.zoo import UnknownAgentError, builtin_agents, load_agent
from ganno_bench.benchmark.cards import CardError, hardware, load_card, validate_card, write_card
from ganno_bench.benchmark.evaluation import _read_journal, resolve_ids

TINY = {"decisions": 3, "inner_steps": 2}
EASY = "ganno/LayerLR-MLP-Easy-v0"


def constant_log_lr(t: int, layers: int) -> list[float]:
    return [-1.5] * layers


def test_schedule_agent_sets_the_absolute_rates_of_every_layer():
    agent = ScheduleAgent(lambda t, n: [-1.0 - 0.5 * t - 0.1 * i for i in range(n)], "decay")
    card = ganno_bench.evaluate(
        agent, [EASY], "test", [0], overrides=TINY, instances=[0], progress=False
    )
    lrs = np.array(card["episodes"][0]["lrs"])
    expected = [[10 ** (-1.0 - 0.5 * t - 0.1 * i) for i in range(3)] for t in range(3)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5)
    assert card["agent"]["action_mode"] == "log_lr"


def test_function_agent_gets_a_seeded_rng_per_episode():
    def run():
        return ganno_bench.evaluate(
            load_agent("random"),
            [EASY],
            "test",
            [0, 1],
            overrides=TINY,
            instances=[0, 1],
            progress=False,
        )

    card_a, card_b = run(), run()
    lrs_a = [e["lrs"] for e in card_a["episodes"]]
    assert lrs_a == [e["lrs"] for e in card_b["episodes"]]  # reproducible
    assert lrs_a[0] != lrs_a[1]  # seeds 0 and 1 on instance 0 act differently


def test_on_a_frozen_instance_the_seed_moves_only_agents_that_draw_random_numbers():
    """Why deterministic baselines are committed with one seed: the instance fixes every
    random stream of the inner training, so their episodes repeat bitwise across seeds."""
    card = ganno_bench.evaluate(
        load_agent("cosine"),
        [EASY],
        "test",
        [0, 1],
        overrides=TINY,
        instances=[2],
        progress=False,
    )
    a, b = card["episodes"]
    assert (a["seed"], b["seed"]) == (0, 1)
    assert a["final_test_loss"] == b["final_test_loss"]
    assert a["curves"] == b["curves"] and a["lrs"] == b["lrs"]


def test_card_records_every_instance_and_seed_and_validates():
    card = ganno_bench.evaluate(
        load_agent("constant"),
        ["ganno/LayerLR-MLP-Easy*"],
        "test-ood",
        [3, 4],
        overrides=TINY,
        instances=[0, 5],
        progress=False,
    )
    validate_card(card)
    assert set(card["envs"]) == {EASY, "ganno/LayerLR-MLP-Easy-Adam-v0"}
    keys = [(e["env_id"], e["instance"], e["seed"]) for e in card["episodes"]]
    assert len(keys) == len(set(keys)) == 2 * 2 * 2
    episode = next(e for e in card["episodes"] if e["env_id"] == EASY and e["instance"] == 0)
    assert len(episode["curves"]["val_loss"]) == len(episode["lrs"]) == 3
    assert episode["return"] == pytest.approx(sum(episode["curves"]["reward"]))
    task = ganno_bench.spec(EASY)
    assert card["envs"][EASY]["instances_sha256"]
    # constant agent: every decision keeps the instance's own rate
    rate = task.frozen_instances("test-ood")[0].learning_rate
    assert np.allclose(episode["lrs"], rate)


def test_parallel_workers_give_the_same_episodes_as_one_process():
    kwargs = {"overrides": TINY, "instances": [0, 1, 2], "progress": False}
    serial = ganno_bench.evaluate(load_agent("halve-on-plateau"), [EASY], "test", [0, 1], **kwargs)
    parallel = ganno_bench.evaluate(
        load_agent("halve-on-plateau"), [EASY], "test", [0, 1], workers=2, **kwargs
    )

    def strip(card):
        return [{k: v for k, v in e.items() if k != "wall_time_s"} for e in card["episodes"]]

    assert strip(serial) == strip(parallel)


def test_card_records_the_single_thread_its_episodes_ran_with():
    """The card says how its episodes ran, not how the calling process was set."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        card = ganno_bench.evaluate(
            load_agent("constant"),
            [EASY],
            "test",
            [0],
            overrides=TINY,
            instances=[0],
            progress=False,
        )
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)
    assert card["hardware"]["torch_threads"] == 1
    assert card["hardware"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(card["hardware"]["cpu_model"], str)


def test_same_processor_needs_a_recorded_matching_processor():
    from ganno_bench.benchmark.cards import hardware, same_processor

    here = hardware()
    assert same_processor(here)
    assert not same_processor(None)
    assert not same_processor({k: v for k, v in here.items() if k != "cpu_model"})
    assert not same_processor({**here, "cpu_model": here["cpu_model"] + " (another)"})
    assert not same_processor({**here, "torch_cpu_capability": "another ISA"})


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganno_bench.cli.main", *args]


def test_a_killed_run_resumes_with_nothing_lost_or_duplicated(tmp_path):
    out = tmp_path / "card.json"
    journal = tmp_path / "card.json.partial.jsonl"
    command = _cli(
        "evaluate",
        "--agent",
        "random",
        "--env",
        EASY,
        "--split",
        "test",
        "--seeds",
        "0",
        "1",
        "--instances",
        *map(str, range(10)),
        "--decisions",
        "4",
        "--inner-steps",
        "3",
        "--out",
        str(out),
        "--quiet",
    )
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:
            break
        time.sleep(0.005)
    process.kill()
    process.wait()
    assert not out.exists(), "the run finished before it could be killed"
    before_kill = [
        json.loads(line) for line in journal.read_text().splitlines()[1:] if line.endswith("}")
    ]
    assert 3 <= len(before_kill) < 20

    subprocess.run(command, check=True, timeout=300)
    card = load_card(out)
    keys = [(e["env_id"], e["instance"], e["seed"]) for e in card["episodes"]]
    assert len(keys) == len(set(keys)) == 20
    assert not journal.exists()
    by_key = {(e["env_id"], e["instance"], e["seed"]): e for e in card["episodes"]}
    for record in before_kill:  # finished episodes were kept, not run again
        assert by_key[(record["env_id"], record["instance"], record["seed"])] == record
    # and resuming changed no number: an uninterrupted run agrees on every score
    fresh = ganno_bench.evaluate(
        load_agent("random"),
        [EASY],
        "test",
        [0, 1],
        overrides={"decisions": 4, "inner_steps": 3},
        instances=range(10),
        progress=False,
    )
    assert [e["final_test_loss"] for e in fresh["episodes"]] == [
        e["final_test_loss"] for e in card["episodes"]
    ]


def random_factors(observations, infos, rng):
    return {agent: int(rng.integers(5)) for agent in observations}


@dataclass
class _KilledAtEpisode(FunctionAgent):
    """Random factors; SIGKILLs its own process (no cleanup, as `kill -9` does) when it is
    reset for episode ``GANNO_TEST_KILL_AT + 1`` of the process."""

    def reset(self, task, instance, agents, seed):
        super().reset(task, instance, agents, seed)
        self._episodes = getattr(self, "_episodes", 0) + 1
        limit = os.environ.get("GANNO_TEST_KILL_AT")
        if limit is not None and self._episodes > int(limit):
            os.kill(os.getpid(), signal.SIGKILL)


KILLED = _KilledAtEpisode(random_factors, "random-killed")
KILL_BUDGET = {"decisions": 2, "inner_steps": 2}
KILL_INSTANCES = [0, 1, 2, 3]


def _evaluate_killed_at(out: Path, kill_at: int | None) -> int:
    """The CLI evaluation of KILLED, killed when it starts episode ``kill_at + 1``."""
    command = _cli(
        "evaluate", "--agent", "tests.test_evaluation:KILLED", "--env", EASY, "--split",
        "test", "--seeds", "0", "--instances", *map(str, KILL_INSTANCES), "--decisions",
        "2", "--inner-steps", "2", "--out", str(out), "--quiet",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "GANNO_TEST_KILL_AT"}
    if kill_at is not None:
        env["GANNO_TEST_KILL_AT"] = str(kill_at)
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(command, env=env, cwd=root, timeout=300).returncode


def _without_timings(card):
    """A card's content without what differs between two runs of it (times, dates)."""
    kept = {k: v for k, v in card.items() if k != "created"}
    kept["episodes"] = [
        {k: v for k, v in e.items() if k != "wall_time_s"} for e in card["episodes"]
    ]
    return json.loads(json.dumps(kept))


@pytest.fixture(scope="module")
def uninterrupted_killed_card():
    return ganno_bench.evaluate(
        KILLED, [EASY], "test", [0], overrides=KILL_BUDGET, instances=KILL_INSTANCES,
        progress=False,
    )  # fmt: skip


def test_a_run_killed_before_its_first_episode_finishes_resumes(
    tmp_path, uninterrupted_killed_card
):
    """The journal's header reaches the disk before the first episode starts: a kill in
    that window (long for CNN or PBT episodes) leaves a journal the rerun resumes."""
    out = tmp_path / "card.json"
    journal = tmp_path / "card.json.partial.jsonl"
    assert _evaluate_killed_at(out, 0) == -signal.SIGKILL
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 and "header" in json.loads(lines[0])
    assert _evaluate_killed_at(out, None) == 0
    assert _without_timings(load_card(out)) == _without_timings(uninterrupted_killed_card)
    assert not journal.exists()


def test_an_empty_or_torn_header_journal_starts_over(tmp_path, uninterrupted_killed_card):
    for torn in ("", '{"header": {"agent": {"na'):
        out = tmp_path / "card.json"
        Path(str(out) + ".partial.jsonl").write_text(torn)
        card = ganno_bench.evaluate(
            KILLED, [EASY], "test", [0], out=out, overrides=KILL_BUDGET,
            instances=KILL_INSTANCES, progress=False,
        )  # fmt: skip
        assert _without_timings(card) == _without_timings(uninterrupted_killed_card)


def test_a_kill_mid_write_loses_no_later_record(tmp_path, uninterrupted_killed_card):
    """A kill while a record is written leaves it torn, without its newline; the resumed
    run's records must start lines of their own, not be glued onto it and lost."""
    out = tmp_path / "card.json"
    journal = tmp_path / "card.json.partial.jsonl"
    assert _evaluate_killed_at(out, 2) == -signal.SIGKILL
    text = journal.read_text()
    header, first, second = text.splitlines()
    journal.write_text(f"{header}\n{first}\n{second[: len(second) // 2]}")  # torn mid-write
    header_dict = json.loads(header)["header"]
    assert len(_read_journal(journal, header_dict)) == 1
    # the resumed run plays the torn episode again and one more, then is killed too
    assert _evaluate_killed_at(out, 2) == -signal.SIGKILL
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    assert len(_read_journal(journal, header_dict)) == 3
    assert _evaluate_killed_at(out, None) == 0
    assert _without_timings(load_card(out)) == _without_timings(uninterrupted_killed_card)


def test_a_journal_begun_on_another_processor_is_refused_and_kept(
    tmp_path, uninterrupted_killed_card
):
    """A card records one processor: episodes of two kinds of processor in one card would
    fail its bitwise rerun, so a journal begun elsewhere is refused, and left as it was.
    A journal from before the processor was recorded resumes as it always did."""
    out = tmp_path / "card.json"
    journal = tmp_path / "card.json.partial.jsonl"
    assert _evaluate_killed_at(out, 2) == -signal.SIGKILL
    first, *episodes = journal.read_text().splitlines()
    begun = json.loads(first)
    assert begun["ran_on"]["cpu_model"] == hardware()["cpu_model"]

    def resume():
        return ganno_bench.evaluate(
            KILLED, [EASY], "test", [0], out=out, overrides=KILL_BUDGET,
            instances=KILL_INSTANCES, progress=False,
        )  # fmt: skip

    elsewhere = {**begun, "ran_on": {**begun["ran_on"], "cpu_model": "Another Processor 9000"}}
    journal.write_text("\n".join([json.dumps(elsewhere), *episodes]) + "\n")
    before = journal.read_bytes()
    with pytest.raises(ValueError, match=r"Another Processor 9000.*delete the journal"):
        resume()
    assert journal.read_bytes() == before and not out.exists()

    legacy = {"header": begun["header"]}
    journal.write_text("\n".join([json.dumps(legacy), *episodes]) + "\n")
    assert _without_timings(resume()) == _without_timings(uninterrupted_killed_card)
    assert not journal.exists()


def test_a_journal_of_another_run_is_refused(tmp_path):
    out = tmp_path / "card.json"
    journal = tmp_path / "card.json.partial.jsonl"
    journal.write_text(json.dumps({"header": {"agent": {"name": "other"}}}) + "\n")
    with pytest.raises(ValueError, match="different evaluation"):
        ganno_bench.evaluate(
            load_agent("constant"),
            [EASY],
            "test",
            [0],
            out=out,
            overrides=TINY,
            instances=[0],
            progress=False,
        )


def test_unknown_agent_and_unknown_ids_are_clear_errors(capsys):
    with pytest.raises(UnknownAgentError, match="halve-on-plateau"):
        load_agent("halve-on-plateu")
    with pytest.raises(UnknownAgentError, match="cannot load agent"):
        load_agent("no_such_module:agent")
    with pytest.raises(ganno_bench.UnknownEnvironmentError, match="no registered id matches"):
        resolve_ids(["ganno/*Huge*"])
    from ganno_bench.cli.main import main

    assert main(["evaluate", "--agent", "nope", "--env", EASY]) == 2
    assert "Built-in agents" in capsys.readouterr().err
    assert main(["evaluate", "--agent", "constant", "--env", "ganno/LayerLR-MLP-Esay-v0"]) == 2
    assert EASY in capsys.readouterr().err


def test_user_agents_load_from_module_attribute():
    agent = load_agent("tests.test_evaluation:USER_AGENT")
    assert agent.name == "user-constant" and agent.action_mode == "log_lr"
    shipped = {
        "constant",
        "step",
        "exponential",
        "cosine",
        "cosine-restarts",
        "warmup-cosine",
        "one-cycle",
        "reduce-on-plateau",
        "cyclical",
        "hypergradient",
        "lars",
        "random",
        "halve-on-plateau",
    }
    assert shipped <= set(builtin_agents())


USER_AGENT = ScheduleAgent(constant_log_lr, "user-constant")


@pytest.fixture(scope="module")
def good_card():
    return ganno_bench.evaluate(
        FunctionAgent(lambda o, i, r: dict.fromkeys(o, 2), "keep"),
        [EASY],
        "test",
        [0],
        overrides=TINY,
        instances=[0],
        progress=False,
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("split"), "'split' is a required property"),
        (lambda c: c.update(split="validation"), "field split"),
        (lambda c: c["episodes"][0].update(final_test_accuracy=1.5), "episodes/0/final_test_acc"),
        (lambda c: c["episodes"][0].update(diverged="no"), "episodes/0/diverged"),
        (lambda c: c["episodes"][0]["curves"]["val_loss"].append("x"), "episodes/0/curves/val_"),
        (lambda c: c["episodes"][0]["lrs"][1].__setitem__(0, 0.0), "episodes/0/lrs/1/0: 0.0 is"),
        (lambda c: c["episodes"][0]["lrs"].append(0.1), "episodes/0/lrs/3: 0.1 is not of type"),
        (lambda c: c["episodes"][0]["curves"].pop("reward"), "'reward' is a required property"),
        (lambda c: c["agent"].update(action_mode="both"), "field agent/action_mode"),
        (lambda c: c.update(schema_version=7), "schema_version 7 is not supported"),
        (lambda c: c.update(kind="someone-else/card"), "not a ganno-bench result card"),
    ],
)
def test_malformed_or_foreign_cards_name_the_wrong_field(good_card, tmp_path, edit, message):
    card = json.loads(json.dumps(good_card))
    edit(card)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(card))
    with pytest.raises(CardError, match=message):
        load_card(path)


def test_unreadable_card_files(tmp_path):
    with pytest.raises(CardError, match="no result card"):
        load_card(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CardError, match="not valid JSON"):
        load_card(broken)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("episodes/0/final_test_loss", float("nan")),
        ("episodes/0/normalised_score", float("-inf")),
        ("episodes/0/curves/reward/1", float("nan")),
        ("agent/config/rate", float("inf")),  # free-form parts too
    ],
)
def test_cards_with_non_finite_numbers_are_refused_naming_the_field(
    good_card, tmp_path, field, value
):
    card = json.loads(json.dumps(good_card))
    *parents, last = field.split("/")
    target = card
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[int(last) if isinstance(target, list) else last] = value
    for name in ("bad.json", "bad.json.gz"):
        with pytest.raises(CardError, match=f"field {field}: .* is not a finite number"):
            write_card(card, tmp_path / name)
        assert not (tmp_path / name).exists()
    path = tmp_path / "by-hand.json"
    path.write_text(json.dumps(card))  # Python's json writes bare NaN / Infinity tokens
    with pytest.raises(CardError, match=r"bare (NaN|-?Infinity) token"):
        load_card(path)
