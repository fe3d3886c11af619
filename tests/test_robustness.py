"""Robustness: corrupted logs, killed runs, determinism, tampered workspaces, no unpickling anywhere.

The end-to-end tests use ~180 requests (~145 unique prompts) cut from ``data/sample`` (see
``tests/robust_logs.py``) and the real model, except the SIGKILL tests: they kill runs at every named
checkpoint (:mod:`analyzer.checkpoints`) through :class:`robust_logs.CliServer`, with a cheap hashing embedder,
so that some thirty killed runs and their re-runs stay fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import robust_logs as rl
from click.testing import CliRunner

from analyzer.checkpoints import CHECKPOINTS
from analyzer.cli import main as cli
from analyzer.workspace import Workspace, WorkspaceCorrupt

ROOT = Path(__file__).resolve().parents[1]
RUN_ARGS = ["--no-map", "--quiet", "--seed", "0"]


def _run_cli(args: list[str]):
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    return res


def _export(ws: Path, fmt: str = "json") -> str:
    res = CliRunner().invoke(cli, ["export", "--workspace", str(ws), "--format", fmt], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


def _summary_counts(output: str) -> dict[str, int]:
    m = re.search(r"ingest: read ([\d,]+), accepted ([\d,]+), rejected ([\d,]+), duplicates ([\d,]+)", output)
    assert m, output
    return dict(zip(("read", "accepted", "rejected", "duplicates"), (int(g.replace(",", "")) for g in m.groups()),
                    strict=True))


@pytest.fixture(scope="module")
def clean_log(tmp_path_factory) -> Path:
    return rl.write_clean(tmp_path_factory.mktemp("logs") / "clean.jsonl")


@pytest.fixture(scope="module")
def clean_ws(clean_log, tmp_path_factory) -> Path:
    """A workspace analysed from the clean log only (the reference for the other runs)."""
    ws = tmp_path_factory.mktemp("clean") / "ws"
    res = _run_cli(["run", str(clean_log), "--workspace", str(ws), *RUN_ARGS])
    assert res.exit_code == 0, res.output
    return ws


# --- 1. corrupted logs ------------------------------------------------------------------------------------------
def test_corrupted_logs_give_the_clean_result(clean_ws, tmp_path):
    paths, info = rl.write_corrupted(tmp_path / "logs")
    ws = tmp_path / "ws"
    res = _run_cli(["run", *map(str, paths), "--workspace", str(ws), *RUN_ARGS])
    assert res.exit_code == 0, res.output
    counts = _summary_counts(res.output)
    assert counts["accepted"] + counts["rejected"] + counts["duplicates"] == counts["read"]
    assert counts["accepted"] == info["clean"]
    assert counts["rejected"] == info["bad"]
    assert counts["duplicates"] >= info["dups"]  # plus whatever the truncated gzip yielded before the cut

    # The quarantine file holds every bad row, with its reason.
    qfile = ws / "quarantine" / "rejected-1.jsonl"
    assert f"rejected rows (with reasons): {qfile}" in res.output
    rows = [json.loads(line) for line in qfile.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == info["bad"]
    assert all(r["reason"] and r["field"] and r["line"] >= 1 for r in rows)
    assert {Path(r["source"]).name for r in rows} == {"main.jsonl", "more.csv", "cut.jsonl.gz"}
    fields = {r["field"] for r in rows}
    assert {"<line>", "<file>", "account_id", "timestamp", "prompt"} <= fields
    reasons = " | ".join(r["reason"] for r in rows)
    for needle in ("invalid JSON", "invalid UTF-8", "empty prompt", "out of range",
                   "unparseable timestamp", "malformed CSV", "truncated gzip"):
        assert needle in reasons
    with Workspace(str(ws)) as w:
        assert w.db.execute("SELECT count(*) FROM rejected").fetchone()[0] == info["bad"]
        assert w.db.execute("SELECT count(*) FROM requests").fetchone()[0] == info["clean"]
        n_extra = w.db.execute("SELECT count(*) FROM requests WHERE extra LIKE '%zz_unknown_column%'").fetchone()[0]
        assert n_extra > 0  # unknown columns are kept, not a reason to reject
        _assert_long_prompt_analysed(w)

    doc = json.loads(_export(ws))
    assert doc["ingest"] == counts
    ref = json.loads(_export(clean_ws))
    assert ref["campaigns"], "the reference run should find candidate campaigns"
    assert doc["campaigns"] == ref["campaigns"]
    assert _export(ws, "csv") == _export(clean_ws, "csv")


def _assert_long_prompt_analysed(w: Workspace) -> None:
    """The 120k-character padded campaign prompt of the clean log is stored whole, embedded and clustered."""
    line = json.loads(rl.mini_lines()[-1])
    assert line["request_id"] == rl.LONG_REQUEST_ID and len(line["prompt"]) > 100_000
    row = w.db.execute(
        """SELECT p.prompt_hash, p.text, p.n_chars FROM requests r JOIN prompts p USING (prompt_hash)
           WHERE r.request_id = ?""", [rl.LONG_REQUEST_ID]).fetchone()  # fmt: skip
    assert row is not None and row[1] == line["prompt"] and row[2] == len(line["prompt"])
    assert w.db.execute("SELECT count(*) FROM embedded WHERE prompt_hash = ?", [row[0]]).fetchone()[0] == 1
    assert w.db.execute("SELECT count(*) FROM prompt_clusters WHERE prompt_hash = ?", [row[0]]).fetchone()[0] == 1


def test_long_padded_prompt_is_clustered_with_its_unpadded_twin(clean_ws):
    """The padded request (a campaign prompt after 120k characters of other text) lands in the topic cluster of
    the same prompt sent unpadded: the embedding reads its tail, where the instruction is."""
    long_prompt = json.loads(rl.mini_lines()[-1])["prompt"]
    with Workspace(str(clean_ws)) as w:
        _assert_long_prompt_analysed(w)
        rows = w.db.execute(
            """SELECT p.text, pc.cluster_id FROM prompts p JOIN prompt_clusters pc USING (prompt_hash)""").fetchall()
    clusters = {text: c for text, c in rows}
    twin = next(t for t in clusters if t != long_prompt and long_prompt.endswith("\n\n" + t))
    assert clusters[twin] >= 0 and clusters[long_prompt] == clusters[twin]


# --- 3. determinism ------------------------------------------------------------------------------------------------
def test_same_logs_options_and_seed_give_identical_results(clean_ws, clean_log, tmp_path):
    ws = tmp_path / "ws"
    res = _run_cli(["run", str(clean_log), "--workspace", str(ws), *RUN_ARGS])
    assert res.exit_code == 0, res.output
    a, b = json.loads(_export(clean_ws)), json.loads(_export(ws))
    assert [(c["id"], c["score"], c["accounts"]) for c in a["campaigns"]] == [
        (c["id"], c["score"], c["accounts"]) for c in b["campaigns"]]
    assert a["campaigns"] == b["campaigns"] and a["ingest"] == b["ingest"]
    assert _export(clean_ws, "csv") == _export(ws, "csv")
    assert _export(clean_ws, "markdown").split("\n", 3)[3] == _export(ws, "markdown").split("\n", 3)[3]


# --- 2. crash safety: a run killed at each checkpoint, then run again ---------------------------------------------
#: Fields of the JSON export compared after a killed run and its re-run: everything except ``generated_at`` and
#: ``workspace`` (differ by construction) and ``ingest.read`` / ``ingest.duplicates`` (every re-read of the log
#: counts its rows again, as duplicates). So: ``schema_version``, ``ingest.accepted``, ``ingest.rejected`` and
#: the whole ``campaigns`` list (ids, ranks, scores, flags, labels, keywords, templates, accounts, clusters,
#: signals, evidence, examples, triage). The CSV export is compared except its ``campaign_transition`` column
#: (the latest run's transition: ``new`` in the fresh workspace, ``continued`` where the killed run had already
#: scored). Run numbers differ by construction too (the killed workspace has one run more): a campaign's
#: ``history`` and ``first_run`` / ``first_flagged_run`` are compared through :func:`_history_states`.
RUN_FIELDS = ("history", "first_run", "first_flagged_run")
RUN_ARGS_KILL = ["--no-map", "--quiet", "--seed", "0", "--embed-chunk", "48"]  # 3 shards on day 1, 1 on day 2

#: The points each scenario's command is killed at (every checkpoint its uninterrupted run reaches, for the two
#: daily runs), in the order they are reached; ``NAME:N`` is the N-th hit of ``NAME``. ``day1``: a first run
#: into a new workspace (full clustering); ``day2``: the next day's run (incremental: new prompts assigned to
#: the stored clustering); ``map``: ``analyzer map``; ``watch``: ``analyzer watch add`` replacing an entry;
#: ``export``: ``analyzer export --out``.
CRASH_POINTS = {
    "day1": ("run.started", "ingest.batch_inserted", "ingest.batch_committed:2", "ingest.quarantine_written",
             "embed.shard_file_written", "embed.shard_recorded:2", "index.file_written", "index.written",
             "cluster.before_commit",
             "cluster.committed", "score.before_commit", "score.committed", "run.finished"),
    "day2": ("run.started", "ingest.batch_inserted", "ingest.batch_committed", "ingest.quarantine_written",
             "embed.shard_file_written", "embed.shard_recorded", "index.file_written", "index.written",
             "assign.before_commit",
             "assign.committed", "score.before_commit", "score.committed", "run.finished"),
    "map": ("map.before_commit", "map.committed"),
    "watch": ("watch.before_commit", "watch.committed"),
    "export": ("export.before_rename",),
}
CRASH_CASES = [(scenario, point) for scenario, points in CRASH_POINTS.items() for point in points]
#: What a process killed at a point before its commit must have left as it was before the command started.
UNCHANGED_AT = {"ingest.batch_inserted": ("n_requests",), "embed.shard_file_written": ("n_embedded",),
                "cluster.before_commit": ("prompt_clusters",), "assign.before_commit": ("prompt_clusters",),
                "score.before_commit": ("history", "identity", "campaign_members"),
                "map.before_commit": ("prompt_map",), "watch.before_commit": ("watchlist", "watch_vectors")}
RESULT_TABLES = ("prompt_clusters", "system_clusters", "clusters", "campaign_accounts", "accounts", "prompt_map",
                 "campaign_members")


def _rows(frame: pd.DataFrame, drop: tuple[str, ...] = ()) -> list[str]:
    """A table as its sorted rows, each a JSON object (missing values ``null``, arrays lists)."""
    frame = frame.drop(columns=[c for c in drop if c in frame.columns])
    frame = frame.astype(object).where(frame.notna(), None)
    plain = lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v)  # noqa: E731
    return sorted(json.dumps(r, sort_keys=True, default=plain) for r in frame.to_dict("records"))


def _csv_comparable(text: str) -> list[list[str]]:
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    drop = rows[0].index("campaign_transition")
    return [r[:drop] + r[drop + 1:] for r in rows]


def _comparable(doc: dict) -> dict:
    camps = [{k: v for k, v in c.items() if k not in RUN_FIELDS} for c in doc["campaigns"]]
    return {"schema_version": doc["schema_version"], "accepted": doc["ingest"]["accepted"],
            "rejected": doc["ingest"]["rejected"], "campaigns": camps}


def _history_states(w: Workspace) -> list[list[tuple]]:
    """``campaign_history`` run by run, without run numbers and times, leaving out a run that only repeated
    the previous one (every campaign ``continued`` with the same numbers): what a re-run of a command whose
    killed run had already scored adds."""
    states: list[list[tuple]] = []
    for _, g in w.campaign_history().groupby("run_id", sort=True):
        state = sorted((r.campaign_id, r.transition, r.parent_ids, int(r.n_accounts), int(r.n_requests),
                        float(r.score), bool(r.flagged)) for r in g.itertuples(index=False))
        if states and {s[1] for s in state} == {"continued"} and (
                [s[:1] + s[3:] for s in state] == [s[:1] + s[3:] for s in states[-1] if s[1] != "gone"]):
            continue
        states.append(state)
    return states


#: What :func:`_results` reads from a workspace, by name.
RESULTS = {
    **{t: lambda w, t=t: _rows(w.table(t)) for t in RESULT_TABLES},
    "n_requests": lambda w: w.db.execute("SELECT count(*) FROM requests").fetchone()[0],
    "n_embedded": lambda w: w.db.execute("SELECT count(*) FROM embedded").fetchone()[0],
    "rejected": lambda w: _rows(w.table("rejected"), drop=("run_id",)),
    "history": _history_states,
    "identity": lambda w: _rows(w.table("campaign_identity"),
                                drop=("first_flagged_run_id", "first_run_id", "last_run_id")),
    "watchlist": lambda w: _rows(w.table("watchlist"), drop=("created_at",)),
    "watch_vectors": lambda w: _rows(w.table("watch_vectors")),
    "json": lambda w: _comparable(json.loads(_export_text(w, "json"))),
    "csv": lambda w: _csv_comparable(_export_text(w, "csv")),
}


def _export_text(w: Workspace, fmt: str) -> str:
    from analyzer.export import export

    return export(w, fmt)


def _results(ws: Path, keys=RESULTS) -> dict:
    """What a workspace holds (``keys`` of :data:`RESULTS`), less what differs by construction between a killed
    and re-run workspace and an uninterrupted one (run numbers, times of writing, a repeated run's history).
    An empty dict for a workspace not created yet."""
    if not (ws / "analyzer.duckdb").exists():
        return {}
    with Workspace(str(ws), read_only=True) as w:
        return {k: RESULTS[k](w) for k in keys}


def _assert_consistent(ws: Path, rerun: bool) -> None:
    """Invariants of a workspace after any kill (``rerun`` False) and after the re-run."""
    with Workspace(str(ws), read_only=True) as w:
        assert rl.history_problems(w) == []
        n_emb, n_prompts, n_distinct = w.db.execute(
            "SELECT (SELECT count(*) FROM embedded), (SELECT count(*) FROM prompts), "
            "(SELECT count(DISTINCT prompt_hash) FROM embedded)").fetchone()
        assert n_emb == n_distinct  # no prompt embedded twice, whatever was killed
        if rerun:
            assert n_emb == n_prompts
            assert w.db.execute("SELECT count(*) FROM prompt_clusters").fetchone()[0] == n_emb
            for (key,) in w.db.execute("SELECT DISTINCT model_key FROM embedded").fetchall():
                assert w.verify_embeddings(key) == 0  # every database row points at a complete shard
    if rerun:
        assert not [p for p in ws.rglob("*") if ".tmp-" in p.name]


def test_a_checkpoint_does_nothing_unless_named_and_kills_at_the_named_hit(monkeypatch, tmp_path):
    from collections import Counter

    from analyzer import checkpoints as cp

    kills: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append(sig))
    monkeypatch.setattr(cp, "_hits", Counter())
    monkeypatch.delenv(cp.CRASH_ENV, raising=False)
    monkeypatch.delenv(cp.LOG_ENV, raising=False)
    cp.checkpoint("score.before_commit")
    assert not kills and not cp._hits  # not even counted
    log = tmp_path / "hits"
    monkeypatch.setenv(cp.LOG_ENV, str(log))
    monkeypatch.setenv(cp.CRASH_ENV, "score.before_commit:2")
    after = []
    for name in ("score.before_commit", "run.finished", "score.before_commit", "score.before_commit"):
        cp.checkpoint(name)
        after.append(list(kills))
    assert after == [[], [], [signal.SIGKILL], [signal.SIGKILL]]  # the second hit of that name only
    assert log.read_text().split() == ["score.before_commit", "run.finished", "score.before_commit",
                                       "score.before_commit"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = rl.CliServer(tmp_path_factory.mktemp("cli-server"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> dict[str, list[Path]]:
    """Two days of the mini log, each with bad rows of every kind, a duplicate-laden truncated gzip and an empty
    file (so that every ingest checkpoint, the quarantine file included, is reached on both days)."""
    lines = sorted(rl.mini_lines(), key=lambda line: json.loads(line)["timestamp"])
    cut = int(len(lines) * 0.75)
    folder = tmp_path_factory.mktemp("days")
    return {"day1": rl.write_corrupted(folder / "day1", lines[:cut])[0],
            "day2": rl.write_corrupted(folder / "day2", lines[cut:])[0]}


def _command(scenario: str, ws: Path, days: dict, ref: dict, out: Path) -> list:
    if scenario in days:
        return ["run", *days[scenario], "--workspace", ws, *RUN_ARGS_KILL]
    if scenario == "map":
        return ["map", "--workspace", ws, "--seed", "0", "--sample", "60"]
    if scenario == "watch":
        return ["watch", "add", ref["campaign"], "--workspace", ws, "--note", "confirmed now", "--analyst", "t"]
    return ["export", "--workspace", ws, "--format", "csv", "--out", out]


@pytest.fixture(scope="module")
def reference(server, days, tmp_path_factory) -> dict:
    """Every scenario run once without a kill, each hit of a checkpoint logged: ``{"start": {scenario: path of the
    workspace it starts from}, "end": {scenario: path after its command}, "hits": {scenario: [names]}, ...}``."""
    base = tmp_path_factory.mktemp("reference")
    ref: dict = {"start": {"day1": base / "nothing"}, "end": {}, "hits": {}}
    for scenario, start in (("day1", None), ("day2", "day1"), ("map", "day2"), ("watch", "watch-start"),
                            ("export", "day2")):
        if scenario == "watch":  # an entry to replace: the campaign remembered as dismissed
            ws = base / "watch-start"
            shutil.copytree(ref["end"]["day2"], ws)
            with Workspace(str(ws), read_only=True) as w:
                ref["campaign"] = w.db.execute("SELECT campaign_id FROM campaigns ORDER BY rank LIMIT 1").fetchone()[0]
            rc, out = server.run(["watch", "add", ref["campaign"], "--workspace", ws, "--dismiss", "--note", "earlier"])
            assert rc == 0, out
            ref["end"]["watch-start"] = ws
        ws = base / scenario
        if start is not None:
            ref["start"][scenario] = ref["end"][start]
            if scenario != "export":
                shutil.copytree(ref["end"][start], ws)
        log = base / f"{scenario}.hits"
        target = ref["start"][scenario] if scenario == "export" else ws
        rc, out = server.run(_command(scenario, target, days, ref, base / "export.csv"), log=log)
        assert rc == 0, out
        ref["end"][scenario] = base / "export.csv" if scenario == "export" else ws
        ref["hits"][scenario] = log.read_text().split()
    ref["results"] = {s: _results(p) for s, p in ref["end"].items() if s != "export"}
    ref["results"]["nothing"] = {"n_requests": 0, "n_embedded": 0, "prompt_clusters": [], "history": [],
                                 "identity": [], "campaign_members": []}
    return ref


def test_every_checkpoint_is_reached_by_an_uninterrupted_run_and_killed_at(reference):
    hits = reference["hits"]
    assert set().union(*map(set, hits.values())) == set(CHECKPOINTS)  # none dead, none unregistered
    assert {p.partition(":")[0] for _, p in CRASH_CASES} == set(CHECKPOINTS)
    for scenario in ("day1", "day2"):  # every point of both daily runs is killed at
        assert {p.partition(":")[0] for p in CRASH_POINTS[scenario]} == set(hits[scenario]), scenario
    for scenario, point in CRASH_CASES:
        name, _, nth = point.partition(":")
        assert hits[scenario].count(name) >= int(nth or 1), (scenario, point)
    with Workspace(str(reference["end"]["day2"]), read_only=True) as w:
        stats = json.loads(w.db.execute("SELECT stats FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()[0])
    assert stats["cluster"]["path"] == "incremental" and stats["cluster"]["new_prompts"] > 0
    assert reference["results"]["day2"]["json"]["campaigns"], "the reference run should find candidate campaigns"


@pytest.mark.parametrize(("scenario", "point"), CRASH_CASES, ids=[f"{s}-{p}" for s, p in CRASH_CASES])
def test_killed_at_a_checkpoint_then_run_again_ends_where_an_uninterrupted_run_ends(
        server, days, reference, scenario, point, tmp_path):
    start = reference["start"][scenario]
    ws = start if scenario == "export" else tmp_path / "ws"
    if scenario not in ("day1", "export"):
        shutil.copytree(start, ws)
    out = tmp_path / "export.csv"
    cmd = _command(scenario, ws, days, reference, out)

    rc, output = server.run(cmd, crash_at=point)
    assert rc == -signal.SIGKILL, output  # the checkpoint was reached
    before = reference["results"]["nothing" if scenario == "day1" else
                                  "watch-start" if scenario == "watch" else "day1" if scenario == "day2" else "day2"]
    if scenario == "export":
        assert not out.exists()  # never a partial file under the final name
    else:
        _assert_consistent(ws, rerun=False)
        unchanged = UNCHANGED_AT.get(point.partition(":")[0], ())
        assert _results(ws, unchanged) == {k: before[k] for k in unchanged if k in before}

    rc, output = server.run(cmd)
    assert rc == 0, output
    if scenario == "export":
        assert out.read_bytes() == reference["end"]["export"].read_bytes()
        return
    _assert_consistent(ws, rerun=True)
    assert _results(ws) == reference["results"][scenario]
    if scenario in ("day1", "day2", "map"):
        with Workspace(str(ws), read_only=True) as w:
            status = [s for (s,) in w.db.execute("SELECT status FROM runs ORDER BY run_id").fetchall()]
        n_before = {"day1": 0, "day2": 1, "map": 2}[scenario]
        # the killed run is marked interrupted by the re-run (unless it had already finished)
        assert status[n_before:] == (["ok", "ok"] if point == "run.finished" else ["interrupted", "ok"]), status


# --- crash safety, piece by piece (fast) -------------------------------------------------------------------------
def _frame(ids, prompts):
    n = len(ids)
    return pd.DataFrame({
        "request_id": ids, "account_id": ["a1"] * n, "ts": pd.to_datetime(["2026-01-01T00:00:00Z"] * n, utc=True),
        "prompt": prompts, "prompt_hash": [f"h-{p}" for p in prompts], "system_prompt": [None] * n,
        "model": ["m"] * n, "ip": [None] * n, "user_agent": [None] * n, "api_key_id": [None] * n,
        "org_id": [None] * n, "payment_id": [None] * n, "country": [None] * n, "extra": [None] * n,
        "source": ["f.jsonl"] * n, "line": list(range(1, n + 1)),
    })


def test_stale_runs_and_temporary_files_are_cleaned_at_next_start(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    with ws.writing():
        ws.start_run("run", {}, {})  # never finished: its process "died"
    emb = Path(ws.embeddings_dir("m"))
    emb.mkdir(parents=True)
    (emb / "shard-000001.npy.tmp-4242").write_bytes(b"\x93NUMPY half")
    (tmp_path / "ws" / "quarantine").mkdir()
    (tmp_path / "ws" / "quarantine" / "rejected-1.jsonl.tmp-4242").write_text('{"half": ')
    with ws.writing():
        assert ws.db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    assert not [p for p in (tmp_path / "ws").rglob("*") if ".tmp-" in p.name]
    ws.close()


def test_orphan_and_partial_shards_are_never_used(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    ws.add_requests(_frame(["r1", "r2", "r3"], ["a", "b", "c"]), run_id=1)
    v = np.eye(3, 8, dtype=np.float32)
    # killed after the shard file was renamed into place but before the database insert: an orphan file
    os.makedirs(ws.embeddings_dir("m"))
    np.save(ws.shard_path("m", 1), np.full((5, 8), 7, dtype=np.float16))
    assert ws.add_embedding_shard("m", ["h-a", "h-b"], v[:2]) == 1  # same number, file replaced
    hashes, vecs = ws.load_embeddings("m")
    assert hashes.tolist() == ["h-a", "h-b"] and np.allclose(vecs, v[:2], atol=1e-3)
    # a shard file damaged behind the pipeline's back: its rows are forgotten and re-embedded, never read
    path = ws.shard_path("m", 1)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) - 10])
    with pytest.raises(WorkspaceCorrupt, match="not a readable|rows"):
        ws.load_embeddings("m")
    assert ws.verify_embeddings("m") == 2
    assert ws.pending_prompts("m")["prompt_hash"].tolist() == ["h-a", "h-b", "h-c"]
    os.remove(path)
    ws.add_embedding_shard("m", ["h-a", "h-b", "h-c"], v)
    assert ws.verify_embeddings("m") == 0
    assert ws.load_embeddings("m")[0].tolist() == ["h-a", "h-b", "h-c"]
    ws.close()


def test_stored_vectors_read_only_the_rows_asked_for_exactly_as_a_full_load(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    ws.add_requests(_frame(["r1", "r2", "r3", "r4", "r5"], ["a", "b", "c", "d", "e"]), run_id=1)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(5, 8)).astype(np.float32)
    os.makedirs(ws.embeddings_dir("m"))
    ws.add_embedding_shard("m", ["h-d", "h-b"], v[:2])
    ws.add_embedding_shard("m", ["h-a", "h-e", "h-c"], v[2:])
    hashes, full, ids = ws.load_embedding_rows("m")
    lazy_hashes, lazy, lazy_ids = ws.stored_vectors("m")
    assert lazy_hashes.tolist() == hashes.tolist() == ["h-a", "h-b", "h-c", "h-d", "h-e"]
    assert np.array_equal(lazy_ids, ids) and lazy.shape == full.shape == (5, 8) and len(lazy) == 5
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, rtol=1e-6)
    for sel in (np.array([4, 0, 2]), np.array([True, False, False, True, True]), slice(1, 3), 3):
        assert np.array_equal(lazy[sel], full[sel])  # the same bits as the full load
    assert np.array_equal(np.asarray(lazy), full) and np.asarray(lazy) is np.asarray(lazy)  # read once
    mine = np.array(lazy)  # a copy of one's own: changing it changes nothing stored
    mine[:] = 0
    assert np.array_equal(lazy[[0, 1]], full[[0, 1]])
    # a damaged shard is found when its rows are read, with the file named
    _, lazy, _ = ws.stored_vectors("m")
    path = ws.shard_path("m", 1)  # h-b and h-d
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) - 10])
    assert np.array_equal(lazy[[0, 2, 4]], full[[0, 2, 4]])  # rows of the sound shard: read
    with pytest.raises(WorkspaceCorrupt, match="shard-000001"):
        lazy[[3]]
    with pytest.raises(WorkspaceCorrupt, match="shard-000001"):
        np.asarray(lazy)
    ws.close()


def test_an_ingest_batch_commits_entirely_or_not_at_all(tmp_path, monkeypatch):
    from analyzer.ingest import Rejected

    ws = Workspace(str(tmp_path / "ws"), create=True)
    bad = [Rejected("f.jsonl", 9, "prompt", "empty prompt", "{}")]

    def boom(*a, **k):
        raise KeyboardInterrupt  # stands for a kill between the two inserts

    monkeypatch.setattr(ws, "_insert_rejected", boom)
    with pytest.raises(KeyboardInterrupt):
        ws.add_ingest_batch(_frame(["r1", "r2"], ["a", "b"]), bad, 3, "f.jsonl", run_id=1)
    monkeypatch.undo()
    assert ws.db.execute("SELECT (SELECT count(*) FROM requests) + (SELECT count(*) FROM prompts) + "
                         "(SELECT count(*) FROM ingest_log)").fetchone()[0] == 0
    assert ws.add_ingest_batch(_frame(["r1", "r2"], ["a", "b"]), bad, 3, "f.jsonl", run_id=1) == {
        "read": 3, "accepted": 2, "rejected": 1, "duplicates": 0}
    assert ws.add_ingest_batch(_frame(["r1", "r2"], ["a", "b"]), bad, 3, "f.jsonl", run_id=2) == {
        "read": 3, "accepted": 0, "rejected": 0, "duplicates": 3}
    assert ws.ingest_totals() == {"read": 6, "accepted": 2, "rejected": 1, "duplicates": 3}
    ws.close()


# --- 6. no pickle ---------------------------------------------------------------------------------------------------
def test_the_package_never_unpickles():
    pattern = re.compile(r"allow_pickle\s*=\s*True|pickle\.loads?\(|joblib\.load\(|cloudpickle|dill\.load"
                         r"|torch\.load\((?![^)]*weights_only\s*=\s*True)")
    hits = []
    for path in (ROOT / "analyzer").rglob("*.py"):
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    for path in [ROOT / "app.py"]:
        if path.exists() and pattern.search(path.read_text(encoding="utf-8")):
            hits.append(str(path))
    assert not hits, "unpickling code found:\n" + "\n".join(hits)


class _Payload:
    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_malicious_npy_in_a_workspace_is_refused_not_executed(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), create=True)
    ws.add_requests(_frame(["r1", "r2"], ["a", "b"]), run_id=1)
    ws.add_embedding_shard("m", ["h-a", "h-b"], np.eye(2, 8, dtype=np.float32))
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    np.save(ws.shard_path("m", 1), np.array([payload, payload], dtype=object), allow_pickle=True)
    with pytest.raises(WorkspaceCorrupt, match="object array"):
        ws.load_embeddings("m")
    with pytest.raises(WorkspaceCorrupt, match="object"):
        ws.verify_embeddings("m")
    assert not marker.exists()
    ws.close()
