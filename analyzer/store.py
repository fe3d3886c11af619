"""Read-only queries over a workspace database: what the app, the exports and the benchmark read.

With :mod:`analyzer.workspace` (connection, schema, lock, every write, and the pipeline's reads) this module
is the SQL layer: no other module runs SQL. Every function here only reads (no DDL, no DML), so it works on
a read-only connection, and takes either a :class:`~analyzer.workspace.Workspace` or a DuckDB connection
(the app's short-lived read-only ones). A table that an older workspace lacks reads as empty where a caller
needs that (:func:`table_names`); results are plain DataFrames, tuples and dicts.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analyzer.workspace import Workspace

Connection = duckdb.DuckDBPyConnection

# What DuckDB raises when the database file is held by a writer in another process (or this process has it
# open with another configuration): a reader waits or tells the analyst to come back later.
BUSY_ERRORS: tuple[type[Exception], ...] = (duckdb.IOException, duckdb.ConnectionException)

# time_bucket widths the app may ask for (analyzer.app.data.pick_bucket): spliced into SQL, so checked
_BUCKET = re.compile(r"^\d+ (minutes|hour|hours|day|days)$")


def _db(source: Connection | Workspace) -> Connection:
    return source if isinstance(source, duckdb.DuckDBPyConnection) else source.db


def _bucket(bucket: str) -> str:
    if not _BUCKET.match(bucket):
        raise ValueError(f"not a time bucket: {bucket!r}")
    return bucket


def connect_read_only(db_path: str) -> Connection:
    """A read-only connection with the session time zone UTC (times come back as UTC); an earlier release's
    JSON text columns read typed (:func:`analyzer.workspace.read_legacy_as_typed`)."""
    from analyzer.workspace import read_legacy_as_typed  # workspace imports this module

    con = duckdb.connect(db_path, read_only=True)
    try:
        use_utc(con)
        read_legacy_as_typed(con)
    except BaseException:
        con.close()
        raise
    return con


def use_utc(source: Connection | Workspace) -> None:
    """Make the session time zone UTC (TIMESTAMPTZ values come back as UTC)."""
    _db(source).execute("SET TimeZone = 'UTC'")


def ad_hoc(source: Connection | Workspace, sql: str, params: list | tuple | None = None) -> pd.DataFrame:
    """Run one ad-hoc query and return a frame: for tests, debugging and dev scripts only (product code calls
    the named functions here and in :mod:`analyzer.workspace`)."""
    return _db(source).execute(sql, list(params or [])).df()


def typed_rows(result: Connection) -> pd.DataFrame:
    """The rows of an executed query as a frame whose structured columns hold plain Python values: lists
    (DuckDB gives NumPy arrays), dicts (STRUCT, MAP) and ``JSON`` documents parsed; NULL is ``None``."""
    kinds = {d[0]: str(d[1]) for d in result.description}
    frame = result.df()
    for name, kind in kinds.items():
        if kind.endswith("]") or kind == "JSON" or kind.startswith(("STRUCT", "MAP")):
            frame[name] = pd.Series([_plain(v, kind) for v in frame[name]], index=frame.index, dtype=object)
    return frame


def _plain(value: Any, kind: str) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str) and kind == "JSON":
        return json.loads(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _parsed(value: Any) -> Any:
    """A JSON document read with ``fetchall`` (text), parsed; ``None`` for NULL."""
    return json.loads(value) if isinstance(value, str) else None


# --- workspace state ---------------------------------------------------------------------------------------------
def table_names(source: Connection | Workspace) -> set[str]:
    """Tables present: an old or partly written workspace may lack some, and a reader cannot create them."""
    return {r[0] for r in _db(source).execute("SELECT table_name FROM information_schema.tables").fetchall()}


def column_names(source: Connection | Workspace, table: str) -> set[str]:
    """Columns of ``table`` (empty for a missing table)."""
    return {r[0] for r in _db(source).execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}


def has_rows(source: Connection | Workspace, table: str) -> bool:
    """Whether ``table`` (one of the workspace's tables) holds at least one row."""
    if table not in table_names(source):
        raise ValueError(f"no table {table!r}")
    return bool(_db(source).execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)").fetchall()[0][0])


def latest_run(source: Connection | Workspace) -> tuple[int, str, str | None] | None:
    """``(run_id, status, finished_at as text)`` of the newest run; ``None`` without runs."""
    rows = _db(source).execute(
        "SELECT run_id, status, CAST(finished_at AS VARCHAR) FROM runs ORDER BY run_id DESC LIMIT 1").fetchall()
    return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def runs(source: Connection | Workspace) -> pd.DataFrame:
    """The ``runs`` table, newest first (``stats``: a dict, ``None`` while a run has none)."""
    return typed_rows(_db(source).execute(
        "SELECT run_id, command, started_at, finished_at, status, stats FROM runs ORDER BY run_id DESC"))


def last_run_options(source: Connection | Workspace) -> dict | None:
    """The ``options`` recorded by the newest run that recorded any (``params.options``: model, tier, ...);
    ``None`` when no run did. See :func:`analyzer.embed.recorded_settings` for what they mean."""
    for (params,) in _db(source).execute(
            "SELECT params FROM runs WHERE params IS NOT NULL ORDER BY run_id DESC").fetchall():
        found = _parsed(params)
        if isinstance(found, dict) and isinstance(found.get("options"), dict):
            return found["options"]
    return None


def ingest_totals(source: Connection | Workspace) -> dict[str, int]:
    """Rows read, accepted, rejected and duplicated over every ingest (zeros without ``ingest_log``)."""
    if "ingest_log" not in table_names(source):
        return {"read": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    row = _db(source).execute(
        "SELECT coalesce(sum(n_read),0), coalesce(sum(n_accepted),0), coalesce(sum(n_rejected),0), "
        "coalesce(sum(n_duplicates),0) FROM ingest_log"
    ).fetchall()[0]
    return dict(zip(("read", "accepted", "rejected", "duplicates"), (int(x) for x in row), strict=True))


def embedded_hashes(source: Connection | Workspace, model_key: str) -> pd.Series:
    """Prompt hashes with a vector for ``model_key``, in hash order (the order the pipeline reads vectors in)."""
    return _db(source).execute(
        "SELECT prompt_hash FROM embedded WHERE model_key = ? ORDER BY prompt_hash", [model_key]).df()["prompt_hash"]


def embedded_rows(source: Connection | Workspace, model_key: str) -> pd.DataFrame:
    """``prompt_hash``, ``shard``, ``row`` of every vector for ``model_key``, in hash order (shard and row make
    the ids of the workspace's FAISS index)."""
    return _db(source).execute(
        """SELECT prompt_hash, shard, "row" FROM embedded WHERE model_key = ? ORDER BY prompt_hash""",
        [model_key]).df()


# --- triage ------------------------------------------------------------------------------------------------------
TRIAGE_COLUMNS = ["campaign_id", "status", "note", "analyst", "decided_at"]


def triage_latest(source: Connection | Workspace) -> pd.DataFrame:
    """Latest triage decision per campaign (empty without a ``triage`` table)."""
    if "triage" not in table_names(source):
        return pd.DataFrame(columns=TRIAGE_COLUMNS)
    return _db(source).execute(
        """
        SELECT campaign_id, status, note, analyst, decided_at FROM triage
        QUALIFY row_number() OVER (PARTITION BY campaign_id ORDER BY decided_at DESC) = 1
        """
    ).df()


def triage_history(source: Connection | Workspace, campaign_id: str) -> pd.DataFrame:
    """Every triage decision recorded for one campaign, newest first."""
    return _db(source).execute(
        "SELECT decided_at, status, analyst, note FROM triage WHERE campaign_id = ? ORDER BY decided_at DESC",
        [campaign_id]).df()


# --- campaigns (export) ------------------------------------------------------------------------------------------
def campaigns(source: Connection | Workspace) -> pd.DataFrame:
    """Every ``campaigns`` row, best first (empty frame without the table)."""
    if "campaigns" not in table_names(source):
        return pd.DataFrame()
    return typed_rows(_db(source).execute("SELECT * FROM campaigns ORDER BY rank"))


def campaign(source: Connection | Workspace, campaign_id: str) -> dict[str, Any] | None:
    """One ``campaigns`` row as a dict; ``None`` for an unknown id."""
    rows = typed_rows(_db(source).execute("SELECT * FROM campaigns WHERE campaign_id = ?", [campaign_id]))
    return None if rows.empty else rows.iloc[0].to_dict()


def campaign_members(source: Connection | Workspace) -> pd.DataFrame:
    """``campaign_id, account_id`` of every campaign's accounts, busiest first within a campaign."""
    if "campaign_accounts" not in table_names(source):
        return pd.DataFrame(columns=["campaign_id", "account_id"])
    return _db(source).execute(
        "SELECT campaign_id, account_id FROM campaign_accounts ORDER BY campaign_id, n_requests DESC, account_id"
    ).df()


def member_accounts(source: Connection | Workspace, campaign_id: str) -> list[str]:
    """The member accounts of one campaign."""
    return [a for (a,) in _db(source).execute(
        "SELECT account_id FROM campaign_accounts WHERE campaign_id = ?", [campaign_id]).fetchall()]


def current_campaign_history(source: Connection | Workspace) -> pd.DataFrame:
    """``campaign_history`` rows of the campaigns in the latest analysis, oldest run first (empty without
    history)."""
    if not {"campaign_history", "campaigns"} <= table_names(source):
        return pd.DataFrame(columns=["run_id", "campaign_id", "transition", "parent_ids", "n_accounts",
                                     "n_requests", "score", "flagged", "recorded_at"])
    return typed_rows(_db(source).execute(
        """SELECT h.* FROM campaign_history h SEMI JOIN campaigns c USING (campaign_id)
           ORDER BY h.run_id"""))


def current_campaign_identity(source: Connection | Workspace) -> pd.DataFrame:
    """``campaign_identity`` rows of the campaigns in the latest analysis (empty without the table)."""
    if not {"campaign_identity", "campaigns"} <= table_names(source):
        return pd.DataFrame(columns=["campaign_id", "first_seen", "last_seen", "first_flagged_at",
                                     "first_flagged_run_id", "first_run_id", "last_run_id"])
    return _db(source).execute("SELECT * FROM campaign_identity SEMI JOIN campaigns USING (campaign_id)").df()


ACCOUNT_ROW_COLUMNS = ["account_id", "score", "campaign_id", "flagged", "n_requests", "share_in_campaign",
                       "campaign_score", "campaign_label", "campaign_transition", "campaign_first_flagged"]


def account_rows(source: Connection | Workspace) -> pd.DataFrame:
    """One row per account, highest score first, with its campaign's score, label, flag, latest transition
    and first flag time (the CSV export); empty before the first analysis."""
    tables = table_names(source)
    if not {"accounts", "campaigns", "campaign_accounts"} <= tables:
        return pd.DataFrame(columns=ACCOUNT_ROW_COLUMNS)
    has_history = {"campaign_history", "campaign_identity"} <= tables
    latest = ("(SELECT campaign_id, transition FROM campaign_history "
              "WHERE run_id = (SELECT max(run_id) FROM campaign_history))" if has_history else
              "(SELECT NULL::VARCHAR AS campaign_id, NULL::VARCHAR AS transition)")
    ident = ("campaign_identity" if has_history else
             "(SELECT NULL::VARCHAR AS campaign_id, NULL::TIMESTAMPTZ AS first_flagged_at)")
    return _db(source).execute(
        f"""
        SELECT a.account_id, a.score, a.campaign_id, coalesce(c.flagged, false) AS flagged, a.n_requests,
               ca.share AS share_in_campaign, c.score AS campaign_score, c.label AS campaign_label,
               h.transition AS campaign_transition, i.first_flagged_at AS campaign_first_flagged
        FROM accounts a
        LEFT JOIN campaigns c USING (campaign_id)
        LEFT JOIN campaign_accounts ca ON ca.campaign_id = a.campaign_id AND ca.account_id = a.account_id
        LEFT JOIN {latest} h ON h.campaign_id = a.campaign_id
        LEFT JOIN {ident} i ON i.campaign_id = a.campaign_id
        ORDER BY a.score DESC, a.account_id
        """
    ).df()


def account_scores(source: Connection | Workspace) -> pd.DataFrame:
    """One row per account of the latest analysis, highest score first (the Python API's
    :func:`analyzer.api.account_frame`): ``account_id, score, campaign_id, flagged`` (its campaign is flagged),
    ``n_requests, n_prompts, share_in_campaign, first_seen, last_seen, signals`` (dict)."""
    return _db(source).execute(
        """
        SELECT a.account_id, a.score, a.campaign_id, coalesce(c.flagged, false) AS flagged, a.n_requests,
               a.n_prompts, ca.share AS share_in_campaign, a.first_seen, a.last_seen, a.signals
        FROM accounts a
        LEFT JOIN campaigns c USING (campaign_id)
        LEFT JOIN campaign_accounts ca ON ca.campaign_id = a.campaign_id AND ca.account_id = a.account_id
        ORDER BY a.score DESC, a.account_id
        """).df()


def rejected_rows(source: Connection | Workspace) -> pd.DataFrame:
    """Every quarantined row (``run_id, source, line, field, reason, raw``), by run, file and line."""
    return _db(source).execute("SELECT * FROM rejected ORDER BY run_id, source, line").df()


# --- the app: overview -------------------------------------------------------------------------------------------
def overview_counts(source: Connection | Workspace) -> dict[str, int]:
    """Headline counts of the latest analysis."""
    row = _db(source).execute(
        """
        SELECT (SELECT count(*) FROM requests), (SELECT count(DISTINCT account_id) FROM requests),
               (SELECT count(*) FROM prompts), (SELECT count(*) FROM clusters),
               (SELECT count(*) FROM campaigns), (SELECT count(*) FROM campaigns WHERE flagged),
               (SELECT count(*) FROM rejected),
               (SELECT count(*) FROM campaign_accounts ca JOIN campaigns c USING (campaign_id) WHERE c.flagged)
        """
    ).fetchall()[0]
    keys = ("requests", "accounts", "prompts", "clusters", "candidates", "flagged", "rejected", "flagged_accounts")
    return dict(zip(keys, (int(x) for x in row), strict=True))


def request_span_seconds(source: Connection | Workspace, account_ids: list[str] | None = None) -> float:
    """Seconds between the first and the last request (of ``account_ids`` only, if given); 0 without any."""
    if account_ids is None:
        row = _db(source).execute("SELECT epoch(max(ts)) - epoch(min(ts)) FROM requests").fetchall()
    else:
        row = _db(source).execute("SELECT epoch(max(ts)) - epoch(min(ts)) FROM requests "
                                  "WHERE list_contains(?, account_id)", [account_ids]).fetchall()
    return float(row[0][0] or 0)


def traffic_over_time(source: Connection | Workspace, bucket: str) -> pd.DataFrame:
    """Requests per ``bucket``, split into traffic from accounts in flagged campaigns and the rest."""
    return _db(source).execute(
        f"""
        WITH flagged_acc AS (
            SELECT DISTINCT ca.account_id FROM campaign_accounts ca JOIN campaigns c USING (campaign_id)
            WHERE c.flagged)
        SELECT time_bucket(INTERVAL '{_bucket(bucket)}', r.ts) AS bucket,
               CASE WHEN f.account_id IS NULL THEN 'other accounts' ELSE 'accounts in flagged campaigns' END
                   AS traffic,
               count(*) AS requests
        FROM requests r LEFT JOIN flagged_acc f USING (account_id)
        GROUP BY ALL ORDER BY bucket
        """
    ).df()


# --- the app: campaign history -----------------------------------------------------------------------------------
def campaign_history(source: Connection | Workspace, campaign_id: str) -> pd.DataFrame:
    """One campaign's ``campaign_history`` rows, oldest run first (empty without the table)."""
    cols = ["run_id", "recorded_at", "transition", "parent_ids", "n_accounts", "n_requests", "score", "flagged"]
    if "campaign_history" not in table_names(source):
        return pd.DataFrame(columns=cols)
    return typed_rows(_db(source).execute(
        f"""SELECT {', '.join(cols)} FROM campaign_history WHERE campaign_id = ? ORDER BY run_id""",
        [campaign_id]))


def campaign_identity(source: Connection | Workspace, campaign_id: str) -> dict[str, Any] | None:
    """The campaign's ``campaign_identity`` row; ``None`` when unknown or without the table."""
    if "campaign_identity" not in table_names(source):
        return None
    rows = _db(source).execute("SELECT * FROM campaign_identity WHERE campaign_id = ?", [campaign_id]).df()
    return None if rows.empty else rows.iloc[0].to_dict()


def latest_transitions(source: Connection | Workspace) -> tuple[pd.DataFrame | None, int | None]:
    """Every campaign of the latest run that recorded history, with its previous state and flag change:
    ``(frame, run id)``; ``(None, None)`` before the first recorded run."""
    if not {"campaign_history", "campaigns"} <= table_names(source):
        return None, None
    db = _db(source)
    run = db.execute("SELECT max(run_id) FROM campaign_history").fetchone()[0]
    if run is None:
        return None, None
    out = typed_rows(db.execute(
        """
        WITH now AS (SELECT * FROM campaign_history WHERE run_id = ?),
        before AS (SELECT campaign_id, score, flagged, n_accounts FROM campaign_history
                   WHERE run_id < ? AND transition <> 'gone'
                   QUALIFY row_number() OVER (PARTITION BY campaign_id ORDER BY run_id DESC) = 1)
        SELECT n.campaign_id, n.transition, n.parent_ids, coalesce(c.label, '') AS label, n.score,
               b.score AS previous_score, n.n_accounts, b.n_accounts AS previous_accounts,
               n.flagged AND n.transition <> 'gone' AS flagged,
               CASE WHEN n.transition = 'gone' THEN (CASE WHEN n.flagged THEN 'no longer flagged' ELSE '' END)
                    WHEN n.flagged AND NOT coalesce(b.flagged, false) THEN 'newly flagged'
                    WHEN NOT n.flagged AND coalesce(b.flagged, false) THEN 'no longer flagged'
                    ELSE '' END AS change
        FROM now n LEFT JOIN before b USING (campaign_id) LEFT JOIN campaigns c USING (campaign_id)
        """, [run, run]))
    return out, int(run)


# --- the app: campaigns ------------------------------------------------------------------------------------------
def _units(db: Connection) -> str:
    """SQL for ``prompt_hash -> cluster_id``, where the cluster is the unit campaigns are built from.

    A prompt counts towards its template family, else its (possibly noise-attributed) topic cluster
    (``prompt_clusters.assigned_cluster``); older workspaces without that column use the topic cluster.
    """
    unit = ("coalesce(assigned_cluster, cluster_id)" if "assigned_cluster" in column_names(db, "prompt_clusters")
            else "cluster_id")
    return f"(SELECT prompt_hash, {unit} AS cluster_id FROM prompt_clusters)"


def _clusters(db: Connection) -> str:
    """SQL for the ``clusters`` rows with each one's ``campaign_id`` (``cluster_campaigns``, the score stage's
    table; ``NULL`` for a cluster in no campaign). A read-only handle on a workspace made before that table
    reads the old ``clusters.campaign_id`` column."""
    if "campaign_id" in column_names(db, "clusters"):
        return "clusters"
    if "cluster_campaigns" not in table_names(db):
        return "(SELECT *, CAST(NULL AS VARCHAR) AS campaign_id FROM clusters)"
    return "(SELECT cl.*, cc.campaign_id FROM clusters cl LEFT JOIN cluster_campaigns cc USING (cluster_id))"


def cluster_rows(source: Connection | Workspace) -> pd.DataFrame:
    """Every ``clusters`` row, in the order the label stage wrote them, with its ``campaign_id`` (``None``
    outside campaigns)."""
    db = _db(source)
    rows = typed_rows(db.execute("SELECT * FROM clusters"))  # one table scanned: DuckDB keeps the write order
    if "campaign_id" in rows.columns:  # a read-only handle on a workspace made before cluster_campaigns
        return rows
    camp = (db.execute("SELECT cluster_id, campaign_id FROM cluster_campaigns").df()
            if "cluster_campaigns" in table_names(db) else pd.DataFrame(columns=["cluster_id", "campaign_id"]))
    rows["campaign_id"] = rows["cluster_id"].map(camp.set_index("cluster_id")["campaign_id"]).astype(object)
    return rows


def _campaign_requests(pcq: str, cq: str) -> str:
    """CTE ``campaign_requests``: the members' requests in the campaign's clusters (one ``?`` parameter);
    ``pcq``: :func:`_units`, ``cq``: :func:`_clusters`."""
    return f"""
    campaign_requests AS (
        SELECT r.* FROM requests r
        JOIN {pcq} pc USING (prompt_hash)
        JOIN {cq} c ON c.cluster_id = pc.cluster_id
        JOIN campaign_accounts ca ON ca.campaign_id = c.campaign_id AND ca.account_id = r.account_id
        WHERE c.campaign_id = ?)
"""


def campaign_list(source: Connection | Workspace) -> pd.DataFrame:
    """All candidate campaigns, best first: ``campaign_id, rank, score, flagged, label, kind, n_accounts,
    n_requests, first_seen, last_seen, n_clusters, signals`` (dict)."""
    return _db(source).execute(
        """
        SELECT campaign_id, rank, score, flagged, label, kind, n_accounts, n_requests, first_seen, last_seen,
               len(coalesce(clusters, [])) AS n_clusters, signals
        FROM campaigns ORDER BY rank
        """
    ).df()


def campaign_models(source: Connection | Workspace) -> pd.DataFrame:
    """``campaign_id, models``: the models (``(none)`` for none) the members used in each campaign's units."""
    db = _db(source)
    return db.execute(
        f"""
        SELECT c.campaign_id, list(DISTINCT coalesce(r.model, '(none)') ORDER BY coalesce(r.model, '(none)'))
               AS models
        FROM requests r
        JOIN {_units(db)} pc USING (prompt_hash)
        JOIN {_clusters(db)} c ON c.cluster_id = pc.cluster_id AND c.campaign_id IS NOT NULL
        JOIN campaign_accounts ca ON ca.campaign_id = c.campaign_id AND ca.account_id = r.account_id
        GROUP BY c.campaign_id
        """
    ).df()


def campaign_account_rows(source: Connection | Workspace, campaign_id: str) -> pd.DataFrame:
    """Member accounts, busiest in the campaign first: ``account_id, n_requests, share, score, total_requests,
    first_seen, last_seen, user_agent`` (their most used), ``n_ips, evidence`` (list)."""
    return typed_rows(_db(source).execute(
        """
        WITH acc AS (SELECT account_id FROM campaign_accounts WHERE campaign_id = ?),
        infra AS (
            SELECT account_id, mode(user_agent) AS user_agent, count(DISTINCT ip) AS n_ips
            FROM requests WHERE account_id IN (SELECT account_id FROM acc) GROUP BY account_id)
        SELECT ca.account_id, ca.n_requests, ca.share, ca.score, a.n_requests AS total_requests,
               a.first_seen, a.last_seen, i.user_agent, i.n_ips, ca.evidence
        FROM campaign_accounts ca
        LEFT JOIN accounts a USING (account_id)
        LEFT JOIN infra i USING (account_id)
        WHERE ca.campaign_id = ?
        ORDER BY ca.n_requests DESC, ca.account_id
        """,
        [campaign_id, campaign_id],
    ))


def member_ip_counts(source: Connection | Workspace, campaign_id: str) -> pd.DataFrame:
    """``account_id, ip, requests`` for every IP a member of the campaign sent requests from (all its
    requests, not only the campaign's)."""
    return _db(source).execute(
        """
        SELECT account_id, ip, count(*) AS requests FROM requests
        WHERE ip IS NOT NULL AND account_id IN (SELECT account_id FROM campaign_accounts WHERE campaign_id = ?)
        GROUP BY ALL
        """,
        [campaign_id],
    ).df()


def campaign_span_seconds(source: Connection | Workspace, campaign_id: str) -> float:
    """Seconds between the campaign's first and last request (0 for an unknown campaign)."""
    rows = _db(source).execute(
        "SELECT epoch(last_seen) - epoch(first_seen) FROM campaigns WHERE campaign_id = ?", [campaign_id]).fetchall()
    return float(rows[0][0] or 0) if rows else 0.0


def campaign_heatmap(source: Connection | Workspace, campaign_id: str, bucket: str, max_accounts: int
                     ) -> pd.DataFrame:
    """Requests per (account, ``bucket``) for the campaign's ``max_accounts`` busiest accounts; long format."""
    db = _db(source)
    return db.execute(
        f"""
        WITH {_campaign_requests(_units(db), _clusters(db))},
        top AS (SELECT account_id FROM campaign_requests GROUP BY account_id
                ORDER BY count(*) DESC, account_id LIMIT {int(max_accounts)})
        SELECT account_id, time_bucket(INTERVAL '{_bucket(bucket)}', ts) AS bucket, count(*) AS requests
        FROM campaign_requests WHERE account_id IN (SELECT account_id FROM top)
        GROUP BY ALL ORDER BY account_id, bucket
        """,
        [campaign_id],
    ).df()


def campaign_model_mix(source: Connection | Workspace, campaign_id: str, bucket: str) -> pd.DataFrame:
    """Requests per (``bucket``, model) inside the campaign (scope ``campaign``) and in all traffic."""
    db = _db(source)
    return db.execute(
        f"""
        WITH {_campaign_requests(_units(db), _clusters(db))},
        tagged AS (
            SELECT ts, model, 'campaign' AS scope FROM campaign_requests
            UNION ALL
            SELECT ts, model, 'all traffic' AS scope FROM requests)
        SELECT scope, time_bucket(INTERVAL '{_bucket(bucket)}', ts) AS bucket, coalesce(model, '(none)') AS model,
               count(*) AS requests
        FROM tagged GROUP BY ALL ORDER BY scope, bucket, model
        """,
        [campaign_id],
    ).df()


def campaign_clusters(source: Connection | Workspace, campaign_id: str) -> pd.DataFrame:
    """The prompt clusters the campaign spans, with the members' requests in each."""
    db = _db(source)
    pcq = _units(db)
    return db.execute(
        f"""
        WITH {_campaign_requests(pcq, _clusters(db))},
        per AS (SELECT pc.cluster_id, count(*) AS campaign_requests, count(DISTINCT cr.account_id) AS accounts
                FROM campaign_requests cr JOIN {pcq} pc USING (prompt_hash) GROUP BY pc.cluster_id)
        SELECT c.cluster_id, c.kind, c.label, c.n_prompts, c.n_requests, c.n_accounts, per.campaign_requests,
               per.accounts AS campaign_accounts, c.template
        FROM {_clusters(db)} c LEFT JOIN per USING (cluster_id)
        WHERE c.campaign_id = ? ORDER BY per.campaign_requests DESC NULLS LAST
        """,
        [campaign_id, campaign_id],
    ).df()


# --- the app: accounts -------------------------------------------------------------------------------------------
def top_accounts(source: Connection | Workspace, limit: int) -> list[str]:
    """Account ids, highest score (then volume) first."""
    return [a for (a,) in _db(source).execute(
        f"SELECT account_id FROM accounts ORDER BY score DESC, n_requests DESC LIMIT {int(limit)}").fetchall()]


def account(source: Connection | Workspace, account_id: str) -> dict[str, Any] | None:
    """One ``accounts`` row as a dict; ``None`` for an unknown id."""
    rows = typed_rows(_db(source).execute("SELECT * FROM accounts WHERE account_id = ?", [account_id]))
    return None if rows.empty else rows.iloc[0].to_dict()


def account_campaigns(source: Connection | Workspace, account_id: str) -> pd.DataFrame:
    """The campaigns an account belongs to, best first, with its share and score in each."""
    return typed_rows(_db(source).execute(
        """
        SELECT ca.campaign_id, c.rank, c.score AS campaign_score, c.flagged, c.label, ca.n_requests, ca.share,
               ca.score AS account_score, ca.evidence
        FROM campaign_accounts ca JOIN campaigns c USING (campaign_id)
        WHERE ca.account_id = ? ORDER BY c.rank
        """,
        [account_id],
    ))


def account_clusters(source: Connection | Workspace, account_id: str) -> pd.DataFrame:
    """The units (-1: none) an account's requests fall in, busiest first, with first and last request."""
    db = _db(source)
    return db.execute(
        f"""
        SELECT coalesce(pc.cluster_id, -1) AS cluster_id, any_value(c.label) AS label,
               any_value(c.campaign_id) AS campaign_id, count(*) AS requests,
               count(DISTINCT r.prompt_hash) AS prompts, min(r.ts) AS first_seen, max(r.ts) AS last_seen
        FROM requests r LEFT JOIN {_units(db)} pc USING (prompt_hash)
        LEFT JOIN {_clusters(db)} c ON c.cluster_id = pc.cluster_id
        WHERE r.account_id = ? GROUP BY 1 ORDER BY requests DESC
        """,
        [account_id],
    ).df()


def account_timeline(source: Connection | Workspace, account_id: str, bucket: str) -> pd.DataFrame:
    """An account's requests per (``bucket``, unit)."""
    db = _db(source)
    return db.execute(
        f"""
        SELECT time_bucket(INTERVAL '{_bucket(bucket)}', r.ts) AS bucket, coalesce(pc.cluster_id, -1) AS cluster_id,
               count(*) AS requests
        FROM requests r LEFT JOIN {_units(db)} pc USING (prompt_hash)
        WHERE r.account_id = ? GROUP BY ALL ORDER BY bucket
        """,
        [account_id],
    ).df()


def account_identifiers(source: Connection | Workspace, account_id: str) -> pd.DataFrame:
    """``kind, value, requests``: an account's requests per model (``(none)`` for none), user agent, API key,
    org and country; ordered by kind, busiest value first. IPs: :func:`account_ip_counts`."""
    return _db(source).execute(
        """
        SELECT 'model' AS kind, coalesce(model, '(none)') AS value, count(*) AS requests FROM requests
            WHERE account_id = ? GROUP BY ALL
        UNION ALL SELECT 'user agent', user_agent, count(*) FROM requests
            WHERE account_id = ? AND user_agent IS NOT NULL GROUP BY ALL
        UNION ALL SELECT 'api key', api_key_id, count(*) FROM requests
            WHERE account_id = ? AND api_key_id IS NOT NULL GROUP BY ALL
        UNION ALL SELECT 'org', org_id, count(*) FROM requests WHERE account_id = ? AND org_id IS NOT NULL
            GROUP BY ALL
        UNION ALL SELECT 'country', country, count(*) FROM requests WHERE account_id = ? AND country IS NOT NULL
            GROUP BY ALL
        ORDER BY kind, requests DESC
        """,
        [account_id] * 5,
    ).df()


def account_ip_counts(source: Connection | Workspace, account_id: str) -> pd.DataFrame:
    """``ip, requests``: an account's requests per IP (as logged)."""
    return _db(source).execute(
        "SELECT ip, count(*) AS requests FROM requests WHERE account_id = ? AND ip IS NOT NULL GROUP BY ALL",
        [account_id]).df()


def account_recent(source: Connection | Workspace, account_id: str, limit: int = 50) -> pd.DataFrame:
    """An account's latest requests: ``ts, cluster_id, model, prompt`` (its first 300 characters)."""
    db = _db(source)
    return db.execute(
        f"""
        SELECT r.ts, coalesce(pc.cluster_id, -1) AS cluster_id, r.model, left(p.text, 300) AS prompt
        FROM requests r JOIN prompts p USING (prompt_hash) LEFT JOIN {_units(db)} pc USING (prompt_hash)
        WHERE r.account_id = ? ORDER BY r.ts DESC LIMIT {int(limit)}
        """,
        [account_id],
    ).df()


# --- the app: map, selections, search ------------------------------------------------------------------------------
def map_points(source: Connection | Workspace, max_points: int) -> pd.DataFrame:
    """The 2-D prompt map, sampled to at most ``max_points`` (deterministically, by hash), with each point's
    unit, campaign, score, volume and the first 160 characters of its text."""
    db = _db(source)
    return db.execute(
        f"""
        WITH req AS (SELECT prompt_hash, count(*) AS requests, count(DISTINCT account_id) AS accounts
                     FROM requests GROUP BY prompt_hash)
        SELECT m.prompt_hash, m.x, m.y, coalesce(pc.cluster_id, -1) AS cluster_id, c.campaign_id,
               coalesce(cp.score, 0.0) AS score, coalesce(cp.flagged, false) AS flagged,
               coalesce(req.requests, 0) AS requests, coalesce(req.accounts, 0) AS accounts,
               left(p.text, 160) AS text
        FROM prompt_map m
        LEFT JOIN {_units(db)} pc USING (prompt_hash)
        LEFT JOIN {_clusters(db)} c ON c.cluster_id = pc.cluster_id
        LEFT JOIN campaigns cp ON cp.campaign_id = c.campaign_id
        LEFT JOIN req USING (prompt_hash)
        LEFT JOIN prompts p USING (prompt_hash)
        ORDER BY hash(m.prompt_hash) LIMIT {int(max_points)}
        """
    ).df()


def prompts_and_accounts(source: Connection | Workspace, hashes: list[str], limit: int
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For a set of prompts: the prompts with their counts (busiest first), and the accounts that sent them."""
    db = _db(source)
    pcq = _units(db)
    db.register("sel", pd.DataFrame({"prompt_hash": hashes}))
    try:
        prompts = db.execute(
            f"""
            SELECT p.prompt_hash, coalesce(pc.cluster_id, -1) AS cluster_id, count(r.request_id) AS requests,
                   count(DISTINCT r.account_id) AS accounts, any_value(p.text) AS text
            FROM sel JOIN prompts p USING (prompt_hash)
            LEFT JOIN {pcq} pc USING (prompt_hash)
            LEFT JOIN requests r USING (prompt_hash)
            GROUP BY ALL ORDER BY requests DESC LIMIT {int(limit)}
            """
        ).df()
        accounts = db.execute(
            f"""
            SELECT r.account_id, count(*) AS requests, count(DISTINCT r.prompt_hash) AS prompts,
                   any_value(a.campaign_id) AS campaign_id, any_value(a.score) AS score
            FROM sel JOIN requests r USING (prompt_hash) LEFT JOIN accounts a USING (account_id)
            GROUP BY ALL ORDER BY requests DESC, r.account_id LIMIT {int(limit)}
            """
        ).df()
    finally:
        db.unregister("sel")
    return prompts, accounts


def search_hits(source: Connection | Workspace, hits: pd.DataFrame) -> pd.DataFrame:
    """``hits`` (``prompt_hash, similarity``) with each prompt's unit, campaign, volume and text, most similar
    first."""
    db = _db(source)
    db.register("hits", hits)
    try:
        return db.execute(
            f"""
            WITH req AS (SELECT prompt_hash, count(*) AS requests, count(DISTINCT account_id) AS accounts
                         FROM requests WHERE prompt_hash IN (SELECT prompt_hash FROM hits) GROUP BY prompt_hash)
            SELECT h.prompt_hash, h.similarity, coalesce(pc.cluster_id, -1) AS cluster_id, c.campaign_id,
                   coalesce(req.requests, 0) AS requests, coalesce(req.accounts, 0) AS accounts, p.text
            FROM hits h JOIN prompts p USING (prompt_hash)
            LEFT JOIN {_units(db)} pc USING (prompt_hash)
            LEFT JOIN {_clusters(db)} c ON c.cluster_id = pc.cluster_id
            LEFT JOIN req USING (prompt_hash)
            ORDER BY h.similarity DESC
            """
        ).df()
    finally:
        db.unregister("hits")


def accounts_clusters(source: Connection | Workspace, account_ids: list[str], limit: int) -> pd.DataFrame:
    """Every unit the accounts used: how many of them, their requests, the unit's label and campaign."""
    db = _db(source)
    db.register("acc", pd.DataFrame({"account_id": account_ids}))
    try:
        return db.execute(
            f"""
            SELECT coalesce(pc.cluster_id, -1) AS cluster_id, any_value(c.label) AS label,
                   any_value(c.campaign_id) AS campaign_id, count(DISTINCT r.account_id) AS accounts,
                   count(*) AS requests
            FROM acc JOIN requests r USING (account_id)
            LEFT JOIN {_units(db)} pc USING (prompt_hash) LEFT JOIN {_clusters(db)} c ON c.cluster_id = pc.cluster_id
            GROUP BY 1 ORDER BY accounts DESC, requests DESC LIMIT {int(limit)}
            """
        ).df()
    finally:
        db.unregister("acc")


def accounts_timeline(source: Connection | Workspace, account_ids: list[str], bucket: str, top: list[int]
                      ) -> pd.DataFrame:
    """The accounts' requests per (``bucket``, cluster): ``cluster N`` for the units in ``top``, ``noise``,
    else ``other``."""
    db = _db(source)
    db.register("acc", pd.DataFrame({"account_id": account_ids}))
    try:
        return db.execute(
            f"""
            SELECT time_bucket(INTERVAL '{_bucket(bucket)}', r.ts) AS bucket,
                   CASE WHEN NOT list_contains(?, coalesce(pc.cluster_id, -1)) THEN 'other'
                        WHEN pc.cluster_id IS NULL OR pc.cluster_id < 0 THEN 'noise'
                        ELSE 'cluster ' || pc.cluster_id::VARCHAR END AS cluster,
                   count(*) AS requests
            FROM acc JOIN requests r USING (account_id) LEFT JOIN {_units(db)} pc USING (prompt_hash)
            GROUP BY ALL ORDER BY bucket
            """,
            [top],
        ).df()
    finally:
        db.unregister("acc")

