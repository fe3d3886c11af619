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
    campaign_recall,
    false_flags,
    score_margin,
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
