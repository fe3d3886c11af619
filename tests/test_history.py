"""Stable campaign identities: the matching rule on small hand-made campaigns (pure functions)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analyzer.history import (
    HistoryConfig,
    campaign_members,
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
                     "first_seen": pd.Timestamp("2026-01-01", tz="UTC"), "last_seen": pd.Timestamp("2026-01-02", tz="UTC")})
        members += [(c["id"], "account", a, c["per_account"]) for a in c["accounts"]]
        members += [(c["id"], "prompt", p, max(1, n_req // len(c["prompts"]))) for p in c["prompts"]]
    return (pd.DataFrame(rows), pd.DataFrame(members, columns=["campaign_id", "kind", "member", "weight"]))


def acc(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + n)]


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


def test_new_and_gone():
    m, t = run([camp("A", acc("a", 10), acc("p", 40)), camp("B", acc("b", 10), acc("q", 40))],
               [camp("x1", acc("a", 10), acc("p", 40)), camp("x2", acc("z", 10), acc("zz", 40))])
    assert m.ids == {"x1": "A", "x2": "x2"}
    assert t == {"A": ("continued", []), "x2": ("new", []), "B": ("gone", [])}
    gone = m.transitions[m.transitions["transition"] == "gone"]
    assert gone["campaign_id"].tolist() == ["B"] and m.transitions["transition"].iloc[-1] == "gone"


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
    prev = [camp("A", acc("a", 10), acc("p", 40)), camp("B", acc("b", 10), acc("q", 40))]
    cur = [camp("x1", acc("a", 10), acc("p", 40)), camp("x2", acc("z", 10), acc("zz", 40))]
    (p, pm), (c, cm) = frames(prev), frames(cur)
    m = match_campaigns(p, pm, c, cm)
    c["campaign_id"] = c["campaign_id"].map(m.ids)
    c.loc[c["campaign_id"] == "x2", "flagged"] = False
    at = pd.Timestamp("2026-02-01", tz="UTC")
    h = history_rows(m, c, p, run_id=7, recorded_at=at)
    assert h.set_index("campaign_id")["transition"].to_dict() == {"A": "continued", "x2": "new", "B": "gone"}
    assert (h["run_id"] == 7).all() and h.loc[h["campaign_id"] == "B", "n_accounts"].item() == 10
    assert json.loads(h["parent_ids"].iloc[0]) == []
    old = pd.DataFrame([
        {"campaign_id": "A", "first_seen": pd.Timestamp("2025-12-01", tz="UTC"),
         "last_seen": pd.Timestamp("2025-12-02", tz="UTC"), "first_flagged_at": pd.Timestamp("2025-12-02", tz="UTC"),
         "first_flagged_run_id": 3, "first_run_id": 2, "last_run_id": 6},
        {"campaign_id": "B", "first_seen": pd.Timestamp("2025-12-01", tz="UTC"),
         "last_seen": pd.Timestamp("2025-12-03", tz="UTC"), "first_flagged_at": pd.NaT,
         "first_flagged_run_id": None, "first_run_id": 6, "last_run_id": 6}])
    ident = update_identity(old, m, c, run_id=7).set_index("campaign_id")
    assert ident.loc["A", "first_seen"] == pd.Timestamp("2025-12-01", tz="UTC")
    assert ident.loc["A", "last_seen"] == pd.Timestamp("2026-01-02", tz="UTC")
    assert ident.loc["A", "first_flagged_run_id"] == 3 and ident.loc["A", "first_run_id"] == 2
    assert ident.loc["A", "last_run_id"] == 7
    assert ident.loc["B", "last_run_id"] == 6  # gone: unchanged
    assert ident.loc["x2", "first_run_id"] == 7 and pd.isna(ident.loc["x2", "first_flagged_at"])


def test_identity_of_a_merge_takes_its_parents_earliest_times():
    prev = [camp("A", acc("a", 8), acc("p", 20)), camp("B", acc("b", 12), acc("q", 20))]
    cur = [camp("x1", acc("a", 8) + acc("b", 12), acc("p", 20) + acc("q", 20))]
    (p, pm), (c, cm) = frames(prev), frames(cur)
    m = match_campaigns(p, pm, c, cm)
    c["campaign_id"] = c["campaign_id"].map(m.ids)
    old = pd.DataFrame([
        {"campaign_id": "A", "first_seen": pd.Timestamp("2025-11-01", tz="UTC"),
         "last_seen": pd.Timestamp("2025-12-02", tz="UTC"), "first_flagged_at": pd.Timestamp("2025-11-05", tz="UTC"),
         "first_flagged_run_id": 1, "first_run_id": 1, "last_run_id": 6},
        {"campaign_id": "B", "first_seen": pd.Timestamp("2025-12-01", tz="UTC"),
         "last_seen": pd.Timestamp("2025-12-03", tz="UTC"), "first_flagged_at": pd.NaT,
         "first_flagged_run_id": None, "first_run_id": 4, "last_run_id": 6}])
    ident = update_identity(old, m, c, run_id=7).set_index("campaign_id")
    assert ident.loc["B", "first_seen"] == pd.Timestamp("2025-11-01", tz="UTC")
    assert ident.loc["B", "first_flagged_run_id"] == 1 and ident.loc["B", "first_run_id"] == 1


def test_campaign_members_counts_member_requests_in_the_campaign_clusters():
    req = pd.DataFrame({"account_id": ["a", "a", "b", "b", "c"], "prompt_hash": ["h1", "h2", "h1", "h3", "h1"],
                        "cluster_id": [1, 1, 1, 2, 1]})
    ca = pd.DataFrame({"campaign_id": ["C", "C"], "account_id": ["a", "b"], "n_requests": [2, 1]})
    m = campaign_members(req, ca, {"C": [1]})
    got = {(r.kind, r.member): r.weight for r in m.itertuples(index=False)}
    assert got == {("account", "a"): 2, ("account", "b"): 1, ("prompt", "h1"): 2, ("prompt", "h2"): 1}
