"""Stage classes that ``tests/test_stages.py`` swaps in through the ``[stages]`` section of a configuration file
(``tests/`` is on ``sys.path`` under pytest, so they are ``"stage_plugins:ClassName"``)."""

from __future__ import annotations

import numpy as np

from analyzer.label import Template
from analyzer.stages import Cluster, Label, Score


class OneTopic(Cluster):
    """A trivial clusterer: every prompt in one topic cluster (families and labels as usual)."""

    def topics(self, nbrs, sims, params):
        return np.zeros(len(nbrs), dtype=np.int64), np.ones(len(nbrs))


class LongestWords(Label):
    """Another representation: each cluster's keywords are its three longest words, its template the first text."""

    def keywords(self, docs, labels, weights):
        out: dict[int, list[str]] = {}
        for doc, label in zip(docs, labels, strict=True):
            out.setdefault(int(label), []).extend(doc.lower().split())
        return {c: sorted(set(words), key=lambda w: (-len(w), w))[:3] for c, words in out.items()}

    def template(self, texts, seed):
        text = "FIRST: " + texts[0][:40]
        return Template(text=text, n_fixed_words=len(text.split()), coverage=1.0, n_slots=0, slot_entropy=0.0)


class MemoryAtScore(Score):
    """The default score stage, recording which in-memory datasets of the run it can still see."""

    seen: list[list[str]] = []
    #: The stage objects of the run still alive when the score stage starts (their learned state with them).
    alive: list[list[str]] = []

    def run(self, ctx):
        import gc

        from analyzer.stages import Stage

        def is_stage(o) -> bool:
            try:
                return isinstance(o, Stage)
            except ReferenceError:  # a weak proxy whose object is gone (a library's, in the heap)
                return False

        MemoryAtScore.seen.append(sorted(ctx.memory))
        gc.collect()
        MemoryAtScore.alive.append(sorted(type(o).__name__ for o in gc.get_objects() if is_stage(o) and o is not self))
        return super().run(ctx)


class NotAStage:
    """Takes the options but has no ``run`` method: not a stage."""

    def __init__(self, options) -> None:
        self.options = options


class WhereMade(Label):
    """Templates that say which process made them (``pid N``); keywords as usual. ``lock`` set: a stage that
    cannot be sent to another process."""

    lock = None

    def template(self, texts, seed):
        import os

        return Template(text=f"pid {os.getpid()}", n_fixed_words=2, coverage=1.0, n_slots=0, slot_entropy=0.0)
