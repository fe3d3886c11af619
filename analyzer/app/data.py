"""Data access for the app: small, aggregated DuckDB queries over a workspace, opened read-only.

Design rules:

* Every query opens a short-lived **read-only** connection and closes it at once. DuckDB allows one writing
  process per database file, and a process that keeps the file open (even read-only) stops ``analyzer run``
  from opening it for writing, so the app never holds a connection between reruns.
* Everything expensive is cached with ``st.cache_data`` keyed on ``(workspace path, run key)``; the run key
  names the latest run (id, status, finish time), so a new analysis invalidates every cache. Triage is read
  uncached because analysts change it from the app.
* Queries aggregate in DuckDB; the browser never receives every request row (the map is sampled to at most
  :data:`MAP_MAX_POINTS` points, heatmaps keep the top accounts, tables are limited).
* Text from the logs is attacker-controlled. Prose (prompts, labels, evidence) leaves this module through
  :func:`clean`; identifiers (account and campaign ids, user agents, models, analysts) stay raw here, because
  pages navigate and query with them, and are escaped where they are shown (:func:`clean_id`,
  :func:`display_frame`). Both use :func:`analyzer.export.sanitize`: control, C1 and bidi characters become
  visible escapes such as ``\\u202e``. Pages show all of it as plain text only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import streamlit as st

from analyzer.export import csv_cell, sanitize, unescape_ident
from analyzer.retry import retry
from analyzer.workspace import DB_NAME, Workspace, WorkspaceLocked

MAP_MAX_POINTS = 20_000
TRIAGE_STATUSES = ("open", "needs review", "confirmed", "dismissed")

# One DuckDB database may be opened by one process either read-write or read-only, and within a process all
# connections to a file must share one configuration. Serialising this process's own connections lets the
# triage writer open the file read-write without colliding with another session's read.
_DB_LOCK = threading.RLock()
#: A locked database file is opened again after 0.2 s, 0.4 s, ... (``retries`` tries in all).
_CONNECT_WAIT_S = 0.2


class WorkspaceUnavailable(RuntimeError):
    """The workspace cannot be read right now (missing, empty, or being written by a running analysis)."""


def clean(text: Any, limit: int | None = None) -> str:
    """Prose (prompts, labels, evidence) made safe to show: control and bidi characters escaped visibly
    (:func:`analyzer.export.sanitize`), truncated to ``limit`` characters. Idempotent."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    out = sanitize(str(text))
    if limit is not None and len(out) > limit:
        out = out[:limit] + "…"
    return out


def clean_id(text: Any, limit: int | None = None) -> str:
    """An identifier (account id, user agent, model, analyst) as shown: every control, bidi, zero-width or
    other format character, tab and newline written as a visible, reversible escape (``\\u202e``), so
    that distinct ids look distinct. Apply once, to the raw value."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    raw = str(text)
    if limit is not None and len(raw) > limit:
        return sanitize(raw[:limit], ident=True) + "…"
    return sanitize(raw, ident=True)


def raw_id(typed: str) -> str:
    """The raw identifier behind an escaped one an analyst pasted back (``acct\\u202e`` -> ``acct`` + U+202E)."""
    return unescape_ident(typed)


# Columns that hold identifiers from the logs: raw in this module's frames, escaped by display_frame.
ID_COLUMNS = frozenset({"account_id", "campaign_id", "user_agent", "subnet", "model", "models", "analyst", "value",
                        "api_key_id", "org_id", "ip", "country", "kind"})


def display_frame(frame: pd.DataFrame, id_columns: frozenset[str] = ID_COLUMNS) -> pd.DataFrame:
    """A copy of ``frame`` to show: identifier columns through :func:`clean_id`, every other text column
    through :func:`clean` (idempotent, so prose cleaned earlier is unchanged). Lists are escaped element-wise."""
    out = frame.copy()
    for col in out.columns:
        if not (out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype)):
            continue
        fn = clean_id if col in id_columns else clean

        def show(v: Any, fn: Any = fn) -> Any:
            if isinstance(v, str):
                return fn(v)
            if isinstance(v, list | tuple | np.ndarray):
                return [fn(x) if isinstance(x, str) else x for x in v]
            return v

        out[col] = out[col].map(show)
    return out


@contextlib.contextmanager
def connect(ws_path: str, retries: int = 5) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection (UTC session time zone); retried briefly if the file is locked."""
    db_path = os.path.join(ws_path, DB_NAME)
    if not os.path.exists(db_path):
        raise WorkspaceUnavailable(
            f"{ws_path} is not an analyzer workspace (no {DB_NAME}). "
            f"Run `analyzer run LOGS --workspace {ws_path}` first."
        )
    with _DB_LOCK:
        try:
            con = retry(
                lambda: duckdb.connect(db_path, read_only=True),
                lambda exc: isinstance(exc, duckdb.IOException | duckdb.ConnectionException),
                [_CONNECT_WAIT_S * (k + 1) for k in range(retries - 1)],
            )
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            raise WorkspaceUnavailable(
                "The workspace is being written by a running analysis (DuckDB allows one writer). "
                f"Reload this page when it has finished. ({exc})"
            ) from None
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


def query(ws_path: str, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
    """Run one read-only query and return a frame."""
    with connect(ws_path) as con:
        return con.execute(sql, list(params or [])).df()


# --- workspace state ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkspaceState:
    """Whether a workspace has results, and the key that invalidates caches when a new run finishes."""

    path: str
    run_key: str
    has_results: bool
    latest_run_status: str | None


def workspace_state(ws_path: str) -> WorkspaceState:
    """Read the latest run and whether result tables are filled (uncached: a few milliseconds).

    Raises :class:`WorkspaceUnavailable` with a message for the analyst when the workspace can't be used.
    """
    ws_path = os.path.abspath(ws_path)
    with connect(ws_path) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if not {"runs", "campaigns", "requests"} <= tables:
            raise WorkspaceUnavailable(f"{ws_path} has no analysis tables yet. Run `analyzer run` on it first.")
        run = con.execute(
            "SELECT run_id, status, CAST(finished_at AS VARCHAR) FROM runs ORDER BY run_id DESC LIMIT 1"
        ).fetchall()
        n_req = con.execute("SELECT count(*) FROM (SELECT 1 FROM requests LIMIT 1)").fetchall()[0][0]
        n_camp = con.execute("SELECT count(*) FROM (SELECT 1 FROM clusters LIMIT 1)").fetchall()[0][0]
    if not run or not n_req:
        raise WorkspaceUnavailable(
            f"The workspace {ws_path} is empty: no requests have been ingested. "
            f"Run `analyzer run LOGS --workspace {ws_path}`."
        )
    run_id, status, finished = run[0]
    return WorkspaceState(
        path=ws_path, run_key=f"{run_id}:{status}:{finished}", has_results=bool(n_camp), latest_run_status=status
    )


def prompt_units(ws_path: str) -> str:
    """SQL for ``prompt_hash -> cluster_id``, where the cluster is the unit campaigns are built from.

    A prompt counts towards its template family, else its (possibly noise-attributed) topic cluster
    (``prompt_clusters.assigned_cluster``); older workspaces without that column use the topic cluster.
    """
    cols = set(query(ws_path, "SELECT column_name FROM information_schema.columns "
                              "WHERE table_name = 'prompt_clusters'")["column_name"])
    unit = "coalesce(assigned_cluster, cluster_id)" if "assigned_cluster" in cols else "cluster_id"
    return f"(SELECT prompt_hash, {unit} AS cluster_id FROM prompt_clusters)"


# --- overview -----------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def overview_counts(ws_path: str, run_key: str) -> dict[str, int]:
    """Headline counts of the latest analysis."""
    with connect(ws_path) as con:
        row = con.execute(
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


def pick_bucket(span_seconds: float, max_buckets: int = 200) -> str:
    """The smallest readable time bucket giving at most ``max_buckets`` buckets over ``span_seconds``."""
    for seconds, name in ((300, "5 minutes"), (900, "15 minutes"), (3600, "1 hour"), (6 * 3600, "6 hours"),
                          (86400, "1 day"), (7 * 86400, "7 days")):
        if span_seconds / seconds <= max_buckets:
            return name
    return "30 days"


@st.cache_data(show_spinner=False, max_entries=32)
def traffic_over_time(ws_path: str, run_key: str) -> pd.DataFrame:
    """Requests per time bucket, split into traffic from accounts in flagged campaigns and the rest."""
    span = query(ws_path, "SELECT epoch(max(ts)) - epoch(min(ts)) FROM requests").iloc[0, 0]
    bucket = pick_bucket(float(span or 0))
    return query(
        ws_path,
        f"""
        WITH flagged_acc AS (
            SELECT DISTINCT ca.account_id FROM campaign_accounts ca JOIN campaigns c USING (campaign_id)
            WHERE c.flagged)
        SELECT time_bucket(INTERVAL '{bucket}', r.ts) AS bucket,
               CASE WHEN f.account_id IS NULL THEN 'other accounts' ELSE 'accounts in flagged campaigns' END
                   AS traffic,
               count(*) AS requests
        FROM requests r LEFT JOIN flagged_acc f USING (account_id)
        GROUP BY ALL ORDER BY bucket
        """,
    )


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int | float):
        out[prefix] = float(value)


@st.cache_data(show_spinner=False, max_entries=32)
def runs_history(ws_path: str, run_key: str) -> pd.DataFrame:
    """The ``runs`` table, newest first (stats kept as JSON text)."""
    return query(
        ws_path,
        "SELECT run_id, command, started_at, finished_at, status, stats FROM runs ORDER BY run_id DESC",
    )


def run_changes(runs: pd.DataFrame) -> tuple[pd.DataFrame, tuple[int, int] | None]:
    """What changed between the two latest successful runs: numeric stats side by side.

    Returns ``(frame with metric, previous, latest, change; run ids compared)``; empty with ``None`` when
    fewer than two successful runs exist.
    """
    ok = runs[(runs["status"] == "ok") & runs["stats"].notna()].sort_values("run_id", ascending=False)
    if len(ok) < 2:
        return pd.DataFrame(columns=["metric", "previous", "latest", "change"]), None
    latest, previous = ok.iloc[0], ok.iloc[1]
    a: dict[str, float] = {}
    b: dict[str, float] = {}
    _flatten("", json.loads(previous["stats"]), a)
    _flatten("", json.loads(latest["stats"]), b)
    rows = [
        {"metric": k, "previous": a[k], "latest": b[k], "change": b[k] - a[k]}
        for k in b
        if k in a and not k.startswith("stages_s") and k != "peak_rss_mb"
    ]
    return pd.DataFrame(rows, columns=["metric", "previous", "latest", "change"]), (
        int(previous["run_id"]),
        int(latest["run_id"]),
    )


# --- campaign history across runs ---------------------------------------------------------------------------------
def _has_tables(con: duckdb.DuckDBPyConnection, *names: str) -> bool:
    """Whether the workspace has these tables (one analysed before campaign history existed lacks them, and the
    app opens it read-only, so it cannot create them)."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    return set(names) <= tables


HISTORY_FRAME_COLUMNS = ["run_id", "recorded_at", "transition", "parents", "n_accounts", "n_requests", "score",
                         "flagged"]


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_history(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """One campaign's row in every run that recorded it, oldest first (``parents``: ids, comma-separated)."""
    with connect(ws_path) as con:
        if not _has_tables(con, "campaign_history"):
            return pd.DataFrame(columns=HISTORY_FRAME_COLUMNS)
        out = con.execute(
            """SELECT run_id, recorded_at, transition, parent_ids, n_accounts, n_requests, score, flagged
               FROM campaign_history WHERE campaign_id = ? ORDER BY run_id""", [campaign_id]).df()
    out["parents"] = [", ".join(clean_id(p) for p in json.loads(v or "[]")) for v in out.pop("parent_ids")]
    return out[HISTORY_FRAME_COLUMNS]


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_identity(ws_path: str, run_key: str, campaign_id: str) -> dict[str, Any] | None:
    """The campaign's ``campaign_identity`` row (first / last seen, first flagged, first / last run)."""
    with connect(ws_path) as con:
        if not _has_tables(con, "campaign_identity"):
            return None
        rows = con.execute("SELECT * FROM campaign_identity WHERE campaign_id = ?", [campaign_id]).df()
    return None if rows.empty else rows.iloc[0].to_dict()


TRANSITION_ORDER = ("new", "split", "merged", "grown", "shrunk", "gone", "continued")


@st.cache_data(show_spinner=False, max_entries=32)
def latest_transitions(ws_path: str, run_key: str) -> tuple[pd.DataFrame, int | None]:
    """What changed in the latest run that recorded campaign history: ``(frame, run id)``.

    One row per campaign that is not simply continued (new, split, merged, grown, shrunk, gone) or whose flag
    changed: ``campaign_id, transition, change`` ("newly flagged", "no longer flagged" or ""), ``parents``,
    ``label`` (empty for gone campaigns), ``score, previous_score, n_accounts, previous_accounts``; newly
    flagged and flagged campaigns first. ``(empty, None)`` before the first recorded run.
    """
    cols = ["campaign_id", "transition", "change", "parents", "label", "score", "previous_score", "n_accounts",
            "previous_accounts", "flagged"]
    with connect(ws_path) as con:
        if not _has_tables(con, "campaign_history", "campaigns"):
            return pd.DataFrame(columns=cols), None
        run = con.execute("SELECT max(run_id) FROM campaign_history").fetchone()[0]
        if run is None:
            return pd.DataFrame(columns=cols), None
        out = con.execute(
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
            """, [run, run]).df()
    out = out[(out["transition"] != "continued") | (out["change"] != "")].copy()
    out["parents"] = [", ".join(clean_id(p) for p in json.loads(v or "[]")) for v in out.pop("parent_ids")]
    out["label"] = out["label"].map(clean)
    out["_order"] = [(c != "newly flagged", not f, TRANSITION_ORDER.index(t))
                     for c, f, t in zip(out["change"], out["flagged"], out["transition"], strict=True)]
    out = out.sort_values(["_order", "score"], ascending=[True, False]).drop(columns="_order")
    return out[cols].reset_index(drop=True), int(run)


# --- campaigns ----------------------------------------------------------------------------------------------------
def triage_latest(ws_path: str) -> pd.DataFrame:
    """Latest triage decision per campaign (uncached: analysts change it from the app)."""
    return query(
        ws_path,
        """
        SELECT campaign_id, status, note, analyst, decided_at FROM triage
        QUALIFY row_number() OVER (PARTITION BY campaign_id ORDER BY decided_at DESC) = 1
        """,
    )


def triage_history(ws_path: str, campaign_id: str) -> pd.DataFrame:
    """Every triage decision recorded for one campaign, newest first."""
    return query(
        ws_path,
        "SELECT decided_at, status, analyst, note FROM triage WHERE campaign_id = ? ORDER BY decided_at DESC",
        [campaign_id],
    )


@st.cache_data(show_spinner=False, max_entries=32)
def campaigns_frame(ws_path: str, run_key: str) -> pd.DataFrame:
    """All candidate campaigns, best first, with one column per signal (``sig_<name>``) and the models used."""
    camps = query(
        ws_path,
        """
        SELECT campaign_id, rank, score, flagged, label, kind, n_accounts, n_requests, first_seen, last_seen,
               clusters, signals
        FROM campaigns ORDER BY rank
        """,
    )
    pcq = prompt_units(ws_path)
    models = query(
        ws_path,
        f"""
        SELECT c.campaign_id, list(DISTINCT coalesce(r.model, '(none)') ORDER BY coalesce(r.model, '(none)'))
               AS models
        FROM requests r
        JOIN {pcq} pc USING (prompt_hash)
        JOIN clusters c ON c.cluster_id = pc.cluster_id AND c.campaign_id IS NOT NULL
        JOIN campaign_accounts ca ON ca.campaign_id = c.campaign_id AND ca.account_id = r.account_id
        GROUP BY c.campaign_id
        """,
    )
    camps["label"] = camps["label"].map(lambda s: clean(s, 200))
    camps["kind"] = camps["kind"].fillna("")
    sigs = camps["signals"].map(json.loads)
    names = sorted({k for s in sigs for k in s})
    for name in names:
        camps[f"sig_{name}"] = sigs.map(lambda s, n=name: s.get(n)).astype(float)
    camps["n_clusters"] = camps["clusters"].map(lambda s: len(json.loads(s)))
    m = models.set_index("campaign_id")["models"].map(list)
    camps["models"] = camps["campaign_id"].map(m).map(lambda v: v if isinstance(v, list) else [])
    return camps.drop(columns=["signals", "clusters"])


@dataclass
class CampaignFilters:
    """The filters of the Campaigns page; ``None`` / empty means "no filter"."""

    min_score: float = 0.0
    flagged_only: bool = False
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    models: tuple[str, ...] = ()
    signal_min: dict[str, float] | None = None
    triage: tuple[str, ...] = ()


def filter_campaigns(camps: pd.DataFrame, triage: pd.DataFrame, f: CampaignFilters) -> pd.DataFrame:
    """Apply :class:`CampaignFilters` and attach the triage status (``open`` when undecided)."""
    out = camps.copy()
    status = dict(zip(triage["campaign_id"], triage["status"], strict=True))
    out["triage"] = [status.get(c, "open") for c in out["campaign_id"]]
    keep = out["score"] >= f.min_score
    if f.flagged_only:
        keep &= out["flagged"].astype(bool)
    if f.start is not None:
        keep &= out["last_seen"] >= f.start
    if f.end is not None:
        keep &= out["first_seen"] <= f.end
    if f.models:
        wanted = set(f.models)
        keep &= out["models"].map(lambda ms: bool(wanted & set(ms)))
    for name, lo in (f.signal_min or {}).items():
        if lo > 0:
            keep &= out[f"sig_{name}"].fillna(0) >= lo
    if f.triage:
        keep &= out["triage"].isin(f.triage)
    return out[keep].reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_detail(ws_path: str, run_key: str, campaign_id: str) -> dict[str, Any] | None:
    """One campaign with its JSON columns parsed and text cleaned; ``None`` if unknown."""
    rows = query(ws_path, "SELECT * FROM campaigns WHERE campaign_id = ?", [campaign_id])
    if rows.empty:
        return None
    r = rows.iloc[0].to_dict()
    for col in ("keywords", "clusters", "signals", "evidence", "examples"):
        r[col] = json.loads(r[col]) if isinstance(r[col], str) else []
    r["label"] = clean(r["label"])
    r["template"] = clean(r.get("template"))
    r["keywords"] = [clean(k) for k in r["keywords"]]
    r["evidence"] = [clean(e) for e in r["evidence"]]
    r["examples"] = [clean(e) for e in r["examples"]]
    return r


def _campaign_requests(pcq: str) -> str:
    """CTE ``campaign_requests``: the members' requests in the campaign's clusters (one ``?`` parameter)."""
    return f"""
    campaign_requests AS (
        SELECT r.* FROM requests r
        JOIN {pcq} pc USING (prompt_hash)
        JOIN clusters c ON c.cluster_id = pc.cluster_id
        JOIN campaign_accounts ca ON ca.campaign_id = c.campaign_id AND ca.account_id = r.account_id
        WHERE c.campaign_id = ?)
"""

_SUBNET = """CASE WHEN ip IS NULL THEN NULL
                  WHEN ip LIKE '%:%' THEN array_to_string(string_split(ip, ':')[1:3], ':') || '::/48'
                  ELSE regexp_extract(ip, '^(\\d+\\.\\d+\\.\\d+)\\.', 1) || '.0/24' END"""


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_accounts(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """Member accounts: volume in the campaign, share of their traffic, first/last seen, main subnet and UA."""
    return query(
        ws_path,
        f"""
        WITH acc AS (SELECT account_id FROM campaign_accounts WHERE campaign_id = ?),
        infra AS (
            SELECT account_id, mode({_SUBNET}) AS subnet, mode(user_agent) AS user_agent,
                   count(DISTINCT ip) AS n_ips
            FROM requests WHERE account_id IN (SELECT account_id FROM acc) GROUP BY account_id)
        SELECT ca.account_id, ca.n_requests, ca.share, ca.score, a.n_requests AS total_requests,
               a.first_seen, a.last_seen, i.subnet, i.user_agent, i.n_ips, ca.evidence
        FROM campaign_accounts ca
        LEFT JOIN accounts a USING (account_id)
        LEFT JOIN infra i USING (account_id)
        WHERE ca.campaign_id = ?
        ORDER BY ca.n_requests DESC, ca.account_id
        """,
        [campaign_id, campaign_id],
    ).assign(
        evidence=lambda d: d["evidence"].map(lambda s: " ".join(clean(e) for e in json.loads(s)) if s else ""),
    )


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_heatmap(ws_path: str, run_key: str, campaign_id: str, max_accounts: int = 60) -> pd.DataFrame:
    """Requests per (account, time bucket) for the campaign's busiest accounts; long format."""
    pcq = prompt_units(ws_path)
    span = query(
        ws_path, "SELECT epoch(last_seen) - epoch(first_seen) FROM campaigns WHERE campaign_id = ?", [campaign_id]
    )
    bucket = pick_bucket(float(span.iloc[0, 0] or 0) if len(span) else 0, max_buckets=150)
    return query(
        ws_path,
        f"""
        WITH {_campaign_requests(pcq)},
        top AS (SELECT account_id FROM campaign_requests GROUP BY account_id
                ORDER BY count(*) DESC, account_id LIMIT {int(max_accounts)})
        SELECT account_id, time_bucket(INTERVAL '{bucket}', ts) AS bucket, count(*) AS requests
        FROM campaign_requests WHERE account_id IN (SELECT account_id FROM top)
        GROUP BY ALL ORDER BY account_id, bucket
        """,
        [campaign_id],
    ).assign(bucket_size=bucket)


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_model_mix(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """Requests per (time bucket, model) inside the campaign, next to the same for all other traffic."""
    pcq = prompt_units(ws_path)
    span = query(ws_path, "SELECT epoch(max(ts)) - epoch(min(ts)) FROM requests").iloc[0, 0]
    bucket = pick_bucket(float(span or 0), max_buckets=120)
    return query(
        ws_path,
        f"""
        WITH {_campaign_requests(pcq)},
        tagged AS (
            SELECT ts, model, 'campaign' AS scope FROM campaign_requests
            UNION ALL
            SELECT ts, model, 'all traffic' AS scope FROM requests)
        SELECT scope, time_bucket(INTERVAL '{bucket}', ts) AS bucket, coalesce(model, '(none)') AS model,
               count(*) AS requests
        FROM tagged GROUP BY ALL ORDER BY scope, bucket, model
        """,
        [campaign_id],
    )


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_clusters(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """The prompt clusters the campaign spans, with the members' requests in each."""
    pcq = prompt_units(ws_path)
    return query(
        ws_path,
        f"""
        WITH {_campaign_requests(pcq)},
        per AS (SELECT pc.cluster_id, count(*) AS campaign_requests, count(DISTINCT cr.account_id) AS accounts
                FROM campaign_requests cr JOIN {pcq} pc USING (prompt_hash) GROUP BY pc.cluster_id)
        SELECT c.cluster_id, c.kind, c.label, c.n_prompts, c.n_requests, c.n_accounts, per.campaign_requests,
               per.accounts AS campaign_accounts, c.template
        FROM clusters c LEFT JOIN per USING (cluster_id)
        WHERE c.campaign_id = ? ORDER BY per.campaign_requests DESC NULLS LAST
        """,
        [campaign_id, campaign_id],
    ).assign(label=lambda d: d["label"].map(lambda s: clean(s, 150)),
             template=lambda d: d["template"].map(lambda s: clean(s, 300)))


# --- accounts -------------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def account_choices(ws_path: str, run_key: str, limit: int = 2000) -> list[str]:
    """Account ids for the account picker: campaign members and the highest scores first."""
    return query(
        ws_path, f"SELECT account_id FROM accounts ORDER BY score DESC, n_requests DESC LIMIT {int(limit)}"
    )["account_id"].tolist()


@st.cache_data(show_spinner=False, max_entries=64)
def account_detail(ws_path: str, run_key: str, account_id: str) -> dict[str, Any] | None:
    """One account: summary row, campaigns, clusters, timeline per cluster, models and infrastructure."""
    pcq = prompt_units(ws_path)
    row = query(ws_path, "SELECT * FROM accounts WHERE account_id = ?", [account_id])
    if row.empty:
        return None
    summary = row.iloc[0].to_dict()
    summary["signals"] = json.loads(summary["signals"]) if isinstance(summary.get("signals"), str) else {}
    campaigns = query(
        ws_path,
        """
        SELECT ca.campaign_id, c.rank, c.score AS campaign_score, c.flagged, c.label, ca.n_requests, ca.share,
               ca.score AS account_score, ca.evidence
        FROM campaign_accounts ca JOIN campaigns c USING (campaign_id)
        WHERE ca.account_id = ? ORDER BY c.rank
        """,
        [account_id],
    )
    campaigns["label"] = campaigns["label"].map(lambda s: clean(s, 150))
    campaigns["evidence"] = campaigns["evidence"].map(lambda s: [clean(e) for e in json.loads(s)] if s else [])
    clusters = query(
        ws_path,
        f"""
        SELECT coalesce(pc.cluster_id, -1) AS cluster_id, any_value(c.label) AS label,
               any_value(c.campaign_id) AS campaign_id, count(*) AS requests,
               count(DISTINCT r.prompt_hash) AS prompts, min(r.ts) AS first_seen, max(r.ts) AS last_seen
        FROM requests r LEFT JOIN {pcq} pc USING (prompt_hash)
        LEFT JOIN clusters c ON c.cluster_id = pc.cluster_id
        WHERE r.account_id = ? GROUP BY 1 ORDER BY requests DESC
        """,
        [account_id],
    )
    clusters["label"] = clusters["label"].map(lambda s: clean(s, 150) if isinstance(s, str) else "(noise)")
    span = float((summary["last_seen"] - summary["first_seen"]).total_seconds()) if summary.get("first_seen") else 0
    bucket = pick_bucket(span, max_buckets=120)
    timeline = query(
        ws_path,
        f"""
        SELECT time_bucket(INTERVAL '{bucket}', r.ts) AS bucket, coalesce(pc.cluster_id, -1) AS cluster_id,
               count(*) AS requests
        FROM requests r LEFT JOIN {pcq} pc USING (prompt_hash)
        WHERE r.account_id = ? GROUP BY ALL ORDER BY bucket
        """,
        [account_id],
    )
    infra = query(
        ws_path,
        f"""
        SELECT 'model' AS kind, coalesce(model, '(none)') AS value, count(*) AS requests FROM requests
            WHERE account_id = ? GROUP BY ALL
        UNION ALL SELECT 'subnet', {_SUBNET}, count(*) FROM requests WHERE account_id = ? AND ip IS NOT NULL
            GROUP BY ALL
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
        [account_id] * 6,
    )
    recent = query(
        ws_path,
        f"""
        SELECT r.ts, coalesce(pc.cluster_id, -1) AS cluster_id, r.model, left(p.text, 300) AS prompt
        FROM requests r JOIN prompts p USING (prompt_hash) LEFT JOIN {pcq} pc USING (prompt_hash)
        WHERE r.account_id = ? ORDER BY r.ts DESC LIMIT 50
        """,
        [account_id],
    )
    recent["prompt"] = recent["prompt"].map(lambda s: clean(s, 300))
    return {"summary": summary, "campaigns": campaigns, "clusters": clusters, "timeline": timeline,
            "infra": infra, "recent": recent, "bucket": bucket}


# --- map --------------------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def map_points(ws_path: str, run_key: str, max_points: int = MAP_MAX_POINTS) -> pd.DataFrame:
    """The 2-D prompt map, sampled server-side to at most ``max_points`` (deterministically, by hash)."""
    pcq = prompt_units(ws_path)
    frame = query(
        ws_path,
        f"""
        WITH req AS (SELECT prompt_hash, count(*) AS requests, count(DISTINCT account_id) AS accounts
                     FROM requests GROUP BY prompt_hash)
        SELECT m.prompt_hash, m.x, m.y, coalesce(pc.cluster_id, -1) AS cluster_id, c.campaign_id,
               coalesce(cp.score, 0.0) AS score, coalesce(cp.flagged, false) AS flagged,
               coalesce(req.requests, 0) AS requests, coalesce(req.accounts, 0) AS accounts,
               left(p.text, 160) AS text
        FROM prompt_map m
        LEFT JOIN {pcq} pc USING (prompt_hash)
        LEFT JOIN clusters c ON c.cluster_id = pc.cluster_id
        LEFT JOIN campaigns cp ON cp.campaign_id = c.campaign_id
        LEFT JOIN req USING (prompt_hash)
        LEFT JOIN prompts p USING (prompt_hash)
        ORDER BY hash(m.prompt_hash) LIMIT {int(max_points)}
        """,
    )
    frame["text"] = frame["text"].map(lambda s: clean(s, 150))
    return frame


def prompts_and_accounts(ws_path: str, prompt_hashes: Sequence[str], limit: int = 200
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For a set of prompts (a map selection, search hits): the prompts with their counts, and the accounts
    that sent them (requests among those prompts, cluster count, campaign)."""
    pcq = prompt_units(ws_path)
    hashes = list(dict.fromkeys(prompt_hashes))[:5000]
    if not hashes:
        empty_p = pd.DataFrame(columns=["prompt_hash", "cluster_id", "requests", "accounts", "text"])
        empty_a = pd.DataFrame(columns=["account_id", "requests", "prompts", "campaign_id", "score"])
        return empty_p, empty_a
    sel = pd.DataFrame({"prompt_hash": hashes})
    with connect(ws_path) as con:
        con.register("sel", sel)
        prompts = con.execute(
            f"""
            SELECT p.prompt_hash, coalesce(pc.cluster_id, -1) AS cluster_id, count(r.request_id) AS requests,
                   count(DISTINCT r.account_id) AS accounts, any_value(p.text) AS text
            FROM sel JOIN prompts p USING (prompt_hash)
            LEFT JOIN {pcq} pc USING (prompt_hash)
            LEFT JOIN requests r USING (prompt_hash)
            GROUP BY ALL ORDER BY requests DESC LIMIT {int(limit)}
            """
        ).df()
        accounts = con.execute(
            f"""
            SELECT r.account_id, count(*) AS requests, count(DISTINCT r.prompt_hash) AS prompts,
                   any_value(a.campaign_id) AS campaign_id, any_value(a.score) AS score
            FROM sel JOIN requests r USING (prompt_hash) LEFT JOIN accounts a USING (account_id)
            GROUP BY ALL ORDER BY requests DESC, r.account_id LIMIT {int(limit)}
            """
        ).df()
    prompts["text"] = prompts["text"].map(lambda s: clean(s, 2000))
    return prompts, accounts


def selection_hashes(event: Any, points: pd.DataFrame) -> list[str]:
    """Prompt hashes selected in a plotly chart event (``st.plotly_chart(on_select="rerun")`` state).

    Points carry their hash in ``customdata[0]``; the point index is the fallback.
    """
    if not event:
        return []
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if not selection:
        return []
    pts = selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)
    out: list[str] = []
    for p in pts or []:
        custom = p.get("customdata")
        if isinstance(custom, list | tuple) and custom:
            out.append(str(custom[0]))
        elif isinstance(custom, str):
            out.append(custom)
        elif p.get("point_index") is not None and int(p["point_index"]) < len(points):
            out.append(str(points.iloc[int(p["point_index"])]["prompt_hash"]))
    return list(dict.fromkeys(out))


# --- search (seed and expand) -----------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def embedder(model: str = "minilm", max_seq_length: int = 128, tier: str = "fast") -> Any:
    """The query embedder (loaded once per process)."""
    from analyzer.embed import make_embedder

    return make_embedder(model, max_seq_length, tier=tier)


def embedding_settings(ws_path: str) -> tuple[str, int, str]:
    """``(model, max_seq_length, tier)`` of the workspace's latest analysis, so queries use the same vectors.

    Runs recorded before tiers existed used the accurate tier."""
    rows = query(ws_path, "SELECT params FROM runs WHERE params LIKE '%\"options\"%' ORDER BY run_id DESC LIMIT 1")
    if rows.empty:
        return "minilm", 128, "accurate"
    opts = json.loads(rows.iloc[0]["params"]).get("options", {})
    return opts.get("model", "minilm"), int(opts.get("max_seq_length", 128)), opts.get("tier", "accurate")


@st.cache_resource(show_spinner=False, max_entries=4)
def search_index(ws_path: str, run_key: str, model_key: str) -> tuple[Any, np.ndarray] | None:
    """The workspace's FAISS index and the prompt hash of each of its rows (``None`` if not built)."""
    from analyzer.index import load_index

    path = os.path.join(ws_path, "index", f"{model_key}.faiss")
    if not os.path.exists(path):
        return None
    index = load_index(path)
    hashes = query(
        ws_path, 'SELECT prompt_hash FROM embedded WHERE model_key = ? ORDER BY prompt_hash', [model_key]
    )["prompt_hash"].to_numpy(dtype=object)
    if len(hashes) != index.ntotal:
        return None
    return index, hashes


def semantic_search(ws_path: str, run_key: str, text: str, k: int = 30) -> pd.DataFrame:
    """Prompts nearest in meaning to ``text``: hash, similarity, cluster, campaign, requests, accounts, text.

    Raises :class:`WorkspaceUnavailable` when the workspace has no index for the default model.
    """
    emb = embedder(*embedding_settings(ws_path))
    found = search_index(ws_path, run_key, emb.key)
    if found is None:
        raise WorkspaceUnavailable("No search index for the default model in this workspace; run `analyzer run`.")
    index, hashes = found
    vec = emb.encode([text])
    from analyzer.index import search

    sims, ids = search(index, vec, k=min(int(k), len(hashes)))
    keep = ids[0] >= 0
    hits = pd.DataFrame({"prompt_hash": hashes[ids[0][keep]], "similarity": sims[0][keep].astype(float)})
    pcq = prompt_units(ws_path)
    with connect(ws_path) as con:
        con.register("hits", hits)
        out = con.execute(
            f"""
            WITH req AS (SELECT prompt_hash, count(*) AS requests, count(DISTINCT account_id) AS accounts
                         FROM requests WHERE prompt_hash IN (SELECT prompt_hash FROM hits) GROUP BY prompt_hash)
            SELECT h.prompt_hash, h.similarity, coalesce(pc.cluster_id, -1) AS cluster_id, c.campaign_id,
                   coalesce(req.requests, 0) AS requests, coalesce(req.accounts, 0) AS accounts, p.text
            FROM hits h JOIN prompts p USING (prompt_hash)
            LEFT JOIN {pcq} pc USING (prompt_hash)
            LEFT JOIN clusters c ON c.cluster_id = pc.cluster_id
            LEFT JOIN req USING (prompt_hash)
            ORDER BY h.similarity DESC
            """
        ).df()
    out["text"] = out["text"].map(lambda s: clean(s, 2000))
    return out


def expand_accounts(ws_path: str, account_ids: Sequence[str], limit: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pivot from accounts to everything else they do: ``(their clusters, their activity over time)``.

    The clusters frame lists every cluster these accounts used (how many of them, their requests, the
    cluster's campaign); the timeline counts their requests per time bucket and cluster (top clusters only).
    """
    pcq = prompt_units(ws_path)
    acc = pd.DataFrame({"account_id": list(dict.fromkeys(account_ids))[:5000]})
    if acc.empty:
        return (pd.DataFrame(columns=["cluster_id", "label", "campaign_id", "accounts", "requests"]),
                pd.DataFrame(columns=["bucket", "cluster", "requests"]))
    with connect(ws_path) as con:
        con.register("acc", acc)
        clusters = con.execute(
            f"""
            SELECT coalesce(pc.cluster_id, -1) AS cluster_id, any_value(c.label) AS label,
                   any_value(c.campaign_id) AS campaign_id, count(DISTINCT r.account_id) AS accounts,
                   count(*) AS requests
            FROM acc JOIN requests r USING (account_id)
            LEFT JOIN {pcq} pc USING (prompt_hash) LEFT JOIN clusters c ON c.cluster_id = pc.cluster_id
            GROUP BY 1 ORDER BY accounts DESC, requests DESC LIMIT {int(limit)}
            """
        ).df()
        span = con.execute(
            "SELECT epoch(max(ts)) - epoch(min(ts)) FROM requests WHERE account_id IN (SELECT account_id FROM acc)"
        ).fetchall()[0][0]
        bucket = pick_bucket(float(span or 0), max_buckets=120)
        top = [int(c) for c in clusters["cluster_id"].head(8)]
        timeline = con.execute(
            f"""
            SELECT time_bucket(INTERVAL '{bucket}', r.ts) AS bucket,
                   CASE WHEN NOT list_contains(?, coalesce(pc.cluster_id, -1)) THEN 'other'
                        WHEN pc.cluster_id IS NULL OR pc.cluster_id < 0 THEN 'noise'
                        ELSE 'cluster ' || pc.cluster_id::VARCHAR END AS cluster,
                   count(*) AS requests
            FROM acc JOIN requests r USING (account_id) LEFT JOIN {pcq} pc USING (prompt_hash)
            GROUP BY ALL ORDER BY bucket
            """,
            [top],
        ).df()
    clusters["label"] = clusters["label"].map(lambda s: clean(s, 150) if isinstance(s, str) else "(noise)")
    return clusters, timeline


# --- exports and triage -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _read_workspace(ws_path: str) -> Iterator[Workspace]:
    with _DB_LOCK:
        ws = Workspace(ws_path, read_only=True)
        try:
            ws.db.execute("SET TimeZone = 'UTC'")
            yield ws
        finally:
            ws.close()


def export_campaign_json(ws_path: str, campaign_id: str | None = None) -> str:
    """The JSON export (schema_version 1): every campaign, or only ``campaign_id``."""
    from analyzer.export import to_json

    with _read_workspace(ws_path) as ws:
        text = to_json(ws)
    if campaign_id is None:
        return text
    doc = json.loads(text)
    doc["campaigns"] = [c for c in doc["campaigns"] if c["id"] == campaign_id]
    return json.dumps(doc, ensure_ascii=False, indent=2)


def export_markdown(ws_path: str, campaign_id: str | None = None) -> str:
    """The Markdown report of the flagged campaigns, or of one campaign (flagged or not)."""
    from analyzer.export import load_campaigns, to_markdown

    with _read_workspace(ws_path) as ws:
        camps = load_campaigns(ws)
        if campaign_id is not None:
            camps = [dict(c, flagged=True) for c in camps if c["id"] == campaign_id]
        return to_markdown(ws, campaigns=camps)


def export_accounts_csv(ws_path: str, campaign_id: str | None = None) -> str:
    """The account CSV (``analyzer export --format csv``): every account, or only the members of ``campaign_id``."""
    import csv
    import io

    from analyzer.export import to_csv

    with _read_workspace(ws_path) as ws:
        text = to_csv(ws)
    if campaign_id is None:
        return text
    members = set(query(ws_path, "SELECT account_id FROM campaign_accounts WHERE campaign_id = ?",
                        [campaign_id])["account_id"])
    # The CSV escapes its cells (visible escapes, formula-looking cells prefixed with '); compare likewise.
    wanted = {csv_cell(a, ident=True) for a in members}
    rows = list(csv.reader(io.StringIO(text)))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(rows[0])
    w.writerows(r for r in rows[1:] if r and r[0] in wanted)
    return buf.getvalue()


def sync_watch(ws: Workspace, campaign_id: str, status: str, note: str, analyst: str) -> None:
    """Keep the watchlist in step with a triage decision: confirming or dismissing a campaign stores its
    fingerprint (:func:`analyzer.pipeline.add_watch`), any other status removes the local entry."""
    from analyzer import pipeline, watch

    if status in ("confirmed", "dismissed"):
        try:
            pipeline.add_watch(ws, campaign_id, status, analyst, note)
        except KeyError:  # not in the latest analysis any more: the decision is kept, nothing to fingerprint
            pass
    else:
        ws.remove_watch(watch.local_watch_id(campaign_id))


def write_triage(ws_path: str, campaign_id: str, status: str, note: str, analyst: str) -> None:
    """Record a triage decision through a short-lived read-write connection (append-only, latest wins).

    ``analyst`` is the name :func:`analyzer.app.auth.analyst_identity` decided (the signed-in identity, or
    ``local:NAME``); it is stored as given, up to 200 characters, and escaped wherever it is shown.
    Raises :class:`WorkspaceUnavailable` when an analysis is running (it holds the only write access).
    """
    if status not in TRIAGE_STATUSES:
        raise ValueError(f"unknown triage status {status!r}")
    with _DB_LOCK:
        try:
            ws = Workspace(ws_path)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            raise WorkspaceUnavailable(
                f"Could not save: the workspace is open for writing elsewhere (a running analysis?). ({exc})"
            ) from None
        try:
            with ws.writing():
                # the analyst is stored as given (exports and pages escape it where they show it)
                ws.set_triage(campaign_id, status, clean(note, 5000), analyst.strip()[:200])
                sync_watch(ws, campaign_id, status, clean(note, 5000), analyst.strip()[:200])
        except WorkspaceLocked as exc:
            raise WorkspaceUnavailable(f"Could not save: {exc}") from None
        finally:
            ws.close()
