"""Typed structured columns (lists, STRUCTs, MAPs, JSON) and the migration of an earlier release's JSON text.

The earlier release stored every structured value as JSON text in a VARCHAR column. A workspace it wrote is
built here with its DDL and its writers' JSON (not by checking out old code), then read without a writer
(typed views, the file unchanged) and migrated by the writer in place.
"""

from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pandas as pd
import pytest

from analyzer import store
from analyzer.export import to_csv, to_json, to_markdown
from analyzer.pipeline import watch_entries
from analyzer.workspace import DB_NAME, TYPED_COLUMNS, Workspace, WorkspaceCorrupt

# The previous release's schema, as it created it (structured values as JSON text in VARCHAR columns).
OLD_SCHEMA = """
CREATE TABLE requests(request_id VARCHAR, account_id VARCHAR, ts TIMESTAMPTZ, prompt_hash VARCHAR,
    system_prompt VARCHAR, model VARCHAR, ip VARCHAR, user_agent VARCHAR, api_key_id VARCHAR, org_id VARCHAR,
    payment_id VARCHAR, country VARCHAR, extra VARCHAR, source VARCHAR, line BIGINT, run_id BIGINT);
CREATE TABLE prompts(prompt_hash VARCHAR PRIMARY KEY, text VARCHAR, n_chars INTEGER);
CREATE TABLE clusters(cluster_id INTEGER, n_prompts INTEGER, n_requests BIGINT, n_accounts INTEGER,
    label VARCHAR, keywords VARCHAR, template VARCHAR, exemplars VARCHAR, campaign_id VARCHAR, signals VARCHAR);
ALTER TABLE clusters ADD COLUMN kind VARCHAR;
CREATE TABLE campaigns(campaign_id VARCHAR, rank INTEGER, score DOUBLE, flagged BOOLEAN,
    label VARCHAR, kind VARCHAR, keywords VARCHAR, template VARCHAR, n_accounts INTEGER, n_requests BIGINT,
    first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, clusters VARCHAR, signals VARCHAR, evidence VARCHAR,
    examples VARCHAR);
CREATE TABLE campaign_accounts(campaign_id VARCHAR, account_id VARCHAR, n_requests BIGINT,
    share DOUBLE, score DOUBLE, evidence VARCHAR);
CREATE TABLE accounts(account_id VARCHAR, n_requests BIGINT, n_prompts BIGINT,
    first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, top_cluster INTEGER, campaign_id VARCHAR, score DOUBLE,
    signals VARCHAR);
CREATE TABLE triage(campaign_id VARCHAR, status VARCHAR, note VARCHAR, analyst VARCHAR, decided_at TIMESTAMPTZ);
CREATE TABLE watchlist(watch_id VARCHAR, campaign_id VARCHAR, status VARCHAR, source VARCHAR,
    created_at TIMESTAMPTZ, analyst VARCHAR, note VARCHAR, fingerprint VARCHAR);
CREATE TABLE runs(run_id BIGINT, command VARCHAR, started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ, status VARCHAR, params VARCHAR, versions VARCHAR, stats VARCHAR);
CREATE TABLE campaign_history(run_id BIGINT, campaign_id VARCHAR, transition VARCHAR,
    parent_ids VARCHAR, n_accounts INTEGER, n_requests BIGINT, score DOUBLE, flagged BOOLEAN,
    recorded_at TIMESTAMPTZ);
CREATE TABLE campaign_identity(campaign_id VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
    first_flagged_at TIMESTAMPTZ, first_flagged_run_id BIGINT, first_run_id BIGINT, last_run_id BIGINT);
"""

TS = "2026-01-05 10:00:00+00"
CLUSTER_SIGNALS = {"template_coverage": 0.8125, "n_fixed_words": 14, "n_slots": 2, "slot_entropy": 1.25,
                   "training_value": 0.6667, "intent": "rubric grading", "intent_similarity": 0.4321,
                   "tightness": 0.71}
CAMPAIGN_SIGNALS = {"spread": 0.9, "evenness": 0.8123, "focus": 1.0, "diversity": 0.55, "templating": 0.7,
                    "training_value": 0.66, "sync": None, "regularity": 0.0, "infrastructure": None, "pivot": None}
FINGERPRINT = {"campaign_id": "c-old", "label": "rubric grading: 2 accounts", "intent": "rubric grading",
               "accounts": ["acc-1", "acc-2"], "infra": {"ip": ["10.0.0.1"]}, "n_accounts": 2, "score": 0.81}
# (table, the old row's values in OLD_SCHEMA's column order, JSON text as the earlier writers wrote it)
OLD_ROWS = [
    ("requests", ["r1", "acc-1", TS, "h1", None, "m", "10.0.0.1", None, None, None, None, None,
                  json.dumps({"custom": "x", "nested": {"a": [1, 2.5]}}), "logs.jsonl", 1, 1]),
    ("requests", ["r2", "acc-2", TS, "h1", None, "m", "10.0.0.1", None, None, None, None, None, None,
                  "logs.jsonl", 2, 1]),
    ("prompts", ["h1", "Grade this answer strictly: é ✓", 31]),
    ("clusters", [0, 1, 2, 2, "rubric grading", json.dumps(["rubric", "grade é"]), "Grade {x}",
                  json.dumps(["Grade this answer strictly: é ✓"]), "c-old", json.dumps(CLUSTER_SIGNALS), "topic"]),
    # a cluster row from a release before slots were recorded: keys missing
    ("clusters", [1, 1, 1, 1, "misc", "[]", "", "[]", None, json.dumps({"template_coverage": 0.1,
                  "n_fixed_words": 3, "training_value": 0.2, "intent": "", "tightness": 0.3}), "topic"]),
    ("campaigns", ["c-old", 1, 0.81, True, "rubric grading: 2 accounts", "rubric grading",
                   json.dumps(["rubric", "grade é"], ensure_ascii=False), "Grade {x}", 2, 2, TS, TS,
                   json.dumps([0, 7]), json.dumps(CAMPAIGN_SIGNALS, ensure_ascii=False),
                   json.dumps(["2 accounts share one IP.", "Evidence with ünïcode"], ensure_ascii=False),
                   json.dumps(["Grade this answer strictly: é ✓"], ensure_ascii=False)]),
    ("campaigns", ["cw-formed", 2, 0.7, True, "continues confirmed campaign c-x", "", "[]", "", 0, 0, TS, TS, "[]",
                   json.dumps({"watch_similarity": None, "watch_match_share": 0.5}), "[]", "[]"]),
    ("campaign_accounts", ["c-old", "acc-1", 1, 0.5, 0.8,
                           json.dumps(["1 of its 2 requests (50%) are in this campaign"], ensure_ascii=False)]),
    ("campaign_accounts", ["c-old", "acc-2", 1, 1.0, 0.81, "[]"]),
    ("accounts", ["acc-1", 2, 1, TS, TS, 0, "c-old", 0.8, json.dumps({"share_in_campaign": 0.5})]),
    ("accounts", ["acc-3", 1, 1, TS, TS, -1, None, 0.0, json.dumps({})]),
    ("triage", ["c-old", "confirmed", "seen before", "ana", TS]),
    ("watchlist", ["w-1", "c-old", "confirmed", "local", TS, "ana", "note", json.dumps(FINGERPRINT, ensure_ascii=False)]),
    ("runs", [1, "run", TS, TS, "ok", json.dumps({"options": {"model": "fast", "tier": "fast"}}),
              json.dumps({"analyzer": "0.1.0"}), json.dumps({"embed": {"model_key": "fast-key"}, "score": {"n": 2}})]),
    ("runs", [2, "run", TS, None, "interrupted", "not json at all", None, None]),
    ("campaign_history", [1, "c-old", "merged", json.dumps(["c-a", "c-b"]), 2, 2, 0.81, True, TS]),
    ("campaign_history", [1, "cw-formed", "new", "[]", 0, 0, 0.7, True, TS]),
    ("campaign_identity", ["c-old", TS, TS, TS, 1, 1, 1]),
]


def make_old_workspace(path, rows=OLD_ROWS) -> None:
    """A workspace folder as the previous release left it (its DDL, its JSON text)."""
    path.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path / DB_NAME))
    con.execute(OLD_SCHEMA)
    for table, values in rows:
        con.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values))})", values)
    con.close()


def column_types(path) -> dict[tuple[str, str], str]:
    con = duckdb.connect(str(path / DB_NAME), read_only=True)
    try:
        return {(t, c): k for t, c, k in con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns").fetchall()}
    finally:
        con.close()


def row_counts(path) -> dict[str, int]:
    con = duckdb.connect(str(path / DB_NAME), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in {t for t, _ in OLD_ROWS}}
    finally:
        con.close()


def _exports(ws: Workspace) -> tuple[str, str, str]:
    doc = re.sub(r'"generated_at": "[^"]*"', "", to_json(ws))
    md = re.sub(r"Generated [^\n]*", "", to_markdown(ws))
    return doc, to_csv(ws), md


def _check_typed_values(ws: Workspace) -> None:
    camps = store.campaigns(ws).set_index("campaign_id")
    assert camps.at["c-old", "keywords"] == ["rubric", "grade é"]
    assert camps.at["c-old", "clusters"] == [0, 7]
    assert camps.at["c-old", "signals"] == CAMPAIGN_SIGNALS
    assert list(camps.at["c-old", "signals"]) == list(CAMPAIGN_SIGNALS)  # the keys keep their order
    assert camps.at["cw-formed", "signals"] == {"watch_similarity": None, "watch_match_share": 0.5}
    assert camps.at["cw-formed", "evidence"] == []
    clusters = ws.table("clusters").set_index("cluster_id")
    assert clusters.at[0, "signals"] == CLUSTER_SIGNALS and clusters.at[0, "exemplars"] == ["Grade this answer strictly: é ✓"]
    assert clusters.at[1, "signals"]["n_slots"] is None and clusters.at[1, "signals"]["n_fixed_words"] == 3
    history = ws.campaign_history("c-old")
    assert history["parent_ids"].tolist() == [["c-a", "c-b"]]
    (entry,) = watch_entries(ws)
    assert entry.fingerprint.accounts == ["acc-1", "acc-2"] and entry.fingerprint.infra == {"ip": ["10.0.0.1"]}
    assert ws.last_run_options() == {"model": "fast", "tier": "fast"}
    assert ws.current_model_key() == "fast-key"
    runs = store.runs(ws).set_index("run_id")
    assert runs.at[1, "stats"] == {"embed": {"model_key": "fast-key"}, "score": {"n": 2}}


def test_a_reader_reads_an_old_workspace_typed_and_changes_nothing(tmp_path):
    path = tmp_path / "old"
    make_old_workspace(path)
    before = column_types(path)
    with Workspace(str(path), read_only=True) as ws:
        _check_typed_values(ws)
        doc = json.loads(to_json(ws))
    (camp, formed) = doc["campaigns"]
    assert camp["clusters"] == [0, 7] and camp["signals"] == CAMPAIGN_SIGNALS
    assert camp["history"][0]["parents"] == ["c-a", "c-b"] and formed["evidence"] == []
    # the app's short-lived connections read it the same way
    con = store.connect_read_only(str(path / DB_NAME))
    try:
        assert store.campaign(con, "c-old")["evidence"] == ["2 accounts share one IP.", "Evidence with ünïcode"]
        assert store.account(con, "acc-3")["signals"] == {}
    finally:
        con.close()
    assert column_types(path) == before  # still the old file: the writer migrates it


def test_the_writer_migrates_an_old_workspace_in_place_and_keeps_everything(tmp_path):
    path = tmp_path / "old"
    make_old_workspace(path)
    counts = row_counts(path)
    with Workspace(str(path), read_only=True) as ws:
        exports_before = _exports(ws)
    Workspace(str(path)).close()  # the writer's open migrates
    types = column_types(path)
    for table, columns in TYPED_COLUMNS.items():
        for column, kind in columns.items():
            if (table, column) in types:
                assert types[(table, column)] == kind, (table, column)
    assert row_counts(path) == counts
    with Workspace(str(path), read_only=True) as ws:
        _check_typed_values(ws)
        assert _exports(ws) == exports_before  # the exports' bytes do not change
        assert store.triage_latest(ws)["note"].tolist() == ["seen before"]
        # clusters.campaign_id moved to cluster_campaigns in the same transaction
        campaign_of = store.cluster_rows(ws).set_index("cluster_id")["campaign_id"]
        assert campaign_of[0] == "c-old" and pd.isna(campaign_of[1])
        assert ws.table("requests").set_index("request_id")["extra"].to_dict() == {
            "r1": {"custom": "x", "nested": {"a": [1, 2.5]}}, "r2": None}
        # text that was not JSON is kept, as a JSON string
        assert store.runs(ws).set_index("run_id").at[2, "stats"] is None
        assert ws.db.execute("SELECT params FROM runs WHERE run_id = 2").fetchall() == [('"not json at all"',)]
    Workspace(str(path)).close()  # a second open finds nothing to migrate
    assert column_types(path) == types


def test_a_key_the_struct_has_no_field_for_stops_the_migration_and_changes_nothing(tmp_path):
    path = tmp_path / "old"
    odd = {**CLUSTER_SIGNALS, "from_the_future": 1.0}
    rows = [("clusters", [0, 1, 1, 1, "x", "[]", "", "[]", None, json.dumps(odd), "topic"])]
    make_old_workspace(path, rows)
    before = column_types(path)
    with pytest.raises(WorkspaceCorrupt, match="from_the_future"):
        Workspace(str(path))
    assert column_types(path) == before
    with Workspace(str(path), read_only=True) as ws:  # readers still read what they know of it
        assert ws.table("clusters")["signals"].iloc[0] == CLUSTER_SIGNALS


def test_writers_store_python_lists_and_dicts_exactly(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    camps = pd.DataFrame([
        {"campaign_id": "c1", "rank": 1, "keywords": np.array(["a", "b"], dtype=object), "clusters": [np.int64(3), 4],
         "signals": {"z": 0.5, "a": None}, "evidence": [], "examples": None},
        {"campaign_id": "c2", "rank": 2, "keywords": [], "clusters": [], "signals": {"w": 1.0}, "evidence": ["e"],
         "examples": ["x"]},
    ])
    clusters = pd.DataFrame([{"cluster_id": 1, "keywords": ["k"], "exemplars": [],
                              "signals": {"n_slots": None, "intent": "cot", "template_coverage": 0.25}}])
    ws.replace_tables("score", {"campaigns": camps})
    ws.replace_tables("label", {"clusters": clusters})
    got = store.campaigns(ws).set_index("campaign_id")
    assert got.at["c1", "keywords"] == ["a", "b"] and got.at["c1", "clusters"] == [3, 4]
    assert list(got.at["c1", "signals"].items()) == [("z", 0.5), ("a", None)]
    assert got.at["c1", "examples"] is None and got.at["c2", "evidence"] == ["e"]
    signals = ws.table("clusters")["signals"].iloc[0]
    assert signals["intent"] == "cot" and signals["template_coverage"] == 0.25 and signals["tightness"] is None
    # typed SQL over the typed columns
    assert store.ad_hoc(ws, "SELECT campaign_id FROM campaigns WHERE list_contains(clusters, 4)")[
        "campaign_id"].tolist() == ["c1"]
    # JSON text, or a key the STRUCT lacks, is refused rather than stored as something else
    with pytest.raises(TypeError, match="campaigns.keywords"):
        ws.replace_tables("score", {"campaigns": camps.assign(keywords=['["a"]', "[]"])})
    with pytest.raises(ValueError, match="no field"):
        ws.replace_tables("label", {"clusters": clusters.assign(signals=[{"nope": 1.0}])})
    assert len(store.campaigns(ws)) == 2  # the failed writes changed nothing
    ws.close()
