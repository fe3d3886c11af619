"""Stable campaign identities across runs: match this run's campaigns to the previous run's, record transitions.

A campaign's provisional id (:func:`analyzer.campaigns.campaign_id`) is a hash of its accounts and clusters, so
it changes whenever membership changes, and cluster ids are not stable across re-clustering. This module
matches campaigns on what does survive a re-clustering: their member **accounts** and the **prompts** (prompt
hashes) their requests use (stored with their request counts). Accounts that replace banned ones and carry on the
same work share no account with the previous campaign but do share its prompts (the workspace keeps every
request, and a re-run's campaign holds yesterday's prompts too).

Everything here is pure: plain frames in, plain frames out. The pipeline (:func:`analyzer.pipeline.score`)
reads the previous state from the workspace and stores what :func:`match_campaigns`, :func:`history_rows` and
:func:`update_identity` return, in the same transaction as the campaign tables.

The overlap rule, for a previous campaign ``p`` and a current campaign ``c``, per member kind (accounts,
prompts) with weights ``w`` (1 per account, so that a few heavy accounts cannot outweigh the rest; requests per
prompt): ``I = sum over shared members of min(w_p, w_c)``;
``share_prev = I / W_p`` (how much of ``p`` is found in ``c``), ``share_cur = I / W_c`` (how much of ``c``
comes from ``p``), ``jaccard = I / (W_p + W_c - I)`` (the weighted Jaccard index). Each measure of the pair is
the larger of its account and its prompt value, so either kind of evidence suffices. Then, in this order:

1. **merged**: ``c`` has two or more *parents*, previous campaigns mostly inside it (``share_prev >=
   link_min``) that each make up at least ``part_min`` of it. It keeps the id of the largest parent (most
   accounts, then requests, then id) and records the others as ``parent_ids``.
2. **split**: a previous ``p`` (not a merge parent) has two or more *children*, current campaigns that mostly
   come from it (``share_cur >= link_min``) and each take at least ``part_min`` of it. A child holding most of
   ``p`` (``share_prev >= link_min``), if any, is ``p`` continued and keeps its id (so that a campaign that
   sheds a group of accounts keeps its identity); every other child is ``split`` with a new id and
   ``parent_ids = [p]``.
3. **continued**: among the rest, pairs where most of one lies in the other (``max(share_prev, share_cur) >=
   link_min``) and the current one holds at least ``part_min`` of the previous one (a crumb of a campaign
   that dispersed does not inherit its id) are assigned one-to-one, maximising the total weighted Jaccard
   (Hungarian algorithm,
   :func:`scipy.optimize.linear_sum_assignment`). A continued campaign keeps its id; it is ``grown`` or
   ``shrunk`` instead when its number of accounts changed by more than ``size_change`` (a fraction).
4. **revived**: a current campaign left new or split off that continues (as in 3) a campaign that ended
   (``gone``, or a merge parent) within ``revive_runs`` runs takes that id back (``continued``, or ``split``
   with its parent); the ended campaigns' member snapshots are kept for this (:func:`ended_snapshots`).
5. **new**: every other current campaign (its provisional id, or a fresh one if that id was ever used);
   **gone**: every other previous campaign (recorded once, in the run where it disappears).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

from analyzer.campaigns import CampaignResult

TRANSITIONS = ("new", "continued", "grown", "shrunk", "split", "merged", "gone")

#: Columns of the member frames: one row per (campaign, kind, member); ``kind`` is ``"account"`` or
#: ``"prompt"``, ``member`` the account id or prompt hash, ``weight`` its requests in the campaign.
MEMBER_COLUMNS = ["campaign_id", "kind", "member", "weight"]

#: Columns of the ended campaigns' member snapshots: :data:`MEMBER_COLUMNS` and the run they ended in.
ENDED_COLUMNS = [*MEMBER_COLUMNS, "ended_run"]

HISTORY_COLUMNS = ["run_id", "campaign_id", "transition", "parent_ids", "n_accounts", "n_requests", "score",
                   "flagged", "recorded_at"]
IDENTITY_COLUMNS = ["campaign_id", "first_seen", "last_seen", "first_flagged_at", "first_flagged_run_id",
                    "first_run_id", "last_run_id"]


@dataclass(frozen=True)
class HistoryConfig:
    """Thresholds of the campaign matching (see the module docstring for the rule they belong to)."""

    #: A pair is linked when at least this fraction of one campaign's weight (requests by its accounts, or
    #: requests on its prompts) lies in the other: "most of it". Also the share that makes a merge parent
    #: "mostly inside" its child, a split child "mostly from" its parent, and a split child the continuation.
    link_min: float = 0.5
    #: A merge parent must make up, and a split child must take, at least this fraction of the other side's
    #: weight to count as a part of the merge or split (smaller pieces are growth, shedding or noise); a
    #: continuation must hold at least this fraction of the previous campaign.
    part_min: float = 0.2
    #: A continued campaign is ``grown`` / ``shrunk`` when its account count changed by more than this
    #: fraction of the previous count.
    size_change: float = 0.25
    #: A campaign that ended (``gone``, or merged into another) within this many runs takes its id back when a
    #: later campaign that would otherwise be new or split off matches it as a continuation would: two
    #: operators merged for a day (bans and replacements) and apart again keep their ids.
    revive_runs: int = 7


@dataclass
class Matching:
    """The result of :func:`match_campaigns`.

    ``ids`` maps each current campaign's provisional id to its stable id (injective). ``transitions`` has one
    row per current campaign (``campaign_id`` = stable id) and one per previous campaign that is ``gone``:
    ``campaign_id, transition, parent_ids (list of ids)``.
    """

    ids: dict[str, str]
    transitions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["campaign_id", "transition", "parent_ids"]))


def campaign_members(requests: pd.DataFrame, campaign_accounts: pd.DataFrame,
                     campaign_clusters: dict[str, list[int]]) -> pd.DataFrame:
    """The accounts and prompts of each campaign, weighted by requests (frame of :data:`MEMBER_COLUMNS`).

    ``requests``: ``account_id, prompt_hash, cluster_id`` (the unit each request counts towards);
    ``campaign_accounts``: ``campaign_id, account_id, n_requests``; ``campaign_clusters``: campaign id -> its
    clusters. A campaign's prompts are those of its member accounts' requests in its clusters.
    """
    acc = pd.DataFrame({"campaign_id": campaign_accounts["campaign_id"], "kind": "account",
                        "member": campaign_accounts["account_id"],
                        "weight": campaign_accounts["n_requests"].astype(np.int64)})
    pairs = pd.DataFrame([(cid, int(c)) for cid, cs in campaign_clusters.items() for c in cs],
                         columns=["campaign_id", "cluster_id"])
    if pairs.empty or requests.empty:
        return acc[MEMBER_COLUMNS].reset_index(drop=True)
    req = requests[["account_id", "prompt_hash", "cluster_id"]].merge(pairs, on="cluster_id")
    req = req.merge(campaign_accounts[["campaign_id", "account_id"]], on=["campaign_id", "account_id"])
    prompts = req.groupby(["campaign_id", "prompt_hash"]).size().rename("weight").reset_index()
    prompts = pd.DataFrame({"campaign_id": prompts["campaign_id"], "kind": "prompt", "member": prompts["prompt_hash"],
                            "weight": prompts["weight"].astype(np.int64)})
    return pd.concat([acc, prompts], ignore_index=True)[MEMBER_COLUMNS]


def overlaps(previous_members: pd.DataFrame, current_members: pd.DataFrame) -> pd.DataFrame:
    """Every (previous, current) pair that shares a member: ``prev, cur, share_prev, share_cur, jaccard``.

    Per kind: ``I`` = sum of ``min`` weights over shared members, ``share_prev = I / W_prev``,
    ``share_cur = I / W_cur``, ``jaccard = I / (W_prev + W_cur - I)``; each measure is then the larger over
    the kinds. Accounts weigh 1 each here (their stored weight, requests, is not read); prompts weigh their
    requests.
    """
    cols = ["prev", "cur", "share_prev", "share_cur", "jaccard"]
    if previous_members.empty or current_members.empty:
        return pd.DataFrame(columns=cols)
    # Accounts count once each: two heavy accounts (an eval harness's hundreds of requests) that drift into a
    # campaign of fifteen light ones must not outweigh them when a re-clustering sheds them again.
    p = _counted(previous_members).rename(columns={"campaign_id": "prev", "weight": "wp"})
    c = _counted(current_members).rename(columns={"campaign_id": "cur", "weight": "wc"})
    joined = p.merge(c, on=["kind", "member"])
    if joined.empty:
        return pd.DataFrame(columns=cols)
    joined["i"] = np.minimum(joined["wp"].to_numpy(dtype=float), joined["wc"].to_numpy(dtype=float))
    inter = joined.groupby(["prev", "cur", "kind"])["i"].sum().reset_index()
    tp = p.groupby(["prev", "kind"])["wp"].sum().astype(float)
    tc = c.groupby(["cur", "kind"])["wc"].sum().astype(float)
    wp = tp.reindex(pd.MultiIndex.from_frame(inter[["prev", "kind"]])).to_numpy()
    wc = tc.reindex(pd.MultiIndex.from_frame(inter[["cur", "kind"]])).to_numpy()
    i = inter["i"].to_numpy()
    inter["share_prev"] = i / wp
    inter["share_cur"] = i / wc
    inter["jaccard"] = i / (wp + wc - i)
    return inter.groupby(["prev", "cur"])[["share_prev", "share_cur", "jaccard"]].max().reset_index()[cols]


def _counted(members: pd.DataFrame) -> pd.DataFrame:
    """``members`` with every account's weight 1 (prompts keep their requests): see :func:`overlaps`."""
    return members.assign(weight=np.where(members["kind"].to_numpy() == "account", 1, members["weight"].to_numpy()))


def _fresh_id(provisional: str, used: set[str]) -> str:
    """``provisional`` unless it is in ``used``; else a deterministic new id derived from it."""
    cid, salt = provisional, 0
    while cid in used:
        salt += 1
        cid = "c-" + hashlib.blake2b(f"{provisional}:{salt}".encode(), digest_size=5).hexdigest()
    return cid


def _size(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    return {str(r.campaign_id): (int(r.n_accounts), int(r.n_requests)) for r in frame.itertuples(index=False)}


def match_campaigns(previous: pd.DataFrame, previous_members: pd.DataFrame, current: pd.DataFrame,
                    current_members: pd.DataFrame, config: HistoryConfig | None = None,
                    known_ids: set[str] | frozenset[str] = frozenset(),
                    ended_members: pd.DataFrame | None = None) -> Matching:
    """Match this run's campaigns to the previous run's (the rule is in the module docstring).

    ``previous`` / ``current``: one row per campaign, ``campaign_id, n_accounts, n_requests`` (previous ids
    are stable ids, current ids provisional). ``*_members``: frames of :data:`MEMBER_COLUMNS`.
    ``known_ids``: every id ever used in this workspace; a new campaign never takes one of them.
    ``ended_members``: member snapshots of campaigns that ended in recent runs (:data:`MEMBER_COLUMNS`): a
    current campaign left new or split off that continues one of them takes its id back (step 4 of the rule;
    its transition stays ``split``, or is ``continued`` instead of ``new``).
    """
    config = config or HistoryConfig()
    prev_size, cur_size = _size(previous), _size(current)
    prev_ids = sorted(prev_size)
    cur_ids = list(current["campaign_id"].astype(str))
    ov = overlaps(previous_members[previous_members["campaign_id"].isin(prev_size)],
                  current_members[current_members["campaign_id"].isin(cur_size)])
    st = _MatchState(ov.sort_values(["prev", "cur"]).reset_index(drop=True), prev_size, cur_size, config)
    _merges(st)
    _splits(st)
    _continuations(st)
    if ended_members is not None and len(ended_members):
        _revivals(st, ended_members, current_members, cur_ids, prev_ids)
    # 5. new and gone
    taken = set(known_ids) | set(prev_ids) | set(st.ids.values())
    for cur in cur_ids:
        if cur not in st.ids:
            st.ids[cur] = _fresh_id(cur, taken)
            taken.add(st.ids[cur])
            if cur not in st.split_children:
                st.rows.append((cur, "new", []))
    order = {cur: k for k, cur in enumerate(cur_ids)}
    out = [(st.ids[cur], t, parents_) for cur, t, parents_ in sorted(st.rows, key=lambda r: order[r[0]])]
    out += [(prev, "gone", []) for prev in prev_ids if prev not in st.used_prev]
    return Matching(ids=st.ids, transitions=pd.DataFrame(out, columns=["campaign_id", "transition", "parent_ids"]))


@dataclass
class _MatchState:
    """The matching so far, step by step (:func:`match_campaigns`)."""

    ov: pd.DataFrame  # overlaps of previous and current campaigns (:func:`overlaps`)
    prev_size: dict[str, tuple[int, int]]
    cur_size: dict[str, tuple[int, int]]
    config: HistoryConfig
    ids: dict[str, str] = field(default_factory=dict)  # provisional id -> stable id
    rows: list[tuple[str, str, list[str]]] = field(default_factory=list)  # provisional id, transition, parents
    used_prev: set[str] = field(default_factory=set)
    split_children: dict[str, str] = field(default_factory=dict)  # provisional id -> the campaign it split from

    def continued(self, prev: str, cur: str) -> None:
        self.ids[cur] = prev
        self.rows.append((cur, _continued(self.prev_size[prev][0], self.cur_size[cur][0], self.config), []))


def _merges(st: _MatchState) -> None:
    """1. A current campaign holding most of two or more previous ones keeps the largest one's id. A previous
    campaign is a merge parent only of the current campaign it overlaps best (Jaccard): ten accounts flagged
    yesterday and again today as the same ten continue, even when a larger unflagged group also holds them."""
    ov, link, part = st.ov, st.config.link_min, st.config.part_min
    best = ov.sort_values(["jaccard", "cur"], ascending=[False, True]).drop_duplicates("prev").set_index("prev")["cur"]
    parents = ov[(ov["share_prev"] >= link) & (ov["share_cur"] >= part)
                 & (ov["cur"].to_numpy() == best.reindex(ov["prev"]).to_numpy())]
    parents = parents[parents.groupby("cur")["prev"].transform("size") >= 2]  # (few: loop over them only)
    for cur, grp in parents.groupby("cur", sort=True):
        grp = grp[~grp["prev"].isin(st.used_prev)]  # a previous campaign flows into one merge at most
        if len(grp) >= 2:
            keep = sorted(grp["prev"], key=lambda i: (-st.prev_size[i][0], -st.prev_size[i][1], i))[0]
            st.ids[cur] = keep
            st.rows.append((cur, "merged", sorted(p for p in grp["prev"] if p != keep)))
            st.used_prev |= set(grp["prev"])


def _splits(st: _MatchState) -> None:
    """2. A previous campaign whose most parts are two or more current ones: a part holding most of it keeps
    its id, the others are ``split`` from it. A current campaign is a part only of the previous campaign it
    overlaps best (Jaccard), as in the merges."""
    ov, link, part = st.ov, st.config.link_min, st.config.part_min
    best = ov.sort_values(["jaccard", "prev"], ascending=[False, True]).drop_duplicates("cur").set_index("cur")["prev"]
    children = ov[(ov["share_cur"] >= link) & (ov["share_prev"] >= part) & ~ov["cur"].isin(st.ids)
                  & ~ov["prev"].isin(st.used_prev) & (ov["prev"].to_numpy() == best.reindex(ov["cur"]).to_numpy())]
    children = children[children.groupby("prev")["cur"].transform("size") >= 2]
    for prev, grp in children.groupby("prev", sort=True):
        grp = grp[~grp["cur"].isin(st.split_children) & ~grp["cur"].isin(st.ids)]
        if len(grp) < 2:
            continue
        st.used_prev.add(prev)
        best = grp.sort_values(["share_prev", "jaccard", "cur"], ascending=[False, False, True]).iloc[0]
        for cur in grp["cur"]:
            if cur == best["cur"] and best["share_prev"] >= link:
                st.continued(prev, cur)
            else:
                st.split_children[cur] = prev
                st.rows.append((cur, "split", [prev]))


def _continuations(st: _MatchState) -> None:
    """3. One-to-one continuation of the remaining pairs (Hungarian assignment, :func:`_assign`)."""
    ov, link, part = st.ov, st.config.link_min, st.config.part_min
    rest = ov[~ov["prev"].isin(st.used_prev) & ~ov["cur"].isin(st.ids) & ~ov["cur"].isin(st.split_children)
              & (np.maximum(ov["share_prev"], ov["share_cur"]) >= link) & (ov["share_prev"] >= part)]
    for prev, cur in _assign(rest):
        st.continued(prev, cur)
        st.used_prev.add(prev)


def _revivals(st: _MatchState, ended_members: pd.DataFrame, current_members: pd.DataFrame, cur_ids: list[str],
              prev_ids: list[str]) -> None:
    """4. A campaign left new or split off takes back the id of a recently ended one it continues."""
    link, part = st.config.link_min, st.config.part_min
    left = [c for c in cur_ids if c not in st.ids]
    back = overlaps(ended_members[~ended_members["campaign_id"].isin(set(st.ids.values()) | set(prev_ids))],
                    current_members[current_members["campaign_id"].isin(left)])
    back = back[(np.maximum(back["share_prev"], back["share_cur"]) >= link) & (back["share_prev"] >= part)]
    for old_id, cur in _assign(back.sort_values(["prev", "cur"]).reset_index(drop=True)):
        st.ids[cur] = old_id
        if cur not in st.split_children:
            st.rows.append((cur, "continued", []))


def _assign(pairs: pd.DataFrame) -> list[tuple[str, str]]:
    """One-to-one (previous, current) pairs maximising the total ``jaccard`` of ``pairs`` (Hungarian
    algorithm), solved per connected component of the pair graph (components are small; the whole matrix
    of a large workspace would not be)."""
    if pairs.empty:
        return []
    # a pair whose two campaigns have no other candidate is its own component: assigned directly
    alone = (pairs.groupby("prev")["cur"].transform("size") == 1) & (pairs.groupby("cur")["prev"].transform("size") == 1)
    out = list(zip(pairs.loc[alone, "prev"], pairs.loc[alone, "cur"], strict=True))
    pairs = pairs[~alone]
    if pairs.empty:
        return out
    ps, cs = sorted(set(pairs["prev"])), sorted(set(pairs["cur"]))
    pi, ci = {p: k for k, p in enumerate(ps)}, {c: k for k, c in enumerate(cs)}
    rows = np.array([pi[p] for p in pairs["prev"]])
    cols = np.array([ci[c] for c in pairs["cur"]])
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, len(ps) + cols)), shape=(len(ps) + len(cs),) * 2)
    _, comp = connected_components(graph, directed=False)
    for k in np.unique(comp[rows]):
        sel = comp[rows] == k
        r_ids, c_ids = np.unique(rows[sel]), np.unique(cols[sel])
        weight = np.zeros((len(r_ids), len(c_ids)))
        weight[np.searchsorted(r_ids, rows[sel]), np.searchsorted(c_ids, cols[sel])] = pairs["jaccard"].to_numpy()[sel]
        for r, c in zip(*linear_sum_assignment(weight, maximize=True), strict=True):
            if weight[r, c] > 0:
                out.append((ps[r_ids[r]], cs[c_ids[c]]))
    return out


def _continued(n_prev: int, n_cur: int, config: HistoryConfig) -> str:
    if n_prev > 0 and n_cur > n_prev * (1 + config.size_change):
        return "grown"
    if n_prev > 0 and n_cur < n_prev * (1 - config.size_change):
        return "shrunk"
    return "continued"


def history_rows(matching: Matching, current: pd.DataFrame, previous: pd.DataFrame, run_id: int,
                 recorded_at: pd.Timestamp) -> pd.DataFrame:
    """Rows for ``campaign_history`` (:data:`HISTORY_COLUMNS`): one per current campaign and one per gone one.

    ``current``: ``campaign_id`` (stable), ``n_accounts, n_requests, score, flagged``; ``previous``: the same
    for the previous run's campaigns (gone rows repeat their last known numbers). ``parent_ids``: a list of ids.
    """
    t = matching.transitions
    if t.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    stats = ["n_accounts", "n_requests", "score", "flagged"]
    now = current.set_index("campaign_id")[stats]
    before = previous.set_index("campaign_id")[stats] if len(previous) else pd.DataFrame(columns=stats)
    gone = t["transition"] == "gone"
    vals = pd.concat([now.reindex(t.loc[~gone, "campaign_id"]), before.reindex(t.loc[gone, "campaign_id"])])
    out = pd.DataFrame({
        "run_id": int(run_id), "campaign_id": t["campaign_id"].to_numpy(), "transition": t["transition"].to_numpy(),
        "parent_ids": [[str(x) for x in p] for p in t["parent_ids"]],
        "n_accounts": vals["n_accounts"].to_numpy(dtype=np.int64),
        "n_requests": vals["n_requests"].to_numpy(dtype=np.int64),
        "score": vals["score"].to_numpy(dtype=float), "flagged": vals["flagged"].to_numpy(dtype=bool),
        "recorded_at": recorded_at,
    })
    return out[HISTORY_COLUMNS]


def update_identity(identity: pd.DataFrame, matching: Matching, current: pd.DataFrame, run_id: int) -> pd.DataFrame:
    """The ``campaign_identity`` table after this run (:data:`IDENTITY_COLUMNS`, one row per id ever seen).

    ``current``: ``campaign_id`` (stable), ``first_seen, last_seen`` (request times), ``flagged``.
    ``first_seen`` / ``last_seen`` are data times: the earliest and latest request of the campaign over all
    runs (a merged campaign takes the earliest of its parents). ``first_flagged_at`` is the campaign's latest
    request time in the first run that flagged it (a merged campaign keeps its parents' earliest), with that
    run in ``first_flagged_run_id``. ``first_run_id`` / ``last_run_id``: the first and latest run that found it.
    Gone campaigns keep their row unchanged.
    """
    ident = _identity_frame(identity)
    cur = pd.DataFrame({"campaign_id": current["campaign_id"].astype(str).to_numpy(),
                        "first_seen": _utc(current["first_seen"]).to_numpy(),
                        "last_seen": _utc(current["last_seen"]).to_numpy(),
                        "flagged": current["flagged"].astype(bool).to_numpy()})
    for col in ("first_seen", "last_seen"):
        cur[col] = _utc(cur[col])
    # the identities a current campaign inherits: its own, and those of the parents it absorbed
    t = matching.transitions
    merged = t.loc[t["transition"] == "merged", ["campaign_id", "parent_ids"]].explode("parent_ids").dropna()
    links = pd.concat([pd.DataFrame({"campaign_id": cur["campaign_id"], "old_id": cur["campaign_id"]}),
                       merged.rename(columns={"parent_ids": "old_id"})], ignore_index=True)
    old = links.merge(ident.rename(columns={"campaign_id": "old_id"}), on="old_id")
    agg = old.groupby("campaign_id").agg(old_first=("first_seen", "min"), old_last=("last_seen", "max"),
                                         old_run=("first_run_id", "min"))
    flagged_before = (old.dropna(subset=["first_flagged_at"])
                      .sort_values(["first_flagged_at", "first_flagged_run_id"])
                      .drop_duplicates("campaign_id").set_index("campaign_id")[["first_flagged_at",
                                                                                  "first_flagged_run_id"]])
    out = cur.set_index("campaign_id").join(agg).join(flagged_before)
    out["first_flagged_at"] = _utc(out["first_flagged_at"])
    out["first_flagged_run_id"] = pd.to_numeric(out["first_flagged_run_id"]).astype("Int64")
    now_flagged = out["first_flagged_at"].isna() & out["flagged"]
    out.loc[now_flagged, "first_flagged_at"] = out.loc[now_flagged, "last_seen"]
    out.loc[now_flagged, "first_flagged_run_id"] = int(run_id)
    out["first_seen"] = out[["first_seen", "old_first"]].min(axis=1)
    out["last_seen"] = out[["last_seen", "old_last"]].max(axis=1)
    out["first_run_id"] = out["old_run"].fillna(run_id).astype(np.int64)
    out["last_run_id"] = np.int64(run_id)
    fresh = out.reset_index()[IDENTITY_COLUMNS]
    kept = ident[~ident["campaign_id"].isin(fresh["campaign_id"])]
    out = pd.concat([kept, fresh], ignore_index=True) if len(kept) else fresh
    return _identity_frame(out).sort_values("campaign_id").reset_index(drop=True)


def _utc(values) -> pd.Series:
    """Timestamps as ``datetime64[us, UTC]`` (the workspace's resolution; an all-missing column would
    otherwise get a coarser unit that later microsecond values do not fit)."""
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


def _identity_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with exactly :data:`IDENTITY_COLUMNS`, times as UTC timestamps and run ids as integers."""
    out = (frame if len(frame) else pd.DataFrame(columns=IDENTITY_COLUMNS))[IDENTITY_COLUMNS].copy()
    out["campaign_id"] = out["campaign_id"].astype(object)
    for col in ("first_seen", "last_seen", "first_flagged_at"):
        out[col] = _utc(out[col])
    for col in ("first_flagged_run_id", "first_run_id", "last_run_id"):
        out[col] = pd.to_numeric(out[col]).astype("Int64")
    return out


@dataclass
class PreviousState:
    """What the workspace remembers of the previous scored run (read by ``Workspace.campaign_state``).

    ``campaigns``: that run's campaigns from ``campaign_history`` (``campaign_id, n_accounts, n_requests,
    score, flagged``); ``members``: ``campaign_members`` (:data:`MEMBER_COLUMNS`); ``identity``: the whole
    ``campaign_identity`` table (every id ever used); ``ended``: ``campaign_ended_members``
    (:data:`ENDED_COLUMNS`), the member snapshots of campaigns that ended in recent runs.
    """

    campaigns: pd.DataFrame
    members: pd.DataFrame
    identity: pd.DataFrame
    ended: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ENDED_COLUMNS))


@dataclass
class Tracked:
    """This run's campaigns under their stable ids, and the history tables to store with them."""

    result: CampaignResult
    matching: Matching
    members: pd.DataFrame
    history: pd.DataFrame
    identity: pd.DataFrame
    ended: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ENDED_COLUMNS))


def rename_campaigns(result: CampaignResult, ids: dict[str, str]) -> CampaignResult:
    """``result`` with every campaign id (campaigns, their accounts, accounts' best campaign, clusters'
    campaign) replaced through ``ids``."""
    def ren(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["campaign_id"] = frame["campaign_id"].map(lambda c: ids.get(c, c) if isinstance(c, str) else c)
        return frame

    return replace(result, campaigns=ren(result.campaigns), campaign_accounts=ren(result.campaign_accounts),
                   accounts=ren(result.accounts),
                   cluster_campaign={k: ids.get(v, v) for k, v in result.cluster_campaign.items()})


def track(previous: PreviousState, requests: pd.DataFrame, result: CampaignResult, run_id: int,
          recorded_at: pd.Timestamp, config: HistoryConfig | None = None) -> Tracked:
    """Give this run's campaigns their stable ids and compute the history tables (everything pure).

    ``requests``: ``account_id, prompt_hash, cluster_id`` of every request (the frame campaigns were found
    in); ``result``: :func:`analyzer.campaigns.find_campaigns`' output under provisional ids. Returns the
    renamed result, the matching, this run's ``campaign_members`` (what the next run matches against), its
    ``campaign_history`` rows and the new ``campaign_identity`` table.
    """
    camps = result.campaigns
    members = campaign_members(requests, result.campaign_accounts,
                               dict(zip(camps["campaign_id"], camps["clusters"], strict=True)))
    config = config or HistoryConfig()
    known = set(previous.identity["campaign_id"]) if len(previous.identity) else set()
    matching = match_campaigns(previous.campaigns, previous.members, camps, members, config, known_ids=known,
                               ended_members=previous.ended[MEMBER_COLUMNS])
    renamed = rename_campaigns(result, matching.ids)
    members["campaign_id"] = members["campaign_id"].map(matching.ids)
    hist = history_rows(matching, renamed.campaigns, previous.campaigns, run_id, recorded_at)
    identity = update_identity(previous.identity, matching, renamed.campaigns, run_id)
    return Tracked(renamed, matching, members, hist, identity,
                   ended_snapshots(previous, matching, run_id, config.revive_runs))


def ended_snapshots(previous: PreviousState, matching: Matching, run_id: int, revive_runs: int) -> pd.DataFrame:
    """The ``campaign_ended_members`` table after this run (:data:`ENDED_COLUMNS`): the previous run's
    campaigns that ended now (``gone``, or a parent merged into another campaign) with ``ended_run = run_id``,
    and the earlier snapshots still within ``revive_runs`` runs that were not revived now."""
    t = matching.transitions
    gone = set(t.loc[t["transition"] == "gone", "campaign_id"])
    merged = t.loc[t["transition"] == "merged", "parent_ids"].explode().dropna()
    ended_now = (gone | set(merged)) - set(matching.ids.values())
    now = previous.members[previous.members["campaign_id"].isin(ended_now)].assign(ended_run=int(run_id))
    earlier = previous.ended[(previous.ended["ended_run"] > run_id - revive_runs)
                             & ~previous.ended["campaign_id"].isin(set(matching.ids.values()) | ended_now)]
    out = pd.concat([earlier[ENDED_COLUMNS], now[ENDED_COLUMNS]], ignore_index=True)
    out["weight"] = out["weight"].astype(np.int64)
    out["ended_run"] = out["ended_run"].astype(np.int64)
    return out.sort_values(["campaign_id", "kind", "member"]).reset_index(drop=True)
