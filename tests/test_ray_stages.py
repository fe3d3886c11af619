"""The stages that grow with the data on Ray (``analyzer run --ray``): the log files parsed by Ray tasks, the
kNN graph searched against a sharded index by Ray actors; the small global steps on the driver. Each gives what
the local path gives: the same batches in the same order, the same graph, the same campaigns."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer import index as index_mod
from analyzer.bench import corpora
from analyzer.distributed import KNN_PROBED_BLOCK, KnnShard, knn_block, merge_topk
from analyzer.ingest import IngestError, read_logs

FUZZ = Path(__file__).parent / "fuzz"
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="ray is not installed (optional extra: pip install 'analyzer[ray]')"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # Ray's own deprecated settings, on its side
]


@pytest.fixture(scope="module")
def ray_executor():
    """One local Ray (2 CPUs) for the module, entered as a run enters it; two workers, so two files parse at
    once and the index is cut in two shards."""
    import ray

    from analyzer.distributed import RayExecutor

    ex = RayExecutor("local", num_actors=2)
    with ex:
        yield ex
    assert not ray.is_initialized()  # leaving the outermost ``with`` shut down the Ray it started


def _vectors(n: int, d: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d))
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, d))  # clustered, as prompts are
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _assert_same_graph(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    """The same neighbours with the same similarities (to float rounding); a row may differ only among
    neighbours of equal similarity (their order, or which of them is the k-th: an 8-bit index has ties)."""
    (gn, gs), (wn, ws) = got, want
    np.testing.assert_allclose(gs, ws, rtol=0, atol=1e-5)
    differ = (gn != wn).any(axis=1)
    assert differ.mean() < 2e-3
    for r in np.flatnonzero(differ):
        for sim in np.unique(ws[r]):
            inside = ws[r] > sim + 1e-5  # every neighbour clearly above this similarity is in both lists
            assert set(gn[r][gs[r] > sim + 1e-5]) == set(wn[r][inside])


@pytest.mark.parametrize("flat_max", [None, 500], ids=["flat", "ivf"])
def test_shards_of_an_index_merged_give_the_whole_index_graph(flat_max):
    """The pure parts of the distributed graph, in this process: an index's trained empty copy filled with
    consecutive rows, three shards searched and merged, give the graph of the whole index; and the whole
    index is intact after its empty copy was taken (its lists are swapped out and back, not copied)."""
    x = _vectors(4000)
    ids = np.arange(len(x), dtype=np.int64) * 5 + 3  # a workspace index's ids are embedding row ids
    index = index_mod.build_index(x, flat_max=flat_max, ids=ids)
    assert (index_mod.index_kind(len(x), flat_max) == "Flat") == (flat_max is None)
    pos = index_mod.PositionIndex(index, ids)
    want = index_mod.knn_graph(pos, x, k=10)
    empty = index_mod.empty_copy(pos)
    assert index.ntotal == len(x) and (index.search(x[:5], 1)[1][:, 0] == ids[:5]).all()
    bounds = [0, 1000, 2500, 4000]
    shards = [KnnShard(empty, x[lo:hi], lo) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    nbrs = np.full((len(x), 10), -1, dtype=np.int64)
    sims = np.full((len(x), 10), -np.inf, dtype=np.float32)
    for start in range(0, len(x), 1500):
        found = [s.search(x[start : start + 1500], 11) for s in shards]
        s, i = merge_topk([f[0] for f in found], [f[1] for f in found], 11)
        index_mod.drop_self(nbrs, sims, start, np.arange(start, start + len(s)), s, i, 10)
    _assert_same_graph((nbrs, sims), want)


def test_merge_keeps_the_highest_similarities_and_shard_order_on_ties():
    s, i = merge_topk([np.array([[0.9, 0.5]], np.float32), np.array([[0.9, 0.7]], np.float32)],
                      [np.array([[1, 2]]), np.array([[10, 11]])], 3)
    assert i.tolist() == [[1, 10, 11]] and s[0].tolist() == pytest.approx([0.9, 0.9, 0.7])


@pytest.mark.parametrize("flat_max", [None, 500], ids=["flat", "ivf"])
def test_ray_knn_graph_is_the_local_graph(ray_executor, flat_max):
    x = _vectors(20_000)
    index = index_mod.build_index(x, flat_max=flat_max)
    seen: list[int] = []
    got = ray_executor.knn_graph(index, x, 12, progress=seen.append)
    _assert_same_graph(got, index_mod.knn_graph(index, x, k=12))
    assert sum(seen) == len(x) and len(seen) == -(-len(x) // knn_block(index))  # one report per query block
    assert knn_block(index) == (index_mod.KNN_BATCH if flat_max is None else KNN_PROBED_BLOCK)


def test_ray_ingest_gives_one_readers_batches_in_order(ray_executor):
    files = [str(p) for p in sorted(FUZZ.iterdir()) if p.is_file()]
    one = list(read_logs(files, batch_size=2))
    remote = list(read_logs(files, batch_size=2, executor=ray_executor))
    assert len(one) == len(remote) > len(files)
    for a, b in zip(one, remote, strict=True):
        assert (a.source, a.n_read, a.rejected) == (b.source, b.n_read, b.rejected)
        pd.testing.assert_frame_equal(a.requests, b.requests)


def test_ray_ingest_strict_error_comes_in_its_files_place(ray_executor, tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text("".join(f'{{"request_id": "r{i}", "account_id": "x", "timestamp": 1700000000, '
                            f'"prompt": "hello {i}"}}\n' for i in range(3)))
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(b'{"account_id": "x", "timestamp": "2026-01-01T00:00:00Z"}\n')
    later = tmp_path / "c.jsonl"
    later.write_text('{"request_id": "r9", "account_id": "y", "timestamp": 1700000000, "prompt": "bye"}\n')
    got = []
    with pytest.raises(IngestError, match=r"b\.jsonl:1: field"):
        for batch in read_logs([str(good), str(bad), str(later)], strict=True, executor=ray_executor):
            got.append(batch)
    assert [b.source for b in got] == [str(good)] and len(got[0].requests) == 3


@pytest.mark.skipif(not corpora.available(), reason="shared corpora not present (../shared/data)")
def test_a_run_on_ray_finds_the_campaigns_of_a_local_run_on_the_quick_preset(ray_executor, tmp_path):
    """The quick preset written as two files, analysed once locally and once with the ingest, embedding and kNN
    graph on Ray (local mode): the same campaigns, scores, flags and account scores."""
    from analyzer.api import analyze
    from analyzer.bench.scenario import build_scenario, write_log

    requests = build_scenario("quick", 0).requests
    half = len(requests) // 2
    write_log(requests.iloc[:half], tmp_path / "logs" / "part-0.jsonl.gz")
    write_log(requests.iloc[half:], tmp_path / "logs" / "part-1.jsonl.gz")
    local = analyze(str(tmp_path / "logs"), str(tmp_path / "local"), progress=False)
    on_ray = analyze(str(tmp_path / "logs"), str(tmp_path / "ray"), progress=False, ray_address="local")
    assert on_ray.stats["cluster"]["knn_graph"] == "ray" and local.stats["cluster"]["knn_graph"] == "local"
    cols = ["campaign_id", "score", "flagged", "label", "n_accounts", "n_requests", "accounts"]
    assert local.campaigns["flagged"].sum() >= 3
    pd.testing.assert_frame_equal(local.campaigns[cols], on_ray.campaigns[cols])
    acc = ["account_id", "score", "campaign_id", "flagged"]
    pd.testing.assert_frame_equal(local.accounts[acc], on_ray.accounts[acc])
    assert len(local.clusters) == len(on_ray.clusters)
