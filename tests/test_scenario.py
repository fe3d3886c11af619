"""Tests of the benchmark scenario generator (need ../shared/data; skipped without it)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from analyzer.bench import corpora

pytestmark = pytest.mark.skipif(
    not corpora.available(),
    reason=f"../shared/data not found at {corpora.data_dir()} (set ANALYZER_SHARED_DATA to the shared corpora)",
)


@pytest.fixture(scope="module")
def quick():  # noqa: ANN201 - a Scenario
    from analyzer.bench.scenario import build_scenario

    return build_scenario("quick", seed=0)


def test_corpora_loaders_basic() -> None:
    for name in ("gsm8k", "hh_rlhf", "bfcl", "prometheus", "deccp_sensitive", "humaneval"):
        c = corpora.load(name)
        assert len(c) > 50
        assert len(c.items) == len(c.prompts)
        assert len(set(c.prompts)) == len(c.prompts)
        assert all(10 <= len(p) <= 4000 and p == p.strip() for p in c.prompts)
    assert all(c.permissive for c in corpora.organic_corpora(permissive_only=True))
    assert {c.name for c in corpora.task_corpora("grading", permissive_only=True)} == {"prometheus", "pandalm"}


def test_missing_shared_data_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from analyzer.bench.scenario import build_scenario

    monkeypatch.setenv("ANALYZER_SHARED_DATA", str(tmp_path / "nowhere"))
    assert not corpora.available()
    with pytest.raises(corpora.SharedDataMissing):
        corpora.load("gsm8k")
    with pytest.raises(corpora.SharedDataMissing):
        build_scenario("sample", seed=0)


def test_unknown_knob_rejected() -> None:
    from analyzer.bench.scenario import build_scenario

    with pytest.raises(TypeError):
        build_scenario("quick", seed=0, n_campaigns=3)
    with pytest.raises(ValueError):
        build_scenario("nope")


def test_quick_deterministic_and_seed_dependent(quick) -> None:  # noqa: ANN001
    from analyzer.bench.scenario import build_scenario

    again = build_scenario("quick", seed=0)
    pd.testing.assert_frame_equal(quick.requests, again.requests)
    assert quick.truth == again.truth
    other = build_scenario("quick", seed=1)
    assert not quick.requests["prompt"].equals(other.requests["prompt"])
    assert set(quick.requests["account_id"]) != set(other.requests["account_id"])


def test_quick_shape_and_columns(quick) -> None:  # noqa: ANN001
    from analyzer.bench.scenario import COLUMNS

    df = quick.requests
    assert list(df.columns) == COLUMNS
    assert 8_000 <= len(df) <= 15_000
    assert str(df["ts"].dtype) == "datetime64[us, UTC]"
    assert df["ts"].is_monotonic_increasing
    assert df["request_id"].is_unique
    assert df["prompt"].notna().all()
    # chat rows with a system prompt exist in campaigns and in organic traffic
    sys_rows = df[df["system_prompt"].notna()]
    assert (sys_rows["actor"] == "organic").any()
    assert sys_rows["actor"].isin(list(quick.truth["campaigns"])).any()
    assert (~df["chat"]).any()


def test_truth_consistency(quick) -> None:  # noqa: ANN001
    df, truth = quick.requests, quick.truth
    logged = set(df["account_id"])
    assert set(truth["campaigns"]) == {"cot_math", "rubric_grading", "censorship_rewrite", "agentic_tools"}
    assert set(truth["hard_negatives"]) == {"homework", "viral_prompt", "enterprise_batch", "eval_harness"}
    knobs = truth["knobs"]
    campaign_accts: set[str] = set()
    for name, c in truth["campaigns"].items():
        accts = set(c["accounts"])
        assert accts <= logged
        assert 20 <= len(accts) <= 300
        assert len(accts) == knobs["campaign_accounts"][name]
        assert c["n_requests"] == int((df["actor"] == name).sum())
        # load-balanced: near-even volume per account
        per = df[df["actor"] == name].groupby("account_id").size()
        assert per.max() <= 2 * per.min() + 2
        assert set(c["hydra_accounts"]) <= accts
        campaign_accts |= accts
    # one operator runs two campaigns from the same pool
    assert truth["campaigns"]["cot_math"]["accounts"] == truth["campaigns"]["rubric_grading"]["accounts"]
    assert truth["campaigns"]["cot_math"]["operator"] == truth["campaigns"]["rubric_grading"]["operator"]
    for h in truth["hard_negatives"].values():
        assert set(h["accounts"]) <= logged
        assert not set(h["accounts"]) & campaign_accts
    assert 100 <= len(truth["hard_negatives"]["homework"]["accounts"]) <= 300
    assert len(truth["hard_negatives"]["enterprise_batch"]["accounts"]) == 1
    assert 1 <= len(truth["hard_negatives"]["eval_harness"]["accounts"]) <= 3
    assert truth["organic_accounts"] == len(logged - campaign_accts)
    assert truth["all_accounts"] == sorted(logged)
    # hydra accounts also carry ordinary traffic
    hydra = set(truth["campaigns"]["agentic_tools"]["hydra_accounts"])
    assert hydra and (df[df["account_id"].isin(hydra)]["actor"] == "organic").any()
    # homework students and viral pasters do other things too
    for hn in ("homework", "viral_prompt"):
        accts = set(truth["hard_negatives"][hn]["accounts"])
        assert (df[df["account_id"].isin(accts)]["actor"] == "organic").any()


def test_pivot_campaign_moves_to_new_model(quick) -> None:  # noqa: ANN001
    shares = quick.truth["pivot"]["share_on_new_model_first_24h"]
    assert shares["agentic_tools"] >= 0.5
    assert shares["organic"] < 0.15
    assert shares["cot_math"] == 0.0


def test_template_variation_zero_uses_one_wrapper() -> None:
    from analyzer.bench.scenario import build_scenario

    s = build_scenario("sample", seed=3, template_variation=0, campaigns=("cot_math",),
                       hard_negatives=("enterprise_batch",))
    cot = s.requests[s.requests["actor"] == "cot_math"]["prompt"]
    assert cot.str.startswith("Solve the following problem.").all()
    s2 = build_scenario("sample", seed=3, template_variation=2, campaigns=("cot_math",),
                        hard_negatives=("enterprise_batch",))
    cot2 = s2.requests[s2.requests["actor"] == "cot_math"]["prompt"]
    assert not cot2.str.startswith("Solve the following problem.").all()


def test_write_scenario_readable(quick, tmp_path: Path) -> None:  # noqa: ANN001
    from analyzer.bench.scenario import write_scenario

    log_path, truth_path = write_scenario(quick, tmp_path)
    assert log_path.name == "logs.jsonl.gz"
    with gzip.open(log_path, "rt", encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh]
    assert len(recs) == len(quick.requests)
    kinds = set()
    for r in recs[:2000]:
        assert r["timestamp"].endswith("Z")
        assert {"request_id", "account_id", "timestamp"} <= r.keys()
        assert ("prompt" in r) != ("messages" in r)
        if "messages" in r:
            kinds.add("messages")
            assert r["messages"][-1]["role"] == "user"
            assert all(isinstance(m["content"], str) for m in r["messages"])
        else:
            kinds.add("prompt")
        assert "actor" not in r and "chat" not in r
    assert kinds == {"prompt", "messages"}
    truth = json.loads(truth_path.read_text())
    assert truth["campaigns"].keys() == quick.truth["campaigns"].keys()
    # byte-reproducible
    log2, _ = write_scenario(quick, tmp_path / "again")
    assert log2.read_bytes() == log_path.read_bytes()
