"""Stable campaign identities: the matching rule on small hand-made campaigns (pure functions)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analyzer.history import (
    HistoryConfig,
    PreviousState,
    campaign_members,
    ended_snapshots,
    history_rows,
    match_campaigns,
    overlaps,
    update_identity,
)


def camp(cid: str, accounts: list[str], prompts: list[str], per_account: int = 10) -> dict:
    """A campaign whose accounts send ``per_account`` requests each, spread evenly over ``prompts``."""
    return {"id": cid, "accounts": accounts, "prompts": prompts, "per_account": per_account}


def frames(camps: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, members = [], []
    for c in camps:
        n_req = c["per_account"] * len(c["accounts"])
        rows.append({"campaign_id": c["id"], "n_accounts": len(c["accounts"]), "n_requests": n_req,
                     "score": 0.8, "flagged": True,
                     "first_seen": utc("2026-01-01"), "last_seen": utc("2026-01-02 10:00:00.123456")})
        members += [(c["id"], "account", a, c["per_account"]) for a in c["accounts"]]
        members += [(c["id"], "prompt", p, max(1, n_req // len(c["prompts"]))) for p in c["prompts"]]
    return (pd.DataFrame(rows), pd.DataFrame(members, columns=["campaign_id", "kind", "member", "weight"]))


def acc(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + n)]


def utc(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def identity(cid: str, first_seen: str, last_seen: str, first_flagged_at: str | None, first_flagged_run_id: int | None,
             first_run_id: int, last_run_id: int) -> dict:
    """One ``campaign_identity`` row (dates UTC)."""
    return {"campaign_id": cid, "first_seen": utc(first_seen), "last_seen": utc(last_seen),
            "first_flagged_at": utc(first_flagged_at) if first_flagged_at else pd.NaT,
            "first_flagged_run_id": first_flagged_run_id, "first_run_id": first_run_id, "last_run_id": last_run_id}


def matched(prev: list[dict], cur: list[dict]):
    """``(match, previous campaigns, current campaigns renamed to their stable ids)``."""
    (p, pm), (c, cm) = frames(prev), frames(cur)
    m = match_campaigns(p, pm, c, cm)
    c["campaign_id"] = c["campaign_id"].map(m.ids)
    return m, p, c


def run(prev: list[dict], cur: list[dict], known: frozenset[str] = frozenset(), config: HistoryConfig | None = None):
    (p, pm), (c, cm) = frames(prev), frames(cur)
    m = match_campaigns(p, pm, c, cm, config, known_ids=known)
    assert len(set(m.ids.values())) == len(m.ids), "stable ids must be distinct"
    by_id = {r.campaign_id: (r.transition, list(r.parent_ids)) for r in m.transitions.itertuples(index=False)}
    assert len(by_id) == len(m.transitions), "one transition per campaign"
    return m, by_id


def test_continued_keeps_the_previous_id():
    m, t = run([camp("A", acc("a", 10), acc("p", 40))], [camp("x1", acc("a", 10), acc("p", 50))])
    assert m.ids == {"x1": "A"}
    assert t == {"A": ("continued", [])}


def test_grown_and_shrunk_when_accounts_change_by_more_than_the_fraction():
    m, t = run([camp("A", acc("a", 10), acc("p", 40)), camp("B", acc("b", 20), acc("q", 40))],
               [camp("x1", acc("a", 16), acc("p", 40)), camp("x2", acc("b", 12), acc("q", 40))])
    assert m.ids == {"x1": "A", "x2": "B"}
    assert t == {"A": ("grown", []), "B": ("shrunk", [])}
    # a change within the fraction is still "continued"
    _, t = run([camp("A", acc("a", 10), acc("p", 40))], [camp("x1", acc("a", 12), acc("p", 40))])
    assert t == {"A": ("continued", [])}


def test_growth_from_a_small_start_continues():
    """Day 1 sees 3 accounts, day 2 the whole campaign: the small one lies inside the big one."""
    m, t = run([camp("A", acc("a", 3), acc("p", 6))], [camp("x1", acc("a", 30), acc("p", 60))])
    assert m.ids == {"x1": "A"} and t["A"][0] == "grown"


def test_split_children_get_new_ids_with_the_parent():
    m, t = run([camp("A", acc("a", 30), acc("p", 90))],
               [camp("x1", acc("a", 10), acc("p", 30)), camp("x2", acc("a", 10, 10), acc("p", 30, 30)),
                camp("x3", acc("a", 10, 20), acc("p", 30, 60))])
    assert set(m.ids.values()) == {"x1", "x2", "x3"}
    assert t == {"x1": ("split", ["A"]), "x2": ("split", ["A"]), "x3": ("split", ["A"])}


def test_a_split_off_minority_leaves_the_majority_with_the_id():
    m, t = run([camp("A", acc("a", 30), acc("p", 90))],
               [camp("x1", acc("a", 21), acc("p", 63)), camp("x2", acc("a", 9, 21), acc("p", 27, 63))])
    assert m.ids == {"x1": "A", "x2": "x2"}
    assert t == {"A": ("shrunk", []), "x2": ("split", ["A"])}


def test_merged_keeps_the_largest_parent_and_records_the_others():
    m, t = run([camp("A", acc("a", 8), acc("p", 20)), camp("B", acc("b", 12), acc("q", 20)),
                camp("C", acc("c", 5), acc("r", 20))],
               [camp("x1", acc("a", 8) + acc("b", 12) + acc("c", 5), acc("p", 20) + acc("q", 20) + acc("r", 20))])
    assert m.ids == {"x1": "B"}
    assert t == {"B": ("merged", ["A", "C"])}


def test_a_campaign_found_again_as_itself_is_no_merge_parent_of_a_larger_group_holding_it():
    # yesterday: a flagged pool of ten (A) and a larger unflagged group (G) that also held nine of them; today
    # the same ten again (x1), and G holding all ten with its own accounts (x2). A continues as x1; G as x2.
    pool, other = acc("a", 10), acc("g", 20)
    m, t = run([camp("A", pool, acc("p", 40)), camp("G", pool[:9] + other, acc("p", 30) + acc("q", 40))],
               [camp("x1", pool, acc("p", 40)), camp("x2", pool + other[:18], acc("p", 30) + acc("q", 40))])
    assert m.ids == {"x1": "A", "x2": "G"}
    assert t["A"] == ("continued", [])


def test_a_few_heavy_accounts_shed_by_a_recluster_do_not_take_the_id():
    # Fifteen pool accounts (a few requests each) and two eval-harness accounts (hundreds each, most of the
    # requests) were one campaign; a re-clustering sets the two apart. The fifteen keep the id: accounts count once.
    pool, harness = acc("p", 15), acc("h", 2)
    (p, pm) = frames([camp("c-1", pool + harness, acc("x", 40), per_account=8)])
    pm.loc[pm["member"].isin(harness), "weight"] = 200
    pm = pd.concat([pm, pd.DataFrame([("c-1", "prompt", f"hp{i}", 4) for i in range(100)],
                                     columns=pm.columns)], ignore_index=True)
    (c, cm) = frames([camp("c-a", pool, acc("x", 40), per_account=9), camp("c-b", harness, acc("hp", 100), 200)])
    m = match_campaigns(p, pm, c, cm)
    assert m.ids["c-a"] == "c-1" and m.ids["c-b"] != "c-1"


def test_new_and_gone():
    m, t = run([camp("A", acc("a", 10), acc("p", 40)), camp("B", acc("b", 10), acc("q", 40))],
               [camp("x1", acc("a", 10), acc("p", 40)), camp("x2", acc("z", 10), acc("zz", 40))])
    assert m.ids == {"x1": "A", "x2": "x2"}
    assert t == {"A": ("continued", []), "x2": ("new", []), "B": ("gone", [])}
    gone = m.transitions[m.transitions["transition"] == "gone"]
    assert gone["campaign_id"].tolist() == ["B"] and m.transitions["transition"].iloc[-1] == "gone"


def test_two_operators_merged_for_a_run_and_apart_again_keep_their_ids():
    a, b = camp("A", acc("a", 12), acc("p", 40)), camp("B", acc("b", 10), acc("q", 40))
    # run 2: one campaign holds both (the ban day's replacements bridged them); B ends as a merge parent
    m2, t2 = run([a, b], [camp("m", acc("a", 12) + acc("b", 10), acc("p", 40) + acc("q", 40))])
    assert m2.ids == {"m": "A"} and t2 == {"A": ("merged", ["B"])}
    (p1, pm1), identity_ = frames([a, b]), pd.DataFrame({"campaign_id": ["A", "B"]})
    ended = ended_snapshots(PreviousState(p1, pm1, identity_), m2, run_id=2, revive_runs=7)
    assert set(ended["campaign_id"]) == {"B"} and set(ended["ended_run"]) == {2}
    # run 3: apart again; without the snapshot B's work would split off under a new id
    (p2, pm2), (c3, cm3) = frames([camp("A", acc("a", 12) + acc("b", 10), acc("p", 40) + acc("q", 40))]), \
        frames([camp("x1", acc("a", 12), acc("p", 40)), camp("x2", acc("b", 10), acc("q", 40))])
    plain = match_campaigns(p2, pm2, c3, cm3, known_ids={"A", "B"})
    assert plain.ids["x1"] == "A" and plain.ids["x2"] not in {"A", "B"}
    m3 = match_campaigns(p2, pm2, c3, cm3, known_ids={"A", "B"}, ended_members=ended[pm2.columns])
    assert m3.ids == {"x1": "A", "x2": "B"}
    assert dict(zip(m3.transitions["campaign_id"], m3.transitions["transition"], strict=True))["B"] == "split"
    # revived, B's snapshot is dropped; a snapshot older than revive_runs is dropped too
    state = PreviousState(p2, pm2, identity_, ended)
    assert ended_snapshots(state, m3, run_id=3, revive_runs=7).empty
    assert ended_snapshots(state, plain, run_id=9, revive_runs=7).empty
    assert set(ended_snapshots(state, plain, run_id=8, revive_runs=7)["campaign_id"]) == {"B"}


def test_replacement_accounts_doing_the_same_work_match_through_the_prompts():
    """Every account was banned and replaced; the fresh accounts send the same prompts."""
    m, t = run([camp("A", acc("a", 10), acc("p", 40))], [camp("x1", acc("fresh", 10), acc("p", 40))])
    assert m.ids == {"x1": "A"} and t == {"A": ("continued", [])}
    # and sharing a few prompts is not enough
    m, t = run([camp("A", acc("a", 10), acc("p", 40))], [camp("x1", acc("fresh", 10), acc("p", 5) + acc("n", 35))])
    assert m.ids == {"x1": "x1"} and t == {"x1": ("new", []), "A": ("gone", [])}


def test_one_to_one_assignment_prefers_the_best_overlap():
    """Two current campaigns both lie mostly inside A; the closer one continues it, the other is new."""
    m, t = run([camp("A", acc("a", 20), acc("p", 40))],
               [camp("x1", acc("a", 3), acc("p", 5)), camp("x2", acc("a", 16, 3), acc("p", 34, 5))],
               config=HistoryConfig(part_min=0.5))  # no split: x1 is too small a part
    assert m.ids["x2"] == "A" and t["A"][0] == "continued"
    assert t["x1"] == ("new", [])


def test_a_new_campaign_never_reuses_an_id_seen_before():
    m, t = run([], [camp("x1", acc("a", 10), acc("p", 40))], known=frozenset({"x1"}))
    assert m.ids["x1"] != "x1" and m.ids["x1"].startswith("c-")
    assert t == {m.ids["x1"]: ("new", [])}


def test_first_run_is_all_new():
    m, t = run([], [camp("x1", acc("a", 10), acc("p", 40)), camp("x2", acc("b", 10), acc("q", 40))])
    assert m.ids == {"x1": "x1", "x2": "x2"} and t == {"x1": ("new", []), "x2": ("new", [])}


def test_overlap_measures():
    _, pm = frames([camp("A", acc("a", 10), acc("p", 10))])
    _, cm = frames([camp("x", acc("a", 5), acc("zz", 10))])
    ov = overlaps(pm, cm)
    r = ov.iloc[0]
    assert r["share_prev"] == pytest.approx(0.5) and r["share_cur"] == pytest.approx(1.0)
    assert r["jaccard"] == pytest.approx(0.5)


def test_history_rows_and_identity():
    m, p, c = matched([camp("A", acc("a", 10), acc("p", 40)), camp("B", acc("b", 10), acc("q", 40))],
                      [camp("x1", acc("a", 10), acc("p", 40)), camp("x2", acc("z", 10), acc("zz", 40))])
    c.loc[c["campaign_id"] == "x2", "flagged"] = False
    at = utc("2026-02-01")
    h = history_rows(m, c, p, run_id=7, recorded_at=at)
    assert h.set_index("campaign_id")["transition"].to_dict() == {"A": "continued", "x2": "new", "B": "gone"}
    assert (h["run_id"] == 7).all() and h.loc[h["campaign_id"] == "B", "n_accounts"].item() == 10
    assert h["parent_ids"].iloc[0] == []
    old = pd.DataFrame([identity("A", "2025-12-01", "2025-12-02", "2025-12-02", 3, 2, 6),
                        identity("B", "2025-12-01", "2025-12-03", None, None, 6, 6)])
    ident = update_identity(old, m, c, run_id=7).set_index("campaign_id")
    assert ident.loc["A", "first_seen"] == utc("2025-12-01")
    assert ident.loc["A", "last_seen"] == utc("2026-01-02 10:00:00.123456")
    assert ident.loc["A", "first_flagged_run_id"] == 3 and ident.loc["A", "first_run_id"] == 2
    assert ident.loc["A", "last_run_id"] == 7
    assert ident.loc["B", "last_run_id"] == 6  # gone: unchanged
    assert ident.loc["x2", "first_run_id"] == 7 and pd.isna(ident.loc["x2", "first_flagged_at"])


def test_first_run_identity_records_when_each_campaign_was_flagged():
    (p, pm), (c, cm) = frames([]), frames([camp("x1", acc("a", 10), acc("p", 40)), camp("x2", acc("b", 9), acc("q", 9))])
    c.loc[c["campaign_id"] == "x2", "flagged"] = False
    m = match_campaigns(p, pm, c, cm)
    ident = update_identity(pd.DataFrame(), m, c, run_id=1).set_index("campaign_id")
    assert ident.loc["x1", "first_flagged_at"] == utc("2026-01-02 10:00:00.123456")
    assert ident.loc["x1", "first_flagged_run_id"] == 1 and pd.isna(ident.loc["x2", "first_flagged_run_id"])
    assert (ident["first_run_id"] == 1).all() and (ident["last_run_id"] == 1).all()


def test_identity_of_a_merge_takes_its_parents_earliest_times():
    m, _, c = matched([camp("A", acc("a", 8), acc("p", 20)), camp("B", acc("b", 12), acc("q", 20))],
                      [camp("x1", acc("a", 8) + acc("b", 12), acc("p", 20) + acc("q", 20))])
    old = pd.DataFrame([identity("A", "2025-11-01", "2025-12-02", "2025-11-05", 1, 1, 6),
                        identity("B", "2025-12-01", "2025-12-03", None, None, 4, 6)])
    ident = update_identity(old, m, c, run_id=7).set_index("campaign_id")
    assert ident.loc["B", "first_seen"] == utc("2025-11-01")
    assert ident.loc["B", "first_flagged_run_id"] == 1 and ident.loc["B", "first_run_id"] == 1


def test_campaign_members_counts_member_requests_in_the_campaign_clusters():
    req = pd.DataFrame({"account_id": ["a", "a", "b", "b", "c"], "prompt_hash": ["h1", "h2", "h1", "h3", "h1"],
                        "cluster_id": [1, 1, 1, 2, 1]})
    ca = pd.DataFrame({"campaign_id": ["C", "C"], "account_id": ["a", "b"], "n_requests": [2, 1]})
    m = campaign_members(req, ca, {"C": [1]})
    got = {(r.kind, r.member): r.weight for r in m.itertuples(index=False)}
    assert got == {("account", "a"): 2, ("account", "b"): 1, ("prompt", "h1"): 2, ("prompt", "h2"): 1}


# --- end to end: two daily runs into one workspace ----------------------------------------------------------------
def _split_sample(folder, replaced: dict[str, str]) -> tuple[str, str]:
    """The sample's first six days, and its last day with ``replaced`` accounts renamed (banned accounts
    whose work fresh accounts carry on)."""
    import gzip

    from conftest import SAMPLE_LOG

    rows = [json.loads(line) for line in gzip.open(SAMPLE_LOG, "rt", encoding="utf-8")]
    last_day = max(r["timestamp"] for r in rows)[:10]
    early = [r for r in rows if r["timestamp"][:10] < last_day]
    late = [{**r, "account_id": replaced.get(r["account_id"], r["account_id"])} for r in rows
            if r["timestamp"][:10] >= last_day]
    paths = []
    for name, part in (("days1-6.jsonl", early), ("day7.jsonl", late)):
        path = folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        paths.append(str(path))
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    """A workspace analysed after day 6 (run 1) and again after day 7 was added (run 2), where on day 7 half of
    the chain-of-thought campaign's accounts were replaced by fresh ones; with run 1's JSON export."""
    from conftest import SAMPLE_TRUTH

    from analyzer.export import to_json
    from analyzer.pipeline import RunOptions, run_all
    from analyzer.workspace import Workspace

    truth = json.loads(SAMPLE_TRUTH.read_text())
    cot = sorted(truth["campaigns"]["cot_math"]["accounts"])
    replaced = {a: f"fresh_{i}" for i, a in enumerate(cot[: len(cot) // 2])}
    folder = tmp_path_factory.mktemp("daily")
    day1, day2 = _split_sample(folder, replaced)
    ws = Workspace(str(folder / "ws"), create=True)
    opts = RunOptions(progress=False, make_map=False)
    run_all(ws, [day1], opts)
    first = json.loads(to_json(ws))
    run_all(ws, [day2], opts)
    yield ws, first, set(cot), set(replaced.values())
    ws.close()


def test_daily_runs_keep_campaign_ids(daily):
    from analyzer.export import to_json

    ws, first, cot, fresh = daily
    before = {c["id"]: c for c in first["campaigns"]}
    after = {c["id"]: c for c in json.loads(to_json(ws))["campaigns"]}
    flagged = [c for c in first["campaigns"] if c["flagged"]]
    assert len(flagged) >= 3
    for c in flagged:
        assert c["id"] in after and after[c["id"]]["flagged"], c["label"]
    # the campaign whose accounts were partly replaced changed membership, and so its provisional id, but not
    # its id: the fresh accounts sent the same kind of work and the old accounts' requests are still there
    (cot_id,) = [cid for cid, c in before.items() if set(c["accounts"]) >= cot]
    assert fresh <= set(after[cot_id]["accounts"])
    assert after[cot_id]["history"][-1]["transition"] == "grown"
    from analyzer.campaigns import campaign_id

    provisional = campaign_id(ws.db.execute("SELECT account_id FROM campaign_accounts WHERE campaign_id = ?",
                                            [cot_id]).df()["account_id"].tolist(), after[cot_id]["clusters"])
    assert provisional != cot_id
    c = after[cot_id]
    assert [h["run"] for h in c["history"]] == [1, 2] and c["history"][0]["transition"] == "new"
    assert c["first_run"] == 1 and c["first_flagged_run"] == 1 and c["first_flagged"] <= before[cot_id]["last_seen"]
    assert c["first_seen"] == before[cot_id]["first_seen"] and c["last_seen"] > before[cot_id]["last_seen"]


def test_daily_runs_record_one_transition_per_campaign_and_run(daily):
    ws, first, _, _ = daily
    h = ws.campaign_history()
    assert sorted(h["run_id"].unique()) == [1, 2]
    assert not h.duplicated(["run_id", "campaign_id"]).any()
    assert set(h.loc[h["run_id"] == 1, "transition"]) == {"new"}
    assert set(h.loc[h["run_id"] == 1, "campaign_id"]) == {c["id"] for c in first["campaigns"]}
    run2 = h[h["run_id"] == 2]
    assert set(run2.loc[run2["transition"] != "gone", "campaign_id"]) == set(ws.table("campaigns")["campaign_id"])
    ident = ws.table("campaign_identity")
    assert set(ident["campaign_id"]) == set(h["campaign_id"])
    assert (ident.set_index("campaign_id").loc[run2.loc[run2["transition"] != "gone", "campaign_id"],
                                                "last_run_id"] == 2).all()


def test_a_rescore_continues_every_campaign_and_the_markdown_shows_history(daily):
    from analyzer import pipeline
    from analyzer.export import to_markdown

    ws, _, _, _ = daily
    ids = set(ws.table("campaigns")["campaign_id"])
    with ws.writing():
        run_id = ws.start_run("score", {}, {})
        stats = pipeline.score(ws, pipeline.RunOptions(progress=False), run_id)
        ws.finish_run(run_id, stats)
    assert set(ws.table("campaigns")["campaign_id"]) == ids
    h = ws.campaign_history()
    assert set(h.loc[h["run_id"] == run_id, "transition"]) == {"continued"}
    assert "History: new (run 1) → " in to_markdown(ws)


def test_daily_workspace_history_is_consistent(daily):
    from robust_logs import history_problems

    assert history_problems(daily[0]) == []


def test_a_score_that_fails_while_writing_changes_neither_campaigns_nor_history(daily, monkeypatch):
    """The history rows are written in the transaction that replaces the campaigns: a failure at the last
    insert (here a history frame the table refuses) rolls back the campaigns too."""
    from robust_logs import history_problems

    from analyzer import history as history_mod
    from analyzer import pipeline

    ws = daily[0]
    before = {t: ws.table(t) for t in ("campaigns", "campaign_accounts", "campaign_history", "campaign_identity",
                                        "campaign_members")}
    real = history_mod.history_rows
    monkeypatch.setattr(history_mod, "history_rows", lambda *a, **k: real(*a, **k).assign(no_such_column=1))
    with pytest.raises(Exception, match="no_such_column"):
        pipeline.score(ws, pipeline.RunOptions(progress=False), run_id=99)
    for table, frame in before.items():
        pd.testing.assert_frame_equal(ws.table(table), frame, check_like=True)
    assert history_problems(ws) == []


def test_no_campaigns_now_means_every_previous_one_is_gone():
    (p, pm), (c, cm) = frames([camp("A", acc("a", 10), acc("p", 40))]), frames([])
    c = pd.DataFrame(columns=p.columns)
    cm = pd.DataFrame(columns=pm.columns)
    m = match_campaigns(p, pm, c, cm)
    assert m.ids == {} and m.transitions.values.tolist() == [["A", "gone", []]]
    h = history_rows(m, c, p, run_id=2, recorded_at=utc("2026-02-01"))
    assert h["transition"].tolist() == ["gone"] and h["n_accounts"].tolist() == [10]
    assert update_identity(pd.DataFrame(), m, c, run_id=2).empty


def test_assignment_is_one_to_one_across_independent_groups():
    prev = [camp(f"P{i}", acc(f"a{i}_", 10), acc(f"p{i}_", 20)) for i in range(30)]
    cur = [camp(f"x{i}", acc(f"a{i}_", 10), acc(f"p{i}_", 20)) for i in reversed(range(30))]
    m, t = run(prev, cur)
    assert m.ids == {f"x{i}": f"P{i}" for i in range(30)}
    assert {v[0] for v in t.values()} == {"continued"}


def test_a_crumb_of_a_dispersed_campaign_does_not_inherit_its_id():
    """A's 20 accounts scatter over three unrelated campaigns; a 3-account remnant lies entirely inside A but
    holds only 15% of it: A is gone, the pieces are new."""
    m, t = run([camp("A", acc("a", 20), acc("p", 40))],
               [camp("x1", acc("a", 3), acc("p", 6)), camp("x2", acc("a", 5, 3) + acc("z", 15), acc("q", 40)),
                camp("x3", acc("a", 4, 8) + acc("y", 15), acc("r", 40))])
    assert t == {"x1": ("new", []), "x2": ("new", []), "x3": ("new", []), "A": ("gone", [])}
