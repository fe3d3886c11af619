import multiprocessing as mp
import os

import numpy as np
import pandas as pd
import pytest

from analyzer.workspace import Workspace, WorkspaceLocked, WorkspaceMissing


def _frame(ids, prompts, account="a1"):
    n = len(ids)
    return pd.DataFrame({
        "request_id": ids, "account_id": [account] * n,
        "ts": pd.to_datetime(["2026-01-01T00:00:00Z"] * n, utc=True),
        "prompt": prompts, "prompt_hash": [f"h-{p}" for p in prompts], "system_prompt": [None] * n,
        "model": ["m"] * n, "ip": [None] * n, "user_agent": [None] * n, "api_key_id": [None] * n,
        "org_id": [None] * n, "payment_id": [None] * n, "country": [None] * n, "extra": [None] * n,
        "source": ["f.jsonl"] * n, "line": list(range(1, n + 1)),
    })


def test_missing_workspace_is_a_clear_error(tmp_path):
    with pytest.raises(WorkspaceMissing, match="not an analyzer workspace"):
        Workspace(str(tmp_path / "nope"))


def test_requests_dedup_by_request_id_and_prompts_once(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    acc, dup = ws.add_requests(_frame(["r1", "r2", "r2"], ["x", "y", "y"]), run_id=1)
    assert (acc, dup) == (2, 1)
    acc, dup = ws.add_requests(_frame(["r2", "r3"], ["y", "x"]), run_id=2)
    assert (acc, dup) == (1, 1)
    assert ws.db.execute("SELECT count(*) FROM requests").fetchone()[0] == 3
    assert ws.db.execute("SELECT count(*) FROM prompts").fetchone()[0] == 2
    ws.close()


def test_embedding_shards_roundtrip_and_pending(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    ws.add_requests(_frame(["r1", "r2", "r3"], ["a", "b", "c"]), run_id=1)
    pending = ws.pending_prompts("m")
    assert pending["prompt_hash"].tolist() == ["h-a", "h-b", "h-c"]
    v = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    ws.add_embedding_shard("m", ["h-a", "h-c"], v)
    assert ws.pending_prompts("m")["prompt_hash"].tolist() == ["h-b"]
    hashes, vecs = ws.load_embeddings("m")
    assert hashes.tolist() == ["h-a", "h-c"]
    expected = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert np.allclose(vecs, expected, atol=2e-3)
    # An orphan shard file (killed before the database insert) is simply overwritten next time.
    assert os.path.exists(os.path.join(ws.embeddings_dir("m"), "shard-000001.npy"))
    ws.close()


def _try_lock(path, q):
    try:
        Workspace(path).acquire()
        q.put("acquired")
    except WorkspaceLocked as exc:
        q.put(str(exc))


def test_second_writer_is_refused(tmp_path):
    path = str(tmp_path / "ws")
    ws = Workspace(path, create=True)
    ws.db.close()  # DuckDB allows one writer process: release the file, keep the lock
    ws.db = None
    ws.acquire()
    q = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=_try_lock, args=(path, q))
    p.start()
    p.join(30)
    msg = q.get(timeout=5)
    assert "in use by pid" in msg
    ws.release()


def test_triage_latest_wins(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    ws.set_triage("c-1", "needs review", "look again", "ana")
    ws.set_triage("c-1", "confirmed", "same template as case 12", "bo")
    latest = ws.triage_latest()
    assert latest.loc[0, "status"] == "confirmed" and latest.loc[0, "analyst"] == "bo"
    with pytest.raises(ValueError):
        ws.set_triage("c-1", "maybe")
    ws.close()


def test_write_tables_upserts_replaces_and_appends_in_one_transaction(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    pc = pd.DataFrame({"prompt_hash": ["a", "b"], "cluster_id": [1, 2]})
    ws.replace_tables("cluster", {"prompt_clusters": pc})
    ws.replace_tables("map", {"prompt_map": pd.DataFrame({"prompt_hash": ["a"], "x": [0.0], "y": [1.0]})})
    ws.write_tables("cluster", upsert={"prompt_clusters": ("prompt_hash", pd.DataFrame({"prompt_hash": ["b", "c"],
                                                                                      "cluster_id": [5, 6]}))},
                    replace={"system_clusters": pd.DataFrame({"system_hash": ["s"], "cluster_id": [9]})})
    got = ws.table("prompt_clusters").sort_values("prompt_hash")
    assert got[["prompt_hash", "cluster_id"]].values.tolist() == [["a", 1], ["b", 5], ["c", 6]]
    assert ws.table("system_clusters")["cluster_id"].tolist() == [9]
    # a failing write leaves everything as it was (the bad frame names a column the table lacks)
    with pytest.raises(Exception, match="nope"):
        ws.write_tables("cluster", replace={"prompt_clusters": pd.DataFrame({"prompt_hash": ["z"], "cluster_id": [0]}),
                                            "system_clusters": pd.DataFrame({"nope": [1]})})
    assert sorted(ws.table("prompt_clusters")["prompt_hash"]) == ["a", "b", "c"]
    assert len(ws.table("prompt_map")) == 1
    ws.close()


def test_arrow_frame_is_the_frame_duckdb_gives():
    # scoring_requests reads through Arrow (faster at 100k rows): the frame must be .df()'s, nullable integers,
    # strings, floats and time zones included.
    import duckdb

    from analyzer.workspace import arrow_frame

    db = duckdb.connect()
    query = """SELECT * FROM (VALUES (1::BIGINT, 2::INTEGER, 3::BIGINT, 'a', NULL::DOUBLE,
                                      TIMESTAMPTZ '2026-01-01 00:00:00+00'),
                                     (NULL, NULL, 4, NULL, 1.5, NULL)) t(task_id, small, whole, text, x, ts)"""
    got, expected = arrow_frame(db.sql(query).to_arrow_table()), db.execute(query).df()
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    assert got.equals(expected)


def test_arrow_frame_makes_every_column_one_array():
    # DuckDB hands a large result over in many chunks; taking rows of a chunked column concatenates it every
    # time, so the frame's columns are made contiguous once, with the values and types unchanged.
    import duckdb
    import pyarrow as pa

    from analyzer.workspace import arrow_frame

    db = duckdb.connect()
    query = """SELECT i AS n, 'acc-' || (i % 7) AS account_id, CASE WHEN i % 3 = 0 THEN NULL ELSE 'x' || i END AS ip
               FROM range(5000) t(i)"""
    table = db.sql(query).to_arrow_table()
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=512))
    assert chunked.column("account_id").num_chunks > 1
    got = arrow_frame(chunked)
    assert got.equals(db.execute(query).df())
    for name in ("account_id", "ip"):
        assert got[name].array._pa_array.num_chunks == 1
    taken = got.iloc[[4999, 3, 1024]]["ip"]
    assert taken.isna().tolist() == [False, True, False] and taken.dropna().tolist() == ["x4999", "x1024"]


def test_scoring_requests_are_the_rows_a_plain_query_gives(sample_workspace):
    from analyzer.workspace import UNIT_JOINS

    with Workspace(str(sample_workspace)) as ws:
        got = ws.scoring_requests()
        joins = UNIT_JOINS.format(kinds="(SELECT cluster_id, kind FROM clusters)")
        plain = ws.db.execute(f"SELECT r.account_id, r.ts, r.prompt_hash, r.ip {joins}").df()
    assert len(got) == len(plain) > 0
    cols = ["account_id", "ts", "prompt_hash", "ip"]
    order = cols[:3]
    assert got[cols].sort_values(order).reset_index(drop=True).equals(plain.sort_values(order).reset_index(drop=True))
    assert got["cluster_id"].dtype == np.int32 and str(got["account_id"].dtype) == str(plain["account_id"].dtype)


def test_release_cache_evicts_read_blocks_and_keeps_the_limit(sample_workspace_copy):
    from analyzer.workspace import Workspace

    def cached(ws) -> int:
        return int(ws.db.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory() "
                                 "WHERE tag = 'BASE_TABLE'").fetchall()[0][0] or 0)

    with Workspace(str(sample_workspace_copy)) as ws:
        # A table of some megabytes, on disk (a block only in memory cannot be evicted), then read whole.
        ws.db.execute("CREATE TABLE filler AS SELECT range AS i, md5(range::VARCHAR) AS h FROM range(300000)")
        ws.db.execute("CHECKPOINT")
        limit = ws.db.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        distinct = ws.db.execute("SELECT count(DISTINCT h) FROM filler").fetchall()[0][0]
        before = ws.scoring_requests()
        held = cached(ws)
        assert held > 4 << 20  # the blocks read, kept after the reads
        ws.release_cache()
        assert cached(ws) < 1 << 20
        assert ws.db.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == limit
        after = ws.scoring_requests()  # read again from disk: the same rows
        assert after.equals(before)
        assert ws.db.execute("SELECT count(DISTINCT h) FROM filler").fetchall()[0][0] == distinct == 300000
        for _ in range(3):  # the default limit itself, not a rounded copy that drifts down
            ws.release_cache()
        assert ws.db.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == limit
