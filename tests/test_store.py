"""The SQL layer (analyzer.workspace + analyzer.store): the only modules that speak SQL, and their queries."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer import store
from analyzer.embed import DEFAULT_TIER, PRE_TIER_TIER, recorded_settings
from analyzer.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SQL_LAYER = {"analyzer/workspace.py", "analyzer/store.py"}
SQL_TEXT = re.compile(r"^\s*(SELECT|WITH|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|BEGIN|COMMIT|SET|PRAGMA)\s")
SQL_CALLS = {"execute", "executemany", "sql", "register", "unregister", "fetchall", "fetchone"}


def _sql_uses(path: Path) -> list[str]:
    """Where ``path`` speaks SQL: imports duckdb, calls a DuckDB connection method, or holds SQL text."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "duckdb" for a in node.names):
            found.append(f"{node.lineno}: import duckdb")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "duckdb":
            found.append(f"{node.lineno}: from duckdb import")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS
              and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("store", "data"))):
            found.append(f"{node.lineno}: .{node.func.attr}(")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.match(node.value):
            found.append(f"{node.lineno}: SQL text {node.value.strip()[:40]!r}")  # f-strings' parts too
    return found


def test_only_the_sql_layer_speaks_sql():
    """Product code (the package and app.py) reads and writes the workspace through analyzer.workspace and
    analyzer.store only."""
    files = [p for p in sorted((ROOT / "analyzer").rglob("*.py")) if str(p.relative_to(ROOT)) not in SQL_LAYER]
    files.append(ROOT / "app.py")
    offenders = {str(p.relative_to(ROOT)): uses for p in files if (uses := _sql_uses(p))}
    assert offenders == {}


def test_the_check_finds_sql(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('import duckdb\nws.db.execute("SELECT 1")\nq = f"SELECT {x} FROM t"\n', encoding="utf-8")
    assert len(_sql_uses(bad)) == 4
    good = tmp_path / "good.py"
    good.write_text('from analyzer import store\nrows = store.campaigns(ws)\nhelp = "Select a campaign"\n',
                    encoding="utf-8")
    assert _sql_uses(good) == []


# --- a small workspace ----------------------------------------------------------------------------------------------
def _requests(rows: list[dict]) -> pd.DataFrame:
    base = {"system_prompt": None, "model": "m", "ip": None, "user_agent": None, "api_key_id": None, "org_id": None,
            "payment_id": None, "country": None, "extra": None, "source": "f.jsonl"}
    out = pd.DataFrame([{**base, **r} for r in rows])
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out["prompt_hash"] = [f"h-{p}" for p in out["prompt"]]
    out["line"] = range(1, len(out) + 1)
    return out


@pytest.fixture
def small_ws(tmp_path) -> Path:
    """Two accounts in one campaign; ``a1`` sends from two IPv6 addresses of one /48, an IPv4 address and a
    value that is not an address."""
    path = tmp_path / "ws"
    ws = Workspace(str(path), create=True)
    rid = ws.start_run("run", {"paths": []}, {})
    ips = ["2001:db8::1", "2001:db8:0:1::2", "not-an-ip", "10.1.2.3", "2001:db8::1"]
    rows = [{"request_id": f"r{i}", "account_id": "a1", "ts": f"2026-01-05T10:0{i}:00Z", "prompt": f"p{i % 2}",
             "ip": ip, "user_agent": "ua/1", "system_prompt": "You are a teacher." if i < 2 else None}
            for i, ip in enumerate(ips)]
    rows.append({"request_id": "r9", "account_id": "a2", "ts": "2026-01-05T11:00:00Z", "prompt": "p0",
                 "ip": "192.0.2.7", "user_agent": "ua/2"})
    ws.add_requests(_requests(rows), run_id=rid)
    ws.finish_run(rid, {"cluster": {"path": "full"}})
    ts = pd.Timestamp("2026-01-05T10:00:00Z")
    ws.replace_tables("cluster", {
        "prompt_clusters": pd.DataFrame({"prompt_hash": ["h-p0", "h-p1"], "cluster_id": [0, 0],
                                         "assigned_cluster": [0, 0]})})
    ws.replace_tables("label", {
        "clusters": pd.DataFrame({"cluster_id": [0], "kind": ["topic"], "label": ["maths"], "n_prompts": [2],
                                  "n_requests": [6], "n_accounts": [2]})})
    ws.replace_tables("score", {
        "cluster_campaigns": pd.DataFrame({"cluster_id": [0], "campaign_id": ["c1"]}),
        "campaigns": pd.DataFrame([{"campaign_id": "c1", "rank": 1, "score": 0.8, "flagged": True, "label": "maths",
                                    "kind": "topic", "keywords": [], "template": "", "n_accounts": 2, "n_requests": 6,
                                    "first_seen": ts,
                                    "last_seen": ts + pd.Timedelta(hours=1), "clusters": [0],
                                    "signals": {"spread": 0.5}, "evidence": [], "examples": []}]),
        "campaign_accounts": pd.DataFrame({"campaign_id": ["c1", "c1"], "account_id": ["a1", "a2"],
                                           "n_requests": [5, 1], "share": [1.0, 1.0], "score": [0.8, 0.5],
                                           "evidence": [[], []]}),
        "accounts": pd.DataFrame({"account_id": ["a1", "a2"], "n_requests": [5, 1], "n_prompts": [2, 1],
                                  "first_seen": [ts, ts], "last_seen": [ts, ts], "top_cluster": [0, 0],
                                  "campaign_id": ["c1", "c1"], "score": [0.8, 0.5], "signals": [{}, {}]}),
    })
    ws.close()
    return path


def test_app_subnets_are_the_signals_subnets(small_ws):
    """The app groups IPs with analyzer.signals.subnet: ``2001:db8::1`` is in ``2001:db8::/48`` (not
    ``2001:db8:::/48``), and a value that is not an address is in no network (not ``.0/24``)."""
    from analyzer.app import data

    detail = data.account_detail(str(small_ws), "k1", "a1")
    nets = detail["infra"][detail["infra"]["kind"] == "subnet"]
    assert dict(zip(nets["value"], nets["requests"], strict=True)) == {"2001:db8::/48": 3, "10.1.2.0/24": 1}
    kinds = detail["infra"]["kind"].tolist()
    assert kinds == sorted(kinds)  # grouped by kind, as before
    members = data.campaign_accounts(str(small_ws), "k1", "c1").set_index("account_id")
    assert members.loc["a1", "subnet"] == "2001:db8::/48" and members.loc["a2", "subnet"] == "192.0.2.0/24"
    assert members.loc["a1", "n_ips"] == 4  # distinct logged values, addresses or not
    assert list(members.columns[:8]) == ["n_requests", "share", "score", "total_requests", "first_seen",
                                         "last_seen", "subnet", "user_agent"]


def test_main_subnet_of_an_account_without_addresses_is_missing():
    from analyzer.app.data import main_subnets, subnet_counts

    ips = pd.DataFrame({"account_id": ["a", "a", "b", "c", "c"], "ip": ["x", "", "10.0.0.1", "10.0.1.1", "10.0.0.9"],
                        "requests": [5, 1, 2, 1, 1]})
    nets = main_subnets(ips)
    assert "a" not in nets.index and nets["b"] == "10.0.0.0/24"
    assert nets["c"] == "10.0.0.0/24"  # a tie goes to the first in text order
    assert subnet_counts(ips[["ip", "requests"]]).values.tolist() == [["10.0.0.0/24", 3], ["10.0.1.0/24", 1]]


def test_the_tier_of_a_workspace_is_read_one_way(tmp_path):
    """Pipeline and app read the last run's embedding settings with the same function and fallback."""
    from analyzer.app import data
    from analyzer.pipeline import workspace_tier

    assert recorded_settings(None) is None
    assert recorded_settings({"model": "minilm"}).tier == PRE_TIER_TIER == "accurate"
    assert recorded_settings({"tier": "fast", "max_seq_length": 64}) == recorded_settings(
        {"tier": "fast", "max_seq_length": 64, "model": "minilm"})

    path = str(tmp_path / "ws")
    with Workspace(path, create=True) as ws:
        ws.start_run("ingest", {"paths": ["x"]}, {})
        assert workspace_tier(ws) is None and ws.last_run_options() is None
    assert data.embedding_settings(path) == ("minilm", 128, DEFAULT_TIER)
    with Workspace(path) as ws:  # a run recorded before tiers existed: the accurate tier, in both
        ws.start_run("run", {"options": {"model": "minilm", "max_seq_length": 96}}, {})
        ws.start_run("ingest", {"paths": ["y"]}, {})  # later runs without options do not hide it
        assert workspace_tier(ws) == "accurate"
    assert data.embedding_settings(path) == ("minilm", 96, "accurate")
    with Workspace(path) as ws:
        ws.start_run("embed", {"options": {"model": "minilm", "tier": "fast", "max_seq_length": 128}}, {})
        assert workspace_tier(ws) == "fast"
    assert data.embedding_settings(path) == ("minilm", 128, "fast")


# --- moved queries --------------------------------------------------------------------------------------------------
def test_workspace_reads_for_the_pipeline(small_ws):
    with Workspace(str(small_ws)) as ws:
        assert ws.has_rows("prompt_clusters") and not ws.has_rows("prompt_map")
        with pytest.raises(ValueError):
            ws.has_rows("nope; DROP TABLE runs")
        assert ws.prompt_texts().to_dict() == {"h-p0": "p0", "h-p1": "p1"}
        assert ws.prompt_texts(["h-p1", "h-unknown"]).to_dict() == {"h-p1": "p1"}
        objects = ws.prompt_text_objects(batch_rows=1)  # Python strings, made once, over several batches
        assert objects.dtype == object and objects.index.dtype == object
        assert objects.to_dict() == {"h-p0": "p0", "h-p1": "p1"}
        assert objects.reindex(["h-p1"]).array[0] is objects.array[objects.index.get_loc("h-p1")]
        sysp = ws.system_prompt_counts()
        assert sysp["n"].tolist() == [2] and sysp["text"].tolist() == ["You are a teacher."]
        assert ws.request_system_hashes()["system_hash"].notna().sum() == 2
        assert ws.request_system_hashes(since_run=1).empty  # every request came with run 1
        assert ws.newest_request_ts() == pd.Timestamp("2026-01-05T11:00:00Z")
        assert ws.newest_request_ts(since_run=1) is None
        assert [r for r, _ in ws.ok_run_stats()] == [1] and ws.ok_run_stats()[0][1]["cluster"]["path"] == "full"
        req = ws.scoring_requests()
        assert len(req) == 6 and set(req["cluster_id"]) == {0}
        assert ws.empty_rows("campaigns").empty and "campaign_id" in ws.empty_rows("campaigns").columns
        assert ws.prompt_units().set_index("prompt_hash")["unit"].to_dict() == {"h-p0": 0, "h-p1": 0}
        assert ws.campaign_cluster_ids().tolist() == [0]
        assert ws.table("accounts", ["account_id"]).columns.tolist() == ["account_id"]


def test_embedding_reads(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    ws.add_requests(_requests([{"request_id": f"r{i}", "account_id": "a", "ts": "2026-01-05T10:00:00Z",
                                "prompt": f"p{i}"} for i in range(5)]), run_id=1)
    assert ws.largest_model_key() is None
    assert ws.pending_count("k") == 5 and ws.embedded_count("k") == 0
    ws.add_embedding_shard("k", ["h-p1", "h-p3"], np.eye(2, 4, dtype=np.float32))
    assert ws.pending_count("k") == 3 and ws.embedded_count("k") == 2
    assert ws.embedded_hashes("k").tolist() == ["h-p1", "h-p3"]
    assert ws.largest_model_key() == "k"
    assert ws.pending_prompts("k")["prompt_hash"].tolist() == ["h-p0", "h-p2", "h-p4"]
    assert ws.pending_prompts("k", after="h-p0", limit=1)["prompt_hash"].tolist() == ["h-p2"]
    assert ws.pending_prompts("k", after="h-p2", limit=5)["prompt_hash"].tolist() == ["h-p4"]
    ws.close()


def test_store_reads_work_on_a_read_only_connection(small_ws):
    con = store.connect_read_only(str(small_ws / "analyzer.duckdb"))
    try:
        assert store.latest_run(con)[:2] == (1, "ok")
        assert store.overview_counts(con)["flagged_accounts"] == 2
        assert sorted(store.member_accounts(con, "c1")) == ["a1", "a2"]
        assert store.top_accounts(con, 1) == ["a1"]
        assert store.request_span_seconds(con) == 3600.0
        assert store.request_span_seconds(con, ["a1"]) == 240.0
        assert store.campaign_span_seconds(con, "c1") == 3600.0 and store.campaign_span_seconds(con, "x") == 0.0
        assert store.campaign(con, "nope") is None and store.account(con, "a2")["score"] == 0.5
        assert store.account_rows(con)["account_id"].tolist() == ["a1", "a2"]
        with pytest.raises(ValueError):
            store.traffic_over_time(con, "1 hour'; DROP TABLE runs; --")
        assert store.traffic_over_time(con, "1 hour")["requests"].sum() == 6
    finally:
        con.close()


HOLD_WRITE = """
import sys
from analyzer.workspace import Workspace
ws = Workspace(sys.argv[1])
ws.acquire()
print("ready", flush=True)
sys.stdin.read()
ws.close()
"""


def test_export_while_a_writer_holds_the_workspace_fails_cleanly_and_changes_nothing(small_ws):
    """A run in progress has the database open read-write and holds the lock: an export (read-only, no DDL)
    is refused with a message and leaves every file as it was."""
    import os
    import subprocess
    import sys

    from click.testing import CliRunner

    from analyzer import cli

    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITE, str(small_ws)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_ws.iterdir() if p.is_file()}
        res = CliRunner().invoke(cli.main, ["export", "-w", str(small_ws), "--format", "json"])
        assert res.exit_code != 0 and "in use" in res.output
        after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_ws.iterdir() if p.is_file()}
        assert after == before
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    res = CliRunner().invoke(cli.main, ["export", "-w", str(small_ws), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["campaigns"][0]["id"] == "c1"
