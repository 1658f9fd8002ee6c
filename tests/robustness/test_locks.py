"""Stale Snakemake locks of a killed run are removed; a live run's never are (quagga.locks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from quagga.locks import RUNS_FILE, clear_stale_locks


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lock(meta: Path) -> Path:
    (meta / "locks").mkdir(parents=True, exist_ok=True)
    lock = meta / "locks" / "0.output.lock"
    lock.write_text("results/x\n")
    return lock


def test_locks_of_an_ended_run_are_removed(tmp_path: Path) -> None:
    meta = tmp_path / ".snakemake"
    dead = _dead_pid()
    assert clear_stale_locks(meta, pid=dead) == []  # the killed run starts, notes itself
    lock = _lock(meta)  # ... locks, and is killed
    removed = clear_stale_locks(meta)  # the rerun
    assert [r["pid"] for r in removed] == [dead] and not lock.exists()


def test_locks_of_a_live_run_are_kept(tmp_path: Path) -> None:
    meta = tmp_path / ".snakemake"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as live:
        try:
            clear_stale_locks(meta, pid=live.pid)
            lock = _lock(meta)
            assert clear_stale_locks(meta) == [] and lock.exists()  # a second run must get snakemake's error
        finally:
            live.kill()


def test_locks_not_made_by_a_noted_run_are_kept(tmp_path: Path) -> None:
    """Without a note of who locked (an older quagga, another tool), nothing is removed."""
    meta = tmp_path / ".snakemake"
    lock = _lock(meta)
    assert clear_stale_locks(meta) == [] and lock.exists()
    # runs on another host cannot be checked: their locks stay too
    (meta / RUNS_FILE).write_text(json.dumps([{"host": "elsewhere", "pid": _dead_pid()}]))
    assert clear_stale_locks(meta) == [] and lock.exists()
