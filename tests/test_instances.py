"""Held-out initial conditions: disjoint by construction, frozen, hashed and reproducible."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

import ganno_bench
from ganno_bench.envs import suite
from ganno_bench.inner.instances import (
    FROZEN_SPLITS,
    SEED_RANGES,
    Instance,
    InstanceSpace,
    build_frozen,
    instances_hash,
)

from .conftest import ALL_IDS


def test_seed_ranges_of_the_splits_do_not_overlap():
    ranges = sorted(SEED_RANGES.values())
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert hi <= lo


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_no_held_out_instance_is_reachable_from_train(env_id):
    task = ganno_bench.spec(env_id)
    train = task.spaces["train"]
    for split in FROZEN_SPLITS:
        frozen = task.frozen_instances(split)
        assert len(frozen) >= 32
        assert len(set(frozen)) == len(frozen)
        for instance in frozen:
            assert not train.contains(instance)
            assert task.spaces[split].contains(instance)
    # test-ood extrapolates: every continuous factor lies outside the train ranges
    for instance in task.frozen_instances("test-ood"):
        for factor in ("log10_lr", "init_scale", "momentum"):
            value = getattr(instance, factor)
            assert not any(lo <= value <= hi for lo, hi in getattr(train, factor)), factor
        assert instance.batch_size not in train.batch_sizes
        assert instance.init_scheme not in train.init_schemes
    # and a large sample of the train distribution never hits a held-out instance
    rng = np.random.default_rng(0)
    held_out = set(task.frozen_instances("test")) | set(task.frozen_instances("test-ood"))
    sampled = {train.sample(rng) for _ in range(2000)}
    assert not sampled & held_out
    assert all(train.contains(i) for i in sampled)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_frozen_files_match_what_the_code_builds(env_id):
    task = ganno_bench.spec(env_id)
    stored = json.loads(suite.frozen_path(env_id).read_text())
    for split in FROZEN_SPLITS:
        rebuilt = build_frozen(env_id, task.spaces[split], split, stored["splits"][split]["count"])
        assert list(task.frozen_instances(split)) == rebuilt
        assert stored["splits"][split]["sha256"] == instances_hash(rebuilt)


def test_test_split_shares_train_ranges_and_differs_only_in_seeds():
    task = ganno_bench.spec("ganno/LayerLR-MLP-Easy-v0")
    train, test = task.spaces["train"], task.spaces["test"]
    assert (train.log10_lr, train.batch_sizes, train.init_schemes) == (
        test.log10_lr,
        test.batch_sizes,
        test.init_schemes,
    )
    assert train.seed_range != test.seed_range


def test_hand_edited_frozen_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(suite.suite_dir(), tmp_path / "envs")
    path = tmp_path / "envs" / "instances" / "LayerLR-MLP-Easy-v0.json"
    data = json.loads(path.read_text())
    data["splits"]["test"]["instances"][0]["log10_lr"] = -1.0
    path.write_text(json.dumps(data))
    monkeypatch.setattr(suite, "suite_dir", lambda: tmp_path / "envs")
    specs, errors = suite.load_suite_specs()
    assert "ganno/LayerLR-MLP-Easy-v0" not in {s.id for s in specs}
    assert any("sha256" in message for message in errors.values())
    assert len(specs) == len(ALL_IDS) - 2  # only the broken entry (SGD + Adam) is dropped


def test_instance_json_round_trip_and_interval_unions():
    space = InstanceSpace.from_config(
        {
            "log10_lr": [[-3.0, -2.0], [-0.5, 0.0]],
            "init_scale": [1.0, 1.0],
            "momentum": [0.9, 0.9],
            "batch_sizes": [16],
            "init_schemes": ["orthogonal"],
        },
        "test-ood",
    )
    rng = np.random.default_rng(1)
    draws = [space.sample(rng) for _ in range(400)]
    assert all(Instance.from_dict(json.loads(json.dumps(d.to_dict()))) == d for d in draws)
    values = np.array([d.log10_lr for d in draws])
    assert ((values <= -2.0) | (values >= -0.5)).all()
    # each interval is picked in proportion to its length (1.0 vs 0.5): about 2/3 fall low
    assert 0.6 < np.mean(values <= -2.0) < 0.73
    with pytest.raises(ValueError, match="unknown instance factors"):
        InstanceSpace.from_config({"lr": [0, 1]}, "train")
