"""The probed kNN graph's products in 8-bit integers, with an exact float rerank (:func:`analyzer.index.probed_search`).

Comparing every query with every row of the inverted lists it probes is the kNN graph's largest cost: at 1M
requests 5.5 billion query-row pairs, about 36 s of float32 BLAS on two cores. Here the rows and queries are
rounded to 8-bit integers and each list is compared with its queries in one integer matrix product
(onnxruntime's ``MatMulInteger``, which uses the CPU's VNNI dot products where it has them: 3-4 times the float
products' speed on this machine), keeping each query's best :data:`CANDIDATES_PER_NEIGHBOUR` ``x k`` rows by
integer score. Those few candidates are then compared again as float vectors and the best ``k`` kept, so every
similarity in the graph is exact; only which rows are neighbours can differ from the float search, where a row
and one the integers ranked just above it lie within the rounding of each other (on the 1M scale workspace 98.7%
of rows have the same 16 neighbours and 99.89% of neighbours are the same; a row's sorted similarities differ
from the float search's by 0.003 at most).

Rounding. Each dimension of the rows is scaled by 127 over the largest absolute value the rows take in it; a
query is divided by those scales (which leaves its inner products with the rows as they were, up to one factor)
and scaled by 127 over its own largest value, then offset by 128 into unsigned bytes (``MatMulInteger``'s zero
point takes the offset out). A query's integer scores are one positive factor times its inner products with
the rows plus rounding, so they rank the rows of every list it probes on one scale.

Where onnxruntime cannot run the product or gets it wrong (checked once per process against NumPy on the
extremes of the ranges, where a non-VNNI kernel's 16-bit sums would saturate), :func:`int8_products` is
``None`` and the graph keeps its float products.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

#: Candidates kept per neighbour asked for, by integer score, before the float rerank: a neighbour is lost only
#: where more than this many times ``k`` rows tie with it within the rounding (2: 98.7% of the 1M scale
#: workspace's rows keep the float search's 16 neighbours exactly, 99.89% of neighbours are the same).
CANDIDATES_PER_NEIGHBOUR = 2
#: Query-row scores one integer product computes at most (int32: 4 MiB, about a core's cache, where the
#: candidates' heap reads them back): the queries probing a long list are compared with it a part at a time (one
#: list of 5,000 rows probed by 50,000 queries would be 1 GB of scores). At 1M requests 2^20 and 2^23 scores gave
#: the same graph in 19.3-19.8 s and 18.2-22.6 s, the process's peak 2,148-2,158 and 2,232-2,233 MiB.
SCORES_PER_PRODUCT = 1 << 20
#: The zero point of the queries' unsigned bytes.
QUERY_OFFSET = 128


#: Rows whose largest absolute value per dimension :func:`dimension_scales` reads at once (a float copy of the
#: whole database would be its size again).
SCALE_BLOCK = 1 << 16


def dimension_scales(database: np.ndarray) -> np.ndarray:
    """Each dimension's scale onto -127..127: 127 over the largest absolute value ``database`` (float rows) takes
    in it, read :data:`SCALE_BLOCK` rows at a time."""
    d = database.shape[1]
    top = np.zeros(d, dtype=np.float32)
    for start in range(0, len(database), SCALE_BLOCK):
        np.maximum(top, np.abs(np.asarray(database[start : start + SCALE_BLOCK], dtype=np.float32)).max(axis=0),
                   out=top)
    if not len(database):
        top[:] = 1.0
    return (127.0 / np.maximum(top, 1e-12)).astype(np.float32)


@dataclass
class Int8Lists:
    """A kNN graph's database as 8-bit integers, list by list: each dimension's ``scale`` (``d`` float32: code =
    round(value x scale)), and for each inverted list its ``rows`` (positions in the database) and their codes
    transposed, ``codes_t`` (``d x len(rows)`` int8, C-contiguous: the right-hand side of :func:`int8_products`).

    Made once for every block of queries of a graph: rounding and gathering a list's rows for each block again
    took 2.8 s of the 1M scale workspace's graph (six blocks), finding its rows' positions 2.6 s."""

    scale: np.ndarray
    rows: list[np.ndarray]
    codes_t: list[np.ndarray]

    @classmethod
    def of(cls, database: np.ndarray, list_rows: Sequence[np.ndarray]) -> Int8Lists:
        """Round ``database`` (float rows) dimension by dimension onto -127..127, the rows of each of ``list_rows``
        (positions in ``database``) together."""
        scale = dimension_scales(database)
        d = database.shape[1]
        codes_t = [np.ascontiguousarray(_round_rows(np.asarray(database[rows], dtype=np.float32), scale).T)
                   if len(rows) else np.empty((d, 0), dtype=np.int8) for rows in list_rows]
        return cls(scale, list(list_rows), codes_t)

    def queries(self, queries: np.ndarray) -> np.ndarray:
        """``queries`` as unsigned bytes for :func:`int8_products` (offset :data:`QUERY_OFFSET`): divided by the
        rows' scales, then each scaled by 127 over its own largest absolute value."""
        return _round_queries(np.asarray(queries, dtype=np.float32), self.scale)


@numba.njit(parallel=True, cache=True)
def _round_rows(x: np.ndarray, scale: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n, d = x.shape
    out = np.empty((n, d), dtype=np.int8)
    for i in numba.prange(n):
        for j in range(d):
            out[i, j] = np.int8(min(127.0, max(-127.0, np.rint(x[i, j] * scale[j]))))
    return out


# The functions below run in the kNN graph's worker threads, each on its own block of queries (see
# :func:`analyzer.index.knn_graph`): compiled without parallel loops (a parallel region started from two threads
# at once is not safe with every threading layer of Numba) and without the GIL.
@numba.njit(nogil=True, cache=True)
def _round_queries(q: np.ndarray, scale: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n, d = q.shape
    out = np.empty((n, d), dtype=np.uint8)
    for i in range(n):
        top = 0.0
        for j in range(d):
            top = max(top, abs(q[i, j] / scale[j]))
        f = 127.0 / top if top > 0 else 0.0
        for j in range(d):
            out[i, j] = np.uint8(min(127.0, max(-127.0, np.rint(q[i, j] / scale[j] * f))) + QUERY_OFFSET)
    return out


@numba.njit(nogil=True, cache=True)
def push_candidates(scores: np.ndarray, asking: np.ndarray, rows: np.ndarray, best: np.ndarray,
                    best_rows: np.ndarray) -> None:  # pragma: no cover - compiled
    """Offer row ``rows[j]`` with score ``scores[a, j]`` to query ``asking[a]``'s candidates: ``best`` /
    ``best_rows`` (``n_queries x c``) hold each query's ``c`` best scores so far as a min-heap (the lowest at 0)."""
    m, n = scores.shape
    c = best.shape[1]
    for a in range(m):
        q = asking[a]
        vals = best[q]
        ids = best_rows[q]
        low = vals[0]
        for j in range(n):
            v = scores[a, j]
            if v > low:  # replace the lowest and sift it down
                i = 0
                while True:
                    left = 2 * i + 1
                    if left >= c:
                        break
                    right = left + 1
                    child = left if right >= c or vals[left] <= vals[right] else right
                    if vals[child] >= v:
                        break
                    vals[i] = vals[child]
                    ids[i] = ids[child]
                    i = child
                vals[i] = v
                ids[i] = rows[j]
                low = vals[0]


@numba.njit(nogil=True, cache=True, fastmath=True)
def rerank(queries: np.ndarray, database: np.ndarray, candidates: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Each query's best ``k`` of its ``candidates`` (row numbers of ``database``, -1 for none) by float inner
    product: ``(similarities, rows)``, best first, -inf / -1 where there are fewer."""
    nq, c = candidates.shape
    d = queries.shape[1]
    sims = np.full((nq, k), -np.inf, dtype=np.float32)
    found = np.full((nq, k), -1, dtype=np.int64)
    for qi in range(nq):
        s = np.full(c, -np.inf, dtype=np.float32)
        for t in range(c):
            r = candidates[qi, t]
            if r >= 0:
                acc = np.float32(0.0)
                for j in range(d):
                    acc += queries[qi, j] * database[r, j]
                s[t] = acc
        order = np.argsort(-s, kind="mergesort")
        for t in range(min(k, c)):
            if candidates[qi, order[t]] >= 0:
                sims[qi, t] = s[order[t]]
                found[qi, t] = candidates[qi, order[t]]
    return sims, found


class _Products:
    """``MatMulInteger`` of unsigned-byte queries (zero point :data:`QUERY_OFFSET`) and int8 rows, in one
    onnxruntime session."""

    def __init__(self, threads: int) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["queries", "rows_t", "offset"], ["scores"])], "int8_lists",
            [helper.make_tensor_value_info("queries", TensorProto.UINT8, [None, None]),
             helper.make_tensor_value_info("rows_t", TensorProto.INT8, [None, None]),
             helper.make_tensor_value_info("offset", TensorProto.UINT8, [])],
            [helper.make_tensor_value_info("scores", TensorProto.INT32, [None, None])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy waits between lists
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self._offset = np.array(QUERY_OFFSET, dtype=np.uint8)

    def __call__(self, queries: np.ndarray, rows_t: np.ndarray) -> np.ndarray:
        """``(m x n)`` int32 scores of ``queries`` (``m x d`` uint8) with the rows ``rows_t`` (transposed: ``d x n``
        int8, C-contiguous; a list's rows are transposed once for all the parts of its queries)."""
        return self._session.run(None, {"queries": queries, "rows_t": rows_t, "offset": self._offset})[0]


@functools.cache
def int8_products(threads: int) -> Any:
    """The integer product of :class:`_Products` for ``threads`` threads, or ``None`` where onnxruntime cannot
    run it or its result differs from NumPy's on the extremes of the ranges (then the graph keeps float
    products)."""
    try:
        products = _Products(threads)
        rng = np.random.default_rng(0)
        q = rng.integers(0, 256, size=(37, 64), dtype=np.uint8)
        q[0] = 255  # the largest pairs, where 16-bit intermediate sums would saturate
        q[1] = 1
        r = rng.integers(-127, 128, size=(29, 64), dtype=np.int8)
        r[0] = 127
        r[1] = -127
        want = (q.astype(np.int64) - QUERY_OFFSET) @ r.astype(np.int64).T
        if not np.array_equal(products(q, np.ascontiguousarray(r.T)), want):
            return None
        return products
    except Exception:  # noqa: BLE001 - any failure means: no integer products here, float ones instead
        return None
