"""Where the baseline configs and shipped policies live: package data when installed,
the top-level ``baselines/`` folder in a checkout."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def baselines_dir() -> Path:
    """Folder of the baseline configs (package data when installed, ``baselines/`` here)."""
    try:
        return Path(str(importlib.resources.files("ganno_bench.baseline_files")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "baselines"
