"""Index stage: a FAISS index over unique-prompt vectors, the all-points kNN graph, and search.

The index type is chosen by size: exact inner product (``Flat``) up to ``flat_max`` vectors, above that an
inverted file with 8-bit scalar quantisation (``IVF{nlist},SQ8``), which keeps recall near 0.9 for the kNN
graph at a quarter of the memory (see ``../shared/notes/scaling.md``). Vectors are L2-normalised, so inner
product is cosine similarity and Euclidean distance is ``sqrt(2 - 2 cos)``.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

from analyzer.atomic import atomic_path

FLAT_MAX = 60_000
TRAIN_POINTS_PER_LIST = 20


def ivf_lists(n: int) -> int:
    """Inverted lists of the IVF index for ``n`` vectors: ``4 sqrt(n)``, between 256 and 16,384."""
    return int(min(16384, max(256, 4 * np.sqrt(n))))


def index_kind(n: int, flat_max: int = FLAT_MAX) -> str:
    """The FAISS factory string used for ``n`` vectors."""
    if n <= flat_max:
        return "Flat"
    return f"IVF{ivf_lists(n)},SQ8"


def build_index(vectors: np.ndarray, flat_max: int = FLAT_MAX, seed: int = 0) -> faiss.Index:
    """Build an inner-product index over L2-normalised ``vectors`` (float32, shape ``(n, d)``)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    kind = index_kind(n, flat_max)
    index = faiss.index_factory(d, kind, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        ivf = faiss.extract_index_ivf(index)
        # k-means on 20 points per centroid: half FAISS's default sample, half the training time, and the same
        # kNN-graph recall (0.86 at nprobe 16 on the standard scenario's 91k prompts).
        ivf.cp.min_points_per_centroid = TRAIN_POINTS_PER_LIST
        sample = vectors[rng.choice(n, size=min(n, ivf.nlist * TRAIN_POINTS_PER_LIST), replace=False)]
        index.train(sample)
        ivf.nprobe = 16
    index.add(vectors)
    return index


def knn_graph(
    index: faiss.Index,
    vectors: np.ndarray,
    k: int = 15,
    batch: int = 8192,
    progress: Callable[[int], None] | None = None,
    ids: np.ndarray | None = None,
    copies: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(neighbours, similarities)``, each ``(n, k)``, for every vector, itself excluded; with ``ids``
    only for the rows ``ids`` of ``vectors`` (``vectors`` are the index's rows, in order).

    Missing neighbours (tiny inputs, IVF misses) are ``-1`` with similarity ``-inf``.

    ``copies``, if given, has one code per row; rows with the same code hold the same vector (copies of one
    text). Each distinct vector is then searched once and its result list serves all its copies, each
    dropping itself from it as a search of its own would: one search per distinct vector instead of one per
    row, and the same graph up to float rounding (FAISS's similarities for one vector can differ in the last
    bit with the batch it is searched in: on the 1M scaffold graph, 1 row of 108,653 had two neighbours
    swapped, 1.2e-6 apart).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows_all = np.arange(vectors.shape[0]) if ids is None else np.asarray(ids, dtype=np.int64)
    n = len(rows_all)
    k_eff = min(k + 1, vectors.shape[0])  # vectors are the index's rows
    nbrs = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    if copies is None:
        for start in range(0, n, batch):
            rows = rows_all[start : start + batch]
            s, i = index.search(vectors[rows], k_eff)
            _drop_self(nbrs, sims, start, rows, s, i, k)
            if progress is not None:
                progress(len(rows))
        return nbrs, sims
    if ids is not None:
        raise ValueError("knn_graph: 'copies' applies to the whole of 'vectors', not to 'ids'")
    _, first, group = np.unique(copies, return_index=True, return_inverse=True)
    found_s = np.empty((len(first), k_eff), dtype=np.float32)
    found_i = np.empty((len(first), k_eff), dtype=np.int64)
    for start in range(0, len(first), batch):
        q = vectors[first[start : start + batch]]
        found_s[start : start + len(q)], found_i[start : start + len(q)] = index.search(q, k_eff)
    for start in range(0, n, batch):
        g = group[start : start + batch]
        _drop_self(nbrs, sims, start, rows_all[start : start + len(g)], found_s[g], found_i[g], k)
        if progress is not None:
            progress(len(g))
    return nbrs, sims


def _drop_self(nbrs: np.ndarray, sims: np.ndarray, start: int, rows: np.ndarray, s: np.ndarray, i: np.ndarray,
               k: int) -> None:
    """Write the search results ``(s, i)`` of the index rows ``rows`` into ``nbrs``/``sims`` from position
    ``start`` on, without each row itself."""
    # Drop the query itself wherever it appears; keep the first k others, in order.
    keep = (i != rows[:, None]) & (i >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, order, axis=1)
    width = order.shape[1]
    nbrs[start : start + len(i), :width] = np.where(kept, np.take_along_axis(i, order, axis=1), -1)
    sims[start : start + len(i), :width] = np.where(kept, np.take_along_axis(s, order, axis=1), -np.inf)


def search(index: faiss.Index, queries: np.ndarray, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(similarities, ids)`` for each query vector."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def save_index(index: faiss.Index, path: str) -> None:
    """Write ``index`` atomically (see :func:`analyzer.atomic.atomic_path`)."""
    with atomic_path(path) as tmp:
        faiss.write_index(index, tmp)


def load_index(path: str) -> faiss.Index:
    """Read an index written by :func:`save_index` (FAISS's own format, no pickle)."""
    return faiss.read_index(path)
