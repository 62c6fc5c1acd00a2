"""Tasks on local data files, through the registry's public path (readers: test_local_files)."""

from __future__ import annotations

import numpy as np
import pytest

import ganno_bench
from ganno_bench.data import load_dataset
from ganno_bench.data.local_files import DataFilesNotFound

from .test_local_files import write_mnist


def test_missing_local_data_gives_a_clear_error_through_make(tmp_path):
    spec = ganno_bench.spec("ganno/LayerLR-CNN-Easy-v0")
    task = ganno_bench.TaskSpec(
        id="local/MNIST-CNN-v0",
        model=spec.model,
        data=ganno_bench.DataConfig("mnist", {"root": str(tmp_path)}),
        spaces=spec.spaces,
        decisions=2,
        inner_steps=2,
    )
    with pytest.raises(DataFilesNotFound, match="GANNO_DATA"):
        ganno_bench.LayerLREnv(task)


def test_a_cnn_task_on_local_mnist_files_runs_end_to_end(tmp_path, monkeypatch):
    write_mnist(tmp_path, n_train=120, n_test=40, height=8, width=8, gz=True)
    monkeypatch.setenv("GANNO_DATA", str(tmp_path))
    dataset = load_dataset("mnist")
    assert dataset.input_shape == (1, 8, 8)
    assert dataset.sizes() == {"train": 108, "val": 12, "test": 40}
    spec = ganno_bench.spec("ganno/LayerLR-CNN-Easy-v0")
    task = ganno_bench.TaskSpec(
        id="local/MNIST-CNN-v0",
        model=spec.model,
        data=ganno_bench.DataConfig("mnist"),
        spaces=spec.spaces,
        decisions=2,
        inner_steps=3,
    )
    env = ganno_bench.LayerLREnv(task, split="test")
    env.reset(options={"instance": 0})
    while env.agents:
        _, _, _, _, infos = env.step(dict.fromkeys(env.agents, 2))
    assert 0.0 <= infos["layer_0"]["final_test_accuracy"] <= 1.0
    assert np.isfinite(infos["layer_0"]["final_test_loss"])
