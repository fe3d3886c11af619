"""``analyzer.executor.process_map``: pure-Python work in worker processes, results in input order; and
``thread_map``, the same on threads of this process."""

from __future__ import annotations

import os
import threading
import time

import pytest

from analyzer.executor import TASKS_AHEAD_PER_WORKER, process_map, thread_map


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def _fails_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x


def test_process_map_runs_in_other_processes_and_keeps_the_input_order():
    n = 5 * TASKS_AHEAD_PER_WORKER * 2 + 3  # more tasks than are handed out ahead
    out = process_map(_pid_and_square, list(range(n)), 2)
    assert [sq for _, sq in out] == [x * x for x in range(n)]
    pids = {pid for pid, _ in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    # one worker, or one task: in this process
    assert {pid for pid, _ in process_map(_pid_and_square, [1, 2, 3], 1)} == {os.getpid()}
    assert process_map(_pid_and_square, [4], 2) == [(os.getpid(), 16)]
    assert process_map(_pid_and_square, [], 2) == []


def test_process_map_raises_a_tasks_error_here():
    with pytest.raises(ValueError, match="seven"):
        process_map(_fails_on_seven, list(range(12)), 2)


def test_thread_map_keeps_the_input_order_holds_few_tasks_ahead_and_raises_a_tasks_error():
    """Tasks that finish out of order come back in input order; no more than ``TASKS_AHEAD_PER_WORKER`` per
    worker are handed out ahead of the results taken; one worker (or one task) runs here, lazily."""
    started: list[int] = []
    lock = threading.Lock()

    def slow_first(x: int) -> tuple[str, int]:
        with lock:
            started.append(x)
        time.sleep(0.02 if x % 3 == 0 else 0.0)
        return threading.current_thread().name, x * x

    n = 3 * TASKS_AHEAD_PER_WORKER * 2 + 1
    results = thread_map(slow_first, list(range(n)), 2)
    name, first = next(results)
    assert first == 0 and len(started) <= TASKS_AHEAD_PER_WORKER * 2 + 1  # handed out ahead, not all at once
    out = [first] + [sq for _, sq in results]
    assert out == [x * x for x in range(n)]
    assert name != threading.current_thread().name  # on a worker thread
    here = threading.current_thread().name
    assert {t for t, _ in thread_map(slow_first, [1, 2, 3], 1)} == {here}
    assert list(thread_map(slow_first, [4], 2)) == [(here, 16)]
    with pytest.raises(ValueError, match="seven"):
        list(thread_map(_fails_on_seven, list(range(12)), 2))
