"""The GPU paths (``--device cuda``): the exact kNN graph and the accurate tier in fp16, against the CPU's.

They run where torch sees a CUDA GPU and skip elsewhere (CI has none; a session lent a GPU runs them there with
``benchmarks/gpu_check.py``). This file imports neither FAISS nor DuckDB, so it runs where only torch is
installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.exact_knn import knn_graph_exact
from analyzer.executor import LocalExecutor


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.skipif(not _gpu(), reason="no CUDA GPU visible to torch")
def test_gpu_graph_equals_cpu_graph():
    x = _unit(np.random.default_rng(4), 5000, 64)
    cpu = knn_graph_exact(x, k=15, device="cpu")
    gpu = knn_graph_exact(x, k=15, device="cuda", query_block=1000, base_block=1500)
    np.testing.assert_allclose(gpu[1], cpu[1], atol=1e-5)  # re-scored in fp32
    assert (gpu[0] == cpu[0]).mean() > 0.99  # fp16 products may swap near-equal neighbours
    via = LocalExecutor(device="cuda").knn_graph(None, x, 15)
    assert (via[0] == cpu[0]).mean() > 0.99


@pytest.mark.skipif(not _gpu(), reason="no CUDA GPU visible to torch")
def test_gpu_embedder_agrees_with_cpu_and_shares_its_key():
    from analyzer.embed import SentenceTransformerEmbedder, make_embedder

    texts = ["Solve step by step: what is 17 * 23?", "Rewrite this question so it is politically neutral.",
             "def f(x): return x + 1  # explain this code", "hello"] * 8
    gpu = make_embedder(tier="accurate", device="cuda")
    cpu = SentenceTransformerEmbedder(device="cpu")
    assert isinstance(gpu, SentenceTransformerEmbedder) and gpu.batch_size >= 512 and gpu.key == cpu.key
    a, b = gpu.encode(texts), cpu.encode(texts)
    assert a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (np.sum(a * b, axis=1) > 0.999).all()
