"""Stale Snakemake locks: resume after kill -9 or a power loss with the plain run command.

Snakemake locks the working directory while it runs (``.snakemake/locks``). A run killed outright cannot
remove its locks, and the next run would refuse to start until ``snakemake --unlock``. So each run notes
its host and process id in ``.snakemake/quagga-runs.json`` when the workflow is read; the locks are
removed only when every run noted on this host has ended and none was noted on another host. A live
run's locks are never touched, so two runs still cannot work in one folder at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

RUNS_FILE = "quagga-runs.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clear_stale_locks(meta_dir: str | Path = ".snakemake", pid: int | None = None) -> list[dict]:
    """Note this run (``pid``, default this process); remove the locks if every noted run has ended.

    Returns the ended runs whose locks were removed (empty when nothing was removed).
    """
    meta = Path(meta_dir)
    meta.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    with open(meta / f"{RUNS_FILE}.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # two runs starting at once must not lose each other's note
        runs_path = meta / RUNS_FILE
        try:
            runs = json.loads(runs_path.read_text())
        except (OSError, ValueError):
            runs = None
        locks = [p for p in (meta / "locks").glob("*.lock")] if (meta / "locks").is_dir() else []
        noted = runs or []
        live = [r for r in noted if r.get("host") != host or _alive(int(r.get("pid", 0)))]
        removed: list[dict] = []
        if runs is not None and locks and not live:  # only runs we know of could hold them, and all ended
            for lock in locks:
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
            removed = noted
        live.append({"host": host, "pid": pid or os.getpid()})
        tmp = runs_path.with_name(f".{RUNS_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(live))
        os.replace(tmp, runs_path)
    return removed
