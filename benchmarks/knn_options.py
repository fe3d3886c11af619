"""The kNN graph's index, and the alternatives to it: build and search time against recall, on real vectors.

Run: ``python benchmarks/knn_options.py --workspace WS [--queries 4000] [--k 15] [--candidates 0,2]
[--out results.json]``
(or ``--vectors DIR`` for a folder of ``.npy`` shards, e.g. a workspace's ``embeddings/<model key>/``).

The cluster stage's kNN graph searches every prompt's ``k`` nearest neighbours (the stage's largest cost at
1M requests). This script builds each candidate FAISS index over all the vectors, searches a random sample of
``--queries`` of them, extrapolates the search time to all of them, and measures recall@k+1 against exact
search. The default (:func:`analyzer.index.index_kind`) is ``IVF{4 sqrt(n)},SQ8`` with ``nprobe`` 16: its
lists grow as ``sqrt(n)``, so each query scans ``sqrt(n)`` codes and the whole graph costs ``n^1.5``; near-
duplicate prompts sharing lists add a constant factor (the imbalance printed). The cluster stage compares
the default's probed lists list by list with the float vectors (:func:`analyzer.index.probed_search`): those
rows time the whole graph instead of extrapolating. Figures are printed, not asserted; the machine may be
shared, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer import index as index_mod  # noqa: E402

#: ``(factory string or "default", nprobe, training points per list, HNSW efSearch, refine k_factor)``;
#: ``{nlist}`` is the default's list count (``4 sqrt(n)``). ``"default lists"``: the default index compared list by
#: list as the cluster stage does it (:func:`analyzer.index.knn_graph`, every vector a query, timed whole).
CANDIDATES = [
    ("default lists", 16, 20, None, None),
    ("default lists", 32, 20, None, None),
    ("default", 16, 20, None, None),
    ("IVF{nlist},SQ8", 8, 20, None, None),
    ("IVF{nlist2},SQ8", 16, 20, None, None),
    ("IVF{nlist},Flat", 16, 20, None, None),
    ("IVF{nlist},PQ128x4fs,RFlat", 16, 20, None, 16),
    ("HNSW32", None, None, 32, None),
]


def load_vectors(workspace: str | None, folder: str | None) -> np.ndarray:
    """Every stored vector of the workspace's newest model (or of the ``.npy`` shards in ``folder``)."""
    if folder is None:
        from analyzer.workspace import Workspace

        with Workspace(workspace, read_only=True) as ws:
            keys = sorted(os.listdir(os.path.join(workspace, "embeddings")))
            _, vectors = ws.load_embeddings(keys[-1])
        return np.ascontiguousarray(vectors, dtype=np.float32)
    files = sorted(glob.glob(os.path.join(folder, "*.npy")))
    if not files:
        raise SystemExit(f"no .npy shards in {folder}")
    return np.ascontiguousarray(np.concatenate([np.load(f) for f in files]), dtype=np.float32)


def build(vectors: np.ndarray, kind: str, train_per_list: int | None, seed: int) -> faiss.Index:
    """The index ``kind`` over ``vectors`` (``"default"``: :func:`analyzer.index.build_index`)."""
    if kind.startswith("default"):
        return index_mod.build_index(vectors, seed=seed)
    index = faiss.index_factory(vectors.shape[1], kind, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        try:
            ivf = faiss.extract_index_ivf(index)
            ivf.cp.min_points_per_centroid = train_per_list
            m = min(len(vectors), ivf.nlist * train_per_list)
        except RuntimeError:
            m = min(len(vectors), 200_000)
        index.train(vectors[rng.choice(len(vectors), size=m, replace=False)])
    index.add(vectors)
    return index


def measure(vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray, spec: tuple, k: int, seed: int) -> dict:
    kind, nprobe, per_list, ef_search, k_factor = spec
    n = len(vectors)
    nlist = index_mod.ivf_lists(n)
    kind = kind.format(nlist=nlist, nlist2=2 * nlist)
    t0 = time.perf_counter()
    index = build(vectors, kind, per_list, seed)
    built = time.perf_counter() - t0
    lists = kind == "default lists"
    row: dict = {"index": index_mod.index_kind(n) if kind.startswith("default") else kind, "build_s": round(built, 1),
                 "search": "list by list, float vectors" if lists else "query by query"}
    try:
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = nprobe or ivf.nprobe
        row.update(nprobe=int(ivf.nprobe), imbalance=round(ivf.invlists.imbalance_factor(), 2))
    except RuntimeError:
        pass
    if ef_search:
        faiss.downcast_index(index).hnsw.efSearch = ef_search
        row["ef_search"] = ef_search
    if k_factor:
        index.k_factor = k_factor
        row["k_factor"] = k_factor
    t0 = time.perf_counter()
    if lists:  # the whole graph: comparing list by list pays off over many queries at once
        nbrs, _ = index_mod.knn_graph(index, vectors, k=k)
        searched_all = time.perf_counter() - t0
        found = np.concatenate([queries[:, None], nbrs[queries]], axis=1)  # the graph drops the row itself
    else:
        _, found = index.search(vectors[queries], k + 1)
        searched_all = (time.perf_counter() - t0) * n / len(queries)
    hits = [len(set(f[f >= 0].tolist()) & set(e.tolist())) / len(e) for f, e in zip(found, exact, strict=True)]
    row.update(search_s_all=round(searched_all, 1), recall=round(float(np.mean(hits)), 3))
    row["graph_s"] = round(row["build_s"] + row["search_s_all"], 1)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--workspace")
    src.add_argument("--vectors", help="folder of .npy shards")
    ap.add_argument("--queries", type=int, default=4000)
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", default=None,
                    help="comma-separated positions in CANDIDATES to measure (default: all of them)")
    ap.add_argument("--out")
    args = ap.parse_args()
    chosen = CANDIDATES if args.candidates is None else [CANDIDATES[int(i)] for i in args.candidates.split(",")]
    vectors = load_vectors(args.workspace, args.vectors)
    n = len(vectors)
    rng = np.random.default_rng(args.seed)
    queries = np.sort(rng.choice(n, size=min(args.queries, n), replace=False))
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    _, exact = flat.search(vectors[queries], args.k + 1)
    del flat
    print(f"{n:,} vectors of {vectors.shape[1]} dims; exact search of {len(queries):,} queries "
          f"{time.perf_counter() - t0:.1f} s; {faiss.omp_get_max_threads()} threads", flush=True)
    rows = [measure(vectors, queries, exact, spec, args.k, args.seed) for spec in chosen]
    if args.out:
        Path(args.out).write_text(json.dumps({"n": n, "queries": len(queries), "k": args.k, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
