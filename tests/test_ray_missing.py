"""Without Ray installed, the Ray backend and Tune PBT say how to install it."""

from __future__ import annotations

import sys

import pytest

import ganno_bench
from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.ray_backend import RayUnavailableError

EASY = "ganno/LayerLR-MLP-Easy-v0"
TINY = {"decisions": 2, "inner_steps": 2}


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


@pytest.mark.parametrize("agent", ["constant", "pbt-tune"])
def test_a_missing_ray_is_an_error_with_the_install_command(no_ray, agent, tmp_path):
    backend = "ray" if agent == "constant" else "processes"
    with pytest.raises(RayUnavailableError, match=r'pip install -c constraints.txt -e "\.\[ray\]"'):
        ganno_bench.evaluate(
            load_agent(agent), [EASY], "test", [0], overrides=TINY, instances=[0],
            progress=False, backend=backend, out=tmp_path / "card.json",
        )  # fmt: skip
    # nothing was half-done: the journal holds its header only, ready for a run with Ray
    lines = (tmp_path / "card.json.partial.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"header"' in lines[0]
