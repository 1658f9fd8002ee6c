"""The workflow on a real SLURM: the shipped profile submits every job with sbatch, and the results equal
a local run's. DDP training under ``srun`` with 2 CPU processes (gloo).

Needs a running SLURM (``sinfo`` answers, a node is up) and ``snakemake-executor-plugin-slurm``
(``pip install -e ".[hpc]"``); skipped otherwise. CI starts a one-node SLURM with
``../shared/tools/local-slurm/start.sh`` and sets ``QUAGGA_REQUIRE_SLURM=1``, which turns a skip into a
failure. That local SLURM has no accounting (``sacct`` does not work), so the profile polls ``squeue``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm"
DATASET = "demo-audio"
TARGET = f"results/{DATASET}/metrics.json"
# One CPU per job in both runs: torch then sums in the same order, and the two runs go side by side on
# 2 cores (the SLURM run spends much of its time waiting for squeue polls and job starts).
THREADS = 1


def _slurm_missing() -> str | None:
    for tool in ("sbatch", "squeue", "sinfo", "srun", "scontrol"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if not re.search(r"^(idle|mix|alloc)", states, flags=re.M):
        return f"no SLURM node is up (sinfo: {states.strip() or 'nothing'})"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return 'snakemake-executor-plugin-slurm is not installed (pip install -e ".[hpc]")'
    return None


_MISSING = _slurm_missing()
if _MISSING and os.environ.get("QUAGGA_REQUIRE_SLURM") == "1":
    raise RuntimeError(f"QUAGGA_REQUIRE_SLURM=1 but {_MISSING}")
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_MISSING is not None, reason=f"SLURM: {_MISSING}")]


def _env() -> dict[str, str]:
    # sbatch --export=ALL hands this PATH (the venv first) to the jobs
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _start(cmd: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return _finish(_start(cmd, cwd), timeout)


def _finish(proc: subprocess.Popen[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Wait for the end; past ``timeout`` stop it with SIGINT (Snakemake then scancels its SLURM jobs)."""
    cmd = proc.args
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"{cmd[:4]} ran past {timeout} s and was interrupted:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir), *args]


def _workdir(root: Path) -> Path:
    """The demo audio with tiny training (as tests/test_workflow.py), in a folder of its own."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["run_datasets"] = [DATASET]
    config["datasets"][DATASET]["train"] = {"max_epochs": 2, "batch_size": 32}
    config["datasets"][DATASET]["embed"] = {"epochs": 5}
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def _cpu_profile(dest: Path) -> Path:
    """The shipped SLURM profile with the edits a 2-CPU cluster without GPUs needs, and nothing else:
    no GPU request for training, and at most THREADS CPUs per job."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    profile["set-resources"]["train"].pop("gpu")
    profile["set-threads"] = {rule: min(n, THREADS) for rule, n in profile["set-threads"].items()}
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same tiny workflow twice, side by side: through SLURM with the shipped profile, and locally."""
    root = tmp_path_factory.mktemp("slurm")
    cluster, local = _workdir(root / "cluster"), _workdir(root / "local")
    profile = _cpu_profile(root / "profile")
    started = time.monotonic()
    on_slurm = _start(_snakemake_cmd(cluster, "--profile", str(profile), TARGET), cluster)
    try:
        done = _finish(_start(_snakemake_cmd(local, "--cores", str(THREADS), TARGET), local), timeout=1200)
    except BaseException:
        on_slurm.send_signal(signal.SIGINT)  # Snakemake cancels its SLURM jobs
        on_slurm.communicate(timeout=120)
        raise
    local_s = time.monotonic() - started
    if done.returncode != 0:
        on_slurm.send_signal(signal.SIGINT)
        on_slurm.communicate(timeout=120)
    assert done.returncode == 0, done.stdout[-4000:]
    done = _finish(on_slurm, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:]
    return {"local": local, "cluster": cluster, "log": done.stdout, "local_s": local_s,
            "cluster_s": time.monotonic() - started}


def test_every_job_went_through_slurm_and_small_jobs_were_grouped(runs: dict[str, object]) -> None:
    log = str(runs["log"])
    job_ids = re.findall(r"SLURM jobid (\d+)", log)
    # the run's own log file (the first; a later test runs Snakemake in the same folder again)
    logfile = sorted((Path(runs["cluster"]) / ".snakemake" / "log").glob("*.snakemake.log"))[0]  # type: ignore[arg-type]
    assert re.findall(r"SLURM jobid (\d+)", logfile.read_text()) == job_ids
    # 4 sbatch jobs for the 7 rules: demo_data, the tiles group, the model group (train, encode, embed)
    # and the post group (cluster, evaluate)
    assert len(job_ids) == 4, log[-3000:]
    for group in ("tiles", "model", "post"):
        assert f"Group job {group}" in log, log[-3000:]
    for job_id in job_ids:  # each id is a real SLURM job that finished (squeue keeps it for MinJobAge)
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in shown, shown
    print(f"SLURM job ids: {' '.join(job_ids)}; local {runs['local_s']:.0f} s, SLURM {runs['cluster_s']:.0f} s")


def test_slurm_results_equal_the_local_run(runs: dict[str, object]) -> None:
    local, cluster = Path(runs["local"]), Path(runs["cluster"])  # type: ignore[arg-type]
    expected = json.loads((local / TARGET).read_text())
    got = json.loads((cluster / TARGET).read_text())
    assert got == expected
    assert got["n_items"] > 50 and got["n_clusters"] >= 2
    # the latents too: bit for bit the same training
    import pandas as pd

    a = pd.read_parquet(local / "results" / DATASET / "latents.parquet")
    b = pd.read_parquet(cluster / "results" / DATASET / "latents.parquet")
    z = [c for c in a.columns if c.startswith("z_")]
    np.testing.assert_array_equal(a[z].to_numpy(), b[z].to_numpy())


def _tiny_store(path: Path, n: int = 64, size: int = 32) -> Path:
    from quagga.tiles.store import TileItem, write_store

    rng = np.random.default_rng(0)
    items = [TileItem(f"item{i:03d}", rng.uniform(0, 1, (size, size)).astype(np.float32), {"label": str(i % 2)})
             for i in range(n)]
    write_store(path, items, {"tile_size": size, "kind": "synthetic", "version": 1}, "synthetic")
    return path


@pytest.mark.slow
def test_ddp_training_with_two_cpu_processes_under_srun(tmp_path: Path) -> None:
    """Lightning DDP as a SLURM job launches it: one task per device (``--ntasks-per-node`` = ``devices``),
    each task a rank (SLURMEnvironment), gloo on CPU. Each rank sees half the batches; rank 0 writes."""
    import torch

    store = _tiny_store(tmp_path / "tiles")
    params = {"devices": 2, "accelerator": "cpu", "precision": "32-true", "max_epochs": 2, "batch_size": 8,
              "base_channels": 4, "depth": 3, "latent_dim": 4, "val_fraction": 0.25, "seed": 0}
    out = tmp_path / "model"
    cmd = ["srun", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--job-name=quagga-ddp-smoke",
           sys.executable, "-m", "quagga", "train", "--tiles", str(store), "--params", json.dumps(params),
           "--out", str(out)]
    started = time.monotonic()
    done = _run(cmd, tmp_path, timeout=600)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:]
    for rank in (0, 1):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in done.stdout, done.stdout[-3000:]
        assert f"DDPStrategy rank {rank} of 2 (SLURMEnvironment)" in done.stdout, done.stdout[-3000:]
    written = json.loads((out / "params.json").read_text())
    assert written["world_size"] == 2 and written["epochs"] == 2
    # 48 training tiles: 24 per rank, 3 batches of 8 per epoch (one process would take 6)
    assert written["n_train"] == 48
    checkpoint = torch.load(out / "vae.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2 * 3
    curve = np.loadtxt(out / "metrics.csv", delimiter=",", skiprows=1, usecols=(1, 2))
    assert curve.shape == (2, 2) and np.isfinite(curve).all()
    print(f"DDP smoke (2 ranks, gloo, srun): {took:.1f} s")


@pytest.mark.slow
def test_ddp_training_through_the_profile(runs: dict[str, object], tmp_path: Path) -> None:
    """What the README tells a user to set for N GPUs, with 2 CPU processes: the train rule becomes one
    SLURM job with 2 tasks (--ntasks-per-node=2) whose command starts with `srun`, and trains 2 ranks."""
    cluster = Path(runs["cluster"])  # type: ignore[arg-type]
    config_path = cluster / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    # batch_size differs from the first run's, so training starts afresh instead of resuming
    config["datasets"][DATASET]["train"] = {"max_epochs": 1, "batch_size": 16, "devices": 2, "accelerator": "cpu"}
    config_path.write_text(yaml.safe_dump(config))
    profile = _cpu_profile(tmp_path / "profile")
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    settings["set-resources"]["train"].update({"tasks_per_node": 2, "mpi": "srun --ntasks-per-node=2"})
    (profile / "config.yaml").write_text(yaml.safe_dump(settings))

    done = _run(_snakemake_cmd(cluster, "--profile", str(profile), f"results/{DATASET}/models/vae.ckpt"),
                cluster, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "srun --ntasks-per-node=2 python -m quagga train" in done.stdout
    (job_id,) = re.findall(r"SLURM jobid (\d+)", done.stdout)
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "JobState=COMPLETED" in shown and "NumTasks=2" in shown, shown
    train_log = (cluster / "results" / "logs" / "train" / f"{DATASET}.log").read_text()
    for rank in (0, 1):
        assert f"DDPStrategy rank {rank} of 2 (SLURMEnvironment)" in train_log, train_log[-3000:]
    written = json.loads((cluster / "results" / DATASET / "models" / "params.json").read_text())
    assert written["world_size"] == 2 and written["epochs"] == 1 and written["resumed_from"] is None
