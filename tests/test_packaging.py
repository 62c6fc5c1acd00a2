"""What setuptools would put in a wheel: every package folder of ganno_bench/ and every
data file the code reads (suite TOML, frozen instances, references, baseline configs,
shipped policies, the card schema). Read from setup.py and pyproject.toml, no build."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_module():
    spec = importlib.util.spec_from_file_location("ganno_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    cwd = os.getcwd()
    os.chdir(ROOT)  # find_packages looks in the current folder
    try:
        spec.loader.exec_module(module)
        return module, module.packages()
    finally:
        os.chdir(cwd)


def _package_folder(package: str, data_packages: dict[str, str]) -> Path:
    if package in data_packages:
        return ROOT / data_packages[package]
    return ROOT.joinpath(*package.split("."))


def packaged_files() -> set[Path]:
    """The files a wheel would hold: each package's .py files and its package-data globs."""
    module, packages = _setup_module()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    files: set[Path] = set()
    for package in packages:
        folder = _package_folder(package, module.DATA_PACKAGES)
        files |= set(folder.glob("*.py"))
        for pattern in package_data.get(package, []):
            files |= set(folder.glob(pattern))
    return files


def missing_package_folders(root: Path, packages: list[str]) -> list[str]:
    """Folders under ``root/ganno_bench`` holding Python files that no package covers."""
    folders = {
        p.parent for p in (root / "ganno_bench").rglob("*.py") if "__pycache__" not in p.parts
    }
    found = {root.joinpath(*name.split(".")) for name in packages}
    return sorted(f.relative_to(root).as_posix() for f in folders - found)


def test_every_package_folder_is_discovered():
    _, packages = _setup_module()
    assert missing_package_folders(ROOT, packages) == []


def test_a_wing_setuptools_would_miss_is_reported(tmp_path):
    """A new folder without ``__init__.py`` is invisible to package discovery: reported."""
    from setuptools import find_packages

    for rel in ("ganno_bench/__init__.py", "ganno_bench/inner/__init__.py", "ganno_bench/new/m.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    packages = find_packages(str(tmp_path), include=["ganno_bench", "ganno_bench.*"])
    assert missing_package_folders(tmp_path, packages) == ["ganno_bench/new"]


def test_every_data_file_the_code_reads_is_packaged():
    wanted = [
        *ROOT.glob("envs/*.toml"),
        *ROOT.glob("envs/instances/*.json"),
        *ROOT.glob("envs/references/*.json"),
        *ROOT.glob("baselines/*.toml"),
        *ROOT.glob("baselines/ppo/*.toml"),
        *ROOT.glob("baselines/ppo/*.zip"),
        *(p for p in (ROOT / "ganno_bench").rglob("*") if p.suffix in (".json", ".toml")),
    ]
    assert len(wanted) > 40  # the suite, its instances and references, the baselines
    packaged = packaged_files()
    missing = sorted(str(p.relative_to(ROOT)) for p in wanted if p not in packaged)
    assert not missing, f"data files a wheel would leave out: {missing}"
