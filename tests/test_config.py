"""One configuration (analyzer/config.py): TOML in and out, precedence, errors, and that its values are used."""

from __future__ import annotations

import ast
import dataclasses
import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer import config as C
from analyzer import signals as sig
from analyzer.campaigns import EvidenceParams, ScoringConfig, find_campaigns
from analyzer.cli import _options, main

ROOT = Path(__file__).resolve().parents[1]


def _changed() -> C.AnalyzerConfig:
    """A configuration with a non-default value of every kind (float, int, str, tuple, weights)."""
    cfg = C.AnalyzerConfig()
    return dataclasses.replace(
        cfg,
        cluster=dataclasses.replace(cfg.cluster, selection="eom", k=21),
        signals=dataclasses.replace(cfg.signals, training_value_high=0.55),
        scoring=dataclasses.replace(cfg.scoring, flag_threshold=0.65, operator_hour_smoothing=(1.0, 4.0, 1.0),
                                    weights={**cfg.scoring.weights, "sync": 2.25}),
        map=dataclasses.replace(cfg.map, jitter=0.125),
    )


@pytest.mark.parametrize("cfg", [C.AnalyzerConfig(), _changed()], ids=["defaults", "changed"])
def test_show_output_reads_back_to_the_same_configuration(cfg, tmp_path):
    text = C.to_toml(cfg, "header line\nsecond line")
    assert C.from_mapping(tomllib.loads(text), "shown") == cfg
    path = tmp_path / "analyzer.toml"
    path.write_text(text)
    assert C.read_file(str(path)) == cfg
    assert C.load_config(str(tmp_path)) == cfg  # picked up from the workspace folder


def test_every_field_is_shown_with_what_it_means():
    text = C.to_toml(C.AnalyzerConfig())
    doc = tomllib.loads(text)
    lines = text.splitlines()
    for name, cls in C.SECTIONS.items():
        helps = C.field_help(cls)
        for f in dataclasses.fields(cls):
            assert helps[f.name], f"[{name}] {f.name} has no help text"
            assert f.name in doc[name], f"[{name}] {f.name} not shown"
            if f.name == "weights":
                continue
            # the line above each value is (the end of) its comment
            at = next(i for i, line in enumerate(lines) if line.startswith(f"{f.name} = ")
                      and i > lines.index(f"[{name}]"))
            assert lines[at - 1].startswith("# "), f"[{name}] {f.name} has no comment above it"
    # every number the score uses: all of ScoringConfig (weights included) and of SignalParams
    assert set(doc["scoring"]) == {f.name for f in dataclasses.fields(ScoringConfig)}
    assert doc["scoring"]["weights"] == ScoringConfig().weights
    assert set(doc["signals"]) == {f.name for f in dataclasses.fields(sig.SignalParams)}
    assert set(doc["evidence"]) == {f.name for f in dataclasses.fields(EvidenceParams)}


def test_partial_files_override_only_what_they_name(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / C.CONFIG_FILE).write_text("[scoring]\nflag_threshold = 0.7\nvalue_full = 1\n[scoring.weights]\nsync = 3\n")
    extra = tmp_path / "extra.toml"
    extra.write_text("[scoring]\nflag_threshold = 0.8\n[signals]\npivot_window_hours = 12\n")
    cfg = C.load_config(str(ws), str(extra))
    assert cfg.scoring.flag_threshold == 0.8  # --config over the workspace file
    assert cfg.scoring.value_full == 1.0 and isinstance(cfg.scoring.value_full, float)  # an integer for a float
    assert cfg.scoring.weights == {**ScoringConfig().weights, "sync": 3.0}  # other weights kept
    assert cfg.signals.pivot_window_hours == 12
    assert cfg.cluster == C.AnalyzerConfig().cluster


@pytest.mark.parametrize("text, words", [
    ("[scoring]\nflag_thresold = 0.7\n", ["flag_thresold", "[scoring]", "did you mean 'flag_threshold'"]),
    ("[scorin]\nflag_threshold = 0.7\n", ["[scorin]", "did you mean 'scoring'"]),
    ("[scoring]\nflag_threshold = \"high\"\n", ["[scoring] flag_threshold", "expected float"]),
    ("[cluster]\nk = 1.5\n", ["[cluster] k", "expected int"]),
    ("[scoring.weights]\nspeed = 1\n", ["weights", "speed"]),
    ("[scoring]\nflag_threshold = \n", ["not valid TOML"]),
    ("flag_threshold = 0.7\n", ["flag_threshold", "section"]),
    ("[scoring]\noperator_hour_smoothing = [1, 2]\n", ["[scoring]", "odd number"]),
])
def test_errors_name_the_file_and_the_key(tmp_path, text, words):
    path = tmp_path / "my-config.toml"
    path.write_text(text)
    with pytest.raises(C.ConfigError) as err:
        C.read_file(str(path))
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_command_line_flags_beat_the_files(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / C.CONFIG_FILE).write_text("[scoring]\nflag_threshold = 0.7\n[cluster]\nmin_cluster_size = 12\n"
                                    "attach_similarity = 0.55\n")
    opts = _options(workspace=str(ws))
    assert opts.scoring.flag_threshold == 0.7 and opts.cluster.min_cluster_size == 12
    opts = _options(workspace=str(ws), flag_threshold=0.3, min_cluster_size=6)
    assert opts.scoring.flag_threshold == 0.3 and opts.cluster.min_cluster_size == 6
    assert opts.cluster.attach_similarity == 0.55  # a cluster flag does not reset the file's other cluster keys


def test_config_show_cli(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / C.CONFIG_FILE).write_text("[scoring]\nflag_threshold = 0.7\n")
    res = CliRunner().invoke(main, ["config", "show", "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    assert C.from_mapping(tomllib.loads(res.output), "shown").scoring.flag_threshold == 0.7
    bad = tmp_path / "bad.toml"
    bad.write_text("[watch]\nsimilarty = 0.9\n")
    res = CliRunner().invoke(main, ["config", "show", "--config", str(bad)])
    assert res.exit_code != 0 and str(bad) in res.output and "similarty" in res.output


def test_bench_takes_a_configuration(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[scoring]\nflag_threshold = 0.6\n")
    res = CliRunner().invoke(main, ["bench", "--quick", "--config", str(good), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert f"config: {good}" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[scoring]\nflag_threshold = \"x\"\n")
    res = CliRunner().invoke(main, ["bench", "--quick", "--config", str(bad), "--dry-run"])
    assert res.exit_code != 0 and str(bad) in res.output and "flag_threshold" in res.output


def test_signal_values_follow_the_configuration():
    p = dataclasses.replace(sig.DEFAULTS, diversity_saturation=0.6, pivot_full_excess=1.0, unreadable_letters=5)
    assert sig.diversity(30, 100) == 1.0
    assert sig.diversity(30, 100, p.diversity_saturation, p.diversity_distinct_saturation) == pytest.approx(0.5)
    mixed = "Solve this problem step by step and give the final answer: " * 3 + "请一步一步思考"
    assert not sig.unreadable(mixed)
    assert sig.unreadable(mixed, p)


def test_scoring_configuration_changes_a_real_result():
    """The hand-made scenario of test_campaigns: its campaign is flagged by default and not once the threshold
    is above its score; a lighter value gate or another sync window changes the score itself."""
    from test_campaigns import CLUSTERS, _scenario_requests

    req = _scenario_requests()
    base = find_campaigns(req, CLUSTERS, ScoringConfig())
    top = base.campaigns.iloc[0]
    assert top["flagged"]
    raised = find_campaigns(req, CLUSTERS, dataclasses.replace(ScoringConfig(), flag_threshold=top["score"] + 0.01))
    assert not raised.campaigns["flagged"].any()
    lighter = find_campaigns(req, CLUSTERS, ScoringConfig(), signals=dataclasses.replace(
        sig.DEFAULTS, full_scaffold_words=40))
    assert lighter.campaigns.iloc[0]["signals"]["templating"] < top["signals"]["templating"]
    assert lighter.campaigns.iloc[0]["score"] < top["score"]
    quiet = find_campaigns(req, CLUSTERS, ScoringConfig(), evidence=dataclasses.replace(EvidenceParams(), examples=1))
    assert quiet.campaigns.iloc[0]["score"] == top["score"]  # evidence cut-offs never change a score


def test_score_stage_reads_the_workspace_file_and_records_it(sample_workspace_copy):
    """A small real run: the sample workspace scored again with a threshold above every score flags nothing;
    the command-line flag beats the file; the run's params hold the effective configuration."""
    from analyzer.workspace import Workspace

    ws_path = str(sample_workspace_copy)
    (sample_workspace_copy / C.CONFIG_FILE).write_text("[scoring]\nflag_threshold = 1.01\n")

    def flagged() -> tuple[int, dict]:
        ws = Workspace(ws_path, read_only=True)
        n = int(ws.db.execute("SELECT count(*) FROM campaigns WHERE flagged").fetchall()[0][0])
        params = json.loads(ws.db.execute("SELECT params FROM runs ORDER BY run_id DESC LIMIT 1").fetchall()[0][0])
        ws.close()
        return n, params

    before, _ = flagged()
    assert before > 0
    res = CliRunner().invoke(main, ["score", "--workspace", ws_path])
    assert res.exit_code == 0, res.output
    n, params = flagged()
    assert n == 0 and params["config"]["scoring"]["flag_threshold"] == 1.01
    res = CliRunner().invoke(main, ["score", "--workspace", ws_path, "--flag-threshold", "0.5"])
    assert res.exit_code == 0, res.output
    assert flagged()[0] == before


def test_changed_cluster_stage_signal_parameters_call_for_a_recluster(sample_workspace_copy):
    from analyzer.pipeline import RunOptions, choose_cluster_path, embedder_for
    from analyzer.workspace import Workspace

    ws = Workspace(str(sample_workspace_copy))
    try:
        opts = RunOptions(progress=False)
        key = embedder_for(opts).key
        assert choose_cluster_path(ws, opts, key) == ("incremental", "")
        score_only = dataclasses.replace(opts, signals=dataclasses.replace(opts.signals, pivot_window_hours=12),
                                         scoring=dataclasses.replace(opts.scoring, flag_threshold=0.9))
        assert choose_cluster_path(ws, score_only, key) == ("incremental", "")
        tv = dataclasses.replace(opts, signals=dataclasses.replace(opts.signals, training_value_low=0.2))
        assert choose_cluster_path(ws, tv, key) == ("full", "parameters changed")
    finally:
        ws.close()


# --- no scoring literal left in code -------------------------------------------------------------------------------
#: Numbers that are structure, not thresholds: none, one or two of a thing, and units of time.
STRUCTURAL = {0, 1, 2, -1, 24, 60, 3600, 1_000_000}
#: Per file, numbers that are not thresholds: the end of the Latin script in Unicode (``0x24F``, a definition),
#: IP version 4, and guards against division by zero.
ALLOWED = {"signals.py": {0x24F, 4, 1e-9}, "campaigns.py": {1e-12}}


def _stray_numbers(path: Path) -> list[tuple[int, object]]:
    """Numeric literals of ``path`` that could be thresholds: outside dataclass field defaults (the
    configuration), :data:`analyzer.campaigns.DEFAULT_WEIGHTS`, f-strings (text formatting), rounding digits,
    hash sizes and square roots."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()

    def skip_all(node: ast.AST) -> None:
        skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign):
                    skip_all(stmt)
        elif isinstance(node, ast.AnnAssign | ast.Assign) and "DEFAULT_WEIGHTS" in ast.unparse(node).split("=")[0]:
            skip_all(node)
        elif isinstance(node, ast.JoinedStr):
            skip_all(node)
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func == "round" and len(node.args) == 2:
                skip_all(node.args[1])
            if func.endswith(".round"):  # rounding digits
                for a in node.args:
                    skip_all(a)
            if func.endswith(".pow") or func.endswith("sqrt"):
                for a in node.args:
                    skip_all(a)
            for kw in node.keywords:
                if kw.arg == "digest_size":
                    skip_all(kw.value)
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and type(node.value) in (int, float) and id(node) not in skip
                and node.value not in STRUCTURAL):
            out.append((node.lineno, node.value))
    return sorted(out)


@pytest.mark.parametrize("name", ["signals.py", "campaigns.py"])
def test_no_stray_scoring_literal(name):
    stray = [(line, v) for line, v in _stray_numbers(ROOT / "analyzer" / name) if v not in ALLOWED[name]]
    assert not stray, f"numbers in analyzer/{name} that are not configuration fields: {stray}"


def test_the_literal_guard_catches_a_threshold(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("from dataclasses import dataclass\n\n@dataclass\nclass P:\n    x: float = 0.3\n\n"
                    "def f(v):\n    return f'{v:.2f}' if v >= 0.35 else round(v, 4)\n")
    assert _stray_numbers(path) == [(8, 0.35)]
