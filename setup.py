"""Package discovery: every sub-package of ``ganno_bench`` is found (so a new wing cannot
be left out of a wheel), and the top-level data folders ship inside the package.

Metadata and package data are in ``pyproject.toml``; only what TOML cannot say is here:
``envs/`` and ``baselines/`` live outside ``ganno_bench/`` (they are the suite's and the
baselines' declarative definitions) but are read at run time as package resources.
"""

from setuptools import find_packages, setup

# package name -> folder: the suite definitions and the baseline configs and policies
DATA_PACKAGES = {
    "ganno_bench.suite_files": "envs",
    "ganno_bench.suite_files.instances": "envs/instances",
    "ganno_bench.suite_files.references": "envs/references",
    "ganno_bench.baseline_files": "baselines",
    "ganno_bench.baseline_files.ppo": "baselines/ppo",
}



def packages() -> list[str]:
    """Every code package under ganno_bench/, then the data packages."""
    return find_packages(include=["ganno_bench", "ganno_bench.*"]) + list(DATA_PACKAGES)


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import it
    setup(packages=packages(), package_dir=DATA_PACKAGES)
