"""The disclosed incident at its size (issue 14): write the ``incident`` preset's shards, then run the analyzer on
the first N of them for each N asked, and report time, peak memory, every stage and detection.

Run: ``python benchmarks/incident.py --dir DIR [--seed 0] [--shards 16] [--steps 1,4,16] [--generate-only]
[--out benchmarks/results/incident-seed0.json]``

``DIR/scenario`` keeps the shards (``logs/shard-NNN.jsonl.gz``, 1M requests each with the preset's defaults) and
their truths: generating is resumable and reproducible (an interrupted generation goes on at the first shard
without its truth), and later runs reuse them. Each step runs ``analyzer run`` on its shards as a team would (its
own process, default options, the map included) into a fresh ``DIR/ws-N``, measured from outside: wall time and
the process's peak resident memory (``getrusage`` of the child; its resident memory every 2 s in ``DIR/rss-N.tsv``,
written as it runs, with the total of the child and its worker processes beside it: ``peak_tree_mb``), the run's own stage times and stage peaks; then
scores the workspace against the truth of those shards (:func:`analyzer.bench.scenario.merge_truths`). The curve
of total time against requests is the steps' rows. Needs ``../shared/data`` (or ``$ANALYZER_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.bench import corpora  # noqa: E402
from analyzer.bench.run import score_row, workspace_result  # noqa: E402
from analyzer.bench.scenario import merge_truths, resolve_knobs, write_sharded_scenario  # noqa: E402

#: Seconds between two samples of the run's resident memory (``DIR/rss-N.tsv``).
RSS_EVERY_S = 2.0


def _rss_kb(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), 0)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its worker processes: the label stage's), from ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _sample_rss(child: subprocess.Popen, path: Path, t0: float, peak: dict, every: float = RSS_EVERY_S) -> None:
    """Write the child's resident memory and that of the child with its worker processes (``seconds  MiB
    tree-MiB``, one line every ``every`` seconds) to ``path`` while it runs, flushed as it goes: a run killed for
    memory leaves the curve up to its end. ``peak["tree_mb"]``: the largest tree total sampled."""
    with path.open("w", encoding="utf-8") as out:
        while child.poll() is None:
            main = _rss_kb(child.pid)
            if not main:
                break
            tree = main + sum(_rss_kb(p) for p in _descendants(child.pid))
            peak["tree_mb"] = max(peak.get("tree_mb", 0.0), tree / 1024)
            out.write(f"{time.perf_counter() - t0:.0f}\t{main / 1024:.0f}\t{tree / 1024:.0f}\n")
            out.flush()
            time.sleep(every)


def run_step(scenario_dir: Path, n_shards: int, ws_dir: Path, seed: int, knobs: dict) -> dict:
    """``analyzer run`` on the first ``n_shards`` shards into a fresh ``ws_dir``: time, memory, stages, detection."""
    from analyzer.workspace import Workspace

    logs = sorted((scenario_dir / "logs").glob("shard-*.jsonl.gz"))[:n_shards]
    truths = [json.loads(p.read_text(encoding="utf-8"))
              for p in sorted((scenario_dir / "shards").glob("shard-*.truth.json"))[:n_shards]]
    truth = merge_truths(truths, "incident", seed, resolve_knobs("incident", **knobs))
    shutil.rmtree(ws_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "analyzer.cli", "run", *map(str, logs), "--workspace", str(ws_dir), "--quiet"]
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    timeline = ws_dir.parent / f"rss-{n_shards}.tsv"
    peak: dict = {}
    sampler = threading.Thread(target=_sample_rss, args=(child, timeline, t0, peak), daemon=True)
    sampler.start()
    if child.wait() != 0:
        raise subprocess.CalledProcessError(child.returncode, cmd)
    wall = time.perf_counter() - t0
    sampler.join()
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # the largest child so far
    with Workspace(str(ws_dir)) as ws:
        _, stats = ws.ok_run_stats()[0]
        res = workspace_result(ws, wall, peak_mb, stats.get("stages_s", {}))
    row = score_row("analyzer", f"incident x{n_shards}", seed, res, truth)
    row.update(shards=n_shards, n_requests=truth["n_requests"], n_accounts=truth["n_accounts"],
               campaign_accounts={k: len(v["accounts"]) for k, v in truth["campaigns"].items()},
               stage_peak_mb=stats.get("stage_peak_mb"), wall_s=round(wall, 1), peak_rss_mb=round(peak_mb),
               peak_tree_mb=round(peak.get("tree_mb", 0.0)))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="working folder: the shards (kept) and the workspaces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=None, help="shards to write (default: the preset's, 16)")
    ap.add_argument("--shard-requests", type=int, default=None, help="requests per shard (default: the preset's, 1M)")
    ap.add_argument("--steps", default="1,4,16", help="comma-separated numbers of shards to run the analyzer on")
    ap.add_argument("--generate-only", action="store_true", help="write the shards and stop")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    if not corpora.available():
        sys.exit(f"benchmark corpora not found at {corpora.data_dir()}: nothing to measure")
    knobs: dict = {}
    if args.shards is not None:
        knobs["shards"] = args.shards
    if args.shard_requests is not None:
        knobs["n_requests"] = args.shard_requests
    n_shards = int(resolve_knobs("incident", **knobs)["shards"])
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    if any(s < 1 or s > n_shards for s in steps):
        sys.exit(f"--steps must be between 1 and the number of shards ({n_shards})")
    scenario_dir = Path(args.dir) / "scenario"
    t0 = time.perf_counter()
    write_sharded_scenario("incident", args.seed, scenario_dir, lambda m: print(m, flush=True), **knobs)
    gen = {"seconds": round(time.perf_counter() - t0, 1),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)}
    print(f"scenario ready in {gen['seconds']} s, generator peak {gen['peak_rss_mb']} MiB", flush=True)
    rows = []
    if not args.generate_only:
        for n in steps:
            row = run_step(scenario_dir, n, Path(args.dir) / f"ws-{n}", args.seed, knobs)
            rows.append(row)
            print(json.dumps({k: row.get(k) for k in ("shards", "n_requests", "wall_s", "peak_rss_mb", "peak_tree_mb", "stages",
                                                      "campaign_recall", "false_flagged_campaigns", "account_auc")}), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        doc = {"seed": args.seed, "knobs": knobs, "generation": gen, "rows": rows, "cpus": os.cpu_count()}
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
