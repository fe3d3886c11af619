"""The Python API (analyzer.analyze / open_workspace): the README's example as written, a DataFrame source,
the options shared with ``analyzer run``, and exact ids (with control and bidi characters) through to the
exports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import analyzer
from analyzer import cli
from analyzer.api import DATAFRAME_SOURCE, run_options

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE_LOG = ROOT / "data" / "sample" / "requests.jsonl.gz"
SAMPLE_TRUTH = ROOT / "data" / "sample" / "truth.json"
# Odd but valid account ids: a right-to-left override and a C1 control (NEL) survive ingest (only C0 controls
# are stripped) and must reach every export exact (JSON) or visibly escaped (terminal, Markdown, CSV).
RLO_ID = "acct_\u202eevil_gpj.exe"
NEL_ID = "acct_\x85nel"


def readme_section_code(heading: str) -> list[str]:
    """The ```python blocks of the README section ``## heading`` (up to the next ``## ``)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def truth() -> dict:
    return json.loads(SAMPLE_TRUTH.read_text())


@pytest.fixture
def in_sample_checkout(tmp_path, monkeypatch) -> Path:
    """A working folder that looks like the repository root to the README (data/sample there), so that what
    the example writes (workspace/notebook) lands in tmp_path."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sample").symlink_to(SAMPLE_LOG.parent, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_import_analyzer_does_not_load_the_pipeline():
    code = ("import sys, analyzer; assert callable(analyzer.analyze) and callable(analyzer.open_workspace); "
            "heavy = {'pandas', 'numpy', 'duckdb', 'faiss', 'analyzer.pipeline'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    with pytest.raises(AttributeError):
        analyzer.no_such_name  # noqa: B018


def test_run_options_are_the_command_options():
    """The command builds its RunOptions with run_options: the same parameters give the same run."""
    from_cli = cli._options(model="minilm", tier="accurate", min_cluster_size=7, min_samples=3, knn=20,
                            selection="eom", flag_threshold=0.6, weights='{"focus": 3, "sync": 0}', seed=4,
                            no_map=True, quiet=True)
    from_api = run_options(tier="accurate", min_cluster_size=7, min_samples=3, knn=20, selection="eom",
                           flag_threshold=0.6, weights={"focus": 3, "sync": 0}, seed=4, make_map=False,
                           progress=False)
    assert from_cli == from_api
    assert from_api.scoring.weights["focus"] == 3.0 and from_api.cluster.min_cluster_size == 7
    assert run_options().scoring.weights != from_api.scoring.weights  # the defaults were not changed in place
    with pytest.raises(ValueError, match="unknown signals"):
        run_options(weights={"no_such_signal": 1})
    with pytest.raises(ValueError, match="unknown tier"):
        run_options(tier="slow")
    res = CliRunner().invoke(cli.main, ["run", str(SAMPLE_LOG), "-w", "unused", "--weights", '{"nope": 1}'])
    assert res.exit_code == 2 and "unknown signals" in res.output


def test_analyze_takes_every_option_of_the_run_command():
    import inspect

    renamed = {"logs": "source", "no_map": "make_map", "quiet": "progress"}  # flags the other way round
    options = {renamed.get(p.name, p.name) for p in cli.run.params}
    assert options <= set(inspect.signature(analyzer.analyze).parameters)


def test_a_dataframe_is_ingested_as_its_records_in_a_file_would_be(tmp_path):
    """write_frame (Parquet, or JSON lines for columns pyarrow cannot type) feeds the ingest the same records as
    a JSONL file of the frame: same accepted rows, same rejections."""
    from analyzer.api import write_frame
    from analyzer.ingest import read_logs

    records = [
        {"account_id": "a1", "timestamp": "2026-01-05T10:00:00Z", "prompt": "Think step by step: 2+2?", "ip": "10.0.0.1"},
        {"account_id": RLO_ID, "timestamp": "2026-01-05T10:01:00Z",
         "messages": [{"role": "system", "content": "You grade."}, {"role": "user", "content": "Grade this."}]},
        {"account_id": "a3", "timestamp": None, "prompt": "no time"},  # rejected: no timestamp
        {"account_id": "a4", "timestamp": "2026-01-05T10:02:00Z", "prompt": ""},  # rejected: empty prompt
    ]
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def ingested(path) -> tuple[list, list]:
        (batch,) = list(read_logs([str(path)]))
        cols = ["request_id", "account_id", "ts", "prompt", "system_prompt", "ip"]
        return (batch.requests[cols].values.tolist(), [(r.line, r.field) for r in batch.rejected])

    expected = ingested(jsonl)
    assert len(expected[0]) == 2 and len(expected[1]) == 2
    frame = pd.DataFrame(records)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    (tmp_path / "typed").mkdir()
    (tmp_path / "mixed").mkdir()
    typed = write_frame(frame, str(tmp_path / "typed"))
    assert typed.endswith(".parquet")
    assert ingested(typed) == expected
    mixed = frame.assign(account_id=[1, RLO_ID, "a3", "a4"])  # an int among strings: pyarrow cannot type it
    fallback = write_frame(mixed, str(tmp_path / "mixed"))
    assert fallback.endswith(".jsonl")
    rows, rejected = ingested(fallback)
    assert rejected == expected[1] and [r[1] for r in rows] == ["1", RLO_ID]
    with pytest.raises(TypeError, match="DataFrame"):
        analyzer.analyze(42)


def test_readme_python_api_examples_run_as_written(in_sample_checkout, sample_workspace):
    blocks = readme_section_code("Python API")
    assert len(blocks) == 2, "the README's Python API section has a file example and a DataFrame example"
    ns: dict = {}
    exec(compile(blocks[0], "README.md[Python API 1]", "exec"), ns)  # noqa: S102 - our own README
    result = ns["result"]
    assert Path(result.workspace) == in_sample_checkout / "workspace" / "notebook"
    camps = truth()["campaigns"]
    flagged_accounts = set().union(*result.flagged["accounts"])
    assert len(result.flagged) >= 3
    assert flagged_accounts <= set().union(*(c["accounts"] for c in camps.values()))  # no organic account flagged
    assert set(camps["cot_math"]["accounts"]) <= flagged_accounts
    accounts = result.accounts.set_index("account_id")
    assert accounts.loc[list(flagged_accounts), "flagged"].all()
    assert (accounts.loc[list(flagged_accounts), "score"] > 0).all()
    assert len(result.accounts) == truth()["n_accounts"] and result.stats["ingest"]["accepted"] == 2986
    # The same campaigns, members and account scores as the pipeline run of the shared fixture (conftest.py);
    # scores agree to 1e-3 (floating-point summation order differs between runs in the 4th decimal).
    pipeline_run = analyzer.open_workspace(sample_workspace)
    cols = ["campaign_id", "score", "flagged", "n_accounts", "accounts"]
    pd.testing.assert_frame_equal(result.campaigns[cols], pipeline_run.campaigns[cols], check_exact=False, atol=1e-3)
    acc = ["account_id", "score", "campaign_id", "flagged", "n_requests"]
    by_id = pipeline_run.accounts.set_index("account_id").loc[result.accounts["account_id"]].reset_index()
    pd.testing.assert_frame_equal(result.accounts[acc], by_id[acc], check_exact=False, atol=1e-3)

    exec(compile(blocks[1], "README.md[Python API 2]", "exec"), ns)  # noqa: S102
    frame_result = ns["result"]
    assert frame_result.rejected[["source", "line", "field"]].values.tolist() == [[DATAFRAME_SOURCE, 1, "timestamp"]]
    assert frame_result.stats["ingest"] == {"read": 2986, "accepted": 2985, "rejected": 1, "duplicates": 0}
    assert len(frame_result.flagged) >= 3 and set(frame_result.campaigns.columns) == set(result.campaigns.columns)
    tmp_ws = frame_result.workspace
    assert os.path.isdir(tmp_ws)
    frame_result.cleanup()
    assert not os.path.exists(tmp_ws)


def odd_frame() -> tuple[pd.DataFrame, list[str]]:
    """The sample without operator C's campaign, and operator B's censorship_rewrite accounts renamed so that
    two carry an RLO (U+202E) and a NEL (U+0085) in their ids."""
    t = truth()
    frame = pd.read_json(SAMPLE_LOG, lines=True, dtype={"account_id": str})
    frame = frame[~frame["account_id"].isin(t["campaigns"]["agentic_tools"]["accounts"])].reset_index(drop=True)
    pool = sorted(t["campaigns"]["censorship_rewrite"]["accounts"])
    renamed = {pool[0]: RLO_ID, pool[1]: NEL_ID}
    frame["account_id"] = frame["account_id"].replace(renamed)
    return frame, [renamed.get(a, a) for a in pool]


def test_dataframe_campaign_is_flagged_with_exact_odd_ids_in_every_output(tmp_path):
    frame, members = odd_frame()
    frame.loc[3, "account_id"] = None  # one bad row (no account): quarantined, named by its row
    result = analyzer.analyze(frame, tmp_path / "ws", progress=False)
    assert result.stats["ingest"] == {"read": len(frame), "accepted": len(frame) - 1, "rejected": 1, "duplicates": 0}
    assert result.rejected[["source", "line", "field"]].values.tolist() == [[DATAFRAME_SOURCE, 4, "account_id"]]
    assert os.listdir(result.workspace) and not os.path.exists(os.path.join(result.workspace, "frames"))

    # The campaign is found and flagged, with the exact member ids (odd ones included) and account scores.
    hit = result.flagged.loc[result.flagged["accounts"].map(lambda a: RLO_ID in a).astype(bool)]
    assert len(hit) == 1
    camp = hit.iloc[0]
    assert set(members) <= set(camp["accounts"]) and NEL_ID in camp["accounts"]
    assert camp["score"] >= 0.5 and camp["n_accounts"] == len(camp["accounts"])
    accounts = result.accounts.set_index("account_id")
    for acct in (RLO_ID, NEL_ID):
        assert accounts.loc[acct, "flagged"] and accounts.loc[acct, "campaign_id"] == camp["campaign_id"]
        assert accounts.loc[acct, "score"] > 0.5
    campaigns = set().union(*(c["accounts"] for c in truth()["campaigns"].values()))
    assert not accounts.loc[~accounts.index.isin(campaigns | {RLO_ID, NEL_ID}), "flagged"].any()  # nothing organic

    # JSON export: exact ids after parsing, no raw control or bidi character in the bytes.
    text = result.export("json")
    assert text.isascii() and "\x7f" not in text
    doc = json.loads(text)
    (jc,) = [c for c in doc["campaigns"] if c["id"] == camp["campaign_id"]]
    assert jc["accounts"] == list(camp["accounts"]) and RLO_ID in jc["accounts"] and NEL_ID in jc["accounts"]
    assert jc["flagged"] is True and jc["score"] == pytest.approx(camp["score"])

    # Human-facing renderings show visible escapes, never the raw characters.
    res = CliRunner().invoke(cli.main, ["export", "-w", result.workspace, "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["campaigns"][0]["accounts"] == doc["campaigns"][0]["accounts"]
    for fmt in ("markdown", "csv"):
        shown = result.export(fmt)
        assert "\u202e" not in shown and "\x85" not in shown, fmt
        assert "acct_\\u202eevil_gpj.exe" in shown and "acct_\\u0085nel" in shown, fmt

    # The same frame again into the same workspace: every row, the bad one included, is a duplicate (as a file
    # read twice), and the campaign keeps its id.
    again = analyzer.analyze(frame, tmp_path / "ws", progress=False)
    assert again.stats["ingest"] == {"read": len(frame), "accepted": 0, "rejected": 0, "duplicates": len(frame)}
    assert camp["campaign_id"] in set(again.flagged["campaign_id"])


def test_odd_characters_reach_the_terminal_and_the_quarantine_file_only_as_escapes(tmp_path):
    """A file name and a bad row holding U+202E and U+0085: the strict error on the terminal shows escapes, the
    quarantine file is ASCII JSON whose parsed values are exact."""
    log = tmp_path / "day\u202egpj.jsonl"
    good = {"account_id": RLO_ID, "timestamp": "2026-01-05T10:00:00Z", "prompt": "Think step by step."}
    bad = {"account_id": NEL_ID, "timestamp": "\u202eyesterday\x85", "prompt": "x"}
    log.write_text(json.dumps(good) + "\n" + json.dumps(bad, ensure_ascii=False) + "\n", encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(cli.main, ["ingest", str(log), "-w", str(tmp_path / "ws"), "--strict", "-q"])
    assert res.exit_code == 1 and "day\\u202egpj.jsonl:2: field 'timestamp'" in res.output
    assert "\u202e" not in res.output and "\x85" not in res.output
    res = runner.invoke(cli.main, ["ingest", str(log), "-w", str(tmp_path / "ws"), "-q"])
    assert res.exit_code == 0 and '"rejected": 1' in res.output
    (qfile,) = (tmp_path / "ws" / "quarantine").glob("rejected-*.jsonl")
    text = qfile.read_text(encoding="utf-8")
    assert text.isascii()
    (row,) = [json.loads(line) for line in text.splitlines()]
    assert row["source"] == str(log) and json.loads(row["raw"]) == bad
