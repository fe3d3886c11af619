"""Replay one mix of ``benchmarks/variations.py`` a day at a time (incremental runs into one workspace), as a team
runs the analyzer daily, and print what is flagged each day: each flagged candidate's score and how many of its
accounts belong to each campaign or look-alike.

    python benchmarks/replay_mix.py N-harness-12x300-mixed-noorg --seed 0

Shows, for instance, how long an eval harness stays flagged on the daily path: from its first pass (a burst of new
tasks, like a campaign's first day) until its first re-run. About 1-2 s a day on the fast tier.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from variations import MIXES  # noqa: E402

from analyzer.bench.replay import ReplayCriteria, mode_report, replay, score_replay, split_days  # noqa: E402
from analyzer.bench.scenario import build_scenario  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mix", choices=sorted(MIXES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep the day logs and the workspace here (default: temporary)")
    args = ap.parse_args(argv)
    preset, knobs = MIXES[args.mix]
    scenario = build_scenario(preset, seed=args.seed, **knobs)
    groups = {**{k: set(v["accounts"]) for k, v in scenario.truth["campaigns"].items()},
              **{k: set(v["accounts"]) for k, v in scenario.truth["hard_negatives"].items()}}
    with tempfile.TemporaryDirectory(prefix="replay-mix-") as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        days, _ = replay(split_days(scenario, os.path.join(work, "days")), work, recluster=False, log=lambda _m: None)
    crit = ReplayCriteria()
    print("\n".join(mode_report("incremental", score_replay(days, scenario, crit), crit)))
    for d in days:
        shown = []
        for c in (c for c in d.campaigns if c["flagged"]):
            held = {name: len(set(c["accounts"]) & accounts) for name, accounts in groups.items()}
            who = ",".join(f"{k}:{n}" for k, n in held.items() if n) or "organic"
            shown.append(f"{c['score']:.3f} {who}")
        print(f"day {d.day:2d}: " + ("; ".join(shown) or "nothing flagged"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
