"""Config mistakes stop the real workflow at start (`snakemake -n`: nothing runs), with the key, the
value and what is allowed; input paths are reported resolved."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from battery import CONFIG_CASES, SCHEMA_CASES, audio_dataset, snakemake, write_csv, write_good_recordings

pytestmark = pytest.mark.workflow


def _base() -> dict:
    return {"seed": 0, "datasets": {"a": audio_dataset("data/audio", "data/audio/calls.csv")}}


def _workdir(root: Path, config: dict | None, text: str | None = None) -> Path:
    rows = write_good_recordings(root / "data" / "audio", 1, 2)
    write_csv(root / "data" / "audio" / "calls.csv", rows)
    (root / "config").mkdir(exist_ok=True)
    (root / "config" / "config.yaml").write_text(text if text is not None else yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def schema_errors(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One config holding every schema mistake (one dataset each); the schema reports them all at once."""
    config = _base()
    for name in "bcdefg":
        config["datasets"][name] = copy.deepcopy(config["datasets"]["a"])
    for _, _, edit, _ in SCHEMA_CASES:
        edit(config)
    done = snakemake(_workdir(tmp_path_factory.mktemp("schema"), config), "-n")
    assert done.returncode != 0 and "quagga: invalid config:" in done.stderr
    assert "Building DAG" not in done.stderr  # stopped before planning any job
    return done.stderr


@pytest.mark.parametrize("case", [c[0] for c in SCHEMA_CASES])
def test_schema_mistake_is_named_at_start(schema_errors: str, case: str) -> None:
    expected = next(c[3] for c in SCHEMA_CASES if c[0] == case)
    assert f"  {expected}" in schema_errors, schema_errors[-3000:]


@pytest.mark.parametrize("case", [c[0] for c in CONFIG_CASES])
def test_config_mistake_stops_at_start(tmp_path: Path, case: str) -> None:
    _, _, edit, expected = next(c for c in CONFIG_CASES if c[0] == case)
    config = _base()
    if edit is None:  # broken YAML
        wd = _workdir(tmp_path, None, text=yaml.safe_dump(config) + "run_datasets: [a\n")
    else:
        edit(config)
        wd = _workdir(tmp_path, config)
    done = snakemake(wd, "-n")
    assert done.returncode != 0
    printed = done.stdout + done.stderr  # snakemake prints its own errors to stdout
    assert expected.replace("{workdir}", str(wd.resolve())) in printed, printed[-3000:]
    assert "Building DAG" not in printed
    assert not (wd / "results").exists()
