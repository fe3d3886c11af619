"""analyzer.retry: retried while the failure is passing and waits are left, else the failure propagates."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from itertools import islice

import duckdb
import pytest

from analyzer.retry import Backoff, retry
from analyzer.workspace import Workspace, WorkspaceBusy


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_passing_failures_are_retried_after_each_wait() -> None:
    slept: list[float] = []
    fn = Flaky([OSError("locked"), OSError("locked")])
    assert retry(fn, lambda e: isinstance(e, OSError), [0.1, 0.2, 0.3], sleep=slept.append) == "ok"
    assert fn.calls == 3
    assert slept == [0.1, 0.2]


def test_other_failures_and_the_last_one_propagate() -> None:
    slept: list[float] = []
    with pytest.raises(ValueError):
        retry(Flaky([ValueError("bad")]), lambda e: isinstance(e, OSError), [0.1], sleep=slept.append)
    assert slept == []
    fn = Flaky([OSError("1"), OSError("2"), OSError("3")])
    with pytest.raises(OSError, match="2"):
        retry(fn, lambda e: True, [0.5], sleep=slept.append)
    assert fn.calls == 2
    assert slept == [0.5]


def test_backoff_doubles_up_to_the_cap_within_the_budget() -> None:
    waits = list(islice(Backoff(first_s=0.05, factor=2.0, max_s=0.5, total_s=1000.0).waits(), 7))
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert list(Backoff(first_s=1.0, total_s=0.5).waits()) == []  # the first wait would overrun the budget
    assert sum(Backoff().waits()) <= Backoff().total_s


def _hold(db: str, seconds: float) -> subprocess.Popen:
    """Another process that opens ``db`` for writing (DuckDB's file lock) for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({db!r})
        print("ready", flush=True)
        time.sleep({seconds})
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


@pytest.fixture
def counted_connect(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = duckdb.connect

    def connect(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", connect)
    return calls


def test_workspace_open_waits_for_a_briefly_held_database(tmp_path, counted_connect: list[int]) -> None:
    Workspace(str(tmp_path / "ws"), create=True).close()
    holder = _hold(str(tmp_path / "ws" / "analyzer.duckdb"), 0.5)
    try:
        counted_connect[0] = 0
        ws = Workspace(str(tmp_path / "ws"), read_only=True)
        assert ws.db.execute("SELECT 1").fetchall() == [(1,)]
        assert counted_connect[0] >= 2  # refused while held, opened once free
        ws.close()
    finally:
        holder.kill()
        holder.wait()


def test_workspace_open_gives_up_on_a_database_held_for_long(tmp_path, counted_connect: list[int]) -> None:
    Workspace(str(tmp_path / "ws"), create=True).close()
    holder = _hold(str(tmp_path / "ws" / "analyzer.duckdb"), 60)
    try:
        counted_connect[0] = 0
        with pytest.raises(WorkspaceBusy, match="in use"):
            Workspace(str(tmp_path / "ws"), read_only=True)
        assert counted_connect[0] >= 3  # retried along the backoff before giving up
    finally:
        holder.kill()
        holder.wait()
