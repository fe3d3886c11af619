"""A set of 64-bit keys held as a few sorted arrays: what lets the ingest skip its duplicate check.

The ingest must not store a request id twice. Checked in SQL, every batch of new requests was anti-joined
against every stored id (and every new prompt against every stored prompt), so each batch cost more than the
last: 0.18 s per 50k-row batch at the start of a 2M ingest, 0.31 s at its end, about 4 minutes in all at 16M.
A :class:`KeySet64` of the stored ids' 64-bit hashes answers "might any of these be stored already?" in
memory (8 bytes per key); only a batch with a hit (a real duplicate, or a hash collision, about one in 10^9 per
batch at 16M keys) pays for the exact check in SQL. A key set that holds more keys than the table (rows rolled
back after they were added) is still correct: it only sends more batches to the exact check.

The keys sit in sorted runs of halving sizes (a log-structured merge): adding a batch sorts the batch and merges
it into the runs no more than twice its size, so adding N keys costs O(N log N) in all, and a look-up is one
binary search per run (O(log N) runs).
"""

from __future__ import annotations

import numpy as np


class KeySet64:
    """A set of unsigned 64-bit keys: :meth:`add` a batch, ask which of a batch :meth:`contains`."""

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._runs: list[np.ndarray] = []
        if keys is not None and len(keys):
            self.add(keys)

    def __len__(self) -> int:
        """Keys held, counting a key added in two batches twice (until their runs merge)."""
        return sum(len(r) for r in self._runs)

    def add(self, keys: np.ndarray) -> None:
        """Add ``keys`` (any order, repeats allowed)."""
        run = np.unique(np.asarray(keys, dtype=np.uint64))
        if not len(run):
            return
        # Merge while the newest stored run is no more than twice the size of what is being added: run sizes
        # then at least double from newest to oldest, so there are at most log2(N) of them.
        while self._runs and len(self._runs[-1]) <= 2 * len(run):
            run = np.union1d(self._runs.pop(), run)
        self._runs.append(run)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """A boolean array: whether each of ``keys`` is in the set."""
        keys = np.asarray(keys, dtype=np.uint64)
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, keys)
            pos[pos == len(run)] = len(run) - 1
            found |= run[pos] == keys
        return found
