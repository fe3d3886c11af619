"""Benchmark metrics: campaign recall, false flags, account-level AUC and precision/recall, false-positive rates.

All functions are pure: ``flagged`` is a list of flagged campaigns, each a list of account ids; ``truth`` is
the dict written by :func:`analyzer.bench.scenario.write_scenario` (``truth.json``), of which only
``campaigns[name]["accounts"]``, ``hard_negatives[name]["accounts"]`` and (optionally) ``all_accounts`` are
read.

Rules
-----
* A flagged campaign is *assigned* to true campaign ``T`` when a strict majority (> 50%) of its accounts
  belong to ``T`` (accounts may belong to several true campaigns when one operator runs several, so one flag
  may be assigned to several true campaigns).
* ``T`` is *found* when the flags assigned to it together cover at least ``coverage`` (default 60%) of
  ``T``'s accounts (so two flagged halves, each covering 35%, find it).
* A flag is *false* when campaign accounts (of any true campaign) are not a strict majority of it. A false
  flag names the hard negative with the most of its non-campaign accounts, if that hard negative has more
  of them than plain organic accounts (accounts in no hard negative) do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

Flagged = Sequence[Iterable[str]]


def _campaign_sets(truth: Mapping[str, Any]) -> dict[str, set[str]]:
    return {name: set(c.get("accounts", [])) for name, c in (truth.get("campaigns") or {}).items()}


def _hn_sets(truth: Mapping[str, Any]) -> dict[str, set[str]]:
    return {name: set(h.get("accounts", [])) for name, h in (truth.get("hard_negatives") or {}).items()}


def campaign_accounts(truth: Mapping[str, Any]) -> set[str]:
    """Union of the accounts of every true campaign (hydra accounts included)."""
    out: set[str] = set()
    for s in _campaign_sets(truth).values():
        out |= s
    return out


def assign_flags(flagged: Flagged, truth: Mapping[str, Any]) -> list[list[str]]:
    """For each flagged campaign, the true campaigns holding a strict majority of its accounts."""
    camps = _campaign_sets(truth)
    out: list[list[str]] = []
    for f in flagged:
        fs = set(f)
        if not fs:
            out.append([])
            continue
        out.append(sorted(name for name, acc in camps.items() if 2 * len(fs & acc) > len(fs)))
    return out


def campaign_recall(flagged: Flagged, truth: Mapping[str, Any], coverage: float = 0.6
                    ) -> tuple[float, dict[str, bool]]:
    """Share of true campaigns found, and which were found.

    A true campaign is found when the flagged campaigns whose majority of accounts belong to it together
    cover at least ``coverage`` of its accounts. With no true campaigns, recall is 1.0.
    """
    camps = _campaign_sets(truth)
    flags = [set(f) for f in flagged]
    assigned = assign_flags(flags, truth)
    found: dict[str, bool] = {}
    for name, acc in camps.items():
        if not acc:
            found[name] = False
            continue
        covered: set[str] = set()
        for fs, names in zip(flags, assigned, strict=True):
            if name in names:
                covered |= fs & acc
        found[name] = len(covered) >= coverage * len(acc)
    recall = float(np.mean(list(found.values()))) if found else 1.0
    return recall, found


def false_flags(flagged: Flagged, truth: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Number of false flags and the hard negatives they hit (sorted, unique).

    A flag is false when campaign accounts are not a strict majority of its accounts (empty flags are
    false). It names the hard negative with the most of its non-campaign accounts (ties: alphabetical)
    when that count beats the number of its plain organic accounts.
    """
    camp = campaign_accounts(truth)
    hns = _hn_sets(truth)
    n_false = 0
    named: set[str] = set()
    for f in flagged:
        fs = set(f)
        if fs and 2 * len(fs & camp) > len(fs):
            continue
        n_false += 1
        rest = fs - camp
        if not rest:
            continue
        counts = {name: len(rest & acc) for name, acc in hns.items()}
        in_any = set().union(*hns.values()) if hns else set()
        plain = len(rest - in_any)
        if counts:
            best = min(counts, key=lambda n: (-counts[n], n))
            if counts[best] > 0 and counts[best] > plain:
                named.add(best)
    return n_false, sorted(named)


def _universe(truth: Mapping[str, Any], extra: Iterable[str] = ()) -> list[str]:
    if truth.get("all_accounts"):
        base = set(truth["all_accounts"])
    else:
        base = set(extra) | campaign_accounts(truth)
        for s in _hn_sets(truth).values():
            base |= s
    return sorted(base)


def account_auc(scores: Mapping[str, float], truth: Mapping[str, Any]) -> float:
    """ROC AUC of per-account scores for "is a campaign account" (ties count one half).

    The accounts are ``truth["all_accounts"]`` when present (else the scored accounts plus every account
    named in ``truth``); accounts missing from ``scores`` get 0. Returns NaN when either class is empty.
    """
    accounts = _universe(truth, scores.keys())
    pos = campaign_accounts(truth)
    y = np.array([a in pos for a in accounts], dtype=bool)
    s = np.array([float(scores.get(a, 0.0)) for a in accounts], dtype=np.float64)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def account_precision_recall(flagged_accounts: Iterable[str], truth: Mapping[str, Any]) -> tuple[float, float]:
    """(precision, recall) of a set of flagged accounts against the union of campaign accounts.

    Precision is 0.0 when nothing is flagged; recall is 1.0 when there are no campaign accounts.
    """
    flagged = set(flagged_accounts)
    pos = campaign_accounts(truth)
    tp = len(flagged & pos)
    precision = tp / len(flagged) if flagged else 0.0
    recall = tp / len(pos) if pos else 1.0
    return precision, recall


def score_margin(campaign_scores: Sequence[tuple[float, Iterable[str]]], truth: Mapping[str, Any]
                 ) -> tuple[float | None, float | None]:
    """Lowest score of a true campaign's best candidate, and highest score of a benign candidate.

    ``campaign_scores`` holds every candidate campaign (flagged or not) as ``(score, accounts)``. A candidate
    is benign when campaign accounts are not a strict majority of its accounts. The gap between the two numbers
    is how much room the flag threshold has; ``None`` where there is no such candidate.
    """
    camp = campaign_accounts(truth)
    assigned = assign_flags([list(a) for _, a in campaign_scores], truth)
    best: dict[str, float] = {}
    benign: list[float] = []
    for (score, accounts), names in zip(campaign_scores, assigned, strict=True):
        acc = set(accounts)
        if not acc or 2 * len(acc & camp) <= len(acc):
            benign.append(float(score))
        for name in names:
            best[name] = max(best.get(name, 0.0), float(score))
    return (min(best.values()) if best else None), (max(benign) if benign else None)



def smallest_campaign_found(found: Mapping[str, bool], truth: Mapping[str, Any]) -> int | None:
    """Accounts of the smallest true campaign that was found (``None`` when none was found).

    ``found`` is the second value of :func:`campaign_recall`. The smaller this number, the smaller a campaign the
    system can still catch.
    """
    camps = _campaign_sets(truth)
    sizes = [len(camps[name]) for name, ok in found.items() if ok and name in camps]
    return min(sizes) if sizes else None


def is_benign(accounts: Iterable[str], campaign_accts: set[str]) -> bool:
    """A candidate is benign when campaign accounts are not a strict majority of its accounts (empty: benign)."""
    acc = set(accounts)
    return not acc or 2 * len(acc & campaign_accts) <= len(acc)


@dataclass(frozen=True)
class BenignStats:
    """False positives among benign candidates and benign accounts (see :func:`benign_false_positives`)."""

    candidates_scored: int      # benign candidate campaigns the system scored (flagged or not)
    candidates_flagged: int     # of those, how many were flagged
    accounts: int               # benign accounts in the log
    accounts_flagged: int       # benign accounts inside at least one flagged campaign
    highest_score: float | None  # highest score of a benign candidate (None: no benign candidate)

    @property
    def fpr(self) -> float | None:
        """Candidate-level false-positive rate: flagged / scored benign candidates (None with none scored)."""
        return self.candidates_flagged / self.candidates_scored if self.candidates_scored else None

    @property
    def account_fpr(self) -> float | None:
        """Account-level false-positive rate: flagged / all benign accounts (None with no benign account)."""
        return self.accounts_flagged / self.accounts if self.accounts else None


def benign_false_positives(candidates: Sequence[tuple[float, Iterable[str]]], flagged: Sequence[bool],
                           truth: Mapping[str, Any], accounts: Iterable[str] = ()) -> BenignStats:
    """How often benign traffic is flagged.

    ``candidates`` holds every candidate campaign as ``(score, accounts)`` and ``flagged`` says, in the same
    order, which were flagged. Benign candidates are those of :func:`is_benign`. Benign accounts are the accounts
    of ``truth["all_accounts"]`` (else ``accounts`` plus every account named in ``truth``) that belong to no true
    campaign; one is flagged when it is in any flagged candidate. On a scenario with no campaigns every candidate
    and every account is benign, so this is the false-positive rate of benign traffic against benign traffic.
    """
    if len(candidates) != len(flagged):
        raise ValueError(f"{len(candidates)} candidates but {len(flagged)} flagged marks")
    camp = campaign_accounts(truth)
    scored = n_flagged = 0
    top: float | None = None
    flagged_accounts: set[str] = set()
    for (score, accs), is_flagged in zip(candidates, flagged, strict=True):
        acc = set(accs)
        if is_flagged:
            flagged_accounts |= acc
        if not is_benign(acc, camp):
            continue
        scored += 1
        n_flagged += bool(is_flagged)
        top = float(score) if top is None else max(top, float(score))
    benign = set(_universe(truth, accounts)) - camp
    return BenignStats(scored, n_flagged, len(benign), len(flagged_accounts & benign), top)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a binomial proportion ``k / n`` (scipy's ``binomtest``).

    The upper end is what a false-positive rate is quoted with: with 0 of 300 benign candidates flagged the rate
    is 0 but the data only rule out rates above ~1.3% at 95%. ``(0.0, 1.0)`` when ``n`` is 0.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
