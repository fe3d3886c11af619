"""The part of a prompt that the analysis looks at: its head and its tail, bounded.

Ingest stores every prompt whole, however long (a 25k-token long-context request is ordinary traffic). The
later stages must not cost more per prompt as prompts grow, and must not lose the instruction when a campaign
pads its requests: a padded prompt may put its instruction *before* a long context ("Summarise the following:
<document>") or *after* it ("<document> Now answer: ..."). So every stage that reads prompt text for
analysis (embedding windows, templates, keywords) reads the head and the tail of a long prompt, never just
the head, and never the whole of it.

:func:`analysis_text` is that view as a string: the text itself when it is short, else its first
:data:`HEAD_CHARS` and last :data:`TAIL_CHARS` characters joined by :data:`CUT_MARKER`, both cut at word
boundaries. :func:`analysis_words` is the same view as lowercase word tokens.

Why 4,000 + 2,000 characters. The embedders read at most 128 tokens (all-MiniLM-L6-v2's window as used here;
English word pieces average about 4 characters, so 128 tokens are roughly 500-600 characters). The embedders
choose their own token windows (64 head and 64 tail tokens, see :mod:`analyzer.embed`) but only ever
tokenise these two slices, so 4,000 characters give the head about seven windows' worth of margin even for
text with long words, and 2,000 give the tail three. Template extraction and keywords work on words: 4,000 +
2,000 characters are about 1,000 words, enough for any request scaffold seen in the benchmark corpora (the
longest templates there are under 300 words), while bounding the per-prompt work. The tail is half the head
because instructions placed after a context are short ("Answer in one word."), and because the head also
carries the system-like framing most campaigns put first.
"""

from __future__ import annotations

import re

__all__ = ["ASCII_NON_WORD", "CUT_MARKER", "HEAD_CHARS", "TAIL_CHARS", "analysis_text", "analysis_words",
           "head_tail_spans"]

#: Characters kept from the start of a long prompt (see the module docstring for the choice).
HEAD_CHARS = 4000
#: Characters kept from the end of a long prompt.
TAIL_CHARS = 2000
#: What joins head and tail in :func:`analysis_text`: spaces around a horizontal ellipsis, which reads as a
#: cut to a person and is one punctuation token to the word tokenisers.
CUT_MARKER = " \u2026 "
#: ASCII characters other than word characters (``\w``) as spaces: an ASCII text's runs of word characters are then
#: its whitespace-split parts. One character for one (``str.translate``'s fast path for ASCII); the keyword terms
#: (:mod:`analyzer.label`) and the words of :func:`analyzer.cluster.words` read ASCII text through it.
ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")})
#: How far back (in characters) a cut may move to land on whitespace instead of splitting a word.
_SNAP_CHARS = 64

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def _snap_head(text: str, end: int) -> int:
    """``end`` moved back to just after whitespace (at most :data:`_SNAP_CHARS`), so no word is split."""
    if end >= len(text) or text[end].isspace() or text[end - 1].isspace():
        return end
    floor = max(0, end - _SNAP_CHARS)
    for i in range(end - 1, floor, -1):
        if text[i].isspace():
            return i + 1
    return end


def _snap_tail(text: str, start: int) -> int:
    """``start`` moved forward to just after whitespace (at most :data:`_SNAP_CHARS`), so no word is split."""
    if start <= 0 or text[start - 1].isspace() or text[start].isspace():
        return start
    ceil = min(len(text), start + _SNAP_CHARS)
    for i in range(start, ceil):
        if text[i].isspace():
            return i + 1
    return start


def head_tail_spans(
    text: str, head_chars: int = HEAD_CHARS, tail_chars: int = TAIL_CHARS
) -> tuple[int, int] | None:
    """Where a long text is cut: ``(head_end, tail_start)``, or None when the text is short enough to keep whole.

    A text is short when it has at most ``head_chars + tail_chars + len(CUT_MARKER)`` characters (cutting it
    would save nothing). Otherwise the head is ``text[:head_end]`` with ``head_end <= head_chars`` and the
    tail ``text[tail_start:]`` with ``len(text) - tail_start <= tail_chars``; each cut is moved up to 64
    characters to fall on whitespace rather than inside a word.
    """
    if head_chars < 0 or tail_chars < 0:
        raise ValueError("head_chars and tail_chars must be >= 0")
    n = len(text)
    if n <= head_chars + tail_chars + len(CUT_MARKER):
        return None
    head_end = _snap_head(text, head_chars) if head_chars else 0
    tail_start = _snap_tail(text, n - tail_chars) if tail_chars else n
    return head_end, tail_start


def analysis_text(text: str, head_chars: int = HEAD_CHARS, tail_chars: int = TAIL_CHARS) -> str:
    """The text the analysis reads: ``text`` itself when short, else its head and tail joined by a marker.

    Parameters
    ----------
    text : str
        A prompt, of any length.
    head_chars, tail_chars : int
        Characters kept from the start and from the end (defaults :data:`HEAD_CHARS`, :data:`TAIL_CHARS`).

    Returns
    -------
    str
        ``text`` when it has at most ``head_chars + tail_chars + 3`` characters; else
        ``head.rstrip() + CUT_MARKER + tail.lstrip()``, at most ``head_chars + tail_chars + 3`` characters,
        with the cuts on whitespace where one lies within 64 characters.

    Examples
    --------
    >>> analysis_text("short prompt")
    'short prompt'
    >>> analysis_text("a " * 10 + "question?", head_chars=6, tail_chars=9)
    'a a a … question?'
    """
    spans = head_tail_spans(text, head_chars, tail_chars)
    if spans is None:
        return text
    head_end, tail_start = spans
    return text[:head_end].rstrip() + CUT_MARKER + text[tail_start:].lstrip()


def analysis_words(text: str, head_chars: int = HEAD_CHARS, tail_chars: int = TAIL_CHARS) -> list[str]:
    """Lowercase word tokens (``\\w+``) of :func:`analysis_text`: the words of the head, then of the tail.

    The marker contributes no word, so the head's last word is followed directly by the tail's first.

    Examples
    --------
    >>> analysis_words("Summarise this: " + "blah " * 5000 + "Answer in ONE word.")[-4:]
    ['answer', 'in', 'one', 'word']
    """
    return [w.lower() for w in _WORD_RE.findall(analysis_text(text, head_chars, tail_chars))]
