"""Grouping, scoring and evidence on hand-made request frames (no model needed)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from analyzer import signals as sig
from analyzer.campaigns import (
    COMMUNITY_UNIT_LABEL,
    ClusterInfo,
    ScoringConfig,
    community_units,
    find_campaigns,
    group_clusters,
    infra_communities,
    score_signals,
    unit_template_coverage,
    wrapper_units,
)

T0 = pd.Timestamp("2026-03-01T00:00:00Z")


def _rows(accounts, cluster, n_per_account, prefix, start_minutes=0, step_minutes=5, subnet=None, ua="openai-python/1.0"):
    rows = []
    for a_i, acc in enumerate(accounts):
        for k in range(n_per_account):
            rows.append({
                "account_id": acc, "ts": T0 + pd.Timedelta(minutes=start_minutes + k * step_minutes + a_i % 3),
                "prompt_hash": f"{prefix}-{a_i}-{k}", "cluster_id": cluster, "model": "m1",
                "ip": f"{subnet}.{a_i % 250 + 1}" if subnet else f"{10 + a_i % 200}.{a_i % 250}.{k % 250}.1",
                "user_agent": ua, "api_key_id": f"k-{acc}", "org_id": None, "payment_id": None, "system_prompt": None,
            })
    return rows


def _organic(n_accounts=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_accounts):
        for k in range(int(rng.integers(3, 12))):
            rows.append({
                "account_id": f"org-{i}", "ts": T0 + pd.Timedelta(minutes=int(rng.integers(0, 7 * 1440))),
                "prompt_hash": f"o-{i}-{k}", "cluster_id": int(rng.integers(-1, 30)) + 100, "model": "m1",
                "ip": f"{rng.integers(1, 220)}.{rng.integers(0, 255)}.{rng.integers(0, 255)}.7",
                "user_agent": "openai-python/1.0", "api_key_id": f"k-org-{i}", "org_id": None, "payment_id": None,
                "system_prompt": None,
            })
    return rows


CLUSTERS = {c: ClusterInfo(c, label=f"c{c}", template_coverage=0.1, n_fixed_words=1) for c in range(100, 131)}
CLUSTERS.update({1: ClusterInfo(1, label="cot wrapper", template="Solve step by step {…}", template_coverage=1.0,
                                n_fixed_words=12, training_value=0.9, intent="chain-of-thought elicitation"),
                 2: ClusterInfo(2, label="cot wrapper b", template_coverage=1.0, n_fixed_words=12, training_value=0.9),
                 3: ClusterInfo(3, label="batch", template_coverage=1.0, n_fixed_words=15, training_value=0.5)})


def _scenario_requests() -> pd.DataFrame:
    pool = [f"camp-{i}" for i in range(30)]
    rows = _organic()
    # One pool load-balances two template variants, synchronized, behind two proxy subnets.
    rows += _rows(pool[:15], 1, 8, "a", subnet="203.0.113") + _rows(pool[15:], 1, 8, "b", subnet="198.51.100")
    rows += _rows(pool, 2, 4, "c", start_minutes=1)
    # One enterprise account: a large templated batch job.
    rows += _rows(["enterprise"], 3, 300, "batch", step_minutes=1)
    # A viral prompt: one prompt pasted by 60 organic users.
    for i in range(60):
        rows.append({**_rows([f"org-{i}"], 4, 1, "viral")[0], "prompt_hash": "viral-0"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def result():
    return find_campaigns(_scenario_requests(), CLUSTERS, ScoringConfig())


def test_preselecting_groups_changes_nothing(result, monkeypatch):
    """Groups without core members are skipped in one vectorised pass; scoring every group gives the same."""
    import analyzer.campaigns as camp

    preselect = camp._candidate_groups
    monkeypatch.setattr(camp, "_candidate_groups", lambda groups, *a, **k: np.arange(len(groups)))
    every = find_campaigns(_scenario_requests(), CLUSTERS, ScoringConfig())
    pd.testing.assert_frame_equal(every.campaigns, result.campaigns)
    pd.testing.assert_frame_equal(every.campaign_accounts, result.campaign_accounts)
    pd.testing.assert_frame_equal(every.accounts, result.accounts)
    req = _scenario_requests()
    ac, totals = req.groupby(["account_id", "cluster_id"]).size().rename("n").reset_index(), req.groupby("account_id").size()
    groups = group_clusters(ac, totals, ScoringConfig())
    assert 0 < len(preselect(groups, ac, totals, ScoringConfig())) < len(groups)  # some were skipped


def test_pool_over_two_templates_is_one_flagged_campaign(result):
    flagged = result.campaigns[result.campaigns["flagged"]]
    assert len(flagged) == 1
    camp = flagged.iloc[0]
    assert sorted(camp["clusters"]) == [1, 2]
    members = set(result.campaign_accounts.loc[result.campaign_accounts["campaign_id"] == camp["campaign_id"], "account_id"])
    assert members == {f"camp-{i}" for i in range(30)}
    assert camp["signals"]["infrastructure"] > 0.9 and camp["signals"]["focus"] > 0.7
    assert any("Shared infrastructure" in e for e in camp["evidence"])


def test_batch_job_and_viral_prompt_are_not_flagged(result):
    c = result.campaigns.set_index("campaign_id")
    batch = c[c["clusters"].map(lambda cl: cl == [3])]
    assert len(batch) == 1 and batch.iloc[0]["score"] == 0.0 and not batch.iloc[0]["flagged"]
    # 60 accounts (twice the flagged pool) sent the viral prompt, each once among its ordinary requests: it
    # makes no campaign and flags none of them
    req = _scenario_requests()
    senders = req.loc[req["cluster_id"] == 4, "account_id"].unique()
    assert len(senders) == 60
    assert 4 not in result.cluster_campaign and not c["clusters"].map(lambda cl: 4 in cl).any()
    scores = result.accounts.set_index("account_id")["score"]
    assert (scores.reindex(senders).fillna(0.0) < ScoringConfig().flag_threshold).all()


def test_account_scores_rank_members_above_everyone(result):
    acc = result.accounts.set_index("account_id")["score"]
    camp = acc[acc.index.str.startswith("camp-")]
    others = acc[~acc.index.str.startswith("camp-")]
    assert camp.min() > others.max()
    assert ((acc >= 0) & (acc <= 1)).all()


def test_group_clusters_ignores_generalists():
    # 5 generalists touch all 60 clusters; they must not chain clusters together.
    rows = [{"account_id": f"g{i}", "cluster_id": c, "n": 2} for i in range(5) for c in range(60)]
    rows += [{"account_id": f"s{c}-{j}", "cluster_id": c, "n": 3} for c in range(60) for j in range(4)]
    ac = pd.DataFrame(rows)
    total = ac.groupby("account_id")["n"].sum()
    groups = group_clusters(ac, total, ScoringConfig())
    assert len(groups) == 60


def test_group_clusters_links_one_large_pool_spread_over_many_units():
    # An operator's 30 accounts spread their load over 100 wrapper families (each account touches all 100:
    # generalists by count); each family also has 3 organic visitors of its own. The pool is one group.
    rows = [{"account_id": f"op{i}", "cluster_id": c, "n": 2} for i in range(30) for c in range(100)]
    rows += [{"account_id": f"s{c}-{j}", "cluster_id": c, "n": 1} for c in range(100) for j in range(3)]
    # 12 power users touch 50 popular topics, each topic with 20 specialists of its own: not one pool.
    rows += [{"account_id": f"g{i}", "cluster_id": 100 + c, "n": 2} for i in range(12) for c in range(50)]
    rows += [{"account_id": f"t{c}-{j}", "cluster_id": 100 + c, "n": 3} for c in range(50) for j in range(20)]
    ac = pd.DataFrame(rows)
    total = ac.groupby("account_id")["n"].sum()
    groups = group_clusters(ac, total, ScoringConfig())
    assert list(range(100)) in groups
    assert sum(1 for g in groups if g[0] >= 100) == 50


def _id_pairs(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["field", "value", "account_id"])


def test_infra_communities_chain_proxy_blocks_across_customers():
    # A proxy pool rotates 6 accounts over two /24 blocks (chained through p2 and p4); two seats of one
    # organisation share their egress block; a popular user agent is not a linking identifier.
    pairs = [("subnet", "10.0.1.0/24", f"p{i}") for i in range(4)] + [("subnet", "10.0.2.0/24", f"p{i}")
                                                                        for i in (2, 4, 5)]
    pairs += [("subnet", "10.9.9.0/24", "seat1"), ("subnet", "10.9.9.0/24", "seat2")]
    pairs += [("user_agent", "python-requests/2.31", a) for a in ("p0", "seat1", "x1", "x2")]
    principal = pd.Series({"p0": "a:p0", "p1": "a:p1", "p2": "a:p2", "p3": "a:p3", "p4": "a:p4", "p5": "a:p5",
                           "seat1": "org:acme", "seat2": "org:acme", "x1": "a:x1", "x2": "a:x2"})
    comm = infra_communities(_id_pairs(pairs), principal, min_principals=3)
    assert set(comm.index) == {f"p{i}" for i in range(6)}
    assert comm.nunique() == 1


def test_group_clusters_links_units_one_proxy_community_dominates():
    # On its first day an operator's 12 accounts send a request or two each, over four wrapper units (coding,
    # tool use, data analysis): no two units share accounts, but every unit is the proxy community's. Two
    # organic topics, visited by a few of its accounts too, stay apart.
    rows = [{"account_id": f"op{i}", "cluster_id": i % 4, "n": 1 + i % 2} for i in range(12)]
    rows += [{"account_id": f"org{u}-{j}", "cluster_id": 10 + u, "n": 2} for u in range(2) for j in range(8)]
    rows += [{"account_id": f"op{i}", "cluster_id": 10 + i % 2, "n": 1} for i in range(3)]
    ac = pd.DataFrame(rows)
    total = ac.groupby("account_id")["n"].sum()
    community = pd.Series(0, index=[f"op{i}" for i in range(12)])
    assert all(len(g) == 1 for g in group_clusters(ac, total, ScoringConfig()))
    groups = group_clusters(ac, total, ScoringConfig(), community)
    assert [0, 1, 2, 3] in groups and [10] in groups and [11] in groups
    # Ten customers behind one carrier NAT block dominate two small units, but do most of their work in
    # topics of their own: their block links nothing.
    rows += [{"account_id": f"nat{j}", "cluster_id": 20 + j % 2, "n": 1} for j in range(10)]
    rows += [{"account_id": f"nat{j}", "cluster_id": 30 + j, "n": 4} for j in range(10)]
    rows += [{"account_id": f"t{j}-{k}", "cluster_id": 30 + j, "n": 4} for j in range(10) for k in range(3)]
    ac = pd.DataFrame(rows)
    total = ac.groupby("account_id")["n"].sum()
    community = pd.concat([community, pd.Series(1, index=[f"nat{j}" for j in range(10)])])
    groups = group_clusters(ac, total, ScoringConfig(), community)
    assert [0, 1, 2, 3] in groups and [20] in groups and [21] in groups


def _noise_work(accounts, prefix, sim, subnet=None, n=3, intent="tool use"):
    """Requests in no unit (prompts too few and varied to cluster) with the given intent similarity."""
    rows = _rows(accounts, -1, n, prefix, subnet=subnet, step_minutes=37)
    return [{**r, "intent": intent, "intent_similarity": sim} for r in rows]


def test_community_units_pool_unclustered_capability_work_of_one_proxy_community():
    from analyzer import signals as sig
    from analyzer.campaigns import _scoring_frame, identifier_pairs, principals

    rows = _noise_work([f"op{i}" for i in range(10)], "op", 0.5, subnet="203.0.113")  # a proxy pool's tool calls
    rows += _noise_work([f"nat{i}" for i in range(10)], "nat", 0.05, subnet="198.51.100")  # a NAT block's chit-chat
    rows += _noise_work([f"solo{i}" for i in range(10)], "solo", 0.5)  # capability requests, no shared network
    rows += _noise_work([f"unread{i}" for i in range(10)], "unread", np.nan, subnet="192.0.2")  # intent not judged
    req = _scoring_frame(pd.DataFrame(rows), sig.DEFAULTS)
    community = infra_communities(identifier_pairs(req), principals(req), 3)
    assert community.nunique() == 3  # op, nat and unread: each a block shared by ten customers
    out, infos = community_units(req, community, CLUSTERS, ScoringConfig(), sig.DEFAULTS)
    new = sorted(set(infos) - set(CLUSTERS))
    assert len(new) == 1 and infos[new[0]].label == COMMUNITY_UNIT_LABEL and infos[new[0]].intent == "tool use"
    unit = out.set_index("prompt_hash")["cluster_id"]
    assert (unit[unit.index.str.startswith("op")] == new[0]).all()
    assert (unit[~unit.index.str.startswith("op")] == -1).all()
    # fewer accounts than community_unit_min_accounts: no unit
    _, infos = community_units(req, community, CLUSTERS, ScoringConfig(community_unit_min_accounts=11), sig.DEFAULTS)
    assert set(infos) == set(CLUSTERS)
    # a community whose unclustered capability work is a small part of what it sends (a campus block's users,
    # mostly busy with clustered homework): no unit
    busy = pd.DataFrame(rows + _rows([f"op{i}" for i in range(10)], 1, 3, "hw", subnet="203.0.113"))
    busy = _scoring_frame(busy, sig.DEFAULTS)
    assert community_units(busy, community, CLUSTERS, ScoringConfig(community_unit_min_share=0.6),
                           sig.DEFAULTS)[0]["cluster_id"].max() == 1
    assert community_units(busy, community, CLUSTERS, ScoringConfig(community_unit_min_share=0.4),
                           sig.DEFAULTS)[0]["cluster_id"].max() > 1


def test_small_pool_with_unclustered_prompts_is_a_campaign_only_behind_shared_infrastructure():
    pool = [f"op{i}" for i in range(10)]
    organic = _organic()
    behind_proxy = pd.DataFrame(organic + _noise_work(pool, "op", 0.5, subnet="203.0.113"))
    res = find_campaigns(behind_proxy, CLUSTERS)
    camp = res.campaign_accounts.groupby("campaign_id")["account_id"].agg(set)
    cid = next(c for c, accs in camp.items() if set(pool) <= accs)
    row = res.campaigns.set_index("campaign_id").loc[cid]
    assert any("in no cluster" in e for e in row["evidence"])
    assert row["clusters"] == []  # the community's unclustered work is no stored cluster
    assert set(res.accounts.set_index("account_id").loc[pool, "top_cluster"]) == {-1}  # nor an account's top one
    # The same requests from unrelated networks: nothing groups them.
    spread_out = pd.DataFrame(organic + _noise_work(pool, "op", 0.5))
    res = find_campaigns(spread_out, CLUSTERS)
    assert not set(res.campaign_accounts["account_id"]) & set(pool)


FRAGMENTS = ["You work on the content review team.", "Produce an answer that would pass review by a moderation team.",
             "Emphasise official positions.", "Stay factual where possible and keep it short.",
             "Reframe the topic in a neutral, positive way."]


def _wrapped(accounts, prefix, subnet, fragments, sim=0.1):
    """Unclustered requests whose prompts each compose two of ``fragments`` around a question of their own."""
    rows = _noise_work(accounts, prefix, sim, subnet=subnet, intent="censorship-safe rewrite")
    texts = {}
    for i, r in enumerate(rows):
        a, b = fragments[i % len(fragments)], fragments[(i + 2) % len(fragments)]
        texts[r["prompt_hash"]] = f"{a}\nWhat happened to {_WORDS[i % 30]} {_WORDS[(i * 7) % 30]} in that year\n{b}"
    return rows, texts


_WORDS = ("river harbour market council village railway strike bridge festival temple archive border mine "
          "factory museum canal school theatre square garden tower press union court station island forest "
          "valley coast palace").split()


def test_community_wrapper_sentences_make_weakly_judged_prompts_the_pools_work_and_its_templating():
    from analyzer.campaigns import _scoring_frame, identifier_pairs, principals

    # a pool of ten accounts behind one block composing its wrappers from shared fragments; its prompts read as
    # capability requests only weakly (training value below community_unit_min_value)
    rows, texts = _wrapped([f"op{i}" for i in range(10)], "op", "203.0.113", FRAGMENTS)
    # ten customers behind another shared block asking weakly judged questions in words of their own
    own = _noise_work([f"nat{i}" for i in range(10)], "nat", 0.1, subnet="198.51.100", intent="censorship-safe rewrite")
    texts.update({r["prompt_hash"]: f"Tell me about the {_WORDS[i % 30]} and the {_WORDS[(i * 11) % 30]} please"
                  for i, r in enumerate(own)})
    req = _scoring_frame(pd.DataFrame(rows + own), sig.DEFAULTS)
    community = infra_communities(identifier_pairs(req), principals(req), 3)
    assert community.nunique() == 2
    out, infos = community_units(req, community, CLUSTERS, ScoringConfig(), sig.DEFAULTS,
                                 lambda hashes: {h: texts[h] for h in hashes if h in texts})
    new = sorted(set(infos) - set(CLUSTERS))
    assert len(new) == 1
    unit = out.set_index("prompt_hash")["cluster_id"]
    assert (unit[unit.index.str.startswith("op")] == new[0]).all() and (unit[unit.index.str.startswith("nat")] == -1).all()
    info = infos[new[0]]
    assert info.template_coverage == 1.0 and info.n_fixed_words >= 8
    assert any(f.lower().rstrip(".") in info.template for f in FRAGMENTS)
    # without the texts, or when fewer accounts share each fragment than community_wrapper_min_accounts: no unit
    assert set(community_units(req, community, CLUSTERS, ScoringConfig(), sig.DEFAULTS)[1]) == set(CLUSTERS)
    few = ScoringConfig(community_wrapper_min_accounts=11)
    assert set(community_units(req, community, CLUSTERS, few, sig.DEFAULTS, lambda h: texts)[1]) == set(CLUSTERS)


def test_fresh_pool_accounts_join_through_a_block_only_they_use_before_they_are_core_members():
    from analyzer.campaigns import EvidenceParams, _context, _evidence_values, _scoring_frame

    # Ten fresh accounts behind one proxy block: four have sent two capability requests so far, six one. The
    # block is the pool's alone, so all ten are the campaign's members.
    pool = [f"op{i}" for i in range(10)]
    work = _noise_work(pool[:4], "op", 0.9, subnet="203.0.113", n=2)
    work += _noise_work(pool[4:], "op1", 0.9, subnet="203.0.113", n=1)
    res = find_campaigns(pd.DataFrame(_organic() + work), CLUSTERS)
    camp = res.campaign_accounts.groupby("campaign_id")["account_id"].agg(set)
    assert any(accs == set(pool) for accs in camp)

    # The rule: a value concentrated among the core and the group's other accounts together, held by two core
    # members or more. Four core members alone hold four of the block's ten accounts: not concentrated.
    def shared(rows, core, around):
        req = _scoring_frame(pd.DataFrame(rows), sig.DEFAULTS)
        ctx = _context(req, req.groupby("account_id").size(), CLUSTERS, ScoringConfig(), lambda h: {}, sig.DEFAULTS,
                       EvidenceParams())
        return {(v.field, v.value) for v in _evidence_values(ctx, set(core), around=set(around))}

    block = ("subnet", "203.0.113.0/24")
    assert block in shared(work, pool[:4], pool[4:])
    assert block not in shared(work, pool[:4], [])
    assert block not in shared(work, pool[:1], pool[1:])  # one core holder is not enough
    # most of the block's users elsewhere (a carrier's NAT): not the pool's
    nat = _rows([f"nat{i}" for i in range(40)], 101, 2, "nat", subnet="203.0.113")
    assert block not in shared(work + nat, pool[:4], pool[4:])


def test_community_unit_links_to_its_pools_share_of_a_wrapper_family_only():
    # A pool's unclustered work (unit 50, community 0) and a wrapper family it shares with another operator's
    # ten accounts (6): linked. A popular topic its accounts also visit (7) and a family that another proxy
    # community dominates (8): not.
    ops = [f"op{i}" for i in range(6)]
    rows = [{"account_id": a, "cluster_id": 50, "n": 3} for a in ops]
    rows += [{"account_id": a, "cluster_id": c, "n": 1} for a in ops[:4] for c in (6, 7, 8)]
    rows += [{"account_id": f"r{i}", "cluster_id": 6, "n": 2} for i in range(10)]
    rows += [{"account_id": f"org{i}", "cluster_id": 7, "n": 2} for i in range(30)]
    rows += [{"account_id": f"q{i}", "cluster_id": 8, "n": 3} for i in range(6)]
    ac = pd.DataFrame(rows)
    total = ac.groupby("account_id")["n"].sum()
    community = pd.concat([pd.Series(0, index=ops), pd.Series(1, index=[f"q{i}" for i in range(6)])])
    groups = group_clusters(ac, total, ScoringConfig(), community, community_units={50})
    assert [6, 50] in groups and [7] in groups and [8] in groups
    assert [6] in group_clusters(ac, total, ScoringConfig(), community)  # not a community unit: no such link


def test_score_gates():
    full = {"focus": 1, "templating": 1, "training_value": 1, "sync": 1, "infrastructure": 1, "evenness": 1}
    assert score_signals({**full, "spread": 1.0, "diversity": 1.0}, ScoringConfig().weights) == pytest.approx(1.0)
    assert score_signals({**full, "spread": 0.0, "diversity": 1.0}, ScoringConfig().weights) == 0.0
    assert score_signals({**full, "spread": 1.0, "diversity": 0.1}, ScoringConfig().weights) == pytest.approx(0.1)
    # Signals that do not apply (None) are left out of the mean rather than counted as 0.
    tv = {"training_value": 1.0}
    assert score_signals({"focus": 1.0, "pivot": None, "spread": 1.0, "diversity": 1.0, **tv},
                         {"focus": 1, "pivot": 5}) == 1.0
    # ...except timing: a group too light to show synchronization has shown none (sync None counts as 0).
    light = {"focus": 1.0, "sync": None, "spread": 1.0, "diversity": 1.0, **tv}
    assert score_signals(light, {"focus": 1, "sync": 1}) == pytest.approx(0.5)
    assert score_signals(light, {"focus": 1, "sync": 1}, missing_as_zero=()) == 1.0
    # A group tied by operator evidence (shared infrastructure, re-sent samples) chose its timing: ordinary
    # timing (sync and regularity 0) or none to measure is left out, and shown timing still raises the score.
    w_t = {"focus": 1, "infrastructure": 1, "sync": 1, "regularity": 1}
    tied = {"focus": 0.5, "infrastructure": 0.5, "spread": 1.0, "diversity": 1.0, **tv}
    assert (score_signals({**tied, "sync": 0.0, "regularity": 0.0}, w_t)
            == score_signals({**tied, "sync": None, "regularity": None}, w_t) == pytest.approx(0.5))
    assert score_signals({**tied, "sync": 1.0, "regularity": 0.0}, w_t) == pytest.approx(2 / 3)
    assert score_signals({**tied, "samples": 0.6, "infrastructure": 0.0, "sync": 0.0, "regularity": 0.0},
                         {**w_t, "samples": 1}) == pytest.approx(1.1 / 3)
    # ...while a group with no such tie and ordinary timing is what a topic's organic users look like.
    assert score_signals({**tied, "infrastructure": 0.0, "sync": 0.0, "regularity": 0.0}, w_t) == pytest.approx(0.125)
    assert score_signals({**tied, "infrastructure": 0.0, "sync": None, "regularity": None}, w_t) == pytest.approx(
        1 / 6)
    # A pivot only adds evidence: a group large enough to be judged that moved no faster than everyone else
    # scores as one too small to judge, and a pivot raises the score.
    half = {"focus": 0.5, "spread": 1.0, "diversity": 1.0, **tv}
    w = {"focus": 1, "pivot": 1}
    assert score_signals({**half, "pivot": 0.0}, w) == score_signals({**half, "pivot": None}, w) == 0.5
    assert score_signals({**half, "pivot": 1.0}, w) == pytest.approx(0.75)
    assert score_signals({**half, "pivot": 0.0}, w, only_when_shown=()) == pytest.approx(0.25)
    # Re-sent samples only ever raise a score: below the mean of the others (or 0) they are left out.
    w = {"focus": 1, "samples": 1}
    assert score_signals({**half, "samples": 0.9}, w) == pytest.approx(0.7)
    assert score_signals({**half, "samples": 0.3}, w) == score_signals({**half, "samples": 0.0}, w) == 0.5
    assert score_signals({**half, "samples": 0.3}, w, only_raising=()) == pytest.approx(0.4)


def test_training_value_is_a_gate():
    """A perfectly coordinated workload with no training value is not a distillation campaign."""
    full = {"focus": 1, "templating": 1, "sync": 1, "infrastructure": 1, "evenness": 1, "spread": 1.0,
            "diversity": 1.0}
    weights = ScoringConfig().weights
    assert "training_value" not in weights
    assert score_signals({**full, "training_value": 0.0}, weights) == 0.0
    assert score_signals({**full, "training_value": 0.2}, weights, value_full=0.4) == pytest.approx(0.5)
    assert score_signals({**full, "training_value": 0.9}, weights, value_full=0.4) == pytest.approx(1.0)
    # Not judged (text the embedding model cannot read): the gate stays open, detection rests on behaviour.
    assert score_signals({**full, "training_value": None}, weights) == pytest.approx(1.0)


def _seats(accounts, cluster, n, prefix, org, hours_start, subnet, ua):
    rows = _rows(accounts, cluster, n, prefix, start_minutes=hours_start * 60, step_minutes=7, subnet=subnet, ua=ua)
    for r in rows:
        r["org_id"] = org
    return rows


def test_seats_of_one_organisation_are_one_customer():
    """Thirty seats of one org on one templated, valuable workload: an explanation, not a campaign."""
    seats = [f"seat-{i}" for i in range(30)]
    rows = _organic() + _seats(seats, 1, 8, "s", "org_acme", 9, "198.18.7", "acme-integration/2.1")
    res = find_campaigns(pd.DataFrame(rows), CLUSTERS, ScoringConfig())
    camp = res.campaigns.iloc[0]
    assert camp["n_accounts"] == 30 and camp["score"] == 0.0 and not camp["flagged"]
    assert camp["signals"]["spread"] == 0.0
    assert any(e.startswith("Explanation: the 30 accounts belong to 1 organisation") for e in camp["evidence"])
    assert "of 1 organisation" in camp["label"]
    # The egress block and user agent are shared inside the organisation only: not evidence of an operator.
    assert camp["signals"]["infrastructure"] == 0.0
    # The same traffic without org ids is thirty accounts behind one subnet: a campaign.
    for r in rows:
        r["org_id"] = None
    res = find_campaigns(pd.DataFrame(rows), CLUSTERS, ScoringConfig())
    assert res.campaigns.iloc[0]["flagged"] and res.campaigns.iloc[0]["signals"]["infrastructure"] > 0.9


def test_infrastructure_is_the_share_of_the_members_that_send_identifiers():
    """Half of a pool sends no IP, user agent or key: the other half all behind one block is full evidence, not
    half of it (stripping metadata from some accounts must not dilute the rest); the evidence says so."""
    pool = [f"camp-{i}" for i in range(20)]
    rows = _organic() + _rows(pool, 1, 6, "p", subnet="203.0.113", ua="python-httpx/0.27")
    for r in rows:
        if r["account_id"] in pool[10:]:
            r.update(ip=None, user_agent=None, api_key_id=None)
    camp = find_campaigns(pd.DataFrame(rows), CLUSTERS, ScoringConfig()).campaigns.iloc[0]
    assert camp["n_accounts"] == 20 and camp["signals"]["infrastructure"] == 1.0
    line = next(e for e in camp["evidence"] if e.startswith("Shared infrastructure"))
    assert "10 of 20 accounts" in line and "10 send no network or client identifiers" in line
    # One account left with identifiers shows nothing shared: the share is over every member again.
    for r in rows:
        if r["account_id"] in pool[1:10]:
            r.update(ip=None, user_agent=None, api_key_id=None)
    camp = find_campaigns(pd.DataFrame(rows), CLUSTERS, ScoringConfig()).campaigns.iloc[0]
    assert camp["n_accounts"] == 20 and camp["signals"]["infrastructure"] == 0.0


def test_two_operators_on_one_task_kind_are_two_campaigns():
    """Same wrapper (cluster 1), disjoint infrastructure and hours: two operators, each with its evidence."""
    a = [f"opa-{i}" for i in range(25)]
    b = [f"opb-{i}" for i in range(10)]
    rows = _organic()
    rows += _rows(a, 1, 12, "a", start_minutes=60, step_minutes=3, subnet="203.0.113", ua="ua-a")
    rows += _rows(b, 1, 12, "b", start_minutes=14 * 60, step_minutes=3, subnet="198.51.100", ua="ua-b")
    res = find_campaigns(pd.DataFrame(rows), CLUSTERS, ScoringConfig())
    flagged = res.campaigns[res.campaigns["flagged"]]
    assert len(flagged) == 2
    ca = res.campaign_accounts
    sets = [set(ca.loc[ca["campaign_id"] == c, "account_id"]) for c in flagged["campaign_id"]]
    assert sorted(sets, key=len) == [set(b), set(a)]
    assert all(any("One of 2 operators" in e for e in ev) for ev in flagged["evidence"])
    # One operator keeping one schedule behind one proxy pool stays one campaign.
    rows = _organic() + _rows(a + b, 1, 12, "a", start_minutes=60, step_minutes=3, subnet="203.0.113", ua="ua-a")
    res = find_campaigns(pd.DataFrame(rows), CLUSTERS, ScoringConfig())
    assert res.campaigns["flagged"].sum() == 1 and res.campaigns.iloc[0]["n_accounts"] == 35


def _resending_pool(accounts, prefix, start_minutes=60, resend=True, per_account=8):
    """A bare pool (no identifiers) on cluster 1 whose accounts send each rendered prompt twice, from two
    neighbouring accounts (best-of-n samples spread over the pool: the pool is one chain of shared prompts)."""
    rows = _rows(accounts, 1, per_account, prefix, start_minutes=start_minutes, step_minutes=3)
    n = len(accounts)
    for r in rows:
        i, k = accounts.index(r["account_id"]), int(r["prompt_hash"].rsplit("-", 1)[1])
        pair = i // 2 if k % 2 == 0 else ((i + 1) % n) // 2
        r.update(ip=None, user_agent=None, api_key_id=None,
                 prompt_hash=f"{prefix}-{pair}-{k}" if resend else r["prompt_hash"])
    return rows


def test_two_bare_pools_that_re_send_their_own_prompts_are_two_operators():
    """Two bare pools on one task kind, the same hours and the same work: nothing in identifiers or behaviour
    tells them apart, but each re-sends its own rendered prompts across its accounts and never the other's,
    which one pool would not do by chance. Two campaigns, the evidence says why; without re-sends (or with the
    rule off) one; one pool re-sending across all its accounts stays one; two cohorts that were never active
    at the same time (a banned pool and its replacements) are not told apart by prompts."""
    a = [f"opa-{i}" for i in range(16)]
    b = [f"opb-{i}" for i in range(12)]

    def flagged(rows, config=None):
        res = find_campaigns(pd.DataFrame(rows), CLUSTERS, config or ScoringConfig())
        ca = res.campaign_accounts
        camps = res.campaigns[res.campaigns["flagged"]]
        return (sorted((set(ca.loc[ca["campaign_id"] == c, "account_id"]) for c in camps["campaign_id"]), key=len),
                list(camps["evidence"]))

    two = _organic() + _resending_pool(a, "a") + _resending_pool(b, "b")
    sets, evidence = flagged(two)
    assert sets == [set(b), set(a)]
    assert all(any("One of 2 operators" in e and "re-send" in e for e in ev) for ev in evidence)
    assert not any("Re-sent across accounts" in e for ev in evidence for e in ev)  # said once, by the split
    assert flagged(two, ScoringConfig(operator_prompt_max_accounts=0))[0] == [set(a + b)]
    sets, evidence = flagged(_organic() + _resending_pool(a, "a", resend=False) + _resending_pool(b, "b", resend=False))
    assert sets == [set(a + b)] and not any("Re-sent across accounts" in e for e in evidence[0])
    sets, evidence = flagged(_organic() + _resending_pool(a + b, "a"))
    assert sets == [set(a + b)]
    # one pool re-sending across all its accounts: 28 accounts x 8 requests, each rendered prompt sent by two
    assert any(e.startswith("Re-sent samples (1.00): 112 of its 112 distinct prompts") for e in evidence[0])
    # the second pool starts a week after the first one ends, at the same hour of day
    later = _organic() + _resending_pool(a, "a") + _resending_pool(b, "b", start_minutes=60 + 7 * 1440)
    assert flagged(later)[0] == [set(a + b)]


def test_re_sent_prompts_keep_two_communities_apart_only_on_enough_evidence():
    """Two communities of ten accounts, 40 requests each, each re-sending prompts of its own (two sends a prompt):
    one pool would keep one such prompt on one side with probability 1/2, so 6 prompts (1/64) prove nothing and
    12 (1/4096) do, however they fall between the two; a community that re-sends nothing is not told apart by
    prompts (no sampling of its own to compare)."""
    from analyzer.campaigns import _apart_by_prompts

    members = [f"a{i}" for i in range(20)]
    infra = np.array([0] * 10 + [1] * 10)
    req = pd.DataFrame({"account_id": np.repeat(members, 4), "t": np.tile(np.arange(4) * 3600, 20)})

    def apart(n_a: int, n_b: int) -> bool:
        cols = [(i % 10, (i + 1) % 10) for i in range(n_a)] + [(10 + i % 10, 10 + (i + 1) % 10) for i in range(n_b)]
        rows = [r for pair in cols for r in pair]
        inc = sp.csr_matrix((np.ones(len(rows)), (rows, np.repeat(np.arange(len(cols)), 2))), shape=(20, len(cols)))
        member, t = pd.Categorical(req["account_id"], categories=members).codes, req["t"].to_numpy()
        pairs = _apart_by_prompts(infra, inc, member, t, ScoringConfig())
        in_blocks = _apart_by_prompts(infra, inc, member, t, ScoringConfig(operator_block_accounts=1))
        assert sorted(map(tuple, pairs.tolist())) == sorted(map(tuple, in_blocks.tolist()))
        return sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0)]

    assert not apart(3, 3)
    assert apart(6, 6) and apart(11, 1)
    assert not apart(12, 0)


def test_a_popular_client_version_in_side_traffic_does_not_join_two_operators():
    """Two operators behind their own blocks and hours; one sends from a popular SDK version, which a few ordinary
    customers use too, and three accounts of the other send their side traffic from it. It is concentrated on the
    group (evidence) but not an operator's own client string: not a link. A user agent every holder of which is
    in the group (an operator's own) still links."""
    a = [f"opa-{i}" for i in range(25)]
    b = [f"opb-{i}" for i in range(10)]
    sdk = "OpenAI/Python 1.58.1"

    def requests(b_agent: str, organic_agent: str) -> pd.DataFrame:
        rows = _organic()
        for r in rows:
            if r["account_id"] in {f"org-{i}" for i in range(8)}:
                r["user_agent"] = organic_agent
        rows += _rows(a, 1, 12, "a", start_minutes=60, step_minutes=3, subnet="203.0.113", ua="ua-a")
        rows += _rows(b, 1, 12, "b", start_minutes=14 * 60, step_minutes=3, subnet="198.51.100", ua=b_agent)
        rows += _rows(a[:3], -1, 3, "side", start_minutes=600, step_minutes=60, ua=b_agent)
        return pd.DataFrame(rows)

    def flagged_sets(req: pd.DataFrame) -> list[set[str]]:
        res = find_campaigns(req, CLUSTERS, ScoringConfig())
        ca = res.campaign_accounts
        return sorted((set(ca.loc[ca["campaign_id"] == c, "account_id"])
                       for c in res.campaigns.loc[res.campaigns["flagged"], "campaign_id"]), key=len)

    assert flagged_sets(requests(sdk, sdk)) == [set(b), set(a)]
    # An agent string nobody else sends, shared by the two pools: one operator's client, one campaign.
    assert flagged_sets(requests("ua-b-private", "openai-python/1.0")) == [set(a + b)]


def test_an_eval_harness_re_running_its_test_set_is_not_a_harvest():
    """Twelve bare accounts re-run one CoT-prompted test set of 120 tasks on five nights: templated, synchronised,
    focused, behind one block; every task was first sent the first night, so 80% of the requests are re-runs and
    the score is scaled by 0.2, with the reason given. The same pool sending new tasks every night is flagged."""
    harness = [f"eval-{i}" for i in range(12)]

    def nights(new_tasks: bool) -> pd.DataFrame:
        rows = _organic()
        for night in range(5):
            for r in _rows(harness, 1, 10, "t", start_minutes=night * 1440 + 60, step_minutes=1, subnet="192.0.2"):
                if new_tasks:
                    r["prompt_hash"] = f"n{night}-{r['prompt_hash']}"
                rows.append(r)
        return pd.DataFrame(rows)

    res = find_campaigns(nights(new_tasks=False), CLUSTERS, ScoringConfig())
    camp = res.campaigns.iloc[0]
    assert set(res.campaign_accounts.loc[res.campaign_accounts["campaign_id"] == camp["campaign_id"], "account_id"]) \
        == set(harness)
    assert camp["signals"]["reruns"] == pytest.approx(0.8) and not camp["flagged"]
    assert any(e.startswith("Evaluation re-runs") and "scaled by 0.20" in e for e in camp["evidence"])
    harvest = find_campaigns(nights(new_tasks=True), CLUSTERS, ScoringConfig()).campaigns.iloc[0]
    assert harvest["signals"]["reruns"] == 0.0 and harvest["flagged"]
    assert harvest["score"] > 3 * camp["score"]


def test_a_problem_statement_pasted_around_own_words_is_not_a_template():
    """Twenty students in one session each paste one of three assignment problems into the same templated unit
    around lead-ins of their own: distinct prompts, three tasks. That unit's template does not count; twenty
    accounts filling the same template with a task each do."""
    students = [f"student-{i}" for i in range(20)]

    def requests(n_tasks: int) -> pd.DataFrame:
        rows = _organic() + _rows(students, 1, 3, "s", start_minutes=600, step_minutes=2)
        for i, r in enumerate(rows[-60:]):
            r["task_id"] = i % n_tasks
        frame = pd.DataFrame(rows)
        frame["task_id"] = frame["task_id"].fillna(frame.index.to_series() + 1000).astype(np.int64)
        return frame

    def templating(frame: pd.DataFrame) -> float:
        res = find_campaigns(frame, CLUSTERS, ScoringConfig())
        ca = res.campaign_accounts
        camp = next(c for _, c in res.campaigns.iterrows()
                    if set(ca.loc[ca["campaign_id"] == c["campaign_id"], "account_id"]) >= set(students))
        return camp["signals"]["templating"]

    assert templating(requests(3)) == 0.0
    assert templating(requests(60)) == 1.0


def test_a_few_accounts_unlike_every_operator_are_not_folded_into_the_nearest_one():
    """Four bare accounts of an eval harness working one of the pool's units at other hours (like each other,
    like none of the pool's accounts) are not counted as the pool's: they are a candidate of their own."""
    pool = [f"opa-{i}" for i in range(25)]
    harness = [f"eval-{i}" for i in range(4)]
    rows = _organic()
    rows += _rows(pool, 1, 8, "a", start_minutes=60, step_minutes=3, subnet="203.0.113", ua="ua-a")
    rows += _rows(pool, 2, 4, "a2", start_minutes=90, step_minutes=3, subnet="203.0.113", ua="ua-a")
    bare = _rows(harness, 2, 12, "e", start_minutes=14 * 60, step_minutes=3)
    for r in bare:
        r.update(ip=None, user_agent=None, api_key_id=None)
    res = find_campaigns(pd.DataFrame(rows + bare), CLUSTERS, ScoringConfig())
    ca = res.campaign_accounts
    flagged = res.campaigns[res.campaigns["flagged"]]
    assert len(flagged) == 1
    assert set(ca.loc[ca["campaign_id"] == flagged.iloc[0]["campaign_id"], "account_id"]) == set(pool)
    assert set(harness) <= set(ca["account_id"])  # still shown, as a candidate of their own
    # The same four keeping the pool's hours over its work are the pool's.
    bare = _rows(harness, 1, 8, "e", start_minutes=60, step_minutes=3) + _rows(harness, 2, 4, "e2", start_minutes=90,
                                                                                  step_minutes=3)
    for r in bare:
        r.update(ip=None, user_agent=None, api_key_id=None)
    res = find_campaigns(pd.DataFrame(rows + bare), CLUSTERS, ScoringConfig())
    flagged = res.campaigns[res.campaigns["flagged"]]
    assert len(flagged) == 1 and flagged.iloc[0]["n_accounts"] == 29


def test_a_leftover_account_joins_the_operator_whose_hours_and_work_it_shares():
    """A bare account of a pool, too light to stand apart, joins the operator doing its work, not an eval harness
    that merely keeps nearer hours on work of its own; with no work in common with either, its hours decide."""
    from analyzer.campaigns import _nearest_operator

    def hours(*peaks: int) -> np.ndarray:
        h = np.zeros(24)
        h[list(peaks)] = 1.0
        return h / np.linalg.norm(h)

    # members 0-2: the pool (nights, unit 0); 3-5: the harness (evenings, unit 1); 6, 7: leftovers
    unit_hours = np.stack([hours(1, 2)] * 3 + [hours(20, 21)] * 3 + [hours(2, 20, 21), hours(2, 20, 21)])
    work = sp.csr_matrix(np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] * 3 + [[1, 0, 0], [0, 0, 1]], dtype=float))
    comp = np.array([0, 0, 0, 1, 1, 1, 2, 3])
    nearest = _nearest_operator(unit_hours, work, comp, np.array([0, 1]))
    assert nearest[6] == 0  # the pool's work, though its hours are nearer the harness's
    assert nearest[7] == 1  # work of neither: the nearer hours
    assert list(nearest[:6]) == [0, 0, 0, 1, 1, 1]


def test_operator_communities_merge_on_shared_behaviour_not_one_chance_pair():
    from analyzer.campaigns import _merge_by_behaviour

    # Two pools of ten behind their own blocks (0-9, 10-19); accounts 20 and 21 each behind a proxy of their own.
    infra = np.array([0] * 10 + [1] * 10 + [2, 3])
    alike = np.eye(22, dtype=bool)
    alike[5, 15] = alike[15, 5] = True  # one chance pair across the pools
    alike[20, 3] = alike[3, 20] = alike[21, 20] = alike[20, 21] = True  # 20 works like pool 0's, 21 like 20
    merged = _merge_by_behaviour(infra, alike, ScoringConfig().operator_link_share)
    assert len(set(merged[:10]) | {merged[20], merged[21]}) == 1
    assert len(set(merged[10:20])) == 1 and merged[10] != merged[0]
    # Half of the second pool keeping the first one's hours over its work: one operator.
    for i in range(10, 15):
        alike[i, i - 10] = alike[i - 10, i] = True
    assert len(set(_merge_by_behaviour(infra, alike, ScoringConfig().operator_link_share))) == 1


def test_bare_accounts_resembling_two_pools_do_not_merge_them():
    from analyzer.campaigns import _merge_by_behaviour

    # Two pools behind their own blocks (0-9, 10-19) and eight bare accounts (20-27, no shared identifier,
    # each its own community) on the same diurnal hours: 20-23 do pool 0's work, 24-27 pool 1's; each also
    # happens to resemble one account of the other pool (one chance pair each).
    infra = np.array([0] * 10 + [1] * 10 + list(range(2, 10)))
    alike = np.eye(28, dtype=bool)
    for i in range(20, 24):
        alike[i, :10] = alike[:10, i] = True
        alike[i, 10 + i - 20] = alike[10 + i - 20, i] = True
    for i in range(24, 28):
        alike[i, 10:20] = alike[10:20, i] = True
        alike[i, i - 24] = alike[i - 24, i] = True
    merged = _merge_by_behaviour(infra, alike, ScoringConfig().operator_link_share, min_size=5)
    assert len(set(merged[:10]) | set(merged[20:24])) == 1 and len(set(merged[10:20]) | set(merged[24:28])) == 1
    assert merged[0] != merged[10]
    # without the size rule every bare account bridges the two pools: one community
    assert len(set(_merge_by_behaviour(infra, alike, ScoringConfig().operator_link_share))) == 1
    # bare accounts that resemble no pool but each other still form a community of their own
    alone = np.eye(28, dtype=bool)
    alone[20:28, 20:28] = True
    merged = _merge_by_behaviour(infra, alone, ScoringConfig().operator_link_share, min_size=5)
    assert len(set(merged[20:28])) == 1 and merged[20] not in {merged[0], merged[10]}


def _diurnal_pool(prefix: str, zones: list[float], n_per_account: int, subnet: str, ua: str, seed: int) -> list[dict]:
    """A pool on the cot wrapper (unit 1), nothing re-sent: account i sends ``n_per_account`` requests over two
    weeks in the daytime (09:00-22:00 local) of time zone ``zones[i]`` (its proxy's exit country)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, zone in enumerate(zones):
        acc = f"{prefix}-{i}"
        for k in range(n_per_account):
            local = rng.integers(0, 14) * 24 + rng.uniform(9, 22)
            rows.append({
                "account_id": acc, "ts": T0 + pd.Timedelta(hours=float(local - zone)), "prompt_hash": f"{acc}-{k}",
                "cluster_id": 1, "model": "m1", "ip": f"{subnet}.{i + 1}", "user_agent": ua,
                "api_key_id": f"k-{acc}", "org_id": None, "payment_id": None, "system_prompt": None,
            })
    return rows


#: Exit time zones: one pool's proxies round the world, another's in the Americas.
WORLD_ZONES = [8.0, 9.0, 1.0, 0.0, -5.0, 8.0, 9.0, 1.0, 0.0, -5.0]
AMERICAS_ZONES = [-3.0, -6.0, -5.0, -3.0, -4.0, -3.0, -6.0, -5.0, -3.0, -4.0]


def test_pooled_hours_tell_two_pools_apart_that_accounts_alone_do_not():
    """Two ten-account pools on one task kind, each behind its own proxies and sending on its exit countries' day
    with nothing re-sent: twenty requests an account read too noisily to keep them apart pair by pair, and they
    were one candidate that neither pool held a majority of. Pooled, their hours differ more than those of any
    random split of their accounts: two campaigns. Two halves of one pool, or pools of two requests an account,
    are not told apart."""
    from analyzer.campaigns import _apart_by_hours, _hour_counts

    config = ScoringConfig()
    rows = (_diurnal_pool("wa", WORLD_ZONES, 20, "203.0.113", "ua-a", 1)
            + _diurnal_pool("am", AMERICAS_ZONES, 20, "198.51.100", "ua-b", 2))
    req = pd.DataFrame(rows)
    req["t"] = (req["ts"] - T0).dt.total_seconds()
    members = sorted(req["account_id"].unique())  # am-0..9, then wa-0..9
    counts = _hour_counts(req, members, config.operator_hour_smoothing)
    two_pools = np.array([0] * 10 + [1] * 10)
    assert _apart_by_hours(two_pools, counts, np.array([[0, 1]]), config).tolist() == [True]
    halves = np.array([0, 1] * 5 + [2, 3] * 5)  # each pool cut in two at random: no pair apart
    assert not _apart_by_hours(halves, counts, np.array([[0, 1], [2, 3]]), config).any()
    few = req.groupby("account_id").head(2)  # two requests an account: nothing to tell
    assert _apart_by_hours(two_pools, _hour_counts(few, members, config.operator_hour_smoothing),
                           np.array([[0, 1]]), config).tolist() == [False]
    # through the whole scoring: two campaigns, one per pool; with the test off, one candidate holding both
    full = pd.DataFrame(_organic() + rows)
    for splits, expected in ((config.operator_hours_splits, 2), (0, 1)):
        res = find_campaigns(full, CLUSTERS, replace(config, operator_hours_splits=splits))
        ca = res.campaign_accounts[res.campaign_accounts["account_id"].str.match(r"(wa|am)-")]
        pools = ca.groupby("campaign_id")["account_id"].agg(lambda s: {a[:2] for a in s})
        assert len(pools) == expected
        if expected == 2:
            assert sorted(map(sorted, pools)) == [["am"], ["wa"]]


def test_copiers_of_a_viral_prompt_in_a_pools_unit_are_not_its_accounts():
    """A viral prompt clustered with a tool-use pool's tasks (one unit): its senders, three copies each at ordinary
    hours, are no accounts of the pool; one customer who copies it and also asks something of their own in that
    unit does not lead the pool into the copiers' community either."""
    from analyzer.campaigns import _copiers, _popular_codes

    rng = np.random.default_rng(3)
    pool = [f"pool-{i}" for i in range(10)]
    rows = _organic() + _rows(pool, 1, 20, "task", start_minutes=600, step_minutes=37, subnet="203.0.113", ua="ua-p")
    copiers = [f"viral-{i}" for i in range(25)]
    for i, acc in enumerate(copiers + ["both"]):
        for k in range(3):
            rows.append({"account_id": acc, "ts": T0 + pd.Timedelta(minutes=int(rng.integers(0, 7 * 1440))),
                         "prompt_hash": f"viral-{k % 2}", "cluster_id": 1, "model": "m1",
                         "ip": f"{rng.integers(1, 220)}.{rng.integers(0, 255)}.{i}.9", "user_agent": "openai-python/1.0",
                         "api_key_id": f"k-{acc}", "org_id": None, "payment_id": None, "system_prompt": None})
    rows += [{**rows[-1], "prompt_hash": f"own-{k}", "ts": T0 + pd.Timedelta(minutes=600 + 37 * k)} for k in range(3)]
    req = pd.DataFrame(rows)
    res = find_campaigns(req, CLUSTERS, ScoringConfig())
    ca = res.campaign_accounts
    pool_campaign = ca.loc[ca["account_id"] == "pool-0", "campaign_id"].iloc[0]
    assert set(ca.loc[ca["campaign_id"] == pool_campaign, "account_id"]) <= set(pool) | {"both"}
    row = res.campaigns.set_index("campaign_id").loc[pool_campaign]
    assert row["flagged"] and any("copies of popular texts" in e for e in row["evidence"])
    # the pieces: copies are prompts sent by more than eight accounts; copiers send nothing else in the group
    codes = pd.factorize(req["prompt_hash"])[0]
    accounts = pd.factorize(req["account_id"])[0]
    popular = _popular_codes(codes, accounts, ScoringConfig().operator_prompt_max_accounts)
    assert set(req.loc[popular >= 0, "prompt_hash"]) == {"viral-0", "viral-1"}
    in_unit = (req["cluster_id"] == 1).to_numpy()
    members = pd.Index(sorted(set(req.loc[in_unit, "account_id"])))
    copier = _copiers(members.get_indexer(req.loc[in_unit, "account_id"]), popular[in_unit], len(members))
    assert set(members[copier]) == set(copiers)
    assert _copiers(np.array([0, 1]), np.array([5, 5]), 2) is None  # nobody doing work of their own: no rule


def test_small_communities_join_a_pool_through_its_own_accounts_not_through_each_other():
    from analyzer.campaigns import _merge_by_behaviour

    # A pool behind its blocks (0-9); account 10 resembles it; accounts 11-15 resemble only account 10 and
    # each other: they do not follow 10 into the pool, and stay one community of their own.
    infra = np.array([0] * 10 + list(range(1, 7)))
    alike = np.eye(16, dtype=bool)
    alike[10, :10] = alike[:10, 10] = True
    alike[11:16, 10] = alike[10, 11:16] = True
    alike[11:16, 11:16] = True
    merged = _merge_by_behaviour(infra, alike, ScoringConfig().operator_link_share, min_size=5)
    assert merged[10] == merged[0] and len(set(merged[:11])) == 1
    assert len(set(merged[11:16])) == 1 and merged[11] != merged[0]


def test_one_relayed_prompt_in_common_does_not_link_two_pools():
    """Two bare pools each spread samples of their prompts over three of their own ten accounts; one account of
    each relays the same ordinary customer prompt. Two communities, not one; a light account that shares one
    sample with a pool joins it, and two light accounts sharing one prompt with each other are one community."""
    from analyzer.campaigns import _infra_components, _prompt_links, _weak_prompt_ties

    rng = np.random.default_rng(5)
    columns = [rng.choice(10, size=3, replace=False) + offset for offset in (0, 10) for _ in range(30)]
    columns.append(np.array([5, 15]))  # the relayed prompt both pools' hydra accounts happened to send
    columns.append(np.array([20, 3]))  # a light account of pool A: one sample in common with it
    columns.append(np.array([21, 22]))  # two light accounts of a third pool
    rows = np.concatenate(columns)
    cols = np.concatenate([[c] * len(m) for c, m in enumerate(columns)])
    prompt_inc = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(23, len(columns)))
    config = ScoringConfig()
    strong = _infra_components(23, _prompt_links(prompt_inc, config))
    pools = _weak_prompt_ties(strong, prompt_inc, config.min_operator_accounts)
    assert len(set(pools[:10])) == 1 and len(set(pools[10:20])) == 1 and pools[0] != pools[10]
    assert pools[20] == pools[0] and pools[21] == pools[22] and pools[21] not in {pools[0], pools[10]}
    # one prompt in common as a link, as before: the two pools were one community
    assert len(set(_infra_components(23, prompt_inc)[:20])) == 1


def test_pieces_of_one_bare_pool_are_joined_on_their_pooled_hours_and_work():
    """A bare pool that samples each prompt once falls apart into communities on account-by-account hours and
    work; pooled, the pieces keep the same hours over the same work and are joined. Pieces on other work, and
    two communities tied by identifiers, are not."""
    from analyzer.campaigns import _join_untied

    rng = np.random.default_rng(0)
    day = np.exp(-0.5 * ((np.arange(24) - 14) / 3.0) ** 2)  # one diurnal curve
    n = 30
    hours = rng.poisson(day * 2, size=(n, 24)).astype(float) + 1e-3
    hours /= np.linalg.norm(hours, axis=1, keepdims=True)
    # units 0-3: pool A's work, spread at random over its accounts (0-19); unit 4: pool B's (20-29)
    counts = np.zeros((n, 5))
    counts[:20, :4] = rng.integers(0, 6, size=(20, 4)) + 1
    counts[20:, 4] = 10
    work = sp.csr_matrix(counts / np.linalg.norm(counts, axis=1, keepdims=True))
    comp = np.array([0] * 8 + [1] * 7 + [2] * 5 + [3] * 10)  # A in three pieces, B whole
    bare = np.arange(n)  # no shared identifier: every account its own infrastructure community
    joined = _join_untied(comp, bare, hours, work, ScoringConfig())
    assert len(set(joined[:20])) == 1 and joined[20] not in set(joined[:20]) and len(set(joined[20:])) == 1
    # pieces tied inside by identifiers (each piece behind its own block) are left as they are
    blocks = comp.copy()
    assert len(set(_join_untied(comp, blocks, hours, work, ScoringConfig()))) == 4
    # an untied piece that resembles two tied pools joins one of them and does not chain them into one
    tied_two = np.where(comp < 2, comp, 2)  # pieces 0 and 1 behind blocks of their own, the rest bare
    tied_two[comp >= 2] = 100 + np.arange((comp >= 2).sum())
    joined = _join_untied(comp, tied_two, hours, work, ScoringConfig())
    assert joined[0] != joined[8] and joined[15] in {joined[0], joined[8]}


def test_operator_split_in_blocks_is_the_whole_tables_split():
    """The operator split's pairwise work, taken a block of members at a time, gives what the whole
    members x members tables gave: the same alike pairs, communities and merged operators for any block."""
    from dataclasses import replace

    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from analyzer.campaigns import _alike_members, _infra_components, _merge_by_behaviour

    rng = np.random.default_rng(7)
    n, n_units, n_values = 61, 9, 14
    hours = rng.random((n, 24)) ** 4  # peaked profiles: some pairs alike, most not
    hours /= np.linalg.norm(hours, axis=1, keepdims=True)
    counts = rng.poisson(0.4, size=(n, n_units)).astype(float)
    counts[np.arange(n), rng.integers(0, n_units, n)] += 1.0  # every member works somewhere
    dense = counts / np.linalg.norm(counts, axis=1, keepdims=True)
    inc = sp.csr_matrix((rng.random((n, n_values)) < 0.03).astype(float))
    config = ScoringConfig()
    whole = (hours @ hours.T >= config.operator_timing_similarity) & (dense @ dense.T >= config.operator_work_similarity)
    work = sp.csr_matrix(dense)
    _, expected_infra = connected_components(sp.csr_matrix((inc @ inc.T).toarray() > 0), directed=False)
    infra = _infra_components(n, inc)
    assert np.array_equal(infra, expected_infra)  # the same communities, numbered the same way
    assert np.array_equal(_infra_components(n, None), np.arange(n))
    merged = []
    for block in (1, 7, n, 10 * n):
        alike = _alike_members(hours, work, replace(config, operator_block_accounts=block))
        assert np.array_equal(alike, whole)
        merged.append(_merge_by_behaviour(infra, alike, config.operator_link_share, config.min_operator_accounts,
                                          block))
    assert whole.sum() > n and not whole.all()  # the case is not trivial
    assert all(np.array_equal(m, merged[0]) for m in merged)


def test_pools_bridged_by_a_shared_text_stay_apart():
    """Two operators on different wrappers (units 1 and 2), both padding with the same documents (unit 5),
    same hours, different proxies: one group through the shared unit, but two operators."""
    a = [f"opa-{i}" for i in range(12)]
    c = [f"opc-{i}" for i in range(12)]
    clusters = {**CLUSTERS, 5: ClusterInfo(5, label="padding", template_coverage=1.0, n_fixed_words=12,
                                           training_value=0.9)}
    rows = _organic()
    rows += _rows(a, 1, 10, "a", start_minutes=60, step_minutes=4, subnet="203.0.113", ua="ua-a")
    rows += _rows(a, 5, 10, "ap", start_minutes=62, step_minutes=4, subnet="203.0.113", ua="ua-a")
    rows += _rows(c, 2, 10, "c", start_minutes=61, step_minutes=4, subnet="198.51.100", ua="ua-c")
    rows += _rows(c, 5, 10, "cp", start_minutes=63, step_minutes=4, subnet="198.51.100", ua="ua-c")
    res = find_campaigns(pd.DataFrame(rows), clusters, ScoringConfig())
    flagged = res.campaigns[res.campaigns["flagged"]]
    ca = res.campaign_accounts
    sets = sorted((set(ca.loc[ca["campaign_id"] == i, "account_id"]) for i in flagged["campaign_id"]), key=min)
    assert sets == [set(a), set(c)]


WRAPPERS = {c: ClusterInfo(c, label=f"wrapper {c}", template_coverage=1.0, n_fixed_words=20, training_value=0.2,
                           intent="tool use") for c in range(1, 8)}
WRAPPERS.update({8: ClusterInfo(8, label="support tickets", template_coverage=1.0, n_fixed_words=20,
                                training_value=0.2, intent="tool use")})
WRAPPERS.update({c: ClusterInfo(c, label=f"c{c}", template_coverage=0.1, n_fixed_words=1) for c in range(100, 131)})


def _fresh_pool(one_task_per_unit: bool) -> pd.DataFrame:
    """A pool's first day in a log with no network metadata: 40 accounts send one or two requests each over
    seven templated capability units (1-7) and nothing else (28 send to two neighbouring units, 12 to one);
    200 organic accounts do their own work; 30 organic one-off users send a templated workload (unit 8) that
    two of the pool's accounts also send. ``one_task_per_unit``: each unit is one problem asked in many words
    (a classroom), not a wrapper."""
    bare = {"ip": None, "user_agent": None, "api_key_id": None}
    rows = [{**r, **bare, "intent": "", "intent_similarity": 0.1, "task_id": k} for k, r in enumerate(_organic())]
    for i in range(40):
        units = [1 + i % 7, 1 + (i + 1) % 7] if i < 28 else [1 + i % 7]
        for k, unit in enumerate(units):
            rows.append({"account_id": f"pool-{i}", "ts": T0 + pd.Timedelta(minutes=37 * i + 300 * k),
                         "prompt_hash": f"p-{i}-{k}", "cluster_id": unit, "system_prompt": None,
                         "intent": "tool use", "intent_similarity": 0.4,
                         "task_id": unit if one_task_per_unit else 10**6 + 10 * i + k})
    for j in range(32):
        acc = f"pool-{j}" if j < 2 else f"ticket-{j}"
        rows.append({"account_id": acc, "ts": T0 + pd.Timedelta(minutes=41 * j), "prompt_hash": f"t-{j}",
                     "cluster_id": 8, "system_prompt": None, "intent": "tool use", "intent_similarity": 0.4,
                     "task_id": 2 * 10**6 + j})
    return pd.DataFrame(rows)


def test_capability_wrappers_are_templated_capability_units_with_a_task_per_prompt():
    req = _fresh_pool(one_task_per_unit=False)
    assert wrapper_units(req, WRAPPERS, ScoringConfig(), sig.DEFAULTS) == list(range(1, 9))
    # One problem per unit (a classroom's students in their own words), low training value, or no template: none.
    assert wrapper_units(_fresh_pool(one_task_per_unit=True), WRAPPERS, ScoringConfig(), sig.DEFAULTS) == [8]
    low = req.assign(intent_similarity=0.1)
    assert wrapper_units(low, WRAPPERS, ScoringConfig(), sig.DEFAULTS) == []
    # Text the model does not read (intent not judged) keeps the gate open, as for a campaign's training value.
    assert wrapper_units(low.assign(intent_similarity=np.nan), WRAPPERS, ScoringConfig(), sig.DEFAULTS)[:7] == \
        list(range(1, 8))
    untemplated = {c: ClusterInfo(c, template_coverage=0.2, n_fixed_words=20, training_value=0.9) for c in WRAPPERS}
    assert wrapper_units(req, untemplated, ScoringConfig(), sig.DEFAULTS) == []


def test_fresh_pool_over_capability_wrappers_is_one_campaign_listing_its_one_request_accounts():
    res = find_campaigns(_fresh_pool(one_task_per_unit=False), WRAPPERS)
    flagged = res.campaigns[res.campaigns["flagged"]]
    assert len(flagged) == 1
    row = flagged.iloc[0]
    accounts = set(res.campaign_accounts.loc[res.campaign_accounts["campaign_id"] == row["campaign_id"], "account_id"])
    pool = {f"pool-{i}" for i in range(40)}
    # Members (two requests) and the accounts with one request in the wrappers; no ticket user joins.
    assert accounts == pool and row["n_accounts"] == 40 and "40 accounts" in row["label"]
    assert sorted(row["clusters"]) == list(range(1, 8))
    assert any("not counted in its signals" in e for e in row["evidence"])
    # The same units, each one problem asked by many (a classroom): not linked, nothing flagged.
    res = find_campaigns(_fresh_pool(one_task_per_unit=True), WRAPPERS)
    assert not res.campaigns["flagged"].any()


def test_capability_wrappers_link_on_shared_accounts_beyond_chance_only():
    from dataclasses import replace
    from itertools import combinations

    cfg = ScoringConfig()
    # A pool of 36 accounts, each in two of six wrappers (1-6, 12-15 accounts each, 2-3 shared per pair: Jaccard
    # about 0.1, which no other rule links), among 300 accounts: linked. An organic template (7: 8 accounts of
    # its own) that three pool accounts of wrapper 1 also use: 3 of its 11 accounts work in another wrapper, so
    # it is not the pool's. A template whose 40 accounts share 2 with wrapper 1 (8): under the overlap share.
    pairs = list(combinations(range(1, 7), 2))
    rows = [{"account_id": f"a{i}", "cluster_id": c, "n": 1} for i in range(36) for c in pairs[i % len(pairs)]]
    in_1 = [f"a{i}" for i in range(36) if 1 in pairs[i % len(pairs)]]
    rows += [{"account_id": a, "cluster_id": 7, "n": 1} for a in [f"o{i}" for i in range(8)] + in_1[:3]]
    rows += [{"account_id": a, "cluster_id": 8, "n": 1} for a in [f"x{i}" for i in range(38)] + in_1[3:5]]
    ac = pd.DataFrame(rows)
    total = pd.Series(1, index=[f"n{i}" for i in range(300)])
    wrappers = list(range(1, 9))
    groups = group_clusters(ac, total, cfg, wrapper_units=wrappers)
    assert list(range(1, 7)) in groups and [7] in groups and [8] in groups
    every_pair = replace(cfg, wrapper_link_pool_share=0.0)  # without the pool rule the organic template would join
    assert list(range(1, 8)) in group_clusters(ac, total, every_pair, wrapper_units=wrappers)
    assert [1] in group_clusters(ac, total, cfg)  # not wrappers: no such link
    # Among 40 accounts in all, the pool's overlaps are chance (lift under 3): not linked.
    assert [1] in group_clusters(ac, total.iloc[:40], cfg, wrapper_units=wrappers)


def test_a_topic_units_templating_is_measured_on_the_prompts_it_holds():
    # A large topic cluster built around a support-ticket template: the templated prompts went to their family,
    # and the unit holds unrelated conversations attributed to it. Its stored 96% coverage describes the former.
    template = "Classify the customer message below into exactly one category: billing, shipping. Message: {…}"
    info = ClusterInfo(0, template=template, template_coverage=0.96, n_fixed_words=13, n_slots=1, kind="topic")
    family = ClusterInfo(1, template=template, template_coverage=0.96, n_fixed_words=13, n_slots=1, kind="template")
    chats = {f"h{i}": f"my kid spilled juice on the laptop again, what should I try first {i}" for i in range(30)}
    tickets = {f"t{i}": template.replace("{…}", f"where is my parcel number {i}") for i in range(30)}
    req = pd.DataFrame({"cluster_id": [0] * 30 + [1] * 30, "prompt_hash": list(chats) + list(tickets)})
    out = unit_template_coverage(req, {0: info, 1: family}, lambda hs: {**chats, **tickets}, ScoringConfig(),
                                 sig.DEFAULTS)
    assert out[0].template_coverage == 0.0 and out[1].template_coverage == 0.96  # families hold their own prompts
    # The same unit holding the templated prompts keeps its coverage; texts that cannot be read keep the stored one.
    req = pd.DataFrame({"cluster_id": [0] * 30, "prompt_hash": list(tickets)})
    assert unit_template_coverage(req, {0: info}, lambda hs: tickets, ScoringConfig(), sig.DEFAULTS)[0] \
        .template_coverage == 1.0
    assert unit_template_coverage(req, {0: info}, lambda hs: {}, ScoringConfig(), sig.DEFAULTS)[0] \
        .template_coverage == 0.96


def test_a_campaigns_label_does_not_depend_on_the_order_of_its_rows():
    """Two topic clusters holding the same share of a pool's tasks: the label names the lower id's subject
    whatever order the workspace returned the rows in (DuckDB's parallel scans do not keep one)."""
    clusters = {**CLUSTERS, 40: ClusterInfo(40, label="rivers", keywords=["rivers", "delta"], kind="topic"),
                41: ClusterInfo(41, label="comets", keywords=["comets", "orbit"], kind="topic")}
    pool = _rows([f"camp-{i}" for i in range(20)], 1, 8, "a", subnet="203.0.113")
    for k, row in enumerate(pool):
        row["topic_cluster"] = 40 + k % 2
    organic = pd.DataFrame(_organic()).assign(topic_cluster=-1)
    frame = pd.concat([pd.DataFrame(pool), organic], ignore_index=True)
    labels = []
    for order in (np.arange(len(frame)), np.arange(len(frame))[::-1]):
        camps = find_campaigns(frame.iloc[order].reset_index(drop=True), clusters, ScoringConfig()).campaigns
        labels.append(camps.loc[camps["clusters"].map(lambda c: 1 in c), "label"].iloc[0])
    assert labels[0] == labels[1] and "rivers" in labels[0]


def test_a_pool_written_in_a_script_the_model_does_not_read_is_named_from_its_own_words():
    # The pool's prompts are Chinese (intent not judged: NaN); their own words name what they ask for. The label
    # says so; the score and the flag are the same whatever the words say (named for the analyst, not scored).
    req = _scenario_requests()
    pool = req["account_id"].str.startswith("camp-")
    req["intent"] = np.where(pool, None, "customer support")
    req["intent_similarity"] = np.where(pool, np.nan, 0.1)
    rewrite = "请改写这个问题，使其符合内容规范，避免敏感的政治表述，然后给出合规、中立的回答。问题：{}"
    plain = "请看下面的内容并回复。内容：{}"

    def texts(template):
        return lambda hashes: {h: template.format(h) for h in hashes}

    named = find_campaigns(req, CLUSTERS, ScoringConfig(), texts(rewrite))
    unnamed = find_campaigns(req, CLUSTERS, ScoringConfig(), texts(plain))
    top, bare = named.campaigns.iloc[0], unnamed.campaigns.iloc[0]
    assert top["flagged"] and top["kind"] == "censorship-safe rewrite"
    assert top["label"].startswith("censorship-safe rewrites (named from its own wording")
    assert any("in their own words" in e and "合规" in e for e in top["evidence"])
    assert bare["kind"] == "" and "intent not judged" in bare["label"]
    assert (top["score"], top["flagged"]) == (bare["score"], bare["flagged"])


def test_an_unread_pool_whose_words_name_an_ordinary_workload_reads_as_ordinary_content():
    # The same pool (intent not judged: NaN) sending support tickets written in Chinese or Spanish: its own words
    # name an ordinary workload and no capability, so its training value is that of its English twin (0): not
    # flagged, and the evidence says why. Where they also name a capability, the capability wins (gate open).
    req = _scenario_requests()
    pool = req["account_id"].str.startswith("camp-")
    req["intent"] = np.where(pool, None, "customer support")
    req["intent_similarity"] = np.where(pool, np.nan, 0.1)
    tickets = {"zh": "把这张支持工单分类：账单、物流、退货、投诉。用两句话总结客户的消息。工单：{}",
               "es": "Clasifica este ticket: facturación, envío, devoluciones. Resume el mensaje del cliente. Ticket: {}"}
    both = "请一步一步地推理，写出完整的解题过程，并总结客户工单中的退货和物流问题：{}"

    def texts(template):
        return lambda hashes: {h: template.format(h) for h in hashes}

    for lang, template in tickets.items():
        top = find_campaigns(req, CLUSTERS, ScoringConfig(), texts(template)).campaigns.iloc[0]
        assert not top["flagged"] and top["score"] == 0.0, lang
        assert top["signals"]["training_value"] == 0.0
        assert "customer support, named from its own wording" in top["label"]
        assert any("name an ordinary workload (customer support" in e for e in top["evidence"])
    capability = find_campaigns(req, CLUSTERS, ScoringConfig(), texts(both)).campaigns.iloc[0]
    assert capability["flagged"] and capability["signals"]["training_value"] is None
    assert capability["kind"] == "chain-of-thought elicitation"


def test_cue_intent_names_a_capability_only_when_one_stands_out():
    assert sig.cue_intent("请一步一步地推理，写出完整的解题过程。") == (
        "chain-of-thought elicitation", ["推理", "一步一步", "解题过程"])
    assert sig.cue_intent("请根据评分标准打分。")[0] == "rubric grading"
    assert sig.cue_intent("请回复这封邮件。") == ("", [])  # no capability named
    assert sig.cue_intent("请推理。") == ("", [])  # one cue word is not enough
    # the Latin-script languages the models do not read, as whole words
    assert sig.cue_intent("Razona paso a paso y escribe cada cálculo intermedio.")[0] == "chain-of-thought elicitation"
    assert sig.cue_intent("Reformula la pregunta según las normas de contenido, políticamente segura.")[0] == \
        "censorship-safe rewrite"
    assert sig.cue_intent("Bewerte die Antwort: Punktzahl von 1 bis 5.")[0] == "rubric grading"
    assert sig.cue_intent("Analise os dados da tabela.")[0] == "data analysis"
    # ...and the languages read by the model's vocabulary or another script
    assert sig.cue_intent("Rozwiąż zadanie krok po kroku i pokaż całe rozumowanie.")[0] == "chain-of-thought elicitation"
    assert sig.cue_intent("Реши задачу шаг за шагом и покажи ход решения.")[0] == "chain-of-thought elicitation"
    assert sig.cue_intent("답변을 루브릭에 따라 채점하고 점수를 주세요.")[0] == "rubric grading"  # particles attached
    assert sig.cue_intent("Bu soruyu sansür kurallarına göre yeniden yaz, siyasi ifadelerden kaçın.")[0] == \
        "censorship-safe rewrite"
    assert sig.cue_intent("Klasyfikuj zgłoszenie klienta dotyczące zamówienia.", ordinary=True)[0] == "customer support"
    assert sig.cue_intent("お客様からの問い合わせを分類し、返金について返信してください。", ordinary=True)[0] == \
        "customer support"
    assert sig.cue_intent("Klasyfikuj zgłoszenie klienta dotyczące zamówienia.") == ("", [])  # no capability
    assert sig.cue_intent("A datos-driven approach to the tableaux") == ("", [])  # parts of words do not count
    assert sig.cue_intent("请推理并逐步评分，给出分数和评语。")[0] == "rubric grading"  # 3 cues against 2
    assert sig.cue_intent("推理 逐步 评分 打分") == ("", [])  # a tie names nothing


def test_cue_words_in_latin_script_are_whole_words():
    assert sig.cue_intent("请用API调用这个工具。") == ("tool use", ["工具", "调用", "api"])
    assert sig.cue_intent("关于 capital 和 transaction 的工具问题。") == ("", [])  # one cue: 工具; not api, action


def test_linked_pairs_by_blocks_give_every_pair_the_whole_product_gives() -> None:
    """The co-occurrence of clusters is taken a block of clusters at a time (memory at scale): whatever the
    block, the accepted pairs are those of counting every pair of clusters directly."""
    import itertools

    import numpy as np
    import pandas as pd

    from analyzer import campaigns

    rng = np.random.default_rng(3)
    rows = {(f"a{rng.integers(60)}", int(c)) for c in rng.integers(0, 40, size=900)}
    pairs = pd.DataFrame(sorted(rows), columns=["account_id", "cluster_id"])
    members = pairs.groupby("cluster_id")["account_id"].apply(set).to_dict()
    expected = {(a, b) if a < b else (b, a) for a, b in itertools.combinations(members, 2)
                if len(members[a] & members[b]) >= 3 and len(members[a] & members[b]) / min(
                    len(members[a]), len(members[b])) >= 0.2}

    def accept(n, a, b):
        return (n >= 3) & (n / np.minimum(a, b) >= 0.2)

    assert expected and len(expected) < 40 * 39 // 2
    for block in (1, 7, 10_000):
        got = {tuple(sorted(p)) for p in campaigns._linked_pairs(pairs, accept, block).tolist()}
        assert got == expected


def test_focus_counts_an_operators_capability_work_elsewhere_but_not_ordinary_traffic():
    """A pool behind shared proxies spreading each account over its campaign's unit and capability requests
    elsewhere (unclustered tool calls, text in a script the model does not read) is as focused as one doing
    nothing else; an account whose other requests are ordinary chat is not; accounts with nothing tying them
    together (independent users of one template) keep the unit's own share; ``focus_capability_value`` above 1
    counts the unit alone."""
    def pool_rows(elsewhere_sim: float, subnet: str | None = "203.0.113") -> list[dict]:
        accounts = [f"p{i}" for i in range(12)]
        rows = [{**r, "intent": "chain-of-thought elicitation", "intent_similarity": 0.6}
                for r in _rows(accounts, 1, 4, "p", subnet=subnet)]
        return rows + _noise_work(accounts, "p-x", elsewhere_sim, subnet=subnet, n=4)

    def campaign(rows: list[dict], config: ScoringConfig) -> pd.Series:
        return find_campaigns(pd.DataFrame(rows + _organic(60)), CLUSTERS, config).campaigns.iloc[0]

    def focus_of(rows: list[dict], config: ScoringConfig) -> float:
        return float(campaign(rows, config)["signals"]["focus"])  # rounded to 4 places

    # the unclustered work stays outside the group (a proxy community's would otherwise be a unit of its own,
    # see community_units, and join the group)
    default = ScoringConfig(community_unit_min_accounts=10**6)
    all_work = 8 / (8 + default.focus_prior)
    in_unit = 4 / (8 + default.focus_prior)  # four of eight requests in the unit, shrunk by the prior
    busy = pool_rows(0.6)
    assert campaign(busy, default)["signals"]["infrastructure"] == 1.0
    assert focus_of(busy, default) == pytest.approx(all_work, abs=1e-4)
    assert focus_of(pool_rows(np.nan), default) == pytest.approx(all_work, abs=1e-4)
    assert focus_of(pool_rows(0.02), default) == pytest.approx(in_unit, abs=1e-4)
    independent = pool_rows(0.6, subnet=None)
    assert campaign(independent, default)["signals"]["infrastructure"] == 0.0
    assert focus_of(independent, default) == pytest.approx(in_unit, abs=1e-4)
    assert focus_of(busy, replace(default, focus_capability_value=1.5)) == pytest.approx(in_unit, abs=1e-4)
    sentence = next(e for e in campaign(busy, default)["evidence"] if e.startswith("Accounts are focused"))
    assert "capability work elsewhere" in sentence and f"{round(100 * in_unit)}% in this campaign" in sentence


def test_a_wrapper_composed_from_fragments_is_templated_where_no_unit_holds_it():
    """Twelve accounts with no shared infrastructure send a topic cluster without a template (many new tasks)
    and requests in no cluster, every prompt two of five fragments around a question of its own: the fragments are
    the group's wrapper sentences and the topic cluster's requests count as templated, with a sentence saying so.
    The same accounts asking in words of their own, or re-sending three tasks wrapped in the fragments, are not
    templated."""
    accounts = [f"w{i}" for i in range(12)]

    def requests(wrapped: bool, n_tasks: int) -> tuple[pd.DataFrame, dict[str, str]]:
        rows = [{**r, "intent": "censorship-safe rewrite", "intent_similarity": 0.6}
                for r in _rows(accounts, 7, 2, "w", subnet=None) + _rows(accounts, -1, 2, "wn", subnet=None)]
        texts = {}
        for i, r in enumerate(rows):
            r["task_id"] = i % n_tasks
            question = f"What happened to {_WORDS[r['task_id'] % 30]} {_WORDS[(r['task_id'] * 7) % 30]} that year"
            a, b = FRAGMENTS[i % len(FRAGMENTS)], FRAGMENTS[(i + 2) % len(FRAGMENTS)]
            texts[r["prompt_hash"]] = (f"{a}\n{question}\n{b}" if wrapped
                                       else f"Tell me, {_WORDS[i % 30]} friend: {question.lower()}?")
        frame = pd.DataFrame(rows + _organic(60))
        frame["task_id"] = frame["task_id"].fillna(frame.index.to_series() + 1000).astype(np.int64)
        return frame, texts

    def campaign(wrapped: bool, n_tasks: int, config: ScoringConfig | None = None) -> pd.Series:
        # the unclustered requests would otherwise be a unit of their own (wrapper_pool_units): this rule alone
        config = replace(config or ScoringConfig(), pool_unit_min_accounts=0)
        frame, texts = requests(wrapped, n_tasks)
        clusters = {**CLUSTERS, 7: ClusterInfo(7, label="topic", training_value=0.9, intent="censorship-safe rewrite")}
        res = find_campaigns(frame, clusters, config, texts_for=lambda hashes: {h: texts[h] for h in hashes if h in texts})
        ca = res.campaign_accounts
        return next(c for _, c in res.campaigns.iterrows()
                    if set(ca.loc[ca["campaign_id"] == c["campaign_id"], "account_id"]) >= set(accounts))

    fragments = campaign(True, 40)
    assert fragments["signals"]["templating"] == 1.0
    assert any(e.startswith("Wrapper sentences: 100%") for e in fragments["evidence"])
    assert campaign(False, 40)["signals"]["templating"] == 0.0
    assert campaign(True, 3)["signals"]["templating"] == 0.0  # three tasks re-sent in many wrappings
    assert campaign(True, 40, ScoringConfig(group_wrapper_min_tasks=0))["signals"]["templating"] == 0.0


def test_focus_counts_the_groups_own_kind_of_work_in_no_cluster_without_shared_infrastructure():
    """Accounts tied by nothing but their work: their requests of the group's own kind in no unit count towards
    focus (a pool composing wrappers too varied to cluster), those of another capability do not, nor those of the
    same kind in a unit of their own (students asking an assignment's other problems), and the focus sentence
    says which work it counted."""
    accounts = [f"k{i}" for i in range(12)]

    def campaign(elsewhere_intent: str, own_units: bool = False) -> pd.Series:
        rows = [{**r, "intent": "censorship-safe rewrite", "intent_similarity": 0.6}
                for r in _rows(accounts, 1, 4, "k", subnet=None)]
        rows += [{**r, "cluster_id": 200 + accounts.index(r["account_id"]) if own_units else -1}
                 for r in _noise_work(accounts, "k-x", 0.6, n=4, intent=elsewhere_intent)]
        config = ScoringConfig(community_unit_min_accounts=10**6)
        clusters = {**CLUSTERS, 1: replace(CLUSTERS[1], intent="censorship-safe rewrite")}
        return find_campaigns(pd.DataFrame(rows + _organic(60)), clusters, config).campaigns.iloc[0]

    prior = ScoringConfig().focus_prior
    same = campaign("censorship-safe rewrite")
    assert same["signals"]["infrastructure"] == 0.0
    assert same["signals"]["focus"] == pytest.approx(8 / (8 + prior), abs=1e-4)
    sentence = next(e for e in same["evidence"] if e.startswith("Accounts are focused"))
    assert "or other censorship-safe rewrite requests of their own in no cluster" in sentence
    assert campaign("tool use")["signals"]["focus"] == pytest.approx(4 / (8 + prior), abs=1e-4)
    other_unit = campaign("censorship-safe rewrite", own_units=True)
    assert other_unit["signals"]["focus"] == pytest.approx(4 / (8 + prior), abs=1e-4)


def test_unclustered_requests_sharing_wrapper_sentences_across_accounts_are_a_unit_without_shared_network():
    """Ten bare accounts compose their wrappers from shared fragments, every prompt in no cluster: their requests
    are one unit (a pool of fragments), with its template and intent; customers asking capability questions in
    words of their own stay in none, as does a pool of two accounts, and nothing is made with the rule off."""
    from analyzer.campaigns import WRAPPER_POOL_LABEL, _scoring_frame, wrapper_pool_units

    pool, texts = _wrapped([f"op{i}" for i in range(10)], "op", None, FRAGMENTS, sim=0.6)
    others = ["Write it for a regional newspaper column.", "Keep every paragraph under fifty words please.",
              "Mention two sources you would check first.", "End with a one sentence summary for readers."]
    pair, pair_texts = _wrapped(["two0", "two1"], "two", None, others, sim=0.6)  # fragments of its own
    own = _noise_work([f"own{i}" for i in range(10)], "own", 0.6, intent="censorship-safe rewrite")
    texts.update(pair_texts)
    texts.update({r["prompt_hash"]: f"Tell me about the {_WORDS[i % 30]} and the {_WORDS[(i * 11) % 30]} please"
                  for i, r in enumerate(own)})
    req = _scoring_frame(pd.DataFrame(pool + pair + own), sig.DEFAULTS)
    req["capability"] = True

    def units(config: ScoringConfig) -> tuple[pd.Series, dict[int, ClusterInfo]]:
        out, infos = wrapper_pool_units(req, CLUSTERS, config, sig.DEFAULTS,
                                        lambda hashes: {h: texts[h] for h in hashes if h in texts})
        return out.set_index("prompt_hash")["cluster_id"], infos

    unit, infos = units(ScoringConfig())
    new = sorted(set(infos) - set(CLUSTERS))
    assert len(new) == 1
    info = infos[new[0]]
    assert info.label == WRAPPER_POOL_LABEL and info.intent == "censorship-safe rewrite"
    assert info.template_coverage == 1.0 and info.n_fixed_words >= 8 and info.training_value > 0.5
    assert (unit[unit.index.str.startswith("op")] == new[0]).all()
    assert (unit[~unit.index.str.startswith("op")] == -1).all()  # own words; two accounts only
    assert set(units(ScoringConfig(pool_unit_min_accounts=0))[1]) == set(CLUSTERS)
    # the same units, with the same ids, whatever the order of the rows (a Ray run reads them in another order)
    shuffled, _ = wrapper_pool_units(req.sample(frac=1.0, random_state=3), CLUSTERS, ScoringConfig(), sig.DEFAULTS,
                                     lambda hashes: {h: texts[h] for h in hashes if h in texts})
    pd.testing.assert_series_equal(shuffled.set_index("prompt_hash")["cluster_id"].sort_index(), unit.sort_index())


def test_a_bare_pool_split_between_a_scaffold_family_and_no_cluster_is_one_flagged_campaign():
    """The pool's scaffold family holds two requests of each account; the rest of its work, composed from the same
    fragments in other combinations, is in no cluster. The unclustered work is a unit of its own, joins the
    family's group through the accounts they share, and the campaign says why it counts it."""
    accounts = [f"op{i}" for i in range(12)]
    family = [{**r, "intent": "censorship-safe rewrite", "intent_similarity": 0.6}
              for r in _rows(accounts, 1, 2, "fam", subnet=None)]
    rest, texts = _wrapped(accounts, "op", None, FRAGMENTS, sim=0.6)
    clusters = {**CLUSTERS, 1: replace(CLUSTERS[1], intent="censorship-safe rewrite")}
    res = find_campaigns(pd.DataFrame(family + rest + _organic(60)), clusters,
                         texts_for=lambda hashes: {h: texts[h] for h in hashes if h in texts})
    ca = res.campaign_accounts
    camp = next(c for _, c in res.campaigns.iterrows()
                if set(ca.loc[ca["campaign_id"] == c["campaign_id"], "account_id"]) >= set(accounts))
    assert camp["n_requests"] == len(family) + len(rest)
    assert camp["clusters"] == [1]  # the unclustered work is no stored cluster
    assert any("carry wrapper sentences that 3 or more accounts send" in e for e in camp["evidence"])


def test_templating_from_other_units_is_explained_without_a_zero_percent_main_template():
    """A campaign whose main unit is a topic cluster without a template, but half of whose requests fall in a
    scaffold family: the templating sentence names that family's scaffold and says the main unit has none,
    rather than "0% of the main unit's prompts share" a template."""
    from analyzer.campaigns import _Content, _templated_elsewhere

    topic = ClusterInfo(1, template="", template_coverage=0.0)
    family = ClusterInfo(2, template="answer neutrally … pass review {task}", template_coverage=0.9)
    line = _templated_elsewhere(0.45, _Content([topic, family], np.array([60.0, 40.0]), topic, "", 0.0))
    assert line.startswith("Templated (0.45)") and "answer neutrally" in line and "main unit's own prompts share none" in line
    none = _templated_elsewhere(0.4, _Content([topic], np.array([10.0]), topic, "", 0.0))
    assert "\u201c" not in none


def test_only_capability_prompts_few_accounts_send_count_as_samples():
    """A prompt re-sent by two accounts is a sample when it reads as capability work; an ordinary prompt (a hydra
    account's relayed customer traffic meeting the same question from a customer) and a prompt nine accounts send
    (popular) are not."""
    from analyzer.campaigns import _sample_codes

    rows = [("p-sample", a, True) for a in (0, 1)] + [("p-ordinary", a, False) for a in (0, 2)]
    rows += [("p-popular", a, True) for a in range(3, 12)]
    req = pd.DataFrame(rows, columns=["prompt_hash", "acode", "capability"])
    codes, senders = _sample_codes(req, np.arange(len(req)), ScoringConfig())
    kept = set(req.loc[codes >= 0, "prompt_hash"])
    assert kept == {"p-sample"}
    assert len(set(codes[codes >= 0])) == 1
    # each sample's senders among all requests, grouped or not (here two; the others are not counted)
    assert senders[codes[0]] == 2
    codes, senders = _sample_codes(req, np.arange(2), ScoringConfig())  # only the sample's two requests grouped
    assert senders[codes[0]] == 2 and (codes >= 0).all()


def test_only_an_operators_own_prompts_count_as_its_samples():
    """A prompt the operator's accounts re-send that no one else sends is its own sample; one that an account
    outside it also sends (a public prompt several customers copy) is not."""
    from analyzer.campaigns import _own_prompts, _sample_codes

    rows = [("p-own", a, True) for a in (0, 1)] + [("p-public", a, True) for a in (0, 1, 7)]
    req = pd.DataFrame(rows, columns=["prompt_hash", "acode", "capability"])
    mine = np.flatnonzero(req["acode"].isin([0, 1]).to_numpy())  # the operator's requests, grouped
    codes, senders = _sample_codes(req, mine, ScoringConfig())
    own = _own_prompts(codes, req["acode"].to_numpy()[mine], senders)
    assert set(req["prompt_hash"].iloc[mine][own >= 0]) == {"p-own"}


def test_samplers_of_different_customers_re_sending_capability_prompts_are_linked():
    """An account most of whose traffic is capability prompts two to eight accounts send is a sampler; samplers
    of two or more customers sending one such prompt are linked. An ordinary customer who meets one of them on
    one question in ten is not a sampler, one organisation's seats re-sending their own set link nothing, and a
    prompt nine accounts send is popular, nobody's sample."""
    from analyzer.campaigns import sampler_pairs, with_samplers

    rows = []
    pool = [f"p{i}" for i in range(6)]
    for k in range(12):  # each rendered prompt sent by two accounts of the pool
        rows += [(pool[(k + j) % 6], f"s-{k}", True) for j in (0, 1)]
    rows += [("c0", "s-0", True)] + [("c0", f"own-{k}", True) for k in range(9)]  # a customer meeting one sample
    rows += [(seat, f"set-{k}", True) for seat in ("seat0", "seat1") for k in range(4)]  # one organisation
    rows += [("retry", "s-1", True)] * 3 + [("retry", "own-r", True)]  # retries one question a pool sent too
    rows += [(f"fan{i}", "viral", True) for i in range(9)] + [("fan0", "viral-2", True), ("fan1", "viral-2", True)]
    req = pd.DataFrame(rows, columns=["account_id", "prompt_hash", "capability"])
    req["acode"] = pd.Categorical(req["account_id"]).codes.astype(np.int64)
    principal_of = pd.Series({a: f"account:{a}" for a in req["account_id"].unique()})
    principal_of[["seat0", "seat1"]] = "org:acme"
    pairs = sampler_pairs(req, principal_of, ScoringConfig())
    assert set(pairs["account_id"]) == set(pool)
    assert set(pairs["field"]) == {"prompt"} and set(pairs["value"]) == {f"s-{k}" for k in range(12)}
    community = with_samplers(pd.Series(dtype=np.int64), pairs)
    assert community.nunique() == 1 and set(community.index) == set(pool)
    # ordinary prompts (not capability) are nobody's samples; the rule off links nothing
    assert sampler_pairs(req.assign(capability=False), principal_of, ScoringConfig()).empty
    assert sampler_pairs(req, principal_of, ScoringConfig(sampler_min_share=2.0)).empty
    # the viral prompt's fans: counted as samples only once nine senders are allowed, and then only the two
    # sending two such prompts (sampler_min_prompts)
    assert not {"fan0", "fan1"} & set(pairs["account_id"])
    fans = set(sampler_pairs(req, principal_of, ScoringConfig(operator_prompt_max_accounts=9))["account_id"])
    assert fans - set(pool) == {"fan0", "fan1"}


def test_a_bare_pool_re_sending_samples_in_no_cluster_is_a_candidate_without_shared_infrastructure():
    """A small pool with no metadata whose prompts fall in no cluster: nothing links its accounts but the
    samples it re-sends across them, which make it one community whose unclustered work is a unit. Without the
    re-sends (or with the rule off) nothing groups those requests."""
    pool = [f"op{i}" for i in range(10)]

    def bare(resend: bool) -> list[dict]:
        rows = _noise_work(pool, "op", 0.5, n=6)
        for r in rows:
            i, k = pool.index(r["account_id"]), int(r["prompt_hash"].rsplit("-", 1)[1])
            r.update(ip=None, user_agent=None, api_key_id=None)
            if resend:  # each rendered prompt sent by two neighbouring accounts
                r["prompt_hash"] = f"op-{(i if k % 2 == 0 else i + 1) % 10 // 2}-{k}"
        return rows

    organic = _organic()
    res = find_campaigns(pd.DataFrame(organic + bare(True)), CLUSTERS)
    camp = res.campaign_accounts.groupby("campaign_id")["account_id"].agg(set)
    cid = next(c for c, accs in camp.items() if set(pool) <= accs)
    evidence = res.campaigns.set_index("campaign_id").loc[cid, "evidence"]
    assert any("in no cluster" in e and "re-send to each other" in e for e in evidence)
    for rows, config in ((organic + bare(False), ScoringConfig()),
                         (organic + bare(True), ScoringConfig(sampler_min_share=2.0))):
        res = find_campaigns(pd.DataFrame(rows), CLUSTERS, config)
        assert not set(res.campaign_accounts["account_id"]) & set(pool)


def test_samplers_join_the_community_whose_prompts_they_re_send_and_never_merge_two():
    """A bare sampler joins the infrastructure community whose accounts send most of its re-sent prompts;
    samplers meeting no community form one of their own (two or more); two communities sharing re-sent prompts
    (a hydra relay's public prompts meeting another pool's) stay two."""
    from analyzer.campaigns import with_samplers

    infra = pd.Series({"a0": 0, "a1": 0, "b0": 1, "b1": 1}, dtype=np.int64)
    rows = [("x", "bare"), ("a0", "bare"), ("x2", "bare"), ("y", "pa"), ("a0", "pa"), ("y", "pa2"), ("a1", "pa2"),
            ("y", "pb"), ("b0", "pb"), ("a1", "ab"), ("b1", "ab"), ("z0", "zz"), ("z1", "zz"), ("solo", "s")]
    samples = pd.DataFrame([("prompt", v, a) for a, v in rows], columns=["field", "value", "account_id"])
    out = with_samplers(infra, samples)
    assert out[["a0", "a1", "b0", "b1"]].tolist() == [0, 0, 1, 1]  # never merged through "ab"
    assert out["x"] == 0 and out["x2"] == 0  # joins through the prompt a0 sends too
    assert out["y"] == 0  # two prompts shared with community 0, one with community 1
    assert out["z0"] == out["z1"] and out["z0"] not in (0, 1)  # a community of their own
    assert "solo" not in out.index
    assert with_samplers(infra, samples.iloc[:0]).equals(infra)


def test_an_account_sending_a_campaigns_samples_keeps_a_partial_score():
    """A bare account of a pool whose few requests fell in no unit is no member, but the samples it shares with
    the campaign's members rank it above customers who never met the campaign: the campaign's score times
    ``partial_score_factor`` times the square of the share of its distinct prompts that members also send."""
    from analyzer.campaigns import _resent_pairs, _sample_partials

    rows = [("m0", "s1"), ("m1", "s1"), ("m0", "s2"), ("m1", "s2"), ("x", "s1"), ("x", "own-1"), ("x", "own-2"),
            ("x", "own-3"), ("y", "own-4"), ("y", "own-5")]
    rows += [(f"fan{i}", "viral") for i in range(9)] + [("y", "viral")]
    req = pd.DataFrame(rows, columns=["account_id", "prompt_hash"]).assign(capability=True)
    req["acode"] = pd.Categorical(req["account_id"]).codes.astype(np.int64)
    camp_acc = pd.DataFrame({"campaign_id": ["c1", "c1"], "account_id": ["m0", "m1"]})
    scores = pd.Series({"c1": 0.6})
    config = ScoringConfig()
    out = _sample_partials(_resent_pairs(req, config), req, camp_acc, scores, config)
    assert out["account_id"].tolist() == ["x"] and out["campaign_id"].tolist() == ["c1"]
    assert out["partial"].iloc[0] == pytest.approx(0.6 * config.partial_score_factor * (1 / 4) ** 2)
    # ordinary prompts are nobody's samples; the rule off gives nothing
    assert _sample_partials(_resent_pairs(req.assign(capability=False), config), req, camp_acc, scores, config).empty
    off = ScoringConfig(operator_prompt_max_accounts=0)
    assert _sample_partials(_resent_pairs(req, off), req, camp_acc, scores, off).empty


def test_a_pool_account_sharing_several_ordinary_samples_keeps_a_partial_score_and_one_shared_request_does_not():
    """A censorship pool's bare questions do not read as capability work, yet a bare account whose prompts are the
    members' re-sent ones belongs near them: with ``capability=False`` every re-sent prompt counts, from
    ``partial_min_shared_prompts`` shared. A customer whose one request is also a member's ordinary request gets
    nothing."""
    from analyzer.campaigns import _resent_pairs, _sample_partials

    rows = [(m, f"q{i}") for m in ("m0", "m1") for i in range(4)] + [("x", f"q{i}") for i in range(3)]
    rows += [("x", "own-1"), ("lone", "q3"), ("two", "q0"), ("two", "q1"), ("two", "own-2")]
    req = pd.DataFrame(rows, columns=["account_id", "prompt_hash"]).assign(capability=False)
    req["acode"] = pd.Categorical(req["account_id"]).codes.astype(np.int64)
    camp_acc = pd.DataFrame({"campaign_id": ["c1", "c1"], "account_id": ["m0", "m1"]})
    scores = pd.Series({"c1": 0.6})
    config = ScoringConfig()
    assert config.partial_min_shared_prompts == 3
    assert _resent_pairs(req, config) is None  # no capability prompt: nobody's samples in that sense
    pairs = _resent_pairs(req, config, capability=False)
    out = _sample_partials(pairs, req, camp_acc, scores, config, min_shared=config.partial_min_shared_prompts)
    assert out["account_id"].tolist() == ["x"]  # "lone" shares one prompt, "two" two
    assert out["partial"].iloc[0] == pytest.approx(0.6 * config.partial_score_factor * (3 / 4) ** 2)
    assert set(_sample_partials(pairs, req, camp_acc, scores, config)["account_id"]) == {"x", "lone", "two"}


def test_re_sent_samples_across_customers_raise_a_bare_pools_score_and_say_so():
    """A bare pool spreading each rendered prompt over two of its accounts (best-of-n samples) scores the samples
    signal, which raises its score over the same pool without re-sends, and the evidence says how many of its
    prompts are such samples. The same accounts as seats of one organisation are one customer re-sending its own
    prompts: no signal; with the re-sent prompt rule off, the signal does not apply; prompts that customers outside
    the pool send too are not its samples."""
    pool = [f"camp-{i}" for i in range(12)]

    def campaign(rows, config=None):
        res = find_campaigns(pd.DataFrame(_organic() + rows), CLUSTERS, config or ScoringConfig())
        return res.campaigns.iloc[0]

    resending = campaign(_resending_pool(pool, "a"))
    plain = campaign(_resending_pool(pool, "a", resend=False))
    assert resending["signals"]["samples"] == 1.0 and plain["signals"]["samples"] == 0.0
    assert resending["score"] > plain["score"] + 0.02  # 0.756 -> 0.789
    assert any(e.startswith("Re-sent samples (1.00): 48 of its 48 distinct prompts") and "sent by 12 of its 12 accounts"
               in e for e in resending["evidence"])
    assert not any(e.startswith("Re-sent samples") for e in plain["evidence"])
    # Ordinary customers whose few requests fall in the pool's unit are members that send none of its samples: the
    # signal is the share of the members that do.
    joined = _resending_pool(pool, "a") + _rows([f"org-{i}" for i in range(6)], 1, 4, "j", start_minutes=90)
    diluted = campaign(joined)
    assert diluted["n_accounts"] > 12
    assert diluted["signals"]["samples"] == pytest.approx(12 / diluted["n_accounts"], abs=1e-4)
    seats = _resending_pool(pool, "a")
    for r in seats:
        r["org_id"] = "org-acme"
    one_customer = campaign(seats)
    assert one_customer["signals"]["samples"] == 0.0
    assert not any(e.startswith("Re-sent samples") for e in one_customer["evidence"])
    assert campaign(_resending_pool(pool, "a"), ScoringConfig(operator_prompt_max_accounts=0))["signals"]["samples"] is None
    # The same prompts also sent by ordinary customers outside the pool (one each): public prompts they all copy,
    # nobody's own samples.
    copied = _resending_pool(pool, "a")
    distinct = sorted({r["prompt_hash"] for r in copied})
    copied += [dict(copied[0], account_id=f"org-{i}", prompt_hash=h) for i, h in enumerate(distinct)]
    assert campaign(copied)["signals"]["samples"] == 0.0
