"""Independent tasks in worker processes, each library in them on one thread.

Used where a stage's work splits into pieces that do not talk to each other (the report's thumbnails and
clips, the evaluation's bootstrap, few-label draws and propagation candidates). Workers are spawned, not
forked (nothing is copied from a process that holds threads), with the thread-count variables set to 1 while
they start, so N workers use N cores, as many as the rule was given. ``workers=1`` runs the tasks here, in
order, with no pool; results always come back in task order, so the outputs do not depend on the count.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

# thread counts of the numeric libraries a worker may load (BLAS, OpenMP, numba, numexpr): one each
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")
Task = tuple[Callable[..., Any], tuple[Any, ...]]
_shared: list[ProcessPoolExecutor] = []  # the pool of an open shared_workers block, if any


def _start_worker(level: int, log_format: str | None) -> None:
    """A worker's start: the caller's logging (its level and format, to the same stderr, so a worker's warnings
    land in the rule's log like the caller's); torch (if the main module brought it in) on one thread, the
    other libraries read the environment."""
    if log_format is not None:
        logging.basicConfig(level=level, format=log_format, stream=sys.stderr)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@contextmanager
def single_threaded_env() -> Iterator[None]:
    """The thread-count variables set to 1 while workers start (a spawned process copies the environment)."""
    saved = {name: os.environ.get(name) for name in ONE_THREAD}
    os.environ.update(dict.fromkeys(ONE_THREAD, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _pool(workers: int) -> ProcessPoolExecutor:
    handler = next(iter(logging.root.handlers), None)
    log_format = getattr(handler.formatter, "_fmt", None) if handler is not None and handler.formatter else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(logging.root.level, log_format))


@contextmanager
def shared_workers(workers: int) -> Iterator[None]:
    """Every :func:`run_tasks` call inside the block (with more than one worker) uses one pool of ``workers``
    processes, so a stage that runs several rounds of tasks starts (and imports into) its workers once."""
    if workers <= 1 or _shared:
        yield
        return
    pool = _pool(workers)
    _shared.append(pool)
    try:
        yield
    finally:
        _shared.remove(pool)
        pool.shutdown(cancel_futures=True)


class Pending:
    """Tasks handed to :func:`submit_tasks`: running in the pool while the caller does other work, or (one
    worker) waiting to run here, in order, when :meth:`results` is asked for."""

    def __init__(self, tasks: Sequence[Task], futures: list[Future] | None, own: ProcessPoolExecutor | None):
        self._tasks, self._futures, self._own = tasks, futures, own

    def results(self) -> list[Any]:
        """Each task's ``function(*args)``, in task order; the first failure cancels the tasks not yet started
        and is raised."""
        if self._futures is None:
            return [function(*args) for function, args in self._tasks]
        try:
            return [future.result() for future in self._futures]
        except BaseException:
            for future in self._futures:
                future.cancel()
            raise
        finally:
            if self._own is not None:
                self._own.shutdown(cancel_futures=True)


def submit_tasks(tasks: Sequence[Task], workers: int) -> Pending:
    """Start ``tasks`` (``(function, args)``, functions importable: module level) and return at once.
    ``workers=1`` (or a single task outside a :func:`shared_workers` block): nothing starts,
    :meth:`Pending.results` runs them here, in order; else a pool of at most ``workers`` spawned processes (the
    open block's, or one of its own, never more than there are tasks) works on them while the caller goes on."""
    if workers <= 1 or (len(tasks) <= 1 and not _shared):
        return Pending(tasks, None, None)
    own = None if _shared else _pool(min(workers, len(tasks)))
    pool = own or _shared[0]
    with single_threaded_env():  # workers are started as tasks are submitted
        futures = [pool.submit(function, *args) for function, args in tasks]
    return Pending(tasks, futures, own)


def run_tasks(tasks: Sequence[Task], workers: int) -> list[Any]:
    """Each task's ``function(*args)``, in task order, as :func:`submit_tasks` runs them, waited for."""
    return submit_tasks(tasks, workers).results()
