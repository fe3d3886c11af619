"""The app's 2-D prompt map: a UMAP layout of cluster representatives, the other shown prompts placed beside them.

A full UMAP of a 20k-prompt sample cost 90-120 s of a 200 s run at 150k requests, and umap-learn recompiles its
numba code in every process (its layout and graph functions are not ``cache=True``; importing it also pulls in
pynndescent). The map only has to show where clusters and campaigns sit, so:

1. :func:`select_points` picks the **representatives** that are laid out (at most ``max_layout``): a share of
   noise prompts; ``min_per_cluster`` prompts of every cluster of a campaign, then of every other cluster, as far
   as room allows (a campaign cluster always gets one, whatever the cap); the room left goes to a uniform sample
   of the other clustered prompts, so that a large cluster keeps a large footprint. The rest of the ``total``
   points shown are a uniform sample: clustered prompts up to ``clustered_share``, the rest noise.
2. :func:`umap_layout` lays the representatives out with UMAP's objective -- the same fuzzy kNN graph, the same
   ``min_dist`` curve and the same SGD with negative sampling as umap-learn -- from a PCA start, for a fixed
   ``n_epochs``. The kNN graph is exact (a few thousand points); the SGD kernel is compiled by numba once and
   cached on disk (``cache=True``), so later processes load it instead of compiling.
3. :func:`place_points` puts every other shown prompt at a random weighted mean of the positions of its
   ``place_neighbors`` most similar representatives of its own cluster (of all, for noise), with weights
   similarity to the fourth power times a random draw: it lands among them, spread over the area they cover
   rather than stacked on one spot.

A placed prompt lands among its own cluster's representatives, so the app's colouring by cluster stays coherent,
and a large cluster keeps a large footprint.

Between layouts a daily run keeps the shown points and places new ones beside them (:func:`extend_points`, then
:func:`place_points` with the shown points as representatives): a campaign that appeared since the layout gets
its points among the prompts most like its own.
"""

from __future__ import annotations

import faiss
import numba
import numpy as np
import scipy.sparse as sp

from analyzer.mapparams import MapParams


# --- which points -------------------------------------------------------------------------------------------------
def _quota(sizes: np.ndarray, budget: int) -> int:
    """Largest ``q`` with ``sum(min(sizes, q)) <= budget`` (0 when even one point per group does not fit)."""
    if len(sizes) == 0 or budget <= 0:
        return 0
    lo, hi = 0, int(sizes.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(sizes, mid).sum()) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _rank_in_group(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each point, its rank inside its group in a random order (0 for one random point of each group)."""
    n = len(groups)
    order = np.lexsort((rng.random(n), groups))
    sorted_groups = groups[order]
    first = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    return rank


def select_points(units: np.ndarray, campaign_units: np.ndarray, total: int, params: MapParams,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which prompts the map lays out and which it places; both sorted index arrays, disjoint.

    ``units[i]`` is prompt ``i``'s cluster (the unit campaigns are built from; ``-1`` for noise) and
    ``campaign_units`` the clusters that belong to a campaign. Every campaign cluster gets at least one
    representative even beyond the cap: the layout holds at most ``min(max_layout, total)`` points or one per
    campaign cluster if that is more, and the two arrays together at most ``total`` (or that number).
    """
    units = np.asarray(units, dtype=np.int64)
    n = len(units)
    total = min(int(total), n)
    budget = min(params.max_layout, total)
    clustered = units >= 0
    in_campaign = clustered & np.isin(units, np.asarray(campaign_units, dtype=np.int64))
    rank = _rank_in_group(units, rng)
    sizes = {}
    for name, mask in (("campaign", in_campaign), ("other", clustered & ~in_campaign)):
        _, counts = np.unique(units[mask], return_counts=True)
        sizes[name] = counts

    noise_budget = min(int(round(params.noise_share * budget)), int((~clustered).sum()))
    cluster_budget = max(budget - noise_budget, 0)
    other = clustered & ~in_campaign
    q_c = min(max(_quota(sizes["campaign"], cluster_budget), 1), params.min_per_cluster)
    reps = in_campaign & (rank < q_c)
    left = cluster_budget - int(reps.sum())
    q_o = min(_quota(sizes["other"], left), params.min_per_cluster)
    if q_o > 0:
        reps |= other & (rank < q_o)
    elif left > 0 and other.any():  # more clusters than room: one point of each of the largest clusters
        ids, counts = np.unique(units[other], return_counts=True)
        keep = ids[np.argsort(-counts, kind="stable")[:left]]
        reps |= other & (rank == 0) & np.isin(units, keep)
    left = cluster_budget - int(reps.sum())
    if left > 0:  # the rest in proportion to cluster size: a uniform sample of the clustered prompts left
        pool = np.flatnonzero(clustered & ~reps)
        reps[rng.choice(pool, min(left, len(pool)), replace=False)] = True
    noise = np.flatnonzero(~clustered)
    n_noise = min(max(budget - int(reps.sum()), noise_budget), len(noise))  # noise fills what clusters left
    if n_noise:
        reps[rng.choice(noise, n_noise, replace=False)] = True

    # The rest shown: a uniform sample of clustered prompts up to the clustered share, then noise (then more
    # clustered prompts if noise runs out), as a plain sample would show them.
    room = max(total - int(reps.sum()), 0)
    pool_c = rng.permutation(np.flatnonzero(clustered & ~reps))
    pool_n = rng.permutation(np.flatnonzero(~clustered & ~reps))
    take_c = min(max(int(params.clustered_share * total) - int((reps & clustered).sum()), 0), room, len(pool_c))
    take_n = min(room - take_c, len(pool_n))
    take_c = min(room - take_n, len(pool_c))
    placed = np.concatenate([pool_c[:take_c], pool_n[:take_n]]).astype(np.int64)
    return np.flatnonzero(reps), np.sort(placed)


def extend_points(units: np.ndarray, campaign_units: np.ndarray, shown: np.ndarray, total: int, params: MapParams,
                  rng: np.random.Generator) -> np.ndarray:
    """Which prompts to add to a kept map whose shown prompts are the rows ``shown`` (they are placed, not laid
    out): ``min_per_cluster`` prompts of each campaign cluster with no shown prompt, so every campaign stays on
    the map, then a uniform sample of the others while the map holds fewer than ``total`` points. A sorted
    index array, disjoint from ``shown``."""
    units = np.asarray(units, dtype=np.int64)
    n = len(units)
    is_shown = np.zeros(n, dtype=bool)
    is_shown[shown] = True
    missing = np.setdiff1d(np.asarray(campaign_units, dtype=np.int64), units[is_shown])
    candidates = np.flatnonzero(~is_shown & (units >= 0) & np.isin(units, missing))
    add = candidates[_rank_in_group(units[candidates], rng) < params.min_per_cluster]
    room = max(min(int(total), n) - int(is_shown.sum()) - len(add), 0)
    rest = np.flatnonzero(~is_shown)
    rest = rest[~np.isin(rest, add)]
    return np.sort(np.concatenate([add, rng.choice(rest, min(room, len(rest)), replace=False)])).astype(np.int64)


# --- layout -------------------------------------------------------------------------------------------------------
def exact_knn(vectors: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other points of each row of L2-normalised ``vectors``: ids and cosine distances."""
    n = vectors.shape[0]
    k = min(k, n - 1)
    ids = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, chunk):
        sims = vectors[s: s + chunk] @ vectors.T
        sims[np.arange(sims.shape[0]), np.arange(s, s + sims.shape[0])] = -np.inf  # not its own neighbour
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        ids[s: s + chunk] = np.take_along_axis(part, order, axis=1)
        dist[s: s + chunk] = np.clip(1.0 - np.take_along_axis(top, order, axis=1), 0.0, None)
    return ids, dist


def fuzzy_graph(ids: np.ndarray, dist: np.ndarray, n_iter: int = 64) -> sp.coo_matrix:
    """UMAP's fuzzy simplicial set of a kNN graph (``local_connectivity=1``), symmetrised by fuzzy union."""
    n, k = ids.shape
    positive = np.where(dist > 0, dist, np.inf)
    rho = np.where(np.isfinite(positive.min(axis=1)), positive.min(axis=1), 0.0)
    target = np.log2(k)
    lo, hi, sigma = np.zeros(n), np.full(n, np.inf), np.ones(n)
    excess = np.maximum(dist - rho[:, None], 0.0)
    for _ in range(n_iter):  # binary search of each point's sigma, all points at once
        total = np.exp(-excess / sigma[:, None]).sum(axis=1)
        high = total > target
        hi = np.where(high, sigma, hi)
        lo = np.where(high, lo, sigma)
        sigma = np.where(np.isinf(hi), sigma * 2.0, (lo + hi) / 2.0)
    mean_d = dist.mean(axis=1)
    sigma = np.maximum(sigma, 1e-3 * np.where(rho > 0, mean_d, dist.mean()))
    weights = np.exp(-excess / sigma[:, None]).ravel()
    graph = sp.csr_matrix((weights, (np.repeat(np.arange(n), k), ids.ravel())), shape=(n, n))
    union = graph + graph.T - graph.multiply(graph.T)
    return sp.coo_matrix(union)


def curve_params(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """UMAP's ``a, b``: the curve ``1 / (1 + a d^(2b))`` fitted to ``min_dist`` (as umap's ``find_ab_params``)."""
    from scipy.optimize import curve_fit

    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(lambda d, a, b: 1.0 / (1.0 + a * d ** (2 * b)), x, y)
    return float(a), float(b)


@numba.njit(cache=True, fastmath=True)
def _sgd(emb: np.ndarray, head: np.ndarray, tail: np.ndarray, epochs_per_sample: np.ndarray, n_epochs: int,
         a: float, b: float, negative_rate: float, seed: int) -> np.ndarray:  # pragma: no cover - compiled
    """UMAP's SGD (umap-learn's ``optimize_layout_euclidean``, one thread, gamma 1, learning rate 1)."""
    np.random.seed(seed)
    n, dim = emb.shape
    per_negative = epochs_per_sample / negative_rate
    next_negative = per_negative.copy()
    next_sample = epochs_per_sample.copy()
    for epoch in range(n_epochs):
        alpha = 1.0 - epoch / n_epochs
        for i in range(epochs_per_sample.shape[0]):
            if next_sample[i] > epoch:
                continue
            j = head[i]
            k = tail[i]
            d2 = 0.0
            for d in range(dim):
                d2 += (emb[j, d] - emb[k, d]) ** 2
            coeff = 0.0
            if d2 > 0.0:
                coeff = -2.0 * a * b * d2 ** (b - 1.0) / (a * d2 ** b + 1.0)
            for d in range(dim):
                g = min(max(coeff * (emb[j, d] - emb[k, d]), -4.0), 4.0)
                emb[j, d] += g * alpha
                emb[k, d] -= g * alpha
            next_sample[i] += epochs_per_sample[i]
            n_neg = int((epoch - next_negative[i]) / per_negative[i])
            for _ in range(n_neg):
                k = np.random.randint(n)
                if k == j:
                    continue
                d2 = 0.0
                for d in range(dim):
                    d2 += (emb[j, d] - emb[k, d]) ** 2
                if d2 <= 0.0:
                    continue
                coeff = 2.0 * b / ((0.001 + d2) * (a * d2 ** b + 1.0))
                for d in range(dim):
                    emb[j, d] += min(max(coeff * (emb[j, d] - emb[k, d]), -4.0), 4.0) * alpha
            next_negative[i] += n_neg * per_negative[i]
    return emb


def pca_start(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """First two principal components scaled to [0, 10] with a little noise (as umap's ``init="pca"``)."""
    centred = vectors - vectors.mean(axis=0)
    _, eigvecs = np.linalg.eigh(centred.T @ centred)  # dim x dim: far cheaper than an SVD of the points
    start = centred @ eigvecs[:, ::-1][:, :2]
    span = np.maximum(start.max(axis=0) - start.min(axis=0), 1e-12)
    start = 10.0 * (start - start.min(axis=0)) / span
    return (start + rng.normal(scale=1e-4, size=start.shape)).astype(np.float64)


def umap_layout(vectors: np.ndarray, params: MapParams, seed: int) -> np.ndarray:
    """2-D UMAP layout (``n x 2``) of L2-normalised ``vectors`` (cosine metric); see the module docstring."""
    n = vectors.shape[0]
    if n < 3:
        return np.zeros((n, 2))
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    # Small products: one BLAS thread. Two OpenBLAS threads on a busy two-core machine made the 256 x 256
    # eigendecomposition take 0.05-1.6 s instead of 15 ms.
    with threadpool_limits(limits=1, user_api="blas"):
        ids, dist = exact_knn(vectors, params.n_neighbors)
        emb = pca_start(vectors.astype(np.float64), rng)
    graph = fuzzy_graph(ids, dist)
    keep = graph.data >= graph.data.max() / params.n_epochs  # edges too weak to be sampled even once
    weights = graph.data[keep]
    epochs_per_sample = (weights.max() / weights).astype(np.float64)
    a, b = curve_params(params.min_dist)
    return _sgd(emb, graph.row[keep].astype(np.int64), graph.col[keep].astype(np.int64), epochs_per_sample,
                int(params.n_epochs), a, b, float(params.negative_samples), int(rng.integers(2**31 - 1)))


def place_points(vectors: np.ndarray, rep_vectors: np.ndarray, rep_xy: np.ndarray, params: MapParams,
                 rng: np.random.Generator, units: np.ndarray | None = None, rep_units: np.ndarray | None = None,
                 chunk: int = 4096) -> np.ndarray:
    """Positions of ``vectors`` among their most similar representatives (random weighted means, see the module
    docstring), plus a little jitter.

    With ``units`` and ``rep_units`` (cluster of each point and of each representative, ``-1`` for noise), a
    clustered point is placed among its own cluster's representatives when that cluster has any.
    """
    n = vectors.shape[0]
    out = np.zeros((n, 2))
    if n == 0 or len(rep_xy) == 0:
        return out
    among = np.full(n, -1, dtype=np.int64)  # the cluster whose representatives a point is placed among; -1: all
    if units is not None and rep_units is not None:
        has_reps = (units >= 0) & np.isin(units, rep_units[rep_units >= 0])
        among[has_reps] = units[has_reps]
    # One block per cluster: its points against its own representatives only (a mask over all of them made
    # the placement of 17k points among 3,000 representatives cost 0.8 s).
    order = np.argsort(among, kind="stable")
    bounds = np.flatnonzero(np.diff(among[order])) + 1
    for block in np.split(order, bounds):
        reps = np.arange(len(rep_xy)) if among[block[0]] < 0 else np.flatnonzero(rep_units == among[block[0]])
        k = min(params.place_neighbors, len(reps))
        rv, rxy = rep_vectors[reps], rep_xy[reps]
        for s in range(0, len(block), chunk):
            rows = block[s: s + chunk]
            sims = vectors[rows] @ rv.T
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(sims, part, axis=1)
            w = np.clip(top, 1e-3, None) ** 4  # the most similar dominate
            w = w * rng.exponential(size=w.shape)  # a random point among them, not always their centre
            out[rows] = (w[:, :, None] * rxy[part]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    return out + rng.normal(scale=params.jitter * typical_spacing(rep_xy), size=out.shape)


def typical_spacing(xy: np.ndarray, sample: int = 500) -> float:
    """Median distance from a point of the layout to its nearest other point (on up to ``sample`` points)."""
    if len(xy) < 2:
        return 0.0
    index = faiss.IndexFlatL2(2)  # exact L2 search in 2-D
    index.add(np.ascontiguousarray(xy, dtype=np.float32))
    dist, _ = index.search(np.ascontiguousarray(xy[: sample], dtype=np.float32), 2)
    # the second nearest: the nearest is the point itself (or one on top of it, at distance 0 either way)
    return float(np.median(np.sqrt(np.maximum(dist[:, 1], 0.0))))
