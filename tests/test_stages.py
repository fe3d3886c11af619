"""The declared pipeline (:mod:`analyzer.catalog`) and its stage classes (:mod:`analyzer.stages`): one way, one
writer per dataset, enforced at run time, documented as declared, and swappable in configuration."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import robust_logs as rl
from click.testing import CliRunner

from analyzer import catalog, pipeline, stages, store
from analyzer.cli import main as cli
from analyzer.config import ConfigError
from analyzer.pipeline import RunOptions
from analyzer.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def test_the_declared_pipeline_runs_one_way():
    made: set[str] = set()
    everything = {d for s in catalog.PIPELINE for d in s.outputs}
    for spec in catalog.PIPELINE:
        upstream_or_raw = made | set(catalog.RAW)
        assert set(spec.inputs) <= upstream_or_raw, (spec.name, set(spec.inputs) - upstream_or_raw)
        # what a stage reads as the previous run left it is some stage's output, never a raw input
        assert set(spec.previous) <= everything, spec.name
        made |= set(spec.outputs)
    assert set(catalog.MEMORY) <= made


def test_every_dataset_has_exactly_one_writer_and_every_table_is_declared(tmp_path):
    writers = Counter(d for s in catalog.PIPELINE for d in s.outputs)
    assert [d for d, n in writers.items() if n != 1] == []
    assert not set(writers) & set(catalog.RAW)
    assert set(catalog.TABLES) <= set(writers)
    with Workspace(str(tmp_path / "ws"), create=True) as ws:
        tables = set(ws.db.execute("SELECT table_name FROM information_schema.tables").df()["table_name"])
    # every table of the workspace is a stage's output, a raw input from analysts, or the runs record
    assert tables == set(catalog.TABLES) | (set(catalog.RAW) - {"logs"}) | {"runs"}


def test_every_stage_run_by_the_pipeline_has_a_default_class_implementing_the_interface():
    names = [s.name for s in catalog.PIPELINE if s.name != "export"]
    assert list(stages.DEFAULTS) == names
    for name, path in stages.DEFAULTS.items():
        cls = stages.load_class(name, path)
        assert issubclass(cls, stages.Stage) and cls.name == name
        assert isinstance(cls(RunOptions()), stages.StageLike)
        assert cls.__doc__ and "Attributes" in cls.__doc__


def test_the_writer_refuses_a_table_its_stage_does_not_declare(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    clusters = pd.DataFrame({"cluster_id": [1], "kind": ["topic"], "n_accounts": [3]})
    ws.replace_tables("label", {"clusters": clusters})
    # the score stage may not rewrite the label stage's clusters, nor the cluster stage clear campaigns
    with pytest.raises(catalog.UndeclaredOutput, match="'score' may not write clusters"):
        ws.write_tables("score", replace={"clusters": clusters.assign(n_accounts=9),
                                          "campaigns": ws.empty_rows("campaigns")})
    with pytest.raises(catalog.UndeclaredOutput, match="'cluster' may not write campaigns"):
        ws.write_tables("cluster", replace={"campaigns": ws.empty_rows("campaigns")})
    with pytest.raises(KeyError, match="no stage 'nobody'"):
        ws.write_tables("nobody", replace={"clusters": clusters})
    assert ws.table("clusters")["n_accounts"].tolist() == [3]  # refused before anything was written
    ctx = stages.Context(ws, RunOptions(), stage="label")
    with pytest.raises(catalog.UndeclaredOutput):
        ctx.write(replace={"prompt_clusters": pd.DataFrame()})
    with pytest.raises(catalog.UndeclaredOutput):
        ctx.put("vectors", None)
    assert ctx.pending == []
    ws.close()


def test_a_clustering_makes_the_campaign_tables_stale_but_not_the_history_or_the_map():
    """The map's positions depend on the vectors only: kept, and extended by the next map stage."""
    assert catalog.stale_after(["cluster", "label"]) == ["campaigns", "campaign_accounts", "accounts",
                                                         "cluster_campaigns"]
    assert catalog.stale_after(["score"]) == []
    assert catalog.downstream_of(["ingest"])[:3] == ["embed", "index", "cluster"]


def test_the_design_document_shows_the_declared_stages_and_flow():
    doc = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    assert catalog.stage_table() in doc
    assert "```mermaid\n" + catalog.mermaid() + "\n```" in doc
    for spec in catalog.PIPELINE:  # every stage in the one-line summary, in order
        assert f"`{spec.name}`" in doc.split("\n", 3)[2], spec.name


def test_a_class_that_cannot_be_a_stage_is_refused_naming_the_config_key():
    with pytest.raises(ConfigError, match=r"\[stages\] cluster = 'stage_plugins:NotAStage': NotAStage does not"):
        stages.load_class("cluster", "stage_plugins:NotAStage")
    with pytest.raises(ConfigError, match=r"\[stages\] label = 'stage_plugins:Missing': cannot be loaded"):
        stages.load_class("label", "stage_plugins:Missing")
    with pytest.raises(ConfigError, match=r"\[stages\] score = 'nope': expected 'package.module:ClassName'"):
        stages.load_class("score", "nope")


def _cli(args: list) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _table(ws: Path, sql: str) -> pd.DataFrame:
    with Workspace(str(ws), read_only=True) as w:
        return w.db.execute(sql).df()


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory) -> tuple[Path, Path]:
    """A workspace analysed from the mini log (map included), and that log."""
    folder = tmp_path_factory.mktemp("stages")
    log = rl.write_clean(folder / "clean.jsonl")
    res = _cli(["run", log, "--workspace", folder / "ws", "--quiet", "--seed", "0"])
    assert res.exit_code == 0, res.output
    return folder / "ws", log


def test_a_clustering_clears_what_it_makes_stale_and_a_score_brings_it_back(small_ws, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(small_ws[0], ws)
    campaigns = "SELECT campaign_id, score, n_accounts FROM campaigns ORDER BY campaign_id"
    before = _table(ws, campaigns)
    assert len(before) and len(_table(ws, "SELECT * FROM prompt_map")) and len(_table(ws, "SELECT * FROM cluster_campaigns"))
    res = _cli(["cluster", "--workspace", ws, "--quiet"])
    assert res.exit_code == 0, res.output
    for table in ("campaigns", "campaign_accounts", "accounts", "cluster_campaigns"):
        assert _table(ws, f"SELECT count(*) AS n FROM {table}")["n"][0] == 0, table
    # the clustering and its labels are there, the score stage's memory of the last campaigns is kept, and so is
    # the map (positions depend on the vectors only)
    assert len(_table(ws, "SELECT * FROM prompt_map"))
    assert _table(ws, "SELECT count(*) AS n FROM clusters WHERE n_accounts > 0")["n"][0] > 0
    assert _table(ws, "SELECT count(*) AS n FROM campaign_members")["n"][0] > 0
    res = _cli(["score", "--workspace", ws])
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(_table(ws, campaigns), before)


def test_a_custom_stage_class_from_a_config_file_is_used_by_analyzer_run(small_ws, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(small_ws[0], ws)
    cfg = tmp_path / "custom.toml"
    cfg.write_text('[stages]\ncluster = "stage_plugins:OneTopic"\n', encoding="utf-8")
    shown = _cli(["config", "show", "--config", cfg])
    assert 'cluster = "stage_plugins:OneTopic"' in shown.output and 'label = "analyzer.stages:Label"' in shown.output
    res = _cli(["run", small_ws[1], "--workspace", ws, "--config", cfg, "--quiet", "--no-map"])
    assert res.exit_code == 0, res.output
    # another clusterer: the stored clustering is not updated but made again, with every prompt in one topic
    assert "full re-cluster (parameters changed)" in res.output
    topics = _table(ws, "SELECT DISTINCT cluster_id FROM prompt_clusters")["cluster_id"].tolist()
    assert topics == [0]
    assert _table(ws, "SELECT count(*) AS n FROM clusters WHERE kind = 'topic'")["n"][0] == 1
    stats = json.loads(_table(ws, "SELECT stats FROM runs ORDER BY run_id DESC LIMIT 1")["stats"][0])
    assert stats["cluster"]["stages"]["cluster"] == "stage_plugins:OneTopic"


def test_a_label_subclass_swaps_keywords_and_templates(small_ws, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(small_ws[0], ws)
    cfg = tmp_path / "labels.toml"
    cfg.write_text('[stages]\nlabel = "stage_plugins:LongestWords"\n', encoding="utf-8")
    res = _cli(["run", small_ws[1], "--workspace", ws, "--config", cfg, "--quiet", "--no-map"])
    assert res.exit_code == 0, res.output
    with Workspace(str(ws), read_only=True) as w:
        rows = store.cluster_rows(w)
    rows = rows[rows["kind"].isin(["topic", "template"])]  # scaffold families keep their recurring sentences
    assert len(rows)
    for kw, template in zip(rows["keywords"], rows["template"], strict=True):
        assert len(kw) <= 3 and all(len(a) >= len(b) for a, b in zip(kw, kw[1:], strict=False))
        assert template.startswith("FIRST: ")


def test_the_runner_lets_go_of_the_vectors_and_label_work_once_no_later_stage_reads_them(small_ws, tmp_path):
    import shutil

    import stage_plugins

    ws = tmp_path / "ws"
    shutil.copytree(small_ws[0], ws)
    cfg = tmp_path / "memory.toml"
    cfg.write_text('[stages]\nscore = "stage_plugins:MemoryAtScore"\n', encoding="utf-8")
    stage_plugins.MemoryAtScore.seen.clear()
    stage_plugins.MemoryAtScore.alive.clear()
    # a stage's peak counts the resident memory of this process's children; a run this small starts none, but
    # children left by earlier tests in this process (loky's resource and semaphore trackers live as long as
    # the process that used a pool) are counted in every stage while the process's own peak leaves them out
    children_before = pipeline.children_resident_mb()
    res = _cli(["run", small_ws[1], "--workspace", ws, "--config", cfg, "--quiet", "--no-map", "--recluster"])
    assert res.exit_code == 0, res.output
    # the index and cluster stages made both in this run; the score stage reads neither
    assert {"vectors", "label_work"} <= set(catalog.MEMORY)
    assert stage_plugins.MemoryAtScore.seen == [[]]
    # nor the stage objects that ran (the cluster stage's grouping holds every text and vector): the caller's
    # dict of stages hands them over to the runner, which lets go of each once it has run
    assert stage_plugins.MemoryAtScore.alive == [[]]
    # and each stage's peak memory is recorded beside its time, none above the process's peak
    stats = json.loads(_table(ws, "SELECT stats FROM runs ORDER BY run_id DESC LIMIT 1")["stats"][0])
    assert list(stats["stage_peak_mb"]) == ["ingest", "embed", "index", "cluster", "label", "score"]
    assert all(0 < mb <= stats["peak_rss_mb"] + children_before + 1 for mb in stats["stage_peak_mb"].values())
    assert "stage peak memory MiB: ingest " in res.output


def test_analyzer_run_refuses_a_configured_class_that_is_not_a_stage_before_it_starts(tmp_path):
    log = rl.write_clean(tmp_path / "clean.jsonl")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[stages]\ncluster = "stage_plugins:NotAStage"\n', encoding="utf-8")
    res = _cli(["run", log, "--workspace", tmp_path / "ws", "--config", cfg, "--quiet"])
    assert res.exit_code != 0
    assert "[stages] cluster = 'stage_plugins:NotAStage'" in res.output and "does not implement" in res.output
    assert _table(tmp_path / "ws", "SELECT count(*) AS n FROM runs")["n"][0] == 0  # nothing was started


def test_an_older_workspace_keeps_its_cluster_campaigns(tmp_path):
    """A workspace made when the score stage wrote ``clusters.campaign_id``: read-only readers see the campaign
    in the old column, and a writer opening it moves the column to ``cluster_campaigns``."""
    import duckdb

    from analyzer import store

    path = tmp_path / "ws"
    Workspace(str(path), create=True).close()
    con = duckdb.connect(str(path / "analyzer.duckdb"))
    con.execute("ALTER TABLE clusters ADD COLUMN campaign_id VARCHAR")
    con.execute("INSERT INTO clusters (cluster_id, kind, label, campaign_id) VALUES (1, 'topic', 'a', 'c-1'), "
                "(2, 'topic', 'b', NULL)")
    con.close()
    def campaigns(ws: Workspace) -> list:
        rows = store.cluster_rows(ws)
        return [(int(c), None if pd.isna(k) else k) for c, k in zip(rows["cluster_id"], rows["campaign_id"], strict=True)]

    with Workspace(str(path), read_only=True) as ws:
        assert campaigns(ws) == [(1, "c-1"), (2, None)]
    with Workspace(str(path)) as ws:
        assert "campaign_id" not in ws.table("clusters").columns
        assert ws.table("cluster_campaigns").values.tolist() == [[1, "c-1"]]
        assert campaigns(ws) == [(1, "c-1"), (2, None)]
        assert ws.campaign_cluster_ids().tolist() == [1]


def test_the_label_stage_makes_the_same_rows_in_worker_processes(small_ws, tmp_path, monkeypatch):
    import os
    import shutil
    import threading
    from dataclasses import replace

    import stage_plugins

    from analyzer import pipeline

    ws_dir = tmp_path / "ws"
    shutil.copytree(small_ws[0], ws_dir)
    opts = RunOptions(progress=False, seed=0)
    with Workspace(str(ws_dir)) as ws:
        work = pipeline.cluster(ws, opts).work
        here = pipeline.label_rows(ws, work, replace(opts, text_workers=1))
        # the mini log is far under the size at which workers pay: lower the bar, and cut the templates into
        # many small tasks, so that both workers take some
        monkeypatch.setattr(pipeline, "TEXT_PARALLEL_MIN_TEXTS", 0)
        monkeypatch.setattr(pipeline, "LABEL_TASK_TEXTS", 5)
        calls = []
        real = pipeline.process_map

        def counted(fn, tasks, workers):
            calls.append(len(tasks))
            return real(fn, tasks, workers)

        monkeypatch.setattr(pipeline, "process_map", counted)
        there = pipeline.label_rows(ws, work, replace(opts, text_workers=2))
        assert calls and calls[0] > 2
        pd.testing.assert_frame_equal(here, there)
        assert len(here) and set(here["kind"]) >= {"topic", "scaffold"}

        # the parts of a swapped label class run in the workers too; one that cannot travel runs here
        made = pipeline.label_parts(
            [pipeline.label_plan(j.hashes, j.labels, j.req_counts, j.texts, opts) for j in work.jobs],
            stage_plugins.WhereMade(opts), replace(opts, text_workers=2))
        pids = {t.text for m in made for t in m.templates}
        assert pids and f"pid {os.getpid()}" not in pids
        stuck = stage_plugins.WhereMade(opts)
        stuck.lock = threading.Lock()
        made = pipeline.label_parts(
            [pipeline.label_plan(j.hashes, j.labels, j.req_counts, j.texts, opts) for j in work.jobs],
            stuck, replace(opts, text_workers=2))
        assert {t.text for m in made for t in m.templates} == {f"pid {os.getpid()}"}


def test_a_sample_that_recurs_across_label_jobs_is_made_into_a_template_once(small_ws, tmp_path):
    import shutil
    from dataclasses import replace

    made_for: list[tuple[str, ...]] = []

    class Counted(pipeline.DefaultLabelParts):
        def template(self, texts, seed):
            made_for.append(tuple(texts))
            return super().template(texts, seed)

    opts = replace(RunOptions(progress=False, seed=0), text_workers=1)
    shutil.copytree(small_ws[0], tmp_path / "ws")
    with Workspace(str(tmp_path / "ws")) as ws:
        jobs = pipeline.cluster(ws, opts).work.jobs
    plans = [pipeline.label_plan(j.hashes, j.labels, j.req_counts, j.texts, opts) for j in jobs]
    twice = plans + plans  # every sample of the second half recurs
    made = pipeline.label_parts(twice, Counted(), opts)
    one_by_one = [pipeline._made_here(p, pipeline.DefaultLabelParts(), opts.seed) for p in twice]
    assert [(m.keywords, m.templates) for m in made] == [(m.keywords, m.templates) for m in one_by_one]
    n_units = sum(len(p.cluster_ids) for p in plans)
    assert n_units > 3
    assert len(made_for) == len(set(made_for)) <= n_units


def test_a_child_not_yet_running_a_program_of_its_own_is_not_counted_twice():
    """Between a worker's fork and its exec the child's pages are this process's: counting its resident size
    would add this process's memory a second time to the stage's peak."""
    import os
    import time

    import numpy as np

    held = np.ones(100 * 2**20, dtype=np.float32)  # 400 MiB of this process's own, resident
    before = pipeline.children_resident_mb()
    pid = os.fork()
    if pid == 0:  # the child: this process's pages, no exec
        time.sleep(20)
        os._exit(0)
    try:
        time.sleep(0.5)
        assert pipeline.resident_mb() >= 400
        assert pipeline.children_resident_mb() < before + 50
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    del held


def test_stage_peaks_count_the_memory_of_worker_processes():
    import subprocess
    import sys
    import types

    hold = "import sys, time; b = b'x' * (300 * 2**20); print('ok', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ok"
        peaks = stages.StagePeaks(types.SimpleNamespace(stage="label"))
        peaks.sample()
        assert pipeline.children_resident_mb() >= 290
        assert peaks.peaks_["label"] >= pipeline.resident_mb() + 290
    finally:
        child.kill()
        child.wait()


def test_the_stage_meter_lists_children_at_most_every_relist_seconds():
    """The meter reads the known children's memory on every sample and lists the children anew only every
    ``relist_s`` seconds (the listing reads a file per thread of this process): a worker started since is
    counted from the next listing."""
    import subprocess
    import sys

    meter = pipeline.ChildrenResident(relist_s=3600)
    before = meter()
    hold = "import sys, time; b = b'x' * (300 * 2**20); print('ok', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ok"
        assert meter() < before + 50  # not listed yet
        meter.relist_s = 0
        assert meter() >= before + 290
    finally:
        child.kill()
        child.wait()
