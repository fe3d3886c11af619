"""Watchlists and STIX: matching rule (pure), flags from confirmed and dismissed entries, CLI, and an
export -> import -> run on a fresh workspace that flags a confirmed campaign's replacement accounts."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import stix2
from click.testing import CliRunner

from analyzer import watch as W
from analyzer.campaigns import CampaignResult
from analyzer.cli import main
from analyzer.export import load_campaigns, to_csv
from analyzer.workspace import Workspace

T0 = pd.Timestamp("2026-01-05T10:00:00Z")


# --- pure: patterns, content, the account rule --------------------------------------------------------------------
def test_sentence_pattern_matches_the_sentence_in_any_case_spacing_and_numbers():
    rx = W.sentence_pattern("score the response below from 0 to 0 using the rubric")
    import re

    assert re.search(rx, "Please SCORE the response  below from 1 to 10\nusing the rubric.")
    assert not re.search(rx, "score the response above from 1 to 10 using the rubric")
    assert W.pattern_words(rx) == 11


def test_template_match_needs_enough_template_words():
    pats = [{"regex": W.sentence_pattern(s), "words": len(s.split())}
            for s in ("you are a strict grader", "respond with json only")]
    texts = ["You are a strict grader. Respond with JSON only. Grade: 2+2=5", "You are a strict grader. Hi",
             "respond with json only please"]
    assert W.template_match(texts, pats, min_words=8).tolist() == [True, False, False]


def test_content_similarity_by_vector_hash_and_template():
    fp = W.Fingerprint("c-1", prompt_sha256=[W.prompt_sha256("exact prompt")],
                       template_patterns=[{"regex": W.sentence_pattern("imagine and articulate the internal "
                                                                       "reasoning step by step"), "words": 9}])
    texts = ["exact prompt", "Imagine and articulate the internal reasoning step by step: 3x=9", "other", "near"]
    sims = np.array([0.1, 0.2, 0.5, 0.9])
    match, sim = W.content_similarity(fp, [W.prompt_sha256(t) for t in texts], texts, sims, W.WatchConfig())
    assert match.tolist() == [True, True, False, True]
    assert sim[0] == 1.0 and sim[3] == pytest.approx(0.9)


def _req(rows):
    return pd.DataFrame(rows, columns=["account_id", "ts", "prompt_hash", "ip", "user_agent", "api_key_id",
                                       "payment_id"])


def test_account_rule_requests_share_infrastructure_and_payer():
    entry = W.WatchEntry("w-1", "c-1", "confirmed", "local",
                         W.Fingerprint("c-1", infra={"subnet": ["203.0.113.0/24"], "payment_id": ["pay-9"]}))
    rows = []
    for i in range(4):  # 3 of 4 match: continues
        rows.append(("a_full", T0, "m" if i < 3 else "x", "198.51.100.1", None, None, None))
    for i in range(20):  # 3 of 20 match (15%), no watched infrastructure: ordinary user
        rows.append(("b_mixed", T0, "m" if i < 3 else "x", "198.51.100.2", None, None, None))
    for i in range(20):  # 3 of 20 match from the watched subnet: a hydra account
        rows.append(("c_hydra", T0, "m" if i < 3 else "x", "203.0.113.7", None, None, None))
    rows += [("d_two", T0, "m", None, None, None, None), ("d_two", T0, "m", None, None, None, None)]
    rows += [("e_payer", T0, "m", None, None, None, "pay-9"), ("e_payer", T0, "x", None, None, None, "pay-9")]
    rows += [("f_infra_only", T0, "x", "203.0.113.9", None, None, "pay-9")] * 5
    pm = pd.DataFrame({"prompt_hash": ["m", "x"], "match": [True, False], "similarity": [0.9, np.nan]})
    got = W.match_accounts(_req(rows), entry, pm, W.WatchConfig())
    assert sorted(got["account_id"]) == ["a_full", "c_hydra", "e_payer"]
    a = got.set_index("account_id").loc["a_full"]
    assert a["n_match"] == 3 and a["n_total"] == 4 and a["similarity"] == pytest.approx(0.9)
    assert got.set_index("account_id").loc["c_hydra", "infra"] == ["subnet 203.0.113.0/24"]


def _result(campaigns: list[dict], members: dict[str, list[str]], accounts: list[str]) -> CampaignResult:
    camps = pd.DataFrame([{"campaign_id": c["id"], "rank": i + 1, "score": c["score"], "flagged": c["score"] >= 0.5,
                           "label": "x", "kind": "", "keywords": [], "template": "", "n_accounts": len(members[c["id"]]),
                           "n_requests": 10, "first_seen": T0, "last_seen": T0, "clusters": [1], "signals": {},
                           "evidence": ["e"], "examples": []} for i, c in enumerate(campaigns)])
    ca = pd.DataFrame([{"campaign_id": c, "account_id": a, "n_requests": 5, "share": 1.0, "score": 0.3,
                        "evidence": []} for c, accs in members.items() for a in accs])
    acc = pd.DataFrame({"account_id": accounts, "n_requests": 5, "n_prompts": 5, "first_seen": T0, "last_seen": T0,
                        "top_cluster": 1, "campaign_id": None, "score": 0.1, "signals": [{} for _ in accounts]})
    return CampaignResult(camps, ca, acc, {})


def _matches(watch_id, accounts, n_match=4, n_total=4):
    return pd.DataFrame([{"watch_id": watch_id, "account_id": a, "n_total": n_total, "n_match": n_match,
                          "share": n_match / n_total, "similarity": 0.9, "first_match": T0, "infra": [],
                          "payer": False} for a in accounts])


def test_confirmed_entry_joins_a_flagged_carrier_or_forms_its_own_campaign():
    entry = W.WatchEntry("w-1", "c-old", "confirmed", "local",
                         W.Fingerprint("c-old", label="rubric grading: 9 accounts", score=0.7,
                                       accounts=["o1", "o2"]), analyst="alice", created_at="2026-01-02T00:00:00")
    req = _req([(a, T0, "m", None, None, None, None) for a in ("n1", "n2", "n3", "x")])
    # a flagged campaign most of whose members match carries the entry: the others join it
    res = _result([{"id": "c-now", "score": 0.6}], {"c-now": ["n1", "n2"]}, ["n1", "n2", "n3", "x"])
    out, outcome = W.apply_watchlist(res, req, [entry], _matches("w-1", ["n1", "n2", "n3"]), 0.5)
    assert outcome.continued == {"w-1": "c-now"} and not outcome.formed
    assert set(out.campaign_accounts.query("campaign_id == 'c-now'")["account_id"]) == {"n1", "n2", "n3"}
    row = out.campaigns.iloc[0]
    assert row["flagged"] and row["evidence"][0].startswith("Continues confirmed campaign c-old")
    assert "alice on 2026-01-02" in row["evidence"][0]
    n3 = out.accounts.set_index("account_id").loc["n3"]
    assert n3["score"] >= 0.5 and n3["campaign_id"] == "c-now"
    assert (out.campaign_accounts["score"] >= 0.5).all()  # members that match reach the threshold too
    assert out.campaign_accounts.set_index("account_id").loc["n1", "evidence"][0].startswith("continues confirmed")
    # an unflagged campaign (a look-alike with other members) is not raised: a campaign is formed instead
    res = _result([{"id": "c-low", "score": 0.2}], {"c-low": ["n1", "n2", "x"]}, ["n1", "n2", "n3", "x"])
    out, outcome = W.apply_watchlist(res, req, [entry], _matches("w-1", ["n1", "n2", "n3"]), 0.5)
    assert len(outcome.formed) == 1
    formed = out.campaigns.set_index("campaign_id").loc[outcome.formed[0]]
    assert formed["flagged"] and formed["score"] == pytest.approx(0.7) and formed["n_accounts"] == 3
    assert formed["label"] == "continues confirmed campaign c-old: rubric grading"
    assert not out.campaigns.set_index("campaign_id").loc["c-low", "flagged"]
    assert set(out.campaign_accounts.query("campaign_id == @outcome.formed[0]")["account_id"]) == {"n1", "n2", "n3"}
    assert out.campaigns["rank"].tolist() == [1, 2]


def test_dismissed_campaign_is_not_flagged_again_unless_it_grew():
    entry = W.WatchEntry("w-2", "c-d", "dismissed", "local",
                         W.Fingerprint("c-d", n_accounts=4, accounts=["a1", "a2", "a3", "a4"]),
                         analyst="bob", created_at="2026-01-03T00:00:00", note="an eval harness")
    req = _req([(a, T0, "m", None, None, None, None) for a in ("a1", "a2", "a3", "a4", "a5")])
    no_match = _matches("w-2", [])
    res = _result([{"id": "c-d", "score": 0.8}], {"c-d": ["a1", "a2", "a3", "a5"]}, ["a1", "a2", "a3", "a4", "a5"])
    out, outcome = W.apply_watchlist(res, req, [entry], no_match, 0.5)
    row = out.campaigns.iloc[0]
    assert not row["flagged"] and row["score"] == pytest.approx(0.8)  # score kept, flag suppressed
    assert row["evidence"][0].startswith("Flag suppressed: dismissed by bob on 2026-01-03 (an eval harness)")
    assert outcome.suppressed == {"c-d": "w-2"}
    grown = [f"a{i}" for i in range(1, 8)]  # 7 accounts >= 1.5 x 4
    req = _req([(a, T0, "m", None, None, None, None) for a in grown])
    res = _result([{"id": "c-d2", "score": 0.8}], {"c-d2": grown}, grown)
    out, outcome = W.apply_watchlist(res, req, [entry], no_match, 0.5)
    assert out.campaigns.iloc[0]["flagged"] and outcome.raised_again == {"c-d2": "w-2"}
    assert "changed materially: 7 accounts, 4 at dismissal" in out.campaigns.iloc[0]["evidence"][0]
    # same size, but on a proxy subnet the dismissed campaign did not use: raised again
    moved = ["a1", "a2", "a3", "a4"]
    req = _req([(a, T0, "m", f"198.51.100.{i}", None, None, None) for i, a in enumerate(moved)])
    res = _result([{"id": "c-d", "score": 0.8}], {"c-d": moved}, moved)
    out, outcome = W.apply_watchlist(res, req, [entry], no_match, 0.5)
    assert out.campaigns.iloc[0]["flagged"] and "new infrastructure (subnet 198.51.100.0/24)" in \
        out.campaigns.iloc[0]["evidence"][0]


# --- the workspace: add, list, remove, score --------------------------------------------------------------------------
def _flagged(path) -> list[dict]:
    ws = Workspace(str(path), read_only=True)
    try:
        return [c for c in load_campaigns(ws) if c["flagged"]]
    finally:
        ws.close()


def test_watch_cli_add_list_remove(sample_workspace_copy):
    ws = str(sample_workspace_copy)
    cid = _flagged(ws)[0]["id"]
    run = CliRunner().invoke
    res = run(main, ["watch", "add", cid, "-w", ws, "--note", "same scaffold", "--analyst", "alice"])
    assert res.exit_code == 0, res.output
    wid = res.output.split(":")[0]
    assert wid == W.local_watch_id(cid) and " vectors, " in res.output
    res = run(main, ["watch", "list", "-w", ws])
    assert wid in res.output and "confirmed" in res.output and "alice" in res.output
    res = run(main, ["watch", "list", "-w", ws, "--json"])
    doc = json.loads(res.output.splitlines()[0])
    assert doc["campaign_id"] == cid and doc["fingerprint"]["n_accounts"] > 0 and doc["note"] == "same scaffold"
    assert doc["fingerprint"]["template_patterns"] and doc["fingerprint"]["infra"]
    res = run(main, ["watch", "add", cid, "-w", ws, "--dismiss"])  # a new decision replaces the old one
    assert res.exit_code == 0 and "dismissed" in run(main, ["watch", "list", "-w", ws]).output
    assert len(run(main, ["watch", "list", "-w", ws]).output.strip().splitlines()) == 1
    assert run(main, ["watch", "remove", wid, "-w", ws]).exit_code == 0
    assert "no watch entries" in run(main, ["watch", "list", "-w", ws]).output
    res = run(main, ["watch", "remove", wid, "-w", ws])
    assert res.exit_code != 0 and "no watch entry" in res.output
    res = run(main, ["watch", "add", "c-nope", "-w", ws])
    assert res.exit_code != 0 and "no campaign" in res.output and "Traceback" not in res.output


def test_score_stage_applies_confirmed_and_dismissed_entries(sample_workspace_copy):
    from analyzer.pipeline import RunOptions, add_watch, score

    flagged = _flagged(sample_workspace_copy)
    confirmed, dismissed = flagged[0], flagged[1]
    ws = Workspace(str(sample_workspace_copy))
    with ws.writing():
        add_watch(ws, confirmed["id"], "confirmed", "alice")
        add_watch(ws, dismissed["id"], "dismissed", "bob", "a known harness")
        stats = score(ws, RunOptions(progress=False))
    camps = {c["id"]: c for c in load_campaigns(ws)}
    ws.close()
    assert stats["watch"]["entries"] == 2 and stats["watch"]["suppressed"] == {dismissed["id"]: W.local_watch_id(
        dismissed["id"])}
    d = camps[dismissed["id"]]
    assert not d["flagged"] and d["score"] == pytest.approx(dismissed["score"])
    assert d["evidence"][0].startswith("Flag suppressed: dismissed by bob on ")
    c = camps[confirmed["id"]]
    assert c["flagged"] and c["evidence"][0].startswith(f"Continues confirmed campaign {confirmed['id']}")
    assert set(confirmed["accounts"]) <= set(c["accounts"])


def test_a_failed_watch_write_leaves_the_previous_entry(sample_workspace_copy):
    from analyzer.pipeline import add_watch, store_watch, watch_entries

    cid = _flagged(sample_workspace_copy)[0]["id"]
    ws = Workspace(str(sample_workspace_copy))
    with ws.writing():
        before = add_watch(ws, cid, "confirmed", "alice")
        broken = W.WatchEntry(before.watch_id, cid, "dismissed", "local",
                              W.Fingerprint(cid, model_key="k", vectors=np.array([["not a number"]])), analyst="bob")
        with pytest.raises(ValueError):  # fails after the old rows were deleted, inside the transaction
            store_watch(ws, broken)
        after = watch_entries(ws)
    ws.close()
    assert len(after) == 1 and after[0].status == "confirmed" and after[0].analyst == "alice"
    assert np.allclose(after[0].fingerprint.vectors, before.fingerprint.vectors, atol=1e-6)


# --- STIX ---------------------------------------------------------------------------------------------------------------
def test_stix_export_is_a_valid_bundle_with_tlp_atlas_indicators_and_sightings(sample_workspace_copy, tmp_path):
    from stix2patterns.validator import run_validator

    out = tmp_path / "bundle.json"
    res = CliRunner().invoke(main, ["export", "-w", str(sample_workspace_copy), "--format", "stix", "--tlp",
                                    "amber+strict", "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.isascii()
    bundle = stix2.parse(text, allow_custom=True)
    objs = bundle.objects
    kinds = {o["type"] for o in objs}
    assert {"campaign", "indicator", "relationship", "attack-pattern", "sighting", "identity",
            "marking-definition"} <= kinds
    flagged = _flagged(sample_workspace_copy)
    camps = [o for o in objs if o["type"] == "campaign"]
    assert len(camps) == len(flagged)
    marking = next(o for o in objs if o["type"] == "marking-definition")
    assert marking["id"] == "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
    assert all(marking["id"] in o["object_marking_refs"] for o in objs if o["type"] != "marking-definition")
    ap = next(o for o in objs if o["type"] == "attack-pattern")
    ref = ap["external_references"][0]
    assert ref["source_name"] == "mitre-atlas" and ref["external_id"] == "AML.T0024.002"
    assert ap["name"] == "Extract AI Model"
    rels = [(o["source_ref"].split("--")[0], o["relationship_type"], o["target_ref"].split("--")[0])
            for o in objs if o["type"] == "relationship"]
    assert ("indicator", "indicates", "campaign") in rels and ("campaign", "uses", "attack-pattern") in rels
    sightings = [o for o in objs if o["type"] == "sighting"]
    assert sorted(s["count"] for s in sightings) == sorted(c["n_requests"] for c in flagged)
    assert all(s["first_seen"] <= s["last_seen"] for s in sightings if "last_seen" in s)
    patterns = [o["pattern"] for o in objs if o["type"] == "indicator" and o["pattern_type"] == "stix"]
    assert any(p.startswith("[ipv4-addr:value ISSUBSET '") for p in patterns)
    assert any("network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'" in p for p in patterns)
    assert any(p.startswith("[artifact:hashes.'SHA-256' = '") for p in patterns)
    for p in patterns:
        assert run_validator(p, stix_version="2.1") == [], p
    assert any(o["pattern_type"] == "pcre" for o in objs if o["type"] == "indicator")
    assert camps[0]["x_analyzer_fingerprint"]["model_key"]


def test_stix_quoting_round_trips_hostile_user_agents():
    from analyzer import stix

    fp = W.Fingerprint("c-q", infra={"user_agent": ["it's \\ odd\u202e"], "subnet": ["2001:db8:1::/48"]})
    bundle = stix.make_bundle([stix.Shared(fp, 5, 2, None, None)], tlp="clear", vectors=False)
    entries, _ = stix.entries_from_bundle(stix.bundle_json(bundle))
    assert entries[0].fingerprint.infra == {"user_agent": ["it's \\ odd\u202e"], "subnet": ["2001:db8:1::/48"]}


def test_watch_import_rejects_what_is_not_a_bundle(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"type": "bundle", "id": "nope"}')
    res = CliRunner().invoke(main, ["watch", "import", str(bad), "-w", str(tmp_path / "ws")])
    assert res.exit_code != 0 and "Traceback" not in res.output


def _replacement_log(tmp_path, per_account: int = 4):
    """The sample preset at another seed (same wrappers and proxies, new tasks and accounts): half of each
    campaign's accounts with their first ``per_account`` requests, beside all non-campaign traffic."""
    from analyzer.bench import corpora
    from analyzer.bench.scenario import Scenario, build_scenario, write_scenario

    if not corpora.available():
        pytest.skip("benchmark corpora not available")
    sc = build_scenario("sample", seed=1)
    df = sc.requests.sort_values("ts")
    every = {a for c in sc.truth["campaigns"].values() for a in c["accounts"]}
    replacements = {a for c in sc.truth["campaigns"].values() for a in sorted(c["accounts"])[: len(c["accounts"]) // 2]}
    keep = df[df["account_id"].isin(replacements)].groupby("account_id").head(per_account)
    log = pd.concat([df[~df["account_id"].isin(every)], keep]).sort_values("ts").reset_index(drop=True)
    path, _ = write_scenario(Scenario(log, sc.truth), tmp_path / "log")
    return path, replacements


def test_export_import_into_a_fresh_workspace_flags_replacement_accounts(sample_workspace_copy, tmp_path):
    from analyzer.pipeline import RunOptions, run_all

    ws0 = str(sample_workspace_copy)
    run = CliRunner().invoke
    for c in _flagged(ws0):
        assert run(main, ["watch", "add", c["id"], "-w", ws0]).exit_code == 0
    bundle = tmp_path / "shared.json"
    assert run(main, ["watch", "export", "-w", ws0, "-o", str(bundle), "--tlp", "green"]).exit_code == 0
    stix2.parse(bundle.read_text(), allow_custom=True)

    log, replacements = _replacement_log(tmp_path)
    results = {}
    for name in ("plain", "watched"):
        ws_path = tmp_path / name
        if name == "watched":
            res = run(main, ["watch", "import", str(bundle), "-w", str(ws_path)])
            assert res.exit_code == 0 and "imported 3 watch entries" in res.output, res.output
        ws = Workspace(str(ws_path), create=True)
        run_all(ws, [str(log)], RunOptions(progress=False, make_map=False))
        flagged = [c for c in load_campaigns(ws) if c["flagged"]]
        csv = pd.read_csv(io.StringIO(to_csv(ws)))
        ws.close()
        results[name] = (flagged, csv)
    plain = {a for c in results["plain"][0] for a in c["accounts"]}
    flagged, csv = results["watched"]
    watched = {a for c in flagged for a in c["accounts"]}
    # measured: 9 of 30 replacement accounts (4 requests each) flagged without the watchlist, 23 with it,
    # and no other account
    assert len(watched & replacements) >= len(plain & replacements) + 8
    assert len(watched & replacements) >= 0.66 * len(replacements)
    assert len(watched - replacements) <= 1
    carriers = [c for c in flagged if any(e.startswith("Continues confirmed campaign") for e in c["evidence"])]
    assert carriers
    # Every replacement account a carrier holds ranks above every account of the log that is not a campaign's
    # (a member's score follows its share of traffic in the campaign, so one that joined on its first request
    # through the operator's proxies can score below the flag threshold while flagged as a member).
    scores = csv.set_index("account_id")["score"]
    benign = scores[~scores.index.isin(replacements)].max()
    for c in carriers:
        carried = [a for a in c["accounts"] if a in replacements]
        assert carried and min(scores[a] for a in carried) > benign


def test_an_entry_from_another_tier_matches_without_vectors(sample_workspace_copy):
    from analyzer.pipeline import add_watch, check_watchlist, store_watch, watch_entries

    cid = _flagged(sample_workspace_copy)[0]["id"]
    ws = Workspace(str(sample_workspace_copy))
    with ws.writing():
        e = add_watch(ws, cid, "confirmed", "alice")
        e.fingerprint.model_key = "another-model-key"
        store_watch(ws, e)
        assert watch_entries(ws)[0].fingerprint.model_key == "another-model-key"
        req = ws.db.execute("SELECT account_id, ts, prompt_hash, ip, user_agent, api_key_id, payment_id "
                            "FROM requests").df()
        empty = CampaignResult(pd.DataFrame(columns=["campaign_id", "rank", "score", "flagged", "label", "kind",
                                                     "keywords", "template", "n_accounts", "n_requests",
                                                     "first_seen", "last_seen", "clusters", "signals", "evidence",
                                                     "examples"]),
                               pd.DataFrame(columns=["campaign_id", "account_id", "n_requests", "share", "score",
                                                     "evidence"]),
                               pd.DataFrame(columns=["account_id", "n_requests", "n_prompts", "first_seen",
                                                     "last_seen", "top_cluster", "campaign_id", "score", "signals"]),
                               {})
        _result_, stats = check_watchlist(ws, req, empty, 0.5)
    ws.close()
    assert any("another-model-key" in n for n in stats["notes"])
    assert stats["matched_accounts"] >= 0.8 * e.fingerprint.n_accounts  # by identical prompts and template
    shutil.rmtree(sample_workspace_copy, ignore_errors=True)


def test_triage_in_the_app_keeps_the_watchlist_in_step(sample_workspace_copy):
    from analyzer.app import data

    path = str(sample_workspace_copy)
    cid = _flagged(path)[0]["id"]

    def rows():
        ws = Workspace(path, read_only=True)
        try:
            return ws.watch_rows()
        finally:
            ws.close()

    data.write_triage(path, cid, "confirmed", "same /24", "local:alice")
    got = rows()
    assert got["status"].tolist() == ["confirmed"] and got["analyst"].tolist() == ["local:alice"]
    data.write_triage(path, cid, "dismissed", "an eval harness", "local:bob")
    assert rows()["status"].tolist() == ["dismissed"]
    data.write_triage(path, cid, "needs review", "", "local:bob")
    assert rows().empty


def test_another_providers_indicators_become_a_watch_entry_that_matches():
    from analyzer import stix

    sha = W.prompt_sha256("Rate this essay from 1 to 10 and explain the grade.")
    doc = {"type": "bundle", "id": "bundle--6f8a2c53-8f0e-4a52-9f0a-2b1d7e3c4a10", "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--0b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a60",
         "created": "2026-03-01T00:00:00Z", "modified": "2026-03-01T00:00:00Z", "valid_from": "2026-03-01T00:00:00Z",
         "pattern_type": "stix", "pattern": f"[ipv4-addr:value ISSUBSET '198.18.0.0/15'] OR "
                                           f"[artifact:hashes.'SHA-256' = '{sha.upper()}']"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a61",
         "created": "2026-03-01T00:00:00Z", "modified": "2026-03-01T00:00:00Z", "valid_from": "2026-03-01T00:00:00Z",
         "pattern_type": "pcre", "pattern": r"(?i)grade\s+like\s+a\s+strict\s+examiner"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--2b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a62",
         "created": "2026-03-01T00:00:00Z", "modified": "2026-03-01T00:00:00Z", "valid_from": "2026-03-01T00:00:00Z",
         "pattern_type": "yara", "pattern": "rule x { condition: true }"},
    ]}
    entries, notes = stix.entries_from_bundle(json.dumps(doc))
    assert len(entries) == 1 and any("yara" in n for n in notes)
    e = entries[0]
    assert e.source == "stix:bundle--6f8a2c53-8f0e-4a52-9f0a-2b1d7e3c4a10" and e.status == "confirmed"
    assert e.fingerprint.infra == {"ip_range": ["198.18.0.0/15"]} and e.fingerprint.prompt_sha256 == [sha]
    texts = ["Rate this essay from 1 to 10 and explain the grade.", "Grade like a strict examiner: essay 4",
             "What is the capital of France?"]
    shas = [W.prompt_sha256(t) for t in texts]
    match, _ = W.content_similarity(e.fingerprint, shas, texts, None, W.WatchConfig(min_template_words=5))
    assert match.tolist() == [True, True, False]
    pm = pd.DataFrame({"prompt_hash": ["h0", "h1", "h2"], "match": match, "similarity": [1.0, np.nan, np.nan]})
    rows = [("hydra", T0, "h0", "198.19.4.2", None, None, None)] * 3 + [("hydra", T0, "h2", "198.19.4.2", None,
                                                                        None, None)] * 9
    rows += [("elsewhere", T0, "h1", "203.0.113.5", None, None, None)] * 3 + [("elsewhere", T0, "h2", "203.0.113.5",
                                                                             None, None, None)] * 10
    got = W.match_accounts(_req(rows), e, pm, W.WatchConfig())
    # 3 of 12 requests match from inside the shared range: a hydra account; 3 of 13 (23%) from elsewhere: not
    assert got["account_id"].tolist() == ["hydra"]
    assert got.iloc[0]["infra"] == ["ip_range 198.18.0.0/15"]


def test_near_prompts_count_only_on_the_watched_network_or_payer():
    entry = W.WatchEntry("w-1", "c-1", "confirmed", "local",
                         W.Fingerprint("c-1", infra={"subnet": ["203.0.113.0/24"], "user_agent": ["bot/1"]}))
    pm = pd.DataFrame({"prompt_hash": ["near", "far"], "match": [False, False], "similarity": [0.65, 0.3]})
    rows = [("on_subnet", T0, "near", "203.0.113.4", None, None, None)] * 3
    rows += [("elsewhere", T0, "near", "198.51.100.4", None, None, None)] * 3
    rows += [("same_client", T0, "near", "198.51.100.5", "bot/1", None, None)] * 3
    rows += [("on_subnet_far", T0, "far", "203.0.113.5", None, None, None)] * 3
    got = W.match_accounts(_req(rows), entry, pm, W.WatchConfig())
    assert got["account_id"].tolist() == ["on_subnet"]
    assert got.iloc[0]["n_match"] == 3 and got.iloc[0]["similarity"] == pytest.approx(0.65)
