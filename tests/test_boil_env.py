"""BOIL on a real env: a tuning run on a cheap id (a file of its own, so the test runner
can place it beside test_boil.py's synthetic-curve tests on another core)."""

from __future__ import annotations

from ganno_bench.baselines.boil import BOIL
from ganno_bench.baselines.schedule_family import env_objective

EASY = "ganno/LayerLR-MLP-Easy-v0"


def test_boil_on_a_cheap_id_beats_its_initial_design():
    objective, task = env_objective(EASY, instances=(0,))
    opt = BOIL(objective, 3, task.decisions, seed=0, n_init=3)
    best = opt.run(10)
    design = [r for r in opt.runs if not r.virtual][:3]
    full = [objective(r.x, task.decisions)[0][-1] for r in design]
    assert objective(best, task.decisions)[0][-1] > max(full)
