"""Robustness: corrupted logs, killed runs, determinism, tampered workspaces, no unpickling anywhere.

The end-to-end tests use ~180 requests (~145 unique prompts) cut from ``data/sample`` (see
``tests/robust_logs.py``) and the real model, except the default variant of the SIGKILL test, which uses a
cheap hashing embedder so that ten killed runs stay fast (its ``slow`` variant runs the real model).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import robust_logs as rl
from click.testing import CliRunner

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


# --- 2. crash safety -------------------------------------------------------------------------------------------------
#: Fields of the JSON export compared after the killed runs: everything except ``generated_at`` and
#: ``workspace`` (differ by construction) and ``ingest.read`` / ``ingest.duplicates`` (every re-read of the log
#: counts its rows again, as duplicates). So: ``schema_version``, ``ingest.accepted``, ``ingest.rejected`` and
#: the whole ``campaigns`` list (ids, ranks, scores, flags, labels, keywords, templates, accounts, clusters,
#: signals, evidence, examples, triage). The CSV export is compared byte for byte, except its
#: ``campaign_transition`` column (the latest run's transition: ``new`` in the fresh workspace, ``continued``
#: where an earlier killed run had already scored).
#: Run numbers differ by construction too (the killed workspace had more runs): a campaign's ``history``
#: and ``first_run`` / ``first_flagged_run`` are left out, and checked by :func:`rl.history_problems`.
RUN_FIELDS = ("history", "first_run", "first_flagged_run")


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


def _cmd(embedder: str, args: list[str]) -> list[str]:
    if embedder == "hash":
        return [sys.executable, str(ROOT / "tests" / "robust_logs.py"), *args]
    # The accurate tier: slow enough per shard that most kills land mid-run (the fast tier finishes in seconds).
    return [sys.executable, "-m", "analyzer", *args, *(["--tier", "accurate"] if args[0] == "run" else [])]


def _lock_held(ws: Path) -> bool:
    """Whether some process holds the workspace's write lock (an flock), read from ``/proc/locks``."""
    try:
        inode = os.stat(ws / ".lock").st_ino
        with open("/proc/locks", encoding="ascii") as fh:
            return any(re.search(rf":{inode}\s", line) for line in fh)
    except OSError:
        return False


def _wait_for_lock(proc: subprocess.Popen, ws: Path, timeout: float = 120.0) -> float:
    """Wait until ``proc`` takes the lock of ``ws`` (or exits); returns the time it did."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not _lock_held(ws):
        time.sleep(0.005)
    return time.monotonic()


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks to see when a run holds the lock")
@pytest.mark.parametrize("embedder", ["hash", pytest.param("minilm", marks=pytest.mark.slow)])
def test_sigkill_at_random_points_then_rerun_gives_the_clean_result(embedder, tmp_path):
    env = {**os.environ, "HASH_EMBED_DELAY": "0.01", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    logs = tmp_path / "logs"
    paths, info = rl.write_corrupted(logs)  # bad rows too: quarantine files and the rejected table
    run_args = ["run", *map(str, paths), *RUN_ARGS, "--embed-chunk", "16"]

    def run(ws: Path, kill_after: float | None = None) -> tuple[int, float]:
        """Run to the end, returning (0, seconds of work), or SIGKILL it ``kill_after`` seconds into its work.

        Work starts when the run takes the workspace lock (after start-up imports, which take most of a small
        run's time), so every kill lands while the run holds the lock and has its row in ``runs``.
        """
        proc = subprocess.Popen(_cmd(embedder, [*run_args, "--workspace", str(ws)]), cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t_work = _wait_for_lock(proc, ws)
        if kill_after is None:
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out.decode(errors="replace")
            return 0, time.monotonic() - t_work
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        return proc.returncode, time.monotonic() - t_work

    if embedder == "minilm":  # export the int8 model now: the timed fresh run must not include the one-off export
        from analyzer.embed import make_embedder

        make_embedder(tier="accurate")
    fresh = tmp_path / "fresh"
    _, work_s = run(fresh)
    rng = random.Random(int(os.environ.get("KILL_SEED", "5")))
    ws = tmp_path / "killed"
    killed = 0
    for _ in range(16):
        # Later runs are shorter (ingest finds duplicates, most prompts are embedded, a stored clustering takes
        # the incremental path): a run that finishes sets the window for the next kills to its own length.
        rc, seconds = run(ws, kill_after=rng.uniform(0.0, 0.5 * work_s))
        killed += rc == -signal.SIGKILL
        if rc == 0:
            work_s = min(work_s, seconds)
        if killed == 8:
            break
    assert killed >= 5, "most runs should have been killed mid-way"
    run(ws)  # the lock of every killed run was released: this run gets it

    assert _comparable(json.loads(_export(ws))) == _comparable(json.loads(_export(fresh)))
    assert _csv_comparable(_export(ws, "csv")) == _csv_comparable(_export(fresh, "csv"))
    with Workspace(str(ws)) as w:
        status = [s for (s,) in w.db.execute("SELECT status FROM runs ORDER BY run_id").fetchall()]
        assert "running" not in status and status[-1] == "ok", status
        assert "interrupted" in status, status  # (a kill during start-up may precede the run row)
        key = w.db.execute("SELECT DISTINCT model_key FROM embedded").fetchall()
        assert len(key) == 1
        assert w.verify_embeddings(key[0][0]) == 0  # every database row points at a complete shard
        n_emb, n_prompts = w.db.execute(
            "SELECT (SELECT count(*) FROM embedded), (SELECT count(*) FROM prompts)").fetchone()
        assert n_emb == n_prompts  # each prompt embedded exactly once, whatever was killed
        assert rl.history_problems(w) == []
        latest = w.db.execute("SELECT DISTINCT transition FROM campaign_history WHERE run_id = "
                              "(SELECT max(run_id) FROM campaign_history)").fetchall()
        assert {t for (t,) in latest} <= {"new", "continued"}  # the same data: nothing split, merged or gone
    leftovers = [p for p in ws.rglob("*") if ".tmp-" in p.name]
    assert not leftovers


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks to see when a run holds the lock")
def test_sigkill_at_the_score_commit_leaves_campaigns_and_history_consistent(clean_log, tmp_path):
    """Killed with every campaign and history row inserted but not committed, a score (or a run, whose cluster
    stage already cleared the campaigns) leaves the previous run's campaigns and history; the next score
    continues the same campaigns."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    ws = tmp_path / "ws"

    def cli(args: list[str], kill: bool = False) -> int:
        proc = subprocess.run(_cmd("hash", [*args, "--workspace", str(ws)]), cwd=ROOT, capture_output=True,
                              env={**env, **({"KILL_AT_SCORE_COMMIT": "1"} if kill else {})}, timeout=600)
        assert kill or proc.returncode == 0, proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        return proc.returncode

    cli(["run", str(clean_log), *RUN_ARGS])
    ref = json.loads(_export(ws))
    assert ref["campaigns"]

    def state() -> tuple:
        with Workspace(str(ws)) as w:
            assert rl.history_problems(w) == []
            return (w.table("campaigns").to_dict("list"), w.table("campaign_history").to_dict("list"),
                    w.table("campaign_identity").to_dict("list"))

    camps, hist, ident = state()
    assert cli(["score"], kill=True) == -signal.SIGKILL
    assert state() == (camps, hist, ident)
    assert cli(["run", str(clean_log), *RUN_ARGS], kill=True) == -signal.SIGKILL
    after_run = state()
    assert not after_run[0]["campaign_id"] and after_run[1:] == (hist, ident)  # cleared by the cluster stage
    cli(["score"])
    doc = json.loads(_export(ws))
    assert _comparable(doc) == _comparable(ref)
    with Workspace(str(ws)) as w:
        runs = dict(w.db.execute("SELECT run_id, status FROM runs").fetchall())
        assert runs[2] == runs[3] == "interrupted"
        h = w.campaign_history()
        assert sorted(h["run_id"].unique()) == [1, 4] and set(h.loc[h["run_id"] == 4, "transition"]) == {"continued"}
    assert all([e["run"] for e in c["history"]] == [1, 4] for c in doc["campaigns"])


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


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks to see when a run holds the lock")
def test_sigkill_during_a_daily_run_then_rerun_gives_the_uninterrupted_result(tmp_path):
    """A daily run (incremental: new prompts assigned to the stored clustering) killed at random points and run
    again ends where the uninterrupted daily run ends."""
    env = {**os.environ, "HASH_EMBED_DELAY": "0.01", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    lines = sorted(rl.mini_lines(), key=lambda line: json.loads(line)["timestamp"])
    cut = int(len(lines) * 0.75)
    day1 = rl.write_clean(tmp_path / "day1.jsonl", lines[:cut])
    day2 = rl.write_clean(tmp_path / "day2.jsonl", lines[cut:])

    def run(ws: Path, log: Path, kill_after: float | None = None) -> tuple[int, float]:
        proc = subprocess.Popen(_cmd("hash", ["run", str(log), *RUN_ARGS, "--embed-chunk", "4", "--workspace", str(ws)]),
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t_work = _wait_for_lock(proc, ws)
        if kill_after is None:
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out.decode(errors="replace")
            return 0, time.monotonic() - t_work
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        return proc.returncode, time.monotonic() - t_work

    fresh = tmp_path / "fresh"
    run(fresh, day1)
    _, work_s = run(fresh, day2)
    with Workspace(str(fresh)) as w:
        last = json.loads(w.db.execute("SELECT stats FROM runs ORDER BY run_id DESC LIMIT 1").fetchall()[0][0])
    assert last["cluster"]["path"] == "incremental" and last["cluster"]["new_prompts"] > 0

    ws = tmp_path / "killed"
    run(ws, day1)
    rng = random.Random(int(os.environ.get("KILL_SEED", "7")))
    killed = 0
    for _ in range(8):
        rc, _ = run(ws, day2, kill_after=rng.uniform(0.0, work_s))
        killed += rc == -signal.SIGKILL
    assert killed >= 4, "most runs should have been killed mid-way"
    run(ws, day2)

    assert _comparable(json.loads(_export(ws))) == _comparable(json.loads(_export(fresh)))
    assert _export(ws, "csv") == _export(fresh, "csv")
    with Workspace(str(ws)) as w:
        status = [s for (s,) in w.db.execute("SELECT status FROM runs ORDER BY run_id").fetchall()]
        assert "running" not in status and status[-1] == "ok", status
        n_rows, n_emb = w.db.execute(
            "SELECT (SELECT count(*) FROM prompt_clusters), (SELECT count(*) FROM embedded)").fetchone()
        assert n_rows == n_emb  # every prompt has exactly one cluster row, whatever was killed
