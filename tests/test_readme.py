"""Every Python block of the README runs as pasted, each in a fresh interpreter.

Budgets shrink for CI through the textual substitutions below, the only changes made to
a block; each must match the README exactly once, so the table cannot drift from the text.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# (block's first line, what to replace, its CI-sized replacement)
QUICK = [
    ("from stable_baselines3 import PPO", "model.learn(12_000)", "model.learn(2_400)"),
    (
        "import ganno_bench\n\ndef my_schedule",
        "seeds=[0, 1, 2],",
        'seeds=[0], instances=[0], overrides={"decisions": 2, "inner_steps": 2},',
    ),
]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def quick(block: str) -> str:
    for start, old, new in QUICK:
        if block.startswith(start):
            assert block.count(old) == 1, f"README block {start!r} no longer has {old!r}"
            block = block.replace(old, new)
    return block


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 5
    for start, _, _ in QUICK:
        assert sum(b.startswith(start) for b in BLOCKS) == 1, f"no README block starts {start!r}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0][:40] for b in BLOCKS])
def test_readme_block_runs_as_pasted(block, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", quick(block)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"README block failed:\n{block}\n{result.stderr[-3000:]}"


def test_the_cpu_only_install_asks_for_the_pinned_torch():
    """The README's CPU-only set-up installs exactly the version constraints.txt pins, from
    PyTorch's CPU index, before the install that reads the constraints."""
    pins = [
        line.strip()
        for line in (README.parent / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    torch_pin = next(p for p in pins if p.startswith("torch=="))
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    cpu = [b for b in blocks if "--index-url" in b and "torch==" in b]
    assert len(cpu) == 1, "the README has one CPU-only set-up command"
    first, then = (
        cpu[0].index(f"pip install {torch_pin} --index-url"),
        cpu[0].index("-c constraints.txt"),
    )
    assert first < then
