"""analyzer: find coordinated query campaigns (model distillation) in LLM API request logs.

The Python API (:mod:`analyzer.api`): ``analyzer.analyze(source, workspace=None, ...)`` runs every stage on
log files or a pandas DataFrame and returns an :class:`~analyzer.api.Analysis` (campaigns, accounts and
clusters as DataFrames); ``analyzer.open_workspace(path)`` reads an existing workspace's results. They are
loaded on first use, so ``import analyzer`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: Names of :mod:`analyzer.api` that ``analyzer`` exposes, imported on first access (PEP 562).
_API = ("Analysis", "analyze", "open_workspace", "run_options")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from analyzer import api

        return getattr(api, name)
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
