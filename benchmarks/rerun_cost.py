"""What a re-run costs when 10% new logs arrive: embedding time of the first run against the re-run's.

Run: ``python benchmarks/rerun_cost.py [--preset standard] [--seed 0] [--tier fast] [--new-share 0.1]``

The scenario's requests are split by time: the first 90% go into the first run (``analyzer run`` on a fresh
workspace), the last 10% arrive later and are added to the same workspace with a second run. Only prompts
the workspace has not seen are embedded again (requests are deduplicated by id and prompts by hash), so the
re-run's embedding cost follows the share of *new unique prompts*, not the share of new requests. Prints
per-stage seconds of both runs, the prompts embedded in each, and the ratio of embedding times. No
embedding cache is used, so both runs embed for real. Needs ``../shared/data`` (or ``$ANALYZER_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.bench import corpora  # noqa: E402
from analyzer.bench.scenario import build_scenario, write_scenario  # noqa: E402
from analyzer.pipeline import RunOptions, run_all  # noqa: E402
from analyzer.workspace import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tier", default=None, help="embedding tier (default: the analyzer's default)")
    ap.add_argument("--new-share", type=float, default=0.10, help="share of requests (the latest) in the re-run")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if not corpora.available():
        sys.exit(f"benchmark corpora not found at {corpora.data_dir()}: nothing to measure")

    scenario = build_scenario(args.preset, seed=args.seed)
    req = scenario.requests.sort_values("ts", kind="stable")
    cut = int(round(len(req) * (1.0 - args.new_share)))
    first, later = req.iloc[:cut], req.iloc[cut:]
    options = RunOptions(progress=False, make_map=False)
    if args.tier:
        options = replace(options, tier=args.tier)
    with tempfile.TemporaryDirectory(prefix="rerun-") as tmp:
        log1, _ = write_scenario(replace(scenario, requests=first), tmp, log_name="logs-1.jsonl.gz")
        log2, _ = write_scenario(replace(scenario, requests=later), tmp, log_name="logs-2.jsonl.gz")
        ws = Workspace(Path(tmp) / "ws", create=True)
        runs = []
        for log in (log1, log2):
            t0 = time.perf_counter()
            stats = run_all(ws, [str(log)], options)
            runs.append({"log": log.name, "requests": int(stats["ingest"]["accepted"]),
                         "prompts_embedded": int(stats["embed"]["embedded_now"]),
                         "prompts_total": int(stats["embed"]["embedded_total"]),
                         "seconds": round(time.perf_counter() - t0, 2), "stages_s": stats["stages_s"]})
        ws.close()
    first_run, rerun = runs
    ratio = rerun["stages_s"]["embed"] / max(first_run["stages_s"]["embed"], 1e-9)
    result = {"preset": args.preset, "seed": args.seed, "tier": options.tier, "new_share": args.new_share,
              "runs": runs, "embed_time_ratio": round(ratio, 4),
              "new_prompt_share": round(rerun["prompts_embedded"] / max(first_run["prompts_embedded"], 1), 4)}
    for r in runs:
        print(f"{r['log']}: {r['requests']:,} requests, {r['prompts_embedded']:,} prompts embedded, "
              f"{r['seconds']:.1f} s; stages " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items()))
    print(f"re-run embedding time / first run's: {ratio:.3f} "
          f"(new unique prompts: {result['new_prompt_share']:.3f} of the first run's)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
