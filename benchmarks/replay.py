"""Replay a scenario one day at a time into one workspace: incremental runs against ``--recluster`` every day.

Run: ``python benchmarks/replay.py [--preset quick] [--seed 0] [--ban-day 7] [--late censorship_rewrite:5]
[--days N] [--requests N] [--modes incremental,recluster,process] [--retime N] [--out benchmarks/results/replay-quick-seed0.json]``

The scenario (``analyzer.bench.scenario``; with ``--ban-day`` half of each operator's accounts are banned that
day and replaced by fresh accounts; with ``--late`` one campaign's requests before a day are dropped, so it
starts mid-log, after the clustering was made without it) is split into one log per UTC day. Each mode feeds the days in order into
its own workspace (``analyzer run DAY --workspace WS``, with ``--recluster`` in the recluster mode; in this
process without the map, or in the ``process`` mode as one ``analyzer run`` process per day with its defaults,
as a team runs it: start-up and the map included) and reads the JSON export after each day. Prints per-day wall time and cluster path, the day each campaign was first
flagged against its first day of activity, campaign ids per day and their changes after detection,
replacement accounts flagged and how many of their requests were seen by then, and the agreement of the two
modes on the last day and day by day. Each mode embeds its own prompts (the fast tier: a small share of a
day's cost). Needs ``../shared/data`` (or ``$ANALYZER_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.bench import corpora  # noqa: E402
from analyzer.bench.replay import run_replay  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ban-day", type=int, default=7, help="day of the bans (-1: no bans)")
    ap.add_argument("--days", type=int, default=None, help="override the preset's number of days")
    ap.add_argument("--requests", type=int, default=None, help="override the preset's number of requests")
    ap.add_argument("--late", default="censorship_rewrite:5",
                    help="CAMPAIGN:DAY: drop that campaign's requests before DAY, so it starts mid-log ('none': off)")
    ap.add_argument("--modes", default="incremental,recluster",
                    help="comma-separated, of: incremental (daily runs in this process), recluster (a full "
                         "re-cluster every day), process (one 'analyzer run' process per day, map included)")
    ap.add_argument("--embedding-cache", action="store_true",
                    help="share vectors between the modes through an embedding cache (its import and export read the "
                         "whole cache each day, which adds a cost that grows with the history)")
    ap.add_argument("--workdir", default=None, help="keep the workspaces here (default: a temporary folder)")
    ap.add_argument("--retime", type=int, default=0, metavar="N",
                    help="afterwards run the second and the last day again N times each, alternately, on copies of "
                         "their workspaces, and report the ratio of the medians (the machine's speed drifts over a "
                         "long replay; side by side, the drift cancels)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if not corpora.available():
        sys.exit(f"benchmark corpora not found at {corpora.data_dir()}: nothing to measure")
    doc = run_replay(args.preset, args.seed, args.ban_day, args.days, None if args.late == "none" else args.late,
                     [m.strip() for m in args.modes.split(",") if m.strip()], args.workdir, args.embedding_cache,
                     n_requests=args.requests, retime=args.retime)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
