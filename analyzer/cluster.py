"""Cluster stage: HDBSCAN over the FAISS kNN graph.

The ``hdbscan`` library is quadratic above 60 dimensions, so the density tree is built from the kNN graph
instead: mutual-reachability weights on the kNN edges, a minimum spanning tree, then HDBSCAN's condensed
tree and cluster selection (``fast_hdbscan`` with a precomputed sparse graph). Memory and time grow with
``n * k``. Points that belong to no dense region stay noise (label ``-1``).

Semantic clusters group prompts by topic. A campaign's wrapper can be a small part of each prompt while the
task text inside varies (algebra, geometry, tables...), so its prompts scatter over the topics of their tasks.
A second, literal view catches that: **template families**, prompts that open or close with the same
``edge_words`` words (numbers normalised; see :func:`template_families`). Families of at least ``min_family_size`` unique prompts are the
unit that campaign signals use for their prompts; other prompts use their semantic cluster.

The smallest cluster that can be found has ``min_cluster_size`` unique prompts. On top of that, an exact
prompt repeated in at least ``min_cluster_size`` requests becomes a cluster of its own ("repeat cluster"),
so that a prompt pasted by hundreds of accounts is visible even though it is one point in prompt space.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from analyzer.text import ASCII_NON_WORD


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
    attach_similarity : float
        A noise prompt whose nearest clustered neighbour is at least this similar (cosine) is *attributed* to
        that cluster when campaign signals are computed (``assigned_cluster``); it stays noise in the
        clustering itself.
    selection : str
        ``"leaf"`` keeps the finest dense clusters (campaign templates are small dense blobs inside a large
        diffuse background, where ``"eom"`` tends to return a few giant clusters); ``"eom"`` is HDBSCAN's
        default.
    edge_words : int
        Words at the opening (or closing) that define a literal template family.
    min_family_size : int
        Fewest unique prompts in a template family (literal or scaffold); also how many prompts a sentence
        must recur in to count as scaffold.
    scaffold_min_prompts : int
        Prompts a sentence must recur in to count as scaffold. Lower than ``min_family_size``: a small pool
        composing its wrapper from 5-10 phrasings per fragment repeats each phrasing only a few times.
    scaffold_selection : str
        HDBSCAN selection for scaffold families. ``"leaf"`` keeps distinct wrappers apart (``"eom"`` merged
        two operators' different wrappers into one family on a quiet log); the several leaves of one pool's
        paraphrased wrapper are joined again by the account-cluster graph, which links units worked on by
        the same accounts.
    task_similarity : float
        Prompts at least this similar (reference cosine) are one task worded differently (near duplicates);
        measured on the quick scenario: 2-11% of campaign prompts have a neighbour this close, against
        40-70% of a templated batch over short texts. Task diversity counts these groups.
    """

    k: int = 15
    min_cluster_size: int = 8
    min_samples: int = 5
    selection: str = "leaf"
    attach_similarity: float = 0.6
    edge_words: int = 6
    min_family_size: int = 8
    task_similarity: float = 0.9
    scaffold_selection: str = "leaf"
    scaffold_min_prompts: int = 5


def knn_to_distance_graph(nbrs: np.ndarray, sims: np.ndarray) -> sp.csr_matrix:
    """Sparse symmetric-able Euclidean distance graph from kNN ids and cosine similarities."""
    n, k = nbrs.shape
    rows = np.repeat(np.arange(n), k)
    cols = nbrs.ravel()
    ok = cols >= 0
    return sp.csr_matrix((_distance(sims.ravel()[ok].astype(np.float64)), (rows[ok], cols[ok])), shape=(n, n))


def _distance(sim: np.ndarray) -> np.ndarray:
    """Euclidean distance of unit vectors from their cosine (float64), plus 1e-6 so that copies (distance 0)
    stay an edge of the sparse graph."""
    return np.sqrt(np.clip(2.0 - 2.0 * sim, 0.0, None)) + 1e-6


#: Added to a cosine similarity (>= -1) so that every stored value is positive: a sparse maximum then keeps, for a
#: pair present in one direction only, that direction's value (an absent entry reads as 0). Exact in float64.
_SIM_SHIFT = 2.0


def symmetric_distance_graph(nbrs: np.ndarray, sims: np.ndarray) -> sp.csr_matrix:
    """The kNN graph as ``fast_hdbscan`` symmetrises a precomputed one, built in less memory: every pair found in
    either direction, in both rows, at the smaller of its two distances (the distance of
    :func:`knn_to_distance_graph`, from the larger similarity), no self loops; float64 data, int32 indices.

    ``fast_hdbscan`` symmetrises the directed graph itself (a COO copy, validation, lexsorts on int64 keys and
    float64 copies: about 140 bytes per kNN edge, 1 GiB at 1M requests and 10 GB at the incident's 16M).
    Here the larger similarity of each pair comes from one sparse maximum of the graph and its transpose
    (similarities shifted positive, so an absent direction never wins), about 50 bytes per edge, and the
    distances are computed from it with the same expression: the same values, bit for bit.
    """
    n, k = nbrs.shape
    ok = (nbrs >= 0) & (nbrs != np.arange(n)[:, None])
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ok.sum(axis=1), out=indptr[1:])
    directed = sp.csr_matrix((sims[ok].astype(np.float64) + _SIM_SHIFT, nbrs[ok].astype(np.int32), indptr),
                             shape=(n, n))
    del ok, indptr
    directed.sum_duplicates()  # sorted columns (a row lists each neighbour once)
    both = directed.maximum(directed.T.tocsr())
    del directed
    both.sort_indices()
    both.data = _distance(both.data - _SIM_SHIFT)
    both.indices = both.indices.astype(np.int32, copy=False)
    both.indptr = both.indptr.astype(np.int32, copy=False)
    return both


def _hdbscan_on_symmetric(nbrs: np.ndarray, sims: np.ndarray, min_samples: int, min_cluster_size: int,
                          selection: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``fast_hdbscan(knn_to_distance_graph(nbrs, sims), metric="precomputed")`` on the graph symmetrised here
    (:func:`symmetric_distance_graph`): its own steps after symmetrisation (core distances, mutual-reachability
    graph, Boruvka, bridges, exact weights, cluster tree). ``None`` where this ``fast_hdbscan`` has other
    internals (then the caller uses its public entry point)."""
    try:
        from fast_hdbscan.core_graph import CoreGraph, boruvka_mst
        from fast_hdbscan.hdbscan import clusters_from_spanning_tree
        from fast_hdbscan.precomputed import (
            _build_core_graph_csr,
            _core_distances_csr,
            _patch_mst_weights,
            bridge_forest_with_inf,
        )
    except ImportError:
        return None
    graph = symmetric_distance_graph(nbrs, sims)
    data, indices, indptr = graph.data, graph.indices, graph.indptr
    _, core = _core_distances_csr(data, indices, indptr, min_samples)
    weights, distances, cg_indices = _build_core_graph_csr(data, indices, indptr, core)
    n_components, component_labels, mst = boruvka_mst(CoreGraph(weights, distances, cg_indices, indptr))
    del weights, distances, cg_indices
    if n_components > 1:
        mst = bridge_forest_with_inf(mst, component_labels, graph.shape[0])
    mst = np.column_stack([mst[:, :2], _patch_mst_weights(mst, data, indices, indptr, core)])
    labels, strengths = clusters_from_spanning_tree(mst, min_cluster_size=min_cluster_size,
                                                    cluster_selection_method=selection)[:2]
    return labels, strengths


def cluster_knn_graph(nbrs: np.ndarray, sims: np.ndarray, params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN labels and membership strengths for the points of a kNN graph.

    The graph goes to ``fast_hdbscan`` already symmetric (:func:`symmetric_distance_graph`), through the steps
    its precomputed-graph entry point takes after symmetrising (the same labels; tested against it).
    """
    n = nbrs.shape[0]
    if n < max(params.min_cluster_size, 2):
        return np.full(n, -1, dtype=np.int64), np.zeros(n)
    min_samples, min_size = int(min(params.min_samples, params.k)), int(params.min_cluster_size)
    found = _hdbscan_on_symmetric(nbrs, sims, min_samples, min_size, params.selection)
    if found is None:
        from fast_hdbscan.hdbscan import fast_hdbscan

        found = fast_hdbscan(knn_to_distance_graph(nbrs, sims), metric="precomputed", min_samples=min_samples,
                             min_cluster_size=min_size, cluster_selection_method=params.selection)
    labels, strengths = found
    return relabel_by_size(np.asarray(labels, dtype=np.int64)), np.asarray(strengths, dtype=np.float64)


def members_by_label(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Indices of the points of each non-negative label, in one pass (no per-cluster scans)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, 0)
    ids, first = np.unique(sorted_labels[starts:], return_index=True)
    bounds = list(first + starts) + [len(labels)]
    return {int(c): order[bounds[i] : bounds[i + 1]] for i, c in enumerate(ids)}


def first_copies(codes: np.ndarray, cap: int) -> np.ndarray:
    """Positions of the first ``cap`` occurrences of each value of ``codes`` (ascending positions)."""
    codes = np.asarray(codes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    rank = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    return np.sort(order[rank < cap])


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..m-1 by decreasing size (ties by first point), keeping -1 for noise.

    Makes cluster ids deterministic for a given partition.
    """
    out = np.full_like(labels, -1)
    groups = members_by_label(labels)
    ranked = sorted(groups, key=lambda c: (-len(groups[c]), int(groups[c].min())))
    for new, c in enumerate(ranked):
        out[groups[c]] = new
    return out


def add_repeat_clusters(labels: np.ndarray, request_counts: np.ndarray, min_requests: int) -> np.ndarray:
    """Give each noise prompt sent in at least ``min_requests`` requests a cluster of its own."""
    labels = labels.copy()
    next_id = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    for i in np.flatnonzero((labels < 0) & (request_counts >= min_requests)):
        labels[i] = next_id
        next_id += 1
    return labels


def attach_noise(labels: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, min_similarity: float) -> np.ndarray:
    """Labels where each noise point takes the cluster of its nearest clustered neighbour within reach.

    Neighbours are scanned in order of similarity; a noise point with no clustered neighbour at
    ``min_similarity`` or closer stays ``-1``. Clustered points keep their label.
    """
    out = labels.copy()
    noise = np.flatnonzero(labels < 0)
    if len(noise) == 0 or nbrs.shape[1] == 0:
        return out
    nb = nbrs[noise]
    nb_labels = np.where(nb >= 0, labels[np.clip(nb, 0, None)], -1)
    ok = (nb_labels >= 0) & (sims[noise] >= min_similarity)
    has = ok.any(axis=1)
    first = ok.argmax(axis=1)
    out[noise[has]] = nb_labels[has, first[has]]
    return out


#: CJK ideographs, kana and hangul syllables: scripts written without spaces, where each character counts as
#: one word (a Chinese wrapper is otherwise one long "word" glued to the task text behind it).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_DIGITS = re.compile(r"\d+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens; each CJK character is a word of its own. An ASCII text (most) is split by a
    translation and :meth:`str.split` instead of the pattern (the same words in a fraction of the time)."""
    text = text.lower()
    return text.translate(ASCII_NON_WORD).split() if text.isascii() else _WORD.findall(text)


def _edge_keys(text: str, edge_words: int) -> tuple[str | None, str | None]:
    """``(opening key, closing key)`` of a text for :func:`template_families`: its first and last ``edge_words``
    words (read in windows of ``40 * edge_words`` characters), numbers as 0; ``(None, None)`` when it has fewer
    than ``2 * edge_words + 2`` words or a window fewer than ``edge_words``."""
    window = 40 * edge_words
    head = words(text[:window])
    if len(head) < edge_words:
        return None, None
    if len(text) <= window:  # the head window is the whole text
        tail, n_words = head, len(head)
    else:
        tail = words(text[-window:])
        n_words = 10**6 if len(text) >= 2 * window else max(len(head), len(tail))
        if n_words < 2 * edge_words + 2:  # a window holds no more words than the text (a cut word is still one)
            n_words = len(words(text))
    if n_words < 2 * edge_words + 2 or len(tail) < edge_words:
        return None, None
    return "^" + _DIGITS.sub("0", " ".join(head[:edge_words])), _DIGITS.sub("0", " ".join(tail[-edge_words:])) + "$"


def template_families(texts: Sequence[str], edge_words: int = 6, min_size: int = 8) -> np.ndarray:
    """Label prompts that share their first (else last) ``edge_words`` words with ``min_size``-1 others.

    A prompt joins the family of its opening when that opening is frequent, otherwise the family of its
    closing. Families are not chained through one another, so a generic closing ("Answer in JSON.") cannot
    glue unrelated wrappers together. Returns ``-1`` for prompts in no family; families are numbered by
    decreasing size.
    """
    n = len(texts)
    heads: list[str | None] = [None] * n
    tails: list[str | None] = [None] * n
    for i, text in enumerate(texts):
        heads[i], tails[i] = _edge_keys(text, edge_words)
    head_s = pd.Series(heads, dtype=object)
    tail_s = pd.Series(tails, dtype=object)
    head_ok = head_s.map(head_s.value_counts()).fillna(0).to_numpy() >= min_size
    tail_ok = tail_s.map(tail_s.value_counts()).fillna(0).to_numpy() >= min_size
    key = np.where(head_ok, head_s.to_numpy(), np.where(tail_ok, tail_s.to_numpy(), None))
    labels = np.full(n, -1, dtype=np.int64)
    has = key != None  # noqa: E711 - elementwise comparison on an object array
    if not has.any():
        return labels
    codes, _ = pd.factorize(pd.Series(key[has]))
    labels[has] = codes
    # A closing shared by min_size prompts may keep fewer once some of them took their opening's family.
    sizes = np.bincount(labels[has])
    labels[has] = np.where(sizes[labels[has]] >= min_size, labels[has], -1)
    return relabel_by_size(labels)


def cluster_tightness(labels: np.ndarray, vectors: np.ndarray) -> dict[int, float]:
    """Mean cosine similarity of each cluster's prompts to their centroid."""
    out: dict[int, float] = {}
    for c, idx in members_by_label(labels).items():
        v = vectors[idx]
        centroid = v.mean(axis=0)
        norm = np.linalg.norm(centroid)
        out[c] = float((v @ (centroid / norm)).mean()) if norm > 0 else 0.0
    return out


def task_groups(nbrs: np.ndarray, sims: np.ndarray, min_similarity: float) -> np.ndarray:
    """Near-duplicate prompts: the same task worded a little differently (typos, a lead-in, a retry).

    Connected components of the kNN edges whose similarity (on the reference scale) is at least
    ``min_similarity``. Returns one group id per prompt; a prompt with no such neighbour is a group of its
    own. Campaign signals count distinct *tasks* with it, so a classroom asking a dozen problems in a hundred
    wordings is a dozen tasks, not a thousand.
    """
    from scipy.sparse.csgraph import connected_components

    n, k = nbrs.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(n), k)
    cols = nbrs.ravel()
    ok = (cols >= 0) & (cols != rows) & (sims.ravel() >= min_similarity)
    graph = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.int8), (rows[ok], cols[ok])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


_SENTENCE = re.compile(r"[^.!?。！？；;:：\n]+")
#: ASCII digits as 0 (then a run of 0 as one): what ``_DIGITS.sub("0", text)`` gives for an ASCII text, in less
#: time (most texts are ASCII; the regular expression tests every character against the Unicode digits).
_ASCII_DIGITS_AS_0 = str.maketrans(dict.fromkeys("123456789", "0"))
_ZEROS = re.compile("00+")

#: What joins the sentences of a scaffold string (:func:`scaffolds`).
SCAFFOLD_SEP = " | "


def _sentences(text: str, head_chars: int, tail_chars: int) -> list[str]:
    """Normalised sentences of the head and tail of ``text`` (lower case, digits as 0, single spaces).

    Case and digits are normalised once for the whole text (neither a letter's case nor a digit is a
    sentence boundary).
    """
    if len(text) > head_chars + tail_chars:
        text = text[:head_chars] + "\n" + text[-tail_chars:]
    text = text.lower()
    text = _ZEROS.sub("0", text.translate(_ASCII_DIGITS_AS_0)) if text.isascii() else _DIGITS.sub("0", text)
    sents = (" ".join(s.split()) for s in _SENTENCE.findall(text))
    return [s for s in sents if s]


def sentences(text: str, head_chars: int = 3000, tail_chars: int = 2000) -> list[str]:
    """Normalised sentences of a prompt as :func:`scaffolds` reads them (lower case, digits as 0, single
    spaces; the first ``head_chars`` and last ``tail_chars`` characters only)."""
    return _sentences(text, head_chars, tail_chars)


#: Texts per task when :func:`scaffolds` reads sentences in worker processes (bounded memory per task).
SCAFFOLD_TASK_TEXTS = 25_000

#: Fewest words a sentence needs to have a skeleton (:func:`skeleton`): below it, too many different short
#: sentences share one (and a CJK sentence, one run of characters without spaces, has none).
SKELETON_MIN_WORDS = 6


#: Characters of text read at once by :func:`_block_sentences` (a task's texts go through it in blocks of about
#: this size: bounded memory per block, whatever the texts' lengths).
SCAFFOLD_BLOCK_CHARS = 1 << 21

#: :func:`_sentences` for ASCII text, one character for another (a table CPython applies on its ASCII fast path):
#: digits 1-9 as 0, every sentence boundary as ``.``, whitespace as a space (``\s``: :meth:`str.split`'s).
_ASCII_SENTENCE_CHARS = str.maketrans({**dict.fromkeys("123456789", "0"), **dict.fromkeys("!?;:\n", "."),
                                       **dict.fromkeys("\t\x0b\x0c\r\x1c\x1d\x1e\x1f", " ")})
#: What joins the ASCII texts of a block (:func:`_ascii_sentences`): a NUL between two boundaries, a sentence.
_TEXT_MARK = ".\x00."
#: Two spaces or more (a literal start: faster to find than `` {2,}``).
_SPACES = re.compile("  +")


def _char_blocks(texts: Sequence[str], limit: int) -> Iterator[slice]:
    """Consecutive slices of ``texts`` of about :data:`SCAFFOLD_BLOCK_CHARS` characters each (a text counted up to
    ``limit``: what is read of it)."""
    start, size = 0, 0
    for i, text in enumerate(texts):
        size += min(len(text), limit)
        if size >= SCAFFOLD_BLOCK_CHARS:
            yield slice(start, i + 1)
            start, size = i + 1, 0
    if start < len(texts):
        yield slice(start, len(texts))


def _ascii_sentences(texts: list[str]) -> list[Iterable[str]] | None:
    """:func:`_sentences` of ASCII texts (their heads and tails already cut), each text's distinct ones: the texts
    read as one string by a few calls over all of them (a translation on CPython's ASCII fast path, two literal
    patterns, one split) instead of a regular expression and a split per sentence. ``None`` where a text holds the
    separator as a sentence of its own (then read them one by one)."""
    block = _TEXT_MARK.join(texts).lower().translate(_ASCII_SENTENCE_CHARS)
    pieces = _SPACES.sub(" ", _ZEROS.sub("0", block)).split(".")  # a sentence: a piece without its end spaces
    del block
    if pieces.count("\x00") != len(texts) - 1:
        return None
    out: list[Iterable[str]] = []
    start = 0
    for j in range(len(texts)):
        end = pieces.index("\x00", start) if j < len(texts) - 1 else len(pieces)
        out.append(dict.fromkeys(filter(None, map(str.strip, pieces[start:end]))))
        start = end + 1
    return out


def _non_ascii(n: int, ascii_at: np.ndarray) -> list[int]:
    """The positions in ``range(n)`` that are not in ``ascii_at``."""
    other = np.ones(n, dtype=bool)
    other[ascii_at] = False
    return np.flatnonzero(other).tolist()


def _block_sentences(texts: Sequence[str], head_chars: int, tail_chars: int) -> tuple[list[str], np.ndarray]:
    """Each text's distinct :func:`_sentences` in order (``dict.fromkeys``), all texts' one after another, and how
    many each text has. ASCII texts (most prompts) are read together (:func:`_ascii_sentences`), others one by one."""
    keep = head_chars + tail_chars
    cut = [t if len(t) <= keep else t[:head_chars] + "\n" + t[-tail_chars:] for t in texts]
    per_text: list[Iterable[str]] = [()] * len(cut)
    plain = [i for i, t in enumerate(cut) if t.isascii()]
    together = _ascii_sentences([cut[i] for i in plain]) if plain else []
    if together is None:
        plain, together = [], []
    for i, sents in zip(plain, together, strict=True):
        per_text[i] = sents
    for i in _non_ascii(len(cut), np.array(plain, dtype=np.int64)):
        per_text[i] = dict.fromkeys(_sentences(cut[i], head_chars, tail_chars))
    lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
    return [s for sents in per_text for s in sents], lengths


#: Per byte: whether it is an ASCII word character (``\w``: not in :data:`analyzer.text.ASCII_NON_WORD`).
_ASCII_WORD = np.array([c < 128 and c not in ASCII_NON_WORD for c in range(256)], dtype=bool)


def _ascii_bytes(sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the ASCII sentences among ``sentences`` (most), and their bytes one after another, each
    followed by a line break (a sentence holds none)."""
    at = np.fromiter(map(str.isascii, sentences), dtype=bool, count=len(sentences))
    joined = "\n".join(compress(sentences, at)) + "\n" if at.any() else ""
    return np.flatnonzero(at), np.frombuffer(joined.encode("ascii"), dtype=np.uint8)


#: :func:`_hashes64`'s hash after a ``"\\x00"`` (a skeleton's, :func:`_skeleton_hashes`).
_BLAKE2B_64_SKELETON = hashlib.blake2b(b"\x00", digest_size=8)


def _skeleton_hashes(sentences: Sequence[str]) -> np.ndarray:
    """The :func:`_hashes64` hash of each normalised sentence's :func:`skeleton` after a ``"\\x00"`` (0: it has
    none). The ASCII sentences' skeletons (most) are made for all at once, on their bytes, and hashed from them."""
    out = np.zeros(len(sentences), dtype=np.int64)
    where, b = _ascii_bytes(sentences)
    if len(b):
        gap = (b == 32) | (b == 10)
        word_ends = np.flatnonzero(~gap[:-1] & gap[1:])  # the last byte is a line break
        letters = np.empty((len(word_ends), 3), dtype=np.uint8)
        letters[:, 0] = b[np.concatenate([[0], np.flatnonzero(gap[:-1] & ~gap[1:]) + 1])]  # a sentence opens a word
        letters[:, 1] = b[word_ends]
        letters[:, 2] = b[word_ends + 1]  # the space or line break after the word
        ends = np.flatnonzero(letters[:, 2] == 10) * 3 + 2  # each skeleton's end (its line break) in the bytes
        n_words = np.diff(ends, prepend=-1) // 3
        keyed = np.flatnonzero(n_words >= SKELETON_MIN_WORDS)
        skeletons = memoryview(letters.tobytes())
        digests: list[bytes] = []
        for a, z in zip((ends[keyed] - 3 * n_words[keyed] + 1).tolist(), ends[keyed].tolist(), strict=True):
            h = _BLAKE2B_64_SKELETON.copy()
            h.update(skeletons[a:z])
            digests.append(h.digest())
        out[where[keyed]] = np.frombuffer(b"".join(digests), dtype="<i8")
    keyed_others = [(i, sk) for i in _non_ascii(len(sentences), where) for sk in (skeleton(sentences[i]),) if sk]
    if keyed_others:
        out[[i for i, _ in keyed_others]] = _hashes64("\x00" + sk for _, sk in keyed_others)
    return out


def _word_counts(sentences: Sequence[str]) -> np.ndarray:
    """``len(_WORD.findall(s))`` of each sentence (a CJK character is a word, as a run of other word characters
    is); the ASCII sentences' (most) for all at once, on their bytes."""
    out = np.zeros(len(sentences), dtype=np.int64)
    where, b = _ascii_bytes(sentences)
    if len(b):
        line_ends = np.flatnonzero(b == 10)
        word = _ASCII_WORD[b]
        starts = np.flatnonzero(word[1:] & ~word[:-1]) + 1
        if word[0]:
            starts = np.concatenate([[0], starts])
        out[where] = np.diff(np.searchsorted(starts, line_ends), prepend=0)  # word starts before each line's end
    for i in _non_ascii(len(sentences), where):
        out[i] = len(_WORD.findall(sentences[i]))
    return out


#: :func:`_hashes64`'s hash before any input, copied for each string (no keyword parsing or set-up per string).
_BLAKE2B_64 = hashlib.blake2b(digest_size=8)


def _hashes64(strings: Iterable[str]) -> np.ndarray:
    """A 64-bit hash of each string (its UTF-8 bytes' 8-byte BLAKE2b digest, read as a little-endian int64), the
    same in every process (Python's own ``hash`` of a string is seeded per process, so worker processes could not
    count together with it). The digests of all strings become one array at once."""
    digests: list[bytes] = []
    for s in strings:
        h = _BLAKE2B_64.copy()
        h.update(s.encode("utf-8", "surrogatepass"))
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype="<i8").astype(np.int64)


def skeleton(sentence: str) -> str | None:
    """The typo-tolerant key of a normalised sentence: the first and last character of each of its words, in
    order (``None`` under :data:`SKELETON_MIN_WORDS` words).

    A wrapper retyped by hand (or by a model told to vary it) for every request keeps few sentences verbatim:
    at one typo in three words a ten-word sentence is intact in 3% of them. A typo inside a word (two letters
    swapped, one dropped or doubled) keeps its first and last letters, so the retyped copies share a skeleton;
    two different sentences of six or more words rarely do unless they differ only inside words."""
    if sentence.count(" ") < SKELETON_MIN_WORDS - 1:  # sentences are single-spaced: fewer words, no split
        return None
    toks = sentence.split()
    if len(toks) < SKELETON_MIN_WORDS:
        return None
    return " ".join([t[0] + t[-1] for t in toks])


def _sentence_hashes(task: tuple[Sequence[str], int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`scaffolds`' first pass over some texts: ``(distinct sentences per text, their hashes in order,
    their skeletons' hashes in order)``, read in blocks of :data:`SCAFFOLD_BLOCK_CHARS` (:func:`_block_sentences`)."""
    texts, head_chars, tail_chars = task
    lengths: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    chunks: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    skel_chunks: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    for part in _char_blocks(texts, head_chars + tail_chars + 1):
        sents, n = _block_sentences(texts[part], head_chars, tail_chars)
        lengths.append(n)
        chunks.append(_hashes64(sents))
        skel_chunks.append(_skeleton_hashes(sents))
    return np.concatenate(lengths), np.concatenate(chunks), np.concatenate(skel_chunks)


#: What :func:`_scaffolds_of` returns for a text: ``None`` (no scaffold), or its scaffold's parts in the text's
#: order: a sentence, or the hash of a recurring skeleton whose sentence is made over every task
#: (:func:`consensus`).
ScaffoldParts = tuple[str | int, ...] | None


def consensus(variants: Mapping[str, int]) -> str:
    """One sentence for the ``variants`` of a skeleton (sentence -> prompts using it): at each word position the
    word most of them carry (ties: the first in sort order). Retyped copies have their typos in different words,
    so the consensus of enough copies is the wrapper as written, even where no copy is intact; without typos it
    is the most used variant, word for word."""
    rows = [(v.split(), n) for v, n in variants.items()]
    width = Counter(len(toks) for toks, _ in rows).most_common(1)[0][0]  # one skeleton, one word count
    rows = [(toks, n) for toks, n in rows if len(toks) == width]
    out = []
    for j in range(width):
        votes: Counter[str] = Counter()
        for toks, n in rows:
            votes[toks[j]] += n
        out.append(min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0])
    return " ".join(out)


def _scaffolds_of(task: tuple[Sequence[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int, int, int, int]
                  ) -> tuple[list[ScaffoldParts], dict[int, Counter[str]]]:
    """:func:`scaffolds`' second pass over some texts, given each of their sentences' use count, its skeleton's
    hash and that skeleton's use count (in the first pass's order, one array each for all: ``n_sents`` per
    text): the scaffold parts of each text, and for each recurring skeleton met the prompts using each of its
    sentences (for :func:`consensus`). Sentences and their words are read for all texts at once (by blocks, as in
    the first pass); only the texts with a scaffold are gone through one by one."""
    (texts, df_flat, skel_flat, skel_df_flat, n_sents, min_prompts, min_sentence_words, min_scaffold_words,
     head_chars, tail_chars) = task
    sents: list[str] = []
    for part in _char_blocks(texts, head_chars + tail_chars + 1):
        sents += _block_sentences(texts[part], head_chars, tail_chars)[0]  # as in the first pass
    if len(sents) != len(df_flat):
        raise AssertionError("the second scaffold pass read other sentences than the first")
    n_words = _word_counts(sents)
    # Per sentence: whether it recurs (verbatim or by its skeleton), whether it stands in the scaffold by its skeleton
    # (a recurring skeleton with other sentences: they stand as one) and whether it is long enough to stand in it.
    recurs = (df_flat >= min_prompts) | (skel_df_flat >= min_prompts)
    retyped = (skel_df_flat >= min_prompts) & (skel_df_flat > df_flat)
    common = recurs & (n_words >= min_sentence_words)
    variants: dict[int, Counter[str]] = {}
    for i in np.flatnonzero(retyped).tolist():
        variants.setdefault(int(skel_flat[i]), Counter())[sents[i]] += 1
    text_of = np.repeat(np.arange(len(texts)), n_sents)
    n_common = np.bincount(text_of, weights=np.where(common, n_words, 0), minlength=len(texts))
    own = np.bincount(text_of, weights=np.where(recurs, 0, n_words), minlength=len(texts))  # the prompt's own words
    out: list[ScaffoldParts] = [None] * len(texts)
    ends = np.cumsum(n_sents)
    skel_of, retyped_of = skel_flat.tolist(), retyped.tolist()
    for j in np.flatnonzero((n_common >= min_scaffold_words) & (own >= min_sentence_words)).tolist():
        at = np.flatnonzero(common[ends[j] - n_sents[j] : ends[j]]) + (ends[j] - n_sents[j])
        out[j] = tuple(skel_of[i] if retyped_of[i] else sents[i] for i in at.tolist())
    return out, variants


def _ranks(lengths: np.ndarray) -> np.ndarray:
    """``0 .. m-1`` for each ``m`` of ``lengths``, one after the other."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def scaffolds(texts: Sequence[str], min_prompts: int = 8, min_sentence_words: int = 3,
              min_scaffold_words: int = 8, head_chars: int = 3000, tail_chars: int = 2000,
              owners: Sequence[object] | None = None, workers: int = 1) -> list[str | None]:
    """The scaffold of each prompt: its sentences that recur in at least ``min_prompts`` prompts, verbatim or
    retyped.

    A wrapper paraphrased by composing interchangeable fragments in varying order shares no opening or
    closing word run with its siblings, but each fragment recurs verbatim across many prompts while the task
    text inside does not. A prompt's scaffold is its recurring sentences (of ``min_sentence_words`` words or
    more; CJK characters count as words) in sorted order, kept when they hold ``min_scaffold_words`` words and
    the prompt also has text of its own (else it is a repeat, not a filled template). ``None`` otherwise.
    Only the first ``head_chars`` and last ``tail_chars`` characters are read (padding cannot hide a wrapper
    at either end, and memory stays bounded).

    A sentence also recurs when its :func:`skeleton` does (a fragment retyped with typos in every request). Where
    a recurring skeleton is used by more prompts (or owners) than the sentence itself, it has other sentences, and
    all of them stand in the scaffold as one: the :func:`consensus` of its variants (word by word, the most used),
    so retyped copies of one wrapper share a scaffold, spelled as the wrapper was written.

    With ``owners`` (one per text: the account that sent it), a sentence (or skeleton) recurs when
    ``min_prompts`` distinct owners use it: one account repeating its own phrasing is not a shared wrapper.

    ``workers`` above 1: both passes over the texts run in that many worker processes, started once for both
    (:func:`analyzer.executor.process_pool`, :data:`SCAFFOLD_TASK_TEXTS` texts a task); the same result.
    """
    from analyzer.executor import process_pool

    with process_pool(workers) as process_map:
        return _scaffolds(texts, min_prompts, min_sentence_words, min_scaffold_words, head_chars, tail_chars, owners,
                          workers, process_map)


def _scaffolds(texts: Sequence[str], min_prompts: int, min_sentence_words: int, min_scaffold_words: int,
               head_chars: int, tail_chars: int, owners: Sequence[object] | None, workers: int,
               process_map: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]) -> list[str | None]:
    """:func:`scaffolds`, its passes run by ``process_map`` (``process_map(fn, tasks)``: ``[fn(t) for t in tasks]``)."""

    # First pass: how many prompts (or owners) use each sentence and each skeleton, counted on 64-bit hashes; the
    # sentences themselves are not kept (every prompt's sentences held 0.5 GiB at 1M requests, growing with the
    # prompts). Two different sentences with one hash would be counted together: about one chance in 10^6 at
    # 5M distinct sentences.
    n = len(texts)
    step = SCAFFOLD_TASK_TEXTS if workers > 1 else max(n, 1)
    first = process_map(_sentence_hashes, [(texts[a : a + step], head_chars, tail_chars) for a in range(0, n, step)])
    empty = np.zeros(0, dtype=np.int64)
    lengths = np.concatenate([f[0] for f in first]) if first else empty
    sent_hash = np.concatenate([f[1] for f in first]) if first else empty
    skel_hash = np.concatenate([f[2] for f in first]) if first else empty
    del first
    prompt_of = np.repeat(np.arange(n, dtype=np.int32 if n < 2**31 else np.int64), lengths)  # occurrence -> prompt
    if owners is None:
        unit, n_units = prompt_of, max(n, 1)
    else:
        owner_code = pd.factorize(pd.Series(list(owners), dtype=object), use_na_sentinel=False)[0].astype(np.int64)
        n_units = int(owner_code.max(initial=0)) + 1
        unit = np.repeat(owner_code, lengths)
    df_of = _distinct_users(sent_hash, unit, n_units, per_prompt_distinct=owners is None)
    skel_df = np.zeros(len(skel_hash), dtype=np.int64)
    has_skel = skel_hash != 0
    skel_df[has_skel] = _distinct_users(skel_hash[has_skel], unit[has_skel], n_units, per_prompt_distinct=False)
    del sent_hash
    ends = np.cumsum(lengths)
    starts = ends - lengths
    # Only a prompt with a recurring sentence can have a scaffold: the second pass splits those again.
    recurring = (df_of >= min_prompts) | (skel_df >= min_prompts)
    has_recurring = np.flatnonzero(np.bincount(prompt_of[recurring], minlength=n) > 0)
    del recurring, prompt_of

    def occurrences(part: np.ndarray) -> np.ndarray:
        return np.repeat(starts[part], lengths[part]) + _ranks(lengths[part])

    tasks = [([texts[i] for i in part], df_of[occ], skel_hash[occ], skel_df[occ], lengths[part], min_prompts,
              min_sentence_words, min_scaffold_words, head_chars, tail_chars)
             for part in (has_recurring[a : a + step] for a in range(0, len(has_recurring), step))
             for occ in (occurrences(part),)]
    del df_of, skel_hash, skel_df, unit, has_skel  # the tasks hold their own slices
    parts_of: list[ScaffoldParts] = []
    variants: dict[int, Counter[str]] = {}
    for found, seen in process_map(_scaffolds_of, tasks):
        parts_of.extend(found)
        for h, counts in seen.items():
            variants.setdefault(h, Counter()).update(counts)
    named_as = {h: consensus(counts) for h, counts in variants.items()}
    del variants
    out: list[str | None] = [None] * n
    by_parts: dict[tuple[str | int, ...], str] = {}
    shared: dict[str, str] = {}  # one string per distinct scaffold (a wrapper's prompts share a few)
    for i, parts in zip(has_recurring.tolist(), parts_of, strict=True):
        if parts is None:
            continue
        scaffold = by_parts.get(parts)
        if scaffold is None:
            named = SCAFFOLD_SEP.join(sorted(dict.fromkeys(named_as[x] if isinstance(x, int) else x for x in parts)))
            scaffold = by_parts[parts] = shared.setdefault(named, named)
        out[i] = scaffold
    return out


def scaffold_sets(scaffold_of: Sequence[str | None], keep: Sequence[bool] | None = None) -> list[frozenset[str] | None]:
    """Each prompt's scaffold (a :func:`scaffolds` string) as the set of its sentences, ``None`` for none (or where
    ``keep`` is False); one set per distinct scaffold, shared by its prompts."""
    sets: dict[str, frozenset[str]] = {}
    out: list[frozenset[str] | None] = [None] * len(scaffold_of)
    for i, x in enumerate(scaffold_of):
        if x is not None and (keep is None or keep[i]):
            found = sets.get(x)
            out[i] = found if found is not None else sets.setdefault(x, frozenset(x.split(SCAFFOLD_SEP)))
    return out


def tasks_apart_from_wrappers(tasks: np.ndarray, texts: Sequence[str], wrappers: Sequence[Collection[str] | None],
                              where: np.ndarray, first_new: int | None = None, keep_first: bool = True) -> np.ndarray:
    """Task ids with each prompt at ``where`` kept in its group only beside prompts of the same payload.

    Near-duplicate tasks are found by vector similarity (:func:`task_groups`), which holds while the model reads
    the wrapper: a long wrapper in a language it does not read (Spanish word pieces, on the fast tier) pulls
    every task inside it to 0.83-0.95, so hundreds of distinct questions read as a handful of tasks. For the
    prompts at ``where`` a task is its payload instead: its sentences (:func:`sentences`) outside its wrapper's
    (``wrappers[i]``: the prompt's recurring sentences, its scaffold). Within a group the first payload met keeps
    the group's id (``keep_first``; a daily run, which sees only some of a group's prompts, passes False: every
    payload gets a new id); each other one gets a new id from ``first_new`` (default: one past the largest).
    Other prompts keep their ids."""
    out = np.array(tasks, dtype=np.int64, copy=True)
    next_id = int(out.max(initial=-1)) + 1 if first_new is None else int(first_new)
    ids: dict[tuple[int, tuple[str, ...]], int] = {}
    kept: set[int] = set()  # groups whose first payload kept their id
    for i in np.flatnonzero(where).tolist():
        wrapper = wrappers[i]
        if not wrapper:
            continue
        payload = tuple(x for x in sentences(texts[i]) if x not in wrapper)
        key = (int(out[i]), payload)
        if key not in ids:
            if key[0] in kept or not keep_first:
                ids[key], next_id = next_id, next_id + 1
            else:
                kept.add(key[0])
                ids[key] = key[0]
        out[i] = ids[key]
    return out


def _distinct_users(hashes: np.ndarray, unit: np.ndarray, n_units: int, per_prompt_distinct: bool) -> np.ndarray:
    """Per occurrence of a hash: how many distinct units (prompts or owners) hold it. ``per_prompt_distinct``: the
    occurrences of one unit are already distinct (a prompt's sentences are), so a count of occurrences will do."""
    where, keys = pd.factorize(hashes)  # hashed, not sorted: the counts are all that matter
    if per_prompt_distinct:
        return np.bincount(where, minlength=len(keys))[where]
    pairs = pd.unique(where.astype(np.int64) * n_units + unit)  # (hash, unit)
    return np.bincount(pairs // n_units, minlength=len(keys))[where]
