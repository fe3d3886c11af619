"""Labelling stage: c-TF-IDF keywords, exemplars and the recovered prompt template of a cluster.

Everything here is pure (no I/O) and cheap enough to run on every cluster of a large workspace.

Two tokenisations are used:

* :func:`tokenize` - lowercase *word* tokens (letters/digits runs; every CJK ideograph or kana is a
  token of its own, since those scripts do not separate words with spaces). Punctuation is dropped.
  This feeds the keywords.
* the template tokeniser - the same words plus every punctuation character as a token of its own, so
  that a scaffold such as ``"Problem: {…}\\n\\nAnswer:"`` keeps its colons. Matching is on lowercase tokens;
  the template text keeps the case and the line breaks of the reference prompt.

Template recovery (:func:`extract_template`), in short: sample at most ``max_prompts`` prompts, count the
document frequency of every token, pick a *reference* prompt (the approximate medoid by token-set
Jaccard), align every other distinct prompt to it (patience-style, :func:`_align`: tokens frequent in the
sample that occur once in both prompts are anchors; the stretches between anchors match by their common
ends and are then aligned the same way once more), pick the *family* of prompts that share long aligned
blocks with the reference (so that a cluster with several wrapper variants recovers the dominant wrapper
instead of only the words all variants share), and call a reference token *fixed* when it is aligned in at least ``min_support`` of
the family. Runs of fixed tokens with no content word (stop words, punctuation) or with a single token
are dropped - stop words alone never make a template. Runs of non-fixed tokens become ``{…}`` slots.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from itertools import accumulate, chain
from typing import TYPE_CHECKING

import numpy as np

from analyzer.text import ASCII_NON_WORD

if TYPE_CHECKING:
    from scipy import sparse

__all__ = [
    "SLOT",
    "Template",
    "cluster_label",
    "ctfidf_keywords",
    "exemplars",
    "extract_template",
    "template_match",
    "templates_of",
    "tokenize",
]

SLOT = "{…}"
"""How a variable slot is shown in :attr:`Template.text`."""

# Scripts written without spaces between words: every character is a token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df"
_WORD_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
# _TOKEN_RE's tokens of a lowercase ASCII text, found faster (\x1c-\x1f are whitespace to Unicode \s only)
_ASCII_TOKEN_RE = re.compile(r"\w+|[^\w\s\x1c-\x1f]", re.ASCII)
_CJK_RE = re.compile(rf"[{_CJK}]")
# _WORD_RE's tokens of two characters or more in a lowercase ASCII text
_ASCII_LONG_WORD_RE = re.compile(r"\w\w+", re.ASCII)

# Caps that keep the template work bounded on very long prompts.
_HEAD_TOKENS = 300
_TAIL_TOKENS = 100
_LONG_CHARS = 3200  # longer texts are only scanned in two windows
_HEAD_CHARS = 2400
_TAIL_CHARS = 800
_CUT = "\x00cut\x00"  # marks the cut between head and tail; the tokenisers never produce it
_KEYWORD_TOKENS = 400  # tokens per document considered by the keywords
_KEYWORD_SCAN_CHARS = 8_000  # a longer document's tokens are looked for in this prefix first
# c-TF-IDF pruning: in a class of at least _PRUNE_MIN_CLASS_DOCS documents, a term found in fewer than
# _PRUNE_MIN_TERM_DOCS of them is dropped (one prompt's own words do not describe a cluster).
_PRUNE_MIN_CLASS_DOCS = 5
_PRUNE_MIN_TERM_DOCS = 2

#: scikit-learn's English stop words (``sklearn.feature_extraction.text.ENGLISH_STOP_WORDS``, BSD-3-Clause), held
#: here so that the worker processes that recover templates import NumPy only, not scikit-learn (about 1.5 s a
#: worker); ``tests/test_label.py`` checks it is scikit-learn's list.
ENGLISH_STOP_WORDS = frozenset("""
    a about above across after afterwards again against all almost alone along already also although
    always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
    are around as at back be became because become becomes becoming been before beforehand behind being
    below beside besides between beyond bill both bottom but by call can cannot cant co con could
    couldnt cry de describe detail do done down due during each eg eight either eleven else elsewhere
    empty enough etc even ever every everyone everything everywhere except few fifteen fifty fill find
    fire first five for former formerly forty found four from front full further get give go had has
    hasnt have he hence her here hereafter hereby herein hereupon hers herself him himself his how
    however hundred i ie if in inc indeed interest into is it its itself keep last latter latterly least
    less ltd made many may me meanwhile might mill mine more moreover most mostly move much must my
    myself name namely neither never nevertheless next nine no nobody none noone nor not nothing now
    nowhere of off often on once one only onto or other others otherwise our ours ourselves out over own
    part per perhaps please put rather re same see seem seemed seeming seems serious several she should
    show side since sincere six sixty so some somehow someone something sometime sometimes somewhere
    still such system take ten than that the their them themselves then thence there thereafter thereby
    therefore therein thereupon these they thick thin third this those though three through throughout
    thru thus to together too top toward towards twelve twenty two un under until up upon us very via
    was we well were what whatever when whence whenever where whereafter whereas whereby wherein
    whereupon wherever whether which while whither who whoever whole whom whose why will with within
    without would yet you your yours yourself yourselves
""".split())

_STOP = ENGLISH_STOP_WORDS | frozenset(
    "的了是在我你他她它们吗呢吧啊和与或及这那个一不有也就都而请把被为之"
)

_FAMILY_MIN_SHARE = 0.25  # the family holds at least this share of the prompts, else all of them
_DEFAULT_MIN_MATCH = 0.8


@dataclass(frozen=True)
class Template:
    """A prompt scaffold recovered from a cluster.

    Attributes:
        text: the scaffold, variable slots shown as ``"{…}"``; with ``n_slots == 0`` the literal prompt.
        n_fixed_words: number of word tokens in the fixed scaffold.
        coverage: share of the given prompts that contain the scaffold (at least ``min_match`` of its fixed
            words, in order; see :func:`template_match`).
        n_slots: number of variable slots.
        slot_entropy: mean normalised entropy of the slot fillings, weighted by the mean filling length
            (0 = every slot is always filled the same way, 1 = every filling differs).
    """

    text: str
    n_fixed_words: int
    coverage: float
    n_slots: int
    slot_entropy: float


# --------------------------------------------------------------------------------------------- tokens


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens of ``text``: letter/digit runs (numbers kept), one token per CJK character.

    Punctuation and whitespace are dropped.
    """
    return _WORD_RE.findall(text.lower())


def _is_word(tok: str) -> bool:
    c = tok[0]
    return c == "_" or c.isalnum()


def _is_content(tok: str) -> bool:
    """A word that can anchor a template: not a stop word, not a bare number, not a single Latin letter."""
    if not _is_word(tok) or tok in _STOP or tok.isdigit():
        return False
    return len(tok) >= 2 or _CJK_RE.match(tok) is not None


def _windows(low: str) -> tuple[str, str | None]:
    """The text scanned for tokens: all of it, or a head and a tail window when it is very long."""
    if len(low) <= _LONG_CHARS:
        return low, None
    return low[:_HEAD_CHARS], low[-_TAIL_CHARS:]


def _token_re(low: str) -> re.Pattern[str]:
    """The pattern that finds the template tokens of the lowercase ``low``: :data:`_TOKEN_RE`, or the same
    tokens' faster ASCII pattern on a plain ASCII text."""
    return _ASCII_TOKEN_RE if low.isascii() else _TOKEN_RE


def _tokens(text: str) -> list[str]:
    """Lowercase template tokens (words and punctuation), capped to head + ``_CUT`` + tail."""
    low = text.lower()
    token_re = _token_re(low)
    head, tail = _windows(low)
    toks = token_re.findall(head)
    if tail is not None:
        toks = [*toks[:_HEAD_TOKENS], _CUT, *token_re.findall(tail)[1:][-_TAIL_TOKENS:]]  # 1st may be cut
    if len(toks) > _HEAD_TOKENS + _TAIL_TOKENS + 1:
        toks = [*toks[:_HEAD_TOKENS], _CUT, *toks[-_TAIL_TOKENS:]]
    return toks


def _tokens_with_gaps(text: str) -> tuple[list[str], list[str], list[str]]:
    """:func:`_tokens` plus, per token, its original spelling and the whitespace before it."""
    low = text.lower()
    same = len(low) == len(text)
    token_re = _token_re(low)
    head, tail = _windows(low)

    def scan(s: str, offset: int) -> tuple[list[str], list[str], list[str]]:
        toks: list[str] = []
        shown: list[str] = []
        gaps: list[str] = []
        end = 0
        for m in token_re.finditer(s):
            a, b = m.span()
            toks.append(m.group())
            shown.append(text[offset + a : offset + b] if same else m.group())
            gaps.append(s[end:a])
            end = b
        return toks, shown, gaps

    toks, shown, gaps = scan(head, 0)
    if tail is not None:
        ttoks, tshown, tgaps = scan(tail, len(low) - len(tail))
        cut = slice(1, None)
        ttoks, tshown, tgaps = (
            ttoks[cut][-_TAIL_TOKENS:],
            tshown[cut][-_TAIL_TOKENS:],
            tgaps[cut][-_TAIL_TOKENS:],
        )
        toks = [*toks[:_HEAD_TOKENS], _CUT, *ttoks]
        shown = [*shown[:_HEAD_TOKENS], _CUT, *tshown]
        gaps = [*gaps[:_HEAD_TOKENS], " ", *tgaps]
    if len(toks) > _HEAD_TOKENS + _TAIL_TOKENS + 1:
        toks = [*toks[:_HEAD_TOKENS], _CUT, *toks[-_TAIL_TOKENS:]]
        shown = [*shown[:_HEAD_TOKENS], _CUT, *shown[-_TAIL_TOKENS:]]
        gaps = [*gaps[:_HEAD_TOKENS], " ", *gaps[-_TAIL_TOKENS:]]
    return toks, shown, gaps


def _show_gap(gap: str) -> str:
    if "\n" in gap:
        return "\n\n" if gap.count("\n") > 1 else "\n"
    return " " if gap else ""


# ------------------------------------------------------------------------------------------ matching


@lru_cache(maxsize=4096)
def _template_parts(text: str, literal: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(fixed words, all fixed tokens) of a template text, lowercase.

    A ``literal`` template (no slots) is tokenised exactly like a prompt, caps included; otherwise the
    text is split on :data:`SLOT` markers.
    """
    if literal:
        toks = _tokens(text)
    else:
        toks = [t for part in text.lower().split(SLOT) for t in _TOKEN_RE.findall(part)]
    return tuple(t for t in toks if _is_word(t)), tuple(toks)


def _match_fraction(fixed: Sequence[str], fixed_set: frozenset[str], toks: list[str]) -> float:
    """Share of ``fixed`` found in ``toks`` in order (exact when all are found, else a lower bound)."""
    if not fixed:
        return 0.0
    red = [t for t in toks if t in fixed_set]
    if len(red) < len(fixed):
        if len(red) < 0.5 * len(fixed):  # cheap bound; callers only compare with thresholds >= 0.5
            return len(red) / len(fixed)
    else:
        it = iter(red)
        if all(t in it for t in fixed):  # the whole scaffold is a subsequence: common, and exact
            return 1.0
    sm = SequenceMatcher(None, fixed, red, autojunk=False)
    return sum(b.size for b in sm.get_matching_blocks()) / len(fixed)


def template_match(template: Template, prompt: str, min_match: float = _DEFAULT_MIN_MATCH) -> bool:
    """True when ``prompt`` contains at least ``min_match`` of the template's fixed words, in order.

    Matching is on lowercase tokens (long prompts: their first 300 and last 100 tokens). A template
    without fixed words matches only a prompt with exactly its tokens, and only when it has no slots.
    """
    literal = template.n_slots == 0
    fixed, fixed_toks = _template_parts(template.text, literal)
    toks = _tokens(prompt)
    if not fixed:
        return literal and tuple(toks) == fixed_toks
    return _match_fraction(fixed, frozenset(fixed), toks) >= min_match


# ---------------------------------------------------------------------------------------- templates


def _entropy(counts: Sequence[float]) -> float:
    """Entropy of a weighted distribution normalised by log(total weight); 0 for fewer than 2 items."""
    total = float(sum(counts))
    if total < 2:
        return 0.0
    h = -sum((c / total) * math.log(c / total) for c in counts if c > 0)
    return float(min(1.0, max(0.0, h / math.log(total))))


def _increasing_subsequence(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Longest subsequence of ``pairs`` (sorted by first item) whose second items increase."""
    tails: list[int] = []  # tails[k]: second item ending the best chain of length k + 1
    tail_idx: list[int] = []
    back = [-1] * len(pairs)
    for i, (_, r) in enumerate(pairs):
        k = bisect_left(tails, r)
        if k == len(tails):
            tails.append(r)
            tail_idx.append(i)
        else:
            tails[k] = r
            tail_idx[k] = i
        back[i] = tail_idx[k - 1] if k else -1
    out: list[tuple[int, int]] = []
    i = tail_idx[-1] if tail_idx else -1
    while i >= 0:
        out.append(pairs[i])
        i = back[i]
    return out[::-1]


def _align(
    toks: list[str], count: Counter[str], ref: list[str], cand: frozenset[str], ref_pos: dict[str, int]
) -> tuple[list[int], list[tuple[int, int]]]:
    """Align a prompt's tokens to the reference's.

    ``count`` is ``Counter(toks)``. Returns ``where`` (``where[r]``: the position in ``toks`` aligned to reference position ``r``, or -1)
    and the matched reference stretches as ``(start, length)``.

    Patience-style: frequent (``cand``) tokens that occur once in both sequences are anchors (their
    longest increasing chain). Between two anchors, identical stretches match whole; otherwise their
    common prefix and suffix match and the rest is aligned once more the same way, with anchors unique
    within the two stretches. Near-linear, and unlike a general diff it does not pair the stop words of
    two unrelated task texts.
    """
    where = [-1] * len(ref)
    blocks: list[tuple[int, int]] = []
    anchors = [t for t in ref_pos if count.get(t) == 1]
    if len(anchors) > 8:
        last = dict(zip(toks, range(len(toks)), strict=True))
        pairs = sorted((last[t], ref_pos[t]) for t in anchors)
    else:
        pairs = sorted((toks.index(t), ref_pos[t]) for t in anchors)
    _chain(toks, ref, pairs, 0, len(toks), 0, len(ref), where, blocks, cand, 1)
    return where, blocks


def _chain(
    a: list[str],
    b: list[str],
    pairs: list[tuple[int, int]],
    a0: int,
    a1: int,
    b0: int,
    b1: int,
    where: list[int],
    blocks: list[tuple[int, int]],
    cand: frozenset[str],
    depth: int,
) -> None:
    """Match the anchor ``pairs`` (sorted by ``a``) in ``[a0, a1) x [b0, b1)`` and fill the gaps.

    Anchors and the identical stretches between them (the fixed text of a filled template, mostly) are matched
    as one block per run; what :func:`_gap` makes of an identical stretch, without calling it."""
    seconds = [q for _, q in pairs]  # distinct: anchors are distinct tokens, each once in ``b[b0:b1]``
    if seconds != sorted(seconds):
        pairs = _increasing_subsequence(pairs)
    pa, pb = a0 - 1, b0 - 1
    ra = rb = -1  # where the current run of matched tokens starts (in ``a`` and in ``b``); -1: none yet
    for qa, qb in chain(pairs, ((a1, b1),)):  # the stretches before each anchor, and the one after the last
        if qa - pa == qb - pb and a[pa + 1 : qa] == b[pb + 1 : qb]:  # identical (or both empty): the run goes on
            if rb < 0:
                ra, rb = pa + 1, pb + 1
            pa, pb = qa, qb
            continue
        if rb >= 0 and pb >= rb:
            where[rb : pb + 1] = range(ra, pa + 1)
            blocks.append((rb, pb + 1 - rb))
        if qa > pa + 1 and qb > pb + 1:
            _gap(a, b, pa + 1, qa, pb + 1, qb, where, blocks, cand, depth)
        ra, rb = qa, qb  # the anchor starts the next run
        pa, pb = qa, qb
    if b1 > rb >= 0:  # a run up to ``b1`` (a run starting at ``b1`` is empty: the end is no anchor)
        where[rb:b1] = range(ra, a1)
        blocks.append((rb, b1 - rb))


def _gap(
    a: list[str],
    b: list[str],
    a0: int,
    a1: int,
    b0: int,
    b1: int,
    where: list[int],
    blocks: list[tuple[int, int]],
    cand: frozenset[str],
    depth: int,
) -> None:
    """Align the stretch ``a[a0:a1]`` with ``b[b0:b1]`` (between two anchors)."""
    if a1 <= a0 or b1 <= b0:
        return
    k, s = _match_ends(a, b, a0, a1, b0, b1, where, blocks)
    a0, a1, b0, b1 = a0 + k, a1 - s, b0 + k, b1 - s
    if depth <= 0 or a1 <= a0 or b1 <= b0:
        return
    ca = Counter(a[a0:a1])
    common = [t for t, c in Counter(b[b0:b1]).items() if c == 1 and ca.get(t) == 1 and t in cand]
    if common:
        pairs = sorted((a.index(t, a0, a1), b.index(t, b0, b1)) for t in common)
        _chain(a, b, pairs, a0, a1, b0, b1, where, blocks, cand, depth - 1)


def _match_ends(
    a: list[str], b: list[str], a0: int, a1: int, b0: int, b1: int, where: list[int], blocks: list[tuple[int, int]]
) -> tuple[int, int]:
    """Match the common prefix and suffix of ``a[a0:a1]`` and ``b[b0:b1]`` (both non-empty); their lengths."""
    ga, gb = a1 - a0, b1 - b0
    if ga == gb and a[a0:a1] == b[b0:b1]:
        where[b0:b1] = range(a0, a1)
        blocks.append((b0, gb))
        return gb, 0
    lim = min(ga, gb)
    k = 0
    while k < lim and a[a0 + k] == b[b0 + k]:
        k += 1
    if k:
        where[b0 : b0 + k] = range(a0, a0 + k)
        blocks.append((b0, k))
    s = 0
    while s < lim - k and a[a1 - 1 - s] == b[b1 - 1 - s]:
        s += 1
    if s:
        where[b1 - s : b1] = range(a1 - s, a1)
        blocks.append((b1 - s, s))
    return k, s


def extract_template(
    prompts: Sequence[str], min_support: float = 0.6, max_prompts: int = 200, seed: int = 0
) -> Template:
    """Recover the fixed scaffold shared by ``prompts`` (see the module docstring for the method).

    Args:
        prompts: prompt texts of one cluster (duplicates allowed: they count as often as they occur).
        min_support: a reference token is fixed when it is aligned in at least this share of the family.
        max_prompts: at most this many prompts are sampled (deterministically, from ``seed``).
        seed: sampling seed.

    Returns:
        The :class:`Template`. Empty input gives an empty template with coverage 0; identical prompts give
        the prompt itself with coverage 1 and no slots; prompts with nothing in common give ``"{…}"``,
        no fixed words and coverage 0.
    """
    if not prompts:
        return Template("", 0, 0.0, 0, 0.0)
    counts = Counter(_sample(prompts, max_prompts, seed))
    uniq = list(counts)
    if len(uniq) == 1:  # an exact duplicate (a viral prompt pasted verbatim)
        text = uniq[0]
        return Template(text, len(_WORD_RE.findall(text.lower())), 1.0, 0, 0.0)
    w = [counts[u] for u in uniq]
    n = sum(w)
    ms = min(1.0, max(1e-9, float(min_support)))
    toks = [_tokens(u) for u in uniq]
    if not any(toks):  # only whitespace
        return Template("", 0, 1.0, 0, 0.0)

    tcounts = [Counter(t) for t in toks]
    sets = [c.keys() for c in tcounts]
    df = _doc_freq(sets, w)
    ref = _reference(sets, w, df)
    fam_min = max(2, math.ceil(_FAMILY_MIN_SHARE * n))
    cand_min = max(2, math.ceil(ms * fam_min - 1e-9))
    cand = frozenset(t for t, c in df.items() if c >= cand_min)
    ref_low, ref_shown, ref_gaps = _reference_tokens(uniq[ref], toks[ref])
    if cand.isdisjoint(ref_low):
        return _weak_template(w)

    wheres, block_lists = _align_all(toks, tcounts, ref, cand)
    family = _family(block_lists, w, fam_min)
    fixed = _fixed_tokens(block_lists, w, family, len(ref_low), ms)
    _drop_weak_runs(fixed, ref_low)
    if not any(fixed):
        return _weak_template(w)

    text, slots = _scaffold(fixed, ref_shown, ref_gaps)
    fixed_word_pos = [i for i, f in enumerate(fixed) if f and _is_word(ref_low[i])]
    coverage = _coverage(wheres, fixed_word_pos, w) / n
    slot_entropy = _slot_entropy(toks, wheres, slots, w)
    return Template(text, len(fixed_word_pos), float(coverage), len(slots), float(slot_entropy))


def templates_of(task: tuple[int, Sequence[Sequence[str]]]) -> list[Template]:
    """:func:`extract_template` of each of ``task``'s groups of prompts, with its seed: ``(seed, groups)`` (a label
    worker's task, :func:`analyzer.pipeline.label_parts`)."""
    seed, groups = task
    return [extract_template(prompts, seed=seed) for prompts in groups]


def _sample(prompts: Sequence[str], max_prompts: int, seed: int) -> list[str]:
    """At most ``max_prompts`` of ``prompts`` (at least one), drawn from ``seed``, in their input order."""
    k = max(1, max_prompts)
    if len(prompts) <= k:
        return list(prompts)
    rng = random.Random(seed)
    return [prompts[i] for i in sorted(rng.sample(range(len(prompts)), k))]


def _doc_freq(sets: Sequence[Collection[str]], w: Sequence[int]) -> Counter[str]:
    """Weighted document frequency of every token (``sets[j]``: the distinct tokens of prompt ``j``)."""
    df: Counter[str] = Counter()
    for s, wj in zip(sets, w, strict=True):
        if wj == 1:
            df.update(s)
        else:
            for t in s:
                df[t] += wj
    df.pop(_CUT, None)
    return df


def _reference(sets: Sequence[Collection[str]], w: Sequence[int], df: Counter[str]) -> int:
    """Index of the approximate token-set Jaccard medoid: the prompt sharing the most with the others.

    ``sets[j]``: the distinct tokens of prompt ``j``, weighing ``w[j]``. The intersection of a prompt with
    the others is estimated from the document frequencies ``df`` of its tokens.
    """
    n = sum(w)
    mean_len = sum(len(s) * wj for s, wj in zip(sets, w, strict=True)) / n
    best, ref = -1.0, 0
    for j, s in enumerate(sets):
        if not s:
            continue
        inter = (sum(map(df.__getitem__, s)) - len(s)) / (n - 1)
        score = inter / max(1e-9, len(s) + mean_len - inter)
        if score > best:
            best, ref = score, j
    return ref


def _reference_tokens(text: str, toks: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The reference's lowercase tokens ``toks``, with their original spelling and the whitespace before them."""
    low, shown, gaps = _tokens_with_gaps(text)
    if low != toks:  # cannot happen; keep the output consistent if it ever does
        return toks, list(toks), [" "] * len(toks)
    return low, shown, gaps


def _align_all(
    toks: list[list[str]], tcounts: list[Counter[str]], ref: int, cand: frozenset[str]
) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Align every distinct prompt to the reference ``toks[ref]``; see :func:`_align`.

    Returns ``where`` and the matched blocks of every prompt, in the order of ``toks``.
    """
    ref_low = toks[ref]
    ref_count = tcounts[ref]
    ref_pos = {t: r for r, t in enumerate(ref_low) if t in cand and ref_count[t] == 1}
    n_ref = len(ref_low)
    wheres: list[list[int]] = []
    block_lists: list[list[tuple[int, int]]] = []
    for j, tj in enumerate(toks):
        if j == ref:
            where, blocks = list(range(n_ref)), [(0, n_ref)]
        else:
            where, blocks = _align(tj, tcounts[j], ref_low, cand, ref_pos)
        wheres.append(where)
        block_lists.append(blocks)
    return wheres, block_lists


def _family(block_lists: Sequence[Sequence[tuple[int, int]]], w: Sequence[int], fam_min: int) -> list[int]:
    """The prompts sharing at least half as much long-block text with the reference as the typical prompt
    among the ``fam_min`` closest ones does (all prompts when those weigh less than ``fam_min``)."""
    block_score = [sum(size for _, size in blocks) for blocks in block_lists]
    order = sorted(range(len(block_score)), key=lambda j: -block_score[j])
    top: list[int] = []
    acc = 0
    for j in order:
        top.append(block_score[j])
        acc += w[j]
        if acc >= fam_min:
            break
    median = sorted(top)[len(top) // 2]
    family = [j for j in range(len(block_score)) if block_score[j] >= 0.5 * median]
    if sum(w[j] for j in family) < fam_min:
        family = list(range(len(block_score)))
    return family


def _fixed_tokens(
    block_lists: Sequence[Sequence[tuple[int, int]]],
    w: Sequence[int],
    family: Sequence[int],
    n_ref: int,
    min_support: float,
) -> list[bool]:
    """Per reference token: aligned in at least ``min_support`` of the (weighted) ``family``."""
    diff = [0] * (n_ref + 1)
    for j in family:
        wj = w[j]
        for start, size in block_lists[j]:
            diff[start] += wj
            diff[start + size] -= wj
    thr = min_support * sum(w[j] for j in family) - 1e-9
    return [c >= thr for c in accumulate(diff[:n_ref])]


def _drop_weak_runs(fixed: list[bool], ref_low: Sequence[str]) -> None:
    """Unfix, in place, the runs of fixed tokens that carry no meaning: a single token, or no content word."""
    i = 0
    while i < len(fixed):
        if not fixed[i]:
            i += 1
            continue
        k = i
        while k < len(fixed) and fixed[k]:
            k += 1
        if k - i < 2 or not any(_is_content(t) for t in ref_low[i:k]):
            fixed[i:k] = [False] * (k - i)
        i = k


def _scaffold(
    fixed: Sequence[bool], shown: Sequence[str], gaps: Sequence[str]
) -> tuple[str, list[tuple[int | None, int | None]]]:
    """Text of the scaffold, and its slots as (last fixed position before, first fixed position after)."""
    parts: list[str] = []
    slots: list[tuple[int | None, int | None]] = []
    prev_fixed: int | None = None
    in_slot = False
    slot_gap = ""
    for i, (tok, gap) in enumerate(zip(shown, gaps, strict=True)):
        if fixed[i]:
            if in_slot:
                parts.append((_show_gap(slot_gap) if parts else "") + SLOT)
                slots.append((prev_fixed, i))
                in_slot = False
                parts.append((_show_gap(gap) or " ") + tok)
            else:
                parts.append((_show_gap(gap) if parts else "") + tok)
            prev_fixed = i
        elif not in_slot:
            in_slot, slot_gap = True, gap
    if in_slot:
        parts.append(_show_gap(slot_gap) + SLOT)
        slots.append((prev_fixed, None))
    return "".join(parts), slots


def _coverage(wheres: Sequence[Sequence[int]], fixed_word_pos: Sequence[int], w: Sequence[int]) -> int:
    """Weight of the prompts whose alignment holds at least :data:`_DEFAULT_MIN_MATCH` of the fixed words."""
    need = _DEFAULT_MIN_MATCH * len(fixed_word_pos) - 1e-9
    covered = 0
    for where, wj in zip(wheres, w, strict=True):
        if len(fixed_word_pos) - list(map(where.__getitem__, fixed_word_pos)).count(-1) >= need:  # -1: not aligned
            covered += wj
    return covered


def _slot_entropy(
    toks: Sequence[Sequence[str]],
    wheres: Sequence[Sequence[int]],
    slots: Sequence[tuple[int | None, int | None]],
    w: Sequence[int],
) -> float:
    """Mean entropy of the slot fillings (the tokens between a slot's two anchors in each prompt's
    alignment), weighted by the mean filling length; see :attr:`Template.slot_entropy`."""
    fillings: list[Counter[tuple[str, ...]]] = [Counter() for _ in slots]
    lengths = [0.0] * len(slots)
    for tj, where, wj in zip(toks, wheres, w, strict=True):
        for s, (lo, hi) in enumerate(slots):
            start = 0 if lo is None else where[lo] + 1
            end = len(tj) if hi is None else where[hi]
            if start == 0 and lo is not None or end < start:  # an anchor is missing
                continue
            fillings[s][tuple(tj[start:end])] += wj
            lengths[s] += (end - start) * wj
    num = den = 0.0
    for s, fill in enumerate(fillings):
        total = sum(fill.values())
        if total < 2:
            continue
        weight = max(lengths[s] / total, 1e-3)
        num += weight * _entropy(list(fill.values()))
        den += weight
    return num / den if den else 0.0


def _weak_template(weights: Sequence[int]) -> Template:
    """No scaffold: one slot, no fixed words, coverage 0; the entropy is that of the whole prompts."""
    return Template(SLOT, 0, 0.0, 1, _entropy(list(weights)))


# ----------------------------------------------------------------------------------------- keywords


def _keyword_tokens(doc: str) -> list[str]:
    """The keyword tokens of ``doc``: of its first :data:`_KEYWORD_TOKENS` tokens (:func:`tokenize`), those of two
    characters or more and the CJK characters. A long document is scanned only as far as needed (the first
    tokens of a prefix that holds more than that many are the document's own). Plain ASCII, the common case, is
    read without the Unicode pattern (on lowercase ASCII the tokens are the runs of ASCII word characters, none a
    CJK character): a text of at most twice that many characters has at most that many tokens, so its runs of two
    characters or more are all it needs; a longer one's runs are its parts once every other character is a
    space (:data:`analyzer.text.ASCII_NON_WORD`)."""
    low = doc.lower()
    plain = low.isascii()
    if plain and len(low) <= 2 * _KEYWORD_TOKENS:
        return _ASCII_LONG_WORD_RE.findall(low)
    if plain:  # runs of word characters, as the pattern finds them
        toks = low[:_KEYWORD_SCAN_CHARS].translate(ASCII_NON_WORD).split() if len(low) > _KEYWORD_SCAN_CHARS else []
        if len(toks) <= _KEYWORD_TOKENS:
            toks = low.translate(ASCII_NON_WORD).split()
        return [t for t in toks[:_KEYWORD_TOKENS] if len(t) > 1]
    toks = _WORD_RE.findall(low, 0, _KEYWORD_SCAN_CHARS) if len(low) > _KEYWORD_SCAN_CHARS else []
    if len(toks) <= _KEYWORD_TOKENS:
        toks = _WORD_RE.findall(low)
    return [t for t in toks[:_KEYWORD_TOKENS] if len(t) > 1 or _CJK_RE.match(t)]


def _keyword_analyzer(doc: str) -> list[str]:
    """A document's keyword terms: its keyword tokens that are not stop words, then the pairs of adjacent
    keyword tokens neither of which is a stop word (``"gradient descent"``)."""
    kept = [None if t in _STOP else t for t in _keyword_tokens(doc)]
    out = [t for t in kept if t is not None]
    out += [f"{a} {b}" for a, b in zip(kept, kept[1:], strict=False) if a and b]  # tokens are never empty
    return out


def ctfidf_keywords(
    docs: Sequence[str],
    labels: Sequence[int],
    weights: Sequence[float] | None = None,
    top_n: int = 8,
    exclude_label: int = -1,
    max_features: int = 50_000,
) -> dict[int, list[str]]:
    """Top ``top_n`` class-based TF-IDF keywords (unigrams and bigrams) per label, as in BERTopic.

    The documents of a label are concatenated (each counted ``weights[i]`` times, e.g. its number of
    requests); term frequencies are normalised per class; ``idf = log(1 + A / f_t)`` with ``A`` the average
    number of (weighted) words per class and ``f_t`` the weighted frequency of term ``t`` over all classes.
    English stop words (scikit-learn's list) and one-character tokens are removed, bigrams are pairs of
    adjacent non-stop words; in a class of at least 5 documents, terms found in only one of its documents
    are dropped. The ``exclude_label`` (noise) class takes part in the idf, as a background corpus, but gets
    no entry in the result. Ties are broken alphabetically.

    Returns:
        ``{label: [keyword, ...]}`` for every label except ``exclude_label``; a label whose documents have
        no usable term maps to ``[]``.
    """
    if len(docs) != len(labels):
        raise ValueError(f"docs and labels differ in length: {len(docs)} != {len(labels)}")
    if weights is not None and len(weights) != len(docs):
        raise ValueError(f"docs and weights differ in length: {len(docs)} != {len(weights)}")
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    classes = np.unique(lab)
    out_labels = [int(c) for c in classes if int(c) != exclude_label]
    if len(docs) == 0 or top_n <= 0:
        return {c: [] for c in out_labels}
    wts = np.ones(len(docs)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    wts = np.where(np.isfinite(wts) & (wts > 0), wts, 0.0)
    counts = keyword_counts(docs, max_features)
    if counts is None:  # no document has a term
        return {c: [] for c in out_labels}
    x, terms = counts
    scores = _ctfidf_scores(x.astype(np.float64), np.searchsorted(classes, lab), len(classes), wts)
    return {int(c): _top_terms(scores, ci, terms, top_n) for ci, c in enumerate(classes) if int(c) != exclude_label}


#: Keyword documents whose terms :func:`keyword_counts` numbers together (a block's tokens are held at once).
KEYWORD_COUNT_DOCS = 1 << 14


def keyword_counts(docs: Sequence[str], max_features: int) -> tuple[sparse.csr_matrix, np.ndarray] | None:
    """The document x term counts (int64) of ``docs``' keyword terms (:func:`_keyword_analyzer`: unigrams and
    bigrams) and the terms in alphabetical order, keeping the ``max_features`` most frequent; None where no
    document has a term.

    The same matrix and terms as scikit-learn's ``CountVectorizer(analyzer=_keyword_analyzer,
    max_features=max_features).fit_transform`` (tested), in about 60% of its time (the 1M label work's keywords:
    26-29 -> 16-17 s): that counts every term of every document in a Python loop, a bigram's text made at every
    occurrence, and sorts its whole vocabulary by Python comparisons. Here a block of :data:`KEYWORD_COUNT_DOCS`
    documents is read at once (:func:`_block_tokens`), its tokens told apart by hash (``pandas.factorize``) and
    only the block's distinct ones looked up in the numbering; a bigram is counted as its pair of token numbers
    (all blocks' bigrams numbered together at the end, each one's text made once); the terms are sorted by Arrow
    (UTF-8 byte order is code point order, Python's). The most frequent terms are chosen as scikit-learn does
    (``argsort`` of the negated totals in alphabetical order), so that ties at the cut fall the same way.
    """
    import pandas as pd
    from scipy import sparse

    token_no: dict[str, int] = {}  # one number per distinct token (its text kept once)
    stop: list[bool] = []  # by token number: a stop word (never a term, and it breaks a bigram)
    block_pairs: list[np.ndarray] = []  # per block, its distinct bigrams (the pair of token numbers in one int64)
    block_counts: list[sparse.csr_matrix | None] = []  # per block, (document, term) counts: token numbers, then its bigrams
    for start in range(0, len(docs), KEYWORD_COUNT_DOCS):
        block_docs = docs[start : start + KEYWORD_COUNT_DOCS]
        tokens_of, doc = _block_tokens(block_docs)
        n = len(block_docs)
        local, uniques = pd.factorize(tokens_of)
        del tokens_of
        numbers = np.empty(len(uniques), dtype=np.int64)
        stopped = np.empty(len(uniques), dtype=bool)
        for k, token in enumerate(uniques.tolist()):
            number = token_no.get(token)
            if number is None:
                number = token_no[token] = len(stop)
                stop.append(token in _STOP)
            numbers[k], stopped[k] = number, stop[number]
        tok = numbers[local]
        kept = ~stopped[local]
        # a bigram: two adjacent tokens of one document, neither a stop word (a stop word breaks the pair)
        pair = kept[:-1] & kept[1:] & (doc[:-1] == doc[1:])
        pair_of, pairs = pd.factorize((tok[:-1][pair] << 32) | tok[1:][pair])
        rows = np.concatenate([doc[kept], doc[:-1][pair]])
        cols = np.concatenate([tok[kept], len(stop) + pair_of])
        block_counts.append(sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)),
                                              shape=(n, len(stop) + len(pairs))))
        del rows, cols, tok, doc, local
        block_pairs.append(np.asarray(pairs, dtype=np.int64))
    tokens = list(token_no)
    del token_no
    pair_starts = np.cumsum([0] + [len(p) for p in block_pairs])
    pair_no, pair_keys = pd.factorize(np.concatenate(block_pairs) if block_pairs else np.zeros(0, dtype=np.int64))
    del block_pairs
    is_stop = np.asarray(stop, dtype=bool)
    word_col = np.cumsum(~is_stop) - 1  # a token's term number
    n_words = int((~is_stop).sum())
    terms = [t for t, s in zip(tokens, stop, strict=True) if not s]
    terms += [f"{tokens[a]} {tokens[b]}" for a, b in zip((pair_keys >> 32).tolist(), (pair_keys & 0xFFFFFFFF).tolist(),
                                                           strict=True)]
    if not terms:
        return None
    order = _alphabetical(terms)
    column = np.empty(len(terms), dtype=np.int64)
    column[order] = np.arange(len(terms))  # a term's place in alphabetical order
    # each block's columns as places in alphabetical order: its tokens' terms (stop words are never counted), then
    # its own bigrams'
    block_cols = [column[np.concatenate([word_col[: c.shape[1] - (pair_starts[i + 1] - pair_starts[i])],
                                         n_words + pair_no[pair_starts[i] : pair_starts[i + 1]]])]
                  for i, c in enumerate(block_counts)]
    del pair_no, column
    if len(terms) > max_features:
        totals = np.zeros(len(terms), dtype=np.int64)
        for c, cols_of in zip(block_counts, block_cols, strict=True):
            totals += np.bincount(cols_of[c.indices], weights=c.data, minlength=len(terms)).astype(np.int64)
        keep = np.sort((-totals).argsort()[:max_features])  # scikit-learn's choice, ties included
        order = order[keep]
        kept_place = np.full(len(terms), -1, dtype=np.int64)  # an alphabetical place's column once cut, -1: cut
        kept_place[keep] = np.arange(len(keep))
        block_cols = [kept_place[cols_of] for cols_of in block_cols]
    # the kept counts, block after block, into one matrix (each block let go of once it is copied: the blocks and
    # the matrix are never held twice over)
    kept_in = [int((cols_of[c.indices] >= 0).sum()) for c, cols_of in zip(block_counts, block_cols, strict=True)]
    indptr = np.zeros(len(docs) + 1, dtype=np.int64)
    indices = np.empty(sum(kept_in), dtype=np.int32)
    data = np.empty(sum(kept_in), dtype=np.int64)
    row = at = 0
    for i, n_kept in enumerate(kept_in):
        block, block_counts[i] = block_counts[i], None
        assert block is not None
        col = block_cols[i][block.indices]
        ok = col >= 0
        per_row = np.bincount(np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))[ok], minlength=block.shape[0])
        part = sparse.csr_matrix((block.data[ok].astype(np.int64), col[ok].astype(np.int32),
                                  np.concatenate([[0], np.cumsum(per_row)])), shape=(block.shape[0], len(order)))
        part.sort_indices()
        indptr[row + 1 : row + 1 + block.shape[0]] = at + part.indptr[1:]
        indices[at : at + n_kept], data[at : at + n_kept] = part.indices, part.data
        row, at = row + block.shape[0], at + n_kept
    x = sparse.csr_matrix((data, indices, indptr), shape=(len(docs), len(order)))
    return x, np.asarray(terms, dtype=object)[order]


#: Marks where a document ends among a block's short plain documents read together (:func:`_block_tokens`): a
#: control character (not a word character), set apart by spaces so that it is a run of its own.
_DOC_SEP = "\x01"
#: :data:`analyzer.text.ASCII_NON_WORD` that keeps :data:`_DOC_SEP`.
_ASCII_GAPS_BUT_SEP = {c: to for c, to in ASCII_NON_WORD.items() if c != ord(_DOC_SEP)}


def _block_tokens(docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The keyword tokens (:func:`_keyword_tokens`) of a block of documents, one document's after another (each
    in order), and the document (position in ``docs``) of each.

    A short plain ASCII document's tokens are all its runs of two word characters or more (see
    :func:`_keyword_tokens`); those documents are read together: joined, lower-cased, every other character made
    a space and the whole split once (the same runs as the pattern finds, without a pattern call and a list per
    document), their runs of one character dropped afterwards. The other documents are read one by one."""
    batched = np.fromiter((len(d) <= 2 * _KEYWORD_TOKENS and d.isascii() and _DOC_SEP not in d for d in docs),
                          dtype=bool, count=len(docs))
    together, apart = np.flatnonzero(batched), np.flatnonzero(~batched)
    joined = f" {_DOC_SEP} ".join([docs[i] for i in together]).lower().translate(_ASCII_GAPS_BUT_SEP).split()
    runs = np.asarray(joined, dtype=object)
    if len(runs):
        length = np.fromiter(map(len, joined), dtype=np.int64, count=len(joined))
        doc_of_run = together[np.cumsum((length == 1) & (runs == _DOC_SEP))]
        runs, doc_of_run = runs[length > 1], doc_of_run[length > 1]  # (a separator is one character)
    else:
        doc_of_run = np.zeros(0, dtype=np.int64)
    del joined
    each = [_keyword_tokens(docs[i]) for i in apart]
    lens = np.fromiter(map(len, each), dtype=np.int64, count=len(each))
    rest = np.fromiter(chain.from_iterable(each), dtype=object, count=int(lens.sum()))
    return np.concatenate([runs, rest]), np.concatenate([doc_of_run, np.repeat(apart, lens)]).astype(np.int64)


def _alphabetical(terms: list[str]) -> np.ndarray:
    """The positions of ``terms`` in Python's string order (code points), sorted by Arrow where every term is
    valid UTF-8 (a lone surrogate is not: then by Python)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.sort_indices(pa.array(terms, type=pa.string())).to_numpy().astype(np.int64)
    except (pa.ArrowInvalid, UnicodeEncodeError):
        return np.asarray(sorted(range(len(terms)), key=terms.__getitem__), dtype=np.int64)


def _ctfidf_scores(x: sparse.csr_matrix, cls: np.ndarray, n_cls: int, wts: np.ndarray) -> sparse.csr_matrix:
    """Class x term c-TF-IDF scores (see :func:`ctfidf_keywords`) of the document x term counts ``x``;
    ``cls[i]`` is the class (row) of document ``i``, ``wts[i]`` its weight."""
    from scipy import sparse

    n_docs = x.shape[0]
    rows = np.arange(n_docs)
    member = sparse.csr_matrix((np.ones(n_docs), (cls, rows)), shape=(n_cls, n_docs))
    weighted = sparse.csr_matrix((wts, (cls, rows)), shape=(n_cls, n_docs))
    tf = (weighted @ x).tocsr()
    class_df = (member @ (x > 0).astype(np.float64)).tocsr()
    docs_per_class = np.bincount(cls, minlength=n_cls)

    f_t = np.asarray(tf.sum(axis=0)).ravel()
    words_per_class = np.asarray(tf.sum(axis=1)).ravel()
    avg_words = float(words_per_class.mean()) if n_cls else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        idf = np.where(f_t > 0, np.log1p(avg_words / np.where(f_t > 0, f_t, 1.0)), 0.0)

    pruned = docs_per_class >= _PRUNE_MIN_CLASS_DOCS
    big = sparse.diags(pruned.astype(np.float64))
    small = sparse.diags((~pruned).astype(np.float64))
    kept = (big @ tf.multiply(class_df >= _PRUNE_MIN_TERM_DOCS) + small @ tf).tocsr()
    norm = np.where(words_per_class > 0, words_per_class, 1.0)
    return (sparse.diags(1.0 / norm) @ kept @ sparse.diags(idf)).tocsr()


def _top_terms(scores: sparse.csr_matrix, row: int, terms: np.ndarray, top_n: int) -> list[str]:
    """The ``top_n`` terms of a row of ``scores`` with a positive score, best first, ties alphabetical."""
    lo, hi = scores.indptr[row], scores.indptr[row + 1]
    idx, val = scores.indices[lo:hi], scores.data[lo:hi]
    good = val > 0
    idx, val = idx[good], val[good]
    order = np.lexsort((terms[idx], -val))[:top_n]
    return [str(terms[idx[k]]) for k in order]


# ---------------------------------------------------------------------------------------- exemplars


def exemplars(texts: Sequence[str], vectors: np.ndarray, n: int = 3) -> list[str]:
    """The ``n`` distinct texts whose (L2-normalised) vectors are closest to the normalised centroid.

    ``vectors[i]`` embeds ``texts[i]``. Ties keep the input order.
    """
    if len(texts) == 0 or n <= 0:
        return []
    v = np.asarray(vectors, dtype=np.float64).reshape(len(texts), -1)
    if not np.isfinite(v).all():  # (checked first: nan_to_num's own work was a third of this function's time)
        v = np.nan_to_num(v)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms > 0, norms, 1.0)
    centroid = v.mean(axis=0)
    c_norm = np.linalg.norm(centroid)
    if c_norm > 0:
        centroid = centroid / c_norm
    sims = v @ centroid
    out: list[str] = []
    seen: set[str] = set()
    for i in np.argsort(-sims, kind="stable"):
        t = texts[int(i)]
        if t not in seen:
            seen.add(t)
            out.append(t)
            if len(out) == n:
                break
    return out


# -------------------------------------------------------------------------------------------- label

_STRONG_COVERAGE = 0.5
_STRONG_WORDS = 4


@lru_cache(maxsize=1 << 16)
def _keyword_words(keyword: str) -> frozenset[str]:
    """The words of a keyword (:func:`tokenize`), kept for the next cluster: the same keywords recur across
    thousands of clusters."""
    return frozenset(tokenize(keyword))


def cluster_label(keywords: list[str], template: Template, n: int = 4) -> str:
    """A short human label, e.g. ``"step · reasoning · problem · solve"``.

    When the template is strong (coverage >= 0.5 and >= 4 fixed words) keywords made of scaffold words
    come first, and scaffold content words fill up a short list. A keyword whose words are all already in
    the label is skipped. Returns ``"unlabelled"`` when nothing is left.
    """
    strong = template.coverage >= _STRONG_COVERAGE and template.n_fixed_words >= _STRONG_WORDS
    kw_words = [_keyword_words(k) for k in keywords]
    candidates: Iterable[tuple[str, AbstractSet[str]]] = zip(keywords, kw_words, strict=True)
    if strong:
        scaffold_words = tokenize(template.text.replace(SLOT, " "))
        in_scaffold = set(scaffold_words)
        inside = [(k, w) for k, w in zip(keywords, kw_words, strict=True) if w <= in_scaffold]
        outside = [(k, w) for k, w in zip(keywords, kw_words, strict=True) if not w <= in_scaffold]
        # scaffold content words, looked at only until the label is full
        extra = ((t, {t}) for t in dict.fromkeys(scaffold_words) if _is_content(t))
        candidates = chain(inside, outside, extra)
    chosen: list[str] = []
    used: set[str] = set()
    for k, words in candidates:
        if not words or words <= used:
            continue
        chosen.append(k)
        used |= words
        if len(chosen) == n:
            break
    return " · ".join(chosen) if chosen else "unlabelled"
