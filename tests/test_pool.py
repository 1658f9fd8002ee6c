"""quagga.pool: tasks in spawned workers give what they give here, in order; a shared block starts one pool."""

from __future__ import annotations

import multiprocessing
import operator
from pathlib import Path
from typing import Any

import pytest

from quagga import pool


class _Counting(pool.ProcessPoolExecutor):
    made: list[int] = []

    def __init__(self, max_workers: int, **kwargs: Any):
        _Counting.made.append(max_workers)
        super().__init__(max_workers, **kwargs)


def test_workers_give_the_serial_results_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "ProcessPoolExecutor", _Counting)
    monkeypatch.setattr(_Counting, "made", [])
    tasks = [(operator.mul, (k, k)) for k in range(7)]
    assert pool.run_tasks(tasks, 1) == [k * k for k in range(7)] and _Counting.made == []  # here, no pool
    assert pool.run_tasks(tasks, 2) == [k * k for k in range(7)] and _Counting.made == [2]
    with pool.shared_workers(2):
        assert pool.run_tasks(tasks, 2) == pool.run_tasks(tasks[::-1], 2)[::-1]
        assert pool.run_tasks(tasks[:1], 2) == [0]
    assert _Counting.made == [2, 2]  # the block's two rounds shared one pool
    assert multiprocessing.active_children() == []  # and it is shut down at the end
    with pytest.raises(ZeroDivisionError):
        pool.run_tasks([(operator.truediv, (1, 0)), (operator.mul, (2, 2))], 2)


def test_submitted_tasks_give_their_results_when_asked(tmp_path: Path) -> None:
    marks = [tmp_path / f"{k}.done" for k in range(3)]
    pending = pool.submit_tasks([(Path.touch, (mark,)) for mark in marks], 1)
    assert not any(mark.exists() for mark in marks)  # one worker: they wait to run here, in order
    assert pending.results() == [None] * 3 and all(mark.exists() for mark in marks)
    pending = pool.submit_tasks([(operator.mul, (k, 3)) for k in range(5)], 2)
    assert multiprocessing.active_children()  # a pool works on them meanwhile
    assert pending.results() == [0, 3, 6, 9, 12]
    assert multiprocessing.active_children() == []  # its own pool is shut down once they are in
    with pool.shared_workers(2):
        first = pool.submit_tasks([(operator.mul, (k, 2)) for k in range(4)], 2)
        second = pool.submit_tasks([(operator.truediv, (1, 0))], 2)  # one task: to the block's pool as well
        assert first.results() == [0, 2, 4, 6] and len(multiprocessing.active_children()) == 2
        with pytest.raises(ZeroDivisionError):
            second.results()
