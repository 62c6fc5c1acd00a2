"""The public registry: make, spec, list_envs, register, and isolation of entries."""

from __future__ import annotations

import shutil

import gymnasium
import pettingzoo
import pytest

import ganno_bench
from ganno_bench.envs import suite

from .conftest import ALL_IDS, BATCH_SIZE_IDS, SUITE_IDS


def test_unknown_id_names_the_closest_ids():
    with pytest.raises(ganno_bench.UnknownEnvironmentError) as info:
        ganno_bench.make("ganno/LayerLR-MLP-Eazy-v0")
    assert "ganno/LayerLR-MLP-Easy-v0" in str(info.value)
    assert "ganno-bench list" in str(info.value)
    with pytest.raises(ganno_bench.UnknownEnvironmentError, match="LayerLR-CNN-Hard-v0"):
        ganno_bench.spec("ganno/LayerLR-CNN-Hard-v1")


def test_list_envs_accepts_globs():
    assert ganno_bench.list_envs() == sorted(ALL_IDS) == sorted(SUITE_IDS + BATCH_SIZE_IDS)
    cnn = ganno_bench.list_envs("*LayerLR-CNN*")
    assert len(cnn) == 6 and all("CNN" in i for i in cnn)
    assert ganno_bench.list_envs("*-Adam-v0") == [i for i in SUITE_IDS if i.endswith("-Adam-v0")]


def test_overrides_change_the_budget_only_of_the_env_made():
    env = ganno_bench.make("ganno/LayerLR-MLP-Easy-v0", decisions=2, inner_steps=1)
    assert (env.task.decisions, env.task.inner_steps) == (2, 1)
    assert ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0").decisions == 20


def test_difficulty_is_real_deeper_tighter_noisier():
    for family in ("MLP", "CNN"):
        easy, medium, hard = (
            ganno_bench.spec(f"ganno/LayerLR-{family}-{level}-v0")
            for level in ("Easy", "Medium", "Hard")
        )
        depth = [t.model.num_layers() for t in (easy, medium, hard)]
        budget = [t.decisions * t.inner_steps for t in (easy, medium, hard)]
        noise = [t.data.label_noise for t in (easy, medium, hard)]
        assert depth[0] < depth[1] < depth[2]
        assert budget[0] > budget[1] > budget[2]
        assert noise[0] < noise[1] <= noise[2]
        assert all(t.description for t in (easy, medium, hard))


def test_registering_an_existing_id_needs_replace():
    task = ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0")
    with pytest.raises(ValueError, match="already registered"):
        ganno_bench.register(task)


def test_one_broken_suite_entry_does_not_drop_the_others(tmp_path, monkeypatch):
    shutil.copytree(suite.suite_dir(), tmp_path / "envs")
    toml = tmp_path / "envs" / "mlp.toml"
    text = toml.read_text().replace("hidden = [128, 64, 64, 32]", "hidden = [128, -1]")
    toml.write_text(text)
    (tmp_path / "envs" / "broken.toml").write_text("this is [ not toml")
    monkeypatch.setattr(suite, "suite_dir", lambda: tmp_path / "envs")
    specs, errors = suite.load_suite_specs()
    assert {s.id for s in specs} == set(ALL_IDS) - {
        "ganno/LayerLR-MLP-Medium-v0",
        "ganno/LayerLR-MLP-Medium-Adam-v0",
    }
    assert "mlp.toml: LayerLR-MLP-Medium" in errors
    assert "positive" in errors["mlp.toml: LayerLR-MLP-Medium"]
    assert "broken.toml" in errors
    with pytest.warns(UserWarning, match="could not register"):
        suite.register_suite()
    assert "broken.toml" in ganno_bench.registration_errors()
    monkeypatch.undo()
    suite.register_suite()  # restore the shipped registry for later tests
    assert ganno_bench.registration_errors() == {}


def test_ids_resolve_through_gymnasium_and_pettingzoo_registries():
    for env_id in ("ganno/LayerLR-MLP-Easy-v0", "ganno/LayerLR-CNN-Hard-Adam-v0"):
        assert env_id in gymnasium.registry
        assert env_id in pettingzoo.parallel_registry
    env = gymnasium.make("ganno_bench:ganno/LayerLR-MLP-Easy-v0", decisions=2, inner_steps=1)
    assert env.unwrapped.task.id == "ganno/LayerLR-MLP-Easy-v0"
