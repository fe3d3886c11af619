"""Replay a scenario one day at a time into one workspace: incremental runs against ``--recluster`` every day.

Run: ``python benchmarks/replay.py [--preset quick] [--seed 0] [--ban-day 7] [--late censorship_rewrite:5]
[--modes incremental,recluster] [--out benchmarks/results/replay-quick-seed0.json]``

The scenario (``analyzer.bench.scenario``; with ``--ban-day`` half of each operator's accounts are banned that
day and replaced by fresh accounts; with ``--late`` one campaign's requests before a day are dropped, so it
starts mid-log, after the clustering was made without it) is split into one log per UTC day. Each mode feeds the days in order into
its own workspace (``analyzer run DAY --workspace WS``, with ``--recluster`` in the recluster mode) and reads
the JSON export after each day. Prints per-day wall time and cluster path, the day each campaign was first
flagged against its first day of activity, campaign ids per day and their changes after detection,
replacement accounts flagged and how many of their requests were seen by then, and the agreement of the two
modes on the last day and day by day. Each mode embeds its own prompts (the fast tier: a small share of a
day's cost). Needs ``../shared/data`` (or ``$ANALYZER_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.bench import corpora  # noqa: E402
from analyzer.bench.replay import (  # noqa: E402
    ReplayCriteria,
    equivalence,
    replay,
    score_replay,
    split_days,
    start_late,
)
from analyzer.bench.scenario import build_scenario  # noqa: E402


def _print_mode(mode: str, res: dict, crit: ReplayCriteria) -> None:
    print(f"\n== {mode}")
    print("seconds per day: " + ", ".join(f"{s:.1f}" for s in res["seconds_per_day"]))
    print("CPU seconds per day: " + ", ".join(f"{s:.1f}" for s in res["cpu_seconds_per_day"]))
    print("cluster path per day: " + ", ".join(res["paths"]))
    if "last_over_second_day" in res:
        print(f"last day / second day: {res['last_over_second_day']:.2f} wall, {res['last_over_second_day_cpu']:.2f} "
              f"CPU (target <= {crit.last_over_second_day})")
    print("final: " + json.dumps(res.get("final")))
    for name, c in res["campaigns"].items():
        print(f"  {name:22s} {c['n_accounts']:3d} accounts: active from day {c['first_active_day']}, first flagged "
              f"day {c['first_flagged_day']} (day {c['detected_on_day_of_activity']} of its activity), "
              f"{c['id_changes_after_detection']} id changes after detection")
    r = res["replacements"]
    if r.get("n"):
        print(f"  replacement accounts: {r['n']}, flagged at the end {r['flagged_at_end']:.1%}, ever flagged "
              f"{r['ever_flagged']:.1%}; requests seen when first flagged {r['requests_seen_when_first_flagged']}; "
              f"within {crit.replacement_requests}: "
              f"{r[f'share_flagged_within_{crit.replacement_requests}_requests']:.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ban-day", type=int, default=7, help="day of the bans (-1: no bans)")
    ap.add_argument("--days", type=int, default=None, help="override the preset's number of days")
    ap.add_argument("--late", default="censorship_rewrite:5",
                    help="CAMPAIGN:DAY: drop that campaign's requests before DAY, so it starts mid-log ('none': off)")
    ap.add_argument("--modes", default="incremental,recluster")
    ap.add_argument("--embedding-cache", action="store_true",
                    help="share vectors between the modes through an embedding cache (its import and export read the "
                         "whole cache each day, which adds a cost that grows with the history)")
    ap.add_argument("--workdir", default=None, help="keep the workspaces here (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if not corpora.available():
        sys.exit(f"benchmark corpora not found at {corpora.data_dir()}: nothing to measure")
    knobs: dict = {} if args.ban_day < 0 else {"ban_day": args.ban_day}
    if args.days:
        knobs["days"] = args.days
    scenario = build_scenario(args.preset, seed=args.seed, **knobs)
    if args.late != "none":
        name, day = args.late.rsplit(":", 1)
        scenario = start_late(scenario, name, int(day))
    crit = ReplayCriteria()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        work = Path(args.workdir or tmp)
        paths = split_days(scenario, str(work / "days"))
        print(f"{args.preset} seed {args.seed}: {len(scenario.requests):,} requests over {len(paths)} days, "
              f"knobs {knobs}")
        days_by_mode = {}
        for mode in modes:
            print(f"replaying ({mode})")
            days_by_mode[mode] = replay(paths, str(work), recluster=(mode == "recluster"),
                                        embedding_cache=str(work / "embedding-cache") if args.embedding_cache else None)
    results = {m: score_replay(d, scenario, crit) for m, d in days_by_mode.items()}
    for m, res in results.items():
        _print_mode(m, res, crit)
    doc = {"preset": args.preset, "seed": args.seed, "knobs": knobs, "late_start": args.late, "criteria": asdict(crit),
           "modes": results,
           "days": {m: [{"day": d.day, "seconds": d.seconds, "cpu_seconds": d.cpu_seconds, "path": d.path, "trigger": d.trigger, "stages": d.stages,
                         "flagged": [{"id": c["id"], "accounts": c["accounts"]} for c in d.campaigns
                                     if c["flagged"]]} for d in ds] for m, ds in days_by_mode.items()}}
    if {"incremental", "recluster"} <= set(days_by_mode):
        a, b = days_by_mode["incremental"][-1], days_by_mode["recluster"][-1]
        eq = equivalence(a, b, scenario.truth)
        doc["equivalence_last_day"] = eq
        print("\nequivalence on the last day (a = incremental, b = recluster): " + json.dumps(eq))
        per_day = [equivalence(x, y, scenario.truth)
                   for x, y in zip(days_by_mode["incremental"], days_by_mode["recluster"], strict=True)]
        doc["equivalence_per_day"] = per_day
        print("per day, min Jaccard of matched campaigns / recall a, b / false flags a, b: " + "; ".join(
            f"{min(e['matched_jaccard'].values(), default=1.0):.2f} / {e['a']['campaign_recall']:.2f}, "
            f"{e['b']['campaign_recall']:.2f} / {e['a']['false_flags']}, {e['b']['false_flags']}" for e in per_day))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
