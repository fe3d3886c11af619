"""One embed path (:func:`analyzer.pipeline.embed`), two executors: in process and on Ray Data (``--ray``).

The executors only turn batches of pending prompts into vectors; reading what is pending, storing shards and
resuming are the path's, so both store the same table and vectors, and a killed run resumes the same way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer.checkpoints import CRASH_ENV, LOG_ENV
from analyzer.distributed import _windows
from analyzer.executor import BatchTask, LocalExecutor
from analyzer.pipeline import RunOptions, embed, ingest, write_shards
from analyzer.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["python decorators", "sourdough bread", "the french revolution", "prime numbers", "jazz chords",
          "chess openings"]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (optional extra: pip install 'analyzer[ray]')")


def _log(tmp_path, n: int = 60) -> Path:
    log = tmp_path / "log.jsonl"
    if not log.exists():
        with open(log, "w", encoding="utf-8") as fh:
            for i in range(n):
                prompt = f"Explain {TOPICS[i % len(TOPICS)]} to a {['child', 'student', 'expert'][i % 3]}, case {i}."
                fh.write(json.dumps({"request_id": f"r{i}", "account_id": f"a{i % 7}", "timestamp": 1_700_000_000 + i,
                                     "prompt": prompt}) + "\n")
    return log


def _workspace(tmp_path, name: str, n: int = 60) -> Workspace:
    log = _log(tmp_path, n)
    ws = Workspace(str(tmp_path / name), create=True)
    with ws.writing():
        ingest(ws, [str(log)], 1, progress=False)
    return ws


def _table(ws: Workspace) -> list[tuple]:
    return ws.db.execute("SELECT prompt_hash, model_key, shard, row FROM embedded ORDER BY shard, row").fetchall()


def _embed_cli(ws_path: Path, *args: str, crash_at: str | None = None, log: Path | None = None):
    """``analyzer embed -w WS ARGS`` in a fresh process (so that a checkpoint can SIGKILL it)."""
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, LOG_ENV)}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **({CRASH_ENV: crash_at} if crash_at else {}),
               **({LOG_ENV: str(log)} if log else {}))
    return subprocess.run([sys.executable, "-m", "analyzer", "embed", "-w", str(ws_path), "-q", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


class _Upper:
    """A batch task: the text upper-cased, as a vector of character codes (one row per input row)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.calls = 0

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        self.calls += 1
        vecs = [np.array([ord(c) for c in t.upper()[: self.width].ljust(self.width)]) for t in batch["text"]]
        return pd.DataFrame({"prompt_hash": batch["prompt_hash"].to_numpy(), "vector": vecs})


def test_local_executor_uses_the_instance_it_is_given_and_reads_lazily():
    frames = (pd.DataFrame({"prompt_hash": [f"h{i}"], "text": [f"t{i}"]}) for i in range(3))
    own = _Upper(2)
    out = LocalExecutor().map_batches(BatchTask(_Upper, {"width": 2}, local=own), frames)
    first = next(out)
    assert first["prompt_hash"].tolist() == ["h0"] and first["vector"][0].tolist() == [ord("T"), ord("0")]
    assert own.calls == 1  # the second frame is not read before the first result is taken
    assert [b["prompt_hash"].iloc[0] for b in out] == ["h1", "h2"] and own.calls == 3
    again = pd.DataFrame({"prompt_hash": ["h9"], "text": ["hi"]})
    built = list(LocalExecutor().map_batches(BatchTask(_Upper, {"width": 1}), iter([again])))
    assert built[0]["vector"][0].tolist() == [ord("H")]  # no instance given: built from cls and kwargs


def test_embed_in_local_worker_processes_stores_the_same_table_and_vectors(tmp_path, monkeypatch):
    import analyzer.pipeline as pipeline_mod

    ref = _workspace(tmp_path, "ref")
    with ref.writing():
        key = embed(ref, RunOptions(progress=False, embed_chunk=20, text_workers=1))["model_key"]
    want_table, (want_hashes, want) = _table(ref), ref.load_embeddings(key)
    ref.close()

    monkeypatch.setattr(pipeline_mod, "TEXT_PARALLEL_MIN_TEXTS", 1)  # as from 60,000 prompts
    embedder = pipeline_mod.embedder_for(RunOptions())
    assert pipeline_mod.embed_workers(RunOptions(text_workers=2), embedder, 60) == 2
    assert pipeline_mod.embed_workers(RunOptions(text_workers=1), embedder, 60) == 1
    ws = _workspace(tmp_path, "ws")
    with ws.writing():  # three pages over two fresh worker processes, each building the embedder once
        assert embed(ws, RunOptions(progress=False, embed_chunk=20, text_workers=2))["embedded_now"] == 60
    assert _table(ws) == want_table
    got_hashes, got = ws.load_embeddings(key)
    assert got_hashes.tolist() == want_hashes.tolist()
    np.testing.assert_array_equal(got, want)
    ws.close()


def test_ray_windows_bound_the_frames_handed_over_at_once():
    frames = [pd.DataFrame({"text": ["x" * 100] * 10}) for _ in range(7)]
    size = int(frames[0].memory_usage(index=False, deep=True).sum())
    windows = list(_windows(iter(frames), window_bytes=3 * size))
    assert [len(w) for w in windows] == [3, 3, 1]
    assert list(_windows(iter(frames), window_bytes=1 << 40)) and len(next(_windows(iter(frames), 1 << 40))) == 7


def test_pending_pages_and_write_shards(tmp_path):
    ws = _workspace(tmp_path, "ws", n=23)
    shards = list(ws.iter_pending_prompts("k", rows=10))
    assert [len(s) for s in shards] == [10, 10, 3]
    hashes = pd.concat(shards)["prompt_hash"].tolist()
    assert hashes == sorted(hashes) == ws.pending_prompts("k")["prompt_hash"].tolist()
    # Results arrive in batches of any size and are committed in shards of shard_rows.
    vecs = np.random.default_rng(0).normal(size=(23, 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    batches = [pd.DataFrame({"prompt_hash": hashes[a:b], "vector": list(vecs[a:b])})
               for a, b in ((0, 7), (7, 7), (7, 19), (19, 23))]
    seen = []
    with ws.writing():
        assert write_shards(ws, "k", iter(batches), shard_rows=8, progress=seen.append) == 23
    assert sum(seen) == 23
    sizes = ws.db.execute("SELECT shard, count(*) FROM embedded WHERE model_key='k' GROUP BY 1 ORDER BY 1").fetchall()
    assert sizes == [(1, 8), (2, 8), (3, 7)]
    got_hashes, got = ws.load_embeddings("k")
    assert got_hashes.tolist() == hashes
    np.testing.assert_allclose(got, vecs, atol=1e-3)
    assert list(ws.iter_pending_prompts("k", rows=10)) == []
    # Pages read while shards are stored (as the embed path reads them) are neither shifted nor repeated.
    pages = ws.iter_pending_prompts("k2", rows=10)
    seen_hashes = []
    with ws.writing():
        for page in pages:
            seen_hashes += page["prompt_hash"].tolist()
            ws.add_embedding_shard("k2", page["prompt_hash"].tolist(), vecs[: len(page)])
    assert seen_hashes == hashes and ws.pending_count("k2") == 0
    ws.close()


def test_killed_embed_resumes_without_embedding_finished_shards_again(tmp_path):
    ref = _workspace(tmp_path, "ref")
    with ref.writing():
        key = embed(ref, RunOptions(progress=False, embed_chunk=20))["model_key"]
    want_table, (want_hashes, want) = _table(ref), ref.load_embeddings(key)
    ref.close()

    _workspace(tmp_path, "ws").close()
    killed = _embed_cli(tmp_path / "ws", "--embed-chunk", "20", crash_at="embed.shard_recorded:2")
    assert killed.returncode == -9, killed.stderr[-2000:]
    ws = Workspace(str(tmp_path / "ws"), read_only=True)
    assert ws.db.execute("SELECT shard, count(*) FROM embedded GROUP BY 1 ORDER BY 1").fetchall() == [(1, 20), (2, 20)]
    files = {s: os.stat(ws.shard_path(key, s)).st_mtime_ns for s in (1, 2)}
    ws.close()

    hits = tmp_path / "checkpoints.txt"
    again = _embed_cli(tmp_path / "ws", "--embed-chunk", "20", log=hits)
    assert again.returncode == 0, again.stderr[-2000:]
    assert '"embedded_now": 20' in again.stdout and '"embedded_total": 60' in again.stdout
    assert hits.read_text().split().count("embed.shard_recorded") == 1  # only the missing shard was written
    ws = Workspace(str(tmp_path / "ws"), read_only=True)
    assert {s: os.stat(ws.shard_path(key, s)).st_mtime_ns for s in (1, 2)} == files  # finished shards untouched
    assert _table(ws) == want_table
    got_hashes, got = ws.load_embeddings(key)
    assert got_hashes.tolist() == want_hashes.tolist()
    np.testing.assert_array_equal(got, want)
    ws.close()


def test_cli_without_ray_says_how_to_install(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from analyzer.cli import main

    _workspace(tmp_path, "ws", n=3).close()
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now raises ImportError
    for args in (["embed", "-w", str(tmp_path / "ws")], ["run", str(_log(tmp_path)), "-w", str(tmp_path / "new")]):
        result = CliRunner().invoke(main, [*args, "--ray", "local", "-q"])
        assert result.exit_code != 0
        assert "pip install 'analyzer[ray]'" in result.output
    assert not (tmp_path / "new").exists()  # refused before any workspace was made


@needs_ray
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecated settings, on its side
def test_ray_and_local_executors_store_the_same_table(tmp_path):
    import ray
    from click.testing import CliRunner

    from analyzer.cli import main
    from analyzer.distributed import RayExecutor

    # The local executor, uninterrupted: shards of 25 prompts (several pages, windows and committed shards).
    local = _workspace(tmp_path, "local")
    with local.writing():
        key = embed(local, RunOptions(progress=False, embed_chunk=25))["model_key"]
    want_table, (want_hashes, want) = _table(local), local.load_embeddings(key)
    local.close()
    assert [r[2] for r in want_table].count(3) == 10

    # A local run killed after its first shard, resumed on Ray: the same path picks up what is pending.
    _workspace(tmp_path, "ray").close()
    assert _embed_cli(tmp_path / "ray", "--embed-chunk", "25", crash_at="embed.shard_recorded:1").returncode == -9
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one Ray for both commands below
    try:
        result = CliRunner().invoke(main, ["embed", "-w", str(tmp_path / "ray"), "--ray", "local", "--ray-actors",
                                           "1", "--embed-chunk", "25", "-q"])
        assert result.exit_code == 0, result.output
        assert '"embedded_now": 35' in result.output
        ws = Workspace(str(tmp_path / "ray"))
        assert _table(ws) == want_table
        got_hashes, got = ws.load_embeddings(key)
        assert got_hashes.tolist() == want_hashes.tolist()
        np.testing.assert_array_equal(got, want)  # the fast tier's vectors do not depend on the batch
        with ws.writing():  # nothing pending: nothing embedded, the executor not even entered
            again = embed(ws, RunOptions(progress=False), RayExecutor("nowhere:1"))
        assert again["embedded_now"] == 0 and again["embedded_total"] == 60
        ws.close()

        # analyzer run --ray: the whole pipeline, its embed stage on Ray, recorded as such.
        result = CliRunner().invoke(main, ["run", str(_log(tmp_path)), "-w", str(tmp_path / "run"), "--ray", "local",
                                           "--embed-chunk", "25", "--no-map", "-q"])
        assert result.exit_code == 0, result.output
        assert "embed: 60 new prompts" in result.output
        ws = Workspace(str(tmp_path / "run"), read_only=True)
        assert _table(ws) == want_table
        np.testing.assert_array_equal(ws.load_embeddings(key)[1], want)
        params = json.loads(ws.db.execute("SELECT params FROM runs WHERE command = 'run'").fetchone()[0])
        assert params["executor"] == "ray" and params["ray"] == "local"
        ws.close()
        assert ray.is_initialized()  # the executor left the Ray it found running
    finally:
        ray.shutdown()
