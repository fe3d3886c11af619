"""The whole pipeline on the bundled sample: real model, DuckDB, FAISS and HDBSCAN."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SAMPLE_TRUTH

from analyzer.bench import metrics
from analyzer.export import export
from analyzer.workspace import Workspace


@pytest.fixture(scope="module")
def truth():
    return json.loads(SAMPLE_TRUTH.read_text())


@pytest.fixture(scope="module")
def ws(sample_workspace):
    w = Workspace(str(sample_workspace), read_only=True)
    yield w
    w.close()


def _flagged_accounts(ws):
    doc = json.loads(export(ws, "json"))
    return doc, [c["accounts"] for c in doc["campaigns"] if c["flagged"]]


def test_every_campaign_found_and_no_hard_negative_flagged(ws, truth):
    doc, flagged = _flagged_accounts(ws)
    recall, found = metrics.campaign_recall(flagged, truth)
    assert recall == 1.0, found
    n_false, hard = metrics.false_flags(flagged, truth)
    assert hard == [] and n_false <= 1


def test_account_scores_rank_campaign_accounts_first(ws, truth):
    rows = ws.db.execute("SELECT account_id, score FROM accounts").fetchall()
    assert metrics.account_auc(dict(rows), truth) >= 0.97


def test_json_export_contract(ws):
    doc, _ = _flagged_accounts(ws)
    assert doc["schema_version"] == 1 and doc["generated_at"].endswith("Z")
    assert set(doc["ingest"]) == {"read", "accepted", "rejected", "duplicates"}
    scores = [c["score"] for c in doc["campaigns"]]
    assert scores == sorted(scores, reverse=True)
    for c in doc["campaigns"]:
        for key in ("id", "score", "flagged", "label", "keywords", "template", "n_accounts", "n_requests",
                    "first_seen", "last_seen", "accounts", "clusters", "signals", "evidence", "examples"):
            assert key in c
        assert 0.0 <= c["score"] <= 1.0
        assert len(c["accounts"]) == c["n_accounts"]
        assert c["evidence"] and all(isinstance(e, str) for e in c["evidence"])
    flagged = [c for c in doc["campaigns"] if c["flagged"]]
    assert all(c["signals"]["spread"] > 0.5 and c["examples"] for c in flagged)


def test_single_account_batch_job_is_listed_but_not_flagged(ws, truth):
    doc, _ = _flagged_accounts(ws)
    batch = set(truth["hard_negatives"]["enterprise_batch"]["accounts"])
    listed = [c for c in doc["campaigns"] if set(c["accounts"]) == batch]
    assert listed and not listed[0]["flagged"]
    assert any("Single account" in e for e in listed[0]["evidence"])


def test_csv_has_one_row_per_account_with_scores_in_range(ws):
    rows = list(csv.DictReader(io.StringIO(export(ws, "csv"))))
    n_accounts = ws.db.execute("SELECT count(DISTINCT account_id) FROM requests").fetchall()[0][0]
    assert len(rows) == n_accounts
    assert {"account_id", "score", "campaign_id", "flagged"} <= set(rows[0])
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert any(r["flagged"] == "true" for r in rows)


def test_markdown_report_lists_flagged_campaigns(ws):
    doc, _ = _flagged_accounts(ws)
    md = export(ws, "markdown")
    for c in doc["campaigns"]:
        if c["flagged"]:
            assert c["id"] in md
    assert "**Evidence**" in md


def test_rerun_with_same_logs_embeds_nothing_and_keeps_counts(sample_workspace_copy):
    from conftest import SAMPLE_LOG

    from analyzer.pipeline import RunOptions, run_all

    w = Workspace(str(sample_workspace_copy))
    before = w.db.execute("SELECT count(*) FROM requests").fetchall()[0][0]
    stats = run_all(w, [str(SAMPLE_LOG)], RunOptions(progress=False, make_map=False))
    assert stats["embed"]["embedded_now"] == 0
    assert stats["ingest"]["accepted"] == 0 and stats["ingest"]["duplicates"] == stats["ingest"]["read"]
    assert w.db.execute("SELECT count(*) FROM requests").fetchall()[0][0] == before
    w.close()


def test_template_families_and_map_are_stored(ws):
    kinds = dict(ws.db.execute("SELECT kind, count(*) FROM clusters GROUP BY kind").fetchall())
    assert kinds.get("template", 0) > 0 and kinds.get("topic", 0) > 0
    # Near-duplicate tasks are recorded for every prompt; capability system prompts are units of their own.
    assert ws.db.execute("SELECT count(*) FROM prompt_clusters WHERE task_id IS NULL").fetchall()[0][0] == 0
    systems = ws.db.execute("SELECT intent, intent_similarity FROM system_clusters").fetchall()
    assert systems and all(sim >= 0.15 for _, sim in systems)
    assert ws.db.execute("SELECT count(*) FROM prompt_map").fetchall()[0][0] > 100


def _flagged_clusters_missing_from_map(w) -> tuple[int, list]:
    """Clusters of flagged campaigns (as the app colours prompts: family, else topic) with no point on the map."""
    n_flagged_clusters = w.db.execute(
        "SELECT count(*) FROM clusters c JOIN cluster_campaigns USING (cluster_id) JOIN campaigns cp USING (campaign_id) "
        "WHERE cp.flagged "
        "AND coalesce(c.kind, '') <> 'system'").fetchall()[0][0]
    missing = w.db.execute(
        """
        SELECT c.cluster_id FROM clusters c JOIN cluster_campaigns USING (cluster_id) JOIN campaigns cp USING (campaign_id)
        WHERE cp.flagged AND coalesce(c.kind, '') <> 'system' -- system prompt families have no place among prompts
          AND c.cluster_id NOT IN (SELECT coalesce(pc.assigned_cluster, pc.cluster_id)
                                                  FROM prompt_map m JOIN prompt_clusters pc USING (prompt_hash))
        """
    ).fetchall()
    return n_flagged_clusters, missing


def test_map_shows_every_cluster_of_every_flagged_campaign(ws):
    n_flagged_clusters, missing = _flagged_clusters_missing_from_map(ws)
    assert n_flagged_clusters > 0 and missing == []
    xy = ws.db.execute("SELECT x, y FROM prompt_map").fetchnumpy()
    assert len(set(zip(xy["x"].round(6), xy["y"].round(6), strict=True))) > 0.95 * len(xy["x"])  # not stacked


def test_small_map_still_shows_every_flagged_campaign_cluster(sample_workspace_copy, monkeypatch):
    # 120 points for ~2,300 prompts: the map keeps a representative of every campaign cluster.
    from analyzer.pipeline import RunOptions, make_map

    read: list[int] = []  # vectors read per call: the shown points' only (at 16M, not 3.5M vectors for 20k points)
    load = Workspace.load_vectors
    monkeypatch.setattr(Workspace, "load_vectors", lambda self, key, rows: read.append(len(rows)) or load(self, key, rows))
    w = Workspace(str(sample_workspace_copy))
    stats = make_map(w, RunOptions(progress=False, map_sample=120))
    assert read == [stats["points"]]
    n_flagged_clusters, missing = _flagged_clusters_missing_from_map(w)
    n_prompts = w.db.execute("SELECT count(*) FROM prompts").fetchall()[0][0]
    n_campaign_clusters = w.db.execute("SELECT count(*) FROM cluster_campaigns").fetchall()[0][0]
    w.close()
    assert stats["points"] <= max(120, n_campaign_clusters) < n_prompts
    assert n_flagged_clusters > 0 and missing == []


def test_a_later_map_keeps_its_points_and_shows_a_campaign_it_lacked(sample_workspace_copy):
    """Between layouts the map stage keeps every shown point where it is and adds the campaign clusters without
    a point (here: one whose points were taken off); another map size or a relayout lays everything out again."""
    from analyzer.pipeline import RunOptions, make_map

    w = Workspace(str(sample_workspace_copy))
    gone = w.db.execute(
        """SELECT c.cluster_id FROM clusters c JOIN cluster_campaigns USING (cluster_id) JOIN campaigns cp
           USING (campaign_id) WHERE cp.flagged AND coalesce(c.kind, '') <> 'system' ORDER BY c.n_prompts DESC
           LIMIT 1""").fetchall()[0][0]
    w.db.execute("""DELETE FROM prompt_map WHERE prompt_hash IN (SELECT prompt_hash FROM prompt_clusters
                    WHERE coalesce(assigned_cluster, cluster_id) = ?)""", [gone])
    before = w.table("prompt_map")
    assert _flagged_clusters_missing_from_map(w)[1] == [(gone,)]
    assert make_map(w, RunOptions(progress=False, map_sample=2000), write=lambda **_: None)["layout"] == "full"
    stats = make_map(w, RunOptions(progress=False, map_sample=3000))  # the size the workspace's map was made for
    after = w.table("prompt_map")
    assert stats["layout"] == "extended" and stats["added"] > 0
    kept = before.merge(after, on="prompt_hash", suffixes=("_0", "_1"))
    assert len(kept) == len(before)
    assert np.allclose(kept["x_0"], kept["x_1"]) and np.allclose(kept["y_0"], kept["y_1"])
    assert _flagged_clusters_missing_from_map(w)[1] == []
    assert make_map(w, RunOptions(progress=False, map_sample=3000), relayout=True)["layout"] == "full"
    w.close()


def test_run_record_versions_do_not_import_heavy_packages():
    # Every run records package versions while it holds the workspace lock: read from metadata, not imports
    # (importing torch only for its version cost 3-4 s per run, and the fast tier never needs torch).
    code = ("import sys; from analyzer.pipeline import versions; v = versions(); "
            "assert v['numpy'] and v['duckdb'] != 'not installed', v; "
            "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_read_ahead_keeps_order_raises_in_place_and_reads_one_ahead():
    import threading

    from analyzer.pipeline import read_ahead

    produced: list[int] = []
    threads: set[str] = set()

    def batches():
        for i in range(4):
            produced.append(i)
            threads.add(threading.current_thread().name)
            yield i
        raise ValueError("bad row in batch 4")

    got = []
    with pytest.raises(ValueError, match="batch 4"):
        for item in read_ahead(batches()):
            # while the caller holds item i, the reader has read at most item i + 1
            assert produced[-1] <= item + 1
            got.append(item)
    assert got == [0, 1, 2, 3]  # every batch before the error was handed over, in order
    assert threads and threading.current_thread().name not in threads  # read by the helper thread

    # a caller that stops early has made the reader read at most one batch more
    produced.clear()
    for item in read_ahead(batches()):
        if item == 1:
            break
    assert produced == [0, 1, 2]


def test_unassigned_request_share_counted_in_the_database(sample_workspace):
    # The share the cluster stage records, counted by DuckDB, equals the same count over the requests in pandas.
    from analyzer.pipeline import unassigned_share
    from analyzer.workspace import Workspace

    with Workspace(str(sample_workspace), read_only=True) as ws:
        req = ws.request_system_hashes()
        hashes = ws.table("prompt_clusters")["prompt_hash"].to_numpy(dtype=object)
        systems = ws.table("system_clusters")
        rng = np.random.default_rng(0)
        for units, fams in [(rng.integers(-1, 3, len(hashes)), systems),
                            (np.full(len(hashes), -1), systems.iloc[:0]),
                            (rng.integers(-1, 1, len(hashes))[: len(hashes) // 2], systems)]:
            kept = hashes[: len(units)]
            unit = pd.Series(units, index=kept).reindex(req["prompt_hash"]).fillna(-1).to_numpy()
            family = fams.set_index("system_hash")["cluster_id"]
            in_sys = req["system_hash"].map(family).fillna(-1).to_numpy() >= 0
            expected = float(((unit < 0) & ~in_sys).mean())
            assert unassigned_share(ws, kept, units, fams) == pytest.approx(expected, abs=1e-12)
        assert (systems["cluster_id"] >= 0).any() and req["system_hash"].notna().any()  # both paths exercised
