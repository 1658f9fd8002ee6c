"""environment.yml (conda users) lists the same dependencies as pyproject.toml (pip users)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# conda-forge names of PyPI packages where they differ
CONDA_NAME = {"torch": "pytorch", "soundfile": "pysoundfile", "matplotlib": "matplotlib-base",
              "snakemake": "snakemake-minimal"}


def _split(spec: str) -> tuple[str, str]:
    name, version = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", spec.strip()).groups()  # type: ignore[union-attr]
    return name.lower(), version.replace(" ", "")


def test_environment_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = dict(_split(s) for s in project["dependencies"] + extras["test"] + extras["hpc"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip")))
    expected = {CONDA_NAME.get(name, name): version for name, version in wanted.items()}
    assert conda == expected
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_part == ["-e ."]
