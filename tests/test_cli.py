"""The command line: complete help, clear errors, strict mode, a refused second writer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from analyzer.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_of_every_command_has_help(name):
    cmd = main.commands[name]
    res = CliRunner().invoke(main, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert cmd.help and cmd.help.strip()
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help and param.help.strip(), f"{name} {param.opts} has no help text"
            assert param.opts[-1] in res.output


def test_top_level_help_lists_every_command():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for name in main.commands:
        assert name in res.output


def test_export_on_a_missing_workspace_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["export", "--workspace", str(tmp_path / "nope")])
    assert res.exit_code != 0
    assert "not an analyzer workspace" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "nope").exists()  # nothing created by a read


def test_run_on_missing_logs_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["run", str(tmp_path / "none-*.jsonl"), "-w", str(tmp_path / "ws"), "-q"])
    assert res.exit_code != 0 and "matches no log file" in res.output


def _log_with_bad_third_row(tmp_path: Path) -> Path:
    log = tmp_path / "logs.jsonl"
    rows = [{"request_id": f"r{i}", "account_id": "a", "timestamp": "2026-01-05T00:00:00Z", "prompt": f"p {i}"}
            for i in range(4)]
    rows[2]["timestamp"] = "yesterday-ish"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return log


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_strict_stops_at_the_first_bad_row_naming_file_line_field(command, tmp_path):
    log = _log_with_bad_third_row(tmp_path)
    res = CliRunner().invoke(main, [command, str(log), "-w", str(tmp_path / "ws"), "--strict", "-q"])
    assert res.exit_code != 0
    assert f"{log}:3: field 'timestamp'" in res.output and "yesterday-ish" in res.output
    from analyzer.workspace import Workspace

    with Workspace(str(tmp_path / "ws")) as ws:
        assert ws.db.execute("SELECT status FROM runs").fetchone()[0].startswith("failed")
    # without --strict the same file goes through, the bad row quarantined
    res = CliRunner().invoke(main, ["ingest", str(log), "-w", str(tmp_path / "ws"), "-q"])
    assert res.exit_code == 0 and '"rejected": 1' in res.output


HOLDER = """
import sys
from analyzer.workspace import Workspace
ws = Workspace(sys.argv[1], create=True)
ws.acquire()
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_second_writer_is_refused_while_a_run_holds_the_workspace(tmp_path):
    ws = tmp_path / "ws"
    log = _log_with_bad_third_row(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for args in (["run", str(log), "-w", str(ws), "-q"], ["ingest", str(log), "-w", str(ws), "-q"],
                     ["export", "-w", str(ws)]):
            res = CliRunner().invoke(main, args)
            assert res.exit_code != 0, args
            assert "in use" in res.output and f"pid {holder.pid}" in res.output, res.output
            assert "Traceback" not in res.output
    finally:
        holder.stdin.close()
        holder.wait(30)
    # once the holder is gone (it released the database and the lock), the same command works
    res = CliRunner().invoke(main, ["ingest", str(log), "-w", str(ws), "-q"])
    assert res.exit_code == 0, res.output


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    ws = tmp_path / "ws"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "ready"
    holder.kill()
    holder.wait(30)
    assert (ws / ".lock").exists()  # the file stays; the flock died with the process
    res = CliRunner().invoke(main, ["ingest", str(_log_with_bad_third_row(tmp_path)), "-w", str(ws), "-q"])
    assert res.exit_code == 0, res.output


def test_later_runs_keep_the_workspace_tier_unless_told(tmp_path):
    from analyzer.cli import _use_workspace_tier
    from analyzer.embed import DEFAULT_TIER
    from analyzer.pipeline import RunOptions, workspace_tier
    from analyzer.workspace import Workspace

    ws = Workspace(str(tmp_path / "ws"), create=True)
    assert workspace_tier(ws) is None  # new workspace: the default applies
    opts = RunOptions(tier="whatever")
    _use_workspace_tier(ws, opts, None)
    assert opts.tier == DEFAULT_TIER
    with ws.writing():
        rid = ws.start_run("run", {"options": {"tier": "accurate", "model": "minilm"}}, {})
        ws.finish_run(rid, {})
        ws.start_run("export", {"format": "json"}, {})  # a run without options does not reset it
    assert workspace_tier(ws) == "accurate"
    _use_workspace_tier(ws, opts, None)
    assert opts.tier == "accurate"
    explicit = RunOptions(tier="fast")  # --tier fast: _options set it, and it is kept
    _use_workspace_tier(ws, explicit, "fast")
    assert explicit.tier == "fast"
    ws.close()
