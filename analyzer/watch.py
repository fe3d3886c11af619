"""Watchlists: remember confirmed (and dismissed) campaigns and recognise their work in later traffic.

A *fingerprint* is what an analyst's decision keeps of a campaign, so that it still works once the campaign's
id and accounts are gone (banned, replaced):

- **what it asks**: k-means centroids of its prompts' vectors, stored with the embedding model key (vectors
  of another tier live in another space and are not compared; matching then rests on the rest);
- **its template**: the recurring sentences of its wrapper as case-insensitive regular expressions
  (digits as ``\\d+``), the template text and the intent the campaign was after;
- **prompt hashes**: SHA-256 of the UTF-8 prompt text (the hash STIX ``artifact`` patterns carry, so that
  hashes from another provider compare);
- **infrastructure**: subnets (/24, /48), user agents, API key ids and payment ids concentrated in it;
- **timing**: its hour-of-day profile; its size (accounts, requests) and member accounts.

Every later score stage checks each account's requests against the watchlist (:func:`match_accounts`, the
rule in :class:`WatchConfig`) and :func:`apply_watchlist` turns the matches into flags: accounts continuing a
*confirmed* campaign join the current campaign doing the same work (or a campaign formed for the watch entry)
with a score at or above the flag threshold; a campaign that is a *dismissed* one again keeps its score but
is not flagged unless it changed materially. Everything here is pure: plain frames and arrays in and out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from analyzer import signals as sig
from analyzer.campaigns import CampaignResult
from analyzer.cluster import sentences, words

#: Identifier fields a fingerprint keeps (``subnet`` is derived from ``ip``). Entries imported from STIX may
#: also hold ``ip_range``: networks of other sizes, matched by containment.
WATCH_INFRA_FIELDS = ("subnet", "user_agent", "api_key_id", "payment_id")
#: Identifiers that name who pays: a fresh account holding one of a confirmed campaign's is its operator's.
PAYER_FIELDS = ("api_key_id", "payment_id")
#: Identifiers that place an account on a watched campaign's own network or payer (a user agent does not: many
#: customers send the same client library's).
STRONG_FIELDS = ("subnet", "ip_range", *PAYER_FIELDS)


@dataclass(frozen=True)
class WatchConfig:
    """The matching rule and how fingerprints are made (every threshold of the watchlist lives here)."""

    #: A request matches a fingerprint's content when its prompt's cosine to one of the fingerprint's vectors,
    #: on MiniLM's scale (:func:`analyzer.embed.calibrate_similarity`), is at least this; or when its prompt's
    #: SHA-256 is one of the fingerprint's; or when its template sentences match (``min_template_words``).
    #: Measured on the sample preset (fingerprints of seed 0's flagged campaigns, fast tier, prompts of
    #: seed 1: the same wrappers around new tasks): 52-87% of a campaign's fresh prompts reach 0.75 (22-77%
    #: reach 0.8), while the highest non-campaign prompt reached 0.74 (a CoT eval harness; organic at most
    #: 0.70). One prompt over the line does not flag an account: see ``min_requests``.
    similarity: float = 0.75
    #: Words of the fingerprint's template sentences a prompt must contain to match by template (the
    #: ``min_scaffold_words`` of :func:`analyzer.cluster.scaffolds`: shorter overlaps are common phrases).
    min_template_words: int = 8
    #: An account continues a watched campaign when at least ``min_requests`` of its requests match the
    #: content and they are at least ``min_share`` of its traffic; an account on the campaign's watched
    #: infrastructure (subnet, user agent) needs the ``min_requests`` only (a hydra account mixing in
    #: ordinary traffic); an account holding a watched payer id (:data:`PAYER_FIELDS`) needs one matching
    #: request. Infrastructure alone never matches: a proxy subnet also carries ordinary customers.
    min_requests: int = 3
    #: Share of an account's traffic its matching requests must make up (see ``min_requests``).
    min_share: float = 0.25
    #: For an account on the watched campaign's own subnet (or IP range) or payer id (:data:`STRONG_FIELDS`),
    #: a request also matches when its prompt's similarity is at least this (operators paraphrase their
    #: wrappers; their proxies and payment methods change less often).
    infra_similarity: float = 0.6
    #: A current campaign *is* a watched one (continues it, or repeats a dismissed one) when it has the
    #: watched campaign id, or when at least this share of its members match the entry or were its members.
    same_campaign_share: float = 0.5
    #: A dismissed campaign is raised again only when it changed materially: its accounts grew by at least
    #: this fraction over the number at dismissal, or it holds concentrated infrastructure the dismissed
    #: one did not.
    material_growth: float = 0.5
    #: Fingerprint making: at most this many centroid vectors (k-means over the campaign's unique prompts).
    max_vectors: int = 32
    #: At most this many prompt hashes (most requested first).
    max_prompt_hashes: int = 2000
    #: A sentence is part of the template when it recurs in at least this share of the campaign's unique
    #: prompts (and in at least 3 of them) and has 3 or more words; at most ``max_template_sentences`` kept.
    template_min_share: float = 0.05
    #: Template sentences kept per fingerprint (most frequent first).
    max_template_sentences: int = 24
    #: An identifier value is the campaign's infrastructure when at least ``infra_min_accounts`` members hold
    #: it and members are at least ``infra_concentration`` of all accounts holding it in the workspace.
    infra_min_accounts: int = 2
    #: Share of all accounts holding an identifier value that must be members (see ``infra_min_accounts``).
    infra_concentration: float = 0.5


@dataclass
class Fingerprint:
    """What a watch entry remembers of a campaign (JSON-serialisable but for ``vectors``)."""

    campaign_id: str
    label: str = ""
    intent: str = ""
    template: str = ""
    #: case-insensitive regular expressions of the template sentences, with their word counts
    template_patterns: list[dict] = field(default_factory=list)
    prompt_sha256: list[str] = field(default_factory=list)
    infra: dict[str, list[str]] = field(default_factory=dict)
    hour_profile: list[float] = field(default_factory=list)
    n_accounts: int = 0
    n_requests: int = 0
    accounts: list[str] = field(default_factory=list)
    score: float = 0.0
    first_seen: str | None = None
    last_seen: str | None = None
    model_key: str | None = None
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32), repr=False)

    def to_json(self) -> dict:
        """Everything but the vectors (stored beside, with their model key)."""
        d = asdict(self)
        d.pop("vectors")
        return d

    @classmethod
    def from_json(cls, d: Mapping, vectors: np.ndarray | None = None) -> Fingerprint:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "vectors"}
        fp = cls(**known)
        if vectors is not None:
            fp.vectors = np.asarray(vectors, dtype=np.float32)
        return fp


@dataclass
class WatchEntry:
    """One row of the watchlist."""

    watch_id: str
    campaign_id: str
    status: str  # "confirmed" | "dismissed"
    source: str  # "local" | "stix:<bundle id>"
    fingerprint: Fingerprint
    created_at: str | None = None
    analyst: str = ""
    note: str = ""


def local_watch_id(campaign_id: str) -> str:
    """The watch id of a local decision on a campaign (a new decision on it replaces the old one)."""
    return "w-" + hashlib.blake2b(f"local\x1f{campaign_id}".encode(), digest_size=5).hexdigest()


def prompt_sha256(text: str) -> str:
    """SHA-256 of a prompt's UTF-8 text, lower-case hex (the hash shared in STIX ``artifact`` patterns)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def sentence_pattern(sentence: str) -> str:
    """A case-insensitive regular expression for a normalised sentence (:func:`analyzer.cluster.sentences`:
    lower case, digits as 0, single spaces): its words in order, any whitespace between, any digits for 0."""
    parts = [re.escape(tok).replace("0", r"\d+") for tok in sentence.split()]
    return r"(?i)" + r"\s+".join(parts)


def pattern_words(pattern: str) -> int:
    """Words a template pattern stands for (its whitespace-separated parts)."""
    return len(words(re.sub(r"\\s\+|\(\?i\)|\\", " ", pattern)))


# --- making fingerprints -------------------------------------------------------------------------------------------
def template_sentences(texts: Sequence[str], config: WatchConfig = WatchConfig()) -> list[str]:
    """The normalised sentences that recur across a campaign's unique prompt texts (most frequent first)."""
    counts: dict[str, int] = {}
    for t in texts:
        for s in dict.fromkeys(sentences(t)):
            counts[s] = counts.get(s, 0) + 1
    need = max(3, int(np.ceil(config.template_min_share * len(texts))))
    keep = [s for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n >= need and len(words(s)) >= 3]
    return keep[: config.max_template_sentences]


def centroids(vectors: np.ndarray, k_max: int, seed: int = 0) -> np.ndarray:
    """At most ``k_max`` L2-normalised k-means centroids of ``vectors`` (the vectors themselves if few)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) <= k_max:
        out = vectors.copy()
    else:
        import faiss

        km = faiss.Kmeans(vectors.shape[1], k_max, niter=20, seed=seed, spherical=True, verbose=False,
                           min_points_per_centroid=1)
        km.train(vectors)
        out = km.centroids.astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def with_subnet(req: pd.DataFrame) -> pd.DataFrame:
    """``req`` with a ``subnet`` column (from ``ip``) and every :data:`WATCH_INFRA_FIELDS` column present."""
    if "subnet" in req and all(f in req for f in WATCH_INFRA_FIELDS):
        return req
    req = req.copy()
    if "subnet" not in req:
        ips = req["ip"].dropna().unique() if "ip" in req else []
        lookup = dict(zip(ips, map(sig.subnet, ips), strict=True))
        req["subnet"] = req["ip"].map(lookup) if "ip" in req else None
    for f in WATCH_INFRA_FIELDS:
        if f not in req:
            req[f] = None
    return req


def concentrated_infra(req: pd.DataFrame, members: Iterable[str], config: WatchConfig = WatchConfig()
                       ) -> dict[str, list[str]]:
    """Identifier values held by at least ``infra_min_accounts`` members and mostly by them (over ``req``,
    every request of the workspace), per field of :data:`WATCH_INFRA_FIELDS`."""
    req = with_subnet(req)
    member_set = set(members)
    out: dict[str, list[str]] = {}
    for f in WATCH_INFRA_FIELDS:
        pairs = req[["account_id", f]].dropna().drop_duplicates()
        pairs = pairs[pairs[f].astype(str).str.len() > 0]
        if pairs.empty:
            continue
        is_member = pairs["account_id"].isin(member_set)
        stats = pd.DataFrame({"value": pairs[f].astype(str), "m": is_member}).groupby("value")["m"].agg(["sum", "count"])
        keep = stats[(stats["sum"] >= config.infra_min_accounts)
                     & (stats["sum"] >= config.infra_concentration * stats["count"])]
        if len(keep):
            out[f] = sorted(keep.index.tolist())
    return out


def hour_profile(ts: pd.Series) -> list[float]:
    """Share of requests in each UTC hour of the day (24 values summing to 1; empty for no requests)."""
    if len(ts) == 0:
        return []
    hours = pd.to_datetime(ts, utc=True).dt.hour.to_numpy()
    counts = np.bincount(hours, minlength=24).astype(np.float64)
    return [round(float(x), 4) for x in counts / counts.sum()]


def build_fingerprint(campaign: Mapping, members: Sequence[str], creq: pd.DataFrame, all_req: pd.DataFrame,
                      texts: Mapping[str, str], vec_hashes: np.ndarray, vectors: np.ndarray, model_key: str | None,
                      config: WatchConfig = WatchConfig(), seed: int = 0) -> Fingerprint:
    """The fingerprint of one campaign.

    ``campaign``: its row of the ``campaigns`` table (``campaign_id``, ``label``, ``kind``, ``template``,
    ``score``, ``first_seen``, ``last_seen``); ``members``: its accounts; ``creq``: the members' requests in
    the campaign's units (``account_id, ts, prompt_hash, ip, user_agent, api_key_id, payment_id``);
    ``all_req``: every request's ``account_id`` and identifiers (for concentration); ``texts``: prompt texts
    by hash; ``vec_hashes`` / ``vectors``: the campaign prompts' vectors under ``model_key``.
    """
    counts = creq["prompt_hash"].value_counts()
    unique = counts.index.tolist()
    ptexts = [texts.get(h, "") for h in unique]
    sents = template_sentences(ptexts, config)
    vecs = centroids(vectors, config.max_vectors, seed) if len(vectors) else np.zeros((0, 0), dtype=np.float32)
    return Fingerprint(
        campaign_id=str(campaign["campaign_id"]), label=str(campaign.get("label") or ""),
        intent=str(campaign.get("kind") or ""), template=str(campaign.get("template") or ""),
        template_patterns=[{"regex": sentence_pattern(s), "words": len(words(s)), "sentence": s} for s in sents],
        prompt_sha256=[prompt_sha256(t) for t in ptexts[: config.max_prompt_hashes] if t],
        infra=concentrated_infra(all_req, members, config), hour_profile=hour_profile(creq["ts"]),
        n_accounts=len(members), n_requests=int(len(creq)), accounts=sorted(map(str, members)),
        score=float(campaign.get("score") or 0.0), first_seen=_iso(campaign.get("first_seen")),
        last_seen=_iso(campaign.get("last_seen")), model_key=model_key if len(vecs) else None, vectors=vecs,
    )


def _iso(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat().replace("+00:00", "Z")


# --- matching ------------------------------------------------------------------------------------------------------
def _anchor(regex: str) -> str:
    """The longest literal word of a pattern as :func:`sentence_pattern` writes it (lower case; "" if none):
    a text without it cannot match, and a substring test is far cheaper than the regular expression."""
    body = regex[4:] if regex.startswith("(?i)") else regex
    tokens = [re.sub(r"\\(.)", r"\1", t) for t in body.split(r"\s+") if r"\d" not in t]
    plain = [t.lower() for t in tokens if not re.search(r"[\\()\[\]{}*+?|^$]", t)]
    return max(plain, key=len, default="")


def template_match(texts: Sequence[str], patterns: Sequence[Mapping], min_words: int) -> np.ndarray:
    """Per text: whether the template patterns it contains add up to ``min_words`` words (or to all of the
    template's words, for a template shorter than that).

    A case-insensitive pattern (``(?i)...``, as this module writes them) is searched only in texts holding its
    longest literal word (:func:`_anchor`, a substring test); others (imported ``pcre``) in every text. A
    pattern that does not compile is skipped.
    """
    out = np.zeros(len(texts), dtype=bool)
    compiled = []
    for p in patterns:
        rx = str(p["regex"])
        try:
            compiled.append((re.compile(rx), int(p.get("words") or pattern_words(rx)),
                             _anchor(rx) if rx.startswith("(?i)") else ""))
        except re.error:
            continue
    if not compiled:
        return out
    need = min(min_words, sum(w for _, w, _ in compiled))
    for i, t in enumerate(texts):
        low = t.lower()
        got = 0
        for rx, w, anchor in compiled:
            if (not anchor or anchor in low) and rx.search(t):
                got += w
                if got >= need:
                    out[i] = True
                    break
    return out


def content_similarity(fp: Fingerprint, shas: Sequence[str], texts: Sequence[str], sims: np.ndarray | None,
                       config: WatchConfig = WatchConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Per unique prompt: ``(matches, similarity)``.

    ``shas``: the prompts' :func:`prompt_sha256`; ``texts``: their texts (or the part analysis reads).
    ``sims``: each prompt's calibrated cosine to its nearest fingerprint vector (NaN where the prompt has no
    vector in the fingerprint's space), or ``None``. A prompt matches by vector (``similarity`` or more), by
    identical text (SHA-256; similarity 1) or by template sentences; ``similarity`` is the cosine where known,
    1 for an identical prompt, NaN otherwise.
    """
    n = len(shas)
    sim = np.full(n, np.nan) if sims is None else np.asarray(sims, dtype=np.float64).copy()
    by_vec = np.nan_to_num(sim, nan=-1.0) >= config.similarity
    known = set(fp.prompt_sha256)
    by_hash = np.fromiter((h in known for h in shas), dtype=bool, count=n) if known else np.zeros(n, dtype=bool)
    by_tmpl = template_match(texts, fp.template_patterns, config.min_template_words)
    sim[by_hash] = 1.0
    return by_vec | by_hash | by_tmpl, sim


#: Columns of :func:`match_accounts`' result.
MATCH_COLUMNS = ["watch_id", "account_id", "n_total", "n_match", "share", "similarity", "first_match", "infra",
                 "payer"]


def match_accounts(req: pd.DataFrame, entry: WatchEntry, prompt_match: pd.DataFrame,
                   config: WatchConfig = WatchConfig()) -> pd.DataFrame:
    """Accounts whose requests continue one watch entry's campaign (the rule of :class:`WatchConfig`).

    ``req``: one row per request (``account_id, ts, prompt_hash`` and the identifier columns); ``prompt_match``:
    per ``prompt_hash`` its ``match`` (bool) and ``similarity`` for this entry (:func:`content_similarity`).
    Returns one row per matching account: ``watch_id, account_id, n_total, n_match, share, similarity`` (mean
    over matching requests with a known similarity; NaN if none), ``first_match`` (time of the first
    matching request), ``infra`` (the watched identifiers it holds, ``field value`` strings) and ``payer``.
    """
    cols = MATCH_COLUMNS
    req = with_subnet(req)
    pm = prompt_match.set_index("prompt_hash")
    m = pm["match"].reindex(req["prompt_hash"]).fillna(False).to_numpy(dtype=bool)
    s = pm["similarity"].reindex(req["prompt_hash"]).to_numpy(dtype=np.float64)
    near = np.nan_to_num(s, nan=-1.0) >= config.infra_similarity
    accounts = req["account_id"].to_numpy()
    candidates = pd.unique(accounts[m | near])
    if len(candidates) == 0:
        return pd.DataFrame(columns=cols)
    infra: dict[str, list[str]] = {a: [] for a in candidates}
    payer: dict[str, bool] = dict.fromkeys(candidates, False)
    strong: dict[str, bool] = dict.fromkeys(candidates, False)
    sub = req[req["account_id"].isin(set(candidates))]
    for f, values in entry.fingerprint.infra.items():
        if f not in sub or not values:
            continue
        hit = sub[sub[f].astype(str).isin(set(values))][["account_id", f]].drop_duplicates()
        for a, v in zip(hit["account_id"], hit[f], strict=True):
            infra[a].append(f"{f} {v}")
            payer[a] = payer[a] or f in PAYER_FIELDS
            strong[a] = strong[a] or f in STRONG_FIELDS
    ranges = [n for n in (_network(v) for v in entry.fingerprint.infra.get("ip_range", [])) if n is not None]
    if ranges and "ip" in sub:
        for a, ip in sub[["account_id", "ip"]].dropna().drop_duplicates().itertuples(index=False):
            addr = _address(ip)
            hit = next((n for n in ranges if addr is not None and addr.version == n.version and addr in n), None)
            if hit is not None and f"ip_range {hit}" not in infra[a]:
                infra[a].append(f"ip_range {hit}")
                strong[a] = True
    # on the campaign's own network or payer, a request near the fingerprint counts (infra_similarity)
    m = m | (near & pd.Series(accounts).map(strong).fillna(False).to_numpy(dtype=bool))
    frame = pd.DataFrame({"account_id": accounts, "m": m, "s": np.where(m, s, np.nan),
                          "t": np.where(m, req["ts"].to_numpy(), pd.NaT)})
    g = frame.groupby("account_id")
    acc = pd.DataFrame({"n_total": g.size(), "n_match": g["m"].sum().astype(int), "similarity": g["s"].mean(),
                        "first_match": g["t"].min()})
    acc = acc[acc["n_match"] > 0]
    if acc.empty:
        return pd.DataFrame(columns=cols)
    acc["infra"] = [infra[a] for a in acc.index]
    acc["payer"] = [payer[a] for a in acc.index]
    acc["share"] = acc["n_match"] / acc["n_total"]
    on_infra = acc["infra"].map(bool)
    ok = ((acc["n_match"] >= config.min_requests) & ((acc["share"] >= config.min_share) | on_infra)) | acc["payer"]
    acc = acc[ok]
    acc.insert(0, "watch_id", entry.watch_id)
    acc.index.name = "account_id"
    return acc.reset_index()[cols]


def _network(value: str):
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _address(value: str):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None


# --- turning matches into flags ------------------------------------------------------------------------------------
@dataclass
class WatchOutcome:
    """What :func:`apply_watchlist` did, for the run's stats."""

    matched_accounts: int = 0
    continued: dict[str, str] = field(default_factory=dict)  # watch id -> current campaign that carries it
    formed: list[str] = field(default_factory=list)  # campaigns formed for a watch entry
    suppressed: dict[str, str] = field(default_factory=dict)  # campaign -> dismissed watch id
    raised_again: dict[str, str] = field(default_factory=dict)  # campaign -> dismissed watch id it changed from
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _who(entry: WatchEntry) -> str:
    when = (entry.created_at or "")[:10] or "an earlier date"
    who = entry.analyst or ("a shared indicator" if entry.source.startswith("stix:") else "an analyst")
    return f"{who} on {when}"


def _fmt_sim(x: float) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.2f}"


def account_evidence(row: Mapping, entry: WatchEntry) -> str:
    """The evidence sentence of one account continuing a watched campaign."""
    infra = f"; holds its {', '.join(row['infra'][:3])}" if len(row["infra"]) else ""
    return (f"continues confirmed campaign {entry.campaign_id} (watch {entry.watch_id}): {row['n_match']} of its "
            f"{row['n_total']} requests match its fingerprint (similarity {_fmt_sim(row['similarity'])}){infra}")


def apply_watchlist(result: CampaignResult, req: pd.DataFrame, entries: Sequence[WatchEntry],
                    matches: pd.DataFrame, flag_threshold: float, config: WatchConfig = WatchConfig()
                    ) -> tuple[CampaignResult, WatchOutcome]:
    """Flags from the watchlist on a scored result (a new result; the input is not changed).

    ``matches`` are the rows of :func:`match_accounts` for every entry. For each *confirmed* entry with
    matching accounts: when the current campaign that is the watched one (:attr:`WatchConfig.same_campaign_share`;
    the one with most matching members) is flagged, the matching accounts that are not yet its members join
    it, and its evidence says "continues confirmed campaign X"; otherwise the matching accounts that no
    flagged campaign holds form a campaign of their own (id ``cw-`` + a hash of the watch id, score
    ``max(flag_threshold, score at confirmation)``), so that an unflagged look-alike's other members are not
    flagged along with them. A joining account's score is ``max(flag_threshold, s * (0.5 + 0.5 * share))``
    with ``s`` the carrier's score, the form of a member's score. For each *dismissed* entry, a flagged
    campaign that is the dismissed one is no longer flagged (score kept) unless it changed materially
    (:attr:`WatchConfig.material_growth` or new concentrated infrastructure).
    """
    if "watch_id" not in matches:
        matches = pd.DataFrame(columns=MATCH_COLUMNS)
    ca = result.campaign_accounts.copy()
    st = _WatchState(
        camps=result.campaigns.copy(), ca=ca, acc=result.accounts.copy(),
        members=ca.groupby("campaign_id")["account_id"].agg(set).to_dict() if len(ca) else {},
        out=WatchOutcome(matched_accounts=int(matches["account_id"].nunique()) if len(matches) else 0))
    st.camps["evidence"] = st.camps["evidence"].map(list)
    for e in (e for e in entries if e.status == "confirmed"):
        em = matches[matches["watch_id"] == e.watch_id]
        if not em.empty:
            _apply_confirmed(st, e, em, req, flag_threshold)
    for e in (e for e in entries if e.status == "dismissed"):
        _apply_dismissed(st, e, matches[matches["watch_id"] == e.watch_id], req, config)
    camps = st.camps
    if len(camps):
        camps = camps.sort_values(["score", "n_requests", "campaign_id"], ascending=[False, False, True])
        camps = camps.reset_index(drop=True)
        camps["rank"] = np.arange(1, len(camps) + 1)
    return replace(result, campaigns=camps, campaign_accounts=st.ca.reset_index(drop=True), accounts=st.acc), st.out


@dataclass
class _WatchState:
    """The result being rewritten by :func:`apply_watchlist`, entry by entry."""

    camps: pd.DataFrame
    ca: pd.DataFrame
    acc: pd.DataFrame
    members: dict[str, set[str]]  # campaign id -> its member accounts
    out: WatchOutcome
    confirmed_camps: set[str] = field(default_factory=set)  # campaigns a confirmed entry flagged

    def prepend_evidence(self, campaign_id: str, line: str) -> int:
        """Put ``line`` first in the campaign's evidence; returns its row index."""
        i = self.camps.index[self.camps["campaign_id"] == campaign_id][0]
        self.camps.at[i, "evidence"] = [line] + self.camps.at[i, "evidence"]
        return i


def _confirmed_host(st: _WatchState, e: WatchEntry, em: pd.DataFrame, req: pd.DataFrame, flag_threshold: float,
                    config: WatchConfig) -> tuple[str | None, pd.DataFrame]:
    """The flagged campaign that carries a confirmed entry's work, else a campaign formed for it from the
    matching accounts that no flagged campaign holds (an unflagged look-alike's other members are not flagged
    along with them). Returns the host and the matching accounts it takes (host ``None``: nothing to do)."""
    host = _same_campaign(e, set(em["account_id"]), st.camps, st.members, config)
    flagged_ids = set(st.camps.loc[st.camps["flagged"].astype(bool), "campaign_id"])
    if host is not None and host in flagged_ids:
        return host, em
    taken = set().union(*(st.members.get(c, set()) for c in flagged_ids)) if flagged_ids else set()
    em_new = em[~em["account_id"].isin(taken)]
    if host is not None:
        st.prepend_evidence(host, f"{len(em)} of the accounts here or nearby continue confirmed campaign "
                                  f"{e.fingerprint.campaign_id} (watch {e.watch_id}); they are flagged "
                                  "in the campaign formed for that watch entry.")
    if em_new.empty:
        return None, em_new
    row = _formed_campaign(e, em_new, req, flag_threshold)
    st.camps = pd.concat([st.camps, pd.DataFrame([row])], ignore_index=True)
    st.members[row["campaign_id"]] = set()
    st.out.formed.append(row["campaign_id"])
    return row["campaign_id"], em_new


def _apply_confirmed(st: _WatchState, e: WatchEntry, em: pd.DataFrame, req: pd.DataFrame, flag_threshold: float,
                     config: WatchConfig = WatchConfig()) -> None:
    """A confirmed entry with matching accounts ``em``: its host campaign is flagged with the evidence
    "continues confirmed campaign X", and the matching accounts join it (or, members already, reach the
    threshold with the reason)."""
    sims = em["similarity"].dropna()
    summary = (f"{len(em)} accounts match its fingerprint ({int(em['n_match'].sum())} requests, mean "
               f"similarity {_fmt_sim(sims.mean() if len(sims) else np.nan)})")
    host, em = _confirmed_host(st, e, em, req, flag_threshold, config)
    if host is None:
        return
    st.out.continued[e.watch_id] = host
    new = em[~em["account_id"].isin(st.members.get(host, set()))]
    i = st.prepend_evidence(host, f"Continues confirmed campaign {e.fingerprint.campaign_id} (watch {e.watch_id}, "
                                  f"confirmed by {_who(e)}): {summary}; {len(new)} of them joined here.")
    score = max(float(st.camps.at[i, "score"]), flag_threshold)
    st.camps.at[i, "score"] = round(score, 4)
    st.camps.at[i, "flagged"] = True
    st.confirmed_camps.add(host)
    _raise_members(st, host, em, e, score, flag_threshold)
    rows = []
    for r in new.to_dict("records"):
        a_score = round(max(flag_threshold, score * (0.5 + 0.5 * min(1.0, float(r["share"])))), 4)
        rows.append({"campaign_id": host, "account_id": r["account_id"], "n_requests": int(r["n_match"]),
                     "share": round(float(r["share"]), 4), "score": a_score,
                     "evidence": [account_evidence(r, e)]})
    if rows:
        st.ca = pd.concat([st.ca, pd.DataFrame(rows)], ignore_index=True)
        st.members.setdefault(host, set()).update(new["account_id"])
        st.camps.at[i, "n_accounts"] = int(st.camps.at[i, "n_accounts"]) + len(rows)
        st.camps.at[i, "n_requests"] = int(st.camps.at[i, "n_requests"]) + int(new["n_match"].sum())
    st.acc = _raise_accounts(st.acc, st.ca[st.ca["campaign_id"] == host])


def _raise_members(st: _WatchState, host: str, em: pd.DataFrame, e: WatchEntry, score: float,
                   flag_threshold: float) -> None:
    """Matching accounts that were members of the host already: their score reaches the threshold too, with
    the reason first in their evidence."""
    ca = st.ca
    old = em[em["account_id"].isin(st.members.get(host, set()))].set_index("account_id")
    sel = (ca["campaign_id"] == host) & ca["account_id"].isin(old.index)
    for j in np.flatnonzero(sel.to_numpy()):
        r = old.loc[ca.iat[j, ca.columns.get_loc("account_id")]]
        k = ca.index[j]
        a_score = max(flag_threshold, score * (0.5 + 0.5 * min(1.0, float(r["share"]))))
        ca.at[k, "score"] = round(max(float(ca.at[k, "score"]), a_score), 4)
        ca.at[k, "evidence"] = [account_evidence({**r.to_dict(), "account_id": r.name}, e),
                                *list(ca.at[k, "evidence"])]


def _apply_dismissed(st: _WatchState, e: WatchEntry, em: pd.DataFrame, req: pd.DataFrame,
                     config: WatchConfig) -> None:
    """A dismissed entry: the campaign that is the dismissed one is no longer flagged (score kept), unless a
    confirmed entry flagged it or it changed materially (then it is raised again, with the reason)."""
    host = _same_campaign(e, set(em["account_id"]), st.camps, st.members, config)
    if host is None or host in st.confirmed_camps:
        return
    changed = _material_change(e, st.members.get(host, set()), req, config)
    if changed:
        st.out.raised_again[host] = e.watch_id
        st.prepend_evidence(host, f"Dismissed before (watch {e.watch_id}, by {_who(e)}) but changed "
                                  f"materially: {changed}.")
        return
    i = st.camps.index[st.camps["campaign_id"] == host][0]
    if not bool(st.camps.at[i, "flagged"]):
        return
    st.camps.at[i, "flagged"] = False
    st.out.suppressed[host] = e.watch_id
    note = f" ({e.note})" if e.note else ""
    st.prepend_evidence(host, f"Flag suppressed: dismissed by {_who(e)}{note} (watch {e.watch_id}); it has not "
                              f"changed materially ({int(st.camps.at[i, 'n_accounts'])} accounts, "
                              f"{e.fingerprint.n_accounts} at dismissal; no new infrastructure).")


def _same_campaign(e: WatchEntry, matched: set[str], camps: pd.DataFrame, members: Mapping[str, set[str]],
                   config: WatchConfig) -> str | None:
    """The current campaign that is the watched one, if any (see :attr:`WatchConfig.same_campaign_share`)."""
    best, best_n = None, 0
    known = matched | set(e.fingerprint.accounts)
    for cid in camps["campaign_id"]:
        mem = members.get(cid, set())
        n = len(mem & known)
        if cid == e.fingerprint.campaign_id or cid == e.campaign_id:
            n = max(n, 1) + len(mem)  # the same id wins
        elif not mem or n < config.same_campaign_share * len(mem):
            continue
        if n > best_n:
            best, best_n = cid, n
    return best


def _material_change(e: WatchEntry, mem: set[str], req: pd.DataFrame, config: WatchConfig) -> str:
    """Why a campaign matching a dismissed entry is raised again ("" when it has not changed materially)."""
    n0 = max(e.fingerprint.n_accounts, 1)
    if len(mem) >= (1.0 + config.material_growth) * n0:
        return f"{len(mem)} accounts, {e.fingerprint.n_accounts} at dismissal"
    now = concentrated_infra(req, mem, config) if mem else {}
    new = [f"{f} {v}" for f, vals in now.items() for v in vals if v not in set(e.fingerprint.infra.get(f, []))]
    return f"new infrastructure ({', '.join(new[:3])})" if new else ""


_ACCOUNT_COUNT = re.compile(r":\s*\d+ accounts?\b.*$")  # the "...: 38 accounts" tail of a campaign label


def _formed_campaign(e: WatchEntry, em: pd.DataFrame, req: pd.DataFrame, flag_threshold: float) -> dict:
    """A campaign for a confirmed entry whose work no current campaign carries."""
    fp = e.fingerprint
    cid = "cw-" + hashlib.blake2b(f"formed\x1f{e.watch_id}".encode(), digest_size=5).hexdigest()
    mine = req[req["account_id"].isin(set(em["account_id"]))]
    sims = em["similarity"].dropna()
    return {
        "campaign_id": cid, "rank": 0, "score": round(max(flag_threshold, min(fp.score, 1.0)), 4), "flagged": True,
        "label": f"continues confirmed campaign {fp.campaign_id}: {_ACCOUNT_COUNT.sub('', fp.label)}".strip(": "),
        "kind": fp.intent,
        "keywords": [], "template": fp.template, "n_accounts": 0, "n_requests": 0,
        "first_seen": mine["ts"].min() if len(mine) else pd.NaT, "last_seen": mine["ts"].max() if len(mine) else pd.NaT,
        "clusters": [], "signals": {"watch_similarity": None if sims.empty else round(float(sims.mean()), 4),
                                    "watch_match_share": round(float(em["share"].mean()), 4) if len(em) else None},
        "evidence": [], "examples": [],
    }


def _raise_accounts(acc: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Accounts table: each account of ``rows`` gets that campaign when its score there is the higher."""
    if rows.empty:
        return acc
    acc = acc.set_index("account_id")
    for r in rows.itertuples(index=False):
        if r.account_id not in acc.index:
            continue
        if float(r.score) > float(acc.at[r.account_id, "score"]):
            acc.at[r.account_id, "score"] = float(r.score)
            acc.at[r.account_id, "campaign_id"] = r.campaign_id
            acc.at[r.account_id, "signals"] = {**(acc.at[r.account_id, "signals"] or {}),
                                               "share_in_campaign": float(r.share)}
    return acc.reset_index()
