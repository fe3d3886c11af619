"""Scoring of the replay benchmark (analyzer.bench.replay) on hand-made days: no pipeline runs."""

from __future__ import annotations

import pandas as pd

from analyzer.bench.replay import DayResult, equivalence, jaccard, score_replay
from analyzer.bench.scenario import Scenario

TRUTH = {
    "campaigns": {
        "camp": {"accounts": ["a1", "a2", "a3", "a4", "r1", "r2"], "replacement_accounts": {"r1": "a3", "r2": "a4"},
                 "banned_accounts": ["a3", "a4"]},
    },
    "hard_negatives": {},
    "all_accounts": ["a1", "a2", "a3", "a4", "r1", "r2", "o1", "o2"],
}


def _scenario() -> Scenario:
    rows = []
    t0 = pd.Timestamp("2026-01-05", tz="UTC")
    for d in range(4):
        for a in ("a1", "a2") + (("a3", "a4") if d < 2 else ("r1", "r2")):
            rows += [{"account_id": a, "ts": t0 + pd.Timedelta(days=d, hours=h), "actor": "camp"} for h in (1, 2, 3)]
        rows += [{"account_id": o, "ts": t0 + pd.Timedelta(days=d, hours=5), "actor": "organic"} for o in ("o1", "o2")]
    return Scenario(requests=pd.DataFrame(rows), truth=TRUTH)


def _day(d: int, campaigns: list[tuple[str, list[str], bool]]) -> DayResult:
    return DayResult(day=d, seconds=1.0 + d, cpu_seconds=1.0, path="incremental", trigger=None, stages={},
                     campaigns=[{"id": i, "accounts": a, "flagged": f, "score": 0.9 if f else 0.1}
                                for i, a, f in campaigns])


def test_score_replay_detection_day_id_changes_and_replacements() -> None:
    days = [
        _day(0, [("c-x", ["a1", "a2", "a3", "a4"], False)]),
        _day(1, [("c-x", ["a1", "a2", "a3", "a4"], True)]),
        _day(2, [("c-y", ["a1", "a2", "a3", "a4", "r1"], True)]),
        _day(3, [("c-y", ["a1", "a2", "a3", "a4", "r1"], True), ("c-o", ["o1", "o2"], False)]),
    ]
    res = score_replay(days, _scenario())
    c = res["campaigns"]["camp"]
    assert c["first_active_day"] == 0 and c["first_flagged_day"] == 1 and c["detected_on_day_of_activity"] == 2
    assert c["ids_per_day"] == [[], ["c-x"], ["c-y"], ["c-y"]] and c["id_changes_after_detection"] == 1
    r = res["replacements"]
    assert r["n"] == 2 and r["flagged_at_end"] == 0.5
    # r1 was first flagged on day 2, its first day: three of its requests had been seen
    assert r["requests_seen_when_first_flagged"]["max"] == 3.0
    assert res["final"]["campaign_recall"] == 1.0 and res["final"]["false_flags"] == 0
    assert res["last_over_second_day"] == 2.0


def test_equivalence_compares_matched_account_sets() -> None:
    a = _day(3, [("c-1", ["a1", "a2", "a3", "a4", "r1", "r2"], True)])
    b = _day(3, [("c-2", ["a1", "a2", "a3", "a4", "r1"], True), ("c-3", ["o1"], False)])
    eq = equivalence(a, b, TRUTH)
    assert eq["matched_jaccard"]["camp"] == round(jaccard(set(a.campaigns[0]["accounts"]),
                                                          set(b.campaigns[0]["accounts"])), 4) == 0.8333
    assert eq["a"]["campaign_recall"] == eq["b"]["campaign_recall"] == 1.0


def test_bench_replay_command_runs_the_replay_day_by_day(tmp_path) -> None:
    import json

    import pytest
    from click.testing import CliRunner

    from analyzer.bench import corpora
    from analyzer.cli import main

    res = CliRunner().invoke(main, ["bench", "--replay", "--knob", "wrapper_style=fragments"])
    assert res.exit_code != 0 and "ban_day and days only" in res.output
    if not corpora.available():
        pytest.skip("benchmark corpora not available (../shared/data)")
    out = tmp_path / "replay.json"
    res = CliRunner().invoke(main, ["bench", "--replay", "--preset", "sample", "--knob", "days=3",
                                    "--knob", "ban_day=2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    inc = doc["modes"]["incremental"]
    assert len(doc["days"]["incremental"]) == 3 and list(doc["modes"]) == ["incremental"]
    assert inc["paths"][0] == "full (no clustering)"
    # the campaigns active in three days are found, and each is reported by its day of activity
    active = [c for c in inc["campaigns"].values() if c["first_active_day"] is not None]
    assert active and all(c["detected_on_day_of_activity"] is not None for c in active)
    assert set(inc["final"]) == {"campaign_recall", "false_flags", "account_auc"}


def test_process_mode_runs_one_analyzer_process_per_day_with_the_in_process_results(tmp_path) -> None:
    import pytest

    from analyzer.bench import corpora
    from analyzer.bench.replay import run_replay

    if not corpora.available():
        pytest.skip("benchmark corpora not available (../shared/data)")
    with pytest.raises(ValueError, match="no replay mode 'daily'"):
        run_replay("sample", ban_day=-1, days=2, modes=("daily",), workdir=str(tmp_path / "x"), log=lambda *_: None)
    doc = run_replay("sample", seed=0, ban_day=-1, days=2, late=None, modes=("incremental", "process"),
                     workdir=str(tmp_path), log=lambda *_: None)
    inc, proc = doc["days"]["incremental"], doc["days"]["process"]
    assert [d["path"] for d in proc] == [d["path"] for d in inc] == ["full", "incremental"]
    # the stages a process ran are read back from its run record, the map among them (the default run has one)
    assert "map" in proc[1]["stages"] and "map" not in inc[1]["stages"]
    assert all(d["seconds"] > 0 and d["cpu_seconds"] > 0 for d in proc)
    for a, b in zip(inc, proc, strict=True):  # the same campaigns, whichever way the day was run
        assert sorted(map(sorted, (c["accounts"] for c in a["flagged"]))) == \
            sorted(map(sorted, (c["accounts"] for c in b["flagged"])))


def test_thin_log_keeps_a_seeded_sample_of_the_requests_in_their_order(tmp_path) -> None:
    import gzip
    import json

    from analyzer.bench.replay import thin_log

    src = tmp_path / "day.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        fh.writelines(f'{{"account_id": "a{i}", "prompt": "p{i}"}}\n' for i in range(100))
    assert thin_log(str(src), str(tmp_path / "a.jsonl.gz"), 30) == 30
    assert thin_log(str(src), str(tmp_path / "b.jsonl.gz"), 30) == 30
    kept = gzip.open(tmp_path / "a.jsonl.gz", "rt").read().splitlines()
    order = [int(json.loads(line)["prompt"][1:]) for line in kept]
    assert order == sorted(order) and len(set(order)) == 30  # distinct requests, in the log's order
    assert kept == gzip.open(tmp_path / "b.jsonl.gz", "rt").read().splitlines()  # the same with the same seed
    assert thin_log(str(src), str(tmp_path / "c.jsonl.gz"), 500) == 100  # a smaller log is kept whole


def test_retimed_takes_the_ratio_of_the_medians() -> None:
    from analyzer.bench.replay import retimed

    rt = retimed([(4.0, 3.0), (9.0, 3.5), (5.0, 3.2)], [(6.0, 4.0), (7.5, 4.8), (30.0, 5.0)])
    assert rt["median_second_day"] == [5.0, 3.2] and rt["median_last_day"] == [7.5, 4.8]
    assert rt["last_over_second_day"] == 1.5 and rt["last_over_second_day_cpu"] == 1.5


def test_replay_runs_the_second_and_last_day_again_side_by_side_with_the_same_result(tmp_path) -> None:
    import pytest

    from analyzer.bench import corpora
    from analyzer.bench.replay import run_replay

    if not corpora.available():
        pytest.skip("benchmark corpora not available (../shared/data)")
    doc = run_replay("sample", seed=0, ban_day=-1, days=3, late=None, modes=("incremental",),
                     workdir=str(tmp_path), log=lambda *_: None, retime=2)
    res = doc["modes"]["incremental"]
    rt = res["retimed"]
    assert len(rt["second_day"]) == len(rt["last_day"]) == 2 and rt["same_campaigns"] is True
    assert rt["last_over_second_day"] > 0
    # the last day at the second day's volume, run beside them
    th = rt["last_day_thinned"]
    assert th["requests"] == min(res["requests_per_day"][1], res["requests_per_day"][2])
    assert len(th["times"]) == 2 and th["over_second_day"] > 0
    # the day's request counts and the cost per request, beside the plain ratio
    assert len(res["requests_per_day"]) == 3 and sum(res["requests_per_day"]) > 0
    assert res["last_over_second_day_per_request"] == pytest.approx(
        res["last_over_second_day"] * res["requests_per_day"][1] / res["requests_per_day"][2], abs=1e-3)
    # the copies the re-runs started from are kept beside the workspace; the re-runs' own are removed
    assert (tmp_path / "ws-incremental-before-1").is_dir() and (tmp_path / "ws-incremental-before-2").is_dir()
    assert not (tmp_path / "ws-incremental-again").exists()
