"""The probed kNN graph's 8-bit integer products (``analyzer.int8_lists``): exact similarities, the float
search's neighbours but for rows that tie within the rounding, and a fall-back to float products where the
integer ones cannot be trusted."""

import numpy as np
import pytest

from analyzer import index, int8_lists


def _clustered(n_blobs=40, per_blob=150, n_noise=2000, d=48, seed=3):
    """Unit vectors in tight blobs (many near-ties, as a campaign's templated prompts give) and scattered noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_blobs, d))
    pts = [c + rng.uniform(0.02, 0.3) * rng.normal(size=(per_blob, d)) for c in centers]
    x = np.vstack(pts + [rng.normal(size=(n_noise, d))]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def integer_products():
    if int8_lists.int8_products(1) is None:
        pytest.skip("onnxruntime's MatMulInteger does not run or does not check out on this machine")


def test_integer_scores_rank_rows_as_inner_products_do(integer_products):
    """Rows rounded dimension by dimension and queries rounded each on their own scale give integer scores that
    are one positive factor per query times the inner products, up to rounding."""
    x = _clustered()
    lists = int8_lists.Int8Lists.of(x, [np.arange(len(x))])
    codes_t = lists.codes_t[0]
    assert codes_t.dtype == np.int8 and codes_t.flags.c_contiguous and (np.abs(codes_t).max(axis=1) == 127).all()
    q = x[::97]
    scores = int8_lists.int8_products(2)(lists.queries(q), codes_t).astype(np.float64)
    exact = q.astype(np.float64) @ x.T
    for s, e in zip(scores, exact, strict=True):
        factor = s @ e / (e @ e)
        assert factor > 0 and np.abs(s / factor - e).max() < 0.02


def test_integer_graph_has_exact_similarities_and_nearly_the_float_neighbours(monkeypatch, integer_products):
    x = _clustered()
    idx = index.build_index(x, flat_max=1000)
    pushed: list[int] = []
    push = index.push_candidates
    monkeypatch.setattr(index, "push_candidates", lambda s, a, *r: pushed.append(s.size) or push(s, a, *r))
    nbrs, sims = index.knn_graph(idx, x, k=15)
    assert sum(pushed) > len(x) * 15  # the integer products ran, list by list
    monkeypatch.setattr(index, "INTEGER_PRODUCTS", False)
    f_nbrs, f_sims = index.knn_graph(idx, x, k=15)
    # Every similarity is the float inner product of the row and its neighbour.
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", x, x[nbrs]), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all() and not (nbrs == np.arange(len(x))[:, None]).any()
    same = (np.sort(nbrs, axis=1) == np.sort(f_nbrs, axis=1)).all(axis=1)
    scattered = np.arange(len(x)) >= 6000
    assert same[scattered].mean() > 0.99  # apart from each other, rows keep the float search's neighbours
    # In the tight blobs many rows tie within the rounding (cosine 0.999 and more): which of them are neighbours
    # differs, not how near the neighbours are. Every float neighbour clearly above the integer graph's k-th is
    # kept, and each row's k-th and mean similarities are the float search's within the rounding.
    assert np.mean([len(set(a) & set(b)) for a, b in zip(nbrs, f_nbrs, strict=True)]) / 15 > 0.85
    for r in np.flatnonzero(~same):
        assert set(f_nbrs[r][f_sims[r] > sims[r, -1] + 0.01]) <= set(nbrs[r])
    assert np.abs(sims[:, -1] - f_sims[:, -1]).max() < 0.003
    assert np.abs(sims.mean(axis=1) - f_sims.mean(axis=1)).max() < 0.002


def test_integer_products_that_do_not_check_out_leave_the_graph_to_float_products(monkeypatch):
    """A product that differs from NumPy's (as a kernel whose 16-bit sums saturate would) is not used."""
    x = _clustered(n_blobs=10, n_noise=500)
    idx = index.build_index(x, flat_max=1000)
    monkeypatch.setattr(index, "INTEGER_PRODUCTS", False)
    want = index.knn_graph(idx, x, k=10)
    monkeypatch.setattr(index, "INTEGER_PRODUCTS", True)
    call = int8_lists._Products.__call__
    monkeypatch.setattr(int8_lists._Products, "__call__", lambda self, q, r: np.clip(call(self, q, r), -32768, 32767))
    int8_lists.int8_products.cache_clear()
    try:
        assert int8_lists.int8_products(1) is None
        got = index.knn_graph(idx, x, k=10)
    finally:
        int8_lists.int8_products.cache_clear()
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_candidates_keep_each_querys_best_scores(integer_products):
    """The candidates' min-heap: offered rows list by list, a query keeps its best ``c`` scores whatever the order,
    and rows of a list that no query asks for are never seen."""
    rng = np.random.default_rng(0)
    scores = rng.integers(-1000, 1000, size=(6, 50)).astype(np.int32)
    best = np.full((10, 4), np.iinfo(np.int32).min, dtype=np.int32)
    best_rows = np.full((10, 4), -1, dtype=np.int64)
    asking = np.array([9, 0, 3, 4, 5, 7])
    rows = np.arange(100, 150, dtype=np.int64)
    int8_lists.push_candidates(scores[:, :20], asking, rows[:20], best, best_rows)
    int8_lists.push_candidates(scores[:, 20:], asking, rows[20:], best, best_rows)
    for a, q in enumerate(asking):
        top = np.sort(scores[a])[::-1][:4]
        assert sorted(best[q].tolist(), reverse=True) == top.tolist()
        assert set(best_rows[q]) == set(rows[np.argsort(-scores[a], kind="stable")[:4]])
    assert (best_rows[[1, 2, 6, 8]] == -1).all()
    sims, found = int8_lists.rerank(rng.normal(size=(10, 3)).astype(np.float32),
                                    rng.normal(size=(150, 3)).astype(np.float32), best_rows, 6)
    assert (found[1] == -1).all() and np.isneginf(sims[1]).all()  # no candidates: none found
    assert (found[0, :4] >= 100).all() and (found[0, 4:] == -1).all()  # four candidates for six asked


def test_a_long_lists_queries_compared_a_part_at_a_time_give_the_same_graph(monkeypatch, integer_products):
    """The scores of one integer product are bounded (``SCORES_PER_PRODUCT``): a list probed by many queries is
    compared with them a part at a time, and the graph is the one of a single product per list."""
    x = _clustered(n_blobs=10, n_noise=500)
    idx = index.build_index(x, flat_max=1000)
    shapes: list[tuple[int, int]] = []
    push = index.push_candidates
    monkeypatch.setattr(index, "push_candidates", lambda s, a, *r: shapes.append(s.shape) or push(s, a, *r))
    whole = index.knn_graph(idx, x, k=10)
    calls = len(shapes)
    shapes.clear()
    monkeypatch.setattr(index, "SCORES_PER_PRODUCT", 300)
    parts = index.knn_graph(idx, x, k=10)
    assert all(m * n <= 300 or m == 1 for m, n in shapes)  # one query at a time at least, against a huge list
    assert len(shapes) > 2 * calls  # lists were split
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_array_equal(parts[1], whole[1])
