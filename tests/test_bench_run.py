"""``analyzer bench`` plumbing: preset and suite names, skipped systems, benign-only rows, the curve's points,
tables and plot fallback, and the CLI's parsing (through ``--dry-run``, so nothing heavy runs)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from analyzer.bench import corpora, run
from analyzer.bench.scenario import PRESETS, Scenario, resolve_knobs
from analyzer.cli import main

# ----------------------------------------------------------------------------------------- presets and systems


def test_resolve_presets_reads_the_table_it_is_given() -> None:
    known = {"quick": {}, "sample": {}, "adv-quiet": {}, "adv-new": {}, "adversarial": {}}
    names, notes = run.resolve_presets(["quick", "sample", "quick"], None, known)
    assert names == ["quick", "sample"]
    assert notes == []
    names, notes = run.resolve_presets(["quick"], "adversarial", known)
    # listed adv presets that exist, then the other adv* names; the missing listed ones get a message each
    assert names == ["quick", "adv-quiet", "adversarial", "adv-new"]
    assert len(notes) == len(run.SUITES["adversarial"]) - 2
    assert any("'adv-paraphrase' is not in PRESETS" in n for n in notes)
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        run.resolve_presets(["nope"], None, known)


def test_resolve_presets_defaults_to_the_live_presets_dict(monkeypatch) -> None:
    monkeypatch.setitem(PRESETS, "adv-test-only", dict(PRESETS["sample"]))
    names, _ = run.resolve_presets(["adv-test-only"], "adversarial")
    assert names[0] == "adv-test-only"


def test_missing_extras_skip_their_systems_with_the_install_hint(monkeypatch) -> None:
    monkeypatch.setattr(run, "_module_available", lambda name: name not in {"bertopic", "umap"})
    systems, notes = run.runnable_systems(["analyzer", "bertopic", "volume", "bertopic_e2e"])
    assert systems == ["analyzer", "volume"]
    assert notes[0] == "bertopic skipped (bertopic, umap not installed): pip install 'analyzer[dev]'"
    assert notes[1].startswith("bertopic_e2e skipped")


def test_module_available_on_real_modules() -> None:
    assert run._module_available("json")
    assert not run._module_available("no_such_module_for_bench_tests")
    assert not run._module_available("no_such_parent.child")


def test_tier_list() -> None:
    assert run._tier_list("both") == ["fast", "accurate"]
    assert run._tier_list("accurate") == ["accurate"]
    assert run._tier_list(["accurate", "fast", "fast"]) == ["fast", "accurate"]
    with pytest.raises(ValueError):
        run._tier_list("turbo")


# ----------------------------------------------------------------------------------------- benign only


def _scenario() -> Scenario:
    actors = ["cot_math", "cot_math", "organic", "homework", "organic", "agentic_tools"]
    accounts = ["c1", "c2", "c1", "h1", "o1", "c3"]  # c1 is a hydra account: campaign and organic traffic
    df = pd.DataFrame({"account_id": accounts, "actor": actors, "prompt": ["p1", "p1", "p2", "p3", "p4", "p5"]})
    truth = {
        "campaigns": {"cot_math": {"accounts": ["c1", "c2"]}, "agentic_tools": {"accounts": ["c3"]}},
        "hard_negatives": {"homework": {"accounts": ["h1"]}},
        "all_accounts": ["c1", "c2", "c3", "h1", "o1"], "n_requests": 6, "campaign_request_share": 0.5,
        "pivot": {"share_on_new_model_first_24h": {"agentic_tools": 0.9, "organic": 0.1}},
    }
    return Scenario(requests=df, truth=truth)


def test_drop_campaigns_keeps_hydra_ordinary_traffic_and_recounts_truth() -> None:
    sc = run.drop_campaigns(_scenario())
    assert sc.requests["actor"].tolist() == ["organic", "homework", "organic"]
    assert sc.truth["campaigns"] == {}
    assert sc.truth["all_accounts"] == ["c1", "h1", "o1"]
    assert (sc.truth["n_requests"], sc.truth["n_unique_prompts"], sc.truth["campaign_request_share"]) == (3, 3, 0.0)
    assert sc.truth["pivot"] == {"share_on_new_model_first_24h": {"organic": 0.1}}
    assert sc.truth["hard_negatives"] == {"homework": {"accounts": ["h1"]}}


def test_build_benign_falls_back_to_dropping_campaigns_when_the_generator_refuses(monkeypatch) -> None:
    calls = []

    def fake_build(preset, seed=0, **knobs):  # stands in for a generator that cannot build zero campaigns
        calls.append(knobs)
        if knobs.get("campaigns") == ():
            raise ValueError("empty task pool")
        return _scenario()

    monkeypatch.setattr(run, "build_scenario", fake_build)
    said: list[str] = []
    sc = run.build_benign("quick", 0, {"n_requests": 500}, log=said.append)
    assert calls == [{"n_requests": 500, "campaigns": (), "second_operator": None}, {"n_requests": 500}]
    assert "refused campaigns=() (ValueError: empty task pool)" in said[0]
    assert sc.truth["campaigns"] == {}


@pytest.mark.skipif(not corpora.available(), reason="shared corpora not present")
def test_the_generator_builds_a_campaign_free_scenario() -> None:
    sc = run.build_benign("sample", 0, log=pytest.fail)
    assert sc.truth["campaigns"] == {}
    assert sc.truth["campaign_request_share"] == 0.0
    assert not sc.requests["actor"].isin(list(resolve_knobs("sample")["campaigns"])).any()


@pytest.mark.skipif(not corpora.available(), reason="shared corpora not present")
def test_a_benign_only_adversarial_log_has_no_second_operator() -> None:
    """The ``adversarial`` preset's second censorship pool is a campaign: benign-only traffic leaves it out too."""
    sc = run.build_benign("adversarial", 0, log=pytest.fail)
    assert sc.truth["campaigns"] == {}
    assert sc.truth["campaign_request_share"] == 0.0


def _result(flagged, candidates, marks, scores=None) -> run.SystemResult:
    return run.SystemResult(flagged, scores or {}, 1.0, 10.0, {}, candidates, marks)


def test_benign_row_and_pooled_summary() -> None:
    truth = {"campaigns": {}, "all_accounts": [f"o{i}" for i in range(100)]}
    r0 = run.benign_row("analyzer", "quick", 0, _result([["o1", "o2"]], [(0.9, ["o1", "o2"]), (0.2, ["o3"])],
                                                           [True, False]), truth, "fast")
    assert (r0["candidates_scored"], r0["candidates_flagged"], r0["fpr"]) == (2, 1, 0.5)
    assert (r0["benign_accounts"], r0["benign_accounts_flagged"], r0["highest_benign_score"]) == (100, 2, 0.9)
    r1 = run.benign_row("analyzer", "quick", 1, _result([], [(0.1, ["o5"])] * 8, [False] * 8), truth, "fast")
    vol = run.benign_row("volume", "quick", 0, _result([["o7"]], [], []), truth)
    assert vol["candidates_scored"] is None and vol["fpr"] is None and vol["candidates_flagged"] == 1
    summary = run.benign_summary([r0, r1, vol])
    ours = next(s for s in summary if s["system"] == "analyzer")
    assert (ours["candidates_scored"], ours["candidates_flagged"], ours["fpr"]) == (10, 1, 0.1)
    assert ours["fpr_upper"] == pytest.approx(run.metrics.wilson_interval(1, 10)[1])
    assert (ours["benign_accounts"], ours["benign_accounts_flagged"]) == (200, 2)
    assert ours["seeds"] == [0, 1]
    text = run.benign_summary_text(summary)
    assert "1 of 10 benign candidates flagged, FPR 10.00%" in text
    table = run.benign_table([r0, r1, vol], summary)
    assert "| **analyzer** | fast | quick | pooled 0,1 | 10 | 1 | 0.1000 |" in table


def test_score_row_carries_tier_and_smallest_found() -> None:
    truth = {"campaigns": {"big": {"accounts": [f"b{i}" for i in range(20)]},
                           "small": {"accounts": [f"s{i}" for i in range(5)]}},
             "all_accounts": [f"b{i}" for i in range(20)] + [f"s{i}" for i in range(5)] + ["o1"]}
    res = _result([[f"b{i}" for i in range(20)]], [(0.9, [f"b{i}" for i in range(20)]), (0.4, ["o1"])],
                  [True, False])
    row = run.score_row("analyzer", "quick", 0, res, truth, "accurate")
    assert row["tier"] == "accurate"
    assert row["found"] == {"big": True, "small": False}
    assert row["smallest_campaign_found"] == 20
    assert "| analyzer | accurate | quick | 0 | 0.50 | 20 |" in run.table([row])


# ----------------------------------------------------------------------------------------- curve


def test_curve_points_skip_knobs_the_generator_does_not_know() -> None:
    grid = (("campaign_accounts", (5, 10)), ("no_such_knob", (1,)), ("template_variation", (0,)))
    points, notes = run.curve_points("quick", grid)
    assert points == [("campaign_accounts", 5), ("campaign_accounts", 10), ("template_variation", 0)]
    assert notes == ["curve: knob 'no_such_knob' is not known to the scenario generator yet, skipped"]
    points, _ = run.curve_points("quick")
    assert (("wrapper_style", "fragments") in points) == ("wrapper_style" in resolve_knobs("quick"))
    assert ("campaign_share", 0.01) in points


def test_point_knobs() -> None:
    truth = {"campaigns": {"a": {"accounts": ["x", "y"], "n_requests": 40}, "b": {"accounts": ["z"], "n_requests": 10}}}
    assert run.point_knobs("campaign_share", 0.02, truth) == {"campaign_share": 0.02, "requests_per_account": None}
    # the baseline's mean per-account rate is held: (20 + 10) / 2
    assert run.point_knobs("campaign_accounts", 5, truth) == {"campaign_accounts": 5, "requests_per_account": 15.0}
    assert run.point_knobs("template_variation", 3, truth) == {"template_variation": 3}


def _curve_rows() -> list[dict]:
    truth = {"campaigns": {"a": {"accounts": ["a1", "a2"], "n_requests": 20}},
             "all_accounts": ["a1", "a2", "o1", "o2"], "campaign_request_share": 0.1}
    rows = []
    for knob, value, flagged in (("default", None, [["a1", "a2"]]), ("campaign_accounts", 5, [["a1", "a2"]]),
                                 ("campaign_accounts", 10, []), ("template_variation", 3, [["o1", "o2"]])):
        res = _result(flagged, [(0.8, ["a1", "a2"]), (0.3, ["o1", "o2"])], [bool(flagged), False])
        rows.append(run.curve_point("quick", 0, knob, value, {}, res, truth, "fast", 2.0))
    return rows


def test_curve_point_and_table() -> None:
    rows = _curve_rows()
    assert rows[0]["campaign_recall"] == 1.0 and rows[2]["campaign_recall"] == 0.0
    assert rows[0]["highest_benign_score"] == 0.3 and rows[0]["lowest_true_score"] == 0.8
    assert rows[3]["false_flagged_campaigns"] == 1
    assert rows[0]["requests_per_account"] == 10.0
    table = run.curve_table(rows)
    assert table.splitlines()[2].startswith("| default | - | fast | 0.100 | 2 | 10.0 | 1.00 | 2 | 0.300 | 0.800 | 0 |")
    assert len(table.splitlines()) == 2 + len(rows)


def test_curve_plot_is_skipped_with_a_message_without_plotting_libraries(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(run, "_module_available", lambda name: False)
    said: list[str] = []
    assert run.save_curve_plot(_curve_rows(), str(tmp_path / "c.png"), log=said.append) is None
    assert "curve plot skipped" in said[0]
    assert not (tmp_path / "c.png").exists()
    assert run.curve_plot_path("out/curve.json") == "out/curve.png"


def test_curve_plotly_figure_has_a_panel_per_knob() -> None:
    pytest.importorskip("plotly")
    fig = run.curve_figure_plotly(_curve_rows())
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["campaign_accounts", "template_variation"]
    assert len(fig.data) == 2 * 3  # recall, highest benign, lowest true per panel
    assert list(fig.data[0].y) == [1.0, 0.0]


# ----------------------------------------------------------------------------------------- CLI (dry run)


def _dry(*args: str):
    res = CliRunner().invoke(main, ["bench", *args, "--dry-run"])
    plan = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    return res, plan


def test_cli_several_presets_benign_only() -> None:
    res, plan = _dry("--preset", "quick", "--preset", "sample", "--benign-only", "--seed", "0", "--seed", "2")
    assert res.exit_code == 0, res.output
    assert plan["mode"] == "benign-only"
    assert plan["presets"] == "quick, sample"
    assert plan["seeds"] == "0, 2"
    assert plan["systems"] == "analyzer"


def test_cli_curve_defaults_to_quick_and_puts_the_plot_next_to_out(tmp_path) -> None:
    res, plan = _dry("--curve", "--tier", "both", "--out", str(tmp_path / "curve.json"),
                     "--knob", "n_requests=8000")
    assert res.exit_code == 0, res.output
    assert (plan["mode"], plan["presets"], plan["tiers"]) == ("curve", "quick", "fast, accurate")
    assert plan["plot"] == str(tmp_path / "curve.png")
    assert json.loads(plan["knobs"]) == {"n_requests": 8000}


def test_cli_accepts_a_preset_added_to_the_table_at_run_time(monkeypatch) -> None:
    monkeypatch.setitem(PRESETS, "adv-test-only", dict(PRESETS["sample"]))
    res, plan = _dry("--preset", "adv-test-only")
    assert res.exit_code == 0, res.output
    assert plan["presets"] == "adv-test-only"
    res, plan = _dry("--suite", "adversarial")
    assert res.exit_code == 0, res.output
    assert "adv-test-only" in plan["presets"].split(", ")


def test_cli_errors() -> None:
    res, _ = _dry("--preset", "nope")
    assert res.exit_code == 2 and "unknown preset(s) ['nope']" in res.output
    res, _ = _dry("--benign-only", "--curve")
    assert res.exit_code == 2 and "choose one" in res.output
    res, _ = _dry("--suite", "nope")
    assert res.exit_code == 2


def test_cli_skips_systems_whose_extra_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(run, "_module_available", lambda name: name != "bertopic")
    res, plan = _dry("--preset", "sample")
    assert res.exit_code == 0, res.output
    assert plan["systems"] == "analyzer, volume"
    assert "bertopic skipped (bertopic not installed): pip install 'analyzer[dev]'" in res.stderr


# ----------------------------------------------------------------------------------------- reading the analysis
def test_run_analyzer_and_embeddings_read_the_workspace(sample_workspace, tmp_path, monkeypatch) -> None:
    """What the bench reads back from an analysed workspace (through the workspace's own queries)."""
    import shutil

    from analyzer import pipeline
    from analyzer.export import load_campaigns
    from analyzer.workspace import Workspace

    shutil.copytree(sample_workspace, tmp_path / "ws-analyzer")
    monkeypatch.setattr(pipeline, "run_all", lambda *a, **k: {"stages_s": {}, "embed": {"reused_from_cache": 0}})
    got = run.run_analyzer("unused.jsonl", str(tmp_path))
    with Workspace(str(tmp_path / "ws-analyzer"), read_only=True) as ws:
        camps = load_campaigns(ws)
        n_requests = ws.request_counts()["n"].sum()
        n_accounts = len(ws.table("accounts"))
    assert sorted(map(sorted, got.flagged)) == sorted(sorted(c["accounts"]) for c in camps if c["flagged"])
    assert len(got.candidates) == len(camps) and sum(got.candidates_flagged) == len(got.flagged) > 0
    assert len(got.scores) == n_accounts
    hashes, vectors, texts, req = run._embeddings_from(str(tmp_path))
    assert len(hashes) == len(vectors) == len(texts) > 0 and all(isinstance(t, str) for t in texts)
    assert len(req) == n_requests and list(req.columns) == ["account_id", "prompt_hash"]


@pytest.mark.skipif(not corpora.available(), reason="shared corpora not present")
def test_a_sharded_preset_runs_the_analyzer_on_its_shards_folder(tmp_path) -> None:
    """``analyzer bench`` on a sharded scenario (the incident preset's way): the analyzer reads the folder of
    shards and is scored against the merged truth; the single-file baselines are skipped with a message."""
    said: list[str] = []
    rows = run.run_bench("sample", seeds=[1], systems=("analyzer", "volume"), isolate=False, workdir=str(tmp_path),
                         knobs={"shards": 2}, log=said.append)
    assert [r["system"] for r in rows] == ["analyzer"]
    assert any("volume skipped" in m for m in said) and any("in 2 shards" in m for m in said)
    assert rows[0]["campaign_recall"] == 1.0 and rows[0]["false_flagged_campaigns"] == 0
