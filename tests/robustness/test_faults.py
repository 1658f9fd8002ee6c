"""Faults: kill -9 the workflow during tiling, training and encoding, then rerun the README's command;
a full disk during a write. The rerun must finish with the results of an uninterrupted run, and no step
may ever take a partial output for a finished one."""

from __future__ import annotations

import json
import re
import resource
import signal
import time
from pathlib import Path

import pytest
import torch
from battery import run_and_kill, snakemake
from conftest import CLEAN, assert_same_results, clean_workdir, leftovers

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def _results(wd: Path) -> Path:
    return wd / "results" / CLEAN


def test_kill_during_tiling_then_rerun(tmp_path: Path, clean_data: Path, reference_run: Path) -> None:
    wd = clean_workdir(tmp_path, clean_data)
    partial = _results(wd)

    def tiling() -> bool:  # the store is being written under its temporary name
        return any(partial.glob("tiles.tmp-*")) if partial.is_dir() else False

    rc, printed = run_and_kill(wd, tiling)
    assert rc == -signal.SIGKILL
    assert not (partial / "tiles").exists(), "a killed tiling left a store that looks finished"
    assert any(partial.glob("tiles.tmp-*"))  # the partial store is under a name no step reads
    done = snakemake(wd)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "partial store of an interrupted run" in (wd / "results/logs/tiles_audio/clean.log").read_text()
    assert leftovers(wd) == []
    assert_same_results(reference_run, wd)


def test_kill_during_training_then_rerun_resumes(tmp_path: Path, clean_data: Path, reference_run: Path) -> None:
    wd = clean_workdir(tmp_path, clean_data)
    last = _results(wd) / "models" / "checkpoints" / "last.ckpt"
    rc, printed = run_and_kill(wd, last.is_file)  # at least one epoch done, more to go
    assert rc == -signal.SIGKILL
    assert not (_results(wd) / "models" / "vae.ckpt").exists(), "training finished before the kill"
    killed_at = torch.load(last, weights_only=True)["epoch"]
    # snakemake marked the job's outputs incomplete; rerun-incomplete (default profile) redoes it
    assert any((wd / ".snakemake" / "incomplete").rglob("*"))
    done = snakemake(wd)
    assert done.returncode == 0, done.stderr[-4000:]
    info = json.loads((_results(wd) / "models" / "params.json").read_text())
    assert (wd / info["resumed_from"]).resolve() == last.resolve(), "the rerun started training over"
    assert killed_at < info["epochs"] - 1
    assert_same_results(reference_run, wd)
    assert leftovers(wd) == []


def test_kill_during_encoding_then_rerun(tmp_path: Path, clean_data: Path, reference_run: Path) -> None:
    wd = clean_workdir(tmp_path, clean_data)
    log = wd / "results" / "logs" / "encode" / f"{CLEAN}.log"
    seen: list[float] = []

    def encoding() -> bool:  # the encode job has started; give it a moment to be inside the model
        if not log.exists():
            return False
        seen.append(time.monotonic())
        return time.monotonic() - seen[0] > 1.0

    rc, printed = run_and_kill(wd, encoding)
    assert rc == -signal.SIGKILL
    assert (_results(wd) / "models" / "vae.ckpt").is_file()
    assert not (_results(wd) / "latents.parquet").exists()
    done = snakemake(wd)
    assert done.returncode == 0, done.stderr[-4000:]
    # a finished step is never redone for the kill (Snakemake would rerun it only for edited code, which
    # happens when the working tree is edited while this test runs)
    for reason in re.findall(r"rule (?:tiles_audio|train):.*?reason: ([^\n]*)", done.stdout + done.stderr, re.S):
        assert reason == "Code has changed since last execution", reason
    assert_same_results(reference_run, wd)
    assert leftovers(wd) == []


def _file_size_limit(nbytes: int):
    """preexec_fn: every file the workflow writes may grow to ``nbytes`` (a disk that fills up).

    Python ignores SIGXFSZ, so a write beyond the limit fails with OSError EFBIG, as ENOSPC would.
    """

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def test_disk_full_while_tiling_gives_a_clear_error_and_no_finished_output(tmp_path: Path, clean_data: Path) -> None:
    wd = clean_workdir(tmp_path, clean_data)
    done = snakemake(wd, preexec_fn=_file_size_limit(64 * 1024))  # the 70 tiles need 143 kB
    assert done.returncode != 0
    log = (wd / "results" / "logs" / "tiles_audio" / f"{CLEAN}.log").read_text()
    assert "disk full or file size limit reached while writing results/clean/tiles" in log, log[-2000:]
    assert "Traceback" not in log
    assert not (_results(wd) / "tiles").exists() and leftovers(wd) == []
    dry = snakemake(wd, "-n")
    assert "tiles_audio" in dry.stdout, "the failed step must still count as to do"


@pytest.mark.parametrize("stage", ["train", "encode", "evaluate", "report"])
def test_disk_full_in_later_writes_leaves_no_partial_file(tmp_path: Path, reference_run: Path, stage: str) -> None:
    """Checkpoints, latents + examples npz, metrics.json and the report page: a failed write leaves no
    file that a later step (or Snakemake) could take for a finished output."""
    import subprocess
    import sys

    res = reference_run / "results" / CLEAN
    out = tmp_path / "out"
    out.mkdir()
    commands = {
        "train": ["train", "--tiles", str(res / "tiles"), "--out", str(out), "--params",
                  json.dumps({"max_epochs": 2, "batch_size": 8, "base_channels": 4, "latent_dim": 4, "depth": 3})],
        "encode": ["encode", "--tiles", str(res / "tiles"), "--checkpoint", str(res / "models" / "vae.ckpt"),
                   "--out", str(out / "latents.parquet"), "--examples", str(out / "reconstructions.npz")],
        "evaluate": ["evaluate", "--tiles", str(res / "tiles"), "--clusters", str(res / "clusters.parquet"),
                     "--out", str(out / "metrics.json")],
        "report": ["report", "--dataset", CLEAN, "--results", str(res), "--params", "{}", "--out", str(out)],
    }
    limit = {"train": 20000, "encode": 1500, "evaluate": 500, "report": 20000}[stage]
    done = subprocess.run([sys.executable, "-m", "quagga", *commands[stage]], capture_output=True, text=True,
                          preexec_fn=_file_size_limit(limit), timeout=300)
    assert done.returncode != 0
    assert "disk full or file size limit" in done.stderr, done.stderr[-2000:]
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if stage == "train":  # the run's fingerprint and Lightning's raw logs only: no checkpoint, no vae.ckpt
        assert [w for w in written if w.endswith((".ckpt", ".csv")) and not w.startswith("logs/")] == [], written
        assert not any(".tmp" in w for w in written), written
    else:
        assert written == [], "a failed write left a file behind"
