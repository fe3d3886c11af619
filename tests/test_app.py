"""The Streamlit app on the real sample workspace, driven by ``streamlit.testing.v1.AppTest``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analyzer.app import auth, data, parse_args
from analyzer.app.pages import PAGES, hover
from analyzer.workspace import DB_NAME, Workspace

APP = str(Path(__file__).resolve().parents[1] / "app.py")
HOSTILE = ["<script>alert(1)</script>", "![x](http://evil/img.png)", "\x1b[31m"]


def make_app(ws: Path, monkeypatch, **env: str) -> AppTest:
    monkeypatch.setenv("ANALYZER_WORKSPACE", str(ws))
    monkeypatch.delenv("ANALYZER_REQUIRE_LOGIN", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return AppTest.from_file(APP, default_timeout=180)


def goto(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def flagged(ws: Path) -> pd.DataFrame:
    return data.query(str(ws), "SELECT campaign_id, label FROM campaigns WHERE flagged ORDER BY rank")


def markdown_like(at: AppTest) -> list[str]:
    """Every string the app rendered through a Markdown-interpreting element."""
    out: list[str] = []
    for coll in (at.markdown, at.caption, at.title, at.header, at.subheader, at.info, at.warning, at.error,
                 at.success):
        out += [str(e.value) for e in coll]
    out += [str(e.label) for e in at.expander]
    out += [str(o) for r in at.radio for o in r.options]
    return out


# --- every page ------------------------------------------------------------------------------------------------------
@pytest.fixture
def app(sample_workspace, monkeypatch) -> AppTest:
    at = make_app(sample_workspace, monkeypatch)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app, page):
    goto(app, page)  # within AppTest's timeout, without an exception
    assert not app.error, [e.value for e in app.error]
    assert app.header[0].value.startswith(page)  # the page asked for, rendered to its header


def test_campaign_table_shows_flagged_labels(app, sample_workspace):
    goto(app, "Campaigns")
    table = app.dataframe[0].value
    labels = flagged(sample_workspace)["label"].tolist()
    assert labels, "the sample flags at least one campaign"
    assert set(labels) <= set(table["label"])
    assert table.loc[table["flagged"], "label"].tolist() == labels
    assert table["score"].is_monotonic_decreasing


def test_filters_change_row_counts(app, sample_workspace):
    ws = str(sample_workspace)
    scores = data.query(ws, "SELECT score, signals FROM campaigns")
    spread = scores["signals"].map(lambda s: s.get("spread") or 0.0)
    goto(app, "Campaigns")
    n_all = len(app.dataframe[0].value)
    assert n_all == len(scores)
    app.toggle(key="f_flagged").set_value(True).run()
    assert len(app.dataframe[0].value) == len(flagged(sample_workspace)) < n_all
    app.toggle(key="f_flagged").set_value(False).run()
    app.slider(key="f_min_score").set_value(0.3).run()
    table = app.dataframe[0].value
    assert len(table) == int((scores["score"] >= 0.3).sum()) and (table["score"] >= 0.3).all()
    app.slider(key="f_min_score").set_value(0.0).run()
    app.slider(key="f_sig_spread").set_value(0.5).run()
    assert len(app.dataframe[0].value) == int((spread >= 0.5).sum())
    app.slider(key="f_sig_spread").set_value(0.0).run()
    assert len(app.dataframe[0].value) == n_all
    app.multiselect(key="f_triage").set_value(["confirmed"]).run()
    assert len(app.dataframe[0].value) == 0  # nothing decided yet in the shared sample


def test_filter_campaigns_by_model_time_and_triage(sample_workspace):
    ws = str(sample_workspace)
    state = data.workspace_state(ws)
    camps = data.campaigns_frame(ws, state.run_key)
    none = pd.DataFrame(columns=["campaign_id", "status"])
    assert len(data.filter_campaigns(camps, none, data.CampaignFilters())) == len(camps)
    model = camps["models"].iloc[0][0]
    by_model = data.filter_campaigns(camps, none, data.CampaignFilters(models=(model,)))
    assert 0 < len(by_model) and all(model in ms for ms in by_model["models"])
    assert len(data.filter_campaigns(camps, none, data.CampaignFilters(models=("no-such-model",)))) == 0
    late = camps["last_seen"].max() + pd.Timedelta(days=1)
    assert len(data.filter_campaigns(camps, none, data.CampaignFilters(start=late))) == 0
    tri = pd.DataFrame({"campaign_id": [camps["campaign_id"].iloc[0]], "status": ["dismissed"]})
    out = data.filter_campaigns(camps, tri, data.CampaignFilters(triage=("dismissed",)))
    assert out["campaign_id"].tolist() == [camps["campaign_id"].iloc[0]]


def test_campaign_page_shows_evidence_signals_accounts_and_charts(app, sample_workspace):
    cid, label = flagged(sample_workspace).iloc[0]
    app.session_state["campaign_id"] = cid
    goto(app, "Campaign")
    texts = [t.value for t in app.text]
    assert label in texts
    assert any(t.startswith("• ") for t in texts)  # evidence sentences
    frames = [d.value for d in app.dataframe]
    signals = next(f for f in frames if "signal" in f.columns)
    assert {"spread", "sync", "infrastructure"} <= set(signals["signal"]) and signals["meaning"].str.len().min() > 0
    accounts = next(f for f in frames if "subnet" in f.columns)
    members = data.query(str(sample_workspace), "SELECT count(*) AS n FROM campaign_accounts WHERE campaign_id = ?",
                         [cid])["n"].iloc[0]
    assert len(accounts) == members and {"user_agent", "first_seen", "share"} <= set(accounts.columns)
    charts = app.get("plotly_chart")
    assert len(charts) >= 2  # heatmap + model mix
    assert any('"type":"heatmap"' in c.proto.spec.replace(" ", "") for c in charts)


def test_navigation_from_campaign_to_account(app, sample_workspace):
    cid = flagged(sample_workspace)["campaign_id"].iloc[0]
    app.session_state["campaign_id"] = cid
    goto(app, "Campaign")
    account = app.selectbox(key="campaign_open_account").value
    next(b for b in app.button if b.label == "Open account page").click().run()
    assert app.sidebar.radio(key="page").value == "Account"
    assert any(t.value == f"Account {account}" for t in app.text)
    assert any(cid in str(d.value.to_dict()) for d in app.dataframe)


def test_deep_link_opens_campaign(sample_workspace, monkeypatch):
    cid = flagged(sample_workspace)["campaign_id"].iloc[0]
    at = make_app(sample_workspace, monkeypatch)
    at.query_params["page"] = "Campaign"
    at.query_params["campaign"] = cid
    at.run()
    assert not at.exception
    assert at.sidebar.radio(key="page").value == "Campaign" and at.selectbox(key="campaign_id").value == cid


# --- map selection -------------------------------------------------------------------------------------------------------
def test_map_selection_lists_prompts_and_accounts(sample_workspace):
    ws = str(sample_workspace)
    state = data.workspace_state(ws)
    points = data.map_points(ws, state.run_key)
    assert 0 < len(points) <= data.MAP_MAX_POINTS
    assert len(data.map_points(ws, state.run_key, max_points=100)) == 100  # server-side sampling
    chosen = points[points["cluster_id"] >= 0].head(5)
    # The event shape st.plotly_chart(on_select="rerun") returns for a lasso selection.
    event = {"selection": {"points": [
        {"curve_number": 0, "point_index": 0, "x": r.x, "y": r.y, "customdata": [r.prompt_hash]}
        for r in chosen.itertuples()], "box": [], "lasso": [{"x": [0, 1], "y": [0, 1]}]}}
    hashes = data.selection_hashes(event, points)
    assert hashes == chosen["prompt_hash"].tolist()
    assert data.selection_hashes({"selection": {"points": [{"point_index": 3}]}}, points) == \
        [points["prompt_hash"].iloc[3]]
    assert data.selection_hashes(None, points) == [] and data.selection_hashes({"selection": {}}, points) == []
    prompts, accounts = data.prompts_and_accounts(ws, hashes)
    assert set(prompts["prompt_hash"]) == set(hashes)
    assert accounts["requests"].sum() == prompts["requests"].sum() > 0


def test_map_page_colour_modes(app):
    goto(app, "Map")
    for colour in ("campaign", "score", "cluster"):
        app.radio(key="map_colour").set_value(colour).run()
        assert not app.exception
        assert len(app.get("plotly_chart")) == 1


# --- search ------------------------------------------------------------------------------------------------------------------
def test_search_seed_and_expand(app, sample_workspace):
    cid = flagged(sample_workspace)["campaign_id"].iloc[0]
    example = data.campaign_detail(str(sample_workspace), data.workspace_state(str(sample_workspace)).run_key,
                                   cid)["examples"][0]
    goto(app, "Search")
    app.text_input(key="search_query").set_value(example[:1000]).run()
    assert not app.exception, [e.value for e in app.exception]
    hits, accounts, clusters = (d.value for d in app.dataframe[:3])
    assert len(hits) == 30 and hits["similarity"].is_monotonic_decreasing
    assert hits["similarity"].iloc[0] > 0.9  # the example prompt itself (or a near copy) comes first
    assert cid in set(hits["campaign_id"].dropna())  # its campaign is reached by meaning
    assert len(accounts) > 0 and len(clusters) > 0
    # expand: the accounts' clusters include the campaign's clusters
    assert cid in set(clusters["campaign_id"].dropna())
    # seed a new search from a hit
    next(b for b in app.button if b.label == "Search from this prompt").click().run()
    assert app.text_input(key="search_query").value == hits["text"].iloc[0][:2000]


# --- triage: who decided -------------------------------------------------------------------------------------------------------------------
def test_triage_write_and_read_back(sample_workspace_copy, monkeypatch):
    cid = flagged(sample_workspace_copy)["campaign_id"].iloc[0]
    at = make_app(sample_workspace_copy, monkeypatch)
    at.run()
    at.session_state["campaign_id"] = cid
    goto(at, "Campaign")
    at.radio(key="triage_status").set_value("confirmed")
    at.text_area(key="triage_note").set_value("same tool scaffold, 20 accounts on one /24")
    at.text_input(key="triage_analyst").set_value("alice")
    next(b for b in at.button if b.label == "Save decision").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Saved: confirmed" in s.value for s in at.success)

    with Workspace(str(sample_workspace_copy), read_only=True) as ws:
        latest = ws.triage_latest()
    row = latest[latest["campaign_id"] == cid].iloc[0]
    assert (row["status"], row["note"], row["analyst"]) == ("confirmed", "same tool scaffold, 20 accounts on one /24",
                                                            "local:alice")  # typed without login: unverified
    # A fresh app (a restart) shows it in the list, the filter and the exports.
    at2 = make_app(sample_workspace_copy, monkeypatch)
    at2.run()
    goto(at2, "Campaigns")
    at2.multiselect(key="f_triage").set_value(["confirmed"]).run()
    assert at2.dataframe[0].value["campaign_id"].tolist() == [cid]
    goto(at2, "Triage")
    assert cid in at2.dataframe[1].value["campaign_id"].tolist()
    doc = json.loads(data.export_campaign_json(str(sample_workspace_copy), cid))
    assert doc["campaigns"][0]["triage"]["status"] == "confirmed"


SIGNED_IN = {"is_logged_in": True, "email": "alice@corp.example", "email_verified": True, "sub": "00u1a2b3",
             "name": "Alice"}


@pytest.mark.parametrize("user,required,typed,local_user,expected", [
    (SIGNED_IN, True, "", "svc-analyzer", "alice@corp.example"),
    (SIGNED_IN, True, "mallory", "svc-analyzer", "alice@corp.example"),  # typing another name changes nothing
    (SIGNED_IN, False, "", "svc-analyzer", "alice@corp.example"),  # optional login: the identity still wins
    ({**SIGNED_IN, "email_verified": False}, True, "", "svc", "sub:00u1a2b3"),  # unverified e-mail: the subject
    ({"is_logged_in": True, "sub": "00u1a2b3"}, True, "", "svc", "sub:00u1a2b3"),
    ({}, False, "", "bob", "local:bob"),  # no login: the app process's user, marked as unverified
    ({}, False, "  carol ", "bob", "local:carol"),
    ({}, False, "local:carol", "bob", "local:carol"),
    ({}, False, "", None, "local:unknown"),
    ({"email": "test@example.com"}, False, "", "bob", "local:bob"),  # Streamlit's local placeholder user
    ({"is_logged_in": False, "email": "alice@corp.example"}, False, "", "bob", "local:bob"),
])
def test_analyst_identity(user, required, typed, local_user, expected):
    assert auth.analyst_identity(user, required, typed, local_user) == expected
    if user.get("is_logged_in"):  # OIDC configured but optional: the signed-in identity, nothing else
        assert auth.analyst_identity(user, required, "mallory", local_user, login_configured=True) == expected


@pytest.mark.parametrize("user", [{}, {"is_logged_in": False}, {"email": "test@example.com"},
                                  {"is_logged_in": True, "email_verified": False, "email": "x@y.z"}])
def test_analyst_identity_refuses_when_login_is_required_and_nobody_is_identified(user):
    with pytest.raises(auth.AnalystUnknown):
        auth.analyst_identity(user, True, "alice", "svc-analyzer")


@pytest.mark.parametrize("user", [{}, {"is_logged_in": False}, {"email": "test@example.com"},
                                  {"is_logged_in": False, "email": "alice@corp.example", "name": "Alice"}])
@pytest.mark.parametrize("typed", ["", "alice@corp.example", "local:alice"])
def test_analyst_identity_never_trusts_a_typed_name_or_user_while_login_is_configured(user, typed):
    """OIDC configured but login optional (viewing open): a decision still needs the signed-in identity; the
    server's $USER (a service account) and a name typed in the browser are not identities."""
    with pytest.raises(auth.AnalystUnknown, match="log in"):
        auth.analyst_identity(user, False, typed, "svc-analyzer", login_configured=True)


def test_triage_records_the_signed_in_identity_not_the_server_user(sample_workspace_copy, monkeypatch):
    cid = flagged(sample_workspace_copy)["campaign_id"].iloc[0]
    at = make_app(sample_workspace_copy, monkeypatch, ANALYZER_REQUIRE_LOGIN="1", USER="svc-analyzer")
    at.user = dict(SIGNED_IN)
    at.run()
    at.session_state["campaign_id"] = cid
    goto(at, "Campaign")
    assert not [t for t in at.text_input if t.key == "triage_analyst"]  # nothing to type: the login decides
    assert any("Recorded as: alice@corp.example (signed in)" in t.value for t in at.text)
    at.radio(key="triage_status").set_value("dismissed")
    next(b for b in at.button if b.label == "Save decision").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    analysts = data.query(str(sample_workspace_copy), "SELECT analyst FROM triage")["analyst"].tolist()
    assert analysts == ["alice@corp.example"]


def test_triage_without_login_records_the_local_user_marked_unverified(sample_workspace_copy, monkeypatch):
    cid = flagged(sample_workspace_copy)["campaign_id"].iloc[0]
    at = make_app(sample_workspace_copy, monkeypatch, USER="svc-analyzer")
    at.run()
    at.session_state["campaign_id"] = cid
    goto(at, "Campaign")
    next(b for b in at.button if b.label == "Save decision").click().run()
    assert not at.exception and not at.error
    analysts = data.query(str(sample_workspace_copy), "SELECT analyst FROM triage")["analyst"].tolist()
    assert analysts == ["local:svc-analyzer"]


def test_triage_with_login_configured_but_optional_needs_a_signed_in_analyst(sample_workspace_copy, monkeypatch):
    cid = flagged(sample_workspace_copy)["campaign_id"].iloc[0]
    at = make_app(sample_workspace_copy, monkeypatch, USER="svc-analyzer")
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x",
                          "client_id": "id", "client_secret": "s",
                          "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
    at.run()
    at.session_state["campaign_id"] = cid
    goto(at, "Campaign")
    assert not [t for t in at.text_input if t.key == "triage_analyst"]  # no name to type while login is on
    assert any(b.label == "Log in to triage" for b in at.sidebar.button)
    next(b for b in at.button if b.label == "Save decision").click().run()
    assert [e.value for e in at.error] == ["this deployment has sign-in configured; log in to record a decision"]
    assert data.query(str(sample_workspace_copy), "SELECT analyst FROM triage").empty  # not local:svc-analyzer


def test_triage_refused_while_an_analysis_writes(sample_workspace_copy):
    """A running analysis holds DuckDB's only write access: the app says so instead of failing."""
    db = str(sample_workspace_copy / DB_NAME)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({db!r})
        print("ready", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(data.WorkspaceUnavailable, match="running analysis"):
            data.write_triage(str(sample_workspace_copy), "c-x", "confirmed", "", "")
        with pytest.raises(data.WorkspaceUnavailable, match="running analysis"):
            data.workspace_state(str(sample_workspace_copy))
    finally:
        holder.kill()
        holder.wait()
    data.write_triage(str(sample_workspace_copy), "c-x", "dismissed", "n", "a")  # works once it is gone
    assert data.triage_latest(str(sample_workspace_copy))["status"].tolist() == ["dismissed"]


# --- export ---------------------------------------------------------------------------------------------------------------------
def test_export_content(sample_workspace):
    ws = str(sample_workspace)
    cid, label = flagged(sample_workspace).iloc[0]
    full = json.loads(data.export_campaign_json(ws))
    assert full["schema_version"] == 1 and len(full["campaigns"]) == len(data.query(ws, "SELECT * FROM campaigns"))
    one = json.loads(data.export_campaign_json(ws, cid))
    assert one["schema_version"] == 1 and [c["id"] for c in one["campaigns"]] == [cid]
    assert one["campaigns"][0]["label"] == label and one["campaigns"][0]["flagged"] is True
    md = data.export_markdown(ws, cid)
    assert md.startswith("# Campaign report") and cid in md
    rows = data.export_accounts_csv(ws, cid).splitlines()
    members = data.query(ws, "SELECT account_id FROM campaign_accounts WHERE campaign_id = ?", [cid])
    assert rows[0].startswith("account_id,score,campaign_id") and len(rows) - 1 == len(members)
    assert len(data.export_accounts_csv(ws).splitlines()) - 1 == len(data.query(ws, "SELECT * FROM accounts"))


def test_export_buttons_render(app):
    goto(app, "Export")
    buttons = app.get("download_button")
    assert len(buttons) == 3


# --- hostile text -----------------------------------------------------------------------------------------------------------------
def test_hostile_prompt_text_renders_inert(sample_workspace_copy, monkeypatch):
    ws = sample_workspace_copy
    cid = flagged(ws)["campaign_id"].iloc[0]
    evil = " ".join(HOSTILE) + " RED"
    long_evil = evil + " padding" * 80
    con = duckdb.connect(str(ws / DB_NAME))
    con.execute("UPDATE campaigns SET label = ?, template = ?, keywords = ?, examples = ?, evidence = ? "
                "WHERE campaign_id = ?",
                [evil, evil, [evil], [evil, long_evil], [f"Template {evil}"],
                 cid])
    con.execute("UPDATE clusters SET label = ? WHERE cluster_id IN (SELECT cluster_id FROM cluster_campaigns "
                "WHERE campaign_id = ?)", [evil, cid])
    con.execute("UPDATE prompts SET text = ? || text WHERE prompt_hash IN (SELECT pc.prompt_hash FROM "
                "prompt_clusters pc JOIN cluster_campaigns c USING (cluster_id) WHERE c.campaign_id = ?)",
                [evil + " ", cid])
    con.execute("UPDATE requests SET user_agent = ? WHERE account_id IN "
                "(SELECT account_id FROM campaign_accounts WHERE campaign_id = ?)", [evil, cid])
    account = con.execute("SELECT account_id FROM campaign_accounts WHERE campaign_id = ? LIMIT 1", [cid]).fetchone()[0]
    con.close()

    at = make_app(ws, monkeypatch)
    at.run()
    seen_plain = []
    for page, setup in (("Campaigns", {}), ("Campaign", {"campaign_id": cid}), ("Account", {"account_id": account}),
                        ("Map", {}), ("Triage", {}), ("Overview", {})):
        for k, v in setup.items():
            at.session_state[k] = v
        goto(at, page)
        for s in markdown_like(at):
            for h in HOSTILE:
                assert h not in s, (page, s)
            assert "evil/img" not in s and "<script" not in s, (page, s)
        plain = [t.value for t in at.text] + [c.value for c in at.code]
        assert not any("\x1b" in p for p in plain), page
        seen_plain += plain
        for chart in at.get("plotly_chart"):
            spec = json.dumps(json.loads(chart.proto.spec), ensure_ascii=False)  # JSON escapes decoded
            assert "<script>" not in spec and "\x1b" not in spec, page
        for frame in at.dataframe:
            assert not frame.value.astype(str).apply(lambda col: col.str.contains("\x1b", regex=False)).any().any()
    # the text is still there, shown verbatim as plain text (escape sequence removed)
    assert any("<script>alert(1)</script> ![x](http://evil/img.png) \\u001b[31m RED" in p for p in seen_plain)

    at.session_state["campaign_id"] = cid
    goto(at, "Search")
    at.text_input(key="search_query").set_value("autonomous agent tools function call").run()
    assert not at.exception
    for s in markdown_like(at):
        assert "<script" not in s and "evil/img" not in s
    assert hover("<b>x</b>\x1b[31m") == "&lt;b&gt;x&lt;/b&gt;\\u001b[31m"


# --- workspace problems and the login gate -----------------------------------------------------------------------------------------
def test_missing_and_empty_workspace_messages(tmp_path, monkeypatch):
    at = make_app(tmp_path / "nope", monkeypatch)
    at.run()
    assert not at.exception and "not an analyzer workspace" in at.error[0].value
    Workspace(str(tmp_path / "empty"), create=True).close()
    at = make_app(tmp_path / "empty", monkeypatch)
    at.run()
    assert not at.exception and "empty" in at.error[0].value
    monkeypatch.delenv("ANALYZER_WORKSPACE")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert "No workspace given" in at.error[0].value


def test_login_required_refuses_without_user(sample_workspace, monkeypatch):
    at = make_app(sample_workspace, monkeypatch, ANALYZER_REQUIRE_LOGIN="1")
    at.run()
    assert not at.exception
    assert "requires sign-in" in at.error[0].value
    assert len(at.dataframe) == 0 and len(at.metric) == 0
    assert not [r for r in at.sidebar.radio if r.key == "page"]


def test_parse_args():
    assert parse_args(["app.py", "--workspace", "w"]).workspace == "w"
    args = parse_args(["app.py", "-q", "--", "--workspace", "w2", "--require-login"])
    assert args.workspace == "w2" and args.require_login
    assert parse_args(["pytest", "-k", "x", "--work", "y"]).workspace is None


# --- control and bidi characters in identifiers ----------------------------------------------------------------------
ODD = "\u202e"  # right-to-left override
C1 = "\u0085"   # next line (C1)


def _plain_strings(at: AppTest) -> list[str]:
    out = [str(t.value) for t in at.text] + [str(c.value) for c in at.code] + markdown_like(at)
    for frame in at.dataframe:
        out += [str(v) for v in frame.value.astype(str).to_numpy().ravel()]
    for box in list(at.selectbox) + list(at.multiselect):
        out += [str(o) for o in box.options]
    return out


def test_odd_account_ids_show_as_visible_escapes_and_still_navigate(sample_workspace_copy, monkeypatch):
    ws = sample_workspace_copy
    cid = flagged(ws)["campaign_id"].iloc[0]
    con = duckdb.connect(str(ws / DB_NAME))
    account = con.execute("SELECT account_id FROM campaign_accounts WHERE campaign_id = ? "
                          "ORDER BY n_requests DESC, account_id LIMIT 1", [cid]).fetchone()[0]
    odd = f"{account}{ODD}txt.exe{C1}"
    for table in ("requests", "accounts", "campaign_accounts"):
        con.execute(f"UPDATE {table} SET account_id = ? WHERE account_id = ?", [odd, account])
    con.execute("UPDATE requests SET user_agent = ?, org_id = ? WHERE account_id = ?",
                [f"curl/8{ODD}\u2066", f"org{C1}1", odd])
    con.close()
    shown = f"{account}\\u202etxt.exe\\u0085"

    at = make_app(ws, monkeypatch)
    at.run()
    at.session_state["campaign_id"] = cid
    goto(at, "Campaign")
    seen = _plain_strings(at)
    assert not [s for s in seen if ODD in s or C1 in s]
    assert any(shown in s for s in seen)  # the odd id is visible as such
    box = at.selectbox(key="campaign_open_account")
    assert box.value == odd and shown in box.options  # the widget keeps the raw id, the label shows the escape
    next(b for b in at.button if b.label == "Open account page").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["page"] == "Account"
    seen = _plain_strings(at)
    assert any(f"Account {shown}" in s for s in seen)  # the account page found the raw id
    assert any("curl/8\\u202e" in s for s in seen) and any("org\\u00851" in s for s in seen)
    assert not [s for s in seen if ODD in s or C1 in s]
    # an analyst can paste the escaped id into the box: it finds the same account
    at.text_input(key="account_typed").set_value(shown).run()
    assert any(f"Account {shown}" in t.value for t in at.text)
    assert not at.warning
    # the human-facing exports escape it the same way; the JSON (for machines) keeps it exact, in ASCII bytes
    text = data.export_campaign_json(str(ws), cid)
    assert text.isascii() and odd in json.loads(text)["campaigns"][0]["accounts"]
    assert ODD not in data.export_markdown(str(ws), cid) and shown in data.export_markdown(str(ws), cid)
    assert any(line.startswith(shown + ",") for line in data.export_accounts_csv(str(ws), cid).splitlines())


# --- campaign history across runs ------------------------------------------------------------------------------------
@pytest.fixture
def two_runs(sample_workspace_copy) -> tuple[Path, str, str]:
    """The sample re-scored after one flagged campaign's accounts were removed (as if banned and purged):
    run 2 continues the other campaigns and records that one as gone. Returns (workspace, gone id, kept id)."""
    from analyzer import pipeline

    ids = flagged(sample_workspace_copy)["campaign_id"].tolist()
    gone, kept = ids[0], ids[1]
    ws = Workspace(str(sample_workspace_copy))
    with ws.writing():
        ws.db.execute("DELETE FROM requests WHERE account_id IN (SELECT account_id FROM campaign_accounts "
                      "WHERE campaign_id = ?)", [gone])
        run_id = ws.start_run("score", {}, {})
        ws.finish_run(run_id, pipeline.score(ws, pipeline.RunOptions(progress=False), run_id))
    ws.close()
    return sample_workspace_copy, gone, kept


def test_overview_lists_what_changed_and_the_campaign_page_shows_its_history(two_runs, monkeypatch):
    ws, gone, kept = two_runs
    state = data.workspace_state(str(ws))
    changes, run = data.latest_transitions(str(ws), state.run_key)
    assert run == 2
    row = changes.set_index("campaign_id").loc[gone]
    assert row["transition"] == "gone" and row["change"] == "no longer flagged"
    assert kept not in set(changes["campaign_id"])  # continued, still flagged: not a change

    at = make_app(ws, monkeypatch)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Campaigns: what changed" in [s.value for s in at.subheader]
    assert any(t.value.startswith("Run 2: ") and "1 gone" in t.value for t in at.text)
    assert gone in next(d.value for d in at.dataframe if "transition" in d.value.columns)["campaign_id"].tolist()

    at.session_state["campaign_id"] = kept
    goto(at, "Campaign")
    assert "History across runs" in [s.value for s in at.subheader]
    hist = next(d.value for d in at.dataframe if "transition" in d.value.columns)
    assert hist["run_id"].tolist() == [1, 2] and hist["transition"].tolist() == ["new", "continued"]
    assert any("Score and accounts per run" in c.proto.spec for c in at.get("plotly_chart"))
