"""Stage classes that ``tests/test_stages.py`` swaps in through the ``[stages]`` section of a configuration file
(``tests/`` is on ``sys.path`` under pytest, so they are ``"stage_plugins:ClassName"``)."""

from __future__ import annotations

import numpy as np

from analyzer.stages import Cluster


class OneTopic(Cluster):
    """A trivial clusterer: every prompt in one topic cluster (families and labels as usual)."""

    def topics(self, nbrs, sims, params):
        return np.zeros(len(nbrs), dtype=np.int64), np.ones(len(nbrs))


class NotAStage:
    """Takes the options but has no ``run`` method: not a stage."""

    def __init__(self, options) -> None:
        self.options = options
