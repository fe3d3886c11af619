"""Embedding tiers with the real packaged model on small inputs."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from analyzer.embed import (
    TIERS,
    WINDOW_JOIN,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    StaticEmbedder,
    make_embedder,
)

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


def test_keys_differ_and_are_safe(monkeypatch):
    import analyzer.embed as embed_mod

    embedders = [
        make_embedder(tier="accurate", backend="torch"),
        OnnxEmbedder(qconfig="qint8_avx512_vnni"),
        OnnxEmbedder(qconfig="quint8_avx2"),
        StaticEmbedder(),
        StaticEmbedder(max_seq_length=256),
        make_embedder(tier="accurate", backend="torch", max_seq_length=256),
    ]
    keys = [e.key for e in embedders]
    assert len(set(keys)) == 6
    for key in keys:
        assert key and all(c.isalnum() or c in "._-" for c in key)
    # the long-prompt recipe is part of every key: vectors of another recipe are never mixed in
    monkeypatch.setattr(embed_mod, "WINDOW_RECIPE", "other")
    assert not set(keys) & {e.key for e in embedders}
    # every tier the CLI offers builds its embedder (whose key is not another tier's); an unknown one is refused
    assert len({make_embedder(tier=t, backend="torch").key for t in TIERS}) == len(TIERS) >= 2
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

    assert isinstance(make_embedder(), StaticEmbedder) and make_embedder().key == make_embedder(tier=DEFAULT_TIER).key
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
    # model2vec reads a text's first max_seq_length tokens; ours reads a long text's head and tail (its window)
    ref = emb._load().encode(emb.window(texts), max_length=emb.max_seq_length, use_multiprocessing=False)
    assert emb.window(texts)[:-1] == texts[:-1] and emb.window(texts)[-1] != texts[-1]
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    ok = np.isfinite(ref).all(axis=1) & np.any(ref, axis=1)  # model2vec gives no vector to a text without tokens; ours is a fixed unit vector
    np.testing.assert_allclose(vecs[ok], ref[ok], atol=1e-3)  # model2vec pools in float16
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_plain_ascii_texts_take_the_lowercasing_twin_with_the_same_tokens_words_and_offsets(sample_prompts):
    from analyzer.embed import AsciiRoutedTokenizer

    emb = make_embedder(tier="fast")
    emb._load()
    tok = emb._window_tok
    assert isinstance(tok, AsciiRoutedTokenizer)
    odd = ["Tab\tnew\nline\rCR", "vertical\x0btab and form\x0cfeed", "nul\x00 and del\x7f", "Caf\u00e9 CR\u00c8ME",
           "\u8bf7\u7528\u4e2d\u6587\u56de\u7b54 Step by step", "emoji \U0001f600 ok", "\u0130stanbul", "", "  ",
           "ALL CAPS, punctuation!!! (and) [brackets] {x: 1} a.b_c-d e/f #tag @user $5.00 100%"]
    texts = [*TEXTS, *odd, *sample_prompts[0], sample_prompts[1][:20_000]]
    routed, full = tok.encode_batch(texts, add_special_tokens=False), tok.full.encode_batch(texts, add_special_tokens=False)
    for text, a, b in zip(texts, routed, full, strict=True):
        assert (a.ids, a.offsets, a.word_ids) == (b.ids, b.offsets, b.word_ids), text[:60]
    # the twin strips no accent: an accented text must not reach it (it would get other tokens)
    accented = ["Caf\u00e9 cr\u00e8me"]
    twin, whole = (t.encode_batch(accented, add_special_tokens=False)[0].ids for t in (tok.plain, tok.full))
    assert twin != whole and tok.encode_batch(accented, add_special_tokens=False)[0].ids == whole


def test_plain_texts_word_by_word_get_the_tokenizers_ids_and_the_same_vectors(sample_prompts, monkeypatch):
    import analyzer.embed as embed_mod

    emb = make_embedder(tier="fast")
    emb._load()
    words = emb._words
    assert isinstance(words, embed_mod.PlainWordPieces)
    organic = sample_prompts[1]
    texts = [*TEXTS, "", "  \t\n", "ALL CAPS, punctuation!!! (and) [brackets] {x: 1} a.b_c-d e/f #tag @user $5.00 100%",
             "x" * 150 + " word", "unbelievably hyperparameterised zxqv", "~`^|\\ <> ...", "Tab\tnew\nline\rCR",
             *sample_prompts[0], *(organic[i : i + 300] for i in range(0, 60_000, 300))]
    plain = [t for t in texts if words.plain(t)]
    assert len(plain) > 150
    # what the lowercasing twin gives each text on its own, however the words were cut into pieces before
    for cache_max in (embed_mod.WORD_CACHE_MAX, 50):  # a cache that starts over on every batch gives the same ids
        monkeypatch.setattr(embed_mod, "WORD_CACHE_MAX", cache_max)
        for part in (plain[:7], plain[7:]):
            flat, lens = words.ids(part)
            ref = [e.ids for e in words.tokenizer.encode_batch(part, add_special_tokens=False)]
            assert lens.tolist() == [len(r) for r in ref]
            assert flat.tolist() == [i for r in ref for i in r]
    # not plain: an added token's text (the tokenizer matches it whole), control characters, other scripts
    assert not any(words.plain(t) for t in ["a [UNK] b", "[PAD]", "nul\x00", "Caf\u00e9", "\u8bf7"])
    # vectors: byte for byte those of the tokenizer alone, plain or not, short or long
    mixed = texts + ["Caf\u00e9 cr\u00e8me", "a [UNK] b", organic[:5000], "word " * 200]
    vecs = emb.encode(mixed)
    emb._words = None
    assert np.array_equal(vecs, emb.encode(mixed))


def test_long_texts_heads_from_a_short_probe_are_those_of_the_whole_window(sample_prompts, monkeypatch):
    import analyzer.embed as embed_mod

    emb = make_embedder(tier="fast")
    emb._load()
    organic = sample_prompts[1]
    long = [organic[i : i + 2_000] for i in range(0, 40_000, 2_000)] + [
        "x" * 700 + " then words " * 80,  # one huge first word: the probe holds no head, the window's start is read
        "supercalifragilistic " * 60,  # long words: few tokens in the probe
        "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e. " * 60,  # accents (the full normaliser)
        *sample_prompts[0],
    ]
    assert all(len(t) > emb.max_chars for t in long[:22])
    encodings = emb._window_tok.encode_batch([t[: embed_mod.HEAD_PROBE_CHARS] for t in long], add_special_tokens=False)
    held = [embed_mod._holds_head(e, emb.max_seq_length // 2) for e in encodings]
    assert not held[20] and any(held)  # the huge first word takes the full head's path
    want = emb._tokenised(long)
    monkeypatch.setattr(embed_mod, "HEAD_PROBE_CHARS", emb.max_chars)  # every head from the window's first max_chars
    got = emb._tokenised(long)
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0])


def test_long_plain_texts_windows_word_by_word_get_the_tokenizers_ids(sample_prompts, monkeypatch):
    """A long plain text's head-and-tail window cut word by word has the ids the tokenizer's path gives it; the
    texts whose cuts would fall inside a word (or whose probe holds too few tokens) are left to the tokenizer."""
    import analyzer.embed as embed_mod

    emb = make_embedder(tier="fast")
    emb._load()
    words = emb._words
    organic = sample_prompts[1]
    pieces = [organic[i : i + 1_500] for i in range(0, 90_000, 1_500)] + [organic[i : i + 5_000] for i in range(0, 50_000, 5_000)]
    edge = [
        "x" * 700 + " then words " * 80,  # one huge first word
        "word " * 200 + "y" * 600,  # one huge last word
        "word " * 300 + " " * 500,  # nothing but spaces at the end
        "word " * 300 + " ".join(["abcdefghij" * 3] * 12),  # a tail of few, long words
        "word " * 300 + "z" * 380 + " " + "short words here " * 3,  # the tail's slice starts inside a word
        "supercalifragilistic " * 60,  # long words: few tokens in the probe
        "ALL CAPS!!! (and) [brackets] {x: 1} a.b_c-d e/f #tag @user $5.00 100% " * 30,  # punctuation
        ("q" * 120 + " ") * 10 + "plain words " * 100,  # words the vocabulary cannot piece ([UNK])
        "Tab\tnew\nline\rCR " * 100,
        *(t for t in sample_prompts[0] if len(t) > emb.max_chars),
    ]
    long = [t for t in pieces + edge if words.plain(t) and len(t) > emb.max_chars]
    assert len(long) > 40
    for cache_max in (embed_mod.WORD_CACHE_MAX, 50):  # a cache that starts over between heads and tails
        monkeypatch.setattr(embed_mod, "WORD_CACHE_MAX", cache_max)
        flat, lens, done = words.window_ids(long, emb.max_seq_length, emb.max_chars)
        want_flat, want_lens = emb._tokenised(long)
        got = np.split(flat, np.cumsum(lens)[:-1])
        want = np.split(want_flat, np.cumsum(want_lens)[:-1])
        for i, text in enumerate(long):
            if done[i]:
                assert got[i].tolist() == want[i].tolist(), text[:60]
            else:
                assert lens[i] == 0
        assert done.sum() >= len(long) - 5  # only the odd cases take the tokenizer
        assert not done[long.index(edge[0])] and not done[long.index(edge[1])]
    # and the vectors of the whole path are those of the tokenizer alone
    vecs = emb.encode(long)
    emb._words = None
    assert np.array_equal(vecs, emb.encode(long))


def test_short_plain_texts_of_more_tokens_than_the_window_are_windowed_word_by_word(sample_prompts, monkeypatch):
    """A plain text of few characters but more tokens than the window (code, symbols) is windowed word by word,
    not by the tokenizer, with the ids and vectors the tokenizer's path gives it."""
    emb = make_embedder(tier="fast")
    emb._load()
    organic = sample_prompts[1]
    dense = ["a.b(c)=d[e]; " * 40, "x=1+2*3-4/5 " * 50, "{'k': [1, 2, 3]} " * 35, "#!/$%^&*()_+ " * 50,
             "word " * 10 + "(x) " * 140, "(x) " * 140 + "end words here", organic[:200] + " ;;;" * 60]
    dense = [t for t in dense if emb._words.plain(t) and len(t) <= emb.max_chars]
    assert len(dense) == 7 and any(len(t) > 512 for t in dense)  # some past the head's probe
    assert all(len(emb._window_tok.encode(t, add_special_tokens=False).ids) > emb.max_seq_length for t in dense)
    want_flat, want_lens = emb._tokenised(dense)
    flat, lens, done = emb._words.window_ids(dense, emb.max_seq_length, emb.max_chars)
    assert done.all() and lens.tolist() == want_lens.tolist() and flat.tolist() == want_flat.tolist()
    asked: list[str] = []
    tokenised = emb._tokenised
    monkeypatch.setattr(emb, "_tokenised", lambda texts: (asked.extend(texts), tokenised(texts))[1])
    texts = [*dense, "plain words", "Caf\u00e9"]
    vecs = emb.encode(texts)
    assert asked == ["Caf\u00e9"]  # only the text that is not plain went to the tokenizer
    monkeypatch.setattr(emb, "_words", None)
    assert np.array_equal(vecs, emb.encode(texts))


# --- long prompts: head and tail ----------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CAMPAIGNS = ("censorship_rewrite", "censorship_rewrite", "agentic_tools", "cot_math")


@pytest.fixture(scope="module")
def sample_prompts() -> tuple[list[str], str]:
    """Four real campaign prompts of the bundled sample, and 150k characters of its other (organic) prompts."""
    from analyzer.ingest import read_logs

    truth = json.loads((ROOT / "data" / "sample" / "truth.json").read_text())
    df = next(read_logs([str(ROOT / "data" / "sample" / "requests.jsonl.gz")], batch_size=10**6)).requests
    camp = {n: df[df["account_id"].isin(set(c["accounts"]))]["prompt"].drop_duplicates().tolist()
            for n, c in truth["campaigns"].items()}  # fmt: skip
    planted = set().union(*(set(c["accounts"]) for c in truth["campaigns"].values()))
    organic = df[~df["account_id"].isin(planted)]["prompt"].drop_duplicates().tolist()
    xs = [camp[name][k] for name, k in zip(SAMPLE_CAMPAIGNS, (0, 1, 0, 5), strict=True)]
    return xs, "\n\n".join(organic)[:150_000]


def _tiers() -> list:
    tiers = [pytest.param("fast", id="fast")]
    tiers.append(pytest.param("accurate", id="accurate", marks=pytest.mark.skipif(not HAS_ONNX, reason="no onnx")))
    return tiers


def _embedder(tier: str):
    return make_embedder(tier=tier, backend="onnx") if tier == "accurate" else make_embedder(tier=tier)


@pytest.mark.parametrize("tier", _tiers())
def test_short_texts_get_the_same_vectors_as_before(tier, monkeypatch, sample_prompts):
    """A text that fits the window is embedded exactly as before head-and-tail windows existed."""
    import analyzer.embed as embed_mod

    emb = _embedder(tier)
    fits = [t for t in [*TEXTS, *sample_prompts[0]] if emb.window([t]) == [t]]
    assert len(fits) >= 8  # the short texts and the short campaign prompts
    new = emb.encode(fits)
    monkeypatch.setattr(embed_mod, "window_texts", lambda texts, *a, **k: (list(texts), 0))  # the old path
    np.testing.assert_array_equal(new, emb.encode(fits))


@pytest.mark.parametrize("tier", _tiers())
def test_a_300k_char_prompt_is_embedded_as_its_head_and_tail(tier, sample_prompts):
    emb = _embedder(tier)
    xs, pad = sample_prompts
    long = xs[2] + "\n\n" + (pad * 2)[:300_000] + "\n\nAnswer in one word: " + xs[0]
    w = emb.window([long])[0]
    head, _, tail = w.partition(WINDOW_JOIN)
    assert long.startswith(w[:200]) and long.endswith(w[-200:])  # the instruction first, the question last
    assert w.endswith(xs[0]) and len(w) < 3000
    assert emb.window([w]) == [w]  # the window fits: embedding it is embedding the long prompt
    v_long, v_window = emb.encode([long, w])
    np.testing.assert_array_equal(v_long, v_window)
    assert np.isclose(np.linalg.norm(v_long), 1.0, atol=1e-5)


#: Lowest cosine(padded copy, original) measured over four real campaign prompts of the sample padded with
#: 150k characters of the sample's organic prompts, before and after (fast 0.597, accurate 0.476), less a margin.
PADDED_MIN_COSINE = {"fast": 0.50, "accurate": 0.40}


@pytest.mark.parametrize("tier", _tiers())
def test_padded_copies_stay_near_the_original(tier, sample_prompts):
    emb = _embedder(tier)
    xs, pad = sample_prompts
    texts = [t for x in xs for t in (x, pad + "\n\n" + x, x + "\n\n" + pad)]
    v = emb.encode(texts).reshape(len(xs), 3, -1)
    v_pad = emb.encode([pad])[0]  # the padding alone: what a head-only window would see, padded before
    for i in range(len(xs)):
        before, after = float(v[i, 1] @ v[i, 0]), float(v[i, 2] @ v[i, 0])
        assert before >= PADDED_MIN_COSINE[tier] and after >= PADDED_MIN_COSINE[tier], (i, before, after)
        assert before > float(v_pad @ v[i, 0]) + 0.05  # the tail carries the instruction
        # the padded copy is nearer its own original than any other campaign's original
        others = [float(v[i, 1] @ v[j, 0]) for j in range(len(xs)) if SAMPLE_CAMPAIGNS[j] != SAMPLE_CAMPAIGNS[i]]
        assert before > max(others), (i, before, others)


def test_model_id_ignores_install_path_and_time(tmp_path):
    """A built static model or ONNX export is shared by every environment that installs the same weights."""
    import os
    import shutil

    from analyzer.embed import _model_id

    a = tmp_path / "envA" / "pkg" / "model"
    a.mkdir(parents=True)
    (a / "weights.bin").write_bytes(b"\x01" * 1000)
    (a / "config.json").write_text('{"dim": 384}')
    b = tmp_path / "envB" / "pkg" / "model"
    shutil.copytree(a, b)
    os.utime(b / "weights.bin", (1, 1))
    assert _model_id(a) == _model_id(b)
    (b / "weights.bin").write_bytes(b"\x02" * 1000)  # same size, other weights
    assert _model_id(a) != _model_id(b)
