"""``analyzer.executor.process_map``: pure-Python work in worker processes, results in input order."""

from __future__ import annotations

import os

import pytest

from analyzer.executor import TASKS_AHEAD_PER_WORKER, process_map


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
