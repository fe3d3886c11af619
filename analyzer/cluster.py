"""Cluster stage: HDBSCAN over the FAISS kNN graph.

The ``hdbscan`` library is quadratic above 60 dimensions, so the density tree is built from the kNN graph
instead: mutual-reachability weights on the kNN edges, a minimum spanning tree, then HDBSCAN's condensed
tree and cluster selection (``fast_hdbscan`` with a precomputed sparse graph). Memory and time grow with
``n * k``. Points that belong to no dense region stay noise (label ``-1``).

The smallest cluster that can be found has ``min_cluster_size`` unique prompts. On top of that, an exact
prompt repeated in at least ``min_cluster_size`` requests becomes a cluster of its own ("repeat cluster"),
so that a prompt pasted by hundreds of accounts is visible even though it is one point in prompt space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class ClusterParams:
    """Parameters of the cluster stage.

    Parameters
    ----------
    k : int
        Neighbours per prompt in the kNN graph.
    min_cluster_size : int
        Fewest unique prompts in a cluster (the granularity: smaller groups stay noise).
    min_samples : int
        Neighbours that define a point's core distance (higher = more conservative, more noise).
    selection : str
        ``"leaf"`` keeps the finest dense clusters (campaign templates are small dense blobs inside a large
        diffuse background, where ``"eom"`` tends to return a few giant clusters); ``"eom"`` is HDBSCAN's
        default.
    """

    k: int = 15
    min_cluster_size: int = 8
    min_samples: int = 5
    selection: str = "leaf"


def knn_to_distance_graph(nbrs: np.ndarray, sims: np.ndarray) -> sp.csr_matrix:
    """Sparse symmetric-able Euclidean distance graph from kNN ids and cosine similarities."""
    n, k = nbrs.shape
    rows = np.repeat(np.arange(n), k)
    cols = nbrs.ravel()
    ok = cols >= 0
    d = np.sqrt(np.clip(2.0 - 2.0 * sims.ravel()[ok].astype(np.float64), 0.0, None)) + 1e-6
    return sp.csr_matrix((d, (rows[ok], cols[ok])), shape=(n, n))


def cluster_knn_graph(nbrs: np.ndarray, sims: np.ndarray, params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN labels and membership strengths for the points of a kNN graph."""
    n = nbrs.shape[0]
    if n < max(params.min_cluster_size, 2):
        return np.full(n, -1, dtype=np.int64), np.zeros(n)
    from fast_hdbscan.hdbscan import fast_hdbscan

    graph = knn_to_distance_graph(nbrs, sims)
    labels, strengths = fast_hdbscan(
        graph,
        metric="precomputed",
        min_samples=int(min(params.min_samples, params.k)),
        min_cluster_size=int(params.min_cluster_size),
        cluster_selection_method=params.selection,
    )
    return relabel_by_size(np.asarray(labels, dtype=np.int64)), np.asarray(strengths, dtype=np.float64)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..m-1 by decreasing size (ties by first point), keeping -1 for noise.

    Makes cluster ids deterministic for a given partition.
    """
    out = np.full_like(labels, -1)
    ids = [c for c in np.unique(labels) if c >= 0]
    first = {c: int(np.argmax(labels == c)) for c in ids}
    sizes = {c: int((labels == c).sum()) for c in ids}
    for new, c in enumerate(sorted(ids, key=lambda c: (-sizes[c], first[c]))):
        out[labels == c] = new
    return out


def add_repeat_clusters(labels: np.ndarray, request_counts: np.ndarray, min_requests: int) -> np.ndarray:
    """Give each noise prompt sent in at least ``min_requests`` requests a cluster of its own."""
    labels = labels.copy()
    next_id = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    for i in np.flatnonzero((labels < 0) & (request_counts >= min_requests)):
        labels[i] = next_id
        next_id += 1
    return labels


def cluster_tightness(labels: np.ndarray, vectors: np.ndarray) -> dict[int, float]:
    """Mean cosine similarity of each cluster's prompts to their centroid."""
    out: dict[int, float] = {}
    for c in np.unique(labels):
        if c < 0:
            continue
        v = vectors[labels == c]
        centroid = v.mean(axis=0)
        norm = np.linalg.norm(centroid)
        out[int(c)] = float((v @ (centroid / norm)).mean()) if norm > 0 else 0.0
    return out
