"""Data access for the app: small, aggregated queries over a workspace, opened read-only.

The queries themselves are in :mod:`analyzer.store` (the SQL layer); this module opens the connections,
caches, and turns their results into what pages show (subnets through :func:`analyzer.signals.subnet`).

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

import numpy as np
import pandas as pd
import streamlit as st

from analyzer import store
from analyzer.embed import DEFAULT_MODEL, DEFAULT_TIER, recorded_settings
from analyzer.export import csv_cell, sanitize, unescape_ident
from analyzer.retry import retry
from analyzer.signals import subnet
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
def connect(ws_path: str, retries: int = 5) -> Iterator[store.Connection]:
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
                lambda: store.connect_read_only(db_path),
                lambda exc: isinstance(exc, store.BUSY_ERRORS),
                [_CONNECT_WAIT_S * (k + 1) for k in range(retries - 1)],
            )
        except store.BUSY_ERRORS as exc:
            raise WorkspaceUnavailable(
                "The workspace is being written by a running analysis (DuckDB allows one writer). "
                f"Reload this page when it has finished. ({exc})"
            ) from None
        try:
            yield con
        finally:
            con.close()


def query(ws_path: str, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
    """Run one ad-hoc read-only query and return a frame: for tests and debugging only (the app itself reads
    through the named queries of :mod:`analyzer.store`)."""
    with connect(ws_path) as con:
        return store.ad_hoc(con, sql, params)


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
        tables = store.table_names(con)
        if not {"runs", "campaigns", "requests", "clusters"} <= tables:
            raise WorkspaceUnavailable(f"{ws_path} has no analysis tables yet. Run `analyzer run` on it first.")
        run = store.latest_run(con)
        n_req = store.has_rows(con, "requests")
        n_camp = store.has_rows(con, "clusters")
    if not run or not n_req:
        raise WorkspaceUnavailable(
            f"The workspace {ws_path} is empty: no requests have been ingested. "
            f"Run `analyzer run LOGS --workspace {ws_path}`."
        )
    run_id, status, finished = run
    return WorkspaceState(
        path=ws_path, run_key=f"{run_id}:{status}:{finished}", has_results=bool(n_camp), latest_run_status=status
    )


# --- overview -----------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def overview_counts(ws_path: str, run_key: str) -> dict[str, int]:
    """Headline counts of the latest analysis."""
    with connect(ws_path) as con:
        return store.overview_counts(con)


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
    with connect(ws_path) as con:
        return store.traffic_over_time(con, pick_bucket(store.request_span_seconds(con)))


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
    """The ``runs`` table, newest first (``stats``: a dict)."""
    with connect(ws_path) as con:
        return store.runs(con)


def run_changes(runs: pd.DataFrame) -> tuple[pd.DataFrame, tuple[int, int] | None]:
    """What changed between the two latest successful runs: numeric stats side by side.

    Returns ``(frame with metric, previous, latest, change; run ids compared)``; empty with ``None`` when
    fewer than two successful runs exist.
    """
    ok = runs[(runs["status"] == "ok") & runs["stats"].map(lambda s: isinstance(s, dict))]
    ok = ok.sort_values("run_id", ascending=False)
    if len(ok) < 2:
        return pd.DataFrame(columns=["metric", "previous", "latest", "change"]), None
    latest, previous = ok.iloc[0], ok.iloc[1]
    a: dict[str, float] = {}
    b: dict[str, float] = {}
    _flatten("", previous["stats"], a)
    _flatten("", latest["stats"], b)
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
HISTORY_FRAME_COLUMNS = ["run_id", "recorded_at", "transition", "parents", "n_accounts", "n_requests", "score",
                         "flagged"]


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_history(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """One campaign's row in every run that recorded it, oldest first (``parents``: ids, comma-separated)."""
    with connect(ws_path) as con:
        out = store.campaign_history(con, campaign_id)
    out["parents"] = [", ".join(clean_id(p) for p in v or []) for v in out.pop("parent_ids")]
    return out[HISTORY_FRAME_COLUMNS]


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_identity(ws_path: str, run_key: str, campaign_id: str) -> dict[str, Any] | None:
    """The campaign's ``campaign_identity`` row (first / last seen, first flagged, first / last run)."""
    with connect(ws_path) as con:
        return store.campaign_identity(con, campaign_id)


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
        out, run = store.latest_transitions(con)
    if out is None or run is None:
        return pd.DataFrame(columns=cols), None
    out = out[(out["transition"] != "continued") | (out["change"] != "")].copy()
    out["parents"] = [", ".join(clean_id(p) for p in v or []) for v in out.pop("parent_ids")]
    out["label"] = out["label"].map(clean)
    out["_order"] = [(c != "newly flagged", not f, TRANSITION_ORDER.index(t))
                     for c, f, t in zip(out["change"], out["flagged"], out["transition"], strict=True)]
    out = out.sort_values(["_order", "score"], ascending=[True, False]).drop(columns="_order")
    return out[cols].reset_index(drop=True), int(run)


# --- campaigns ----------------------------------------------------------------------------------------------------
def triage_latest(ws_path: str) -> pd.DataFrame:
    """Latest triage decision per campaign (uncached: analysts change it from the app)."""
    with connect(ws_path) as con:
        return store.triage_latest(con)


def triage_history(ws_path: str, campaign_id: str) -> pd.DataFrame:
    """Every triage decision recorded for one campaign, newest first."""
    with connect(ws_path) as con:
        return store.triage_history(con, campaign_id)


@st.cache_data(show_spinner=False, max_entries=32)
def campaigns_frame(ws_path: str, run_key: str) -> pd.DataFrame:
    """All candidate campaigns, best first, with one column per signal (``sig_<name>``) and the models used."""
    with connect(ws_path) as con:
        camps = store.campaign_list(con)
        models = store.campaign_models(con)
    camps["label"] = camps["label"].map(lambda s: clean(s, 200))
    camps["kind"] = camps["kind"].fillna("")
    sigs = camps["signals"].map(lambda s: s if isinstance(s, dict) else {})
    names = sorted({k for s in sigs for k in s})
    for name in names:
        camps[f"sig_{name}"] = sigs.map(lambda s, n=name: s.get(n)).astype(float)
    m = models.set_index("campaign_id")["models"].map(list)
    camps["models"] = camps["campaign_id"].map(m).map(lambda v: v if isinstance(v, list) else [])
    return camps.drop(columns=["signals"])


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
    """One campaign with its text cleaned; ``None`` if unknown."""
    with connect(ws_path) as con:
        r = store.campaign(con, campaign_id)
    if r is None:
        return None
    for col in ("keywords", "clusters", "evidence", "examples"):
        r[col] = r[col] if isinstance(r[col], list) else []
    r["signals"] = r["signals"] if isinstance(r["signals"], dict) else {}
    r["label"] = clean(r["label"])
    r["template"] = clean(r.get("template"))
    r["keywords"] = [clean(k) for k in r["keywords"]]
    r["evidence"] = [clean(e) for e in r["evidence"]]
    r["examples"] = [clean(e) for e in r["examples"]]
    return r


def _subnets(ips: pd.Series) -> pd.Series:
    """:func:`analyzer.signals.subnet` of each IP, parsing each distinct value once."""
    return ips.map({ip: subnet(ip) for ip in ips.unique()})


def main_subnets(ip_counts: pd.DataFrame) -> pd.Series:
    """Each account's most used network (:func:`analyzer.signals.subnet`: /24 for IPv4, /48 for IPv6), from
    ``account_id, ip, requests`` rows; ties go to the first network in text order (deterministic). Accounts
    with no valid address have none (IPs that are not addresses have no network)."""
    if ip_counts.empty:
        return pd.Series(dtype=object)
    nets = ip_counts.assign(subnet=_subnets(ip_counts["ip"])).dropna(subset=["subnet"])
    per = nets.groupby(["account_id", "subnet"], as_index=False)["requests"].sum()
    per = per.sort_values(["account_id", "requests", "subnet"], ascending=[True, False, True])
    return per.drop_duplicates("account_id").set_index("account_id")["subnet"]


def subnet_counts(ip_counts: pd.DataFrame) -> pd.DataFrame:
    """``value, requests`` per network (:func:`analyzer.signals.subnet`) from ``ip, requests`` rows, busiest
    first; IPs that are not addresses count towards no network."""
    nets = ip_counts.assign(value=_subnets(ip_counts["ip"])).dropna(subset=["value"])
    out = nets.groupby("value", as_index=False)["requests"].sum()
    return out.sort_values(["requests", "value"], ascending=[False, True]).reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_accounts(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """Member accounts: volume in the campaign, share of their traffic, first/last seen, main subnet and UA."""
    with connect(ws_path) as con:
        rows = store.campaign_account_rows(con, campaign_id)
        ips = store.member_ip_counts(con, campaign_id)
    rows.insert(rows.columns.get_loc("user_agent"), "subnet", rows["account_id"].map(main_subnets(ips)))
    return rows.assign(
        evidence=lambda d: d["evidence"].map(lambda s: " ".join(clean(e) for e in s or [])),
    )


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_heatmap(ws_path: str, run_key: str, campaign_id: str, max_accounts: int = 60) -> pd.DataFrame:
    """Requests per (account, time bucket) for the campaign's busiest accounts; long format."""
    with connect(ws_path) as con:
        bucket = pick_bucket(store.campaign_span_seconds(con, campaign_id), max_buckets=150)
        return store.campaign_heatmap(con, campaign_id, bucket, max_accounts).assign(bucket_size=bucket)


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_model_mix(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """Requests per (time bucket, model) inside the campaign, next to the same for all other traffic."""
    with connect(ws_path) as con:
        return store.campaign_model_mix(con, campaign_id, pick_bucket(store.request_span_seconds(con), max_buckets=120))


@st.cache_data(show_spinner=False, max_entries=64)
def campaign_clusters(ws_path: str, run_key: str, campaign_id: str) -> pd.DataFrame:
    """The prompt clusters the campaign spans, with the members' requests in each."""
    with connect(ws_path) as con:
        out = store.campaign_clusters(con, campaign_id)
    return out.assign(label=lambda d: d["label"].map(lambda s: clean(s, 150)),    ).assign(label=lambda d: d["label"].map(lambda s: clean(s, 150)),
             template=lambda d: d["template"].map(lambda s: clean(s, 300)))


# --- accounts -------------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def account_choices(ws_path: str, run_key: str, limit: int = 2000) -> list[str]:
    """Account ids for the account picker: campaign members and the highest scores first."""
    with connect(ws_path) as con:
        return store.top_accounts(con, limit)


@st.cache_data(show_spinner=False, max_entries=64)
def account_detail(ws_path: str, run_key: str, account_id: str) -> dict[str, Any] | None:
    """One account: summary row, campaigns, clusters, timeline per cluster, models and infrastructure."""
    with connect(ws_path) as con:
        summary = store.account(con, account_id)
        if summary is None:
            return None
        campaigns = store.account_campaigns(con, account_id)
        clusters = store.account_clusters(con, account_id)
        span = (float((summary["last_seen"] - summary["first_seen"]).total_seconds())
                if summary.get("first_seen") else 0)
        bucket = pick_bucket(span, max_buckets=120)
        timeline = store.account_timeline(con, account_id, bucket)
        identifiers = store.account_identifiers(con, account_id)
        ips = store.account_ip_counts(con, account_id)
        recent = store.account_recent(con, account_id)
    summary["signals"] = summary["signals"] if isinstance(summary.get("signals"), dict) else {}
    campaigns["label"] = campaigns["label"].map(lambda s: clean(s, 150))
    campaigns["evidence"] = campaigns["evidence"].map(lambda s: [clean(e) for e in s or []])
    clusters["label"] = clusters["label"].map(lambda s: clean(s, 150) if isinstance(s, str) else "(noise)")
    infra = pd.concat([identifiers, subnet_counts(ips).assign(kind="subnet")[["kind", "value", "requests"]]],
                      ignore_index=True)
    infra = infra.sort_values(["kind", "requests"], ascending=[True, False], kind="stable").reset_index(drop=True)
    recent["prompt"] = recent["prompt"].map(lambda s: clean(s, 300))
    return {"summary": summary, "campaigns": campaigns, "clusters": clusters, "timeline": timeline,
            "infra": infra, "recent": recent, "bucket": bucket}


# --- map --------------------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def map_points(ws_path: str, run_key: str, max_points: int = MAP_MAX_POINTS) -> pd.DataFrame:
    """The 2-D prompt map, sampled server-side to at most ``max_points`` (deterministically, by hash)."""
    with connect(ws_path) as con:
        frame = store.map_points(con, max_points)
    frame["text"] = frame["text"].map(lambda s: clean(s, 150))
    return frame


def prompts_and_accounts(ws_path: str, prompt_hashes: Sequence[str], limit: int = 200
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For a set of prompts (a map selection, search hits): the prompts with their counts, and the accounts
    that sent them (requests among those prompts, cluster count, campaign)."""
    hashes = list(dict.fromkeys(prompt_hashes))[:5000]
    if not hashes:
        empty_p = pd.DataFrame(columns=["prompt_hash", "cluster_id", "requests", "accounts", "text"])
        empty_a = pd.DataFrame(columns=["account_id", "requests", "prompts", "campaign_id", "score"])
        return empty_p, empty_a
    with connect(ws_path) as con:
        prompts, accounts = store.prompts_and_accounts(con, hashes, limit)
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
    """``(model, max_seq_length, tier)`` of the workspace's latest analysis, so queries use the same vectors
    (:func:`analyzer.embed.recorded_settings`, as the pipeline reads them; the defaults when none recorded)."""
    with connect(ws_path) as con:
        found = recorded_settings(store.last_run_options(con))
    if found is None:
        return DEFAULT_MODEL, 128, DEFAULT_TIER
    return found.model, found.max_seq_length, found.tier


@st.cache_resource(show_spinner=False, max_entries=4)
def search_index(ws_path: str, run_key: str, model_key: str) -> tuple[Any, np.ndarray] | None:
    """The workspace's FAISS index, searched by position, and the prompt hash at each position (``None`` if not
    built, or not over the stored vectors)."""
    from analyzer.index import load_position_index
    from analyzer.workspace import embedding_row_ids

    path = os.path.join(ws_path, "index", f"{model_key}.faiss")
    with connect(ws_path) as con:
        rows = store.embedded_rows(con, model_key)
    index = load_position_index(path, embedding_row_ids(rows["shard"], rows["row"]))
    if index is None:
        return None
    return index, rows["prompt_hash"].to_numpy(dtype=object)


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
    with connect(ws_path) as con:
        out = store.search_hits(con, hits)
    out["text"] = out["text"].map(lambda s: clean(s, 2000))
    return out


def expand_accounts(ws_path: str, account_ids: Sequence[str], limit: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pivot from accounts to everything else they do: ``(their clusters, their activity over time)``.

    The clusters frame lists every cluster these accounts used (how many of them, their requests, the
    cluster's campaign); the timeline counts their requests per time bucket and cluster (top clusters only).
    """
    acc = list(dict.fromkeys(account_ids))[:5000]
    if not acc:
        return (pd.DataFrame(columns=["cluster_id", "label", "campaign_id", "accounts", "requests"]),
                pd.DataFrame(columns=["bucket", "cluster", "requests"]))
    with connect(ws_path) as con:
        clusters = store.accounts_clusters(con, acc, limit)
        bucket = pick_bucket(store.request_span_seconds(con, acc), max_buckets=120)
        top = [int(c) for c in clusters["cluster_id"].head(8)]
        timeline = store.accounts_timeline(con, acc, bucket, top)
    clusters["label"] = clusters["label"].map(lambda s: clean(s, 150) if isinstance(s, str) else "(noise)")
    return clusters, timeline


# --- exports and triage -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _read_workspace(ws_path: str) -> Iterator[Workspace]:
    with _DB_LOCK:
        ws = Workspace(ws_path, read_only=True)
        try:
            store.use_utc(ws)
            yield ws
        finally:
            ws.close()


def export_campaign_json(ws_path: str, campaign_id: str | None = None) -> str:
    """The JSON export (schema_version 1): every campaign, or only ``campaign_id``."""
    from analyzer.export import ascii_json, to_json

    with _read_workspace(ws_path) as ws:
        text = to_json(ws)
    if campaign_id is None:
        return text
    doc = json.loads(text)
    doc["campaigns"] = [c for c in doc["campaigns"] if c["id"] == campaign_id]  # ids exact (to_json)
    return ascii_json(doc)


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
    with connect(ws_path) as con:
        members = set(store.member_accounts(con, campaign_id))
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
        except store.BUSY_ERRORS as exc:
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
