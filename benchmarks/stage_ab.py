"""One stage under two checkouts of the analyzer, run after one another on the same input: time, peak memory and
what it stored.

Run: ``python benchmarks/stage_ab.py --old ../old-checkout --stage score --workspace WS [--runs 3]`` or
``python benchmarks/stage_ab.py --old ../old-checkout --stage ingest --log shard.jsonl.gz [--runs 2]``.

``--old`` is another checkout (e.g. ``git worktree add ../old <commit>``); the new code is this one. Each run is a
fresh process (``python -m analyzer score -w WS``, or ``ingest`` into a new workspace), old and new alternating
so that a slow spell of a shared machine hits both; its wall time and peak resident memory (``wait4``'s
``ru_maxrss``) are printed with a digest of what it stored: the score stage's tables (``campaigns``,
``accounts``, ``campaign_accounts``, ``cluster_campaigns``, ``campaign_members``, each an md5 of its rows in
sorted order), or the ingest's request count, distinct prompts, a sum of request-id hashes and ``ingest_log``.
Both checkouts must read the same workspace format. Figures are printed, medians last; nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

NEW = Path(__file__).resolve().parents[1]
SCORE_TABLES = ("campaigns", "accounts", "campaign_accounts", "cluster_campaigns", "campaign_members")


def run_child(checkout: Path, args: list[str]) -> tuple[float, float, str]:
    """``python -m analyzer ARGS`` with ``checkout``'s package: (wall seconds, peak resident MiB, what it printed)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile() as out:  # a file, not a pipe: a chatty child cannot fill it while we wait
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "analyzer", *args], cwd=checkout, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{checkout}: analyzer {' '.join(args)} failed:\n{text[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text


def digest(workspace: str, stage: str) -> str:
    """What the stage stored, in a line (see the module docstring)."""
    db = duckdb.connect(os.path.join(workspace, "analyzer.duckdb"), read_only=True)
    try:
        if stage == "score":
            return " ".join(f"{t}={hashlib.md5(db.sql(f'SELECT * FROM {t} ORDER BY ALL').df().to_csv().encode()).hexdigest()[:10]}"
                            for t in SCORE_TABLES)
        rows = db.sql("SELECT count(*), count(DISTINCT prompt_hash), sum(hash(request_id)) FROM requests").fetchall()
        return f"requests, prompts, id hash sum {rows[0]}; ingest_log {db.sql('SELECT * FROM ingest_log').fetchall()}"
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, type=Path, help="the other checkout")
    ap.add_argument("--stage", choices=("score", "ingest"), required=True)
    ap.add_argument("--workspace", help="score: the workspace to score (rescored in place by each run)")
    ap.add_argument("--log", nargs="+", help="ingest: the log files, ingested into a new workspace each run")
    ap.add_argument("--runs", type=int, default=3, help="runs of each checkout")
    args = ap.parse_args()
    if (args.stage == "score") != bool(args.workspace) or (args.stage == "ingest") != bool(args.log):
        ap.error("--stage score takes --workspace; --stage ingest takes --log")
    figures: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    scratch = tempfile.mkdtemp(prefix="stage-ab-")
    try:
        for i in range(args.runs):
            for name, checkout in (("old", args.old.resolve()), ("new", NEW)):
                if args.stage == "score":
                    ws = args.workspace
                    wall, peak, _ = run_child(checkout, ["score", "-w", ws])
                else:
                    ws = os.path.join(scratch, "ws")
                    shutil.rmtree(ws, ignore_errors=True)
                    wall, peak, _ = run_child(checkout, ["ingest", "-q", "-w", ws, *[os.path.abspath(p) for p in args.log]])
                figures[name].append((wall, peak))
                print(f"{name} run {i + 1}: {wall:7.1f} s  peak {peak:8.0f} MiB  {digest(ws, args.stage)}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name, rows in figures.items():
        print(f"{name}: median {statistics.median(w for w, _ in rows):.1f} s, "
              f"peak {statistics.median(p for _, p in rows):.0f} MiB over {len(rows)} runs")


if __name__ == "__main__":
    main()
