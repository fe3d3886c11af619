"""The exact all-points kNN graph by matrix products in blocks, on a torch device: the graph on a GPU.

On the CPU the cluster stage builds its kNN graph with FAISS (:func:`analyzer.index.knn_graph`: exact up to
60,000 prompts, an inverted file above). Where a GPU is at hand (``--device cuda``), every prompt is compared
with every other instead: a block of queries times a block of the other rows is one half-precision matrix
product, each product's top ``k`` kept and merged with the block's best so far, and the final ``k`` scored again
in single precision (so the similarities stored are those the CPU computes, and half-precision rounding moves
no neighbour across the threshold a stage reads). Exact, so the graph's recall is 1 where the inverted file's is
about 0.86; the products grow as ``n^2`` but a GPU does them at hundreds of TFLOP/s (the README gives the
figures measured on one).

Nothing here imports FAISS, so this module runs where only torch is installed (the GPU check in
``benchmarks/gpu_check.py``); torch is imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Query rows compared at once. Each product is ``QUERY_BLOCK x BASE_BLOCK`` similarities (half precision on a
#: GPU: 8 GiB at these sizes, 4 bytes a pair on the CPU), so the two bound the device memory a graph needs
#: beyond its vectors.
QUERY_BLOCK = 8192
#: Rows of the base (every vector) compared with a query block in one product.
BASE_BLOCK = 1 << 19
#: The block shapes on the CPU (tests, small inputs): a product of 1,024 x 65,536 similarities is 256 MiB.
CPU_QUERY_BLOCK, CPU_BASE_BLOCK = 1024, 1 << 16


def drop_self(nbrs: np.ndarray, sims: np.ndarray, start: int, rows: np.ndarray, s: np.ndarray, i: np.ndarray,
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


def knn_graph_exact(vectors: np.ndarray, k: int = 15, device: str = "cuda", query_block: int | None = None,
                    base_block: int | None = None, progress: Callable[[int], None] | None = None,
                    half: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every row's ``k`` most similar other rows of ``vectors`` (L2-normalised, ``(n, d)``), exactly, on the
    torch ``device``: ``(neighbours, similarities)``, each ``(n, k)``, as :func:`analyzer.index.knn_graph`
    returns them (most similar first, missing neighbours ``-1`` with similarity ``-inf``).

    The vectors are held on the device once (single precision); the products run in half precision where
    ``half`` (default: on a GPU) and the ``k + 1`` found per row are then scored again in single precision and
    ordered by that score; otherwise everything is single precision. Rows with equal similarity keep no
    particular order. Blocks: :data:`QUERY_BLOCK` x :data:`BASE_BLOCK` on a GPU, :data:`CPU_QUERY_BLOCK` x
    :data:`CPU_BASE_BLOCK` on the CPU, unless given.
    """
    import torch

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = vectors.shape[0]
    nbrs = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or k <= 0:
        return nbrs, sims
    dev = torch.device(device)
    half = dev.type == "cuda" if half is None else half
    on_cpu = dev.type == "cpu"
    query_block = query_block or (CPU_QUERY_BLOCK if on_cpu else QUERY_BLOCK)
    base_block = base_block or (CPU_BASE_BLOCK if on_cpu else BASE_BLOCK)
    k_eff = min(k + 1, n)
    with torch.inference_mode():
        base = torch.from_numpy(vectors).to(dev)
        for q0 in range(0, n, query_block):
            q1 = min(q0 + query_block, n)
            queries = base[q0:q1]
            q_cmp = queries.half() if half else queries
            best_s = best_i = None
            for b0 in range(0, n, base_block):
                block = base[b0 : b0 + base_block]
                prod = q_cmp @ (block.half() if half else block).T
                top_s, top_i = torch.topk(prod, min(k_eff, prod.shape[1]), dim=1)
                top_i += b0
                if best_s is not None:
                    both_s = torch.cat([best_s, top_s], dim=1)
                    top_s, pos = torch.topk(both_s, min(k_eff, both_s.shape[1]), dim=1)
                    top_i = torch.gather(torch.cat([best_i, top_i], dim=1), 1, pos)
                best_s, best_i = top_s, top_i
                del prod
            if half:  # score the found rows again in single precision and order them by that score
                best_s = torch.einsum("qd,qkd->qk", queries, base[best_i])
                best_s, pos = torch.sort(best_s, dim=1, descending=True, stable=True)
                best_i = torch.gather(best_i, 1, pos)
            drop_self(nbrs, sims, q0, np.arange(q0, q1), best_s.float().cpu().numpy(), best_i.cpu().numpy(), k)
            if progress is not None:
                progress(q1 - q0)
    return nbrs, sims
