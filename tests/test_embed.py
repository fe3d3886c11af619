"""Embedding tiers with the real packaged model on small inputs."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from analyzer.embed import TIERS, OnnxEmbedder, SentenceTransformerEmbedder, StaticEmbedder, make_embedder

TEXTS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "hi",
    "Write a detailed feedback that assesses the quality of the response strictly based on the score rubric. "
    "After writing a feedback, write a score that is an integer between 1 and 5. " * 3,
    "How do I reverse a linked list in Python?",
    "",
    "Translate 'good morning' into French.",
]
HAS_ONNX = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return make_embedder(tier="accurate", backend="torch").encode(TEXTS)


def _check(vecs: np.ndarray, dim: int) -> None:
    assert vecs.dtype == np.float32
    assert vecs.shape == (len(TEXTS), dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)


def test_torch_shape_norm_and_order(torch_vectors):
    emb = make_embedder(tier="accurate", backend="torch", batch_size=2)  # several length-sorted batches
    assert isinstance(emb, SentenceTransformerEmbedder)
    seen: list[int] = []
    vecs = emb.encode(TEXTS, progress=seen.append)
    _check(vecs, emb.dim)
    assert sum(seen) == len(TEXTS) and len(seen) == 3
    # order: each text's vector equals the vector of the text embedded alone
    for i in (0, 2, 4):
        single = emb.encode([TEXTS[i]])[0]
        assert float(single @ vecs[i]) > 0.999
    np.testing.assert_allclose(vecs, torch_vectors, atol=1e-4)
    assert emb.encode([]).shape == (0, emb.dim)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx/onnxruntime not installed: the accurate tier falls back to torch")
def test_onnx_int8_close_to_fp32(torch_vectors, tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYZER_CACHE", str(tmp_path))
    emb = make_embedder(tier="accurate", backend="onnx", batch_size=2)
    assert isinstance(emb, OnnxEmbedder)
    assert (tmp_path / "onnx").is_dir() and list((tmp_path / "onnx").glob(f"*/{emb.file_name}"))
    seen: list[int] = []
    vecs = emb.encode(TEXTS, progress=seen.append)
    _check(vecs, 384)
    assert sum(seen) == len(TEXTS)
    cos = (vecs * torch_vectors).sum(1)
    assert cos.mean() >= 0.97, cos
    # cached: a second embedder reuses the export and gives the same vectors (same batches: dynamic
    # quantization scales activations per batch, so other batch compositions differ slightly)
    again = make_embedder(tier="accurate", backend="onnx", batch_size=2).encode(TEXTS)
    assert float((make_embedder(tier="accurate", backend="onnx").encode(TEXTS) * vecs).sum(1).min()) > 0.97
    np.testing.assert_allclose(again, vecs, atol=1e-5)


def test_fallback_to_torch_when_onnx_fails(monkeypatch):
    def broken(self):
        raise ImportError("no onnxruntime")

    monkeypatch.setattr(OnnxEmbedder, "prepare", broken)
    with pytest.warns(RuntimeWarning, match="falling back to torch"):
        emb = make_embedder(tier="accurate")
    assert isinstance(emb, SentenceTransformerEmbedder)
    with pytest.raises(ImportError):
        make_embedder(tier="accurate", backend="onnx")


def test_keys_differ_and_are_safe():
    keys = {
        make_embedder(tier="accurate", backend="torch").key,
        OnnxEmbedder(qconfig="qint8_avx512_vnni").key,
        OnnxEmbedder(qconfig="quint8_avx2").key,
        StaticEmbedder().key,
        StaticEmbedder(max_seq_length=256).key,
        make_embedder(tier="accurate", backend="torch", max_seq_length=256).key,
    }
    assert len(keys) == 6
    assert make_embedder(tier="accurate", backend="torch").key == "minilm-s128"  # existing workspaces keep their vectors
    for key in keys:
        assert key and all(c.isalnum() or c in "._-" for c in key)
    assert TIERS == ("accurate", "fast")
    with pytest.raises(ValueError):
        make_embedder(tier="slow")


def test_fast_tier_builds_and_ranks_paraphrase_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYZER_CACHE", str(tmp_path))
    emb = make_embedder(tier="fast")
    assert isinstance(emb, StaticEmbedder)
    seen: list[int] = []
    vecs = emb.encode(TEXTS, progress=seen.append)
    _check(vecs, 256)
    assert sum(seen) == len(TEXTS)
    built = list((tmp_path / "static").iterdir())
    assert len(built) == 1 and not built[0].name.startswith(".")  # no temp dir left behind
    a, para, other = emb.encode(
        [
            "How can I bake a loaf of bread at home?",
            "What is a good recipe for baking homemade bread?",
            "The central bank raised interest rates again this quarter.",
        ]
    )
    assert float(a @ para) > float(a @ other) + 0.1
    # order preserved: the static model has no batching effects, each text alone gives the same vector
    np.testing.assert_allclose(emb.encode([TEXTS[3]])[0], vecs[3], atol=1e-5)


def test_fast_tier_is_the_default_and_its_similarities_are_put_on_minilm_scale():
    from analyzer.embed import DEFAULT_TIER, calibrate_similarity

    assert DEFAULT_TIER == "fast" and isinstance(make_embedder(), StaticEmbedder)
    sims = np.array([-0.5, 0.0, 0.3, 0.6, 0.8, 0.95, 1.0], dtype=np.float32)
    mapped = calibrate_similarity(StaticEmbedder().key, sims)
    assert np.all(np.diff(mapped) > 0)  # monotone: neighbour order is kept
    assert mapped[2] < 0.15 and mapped[-1] == pytest.approx(1.0)  # unrelated static pairs (~0.3) are not close
    np.testing.assert_array_equal(calibrate_similarity("minilm-s128", sims), sims)  # MiniLM is the reference


def test_fast_tier_matches_model2vec_and_uses_the_parallel_tokenizer(monkeypatch):
    emb = make_embedder(tier="fast")
    texts = TEXTS + ["", "x " * 1000]
    emb._load()  # sets the process default (off)
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    vecs = emb.encode(texts)
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before  # only switched on for the duration of a call
    ref = emb._load().encode(texts, max_length=emb.max_seq_length, use_multiprocessing=False)
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    ok = np.isfinite(ref).all(axis=1) & np.any(ref, axis=1)  # model2vec gives no vector to a text without tokens; ours is a fixed unit vector
    np.testing.assert_allclose(vecs[ok], ref[ok], atol=1e-3)  # model2vec pools in float16
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
