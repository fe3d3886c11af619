"""Index stage: a FAISS index over unique-prompt vectors, the all-points kNN graph, and search.

The index type is chosen by size: exact inner product (``Flat``) up to ``flat_max`` vectors, above that an
inverted file with 8-bit scalar quantisation (``IVF{nlist},SQ8``), which keeps recall near 0.9 for the kNN
graph at a quarter of the memory (see ``../shared/notes/scaling.md``). The all-points kNN graph over an inverted
file is not searched query by query: each list is compared with every query that probes it in one matrix
product (:func:`probed_search`), of 8-bit integers where the CPU runs them (:mod:`analyzer.int8_lists`), each
query's best candidates then compared again as float vectors; the lists are rounded once and the queries searched
a block per thread (:func:`knn_graph`). Vectors are L2-normalised, so inner product is cosine similarity and
Euclidean distance is ``sqrt(2 - 2 cos)``.

A workspace's index is kept between runs (:func:`update_index`): its ids are **embedding row ids** (a vector's
shard and row, see :meth:`analyzer.workspace.Workspace.load_embedding_rows`; they never change), so a daily run
adds the day's new vectors to the saved inverted file instead of training it again on all history;
:class:`PositionIndex` answers searches with positions in the run's own (hash-ordered) rows. The quantiser is
trained again when the prompts have grown ``retrain_growth`` times since it was trained, or when asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd

from analyzer.atomic import atomic_path
from analyzer.checkpoints import checkpoint
from analyzer.exact_knn import drop_self
from analyzer.executor import thread_map
from analyzer.int8_lists import (
    CANDIDATES_PER_NEIGHBOUR,
    SCORES_PER_PRODUCT,
    Int8Lists,
    int8_products,
    push_candidates,
    rerank,
)

FLAT_MAX = 60_000
TRAIN_POINTS_PER_LIST = 20
#: Query rows searched at once by :func:`knn_graph` (and by every shard of a distributed graph: the same blocks).
KNN_BATCH = 8192
#: Query rows compared list by list at once by :func:`probed_search` in :func:`knn_graph`: the block's float and
#: 8-bit copies, candidates, probes and result, about 1.9 KB a query at 256 dimensions, k = 15, nprobe 16 (125 MB).
#: With integer products one block per thread is compared at once. At 1M requests the graph took 19-21 s in
#: blocks of 2^17, 2^18 or 2^19 queries one at a time, at 0.77, 0.96 and 1.43 GB over its inputs.
PROBED_QUERIES = 1 << 16
#: Rows whose nearest inverted lists :func:`nearest_lists` searches for at once (FAISS's results, held for one
#: block: 12 bytes a row and probe; what is kept is 4).
PROBE_BLOCK = 1 << 18
#: The probed kNN graph's products in 8-bit integers with a float rerank (:mod:`analyzer.int8_lists`: at 1M
#: requests 36 -> 16-21 s, exact similarities, 98.7% of rows with the same neighbours); ``False``: float products
#: throughout (the exact top ``k`` of the probed lists).
INTEGER_PRODUCTS = True


def ivf_lists(n: int) -> int:
    """Inverted lists of the IVF index for ``n`` vectors: ``4 sqrt(n)``, between 256 and 16,384."""
    return int(min(16384, max(256, 4 * np.sqrt(n))))


def index_kind(n: int, flat_max: int | None = None) -> str:
    """The FAISS factory string used for ``n`` vectors (exact up to ``flat_max``, default :data:`FLAT_MAX`)."""
    if n <= (FLAT_MAX if flat_max is None else flat_max):
        return "Flat"
    return f"IVF{ivf_lists(n)},SQ8"


def build_index(vectors: np.ndarray, flat_max: int | None = None, seed: int = 0, ids: np.ndarray | None = None
                ) -> faiss.Index:
    """Build an inner-product index over L2-normalised ``vectors`` (float32, shape ``(n, d)``); its search returns
    row positions in ``vectors``, or, with ``ids`` (int64, one per row), those ids."""
    return _build(vectors, flat_max, seed, ids, keep_probes=False)[0]


def build_index_and_probes(vectors: np.ndarray, flat_max: int | None = None, seed: int = 0,
                           ids: np.ndarray | None = None) -> tuple[faiss.Index, np.ndarray | None]:
    """:func:`build_index`, and each row's ``nprobe`` nearest inverted lists (:func:`nearest_lists`; ``None`` for an
    exact index), for the kNN graph over the same rows.

    Adding a row to an inverted file searches the coarse quantiser for its nearest list, and the kNN graph
    searches it again for the row's ``nprobe`` nearest (at 1M requests 5.9 and 7.1 s, ``n x nlist`` products
    each). Here one search answers both: each row goes into the first of its nearest lists, where FAISS's own
    ``add`` puts it."""
    return _build(vectors, flat_max, seed, ids, keep_probes=True)


def _build(vectors: np.ndarray, flat_max: int | None, seed: int, ids: np.ndarray | None, keep_probes: bool
           ) -> tuple[faiss.Index, np.ndarray | None]:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    kind = index_kind(n, flat_max)
    if ids is not None and kind == "Flat":
        kind = "IDMap,Flat"
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
    ivf = faiss.try_extract_index_ivf(index)
    if not keep_probes or ivf is None or n == 0:
        if ids is None:
            index.add(vectors)
        else:
            index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        return index, None
    probes = nearest_lists(ivf, vectors)
    first = np.ascontiguousarray(probes[:, 0], dtype=np.int64)
    xids = None if ids is None else np.ascontiguousarray(ids, dtype=np.int64)
    ivf.add_core(n, faiss.swig_ptr(vectors), None if xids is None else faiss.swig_ptr(xids), faiss.swig_ptr(first))
    return index, probes


def nearest_lists(ivf: faiss.IndexIVF, vectors: np.ndarray, block: int = PROBE_BLOCK) -> np.ndarray:
    """The ``nprobe`` inverted lists of ``ivf`` nearest to each of ``vectors`` (rows; ``int32``, nearest first), as
    the coarse quantiser's search finds them, :data:`PROBE_BLOCK` rows at a time."""
    nprobe = min(int(ivf.nprobe), int(ivf.nlist))
    out = np.empty((len(vectors), nprobe), dtype=np.int32)
    for start in range(0, len(vectors), block):
        _, found = ivf.quantizer.search(np.ascontiguousarray(vectors[start : start + block], dtype=np.float32), nprobe)
        out[start : start + len(found)] = found
    return out


def row_probes(index: faiss.Index | PositionIndex) -> np.ndarray | None:
    """Each row's ``nprobe`` nearest lists as :func:`build_index_and_probes` found them when it built the index a
    :class:`PositionIndex` searches, or ``None`` (an exact index, one extended or read from disk, rows added since,
    or another ``nprobe``)."""
    ivf = inverted_file(index)
    probes = index.probes if isinstance(index, PositionIndex) else None
    if ivf is None or probes is None or len(probes) != ivf.ntotal or probes.shape[1] != min(int(ivf.nprobe),
                                                                                            int(ivf.nlist)):
        return None
    return probes


# --- the workspace's index, kept between runs -----------------------------------------------------------------------
def hash_tags(hashes: np.ndarray) -> np.ndarray:
    """A 64-bit tag of each prompt hash, stored beside the index to check that an id still holds the same prompt
    (a damaged shard is embedded again under a number that may be reused)."""
    return pd.util.hash_array(np.asarray(hashes, dtype=object)).view(np.int64)


@dataclass
class IndexedRows:
    """What a saved index holds: the row ids it was given and their prompts' tags, and how many vectors its
    quantiser was trained for (0: an exact index, nothing trained)."""

    ids: np.ndarray
    tags: np.ndarray
    trained_on: int

    def save(self, path: str) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, ids=self.ids, tags=self.tags, trained_on=np.array([self.trained_on], dtype=np.int64))

    @classmethod
    def load(cls, path: str) -> IndexedRows:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["ids"], z["tags"], int(z["trained_on"][0]))


def rows_path(index_path: str) -> str:
    """Where the :class:`IndexedRows` of the index saved at ``index_path`` are kept."""
    return index_path + ".rows.npz"


class PositionIndex:
    """A saved index (ids: embedding row ids) searched by position: ``search`` answers with the positions of the
    found vectors in ``ids`` (the run's rows, in its order), -1 for none; what :func:`knn_graph` and
    :func:`search` read."""

    def __init__(self, index: faiss.Index, ids: np.ndarray, probes: np.ndarray | None = None) -> None:
        self.index = index
        #: Each row's ``nprobe`` nearest lists, in the order of ``ids``, when the index was just built over them
        #: (:func:`build_index_and_probes`): the kNN graph's probes, found once (:func:`row_probes`).
        self.probes = probes
        order = np.argsort(ids, kind="stable")
        self._sorted, self._positions = np.asarray(ids, dtype=np.int64)[order], order

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, found = self.index.search(queries, k)
        return sims, self.positions(found)

    def positions(self, found: np.ndarray) -> np.ndarray:
        """The positions of the ids ``found`` in the run's rows (-1 for -1 or an id not among them)."""
        if len(self._sorted) == 0:
            return np.full_like(found, -1)
        at = np.searchsorted(self._sorted, found).clip(max=len(self._sorted) - 1)
        ok = (found >= 0) & (self._sorted[at] == found)
        return np.where(ok, self._positions[at], -1)


def update_index(path: str, vectors: np.ndarray, ids: np.ndarray, tags: np.ndarray, seed: int = 0,
                 retrain_growth: float = 4.0, rebuild: bool = False, flat_max: int | None = None
                 ) -> tuple[faiss.Index, IndexedRows, str, np.ndarray | None]:
    """The workspace's index over ``vectors`` (ids ``ids``, tags :func:`hash_tags`), from the one saved at
    ``path`` when it can serve: ``(index, its rows, how, probes)``, ``how`` being ``"extended"`` (the saved
    inverted file with the new vectors added) or ``"built"``, ``probes`` each of ``vectors``' nearest lists when
    an inverted file was built (:func:`build_index_and_probes`; else ``None``). Nothing is written (see
    :func:`save_workspace_index`).

    The saved index is extended when it is an inverted file, every id it holds is still among ``ids`` with the
    same tag, ``vectors`` still call for an inverted file, and they number at most ``retrain_growth`` times the
    vectors its quantiser was trained for; otherwise (or with ``rebuild``) a new index is built and trained.
    """
    ids = np.asarray(ids, dtype=np.int64)
    saved = None if rebuild or index_kind(len(ids), flat_max) == "Flat" else _load_saved(path)
    if saved is not None:
        index, rows = saved
        if len(ids) <= retrain_growth * rows.trained_on and index.ntotal == len(rows.ids):
            order = np.argsort(ids, kind="stable")
            at = np.searchsorted(ids[order], rows.ids).clip(max=len(ids) - 1)
            held = order[at]
            if np.array_equal(ids[held], rows.ids) and np.array_equal(tags[held], rows.tags):
                new = np.ones(len(ids), dtype=bool)
                new[held] = False
                if new.any():
                    index.add_with_ids(np.ascontiguousarray(vectors[new], dtype=np.float32), ids[new])
                return index, IndexedRows(np.concatenate([rows.ids, ids[new]]),
                                          np.concatenate([rows.tags, tags[new]]), rows.trained_on), "extended", None
    index, probes = build_index_and_probes(vectors, flat_max, seed, ids=ids)
    trained = len(ids) if index_kind(len(ids), flat_max) != "Flat" else 0
    return index, IndexedRows(ids, np.asarray(tags, dtype=np.int64), trained), "built", probes


def _load_saved(path: str) -> tuple[faiss.Index, IndexedRows] | None:
    """The inverted-file index saved at ``path`` and its rows, or ``None`` (none, unreadable, or not one)."""
    if not (os.path.exists(path) and os.path.exists(rows_path(path))):
        return None
    try:
        index, rows = load_index(path), IndexedRows.load(rows_path(path))
    except (RuntimeError, OSError, ValueError, KeyError):
        return None
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    return index, rows


def save_workspace_index(path: str, index: faiss.Index, rows: IndexedRows) -> None:
    """Write the index, then its rows (each atomically): a run killed between the two leaves rows that do not
    match the index's size, and the next run builds afresh."""
    save_index(index, path)
    checkpoint("index.file_written")
    rows.save(rows_path(path))


def load_position_index(path: str, ids: np.ndarray) -> PositionIndex | faiss.Index | None:
    """The index saved at ``path`` for searching by position in the rows ``ids`` (a :class:`PositionIndex`), a
    positional index saved before ids were kept (no rows file), or ``None`` when there is none or it does
    not cover ``ids``."""
    if not os.path.exists(path):
        return None
    index = load_index(path)
    if not os.path.exists(rows_path(path)):
        return index if index.ntotal == len(ids) else None
    if index.ntotal != len(ids):
        return None
    return PositionIndex(index, ids)


def knn_graph(
    index: faiss.Index,
    vectors: np.ndarray,
    k: int = 15,
    batch: int = KNN_BATCH,
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
    if ids is None:  # with ids, only their rows are read (``vectors`` may read rows on demand)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows_all = np.arange(vectors.shape[0]) if ids is None else np.asarray(ids, dtype=np.int64)
    n = len(rows_all)
    k_eff = min(k + 1, vectors.shape[0])  # vectors are the index's rows
    nbrs = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    # List by list needs every row's vector at hand: with ``ids`` the rows are searched query by query.
    ivf = inverted_file(index) if ids is None else None
    step = batch if ivf is None else PROBED_QUERIES
    probes = row_probes(index) if ivf is not None else None  # each row's lists, when the build found them
    if probes is not None and len(probes) != vectors.shape[0]:
        probes = None
    # Integer products: the lists rounded to 8 bits once for every block of queries, and the blocks compared on
    # one thread each (the list-by-list loop keeps one core busy at a time: 1M requests, 29.6 -> ~21 s).
    lists = integer_lists(ivf, vectors, _positions_of(index)) if ivf is not None else None
    threads = 1 if lists is None else faiss.omp_get_max_threads()

    def blocks_of(rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` in blocks of ``step``, or fewer rows where that gives each thread a block."""
        size = max(1, min(step, -(-len(rows) // threads)))
        return [rows[start : start + size] for start in range(0, len(rows), size)]

    def search(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k_eff`` of the vectors ``rows``: list by list in an inverted file, else the index's own
        search."""
        queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
        if ivf is not None:
            return probed_search(ivf, queries, k_eff, vectors, _positions_of(index),
                                 probes=None if probes is None else probes[rows], lists=lists,
                                 threads=None if lists is None else 1)
        return index.search(queries, k_eff)

    if copies is None:
        start, blocks = 0, blocks_of(rows_all)
        for rows, (s, i) in zip(blocks, thread_map(search, blocks, threads), strict=True):
            drop_self(nbrs, sims, start, rows, s, i, k)
            start += len(rows)
            if progress is not None:
                progress(len(rows))
        return nbrs, sims
    if ids is not None:
        raise ValueError("knn_graph: 'copies' applies to the whole of 'vectors', not to 'ids'")
    _, first, group = np.unique(copies, return_index=True, return_inverse=True)
    found_s = np.empty((len(first), k_eff), dtype=np.float32)
    found_i = np.empty((len(first), k_eff), dtype=np.int64)
    start = 0
    for found in thread_map(search, blocks_of(first), threads):
        found_s[start : start + len(found[0])], found_i[start : start + len(found[0])] = found
        start += len(found[0])
    for start in range(0, n, batch):
        g = group[start : start + batch]
        drop_self(nbrs, sims, start, rows_all[start : start + len(g)], found_s[g], found_i[g], k)
        if progress is not None:
            progress(len(g))
    return nbrs, sims


def integer_lists(ivf: faiss.IndexIVF, database: np.ndarray,
                  positions: Callable[[np.ndarray], np.ndarray] | None = None) -> Int8Lists | None:
    """``database`` (the rows of ``ivf``, in order; ``positions`` as in :func:`probed_search`) rounded list by list
    for :func:`probed_search`'s integer products, once for every search of it; ``None`` where the products are
    float ones (:func:`_integer_products`)."""
    if _integer_products() is None:
        return None
    return Int8Lists.of(database, list_rows(ivf, positions))


def list_rows(ivf: faiss.IndexIVF, positions: Callable[[np.ndarray], np.ndarray] | None = None) -> list[np.ndarray]:
    """The rows each inverted list of ``ivf`` holds, as positions in the index's rows (``positions`` maps the ids
    the lists hold to them; default: they are), ids with no position left out."""
    invlists = ivf.invlists
    out = []
    for lst in range(ivf.nlist):
        size = invlists.list_size(lst)
        if not size:
            out.append(np.empty(0, dtype=np.int64))
            continue
        ptr = invlists.get_ids(lst)
        held = faiss.rev_swig_ptr(ptr, size).copy()
        invlists.release_ids(lst, ptr)
        rows = held if positions is None else positions(held)
        out.append(rows[rows >= 0])
    return out


def inverted_file(index: faiss.Index | PositionIndex) -> faiss.IndexIVF | None:
    """The inverted file inside ``index`` (``None`` for an exact index, or anything else answering ``search``)."""
    inner = index.index if isinstance(index, PositionIndex) else index
    return faiss.try_extract_index_ivf(inner) if isinstance(inner, faiss.Index) else None


def _positions_of(index: faiss.Index | PositionIndex) -> Callable[[np.ndarray], np.ndarray] | None:
    """How the ids ``index`` holds become row positions (``None``: they are the positions)."""
    return index.positions if isinstance(index, PositionIndex) else None


def _integer_products(threads: int | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The probed graph's integer product (:func:`analyzer.int8_lists.int8_products`, on ``threads`` threads,
    default FAISS's), or ``None``: turned off (:data:`INTEGER_PRODUCTS`) or not to be trusted here."""
    return int8_products(threads or faiss.omp_get_max_threads()) if INTEGER_PRODUCTS else None


def probed_search(ivf: faiss.IndexIVF, queries: np.ndarray, k: int, database: np.ndarray,
                  positions: Callable[[np.ndarray], np.ndarray] | None = None,
                  progress: Callable[[int], None] | None = None, probes: np.ndarray | None = None,
                  lists: Int8Lists | None = None, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(similarities, positions in database)`` of each query among the rows of the ``nprobe`` inverted
    lists of ``ivf`` nearest to it: the rows ``ivf.search`` scans, compared as the float vectors ``database``
    (the index's rows, in order; ``positions`` maps the ids the lists hold to rows of it, default: they are).

    The loop is turned inside out, as FAISS's ``contrib.big_batch_search`` does for a large batch of queries:
    each inverted list is compared with every query that probes it at once, one matrix product
    (:func:`faiss.knn`, BLAS), the results kept in FAISS's ``ResultHeap``. Scanning 8-bit codes query by query
    cannot use BLAS: at 1M requests (487k prompts, 2,791 lists) the graph took 75 s that way and takes 26 s so,
    with exact similarities within the probed lists (recall@15 against exact search 0.846 -> 0.863). ``progress``
    is told of the queries done, in proportion to the lists compared. ``probes``, if given, are each query's
    ``nprobe`` nearest lists already found (:func:`nearest_lists`); else they are searched here.

    With :data:`INTEGER_PRODUCTS`, where :func:`analyzer.int8_lists.int8_products` runs here, the products are
    8-bit integer ones, a few candidates per neighbour kept by integer score and compared again as floats
    (:mod:`analyzer.int8_lists`): the similarities are exact, the neighbours the float search's but where rows
    tie within the rounding. ``lists`` is ``database`` rounded list by list (:class:`Int8Lists`), when the caller
    searches it block by block; else it is rounded here. ``threads``: the integer products' threads (default
    FAISS's); everything else of the integer path runs on the calling thread without the GIL, so that blocks of
    queries can be searched on threads of their own."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    nq, nprobe = len(queries), min(int(ivf.nprobe), int(ivf.nlist))
    products = _integer_products(threads) if nq else None
    if probes is None:
        probes = nearest_lists(ivf, queries)
    probes = probes.ravel()
    order = np.argsort(probes, kind="stable")  # (query, probe) pairs grouped by list
    lims = np.searchsorted(probes[order], np.arange(ivf.nlist + 1))
    if products is not None:
        lists = lists if lists is not None else integer_lists(ivf, database, positions)
        list_rows_of = lists.rows
        queries8 = lists.queries(queries)
        best = np.full((nq, k * CANDIDATES_PER_NEIGHBOUR), np.iinfo(np.int32).min, dtype=np.int32)
        best_rows = np.full(best.shape, -1, dtype=np.int64)
    else:
        list_rows_of = list_rows(ivf, positions)
        heap = faiss.ResultHeap(nq, k, keep_max=True)
    done = told = 0
    for lst in range(ivf.nlist):
        lo, hi = int(lims[lst]), int(lims[lst + 1])
        rows = list_rows_of[lst]
        if hi > lo and len(rows):  # a list no query probes is not read
            asking = order[lo:hi] // nprobe
            if products is not None:
                codes_t = lists.codes_t[lst]
                step = max(1, SCORES_PER_PRODUCT // len(rows))  # a long list's queries a part at a time
                for a in range(0, len(asking), step):
                    part = asking[a : a + step]
                    push_candidates(products(queries8[part], codes_t), part, rows, best, best_rows)
            else:
                sims, found = faiss.knn(queries[asking], database[rows], min(k, len(rows)),
                                        metric=faiss.METRIC_INNER_PRODUCT)
                heap.add_result_subset(asking, sims, np.where(found >= 0, rows[found.clip(min=0)], -1))
        done += hi - lo
        if progress is not None and done // nprobe > told:
            progress(done // nprobe - told)
            told = done // nprobe
    if products is not None:
        sims, found = rerank(queries, np.asarray(database, dtype=np.float32), best_rows, k)
    else:
        heap.finalize()
        sims, found = heap.D, heap.I
    if progress is not None and nq > told:
        progress(nq - told)
    return sims, found


def empty_copy(index: faiss.Index | PositionIndex) -> np.ndarray:
    """``index``'s trained structure without its vectors, serialised (:func:`faiss.serialize_index`): what a shard
    of it starts from (:class:`analyzer.distributed.KnnShard`). An inverted file keeps its quantiser, codec and
    ``nprobe`` (so a shard probes the lists the whole index would); a flat index is a new empty one of its
    metric. The vectors a shard adds get ids from 0, in order."""
    if isinstance(index, PositionIndex):
        index = index.index
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return faiss.serialize_index(faiss.IndexFlat(index.d, index.metric_type))
    # Serialise the inverted file with empty lists in place of its own, then put its own back (not copied:
    # the lists are the whole index's memory).
    lists, own, ntotal = ivf.invlists, ivf.own_invlists, ivf.ntotal
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.own_invlists = False  # replace_invlists must not free the index's own lists
    ivf.replace_invlists(empty, False)
    ivf.ntotal = 0
    try:
        return faiss.serialize_index(ivf)
    finally:
        ivf.replace_invlists(lists, own)
        ivf.ntotal = ntotal


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
