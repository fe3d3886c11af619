"""The app's pages. Each ``page_*`` function renders one page from :mod:`analyzer.app.data` queries.

Safety rule for every page: text that comes from the logs (prompts, labels, keywords, templates, account ids,
user agents, evidence sentences that quote them) is shown **only** as plain text: ``st.text``, ``st.code``
and dataframe cells. It never goes into ``st.markdown``, headings, captions, expander or radio labels
(those render Markdown), and plotly hover text is HTML-escaped. Control, C1 and bidi characters show as
visible escapes (``\\u202e``): prose through :func:`~analyzer.app.data.clean`, identifiers through
:func:`~analyzer.app.data.clean_id` (tables through :func:`show_frame`, pickers through ``format_func``),
while widget values keep the raw ids that queries need.
"""

from __future__ import annotations

import html
import os
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from analyzer.app import auth, data
from analyzer.app.data import CampaignFilters, WorkspaceState, WorkspaceUnavailable, clean, clean_id
from analyzer.signals import SIGNAL_DESCRIPTIONS

PAGES = ("Overview", "Campaigns", "Campaign", "Account", "Map", "Search", "Triage", "Export")
FOLD_CHARS = 400  # prompts longer than this fold into an expander


# --- helpers ----------------------------------------------------------------------------------------------------------
def goto(page: str, **state: Any) -> None:
    """Switch to ``page`` on the next rerun, setting widget state (e.g. ``campaign_id``) first."""
    st.session_state["_nav"] = page
    for k, v in state.items():
        st.session_state[f"_set_{k}"] = v
    st.rerun()


def apply_navigation() -> None:
    """Apply deep links (``?page=Campaign&campaign=ID``, ``?page=Account&account=ID``) on a session's first
    run, and a pending :func:`goto`, before any widget is created (called at the top of every run)."""
    if not st.session_state.get("_deep_link_done"):
        st.session_state["_deep_link_done"] = True
        qp = st.query_params
        if qp.get("page") in PAGES:
            st.session_state["page"] = qp["page"]
        if qp.get("campaign"):
            st.session_state["campaign_id"] = qp["campaign"]
        if qp.get("account"):
            st.session_state["account_id"] = qp["account"]
    nav = st.session_state.pop("_nav", None)
    if nav in PAGES:
        st.session_state["page"] = nav
    for key in [k for k in st.session_state if str(k).startswith("_set_")]:
        st.session_state[key[len("_set_"):]] = st.session_state.pop(key)


def hover(text: Any, limit: int = 120, ident: bool = False) -> str:
    """Plotly hover text: cleaned (``ident``: as an identifier), truncated and HTML-escaped (plotly interprets a
    subset of HTML)."""
    return html.escape(clean_id(text, limit) if ident else clean(text, limit), quote=True)


def show_frame(frame: pd.DataFrame, **kwargs: Any) -> Any:
    """``st.dataframe`` of :func:`data.display_frame` (ids and text escaped visibly); returns its event."""
    return st.dataframe(data.display_frame(frame), **kwargs)


def show_prompt(text: str, title: str) -> None:
    """One prompt as inert text: short ones inline, long ones folded into an expander with a plain label."""
    text = clean(text)
    if len(text) <= FOLD_CHARS:
        st.code(text, language="text", wrap_lines=True)
    else:
        with st.expander(f"{title} ({len(text):,} characters)"):
            st.code(text, language="text", wrap_lines=True)


def campaign_option_label(camps: pd.DataFrame) -> dict[str, str]:
    """Selectbox labels (plain text) for campaign ids."""
    return {
        r.campaign_id: f"#{r.rank} {'FLAGGED ' if r.flagged else ''}{r.score:.2f} · {clean(r.label, 70)} "
                       f"({clean_id(r.campaign_id)})"
        for r in camps.itertuples(index=False)
    }


def signal_columns(names: list[str]) -> dict[str, Any]:
    """ProgressColumn configs for the signal columns of the campaign table."""
    return {
        f"sig_{n}": st.column_config.ProgressColumn(n, help=SIGNAL_DESCRIPTIONS.get(n, n), min_value=0.0,
                                                    max_value=1.0, format="%.2f")
        for n in names
    }


def _fmt_ts(ts: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if ts is None or pd.isna(ts):
        return "-"
    return pd.Timestamp(ts).strftime(fmt)


def ts_metric(col: Any, label: str, ts: Any) -> None:
    """A date metric (the full UTC time in its help), short enough not to be cut off."""
    col.metric(label, _fmt_ts(ts, "%Y-%m-%d"), help=f"{_fmt_ts(ts)} UTC")


# --- overview ---------------------------------------------------------------------------------------------------------
def page_overview(ws: WorkspaceState) -> None:
    """Headline counts, traffic over time and what changed since the previous run."""
    st.header("Overview")
    c = data.overview_counts(ws.path, ws.run_key)
    cols = st.columns(6)
    cols[0].metric("Requests", f"{c['requests']:,}")
    cols[1].metric("Accounts", f"{c['accounts']:,}")
    cols[2].metric("Unique prompts", f"{c['prompts']:,}")
    cols[3].metric("Clusters", f"{c['clusters']:,}")
    cols[4].metric("Flagged campaigns", f"{c['flagged']:,}", help=f"{c['candidates']:,} candidates scored")
    cols[5].metric("Rejected rows", f"{c['rejected']:,}", help="Quarantined at ingest with file, line and reason")
    if not ws.has_results:
        st.warning("No clusters yet: the latest analysis did not finish. Run `analyzer run` again.")

    traffic = data.traffic_over_time(ws.path, ws.run_key)
    if len(traffic):
        fig = px.bar(traffic, x="bucket", y="requests", color="traffic", title="Traffic over time",
                     color_discrete_map={"accounts in flagged campaigns": "#d62728", "other accounts": "#9aa7b8"})
        fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, bargap=0, legend_title=None)
        st.plotly_chart(fig, width="stretch")

    runs = data.runs_history(ws.path, ws.run_key)
    changes, pair = data.run_changes(runs)
    st.subheader("What changed since the previous run")
    if pair is None:
        st.info("Only one successful run so far; changes appear after the next `analyzer run`.")
    else:
        st.text(f"Run {pair[1]} compared with run {pair[0]}")
        show_frame(changes, hide_index=True, width="stretch")
    with st.expander("Run history"):
        show_frame(runs.drop(columns=["stats"]), hide_index=True, width="stretch")
    campaign_changes(ws)

    camps = data.campaigns_frame(ws.path, ws.run_key)
    flagged = camps[camps["flagged"]].head(10)
    if len(flagged):
        st.subheader("Top flagged campaigns")
        show_frame(flagged[["rank", "campaign_id", "score", "label", "n_accounts", "n_requests"]],
                   hide_index=True, width="stretch",
                   column_config={"score": st.column_config.ProgressColumn("score", min_value=0, max_value=1,
                                                                           format="%.2f")})


def campaign_changes(ws: WorkspaceState) -> None:
    """The latest run's campaign transitions: new, split, merged, grown, shrunk, gone, and flag changes."""
    changes, run = data.latest_transitions(ws.path, ws.run_key)
    if run is None:
        return
    st.subheader("Campaigns: what changed")
    counts = changes["transition"].value_counts()
    summary = ", ".join(f"{int(counts[t])} {t}" for t in data.TRANSITION_ORDER if t in counts) or "no change"
    n_new_flag = int((changes["change"] == "newly flagged").sum())
    st.text(f"Run {run}: {summary}; {n_new_flag} newly flagged. Other campaigns continued with their ids.")
    if len(changes):
        show_frame(changes, hide_index=True, width="stretch", column_config={
            "score": st.column_config.NumberColumn("score", format="%.2f"),
            "previous_score": st.column_config.NumberColumn("previous score", format="%.2f"),
            "previous_accounts": st.column_config.NumberColumn("previous accounts"),
        })


# --- campaigns --------------------------------------------------------------------------------------------------------
def campaign_filters_ui(camps: pd.DataFrame) -> CampaignFilters:
    """The filter widgets (sidebar-free, in an expander at the top of the page)."""
    sig_names = [c[4:] for c in camps.columns if c.startswith("sig_")]
    models = sorted({m for ms in camps["models"] for m in ms})
    f = CampaignFilters()
    c1, c2, c3 = st.columns([1, 1, 2])
    f.min_score = c1.slider("Min score", 0.0, 1.0, 0.0, 0.05, key="f_min_score")
    f.flagged_only = c2.toggle("Flagged only", value=False, key="f_flagged")
    f.triage = tuple(c3.multiselect("Triage status", data.TRIAGE_STATUSES, key="f_triage"))
    with st.expander("More filters: time range, model, signals"):
        if camps["first_seen"].notna().any():
            lo = pd.Timestamp(camps["first_seen"].min()).date()
            hi = pd.Timestamp(camps["last_seen"].max()).date()
            rng = st.date_input("Active between", value=(lo, hi), min_value=lo, max_value=hi, key="f_dates")
            if isinstance(rng, tuple | list) and len(rng) == 2:
                f.start = pd.Timestamp(rng[0], tz="UTC")
                f.end = pd.Timestamp(rng[1], tz="UTC") + pd.Timedelta(days=1)
        f.models = tuple(st.multiselect("Uses model", models, key="f_models", format_func=clean_id))
        cols = st.columns(min(5, max(1, len(sig_names))))
        f.signal_min = {
            n: cols[i % len(cols)].slider(f"{n} ≥", 0.0, 1.0, 0.0, 0.05, key=f"f_sig_{n}",
                                          help=SIGNAL_DESCRIPTIONS.get(n))
            for i, n in enumerate(sig_names)
        }
    return f


def page_campaigns(ws: WorkspaceState) -> None:
    """The ranked campaign table with filters; selecting a row opens the campaign page."""
    st.header("Campaigns")
    camps = data.campaigns_frame(ws.path, ws.run_key)
    if camps.empty:
        st.info("No candidate campaigns in this workspace.")
        return
    f = campaign_filters_ui(camps)
    shown = data.filter_campaigns(camps, data.triage_latest(ws.path), f)
    st.text(f"{len(shown)} of {len(camps)} candidate campaigns ({int(camps['flagged'].sum())} flagged)")
    sig_names = [c[4:] for c in camps.columns if c.startswith("sig_")]
    cols = ["rank", "score", "flagged", "triage", "label", "kind", "n_accounts", "n_requests", "n_clusters",
            "first_seen", "last_seen", *[f"sig_{n}" for n in sig_names], "campaign_id"]
    config: dict[str, Any] = {
        "score": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.2f"),
        "n_accounts": st.column_config.NumberColumn("accounts"),
        "n_requests": st.column_config.NumberColumn("requests"),
        "n_clusters": st.column_config.NumberColumn("clusters"),
        "first_seen": st.column_config.DatetimeColumn("first seen", format="YYYY-MM-DD HH:mm"),
        "last_seen": st.column_config.DatetimeColumn("last seen", format="YYYY-MM-DD HH:mm"),
        **signal_columns(sig_names),
    }
    event = show_frame(shown[cols], hide_index=True, width="stretch", column_config=config,
                       on_select="rerun", selection_mode="single-row", key="campaign_table")
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if rows:
        cid = shown.iloc[rows[0]]["campaign_id"]
        if st.button(f"Open campaign #{int(shown.iloc[rows[0]]['rank'])}", type="primary"):
            goto("Campaign", campaign_id=cid)
    else:
        st.caption("Select a row to open its campaign page.")


# --- one campaign -------------------------------------------------------------------------------------------------------
def heatmap_figure(heat: pd.DataFrame) -> go.Figure:
    """Accounts × time heatmap; accounts ordered by when they start, so synchronized shifts line up."""
    pivot = heat.pivot_table(index="account_id", columns="bucket", values="requests", aggfunc="sum", fill_value=0)
    first = heat.groupby("account_id")["bucket"].min()
    order = first.sort_values(kind="stable").index
    pivot = pivot.reindex(order)
    fig = go.Figure(go.Heatmap(
        z=pivot.to_numpy(), x=list(pivot.columns), y=[hover(a, 40, ident=True) for a in pivot.index],
        colorscale="Reds", colorbar={"title": "requests"},
        hovertemplate="account %{y}<br>%{x}<br>%{z} requests<extra></extra>",
    ))
    fig.update_layout(height=max(300, 14 * len(pivot) + 120), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis={"autorange": "reversed", "type": "category"},
                      title=f"Requests per account per {heat['bucket_size'].iloc[0]}")
    return fig


def model_mix_figure(mix: pd.DataFrame) -> go.Figure:
    """Share of each model over time, the campaign next to all traffic (a pivot shows as a colour jump)."""
    mix = mix.assign(model=mix["model"].map(lambda s: hover(s, 40, ident=True)))
    fig = px.area(mix, x="bucket", y="requests", color="model", facet_row="scope", groupnorm="percent",
                  category_orders={"scope": ["campaign", "all traffic"]}, title="Model mix over time (% of requests)")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def triage_form(ws: WorkspaceState, campaign_id: str) -> None:
    """Triage widgets: status, note and analyst, written through a short-lived read-write connection."""
    latest = data.triage_latest(ws.path)
    cur = latest[latest["campaign_id"] == campaign_id]
    current = cur.iloc[0]["status"] if len(cur) else "open"
    st.text(f"Current status: {current}" + (f" (by {clean_id(cur.iloc[0]['analyst'], 60)})" if len(cur) else ""))
    user = auth.current_user()
    required = auth.login_was_required()
    configured = auth.auth_configured()  # login on: only a signed-in identity records decisions
    signed_in = user.get("is_logged_in") is True
    local_user = os.environ.get("USER", "")
    with st.form(f"triage_{campaign_id}"):
        status = st.radio("Decision", data.TRIAGE_STATUSES, index=data.TRIAGE_STATUSES.index(current),
                          horizontal=True, key="triage_status")
        note = st.text_area("Note", key="triage_note", max_chars=5000)
        typed = ""
        if signed_in:
            try:
                st.text(f"Recorded as: {clean_id(auth.analyst_identity(user, required), 200)} (signed in)")
            except auth.AnalystUnknown as exc:
                st.text(f"Cannot record decisions: {exc}")
        elif required or configured:
            st.text("Sign in to record decisions (this deployment has login configured).")
        else:
            typed = st.text_input("Analyst (not verified: recorded as local:NAME)", key="triage_analyst",
                                  max_chars=200, placeholder=f"blank: local:{local_user or 'unknown'}")
        if st.form_submit_button("Save decision", type="primary"):
            try:
                analyst = auth.analyst_identity(user, required, typed, local_user, configured)
                data.write_triage(ws.path, campaign_id, status, note, analyst)
            except (WorkspaceUnavailable, auth.AnalystUnknown) as exc:
                st.error(str(exc))
            else:
                st.success(f"Saved: {status}")
    hist = data.triage_history(ws.path, campaign_id)
    if len(hist):
        show_frame(hist, hide_index=True, width="stretch")


def export_buttons(ws: WorkspaceState, campaign_id: str | None, key: str) -> None:
    """Download buttons for JSON, Markdown and account CSV (one campaign, or everything)."""
    stem = campaign_id or "campaigns"
    c1, c2, c3 = st.columns(3)
    c1.download_button("JSON (schema v1)", lambda: data.export_campaign_json(ws.path, campaign_id),
                       file_name=f"{stem}.json", mime="application/json", key=f"{key}_json", on_click="ignore")
    c2.download_button("Markdown report", lambda: data.export_markdown(ws.path, campaign_id),
                       file_name=f"{stem}.md", mime="text/markdown", key=f"{key}_md", on_click="ignore")
    c3.download_button("Account CSV", lambda: data.export_accounts_csv(ws.path, campaign_id),
                       file_name=f"{stem}-accounts.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore")


def page_campaign(ws: WorkspaceState) -> None:
    """Everything about one campaign: evidence, signals, prompts, accounts, timing, models, clusters, triage."""
    camps = data.campaigns_frame(ws.path, ws.run_key)
    if camps.empty:
        st.header("Campaign")
        st.info("No candidate campaigns in this workspace.")
        return
    labels = campaign_option_label(camps)
    ids = list(labels)
    if st.session_state.get("campaign_id") not in labels:
        st.session_state["campaign_id"] = ids[0]
    cid = st.selectbox("Campaign", ids, format_func=labels.get, key="campaign_id")
    c = data.campaign_detail(ws.path, ws.run_key, cid)
    if c is None:
        st.error("Unknown campaign.")
        return
    campaign_header(c)
    st.subheader("Evidence")
    st.text("\n".join(f"• {e}" for e in c["evidence"]) or "(none)")
    campaign_history_section(ws, cid)
    campaign_signals_section(c)
    campaign_prompts_section(c)
    campaign_accounts_section(ws, cid)
    st.subheader("Timing")
    heat = data.campaign_heatmap(ws.path, ws.run_key, cid)
    if len(heat):
        st.plotly_chart(heatmap_figure(heat), width="stretch")
    mix = data.campaign_model_mix(ws.path, ws.run_key, cid)
    if len(mix):
        st.plotly_chart(model_mix_figure(mix), width="stretch")
    st.subheader("Clusters")
    show_frame(data.campaign_clusters(ws.path, ws.run_key, cid), hide_index=True, width="stretch")
    st.subheader("Triage")
    triage_form(ws, cid)
    st.subheader("Export this campaign")
    export_buttons(ws, cid, key="campaign_export")


def campaign_header(c: dict) -> None:
    """Rank, label, and the campaign's figures as metrics."""
    st.header(f"Campaign #{int(c['rank'])}")
    st.text(c["label"])
    m = st.columns(6)
    m[0].metric("Score", f"{c['score']:.2f}")
    m[1].metric("Flagged", "yes" if c["flagged"] else "no")
    m[2].metric("Accounts", f"{int(c['n_accounts']):,}")
    m[3].metric("Requests", f"{int(c['n_requests']):,}")
    ts_metric(m[4], "First seen", c["first_seen"])
    ts_metric(m[5], "Last seen", c["last_seen"])
    if c.get("kind"):
        st.text(f"Looks like: {clean(c['kind'])}")


def campaign_signals_section(c: dict) -> None:
    """Each signal's value as a bar, with what it means."""
    st.subheader("Signals")
    sig = pd.DataFrame([
        {"signal": k, "value": v, "meaning": SIGNAL_DESCRIPTIONS.get(k, "")} for k, v in c["signals"].items()
    ])
    show_frame(sig, hide_index=True, width="stretch", column_config={
        "value": st.column_config.ProgressColumn("value", min_value=0.0, max_value=1.0, format="%.2f"),
        "meaning": st.column_config.TextColumn("meaning", width="large"),
    })


def campaign_prompts_section(c: dict) -> None:
    """The recovered template, keywords and example prompts."""
    st.subheader("Prompts")
    if c["template"]:
        st.text("Recovered template (variable slots marked):")
        st.code(c["template"], language="text", wrap_lines=True)
    if c["keywords"]:
        st.text("Keywords: " + ", ".join(c["keywords"]))
    for i, ex in enumerate(c["examples"]):
        show_prompt(ex, f"Example prompt {i + 1}")


def campaign_accounts_section(ws: WorkspaceState, cid: str) -> None:
    """The member accounts, with a button to open one."""
    st.subheader("Accounts")
    acc = data.campaign_accounts(ws.path, ws.run_key, cid)
    show_frame(acc, hide_index=True, width="stretch", column_config={
        "share": st.column_config.ProgressColumn("share of own traffic", min_value=0.0, max_value=1.0,
                                                 format="%.2f"),
        "n_requests": st.column_config.NumberColumn("requests here"),
        "first_seen": st.column_config.DatetimeColumn("first seen", format="YYYY-MM-DD HH:mm"),
        "last_seen": st.column_config.DatetimeColumn("last seen", format="YYYY-MM-DD HH:mm"),
    })
    if len(acc):
        pick = st.selectbox("Open account", acc["account_id"].tolist(), key="campaign_open_account", format_func=clean_id)
        if st.button("Open account page"):
            goto("Account", account_id=pick, account_typed="")


def history_figure(hist: pd.DataFrame) -> go.Figure:
    """Score (left axis) and accounts (right axis) of a campaign in each run that recorded it."""
    fig = go.Figure()
    runs = hist["run_id"].astype(int).astype(str)
    fig.add_trace(go.Scatter(x=runs, y=hist["score"], name="score", mode="lines+markers",
                             hovertext=[html.escape(t) for t in hist["transition"]]))
    fig.add_trace(go.Bar(x=runs, y=hist["n_accounts"], name="accounts", yaxis="y2", opacity=0.35))
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Score and accounts per run",
                      xaxis={"title": "run", "type": "category"}, yaxis={"title": "score", "range": [0, 1]},
                      yaxis2={"title": "accounts", "overlaying": "y", "side": "right", "rangemode": "tozero"},
                      legend={"orientation": "h"})
    return fig


def campaign_history_section(ws: WorkspaceState, cid: str) -> None:
    """The campaign's identity (first seen, first flagged) and its transitions across runs."""
    hist = data.campaign_history(ws.path, ws.run_key, cid)
    ident = data.campaign_identity(ws.path, ws.run_key, cid)
    if hist.empty or ident is None:
        return
    st.subheader("History across runs")
    m = st.columns(4)
    ts_metric(m[0], "First seen", ident["first_seen"])
    ts_metric(m[1], "First flagged", ident["first_flagged_at"])
    m[2].metric("First run", int(ident["first_run_id"]))
    m[3].metric("Runs recorded", len(hist))
    if len(hist) > 1:
        st.plotly_chart(history_figure(hist), width="stretch")
    show_frame(hist, hide_index=True, width="stretch", column_config={
        "run_id": st.column_config.NumberColumn("run"),
        "recorded_at": st.column_config.DatetimeColumn("recorded", format="YYYY-MM-DD HH:mm"),
        "score": st.column_config.NumberColumn("score", format="%.2f"),
    })


# --- account ------------------------------------------------------------------------------------------------------------
def page_account(ws: WorkspaceState) -> None:
    """One account's traffic across clusters and time, its campaigns and evidence."""
    st.header("Account")
    choices = data.account_choices(ws.path, ws.run_key)
    wanted = st.session_state.get("account_id")
    if wanted and wanted not in choices:  # a link to an account outside the picker: put it in the text box
        st.session_state["account_typed"] = wanted
        st.session_state.pop("account_id")
    typed = st.text_input("Account id", key="account_typed", placeholder="type an id, or pick below")
    if st.session_state.get("account_id") not in choices and choices:
        st.session_state["account_id"] = choices[0]
    picked = st.selectbox("Highest-scoring accounts", choices, key="account_id", format_func=clean_id)
    account = typed.strip() or picked
    if not account:
        st.info("No accounts in this workspace.")
        return
    d = data.account_detail(ws.path, ws.run_key, account)
    if d is None and data.raw_id(account) != account:  # an escaped id pasted back (acct\u202e...)
        account = data.raw_id(account)
        d = data.account_detail(ws.path, ws.run_key, account)
    if d is None:
        st.warning("No such account in the latest analysis.")
        return
    s = d["summary"]
    st.text(f"Account {clean_id(account, 200)}")
    m = st.columns(5)
    m[0].metric("Requests", f"{int(s['n_requests']):,}")
    m[1].metric("Unique prompts", f"{int(s['n_prompts']):,}")
    m[2].metric("Score", f"{float(s['score']):.2f}")
    ts_metric(m[3], "First seen", s["first_seen"])
    ts_metric(m[4], "Last seen", s["last_seen"])

    st.subheader("Campaigns")
    camps = d["campaigns"]
    if camps.empty:
        st.text("Not a member of any candidate campaign.")
    else:
        show_frame(camps.drop(columns=["evidence"]), hide_index=True, width="stretch")
        for r in camps.itertuples(index=False):
            if r.evidence:
                st.text(f"Evidence for campaign #{r.rank}:\n" + "\n".join(f"• {e}" for e in r.evidence))
        cid = st.selectbox("Open campaign", camps["campaign_id"].tolist(), key="account_open_campaign",
                           format_func=clean_id)
        if st.button("Open campaign page"):
            goto("Campaign", campaign_id=cid)

    st.subheader("Traffic across clusters and time")
    tl = d["timeline"]
    if len(tl):
        top = d["clusters"]["cluster_id"].head(8).tolist()
        names = {c: ("noise" if c < 0 else f"cluster {c}") for c in top}
        tl = tl.assign(cluster=tl["cluster_id"].map(lambda c: names.get(c, "other")))
        fig = px.bar(tl, x="bucket", y="requests", color="cluster", title=f"Requests per {d['bucket']}",
                     category_orders={"cluster": [*names.values(), "other"]})
        fig.update_layout(height=320, bargap=0, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, width="stretch")
    show_frame(d["clusters"], hide_index=True, width="stretch")
    st.subheader("Models and infrastructure")
    show_frame(d["infra"], hide_index=True, width="stretch")
    st.subheader("Latest prompts")
    show_frame(d["recent"], hide_index=True, width="stretch",
               column_config={"prompt": st.column_config.TextColumn("prompt", width="large")})


# --- map ----------------------------------------------------------------------------------------------------------------
def map_figure(points: pd.DataFrame, colour: str) -> go.Figure:
    """Scatter of the sampled map; colour by cluster (top 20, rest grey), campaign (flagged) or score."""
    hover_text = [
        f"{hover(t)}<br>cluster {c} · {r} requests · {a} accounts"
        for t, c, r, a in zip(points["text"], points["cluster_id"], points["requests"], points["accounts"],
                              strict=True)
    ]
    custom = points[["prompt_hash"]].to_numpy()
    fig = go.Figure()
    if colour == "score":
        fig.add_trace(go.Scattergl(
            x=points["x"], y=points["y"], mode="markers", customdata=custom, hovertext=hover_text,
            hoverinfo="text", marker={"size": 4, "color": points["score"], "colorscale": "Reds", "cmin": 0,
                                      "cmax": 1, "colorbar": {"title": "score"}},
        ))
    else:
        if colour == "campaign":
            groups = points["campaign_id"].where(points["flagged"], None).fillna("not flagged")
        else:
            top = points.loc[points["cluster_id"] >= 0, "cluster_id"].value_counts().head(20).index
            groups = points["cluster_id"].map(lambda c: f"cluster {c}" if c in top else ("noise" if c < 0 else "other"))
        def order(g: str) -> tuple[bool, int, str]:
            muted = g in ("other", "noise", "not flagged")
            num = int(g.split()[1]) if g.startswith("cluster ") else 0
            return muted, num, g

        for name in sorted(groups.unique(), key=order):
            m = (groups == name).to_numpy()
            muted = name in ("other", "noise", "not flagged")
            fig.add_trace(go.Scattergl(
                x=points["x"][m], y=points["y"][m], mode="markers", name=hover(name, 40, ident=True),
                customdata=custom[m], hovertext=[h for h, k in zip(hover_text, m, strict=True) if k],
                hoverinfo="text", marker={"size": 4, "opacity": 0.35 if muted else 0.8,
                                          **({"color": "#b0b0b0"} if muted else {})},
            ))
    fig.update_layout(height=600, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
                      xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def show_selection(ws: WorkspaceState, hashes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """List the selected prompts and the accounts that sent them; returns both frames."""
    prompts, accounts = data.prompts_and_accounts(ws.path, hashes)
    st.text(f"{len(hashes)} prompts selected")
    show_frame(prompts, hide_index=True, width="stretch",
               column_config={"text": st.column_config.TextColumn("prompt", width="large")})
    st.text(f"Accounts that sent them ({len(accounts)} shown)")
    show_frame(accounts, hide_index=True, width="stretch")
    return prompts, accounts


def page_map(ws: WorkspaceState) -> None:
    """The 2-D prompt map with box / lasso selection."""
    st.header("Map")
    points = data.map_points(ws.path, ws.run_key)
    if points.empty:
        st.info("No map in this workspace: run `analyzer map --workspace DIR` (or `analyzer run` without --no-map).")
        return
    colour = st.radio("Colour by", ["cluster", "campaign", "score"], horizontal=True, key="map_colour")
    st.caption(f"{len(points):,} prompts (sampled server-side to at most {data.MAP_MAX_POINTS:,}). "
               "Draw a box or lasso to list the prompts and accounts.")
    event = st.plotly_chart(map_figure(points, colour), width="stretch", on_select="rerun",
                            selection_mode=("box", "lasso", "points"), key="map_chart")
    hashes = data.selection_hashes(event, points)
    if hashes:
        _, accounts = show_selection(ws, hashes)
        if len(accounts):
            pick = st.selectbox("Open account", accounts["account_id"].tolist(), key="map_open_account", format_func=clean_id)
            if st.button("Open account page", key="map_open_btn"):
                goto("Account", account_id=pick, account_typed="")


# --- search -------------------------------------------------------------------------------------------------------------
def page_search(ws: WorkspaceState) -> None:
    """Semantic search over prompts, then seed and expand: hits → accounts → their other clusters and timelines."""
    st.header("Search")
    q = st.text_input("Describe the prompts to find (semantic search)", key="search_query",
                      placeholder="e.g. grade this answer with a rubric and output a score")
    k = st.slider("Neighbours", 5, 200, 30, 5, key="search_k")
    if not q.strip():
        st.caption("Search finds prompts by meaning (FAISS over the workspace's embeddings), then pivots to the "
                   "accounts that sent them and everything else those accounts do.")
        return
    try:
        hits = data.semantic_search(ws.path, ws.run_key, q, k)
    except WorkspaceUnavailable as exc:
        st.error(str(exc))
        return
    st.subheader("Nearest prompts")
    show_frame(hits, hide_index=True, width="stretch", column_config={
        "similarity": st.column_config.ProgressColumn("similarity", min_value=0.0, max_value=1.0, format="%.2f"),
        "text": st.column_config.TextColumn("prompt", width="large"),
    })
    for i, r in enumerate(hits.head(3).itertuples(index=False)):
        show_prompt(r.text, f"Hit {i + 1}")
    if len(hits):
        seed = st.selectbox("Seed a new search from a hit", range(len(hits)), key="search_seed",
                            format_func=lambda i: f"{i + 1}: {clean(hits.iloc[i]['text'], 80)}")
        if st.button("Search from this prompt"):
            st.session_state["_set_search_query"] = hits.iloc[int(seed)]["text"][:2000]
            st.rerun()

    st.subheader("Accounts that sent these prompts")
    _, accounts = data.prompts_and_accounts(ws.path, hits["prompt_hash"].tolist())
    show_frame(accounts, hide_index=True, width="stretch")
    if accounts.empty:
        return
    st.subheader("What else those accounts do")
    clusters, timeline = data.expand_accounts(ws.path, accounts["account_id"].tolist())
    show_frame(clusters, hide_index=True, width="stretch")
    if len(timeline):
        fig = px.bar(timeline, x="bucket", y="requests", color="cluster", title="Their requests over time")
        fig.update_layout(height=320, bargap=0, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, width="stretch")
    pick = st.selectbox("Open account", accounts["account_id"].tolist(), key="search_open_account", format_func=clean_id)
    if st.button("Open account page", key="search_open_btn"):
        goto("Account", account_id=pick, account_typed="")


# --- triage and export ----------------------------------------------------------------------------------------------------
def page_triage(ws: WorkspaceState) -> None:
    """The triage queue: flagged campaigns without a decision first, then every decision."""
    st.header("Triage")
    camps = data.campaigns_frame(ws.path, ws.run_key)
    triage = data.triage_latest(ws.path)
    merged = data.filter_campaigns(camps, triage, CampaignFilters())
    merged = merged.merge(triage[["campaign_id", "note", "analyst", "decided_at"]], on="campaign_id", how="left")
    merged["note"] = merged["note"].map(lambda s: clean(s, 300))
    queue = merged[merged["flagged"] & (merged["triage"].isin(["open", "needs review"]))]
    st.subheader(f"Flagged, awaiting a decision ({len(queue)})")
    show_frame(queue[["rank", "score", "triage", "label", "n_accounts", "n_requests", "campaign_id"]],
               hide_index=True, width="stretch")
    st.subheader("Decisions")
    decided = merged[merged["triage"] != "open"]
    show_frame(decided[["rank", "score", "flagged", "triage", "analyst", "decided_at", "note", "label",
                        "campaign_id"]], hide_index=True, width="stretch")
    if len(merged):
        labels = campaign_option_label(camps)
        cid = st.selectbox("Decide on", list(labels), format_func=labels.get, key="triage_pick")
        triage_form(ws, cid)


def page_export(ws: WorkspaceState) -> None:
    """Downloads of the whole analysis (the same files as ``analyzer export``)."""
    st.header("Export")
    st.text("JSON follows schema_version 1 (the contract other tools read); Markdown reports the flagged "
            "campaigns; the CSV has one row per account. Triage decisions are included.")
    export_buttons(ws, None, key="all_export")


RENDERERS = {
    "Overview": page_overview, "Campaigns": page_campaigns, "Campaign": page_campaign, "Account": page_account,
    "Map": page_map, "Search": page_search, "Triage": page_triage, "Export": page_export,
}


# --- the app ---------------------------------------------------------------------------------------------------------------
def run_app(ws_path: str | None) -> None:
    """Render the app for the workspace at ``ws_path`` (sidebar navigation + the chosen page)."""
    apply_navigation()
    st.sidebar.title("analyzer")
    if not ws_path:
        st.error("No workspace given. Start the app with `analyzer app DIR` or "
                 "`streamlit run app.py -- --workspace DIR` (or set ANALYZER_WORKSPACE).")
        st.stop()
    try:
        ws = data.workspace_state(ws_path)
    except WorkspaceUnavailable as exc:
        st.error(str(exc))
        st.stop()
        return
    page = st.sidebar.radio("Page", PAGES, key="page")
    link = {"page": page}
    if page == "Campaign" and st.session_state.get("campaign_id"):
        link["campaign"] = st.session_state["campaign_id"]
    if page == "Account" and st.session_state.get("account_id"):
        link["account"] = st.session_state["account_id"]
    st.query_params.from_dict(link)
    st.sidebar.text(f"Workspace: {clean_id(ws.path)}\nLatest run: {ws.run_key.split(':')[0]} ({ws.latest_run_status})")
    if st.sidebar.button("Reload data"):
        st.cache_data.clear()
    try:
        RENDERERS[page](ws)
    except WorkspaceUnavailable as exc:
        st.error(str(exc))
