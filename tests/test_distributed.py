"""Distributed embedding on Ray Data (``analyzer embed --ray``): same stored vectors as the local path."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pandas as pd
import pytest

from analyzer.distributed import _collect, iter_pending
from analyzer.pipeline import RunOptions, embed, ingest
from analyzer.workspace import Workspace

TOPICS = ["python decorators", "sourdough bread", "the french revolution", "prime numbers", "jazz chords",
          "chess openings"]


def _workspace(tmp_path, name: str, n: int = 60) -> Workspace:
    log = tmp_path / "log.jsonl"
    if not log.exists():
        with open(log, "w", encoding="utf-8") as fh:
            for i in range(n):
                prompt = f"Explain {TOPICS[i % len(TOPICS)]} to a {['child', 'student', 'expert'][i % 3]}, case {i}."
                fh.write(json.dumps({"request_id": f"r{i}", "account_id": f"a{i % 7}", "timestamp": 1_700_000_000 + i,
                                     "prompt": prompt}) + "\n")
    ws = Workspace(str(tmp_path / name), create=True)
    with ws.writing():
        ingest(ws, [str(log)], 1, progress=False)
    return ws


def test_iter_pending_and_collect_shards_without_ray(tmp_path):
    ws = _workspace(tmp_path, "ws", n=23)
    shards = list(iter_pending(ws, "k", shard_rows=10))
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
        assert _collect(ws, "k", iter(batches), shard_rows=8, progress=seen.append) == 23
    assert sum(seen) == 23
    sizes = ws.db.execute("SELECT shard, count(*) FROM embedded WHERE model_key='k' GROUP BY 1 ORDER BY 1").fetchall()
    assert sizes == [(1, 8), (2, 8), (3, 7)]
    got_hashes, got = ws.load_embeddings("k")
    assert got_hashes.tolist() == hashes
    np.testing.assert_allclose(got, vecs, atol=1e-3)
    assert list(iter_pending(ws, "k", shard_rows=10)) == []
    ws.close()


def test_cli_without_ray_says_how_to_install(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from analyzer.cli import main

    _workspace(tmp_path, "ws", n=3).close()
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now raises ImportError
    result = CliRunner().invoke(main, ["embed", "-w", str(tmp_path / "ws"), "--ray", "local", "-q"])
    assert result.exit_code != 0
    assert "pip install 'analyzer[ray]'" in result.output


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (optional extra: pip install 'analyzer[ray]')")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecated settings, on its side
def test_ray_local_embeds_like_the_local_path(tmp_path):
    from click.testing import CliRunner

    from analyzer.cli import main
    from analyzer.distributed import embed_with_ray

    opts = RunOptions(progress=False)
    local = _workspace(tmp_path, "local")
    with local.writing():
        stats = embed(local, opts)
    key = stats["model_key"]
    want_hashes, want = local.load_embeddings(key)
    local.close()

    _workspace(tmp_path, "ray").close()
    # Shards of 25 prompts: several blocks and committed shards; one actor call still sees all 60 prompts, so
    # the (batch-dependent) int8 activation quantization sees the same batch as the local path.
    result = CliRunner().invoke(main, ["embed", "-w", str(tmp_path / "ray"), "--ray", "local", "--ray-actors", "1",
                                       "--embed-chunk", "25", "-q"])
    assert result.exit_code == 0, result.output
    assert '"embedded_now": 60' in result.output

    ws = Workspace(str(tmp_path / "ray"))
    got_hashes, got = ws.load_embeddings(key)
    assert got_hashes.tolist() == want_hashes.tolist()
    assert float((got * want).sum(axis=1).min()) >= 0.999
    shards = ws.db.execute("SELECT shard, count(*) FROM embedded GROUP BY 1 ORDER BY 1").fetchall()
    assert shards == [(1, 25), (2, 25), (3, 10)]
    with ws.writing():  # nothing pending: nothing embedded, Ray not even started
        again = embed_with_ray(ws, opts, "local")
    assert again["embedded_now"] == 0 and again["embedded_total"] == 60
    ws.close()
