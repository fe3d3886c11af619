"""Tests of the benchmark scenario generator (need ../shared/data; skipped without it)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
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


# ============================================================================== adversarial knobs (issue 11)

#: sha256 of the JSON log records of ``build_scenario("quick", seed=0)`` as built before the adversarial knobs
#: existed (commit 6fa1206). The knobs at their defaults must not move a byte.
QUICK_SEED0_RECORDS_SHA256 = "6cdbc4f9146e6d38506f0bcaa83380e09e8dde861247379eb6cf9e0b0486d6c1"
SAMPLE_LOG = Path(__file__).resolve().parents[1] / "data" / "sample" / "requests.jsonl.gz"
CJK = r"[\u4e00-\u9fff]"


def _records_sha256(df: pd.DataFrame) -> str:
    import hashlib

    from analyzer.bench.scenario import scenario_records

    h = hashlib.sha256()
    for r in scenario_records(df):
        h.update(json.dumps(r, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _campaign_rows(s) -> pd.DataFrame:  # noqa: ANN001 - a Scenario
    return s.requests[s.requests["actor"].isin(list(s.truth["campaigns"]))]


def _small(**knobs):  # noqa: ANN003, ANN202 - a Scenario
    """A small scenario (sample preset, 3k requests) with the four campaigns and no look-alikes by default."""
    from analyzer.bench.scenario import build_scenario

    knobs.setdefault("hard_negatives", ())
    return build_scenario("sample", seed=7, **knobs)


def test_old_presets_unchanged_by_default_knobs(quick, tmp_path: Path) -> None:  # noqa: ANN001
    from analyzer.bench.scenario import ADVERSARIAL_KNOBS, build_scenario, write_scenario

    assert _records_sha256(quick.requests) == QUICK_SEED0_RECORDS_SHA256
    assert not set(ADVERSARIAL_KNOBS) & set(quick.truth["knobs"])  # truth.json unchanged too
    assert set(quick.truth["hard_negatives"]) == {"homework", "viral_prompt", "enterprise_batch", "eval_harness"}
    # spelling every adversarial knob out at its default changes nothing either
    explicit = build_scenario("quick", seed=0, **ADVERSARIAL_KNOBS)
    pd.testing.assert_frame_equal(explicit.requests, quick.requests)
    # the shipped sample is reproduced byte for byte
    sample = build_scenario("sample", seed=0)
    log_path, truth_path = write_scenario(sample, tmp_path, log_name="requests.jsonl.gz")
    assert log_path.read_bytes() == SAMPLE_LOG.read_bytes()
    assert truth_path.read_bytes() == (SAMPLE_LOG.parent / "truth.json").read_bytes()


def test_adversarial_knob_validation() -> None:
    from analyzer.bench.scenario import ADVERSARIAL_PRESETS, PRESETS, build_scenario, resolve_knobs

    for bad in (dict(wrapper_style="shuffled"), dict(metadata="none"), dict(wrapper_language="fr"),
                dict(campaign_timing="night"), dict(system_intent_share=1.5), dict(pad_chars=-1), dict(wrapper_noise=2),
                dict(hard_negatives=("homework", "choir")), dict(second_operator={"campaign": "nope", "accounts": 3}),
                dict(second_operator={"campaign": "cot_math"}), dict(classroom_students=0)):
        with pytest.raises(ValueError):
            build_scenario("sample", seed=0, **bad)
    for p in ADVERSARIAL_PRESETS:
        assert p in PRESETS
        k = resolve_knobs(p)
        assert k["n_requests"] == 12_000 and k["days"] == 14 and k["permissive_only"] is False


def _opening(text: str, n: int = 6) -> str:
    return " ".join(text.split()[:n])


def _closing(text: str, n: int = 6) -> str:
    return " ".join(text.split()[-n:])


def _pair_share(keys: list[str]) -> float:
    """Share of pairs of items that have the same key."""
    counts = pd.Series(keys).value_counts()
    n = len(keys)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def test_fragments_vary_openings_and_keep_intent() -> None:
    from analyzer.bench import templates

    fixed = _campaign_rows(_small()).drop_duplicates("prompt")
    frag = _small(wrapper_style="fragments")
    rows = _campaign_rows(frag).drop_duplicates("prompt")
    assert len(rows) > 300
    for name in frag.truth["campaigns"]:
        fx = fixed[fixed["actor"] == name]["prompt"].tolist()
        fr = rows[rows["actor"] == name]["prompt"].tolist()
        # fixed wrappers: many pairs share their first 6 words; fragments: few pairs share the first or last 6
        fixed_share = _pair_share([_opening(p) for p in fx])
        assert fixed_share > 0.08, name
        assert _pair_share([_opening(p) for p in fr]) < min(0.04, fixed_share / 3), name
        assert _pair_share([_closing(p) for p in fr]) < 0.04, name
    # the intent stays: every composition carries one phrasing of each required slot of its task family
    family = {"cot_math": ["cot"], "rubric_grading": ["grading"], "censorship_rewrite": ["censorship"],
              "agentic_tools": ["tools", "coding", "data_analysis"]}
    for name, prompt in zip(rows["actor"], rows["prompt"], strict=True):
        ok = False
        for fam in family[name]:
            required = [alts for _, p, alts in templates.FRAGMENTS_EN[fam]["slots"] if p >= 1.0]
            if all(any(a.split("{")[0] in prompt for a in alts) for alts in required):
                ok = True
        assert ok, prompt[:300]


def test_system_intent_share_moves_instruction_to_system() -> None:
    from analyzer.bench import templates

    s = _small(system_intent_share=0.3)
    rows = _campaign_rows(s).drop_duplicates("prompt")
    cot = rows[rows["actor"] == "cot_math"]
    required = [alts for _, p, alts in templates.FRAGMENTS_EN["cot"]["slots"] if p >= 1.0]

    def has_instruction(text: object) -> bool:
        return isinstance(text, str) and all(any(a.split("{")[0] in text for a in alts) for alts in required)

    in_system = cot["system_prompt"].map(has_instruction)
    assert 0.2 <= in_system.mean() <= 0.4
    moved = cot[in_system]
    assert moved["chat"].all()
    # the user turn is the bare task: no reasoning or format instruction, no fixed wrapper text
    assert not moved["prompt"].str.contains("step by step|Final answer|reasoning", case=False).any()
    assert not cot[~in_system]["prompt"].map(has_instruction).any()  # fixed wrappers elsewhere


def test_campaign_timing_diurnal_has_no_job_windows() -> None:
    shifts = _small(campaigns=("cot_math",))
    diurnal = _small(campaigns=("cot_math",), campaign_timing="diurnal")
    h_shift = _campaign_rows(shifts)["ts"].dt.hour
    h_diur = _campaign_rows(diurnal)["ts"].dt.hour
    assert set(h_shift) <= set(range(1, 12))  # operator_a's shift window 01-12 UTC
    assert len(set(h_diur)) >= 20
    # ordinary day in each account's exit-country time zone: few requests in the local small hours
    from analyzer.bench.scenario import _PROXY_TZ

    rows = _campaign_rows(diurnal)
    local = (rows["ts"].dt.hour + rows["ts"].dt.minute / 60 + rows["country"].map(_PROXY_TZ)) % 24
    assert ((local >= 1) & (local < 6)).mean() < 0.15


def test_metadata_minimal_and_mixed(tmp_path: Path) -> None:
    from analyzer.bench.scenario import METADATA_COLUMNS, write_scenario

    s = _small(metadata="minimal")
    df = s.requests
    for c in METADATA_COLUMNS:
        assert df[c].isna().all(), c
    assert df["system_prompt"].notna().any()  # system prompts are text: they stay
    log_path, _ = write_scenario(s, tmp_path)
    with gzip.open(log_path, "rt", encoding="utf-8") as fh:
        keys = {k for line in fh for k in json.loads(line)}
    assert keys == {"request_id", "account_id", "timestamp", "prompt", "messages"}
    mixed = _small(metadata="mixed")
    bare = mixed.requests.groupby("account_id")["ip"].apply(lambda x: x.isna().mean())
    assert set(bare.unique()) == {0.0, 1.0}  # an account is stripped entirely or not at all
    assert 0.4 <= (bare == 1.0).mean() <= 0.6
    assert mixed.truth["metadata_stripped_accounts"] == int((bare == 1.0).sum())
    camp = set(_campaign_rows(mixed)["account_id"])
    stripped = set(bare[bare == 1.0].index)
    assert stripped & camp and stripped - camp


def test_wrapper_language_zh_and_mixed() -> None:
    zh = _campaign_rows(_small(wrapper_language="zh"))
    text = zh["prompt"] + zh["system_prompt"].fillna("")
    assert text.str.contains(CJK).all()
    fr = _campaign_rows(_small(wrapper_language="zh", wrapper_style="fragments", system_intent_share=0.3))
    assert (fr["prompt"] + fr["system_prompt"].fillna("")).str.contains(CJK).all()
    # mixed: about half the requests (of the English-task campaigns) in Chinese
    mixed = _campaign_rows(_small(wrapper_language="mixed")).drop_duplicates("prompt")
    cot = mixed[mixed["actor"] == "cot_math"]
    share = (cot["prompt"] + cot["system_prompt"].fillna("")).str.contains(CJK).mean()
    assert 0.35 <= share <= 0.65


#: Frequent words of each wrapper language (two of them in nearly every wrapped request).
_LANGUAGE_WORDS = {"es": r"(?i)\b(?:el|la|los|las|de|para|que|con|una|cada|tu)\b",
                   "pl": r"(?i)\b(?:i|w|z|a|o|na|do|nie|się|jak|po|dla|jest|swoje|każdy|krok|od|jako|która|które|który|"
                         r"aby|tak|bez|tylko|przez)\b"}


@pytest.mark.parametrize("lang", ["es", "pl"])
def test_wrapper_language_every_wrapper_in_it_task_text_kept(lang: str) -> None:
    from analyzer.bench import templates

    for knobs in ({}, {"wrapper_style": "fragments", "system_intent_share": 0.3}):
        s = _small(wrapper_language=lang, **knobs)
        rows = _campaign_rows(s)
        text = rows["prompt"] + "\n" + rows["system_prompt"].fillna("")
        words = text.str.count(_LANGUAGE_WORDS[lang])
        assert (words >= 2).mean() > 0.9, text[words < 2].head(3).tolist()  # the wrappers are in the language...
        en = _campaign_rows(_small(**knobs))
        assert set(rows["request_id"]) == set(en["request_id"])  # ...around the same requests
        en_text = en["prompt"] + "\n" + en["system_prompt"].fillna("")
        assert set(rows["request_id"][text.str.contains(CJK)]) <= set(en["request_id"][en_text.str.contains(CJK)])
    fragments, fixed, personas, audiences = (getattr(templates, f"{name}_{lang.upper()}")
                                             for name in ("FRAGMENTS", "FIXED", "PERSONA", "AUDIENCES"))
    assert set(fragments) == set(templates.FRAGMENTS_EN) == set(fixed)
    assert set(personas) == set(templates.PERSONA_ZH)
    assert len(audiences) == len(templates.AUDIENCES)
    for name, spec in fragments.items():  # slot for slot, like the English ones
        assert [slot[:2] for slot in spec["slots"]] == [slot[:2] for slot in templates.FRAGMENTS_EN[name]["slots"]]


@pytest.mark.parametrize("lang", ["es", "pl"])
def test_campaigns_wrapped_in_a_latin_script_language_are_found_on_the_fast_tier(tmp_path: Path, lang: str) -> None:
    """The fast tier reads a Spanish or Polish wrapper's word pieces as ordinary text and as one task whatever the
    question: a campaign wrapped in one is judged on behaviour (training value not judged, tasks told apart by
    payload) and named from its own words, like a Chinese-wrapped one. Polish has no function word list: it is
    recognised by the words the model does not hold whole."""
    from analyzer.bench.run import run_analyzer, score_row
    from analyzer.bench.scenario import build_scenario, write_scenario

    sc = build_scenario("sample", seed=0, wrapper_language=lang)
    log, _ = write_scenario(sc, tmp_path)
    res = run_analyzer(str(log), str(tmp_path), tier="fast")
    row = score_row("analyzer", f"sample-{lang}", 0, res, sc.truth, "fast")
    assert row["campaign_recall"] == 1.0 and row["false_flagged_campaigns"] == 0, row
    assert row["account_auc"] >= 0.99


def test_enterprise_language_writes_the_look_alike_in_another_language() -> None:
    from analyzer.bench import templates

    base = _small(hard_negatives=("enterprise_seats",), enterprise_seats=6)
    for lang in ("zh", "es", "pl"):
        s = _small(hard_negatives=("enterprise_seats",), enterprise_seats=6, enterprise_language=lang)
        seats = s.requests[s.requests["actor"] == "enterprise_seats"]
        assert (seats["system_prompt"] == templates.ENTERPRISE_SYSTEM_BY_LANGUAGE[lang]).all()
        heads = tuple(t.split("{")[0][:12] for t in templates.ENTERPRISE_TASKS_BY_LANGUAGE[lang])
        assert seats["prompt"].str.startswith(heads).all()
        assert len(seats) == (base.requests["actor"] == "enterprise_seats").sum()  # the same requests, reworded
    with pytest.raises(ValueError):
        _small(enterprise_language="fr")


def test_pad_chars_pads_every_campaign_request() -> None:
    s = _small(pad_chars=20_000, requests_per_account=5)
    rows = _campaign_rows(s)
    assert (rows["prompt"].str.len() > 20_000).all()
    assert (s.requests[s.requests["actor"] == "organic"]["prompt"].str.len() < 20_000).all()
    from analyzer.bench import templates

    labels = tuple(templates.PAD_LABELS["en"])
    first = rows["prompt"].str.startswith(labels).mean()
    assert 0.3 <= first <= 0.7  # filler before the instruction for some, after it for others


def test_wrapper_noise_retypes_the_wrapper_and_never_the_task() -> None:
    import re

    from analyzer.bench.scenario import _noisy

    rng = np.random.default_rng(0)
    noisy = _noisy("Solve {task} carefully, then grade {answer} from 1 to 10.", 1.0, rng)
    assert "{task}" in noisy and "{answer}" in noisy and " 1 " in noisy and " 10." in noisy  # slots, numbers kept
    assert all(w not in noisy for w in ("Solve", "carefully", "then", "grade", "from"))  # every word retyped
    assert _noisy("Solve {task}.", 0.0, rng) == "Solve {task}."
    clean = _campaign_rows(_small())
    rows = _campaign_rows(_small(wrapper_noise=0.3))
    assert len(rows) == len(clean)  # the same requests (the main stream draws the same), wrappers retyped
    changed = rows["prompt"].to_numpy() != clean["prompt"].to_numpy()
    assert changed.mean() > 0.9
    digits = re.compile(r"\d+")
    assert all(digits.findall(a) == digits.findall(b) for a, b in zip(rows["prompt"], clean["prompt"], strict=True))


def test_second_operator_is_separate() -> None:
    s = _small(campaigns=("censorship_rewrite",), second_operator={"campaign": "censorship_rewrite", "accounts": 10})
    t = s.truth["campaigns"]
    a, b = t["censorship_rewrite"], t["censorship_rewrite_b"]
    assert b["kind"] == a["kind"] == "censorship"
    assert b["operator"] != a["operator"]
    assert len(b["accounts"]) == 10
    assert not set(a["accounts"]) & set(b["accounts"])
    assert not set(a["proxy_subnets"]) & set(b["proxy_subnets"])
    df = s.requests
    ra, rb = df[df["actor"] == "censorship_rewrite"], df[df["actor"] == "censorship_rewrite_b"]
    assert b["n_requests"] == len(rb) > 0
    assert not set(ra["user_agent"]) & set(rb["user_agent"])
    assert not set(ra["ts"].dt.hour) & set(rb["ts"].dt.hour)  # different hours
    subnet = rb["ip"].str.rsplit(".", n=1).str[0] + ".0/24"
    assert set(subnet) <= set(b["proxy_subnets"])


def test_new_lookalikes_in_truth() -> None:
    from analyzer.bench.scenario import ALL_HARD_NEGATIVES

    s = _small(hard_negatives=ALL_HARD_NEGATIVES, enterprise_seats=12, classroom_students=40, classroom_problems=8,
               cot_eval_accounts=3, cot_eval_checkpoints=4, cot_eval_questions=30, n_requests=4_000)
    df, hn = s.requests, s.truth["hard_negatives"]
    assert set(hn) == set(ALL_HARD_NEGATIVES)
    camp = {a for c in s.truth["campaigns"].values() for a in c["accounts"]}
    for name, h in hn.items():
        assert h["n_requests"] == int((df["actor"] == name).sum()) > 0, name
        assert not set(h["accounts"]) & camp
    # enterprise seats: one org, one system prompt, one egress /24, weekday business hours (CET)
    ent = df[df["actor"] == "enterprise_seats"]
    assert len(hn["enterprise_seats"]["accounts"]) == 12
    assert ent["org_id"].nunique() == 1 and ent["system_prompt"].nunique() == 1
    assert (ent["ip"].str.rsplit(".", n=1).str[0] + ".0/24").nunique() == 1
    local = ent["ts"] + pd.Timedelta(hours=1)
    assert (local.dt.day_of_week < 5).all() and local.dt.hour.between(9, 16).all()
    # classroom: ~all students in one 2-hour session behind one campus /24, few requests each
    cls = df[df["actor"] == "classroom"]
    assert len(hn["classroom"]["accounts"]) == 40
    assert cls["ts"].max() - cls["ts"].min() <= pd.Timedelta(hours=2)
    assert cls["ip"].str.rsplit(".", n=1).str[0].nunique() == 1
    assert cls.groupby("account_id").size().between(2, 6).all()
    assert cls["prompt"].nunique() > 0.8 * len(cls)  # each student words it differently
    # CoT eval harness: the same test set once per checkpoint, over 3 accounts of one org
    ev = df[df["actor"] == "cot_eval_harness"]
    assert len(hn["cot_eval_harness"]["accounts"]) == 3 and ev["org_id"].nunique() == 1
    assert len(ev) == 30 * 4 and ev["prompt"].nunique() == 30
    assert ev["prompt"].str.contains("step by step").all()
    # without org ids: a distinct org per seat / account
    no = _small(hard_negatives=("enterprise_seats", "cot_eval_harness"), enterprise_seats=12,
                enterprise_org_id=False, cot_eval_questions=30)
    ndf = no.requests
    assert ndf[ndf["actor"] == "enterprise_seats"]["org_id"].nunique() == 12
    assert ndf[ndf["actor"] == "cot_eval_harness"]["org_id"].nunique() == 4
    assert no.truth["hard_negatives"]["enterprise_seats"]["org_id_shared"] is False


def test_adversarial_preset_combines_knobs() -> None:
    from analyzer.bench.scenario import build_scenario

    s = build_scenario("adversarial", seed=0)
    t = s.truth
    assert set(t["campaigns"]) == {"cot_math", "rubric_grading", "censorship_rewrite", "agentic_tools",
                                   "censorship_rewrite_b"}
    assert {"enterprise_seats", "classroom", "cot_eval_harness"} <= set(t["hard_negatives"])
    assert 0.03 <= t["campaign_request_share"] <= 0.07
    assert t["knobs"]["wrapper_style"] == "fragments" and t["knobs"]["metadata"] == "mixed"
    rows = _campaign_rows(s)
    assert rows["prompt"].str.contains(CJK).any() and not rows["prompt"].str.contains(CJK).all()
    again = build_scenario("adversarial", seed=0)
    pd.testing.assert_frame_equal(s.requests, again.requests)


def test_ban_day_replaces_half_of_each_pool_with_fresh_accounts() -> None:
    s = _small(ban_day=3)
    base = _small()
    df, start = s.requests, s.requests["ts"].min().normalize()
    day = (df["ts"] - start).dt.days
    for name, t in s.truth["campaigns"].items():
        repl = t["replacement_accounts"]
        assert len(repl) == len(t["banned_accounts"]) == round(0.5 * len(base.truth["campaigns"][name]["accounts"]))
        assert set(repl) <= set(t["accounts"]) and set(repl.values()) == set(t["banned_accounts"])
        assert set(t["banned_accounts"]) <= set(base.truth["campaigns"][name]["accounts"])
        # a banned account sends nothing from the ban day on; its replacement only from then, on its own key
        assert not (df["account_id"].isin(t["banned_accounts"]) & (day >= 3)).any()
        mine = df[df["account_id"].isin(list(repl))]
        assert len(mine) and (day[mine.index] >= 3).all()
        assert not set(mine["api_key_id"]) & set(df.loc[df["account_id"].isin(t["banned_accounts"]), "api_key_id"])
    # the same traffic, only re-attributed: rows, times and prompts are those of the build without bans
    assert len(df) == len(base.requests)
    assert (df["prompt"].to_numpy() == base.requests["prompt"].to_numpy()).all()
    with pytest.raises(ValueError, match="ban_day"):
        _small(ban_day=0)


def test_a_sharded_scenario_is_written_shard_by_shard_with_one_truth_and_resumes(tmp_path: Path) -> None:
    """The incident preset's way of writing (issue 14): one build per shard, ids never shared between shards, the
    operators' proxies the same in every shard, one merged truth; an interrupted generation resumes and gives the
    same bytes."""
    from analyzer.bench.scenario import PRESETS, build_scenario, write_sharded_scenario

    assert PRESETS["incident"]["shards"] > 1
    with pytest.raises(ValueError, match="shards"):
        build_scenario("incident", seed=0)
    said: list[str] = []
    logs, truth_path = write_sharded_scenario("sample", 3, tmp_path, said.append, shards=2)
    files = sorted(logs.iterdir())
    assert [f.name for f in files] == ["shard-000.jsonl.gz", "shard-001.jsonl.gz"]
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    shards = [pd.read_json(f, lines=True, dtype=False) for f in files]
    accounts = [set(s["account_id"]) for s in shards]
    assert not accounts[0] & accounts[1] and not set(shards[0]["request_id"]) & set(shards[1]["request_id"])
    assert truth["n_requests"] == sum(len(s) for s in shards) and truth["shards"] == 2
    assert sorted(truth["all_accounts"]) == sorted(accounts[0] | accounts[1])
    one = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((tmp_path / "shards").iterdir())]
    for name, camp in truth["campaigns"].items():
        assert set(camp["accounts"]) == set(one[0]["campaigns"][name]["accounts"]) | set(
            one[1]["campaigns"][name]["accounts"])
        # one operator in every shard: the same proxy blocks, not one set per shard
        assert camp["proxy_subnets"] == sorted(one[0]["campaigns"][name]["proxy_subnets"]) == sorted(
            one[1]["campaigns"][name]["proxy_subnets"])
        ips = pd.concat([s.loc[s["account_id"].isin(camp["accounts"]) & s["ip"].notna(), "ip"] for s in shards])
        blocks = {".".join(ip.split(".")[:3]) + ".0/24" for ip in ips}
        assert blocks and blocks <= set(camp["proxy_subnets"])
    # interrupted after shard 0: shard 1 is made again, the same bytes; shard 0 is kept
    before = files[1].read_bytes()
    (tmp_path / "shards" / "shard-001.truth.json").unlink()
    said.clear()
    write_sharded_scenario("sample", 3, tmp_path, said.append, shards=2)
    assert "kept" in said[0] and "kept" not in said[1]
    assert files[1].read_bytes() == before
    assert json.loads(truth_path.read_text(encoding="utf-8")) == truth
    # other knobs in the same folder: the shards are built again, not taken for the earlier ones
    said.clear()
    write_sharded_scenario("sample", 3, tmp_path, said.append, shards=2, n_requests=2500)
    assert not any("kept" in m for m in said) and files[1].read_bytes() != before
