"""The ingest's duplicate check through the stored keys' hashes (:mod:`analyzer.keyset`): the key set answers
as a set would, and the workspace stores each request id and prompt once whatever its key sets hold."""

from __future__ import annotations

import numpy as np

from analyzer.keyset import KeySet64
from analyzer.workspace import Discard, Workspace
from tests.test_robustness import _frame


def test_the_key_set_answers_as_a_set_does():
    rng = np.random.default_rng(3)
    keys, held = KeySet64(), set()
    assert not KeySet64().contains(np.array([0, 5], dtype=np.uint64)).any()
    for size in (1, 7, 50, 3, 400, 400, 2, 1000, 5, 60):
        # small values (so that batches repeat keys and each other) and the extremes of the type
        batch = np.concatenate([rng.integers(0, 3000, size=size, dtype=np.uint64),
                                np.array([0, 2**64 - 1], dtype=np.uint64)[: size % 3]])
        asked = rng.integers(0, 3000, size=500, dtype=np.uint64)
        asked = np.concatenate([asked, np.array([0, 2**64 - 1], dtype=np.uint64)])
        assert keys.contains(asked).tolist() == [int(k) in held for k in asked]
        keys.add(batch)
        held.update(int(k) for k in batch)
        sizes = [len(r) for r in keys._runs]
        assert all(a > 2 * b for a, b in zip(sizes, sizes[1:], strict=False)), sizes  # runs more than double
    assert set(np.concatenate(keys._runs).tolist()) == held  # nothing lost in the merges


def _counts(ws: Workspace) -> tuple[int, int, int, int]:
    return ws.db.execute("""SELECT (SELECT count(*) FROM requests), (SELECT count(DISTINCT request_id) FROM requests),
                                   (SELECT count(*) FROM prompts), (SELECT count(DISTINCT prompt_hash) FROM prompts)
                         """).fetchone()


def test_each_request_and_prompt_is_stored_once_whatever_the_key_sets_hold(tmp_path, monkeypatch):
    path = str(tmp_path / "ws")
    ws = Workspace(path, create=True)
    assert ws.add_requests(_frame(["r1", "r2"], ["a", "b"]), run_id=1) == (2, 0)
    ws.close()
    ws = Workspace(path)  # a new process: its key sets are read from the stored rows
    assert ws.add_requests(_frame(["r2", "r3", "r3"], ["b", "c", "c"]), run_id=2) == (1, 2)
    assert _counts(ws) == (3, 3, 3, 3)
    # a batch rolled back after its keys were added: those keys are not taken for stored ones
    with ws.transaction():
        assert ws.add_requests(_frame(["r4"], ["d"]), run_id=3) == (1, 0)
        raise Discard
    assert ws.add_requests(_frame(["r4"], ["d"]), run_id=3) == (1, 0)
    # a key set that finds every key (a hash collision everywhere) sends each batch to the exact check
    monkeypatch.setattr(KeySet64, "contains", lambda self, k: np.ones(len(k), dtype=bool))
    assert ws.add_requests(_frame(["r5", "r1"], ["e", "a"]), run_id=4) == (1, 1)
    monkeypatch.undo()
    # rows a key set has not seen (written by another connection): it is read again, not trusted
    # (empty sets, as if the rows came after them: their recorded row count is not the table's)
    ws._key_sets = {table: (n - 1, KeySet64()) for table, (n, _) in ws._key_sets.items()}
    assert ws.add_requests(_frame(["r5", "r6"], ["e", "f"]), run_id=5) == (1, 1)
    assert _counts(ws) == (6, 6, 6, 6)
    ws.close()
