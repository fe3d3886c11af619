"""Unit tests of analyzer.bench.metrics on hand-made truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.bench.metrics import (
    account_auc,
    account_precision_recall,
    assign_flags,
    benign_false_positives,
    campaign_recall,
    false_flags,
    is_benign,
    score_margin,
    smallest_campaign_found,
    wilson_interval,
)


def _acc(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


A = _acc("a", 20)  # campaign A
B = _acc("b", 10)  # campaign B
SHARED = _acc("s", 10)  # one operator's pool running two campaigns (C1 and C2)
HW = _acc("hw", 30)  # homework students
VIR = _acc("v", 30)  # viral pasters
BATCH = ["batch0"]
ORG = _acc("o", 50)  # plain organic

TRUTH = {
    "campaigns": {
        "A": {"kind": "cot", "accounts": A},
        "B": {"kind": "grading", "accounts": B},
        "C1": {"kind": "cot", "accounts": SHARED, "operator": "op"},
        "C2": {"kind": "grading", "accounts": SHARED, "operator": "op"},
    },
    "hard_negatives": {
        "homework": {"kind": "homework", "accounts": HW},
        "viral_prompt": {"kind": "viral_prompt", "accounts": VIR},
        "enterprise_batch": {"kind": "enterprise_batch", "accounts": BATCH},
    },
    "all_accounts": sorted(A + B + SHARED + HW + VIR + BATCH + ORG),
}


# ----------------------------------------------------------------------------------------- recall


def test_recall_all_found() -> None:
    recall, found = campaign_recall([A, B, SHARED], TRUTH)
    assert recall == 1.0
    assert found == {"A": True, "B": True, "C1": True, "C2": True}


def test_split_campaign_two_halves_each_35pct_is_found() -> None:
    half1, half2 = A[:7], A[7:14]  # 35% + 35% = 70% >= 60%
    recall, found = campaign_recall([half1, half2], TRUTH)
    assert found["A"] is True
    assert found["B"] is False
    assert recall == pytest.approx(0.25)


def test_single_flag_below_coverage_not_found() -> None:
    _, found = campaign_recall([A[:11]], TRUTH)  # 55% < 60%
    assert found["A"] is False
    _, found = campaign_recall([A[:12]], TRUTH)  # exactly 60%
    assert found["A"] is True


def test_majority_rule() -> None:
    # 12 of A + 13 organic: A is not a majority -> contributes nothing, and it is a false flag
    diluted = A[:12] + ORG[:13]
    _, found = campaign_recall([diluted], TRUTH)
    assert found["A"] is False
    assert false_flags([diluted], TRUTH)[0] == 1
    # 13 of A + 12 organic: majority -> A covered at 65%
    majority = A[:13] + ORG[:12]
    _, found = campaign_recall([majority], TRUTH)
    assert found["A"] is True
    assert false_flags([majority], TRUTH)[0] == 0


def test_one_flag_can_find_both_campaigns_of_one_operator() -> None:
    assert assign_flags([SHARED], TRUTH) == [["C1", "C2"]]
    _, found = campaign_recall([SHARED], TRUTH)
    assert found["C1"] and found["C2"]


def test_merged_campaigns_are_neither_found_nor_false() -> None:
    merged = A[:10] + B[:10]  # 50/50 of two campaigns: no strict majority for either
    recall, found = campaign_recall([merged], TRUTH)
    assert not found["A"] and not found["B"]
    assert false_flags([merged], TRUTH) == (0, [])


def test_no_campaigns_recall_is_one() -> None:
    assert campaign_recall([A], {"campaigns": {}}) == (1.0, {})


# ----------------------------------------------------------------------------------------- false flags


def test_false_flag_names_hard_negative() -> None:
    n, names = false_flags([HW[:20] + ORG[:5], VIR[:10], BATCH], TRUTH)
    assert n == 3
    assert names == ["enterprise_batch", "homework", "viral_prompt"]


def test_false_flag_plurality_among_non_campaign_accounts() -> None:
    # 8 homework, 6 viral, 7 plain organic, 4 campaign: homework has the plurality among non-campaign accounts
    flag = HW[:8] + VIR[:6] + ORG[:7] + A[:4]
    assert false_flags([flag], TRUTH) == (1, ["homework"])


def test_false_flag_mostly_plain_organic_names_nothing() -> None:
    flag = ORG[:20] + HW[:5]
    assert false_flags([flag], TRUTH) == (1, [])


def test_empty_flag_is_false() -> None:
    assert false_flags([[]], TRUTH) == (1, [])


# ----------------------------------------------------------------------------------------- AUC


def test_auc_perfect_and_inverted() -> None:
    pos = set(A + B + SHARED)
    perfect = {a: (1.0 if a in pos else 0.0) for a in TRUTH["all_accounts"]}
    assert account_auc(perfect, TRUTH) == 1.0
    inverted = {a: (0.0 if a in pos else 1.0) for a in TRUTH["all_accounts"]}
    assert account_auc(inverted, TRUTH) == 0.0


def test_auc_missing_accounts_get_zero_and_ties_count_half() -> None:
    # only campaign accounts scored (1.0), everyone else missing -> 0 -> perfect
    assert account_auc(dict.fromkeys(A + B + SHARED, 1.0), TRUTH) == 1.0
    # everyone tied -> 0.5
    assert account_auc({}, TRUTH) == 0.5


def test_auc_matches_sklearn_with_ties() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    accounts = TRUTH["all_accounts"]
    pos = set(A + B + SHARED)
    # coarse scores -> many ties; some accounts left out (-> 0)
    scores = {a: float(rng.integers(0, 4) + (1 if a in pos else 0)) for a in accounts if rng.random() < 0.8}
    y = [a in pos for a in accounts]
    s = [scores.get(a, 0.0) for a in accounts]
    assert account_auc(scores, TRUTH) == pytest.approx(sklearn_metrics.roc_auc_score(y, s))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=len(TRUTH["all_accounts"]), max_size=len(TRUTH["all_accounts"])))
def test_auc_property_matches_pairwise_definition(levels: list[int]) -> None:
    accounts = TRUTH["all_accounts"]
    pos = set(A + B + SHARED)
    scores = {a: float(v) for a, v in zip(accounts, levels, strict=True)}
    p = np.array([scores[a] for a in accounts if a in pos])
    n = np.array([scores[a] for a in accounts if a not in pos])
    expected = ((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()) / (len(p) * len(n))
    assert account_auc(scores, TRUTH) == pytest.approx(expected)


def test_auc_without_all_accounts_uses_named_and_scored() -> None:
    truth = {k: v for k, v in TRUTH.items() if k != "all_accounts"}
    scores = dict.fromkeys(A, 1.0) | dict.fromkeys(ORG, 0.0)
    # negatives = HW + VIR + BATCH (named, unscored -> 0) + ORG (scored 0); B/SHARED unscored -> 0 (ties)
    auc = account_auc(scores, truth)
    assert 0.5 < auc < 1.0


def test_auc_nan_when_one_class_missing() -> None:
    assert math.isnan(account_auc({"x": 1.0}, {"campaigns": {}, "all_accounts": ["x", "y"]}))


# ----------------------------------------------------------------------------------------- precision / recall


def test_account_precision_recall() -> None:
    p, r = account_precision_recall(set(A) | set(ORG[:20]), TRUTH)
    assert p == pytest.approx(20 / 40)
    assert r == pytest.approx(20 / 40)  # 40 campaign accounts in total (A 20, B 10, SHARED 10)
    assert account_precision_recall(set(), TRUTH) == (0.0, 0.0)


def test_score_margin_takes_each_campaign_best_candidate_and_the_top_benign() -> None:
    candidates = [(0.9, A), (0.6, A[:5]), (0.7, B), (0.8, SHARED), (0.4, HW), (0.45, ORG[:10] + A[:3]), (0.1, [])]
    lowest_true, highest_benign = score_margin(candidates, TRUTH)
    assert lowest_true == 0.7  # B's best candidate; A's weaker duplicate does not count
    assert highest_benign == 0.45  # mostly organic accounts, even with 3 campaign accounts inside
    assert score_margin([], TRUTH) == (None, None)


# ----------------------------------------------------------------------------------------- smallest found


def test_smallest_campaign_found_is_the_smallest_found_not_the_smallest_true() -> None:
    _, found = campaign_recall([A, SHARED], TRUTH)  # A (20) and C1/C2 (10 each) found, B (10) not
    assert smallest_campaign_found(found, TRUTH) == 10
    _, found = campaign_recall([A], TRUTH)
    assert smallest_campaign_found(found, TRUTH) == 20
    _, found = campaign_recall([], TRUTH)
    assert smallest_campaign_found(found, TRUTH) is None


# ----------------------------------------------------------------------------------------- benign false positives


def test_is_benign_majority_rule() -> None:
    camp = set(A)
    assert is_benign(ORG[:5], camp)
    assert is_benign(A[:5] + ORG[:5], camp)  # 50% is not a strict majority
    assert not is_benign(A[:6] + ORG[:5], camp)
    assert is_benign([], camp)


def test_benign_false_positives_counts_benign_candidates_and_accounts() -> None:
    candidates = [(0.9, A), (0.8, HW[:10]), (0.3, VIR[:5]), (0.7, ORG[:4] + A[:2]), (0.2, B)]
    flagged = [True, True, False, False, True]
    stats = benign_false_positives(candidates, flagged, TRUTH)
    assert stats.candidates_scored == 3  # HW, VIR, the mostly organic one; A and B are campaigns
    assert stats.candidates_flagged == 1
    assert stats.fpr == pytest.approx(1 / 3)
    benign = len(TRUTH["all_accounts"]) - 40
    assert stats.accounts == benign
    assert stats.accounts_flagged == 10  # the homework accounts of the flagged benign candidate
    assert stats.account_fpr == pytest.approx(10 / benign)
    assert stats.highest_score == 0.8


def test_benign_false_positives_on_a_campaign_free_truth() -> None:
    truth = {"campaigns": {}, "hard_negatives": TRUTH["hard_negatives"], "all_accounts": ORG + HW}
    stats = benign_false_positives([(0.5, ORG[:3]), (0.95, HW[:4] + ORG[:1])], [False, True], truth)
    assert (stats.candidates_scored, stats.candidates_flagged, stats.accounts, stats.accounts_flagged) == (2, 1, 80, 5)
    assert stats.highest_score == 0.95
    empty = benign_false_positives([], [], truth)
    assert empty.fpr is None and empty.highest_score is None and empty.account_fpr == 0.0
    with pytest.raises(ValueError, match="2 candidates but 1"):
        benign_false_positives([(0.5, ORG[:3]), (0.4, ORG[3:5])], [True], truth)


# ----------------------------------------------------------------------------------------- Wilson bound


def _wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(0, 100), (3, 300), (1, 7), (50, 50), (12, 1000)])
def test_wilson_interval_matches_the_formula(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    exp_lo, exp_hi = _wilson_by_hand(k, n)
    assert lo == pytest.approx(max(0.0, exp_lo), abs=1e-9)
    assert hi == pytest.approx(min(1.0, exp_hi), abs=1e-9)


def test_wilson_zero_of_n_upper_bound_shrinks_with_n() -> None:
    # 0 flagged of n: upper = z^2 / (n + z^2); 0 of 100 is ~3.7%, 0 of 1000 ~0.38%
    assert wilson_interval(0, 100)[1] == pytest.approx(3.8415 / 103.8415, rel=1e-4)
    assert wilson_interval(0, 1000)[1] < wilson_interval(0, 100)[1]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 100, confidence=0.99)[1] > wilson_interval(0, 100)[1]
    with pytest.raises(ValueError):
        wilson_interval(5, 3)
