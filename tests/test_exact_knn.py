"""The exact kNN graph by matrix products in blocks (analyzer.exact_knn): the GPU's graph, checked here on the CPU
(on a GPU: tests/test_gpu.py)."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.exact_knn import knn_graph_exact
from analyzer.executor import LocalExecutor
from analyzer.index import build_index, knn_graph


def _unit(rng: np.random.Generator, n: int, d: int = 24) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


@pytest.mark.parametrize(("query_block", "base_block"), [(8192, 1 << 19), (7, 5), (64, 16), (1, 1000)])
def test_graph_is_the_brute_force_top_k_whatever_the_blocks(query_block, base_block):
    x = _unit(np.random.default_rng(0), 300)
    done: list[int] = []
    nbrs, sims = knn_graph_exact(x, k=10, device="cpu", query_block=query_block, base_block=base_block,
                                 progress=done.append)
    ref_i, ref_s = _brute(x, 10)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    assert (nbrs == ref_i).mean() > 0.999  # equal similarities may come in either order
    assert not (nbrs == np.arange(300)[:, None]).any()
    assert sum(done) == 300


def test_half_precision_products_are_rescored_in_single_precision():
    # The GPU's branch, run on the CPU: fp16 products pick the candidates, fp32 scores order them.
    x = _unit(np.random.default_rng(5), 400, 32)
    nbrs, sims = knn_graph_exact(x, k=10, device="cpu", base_block=96, half=True)
    ref_i, ref_s = _brute(x, 10)
    np.testing.assert_allclose(sims, np.take_along_axis(x @ x.T, nbrs, axis=1), atol=1e-6)  # fp32 scores
    assert (np.diff(sims, axis=1) <= 0).all()
    assert np.mean([len(set(a) & set(b)) for a, b in zip(nbrs, ref_i, strict=True)]) / 10 > 0.98
    np.testing.assert_allclose(sims[:, 0], ref_s[:, 0], atol=1e-3)
    assert not (nbrs == np.arange(400)[:, None]).any()


def test_graph_matches_faiss_exact_index_and_its_format():
    x = _unit(np.random.default_rng(1), 500, 32)
    ours = knn_graph_exact(x, k=15, device="cpu", base_block=128)
    theirs = knn_graph(build_index(x), x, k=15)
    assert ours[0].dtype == theirs[0].dtype == np.int64 and ours[1].dtype == theirs[1].dtype == np.float32
    assert ours[0].shape == theirs[0].shape == (500, 15)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-5)
    assert (ours[0] == theirs[0]).mean() > 0.999


def test_duplicates_and_tiny_inputs():
    x = _unit(np.random.default_rng(2), 6, 8)
    x = np.vstack([x, x[:2]])  # rows 6 and 7 copy rows 0 and 1
    nbrs, sims = knn_graph_exact(x, k=3, device="cpu", base_block=3)
    assert nbrs[0, 0] == 6 and nbrs[6, 0] == 0 and nbrs[1, 0] == 7 and nbrs[7, 0] == 1
    np.testing.assert_allclose(sims[[0, 6, 1, 7], 0], 1.0, atol=1e-6)
    assert not (nbrs == np.arange(8)[:, None]).any()
    # fewer rows than neighbours: the missing ones are -1 / -inf
    few, few_s = knn_graph_exact(x[:3], k=5, device="cpu")
    assert (few[:, :2] >= 0).all() and (few[:, 2:] == -1).all() and np.isinf(few_s[:, 2:]).all()
    empty, empty_s = knn_graph_exact(np.zeros((0, 8), np.float32), k=5, device="cpu")
    assert empty.shape == (0, 5) and empty_s.shape == (0, 5)


def test_local_executor_on_cpu_keeps_faiss():
    x = _unit(np.random.default_rng(3), 200)
    index = build_index(x)
    a = LocalExecutor().knn_graph(index, x, 10)
    b = LocalExecutor(device="cpu").knn_graph(index, x, 10)
    np.testing.assert_array_equal(a[0], b[0])


def test_device_option_is_checked_before_a_run():
    import torch

    from analyzer.api import run_options

    assert run_options(device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        run_options(device="gpu0")
    with pytest.raises(ValueError, match="only 'cpu' or a CUDA GPU"):
        run_options(device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            run_options(device="cuda")
