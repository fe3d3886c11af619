"""Shared fixtures: a real workspace built once per test session from the bundled sample.

The whole pipeline runs with the real model, DuckDB, FAISS and HDBSCAN; tests that only read the result
share it, tests that change a workspace copy it first (``sample_workspace_copy``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_LOG = ROOT / "data" / "sample" / "requests.jsonl.gz"
SAMPLE_TRUTH = ROOT / "data" / "sample" / "truth.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sample_workspace(tmp_path_factory) -> Path:
    """Path of a workspace analysed from ``data/sample`` (map included). Treat it as read-only."""
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace

    path = tmp_path_factory.mktemp("sample") / "ws"
    ws = Workspace(str(path), create=True)
    run_all(ws, [str(SAMPLE_LOG)], RunOptions(progress=False, map_sample=3000))
    ws.close()
    return path


@pytest.fixture
def sample_workspace_copy(sample_workspace, tmp_path) -> Path:
    """A private copy of the sample workspace that a test may change."""
    dst = tmp_path / "ws"
    shutil.copytree(sample_workspace, dst)
    return dst
