"""The Ray path against the local path on one preset: same campaigns? and what each costs.

Run: ``python benchmarks/ray_local.py --preset standard --files 2 --dir DIR [--out results.json]``

Writes the preset's log as ``--files`` files (a provider's export in shards), analyses it once in this process
and once with ``ray_address="local"`` (a private 2-CPU Ray: the log files parsed by Ray tasks, the embedding on
a Ray Data actor pool, the kNN graph on a sharded index of Ray actors), each into its own workspace, and
compares their campaigns and account scores. Prints and writes wall time, stage times and the driver's peak
memory of both. On one machine Ray only adds its start and its actor pools; the comparison is for equality.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.api import analyze  # noqa: E402
from analyzer.bench.scenario import build_scenario, write_log  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--dir", required=True, help="where the log files and both workspaces go")
    ap.add_argument("--out")
    args = ap.parse_args()
    logs = Path(args.dir) / "logs"
    if not logs.exists():
        requests = build_scenario(args.preset, args.seed).requests
        bounds = [len(requests) * i // args.files for i in range(args.files + 1)]
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            write_log(requests.iloc[lo:hi], logs / f"part-{i:03d}.jsonl.gz")
    results, rows = {}, {}
    for mode in ("local", "ray"):
        ws = os.path.join(args.dir, f"ws-{mode}")
        t0 = time.perf_counter()
        results[mode] = analyze(str(logs), ws, progress=False, recluster=True,
                                ray_address="local" if mode == "ray" else None)
        stats = results[mode].stats
        rows[mode] = {"wall_s": round(time.perf_counter() - t0, 1), "stages_s": stats.get("stages_s"),
                      "driver_peak_rss_mb": stats.get("peak_rss_mb"), "knn_graph": stats["cluster"].get("knn_graph")}
        print(mode, json.dumps(rows[mode]), flush=True)
    local, ray = results["local"], results["ray"]
    cols = ["campaign_id", "score", "flagged", "label", "n_accounts", "n_requests", "accounts"]
    acc = ["account_id", "score", "campaign_id", "flagged"]
    same = {"campaigns": local.campaigns[cols].equals(ray.campaigns[cols]),
            "accounts": local.accounts[acc].equals(ray.accounts[acc])}
    doc = {"preset": args.preset, "seed": args.seed, "files": args.files, "requests": local.stats["ingest"]["accepted"],
           "candidates": int(len(local.campaigns)),
           "flagged": int(local.campaigns["flagged"].sum()), "same": same, "runs": rows}
    print(json.dumps(doc))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
