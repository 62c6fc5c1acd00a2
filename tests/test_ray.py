"""Ray: episodes as tasks on a real local cluster (a head node and a second node joined to
it over loopback), resuming a killed driver, a worker killed mid-episode, and PBT on Tune."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import ganno_bench
from ganno_bench.agents.protocol import FunctionAgent
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import load_card, validate_card
from ganno_bench.benchmark.records import episode_seed

ray = pytest.importorskip(
    "ray", reason='ray is not installed: pip install -c constraints.txt -e ".[ray,test]"'
)

EASY = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 3, "inner_steps": 2}
ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Token authentication is Ray's default; a throwaway cluster on loopback does without it
# (every node, the driver and the CLI runs it drives must agree on that).
NO_AUTH = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}


def _node(*args: str, temp: Path) -> subprocess.Popen:
    """A Ray node process (``ray start --block``) in a session of its own, so teardown can
    stop it and everything it started without touching any other Ray on the machine."""
    env = {**os.environ, **NO_AUTH, "PYTHONPATH": str(ROOT)}  # workers import tests.*
    env.pop("RAY_ADDRESS", None)
    log = temp / f"node-{len(list(temp.glob('node-*')))}.log"
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [RAY, "start", "--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
             "--disable-usage-stats", *args],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip


def _stop(process: subprocess.Popen, temp: Path) -> None:
    """Stop a node: its whole process group, then any process of this cluster (named by
    its temp folder) that left the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(temp).encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


@pytest.fixture(scope="module")
def one_cluster_at_a_time():
    """Held while this module's cluster lives, so that a second test run on the machine (CI
    runs this file in its RLlib venv beside the main one) starts its own two-node cluster
    only after the first has stopped, rather than a second head node beside it. Waits at
    most ten minutes, then fails naming the lock."""
    path = Path("/tmp") / f"ganno-bench-test-ray-cluster-{os.getuid()}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + 600
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, (
                    f"another test run's Ray cluster held {path} for ten minutes: stop that "
                    "run (or its leftover `ray start` processes) and retry"
                )
                time.sleep(1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@pytest.fixture(scope="module")
def cluster(one_cluster_at_a_time):
    """A head node and a worker node on 127.0.0.1, one CPU each; the test process is the
    driver. Stopped at the end whatever happened."""
    temp = Path(tempfile.mkdtemp(prefix="gb-ray-", dir="/tmp"))  # short: Ray's socket paths
    port = _free_port()
    address = f"127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in NO_AUTH}
    os.environ.update(NO_AUTH)
    nodes = []
    try:
        nodes.append(
            _node("--head", "--port", str(port), "--include-dashboard=false",
                  "--temp-dir", str(temp), temp=temp)
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while True:  # the head answers before the second node can join it
            probe = subprocess.run(
                [RAY, "status", "--address", address], capture_output=True, timeout=60
            )
            if probe.returncode == 0:
                break
            assert nodes[0].poll() is None, (temp / "node-0.log").read_text()
            assert time.monotonic() < deadline, probe.stderr.decode()[-2000:]
            time.sleep(1)
        nodes.append(_node("--address", address, temp=temp))
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert nodes[1].poll() is None, (temp / "node-1.log").read_text()
            assert time.monotonic() < deadline, "the second node did not join"
            time.sleep(0.5)
        yield address
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            _stop(node, temp)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


def _comparable(card: dict) -> dict:
    """A card without what says how and when it was made (wall times, date, hardware,
    backend): what must be bitwise equal across backends."""
    kept = {k: v for k, v in card.items() if k not in ("created", "hardware", "backend")}
    kept["episodes"] = [
        {k: v for k, v in e.items() if k != "wall_time_s"} for e in card["episodes"]
    ]
    return json.loads(json.dumps(kept))


def test_episodes_on_the_cluster_equal_the_process_pool_bitwise(cluster):
    kwargs = {"overrides": TINY, "instances": [0, 1, 2], "progress": False}
    agent = load_agent("halve-on-plateau")
    pool = ganno_bench.evaluate(agent, [EASY], "test", [0, 1], workers=2, **kwargs)
    on_ray = ganno_bench.evaluate(
        agent, [EASY], "test", [0, 1], backend="ray", address=cluster, workers=2, **kwargs
    )
    validate_card(on_ray)
    assert on_ray["backend"] == "ray" and "backend" not in pool
    assert _comparable(on_ray) == _comparable(pool)


def random_factors(observations, infos, rng):
    return {agent: int(rng.integers(5)) for agent in observations}


@dataclass
class _DiesOnce(FunctionAgent):
    """Random factors; the first time it plays instance ``instance`` (of run seed 0), its
    process is SIGKILLed at the second decision (a worker dying mid-episode). ``marker``: a
    file that says it died already, so the retried episode plays through."""

    marker: str = ""
    instance: int = 1

    def reset(self, task, instance, agents, seed):
        super().reset(task, instance, agents, seed)
        self._doomed, self._decision = seed == episode_seed(0, self.instance), 0

    def act(self, observations, infos):
        self._decision += 1
        if self._doomed and self._decision == 2 and self.marker:
            marker = Path(self.marker)
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        return super().act(observations, infos)


def test_a_worker_killed_mid_episode_is_retried_and_every_episode_is_there_once(cluster, tmp_path):
    marker = tmp_path / "died"
    agent = _DiesOnce(random_factors, "random-dies", marker=str(marker))
    kwargs = {"overrides": TINY, "instances": [0, 1, 2, 3], "progress": False}
    out = tmp_path / "card.json"
    card = ganno_bench.evaluate(
        agent, [EASY], "test", [0], backend="ray", address=cluster, out=out, **kwargs
    )
    assert marker.exists(), "no worker was killed"
    died = int(marker.read_text())
    assert died != os.getpid()  # a worker died, not the driver
    keys = [(e["env_id"], e["instance"], e["seed"]) for e in card["episodes"]]
    assert keys == [(EASY, k, 0) for k in (0, 1, 2, 3)]
    assert load_card(out)["episodes"] == card["episodes"]
    # the retried episode is the one an unkilled run plays
    calm = _DiesOnce(random_factors, "random-dies")
    fresh = ganno_bench.evaluate(calm, [EASY], "test", [0], **kwargs)
    assert _comparable(card) == _comparable(fresh)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganno_bench.cli.main", *args]


def test_a_killed_driver_resumes_on_the_cluster_with_nothing_lost_or_duplicated(cluster, tmp_path):
    out = tmp_path / "card.json"
    journal = tmp_path / "card.json.partial.jsonl"
    command = _cli(
        "evaluate", "--agent", "random", "--env", EASY, "--seeds", "0", "--instances",
        *map(str, range(8)), "--decisions", "3", "--inner-steps", "2", "--out", str(out),
        "--quiet", "--backend", "ray", "--address", cluster, "--workers", "1",
    )  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert not out.exists(), "the run finished before it could be killed"
    kept = [json.loads(x) for x in journal.read_text().splitlines()[1:] if x.endswith("}")]
    assert 2 <= len(kept) < 8

    subprocess.run(command, cwd=ROOT, check=True, timeout=300)
    card = load_card(out)
    assert card["backend"] == "ray"
    keys = [(e["env_id"], e["instance"], e["seed"]) for e in card["episodes"]]
    assert keys == [(EASY, k, 0) for k in range(8)]
    by_key = {(e["env_id"], e["instance"], e["seed"]): e for e in card["episodes"]}
    for record in kept:  # episodes finished before the kill were kept, not run again
        assert by_key[(record["env_id"], record["instance"], record["seed"])] == record
    fresh = ganno_bench.evaluate(
        load_agent("random"), [EASY], "test", [0], overrides=TINY, instances=range(8),
        progress=False,
    )  # fmt: skip
    assert _comparable(card) == _comparable(fresh)


def _evaluate_at_an_unreachable_address(tmp_path, *args: str) -> str:
    """``evaluate`` on a tiny budget with --address where nothing listens; asserts the
    exit code 2 and the message naming the address and the fix; returns stderr."""
    address = f"127.0.0.1:{_free_port()}"
    result = subprocess.run(
        _cli("evaluate", *args, "--env", EASY, "--instances", "0", "--seeds", "0",
             "--decisions", "2", "--inner-steps", "2", "--address", address, "--quiet",
             "--out", str(tmp_path / "card.json")),
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert address in result.stderr and "ray start --head" in result.stderr
    return result.stderr


def test_an_unreachable_cluster_is_an_error_naming_the_address_and_the_fix(tmp_path):
    _evaluate_at_an_unreachable_address(tmp_path, "--agent", "constant", "--backend", "ray")


def test_pbt_tune_takes_its_cluster_from_the_address_option(tmp_path):
    """With the process backend, --address is where pbt-tune's Tune trials run: an
    address nobody answers at is the agent's error, naming it and the fix."""
    stderr = _evaluate_at_an_unreachable_address(tmp_path, "--agent", "pbt-tune")
    assert "backend='ray'" not in stderr  # not refused as an episode backend


def test_the_batched_engine_and_an_unknown_backend_are_refused_clearly():
    agent = load_agent("constant")
    with pytest.raises(ValueError, match="unknown backend 'dask'"):
        ganno_bench.evaluate(agent, [EASY], backend="dask", overrides=TINY, progress=False)
    with pytest.raises(ValueError, match="batched engine"):
        ganno_bench.evaluate(
            agent, [EASY], backend="ray", engine="batched", overrides=TINY, progress=False
        )
    with pytest.raises(ValueError, match="backend='ray'"):
        ganno_bench.evaluate(agent, [EASY], address="127.0.0.1:1", overrides=TINY)


def test_pbt_on_tune_with_four_members_plays_a_lineage_that_replays_exactly(tmp_path):
    """Tune's exploits restore env checkpoints: the winner's recorded rates, replayed from
    the episode's start in one fresh env, must give its recorded curve and test loss."""
    from ganno_bench.agents.protocol import ScheduleAgent
    from ganno_bench.baselines.pbt import PBTConfig
    from ganno_bench.baselines.tune_pbt import TunePBTAgent

    budget = {"decisions": 4, "inner_steps": 2}
    agent = TunePBTAgent("pbt-tune", PBTConfig(population=4, ready=2))
    kwargs = {"overrides": budget, "instances": [3], "progress": False}
    card = ganno_bench.evaluate(agent, [EASY], "test", [0], out=tmp_path / "pbt.json", **kwargs)
    validate_card(card)
    assert card["agent"]["config"]["backend"] == "ray-tune"
    assert card["agent"]["compute_multiple"] == 4.0
    (episode,) = card["episodes"]
    rates = np.array(episode["lrs"])
    assert rates.shape == (4, 3)
    replay = ScheduleAgent(lambda t, n: list(np.log10(rates[t])), "replay")
    (again,) = ganno_bench.evaluate(replay, [EASY], "test", [0], **kwargs)["episodes"]
    np.testing.assert_allclose(again["curves"]["val_loss"], episode["curves"]["val_loss"], 1e-5)
    assert again["final_test_loss"] == pytest.approx(episode["final_test_loss"], rel=1e-5)


def test_bench_backends_times_both_backends_side_by_side(cluster):
    """The bench's ratio is its two medians' quotient, every (backend, workers) cell was
    measured, and the table prints what was measured."""
    from ganno_bench.experiments.backend_bench import format_backends, measure_backends

    result = measure_backends(EASY, repeats=1, episodes=2, workers=(1,), overrides=TINY)
    assert result.pool_ms > 0 and result.ray_ms > 0
    assert result.ratio == pytest.approx(result.ray_ms / result.pool_ms)
    assert {b: sorted(w) for b, w in result.throughput.items()} == {
        "processes": [1],
        "ray": [1],
    }
    assert all(v > 0 for w in result.throughput.values() for v in w.values())
    table = format_backends(result)
    assert f"ratio Ray / pool: {result.ratio:.3f}" in table
    ray_row = next(line for line in table.splitlines() if line.strip().startswith("ray"))
    assert [float(v) for v in ray_row.split()[1:]] == pytest.approx(
        [result.throughput["ray"][1]], abs=0.006
    )
