"""analyzer.text: the bounded head-and-tail view of a prompt."""

from __future__ import annotations

import pytest

from analyzer.text import CUT_MARKER, HEAD_CHARS, TAIL_CHARS, analysis_text, analysis_words, head_tail_spans


def test_short_text_is_returned_unchanged() -> None:
    t = "word " * ((HEAD_CHARS + TAIL_CHARS) // 5)
    assert analysis_text("short") == "short"
    assert analysis_text(t) is t and head_tail_spans(t) is None


def test_long_text_keeps_head_and_tail_bounded_and_cut_between_words() -> None:
    instruction, question = "Summarise the report below.", "Now answer in one word: who won?"
    text = instruction + " " + "filler words go here " * 20_000 + question
    out = analysis_text(text)
    assert out.startswith(instruction) and out.endswith(question) and CUT_MARKER in out
    assert len(out) <= HEAD_CHARS + TAIL_CHARS + len(CUT_MARKER)
    head, tail = out.split(CUT_MARKER)
    assert text.startswith(head) and text.endswith(tail)
    assert head.split()[-1] in ("filler", "words", "go", "here") and tail.split()[0] in ("filler", "words", "go", "here")
    words = analysis_words(text)
    assert words[:4] == ["summarise", "the", "report", "below"]
    assert words[-2:] == ["who", "won"]


def test_custom_sizes_and_a_text_without_spaces() -> None:
    assert analysis_text("a " * 10 + "question?", head_chars=6, tail_chars=9) == "a a a" + CUT_MARKER + "question?"
    blob = "x" * 100_000  # no whitespace to snap to: cut at the exact sizes
    out = analysis_text(blob, head_chars=10, tail_chars=5)
    assert out == "x" * 10 + CUT_MARKER + "x" * 5
    with pytest.raises(ValueError):
        analysis_text("abc", head_chars=-1)
